"""Turn an accepted decomposition into one shard row (encoded on the worker).

The storage rule (layers cut to their boxes, the background stored only where it differs from the
photo, lossless WebP or PNG) is :mod:`add_pipeline.io.layered`'s; this tool only applies it.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from add_pipeline.core.peel import AssembledLayer
from add_pipeline.io.layered import FILL_IMAGE, Codec, encode_image, pack_layer, scores_list
from add_pipeline.tools.base import Tool, ToolError, check_image, register


@register
class LayeredRowEncoder(Tool):
    """Encode the input and every layer into a row of the shard schema (``io.shards.SHARD_SCHEMA``).

    Args:
        codec: ``"webp"`` (lossless; the default by measurement, ``bench/results/shards.md``) or ``"png"``.
    """

    family: ClassVar[str] = "encode"
    name: ClassVar[str] = "layered"

    def __init__(self, codec: Codec = "webp") -> None:
        if codec not in ("webp", "png"):
            raise ToolError(f"{self.name}: codec must be 'webp' or 'png', got {codec!r}")
        self.codec: Codec = codec

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
        """Build the row. ``image``: HxWx3 uint8; ``layers``: full-canvas HxWx4 uint8, back to front;
        ``scores`` per layer name (objects) and "background"; ``source_kind``: "decomposed" (a photo)
        or "composed" (made by the compose stage)."""
        check_image(self.name, image)
        h, w = image.shape[:2]
        rows = []
        for z, lay in enumerate(layers):
            fill = lay.kind == "background" and bool((lay.rgba[..., 3] == 255).all())
            try:
                data, box = pack_layer(lay.rgba, image, fill=fill, codec=self.codec)
            except ValueError as e:
                raise ToolError(f"{self.name}: layer {lay.name!r}: {e}") from e
            key = "background" if lay.kind == "background" else (lay.parent if lay.kind == "shadow" else lay.name)
            rows.append(
                {
                    "name": lay.name,
                    "kind": lay.kind,
                    "z": z,
                    "image": {"bytes": data, "path": None},
                    "bbox": list(box),
                    "parent": lay.parent,
                    "scores": scores_list(scores.get(key or "", {})),
                    "fill": FILL_IMAGE if fill else None,
                }
            )
        return {
            "sample_id": sample_id,
            "source": source,
            "source_kind": source_kind,
            "width": w,
            "height": h,
            "image": {"bytes": encode_image(image, self.codec), "path": None},
            "layers": rows,
            "status": "accepted",
            "meta": json.dumps(meta, sort_keys=True, default=str),
        }
