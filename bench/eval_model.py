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
    (out / "model.json").write_text(json.dumps({"methods": summary, "inference_s": times}, indent=2, default=float))
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
    (out / "model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
