"""``make eval``: score decomposers on the held-out composed benchmark, side by side, plus real GT.

1. ``liwi synth`` split (resumed if present): composed samples with exact layers.
2. Decomposers on the composed images: the decompose pipeline (``cpu-default``) and two trivial
   baselines — the whole image as one layer; the image as background with one empty layer per
   ground-truth object.
3. LayerD-protocol scores at 0..5 merges and per-kind figures, one table row per method.
4. A separate table against the real ground truth in ``../shared/data/groundtruth`` (if there).

Writes ``bench/results/eval.json`` and ``bench/results/eval.md``.
Usage: ``python bench/run_eval.py [--n 48] [--seed 2605] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from add_pipeline.core.composite import opaque
from add_pipeline.core.config import load_workflow
from add_pipeline.eval.kinds import EvalLayer
from add_pipeline.eval.readers import read_stacks
from add_pipeline.eval.real import real_markdown, score_real
from add_pipeline.eval.report import evaluate_stacks, to_markdown
from add_pipeline.exec.run import RunOptions, run
from add_pipeline.io.shards import ShardStore
from add_pipeline.synth import synth

ROOT = Path(__file__).resolve().parents[1]
GROUNDTRUTH = ROOT.parent / "shared" / "data" / "groundtruth"


def composed_inputs(bench: Path, work: Path) -> Path:
    """Write each composed image as PNG plus a JSONL manifest whose ids are the benchmark's ids."""
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    table = ShardStore(bench).read_table("shards").select(["sample_id", "image"])
    for sid, image in zip(table.column("sample_id").to_pylist(), table.column("image").to_pylist()):
        path = images / f"{sid}.png"
        if not path.exists():
            path.write_bytes(image["bytes"])
        lines.append(json.dumps({"source": str(path), "id": sid}))
    manifest = work / "inputs.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def baselines(bench: Path) -> dict[str, dict[str, list[EvalLayer]]]:
    """The two trivial decomposers, built from each composed image."""
    gt = read_stacks(bench)
    table = ShardStore(bench).read_table("shards").select(["sample_id"])
    single: dict[str, list[EvalLayer]] = {}
    empty: dict[str, list[EvalLayer]] = {}
    from add_pipeline.core.composite import alpha_over

    for sid in table.column("sample_id").to_pylist():
        stack = gt[sid]
        image = opaque(np.round(alpha_over([lay.rgba for lay in stack]) * 255).astype(np.uint8))
        single[sid] = [EvalLayer(image, "background", "image")]
        blank = np.zeros_like(image)
        empty[sid] = [EvalLayer(image, "background", "background")] + [
            EvalLayer(blank, "object", lay.name) for lay in stack if lay.kind == "object"]
    return {"single layer (image)": single, "background = image, empty objects": empty}


def pipeline_stacks(bench: Path, work: Path, seed: int, workers: int | None = None, workflow: str = "cpu-default"
                    ) -> tuple[dict[str, list[EvalLayer]], list[str]]:
    """Decompose the benchmark's composed images with ``workflow`` into ``work/pipeline`` (``cpu-default``)
    or ``work/pipeline-<workflow>`` (resumable) and return ``({sample id: stack}, rejected ids)``: a
    photo the pipeline rejects still needs an answer, so it gets the whole image as one layer."""
    out = work / ("pipeline" if workflow == "cpu-default" else f"pipeline-{workflow}")
    run(RunOptions(input=str(composed_inputs(bench, work)), out=out, workflow=workflow,
                   workers=workers, progress=False, seed=seed))
    decomposed = read_stacks(out)
    single = baselines(bench)["single layer (image)"]
    return ({sid: decomposed.get(sid, single[sid]) for sid in single},
            sorted(set(single) - set(decomposed)))


def pipeline_report(bench: Path, work: Path, seed: int, workers: int | None = None,
                    workflow: str = "cpu-default") -> tuple[dict, list[str]]:
    """:func:`pipeline_stacks` scored against ``bench``'s ground truth (LayerD protocol and per-kind
    figures, :func:`~add_pipeline.eval.report.evaluate_stacks`): ``(report, rejected ids)``."""
    stacks, rejected = pipeline_stacks(bench, work, seed, workers, workflow)
    gt = read_stacks(bench)
    return evaluate_stacks(stacks, {sid: gt[sid] for sid in stacks}), rejected


