"""``make eval-model``: the bundled model vs its ablations, the decompose pipeline and trivial
baselines, side by side on the held-out composed benchmark (``liwi synth`` split).

Writes ``bench/results/model.md`` and ``.json``: RGB L1 and Alpha IoU at 0..5 merges (LayerD
protocol), shadow-matte IoU, boundary error (alpha SAD in a 10 px band around the true edges),
and model inference time per image at 256 and 512 px on this CPU (median of 5).
Needs ``make eval`` (the split and the pipeline's predictions) and ``bench/model_runs.py train``.

Two more comparisons of the same models and the pipeline, neither used to train or choose anything
on the benchmark: the validation held out *by photo* (compositions of photos no run trains on,
``bench/model_runs.py heldout``), and the real cut-and-paste composites of
``../shared/data/groundtruth/composites`` (libcom: a real object pasted on a real photo).
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
GROUNDTRUTH = ROOT.parent / "shared" / "data" / "groundtruth"


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
    """``{recipe: {seed: run folder}}`` for the runs trained to the end and calibrated (``runs/NAME`` is
    seed 0, ``runs/NAME-sS`` seed S)."""
    from model_runs import calibrated  # bench/ is on sys.path

    found: dict[str, dict[int, Path]] = {}
    for recipe in RECIPES:
        for run in [RUNS / recipe, *sorted(RUNS.glob(f"{recipe}-s*"))]:
            tail = "0" if run.name == recipe else run.name[len(recipe) + 2:]
            if not tail.isdigit() or not run.is_dir():
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


def runs_table(runs: list[str], data: Path) -> list[str]:
    """Markdown rows of :data:`SEED_METRICS` for run folders ``runs`` on ``data``, each run with its
    settings calibrated on held-out training compositions."""
    from model_runs import calibrated  # bench/ is on sys.path

    names = list(SEED_METRICS)
    lines = ["| run | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for run in runs:
        r = eval_model(RUNS / run, data, inference=calibrated(run))
        lines.append(f"| {run} | " + " | ".join(f"{f(r):.4f}" for f in SEED_METRICS.values()) + " |")
    return lines


def finetune_report() -> None:
    """``bench/results/model-finetune.md``: each run before and after ``model_runs.py finetune``.

    Scored on the held-out training compositions (where the settings are calibrated) and on the
    benchmark, each run with its own calibrated settings.
    """
    from model_runs import FINETUNE, validation  # bench/ is on sys.path

    sets = {"held-out training compositions": validation(), "benchmark": BENCH}
    lines = ["# Experiment, not shipped: fine-tuning on the training compositions alone", "",
             f"Each run of the recipe continued for {FINETUNE['steps']} steps (lr {FINETUNE['lr']}, "
             f"{FINETUNE['warmup']} warm-up steps) on the training",
             "compositions only (`python bench/model_runs.py finetune`, which runs `liwi train --init`):",
             "the compositions come from the same generator as the benchmark, but from other photos.", ""]
    for title, data in sets.items():
        lines += [f"## {title}", "", *runs_table([r for recipe in RECIPES for r in (recipe, f"{recipe}-ft")], data), ""]
    (ROOT / "bench" / "results" / "model-finetune.md").write_text("\n".join(lines))
    print("\n".join(lines))


def experiments_report() -> None:
    """``bench/results/model-experiments.md``: the recipes of ``model_runs.py experiment`` against the
    shipped one, on the benchmark, the validation held out by photo and the libcom composites, each
    run with its own settings calibrated on held-out training compositions (as the recipe does)."""
    from model_runs import EXPERIMENTS, calibrated, heldout  # bench/ is on sys.path

    runs = ["full", *(n for n in EXPERIMENTS if (RUNS / n / "ckpt.pt").exists() and calibrated(n))]
    lines = ["# Experiments, not shipped: recipes tried against the shipped one", "",
             "`python bench/model_runs.py experiment` (seed 0, otherwise the full recipe): `wide-full`, a network "
             "1.5x as wide (1.0 M parameters); `stamps-full`, 1800 scenes of Tux Paint's photographed objects "
             "(`data --n-stamps 1800`) added to the training data; `no-shadow-jaccard-full`, without the shadows' "
             "soft-Jaccard loss. `full` is the shipped run.", ""]
    for title, data in {"benchmark": BENCH, "held out by photo": heldout()}.items():
        lines += [f"## {title}", "", *runs_table(runs, data), ""]
    if (GROUNDTRUTH / "composites").is_dir():
        models = {run: (RUNS / run, calibrated(run)) for run in runs}
        lines += ["## Real cut-and-paste composites (libcom)", "", *composites_table(composite_reports(models)), ""]
    (ROOT / "bench" / "results" / "model-experiments.md").write_text("\n".join(lines))
    print("\n".join(lines))


def shadow_head_report() -> None:
    """``bench/results/model-shadow-head.md``: the recipe's shared shadow head (``full``) against the
    per-slot head that sees its object (``object-shadow-full``), seeds 0 and 1, each run with its own
    settings (calibrated, shadow seed chosen on the fresh validation), on the validation held out by
    photo (where the choice between them is made), the fresh validation and the benchmark, with the
    pipeline on each; "cells won": of the 12 LayerD cells, those the run beats the pipeline in."""
    from model_runs import cells_won, fresh, heldout, mean_cost, run_name, settings  # bench/ is on sys.path
    from run_eval import pipeline_report

    work = ROOT / "bench" / "work" / "eval"
    held = heldout()
    sets = {"held out by photo": (held, work / "heldout", 3), "fresh validation": (fresh(), work / "fresh", 5),
            "benchmark": (BENCH, work, 2605)}  # the pipeline's runs of heldout_reports, choose-seed, make eval
    cols = {**SEED_METRICS, "mean cost 0..5": mean_cost}
    lines = ["# Experiment: a shadow head per slot that sees its object", "",
             "`python bench/model_runs.py experiment --experiments object-shadow-full --seeds 0 1` (the recipe with "
             "`model.shadow_head: object`), then `calibrate` and `choose-seed --folders` for its runs. Rule, fixed "
             "before training: it replaces the shared head only if, held out by photo, the mean over both seeds of "
             "the mean cost over 0..5 merges is lower and the shadow IoU higher.", ""]
    for title, (data, pipe_work, seed) in sets.items():
        pipeline, _ = pipeline_report(data, pipe_work, seed=seed)
        lines += [f"## {title}", "", "| head | run | " + " | ".join([*cols, "cells won"]) + " |",
                  "|" + "---|" * (len(cols) + 3)]
        for head, recipe in (("shared (shipped recipe)", "full"), ("object", "object-shadow-full")):
            runs = [run_name(recipe, s) for s in (0, 1)]
            reports = [eval_model(RUNS / run, data, inference=settings(run)) for run in runs]
            for run, r in zip(runs, reports, strict=True):
                lines.append(f"| {head} | {run} | " + " | ".join(f"{f(r):.4f}" for f in cols.values())
                             + f" | {cells_won(r, pipeline)} |")
            means = [statistics.mean(f(r) for r in reports) for f in cols.values()]
            lines.append(f"| {head} | mean of 2 | " + " | ".join(f"**{m:.4f}**" for m in means) + " | |")
        lines += ["| decompose pipeline | | " + " | ".join(f"{f(pipeline):.4f}" for f in cols.values()) + " | |", ""]
    lines += ["## The shadow mattes themselves", "",
              "Held out by photo, every shadow region kept (`shadow_seed` 0, the other settings as above), before "
              "merges: how good each head's shadow mattes are, before the hysteresis drops the doubtful ones.", "",
              "| head | run | shadow IoU | shadow MAE |", "|---|---|---|---|"]
    for head, recipe in (("shared (shipped recipe)", "full"), ("object", "object-shadow-full")):
        for s in (0, 1):
            run = run_name(recipe, s)
            k = eval_model(RUNS / run, held, inference={**(settings(run) or {}), "shadow_seed": 0.0},
                           max_merges=0)["kinds"]
            lines.append(f"| {head} | {run} | {k['shadow_iou']:.4f} | {k['shadow_mae']:.4f} |")
    (ROOT / "bench" / "results" / "model-shadow-head.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def heldout_reports(models: dict[str, tuple[str | Path, dict | None]]) -> dict[str, dict[str, Any]]:
    """The models and the decompose pipeline on the validation held out by photo (LayerD protocol)."""
    from model_runs import heldout  # bench/ is on sys.path
    from run_eval import baselines, pipeline_report

    data = heldout()
    reports = {name: eval_model(src, data, inference=inference) for name, (src, inference) in models.items()}
    work = ROOT / "bench" / "work" / "eval" / "heldout"
    reports["decompose pipeline (cpu-default)"], _ = pipeline_report(data, work, seed=3)
    gt = read_stacks(data)
    single = baselines(data)["single layer (image)"]
    reports["single layer (image)"] = evaluate_stacks(single, {sid: gt[sid] for sid in single})
    return reports


SHADOW_SEEDS = (0.0, 0.4, 0.6)
"""``shadow_seed`` values the hysteresis table shows the bundled model under, next to its calibrated one."""


def shadow_seed_table(scored: dict[str, tuple[dict[str, Any], dict[str, Any]]], shipped: float) -> list[str]:
    """Markdown: the bundled model under several ``shadow_seed`` values (the rest as calibrated) on the
    benchmark and the validation held out by photo, RGB L1 and Alpha IoU at every merge level, with the
    pipeline's row of each set for reference.  ``scored``: ``{set name: (the bundled model's report as
    shipped, the pipeline's report)}``; ``shipped``: the bundled model's own ``shadow_seed``.  Only the
    other seeds are run here."""
    from model_runs import heldout, level_cells  # bench/ is on sys.path

    sets = {"benchmark": BENCH, "held out by photo": heldout()}
    n = len(next(iter(scored.values()))[0]["levels"])
    head = [f"RGB L1 @{k}" for k in range(n)] + [f"Alpha IoU @{k}" for k in range(n)] + ["shadow IoU"]
    lines = ["| set | decomposer | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 2)]

    def row(title: str, name: str, r: dict[str, Any]) -> str:
        return f"| {title} | {name} | " + " | ".join([*level_cells(r), f"{r['kinds']['shadow_iou']:.3f}"]) + " |"

    for title, data in sets.items():
        as_shipped, pipeline = scored[title]
        for seed in sorted({shipped, *SHADOW_SEEDS}):
            if seed == shipped:
                lines.append(row(title, f"bundled, shadow_seed {seed} (shipped)", as_shipped))
            else:
                lines.append(row(title, f"bundled, shadow_seed {seed}",
                                 eval_model("bundled", data, inference={"shadow_seed": seed})))
        lines.append(row(title, "decompose pipeline", pipeline))
    return lines


def paired_table(scored: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """Markdown: for each set, the model minus the pipeline in every LayerD cell, the mean over samples
    with its 95% paired bootstrap interval (scipy.stats.bootstrap, BCa, 9999 resamples of the per-sample
    differences, seed 0), signed so that > 0 means the model is better (pipeline L1 - model L1, model
    IoU - pipeline IoU).  ``scored``: ``{set name: (the model's report, the pipeline's report)}``, both
    with their ``samples``."""
    from scipy.stats import bootstrap

    lines = ["| set | cell | model | pipeline | model better by (95% interval) | samples the model wins |",
             "|---|---|---|---|---|---|"]
    for title, (model, pipeline) in scored.items():
        ids = sorted(set(model["samples"]) & set(pipeline["samples"]))
        for metric, sign in (("rgb_l1", -1.0), ("alpha_iou", 1.0)):
            for k in range(len(model["levels"])):
                a = np.array([model["samples"][i][metric][k] for i in ids])
                b = np.array([pipeline["samples"][i][metric][k] for i in ids])
                diff = sign * (a - b)
                ci = bootstrap((diff,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                               random_state=np.random.default_rng(0)).confidence_interval
                name = "RGB L1" if metric == "rgb_l1" else "Alpha IoU"
                lines.append(f"| {title} | {name} @{k} | {a.mean():.3f} | {b.mean():.3f} | {diff.mean():+.3f} "
                             f"({ci.low:+.3f}, {ci.high:+.3f}) | {int((diff > 0).sum())}/{len(ids)} |")
    return lines


def composite_reports(models: dict[str, tuple[str | Path, dict | None]]) -> dict[str, dict[str, Any]]:
    """The models and the decompose pipeline on the real libcom composites (512 px working size, as
    ``liwi decompose``): best object layer's IoU with the pasted mask, background L1 inside it."""
    from add_pipeline.core.config import load_workflow
    from add_pipeline.eval.real import score_composites, score_composites_with
    from add_pipeline.io.images import load_image

    out = {}
    for name, (src, inference) in models.items():
        model = load_model(src)
        if inference:
            model.train_config = model.train_config.with_inference(**inference)

        def decompose(case: str, path: Path, model: Any = model) -> tuple[list[np.ndarray], list[str]]:
            layers = decompose_image(model, load_image(path, working_size=512).rgb)
            return [lay.rgba for lay in layers], [lay.kind for lay in layers]

        out[name] = score_composites_with(GROUNDTRUTH, decompose)
    out["decompose pipeline (cpu-default)"] = score_composites(GROUNDTRUTH, load_workflow("cpu-default"),
                                                               ROOT / "bench" / "work" / "eval" / "real")
    return out


