"""The curate stage: decomposed shards in, scored and filtered reusable assets out.

For every accepted sample of ``OUT`` (committed shards only, one file at a time):

* each object layer becomes an object asset (RGBA crop + its own shadow matte in the
  same crop frame + its ground contact), unless a limit of :class:`CurateLimits`
  rejects it; a shadow that fails its limits is dropped from the asset (the object
  is kept) and recorded as a filtered ``shadow``;
* the background layer becomes a plate with a ground line and a light estimate.

Estimators (deliberately simple, documented so that users know what they get):

* **contact**: the lowest row of ``alpha >= 0.5`` and the x-range of solid pixels in
  the ``contact_band_px`` rows above it;
* **ground line** (``horizon_y``): rows at or below it are ground.  Objects stand on the
  ground, so the ground reaches at least the highest visible contact: ``horizon_y`` is
  the smallest contact row of the sample's objects (objects cut by the bottom border do
  not count), capped at ``max_horizon_frac * H`` so that a plate keeps room to place
  things; without contacts it is ``default_horizon_frac * H``;
* **light**: the shadow of a point at height ``t`` above its contact lands about
  ``(dx * t, dy * t)`` from it, so ``(dx, dy)`` = (shadow centroid - contact centre) /
  (object height / 2), averaged over the sample's shadows weighted by shadow mass
  (``dy < 0``: shadows fall back, away from the camera).  Null without shadows.

Every filtered asset is a row of ``filtered.parquet`` with its reason.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from add_pipeline.compose.assets import (
    BACKGROUND_SCHEMA,
    BACKGROUNDS_FILE,
    FILTERED_FILE,
    FILTERED_SCHEMA,
    OBJECT_SCHEMA,
    OBJECTS_FILE,
    SUMMARY_FILE,
    BackgroundAsset,
    FilteredAsset,
    ObjectAsset,
    matte_png,
    write_table,
)
from add_pipeline.io.images import encode_png
from add_pipeline.io.layered import decode_row
from add_pipeline.io.reader import LayeredShards
from add_pipeline.io.shards import ShardStore


class CurateLimits(BaseModel):
    """What makes an asset reusable. Every bound is inclusive; failing one filters the asset."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    crop_margin_px: int = Field(default=4, ge=0, description="margin around the object+shadow box of a crop")
    min_object_px: int = Field(default=16, ge=1, description="min width and height of the alpha >= 0.5 box")
    min_alpha_solidity: float = Field(default=0.5, description="min verifier alpha_solidity")
    max_alpha_soft_fraction: float = Field(default=0.5, description="max verifier alpha_soft_fraction")
    frame_margin_px: int = Field(default=1, ge=0, description="alpha >= 0.5 this close to a border = cut by frame")
    max_occluded_edge: float = Field(default=0.1, ge=0, le=1,
                                     description="max share of the outline touching an object in front")
    min_shadow_mass: float = Field(default=10.0, ge=0, description="shadow matte sum (px) below which there is none")
    max_shadow_area_ratio: float = Field(default=3.0, description="max verifier shadow_area_ratio")
    min_shadow_contact: float = Field(default=0.5, description="min verifier shadow_contact")
    max_inpainted_frac: float = Field(default=0.35, ge=0, le=1, description="max share of the plate inpainted")
    max_seam: float = Field(default=4.0, description="max verifier seam score of the plate")
    contact_band_px: int = Field(default=3, ge=1, description="rows above the contact row that define its x-range")
    default_horizon_frac: float = Field(default=0.5, gt=0, lt=1, description="ground line without contacts")
    max_horizon_frac: float = Field(default=0.75, gt=0, lt=1, description="cap of the ground line from contacts")


class CurateError(ValueError):
    """Nothing to curate (no committed shards) or a bad argument."""


# ---------------------------------------------------------------- per-sample measurements


