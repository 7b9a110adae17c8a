"""Class-agnostic object proposals from superpixel saliency.

The image is downscaled to ``work_size`` px and cut into SLIC superpixels. Each
superpixel gets a background probability from its *boundary connectivity* (how
much of the geodesic region it belongs to touches the image border, in the
sense of Zhu et al. 2014) and a saliency equal to its background-weighted colour
contrast times its foreground probability. Proposals are the connected salient
regions at a few thresholds, plus colour-coherent sub-regions of them (so that
two touching objects of different colour are proposed separately), scored by
mean saliency and contrast with their surrounding ring, and pruned by NMS.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from skimage.segmentation import slic

from add_pipeline.core.types import Box, bbox_of
from add_pipeline.tools.base import Proposal, Proposer, register


@register
class SaliencyProposer(Proposer):
    """Saliency / boundary-connectivity / colour-region proposals.

    Args:
        work_size: long side (px) the image is analysed at.
        n_segments: approximate number of SLIC superpixels.
        thresholds: saliency levels (fractions of the map's max) whose components become proposals.
        min_area: smallest proposal, as a fraction of the image area.
        max_area: largest proposal, as a fraction of the image area.
        nms_iou: box IoU above which the lower-scored proposal is dropped.
        color_split: Lab distance under which adjacent salient superpixels are grouped into one
            colour region (0 disables colour sub-regions).
    """

    name = "saliency"

    def __init__(
        self,
        work_size: int = 256,
        n_segments: int = 300,
        thresholds: tuple[float, ...] = (0.3, 0.5),
        min_area: float = 0.004,
        max_area: float = 0.85,
        nms_iou: float = 0.6,
        color_split: float = 18.0,
    ) -> None:
        self.work_size = int(work_size)
        self.n_segments = int(n_segments)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.min_area = float(min_area)
        self.max_area = float(max_area)
        self.nms_iou = float(nms_iou)
        self.color_split = float(color_split)

    def infer(self, image: np.ndarray, max_objects: int, labels: tuple[str, ...] = ()) -> list[Proposal]:
        """Class-agnostic: ``labels`` are not used."""
        h, w = image.shape[:2]
        s = min(1.0, self.work_size / max(h, w))
        small = cv2.resize(image, (max(int(round(w * s)), 8), max(int(round(h * s)), 8)), interpolation=cv2.INTER_AREA)
        labels, lab, adj = _superpixels(small, self.n_segments)
        # Two background hypotheses: all four borders, and all but the bottom one (objects that
        # stand on or are cut by the bottom edge: people, animals, vehicles close to the camera).
        cands = []
        for sides in ((0, 1, 2, 3), (0, 2, 3)):
            cands += self._candidates(labels, lab, adj, _saliency(labels, lab, adj, sides))
        if not cands:
            return []
        # NMS on boxes, best first.
        cands.sort(key=lambda c: -c[0])
        kept: list[tuple[float, np.ndarray, Box]] = []
        for score, nodes_mask, box in cands:
            if all(_box_iou(box, k[2]) < self.nms_iou for k in kept):
                kept.append((score, nodes_mask, box))
            if len(kept) >= max_objects:
                break
        out = []
        for score, small_mask, _ in kept:
            mask = cv2.resize(small_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            box = bbox_of(mask)
            if box[2] > box[0] and box[3] > box[1]:
                out.append(Proposal(box=box, score=float(np.clip(score, 0.0, 1.0)), mask=mask, label="object"))
        return out

    def _candidates(
        self, labels: np.ndarray, lab: np.ndarray, adj: np.ndarray, sal: np.ndarray
    ) -> list[tuple[float, np.ndarray, Box]]:
        """Salient regions as ``(score, small-resolution mask, small-resolution box)``."""
        n = lab.shape[0]
        area = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
        total = float(labels.size)
        groups: list[np.ndarray] = []
        for t in self.thresholds:
            on = sal >= t * sal.max()
            groups += _node_components(adj, on)
            if self.color_split > 0:
                dist = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
                groups += _node_components(adj & (dist < self.color_split), on)
        seen: set[bytes] = set()
        cands = []
        for g in groups:
            key = np.packbits(g).tobytes()
            if key in seen:
                continue
            seen.add(key)
            frac = area[g].sum() / total
            if not (self.min_area <= frac <= self.max_area):
                continue
            mask = ndimage.binary_fill_holes(g[labels])
            ring = adj[g].any(axis=0) & ~g
            inner = float((sal[g] * area[g]).sum() / area[g].sum())
            outer = float((sal[ring] * area[ring]).sum() / max(area[ring].sum(), 1.0)) if ring.any() else 0.0
            contrast = float(np.linalg.norm(_mean(lab, area, g) - _mean(lab, area, ring))) if ring.any() else 0.0
            # Saliency inside, drop at the border, colour contrast; mild preference for larger regions.
            score = inner * (0.5 + 0.5 * np.clip(inner - outer, 0, 1)) * np.clip(contrast / 30.0, 0.2, 1.0)
            score *= 0.6 + 0.4 * np.sqrt(min(frac / 0.15, 1.0))
            cands.append((score, mask, bbox_of(mask)))
        return cands


def _superpixels(small: np.ndarray, n_segments: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SLIC labels ``HxW int``, mean Lab per superpixel ``(n, 3)`` and boolean adjacency ``(n, n)``."""
    lab_img = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    labels = slic(small, n_segments=n_segments, compactness=10.0, start_label=0, enforce_connectivity=True)
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    n = int(labels.max()) + 1
    counts = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    lab = np.stack([np.bincount(labels.ravel(), lab_img[..., c].ravel(), n) for c in range(3)], -1)
    lab /= counts[:, None]
    pairs = np.concatenate([
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
        np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1),
    ])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    adj = np.zeros((n, n), bool)
    adj[pairs[:, 0], pairs[:, 1]] = True
    adj |= adj.T
    return labels, lab, adj


