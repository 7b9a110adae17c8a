"""Diffusion-style inpainting (OpenCV Telea / Navier-Stokes, scikit-image biharmonic).

Large holes are filled coarse to fine: the image is downscaled until the hole is at most
``coarse_depth`` px deep, filled there, upsampled as the initial fill, and then only a thin ring
along the hole's border is re-inpainted at full resolution so the seam matches the surroundings.
This avoids the long smeared streaks that a single full-resolution pass draws into a big hole, and
is faster. Only a crop around the hole (plus a margin) is processed.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from add_pipeline.tools.base import Inpainter, ToolError, register


class _DiffusionInpainter(Inpainter):
    """Crop + coarse-to-fine driver; subclasses implement :meth:`_fill` for one resolution."""

    name: ClassVar[str] = ""

    def __init__(self, radius: int = 5, coarse_depth: int = 8, ring: int = 4, margin: int = 16) -> None:
        self.radius = int(radius)
        self.coarse_depth = int(coarse_depth)
        self.ring = int(ring)
        self.margin = int(margin)

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Fill ``mask`` (HxW bool) of ``image`` (HxWx3 uint8) at this resolution; returns uint8."""
        raise NotImplementedError

    def infer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = image.copy()
        if not mask.any():
            return out
        if mask.all():
            raise ToolError(f"{self.name}: the mask covers the whole image; nothing to inpaint from")
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        depth = float(cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3).max())
        m = self.margin + int(depth)
        y0, y1 = max(ys.min() - m, 0), min(ys.max() + 1 + m, h)
        x0, x1 = max(xs.min() - m, 0), min(xs.max() + 1 + m, w)
        img, hole = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = self._coarse_to_fine(img, hole, depth)
        return out

    def _coarse_to_fine(self, img: np.ndarray, hole: np.ndarray, depth: float) -> np.ndarray:
        """Fill ``hole`` of the crop ``img``, through a downscaled pass when the hole is deep."""
        if self.coarse_depth <= 0 or depth <= self.coarse_depth:
            return self._fill(img, hole)
        h, w = hole.shape
        s = self.coarse_depth / depth
        sw, sh = max(int(round(w * s)), 8), max(int(round(h * s)), 8)
        small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
        small_hole = cv2.dilate(small_hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if small_hole.all():
            return self._fill(img, hole)
        coarse = cv2.resize(self._fill(small, small_hole), (w, h), interpolation=cv2.INTER_CUBIC)
        first = np.where(hole[..., None], coarse, img)
        # Re-inpaint a ring inside the hole border at full resolution: it is filled from the true
        # surroundings on one side and from the coarse fill on the other.
        k = 2 * self.ring + 1
        inner = cv2.erode(hole.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        return self._fill(first, hole & ~inner)


@register
class TeleaInpainter(_DiffusionInpainter):
    """``cv2.inpaint`` with ``INPAINT_TELEA`` (fast marching), coarse to fine.

    Args:
        radius: neighbourhood radius of the OpenCV method, px.
        coarse_depth: holes deeper than this (px from the border to the farthest hole pixel) are
            first filled at a scale where they are this deep; 0 disables the coarse pass.
        ring: width of the border ring re-inpainted at full resolution after the coarse pass, px.
        margin: known pixels kept around the hole's bbox in the processed crop, px.
    """

    name = "telea"

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return cv2.inpaint(image, mask.astype(np.uint8), self.radius, cv2.INPAINT_TELEA)


@register
class NavierStokesInpainter(_DiffusionInpainter):
    """``cv2.inpaint`` with ``INPAINT_NS`` (Navier-Stokes), coarse to fine; same args as ``telea``."""

    name = "ns"

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return cv2.inpaint(image, mask.astype(np.uint8), self.radius, cv2.INPAINT_NS)


@register
class BiharmonicInpainter(_DiffusionInpainter):
    """``skimage.restoration.inpaint_biharmonic``, coarse to fine; same args as ``telea``
    (``radius`` is unused). Smoothest fill, slowest."""

    name = "biharmonic"

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from skimage.restoration import inpaint_biharmonic

        res = inpaint_biharmonic(image.astype(np.float64) / 255.0, mask, channel_axis=-1)
        return np.round(np.clip(res, 0.0, 1.0) * 255.0).astype(np.uint8)
