"""Layered samples made from known parts, and output folders holding them (for reader, HF, export tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from add_pipeline.core.composite import alpha_over
from add_pipeline.core.peel import AssembledLayer
from add_pipeline.io.shards import ShardStore
from add_pipeline.tools.encoder import LayeredRowEncoder


def known_layers(seed: int, h: int = 48, w: int = 64) -> tuple[np.ndarray, list[AssembledLayer]]:
    """A photo and the layers it is made of: an opaque textured background, a shadow (black, soft
    alpha) and a soft-edged object above it. The photo is their composite, rounded to uint8, and the
    background differs from the photo only under the object and its shadow (as an inpainted plate)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.dstack([(xx * 3 + seed) % 256, (yy * 5) % 256, ((xx + yy) * 2) % 256, np.full((h, w), 255)])
    bg = bg.astype(np.uint8)
    cy, cx, r = h // 2 + int(rng.integers(-4, 5)), w // 2 + int(rng.integers(-6, 7)), 9 + int(rng.integers(0, 4))
    dist = np.hypot(yy - cy, xx - cx)
    obj_alpha = np.clip((r - dist) / 3.0 + 0.5, 0, 1)  # soft edge about 3 px wide
    obj = np.zeros((h, w, 4), np.uint8)
    obj[..., :3] = rng.integers(0, 256, 3, dtype=np.uint8)
    obj[..., 1] = (xx * 7 % 256).astype(np.uint8)  # some texture inside
    obj[..., 3] = (obj_alpha * 255).round().astype(np.uint8)
    obj[obj[..., 3] == 0, :3] = 0
    sh_dist = np.hypot((yy - cy - r) * 2.0, xx - cx - 4)
    shadow = np.zeros((h, w, 4), np.uint8)
    shadow[..., 3] = (np.clip((r - sh_dist) / 4.0, 0, 1) * 160).round().astype(np.uint8)
    layers = [AssembledLayer("background", "background", bg, None),
              AssembledLayer("obj0_shadow", "shadow", shadow, "obj0"),
              AssembledLayer("obj0", "object", obj, None)]
    photo = (alpha_over([lay.rgba for lay in layers]) * 255.0).round().astype(np.uint8)
    # outside the object and the shadow the background equals the photo (as the pipeline's plates do)
    support = (obj[..., 3] > 0) | (shadow[..., 3] > 0)
    bg[~support, :3] = photo[~support]
    return photo, layers


def write_known_out(out: Path, ids: list[str], shard_size: int = 2, codec: str = "webp") -> dict[str, tuple]:
    """Commit one known sample per id into ``out`` (``shard_size`` per part); returns id -> (photo, layers)."""
    store = ShardStore(out)
    store.prepare()
    enc = LayeredRowEncoder(codec=codec)  # type: ignore[arg-type]
    truth: dict[str, tuple] = {}
    rows: list[dict] = []
    for i, sid in enumerate(ids):
        photo, layers = known_layers(i)
        truth[sid] = (photo, layers)
        scores = {"obj0": {"alpha_solidity": 0.9 + i / 100}, "background": {"seam": 1.5}}
        row = enc(sid, f"/photos/{i}.png", photo, layers, scores, {"note": i})
        rows.append({**row, "trace_id": f"t{i}", "workflow": "known"})
        if len(rows) == shard_size:
            store.commit(rows, [], [])
            rows = []
    if rows:
        store.commit(rows, [], [])
    return truth
