"""Per-sample runtime context handed to every node (not checkpointed: it holds arrays and handles)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from add_pipeline.agents.policy import Policy
from add_pipeline.agents.trace import TraceRecorder
from add_pipeline.core.config import Workflow
from add_pipeline.exec.runner import ToolRunner


@dataclass
class SampleContext:
    """What the nodes of one sample's graph share.

    Attributes:
        workflow: the resolved workflow.
        runner: where tools run (in process or on Ray); the graph does not know which.
        policy: planner/verifier decision maker.
        trace: this sample's trace recorder.
        store: arrays by key (``image``, ``mask/obj0``, ``alpha/obj0`` ...). Graph *state* holds only
            small JSON-able values so that LangGraph checkpoints stay small.
        tool_seconds: seconds spent inside tools, by step (for stats and benchmarks).
    """

    workflow: Workflow
    runner: ToolRunner
    policy: Policy
    trace: TraceRecorder
    store: dict[str, Any] = field(default_factory=dict)
    tool_seconds: dict[str, float] = field(default_factory=dict)

    def tool(self, node: str, step: str, *args: Any, fallback: bool = False, **kwargs: Any) -> Any:
        """Run ``step``'s tool, record a trace event (and one per retried system failure), return its value."""
        card = self.workflow.card(step, fallback)
        started = time.time()
        t0 = time.perf_counter()
        try:
            result = self.runner.call(step, *args, fallback=fallback, **kwargs)
        except Exception as exc:
            self.trace.record(
                node, card.name, started, time.perf_counter() - t0, inputs=list(args) + [kwargs],
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}",
            )
            raise
        for r in result.retries:
            self.trace.record(node, card.name, started, r.duration_s, inputs=list(args) + [kwargs],
                              decision={"retry": True}, error=r.error)
        self.trace.record(node, card.name, started, time.perf_counter() - t0,
                          inputs=list(args) + [kwargs], output={"value": result.value, "tool_s": result.tool_s})
        self.tool_seconds[card.name] = self.tool_seconds.get(card.name, 0.0) + result.tool_s
        return result.value
