"""The verifier's measurements as a tool. It measures; the policy decides (agents.policy)."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from add_pipeline.core.composite import recomposition_error
from add_pipeline.core.peel import AssembledLayer
from add_pipeline.tools.base import Tool, ToolError, check_image, register


def _grad(img: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the luminance of an ``HxWx3 uint8`` image; ``HxW float32``."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def seam_score(background: np.ndarray, region: np.ndarray) -> float:
    """Gradient on the inpainted region's border relative to the gradient just outside it.

    ``background``: HxWx3 uint8; ``region``: HxW bool (what was inpainted). 1.0 means the
    border is as smooth as its surroundings; large values mean a visible seam.
    """
    if not region.any() or region.all():
        return 0.0
    k = np.ones((3, 3), np.uint8)
    r8 = region.astype(np.uint8)
    border = (cv2.dilate(r8, k) - cv2.erode(r8, k)).astype(bool)
    ring = (cv2.dilate(r8, k, iterations=8) - cv2.dilate(r8, k, iterations=2)).astype(bool)
    grad = _grad(background)
    outside = float(grad[ring].mean()) if ring.any() else 0.0
    return float(grad[border].mean() / (outside + 8.0))


def contact_share(shadow: np.ndarray, region: np.ndarray) -> float:
    """Share of the mass of ``shadow`` (HxW float [0, 1]) in components of ``shadow > 0.05`` that
    touch ``region`` (HxW bool); 1.0 for an empty shadow."""
    mass = float(shadow.sum())
    if mass <= 0:
        return 1.0
    _, labels = cv2.connectedComponents((shadow > 0.05).astype(np.uint8))
    touching = np.unique(labels[region & (labels > 0)])
    return float(shadow[np.isin(labels, touching)].sum() / mass)


def shadow_contact(shadow: np.ndarray, obj: np.ndarray) -> float:
    """Share of shadow mass in components of ``shadow > 0.05`` that touch the object (dilated 3 px).

    ``shadow``: HxW float [0, 1]; ``obj``: HxW bool.
    """
    return contact_share(shadow, cv2.dilate(obj.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool))


@register
class LayerVerifier(Tool):
    """Measure recomposition error, alpha sanity, area, shadow plausibility and inpainting seams."""

    family: ClassVar[str] = "verify"
    name: ClassVar[str] = "metrics"

    def __call__(
        self,
        image: np.ndarray,
        layers: list[AssembledLayer],
        masks: dict[str, np.ndarray],
        inpainted: np.ndarray,
    ) -> dict[str, dict[str, float]]:
        """Measure a decomposition.

        Args:
            image: HxWx3 uint8 photo.
            layers: back to front, as assembled.
            masks: segmentation mask (HxW bool) per object id.
            inpainted: HxW bool, union of the regions the background was filled in.
        Returns:
            ``{"sample": {...}, "background": {...}, "<object id>": {...}}`` of float measurements.
        """
        check_image(self.name, image)
        if not layers or layers[0].kind != "background":
            raise ToolError(f"{self.name}: the first layer must be the background")
        h, w = image.shape[:2]
        mean, peak = recomposition_error(image, [lay.rgba for lay in layers])
        out: dict[str, dict[str, float]] = {
            "sample": {"recomposition_mean": mean, "recomposition_max": peak},
            "background": {"seam": seam_score(layers[0].rgba[..., :3], inpainted)},
        }
        shadows = {lay.parent: lay.rgba[..., 3].astype(np.float32) / 255.0 for lay in layers if lay.kind == "shadow"}
        for lay in layers:
            if lay.kind != "object":
                continue
            alpha = lay.rgba[..., 3].astype(np.float32) / 255.0
            mask = masks[lay.name]
            support = alpha > 0
            solid = alpha > 0.5
            m: dict[str, float] = {
                "area_frac": float(solid.sum()) / float(h * w),
                "alpha_solidity": float((solid & mask).sum()) / max(float(mask.sum()), 1.0),
                "alpha_soft_fraction": float(((alpha > 0.05) & (alpha < 0.95)).sum()) / max(float(support.sum()), 1.0),
            }
            s = shadows.get(lay.name)
            if s is not None:
                visible = s * (1.0 - alpha)
                m["shadow_area_ratio"] = float((visible > 0.1).sum()) / max(float(solid.sum()), 1.0)
                m["shadow_contact"] = shadow_contact(visible, solid)
                m["shadow_mean"] = float(s[s > 0].mean()) if (s > 0).any() else 0.0
            out[lay.name] = m
        return out
