"""Typed, frozen configuration: tool cards (``tools/*.yaml``) and workflows (``workflows/*.yaml``).

The YAML files are what users edit; these models are the only place defaults
live.  A workflow names, for each step of the graph, a tool card (and optional
parameter overrides); the card says which registered implementation to build,
where its weights are, and what resources a Ray worker needs for it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from add_pipeline.agents.schemas import Plan

STEPS = ("load", "propose", "segment", "matte", "shadow", "inpaint", "order", "assemble", "verify", "encode")
#: Steps each stage's workflow must name; a tool card's family must equal the step it serves.
STAGE_STEPS: dict[str, tuple[str, ...]] = {"decompose": STEPS, "compose": ("render", "audit", "encode")}
Family = Literal["load", "propose", "segment", "matte", "shadow", "inpaint", "order", "assemble", "verify", "encode",
                 "render", "audit"]


def config_root() -> Path:
    """Folder holding ``tools/``, ``workflows/``, ``agents/``: ``$LIWI_HOME`` or the repository root."""
    env = os.environ.get("LIWI_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A workflow or tool card is missing or invalid; the message names the file."""


class Resources(BaseModel):
    """What one call (task) or one actor of a tool needs from a Ray worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: int = Field(default=0, ge=0, description="bytes; 0 = no reservation")


class ToolCard(BaseModel):
    """A tool as deployed: implementation, weights, resources."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    family: Family
    backend: str = Field(description="registry name of the implementation within its family")
    description: str = ""
    checkpoint: str | None = Field(default=None, description="local path or hub id of weights; None = no weights")
    params: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    actor: bool = Field(default=False, description="serve from long-lived Ray actors instead of tasks")
    replicas: int = Field(default=1, ge=1, description="number of actors when actor=true")
    timeout_s: float | None = Field(default=None, gt=0)


class Step(BaseModel):
    """One step of a workflow: a tool card name plus parameter overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tool: str
    params: dict[str, Any] = Field(default_factory=dict)
    fallback: str | None = Field(default=None, description="tool card used when the verifier asks for a retry")


class VerifyLimits(BaseModel):
    """Verifier bounds; a check passes iff ``low <= value <= high``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int = Field(default=2, ge=0, le=5)
    recomposition_mean: float = Field(default=1.0, description="max mean abs error, 8-bit levels")
    recomposition_max: float = Field(default=8.0, description="max abs error, 8-bit levels")
    alpha_solidity_min: float = Field(default=0.5, description="min share of the mask with alpha > 0.5")
    alpha_soft_fraction_max: float = Field(default=0.5, description="max share of support with 0.05 < alpha < 0.95")
    shadow_area_ratio_max: float = Field(default=3.0, description="max shadow area / object area")
    shadow_contact_min: float = Field(default=0.5, description="min share of shadow mass within reach of the object")
    seam_max: float = Field(default=4.0, description="max ratio of seam gradient to image gradient")


class Execution(BaseModel):
    """Scheduling knobs for the Ray executor."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    in_flight_per_worker: int = Field(default=2, ge=1)
    task_retries: int = Field(default=2, ge=0)
    checkpoint_graphs: bool = True
    sample_timeout_s: float | None = Field(
        default=600.0, gt=0, description="wall-clock limit per sample from its submission; a sample past it is "
        "rejected (stage 'timeout') while the run goes on; None = no limit")
    placement: Literal["tool-tasks", "sample-tasks"] = Field(
        default="tool-tasks",
        description="tool-tasks: graphs run in the driver, every tool call is a Ray task (or actor call); "
        "sample-tasks: each photo's whole graph is one Ray task whose classical tools run in that worker, "
        "while actor tools (models) are still called on their actors - far less driver work per photo")


class PolicyConfig(BaseModel):
    """Which decision policy drives planner and verifier; ``options`` go to its constructor."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["rules", "openai"] = "rules"
    options: dict[str, Any] = Field(default_factory=dict)


class Workflow(BaseModel):
    """A resolved workflow: steps with their tool cards, plan defaults, verifier limits, execution."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    stage: Literal["decompose", "compose"] = "decompose"
    description: str = ""
    working_size: int = Field(default=512, ge=64, le=4096)
    seed: int = Field(default=0, description="passed to every tool that takes a seed (run --seed)")
    max_pixels: int = Field(default=64_000_000, gt=0)
    max_bytes: int = Field(default=256_000_000, gt=0, description="largest input file read, bytes")
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    plan: Plan = Field(default_factory=Plan)
    steps: dict[str, Step]
    verify: VerifyLimits = Field(default_factory=VerifyLimits)
    execution: Execution = Field(default_factory=Execution)
    cards: dict[str, ToolCard] = Field(default_factory=dict, description="resolved cards by card name")
    fallback_workflow: str | None = Field(
        default=None, description="workflow run instead when a tool of this one cannot run here (e.g. its "
        "weights are not fetched); the switch is recorded in run.json and shown by liwi stats")

    def card(self, step: str, fallback: bool = False) -> ToolCard:
        """The tool card serving ``step`` (its fallback card if ``fallback`` and one is set)."""
        s = self.steps[step]
        name = s.fallback if fallback and s.fallback else s.tool
        return self.cards[name]

    def params(self, step: str, fallback: bool = False) -> dict[str, Any]:
        """Card parameters overlaid with the step's overrides (overrides apply to the primary tool only)."""
        card = self.card(step, fallback)
        extra = {} if fallback and self.steps[step].fallback else self.steps[step].params
        return {**card.params, **extra}

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the resolved workflow (cards included), secrets masked
        (:func:`~add_pipeline.core.redact.redact`): a changed password is the same workflow."""
        from add_pipeline.core.redact import redact

        blob = json.dumps(redact(self.model_dump(mode="json")), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a workflow or card is a YAML text file") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


def load_card(name: str, root: Path | None = None) -> ToolCard:
    """Load ``tools/<name>.yaml`` under ``root`` (default :func:`config_root`)."""
    path = (root or config_root()) / "tools" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{path}: no such tool card; known: {known}")
    try:
        return ToolCard(**_read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid tool card: {exc}") from exc


def load_workflow(name_or_path: str, root: Path | None = None) -> Workflow:
    """Load a workflow by name (``workflows/<name>.yaml``) or path, resolving its tool cards."""
    root = root or config_root()
    path = Path(name_or_path)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{path}: a workflow file must be YAML (.yaml or .yml); or give a workflow name")
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = root / "workflows" / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (root / "workflows").glob("*.yaml"))
        raise ConfigError(f"workflow {name_or_path!r} not found (looked for {path}); known: {known}")
    data = _read_yaml(path)
    stage = data.get("stage", "decompose")
    if stage not in STAGE_STEPS:
        raise ConfigError(f"{path}: unknown stage {stage!r}; stages are {sorted(STAGE_STEPS)}")
    steps = STAGE_STEPS[stage]
    missing = [s for s in steps if s not in data.get("steps", {})]
    if missing:
        raise ConfigError(f"{path}: steps missing: {missing}")
    cards: dict[str, ToolCard] = {}
    for step_name, step in data["steps"].items():
        if step_name not in steps:
            raise ConfigError(f"{path}: unknown step {step_name!r}; {stage} steps are {list(steps)}")
        for card_name in (step.get("tool"), step.get("fallback")):
            if card_name and card_name not in cards:
                card = load_card(card_name, root)
                if card.family != step_name:
                    raise ConfigError(f"{path}: step {step_name!r} uses card {card_name!r} of family {card.family!r}")
                cards[card_name] = card
    try:
        return Workflow(**data, cards=cards)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid workflow: {exc}") from exc
