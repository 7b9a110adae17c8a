"""Typed messages between the graph and its decision policy (rules or an LLM).

Everything a policy returns is validated here: an LLM's output is untrusted, so
it must parse into these models *and* make sense against the report it answers
(:meth:`Decision.check_against`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ObjectHint(BaseModel):
    """An object worth a layer, named by the planner (names become detection prompts for model tools)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=64)
    casts_shadow: bool = True


class Plan(BaseModel):
    """What the decompose graph should look for in one photo."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_objects: int = Field(default=4, ge=1, le=8)
    min_area_frac: float = Field(default=0.005, gt=0.0, lt=0.5)
    max_area_frac: float = Field(default=0.6, gt=0.0, le=1.0)
    shadows: bool = True
    objects: list[ObjectHint] = Field(default_factory=list, max_length=8)
    notes: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _bounds(self) -> Plan:
        if self.min_area_frac >= self.max_area_frac:
            raise ValueError("min_area_frac must be < max_area_frac")
        return self


CheckName = Literal[
    "recomposition_mean",
    "recomposition_max",
    "area_frac",
    "alpha_solidity",
    "alpha_soft_fraction",
    "shadow_area_ratio",
    "shadow_contact",
    "seam",
]


class BoundedCheck(BaseModel):
    """One measurement against its bounds: ``passed`` iff ``low <= value <= high``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    target: str
    value: float
    low: float
    high: float

    @property
    def passed(self) -> bool:
        return self.low <= self.value <= self.high

    def describe(self) -> str:
        return f"{self.target}.{self.name}={self.value:.3g} outside [{self.low:g}, {self.high:g}]"


class CheckResult(BoundedCheck):
    """One verifier measurement; ``target`` is "sample", "background" or an object id."""

    name: CheckName


class VerifyReport(BaseModel):
    """What the verifier measured on one attempt of one sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sample_id: str
    attempt: int = Field(ge=0)
    max_attempts: int = Field(ge=0)
    objects: list[str]
    checks: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


ActionKind = Literal["retry_matte", "retry_shadow", "retry_inpaint", "drop_object", "drop_shadow"]


class Action(BaseModel):
    """One change to make before the next attempt; ``target`` is an object id (or "background")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ActionKind
    target: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="", max_length=300)


class Decision(BaseModel):
    """The policy's verdict on a report: accept, revise (with actions) or reject."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    verdict: Literal["accept", "revise", "reject"]
    actions: list[Action] = Field(default_factory=list, max_length=16)
    reason: str = Field(default="", max_length=500)

    @field_validator("actions")
    @classmethod
    def _unique(cls, v: list[Action]) -> list[Action]:
        seen = {(a.kind, a.target) for a in v}
        if len(seen) != len(v):
            raise ValueError("duplicate actions")
        return v

    def check_against(self, report: VerifyReport) -> None:
        """Raise ``ValueError`` if this decision does not fit ``report`` (unknown targets, etc.)."""
        if self.verdict == "revise" and not self.actions:
            raise ValueError("verdict 'revise' needs at least one action")
        if self.verdict != "revise" and self.actions:
            raise ValueError(f"verdict {self.verdict!r} takes no actions")
        if self.verdict == "accept" and any(
            c.name.startswith("recomposition") for c in report.failed
        ):
            raise ValueError("cannot accept a sample whose recomposition check failed")
        known = set(report.objects) | {"background"}
        for a in self.actions:
            if a.target not in known:
                raise ValueError(f"action {a.kind} targets unknown {a.target!r}; known: {sorted(known)}")
            if (a.kind == "retry_inpaint") != (a.target == "background"):
                raise ValueError(f"action {a.kind} cannot target {a.target!r}")
