"""Gallery entries: one JSON-able dict per sample, with its strip of thumbnails written to the assets.

Accepted samples are read only through the public reader (:class:`~add_pipeline.io.LayeredShards`)
and decoded with :func:`~add_pipeline.io.decode_row`; rejects are their reject row plus, where the
source file decodes, a thumbnail of it.  The work is split into index ranges that worker processes
(``spawn``: no state shared with the parent's DuckDB or OpenCV threads) render independently, each
with its own reader over the same selection, so rows never travel between processes.

An entry (keys kept short: 10,000 of them are embedded in the page)::

    {"i": position in the gallery, "id", "src", "st": "accepted" | "rejected" | "unreadable",
     "kind": source_kind, "w", "h", "nl"/"no"/"ns": layers / objects / shadows,
     "layers": [{"name", "kind", "z", "bbox", "parent", "scores": {name: value}}],
     "rec": [mean, max] recomposition error of the stored layers (8-bit levels),
     "img": strip path relative to the assets folder (None: "imgerr" says why),
     "stage", "reason" (rejects and unreadable rows)}

The strip's tiles are, for an accepted sample, the photo, every layer back to front and the
recomposition error map; for a reject, its source file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from add_pipeline.report import thumbs

CHUNK = 32
"""Samples per task handed to a worker process."""

IMG_DIR = "img"


@dataclass(frozen=True)
class GalleryJob:
    """What every worker needs to render its ranges (picklable)."""

    out: str
    where: str | None
    limit: int | None
    assets: str
    tile: int = thumbs.TILE_PX


def _strip_path(job: GalleryJob, index: int) -> tuple[Path, str]:
    rel = f"{IMG_DIR}/{index:06d}.webp"
    return Path(job.assets) / rel, rel


def _round(x: float, digits: int = 4) -> float | None:
    v = float(x)
    return float(f"{v:.{digits}g}") if np.isfinite(v) else None


def recomposition_diff(image: np.ndarray, layers: Sequence[np.ndarray]) -> np.ndarray:
    """``HxWx3 float32`` ``|composite*255 - image|`` of ``HxWx4 uint8`` layers (back to front) over an
    ``HxWx3 uint8`` photo.

    The same alpha-over as :func:`add_pipeline.core.composite.recomposition_error` (whose mean and
    max it reproduces to 1e-4 levels), in float32 and only inside each layer's visible box, which
    makes it a few times faster on layers that cover a part of the canvas.
    """
    h, w = image.shape[:2]
    out = np.zeros((h, w, 3), np.float32)
    for rgba in layers:
        box = thumbs.alpha_box(rgba[..., 3])
        if box is None:
            continue
        y0, y1, x0, x1 = box
        a = rgba[y0:y1, x0:x1, 3:4].astype(np.float32) * (1.0 / 255.0)
        region = out[y0:y1, x0:x1]
        region[...] = rgba[y0:y1, x0:x1, :3].astype(np.float32) * (1.0 / 255.0) * a + region * (1.0 - a)
    return np.abs(out * 255.0 - image.astype(np.float32))


def sample_entry(row: dict[str, Any], index: int, job: GalleryJob) -> dict[str, Any]:
    """The entry of one shard row (see the module docstring); writes its strip.

    A row that does not decode becomes an ``"unreadable"`` entry with the reader's message: the
    report shows a damaged row, it does not stop on it.
    """
    from add_pipeline.io import decode_row

    base = {"i": index, "id": str(row["sample_id"]), "src": str(row.get("source", "")),
            "kind": str(row.get("source_kind", "")), "w": int(row["width"]), "h": int(row["height"])}
    try:
        s = decode_row(row)
    except ValueError as e:
        return {**base, "st": "unreadable", "stage": "read", "reason": str(e)[:500], "img": None,
                "imgerr": "the row does not decode", "layers": [], "nl": len(row.get("layers") or []),
                "no": 0, "ns": 0, "rec": None}
    stack = s.stack()
    diff = recomposition_diff(s.image, stack)
    tiles = [thumbs.photo_tile(s.image, job.tile)] + [thumbs.layer_tile(r, job.tile) for r in stack]
    tiles.append(thumbs.error_tile(np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]), job.tile))
    path, rel = _strip_path(job, index)
    thumbs.write_strip(tiles, path)
    layers = [{"name": lay.name, "kind": lay.kind, "z": lay.z, "bbox": list(lay.bbox), "parent": lay.parent,
               "scores": {k: _round(v) for k, v in sorted(lay.scores.items())}} for lay in s.layers]
    kinds = [lay.kind for lay in s.layers]
    return {**base, "st": "accepted", "img": rel, "imgerr": None,
            "layers": layers, "nl": len(layers), "no": kinds.count("object"), "ns": kinds.count("shadow"),
            "rec": [_round(diff.mean()), _round(diff.max())]}


def reject_entry(reject: dict[str, Any], index: int, job: GalleryJob) -> dict[str, Any]:
    """The entry of one reject row; writes a one-tile strip when its source decodes."""
    tile, why = thumbs.source_tile(reject["source"], job.tile)
    img = None
    if tile is not None:
        path, img = _strip_path(job, index)
        thumbs.write_strip([tile], path)
    return {"i": index, "id": reject["sample_id"], "src": reject["source"], "st": "rejected", "kind": "",
            "w": None, "h": None, "stage": reject["stage"], "reason": reject["reason"][:1000], "key": reject["key"],
            "img": img, "imgerr": why, "layers": [], "nl": 0,
            "no": 0, "ns": 0, "rec": None}


# ---------------------------------------------------------------- scheduling

_WORKER: dict[str, Any] = {}


def _worker_init(job: GalleryJob) -> None:
    from add_pipeline.io import LayeredShards

    _WORKER["job"] = job
    _WORKER["shards"] = LayeredShards(job.out, where=job.where, limit=job.limit)


def _run_task(task: tuple[str, Any]) -> list[dict[str, Any]]:
    job: GalleryJob = _WORKER["job"]
    kind, payload = task
    if kind == "rejects":
        return [reject_entry(rej, i, job) for i, rej in payload]
    start, stop = payload
    rows = _WORKER["shards"].rows(list(range(start, stop)))
    return [sample_entry(row, start + k, job) for k, row in enumerate(rows)]


def _tasks(n_samples: int, rejects: Sequence[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    for start in range(0, n_samples, CHUNK):
        yield "shards", (start, min(start + CHUNK, n_samples))
    numbered = list(enumerate(rejects, start=n_samples))
    for start in range(0, len(numbered), CHUNK):
        yield "rejects", numbered[start:start + CHUNK]


def render_entries(job: GalleryJob, n_samples: int, rejects: Sequence[dict[str, Any]],
                   workers: int | None = None) -> list[dict[str, Any]]:
    """Entries for the ``n_samples`` selected samples, then for ``rejects``, in that order.

    Args:
        job: where to read and write; its selection must give ``n_samples`` samples.
        rejects: reject rows (:func:`~add_pipeline.report.run_info.reject_rows`).
        workers: processes to use (default: the CPUs); small reports are rendered in this process.
    """
    (Path(job.assets) / IMG_DIR).mkdir(parents=True, exist_ok=True)
    tasks = list(_tasks(n_samples, rejects))
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if workers == 1 or n_samples + len(rejects) <= 2 * CHUNK:
        _worker_init(job)
        try:
            return [e for t in tasks for e in _run_task(t)]
        finally:
            _WORKER.clear()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init,
                             initargs=(job,)) as pool:
        return [e for chunk in pool.map(_run_task, tasks) for e in chunk]
