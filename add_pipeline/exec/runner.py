"""How graph nodes reach tools: the :class:`ToolRunner` protocol and its in-process implementation.

The graph never knows where a tool runs.  :class:`LocalToolRunner` calls tools
in this process (tests, debugging); :class:`add_pipeline.exec.ray_exec.RayToolRunner`
sends the same calls to Ray tasks or actors.  Both build tools from the
workflow's tool cards with :func:`tool_spec`.
"""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from add_pipeline.core.config import Workflow
from add_pipeline.tools.base import Tool, build_tool, tool_class


@dataclass(frozen=True)
class ToolSpec:
    """Everything needed to build one tool on any worker: family, registry name, parameters, seed.

    The seed is handed to the tool only if its constructor takes one, which is checked where the
    tool is built (on the worker), so that the driver never imports tool implementations.
    """

    family: str
    backend: str
    params: tuple[tuple[str, Any], ...]
    seed: int = 0

    def build(self) -> Tool:
        params = dict(self.params)
        cls = tool_class(self.family, self.backend)
        if "seed" not in params and "seed" in inspect.signature(cls.__init__).parameters:
            params["seed"] = self.seed
        return build_tool(self.family, self.backend, **params)


def tool_spec(workflow: Workflow, step: str, fallback: bool = False) -> ToolSpec:
    """The spec of the tool serving ``step``; the loader also gets the workflow's size limits."""
    card = workflow.card(step, fallback)
    params = workflow.params(step, fallback)
    if step == "load":
        params = {**params, "working_size": workflow.working_size, "max_pixels": workflow.max_pixels,
                  "max_bytes": workflow.max_bytes}
    if card.checkpoint is not None:
        params = {**params, "checkpoint": card.checkpoint}
    return ToolSpec(card.family, card.backend, tuple(sorted((k, _frozen(v)) for k, v in params.items())),
                    workflow.seed)


def tool_steps(workflow: Workflow) -> list[tuple[str, bool]]:
    """Every ``(step, fallback)`` pair whose tool a sample of ``workflow`` may call."""
    return [(s, fb) for s in workflow.steps for fb in (False, True) if not fb or workflow.steps[s].fallback]


def _frozen(value: Any) -> Any:
    """Lists and dicts of YAML params as tuples, so that a spec can key the per-worker tool cache."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


@dataclass(frozen=True)
class Attempt:
    """A failed system-level attempt of a tool call (the call was retried)."""

    error: str
    duration_s: float


@dataclass(frozen=True)
class CallResult:
    """A tool's return value, the seconds the tool itself ran, and the retried attempts before it."""

    value: Any
    tool_s: float
    retries: list[Attempt] = field(default_factory=list)


class ToolSystemError(RuntimeError):
    """A tool call kept failing for system reasons (worker crash, lost object, timeout)."""


class ToolRunner(Protocol):
    """Runs ``step``'s tool on ``args``; raises the tool's own exception if the tool fails."""

    def call(self, step: str, *args: Any, fallback: bool = False, **kwargs: Any) -> CallResult: ...

    def close(self) -> None: ...


class LocalToolRunner:
    """Calls tools in this process; builds each tool once and reuses it."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self._tools: dict[ToolSpec, Tool] = {}
        self._lock = threading.Lock()

    def _tool(self, spec: ToolSpec) -> Tool:
        with self._lock:
            if spec not in self._tools:
                self._tools[spec] = spec.build()
            return self._tools[spec]

    def prepare(self, steps: list[tuple[str, bool]] | None = None) -> int:
        """Build the tools of ``(step, fallback)`` pairs now (default: every step and fallback of the
        workflow) and load the weights of those that have any, so that the first sample does not pay
        for it; returns how many were built.

        A tool that fails to build or load is skipped: the sample that calls it meets the same error
        and records it in its trace and reject row, as it would without this warm-up.
        """
        built = 0
        for step, fb in tool_steps(self.workflow) if steps is None else steps:
            try:
                tool = self._tool(tool_spec(self.workflow, step, fb))
                built += 1
                load = getattr(tool, "ensure_loaded", None)
                if callable(load):
                    load()
            except Exception:  # noqa: BLE001 (reported where the sample calls the tool)
                continue
        return built

    def call(self, step: str, *args: Any, fallback: bool = False, **kwargs: Any) -> CallResult:
        tool = self._tool(tool_spec(self.workflow, step, fallback))
        t0 = time.perf_counter()
        value = tool(*args, **kwargs)
        return CallResult(value, time.perf_counter() - t0)

    def close(self) -> None:
        self._tools.clear()
