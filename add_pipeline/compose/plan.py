"""What a composition is made of (:class:`CompositionPlan`), its bounds, and the rules sampler.

Geometry: an object asset is placed by mapping its contact centre (crop frame) to
``(x, contact_y)`` on the canvas, scaled by ``scale`` (and mirrored if ``flip``).
Perspective model: an object's height is ``rho * (contact_y - horizon + pad)`` with
``pad = depth_pad_frac * H``; one ``rho`` per composition (jittered per object), so
objects lower in the frame are larger.  The plan is checked against the asset
library and the settings before it is rendered (:meth:`CompositionPlan.check_against`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from add_pipeline.compose.assets import AssetLibrary, BackgroundAsset, ObjectAsset


class ComposeSettings(BaseModel):
    """Composition constraints and ranges: params of the ``audit`` tool card (the auditor checks them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_objects: int = Field(default=1, ge=1, le=4)
    max_objects: int = Field(default=3, ge=1, le=4)
    min_height_frac: float = Field(default=0.12, gt=0, lt=1, description="object height / canvas height")
    max_height_frac: float = Field(default=0.6, gt=0, le=1)
    min_scale: float = Field(default=0.3, gt=0)
    max_scale: float = Field(default=2.0, gt=0)
    depth_pad_frac: float = Field(default=0.15, ge=0, description="perspective pad, share of H (module doc)")
    perspective_tolerance: float = Field(default=1.6, ge=1, description="max ratio of objects' rho")
    margin_px: int = Field(default=2, ge=0, description="objects keep this far from every border")
    max_box_overlap: float = Field(default=0.3, ge=0, le=1, description="sampler: max share of a box covered")
    min_visible: float = Field(default=0.6, ge=0, le=1, description="min visible share of each object's alpha")
    min_shadow_contact: float = Field(default=0.5, ge=0, le=1, description="min shadow mass touching the contact")
    contact_tolerance_px: float = Field(default=2.0, ge=0, description="max |rendered - planned contact row|")
    recomposition_max: float = Field(default=1.0, ge=0, description="max abs recomposition error, 8-bit levels")
    # Ranges are pairs of scalars: tool parameters must be hashable (a tool is cached per parameter set).
    shadow_strength_min: float = Field(default=0.3, ge=0, le=1, description="cast shadow strength range")
    shadow_strength_max: float = Field(default=0.65, ge=0, le=1)
    harmonize_min: float = Field(default=0.2, ge=0, le=1, description="colour harmonisation strength range")
    harmonize_max: float = Field(default=0.5, ge=0, le=1)
    max_attempts: int = Field(default=2, ge=0, le=5, description="re-plans after the first attempt")

    @model_validator(mode="after")
    def _ranges(self) -> ComposeSettings:
        for name in ("shadow_strength", "harmonize"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}_min must be <= {name}_max, got {(lo, hi)}")
        if self.min_objects > self.max_objects or self.min_height_frac >= self.max_height_frac:
            raise ValueError("min_objects <= max_objects and min_height_frac < max_height_frac are required")
        return self

    @property
    def shadow_strength(self) -> tuple[float, float]:
        return self.shadow_strength_min, self.shadow_strength_max

    @property
    def harmonize(self) -> tuple[float, float]:
        return self.harmonize_min, self.harmonize_max


class Light(BaseModel):
    """The shadow of a point at height ``t`` above its contact lands at ``(dx * t, dy * t)`` from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dx: float = Field(ge=-2.0, le=2.0)
    dy: float = Field(ge=-1.0, le=1.0, description="< 0: shadows fall back (up in the image)")


class Placement(BaseModel):
    """One object of a composition."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    asset_id: str = Field(min_length=1, max_length=300)
    x: float = Field(description="canvas x of the object's contact centre, px")
    contact_y: float = Field(description="canvas row of the object's contact, px")
    scale: float = Field(gt=0.0, le=8.0)
    flip: bool = False
    shadow: Literal["own", "cast", "none"] = Field(default="cast", description="own: the asset's extracted shadow")


class CompositionPlan(BaseModel):
    """Background, objects (back to front once :meth:`ordered`), light, shadow strength, harmonisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    background: str = Field(min_length=1, max_length=300)
    objects: list[Placement] = Field(min_length=1, max_length=4)
    light: Light
    shadow_strength: float = Field(ge=0.0, le=1.0)
    harmonize: float = Field(ge=0.0, le=1.0)
    notes: str = Field(default="", max_length=300)

    @model_validator(mode="after")
    def _distinct(self) -> CompositionPlan:
        ids = [p.asset_id for p in self.objects]
        if len(set(ids)) != len(ids):
            raise ValueError("each object asset may be used once per composition")
        return self

    def ordered(self) -> CompositionPlan:
        """The same plan with objects back to front (by contact row; stable)."""
        return self.model_copy(update={"objects": sorted(self.objects, key=lambda p: p.contact_y)})

    def check_against(self, lib: AssetLibrary, s: ComposeSettings) -> None:
        """Raise ``ValueError`` listing every problem: unknown ids, numbers out of range, bad geometry."""
        bg = lib.backgrounds.get(self.background)
        if bg is None:
            raise ValueError(f"unknown background {self.background!r}")
        errors = []
        if not s.min_objects <= len(self.objects) <= s.max_objects:
            errors.append(f"{len(self.objects)} objects, expected {s.min_objects}..{s.max_objects}")
        for name in ("shadow_strength", "harmonize"):
            lo, hi = getattr(s, name)
            if not lo <= getattr(self, name) <= hi:
                errors.append(f"{name}={getattr(self, name):.3g} outside [{lo}, {hi}]")
        for p in self.objects:
            obj = lib.objects.get(p.asset_id)
            if obj is None:
                errors.append(f"unknown object {p.asset_id!r}")
                continue
            errors += [f"{p.asset_id}: {e}" for e in placement_errors(obj, p, bg, s)]
        rhos = [perspective_rho(lib.objects[p.asset_id].object_height * p.scale, p.contact_y, bg.horizon_y,
                                bg.height, s) for p in self.objects if p.asset_id in lib.objects]
        if rhos and max(rhos) > s.perspective_tolerance * min(rhos):
            errors.append(f"perspective: object size per depth varies {max(rhos) / min(rhos):.2f}x > "
                          f"{s.perspective_tolerance} (lower objects must be larger)")
        if errors:
            raise ValueError("; ".join(errors))


def placed_object_box(obj: ObjectAsset, p: Placement) -> tuple[float, float, float, float]:
    """Canvas extent ``(x0, y0, x1, y1)`` (pixel centres of the outermost alpha > 0 pixels)."""
    bx0, by0, bx1, by1 = obj.object_box
    xs = [(u - obj.contact_cx) * (-1.0 if p.flip else 1.0) * p.scale + p.x for u in (bx0, bx1 - 1)]
    ys = [(v - obj.contact_y) * p.scale + p.contact_y for v in (by0, by1 - 1)]
    return min(xs), min(ys), max(xs), max(ys)


def placement_errors(obj: ObjectAsset, p: Placement, bg: BackgroundAsset, s: ComposeSettings) -> list[str]:
    """Problems of one placement on ``bg`` (empty when it is fine)."""
    w, h, m = bg.width, bg.height, s.margin_px
    errors = []
    if not s.min_scale <= p.scale <= s.max_scale:
        errors.append(f"scale={p.scale:.3g} outside [{s.min_scale}, {s.max_scale}]")
    if not bg.horizon_y <= p.contact_y <= h - 1 - m:
        errors.append(f"contact_y={p.contact_y:.1f} not on the ground [{bg.horizon_y}, {h - 1 - m}]")
    height = obj.object_height * p.scale / h
    if not s.min_height_frac <= height <= s.max_height_frac:
        errors.append(f"height {height:.3f} of the canvas outside [{s.min_height_frac}, {s.max_height_frac}]")
    x0, y0, x1, y1 = placed_object_box(obj, p)
    if x0 < m or y0 < m or x1 > w - 1 - m or y1 > h - 1 - m:
        errors.append(f"box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) leaves the {w}x{h} canvas")
    if p.shadow == "own" and obj.shadow_png is None:
        errors.append("shadow 'own' but the asset has no shadow")
    return errors


def perspective_rho(height_px: float, contact_y: float, horizon: float, h: int, s: ComposeSettings) -> float:
    """``rho`` of the perspective model (module doc) for an object of ``height_px`` standing at ``contact_y``."""
    return height_px / max(contact_y - horizon + s.depth_pad_frac * h, 1.0)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Share of box ``a`` covered by box ``b``."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1.0)
    return iw * ih / area


def sample_plan(lib: AssetLibrary, s: ComposeSettings, rng: np.random.Generator,
                max_objects: int | None = None) -> CompositionPlan:
    """Draw a plan honouring every constraint of :meth:`CompositionPlan.check_against` (rules policy).

    Raises ``ValueError`` when no object fits any placement tried on the drawn background.
    """
    bg = lib.backgrounds[sorted(lib.backgrounds)[int(rng.integers(len(lib.backgrounds)))]]
    w, h, hz = bg.width, bg.height, bg.horizon_y
    ids = sorted(lib.objects)
    top_n = min(max_objects or s.max_objects, s.max_objects, len(ids))
    k = int(rng.integers(min(s.min_objects, top_n), top_n + 1))
    chosen = [ids[i] for i in rng.choice(len(ids), size=k, replace=False)]
    if bg.light_dx is not None and bg.light_dy is not None:
        light = Light(dx=float(np.clip(bg.light_dx, -2, 2)), dy=float(np.clip(bg.light_dy, -1, 1)))
    else:
        light = Light(dx=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0)), dy=-float(rng.uniform(0.25, 0.5)))
    # One rho per composition: the tallest allowed object stands on the bottom row at most.
    rho_hi = s.max_height_frac * h / (h - hz + s.depth_pad_frac * h)
    rho0 = rng.uniform(0.45, 0.9) * rho_hi
    placed: list[Placement] = []
    boxes: list[tuple[float, float, float, float]] = []
    for aid in chosen:
        obj = lib.objects[aid]
        for _ in range(40):
            cy = float(rng.uniform(hz, h - 1 - s.margin_px))
            rho = rho0 * rng.uniform(0.9, 1.1)
            scale = float(rho * (cy - hz + s.depth_pad_frac * h) / obj.object_height)
            if not s.min_scale <= scale <= s.max_scale:
                continue  # clipping the scale would break the perspective: try another ground row
            flip = bool(rng.random() < 0.5)
            shadow: Literal["own", "cast", "none"] = "cast"
            if obj.shadow_dx is not None and obj.shadow_dy is not None and obj.shadow_dy * light.dy > 0:
                shadow, flip = "own", (obj.shadow_dx * light.dx < 0)  # mirror the asset so its shadow agrees
            x = float(rng.uniform(0, w))
            p = Placement(asset_id=aid, x=x, contact_y=cy, scale=scale, flip=flip, shadow=shadow)
            bx = placed_object_box(obj, p)
            lo, hi = x - bx[0] + s.margin_px, w - 1 - s.margin_px - (bx[2] - x)
            if lo > hi:
                continue
            p = p.model_copy(update={"x": float(rng.uniform(lo, hi))})
            bx = placed_object_box(obj, p)
            if placement_errors(obj, p, bg, s):
                continue
            if any(_overlap(bx, o) > s.max_box_overlap or _overlap(o, bx) > s.max_box_overlap for o in boxes):
                continue
            placed.append(p)
            boxes.append(bx)
            break
    if not placed:
        raise ValueError(f"no object of {chosen} fits on {bg.asset_id} (ground rows {hz}..{h - 1})")
    if len(placed) < s.min_objects:
        raise ValueError(f"placed {len(placed)} objects, fewer than min_objects={s.min_objects}")
    lo_s, hi_s = s.shadow_strength
    lo_h, hi_h = s.harmonize
    plan = CompositionPlan(background=bg.asset_id, objects=placed, light=light,
                           shadow_strength=float(rng.uniform(lo_s, hi_s)), harmonize=float(rng.uniform(lo_h, hi_h)),
                           notes="rules sampler").ordered()
    plan.check_against(lib, s)  # the sampler's plans obey the same checks as an LLM's (ValueError: redraw)
    return plan
