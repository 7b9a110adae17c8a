"""The ``render`` tool of the compose stage: a plan + asset pixels -> exact layers and their composite.

Layers are ground truth by construction: the background plate (opaque), then per
object (back to front) its black shadow layer (alpha = shadow matte) directly below
its object layer; the image is *defined* as ``round(alpha_over(layers) * 255)``.

* **Placement**: an affine map (scale, optional mirror, translation) sends the asset's
  contact centre to the planned ``(x, contact_y)``; colour is warped premultiplied so
  that soft edges do not darken.
* **Shadows**: ``own`` warps the asset's extracted shadow matte with the same map (its
  strength is kept); ``cast`` projects the placed alpha along the plan's light like a
  standing cut-out (a point at height ``t`` lands at ``(dx*t, dy*t)`` from its foot),
  blends a sharp and a soft copy by distance from the contact (softness grows with
  height), adds a soft contact ellipse under the base, and scales by ``shadow_strength``.
* **Harmonisation**: partial mean/std transfer in Lab from the object's solid pixels
  towards the plate around where it stands, by ``harmonize`` in [0, 1] (std ratio
  clipped to [0.5, 2]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from add_pipeline.compose.assets import ObjectAsset
from add_pipeline.compose.plan import CompositionPlan, Light, Placement
from add_pipeline.core.composite import alpha_over, opaque
from add_pipeline.core.peel import AssembledLayer
from add_pipeline.tools.base import Tool, ToolError, check_image, register


@dataclass(frozen=True)
class ObjectPiece:
    """What the renderer needs of an object asset: ``rgba`` hxwx4 uint8 crop, ``shadow`` hxw float32 or None."""

    asset_id: str
    rgba: np.ndarray
    shadow: np.ndarray | None
    contact_cx: float
    contact_y: int

    @classmethod
    def from_asset(cls, a: ObjectAsset) -> ObjectPiece:
        return cls(a.asset_id, a.rgba(), a.shadow(), a.contact_cx, a.contact_y)


@dataclass(frozen=True)
class Rendering:
    """``image`` HxWx3 uint8 = rounded composite of ``layers`` (back to front); ``objects``: per-object notes."""

    image: np.ndarray
    layers: list[AssembledLayer]
    objects: list[dict[str, Any]] = field(default_factory=list)


def placement_matrix(piece: ObjectPiece, p: Placement) -> np.ndarray:
    """2x3 float32 affine map from crop pixels to canvas pixels."""
    f = -1.0 if p.flip else 1.0
    s = p.scale
    return np.array([[f * s, 0.0, p.x - f * s * piece.contact_cx], [0.0, s, p.contact_y - s * piece.contact_y]],
                    np.float32)


def _warp(src: np.ndarray, m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(src, m, (hw[1], hw[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def harmonize(color: np.ndarray, alpha: np.ndarray, plate: np.ndarray, strength: float) -> np.ndarray:
    """Move the object's Lab mean/std towards the plate's around it, by ``strength`` in [0, 1].

    Args: ``color`` HxWx3 float32 [0, 1]; ``alpha`` HxW float32; ``plate`` HxWx3 uint8.
    Returns: HxWx3 float32 [0, 1].
    """
    solid = alpha > 0.5
    if strength <= 0 or solid.sum() < 16:
        return color
    ys, xs = np.nonzero(solid)
    h, w = alpha.shape
    py, px = (ys.max() - ys.min()) // 2 + 1, (xs.max() - xs.min()) // 2 + 1
    ref = plate[max(ys.min() - py, 0): min(ys.max() + py, h), max(xs.min() - px, 0): min(xs.max() + px, w)]
    lab_b = cv2.cvtColor(ref.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    lab = cv2.cvtColor(color.astype(np.float32), cv2.COLOR_RGB2Lab)
    mu_o, sd_o = lab[solid].mean(axis=0), lab[solid].std(axis=0)
    mu_b, sd_b = lab_b.mean(axis=0), lab_b.std(axis=0)
    gain = 1.0 + strength * (np.clip(sd_b / np.maximum(sd_o, 1e-3), 0.5, 2.0) - 1.0)
    new = (lab - mu_o) * gain + mu_o + strength * (mu_b - mu_o)
    out = np.clip(cv2.cvtColor(new.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)
    return np.where((alpha > 0)[..., None], out, color).astype(np.float32)


class CompositionRendererBase(Tool):
    """Family contract of ``render`` tools: validate -> infer -> validate (exact layers)."""

    family: ClassVar[str] = "render"

    def __call__(self, background: np.ndarray, pieces: list[ObjectPiece], plan: CompositionPlan | dict) -> Rendering:
        """``background``: HxWx3 uint8 plate; ``pieces`` match ``plan.objects`` one to one, back to front."""
        check_image(self.name, background)
        plan = CompositionPlan.model_validate(plan if isinstance(plan, dict) else plan.model_dump())
        if len(pieces) != len(plan.objects):
            raise ToolError(f"{self.name}: {len(pieces)} pieces for {len(plan.objects)} placed objects")
        if [p.contact_y for p in plan.objects] != sorted(p.contact_y for p in plan.objects):
            raise ToolError(f"{self.name}: plan objects must be back to front (increasing contact_y)")
        for piece, p in zip(pieces, plan.objects, strict=True):
            if piece.asset_id != p.asset_id or piece.rgba.ndim != 3 or piece.rgba.shape[2] != 4:
                raise ToolError(f"{self.name}: piece {piece.asset_id!r} does not match placement {p.asset_id!r}")
        out = self.infer(background, pieces, plan)
        h, w = background.shape[:2]
        if out.image.shape != (h, w, 3) or out.image.dtype != np.uint8 or out.layers[0].kind != "background":
            raise ToolError(f"{self.name}: output must be an {w}x{h} image over a background layer")
        for lay in out.layers:
            if lay.rgba.shape != (h, w, 4) or lay.rgba.dtype != np.uint8:
                raise ToolError(f"{self.name}: layer {lay.name} must be {h}x{w}x4 uint8")
        return out

    def infer(self, background: np.ndarray, pieces: list[ObjectPiece], plan: CompositionPlan) -> Rendering:
        raise NotImplementedError


@register
class CompositionRenderer(CompositionRendererBase):
    """Place, harmonise and shadow the objects of a plan; assemble the exact layer stack."""

    name: ClassVar[str] = "layered"

    def __init__(self, blur_base: float = 1.0, blur_growth: float = 0.05, contact_shadow: float = 0.8,
                 min_squash: float = 0.1) -> None:
        """``blur_base`` + ``blur_growth`` * object height = blur sigma (px) of a cast shadow's far end;
        ``contact_shadow``: strength of the contact ellipse relative to the cast shadow;
        ``min_squash``: smallest vertical extent of a cast shadow per unit of object height."""
        if blur_base <= 0 or blur_growth < 0 or not 0 <= contact_shadow <= 1 or not 0 < min_squash <= 1:
            raise ToolError("layered renderer: need blur_base > 0, blur_growth >= 0, contact_shadow and "
                            "min_squash in [0, 1] (min_squash > 0)")
        self.blur_base, self.blur_growth = float(blur_base), float(blur_growth)
        self.contact_shadow, self.min_squash = float(contact_shadow), float(min_squash)

    def infer(self, background: np.ndarray, pieces: list[ObjectPiece], plan: CompositionPlan) -> Rendering:
        hw = background.shape[:2]
        layers = [AssembledLayer("background", "background", opaque(background), None)]
        notes = []
        for k, (piece, p) in enumerate(zip(pieces, plan.objects, strict=True)):
            name = f"obj{k}"
            m = placement_matrix(piece, p)
            a = piece.rgba[..., 3:4].astype(np.float32) / 255.0
            warped = _warp(np.concatenate([piece.rgba[..., :3].astype(np.float32) / 255.0 * a, a], axis=-1), m, hw)
            alpha = np.clip(warped[..., 3], 0.0, 1.0)
            color = np.where(alpha[..., None] > 1e-4, warped[..., :3] / np.maximum(alpha[..., None], 1e-4), 0.0)
            color = harmonize(np.clip(color, 0.0, 1.0).astype(np.float32), alpha, background, plan.harmonize)
            a8 = np.round(alpha * 255.0).astype(np.uint8)
            if not (a8 >= 128).any():
                raise ToolError(f"{self.name}: {p.asset_id} placed at ({p.x:.0f}, {p.contact_y:.0f}) is invisible")
            if p.shadow == "own" and piece.shadow is not None:
                matte = np.clip(_warp(piece.shadow.astype(np.float32), m, hw), 0.0, 1.0)
            elif p.shadow == "cast":
                matte = self.cast_shadow(alpha, plan.light, plan.shadow_strength)
            else:
                matte = np.zeros(hw, np.float32)
            s8 = np.round(matte * 255.0).astype(np.uint8)
            if s8.any():
                shadow = np.zeros(hw + (4,), np.uint8)
                shadow[..., 3] = s8
                layers.append(AssembledLayer(f"{name}_shadow", "shadow", shadow, name))
            rgba = np.zeros(hw + (4,), np.uint8)
            rgba[..., :3] = np.where(a8[..., None] > 0, np.round(color * 255.0), 0).astype(np.uint8)
            rgba[..., 3] = a8
            layers.append(AssembledLayer(name, "object", rgba, None))
            notes.append({"name": name, "asset_id": p.asset_id, "shadow": p.shadow if s8.any() else "none",
                          "shadow_mass": float(s8.sum()) / 255.0})
        image = np.round(alpha_over([lay.rgba for lay in layers]) * 255.0).astype(np.uint8)
        return Rendering(image, layers, notes)

    def cast_shadow(self, alpha: np.ndarray, light: Light, strength: float) -> np.ndarray:
        """Shadow matte (HxW float32 [0, 1]) of a standing cut-out with matte ``alpha`` lit along ``light``."""
        h, w = alpha.shape
        solid = alpha >= 0.5
        rows = np.flatnonzero(solid.any(axis=1))
        top, cy = int(rows[0]), int(rows[-1])
        height = float(cy - top + 1)
        shear = light.dx
        squash = -light.dy if abs(light.dy) >= self.min_squash else self.min_squash * (1.0 if light.dy <= 0 else -1.0)
        fwd = np.array([[1.0, -shear, shear * cy], [0.0, squash, (1.0 - squash) * cy]], np.float32)
        proj = _warp(alpha.astype(np.float32), fwd, (h, w))
        sharp = cv2.GaussianBlur(proj, (0, 0), 1.0)
        soft = cv2.GaussianBlur(proj, (0, 0), self.blur_base + self.blur_growth * height)
        yy = np.arange(h, dtype=np.float32)[:, None]
        t = np.clip(np.abs(cy - yy) / (abs(squash) * height), 0.0, 1.0)
        cast = (1.0 - t) * sharp + t * soft
        xs = np.flatnonzero(solid[max(cy - 3, 0): cy + 1].any(axis=0))
        cx, half = (xs[0] + xs[-1]) / 2.0, max((xs[-1] - xs[0]) / 2.0 + 0.08 * height, 3.0)
        contact = np.zeros((h, w), np.float32)
        cv2.ellipse(contact, (int(round(cx)), cy), (int(round(half)), max(int(0.05 * height), 2)), 0, 0, 360, 1.0, -1)
        contact = cv2.GaussianBlur(contact, (0, 0), 1.5) * self.contact_shadow
        return (strength * np.clip(np.maximum(cast, contact), 0.0, 1.0)).astype(np.float32)
