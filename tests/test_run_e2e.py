"""End to end on local Ray: photos + bad files in, the output contract out; CLI commands on top."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from add_pipeline.cli import main
from add_pipeline.core.composite import recomposition_error
from add_pipeline.core.synthetic import make_scene
from add_pipeline.io.hf import arrow_nullable
from add_pipeline.io.images import decode_png
from add_pipeline.io.layered import decode_row
from add_pipeline.io.shards import REJECT_SCHEMA, SHARD_SCHEMA, TRACE_SCHEMA, ShardStore

pytestmark = [pytest.mark.slow, pytest.mark.ray]

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def _workflow(tmp: Path, placement: str = "sample-tasks") -> Path:
    """cpu-classical at 256 px (fast) with ``placement``, as a workflow file of the user's own."""
    src = Path(__file__).resolve().parents[1] / "workflows" / "cpu-classical.yaml"
    text = src.read_text().replace("working_size: 512", "working_size: 256").replace("name: cpu-classical", "name: e2e")
    assert "placement: sample-tasks" in text
    text = text.replace("placement: sample-tasks", f"placement: {placement}")
    path = tmp / "e2e.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    for seed in (1, 2):
        scene = make_scene(seed, size=(256, 320), n_objects=2 if seed == 2 else 1)
        cv2.imwrite(str(d / f"scene{seed}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    for name in ("cat.jpg", "coffee_cup.jpg"):
        if (PHOTOS / name).exists():
            shutil.copy(PHOTOS / name, d / name)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.png").write_text("this is text, not a picture")
    return d


@pytest.fixture(scope="module", params=["sample-tasks", "tool-tasks"])
def result(request, inputs, tmp_path_factory) -> Path:
    """One run per execution placement: every test below holds for both."""
    out = tmp_path_factory.mktemp("out") / "run"
    wf = _workflow(out.parent, request.param)
    r = CliRunner().invoke(main, ["run", "--input", str(inputs), "--out", str(out), "--workflow", str(wf),
                                  "--workers", "2", "--shard-size", "2", "--no-progress"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out


def test_contract_every_input_exactly_once(inputs, result):
    store = ShardStore(result)
    shards, rejects = store.read_table("shards"), store.read_table("rejects")
    ids = shards.column("sample_id").to_pylist() + rejects.column("sample_id").to_pylist()
    expected = sorted(p.name for p in inputs.iterdir())
    assert sorted(ids) == expected
    reasons = dict(zip(rejects.column("sample_id").to_pylist(), rejects.column("reason").to_pylist()))
    assert "empty.jpg" in reasons["empty.jpg"] and "empty file" in reasons["empty.jpg"]
    assert "not an image" in reasons["notes.png"]
    assert {"scene1.png", "scene2.png"} <= set(shards.column("sample_id").to_pylist())
    for kind, schema in (("shards", SHARD_SCHEMA), ("traces", TRACE_SCHEMA), ("rejects", REJECT_SCHEMA)):
        for f in store.committed_files(kind):
            on_disk = pq.read_schema(f)  # every field nullable (as datasets compares them), features recorded
            assert on_disk.remove_metadata().equals(arrow_nullable(schema)), f
            assert set(on_disk.metadata) == {b"huggingface", b"liwi"}, f
    assert not list(result.rglob("*.tmp"))


def test_layers_recompose_exactly_and_follow_the_contract(result):
    rows = ShardStore(result).read_table("shards").to_pylist()
    for row in rows:
        assert row["source_kind"] == "decomposed" and row["status"] == "accepted" and row["workflow"] == "e2e"
        image = decode_png(row["image"]["bytes"])
        assert image.shape == (row["height"], row["width"], 3)
        assert max(image.shape[:2]) <= 256  # stored at working size
        layers = decode_row(row).stack()
        assert all(lay.shape == (row["height"], row["width"], 4) for lay in layers)
        assert row["layers"][0]["kind"] == "background" and (layers[0][..., 3] == 255).all()
        mean, peak = recomposition_error(image, layers)
        assert mean <= 1.0 and peak <= 8.0, (row["sample_id"], mean, peak)
        objects = {lay["name"] for lay in row["layers"] if lay["kind"] == "object"}
        assert objects
        for lay, arr in zip(row["layers"], layers):
            x0, y0, x1, y1 = lay["bbox"]
            if lay["kind"] != "background":
                ys, xs = np.nonzero(arr[..., 3])
                assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            if lay["kind"] == "shadow":
                assert lay["parent"] in objects


def test_traces_cover_every_sample_and_hold_no_pixels(result):
    traces = ShardStore(result).read_table("traces")
    shards = ShardStore(result).read_table("shards")
    assert set(shards.column("trace_id").to_pylist()) <= set(traces.column("trace_id").to_pylist())
    for text in traces.column("output").to_pylist() + traces.column("input").to_pylist():
        assert text is None or len(text) < 20000
    assert set(traces.column("node").to_pylist()) >= {"load", "plan", "propose", "peel", "verify", "emit"}


def test_run_and_stats_files(result):
    run = json.loads((result / "run.json").read_text())
    assert run["seed"] == 0 and len(run["workflow_hash"]) == 64 and run["versions"]["ray"]
    stats = json.loads((result / "stats.json").read_text())
    assert stats["accepted"] + stats["rejected"] == stats["inputs_done"] >= 4
    assert stats["reject_reasons"]["load: empty file"] == 1
    assert stats["tools"]["closed-form"]["calls"] >= 2 and stats["tools"]["closed-form"]["median_s"] > 0


def test_cli_stats_show_traces(result, tmp_path):
    cli = CliRunner()
    r = cli.invoke(main, ["stats", str(result)])
    assert r.exit_code == 0 and "accepted" in r.output and "closed-form" in r.output
    r = cli.invoke(main, ["show", str(result), "scene1.png", "--save", str(tmp_path)])
    assert r.exit_code == 0, r.output
    saved = tmp_path / "scene1.png"
    assert (saved / "composite.png").exists() and (saved / "trace.txt").exists()
    assert any(p.name.endswith("_background_background.png") for p in saved.iterdir())
    composite = cv2.imread(str(saved / "composite.png"))
    original = cv2.imread(str(saved / "input.png"))
    assert np.abs(composite.astype(int) - original.astype(int)).max() <= 8
    r = cli.invoke(main, ["show", str(result), "empty.jpg", "--state"])
    assert r.exit_code == 0 and "REJECTED at load" in r.output
    assert '"status": "rejected"' in r.output and '"stage": "load"' in r.output  # checkpointed state
    r = cli.invoke(main, ["traces", str(result), "--sample", "scene2.png"])
    assert r.exit_code == 0 and "peel" in r.output and "verify" in r.output
    r = cli.invoke(main, ["traces", str(result), "--sql",
                          "select node, count(*) as n from traces group by node order by node"])
    assert r.exit_code == 0 and "emit" in r.output
    r = cli.invoke(main, ["traces", str(result), "--sql", "select nope from traces"])
    assert r.exit_code != 0 and "SQL error" in r.output


def test_rerun_resumes_with_nothing_left_to_do(inputs, result):
    before = ShardStore(result).done_ids()
    r = CliRunner().invoke(main, ["run", "--input", str(inputs), "--out", str(result), "--workflow",
                                  str(result.parent / "e2e.yaml"), "--workers", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "0 processed this run" in r.output
    assert ShardStore(result).done_ids() == before
