"""``liwi eval`` reports (``REPORT.json``, :mod:`add_pipeline.eval.report`) in the run report.

Each report gives a summary (protocol, per-merge-level means, per-kind figures, what could not be
scored) and one row per scored sample, worst first: by the LayerD pair cost after the last merge
level (``(RGB L1 + 1 - alpha IoU) / 2``, lower is better).  The rows' figures also become gallery
metrics of the samples with the same id, so the gallery can be sorted by them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from add_pipeline.report.traces import finite

MAX_BYTES = 512_000_000
"""Largest REPORT.json read."""

ROW_FIELDS = ("sample_id", "cost", "rgb_l1", "alpha_iou", "cost_0", "merges", "object_iou", "shadow_iou", "bg_psnr")
"""Columns of :attr:`EvalReport.rows` (``cost`` etc. after the last merge level, ``cost_0`` before any merge;
``object_iou`` / ``shadow_iou``: mean over the sample's ground-truth objects / shadows)."""

GALLERY_METRICS = {"cost": "eval cost", "alpha_iou": "eval alpha IoU", "object_iou": "eval object IoU"}
"""Row fields shown as gallery metrics, and their names there."""


class EvalReportError(ValueError):
    """A file given as an eval report is not one."""


@dataclass(frozen=True)
class EvalReport:
    """One ``REPORT.json``: ``name`` (its label in the page), ``summary`` (the report less its
    per-sample part) and ``rows`` (lists in :data:`ROW_FIELDS` order, worst first)."""

    name: str
    path: str
    summary: dict[str, Any]
    rows: list[list[Any]]


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in (finite(x) for x in values) if v is not None]
    return sum(vals) / len(vals) if vals else None


def _last(values: Any) -> float | None:
    return finite(values[-1]) if isinstance(values, list) and values else None


def _row(sid: str, s: dict[str, Any]) -> list[Any]:
    kinds = s.get("kinds") or {}
    return [sid, _last(s.get("cost")), _last(s.get("rgb_l1")), _last(s.get("alpha_iou")),
            finite((s.get("cost") or [None])[0]), s.get("merges"),
            _mean([o.get("iou") for o in kinds.get("objects") or []]),
            _mean([o.get("iou") for o in kinds.get("shadows") or []]), finite(kinds.get("bg_psnr"))]


def load_eval(path: Path, name: str | None = None) -> EvalReport:
    """Read one eval report.

    Raises:
        EvalReportError: the file is unreadable, too large, not JSON, or has no ``samples`` / ``levels``.
    """
    try:
        size = path.stat().st_size
        text = path.read_text(encoding="utf-8") if size <= MAX_BYTES else None
        data = None if text is None else json.loads(text)
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise EvalReportError(f"{path}: cannot read an eval report ({e})") from e
    if text is None:
        raise EvalReportError(f"{path}: {size} bytes is more than an eval report ({MAX_BYTES} at most)")
    if not isinstance(data, dict) or not isinstance(data.get("samples"), dict) or not isinstance(data.get("levels"),
                                                                                                 list):
        raise EvalReportError(f"{path}: not a liwi eval report (REPORT.json of liwi eval has 'samples' and 'levels')")
    rows = [_row(str(sid), s) for sid, s in data["samples"].items() if isinstance(s, dict)]
    rows.sort(key=lambda r: (r[1] is None, -(r[1] or 0.0), r[0]))  # worst first, unscored last
    summary = {k: v for k, v in data.items() if k != "samples"}
    return EvalReport(name=name or path.stem, path=str(path), summary=summary, rows=rows)


def gallery_metrics(reports: list[EvalReport]) -> dict[str, dict[str, float | None]]:
    """``{metric name: {sample_id: value}}`` for the gallery; with several reports each name gets
    the report's name in brackets."""
    out: dict[str, dict[str, float | None]] = {}
    for rep in reports:
        suffix = f" [{rep.name}]" if len(reports) > 1 else ""
        for field, label in GALLERY_METRICS.items():
            k = ROW_FIELDS.index(field)
            out[label + suffix] = {r[0]: r[k] for r in rep.rows}
    return out
