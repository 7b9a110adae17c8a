"""Fault-injection soak: random ``kill -9`` of the driver and of Ray workers, then exactly-once checks.

The 13 photos of ``../shared/data/photos`` x ``--copies`` (distinct ids, one JSONL manifest) are
decomposed with ``liwi run`` into one OUT. The run is started again and again; each time, after a
random delay, either the driver or one Ray worker process is killed with SIGKILL (``--kills`` in
all, seeded). A killed driver's run is restarted with the same command; a killed worker's sample
is retried by the run itself. After the last kill the run is left to finish. Ray processes a
killed driver leaves behind are counted, not removed: the next run's start must reap them, and
none may be left after the final run. Then: every input
is exactly once in shards or rejects, every sample's trace rows belong to one trace id with
``seq`` 0..n-1 (no trace of a killed attempt committed), and no id is committed twice.

Writes ``bench/results/soak.md`` and ``.json``.
Usage: ``python bench/soak.py [--kills 8] [--copies 4] [--seed 0] [--workflow cpu-default]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import psutil

from add_pipeline.exec.ray_exec import kill_processes
from add_pipeline.io.shards import ShardStore

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def manifest(work: Path, copies: int) -> tuple[Path, set[str]]:
    """A JSONL manifest of every shared photo ``copies`` times; returns it and the expected ids."""
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    path = work / "inputs.jsonl"
    ids = set()
    with path.open("w") as fh:
        for c in range(copies):
            for p in photos:
                sid = f"c{c}__{p.name}"
                ids.add(sid)
                fh.write(json.dumps({"source": str(p), "id": sid}) + "\n")
    return path, ids


def ray_processes(exclude: set[int]) -> list[psutil.Process]:
    """Ray's processes on this machine (workers, raylet, GCS, agents) not in ``exclude``."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.Error, TypeError):
            continue
        if p.info["pid"] in exclude:
            continue
        if ("ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or "ray/dashboard" in cmd
                or "default_worker.py" in cmd or "ray/_private" in cmd):
            out.append(p)
    return out


def workers_of(exclude: set[int]) -> list[psutil.Process]:
    return [p for p in ray_processes(exclude) if "ray::" in " ".join(p.cmdline() or [])
            and "Agent" not in " ".join(p.cmdline() or [])]


def reap(exclude: set[int]) -> int:
    """Kill the Ray processes left behind by a killed driver; how many there were."""
    return kill_processes(ray_processes(exclude), timeout_s=10.0)


