"""Asset records of the curate stage and their Parquet files (``ASSETS/*.parquet``).

An *object asset* is a crop of one decomposed object: its RGBA (straight colour,
soft alpha) and, in the same crop frame, the matte of its own shadow.  A
*background asset* is an inpainted plate with its ground line and light
estimate.  A *filtered* row records an asset that was not kept, and why.

Pixels are stored as PNG (``{bytes, path}`` structs, the Hugging Face ``Image``
layout used by the shards) and decoded on demand, so a loaded library holds
compressed bytes only.  Coordinates: ``crop_*`` values are in the crop's frame,
``box`` is the crop's half-open box in the source canvas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from add_pipeline.io.images import decode_png, encode_png
from add_pipeline.io.shards import IMAGE_TYPE

OBJECTS_FILE, BACKGROUNDS_FILE, FILTERED_FILE, SUMMARY_FILE = (
    "objects.parquet", "backgrounds.parquet", "filtered.parquet", "assets.json")

_SCORES = pa.map_(pa.string(), pa.float64())
_BOX = pa.list_(pa.int32())

OBJECT_SCHEMA = pa.schema([
    pa.field("asset_id", pa.string(), nullable=False),  # f"{sample_id}/{layer}"
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("layer", pa.string(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),  # crop size
    pa.field("height", pa.int32(), nullable=False),
    pa.field("rgba", IMAGE_TYPE, nullable=False),  # crop RGBA, straight colour
    pa.field("shadow", IMAGE_TYPE, nullable=True),  # crop RGBA, black, alpha = own shadow matte
    pa.field("box", _BOX, nullable=False),  # crop box in the source canvas
    pa.field("object_box", _BOX, nullable=False),  # alpha > 0 box, crop frame
    pa.field("contact_y", pa.int32(), nullable=False),  # lowest row with alpha >= 0.5, crop frame
    pa.field("contact_x0", pa.int32(), nullable=False),  # contact x-range (half-open), crop frame
    pa.field("contact_x1", pa.int32(), nullable=False),
    pa.field("top_y", pa.int32(), nullable=False),  # highest row with alpha >= 0.5, crop frame
    pa.field("alpha_area", pa.float64(), nullable=False),  # sum of alpha, px
    pa.field("shadow_dx", pa.float64(), nullable=True),  # own shadow direction (see curate.light_of)
    pa.field("shadow_dy", pa.float64(), nullable=True),
    pa.field("scores", _SCORES, nullable=True),
])

BACKGROUND_SCHEMA = pa.schema([
    pa.field("asset_id", pa.string(), nullable=False),  # f"{sample_id}/background"
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("image", IMAGE_TYPE, nullable=False),  # RGB plate
    pa.field("seam", pa.float64(), nullable=False),
    pa.field("inpainted_frac", pa.float64(), nullable=False),
    pa.field("horizon_y", pa.int32(), nullable=False),  # rows >= horizon_y are ground
    pa.field("horizon_from", pa.string(), nullable=False),  # "contacts" | "default"
    pa.field("light_dx", pa.float64(), nullable=True),  # null: the source had no shadow
    pa.field("light_dy", pa.float64(), nullable=True),
    pa.field("scores", _SCORES, nullable=True),
])

FILTERED_SCHEMA = pa.schema([
    pa.field("asset_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # "object" | "shadow" | "background"
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),  # "<key>: <detail>"
])


@dataclass(frozen=True)
class ObjectAsset:
    """One reusable object. PNG bytes are decoded by :meth:`rgba` / :meth:`shadow`."""

    asset_id: str
    sample_id: str
    source: str
    layer: str
    width: int
    height: int
    rgba_png: bytes
    shadow_png: bytes | None
    box: tuple[int, int, int, int]
    object_box: tuple[int, int, int, int]
    contact_y: int
    contact_x0: int
    contact_x1: int
    top_y: int
    alpha_area: float
    shadow_dx: float | None = None
    shadow_dy: float | None = None
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def contact_cx(self) -> float:
        """Centre of the contact x-range, crop frame (pixel-centre coordinates)."""
        return (self.contact_x0 + self.contact_x1 - 1) / 2.0

    @property
    def object_height(self) -> int:
        """Rows from the top to the contact row of ``alpha >= 0.5``, px."""
        return self.contact_y - self.top_y + 1

    def rgba(self) -> np.ndarray:
        """``hxwx4 uint8`` straight-alpha crop."""
        return decode_png(self.rgba_png)

    def shadow(self) -> np.ndarray | None:
        """``hxw float32`` [0, 1] own shadow matte in the crop frame, or None."""
        if self.shadow_png is None:
            return None
        return decode_png(self.shadow_png)[..., 3].astype(np.float32) / 255.0

    def to_row(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id, "sample_id": self.sample_id, "source": self.source, "layer": self.layer,
            "width": self.width, "height": self.height,
            "rgba": {"bytes": self.rgba_png, "path": f"{self.asset_id}.png"},
            "shadow": None if self.shadow_png is None else {"bytes": self.shadow_png,
                                                             "path": f"{self.asset_id}_shadow.png"},
            "box": list(self.box), "object_box": list(self.object_box), "contact_y": self.contact_y,
            "contact_x0": self.contact_x0, "contact_x1": self.contact_x1, "top_y": self.top_y,
            "alpha_area": self.alpha_area, "shadow_dx": self.shadow_dx, "shadow_dy": self.shadow_dy,
            "scores": dict(self.scores),
        }

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> ObjectAsset:
        return cls(
            asset_id=r["asset_id"], sample_id=r["sample_id"], source=r["source"], layer=r["layer"],
            width=r["width"], height=r["height"], rgba_png=r["rgba"]["bytes"],
            shadow_png=None if r["shadow"] is None else r["shadow"]["bytes"], box=tuple(r["box"]),
            object_box=tuple(r["object_box"]), contact_y=r["contact_y"], contact_x0=r["contact_x0"],
            contact_x1=r["contact_x1"], top_y=r["top_y"], alpha_area=r["alpha_area"], shadow_dx=r["shadow_dx"],
            shadow_dy=r["shadow_dy"], scores=dict(r["scores"] or []),
        )


@dataclass(frozen=True)
class BackgroundAsset:
    """One background plate (``rgb()`` decodes it) with its ground line and light estimate."""

    asset_id: str
    sample_id: str
    source: str
    width: int
    height: int
    image_png: bytes
    seam: float
    inpainted_frac: float
    horizon_y: int
    horizon_from: str
    light_dx: float | None = None
    light_dy: float | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def rgb(self) -> np.ndarray:
        """``HxWx3 uint8`` plate."""
        return decode_png(self.image_png)[..., :3]

    def to_row(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id, "sample_id": self.sample_id, "source": self.source, "width": self.width,
            "height": self.height, "image": {"bytes": self.image_png, "path": f"{self.asset_id}.png"},
            "seam": self.seam, "inpainted_frac": self.inpainted_frac, "horizon_y": self.horizon_y,
            "horizon_from": self.horizon_from, "light_dx": self.light_dx, "light_dy": self.light_dy,
            "scores": dict(self.scores),
        }

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> BackgroundAsset:
        return cls(
            asset_id=r["asset_id"], sample_id=r["sample_id"], source=r["source"], width=r["width"],
            height=r["height"], image_png=r["image"]["bytes"], seam=r["seam"], inpainted_frac=r["inpainted_frac"],
            horizon_y=r["horizon_y"], horizon_from=r["horizon_from"], light_dx=r["light_dx"],
            light_dy=r["light_dy"], scores=dict(r["scores"] or []),
        )


@dataclass(frozen=True)
class FilteredAsset:
    """An asset that was not kept: ``reason`` reads ``"<key>: <detail>"``."""

    asset_id: str
    kind: str
    sample_id: str
    source: str
    reason: str

    def to_row(self) -> dict[str, Any]:
        return {"asset_id": self.asset_id, "kind": self.kind, "sample_id": self.sample_id, "source": self.source,
                "reason": self.reason}


def matte_png(matte: np.ndarray) -> bytes:
    """PNG of a black RGBA layer whose alpha is ``matte`` (``hxw float`` [0, 1])."""
    rgba = np.zeros(matte.shape + (4,), np.uint8)
    rgba[..., 3] = np.round(np.clip(matte, 0.0, 1.0) * 255.0).astype(np.uint8)
    return encode_png(rgba)


def write_table(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> None:
    """Write ``rows`` as Parquet under ``schema``: temporary name, then atomic rename."""
    table = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


@dataclass
class AssetLibrary:
    """The curated assets of one ``ASSETS`` folder, sorted by id (so sampling is reproducible)."""

    root: Path
    objects: dict[str, ObjectAsset]
    backgrounds: dict[str, BackgroundAsset]

    @classmethod
    def load(cls, root: str | Path) -> AssetLibrary:
        """Read ``objects.parquet`` and ``backgrounds.parquet``; raise ``ValueError`` if either is missing/empty."""
        root = Path(root)
        tables = {}
        for name, schema in ((OBJECTS_FILE, OBJECT_SCHEMA), (BACKGROUNDS_FILE, BACKGROUND_SCHEMA)):
            path = root / name
            if not path.is_file():
                raise ValueError(f"{path}: not found; run `liwi curate OUT --assets {root}` first")
            tables[name] = pq.read_table(path, schema=schema).to_pylist()
        objects = sorted((ObjectAsset.from_row(r) for r in tables[OBJECTS_FILE]), key=lambda a: a.asset_id)
        bgs = sorted((BackgroundAsset.from_row(r) for r in tables[BACKGROUNDS_FILE]), key=lambda a: a.asset_id)
        if not objects or not bgs:
            raise ValueError(f"{root}: needs at least one object and one background asset "
                             f"(has {len(objects)} objects, {len(bgs)} backgrounds)")
        return cls(root, {a.asset_id: a for a in objects}, {b.asset_id: b for b in bgs})

