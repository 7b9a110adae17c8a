"""Cut-and-paste training scenes from real photos, with layers known exactly.

Why: the composed shards hold only the few objects that the pipeline curated from a handful of
photos, so a network trained on them learns *those objects* and, on a new photo, marks whatever
is salient (a face, a hat, a cup that belongs to the background) instead of what was pasted.
These scenes decouple the two: the background is a random view of a real photo, objects and all
(its real objects stay background), and each pasted object is a random shape filled with a
texture cut from a real photo, softly matted, partly colour-harmonised and casting a shadow.
Appearance, shape and background vary independently, so "what is a layer" has to be learnt from
the evidence a layer leaves (its boundary, its shadow, its mismatch with the surroundings).

Shapes are the smooth standing blobs of :func:`~add_pipeline.core.synthetic.make_scene` with a
band-limited noise added to their signed distance, so outlines are irregular; shadows use the
same standing cut-out projection.  The photo is the rounded composite of the quantised layers,
exactly as in :mod:`~add_pipeline.core.synthetic`, so the shards are exact ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from add_pipeline.compose.render import harmonize
from add_pipeline.core.composite import alpha_over
from add_pipeline.core.synthetic import (
    Scene,
    SceneObject,
    _cast_shadow,
    _noise,
    _place_objects,
    _q,
    _soft_alpha,
    _to_u8,
)
from add_pipeline.core.types import bbox_of

_MARGIN = 4


def load_pool(paths: Sequence[str | Path], max_side: int = 512) -> list[np.ndarray]:
    """Read photos for :func:`make_cutpaste_scene` as ``HxWx3 uint8`` RGB, long side <= ``max_side``.

    Grey images become three equal channels; an alpha channel is composited over white.

    Raises:
        ValueError: a file cannot be read as an image (the message names it), or it is
            smaller than 64 px on a side.
    """
    pool = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"{p}: not a readable image")
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        elif img.shape[2] == 4:
            a = img[..., 3:4].astype(np.float32) / 255.0
            img = np.round(img[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        else:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
        if img.dtype != np.uint8:
            img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        h, w = img.shape[:2]
        if min(h, w) < 64:
            raise ValueError(f"{p}: {w}x{h} is too small for a texture pool (needs >= 64 px a side)")
        s = max_side / max(h, w)
        if s < 1.0:
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        pool.append(np.ascontiguousarray(img))
    return pool


def load_cutouts(paths: Sequence[str | Path], max_side: int = 256, min_side: int = 48
                 ) -> tuple[list[np.ndarray], list[str]]:
    """Read object cut-outs (PNGs with an alpha channel) for :func:`make_cutpaste_scene`.

    Each is cropped to its alpha's bounding box and shrunk to long side <= ``max_side``.
    Returns ``(cutouts, rejects)``: ``HxWx4 uint8`` RGBA arrays (straight colour, alpha 0..255) and,
    for every file that cannot be used, one line ``"PATH: reason"`` (unreadable, no alpha channel,
    nothing opaque, smaller than ``min_side`` px on its long side); a bad file loses nothing else.
    """
    cutouts: list[np.ndarray] = []
    rejects: list[str] = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            rejects.append(f"{p}: not a readable image")
            continue
        if img.ndim != 3 or img.shape[2] != 4:
            rejects.append(f"{p}: no alpha channel, so no object outline")
            continue
        if img.dtype != np.uint8:
            img = (img.astype(np.float32) * (255.0 / np.iinfo(img.dtype).max)).round().astype(np.uint8)
        solid = img[..., 3] >= 128
        if not solid.any():
            rejects.append(f"{p}: nothing opaque (alpha < 0.5 everywhere)")
            continue
        ys, xs = np.nonzero(img[..., 3] > 0)
        img = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        h, w = img.shape[:2]
        if max(h, w) < min_side:
            rejects.append(f"{p}: {w}x{h} is smaller than {min_side} px on its long side")
            continue
        s = max_side / max(h, w)
        if s < 1.0:
            img = cv2.resize(img, (max(round(w * s), 1), max(round(h * s), 1)), interpolation=cv2.INTER_AREA)
        rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        cutouts.append(np.ascontiguousarray(rgba))
    return cutouts, rejects


def _view(rng: np.random.Generator, photo: np.ndarray, h: int, w: int, min_area: float) -> np.ndarray:
    """A random crop of ``photo`` (>= ``min_area`` of it, aspect of ``h:w``) resized to ``HxWx3 uint8``."""
    ph, pw = photo.shape[:2]
    area = rng.uniform(min_area, 1.0) * ph * pw
    ch = int(min(ph, np.sqrt(area * h / w)))
    cw = int(min(pw, ch * w / h))
    ch = max(int(cw * h / w), 8)
    ch, cw = min(ch, ph), max(min(cw, pw), 8)
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    interp = cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR
    out = cv2.resize(crop, (w, h), interpolation=interp)
    return out[:, ::-1].copy() if rng.random() < 0.5 else out


def _roughen(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Irregular outline: noise of a few px added to the signed distance; the largest part is kept."""
    h, w = mask.shape
    m = mask.astype(np.uint8)
    signed = cv2.distanceTransform(m, cv2.DIST_L2, 5) - cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    amp = rng.uniform(0.0, 6.0) * min(h, w) / 256.0
    rough = signed + amp * _noise(rng, h, w, rng.uniform(2.0, 8.0) * min(h, w) / 256.0) > 0
    inner = np.zeros_like(rough)
    inner[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN] = True
    rough &= inner
    n, labels, stats, _ = cv2.connectedComponentsWithStats(rough.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    out = labels == best
    return out if out.sum() >= 50 else mask


def _fit_cutout(rng: np.random.Generator, cutout: np.ndarray, blob: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """Put ``cutout`` (``hxwx4 uint8``) where ``blob`` (``HxW bool``) stands: the same height (its
    aspect kept, width clipped to the canvas), the same contact row, centred on it, mirrored half the
    time.  Returns ``(alpha HxW float32 in [0, 1], colour HxWx3 float32 in [0, 1])`` or None when the
    result is too small (< 50 px at alpha >= 0.5)."""
    h, w = blob.shape
    ys, xs = np.nonzero(blob)
    bh = int(ys.max() - ys.min() + 1)
    ch, cw = cutout.shape[:2]
    s = min(bh / ch, (w - 2 * _MARGIN) / cw, (ys.max() + 1 - _MARGIN) / ch)
    nh, nw = max(int(round(ch * s)), 1), max(int(round(cw * s)), 1)
    interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LINEAR
    small = cv2.resize(cutout, (nw, nh), interpolation=interp)
    if rng.random() < 0.5:
        small = small[:, ::-1]
    y1 = int(ys.max()) + 1
    x0 = int(np.clip(round((xs.min() + xs.max()) / 2 - nw / 2), _MARGIN, w - _MARGIN - nw))
    y0 = y1 - nh
    alpha = np.zeros((h, w), np.float32)
    color = np.zeros((h, w, 3), np.float32)
    alpha[y0:y1, x0 : x0 + nw] = small[..., 3].astype(np.float32) / 255.0
    color[y0:y1, x0 : x0 + nw] = small[..., :3].astype(np.float32) / 255.0
    if (alpha >= 0.5).sum() < 50:
        return None
    return alpha, color


def make_cutpaste_scene(seed: int, backgrounds: Sequence[np.ndarray], textures: Sequence[np.ndarray] = (),
                        size: tuple[int, int] = (256, 256), n_objects: int = 1, shadow_p: float = 0.75,
                        cutouts: Sequence[np.ndarray] = ()) -> Scene:
    """Build the scene of ``seed``: same arguments, same arrays.

    Args:
        seed: any int.
        backgrounds: ``HxWx3 uint8`` RGB photos (see :func:`load_pool`), at least one; the
            background is a random view of one of them.
        textures: more photos to cut object textures from, besides ``backgrounds``.
        size: ``(height, width)``, each at least 64.
        n_objects: pasted objects (>= 0), back to front by ground contact, each >= 60% visible
            (as blobs; a cut-out put in a blob's place may cover a little more).
        shadow_p: probability that an object casts a shadow (strength 0.25..0.7).
        cutouts: real object cut-outs, ``hxwx4 uint8`` RGBA (see :func:`load_cutouts`).  When
            given, every object is one of them (its own outline, soft alpha and colours) standing
            where a blob was placed; when empty, objects are textured blobs (the same scenes as before).
    Returns:
        a :class:`~add_pipeline.core.synthetic.Scene` whose ``image`` is the rounded composite
        of its layers; its background is a view of a real photo.
    """
    h, w = (int(v) for v in size)
    if h < 64 or w < 64:
        raise ValueError(f"make_cutpaste_scene: size must be at least 64x64, got {size}")
    if not backgrounds:
        raise ValueError("make_cutpaste_scene: no background photos")
    pool = [*backgrounds, *textures]
    if n_objects < 0:
        raise ValueError(f"make_cutpaste_scene: n_objects must be >= 0, got {n_objects}")
    rng = np.random.default_rng(seed)
    bg_index = int(rng.integers(len(backgrounds)))
    bg_u8 = _view(rng, backgrounds[bg_index], h, w, 0.3)
    horizon = int(h * rng.uniform(0.2, 0.5))
    shear = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.2)
    squash = rng.uniform(0.2, 0.5)
    objects = []
    for mask, _contact in _place_objects(rng, h, w, horizon, n_objects):
        fitted = _fit_cutout(rng, cutouts[int(rng.integers(len(cutouts)))], mask) if cutouts else None
        if fitted is not None:
            alpha, color = _q(fitted[0]), fitted[1]
            mask = alpha >= 0.5
            box = bbox_of(alpha > 0)
        else:
            mask = _roughen(rng, mask)
            alpha = _q(_soft_alpha(mask, rng.uniform(0.8, 5.0)))
            box = bbox_of(alpha > 0)
            x0, y0, x1, y1 = box
            # A quarter of the textures come from the background's own photo (the hardest case).
            src = pool[bg_index] if rng.random() < 0.25 else pool[int(rng.integers(len(pool)))]
            tex = _view(rng, src, y1 - y0, x1 - x0, 0.02).astype(np.float32) / 255.0
            color = np.zeros((h, w, 3), np.float32)
            color[y0:y1, x0:x1] = tex
        contact_y = int(np.nonzero(mask.any(axis=1))[0].max())
        color = harmonize(color, alpha, bg_u8, float(rng.uniform(0.0, 0.7)))
        color = _q(color * (alpha > 0)[..., None])
        if rng.random() < shadow_p:
            shadow = _q(rng.uniform(0.25, 0.7) * _cast_shadow(mask, contact_y, shear, squash))
        else:
            shadow = np.zeros((h, w), np.float32)
        objects.append(SceneObject(alpha=alpha, color=color, shadow=shadow, bbox=box))
    scene = Scene(image=bg_u8, background=bg_u8, objects=objects)
    image = _to_u8(alpha_over(scene.layers()))
    return Scene(image=image, background=bg_u8, objects=objects)
