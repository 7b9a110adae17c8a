"""A run killed with SIGKILL mid-way and restarted ends with every input exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from add_pipeline.cli import main
from add_pipeline.core.synthetic import make_scene
from add_pipeline.io.shards import ShardStore

pytestmark = pytest.mark.slow
N = 8


def test_kill_and_resume_exactly_once(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in range(N):
        scene = make_scene(100 + seed, size=(160, 192), n_objects=1)
        cv2.imwrite(str(inputs / f"s{seed}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    (inputs / "zz_bad.jpg").write_bytes(b"garbage")
    wf = Path(__file__).resolve().parents[1] / "workflows" / "cpu-classical.yaml"
    out = tmp_path / "out"
    args = ["run", "--input", str(inputs), "--out", str(out), "--workflow", str(wf), "--local", "--workers", "1",
            "--shard-size", "1", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "add_pipeline.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    markers = out / "_commits"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if markers.is_dir() and len(list(markers.glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = ShardStore(out).done_ids()
    assert 2 <= len(partial) < N + 1

    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    store = ShardStore(out)
    ids = store.read_table("shards").column("sample_id").to_pylist() + \
        store.read_table("rejects").column("sample_id").to_pylist()
    assert sorted(ids) == sorted([f"s{i}.png" for i in range(N)] + ["zz_bad.jpg"])  # each exactly once
    traces = store.read_table("traces")
    per_sample: dict[str, set[str]] = {}
    for sid, tid in zip(traces.column("sample_id").to_pylist(), traces.column("trace_id").to_pylist()):
        per_sample.setdefault(sid, set()).add(tid)
    assert set(per_sample) == set(ids)
    assert all(len(t) == 1 for t in per_sample.values())  # no trace of a killed attempt was committed