def contact_of(solid: np.ndarray, band: int) -> tuple[int, int, int, int]:
    """``(top_y, contact_y, x0, x1)`` of an ``HxW bool`` solid mask: top and lowest rows, contact x-range."""
    rows = np.flatnonzero(solid.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1])
    xs = np.flatnonzero(solid[max(bottom - band + 1, 0): bottom + 1].any(axis=0))
    return top, bottom, int(xs[0]), int(xs[-1]) + 1


def light_of(matte: np.ndarray, solid: np.ndarray, band: int) -> tuple[float, float, float]:
    """``(dx, dy, mass)``: shadow direction per unit of object height (see module doc) and shadow mass."""
    top, bottom, x0, x1 = contact_of(solid, band)
    mass = float(matte.sum())
    ys, xs = np.mgrid[0: matte.shape[0], 0: matte.shape[1]]
    my, mx = float((ys * matte).sum()) / mass, float((xs * matte).sum()) / mass
    half = max((bottom - top + 1) / 2.0, 1.0)
    return (mx - (x0 + x1 - 1) / 2.0) / half, (my - bottom) / half, mass


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _cut_side(solid: np.ndarray, m: int) -> str | None:
    h, w = solid.shape
    x0, y0, x1, y1 = _box(solid)
    for side, hit in (("left", x0 <= m), ("top", y0 <= m), ("right", x1 >= w - m), ("bottom", y1 >= h - m)):
        if hit:
            return side
    return None


