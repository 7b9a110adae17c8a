"""Straight-alpha compositing and the exact layer solver.

Every decomposition we emit must recompose to its input photo.  We get that by
construction, not by hoping the estimates are good: layers are solved back to
front, each one against the composite of the (already quantised) layers below it
and a *target* the stack must reach once that layer is added.  For a layer with
estimated alpha ``a`` and colour ``c``, over the composite ``A`` below it, with
target ``T``, the pixel equation is ``T = a * F + (1 - a) * A``.  We keep the
estimated ``a`` wherever a colour ``F`` in [0, 1] solves it, and raise ``a`` to
the smallest value that admits such an ``F`` elsewhere (the "minimum alpha"
decontamination).  Solving in 8-bit space (``A`` from the quantised lower
layers, alpha rounded *up*) keeps the residual at the rounding of ``F``: at most
half a grey level per layer that owns the pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EPS = 1e-6


def alpha_over(layers: Sequence[np.ndarray]) -> np.ndarray:
    """Composite straight-alpha RGBA layers back to front.

    Args:
        layers: ``HxWx4 uint8`` arrays, back to front; the first should be opaque.
    Returns:
        ``HxWx3 float64`` composite in [0, 1].
    """
    if not layers:
        raise ValueError("alpha_over needs at least one layer")
    h, w = layers[0].shape[:2]
    out = np.zeros((h, w, 3), dtype=np.float64)
    for rgba in layers:
        if rgba.shape != (h, w, 4) or rgba.dtype != np.uint8:
            raise ValueError(f"layer must be {h}x{w}x4 uint8, got {rgba.shape} {rgba.dtype}")
        a = rgba[..., 3:4].astype(np.float64) / 255.0
        out = rgba[..., :3].astype(np.float64) / 255.0 * a + out * (1.0 - a)
    return out


def recomposition_error(image: np.ndarray, layers: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean and max absolute error, in 8-bit grey levels, between ``image`` and its recomposition.

    Args:
        image: ``HxWx3 uint8`` photo.
        layers: ``HxWx4 uint8`` straight-alpha layers, back to front.
    Returns:
        ``(mean, max)`` of ``|composite*255 - image|`` over all pixels and channels.
    """
    diff = np.abs(alpha_over(layers) * 255.0 - image.astype(np.float64))
    return float(diff.mean()), float(diff.max())


def min_alpha(target: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Smallest alpha for which some colour in [0, 1] composites ``below`` into ``target``.

    Args:
        target, below: ``HxWx3 float`` in [0, 1].
    Returns:
        ``HxW float64`` in [0, 1].
    """
    up = np.where(target > below, (target - below) / np.maximum(1.0 - below, _EPS), 0.0)
    down = np.where(target < below, (below - target) / np.maximum(below, _EPS), 0.0)
    return np.clip(np.maximum(up, down).max(axis=-1), 0.0, 1.0)


def solve_layer(
    target: np.ndarray,
    below: np.ndarray,
    alpha: np.ndarray,
    color: np.ndarray | None,
    domain: np.ndarray,
) -> np.ndarray:
    """Solve one layer so that compositing it over ``below`` gives ``target`` inside ``domain``.

    Args:
        target: ``HxWx3 float`` in [0, 1], what the stack must show once this layer is added.
        below: ``HxWx3 float`` in [0, 1], composite of the quantised layers under this one.
        alpha: ``HxW float`` in [0, 1], the estimated alpha (object matte or shadow strength).
        color: ``HxWx3 float`` in [0, 1], estimated colour used where the layer is hidden
            behind nothing but does not own the pixel; ``None`` means black (a shadow).
        domain: ``HxW bool``, pixels this layer must make exact. Alpha is zero outside it.
    Returns:
        ``HxWx4 uint8`` straight-alpha RGBA.
    """
    h, w = alpha.shape
    out = np.zeros((h, w, 4), dtype=np.uint8)
    box = _box(domain)
    if box is None:
        return out
    sl = (slice(box[1], box[3]), slice(box[0], box[2]))  # work on the domain's box only
    target, below, dom = target[sl], below[sl], domain[sl]
    a = np.clip(alpha[sl].astype(np.float64), 0.0, 1.0) * dom
    a = np.maximum(a, min_alpha(target, below) * dom)
    # Round alpha up to the 8-bit grid so that the colour solved below still fits in [0, 1].
    a8 = np.clip(np.ceil(a * 255.0 - 1e-9), 0, 255)
    aq = a8[..., None] / 255.0
    est = 0.0 if color is None else np.clip(color[sl].astype(np.float64), 0.0, 1.0)
    solved = (target - (1.0 - aq) * below) / np.maximum(aq, _EPS)
    rgb = np.where(aq > 0, np.clip(solved, 0.0, 1.0), est)
    out[sl + (slice(0, 3),)] = np.round(rgb * 255.0).astype(np.uint8)
    out[sl + (3,)] = a8.astype(np.uint8)
    return out


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open ``(x0, y0, x1, y1)`` of the true pixels of ``mask``, or None if there are none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def opaque(rgb: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8`` (or float in [0, 1]) RGB -> ``HxWx4 uint8`` opaque RGBA."""
    if rgb.dtype != np.uint8:
        rgb = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    return np.concatenate([rgb, alpha], axis=-1)


def over(rgba: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Composite one ``HxWx4 uint8`` layer over an ``HxWx3 float`` [0, 1] image; returns float [0, 1]."""
    out = below.copy()
    box = _box(rgba[..., 3] > 0)
    if box is None:
        return out
    sl = (slice(box[1], box[3]), slice(box[0], box[2]))
    a = rgba[sl + (slice(3, 4),)].astype(np.float64) / 255.0
    out[sl] = rgba[sl + (slice(0, 3),)].astype(np.float64) / 255.0 * a + below[sl] * (1.0 - a)
    return out
