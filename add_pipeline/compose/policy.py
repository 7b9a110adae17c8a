"""Decision policies of the compose graph: who plans a composition and who judges its audit.

``rules`` (default): the seeded sampler of :mod:`~add_pipeline.compose.plan`, and a fixed
verdict (accept when every check passes, else re-plan with the failures as feedback
until the budget is spent).  ``openai``: an LLM picks background, objects and
placement from a compact candidate list (ids, sizes, scores; no pixels); its JSON must
validate as a :class:`CompositionPlan` whose ids exist and numbers are in range, or it
is asked again (bounded), through :class:`~add_pipeline.agents.policy_openai.OpenAIPolicy`'s
client, retry and cache machinery.  Verdicts stay rule-based for both: an audit
failure is measured, not a matter of taste.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from add_pipeline.agents.policy import PolicyError
from add_pipeline.compose.assets import AssetLibrary
from add_pipeline.compose.audit import ComposeCheck
from add_pipeline.compose.plan import ComposeSettings, CompositionPlan, sample_plan


class AuditReport(BaseModel):
    """What the auditor measured on one attempt of one composition."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sample_id: str
    attempt: int = Field(ge=0)
    max_attempts: int = Field(ge=0)
    objects: list[str]
    checks: list[ComposeCheck]

    @property
    def failed(self) -> list[ComposeCheck]:
        return [c for c in self.checks if not c.passed]