WORKFLOWS = {"cpu-default": "decompose pipeline (cpu-default: IS-Net)",
             "cpu-classical": "decompose pipeline (cpu-classical)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", type=Path, default=ROOT / "bench" / "work" / "synth")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "eval")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=2605)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    split = synth(args.bench, n=args.n, seed=args.seed, workers=args.workers, progress=False)
    gt = read_stacks(args.bench)
    trivial = baselines(args.bench)
    single = trivial["single layer (image)"]
    reports, missing = {}, {}
    for wf, label in WORKFLOWS.items():
        reports[label], missing[label] = pipeline_report(args.bench, args.work, args.seed, args.workers, wf)
    for name, stacks in trivial.items():
        reports[name] = evaluate_stacks(stacks, {sid: gt[sid] for sid in stacks})
    real = {wf: score_real(GROUNDTRUTH, load_workflow(wf), args.work / f"real-{wf}") for wf in WORKFLOWS} \
        if GROUNDTRUTH.is_dir() else {}
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {name: {k: v for k, v in r.items() if k != "samples"} for name, r in reports.items()}
    (args.out / "eval.json").write_text(json.dumps({"split": split, "methods": summary, "real": real,
                                                   "rejected": missing}, indent=2, default=float))
    md = [f"# Decomposition benchmark ({split['composed']} composed samples, seed {split['seed']}, "
          f"from the bundled photos)", "",
          "The benchmark's objects and backgrounds are the default pipeline's own cut-outs of the bundled photos "
          "(`liwi synth`), so a better pipeline makes a different benchmark, and the pipeline that made it finds "
          "its own cut-outs again: compare rows within this file only (earlier benchmarks are kept under "
          "`bench/results/history/`), and trust the real ground truth below first.", "",
          real_summary(real) if real else f"Real GT: {GROUNDTRUTH} not found", "",
          "## Composed benchmark", "",
          "Per-kind figures first (object IoU: soft IoU of Hungarian-matched objects averaged over every "
          "true object, so missed objects count as 0; bg L1 inside the removed regions), then the LayerD "
          "protocol (RGB L1 lower is better, Alpha IoU higher is better, at 0..5 merges):", "",
          to_markdown(reports), ""]
    for label, ids in missing.items():
        md.append(f"{label} rejected {len(ids)} of the {len(single)} composed images ({', '.join(ids) or '-'}); "
                  "they are scored as a single layer.")
    for wf, res in real.items():
        body = real_markdown(res).split("\n", 2)[2]  # its own heading replaced by one naming the workflow
        md += ["", f"## Real ground truth (`../shared/data/groundtruth`), {WORKFLOWS[wf]}", "", body]
    md += ["", f"Produced by `make eval` in {time.perf_counter() - t0:.0f} s."]
    (args.out / "eval.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def real_summary(real: dict[str, dict]) -> str:
    """One row per workflow of the figures that say whether its layers are usable, on real ground truth."""
    rows = ["| workflow | libcom: best object soft IoU | libcom: bg L1 in pasted region (composite: "
            "{comp}) | GT04 / GT05 soft IoU from own mask | DESOBA shadow IoU / found (true mask) | "
            "DESOBA shadow IoU / found (own mask) |", "|---|---|---|---|---|---|"]
    comp = "-"
    for wf, res in real.items():
        c = res.get("composites", {}).get("mean", {})
        comp = f"{c['composite_as_bg_l1_in_mask']:.3f}" if c else comp
        m = res.get("matting", {})
        own = " / ".join(f"{m[k]['pipeline_mask']['iou']:.3f}" if "pipeline_mask" in m.get(k, {}) else "-"
                         for k in ("GT04", "GT05"))
        sh = res.get("shadows", {})
        rows.append(f"| {wf} | {c.get('object_iou', float('nan')):.3f} | {c.get('bg_l1_in_mask', float('nan')):.3f} "
                    f"| {own} | {sh.get('mean_iou', float('nan')):.3f} / {sh.get('found', '-')} of "
                    f"{sh.get('count', '-')} | {sh.get('own_mean_iou', float('nan')):.3f} / "
                    f"{sh.get('own_found', '-')} of {sh.get('count', '-')} |")
    rows[0] = rows[0].replace("{comp}", comp)
    return "\n".join(["## Real ground truth: the headline", ""] + rows)


if __name__ == "__main__":
    main()
