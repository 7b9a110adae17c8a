"""The verifier, revise and emit nodes: measure, let the policy decide, act on the decision."""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
from langgraph.runtime import Runtime

from add_pipeline.agents.context import SampleContext
from add_pipeline.agents.nodes import Update, _drop, _update, guarded, reject
from add_pipeline.agents.policy import PolicyError
from add_pipeline.agents.schemas import CheckResult, Decision, Plan, VerifyReport
from add_pipeline.agents.state import DecomposeState, active
from add_pipeline.core.config import VerifyLimits


def build_checks(meas: dict[str, dict[str, float]], limits: VerifyLimits, plan: Plan) -> list[CheckResult]:
    """Turn the verifier tool's measurements into bounded checks (bounds from workflow and plan)."""
    inf = float("inf")
    bounds: dict[str, tuple[float, float]] = {
        "recomposition_mean": (0.0, limits.recomposition_mean),
        "recomposition_max": (0.0, limits.recomposition_max),
        "seam": (0.0, limits.seam_max),
        "area_frac": (plan.min_area_frac, plan.max_area_frac),
        "alpha_solidity": (limits.alpha_solidity_min, inf),
        "alpha_soft_fraction": (0.0, limits.alpha_soft_fraction_max),
        "shadow_area_ratio": (0.0, limits.shadow_area_ratio_max),
        "shadow_contact": (limits.shadow_contact_min, inf),
    }
    checks = []
    for target, values in meas.items():
        for name, value in values.items():
            if name in bounds:
                low, high = bounds[name]
                checks.append(CheckResult(name=name, target=target, value=float(value), low=low, high=high))  # type: ignore[arg-type]
    return checks


def _crops(ctx: SampleContext, ids: list[str]) -> dict[str, np.ndarray]:
    """Per object: the photo cropped to its box with the layer's alpha shown as a dimmed cut-out."""
    image = ctx.store["image"]
    out = {}
    for lay in ctx.store["layers"]:
        if lay.kind == "object" and lay.name in ids:
            ys, xs = np.nonzero(lay.rgba[..., 3])
            if ys.size:
                y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                a = lay.rgba[y0:y1, x0:x1, 3:4].astype(np.float32) / 255.0
                crop = image[y0:y1, x0:x1].astype(np.float32)
                out[lay.name] = np.round(crop * (0.35 + 0.65 * a)).astype(np.uint8)
    out["background"] = cv2.resize(ctx.store["layers"][0].rgba[..., :3], (256, 256), interpolation=cv2.INTER_AREA)
    return out


@guarded("verify")
def verify(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    ids = [o["id"] for o in active(state)]
    masks = {oid: ctx.store[f"mask/{oid}"] for oid in ids}
    meas = ctx.tool("verify", "verify", ctx.store["image"], ctx.store["layers"], masks, ctx.store["inpainted"])
    ctx.store["measurements"] = meas
    limits = ctx.workflow.verify
    checks = build_checks(meas, limits, Plan.model_validate(state["plan"]))
    attempt = state.get("attempt", 0)
    report = VerifyReport(sample_id=state["sample_id"], attempt=attempt, max_attempts=limits.max_attempts,
                          objects=ids, checks=checks)
    started, t0 = time.time(), time.perf_counter()
    crops = _crops(ctx, ids) if getattr(ctx.policy, "vision", False) else None
    try:
        decision = Decision.model_validate(ctx.policy.decide(report, crops).model_dump())
        decision.check_against(report)
    except (PolicyError, ValueError) as exc:
        ctx.trace.record("verify", ctx.policy.name, started, time.perf_counter() - t0,
                         inputs=report.model_dump(mode="json"), output=getattr(ctx.policy, "last_call", None),
                         error=str(exc))
        return reject("verify", f"policy failed: {exc}"[:500])
    failed = [f"{c.target}.{c.name}={c.value:.3g}" for c in report.failed]
    ctx.trace.record("verify", ctx.policy.name, started, time.perf_counter() - t0,
                     inputs={"attempt": attempt, "failed": failed},
                     output=getattr(ctx.policy, "last_call", None), decision=decision.model_dump(mode="json"))
    update: Update = {"checks": [c.model_dump(mode="json") for c in checks],
                      "decision": decision.model_dump(mode="json")}
    if decision.verdict == "reject":
        return {**update, **reject("verify", decision.reason or "rejected by the verifier: " + ", ".join(failed))}
    if decision.verdict == "revise" and attempt > limits.max_attempts:
        return {**update, **reject("verify", "retry budget exhausted; still failing: " + ", ".join(failed))}
    return update


@guarded("revise")
def revise(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    """Apply the verifier's actions; the router then resumes at the earliest affected step."""
    ctx = runtime.context
    objects = list(state["objects"])
    byid = {o["id"]: o for o in objects}
    fallback = state.get("inpaint_fallback", False)
    for act in Decision.model_validate(state["decision"]).actions:
        o = byid.get(act.target)
        if act.kind == "drop_object":
            objects = _drop(ctx, objects, act.target, act.reason or "dropped by verifier", "revise")
        elif act.kind == "retry_matte" and o:
            objects = _update(objects, act.target, band_scale=o["band_scale"] * 0.5)
            ctx.store.pop(f"alpha/{act.target}", None)
        elif act.kind == "retry_shadow" and o:
            objects = _update(objects, act.target, strictness=o["strictness"] + 0.5)
            ctx.store.pop(f"shadow/{act.target}", None)
        elif act.kind == "drop_shadow" and o:
            objects = _update(objects, act.target, shadow="dropped")
            ctx.store.pop(f"shadow/{act.target}", None)
        elif act.kind == "retry_inpaint":
            fallback = True
    ctx.trace.attempt = state.get("attempt", 0) + 1  # later events belong to the next attempt
    update: Update = {"objects": objects, "attempt": ctx.trace.attempt, "inpaint_fallback": fallback}
    if not any(o["status"] == "active" for o in objects):
        return {**update, **reject("verify", "every object was dropped by the verifier")}
    return update


def revise_target(state: DecomposeState) -> str:
    """Earliest step the last decision's actions invalidate."""
    kinds = {a["kind"] for a in state.get("decision", {}).get("actions", [])}
    if "retry_matte" in kinds:
        return "matte"
    if kinds & {"retry_shadow", "drop_shadow"}:
        return "shadow"
    return "order"


@guarded("emit")
def emit(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    meas: dict[str, dict[str, float]] = ctx.store["measurements"]
    scores: dict[str, dict[str, Any]] = {"background": {**meas["background"], **meas["sample"]}}
    for o in active(state):
        scores[o["id"]] = {**o["scores"], **meas.get(o["id"], {})}
    meta = {"load_notes": state.get("load_notes", []), "attempts": state.get("attempt", 0),
            "order": state.get("order", []), "plan": state.get("plan"),
            "dropped": {o["id"]: o["reason"] for o in state["objects"] if o["status"] == "dropped"}}
    ctx.store["row"] = ctx.tool("emit", "encode", state["sample_id"], state["source"], ctx.store["image"],
                                ctx.store["layers"], scores, meta)
    return {"status": "accepted"}
