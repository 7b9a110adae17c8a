"""The compose graph (LangGraph ``StateGraph``), one run per composition.

    plan -> render -> audit -> emit
      ^                 |
      +---- replan -----+        (bounded by ComposeSettings.max_attempts)
    any node -> END with status "rejected" (stage + reason recorded)

State holds ids and numbers only (the plan as JSON, checks, decision); the asset
library, the composition's random generator and the rendered layers live in the
context store (``library``, ``settings``, ``rng``, ``rendering``, ``expected``).
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from add_pipeline.agents.context import SampleContext
from add_pipeline.agents.nodes import Update, guarded, reject
from add_pipeline.agents.policy import PolicyError
from add_pipeline.compose.audit import build_checks
from add_pipeline.compose.plan import CompositionPlan
from add_pipeline.compose.policy import AuditReport, ComposeDecision
from add_pipeline.compose.render import ObjectPiece


class ComposeState(TypedDict, total=False):
    """State of one composition's graph run; nodes return partial updates of it."""

    sample_id: str
    source: str
    index: int
    width: int
    height: int
    horizon: int
    plan: dict[str, Any]
    attempt: int
    feedback: list[str]
    checks: list[dict[str, Any]]
    decision: dict[str, Any]
    status: str  # "running" | "accepted" | "rejected"
    stage: str | None
    reason: str | None


@guarded("plan")
def plan(state: ComposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    lib, settings = ctx.store["library"], ctx.store["settings"]
    attempt = state.get("attempt", 0)
    context = {"sample_id": state["sample_id"], "index": state["index"], "attempt": attempt}
    feedback = state.get("feedback", [])
    started, t0 = time.time(), time.perf_counter()
    policy: Any = ctx.policy
    try:
        p = policy.plan(lib, settings, context, feedback, ctx.store["rng"])
        p = CompositionPlan.model_validate(p.model_dump()).ordered()  # whatever the policy is, it must validate
        p.check_against(lib, settings)
    except (PolicyError, ValueError) as exc:
        ctx.trace.record("plan", policy.name, started, time.perf_counter() - t0,
                         inputs={**context, "feedback": feedback}, output=getattr(policy, "last_call", None),
                         error=str(exc))
        return reject("plan", f"policy failed: {exc}"[:500])
    ctx.trace.record("plan", policy.name, started, time.perf_counter() - t0,
                     inputs={**context, "feedback": feedback}, output=getattr(policy, "last_call", None),
                     decision=p.model_dump(mode="json"))
    bg = lib.backgrounds[p.background]
    return {"plan": p.model_dump(mode="json"), "width": bg.width, "height": bg.height, "horizon": bg.horizon_y}


@guarded("render")
def render(state: ComposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    lib = ctx.store["library"]
    p = CompositionPlan.model_validate(state["plan"])
    pieces = [ObjectPiece.from_asset(lib.objects[o.asset_id]) for o in p.objects]
    ctx.store["rendering"] = ctx.tool("render", "render", lib.backgrounds[p.background].rgb(), pieces, p)
    ctx.store["expected"] = {f"obj{k}": {"area": lib.objects[o.asset_id].alpha_area * o.scale ** 2,
                                         "contact_y": o.contact_y} for k, o in enumerate(p.objects)}
    return {}


@guarded("audit")
def audit(state: ComposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    settings = ctx.store["settings"]
    r = ctx.store["rendering"]
    meas = ctx.tool("audit", "audit", r.image, r.layers, state["horizon"], ctx.store["expected"])
    ctx.store["measurements"] = meas
    checks = build_checks(meas, settings)
    attempt = state.get("attempt", 0)
    report = AuditReport(sample_id=state["sample_id"], attempt=attempt, max_attempts=settings.max_attempts,
                         objects=sorted(ctx.store["expected"]), checks=checks)
    policy: Any = ctx.policy
    started, t0 = time.time(), time.perf_counter()
    try:
        decision = ComposeDecision.model_validate(policy.decide(report).model_dump())
    except (PolicyError, ValueError) as exc:
        ctx.trace.record("verify", policy.name, started, time.perf_counter() - t0, error=str(exc))
        return reject("audit", f"policy failed: {exc}"[:500])
    failed = [c.describe() for c in report.failed]
    # Decision events are "verify" rows (as in the decompose graph); the tool call above is the "audit" row.
    ctx.trace.record("verify", policy.name, started, time.perf_counter() - t0,
                     inputs={"attempt": attempt, "failed": failed}, decision=decision.model_dump(mode="json"))
    update: Update = {"checks": [c.model_dump(mode="json") for c in checks],
                      "decision": decision.model_dump(mode="json")}
    if decision.verdict == "reject":
        return {**update, **reject("audit", decision.reason or "rejected: " + "; ".join(failed))}
    if decision.verdict == "replan":
        if attempt >= settings.max_attempts:
            return {**update, **reject("audit", "retry budget exhausted; still failing: " + "; ".join(failed))}
        ctx.trace.attempt = attempt + 1  # later events belong to the next attempt
        return {**update, "attempt": attempt + 1, "feedback": decision.feedback}
    return update


@guarded("emit")
def emit(state: ComposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    r, meas = ctx.store["rendering"], ctx.store["measurements"]
    p = CompositionPlan.model_validate(state["plan"])
    scores: dict[str, dict[str, float]] = {"background": dict(meas["sample"])}
    for k, o in enumerate(p.objects):
        scores[f"obj{k}"] = {**meas[f"obj{k}"], "scale": o.scale, "harmonize": p.harmonize}
    meta = {"plan": state["plan"], "attempts": state.get("attempt", 0), "objects": r.objects,
            "horizon_y": state["horizon"], "assets": str(ctx.store["library"].root)}
    ctx.store["row"] = ctx.tool("emit", "encode", state["sample_id"], state["source"], r.image, r.layers, scores,
                                meta, source_kind="composed")
    return {"status": "accepted"}


def _rejected(state: ComposeState) -> bool:
    return state.get("status") == "rejected"


def after_plan(state: ComposeState) -> Literal["render", "__end__"]:
    return END if _rejected(state) else "render"


def after_render(state: ComposeState) -> Literal["audit", "__end__"]:
    return END if _rejected(state) else "audit"


def after_audit(state: ComposeState) -> Literal["emit", "plan", "__end__"]:
    if _rejected(state):
        return END
    return "emit" if state["decision"]["verdict"] == "accept" else "plan"


def build_compose_graph(checkpointer: Any = None) -> Any:
    """Compile the compose graph; ``checkpointer`` (e.g. a SqliteSaver) keeps every step's state."""
    g: StateGraph = StateGraph(ComposeState, context_schema=SampleContext)
    for name, fn in (("plan", plan), ("render", render), ("audit", audit), ("emit", emit)):
        g.add_node(name, fn)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", after_plan, ["render", END])
    g.add_conditional_edges("render", after_render, ["audit", END])
    g.add_conditional_edges("audit", after_audit, ["emit", "plan", END])
    g.add_edge("emit", END)
    return g.compile(checkpointer=checkpointer)
