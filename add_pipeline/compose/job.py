"""The compose stage's job: one composition per item, scheduled by the generic executor.

Items are ``comp-{seed}-{i:06d}`` with source ``compose://<assets>#<i>``; composition
``i`` draws all its randomness from ``np.random.default_rng([seed, i])``, so its pixels
do not depend on scheduling order and a rerun (resume) skips the committed ids.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from add_pipeline.agents.context import SampleContext
from add_pipeline.agents.trace import TraceRecorder
from add_pipeline.compose.assets import AssetLibrary
from add_pipeline.compose.graph import build_compose_graph
from add_pipeline.compose.plan import ComposeSettings
from add_pipeline.compose.policy import ComposePolicy, build_compose_policy
from add_pipeline.core.config import Workflow, load_workflow
from add_pipeline.exec.run import (
    ExecOptions,
    RunError,
    check_cluster,
    checkpointer,
    exclusive,
    execute,
    prepare_out,
)
from add_pipeline.exec.runner import ToolRunner
from add_pipeline.exec.sample import RECURSION_LIMIT, SampleOutcome
from add_pipeline.io.inputs import InputItem


def composition_items(assets: Path, n: int, seed: int) -> list[InputItem]:
    """The ``n`` items of a compose run (deterministic ids and sources)."""
    root = str(Path(assets).resolve())
    return [InputItem(f"comp-{seed}-{i:06d}", f"compose://{root}#{i}") for i in range(n)]


@dataclass
class ComposeJob:
    """Compose one sample through the compose graph (implements ``exec.run.Job``)."""

    workflow: Workflow
    graph: Any
    policy: ComposePolicy
    library: AssetLibrary
    settings: ComposeSettings
    seed: int

    def recipe(self) -> None:
        """Compositions run as graphs in the driver (execution.placement: tool-tasks) only, for now."""
        return None

    def process(self, item: InputItem, runner: ToolRunner) -> SampleOutcome:
        t0 = time.perf_counter()
        index = int(item.source.rsplit("#", 1)[1])
        trace_id = uuid.uuid4().hex
        ctx = SampleContext(workflow=self.workflow, runner=runner, policy=self.policy,  # type: ignore[arg-type]
                            trace=TraceRecorder(trace_id, item.sample_id))
        ctx.store.update(library=self.library, settings=self.settings, rng=np.random.default_rng([self.seed, index]))
        config = {"configurable": {"thread_id": trace_id}, "recursion_limit": RECURSION_LIMIT}
        try:
            final = self.graph.invoke({"sample_id": item.sample_id, "source": item.source, "index": index,
                                       "status": "running", "attempt": 0}, config=config, context=ctx)
        except Exception as exc:  # a failure of the graph machinery itself (e.g. recursion limit)
            ctx.trace.record("graph", None, time.time(), 0.0, error=f"{type(exc).__name__}: {exc}")
            final = {"status": "rejected", "stage": "graph", "reason": f"{type(exc).__name__}: {exc}"[:500]}
        row = reject = None
        if final.get("status") == "accepted":
            row = {**ctx.store["row"], "trace_id": trace_id, "workflow": self.workflow.name}
        else:
            reject = {"sample_id": item.sample_id, "source": item.source, "stage": final.get("stage") or "graph",
                      "reason": final.get("reason") or "graph ended without a verdict", "trace_id": trace_id,
                      "workflow": self.workflow.name, "rejected_at": datetime.now(timezone.utc)}
        return SampleOutcome(item.sample_id, row, reject, ctx.trace.rows, dict(ctx.tool_seconds),
                             time.perf_counter() - t0)


def load_compose_workflow(name_or_path: str, seed: int) -> tuple[Workflow, ComposeSettings]:
    """The workflow (must be ``stage: compose``) with ``seed`` set, and its composition settings
    (the ``audit`` step's parameters, see :class:`ComposeSettings`)."""
    wf = load_workflow(name_or_path).model_copy(update={"seed": seed})
    if wf.stage != "compose":
        raise RunError(f"workflow {wf.name!r} is a {wf.stage} workflow; compose needs one with `stage: compose`")
    try:
        settings = ComposeSettings(**wf.params("audit"))
    except ValueError as exc:
        raise RunError(f"workflow {wf.name!r}: bad composition settings in the audit step: {exc}") from exc
    return wf, settings


def compose(assets: Path, out: Path, n: int, seed: int, workflow: str = "compose-default",
            workers: int | None = None, shard_size: int = 64, ray_address: str | None = None,
            overwrite: bool = False, local: bool = False, progress: bool = True,
            own_entries: tuple[str, ...] = (), license_id: str = "unknown") -> dict[str, Any]:
    """Compose ``n`` layered samples from the curated ``assets`` into ``out`` (same shard contract as
    ``liwi run``, ``source_kind="composed"``); resumable. Returns the stats written to ``out/stats.json``.
    ``own_entries``: names the caller keeps in ``out`` itself (not someone else's files); ``license_id``:
    the data's licence for the dataset card."""
    if n < 0:
        raise RunError(f"n must be >= 0, got {n}")
    check_cluster(ray_address, local, 15.0)  # before anything touches OUT
    wf, settings = load_compose_workflow(workflow, seed)
    try:
        library = AssetLibrary.load(assets)
    except ValueError as exc:
        raise RunError(str(exc)) from exc
    ex = ExecOptions(out=Path(out), workers=workers or os.cpu_count() or 1, shard_size=shard_size,
                     ray_address=ray_address, overwrite=overwrite, local=local, progress=progress,
                     own_entries=own_entries)
    items = composition_items(Path(assets), n, seed)
    options = {"assets": str(Path(assets).resolve()), "n": n, "seed": seed, "workflow": workflow,
               "license": license_id}
    with exclusive(ex.out):
        todo = prepare_out(items, wf, ex, {"stage": "compose", "options": options,
                                           "assets": {"objects": len(library.objects),
                                                      "backgrounds": len(library.backgrounds)}})
        policy_options = dict(wf.policy.options)
        if wf.policy.name == "openai":
            policy_options.setdefault("cache_dir", str(ex.out / ".policy-cache"))
        policy = build_compose_policy(wf.policy.name, **policy_options)
        with checkpointer(ex.out, wf.execution.checkpoint_graphs) as saver:
            job = ComposeJob(wf, build_compose_graph(saver), policy, library, settings, seed)
            return execute(todo, job, ex)


__all__ = ["ComposeJob", "compose", "composition_items", "load_compose_workflow"]
