"""Deterministic synthetic scenes whose layers are known exactly.

A scene is a textured, shadow-free background (a "wall" above a horizon and a
"ground" below it), and a few textured objects with soft alpha edges standing on
the ground, each casting a soft shadow sideways/back along one light direction.
The photo is *defined* as the straight-alpha composite of the quantised layers,
so ``round(alpha_over(scene.layers()) * 255) == scene.image`` holds exactly.

Used by the tests (known answers for every tool) and as a benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from add_pipeline.core.composite import alpha_over
from add_pipeline.core.types import Box, bbox_of

_MARGIN = 4  # px kept free between an object (soft edge included) and the canvas border


@dataclass(frozen=True)
class SceneObject:
    """One object of a synthetic scene, all at full canvas size.

    Attributes:
        alpha: ``HxW float32`` in [0, 1], the object's full (unoccluded) matte, quantised to 1/255.
        color: ``HxWx3 float32`` in [0, 1], straight colour (0 where ``alpha == 0``), quantised to 1/255.
        shadow: ``HxW float32`` in [0, 1], strength of the black shadow layer, quantised to 1/255.
        bbox: tight half-open box of ``alpha > 0``.
    """

    alpha: np.ndarray
    color: np.ndarray
    shadow: np.ndarray
    bbox: Box


@dataclass(frozen=True)
class Scene:
    """A synthetic photo and its exact decomposition.

    Attributes:
        image: ``HxWx3 uint8``, the rounded composite of :meth:`layers`.
        background: ``HxWx3 uint8``, shadow-free and object-free.
        objects: back to front.
    """

    image: np.ndarray
    background: np.ndarray
    objects: list[SceneObject]

    def layers(self) -> list[np.ndarray]:
        """``HxWx4 uint8`` RGBA layers back to front: the opaque background, then for each object
        its black shadow layer (alpha = shadow strength; all zero when the scene has no shadows)
        and its object layer."""
        h, w = self.background.shape[:2]
        out = [np.concatenate([self.background, np.full((h, w, 1), 255, np.uint8)], axis=-1)]
        for obj in self.objects:
            shadow = np.zeros((h, w, 4), np.uint8)
            shadow[..., 3] = _to_u8(obj.shadow)
            out.append(shadow)
            out.append(np.concatenate([_to_u8(obj.color), _to_u8(obj.alpha)[..., None]], axis=-1))
        return out

    def visible_alpha(self, index: int) -> np.ndarray:
        """``HxW float32`` [0, 1]: alpha of object ``index`` attenuated by the objects in front of it."""
        vis = self.objects[index].alpha.astype(np.float64)
        for obj in self.objects[index + 1 :]:
            vis = vis * (1.0 - obj.alpha)
        return vis.astype(np.float32)


def make_scene(
    seed: int, size: tuple[int, int] = (256, 256), n_objects: int = 1, shadows: bool = True
) -> Scene:
    """Build the scene of ``seed``: same seed and arguments, same arrays.

    Args:
        seed: any int.
        size: ``(height, width)``, each at least 64.
        n_objects: number of objects (>= 0); they may overlap partially, back to front by
            ground contact (lower contact = nearer).
        shadows: whether objects cast shadows.
    Returns:
        a :class:`Scene`.
    """
    h, w = (int(v) for v in size)
    if h < 64 or w < 64:
        raise ValueError(f"make_scene: size must be at least 64x64, got {size}")
    if n_objects < 0:
        raise ValueError(f"make_scene: n_objects must be >= 0, got {n_objects}")
    rng = np.random.default_rng(seed)
    horizon = int(h * rng.uniform(0.35, 0.5))
    bg = _background(rng, h, w, horizon)
    bg_u8 = _to_u8(bg)
    bg_q = bg_u8.astype(np.float32) / 255.0

    # One light for the scene: shadows are sheared sideways by `shear` and squashed by `squash`.
    shear = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2)
    squash = rng.uniform(0.25, 0.5)

    shapes = _place_objects(rng, h, w, horizon, n_objects)
    objects = []
    for mask, contact_y in shapes:
        alpha = _q(_soft_alpha(mask, rng.uniform(2.0, 6.0)))
        color = _q(_object_color(rng, bg_q, alpha) * (alpha > 0)[..., None])
        if shadows:
            shadow = _q(rng.uniform(0.3, 0.7) * _cast_shadow(mask, contact_y, shear, squash))
        else:
            shadow = np.zeros((h, w), np.float32)
        objects.append(SceneObject(alpha=alpha, color=color, shadow=shadow, bbox=bbox_of(alpha > 0)))

    scene = Scene(image=bg_u8, background=bg_u8, objects=objects)
    image = np.round(alpha_over(scene.layers()) * 255.0).astype(np.uint8)
    return Scene(image=image, background=bg_u8, objects=objects)


# ---------------------------------------------------------------- helpers


def _to_u8(x: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> uint8 by rounding."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _q(x: np.ndarray) -> np.ndarray:
    """Quantise a float array in [0, 1] to the 8-bit grid, as float32."""
    return (_to_u8(x).astype(np.float32) / 255.0).astype(np.float32)


def _noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Band-limited noise: blurred white noise, ``HxW float64`` with unit std."""
    n = cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return n / max(float(n.std()), 1e-9)