class ComposeDecision(BaseModel):
    """Verdict on an audit: accept, re-plan (``feedback`` goes to the planner) or reject."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    verdict: Literal["accept", "replan", "reject"]
    reason: str = Field(default="", max_length=1000)
    feedback: list[str] = Field(default_factory=list, max_length=32)


class ComposePolicy(Protocol):
    """Planner + verdict of the compose graph."""

    name: str

    def plan(self, lib: AssetLibrary, settings: ComposeSettings, context: dict[str, Any], feedback: list[str],
             rng: np.random.Generator) -> CompositionPlan:
        """A plan for one composition; ``feedback`` lists the failed checks of the previous attempt."""
        ...

    def decide(self, report: AuditReport) -> ComposeDecision: ...

    def describe(self) -> dict[str, Any]: ...


def rules_decide(report: AuditReport) -> ComposeDecision:
    """Accept iff every check passed; a recomposition failure is a bug (reject); else re-plan while budget lasts."""
    failed = report.failed
    if not failed:
        return ComposeDecision(verdict="accept", reason="all checks passed")
    text = [c.describe() for c in failed]
    if any(c.name.startswith("recomposition") for c in failed):
        return ComposeDecision(verdict="reject", reason="recomposition not exact: " + "; ".join(text))
    if report.attempt >= report.max_attempts:
        return ComposeDecision(verdict="reject", reason="retry budget exhausted; still failing: " + "; ".join(text))
    return ComposeDecision(verdict="replan", reason="; ".join(text)[:1000], feedback=text[:32])


class RulesComposePolicy:
    """Deterministic given the composition's generator: the constrained sampler, then :func:`rules_decide`.

    A re-plan draws again from the same generator, allowing one object fewer per failed attempt
    (crowding is the usual cause of a failed visibility check)."""

    name = "rules"

    def __init__(self, draws: int = 8) -> None:
        self.draws = draws

    def plan(self, lib: AssetLibrary, settings: ComposeSettings, context: dict[str, Any], feedback: list[str],
             rng: np.random.Generator) -> CompositionPlan:
        cap = max(settings.min_objects, settings.max_objects - int(context.get("attempt", 0)))
        errors = []
        for _ in range(self.draws):  # another background may fit where this one did not
            try:
                return sample_plan(lib, settings, rng, max_objects=cap)
            except ValueError as exc:
                errors.append(str(exc))
        raise PolicyError(f"rules sampler found no valid plan in {self.draws} draws; last: {errors[-1]}")

    def decide(self, report: AuditReport) -> ComposeDecision:
        return rules_decide(report)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "draws": self.draws}


COMPOSER_PROMPT = (
    "You compose training images from cut-out objects and empty background plates. Pick one background "
    "and 1-4 objects from the candidates and place each so that it stands on the ground: its contact row "
    "(contact_y, canvas px) at or below the background's ground line and above the bottom margin, x the "
    "canvas column of its contact centre, scale so that its height (height_px * scale) is within the "
    "allowed share of the canvas, the whole object inside the canvas, objects lower in the frame larger "
    "(perspective), objects not hiding each other much. Light: the shadow of a point at height t lands at "
    "(dx*t, dy*t) from its foot (dy < 0: shadows fall back); keep the background's light when it has one. "
    "shadow: 'own' (only if the object has_shadow), 'cast' or 'none'. Reply with one JSON object: "
    '{"background", "objects": [{"asset_id", "x", "contact_y", "scale", "flip", "shadow"}], '
    '"light": {"dx", "dy"}, "shadow_strength", "harmonize", "notes"}.'
)


class OpenAIComposePolicy:
    """LLM planner over a candidate list drawn with the composition's generator (so prompts, and the
    cache keys made from them, are deterministic for a seed). Options other than the two below go to
    :class:`~add_pipeline.agents.policy_openai.OpenAIPolicy` (model, base_url, api_key_env, client, ...)."""

    name = "openai"

    def __init__(self, max_backgrounds: int = 6, max_objects: int = 12, **options: Any) -> None:
        from add_pipeline.agents.policy_openai import OpenAIPolicy

        self.max_backgrounds, self.max_objects = int(max_backgrounds), int(max_objects)
        self.llm = OpenAIPolicy(**options)

    @property
    def last_call(self) -> dict[str, Any] | None:
        return self.llm.last_call

    def candidates(self, lib: AssetLibrary, rng: np.random.Generator) -> dict[str, Any]:
        """Compact, JSON-able candidates: ids, sizes and scores, never pixels."""
        bg_ids, obj_ids = sorted(lib.backgrounds), sorted(lib.objects)
        bg_pick = sorted(rng.choice(len(bg_ids), size=min(self.max_backgrounds, len(bg_ids)), replace=False))
        obj_pick = sorted(rng.choice(len(obj_ids), size=min(self.max_objects, len(obj_ids)), replace=False))
        bgs = []
        for i in bg_pick:
            b = lib.backgrounds[bg_ids[i]]
            light = None if b.light_dx is None else [round(b.light_dx, 3), round(b.light_dy or 0.0, 3)]
            bgs.append({"id": b.asset_id, "width": b.width, "height": b.height, "ground_from_y": b.horizon_y,
                        "light": light, "seam": round(b.seam, 3), "inpainted_frac": round(b.inpainted_frac, 3)})
        objs = []
        for i in obj_pick:
            o = lib.objects[obj_ids[i]]
            objs.append({"id": o.asset_id, "height_px": o.object_height,
                         "width_px": o.object_box[2] - o.object_box[0], "has_shadow": o.shadow_png is not None,
                         "alpha_solidity": round(o.scores.get("alpha_solidity", 1.0), 3)})
        return {"backgrounds": bgs, "objects": objs}

    def plan(self, lib: AssetLibrary, settings: ComposeSettings, context: dict[str, Any], feedback: list[str],
             rng: np.random.Generator) -> CompositionPlan:
        cands = self.candidates(lib, rng)
        s = settings
        text = (
            f"Compose sample {context.get('sample_id')!r} (attempt {context.get('attempt', 0)}).\n"
            f"Constraints: {s.min_objects}-{s.max_objects} objects; height_px*scale between "
            f"{s.min_height_frac} and {s.max_height_frac} of the canvas height; scale in [{s.min_scale}, "
            f"{s.max_scale}]; keep {s.margin_px} px from every border; shadow_strength in {list(s.shadow_strength)}; "
            f"harmonize in {list(s.harmonize)}; each object at least {s.min_visible:.0%} visible.\n"
            f"Candidates:\n{json.dumps(cands, sort_keys=True)}"
        )
        if feedback:
            text += "\n\nThe previous plan failed these checks; fix them:\n" + "\n".join(feedback[:16])
        messages: list[dict[str, Any]] = [{"role": "system", "content": COMPOSER_PROMPT},
                    {"role": "user", "content": [self.llm._text(text, CompositionPlan)]}]

        def parse(obj: dict[str, Any]) -> CompositionPlan:
            plan = CompositionPlan.model_validate(obj).ordered()
            plan.check_against(lib, settings)  # ids exist, numbers in range, geometry fits
            return plan

        # OpenAIPolicy's generic request path: retries with the error fed back, disk cache, key redaction.
        return self.llm._ask("CompositionPlan", CompositionPlan, messages, parse)

    def decide(self, report: AuditReport) -> ComposeDecision:
        return rules_decide(report)

    def describe(self) -> dict[str, Any]:
        return {**self.llm.describe(), "role": "compose planner", "max_backgrounds": self.max_backgrounds,
                "max_objects": self.max_objects}


def build_compose_policy(name: str, **options: Any) -> ComposePolicy:
    """``rules`` (options: draws) or ``openai`` (options of OpenAIPolicy plus max_backgrounds, max_objects)."""
    if name == "rules":
        return RulesComposePolicy(**options)
    if name == "openai":
        return OpenAIComposePolicy(**options)
    raise ValueError(f"unknown compose policy {name!r}; known: ['openai', 'rules']")