def composites_table(res: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| method | decomposed | object IoU ↑ | background L1 in the pasted region ↓ |", "|---|---|---|---|"]
    for name, r in res.items():
        m = r["mean"]
        lines.append(f"| {name} | {r['decomposed']}/{r['count']} | {m['object_iou']:.3f} | {m['bg_l1_in_mask']:.3f} |")
    base = next(iter(res.values()))["mean"]["composite_as_bg_l1_in_mask"]
    return [*lines, "", f"The composite itself as background: background L1 in the pasted region {base:.3f}."]


def main() -> None:
    gt = read_stacks(BENCH)
    ids = sorted(gt)
    reports: dict[str, dict[str, Any]] = {}
    times: dict[str, dict[str, float]] = {}
    from model_runs import run_name, settings  # bench/ is on sys.path

    # The bundled checkpoint carries the full run's inference settings; each ablation, trained under the
    # same seed, is scored with its own, chosen the same way (bench/model_runs.py calibrate, choose-seed).
    bundled = load_model("bundled").train_config
    ablations = {RECIPES[r]: run_name(r, bundled.seed) for r in ("no-shadow-branch", "no-restoration-loss")}
    missing = [run for run in ablations.values() if not (RUNS / run / "ckpt.pt").exists() or settings(run) is None]
    if missing:
        raise SystemExit(f"make eval-model compares the bundled model with the ablations {missing}, trained and "
                         f"calibrated under {RUNS}: run `make model` first (about 2 hours on 2 cores); "
                         "`liwi eval-model --model bundled --data BENCH --out REPORT` scores the bundled model alone")
    models = {"bundled model (full)": ("bundled", None),
              **{label: (RUNS / run, settings(run)) for label, run in ablations.items()}}
    for name, (src, inference) in models.items():
        reports[name] = eval_model(src, BENCH, inference=inference)
        times[name] = timing(src, inference)
    # Other seeds of the same three recipes (bench/model_runs.py train --seeds 1 ...), each scored with
    # its own calibrated settings: how much of each ablation's difference is the seed.
    # The bundled checkpoint is the full run of the seed that did best on the validation held out by photo.
    by_seed: dict[str, dict[int, dict[str, Any]]] = {r: {bundled.seed: reports[name]} for r, name in RECIPES.items()}
    for recipe, runs in seed_runs().items():
        for seed, run in runs.items():
            if seed not in by_seed[recipe]:
                by_seed[recipe][seed] = eval_model(run, BENCH, inference=settings(run.name))
    decomposed = read_stacks(PIPELINE)
    from run_eval import baselines  # the same trivial decomposers as make eval (bench/ is on sys.path)

    trivial = baselines(BENCH)
    single = trivial["single layer (image)"]
    pipeline = {sid: decomposed[sid] if sid in decomposed else single[sid] for sid in ids}
    reports["decompose pipeline (cpu-default)"] = evaluate_stacks(pipeline, {s: gt[s] for s in ids})
    for name, stacks in trivial.items():
        reports[name] = evaluate_stacks(stacks, {s: gt[s] for s in ids})
    held = heldout_reports(models)
    real = composite_reports(models) if (GROUNDTRUTH / "composites").is_dir() else {}
    summary = {n: {k: v for k, v in r.items() if k != "samples"} for n, r in reports.items()}
    out = ROOT / "bench" / "results"
    seeds = {recipe: {seed: {k: v for k, v in r.items() if k != "samples"} for seed, r in reports_.items()}
             for recipe, reports_ in by_seed.items()}
    held_summary = {n: {k: v for k, v in r.items() if k != "samples"} for n, r in held.items()}
    (out / "model.json").write_text(json.dumps({"methods": summary, "inference_s": times, "seeds": seeds,
                                                "heldout": held_summary, "composites": real},
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
    configs = {"bundled model (full)": bundled}
    configs.update({n: load_model(src).train_config.with_inference(**(inf or {}))
                     for n, (src, inf) in models.items() if src != "bundled"})
    lines += ["", "Inference settings (calibrated on held-out training compositions, `shadow_seed` then chosen on the "
              "fresh validation: bench/model_runs.py calibrate, choose-seed): " +
              "; ".join(f"{n}: " + ", ".join(f"{k} {getattr(c, k)}" for k in INFERENCE_FIELDS)
                        for n, c in configs.items())]
    lines += ["", "## Held out by photo", "",
              "The same models and the pipeline on the validation held out by photo (48 compositions of the "
              "assets the pipeline curates from 12 photos that neither training nor the benchmark uses; "
              "`bench/model_runs.py heldout`):", "", to_markdown(held)]
    if real:
        lines += ["", "## Real cut-and-paste composites", "",
                  f"The {next(iter(real.values()))['count']} libcom composites of `../shared/data/groundtruth` "
                  "(a real object pasted on a real photo; the ground truth is the paste, not the pipeline):", "",
                  *composites_table(real)]
    vs_pipeline = {title: (r["bundled model (full)"], r["decompose pipeline (cpu-default)"])
                   for title, r in (("benchmark", reports), ("held out by photo", held))}
    lines += ["", "## Shadow hysteresis", "",
              "The bundled model with its shadow regions kept only where they reach `shadow_seed` (the other "
              "settings as calibrated; 0 keeps every region above `shadow_floor`), on both sets:", "",
              *shadow_seed_table(vs_pipeline, bundled.shadow_seed)]
    lines += ["", "## How sure: paired bootstrap against the pipeline", "",
              "The bundled model (as shipped) minus the pipeline, per LayerD cell: the mean over samples of the "
              "per-sample difference, signed so that > 0 means the model is better, with its 95% paired "
              "bootstrap interval; an interval that excludes 0 is a difference these samples establish.", "",
              *paired_table(vs_pipeline)]
    if any(len(v) > 1 for v in by_seed.values()):
        lines += ["", "## Seeds", "",
                  f"The three recipes under every seed trained (the table above: seed {bundled.seed}), each with "
                  "its own inference settings (calibrated; the shadow seed chosen on the fresh validation):", "",
                  *seed_tables(by_seed)]
    (out / "model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    if "--finetuned" in sys.argv[1:]:
        finetune_report()
    elif "--experiments" in sys.argv[1:]:
        experiments_report()
    elif "--shadow-head" in sys.argv[1:]:
        shadow_head_report()
    else:
        main()