def _saliency(labels: np.ndarray, lab: np.ndarray, adj: np.ndarray, sides: tuple[int, ...]) -> np.ndarray:
    """Per-superpixel saliency in [0, 1]: background-weighted contrast x (1 - background probability).

    ``sides`` picks the image borders taken as background: 0 top, 1 bottom, 2 left, 3 right."""
    n = lab.shape[0]
    h, w = labels.shape
    edges = [labels[0], labels[-1], labels[:, 0], labels[:, -1]]
    edges = [edges[i] for i in sides]
    border = np.zeros(n, bool)
    border[np.unique(np.concatenate(edges))] = True
    # Geodesic distances on the adjacency graph, edge weight = Lab distance; border nodes are linked
    # at zero cost so a background region split by an object is still one region.
    ii, jj = np.nonzero(np.triu(adj))
    wts = np.linalg.norm(lab[ii] - lab[jj], axis=1) + 1e-3
    bi = np.nonzero(border)[0]
    bpairs = np.array([(a, b) for a in bi for b in bi if a < b], dtype=int).reshape(-1, 2)
    ii = np.concatenate([ii, bpairs[:, 0]])
    jj = np.concatenate([jj, bpairs[:, 1]])
    wts = np.concatenate([wts, np.full(len(bpairs), 1e-3)])
    graph = coo_matrix((wts, (ii, jj)), shape=(n, n)).tocsr()
    geo = dijkstra(graph, directed=False)
    sigma_clr = 10.0
    span = np.exp(-(geo**2) / (2 * sigma_clr**2))
    area = span.sum(axis=1)
    # Boundary length in units of superpixel side, as in the boundary-connectivity measure.
    side = np.sqrt(labels.size / n)
    blen = np.zeros(n)
    for edge in edges:
        blen += np.bincount(edge, minlength=n)
    blen /= side
    bnd_con = (span @ blen) / np.sqrt(area)
    p_bg = 1.0 - np.exp(-(bnd_con**2) / 2.0)
    cy = np.bincount(labels.ravel(), np.mgrid[0:h, 0:w][0].ravel(), n) / np.bincount(labels.ravel(), minlength=n)
    cx = np.bincount(labels.ravel(), np.mgrid[0:h, 0:w][1].ravel(), n) / np.bincount(labels.ravel(), minlength=n)
    pos = np.stack([cy / h, cx / w], 1)
    d_app = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    d_spa = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    w_spa = np.exp(-(d_spa**2) / (2 * 0.25**2))
    ctr = (d_app * w_spa * p_bg[None]).sum(axis=1) / np.maximum((w_spa * p_bg[None]).sum(axis=1), 1e-9)
    sal = ctr * (1.0 - p_bg)
    # One smoothing step over the adjacency graph, weighted by colour similarity.
    aff = adj * np.exp(-(d_app**2) / (2 * sigma_clr**2)) + np.eye(n)
    sal = aff @ sal / aff.sum(axis=1)
    return sal / max(float(sal.max()), 1e-9)


def _node_components(adj: np.ndarray, on: np.ndarray) -> list[np.ndarray]:
    """Connected components of the ``on`` nodes under ``adj``, as boolean node masks."""
    idx = np.nonzero(on)[0]
    if idx.size == 0:
        return []
    _, comp = connected_components(adj[np.ix_(idx, idx)], directed=False)
    out = []
    for c in range(int(comp.max()) + 1):
        g = np.zeros(on.shape, bool)
        g[idx[comp == c]] = True
        out.append(g)
    return out


def _mean(lab: np.ndarray, area: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Area-weighted mean Lab of the selected superpixels."""
    return (lab[sel] * area[sel, None]).sum(axis=0) / max(area[sel].sum(), 1.0)


def _box_iou(a: Box, b: Box) -> float:
    """IoU of two half-open boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
