"""Benchmark of the decompose stage: photos/s at 512 px for 1 and 2 workers, time per tool,
orchestration overhead and peak memory, per workflow (``cpu-default``: IS-Net; ``cpu-classical``).
Writes ``bench/results/decompose.json`` and ``.md``.

Usage: ``python bench/run_bench.py --out bench/results [--repeats 3] [--copies 2] [--workflows ...]``

Inputs are the in-the-wild photos of ``../shared/data/photos`` when present (else the bundled
samples), each listed ``--copies`` times in a JSONL manifest under distinct ids.  Every
configuration runs ``--repeats`` times on local Ray; we report medians.  Throughput counts the
processing phase only (Ray start-up is reported separately).  Orchestration overhead is
``1 - (sum of the tools' own seconds) / (processing wall seconds * workers)``: the share of
worker capacity not spent inside tools (scheduling, transfers, graph bookkeeping, idle).
With ``sample-tasks`` it splits into the share spent inside a sample's task but outside its
tools (graph bookkeeping, traces) and the share between samples (scheduling, transfers, the
driver's own CPU on a machine whose cores the workers fill, the last photo's tail).  The
driver's CPU seconds during processing are reported per photo.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from pathlib import Path

import psutil
import yaml

from add_pipeline.exec.run import RunOptions, run
from add_pipeline.samples import write_samples

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "photos"


class PeakRSS:
    """Samples the summed RSS of this process and all its descendants (Ray workers included)."""

    def __init__(self, period_s: float = 0.1) -> None:
        self.period, self.peak, self._stop = period_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.period)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def manifest(work: Path, copies: int) -> tuple[Path, int]:
    photos = sorted(SHARED.glob("*.jpg")) if SHARED.is_dir() else []
    if not photos:
        photos = write_samples(work / "samples")
    path = work / "inputs.jsonl"
    lines = [json.dumps({"source": str(p), "id": f"{p.stem}-{c}"}) for c in range(copies) for p in photos]
    path.write_text("\n".join(lines) + "\n")
    return path, len(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--placements", nargs="+", default=["tool-tasks", "sample-tasks"],
                    choices=["tool-tasks", "sample-tasks"], help="execution.placement values to compare")
    ap.add_argument("--workflows", nargs="+", default=["cpu-default", "cpu-classical"],
                    help="workflows to time (cpu-default: IS-Net; cpu-classical: the classical tools)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    inputs, n = manifest(args.work, args.copies)
    results: dict[str, object] = {"inputs": n, "working_size": 512, "repeats": args.repeats,
                                  "machine": {"cpus": psutil.cpu_count(), "platform": platform.platform()},
                                  "configs": {}}
    for wf, placement, workers in [(f, p, w) for f in args.workflows for p in args.placements for w in args.workers]:
        runs = []
        workflow = args.work / f"{wf}-{placement}.yaml"
        spec = yaml.safe_load((ROOT / "workflows" / f"{wf}.yaml").read_text())
        spec.setdefault("execution", {})["placement"] = placement
        workflow.write_text(yaml.safe_dump(spec))
        for r in range(args.repeats):
            with PeakRSS() as mem:
                stats = run(RunOptions(input=str(inputs), out=args.work / f"{wf}-{placement}-w{workers}",
                                       workers=workers, workflow=str(workflow), overwrite=True, progress=False,
                                       seed=0))
            if stats.get("fallback"):
                raise SystemExit(f"{wf} fell back to {stats['fallback']['to']}: {stats['fallback']['reason']}")
            last = stats["last_run"]
            overhead = 1.0 - last["tool_s"] / (last["processing_s"] * workers)
            capacity = last["processing_s"] * workers
            runs.append({"images_per_s": last["images_per_s"], "processing_s": last["processing_s"],
                         "startup_s": last["startup_s"], "tool_s": last["tool_s"], "overhead": overhead,
                         "in_graph": (last["sample_s"] - last["tool_s"]) / capacity,
                         "between_samples": 1.0 - last["sample_s"] / capacity,
                         "driver_cpu_ms_per_photo": 1000 * last["driver_cpu_s"] / max(1, last["processed"]),
                         "peak_rss_mb": mem.peak / 2**20, "accepted": stats["accepted"],
                         "rejected": stats["rejected"]})
            print(f"{wf} {placement} workers={workers} run {r}: {last['images_per_s']:.2f} img/s, "
                  f"overhead {overhead:.1%}, peak {mem.peak / 2**20:.0f} MB", flush=True)
        med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        results["configs"][f"{wf}/{placement}/{workers}"] = {  # type: ignore[index]
            "median": med, "runs": runs, "tools": {k: v["median_s"] for k, v in stats["tools"].items()}}
    cfg = results["configs"]
    for wf in args.workflows:
        for placement in args.placements:
            one, two = cfg.get(f"{wf}/{placement}/1"), cfg.get(f"{wf}/{placement}/2")  # type: ignore[union-attr]
            if one and two:
                results[f"speedup_1_to_2/{wf}/{placement}"] = \
                    two["median"]["images_per_s"] / one["median"]["images_per_s"]
    (args.out / "decompose.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Decompose benchmark ({n} photos at 512 px, median of {args.repeats} runs, local Ray)", "",
             "| workflow | placement | workers | photos/s | orchestration overhead | in graph | between samples "
             "| driver CPU (ms/photo) | peak RSS (MB) | start-up (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, c in cfg.items():  # type: ignore[union-attr]
        m = c["median"]
        wf, placement, w = key.split("/")
        split = (f"{m['in_graph']:.1%} | {m['between_samples']:.1%}" if placement == "sample-tasks"
                 else "- | -")  # tool-tasks: graphs run concurrently in driver threads, their walls overlap
        lines.append(f"| {wf} | {placement} | {w} | {m['images_per_s']:.2f} | {m['overhead']:.1%} | {split} | "
                     f"{m['driver_cpu_ms_per_photo']:.0f} | {m['peak_rss_mb']:.0f} | {m['startup_s']:.1f} |")
    lines.append("")
    lines += [f"Speed-up 1 -> 2 workers ({k.split('/', 1)[1]}): {v:.2f}x" for k, v in results.items()
              if k.startswith("speedup_1_to_2/")]
    for wf in args.workflows:
        last_cfg = [c for k, c in cfg.items() if k.startswith(f"{wf}/")][-1]  # type: ignore[union-attr]
        lines += ["", f"{wf}, last configuration: median seconds per call", "", "| tool | median s per call |",
                  "|---|---|"]
        lines += [f"| {t} | {s:.3f} |" for t, s in last_cfg["tools"].items() if s is not None]
    (args.out / "decompose.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