def _background(rng: np.random.Generator, h: int, w: int, horizon: int) -> np.ndarray:
    """Wall above ``horizon`` and ground below: gradients, band-limited noise, stripes, soft blobs.

    Returns ``HxWx3 float64`` in [0, 1]."""
    scale = min(h, w) / 256.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def palette() -> np.ndarray:
        hsv = np.array([[[rng.uniform(0, 180), rng.uniform(40, 140), rng.uniform(120, 200)]]], np.uint8)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64) / 255.0

    wall = palette() + (palette() - palette()) * 0.3 * (yy / h)[..., None]
    ground_a, ground_b = palette(), palette()
    t = np.clip((yy - horizon) / max(h - horizon, 1), 0.0, 1.0)[..., None]
    ground = ground_a * (1 - 0.4 * t) + ground_b * 0.4 * t
    is_ground = cv2.GaussianBlur((yy >= horizon).astype(np.float64), (0, 0), 1.5 * scale)[..., None]
    img = wall * (1 - is_ground) + ground * is_ground
    img = img * (1.0 + 0.08 * (xx / w - 0.5))[..., None]  # gentle horizontal light falloff

    # Stripes: planks on the ground, a faint pattern on the wall.
    ang = rng.uniform(0, np.pi)
    period = rng.uniform(18, 50) * scale
    stripes = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
    img = img * (1.0 + 0.035 * stripes * (0.4 + 0.6 * is_ground[..., 0]))[..., None]

    # Soft low-contrast blobs.
    for _ in range(int(rng.integers(3, 6))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(10, 40) * scale, rng.uniform(6, 25) * scale
        blob = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2))
        img = img * (1.0 + rng.uniform(-0.08, 0.08, size=3) * blob[..., None])

    lum = 0.035 * _noise(rng, h, w, 6 * scale) + 0.02 * _noise(rng, h, w, 1.2 * scale)
    chroma = np.stack([_noise(rng, h, w, 4 * scale) for _ in range(3)], axis=-1)
    img = img * (1.0 + lum[..., None] + 0.012 * chroma)
    return np.clip(img, 0.0, 1.0)


