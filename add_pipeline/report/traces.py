"""Per-sample agent traces for the report: events, the verifier's decisions, the rebuilt checks.

All events of the selected samples come from one DuckDB query over the committed trace parts
(:func:`add_pipeline.exec.stats.connect`), joined on the ``trace_id`` of each shard or reject row
(what ``liwi show`` does for one sample) and streamed in gallery order, one sample at a time.
Long texts are cut for display (:data:`TEXT_CHARS`); decisions are parsed from their full text.

The checks the verifier (decompose) or the audit (compose) judged are not stored as such: they
are rebuilt here from the last measurement event of the trace and the run's resolved workflow
(``run.json``) with the stage's own ``build_checks``, so the report shows the same bounds the
run used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

TEXT_CHARS = 200
"""Longest input / output text kept per event (the trace parts keep the rest)."""

DECISION_CHARS = 600
"""Longest decision text kept per event."""

ERROR_CHARS = 1500
"""Longest error text kept per event (the first lines of a traceback)."""

EVENT_FIELDS = ("seq", "attempt", "node", "tool", "t", "dur", "tool_s", "input", "output", "decision", "error")
"""Order of the fields of one event as stored in the trace chunks (``t``: seconds from the
trace's first event; ``dur``: the event's wall time; ``tool_s``: the tool's own time, if any)."""


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing or not finite (JSON has no NaN or infinity)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _cut(text: str | None, n: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= n else text[: n - 1] + "…"


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, att, node, tool, started, dur, tool_s, inp, outp, dec, err, meas = row
    return {"seq": int(seq), "attempt": int(att), "node": node, "tool": tool, "started": finite(started) or 0.0,
            "dur": finite(dur) or 0.0, "tool_s": finite(tool_s), "input": _cut(inp, TEXT_CHARS),
            "output": _cut(outp, TEXT_CHARS), "decision": _cut(dec, DECISION_CHARS), "decision_full": dec,
            "error": _cut(err, ERROR_CHARS), "measurements": meas}


def iter_events(con: Any, trace_ids: Sequence[str], batch: int = 4096) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """``(k, events of trace_ids[k])`` for every ``k`` in order, each list in ``seq`` order (empty for
    an empty or unknown id), streamed: only one sample's events are held at a time.

    Args:
        con: a connection from :func:`~add_pipeline.exec.stats.connect`; it runs nothing else until
            the iterator is exhausted.
        trace_ids: the trace of each gallery entry.
    Yields:
        events as ``{"seq", "attempt", "node", "tool", "started" (epoch s), "dur", "tool_s", "input",
        "output", "decision" (cut), "decision_full", "error", "measurements" (the full output of an
        audit / verifier measurement, else None)}``.
    """
    wanted = pa.table({"k": pa.array(range(len(trace_ids)), pa.int64()), "trace_id": pa.array(trace_ids, pa.string())})
    con.register("report_wanted", wanted)
    try:
        cur = con.execute(
            f"""
            select w.k, seq, attempt, node, tool, epoch(started_at), duration_s,
                   try_cast(json_extract(output, '$.tool_s') as double), left(input, {TEXT_CHARS + 1}),
                   left(output, {TEXT_CHARS + 1}), decision, left(error, {ERROR_CHARS + 1}),
                   case when node in ('audit', 'verify') and decision is null then output end
            from traces t join report_wanted w on t.trace_id = w.trace_id
            order by w.k, seq
            """)
        nxt, k_open, events = 0, -1, []
        while rows := cur.fetchmany(batch):
            for row in rows:
                if row[0] != k_open:
                    if k_open >= 0:
                        yield from ((j, []) for j in range(nxt, k_open))
                        yield k_open, events
                        nxt = k_open + 1
                    k_open, events = row[0], []
                events.append(_event(row[1:]))
        if k_open >= 0:
            yield from ((j, []) for j in range(nxt, k_open))
            yield k_open, events
            nxt = k_open + 1
        yield from ((j, []) for j in range(nxt, len(trace_ids)))
    finally:
        con.unregister("report_wanted")


def event_rows(events: list[dict[str, Any]]) -> list[list[Any]]:
    """The events as lists in :data:`EVENT_FIELDS` order, times relative to the first event."""
    t0 = min((e["started"] for e in events), default=0.0)
    return [[e["seq"], e["attempt"], e["node"], e["tool"], round(e["started"] - t0, 6), round(e["dur"], 6),
             None if e["tool_s"] is None else round(e["tool_s"], 6), e["input"], e["output"], e["decision"],
             e["error"]] for e in events]


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def verdicts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verifier's (or audit policy's) decisions in order: ``{"attempt", "verdict", "reason",
    "actions": [text], "failed": [text]}``; a policy that failed is ``verdict "error"`` with the
    error as reason."""
    out = []
    for e in events:
        if e["node"] != "verify" or (e["decision_full"] is None and e["error"] is None):
            continue
        if e["decision_full"] is None:
            out.append({"attempt": e["attempt"], "verdict": "error", "reason": _cut(e["error"], 300),
                        "actions": [], "failed": []})
            continue
        dec = _json(e["decision_full"])
        if not isinstance(dec, dict):
            continue
        actions = [f"{a.get('kind', '?')} {a.get('target', '')}: {a.get('reason', '')}".strip()
                   for a in dec.get("actions") or [] if isinstance(a, dict)]
        actions += [str(f) for f in dec.get("feedback") or []]  # compose: feedback to the planner
        inp = _json(e["input"])
        failed = [str(f) for f in (inp.get("failed") or [])] if isinstance(inp, dict) else []
        out.append({"attempt": e["attempt"], "verdict": str(dec.get("verdict", "?")),
                    "reason": _cut(str(dec.get("reason", "")), 500), "actions": actions[:16], "failed": failed[:16]})
    return out


class CheckBuilder:
    """Rebuilds the bounded checks of one sample from its trace with the run's workflow.

    Args:
        run: ``run.json`` as a dict (its ``workflow`` is the resolved workflow).
    Attributes:
        problem: why checks cannot be rebuilt for this run (an old or foreign ``run.json``), else None.
    """

    def __init__(self, run: dict[str, Any]) -> None:
        from pydantic import ValidationError

        from add_pipeline.core.config import Workflow

        self.problem: str | None = None
        self._wf: Workflow | None = None
        self._settings: Any = None
        try:
            self._wf = Workflow.model_validate(run.get("workflow") or {})
            if self._wf.stage == "compose":
                from add_pipeline.compose.plan import ComposeSettings

                self._settings = ComposeSettings(**self._wf.params("audit"))
        except (ValidationError, KeyError, TypeError, ValueError) as e:
            self.problem = f"run.json's workflow does not validate here ({str(e).splitlines()[0]})"
            self._wf = None

    @property
    def stage(self) -> str | None:
        return None if self._wf is None else self._wf.stage

    def checks(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        """``(checks of the last measured attempt, problem)``: each check ``{"attempt", "target",
        "name", "value", "low", "high", "ok"}`` (an unbounded side is None)."""
        if self._wf is None:
            return [], self.problem
        meas_ev = [e for e in events if e["measurements"]]
        if not meas_ev:
            return [], "no measurement in the trace (the sample stopped before the verifier)"
        last = meas_ev[-1]
        parsed = _json(last["measurements"])
        value = parsed.get("value") if isinstance(parsed, dict) else None
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            return [], "the measurement event holds no measurements"
        try:
            built = self._build(self._wf, value, events)
        except (ValueError, TypeError, KeyError) as e:
            return [], f"checks could not be rebuilt: {str(e).splitlines()[0]}"
        return [{"attempt": last["attempt"], "target": c.target, "name": c.name, "value": finite(c.value),
                 "low": finite(c.low), "high": finite(c.high), "ok": bool(c.passed)} for c in built], None

    def _build(self, wf: Any, meas: dict[str, dict[str, float]], events: list[dict[str, Any]]) -> list[Any]:
        meas = {t: {k: float(v) for k, v in vals.items() if isinstance(v, (int, float))} for t, vals in meas.items()}
        if wf.stage == "compose":
            from add_pipeline.compose.audit import build_checks as compose_checks

            return compose_checks(meas, self._settings)
        from add_pipeline.agents.schemas import Plan
        from add_pipeline.agents.verify import build_checks as verify_checks

        plans = [_json(e["decision_full"]) for e in events if e["node"] == "plan" and e["decision_full"]]
        plan = Plan.model_validate(plans[-1]) if plans and isinstance(plans[-1], dict) else wf.plan
        return verify_checks(meas, wf.verify, plan)
