"""Nodes of the decompose graph: each calls tools through the context and returns a partial state update.

Per-sample failures are data: a node that cannot go on returns ``status="rejected"``
with the stage and reason (see :func:`guarded`), and the error is in the trace.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from add_pipeline.agents.context import SampleContext
from add_pipeline.agents.policy import PolicyError
from add_pipeline.agents.schemas import Plan
from add_pipeline.agents.state import DecomposeState, ObjectState, active
from add_pipeline.core.peel import PeelLevel, clean_alpha, deshadow, extend_under, peel_targets
from add_pipeline.io.images import InputError

Update = dict[str, Any]
NodeFn = Callable[[DecomposeState, Runtime[SampleContext]], Update]


def reject(stage: str, reason: str) -> Update:
    return {"status": "rejected", "stage": stage, "reason": reason}


def guarded(stage: str) -> Callable[[NodeFn], NodeFn]:
    """Turn any exception of a node into a recorded rejection of this sample at ``stage``."""

    def wrap(fn: NodeFn) -> NodeFn:
        @functools.wraps(fn)
        def node(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
            try:
                return fn(state, runtime)
            except Exception as exc:  # the error becomes data: trace + reject row
                ctx = runtime.context
                # A bad input file's error already reads "<file>: <reason>"; others get their type.
                msg = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
                ctx.trace.record(stage, None, time.time(), 0.0, error=msg + "\n" + traceback.format_exc(limit=8))
                return reject(stage, msg[:500])

        return node

    return wrap


def _band(state: DecomposeState, obj: ObjectState) -> int:
    """Trimap half-width in px: 1.5% of the long side, scaled by the object's retry multiplier."""
    base = 0.015 * max(state["width"], state["height"])
    return max(2, int(round(base * obj["band_scale"])))


def _update(objects: list[ObjectState], oid: str, **changes: Any) -> list[ObjectState]:
    return [ObjectState(**{**o, **changes}) if o["id"] == oid else o for o in objects]  # type: ignore[typeddict-item]


def _drop(ctx: SampleContext, objects: list[ObjectState], oid: str, reason: str, node: str) -> list[ObjectState]:
    ctx.trace.record(node, None, time.time(), 0.0, decision={"drop_object": oid, "reason": reason})
    for key in ("mask", "alpha", "fg", "shadow"):
        ctx.store.pop(f"{key}/{oid}", None)
    return _update(objects, oid, status="dropped", reason=reason)


# ---------------------------------------------------------------- nodes