def _occluded_edge(solid: np.ndarray, front: np.ndarray) -> float:
    """Share of the outline of ``solid`` within 2 px of the support of the objects in front of it."""
    edge = solid & ~cv2.erode(solid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    near = cv2.dilate(front.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~solid
    near_edge = cv2.dilate(near.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float((edge & near_edge).sum()) / max(float(edge.sum()), 1.0)


def _object_reason(scores: dict[str, float], solid: np.ndarray, front: np.ndarray,
                   names_in_front: list[str], lim: CurateLimits) -> str | None:
    if not solid.any():
        return "empty: no alpha >= 0.5"
    x0, y0, x1, y1 = _box(solid)
    if min(x1 - x0, y1 - y0) < lim.min_object_px:
        return f"too small: {x1 - x0}x{y1 - y0} px < {lim.min_object_px}"
    side = _cut_side(solid, lim.frame_margin_px)
    if side:
        return f"cut by frame: touches the {side} border"
    if "alpha_solidity" in scores and scores["alpha_solidity"] < lim.min_alpha_solidity:
        return f"alpha_solidity: {scores['alpha_solidity']:.3f} < {lim.min_alpha_solidity}"
    if "alpha_soft_fraction" in scores and scores["alpha_soft_fraction"] > lim.max_alpha_soft_fraction:
        return f"alpha_soft_fraction: {scores['alpha_soft_fraction']:.3f} > {lim.max_alpha_soft_fraction}"
    if front.any():
        occ = _occluded_edge(solid, front)
        if occ > lim.max_occluded_edge:
            return f"occluded: {occ:.2f} of the outline touches {', '.join(names_in_front)}"
    return None


def _shadow_reason(scores: dict[str, float], lim: CurateLimits) -> str | None:
    if scores.get("shadow_area_ratio", 0.0) > lim.max_shadow_area_ratio:
        return f"shadow_area_ratio: {scores['shadow_area_ratio']:.3f} > {lim.max_shadow_area_ratio}"
    if scores.get("shadow_contact", 1.0) < lim.min_shadow_contact:
        return f"shadow_contact: {scores['shadow_contact']:.3f} < {lim.min_shadow_contact}"
    return None


def curate_sample(row: dict[str, Any], lim: CurateLimits
                  ) -> tuple[list[ObjectAsset], BackgroundAsset | None, list[FilteredAsset]]:
    """Assets of one shard row (``io.shards.SHARD_SCHEMA``, decoded by ``io.layered.decode_row``): kept
    objects, the plate (or None), filtered rows."""
    sid, src = row["sample_id"], row["source"]
    h, w = int(row["height"]), int(row["width"])
    decoded = [({"name": lay.name, "kind": lay.kind, "parent": lay.parent, "scores": lay.scores}, lay.rgba)
               for lay in decode_row(row).layers]
    objects = [(lay, arr) for lay, arr in decoded if lay["kind"] == "object"]
    shadows = {lay["parent"]: arr[..., 3].astype(np.float32) / 255.0 for lay, arr in decoded if lay["kind"] == "shadow"}
    kept: list[ObjectAsset] = []
    filtered: list[FilteredAsset] = []
    support = np.zeros((h, w), bool)
    contacts: list[int] = []
    lights: list[tuple[float, float, float]] = []
    for k, (lay, arr) in enumerate(objects):
        name, aid = lay["name"], f"{sid}/{lay['name']}"
        scores = {key: float(v) for key, v in dict(lay["scores"] or []).items()}
        alpha = arr[..., 3].astype(np.float32) / 255.0
        solid = alpha >= 0.5
        support |= alpha > 0
        front_names = [other["name"] for other, _ in objects[k + 1:]]
        front = np.zeros((h, w), bool)
        for _, other in objects[k + 1:]:
            front |= other[..., 3] > 0
        if solid.any() and _box(solid)[3] < h - lim.frame_margin_px:
            contacts.append(contact_of(solid, lim.contact_band_px)[1])
        matte = shadows.get(name)
        if matte is not None and matte.sum() >= lim.min_shadow_mass and solid.any():
            lights.append(light_of(matte, solid, lim.contact_band_px))
        reason = _object_reason(scores, solid, front, front_names, lim)
        if reason:
            filtered.append(FilteredAsset(aid, "object", sid, src, reason))
            continue
        if matte is not None and matte.sum() >= lim.min_shadow_mass:
            why = _shadow_reason(scores, lim)
            if why:
                filtered.append(FilteredAsset(f"{aid}_shadow", "shadow", sid, src, why))
                matte = None
        else:
            matte = None
        kept.append(_object_asset(sid, src, name, arr, matte, scores, lim))
    bg = _background(sid, src, decoded, support, contacts, lights, lim, filtered)
    return kept, bg, filtered


def _object_asset(sid: str, src: str, name: str, arr: np.ndarray, matte: np.ndarray | None,
                  scores: dict[str, float], lim: CurateLimits) -> ObjectAsset:
    h, w = arr.shape[:2]
    alpha = arr[..., 3]
    union = (alpha > 0) | (matte > 0 if matte is not None else False)
    x0, y0, x1, y1 = _box(union)
    m = lim.crop_margin_px
    x0, y0, x1, y1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, w), min(y1 + m, h)
    crop = arr[y0:y1, x0:x1].copy()
    crop[crop[..., 3] == 0, :3] = 0  # colour where alpha is 0 is meaningless; keep PNGs small
    solid = crop[..., 3] >= 128
    top, cy, cx0, cx1 = contact_of(solid, lim.contact_band_px)
    sdx = sdy = None
    if matte is not None:
        sdx, sdy, _ = light_of(matte[y0:y1, x0:x1], solid, lim.contact_band_px)
    return ObjectAsset(
        asset_id=f"{sid}/{name}", sample_id=sid, source=src, layer=name, width=x1 - x0, height=y1 - y0,
        rgba_png=encode_png(crop), shadow_png=None if matte is None else matte_png(matte[y0:y1, x0:x1]),
        box=(x0, y0, x1, y1), object_box=_box(crop[..., 3] > 0), contact_y=cy, contact_x0=cx0, contact_x1=cx1,
        top_y=top, alpha_area=float(crop[..., 3].astype(np.float64).sum() / 255.0), shadow_dx=sdx, shadow_dy=sdy,
        scores=scores,
    )


def _background(sid: str, src: str, decoded: list[tuple[dict[str, Any], np.ndarray]], support: np.ndarray,
                contacts: list[int], lights: list[tuple[float, float, float]], lim: CurateLimits,
                filtered: list[FilteredAsset]) -> BackgroundAsset | None:
    lay, arr = next(((x, a) for x, a in decoded if x["kind"] == "background"), (None, None))
    if lay is None or arr is None:
        return None
    h = arr.shape[0]
    aid = f"{sid}/background"
    scores = {k: float(v) for k, v in dict(lay["scores"] or []).items()}
    seam, frac = scores.get("seam", 0.0), float(support.mean())
    reason = None
    if frac > lim.max_inpainted_frac:
        reason = f"inpainted_frac: {frac:.3f} > {lim.max_inpainted_frac}"
    elif seam > lim.max_seam:
        reason = f"seam: {seam:.3f} > {lim.max_seam}"
    if reason:
        filtered.append(FilteredAsset(aid, "background", sid, src, reason))
        return None
    if contacts:
        horizon, origin = min(min(contacts), int(lim.max_horizon_frac * h)), "contacts"
    else:
        horizon, origin = int(round(lim.default_horizon_frac * h)), "default"
    dx = dy = None
    if lights:
        mass = sum(m for _, _, m in lights)
        dx = sum(x * m for x, _, m in lights) / mass
        dy = sum(y * m for _, y, m in lights) / mass
    return BackgroundAsset(asset_id=aid, sample_id=sid, source=src, width=arr.shape[1], height=h,
                           image_png=encode_png(np.ascontiguousarray(arr[..., :3])), seam=seam,
                           inpainted_frac=frac, horizon_y=horizon, horizon_from=origin, light_dx=dx, light_dy=dy,
                           scores=scores)


# ---------------------------------------------------------------- the stage


def curate(out: Path, assets: Path, limits: CurateLimits | None = None) -> dict[str, Any]:
    """Extract, score and filter assets from the committed shards of ``out`` into ``assets``.

    Writes ``objects.parquet``, ``backgrounds.parquet``, ``filtered.parquet`` and ``assets.json``
    (each to a temporary name, then renamed); a rerun overwrites them. Returns the summary.

    Raises:
        CurateError: ``out`` has no committed shards.
    """
    lim = limits or CurateLimits()
    out, assets = Path(out), Path(assets)
    files = ShardStore(out).committed_files("shards")
    if not files:
        raise CurateError(f"{out}: no committed shards to curate (run `liwi run` first)")
    objects, backgrounds, filtered = [], [], []
    samples = 0
    for row in LayeredShards(out).rows():  # one part at a time keeps memory at one part's images
        objs, bg, filt = curate_sample(row, lim)
        samples += 1
        objects += [o.to_row() for o in objs]
        backgrounds += [bg.to_row()] if bg is not None else []
        filtered += [f.to_row() for f in filt]
    assets.mkdir(parents=True, exist_ok=True)
    write_table(objects, OBJECT_SCHEMA, assets / OBJECTS_FILE)
    write_table(backgrounds, BACKGROUND_SCHEMA, assets / BACKGROUNDS_FILE)
    write_table(filtered, FILTERED_SCHEMA, assets / FILTERED_FILE)
    reasons = Counter(f"{f['kind']}: {f['reason'].split(':', 1)[0]}" for f in filtered)
    summary = {
        "sources": [str(out.resolve())], "shard_files": [str(p) for p in files], "samples": samples,
        "objects": len(objects), "objects_with_shadow": sum(o["shadow"] is not None for o in objects),
        "backgrounds": len(backgrounds), "backgrounds_with_light": sum(b["light_dx"] is not None for b in backgrounds),
        "filtered": len(filtered), "reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "limits": lim.model_dump(mode="json"),
    }
    tmp = assets / (SUMMARY_FILE + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))
    os.replace(tmp, assets / SUMMARY_FILE)
    return summary
