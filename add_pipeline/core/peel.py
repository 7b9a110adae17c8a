"""Pure helpers of the peel stage: clean mattes, shadow removal, and exact layer assembly.

Peeling runs front to back.  With ``R_n`` the photo and objects ``1..n`` back to
front, removing object ``k`` (support ``O``, shadow matte ``s_k`` continued under it)
first lifts the visible shadow, ``L = deshadow(R_k, s_k outside O)``, then fills the
object's place from those lit surroundings: ``R_{k-1} = L`` outside ``O`` and
``inpaint(L, O)`` inside.  The scene with the object gone but its shadow kept is
``S_k = R_k`` outside ``O`` and ``R_{k-1} * (1 - s_k)`` inside.  ``R_0`` is the
background.  Outside ``O``, ``S_k`` equals ``R_k``; outside the shadow, ``R_{k-1}``
equals ``S_k``: that is all the exact assembly needs.  :func:`assemble_layers` then solves every layer back
to front against these targets, so the stack recomposes to the photo exactly
(see :mod:`add_pipeline.core.composite`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from add_pipeline.core.composite import alpha_over, opaque, over, solve_layer

ALPHA_FLOOR = 0.02  # alpha below this is noise from the matting solver: treat as 0
ALPHA_CEIL = 0.98  # alpha above this is treated as fully opaque


def clean_alpha(alpha: np.ndarray) -> np.ndarray:
    """Snap near-0 and near-1 alpha (``HxW float`` [0, 1]) to exact 0 / 1; returns float32."""
    a = np.clip(alpha.astype(np.float32), 0.0, 1.0)
    a[a < ALPHA_FLOOR] = 0.0
    a[a > ALPHA_CEIL] = 1.0
    return a


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """Slices of the box around ``mask``'s true pixels grown by ``pad`` px, or None if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, h)),
            slice(max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, w)))


def extend_under(matte: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Continue a shadow matte under the object that hides part of it.

    The shadow extractor only sees the shadow where the object does not cover it;
    the background under the object was darkened too, so we inpaint the matte into
    the hidden region (work is limited to the box around shadow and object).

    Args:
        matte: ``HxW float32`` [0, 1] shadow strength, zero on ``hidden``.
        hidden: ``HxW bool`` object support.
    Returns:
        ``HxW float32`` [0, 1].
    """
    out = matte.astype(np.float32, copy=True)
    box = _box((matte > 0) | hidden, pad=8) if matte.any() and hidden.any() else None
    if box is None:
        return out
    m8 = np.round(np.clip(matte[box], 0, 1) * 255).astype(np.uint8)
    filled = cv2.inpaint(m8, hidden[box].astype(np.uint8), 5, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    crop = out[box]
    crop[hidden[box]] = filled[hidden[box]]
    out[box] = clean_alpha(crop)
    return out


def deshadow(image: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """Undo a black shadow layer of strength ``matte``: ``image / (1 - matte)``.

    Args:
        image: ``HxWx3 float`` [0, 1], the scene with the shadow.
        matte: ``HxW float`` [0, 1].
    Returns:
        ``HxWx3`` [0, 1] (dtype of ``image``) shadow-free estimate, clipped where the ratio
        saturates; pixels with ``matte == 0`` are returned unchanged.
    """
    out = image.copy()
    box = _box(matte > 0, pad=0)
    if box is None:
        return out
    gain = 1.0 / np.maximum(1.0 - matte[box].astype(np.float32), 1e-3)
    out[box] = np.clip(image[box] * gain[..., None], 0.0, 1.0)
    return out


def peel_targets(
    current: np.ndarray, lit: np.ndarray, filled: np.ndarray, shadow: np.ndarray, support: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two targets of one peel step (see the module docstring).

    Args:
        current: ``HxWx3 float`` [0, 1], ``R_k``.
        lit: ``current`` with the visible shadow lifted.
        filled: ``lit`` inpainted inside ``support`` (values outside are ignored).
        shadow: ``HxW float`` [0, 1] shadow matte, continued under the object.
        support: ``HxW bool`` object support.
    Returns:
        ``(S_k, R_{k-1})``, both ``HxWx3`` of ``current``'s dtype.
    """
    below = lit.copy()
    below[support] = filled[support]
    shadowed = current.copy()
    shadowed[support] = below[support] * (1.0 - shadow[support])[:, None]
    return shadowed, below


@dataclass(frozen=True)
class PeelLevel:
    """One object's share of the peel, all at canvas size.

    Attributes:
        name: object id.
        alpha: ``HxW float32`` [0, 1] cleaned object alpha.
        color: ``HxWx3 float32`` [0, 1] foreground colour estimate.
        shadow: ``HxW float32`` [0, 1] shadow strength, extended under the object.
        target: ``HxWx3 float`` [0, 1], ``R_k``: the scene with this object and all behind it.
        shadow_target: ``HxWx3 float`` [0, 1], ``S_k``: ``R_k`` with this object inpainted away.
    """

    name: str
    alpha: np.ndarray
    color: np.ndarray
    shadow: np.ndarray
    target: np.ndarray
    shadow_target: np.ndarray


@dataclass(frozen=True)
class AssembledLayer:
    """A solved layer: ``rgba`` is ``HxWx4 uint8``; ``kind`` background|shadow|object."""

    name: str
    kind: str
    rgba: np.ndarray
    parent: str | None


def assemble_layers(background: np.ndarray, levels: list[PeelLevel]) -> list[AssembledLayer]:
    """Solve the layer stack back to front so it recomposes to ``levels[-1].target`` exactly.

    Args:
        background: ``HxWx3 float`` [0, 1], ``R_0``.
        levels: back to front.
    Returns:
        background, then per object its shadow layer (if it has any shadow) and its object layer.
    """
    bg = opaque(background)
    out = [AssembledLayer("background", "background", bg, None)]
    below = alpha_over([bg])
    for lv in levels:
        support = lv.shadow > 0
        if support.any():
            rgba = solve_layer(lv.shadow_target, below, lv.shadow, None, support)
            out.append(AssembledLayer(f"{lv.name}_shadow", "shadow", rgba, lv.name))
            below = over(rgba, below)
        rgba = solve_layer(lv.target, below, lv.alpha, lv.color, lv.alpha > 0)
        out.append(AssembledLayer(lv.name, "object", rgba, None))
        below = over(rgba, below)
    return out