@guarded("load")
def load(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    loaded = ctx.tool("load", "load", state["source"])
    ctx.store["image"] = loaded.rgb
    h, w = loaded.rgb.shape[:2]
    return {"width": w, "height": h, "load_notes": list(loaded.notes), "status": "running", "attempt": 0,
            "inpaint_fallback": False}


@guarded("plan")
def plan(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    started, t0 = time.time(), time.perf_counter()
    context = {"sample_id": state["sample_id"], "width": state["width"], "height": state["height"]}
    try:
        p = ctx.policy.plan(ctx.store["image"], ctx.workflow.plan, context)
        p = Plan.model_validate(p.model_dump())  # whatever the policy is, its plan must validate
    except (PolicyError, ValueError) as exc:
        ctx.trace.record("plan", ctx.policy.name, started, time.perf_counter() - t0, inputs=context,
                         output=getattr(ctx.policy, "last_call", None), error=str(exc))
        return reject("plan", f"policy failed: {exc}"[:500])
    ctx.trace.record("plan", ctx.policy.name, started, time.perf_counter() - t0, inputs=context,
                     output=getattr(ctx.policy, "last_call", None), decision=p.model_dump(mode="json"))
    return {"plan": p.model_dump(mode="json")}


@guarded("propose")
def propose(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    p = Plan.model_validate(state["plan"])
    image = ctx.store["image"]
    canvas = float(state["width"] * state["height"])
    objects: list[ObjectState] = []
    labels = [hint.name for hint in p.objects]  # the planner's names: prompts for text-prompted proposers
    for prop in ctx.tool("propose", "propose", image, p.max_objects, labels=labels or None):
        oid = f"obj{len(objects)}"
        area = float(prop.mask.sum()) if prop.mask is not None else float(
            (prop.box[2] - prop.box[0]) * (prop.box[3] - prop.box[1]))
        if not p.min_area_frac <= area / canvas <= p.max_area_frac:
            ctx.trace.record("propose", None, time.time(), 0.0,
                             decision={"skip_proposal": list(prop.box), "area_frac": area / canvas})
            continue
        if prop.mask is not None:
            ctx.store[f"prior/{oid}"] = prop.mask
        objects.append(ObjectState(id=oid, box=list(prop.box), score=float(prop.score), status="active", reason="",
                                   band_scale=1.0, strictness=1.0, shadow="auto" if p.shadows else "none",
                                   scores={"proposal": float(prop.score)}))
    if not objects:
        return reject("propose", "no objects found within the plan's area bounds")
    return {"objects": objects}


@guarded("segment")
def segment(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    p = Plan.model_validate(state["plan"])
    image = ctx.store["image"]
    canvas = float(state["width"] * state["height"])
    objects = list(state["objects"])
    for obj in active(state):
        oid = obj["id"]
        if f"mask/{oid}" in ctx.store:
            continue
        seg = ctx.tool("segment", "segment", image, tuple(obj["box"]), ctx.store.get(f"prior/{oid}"))
        frac = float(seg.mask.sum()) / canvas
        if not p.min_area_frac <= frac <= p.max_area_frac:
            objects = _drop(ctx, objects, oid, f"mask area {frac:.4f} outside plan bounds", "segment")
            continue
        dup = next((o["id"] for o in objects if o["status"] == "active" and o["id"] != oid
                    and f"mask/{o['id']}" in ctx.store
                    and _overlap(ctx.store[f"mask/{o['id']}"], seg.mask) > 0.6), None)
        if dup is not None:
            objects = _drop(ctx, objects, oid, f"duplicate of {dup}", "segment")
            continue
        ctx.store[f"mask/{oid}"] = seg.mask
        objects = _update(objects, oid, scores={**obj["scores"], "segment": float(seg.score)})
    if not any(o["status"] == "active" for o in objects):
        return {"objects": objects, **reject("segment", "no object survived segmentation")}
    return {"objects": objects}


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller mask: 1.0 when one mask (nearly) contains the other."""
    smaller = float(min(a.sum(), b.sum()))
    return float((a & b).sum()) / smaller if smaller else 0.0


@guarded("matte")
def matte(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    image = ctx.store["image"]
    for obj in active(state):
        oid = obj["id"]
        if f"alpha/{oid}" in ctx.store:
            continue
        m = ctx.tool("matte", "matte", image, ctx.store[f"mask/{oid}"], band=_band(state, obj))
        ctx.store[f"alpha/{oid}"] = clean_alpha(m.alpha)
        ctx.store[f"fg/{oid}"] = m.foreground
    return {}


@guarded("shadow")
def shadow(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    image = ctx.store["image"]
    objs = active(state)
    objects = list(state["objects"])
    for obj in objs:
        oid = obj["id"]
        if f"shadow/{oid}" in ctx.store:
            continue
        mask = ctx.store[f"mask/{oid}"]
        if obj["shadow"] != "auto":
            ctx.store[f"shadow/{oid}"] = np.zeros(mask.shape, np.float32)
            continue
        others = np.zeros_like(mask)
        for o in objs:
            if o["id"] != oid:
                others |= ctx.store[f"mask/{o['id']}"]
        sm = ctx.tool("shadow", "shadow", image, mask, others, strictness=obj["strictness"])
        ctx.store[f"shadow/{oid}"] = clean_alpha(sm.matte)
        objects = _update(objects, oid, scores={**obj["scores"], "shadow": float(sm.score)})
    return {"objects": objects}


@guarded("order")
def order(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    objs = active(state)
    idx = ctx.tool("order", "order", ctx.store["image"], [ctx.store[f"mask/{o['id']}"] for o in objs])
    ids = [objs[i]["id"] for i in idx]
    ctx.store["R"] = ctx.store["image"].astype(np.float32) / 255.0
    ctx.store["levels"] = []
    ctx.store["inpainted"] = np.zeros(ctx.store["image"].shape[:2], bool)
    return {"order": ids, "peel_queue": list(reversed(ids))}


@guarded("peel")
def peel(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    """Remove the front-most remaining object: lift its visible shadow, then inpaint what it covered."""
    ctx = runtime.context
    oid, rest = state["peel_queue"][0], state["peel_queue"][1:]
    current = ctx.store["R"]
    alpha = ctx.store[f"alpha/{oid}"]
    support = alpha > 0
    s = extend_under(ctx.store[f"shadow/{oid}"], support)
    # Inpaint from lit surroundings: filling from the shadowed ones and dividing afterwards
    # over-brightens the hole wherever the fill drew from outside the shadow.
    lit = deshadow(current, np.where(support, 0.0, s))
    filled = ctx.tool("peel", "inpaint", np.round(lit * 255).astype(np.uint8), support,
                      fallback=state.get("inpaint_fallback", False))
    shadow_target, below = peel_targets(current, lit, filled.astype(np.float32) / 255.0, s, support)
    ctx.store["levels"] = [PeelLevel(oid, alpha, ctx.store[f"fg/{oid}"], s, current, shadow_target)] + \
        ctx.store["levels"]
    ctx.store["R"] = below
    ctx.store["inpainted"] = ctx.store["inpainted"] | support
    return {"peel_queue": rest}


@guarded("compose")
def compose(state: DecomposeState, runtime: Runtime[SampleContext]) -> Update:
    ctx = runtime.context
    ctx.store["layers"] = ctx.tool("compose", "assemble", ctx.store["R"], ctx.store["levels"])
    return {}