def check(out: Path, expected: set[str]) -> dict[str, object]:
    """Exactly-once figures of OUT against the ``expected`` ids."""
    store = ShardStore(out)
    counts = store.id_counts()
    traces = store.read_table("traces").select(["sample_id", "trace_id", "seq"]).to_pylist()
    by_sample: dict[str, set[str]] = defaultdict(set)
    seqs: dict[str, list[int]] = defaultdict(list)
    for t in traces:
        by_sample[t["sample_id"]].add(t["trace_id"])
        seqs[t["trace_id"]].append(t["seq"])
    return {
        "expected": len(expected), "done": len(counts),
        "missing": sorted(expected - set(counts)), "unexpected": sorted(set(counts) - expected),
        "duplicated_ids": sorted(s for s, c in counts.items() if c > 1),
        "accepted": store.read_table("shards").num_rows, "rejected": store.read_table("rejects").num_rows,
        "samples_with_several_traces": sorted(s for s, t in by_sample.items() if len(t) > 1),
        "traces_with_bad_seq": sorted(t for t, s in seqs.items() if sorted(s) != list(range(len(s)))),
        "samples_without_trace": sorted(set(counts) - set(by_sample)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workflow", default="cpu-default")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "soak")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    inputs, expected = manifest(args.work, args.copies)
    out = args.work / "out"
    liwi = str(Path(sys.executable).parent / "liwi")
    cmd = [liwi, "run", "--input", str(inputs), "--out", str(out), "--workflow", args.workflow, "--workers",
           str(args.workers), "--shard-size", "4", "--no-progress"]
    before = {p.pid for p in ray_processes(set())}  # a Ray some other program runs is not ours
    events: list[dict[str, object]] = []
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--overwrite", "--limit", "1"], check=True, capture_output=True)  # a fresh OUT
    proc: subprocess.Popen | None = None
    for k in range(args.kills):
        if proc is None:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        delay = rng.uniform(6.0, 18.0)
        target = "driver" if rng.random() < 0.5 else "worker"
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline and proc.poll() is None:
            time.sleep(0.2)
        if proc.poll() is not None:  # the run finished before this kill: nothing left to hurt
            events.append({"kill": k, "target": "none (the run had finished)", "after_s": round(delay, 1)})
            break
        done_before = len(ShardStore(out).id_counts())
        victims = workers_of(before | {proc.pid}) if target == "worker" else []
        if victims:
            victim = rng.choice(victims)
            victim.send_signal(signal.SIGKILL)
            events.append({"kill": k, "target": "worker", "pid": victim.pid, "after_s": round(delay, 1),
                           "committed_before": done_before})
            continue  # the same run goes on and retries the lost sample itself
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = None
        time.sleep(2.0)
        events.append({"kill": k, "target": "driver", "after_s": round(delay, 1), "committed_before": done_before,
                       "ray_processes_left": len(ray_processes(before))})  # the next start must reap them
    if proc is not None:
        proc.wait()
    final = subprocess.run(cmd, capture_output=True, text=True)
    time.sleep(2.0)
    lingering = len(ray_processes(before))  # after the last, clean exit: nothing of ours should be left
    reap(before)
    result = {"workflow": args.workflow, "inputs": len(expected), "kills": events, "final_exit": final.returncode,
              "ray_processes_after_final_run": lingering,
              "final_stderr_tail": final.stderr[-500:], "wall_s": round(time.perf_counter() - t0, 1),
              **check(out, expected)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2))
    kinds = Counter(str(e["target"]) for e in events)
    ok = not (result["missing"] or result["unexpected"] or result["duplicated_ids"] or lingering
              or result["samples_with_several_traces"] or result["traces_with_bad_seq"])
    md = [f"# Fault-injection soak ({args.workflow}, {len(expected)} inputs: the shared photos x {args.copies})", "",
          f"`python bench/soak.py --kills {args.kills} --seed {args.seed}` (part of `make bench`), "
          f"{result['wall_s']:.0f} s.", "",
          f"- kills: {len(events)} ({', '.join(f'{n} {t}' for t, n in sorted(kinds.items()))}); a killed driver's "
          "run was restarted with the same command, a killed worker's sample retried by the run",
          f"- final run exit code: {result['final_exit']}",
          f"- inputs done: {result['done']} of {result['expected']} ({result['accepted']} accepted, "
          f"{result['rejected']} rejected); missing {len(result['missing'])}, unexpected {len(result['unexpected'])}, "
          f"committed twice {len(result['duplicated_ids'])}",
          f"- traces: samples with traces of more than one attempt {len(result['samples_with_several_traces'])}, "
          f"traces with gaps or repeats in seq {len(result['traces_with_bad_seq'])}, "
          f"samples without a trace {len(result['samples_without_trace'])}",
          f"- Ray processes left behind by killed drivers: {sum(int(e.get('ray_processes_left', 0)) for e in events)} "
          f"in all, left for the next start to reap; left after the final run: {lingering}",
          f"- verdict: {'every input exactly once, traces once' if ok else 'FAILED: see soak.json'}", "",
          "| kill | target | after (s) | inputs committed before | Ray processes left behind |",
          "|---|---|---|---|---|"]
    for e in events:
        md.append(f"| {e['kill']} | {e['target']} | {e['after_s']} | {e.get('committed_before', '-')} | "
                  f"{e.get('ray_processes_left', '-')} |")
    (args.out / "soak.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
