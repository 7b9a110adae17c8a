"""Split one foreground component into object instances where the silhouette narrows to a neck.

A salient-object map marks touching objects (two dogs, two men, a rider on a motorcycle) as one
component. Where they meet, the silhouette usually narrows: the inscribed-circle radius (distance
transform ``D``) at the meeting point — the *saddle* — is small compared with the radius inside
each object — its *peak*. The component is cut by a watershed of ``-D`` into basins (one per
local maximum), and basins are merged back, most connected pair first, while

* ``saddle / min(peak_a, peak_b) >= neck_ratio`` (a wide junction: one object; a thin limb joins
  the body it grows from, because its own peak is small), or
* either basin is smaller than ``min_part_frac`` of the component (parts, not objects).

What remains are the instances. Shapes: masks are ``HxW bool``; the parts tile the component
exactly (no watershed lines).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def _pair_saddles(labels: np.ndarray, dist: np.ndarray) -> dict[tuple[int, int], float]:
    """For each pair of 8-adjacent labels ``(a < b)``: the highest ``min(D_p, D_q)`` over touching pixels."""
    out: dict[tuple[int, int], float] = {}
    h, w = labels.shape
    for dy, dx in ((1, 0), (0, 1), (1, 1), (1, -1)):
        ys, xs = slice(0, h - dy), slice(max(0, -dx), w - max(0, dx))
        yq, xq = slice(dy, h), slice(max(0, dx), w - max(0, -dx))
        a, b = labels[ys, xs], labels[yq, xq]
        da, db = dist[ys, xs], dist[yq, xq]
        sel = (a != b) & (a > 0) & (b > 0)
        if not sel.any():
            continue
        lo, hi = np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])
        val = np.minimum(da[sel], db[sel])
        for i, j, v in zip(lo.tolist(), hi.tolist(), val.tolist()):
            if v > out.get((i, j), -1.0):
                out[(i, j)] = v
    return out


def split_instances(component: np.ndarray, neck_ratio: float = 0.45, min_part_frac: float = 0.25,
                    smooth: float = 2.0) -> list[np.ndarray]:
    """Instances of one connected ``component`` (HxW bool), largest first; ``[component]`` if it has no neck.

    Args:
        neck_ratio: a junction narrower than this share of the smaller side's inscribed radius cuts.
        min_part_frac: a part smaller than this share of the component is merged into a neighbour.
        smooth: Gaussian sigma (px) on the distance transform before finding its maxima (noise).
    """
    if not 0.0 < neck_ratio <= 1.0 or not 0.0 <= min_part_frac < 0.5:
        raise ValueError(f"need 0 < neck_ratio <= 1 and 0 <= min_part_frac < 0.5, got {neck_ratio}, {min_part_frac}")
    from skimage.segmentation import watershed

    ys, xs = np.nonzero(component)
    if ys.size == 0:
        return []
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    comp = np.pad(component[y0:y1, x0:x1], 1)
    dist = cv2.distanceTransform(comp.astype(np.uint8), cv2.DIST_L2, 5)
    sm = cv2.GaussianBlur(dist, (0, 0), smooth) if smooth > 0 else dist
    peaks = (sm == ndimage.maximum_filter(sm, size=5)) & comp & (dist > 1.0)
    markers, n = ndimage.label(peaks)
    if n < 2:
        return [component]
    labels = watershed(-sm, markers, mask=comp, connectivity=2)
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
    peak = ndimage.maximum(dist, labels, index=np.arange(n + 1))
    peak = np.asarray(peak, float)
    saddles = _pair_saddles(labels, dist)
    parent = list(range(n + 1))
    total = float(comp.sum())
    while saddles:
        def priority(item: tuple[tuple[int, int], float]) -> tuple[bool, float]:
            (i, j), s = item
            small = min(area[i], area[j]) < min_part_frac * total
            return (small or s >= neck_ratio * min(peak[i], peak[j]), s / max(min(peak[i], peak[j]), 1e-6))

        (i, j), s = max(saddles.items(), key=priority)
        must, _ = priority(((i, j), s))
        if not must:
            break
        keep, gone = (i, j) if area[i] >= area[j] else (j, i)
        parent[gone] = keep
        area[keep] += area[gone]
        peak[keep] = max(peak[keep], peak[gone])
        merged: dict[tuple[int, int], float] = {}
        for (a, b), v in saddles.items():
            a, b = (keep if a == gone else a), (keep if b == gone else b)
            if a == b:
                continue
            key = (min(a, b), max(a, b))
            merged[key] = max(merged.get(key, -1.0), v)
        saddles = merged

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    lut = np.array([root(k) for k in range(n + 1)])
    final = lut[labels]
    ids = [k for k in np.unique(final) if k > 0]
    # a part that touches no other (only a diagonal pixel, or none) cannot be merged above: a small
    # one joins the largest part, so every returned part is an object-sized share of the component
    big = max(ids, key=lambda k: area[k])
    for k in ids:
        if k != big and area[k] < min_part_frac * total:
            final[final == k] = big
    final[comp & (final == 0)] = big
    ids = [k for k in np.unique(final) if k > 0]
    if len(ids) < 2:
        return [component]
    parts = []
    for k in sorted(ids, key=lambda k: -area[k]):
        m = np.zeros_like(component)
        m[y0:y1, x0:x1] = (final == k)[1:-1, 1:-1]
        parts.append(m)
    return parts
