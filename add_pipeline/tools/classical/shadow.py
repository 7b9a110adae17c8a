"""Physics-based cast-shadow matte of one object.

Model: a shadow is the background seen through a dark layer of alpha ``a``, so a shadowed pixel
is ``I ~ (1 - a) * B`` for the shadow-free background ``B`` and ``a = 1 - I / B``. We estimate ``B``
near the object by normalized convolution over the non-object pixels, iterating to drop pixels
already found dark (so the reference is the *lit* surface), separately per chromaticity cluster
(wall vs floor). Candidates are pixels whose locally averaged darkening exceeds ``dark``, whose
channel ratios roughly agree (outdoors a shadow is lit by the blue sky only, so its ratios spread:
0.05-0.44 on DESOBA), and whose roughness is small relative to their darkening (a shadow multiplies
the surface's texture by a smooth factor). The shadow is the union of candidate components touching
the object's ground contact (the bottom of its mask, dilated), inside a neighbourhood scaled by the
object's size. No contact, no shadow: an object cut by the bottom of the frame gets none. A region
larger than the object is either the shadow joined to a darker surface, which a higher threshold
splits off in one step, or dark surroundings (foliage, a dark floor), which only shrink gradually
and are rejected. The matte is ``1 - I / B`` on the region, grown by a few px for soft edges,
smoothed, and zero on the object and on the other objects. On doubt the matte is empty (score 0,
``stats['found'] == 0``). Defaults and their sensitivity: ``bench/shadow_tuning.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

from add_pipeline.tools.base import ShadowExtractor, ShadowMatte, ToolError, register


@register
class PhysicsShadowExtractor(ShadowExtractor):
    """Darkening-ratio shadow matte connected to the object's ground contact.

    Args:
        dark: minimum darkening ``1 - I/B`` for a candidate pixel (times ``strictness``).
        chroma_tol: maximum spread of the per-channel ratios ``I_c / B_c`` relative to their mean.
        max_texture: a candidate's local mean deviation of darkness from its smoothed value must stay
            under this fraction of its (smoothed) darkness: relative roughness.
        max_area: a shadow larger than this multiple of the object's area (divided by
            ``strictness``) is not accepted at that threshold (see ``tighten``).
        reach: search neighbourhood around the object's box, as a fraction of its long side
            (divided by ``strictness``).
        contact: height of the ground-contact region, as a fraction of the object's height.
        min_area: smallest accepted shadow, as a fraction of the object's area (times ``strictness``).
        ref_sigma: Gaussian scale of the lit-background estimate, as a fraction of the object's long side.
        n_chroma: the lit background is estimated separately in this many chromaticity clusters, so
            that two surfaces of different colour (wall / floor) do not bleed into each other's
            reference; shadows keep chromaticity, so a shadow falls in its surface's cluster.
        work_size: the neighbourhood is analysed at most at this long side, px (speed).
        tighten: the darkening thresholds tried in turn, as multiples of ``dark``, while the region is
            larger than ``max_area``.
        split: a tighter threshold is accepted only if the region drops below this fraction of its
            area at the previous threshold in that step (a shadow splitting off a darker surface).
        frame_bottom: an object whose mask comes within this fraction of the height of the bottom
            of the frame has its ground contact outside the photo: no shadow (0 or negative: never).
        umbra: the region's mean darkening must reach this: where an object blocks the direct light
            its shadow is far darker than a surface's texture varies (DESOBA's shadows: 0.3-0.7).
    """

    name = "physics"

    def __init__(
        self,
        dark: float = 0.12,
        chroma_tol: float = 0.4,
        max_texture: float = 0.75,
        max_area: float = 1.0,
        reach: float = 0.9,
        contact: float = 0.15,
        min_area: float = 0.02,
        ref_sigma: float = 0.2,
        n_chroma: int = 3,
        work_size: int = 256,
        tighten: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0),
        frame_bottom: float = 0.01,
        split: float = 0.5,
        umbra: float = 0.25,
    ) -> None:
        self.dark = float(dark)
        self.chroma_tol = float(chroma_tol)
        self.max_texture = float(max_texture)
        self.max_area = float(max_area)
        self.reach = float(reach)
        self.contact = float(contact)
        self.min_area = float(min_area)
        self.ref_sigma = float(ref_sigma)
        self.n_chroma = int(n_chroma)
        self.work_size = int(work_size)
        self.tighten = tuple(float(f) for f in tighten)
        if not self.tighten:
            raise ToolError("physics shadow: tighten needs at least one threshold factor (1.0: the base)")
        self.frame_bottom = float(frame_bottom)
        self.umbra = float(umbra)
        self.split = float(split)

    def infer(self, image: np.ndarray, object_mask: np.ndarray, others: np.ndarray, strictness: float) -> ShadowMatte:
        h, w = image.shape[:2]
        matte = np.zeros((h, w), np.float32)
        empty = ShadowMatte(matte=matte, score=0.0, stats={"area": 0.0, "mean_strength": 0.0, "found": 0.0})
        if not object_mask.any():
            return empty
        strict = max(float(strictness), 1.0)
        ys, xs = np.nonzero(object_mask)
        ox0, oy0, ox1, oy1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        if oy1 > (1.0 - self.frame_bottom) * h:
            # Cut by the bottom of the frame: its ground contact, where a cast shadow starts, is not
            # in the photo (portraits, close-ups); dark things below it are not its shadow.
            return empty
        size = float(max(ox1 - ox0, oy1 - oy0))
        r = int(round(self.reach / strict * size))
        x0, y0, x1, y1 = max(ox0 - r, 0), max(oy0 - r, 0), min(ox1 + r, w), min(oy1 + r, h)

        # Work on the neighbourhood, downscaled to at most work_size.
        s = min(1.0, self.work_size / max(x1 - x0, y1 - y0))
        sw, sh = max(int(round((x1 - x0) * s)), 4), max(int(round((y1 - y0) * s)), 4)
        crop = cv2.resize(image[y0:y1, x0:x1], (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32) + 1.0
        obj = _resize_mask(object_mask[y0:y1, x0:x1], (sw, sh))
        oth = _resize_mask(others[y0:y1, x0:x1], (sw, sh))
        pad = max(int(round(3 * s)), 1)
        excluded = cv2.dilate((obj | oth).astype(np.uint8), np.ones((2 * pad + 1, 2 * pad + 1), np.uint8)) > 0

        lum = crop.mean(axis=2)
        sigma = max(self.ref_sigma * size * s, 2.0)
        valid = ~excluded
        dark_t = self.dark * strict
        groups = _chroma_groups(crop, valid, self.n_chroma)
        for _ in range(3):
            ref = np.zeros_like(crop)
            for gi in range(int(groups.max()) + 1):
                sel = groups == gi
                if (valid & sel).any():
                    ref[sel] = _masked_blur(crop, valid & sel, sigma)[sel]
                else:
                    ref[sel] = _masked_blur(crop, valid, sigma)[sel]
            ratio_c = crop / ref
            ratio = lum / np.maximum(ref.mean(axis=2), 1.0)
            valid = ~excluded & (ratio > 1.0 - 0.5 * dark_t)
        spread = ratio_c.std(axis=2) / np.maximum(ratio_c.mean(axis=2), 1e-3)
        darkness = np.clip(1.0 - ratio, 0.0, 1.0)
        # Shadows are smooth: decide on the locally averaged darkness and chroma spread, so that
        # dark texture (fur, foliage, print) does not pass pixel by pixel.
        smooth_dark = _masked_blur(darkness, ~excluded, 1.5)
        smooth_spread = _masked_blur(spread, ~excluded, 1.5)
        texture = np.abs(darkness - smooth_dark)
        rough = _masked_blur(texture, ~excluded, 1.5)

        # Ground contact: the bottom rows of the object's mask, dilated.
        oys = np.nonzero(obj.any(axis=1))[0]
        if oys.size == 0:
            return empty
        bottom = obj.copy()
        bottom[: max(int(oys.max() - self.contact * (oys.max() - oys.min() + 1)), 0)] = False
        k = max(int(round(0.06 * size * s)), 2) + pad
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1,) * 2)
        contact = cv2.dilate(bottom.astype(np.uint8), disk) > 0

        region = self._region(smooth_dark, smooth_spread, rough, excluded, contact, obj, dark_t, strict)
        if region is None:
            # Too small, or far larger than the caster at every threshold: dark surroundings, not its shadow.
            return empty

        # Soft edges: grow the region a little, fill the exclusion band next to the caster, smooth.
        g = max(int(round(2 * s)), 1) + 1
        grown = cv2.dilate(region.astype(np.uint8), np.ones((2 * g + 1, 2 * g + 1), np.uint8)) > 0
        soft = darkness * _smoothstep(darkness, 0.3 * dark_t, 0.6 * dark_t) * grown
        band = excluded & ~obj & ~oth
        fill = cv2.dilate(soft.astype(np.float32), np.ones((2 * pad + 3, 2 * pad + 3), np.uint8))
        near = cv2.dilate(region.astype(np.uint8), np.ones((2 * pad + 3,) * 2, np.uint8)) > 0
        soft = np.where(band & near, fill, soft)
        soft = cv2.GaussianBlur(soft.astype(np.float32), (0, 0), 0.7)
        full = cv2.resize(soft, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        matte[y0:y1, x0:x1] = np.clip(full, 0.0, 1.0)
        matte[object_mask | others] = 0.0
        matte[matte < 0.02] = 0.0

        on = matte > 0.05
        if not on.any():
            return empty
        strength = float(matte[on].mean())
        consistent = float((spread[region] < 0.5 * self.chroma_tol).mean())
        score = float(np.clip(consistent * min(strength / (2.0 * dark_t), 1.0), 0.0, 1.0))
        return ShadowMatte(matte=matte, score=score,
                           stats={"area": float(on.sum()), "mean_strength": strength, "found": 1.0})


    def _region(self, smooth_dark: np.ndarray, smooth_spread: np.ndarray, rough: np.ndarray, excluded: np.ndarray,
                contact: np.ndarray, obj: np.ndarray, dark_t: float, strict: float) -> np.ndarray | None:
        """The shadow region (``h x w bool`` at the work scale), or None.

        The candidates touching the contact, at the base darkening threshold. Where they spread far
        beyond the caster, its shadow may have joined a darker surface (grass, dirt) through a thin
        link: a cast shadow is darker than the surface around it, so a higher threshold splits it
        off, and the region drops to under ``split`` of its size in one step. Dark texture
        (foliage, grain) only shrinks gradually: None.
        """
        last = None
        for t in (dark_t * f for f in self.tighten):
            cand = (smooth_dark > t) & (smooth_spread < self.chroma_tol / strict) & ~excluded
            # Texture relative to the darkening: a shadow multiplies the surface's own texture
            # (grass, sand, wood) by a smooth factor, so its roughness grows with its darkness.
            cand &= rough < self.max_texture * smooth_dark
            _, lab, st, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
            cand = (st[:, cv2.CC_STAT_AREA] >= 4)[lab] & cand
            hit = np.unique(lab[contact & cand])
            got = np.isin(lab, hit[hit > 0])
            area = float(got.sum())
            if area < self.min_area * strict * obj.sum():
                return None  # a higher threshold only shrinks it
            if area <= self.max_area / strict * obj.sum() and (last is None or area < self.split * last):
                # An umbra: the direct light blocked, far darker on average than texture varies.
                return got if float(smooth_dark[got].mean()) >= self.umbra else None
            last = area
        return None


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to ``size = (w, h)`` (area-averaged, > 0.5)."""
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5


