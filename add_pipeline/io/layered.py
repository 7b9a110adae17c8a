"""Layered samples as arrays, and the storage rule that maps them to shard rows (schema v2).

A shard row (:data:`~add_pipeline.io.shards.SHARD_SCHEMA`) stores the photo and its layers
back to front.  How a layer's pixels are stored (:func:`pack_layer`, undone by :func:`place`):

* the layer's RGBA is cut to ``bbox`` (half-open ``[x0, y0, x1, y1]`` in the canvas) and encoded
  losslessly (WebP or PNG); colour under alpha 0 is stored as 0 (it has no meaning);
* ``fill = "image"`` (the background): the layer is opaque and equal to the photo except where it
  was inpainted or de-shadowed, so only the box of the pixels that differ is stored, with alpha 255
  where they differ and 0 where the photo's pixel applies; outside ``bbox`` it is the photo too;
* ``fill = null``: the layer is transparent outside ``bbox``;
* an empty ``bbox`` (``x1 <= x0`` or ``y1 <= y0``) stores a 1x1 placeholder, which is ignored.

Rows of schema v1 (every layer a full-canvas PNG, no ``fill``, scores as a map) decode with the
same rule: an image of the canvas size is placed at (0, 0), and a v1 background, opaque, never
takes the photo's pixels.  :func:`decode_row` is the only parser of stored layers; everything that
reads shards (the reader, exports, eval, curate, the model's training data) goes through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from add_pipeline.core.types import Box, bbox_of
from add_pipeline.io.images import decode_png, encode_png, encode_webp

SCHEMA_VERSION = 2
"""Version of the shard layout written now (1: full-canvas PNG layers, map scores)."""

Codec = Literal["webp", "png"]
FILL_IMAGE = "image"


@dataclass(frozen=True)
class Layer:
    """One decoded layer, placed on the full canvas.

    ``rgba``: ``HxWx4 uint8``, straight (not premultiplied) colour; ``bbox``: the stored box
    (half-open, canvas pixels; for objects and shadows the tight box of alpha > 0); ``scores``:
    the QA scores the pipeline recorded for the layer's object (or the background).
    """

    name: str
    kind: str
    z: int
    bbox: Box
    parent: str | None
    scores: dict[str, float]
    rgba: np.ndarray

    @property
    def crop(self) -> np.ndarray:
        """``rgba`` cut to ``bbox`` (a view; ``0x0x4`` for an empty box)."""
        x0, y0, x1, y1 = self.bbox
        return self.rgba[y0:max(y0, y1), x0:max(x0, x1)]


@dataclass(frozen=True)
class LayeredSample:
    """One committed sample: the photo, its layers back to front, and what the row says about them.

    ``image``: ``HxWx3 uint8`` RGB; ``layers``: sorted by ``z`` (index 0 is the background);
    ``meta``: the row's ``meta`` JSON, parsed (planner notes, timings, verifier decisions).
    """

    sample_id: str
    source: str
    source_kind: str
    width: int
    height: int
    image: np.ndarray
    layers: list[Layer]
    status: str = "accepted"
    trace_id: str = ""
    workflow: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def stack(self) -> list[np.ndarray]:
        """Every layer's full-canvas ``HxWx4 uint8`` RGBA, back to front."""
        return [lay.rgba for lay in self.layers]

    def composite(self) -> np.ndarray:
        """The layers composited back to front (``alpha_over``), ``HxWx3 uint8``."""
        from add_pipeline.core.composite import alpha_over

        return (alpha_over(self.stack()) * 255.0).round().astype(np.uint8)


# ---------------------------------------------------------------- writing


def _encode(arr: np.ndarray, codec: Codec) -> bytes:
    if codec == "webp":
        return encode_webp(arr)
    if codec == "png":
        return encode_png(arr)
    raise ValueError(f"unknown image codec {codec!r}; expected 'webp' or 'png'")


def encode_image(image: np.ndarray, codec: Codec = "webp") -> bytes:
    """Lossless bytes of the photo (``HxWx3 uint8``) in ``codec``."""
    return _encode(image, codec)


