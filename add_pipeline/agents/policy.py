"""Decision policies for the planner and verifier nodes.

A policy is pluggable: ``rules`` (default, deterministic, no LLM) or ``openai``
(any OpenAI-compatible endpoint, see :mod:`add_pipeline.agents.policy_openai`).
Both return validated :mod:`~add_pipeline.agents.schemas` models; the graph
never sees raw model output.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from add_pipeline.agents.schemas import Action, Decision, Plan, VerifyReport


class PolicyError(RuntimeError):
    """The policy could not produce a valid answer (e.g. an LLM kept returning malformed output)."""


class Policy(Protocol):
    """Planner + verifier decision maker."""

    name: str

    def plan(self, image: np.ndarray, defaults: Plan, context: dict[str, Any]) -> Plan:
        """Plan the decomposition of ``image`` (HxWx3 uint8); ``defaults`` come from the workflow."""
        ...

    def decide(self, report: VerifyReport, crops: dict[str, np.ndarray] | None = None) -> Decision:
        """Turn the verifier's measurements into a verdict; ``crops`` are HxWx3 uint8 views by target."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able description for traces (never secrets)."""
        ...


class RulesPolicy:
    """Deterministic policy: the workflow's plan, and a fixed mapping from failed checks to actions.

    Mapping (first attempt -> later attempts):
      * recomposition_*            -> reject (cannot happen by construction; a bug if it does)
      * area_frac                  -> drop_object
      * alpha_solidity / soft      -> retry_matte, then drop_object
      * shadow_area_ratio / contact-> retry_shadow, then drop_shadow
      * seam                       -> retry_inpaint, then accept (the seam is recorded as a score)
    A sample left with no objects is rejected by the graph, not here.
    """

    name = "rules"

    def plan(self, image: np.ndarray, defaults: Plan, context: dict[str, Any]) -> Plan:
        return defaults

    def decide(self, report: VerifyReport, crops: dict[str, np.ndarray] | None = None) -> Decision:
        failed = report.failed
        if not failed:
            return Decision(verdict="accept", reason="all checks passed")
        for c in failed:
            if c.name.startswith("recomposition"):
                return Decision(verdict="reject", reason=f"{c.name}={c.value:.3f} outside [{c.low}, {c.high}]")
        last = report.attempt >= report.max_attempts
        actions: dict[tuple[str, str], Action] = {}
        dropped: set[str] = set()

        def add(kind: str, target: str, why: str) -> None:
            if target in dropped:
                return
            if kind == "drop_object":
                dropped.add(target)
                for key in [k for k in actions if k[1] == target]:
                    del actions[key]
            actions.setdefault((kind, target), Action(kind=kind, target=target, reason=why))  # type: ignore[arg-type]

        for c in failed:
            why = f"{c.name}={c.value:.3f} outside [{c.low:g}, {c.high:g}]"
            if c.name == "area_frac":
                add("drop_object", c.target, why)
            elif c.name in ("alpha_solidity", "alpha_soft_fraction"):
                add("drop_object" if last else "retry_matte", c.target, why)
            elif c.name in ("shadow_area_ratio", "shadow_contact"):
                add("drop_shadow" if last else "retry_shadow", c.target, why)
            elif c.name == "seam" and not last:
                add("retry_inpaint", "background", why)
        if not actions:
            soft = ", ".join(c.name for c in failed)
            return Decision(verdict="accept", reason=f"remaining failures are soft: {soft}")
        return Decision(
            verdict="revise",
            actions=list(actions.values()),
            reason="; ".join(f"{a.kind} {a.target}" for a in actions.values()),
        )

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name}


def build_policy(name: str, **options: Any) -> Policy:
    """Build a policy by name: ``rules`` or ``openai`` (options: base_url, model, api_key_env, ...)."""
    if name == "rules":
        if options:
            raise ValueError(f"policy 'rules' takes no options, got {sorted(options)}")
        return RulesPolicy()
    if name == "openai":
        from add_pipeline.agents.policy_openai import OpenAIPolicy

        return OpenAIPolicy(**options)
    raise ValueError(f"unknown policy {name!r}; known: ['openai', 'rules']")
