"""The decompose graph in process (no Ray): known scenes, scripted chat model, checkpoints."""

from __future__ import annotations

import json
import sqlite3

import cv2
import numpy as np
import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from add_pipeline.agents.graph import build_graph
from add_pipeline.agents.policy import RulesPolicy, build_policy
from add_pipeline.core.composite import recomposition_error
from add_pipeline.core.config import load_workflow
from add_pipeline.core.synthetic import make_scene
from add_pipeline.exec.runner import LocalToolRunner
from add_pipeline.exec.sample import decompose_one
from add_pipeline.io.inputs import InputItem
from add_pipeline.io.layered import decode_row
from tests.fakes import FakeClient

PLAN = json.dumps({"max_objects": 2, "objects": [{"name": "blob", "casts_shadow": True}]})
ACCEPT = json.dumps({"verdict": "accept", "reason": "looks right"})


@pytest.fixture(scope="module")
def workflow():
    return load_workflow("cpu-classical").model_copy(update={"working_size": 256})


@pytest.fixture(scope="module")
def runner(workflow):
    return LocalToolRunner(workflow)


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    scene = make_scene(3, size=(256, 256), n_objects=1, shadows=True)
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    return scene, InputItem("scene", str(path))


def _layers(row):
    return decode_row(row).stack()


def test_rules_graph_decomposes_known_scene(workflow, runner, scene_file):
    scene, item = scene_file
    out = decompose_one(item, build_graph(), workflow, runner, RulesPolicy(), "cpu-classical")
    assert out.reject is None, out.reject
    row = out.row
    kinds = [lay["kind"] for lay in row["layers"]]
    assert kinds[0] == "background" and "object" in kinds
    for i, lay in enumerate(row["layers"]):  # every shadow sits directly below its object
        if lay["kind"] == "shadow":
            assert row["layers"][i + 1]["name"] == lay["parent"]
            assert row["layers"][i + 1]["kind"] == "object"
    assert [lay["z"] for lay in row["layers"]] == list(range(len(kinds)))
    mean, peak = recomposition_error(scene.image, _layers(row))
    assert mean <= 1.0 and peak <= 8.0
    # the object layer found is the scene's object (soft IoU of alpha)
    gt = scene.objects[0].alpha
    best = max(
        (np.minimum(a, gt).sum() / np.maximum(a, gt).sum())
        for a in (lay[..., 3] / 255.0 for lay, m in zip(_layers(row), row["layers"]) if m["kind"] == "object")
    )
    assert best >= 0.8
    nodes = [t["node"] for t in out.traces]
    for node in ("load", "plan", "propose", "segment", "matte", "shadow", "order", "peel", "compose", "verify",
                 "emit"):
        assert node in nodes
    assert nodes.index("plan") < nodes.index("propose") < nodes.index("peel") < nodes.index("emit")


def test_scripted_chat_model_recovers_from_malformed_output(workflow, runner, scene_file, tmp_path):
    _, item = scene_file
    client = FakeClient("this is not json", PLAN, "{\"verdict\": \"maybe\"}", ACCEPT)
    policy = build_policy("openai", model="fake-vlm", client=client, cache_dir=str(tmp_path / "cache"))
    out = decompose_one(item, build_graph(), workflow, runner, policy, "cpu-classical")
    assert out.reject is None, out.reject
    plan_event = next(t for t in out.traces if t["node"] == "plan")
    assert json.loads(plan_event["output"])["attempts"] == 2
    assert json.loads(plan_event["decision"])["max_objects"] == 2
    verify_event = [t for t in out.traces if t["node"] == "verify" and t["tool"] == "openai"][-1]
    assert json.loads(verify_event["decision"])["verdict"] == "accept"
    assert len(client.requests) == 4 and not client.replies


def test_chat_model_that_never_answers_properly_rejects_cleanly(workflow, runner, scene_file, tmp_path):
    _, item = scene_file
    client = FakeClient("nope", "{\"max_objects\": 99}", "[]")
    policy = build_policy("openai", model="fake-vlm", client=client, max_retries=2)
    out = decompose_one(item, build_graph(), workflow, runner, policy, "cpu-classical")
    assert out.row is None
    assert out.reject["stage"] == "plan" and "policy failed" in out.reject["reason"]
    assert any(t["node"] == "plan" and t["error"] for t in out.traces)


def test_verifier_revision_drops_shadow_and_reverifies(workflow, runner, scene_file):
    _, item = scene_file
    revise = json.dumps({"verdict": "revise", "reason": "shadow looks wrong",
                         "actions": [{"kind": "drop_shadow", "target": "obj0", "reason": "test"}]})
    client = FakeClient(PLAN, revise, ACCEPT)
    policy = build_policy("openai", model="fake-vlm", client=client, vision=False)
    out = decompose_one(item, build_graph(), workflow, runner, policy, "cpu-classical")
    assert out.reject is None, out.reject
    kinds = [lay["kind"] for lay in out.row["layers"]]
    assert "shadow" not in kinds
    assert [t["attempt"] for t in out.traces if t["node"] == "verify" and t["tool"] == "openai"] == [0, 1]
    assert json.loads(out.row["meta"])["attempts"] == 1


def test_bad_file_is_rejected_at_load_with_its_name(workflow, runner, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = decompose_one(InputItem("broken", str(bad)), build_graph(), workflow, runner, RulesPolicy(), "x")
    assert out.row is None and out.reject["stage"] == "load"
    assert "broken.jpg" in out.reject["reason"]


def test_sqlite_checkpoints_keep_the_final_state(workflow, runner, scene_file, tmp_path):
    _, item = scene_file
    conn = sqlite3.connect(tmp_path / "ck.sqlite", check_same_thread=False)
    graph = build_graph(SqliteSaver(conn))
    out = decompose_one(item, graph, workflow, runner, RulesPolicy(), "cpu-classical")
    trace_id = out.traces[0]["trace_id"]
    state = graph.get_state({"configurable": {"thread_id": trace_id}})
    assert state.values["status"] == "accepted"
    assert state.values["sample_id"] == "scene"
    history = list(graph.get_state_history({"configurable": {"thread_id": trace_id}}))
    assert len(history) >= 10  # one checkpoint per step
    conn.close()