def _radius(theta: np.ndarray, amp: np.ndarray, k: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Relative radius of a smooth random blob at angles ``theta`` (a few low harmonics)."""
    return 1.0 + (amp * np.cos(np.multiply.outer(theta, k) + phase)).sum(axis=-1)


def _shape_extent(radius: np.ndarray, thetas: np.ndarray, rx: float, ry: float, flat: float) -> np.ndarray:
    """``(xmin, xmax, ymin, ymax)`` of a polar shape relative to its centre."""
    xs = radius * rx * np.cos(thetas)
    ys = np.minimum(radius * ry * np.sin(thetas), flat * ry)
    return np.array([xs.min(), xs.max(), ys.min(), ys.max()])


def _place_objects(
    rng: np.random.Generator, h: int, w: int, horizon: int, n: int
) -> list[tuple[np.ndarray, int]]:
    """Random smooth blobs standing on the ground, as ``(HxW bool mask, contact row)``, back to front.

    Each object stays ``_MARGIN`` px inside the canvas and keeps >= 60% of its area visible."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    thetas = np.linspace(-np.pi, np.pi, 721)
    placed: list[tuple[np.ndarray, int]] = []
    scale = 1.0 / np.sqrt(max(n, 1)) ** 0.5
    for _ in range(n):
        for _attempt in range(100):
            rx = rng.uniform(0.08, 0.16) * w * scale
            ry = rng.uniform(0.10, 0.22) * h * scale
            k = np.arange(2, 6)
            amp = rng.uniform(0.0, 0.2, size=k.size) / k
            phase = rng.uniform(0, 2 * np.pi, size=k.size)
            flat = rng.uniform(0.6, 0.85) if rng.random() < 0.5 else 2.0

            x0, x1, y0, y1 = _shape_extent(_radius(thetas, amp, k, phase), thetas, rx, ry, flat)
            lo_contact = horizon + 0.2 * (h - horizon)
            hi_contact = h - _MARGIN - 4
            if y1 - y0 > hi_contact - _MARGIN - 4 or lo_contact >= hi_contact:
                continue
            contact = rng.uniform(max(lo_contact, _MARGIN + 4 + (y1 - y0)), hi_contact)
            cy = contact - y1
            lo_x, hi_x = _MARGIN + 4 - x0, w - _MARGIN - 4 - x1
            if lo_x >= hi_x:
                continue
            cx = rng.uniform(lo_x, hi_x)
            u, v = (xx - cx) / rx, (yy - cy) / ry
            mask = (np.hypot(u, v) <= _radius(np.arctan2(v, u), amp, k, phase)) & (v <= flat)
            if mask.sum() < 50 or not _visible_enough(mask, placed):
                continue
            placed.append((mask, int(np.nonzero(mask.any(axis=1))[0].max())))
            break
        else:
            raise RuntimeError(f"make_scene: could not place {n} objects on a {w}x{h} canvas")
    placed.sort(key=lambda m: m[1])  # back to front: farther (higher) contact first
    return placed


def _visible_enough(mask: np.ndarray, placed: list[tuple[np.ndarray, int]]) -> bool:
    """True when every object, new one included, keeps >= 60% of its area whichever ends in front."""
    for other, _ in placed:
        inter = (mask & other).sum()
        if inter > 0.4 * min(mask.sum(), other.sum()):
            return False
    return True


def _soft_alpha(mask: np.ndarray, width: float) -> np.ndarray:
    """Soft matte from a hard mask: smoothstep of the signed distance over ``width`` px."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    signed = np.where(mask, inside - 0.5, 0.5 - outside)
    t = np.clip(signed / width + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _object_color(rng: np.random.Generator, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Textured colour ``HxWx3 float64`` in [0, 1], base colour far (in Lab) from the background around it."""
    h, w = alpha.shape
    ring = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    ref = cv2.cvtColor(bg[ring].reshape(-1, 1, 3).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
    # The first random colour at least 45 Lab units from 90% of the surroundings (else the farthest).
    best, best_d = np.zeros(3), -1.0
    for _ in range(40):
        hsv = np.array([[[rng.uniform(0, 180), rng.uniform(110, 240), rng.uniform(70, 240)]]], np.uint8)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[0, 0]
        d = float(np.percentile(np.linalg.norm(ref - lab, axis=1), 10))
        if d > best_d:
            best, best_d = rgb[0, 0].astype(np.float64), d
        if d >= 45.0:
            break
    yy = np.mgrid[0:h, 0:w][0].astype(np.float64)
    ys = np.nonzero(alpha.any(axis=1))[0]
    top, bot = ys.min(), ys.max()
    shade = 1.05 - 0.15 * np.clip((yy - top) / max(bot - top, 1), 0, 1)
    tex = 1.0 + 0.07 * _noise(rng, h, w, 3.0) + 0.03 * _noise(rng, h, w, 1.0)
    return np.clip(best * (shade * tex)[..., None], 0.0, 1.0)


def _cast_shadow(mask: np.ndarray, contact_y: int, shear: float, squash: float) -> np.ndarray:
    """Shadow matte ``HxW float64`` in [0, 1] of a standing cut-out lit along (shear, squash).

    A point at height ``t`` above the contact row lands ``shear * t`` px sideways and ``squash * t``
    px back; blur grows with the distance from the contact. A small contact shadow sits under the
    object's base."""
    h, w = mask.shape
    ys = np.nonzero(mask.any(axis=1))[0]
    height = float(contact_y - ys.min() + 1)
    m = mask.astype(np.float32)
    fwd = np.float32([[1.0, -shear, shear * contact_y], [0.0, squash, (1.0 - squash) * contact_y]])
    proj = cv2.warpAffine(m, fwd, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    sharp = cv2.GaussianBlur(proj, (0, 0), 1.0)
    soft = cv2.GaussianBlur(proj, (0, 0), 1.0 + 0.05 * height)
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    t = np.clip((contact_y - yy) / (squash * height), 0.0, 1.0)
    cast = (1.0 - t) * sharp + t * soft
    # Contact shadow: a flat ellipse under the bottom rows of the object.
    base = mask[max(contact_y - 3, 0) : contact_y + 1].any(axis=0)
    xs = np.nonzero(base)[0]
    cx, half = (xs.min() + xs.max()) / 2.0, max((xs.max() - xs.min()) / 2.0 + 0.08 * height, 3.0)
    contact = np.zeros((h, w), np.float32)
    cv2.ellipse(contact, (int(round(cx)), int(contact_y)), (int(round(half)), max(int(0.05 * height), 2)),
                0, 0, 360, 1.0, -1)
    contact = cv2.GaussianBlur(contact, (0, 0), 1.5)
    return np.clip(np.maximum(cast, contact), 0.0, 1.0).astype(np.float64)
