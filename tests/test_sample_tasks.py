"""execution.placement = sample-tasks: each photo's graph is one Ray task; same contract, and a
worker crash is retried with the retry in the sample's trace."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from add_pipeline.agents.graph import build_graph
from add_pipeline.agents.policy import RulesPolicy
from add_pipeline.browse import graph_state
from add_pipeline.core.composite import recomposition_error
from add_pipeline.core.config import load_workflow
from add_pipeline.core.synthetic import make_scene
from add_pipeline.exec.run import DecomposeJob, ExecOptions, checkpointer, execute, prepare_out
from add_pipeline.io.images import decode_png
from add_pipeline.io.inputs import enumerate_inputs
from add_pipeline.io.layered import decode_row
from add_pipeline.io.shards import ShardStore

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_session():
    repo_root = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": repo_root, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _inputs(d: Path, n: int) -> Path:
    d.mkdir()
    for seed in range(n):
        scene = make_scene(200 + seed, size=(160, 192), n_objects=1)
        cv2.imwrite(str(d / f"s{seed}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    (d / "bad.jpg").write_bytes(b"")
    return d


def _run(wf, inputs: Path, out: Path):
    ex = ExecOptions(out=out, workers=2, shard_size=2, progress=False)
    todo = prepare_out(enumerate_inputs(str(inputs)), wf, ex, {"stage": "decompose"})
    with checkpointer(out, True) as saver:
        return execute(todo, DecomposeJob(wf, build_graph(saver), RulesPolicy(), out), ex)


def _placed(wf, **cards):
    execution = wf.execution.model_copy(update={"placement": "sample-tasks"})
    return wf.model_copy(update={"execution": execution, "cards": {**wf.cards, **cards}})


def test_sample_tasks_honour_the_contract(ray_session, tmp_path):
    wf = _placed(load_workflow("cpu-classical").model_copy(update={"working_size": 192}))
    out = tmp_path / "out"
    stats = _run(wf, _inputs(tmp_path / "in", 4), out)
    assert stats["accepted"] + stats["rejected"] == 5 and stats["rejected"] >= 1
    store = ShardStore(out)
    rows = store.read_table("shards").to_pylist()
    for row in rows:
        image = decode_png(row["image"]["bytes"])
        mean, peak = recomposition_error(image, decode_row(row).stack())
        assert mean <= 1.0 and peak <= 8.0
        state = graph_state(out, row["trace_id"])  # the worker's last checkpoint reached the driver's SQLite
        assert state is not None and state["status"] == "accepted"
    assert set(store.read_table("traces").column("sample_id").to_pylist()) == store.done_ids()


def test_a_crashed_sample_task_is_retried_and_recorded(ray_session, tmp_path):
    wf = load_workflow("cpu-classical").model_copy(update={"working_size": 192})
    crashy = wf.cards["telea"].model_copy(update={"backend": "tests.crashy_tools:CrashOnceInpainter",
                                                  "params": {"flag": str(tmp_path / "flag")}})
    wf = _placed(wf, telea=crashy)
    out = tmp_path / "out"
    inputs = tmp_path / "in"
    inputs.mkdir()
    scene = make_scene(7, size=(160, 192), n_objects=1)
    cv2.imwrite(str(inputs / "one.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    stats = _run(wf, inputs, out)
    assert stats["accepted"] == 1 and (tmp_path / "flag").exists()
    traces = ShardStore(out).read_table("traces").to_pylist()
    retry = [t for t in traces if t["node"] == "sample"]
    assert len(retry) == 1 and "Worker" in retry[0]["error"] and json.loads(retry[0]["decision"])["retry"]
    assert len({t["trace_id"] for t in traces}) == 1 and [t["seq"] for t in traces] == list(range(len(traces)))


def test_a_stuck_sample_is_rejected_at_its_time_limit_and_the_run_goes_on(ray_session, tmp_path):
    import time

    wf = load_workflow("cpu-classical").model_copy(update={"working_size": 192})
    hang = wf.cards["telea"].model_copy(update={"backend": "tests.crashy_tools:HangOnceInpainter",
                                                "params": {"flag": str(tmp_path / "flag")}})
    wf = _placed(wf, telea=hang)
    wf = wf.model_copy(update={"execution": wf.execution.model_copy(update={"sample_timeout_s": 20.0})})
    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in range(3):
        scene = make_scene(300 + seed, size=(160, 192), n_objects=1)
        cv2.imwrite(str(inputs / f"s{seed}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    t0 = time.perf_counter()
    stats = _run(wf, inputs, tmp_path / "out")
    assert time.perf_counter() - t0 < 120  # not the hour the stuck tool sleeps
    assert stats["accepted"] + stats["rejected"] == 3 and (tmp_path / "flag").exists()
    rejects = ShardStore(tmp_path / "out").read_table("rejects").to_pylist()
    stuck = [r for r in rejects if r["stage"] == "timeout"]
    assert len(stuck) == 1 and "no result after" in stuck[0]["reason"]
    assert "sample_timeout_s = 20" in stuck[0]["reason"]
    assert stats["accepted"] >= 1