def stored_crop(rgba: np.ndarray, image: np.ndarray, fill: bool) -> tuple[np.ndarray | None, Box]:
    """What :func:`pack_layer` stores of one full-canvas layer, before encoding: the ``hxwx4 uint8``
    crop at its box (None for an empty box, ``(0, 0, 0, 0)``) and the box.

    Args:
        rgba: ``HxWx4 uint8`` full-canvas layer, straight colour.
        image: ``HxWx3 uint8`` the photo (used only when ``fill``).
        fill: store only where the layer differs from ``image`` (the background). Requires
            ``rgba`` to be opaque.
    Raises:
        ValueError: shapes disagree, or ``fill`` with a layer that is not opaque.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8 or rgba.shape[:2] != image.shape[:2]:
        raise ValueError(f"pack_layer expects an HxWx4 uint8 layer of the photo's size {image.shape[:2]}, "
                         f"got {rgba.shape} {rgba.dtype}")
    if fill:
        if not (rgba[..., 3] == 255).all():
            raise ValueError("a layer stored with fill='image' must be opaque")
        keep = (rgba[..., :3] != image).any(axis=-1)
    else:
        keep = rgba[..., 3] > 0
    box = bbox_of(keep)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None, (0, 0, 0, 0)
    crop = rgba[y0:y1, x0:x1].copy()
    inside = keep[y0:y1, x0:x1]
    if fill:
        crop[..., 3] = np.where(inside, 255, 0).astype(np.uint8)
    crop[~inside] = 0  # canonical: nothing under alpha 0
    return crop, box


def pack_layer(rgba: np.ndarray, image: np.ndarray, fill: bool, codec: Codec = "webp") -> tuple[bytes, Box]:
    """The stored bytes and ``bbox`` of one full-canvas layer (:func:`stored_crop`, encoded; an empty
    box stores a 1x1 transparent placeholder)."""
    crop, box = stored_crop(rgba, image, fill)
    return _encode(np.zeros((1, 1, 4), np.uint8) if crop is None else crop, codec), box


def scores_list(scores: Mapping[str, float]) -> list[dict[str, Any]]:
    """Scores as the stored ``[{"name", "value"}]`` list, sorted by name."""
    return [{"name": str(k), "value": float(v)} for k, v in sorted(scores.items())]


# ---------------------------------------------------------------- reading


def scores_dict(stored: Iterable[Any] | Mapping[str, float] | None) -> dict[str, float]:
    """Scores as a dict from any stored form: v2 ``[{"name", "value"}]``, v1 map (``[(k, v)]`` from
    Arrow, or a dict), or null."""
    if stored is None:
        return {}
    if isinstance(stored, Mapping):
        return {str(k): float(v) for k, v in stored.items()}
    out: dict[str, float] = {}
    for item in stored:
        if isinstance(item, Mapping):
            out[str(item["name"])] = float(item["value"])
        else:
            key, value = item
            out[str(key)] = float(value)
    return out


def _bytes_of(struct: Mapping[str, Any] | None, where: str) -> bytes:
    data = (struct or {}).get("bytes")
    if not data:
        raise ValueError(f"{where}: no image bytes (rows that only carry a path are not supported)")
    return bytes(data)


def as_rgba(arr: np.ndarray) -> np.ndarray:
    """``HxWx4 uint8`` from the ``HxWx3`` / ``HxWx4 uint8`` that ``decode_png`` returns (opaque if RGB)."""
    if arr.shape[2] == 4:
        return arr
    return np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=-1)


def place(stored: np.ndarray, bbox: Sequence[int], width: int, height: int, photo: np.ndarray | None,
          where: str = "layer") -> np.ndarray:
    """The full-canvas ``HxWx4 uint8`` layer of a decoded stored image (``hxwx3`` or ``hxwx4 uint8``).

    ``photo`` (``HxWx3 uint8``) is given for ``fill = "image"`` layers: it fills the canvas, and the
    stored pixels with alpha > 0 replace it.

    Raises:
        ValueError: the stored image is neither the size of ``bbox`` nor of the canvas, or the box
            leaves the canvas.
    """
    x0, y0, x1, y1 = (int(v) for v in bbox)
    if photo is not None:
        canvas = np.concatenate([photo, np.full((height, width, 1), 255, np.uint8)], axis=-1)
    else:
        canvas = np.zeros((height, width, 4), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return canvas
    arr = as_rgba(stored)
    if arr.shape[:2] == (height, width) and (y1 - y0, x1 - x0) != (height, width):
        x0, y0, x1, y1 = 0, 0, width, height  # schema v1: a full-canvas image
    if arr.shape[:2] != (y1 - y0, x1 - x0) or x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise ValueError(f"{where}: stored image is {arr.shape[1]}x{arr.shape[0]}, which fits neither its bbox "
                         f"{list(bbox)} nor the {width}x{height} canvas")
    if photo is None:
        canvas[y0:y1, x0:x1] = arr
    else:
        region = canvas[y0:y1, x0:x1, :3]
        region[...] = np.where(arr[..., 3:4] > 0, arr[..., :3], region)
    return canvas


def decode_row(row: Mapping[str, Any]) -> LayeredSample:
    """A :class:`LayeredSample` from one shard row (a dict as ``pyarrow`` ``to_pylist`` gives it),
    schema v1 or v2.

    Raises:
        ValueError: an image does not decode or does not fit its box (the message names the sample
            and the layer).
    """
    sid = str(row["sample_id"])
    width, height = int(row["width"]), int(row["height"])
    try:
        photo = decode_png(_bytes_of(row["image"], f"sample {sid!r}: image"))[..., :3]
    except ValueError as e:
        raise ValueError(f"sample {sid!r}: image: {e}") from e
    if photo.shape[:2] != (height, width):
        raise ValueError(f"sample {sid!r}: image is {photo.shape[1]}x{photo.shape[0]}, the row says {width}x{height}")
    layers = []
    for lay in sorted(row["layers"], key=lambda item: item["z"]):
        where = f"sample {sid!r}: layer {lay['name']!r}"
        try:
            stored = decode_png(_bytes_of(lay["image"], where))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        fill = lay.get("fill") == FILL_IMAGE
        rgba = place(stored, lay["bbox"], width, height, photo if fill else None, where)
        layers.append(Layer(name=lay["name"], kind=lay["kind"], z=int(lay["z"]),
                            bbox=tuple(int(v) for v in lay["bbox"]),  # type: ignore[arg-type]
                            parent=lay.get("parent"), scores=scores_dict(lay.get("scores")), rgba=rgba))
    meta_text = row.get("meta")
    try:
        meta = json.loads(meta_text) if meta_text else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"sample {sid!r}: meta is not valid JSON: {e}") from e
    return LayeredSample(sample_id=sid, source=str(row.get("source", "")), source_kind=str(row.get("source_kind", "")),
                         width=width, height=height, image=photo, layers=layers,
                         status=str(row.get("status", "accepted")), trace_id=str(row.get("trace_id", "")),
                         workflow=str(row.get("workflow", "")), meta=meta if isinstance(meta, dict) else {"meta": meta})
