"""Run statistics computed from what is on disk (committed shards, rejects, traces), with DuckDB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc

from add_pipeline.io.shards import ShardStore, read_part_without_pixels


def connect(out: Path, sandboxed: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``shards``, ``traces``, ``rejects`` over the committed parts of ``out``.

    The views are Arrow datasets over the part files, read lazily (a query that skips the PNG
    columns never loads them). With ``sandboxed`` (SQL that a user typed) the connection can then
    reach no file at all: external access is disabled and the configuration locked, so ``COPY ..
    TO``, ``ATTACH``, ``read_csv('/etc/passwd')`` and loading extensions fail, and the run's own
    files cannot be overwritten.
    """
    store = ShardStore(out)
    con = duckdb.connect()
    for kind in ("shards", "traces", "rejects"):
        con.register(kind, store.arrow_source(kind))
    if sandboxed:
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    return con


def compute_stats(out: Path) -> dict[str, Any]:
    """Counts, acceptance rate, reject reasons histogram, per-tool latency (from traces), and the ids
    committed more than once (``duplicate_ids``: 0 unless two writers once shared this folder)."""
    con = connect(out)
    accepted = con.execute("select count(*) from shards").fetchone()[0]  # type: ignore[index]
    rejected = con.execute("select count(*) from rejects").fetchone()[0]  # type: ignore[index]
    total = accepted + rejected
    reasons = {
        f"{stage}: {key}": n
        for stage, key, n in con.execute(
            "select stage, split_part(replace(reason, source || ': ', ''), ':', 1) as key, count(*) as n from rejects "
            "group by all order by n desc, stage, key"
        ).fetchall()
    }
    tools = {}
    for tool, calls, med, mean, p90, tot, med_wall, errors, retries in con.execute(
        """
        select tool, count(*) filter (where error is null),
               median(t) , avg(t), quantile_cont(t, 0.9), sum(t), median(duration_s) filter (where error is null),
               count(*) filter (where error is not null and decision is null),
               count(*) filter (where decision like '%"retry"%')
        from (select *, try_cast(json_extract(output, '$.tool_s') as double) as t from traces)
        where tool is not null and node not in ('plan', 'verify') or (tool is not null and t is not null)
        group by tool order by sum(t) desc nulls last
        """
    ).fetchall():
        tools[tool] = {"calls": calls, "median_s": med, "mean_s": mean, "p90_s": p90, "total_s": tot,
                       "median_wall_s": med_wall, "errors": errors, "retries": retries}
    counts = [n for path in ShardStore(out).committed_files("shards")  # the layers' fields without their pixels
              for n in pc.list_value_length(read_part_without_pixels(path, ["layers"]).column("layers")).to_pylist()]
    layers = (sum(counts) / len(counts) if counts else 0.0, sum(counts))
    dup_ids = [r[0] for r in con.execute(
        "select sample_id from (select sample_id from shards union all select sample_id from rejects) "
        "group by sample_id having count(*) > 1 order by sample_id").fetchall()]
    return {
        **_run_workflow(out),
        "duplicate_ids": len(dup_ids),
        "duplicate_examples": dup_ids[:10],
        "inputs_done": total,
        "accepted": accepted,
        "rejected": rejected,
        "acceptance_rate": accepted / total if total else 0.0,
        "reject_reasons": reasons,
        "layers_per_sample": float(layers[0]),  # type: ignore[index]
        "layers_total": int(layers[1]),  # type: ignore[index]
        "tools": tools,
    }


def _run_workflow(out: Path) -> dict[str, Any]:
    """The workflow the run used and, if it replaced the one asked for, why (``run.json``'s ``fallback``)."""
    try:
        run = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return {"workflow": None, "fallback": None}
    return {"workflow": (run.get("workflow") or {}).get("name"), "fallback": run.get("fallback")}
