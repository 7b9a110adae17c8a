"""``make eval-model``: the bundled model vs its ablations, the decompose pipeline and trivial
baselines, side by side on the held-out composed benchmark (``liwi synth`` split).

Writes ``bench/results/model.md`` and ``.json``: RGB L1 and Alpha IoU at 0..5 merges (LayerD
protocol), shadow-matte IoU, boundary error (alpha SAD in a 10 px band around the true edges),
and model inference time per image at 256 and 512 px on this CPU (median of 5).
Needs ``make eval`` (the split and the pipeline's predictions) and ``bench/model_runs.py train``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from add_pipeline.eval.readers import read_stacks
from add_pipeline.eval.report import evaluate_stacks, to_markdown
from add_pipeline.model.cli import eval_model
from add_pipeline.model.config import INFERENCE_FIELDS
from add_pipeline.model.infer import decompose_image, load_model

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "work" / "synth"
PIPELINE = ROOT / "bench" / "work" / "eval" / "pipeline"
RUNS = ROOT / "bench" / "work" / "model" / "runs"


def timing(source: str | Path, inference: dict | None = None) -> dict[str, float]:
    import cv2
    from skimage import data

    model = load_model(source)
    if inference:  # the settings it is scored with (the mirror augmentation doubles the network's time)
        model.train_config = model.train_config.with_inference(**inference)
    photo = data.astronaut()  # a real photo: the time depends on how many layers come out
    out = {}
    for size in (256, 512):
        rgb = np.ascontiguousarray(cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA))
        decompose_image(model, rgb, size=size)  # warm-up
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            decompose_image(model, rgb, size=size)
            ts.append(time.perf_counter() - t0)
        out[f"{size}px_s"] = statistics.median(ts)
    return out


RECIPES = {"full": "bundled model (full)", "no-shadow-branch": "ablation: no shadow branch",
           "no-restoration-loss": "ablation: no restoration loss"}
SEED_METRICS: dict[str, Any] = {
    "RGB L1 @0": lambda r: r["levels"][0]["rgb_l1"], "RGB L1 @5": lambda r: r["levels"][5]["rgb_l1"],
    "Alpha IoU @0": lambda r: r["levels"][0]["alpha_iou"], "Alpha IoU @5": lambda r: r["levels"][5]["alpha_iou"],
    "object IoU": lambda r: r["kinds"]["object_iou"], "shadow IoU": lambda r: r["kinds"]["shadow_iou"],
    "boundary SAD/1000": lambda r: r["kinds"]["boundary_sad"]}


def seed_runs() -> dict[str, dict[int, Path]]:
    """``{recipe: {seed: run folder}}`` for the seeds > 0 trained to the end and calibrated (``runs/NAME-sS``)."""
    from model_runs import calibrated  # bench/ is on sys.path

    found: dict[str, dict[int, Path]] = {}
    for recipe in RECIPES:
        for run in sorted(RUNS.glob(f"{recipe}-s*")):
            tail = run.name[len(recipe) + 2:]
            if not tail.isdigit():
                continue
            done = (run / "summary.json").is_file() and json.loads((run / "summary.json").read_text())["done"]
            if done and calibrated(run.name):
                found.setdefault(recipe, {})[int(tail)] = run
            else:
                print(f"skipping {run.name}: {'not calibrated' if done else 'training not finished'}")
    return found


def seed_tables(by_seed: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Markdown: every recipe under every seed with its mean, then the full model minus each ablation, per seed."""
    names = list(SEED_METRICS)
    lines = ["| run | seed | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for recipe, reports in by_seed.items():
        for seed, r in sorted(reports.items()):
            lines.append(f"| {recipe} | {seed} | " + " | ".join(f"{f(r):.4f}" for f in SEED_METRICS.values()) + " |")
        mean = [statistics.mean(f(r) for r in reports.values()) for f in SEED_METRICS.values()]
        lines.append(f"| {recipe} | mean of {len(reports)} | " + " | ".join(f"**{m:.4f}**" for m in mean) + " |")
    full = by_seed.get("full", {})
    lines += ["", "Full model minus ablation, per seed (RGB L1 and boundary SAD: lower is better; IoU: higher):", "",
              "| ablation | seed | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for recipe, reports in by_seed.items():
        if recipe == "full":
            continue
        for seed in sorted(set(reports) & set(full)):
            lines.append(f"| {recipe} | {seed} | " +
                         " | ".join(f"{f(full[seed]) - f(reports[seed]):+.4f}" for f in SEED_METRICS.values()) + " |")
    return lines


def finetune_report() -> None:
    """``bench/results/model-finetune.md``: each run before and after ``model_runs.py finetune``.

    Scored on the held-out training compositions (where the settings are calibrated) and on the
    benchmark, each run with its own calibrated settings.
    """
    from model_runs import FINETUNE, calibrated, validation  # bench/ is on sys.path

    sets = {"held-out training compositions": validation(), "benchmark": BENCH}
    names = list(SEED_METRICS)
    lines = ["# Experiment, not shipped: fine-tuning on the training compositions alone", "",
             f"Each run of the recipe continued for {FINETUNE['steps']} steps (lr {FINETUNE['lr']}, "
             f"{FINETUNE['warmup']} warm-up steps) on the training",
             "compositions only (`python bench/model_runs.py finetune`, which runs `liwi train --init`):",
             "the compositions come from the same generator as the benchmark, but from other photos.", ""]
    for title, data in sets.items():
        lines += [f"## {title}", "", "| run | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for recipe in RECIPES:
            for run in (recipe, f"{recipe}-ft"):
                r = eval_model(RUNS / run, data, inference=calibrated(run))
                lines.append(f"| {run} | " + " | ".join(f"{f(r):.4f}" for f in SEED_METRICS.values()) + " |")
        lines.append("")
    (ROOT / "bench" / "results" / "model-finetune.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    gt = read_stacks(BENCH)
    ids = sorted(gt)
    reports: dict[str, dict[str, Any]] = {}
    times: dict[str, dict[str, float]] = {}
    from model_runs import calibrated  # bench/ is on sys.path

    # The bundled checkpoint carries the full run's calibrated inference settings; each ablation
    # is scored with its own, calibrated the same way (bench/model_runs.py calibrate).
    models = {"bundled model (full)": ("bundled", None),
              "ablation: no shadow branch": (RUNS / "no-shadow-branch", calibrated("no-shadow-branch")),
              "ablation: no restoration loss": (RUNS / "no-restoration-loss", calibrated("no-restoration-loss"))}
    for name, (src, inference) in models.items():
        reports[name] = eval_model(src, BENCH, inference=inference)
        times[name] = timing(src, inference)
    # Other seeds of the same three recipes (bench/model_runs.py train --seeds 1 ...), each scored with
    # its own calibrated settings: how much of each ablation's difference is the seed.
    by_seed: dict[str, dict[int, dict[str, Any]]] = {r: {0: reports[name]} for r, name in RECIPES.items()}
    for recipe, runs in seed_runs().items():
        for seed, run in runs.items():
            by_seed[recipe][seed] = eval_model(run, BENCH, inference=calibrated(run.name))
    decomposed = read_stacks(PIPELINE)
    from run_eval import baselines  # the same trivial decomposers as make eval (bench/ is on sys.path)

    trivial = baselines(BENCH)
    single = trivial["single layer (image)"]
    pipeline = {sid: decomposed[sid] if sid in decomposed else single[sid] for sid in ids}
    reports["decompose pipeline (cpu-default)"] = evaluate_stacks(pipeline, {s: gt[s] for s in ids})
    for name, stacks in trivial.items():
        reports[name] = evaluate_stacks(stacks, {s: gt[s] for s in ids})
    summary = {n: {k: v for k, v in r.items() if k != "samples"} for n, r in reports.items()}
    out = ROOT / "bench" / "results"
    seeds = {recipe: {seed: {k: v for k, v in r.items() if k != "samples"} for seed, r in reports_.items()}
             for recipe, reports_ in by_seed.items()}
    (out / "model.json").write_text(json.dumps({"methods": summary, "inference_s": times, "seeds": seeds},
                                               indent=2, default=float))
    lines = [f"# Bundled model vs ablations, pipeline and baselines ({len(ids)} held-out composed samples)", "",
             to_markdown(reports), "",
             "Inference time per image on this CPU (the astronaut photo, median of 5, after warm-up; "
             "network, object split and exact layer solve):", "",
             "| model | 256 px (s) | 512 px (s) |", "|---|---|---|"]
    lines += [f"| {n} | {t['256px_s']:.3f} | {t['512px_s']:.3f} |" for n, t in times.items()]
    rec = {n: (r["protocol"]["recompose_mean"], r["protocol"]["recompose_max"]) for n, r in reports.items()
           if "recompose_mean" in r.get("protocol", {})}
    lines += ["", "Recomposition error of the models' layers (mean / max grey levels over samples): " +
              "; ".join(f"{n}: {m:.3f} / {x:.2f}" for n, (m, x) in rec.items())]
    settings = {"bundled model (full)": load_model("bundled").train_config}
    settings.update({n: load_model(src).train_config.with_inference(**(inf or {}))
                     for n, (src, inf) in models.items() if src != "bundled"})
    lines += ["", "Inference settings (calibrated on held-out training compositions, bench/model_runs.py calibrate): " +
              "; ".join(f"{n}: " + ", ".join(f"{k} {getattr(c, k)}" for k in INFERENCE_FIELDS)
                        for n, c in settings.items())]
    if any(len(v) > 1 for v in by_seed.values()):
        lines += ["", "## Seeds", "",
                  "The three recipes under every seed trained (seed 0 is the table above), each with its own "
                  "calibrated inference settings:", "", *seed_tables(by_seed)]
    (out / "model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    if "--finetuned" in sys.argv[1:]:
        finetune_report()
    else:
        main()
