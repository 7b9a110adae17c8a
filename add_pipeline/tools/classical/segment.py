"""GrabCut segmentation from a box and an optional coarse prior mask."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from add_pipeline.core.types import Box
from add_pipeline.tools.base import Segmentation, Segmenter, register


@register
class GrabCutSegmenter(Segmenter):
    """``cv2.grabCut`` on a crop around the box, initialised from the box and the prior.

    Outside the box is sure background; inside it is probable background, the prior is probable
    foreground and the prior eroded by a quarter of its inner radius is sure foreground. Without a
    prior the central ellipse of the box is probable foreground. The result is the largest component
    touching the prior (or the box centre), holes filled.

    Args:
        iterations: GrabCut EM iterations.
        margin: crop margin around the box, as a fraction of the box's long side (at least 8 px).
        max_side: the crop is downscaled so its long side is at most this many px (speed).
        sure_core: whether the eroded prior core is clamped as sure foreground.
    """

    name = "grabcut"

    def __init__(
        self, iterations: int = 4, margin: float = 0.15, max_side: int = 256, sure_core: bool = True, seed: int = 0
    ) -> None:
        self.seed = int(seed)  # GrabCut's GMM initialisation draws from OpenCV's RNG
        self.iterations = int(iterations)
        self.margin = float(margin)
        self.max_side = int(max_side)
        self.sure_core = bool(sure_core)

    def infer(self, image: np.ndarray, box: Box, prior: np.ndarray | None) -> Segmentation:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = box
        m = max(8, int(round(self.margin * max(x1 - x0, y1 - y0))))
        cx0, cy0, cx1, cy1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, w), min(y1 + m, h)
        crop = image[cy0:cy1, cx0:cx1]
        ch, cw = crop.shape[:2]
        s = min(1.0, self.max_side / max(ch, cw))
        sw, sh = max(int(round(cw * s)), 2), max(int(round(ch * s)), 2)

        init = np.full((ch, cw), cv2.GC_BGD, np.uint8)
        init[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = cv2.GC_PR_BGD
        inbox = init == cv2.GC_PR_BGD
        if prior is not None and (prior[y0:y1, x0:x1]).any():
            p = prior[cy0:cy1, cx0:cx1]
            init[p & inbox] = cv2.GC_PR_FGD
            if self.sure_core:
                depth = cv2.distanceTransform(p.astype(np.uint8), cv2.DIST_L2, 3)
                core = depth > max(0.75 * float(depth.max()), 3.0)
                init[core & inbox] = cv2.GC_FGD
            seed = p
        else:
            ell = np.zeros((ch, cw), np.uint8)
            centre = ((x0 + x1) // 2 - cx0, (y0 + y1) // 2 - cy0)
            axes = (max((x1 - x0) // 2 - 1, 1), max((y1 - y0) // 2 - 1, 1))
            cv2.ellipse(ell, centre, axes, 0, 0, 360, 1, -1)
            init[(ell > 0) & inbox] = cv2.GC_PR_FGD
            seed = np.zeros((ch, cw), bool)
            seed[centre[1], centre[0]] = True

        small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA) if s < 1 else crop
        small_init = cv2.resize(init, (sw, sh), interpolation=cv2.INTER_NEAREST) if s < 1 else init.copy()
        if not ((small_init == cv2.GC_FGD) | (small_init == cv2.GC_PR_FGD)).any():
            small_init[sh // 2, sw // 2] = cv2.GC_PR_FGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(small[..., ::-1])
        cv2.setRNGSeed(self.seed)  # same input, same mask, whatever ran before on this worker
        cv2.grabCut(bgr, small_init, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        fg_small = ((small_init == cv2.GC_FGD) | (small_init == cv2.GC_PR_FGD)).astype(np.float32)
        if s < 1:
            fg = cv2.resize(fg_small, (cw, ch), interpolation=cv2.INTER_LINEAR) > 0.5
        else:
            fg = fg_small > 0.5
        fg &= inbox
        fg = _component_touching(fg, seed)
        fg = ndimage.binary_fill_holes(fg)

        mask = np.zeros((h, w), bool)
        mask[cy0:cy1, cx0:cx1] = fg
        return Segmentation(mask=mask, score=_score(crop, fg, None if prior is None else prior[cy0:cy1, cx0:cx1]))


def _component_touching(fg: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The largest connected component of ``fg`` overlapping ``seed`` (else the largest one)."""
    n, lab = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return fg
    areas = np.bincount(lab.ravel(), minlength=n)
    areas[0] = 0
    touching = np.bincount(lab[seed & fg].ravel(), minlength=n) > 0
    touching[0] = False
    if touching.any():
        areas = np.where(touching, areas, 0)
    return lab == int(np.argmax(areas))


def _score(crop: np.ndarray, fg: np.ndarray, prior: np.ndarray | None) -> float:
    """Quality in [0, 1]: how strongly the mask boundary sits on image edges (relative to the crop's
    typical gradient), averaged with the IoU against the prior when there is one."""
    if not fg.any():
        return 0.0
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    u8 = fg.astype(np.uint8)
    edge = (cv2.dilate(u8, np.ones((3, 3), np.uint8)) - cv2.erode(u8, np.ones((3, 3), np.uint8))) > 0
    ratio = float(grad[edge].mean()) / (float(np.percentile(grad, 75)) + 1e-6)
    edge_score = float(np.clip(ratio / 3.0, 0.0, 1.0))
    if prior is None or not prior.any():
        return edge_score
    iou = float((fg & prior).sum()) / float((fg | prior).sum())
    return 0.5 * (edge_score + iou)
