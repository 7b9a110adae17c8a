"""Per-sample trace recording: one event per tool call, decision and retry. Never pixels, never secrets."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|(?i:bearer)\s+[A-Za-z0-9_\-.]{8,})")


def redact(text: str) -> str:
    """Mask anything shaped like an API key or bearer token."""
    return _SECRET.sub("[REDACTED]", text)


def summarize(obj: Any, depth: int = 0) -> Any:
    """A small JSON-able summary of a tool input or output: arrays become shape/dtype/range."""
    if isinstance(obj, np.ndarray):
        out: dict[str, Any] = {"shape": list(obj.shape), "dtype": str(obj.dtype)}
        if obj.dtype == np.bool_ and obj.ndim == 2:
            out["true"] = int(np.count_nonzero(obj))  # cheap, and says how big a mask is
        return out
    if isinstance(obj, (bool, int, str)) or obj is None:
        return redact(obj[:200]) if isinstance(obj, str) else obj
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, np.generic):
        return summarize(obj.item(), depth)
    if depth >= 3:
        return type(obj).__name__
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: summarize(getattr(obj, f.name), depth + 1) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): summarize(v, depth + 1) for k, v in list(obj.items())[:32]}
    if isinstance(obj, (list, tuple)):
        items = [summarize(v, depth + 1) for v in obj[:16]]
        return items + ([f"... {len(obj) - 16} more"] if len(obj) > 16 else [])
    if hasattr(obj, "model_dump"):
        return summarize(obj.model_dump(mode="json"), depth + 1)
    return type(obj).__name__


def _json(obj: Any) -> str:
    return redact(json.dumps(obj, sort_keys=True, default=str))


class TraceRecorder:
    """Collects the trace rows of one sample (``io.shards.TRACE_SCHEMA``), in order."""

    def __init__(self, trace_id: str, sample_id: str) -> None:
        self.trace_id = trace_id
        self.sample_id = sample_id
        self.rows: list[dict[str, Any]] = []
        self.attempt = 0

    def record(
        self,
        node: str,
        tool: str | None,
        started: float,
        duration_s: float,
        inputs: Any = None,
        output: Any = None,
        decision: Any = None,
        error: str | None = None,
    ) -> None:
        """Append one event; ``started`` is a ``time.time()`` stamp; inputs/outputs get summarised."""
        self.rows.append(
            {
                "trace_id": self.trace_id,
                "sample_id": self.sample_id,
                "seq": len(self.rows),
                "node": node,
                "tool": tool,
                "started_at": datetime.fromtimestamp(started, tz=timezone.utc),
                "duration_s": float(duration_s),
                "input": _json(summarize(inputs)),
                "output": _json(summarize(output)),
                "decision": None if decision is None else _json(summarize(decision)),
                "error": None if error is None else redact(error)[:2000],
                "attempt": self.attempt,
            }
        )

    def now(self) -> float:
        return time.time()