def _masked_blur(img: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Normalized convolution: Gaussian mean of ``img`` (HxW or HxWxC) over ``valid`` pixels only.

    Where no valid pixel is near, falls back to the median of the valid pixels."""
    if img.ndim == 2:
        return _masked_blur(img[..., None], valid, sigma)[..., 0]
    if img.shape[2] == 1:  # cv2 drops a trailing singleton channel; blur as two channels
        return _masked_blur(np.repeat(img, 2, axis=2), valid, sigma)[..., :1]
    wgt = valid.astype(np.float32)
    num = cv2.GaussianBlur(img * wgt[..., None], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(wgt, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)[..., None]
    fallback = np.median(img[valid], axis=0) if valid.any() else np.median(img.reshape(-1, img.shape[2]), axis=0)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-6), fallback).astype(np.float32)


def _chroma_groups(img: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """``HxW int`` cluster index of each pixel's rg-chromaticity (k-means fitted on ``valid`` pixels)."""
    chroma = (img[..., :2] / img.sum(axis=2, keepdims=True)).reshape(-1, 2).astype(np.float32)
    pts = chroma[valid.ravel()]
    if k <= 1 or len(pts) < 10 * k:
        return np.zeros(img.shape[:2], np.int32)
    step = max(len(pts) // 4000, 1)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-4)
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(pts[::step]), k, None, crit, 2, cv2.KMEANS_PP_CENTERS)
    d = ((chroma[:, None, :] - centres[None]) ** 2).sum(axis=2)
    return d.argmin(axis=1).reshape(img.shape[:2]).astype(np.int32)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, cubic in between."""
    t = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
