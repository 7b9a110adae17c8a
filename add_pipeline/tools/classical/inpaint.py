"""Inpainting: diffusion (OpenCV Telea / Navier-Stokes, scikit-image biharmonic) and OpenCV contrib FSR.

Diffusion tools fill large holes coarse to fine: the image is downscaled until the hole is at most
``coarse_depth`` px deep, filled there, upsampled as the initial fill, and then only a thin ring
along the hole's border is re-inpainted at full resolution so the seam matches the surroundings.
This avoids the long smeared streaks that a single full-resolution pass draws into a big hole, and
is faster. Only a crop around the hole (plus a margin) is processed.

FSR (``fsr``, needs ``cv2.xphoto`` from opencv-contrib-python-headless) extrapolates texture and
edges blockwise; it is chosen by ``bench/inpaint_bench.py`` (lower background L1 than Telea on the
libcom composites and on synthetic scenes) and bounds its cost by filling big holes at a coarse scale.
"""

from __future__ import annotations

from types import ModuleType
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


_FSR_BLOCK = 16  # FSR's largest block side, px (both qualities)


def _xphoto() -> ModuleType:
    """``cv2.xphoto``, or a :class:`ToolError` saying which package provides it."""
    xphoto = getattr(cv2, "xphoto", None)
    if xphoto is None:
        raise ToolError(
            "fsr: cv2.xphoto is missing; it comes with opencv-contrib-python-headless, which replaces "
            "opencv-python-headless: pip uninstall opencv-python-headless; pip install opencv-contrib-python-headless"
        )
    return xphoto


@register
class FsrInpainter(Inpainter):
    """Frequency Selective Reconstruction (``cv2.xphoto.inpaint``, OpenCV contrib), coarse to fine.

    FSR models each 16x16 block of the hole (split down to 4 px, or 2 px for ``best``, where the
    surroundings are textured) as a sparse sum of Fourier basis functions fitted to the known pixels
    of a 32 px (64 px for ``best``) window, so it continues edges and texture where diffusion only
    smears. Its cost grows with the number of hole pixels: about 0.2 ms per pixel for ``fast`` on
    one core, 10-30x that for ``best``. A hole with more than ``coarse_px`` pixels is therefore
    filled on a downscaled crop in which it has about ``coarse_px`` pixels, and that fill is
    upsampled (bicubic) into the hole; a smaller hole is filled at full resolution. The coarse
    image is the mean of the known pixels only (a coarse pixel with none is hole), so the object's
    colours never leak into the fill.

    Args:
        quality: ``"fast"`` (``INPAINT_FSR_FAST``) or ``"best"`` (``INPAINT_FSR_BEST``).
        coarse_px: most hole pixels filled at any scale, hence the cost bound (about 0.2 s per
            hole at 1000 for ``fast``); 0 always fills at full resolution (slow on big holes).
        margin: known pixels kept around the hole's bbox, in px of the scale that is filled
            (default one FSR window of ``fast``).
    """

    name = "fsr"
    _QUALITIES: ClassVar[tuple[str, ...]] = ("fast", "best")

    def __init__(self, quality: str = "fast", coarse_px: int = 1000, margin: int = 32) -> None:
        if quality not in self._QUALITIES:
            raise ToolError(f"fsr: quality must be one of {list(self._QUALITIES)}, got {quality!r}")
        if int(coarse_px) < 0 or int(margin) < 0:
            raise ToolError(f"fsr: coarse_px and margin must be >= 0, got {coarse_px}, {margin}")
        xphoto = _xphoto()
        self.quality = quality
        self.coarse_px = int(coarse_px)
        self.margin = int(margin)
        self._flag = int(xphoto.INPAINT_FSR_FAST if quality == "fast" else xphoto.INPAINT_FSR_BEST)

    def _fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """FSR of ``hole`` (HxW bool, True = fill) in ``image`` (HxWx3 uint8 RGB) at this scale."""
        # FSR wants BGR (it works in YCrCb) and an 8-bit mask where 255 = KNOWN, the opposite of
        # cv2.inpaint. It fills garbage into partial 16 px blocks at the bottom/right edge when a side
        # is not a multiple of 16, so both are padded by reflection (a mirrored hole pixel stays hole).
        h, w = hole.shape
        pad = (0, -h % _FSR_BLOCK, 0, -w % _FSR_BLOCK)
        src = cv2.copyMakeBorder(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), *pad, cv2.BORDER_REFLECT)
        known = cv2.copyMakeBorder(np.where(hole, 0, 255).astype(np.uint8), *pad, cv2.BORDER_REFLECT)
        dst = np.zeros_like(src)
        _xphoto().inpaint(src, known, dst, self._flag)
        return cv2.cvtColor(dst[:h, :w], cv2.COLOR_BGR2RGB)

    def infer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = image.copy()
        n = int(mask.sum())
        if n == 0:
            return out
        if mask.all():
            raise ToolError(f"{self.name}: the mask covers the whole image; nothing to inpaint from")
        scale = 1.0 if self.coarse_px == 0 or n <= self.coarse_px else float(np.sqrt(self.coarse_px / n))
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        m = int(np.ceil(self.margin / scale))
        y0, y1 = max(int(ys.min()) - m, 0), min(int(ys.max()) + 1 + m, h)
        x0, x1 = max(int(xs.min()) - m, 0), min(int(xs.max()) + 1 + m, w)
        img, hole = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        if scale == 1.0:
            fill = self._fill(img, hole)
        else:
            ch, cw = hole.shape
            size = (max(int(round(cw * scale)), 8), max(int(round(ch * scale)), 8))
            # Downscale the known pixels only: a coarse pixel is known iff it covers a known pixel,
            # and its colour is their mean, so no object colour leaks into the fill.
            known = (~hole).astype(np.float32)
            weight = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
            total = cv2.resize(img.astype(np.float32) * known[..., None], size, interpolation=cv2.INTER_AREA)
            small = np.clip(np.round(total / np.maximum(weight, 1e-12)[..., None]), 0, 255).astype(np.uint8)
            fill = cv2.resize(self._fill(small, weight <= 0.0), (cw, ch), interpolation=cv2.INTER_CUBIC)
        out[y0:y1, x0:x1] = np.where(hole[..., None], fill, img)
        return out
