"""Run-level figures of an output folder: what ``liwi stats`` shows, plus the distributions the plots need.

The counts, acceptance, reject reasons and per-tool medians / p90 are
:func:`add_pipeline.exec.stats.compute_stats`'s (the same numbers as ``liwi stats``); this module
adds only what a plot needs beyond them: every tool call's own time (for the histograms), the
layer counts per sample, the time span the traces cover, and the start-up / processing split of
the last invocation that ``stats.json`` records.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from add_pipeline.report.traces import finite

# The tool-time expression and the calls that count, as in compute_stats (exec/stats.py).
_TOOL_CALLS = """
    select tool, t from (select *, try_cast(json_extract(output, '$.tool_s') as double) as t from traces)
    where (tool is not null and node not in ('plan', 'verify') or (tool is not null and t is not null))
      and t is not null
"""


@dataclass
class RunInfo:
    """What the report says about the whole run (always the whole folder, whatever ``--where`` picks).

    Attributes:
        stats: :func:`~add_pipeline.exec.stats.compute_stats` of the folder.
        run: ``run.json`` (``{}`` when absent or unreadable); ``run_problem`` says why.
        last_run: ``stats.json``'s ``last_run`` (start-up / processing seconds of the last invocation).
        tool_times: per tool, every successful call's own seconds (``output.tool_s``).
        layer_counts: ``{n_layers: samples}`` over the accepted samples.
        span_s: seconds from the first trace event to the end of the last one (all invocations).
        schema_versions: committed part files per shard schema version.
    """

    stats: dict[str, Any]
    run: dict[str, Any]
    run_problem: str | None
    last_run: dict[str, Any] | None
    tool_times: dict[str, list[float]]
    layer_counts: dict[int, int]
    span_s: float | None
    schema_versions: dict[int, list[str]] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        """``"decompose"`` or ``"compose"`` (run.json's ``stage``; decompose when unknown)."""
        return str(self.run.get("stage") or (self.run.get("workflow") or {}).get("stage") or "decompose")

    @property
    def versions(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.run.get("versions") or {}).items()}

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.run.get("options") or {})


def _read_json(path: Path) -> tuple[dict[str, Any], str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"{path.name} is missing"
    except (OSError, ValueError) as e:
        return {}, f"{path.name} is unreadable ({e})"
    return (data, None) if isinstance(data, dict) else ({}, f"{path.name} is not a JSON object")


def collect_run(out: Path, con: Any) -> RunInfo:
    """The :class:`RunInfo` of ``out``; ``con`` is a :func:`~add_pipeline.exec.stats.connect` connection.

    Raises:
        OSError, ValueError: the committed parts cannot be read (as ``liwi stats``).
    """
    import pyarrow.compute as pc

    from add_pipeline.exec.stats import compute_stats
    from add_pipeline.io.shards import ShardStore, read_part_without_pixels

    stats = compute_stats(out)
    run, problem = _read_json(out / "run.json")
    saved, _ = _read_json(out / "stats.json")
    last = saved.get("last_run") if isinstance(saved.get("last_run"), dict) else None
    times: dict[str, list[float]] = {}
    for tool, t in con.execute(_TOOL_CALLS).fetchall():
        v = finite(t)
        if v is not None:
            times.setdefault(str(tool), []).append(v)
    counts: Counter[int] = Counter()
    for path in ShardStore(out).committed_files("shards"):  # the layers' fields, never their pixels
        counts.update(pc.list_value_length(read_part_without_pixels(path, ["layers"]).column("layers")).to_pylist())
    layers = dict(sorted(counts.items()))
    span = con.execute("select epoch(max(started_at + to_microseconds(cast(duration_s * 1e6 as bigint)))) "
                       "- epoch(min(started_at)) from traces").fetchall()[0]
    return RunInfo(stats=stats, run=run, run_problem=problem, last_run=last, tool_times=times,
                   layer_counts=layers, span_s=finite(span[0]) if span else None,
                   schema_versions=ShardStore(out).schema_versions())


def reject_rows(con: Any) -> list[dict[str, Any]]:
    """Every committed reject: ``{"sample_id", "source", "stage", "reason", "key", "trace_id"}`` in part order.

    ``key`` is the reason's fixed prefix with its stage (``"load: not an image"``): the key of
    ``compute_stats``'s reject-reason histogram, so a filter on it matches the plot.
    """
    rel = con.execute(
        "select sample_id, source, stage, reason, stage || ': ' || split_part(replace(reason, source || ': ', ''), "
        "':', 1), trace_id from rejects")
    return [{"sample_id": s, "source": src, "stage": st, "reason": r, "key": k, "trace_id": t}
            for s, src, st, r, k, t in rel.fetchall()]
