"""The decompose graph's state: small, JSON-able values only (arrays live in the context store)."""

from __future__ import annotations

from typing import Any, TypedDict


class ObjectState(TypedDict):
    """One candidate object as the graph tracks it."""

    id: str
    box: list[int]
    score: float
    status: str  # "active" | "dropped"
    reason: str  # why it was dropped ("" while active)
    band_scale: float  # trimap band multiplier; retry_matte halves it
    strictness: float  # shadow detection strictness; retry_shadow raises it
    shadow: str  # "auto" | "none" (plan says no shadows) | "dropped"
    scores: dict[str, float]


class DecomposeState(TypedDict, total=False):
    """State of one sample's graph run; nodes return partial updates of it."""

    sample_id: str
    source: str
    width: int
    height: int
    load_notes: list[str]
    plan: dict[str, Any]
    objects: list[ObjectState]
    order: list[str]  # active object ids, back to front
    peel_queue: list[str]  # ids still to peel, front-most first
    inpaint_fallback: bool
    attempt: int
    checks: list[dict[str, Any]]
    decision: dict[str, Any]
    status: str  # "running" | "accepted" | "rejected"
    stage: str | None
    reason: str | None


def active(state: DecomposeState) -> list[ObjectState]:
    """The objects still in play."""
    return [o for o in state.get("objects", []) if o["status"] == "active"]
