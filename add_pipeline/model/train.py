"""Train the layer decomposer on layered shards.  ``liwi train --data SHARDS... --out RUN``.

The run folder::

    RUN/config.json    resolved TrainConfig (written at start; a resume must match it)
    RUN/ckpt.pt        {model, optimizer, config, step, rng, history}: the one checkpoint dict
    RUN/log.jsonl      one line per logged step and per evaluation
    RUN/summary.json   final numbers (written at the end)

**Exact resume.**  Everything random in step ``t`` (which samples, which flips, which
degradations) is drawn from generators seeded by ``(seed, t)``, not from a stream that
runs through the whole job, and evaluation draws nothing.  So a run restarted from the
checkpoint of step ``t`` sees exactly the batches an uninterrupted run would, and with the
optimiser state restored it follows the same loss trajectory (bit for bit on the same
machine and thread count).  The global RNG states are saved too, for anything that
might use them later.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from add_pipeline.model.config import TrainConfig, save_config
from add_pipeline.model.data import ColorJitter, LayeredShardDataset, collate
from add_pipeline.model.degrade import degrade
from add_pipeline.model.infer import load_model
from add_pipeline.model.losses import decomposition_losses, restoration_loss, weighted_total
from add_pipeline.model.model import LayerDecomposer, LayerPrediction, count_params

CKPT_NAME = "ckpt.pt"


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def batch_plan(step: int, cfg: TrainConfig, train_idx: Sequence[int]) -> tuple[list[int], list[bool]]:
    """Sample indices and flips of ``step``: epoch-wise permutations seeded by ``(seed, epoch)``.
    (Colour jitters come from :func:`batch_jitters`, seeded by ``(seed, step)`` too.)"""
    n = len(train_idx)
    picks = []
    for j in range(step * cfg.batch, (step + 1) * cfg.batch):
        epoch, pos = divmod(j, n)
        perm = np.random.default_rng([cfg.seed, 1, epoch]).permutation(n)
        picks.append(int(train_idx[perm[pos]]))
    flips = np.random.default_rng([cfg.seed, 2, step]).random(cfg.batch) < 0.5
    return picks, [bool(f) and cfg.hflip for f in flips]


def batch_jitters(step: int, cfg: TrainConfig) -> list[ColorJitter | None]:
    """The colour jitter of each sample of ``step`` (all None when ``color_jitter`` is off)."""
    if not cfg.color_jitter:
        return [None] * cfg.batch
    rng = np.random.default_rng([cfg.seed, 3, step])
    return [ColorJitter.sample(rng) for _ in range(cfg.batch)]


def step_losses(model: LayerDecomposer, batch: dict[str, torch.Tensor], cfg: TrainConfig,
                gen: torch.Generator | None) -> tuple[dict[str, torch.Tensor], LayerPrediction]:
    """Forward one batch; return the unweighted loss parts (``restore`` only with ``gen``) and the prediction."""
    present = batch["present"] > 0
    pred = model(batch["image"], refine=present)
    parts = decomposition_losses(pred, batch, cfg)
    if cfg.restoration_loss and gen is not None and present.any():
        # One present object per image: pick it, degrade its clean foreground, restore it.
        b_idx, k_idx = [], []
        for b in range(present.shape[0]):
            slots = torch.nonzero(present[b]).flatten()
            if slots.numel():
                b_idx.append(b)
                k_idx.append(int(slots[int(torch.randint(slots.numel(), (1,), generator=gen))]))
        bi, ki = torch.tensor(b_idx, device=present.device), torch.tensor(k_idx, device=present.device)
        a_gt, c_gt = batch["alpha"][bi, ki], batch["color"][bi, ki]
        a_d, c_d, band, _ = degrade(a_gt, c_gt, batch["background"][bi], gen,
                                    cfg.degrade_radius, cfg.degrade_blur, cfg.degrade_spill)
        a_r, c_r = model.refiner(batch["image"][bi], a_d, c_d)
        parts["restore"] = restoration_loss(a_r, c_r, a_gt, c_gt, band, batch["valid"][bi])
    return parts, pred


@torch.no_grad()
def evaluate(model: LayerDecomposer, ds: LayeredShardDataset, idx: Sequence[int], cfg: TrainConfig) -> dict[str, float]:
    """Mean loss parts on held-out samples (no flips, no degradations) plus slot alpha IoU."""
    model.eval()
    sums: dict[str, float] = {}
    inter = union = 0.0
    for start in range(0, len(idx), cfg.batch):
        batch = collate([ds.load(i, flip=False) for i in idx[start : start + cfg.batch]])
        batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
        parts, pred = step_losses(model, batch, cfg, gen=None)
        parts["total"] = weighted_total(parts, cfg)
        n = batch["image"].shape[0]
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        inter += float(torch.minimum(pred.alpha, batch["alpha"]).sum())
        union += float(torch.maximum(pred.alpha, batch["alpha"]).sum())
    model.train()
    out = {k: v / max(len(idx), 1) for k, v in sums.items()}
    out["alpha_iou"] = inter / union if union > 0 else 1.0
    return out


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, model: LayerDecomposer, opt: torch.optim.Optimizer, cfg: TrainConfig,
                    step: int, history: list[dict[str, float]]) -> None:
    """Write the checkpoint dict atomically (temp file + rename): a crash never leaves half a file."""
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "config": cfg.to_dict(),
            "step": step, "rng": _rng_state(), "history": history}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def train(data_dirs: Sequence[str | Path], out_dir: str | Path, config: TrainConfig | None = None,
          resume: bool = False, until: int | None = None,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or continue training) a model; returns the summary dict.

    Args:
        data_dirs: shard folders to train on (a held-out share of each is used for evaluation).
        out_dir: the run folder.
        config: the run's config (default: ``TrainConfig()``); on resume it must equal the saved one.
        resume: continue from ``out_dir/ckpt.pt``.  Without it an existing checkpoint is an error.
        until: stop after this many steps (checkpointed), as if interrupted; ``None`` runs to the end.
        log: where progress lines go.
    Raises:
        FileExistsError: ``out_dir`` holds a checkpoint and ``resume`` is False.
        FileNotFoundError: ``resume`` without a checkpoint.
        ValueError: ``resume`` with a config that differs from the checkpoint's.
    """
    cfg = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CKPT_NAME
    if ckpt_path.exists() and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass resume=True (--resume) to continue, or use a new --out")
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    ds = LayeredShardDataset(data_dirs, cfg.model.size, cfg.model.slots)
    train_idx, eval_idx = ds.split(cfg.eval_fraction)
    eval_idx = eval_idx[: cfg.eval_max]
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    torch.manual_seed(cfg.seed)
    model = LayerDecomposer(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, history = 0, []
    if cfg.init and not resume:
        _init_weights(model, cfg)
        log(f"initialised from {cfg.init}")
    if resume:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        saved = TrainConfig.from_dict(ckpt["config"]).to_dict()  # fields added since take their defaults
        if saved != cfg.to_dict():
            diff = sorted(k for k in cfg.to_dict() if saved.get(k) != cfg.to_dict()[k])
            raise ValueError(f"--resume with a different config than {ckpt_path} (fields {diff}); "
                             "use the saved config.json or a new --out")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, history = int(ckpt["step"]), list(ckpt["history"])
        _set_rng_state({k: (v.cpu() if k == "torch" else v) for k, v in ckpt["rng"].items()})
        log(f"resumed {out} at step {step}/{cfg.steps}")
    save_config(cfg, out / "config.json")
    _truncate_log(out / "log.jsonl", step)
    n_params = count_params(model)
    log(f"{len(ds)} samples ({len(train_idx)} train, {len(eval_idx)} eval), {n_params / 1e6:.2f} M params, "
        f"{cfg.steps} steps of {cfg.batch} at {cfg.model.size}px")

    end = cfg.steps if until is None else min(until, cfg.steps)
    model.train()
    t0, first, last = time.perf_counter(), step, {}
    while step < end:
        picks, flips = batch_plan(step, cfg, train_idx)
        samples = [ds.load(i, f, j) for i, f, j in zip(picks, flips, batch_jitters(step, cfg))]
        batch = {k: v.to(device) for k, v in collate(samples).items()}
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        parts, _ = step_losses(model, batch, cfg, gen)
        loss = weighted_total(parts, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        last = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()}}
        history.append(last)
        if step % cfg.log_every == 0 or step == end:
            per_step = (time.perf_counter() - t0) / (step - first)
            log(f"step {step}/{cfg.steps} loss {last['loss']:.4f} " +
                " ".join(f"{k} {v:.4f}" for k, v in last.items() if k not in ("step", "loss")) +
                f" lr {lr_at(step - 1, cfg):.2e} {per_step:.2f}s/step")
            _append_log(out / "log.jsonl", {**last, "lr": lr_at(step - 1, cfg), "wall_s": time.perf_counter() - t0})
        if cfg.eval_every and eval_idx and (step % cfg.eval_every == 0 or step == cfg.steps):
            ev = evaluate(model, ds, eval_idx, cfg)
            log(f"eval @ {step}: " + " ".join(f"{k} {v:.4f}" for k, v in ev.items()))
            _append_log(out / "log.jsonl", {"step": step, "eval": ev})
        if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < end:
            save_checkpoint(ckpt_path, model, opt, cfg, step, history)
    save_checkpoint(ckpt_path, model, opt, cfg, step, history)
    summary = {"step": step, "steps": cfg.steps, "device": str(device), "done": step >= cfg.steps, "params": n_params,
               "last": last, "seconds": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "history": history}


def _init_weights(model: LayerDecomposer, cfg: TrainConfig) -> None:
    """Copy the weights of ``cfg.init`` (run folder, checkpoint or ``"bundled"``) into ``model``.

    Raises:
        FileNotFoundError: nothing to load at ``cfg.init``.
        ValueError: the source's network has another shape than ``cfg.model``.
    """
    source = load_model(cfg.init)
    if source.config != cfg.model:
        theirs, ours = asdict(source.config), asdict(cfg.model)
        diff = sorted(k for k in ours if theirs[k] != ours[k])
        raise ValueError(f"init {cfg.init!r}: its network differs from this run's in {diff} "
                         f"({', '.join(f'{k} {theirs[k]!r} vs {ours[k]!r}' for k in diff)})")
    model.load_state_dict(source.state_dict())


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint's step (written after it by a run that then died)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

