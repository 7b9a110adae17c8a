"""Typed, frozen configuration of the layer-decomposition model and of its training run.

Two dataclasses, nanoGPT style: :class:`ModelConfig` is everything the network's shape
depends on (it travels inside every checkpoint, so a checkpoint rebuilds its own model),
and :class:`TrainConfig` is everything a run depends on (data handling, optimiser, loss
weights, schedule, ablation flags) and holds the model config.  Their defaults are the
only defaults in the package; the resolved config is written beside every run.

Files: ``.yaml`` / ``.yml`` or ``.json``, with the TrainConfig fields at the top level and
the model fields under ``model:``.  Unknown keys are an error (a typo must not silently
train the default).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

SHADOW_HEADS = ("shared", "object")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of :class:`~add_pipeline.model.model.LayerDecomposer`.

    Attributes:
        size: working resolution (long side, px) for training and the default for inference.
            The network is fully convolutional, so inference may use another size (multiple of 16).
        widths: channels of the encoder stages at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input.
        head_width: channels of the full-resolution head that turns decoder features into layers.
        slots: K, the number of object slots (and shadow mattes, one per slot).  A slot is an
            occlusion level (slot K-1: objects nothing covers; K-2: objects covered by those; ...)
            and may hold several disjoint objects; see :mod:`~add_pipeline.model.data`.
        refine_width: channels of the boundary refiner (the restoration branch).
        shadow_branch: predict one shadow matte per slot (shadow-guided learning).  Off: no shadow
            head, no shadow loss; shadows are part of the background target.
        shadow_head: where the shadow mattes come from: ``"shared"``, the layer head's 1x1 output
            beside the alphas and colours; ``"object"``, a small head per slot that also sees that
            slot's coarse alpha (detached) and ~60 px around it, so a shadow is predicted next to
            its own object (:class:`~add_pipeline.model.model.ObjectShadowHead`).
    """

    size: int = 256
    widths: tuple[int, ...] = (16, 32, 48, 64, 96)
    head_width: int = 16
    slots: int = 2
    refine_width: int = 8
    shadow_branch: bool = True
    shadow_head: str = "shared"

    def __post_init__(self) -> None:
        if self.shadow_head not in SHADOW_HEADS:
            raise ValueError(f"model.shadow_head must be one of {SHADOW_HEADS}, got {self.shadow_head!r}")
        if self.size < 32 or self.size % 32:
            raise ValueError(f"model.size must be a multiple of 32 and >= 32, got {self.size}")
        if len(self.widths) != 5 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"model.widths must be 5 positive ints (one per stride 2..32), got {self.widths}")
        if self.slots < 1:
            raise ValueError(f"model.slots must be >= 1, got {self.slots}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))


INFERENCE_FIELDS = ("presence_threshold", "min_area", "alpha_floor", "shadow_floor", "shadow_seed", "flip_tta")
"""TrainConfig fields that only inference reads: changing them does not change the trained weights."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run.  ``steps`` optimiser updates of ``batch`` samples each.

    Attributes:
        model: the network.
        seed: seeds initialisation, data order, flips and degradations (all derived from
            ``(seed, step)``, which is what makes ``--resume`` reproduce an uninterrupted run).
        steps, batch, lr, weight_decay, warmup, grad_clip: optimisation (AdamW, linear warm-up
            then cosine decay to ``lr * min_lr_ratio``).
        eval_every, ckpt_every, log_every: in steps (0 disables eval / periodic checkpoints;
            a checkpoint is always written at the end).
        eval_fraction: share of samples held out for evaluation (by a hash of the sample id,
            so the split does not move when shards are added); eval_max: at most this many
            held-out samples are scored.
        hflip: random horizontal flips (vertical flips would put shadows above their casters).
        color_jitter: random linear colour changes (channel order, desaturation, brightness) of
            the photo and all its colour targets alike; see :class:`~add_pipeline.model.data.ColorJitter`.
        init: weights to start from (fine-tuning): a run folder, a checkpoint file or ``"bundled"``;
            empty starts from random weights.  Only the network's weights are taken (its shape must
            equal ``model``); the optimiser, schedule and step count start fresh.  On ``--resume`` the
            checkpoint's weights are used, as for any run.
        threads: torch intra-op threads (0 = torch's default).  On a shared 2-core machine use 1:
            OpenMP threads that spin-wait for a busy core made 2 threads ~2x *slower* than 1.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).  Exact resume is promised on
            CPU; CUDA kernels may be non-deterministic.
        w_*: loss weights, see :mod:`add_pipeline.model.losses`.  ``w_jaccard`` and ``w_shadow_jaccard``
            default to 0, which is how checkpoints written before they existed were trained; the shipped
            recipe (``bench/model_runs.py``) uses 1.0 and 0.5.
        restoration_loss: train the refiner on degraded ground truth too (degradation-restoration).
        degrade_radius: largest erosion/dilation radius (px at the working size).
        degrade_blur: largest Gaussian sigma of the blur degradation (px).
        degrade_spill: largest colour-spill strength in [0, 1].
        band_px: half-width of the boundary band the alpha / restoration losses emphasise.
        presence_threshold, min_area, alpha_floor: inference: a slot is kept when its presence
            probability exceeds the threshold; it is split into objects, each a connected component
            of ``alpha > 0.5`` covering at least ``min_area`` of the image; alpha values at or below
            ``alpha_floor`` are dropped (see :func:`~add_pipeline.model.infer.split_objects`).
        shadow_floor: inference: shadow values at or below it are dropped.  Separate from ``alpha_floor``
            because cast shadows are faint (strength ~0.3-0.65) where object mattes are near 1.
        shadow_seed: inference: hysteresis of the shadow mattes: a connected region of shadow above
            ``shadow_floor`` is kept only if it reaches ``shadow_seed`` somewhere, so a confident shadow
            keeps its faint penumbra and a faint dark patch with no confident core is dropped (as
            Canny keeps weak edges only when they touch strong ones).  At or below ``shadow_floor``
            (the default, 0) every region is kept.
        flip_tta: inference: average the estimates of the photo and of its mirror image
            (:func:`~add_pipeline.model.infer.predict`); about twice the network's time.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    steps: int = 400
    batch: int = 4
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-4
    warmup: int = 30
    grad_clip: float = 1.0
    eval_every: int = 100
    ckpt_every: int = 100
    log_every: int = 25
    eval_fraction: float = 0.1
    eval_max: int = 32
    hflip: bool = True
    color_jitter: bool = False
    init: str = ""
    threads: int = 0
    device: str = "cpu"
    w_recompose: float = 1.0
    w_background: float = 1.0
    w_color: float = 0.5
    w_alpha: float = 2.0
    w_boundary: float = 2.0
    w_presence: float = 0.2
    w_jaccard: float = 0.0
    w_shadow: float = 2.0
    w_shadow_jaccard: float = 0.0
    w_restore: float = 1.0
    restoration_loss: bool = True
    degrade_radius: int = 4
    degrade_blur: float = 2.5
    degrade_spill: float = 0.6
    band_px: int = 6
    presence_threshold: float = 0.5
    min_area: float = 0.0005
    alpha_floor: float = 0.02
    shadow_floor: float = 0.02
    shadow_seed: float = 0.0
    flip_tta: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", _build(ModelConfig, self.model, "model"))
        checks = {
            "steps": self.steps >= 1,
            "batch": self.batch >= 1,
            "lr": self.lr > 0,
            "eval_fraction": 0.0 <= self.eval_fraction < 1.0,
            "band_px": self.band_px >= 1,
            "degrade_radius": self.degrade_radius >= 1,
            "presence_threshold": 0.0 < self.presence_threshold < 1.0,
            "alpha_floor": 0.0 <= self.alpha_floor < 0.5,
            "shadow_floor": 0.0 <= self.shadow_floor < 1.0,
            "shadow_seed": 0.0 <= self.shadow_seed < 1.0,
            "device": self.device in ("cpu", "cuda", "auto"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid TrainConfig values: " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        d = asdict(self)
        d["model"]["widths"] = list(d["model"]["widths"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; missing keys take the defaults, unknown keys raise ValueError."""
        return _build(cls, data, "train")

    def with_inference(self, **kw: float | bool) -> TrainConfig:
        """A copy with inference settings replaced (values chosen after training, e.g. calibrated).

        Raises:
            ValueError: a key is not one of :data:`INFERENCE_FIELDS`, or a value is invalid.
        """
        unknown = sorted(set(kw) - set(INFERENCE_FIELDS))
        if unknown:
            raise ValueError(f"{unknown} are not inference settings; those are {list(INFERENCE_FIELDS)}")
        return replace(self, **kw)

    def with_overrides(self, **kw: Any) -> TrainConfig:
        """A copy with top-level fields replaced; ``model={...}`` replaces model fields.

        Raises:
            ValueError: an unknown field, or an invalid value (checked as :meth:`from_dict` checks).
        """
        d = self.to_dict()
        return TrainConfig.from_dict({**d, **kw, "model": {**d["model"], **(kw.get("model") or {})}})


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} config must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {where} config keys {unknown}; valid keys: {sorted(known)}")
    return cls(**data)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TrainConfig from ``.yaml``/``.yml``/``.json`` (missing fields take the defaults)."""
    return TrainConfig.from_dict(read_config_file(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a config file holds, unvalidated (``.yaml``/``.yml``/``.json``)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    elif p.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file must end in .yaml, .yml or .json, got {p.name}")
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as YAML or JSON (by suffix)."""
    p = Path(path)
    d = config.to_dict()
    if p.suffix.lower() in (".yaml", ".yml"):
        p.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    else:
        p.write_text(json.dumps(d, indent=2), encoding="utf-8")
