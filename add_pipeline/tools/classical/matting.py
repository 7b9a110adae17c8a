"""Trimap-based soft matting with pymatting (imported lazily: its numba kernels compile on first use).

The trimap is grown from the binary mask: the mask eroded by ``band`` px is sure foreground, the
complement of the mask dilated by ``band`` px is sure background, the rest is unknown. Only a crop
around the unknown band (plus a margin of known pixels) is solved; outside it alpha is exactly the
trimap's 0/1. Foreground colours are decontaminated with ``estimate_foreground_ml``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import cv2
import numpy as np

from add_pipeline.tools.base import Matte, Matter, ToolError, register


def default_band(hw: tuple[int, int]) -> int:
    """Default unknown-band half width: about 1.2% of the long side, at least 3 px (6 px at 512)."""
    return max(3, int(round(0.012 * max(hw))))


def make_trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """``HxW float64`` trimap from a bool mask: 1 = foreground, 0 = background, 0.5 = unknown."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    u8 = mask.astype(np.uint8)
    fg = cv2.erode(u8, k) > 0
    maybe = cv2.dilate(u8, k) > 0
    tri = np.where(maybe, 0.5, 0.0)
    tri[fg] = 1.0
    return tri


def matte_in_band(
    image: np.ndarray, mask: np.ndarray, band: int | None, margin: int,
    solve: Callable[[np.ndarray, np.ndarray], np.ndarray | None], name: str,
) -> Matte:
    """The frame every trimap matter shares: trimap from ``mask`` (:func:`make_trimap`), then
    :func:`matte_with_trimap`.

    Args:
        image: ``HxWx3 uint8``; mask: ``HxW bool``; band: half width in px (None: :func:`default_band`).
        solve: ``(crop HxWx3 uint8, trimap HxW float64) -> alpha HxW`` in [0, 1], or None to fall
            back to the binary mask.
    """
    h, w = image.shape[:2]
    b = band if band is not None else default_band((h, w))
    if b < 1:
        raise ToolError(f"{name}: band must be >= 1 px, got {b}")
    return matte_with_trimap(image, mask, make_trimap(mask, int(b)), margin, solve)


def matte_with_trimap(
    image: np.ndarray, mask: np.ndarray, tri: np.ndarray, margin: int,
    solve: Callable[[np.ndarray, np.ndarray], np.ndarray | None],
) -> Matte:
    """Alpha solved by ``solve`` only on the box of the trimap's unknown region (plus ``margin``
    known px), exact 0/1 elsewhere, foreground colours decontaminated (``estimate_foreground_ml``).

    Args:
        image: ``HxWx3 uint8``; mask: ``HxW bool`` (the answer when ``solve`` returns None);
        tri: ``HxW float64`` trimap, 1 = foreground, 0 = background, 0.5 = unknown.
    """
    import pymatting

    h, w = image.shape[:2]
    alpha = (tri == 1.0).astype(np.float32)
    fg = image.astype(np.float32) / 255.0
    unknown = tri == 0.5
    if not unknown.any():
        return Matte(alpha=alpha, foreground=fg)
    ys, xs = np.nonzero(unknown)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + 1 + margin, h)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + 1 + margin, w)
    crop, t = image[y0:y1, x0:x1], tri[y0:y1, x0:x1]
    solved = solve(crop, t)
    if solved is None:
        return Matte(alpha=mask.astype(np.float32), foreground=fg)
    a = np.where(t == 0.5, np.clip(solved, 0.0, 1.0), t)
    f = pymatting.estimate_foreground_ml(crop.astype(np.float64) / 255.0, a.astype(np.float64))
    alpha[y0:y1, x0:x1] = a.astype(np.float32)
    fg[y0:y1, x0:x1] = np.clip(f, 0.0, 1.0).astype(np.float32)
    return Matte(alpha=alpha, foreground=fg)


def solve_closed_form(crop: np.ndarray, tri: np.ndarray) -> np.ndarray | None:
    """Closed-form alpha (Levin et al., ``pymatting.estimate_alpha_cf``) of ``crop`` (HxWx3 uint8)
    under ``tri`` (HxW float64); None when the trimap lacks sure foreground or sure background."""
    import pymatting

    if not (tri == 1.0).any() or not (tri == 0.0).any():
        return None  # a solver needs both known labels; without them the mask is all there is
    return pymatting.estimate_alpha_cf(crop.astype(np.float64) / 255.0, tri)


class _PymattingMatter(Matter):
    """Shared crop / trimap / foreground logic; subclasses pick the alpha estimator."""

    method: ClassVar[str] = ""

    def __init__(self, band: int | None = None, margin: int = 8) -> None:
        self.band = None if band is None else int(band)
        self.margin = int(margin)

    def _alpha(self, img: np.ndarray, tri: np.ndarray) -> np.ndarray:
        """Solve alpha on a crop: ``img`` HxWx3 float64 [0, 1], ``tri`` HxW float64."""
        import pymatting

        fn = getattr(pymatting, f"estimate_alpha_{self.method}")
        return fn(img, tri)

    def infer(self, image: np.ndarray, mask: np.ndarray, band: int | None) -> Matte:
        def solve(crop: np.ndarray, t: np.ndarray) -> np.ndarray | None:
            if not (t == 1.0).any() or not (t == 0.0).any():
                return None  # a solver needs both known labels; without them the mask is all there is
            return self._alpha(crop.astype(np.float64) / 255.0, t)

        return matte_in_band(image, mask, band if band is not None else self.band, self.margin, solve, self.name)


@register
class ClosedFormMatter(_PymattingMatter):
    """Closed-form matting (Levin et al.) via ``pymatting.estimate_alpha_cf``.

    Args:
        band: unknown-band half width in px (None: :func:`default_band` of the image size).
        margin: known pixels kept around the unknown band's bbox in the solved crop, px.
    """

    name = "closed-form"
    method = "cf"  # measured better and faster than lkm, knn, rw and sm here (bench/results/tool_tuning.md)
