"""``liwi tools check``: what each tool of a workflow still needs before it can run.

Builds every tool of the workflow (primary and fallback cards) from its card, without loading any
weights, and asks model tools for their :meth:`~add_pipeline.tools.models.runtime.ModelRuntime.check`.
Classical tools need nothing and are always ok.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from add_pipeline.core.config import STEPS, Workflow
from add_pipeline.exec.runner import tool_spec
from add_pipeline.tools.base import ToolError


@dataclass(frozen=True)
class ToolStatus:
    """Readiness of one tool card of a workflow. ``ok`` iff ``problems`` is empty; notes are advisory."""

    card: str
    step: str
    backend: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _gpus_visible() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def check_workflow(workflow: Workflow) -> list[ToolStatus]:
    """One :class:`ToolStatus` per (step, card) of ``workflow``, in step order, fallbacks after primaries."""
    out: list[ToolStatus] = []
    gpus: bool | None = None
    for step in (s for s in STEPS if s in workflow.steps):
        fallbacks = [False] + ([True] if workflow.steps[step].fallback else [])
        for fb in fallbacks:
            card = workflow.card(step, fb)
            problems: list[str] = []
            notes: list[str] = []
            try:
                tool = tool_spec(workflow, step, fb).build()  # constructors load no weights
            except ToolError as exc:
                problems.append(str(exc))
            else:
                check = getattr(tool, "check", None)
                if callable(check):
                    problems += list(check())
            if card.resources.num_gpus > 0:
                gpus = _gpus_visible() if gpus is None else gpus
                if not gpus:
                    notes.append(f"the card reserves {card.resources.num_gpus} GPU per worker but none is visible "
                                 "here: Ray schedules it only on a cluster with GPU nodes")
            out.append(ToolStatus(card.name, step, card.backend, not problems, problems, notes))
    return out
