"""The ``audit`` tool of the compose stage: consistency and plausibility measurements of a composition.

It measures; the graph turns measurements into checks with the bounds of
:class:`~add_pipeline.compose.plan.ComposeSettings` (:func:`build_checks`) and the
policy decides.  Measurements, per object layer:

* ``inside``: alpha mass on the canvas / the mass the placed asset has (1 = nothing cut off);
* ``contact_depth``: lowest ``alpha >= 0.5`` row minus the plate's ground line (>= 0: on the ground);
* ``contact_error``: |that row - the planned contact row| (no floating, no sinking);
* ``height_frac``: height of ``alpha >= 0.5`` / canvas height;
* ``visible_frac``: share of its alpha not hidden by the object layers in front;
* ``shadow_below`` (objects with a shadow): 1 when its shadow layer sits directly below it;
* ``shadow_contact``: share of shadow mass in components touching the object's contact region;

and for the sample ``recomposition_mean`` / ``recomposition_max`` (8-bit levels) and
``perspective_spread`` (max / min of the objects' size per depth, see ``plan``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np
from pydantic import ValidationError

from add_pipeline.agents.schemas import BoundedCheck
from add_pipeline.compose.plan import ComposeSettings, perspective_rho
from add_pipeline.core.composite import recomposition_error
from add_pipeline.core.peel import AssembledLayer
from add_pipeline.tools.base import Tool, ToolError, check_image, register
from add_pipeline.tools.verifier import contact_share


class ComposeCheck(BoundedCheck):
    """One audit check; ``target`` is "sample" or an object layer name."""


def build_checks(meas: dict[str, dict[str, float]], s: ComposeSettings) -> list[ComposeCheck]:
    """Bounded checks of the auditor's measurements."""
    inf = float("inf")
    bounds = {
        "recomposition_max": (0.0, s.recomposition_max),
        "perspective_spread": (1.0, s.perspective_tolerance),
        "inside": (0.97, inf),
        "contact_depth": (0.0, inf),
        "contact_error": (0.0, s.contact_tolerance_px),
        "height_frac": (s.min_height_frac * 0.95, s.max_height_frac * 1.05),  # rounding of the warp
        "visible_frac": (s.min_visible, inf),
        "shadow_below": (1.0, 1.0),
        "shadow_contact": (s.min_shadow_contact, inf),
    }
    return [ComposeCheck(name=n, target=t, value=float(v), low=bounds[n][0], high=bounds[n][1])
            for t, values in meas.items() for n, v in values.items() if n in bounds]


def contact_region(solid: np.ndarray) -> np.ndarray:
    """HxW bool: the bottom rows of an object's ``alpha >= 0.5`` (10% of its height, at least 3 px), grown 3 px."""
    rows = np.flatnonzero(solid.any(axis=1))
    band = max(3, int(0.1 * (rows[-1] - rows[0] + 1)))
    base = np.zeros_like(solid)
    base[rows[-1] - band + 1: rows[-1] + 1] = solid[rows[-1] - band + 1: rows[-1] + 1]
    return cv2.dilate(base.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)


@register
class CompositionAuditor(Tool):
    """Measure a composed sample: exact recomposition, objects inside, grounded, sized, visible, shadowed."""

    family: ClassVar[str] = "audit"
    name: ClassVar[str] = "plausibility"

    def __init__(self, **settings: Any) -> None:
        """Takes the :class:`ComposeSettings` fields (the ``audit`` card's params)."""
        try:
            self.settings = ComposeSettings(**settings)
        except ValidationError as exc:
            raise ToolError(f"plausibility auditor: bad settings: {exc}") from exc

    def __call__(self, image: np.ndarray, layers: list[AssembledLayer], horizon_y: int,
                 expected: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Measure.

        Args:
            image: HxWx3 uint8 composite.
            layers: back to front, the background first.
            horizon_y: the plate's ground line (rows >= it are ground).
            expected: per object layer name, ``{"area": alpha mass of the placed asset (px),
                "contact_y": planned contact row}``.
        Returns:
            ``{"sample": {...}, "<object name>": {...}}`` of floats (module doc).
        """
        check_image(self.name, image)
        h, w = image.shape[:2]
        if not layers or layers[0].kind != "background":
            raise ToolError(f"{self.name}: the first layer must be the background")
        names = [lay.name for lay in layers if lay.kind == "object"]
        if sorted(names) != sorted(expected):
            raise ToolError(f"{self.name}: object layers {names} do not match the expected {sorted(expected)}")
        mean, peak = recomposition_error(image, [lay.rgba for lay in layers])
        out: dict[str, dict[str, float]] = {"sample": {"recomposition_mean": mean, "recomposition_max": peak}}
        alphas = {lay.name: lay.rgba[..., 3].astype(np.float32) / 255.0 for lay in layers if lay.kind == "object"}
        rhos = []
        for i, lay in enumerate(layers):
            if lay.kind != "object":
                continue
            alpha = alphas[lay.name]
            solid = alpha >= 0.5
            rows = np.flatnonzero(solid.any(axis=1))
            top, bottom = int(rows[0]), int(rows[-1])
            hidden = np.ones_like(alpha)
            for front in layers[i + 1:]:
                if front.kind == "object":
                    hidden *= 1.0 - alphas[front.name]
            exp = expected[lay.name]
            m = {
                "inside": min(float(alpha.sum()) / max(exp["area"], 1e-6), 1.0),
                "contact_depth": float(bottom - horizon_y),
                "contact_error": abs(bottom - float(exp["contact_y"])),
                "height_frac": (bottom - top + 1) / h,
                "visible_frac": float((alpha * hidden).sum()) / max(float(alpha.sum()), 1e-6),
            }
            shadow_at = [j for j, s in enumerate(layers) if s.kind == "shadow" and s.parent == lay.name]
            if shadow_at:
                m["shadow_below"] = 1.0 if shadow_at == [i - 1] else 0.0
                matte = layers[shadow_at[0]].rgba[..., 3].astype(np.float32) / 255.0
                m["shadow_contact"] = contact_share(matte, contact_region(solid))
            rhos.append(perspective_rho(bottom - top + 1, bottom, horizon_y, h, self.settings))
            out[lay.name] = m
        out["sample"]["perspective_spread"] = max(rhos) / min(rhos) if rhos else 1.0
        return out
