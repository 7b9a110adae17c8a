"""Run the decompose graph on one input and package the outcome (a shard row or a reject row + traces)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from add_pipeline.agents.context import SampleContext
from add_pipeline.agents.policy import Policy
from add_pipeline.agents.trace import TraceRecorder
from add_pipeline.core.config import Workflow
from add_pipeline.exec.runner import ToolRunner
from add_pipeline.io.inputs import InputItem

#: LangGraph's default is 25 super-steps; peel loops once per object and verify may revise.
RECURSION_LIMIT = 200


@dataclass
class SampleOutcome:
    """What one input became: exactly one of ``row`` (accepted) or ``reject``, plus its trace rows."""

    sample_id: str
    row: dict[str, Any] | None
    reject: dict[str, Any] | None
    traces: list[dict[str, Any]]
    tool_seconds: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    checkpoint: tuple[Any, Any, Any] | None = None  # (config, checkpoint, metadata) made on a worker


def decompose_one(
    item: InputItem,
    graph: Any,
    workflow: Workflow,
    runner: ToolRunner,
    policy: Policy,
    workflow_label: str,
) -> SampleOutcome:
    """Run ``graph`` for ``item``; never raises for per-sample problems (they become a reject row)."""
    t0 = time.perf_counter()
    trace_id = uuid.uuid4().hex
    ctx = SampleContext(workflow=workflow, runner=runner, policy=policy, trace=TraceRecorder(trace_id, item.sample_id))
    config = {"configurable": {"thread_id": trace_id}, "recursion_limit": RECURSION_LIMIT}
    try:
        final = graph.invoke({"sample_id": item.sample_id, "source": item.source, "status": "running"},
                             config=config, context=ctx, **_durability(graph))
    except Exception as exc:  # a failure of the graph machinery itself (e.g. recursion limit)
        ctx.trace.record("graph", None, time.time(), 0.0, error=f"{type(exc).__name__}: {exc}")
        final = {"status": "rejected", "stage": "graph", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    checkpoint = take_checkpoint(graph, trace_id)
    row = reject = None
    if final.get("status") == "accepted":
        row = {**ctx.store["row"], "trace_id": trace_id, "workflow": workflow_label}
    else:
        reject = {
            "sample_id": item.sample_id, "source": item.source,
            "stage": final.get("stage") or "graph",
            "reason": final.get("reason") or "graph ended without a verdict",
            "trace_id": trace_id, "workflow": workflow_label,
            "rejected_at": datetime.now(timezone.utc),
        }
    return SampleOutcome(item.sample_id, row, reject, ctx.trace.rows, dict(ctx.tool_seconds),
                         time.perf_counter() - t0, checkpoint)


def _durability(graph: Any) -> dict[str, str]:
    """Checkpoint every step where the history is kept (SQLite in the driver); on a worker only the
    last checkpoint travels to the driver, so writing the intermediate ones would be wasted work."""
    from langgraph.checkpoint.memory import InMemorySaver

    return {"durability": "exit"} if isinstance(getattr(graph, "checkpointer", None), InMemorySaver) else {}


def take_checkpoint(graph: Any, thread_id: str) -> tuple[Any, Any, Any] | None:
    """On a worker (in-memory checkpointer): the run's last checkpoint, removed from memory, so the
    driver can store it in ``checkpoints.sqlite``. Elsewhere (SQLite already has it): None."""
    from langgraph.checkpoint.memory import InMemorySaver

    saver = getattr(graph, "checkpointer", None)
    if not isinstance(saver, InMemorySaver):
        return None
    config = {"configurable": {"thread_id": thread_id}}
    found = saver.get_tuple(config)
    saver.delete_thread(thread_id)
    return None if found is None else (found.config, found.checkpoint, found.metadata)
