"""Turn an accepted decomposition into one shard row (PNG-encoded on the worker)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from add_pipeline.core.peel import AssembledLayer
from add_pipeline.core.types import bbox_of
from add_pipeline.io.images import encode_png
from add_pipeline.tools.base import Tool, check_image, register


@register
class PngRowEncoder(Tool):
    """Encode the input and every layer as PNG into a row of the shard schema (io.shards.SHARD_SCHEMA)."""

    family: ClassVar[str] = "encode"
    name: ClassVar[str] = "png"

    def __call__(
        self,
        sample_id: str,
        source: str,
        image: np.ndarray,
        layers: list[AssembledLayer],
        scores: dict[str, dict[str, float]],
        meta: dict[str, Any],
        source_kind: str = "decomposed",
    ) -> dict[str, Any]:
        """Build the row. ``image``: HxWx3 uint8; ``scores`` per layer name (objects) and "sample";
        ``source_kind``: "decomposed" (a photo) or "composed" (made by the compose stage)."""
        check_image(self.name, image)
        h, w = image.shape[:2]
        rows = []
        for z, lay in enumerate(layers):
            box = (0, 0, w, h) if lay.kind == "background" else bbox_of(lay.rgba[..., 3] > 0)
            key = lay.parent if lay.kind == "shadow" else lay.name
            layer_scores = {k: float(v) for k, v in scores.get(key or "", {}).items()}
            if lay.kind == "background":
                layer_scores = {k: float(v) for k, v in scores.get("background", {}).items()}
            rows.append(
                {
                    "name": lay.name,
                    "kind": lay.kind,
                    "z": z,
                    "image": {"bytes": encode_png(lay.rgba), "path": f"{sample_id}/{z:02d}_{lay.name}.png"},
                    "bbox": list(box),
                    "parent": lay.parent,
                    "scores": layer_scores,
                }
            )
        return {
            "sample_id": sample_id,
            "source": source,
            "source_kind": source_kind,
            "width": w,
            "height": h,
            "image": {"bytes": encode_png(image), "path": f"{sample_id}.png"},
            "layers": rows,
            "status": "accepted",
            "meta": json.dumps(meta, sort_keys=True, default=str),
        }
