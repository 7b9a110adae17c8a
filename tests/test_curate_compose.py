"""Curate (assets from decomposed shards) and compose (layered samples from assets), in process."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from add_pipeline.compose.assets import AssetLibrary
from add_pipeline.compose.audit import contact_region, contact_share
from add_pipeline.compose.curate import curate
from add_pipeline.compose.graph import build_compose_graph
from add_pipeline.compose.job import ComposeJob, compose, composition_items, load_compose_workflow
from add_pipeline.compose.plan import CompositionPlan, Light, Placement, placement_errors
from add_pipeline.compose.policy import build_compose_policy
from add_pipeline.core.composite import alpha_over, recomposition_error
from add_pipeline.core.peel import AssembledLayer
from add_pipeline.core.synthetic import make_scene
from add_pipeline.exec.run import RunOptions, run
from add_pipeline.exec.runner import LocalToolRunner
from add_pipeline.io.images import decode_png
from add_pipeline.io.layered import decode_row
from add_pipeline.io.shards import ShardStore
from add_pipeline.tools.encoder import LayeredRowEncoder
from tests.fakes import FakeClient

ROOT = Path(__file__).resolve().parents[1]


def _cut_row() -> dict:
    """A known decomposition whose object is cut by the left border (curate must filter it)."""
    scene = make_scene(4, size=(256, 256), n_objects=1)
    bg, shadow, obj = scene.layers()
    shift = scene.objects[0].bbox[0] + 10  # 10 px of the object fall off the canvas
    moved = [np.zeros_like(x) for x in (shadow, obj)]
    for src, dst in zip((shadow, obj), moved, strict=True):
        dst[:, : 256 - shift] = src[:, shift:]
    layers = [AssembledLayer("background", "background", bg, None),
              AssembledLayer("obj0_shadow", "shadow", moved[0], "obj0"),
              AssembledLayer("obj0", "object", moved[1], None)]
    image = np.round(alpha_over([lay.rgba for lay in layers]) * 255).astype(np.uint8)
    scores = {"obj0": {"alpha_solidity": 1.0, "alpha_soft_fraction": 0.1}, "background": {"seam": 1.0}}
    row = LayeredRowEncoder()("cut.png", "synthetic://cut", image, layers, scores, {})
    return {**row, "trace_id": "t-cut", "workflow": "handmade"}


@pytest.fixture(scope="module")
def decomposed(tmp_path_factory) -> Path:
    """A small decompose output: three synthetic photos through the real graph, plus a hand-made cut row."""
    base = tmp_path_factory.mktemp("decomposed")
    photos = base / "photos"
    photos.mkdir()
    for seed, n in ((1, 1), (2, 2), (5, 2)):
        scene = make_scene(seed, size=(256, 256), n_objects=n)
        cv2.imwrite(str(photos / f"scene{seed}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    text = (ROOT / "workflows" / "cpu-classical.yaml").read_text()
    wf = base / "small.yaml"
    wf.write_text(text.replace("working_size: 512", "working_size: 256").replace("name: cpu-classical", "name: small"))
    out = base / "out"
    run(RunOptions(input=str(photos), out=out, workflow=str(wf), local=True, workers=1, progress=False))
    ShardStore(out).commit([_cut_row()], [], [])
    return out


@pytest.fixture(scope="module")
def assets(decomposed, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("assets")
    curate(decomposed, path)
    return path


@pytest.fixture(scope="module")
def composed(assets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("composed") / "out"
    compose(assets, out, n=6, seed=3, local=True, workers=1, progress=False)
    return out


def _rows(out: Path) -> dict[str, dict]:
    return {r["sample_id"]: r for r in ShardStore(out).read_table("shards").to_pylist()}


# ---------------------------------------------------------------- curate


def test_curate_extracts_objects_backgrounds_and_keeps_reasons(decomposed, assets):
    summary = json.loads((assets / "assets.json").read_text())
    assert summary["samples"] == 4 and summary["sources"] == [str(decomposed.resolve())]
    assert summary["limits"]["min_object_px"] > 0
    filtered = pq.read_table(assets / "filtered.parquet").to_pylist()
    cut = [f for f in filtered if f["asset_id"] == "cut.png/obj0"]
    assert len(cut) == 1 and cut[0]["kind"] == "object" and cut[0]["reason"].startswith("cut by frame")
    assert summary["reasons"]["object: cut by frame"] == 1 and summary["filtered"] == len(filtered)
    lib = AssetLibrary.load(assets)
    assert len(lib.objects) >= 3 and "cut.png/obj0" not in lib.objects
    assert any(o.shadow_png is not None for o in lib.objects.values())
    for o in lib.objects.values():
        rgba = o.rgba()
        assert rgba.shape == (o.height, o.width, 4) and o.asset_id == f"{o.sample_id}/{o.layer}"
        solid = rgba[..., 3] >= 128
        assert solid[o.contact_y].any() and not solid[o.contact_y + 1:].any()  # the lowest solid row
        assert solid[o.contact_y, o.contact_x0: o.contact_x1].any()
        shadow = o.shadow()
        assert shadow is None or shadow.shape == (o.height, o.width)  # same crop frame
        assert {"alpha_solidity", "alpha_soft_fraction", "area_frac"} <= set(o.scores)
    assert {b.sample_id for b in lib.backgrounds.values()} >= {"scene1.png", "scene2.png", "scene5.png"}
    for b in lib.backgrounds.values():
        assert b.rgb().shape == (b.height, b.width, 3) and 0 <= b.inpainted_frac <= 1
        contacts = [o.box[1] + o.contact_y for o in lib.objects.values() if o.sample_id == b.sample_id]
        assert all(b.horizon_y <= c for c in contacts)  # the ground reaches every contact
    assert lib.backgrounds["scene5.png/background"].light_dx is not None  # scene 5 casts shadows


def test_curate_rerun_overwrites_identically(decomposed, assets, tmp_path):
    again = tmp_path / "again"
    curate(decomposed, again)
    curate(decomposed, again)
    for name in ("objects.parquet", "backgrounds.parquet", "filtered.parquet"):
        assert pq.read_table(again / name).equals(pq.read_table(assets / name))
    assert not list(again.glob("*.tmp"))


# ---------------------------------------------------------------- compose


def test_compose_layers_are_exact_and_plausible(assets, composed):
    rows = _rows(composed)
    assert sorted(rows) == [f"comp-3-{i:06d}" for i in range(6)]
    lib = AssetLibrary.load(assets)
    for sid, row in rows.items():
        assert row["source_kind"] == "composed" and row["source"].endswith(f"#{int(sid[-6:])}")
        image = decode_png(row["image"]["bytes"])
        layers = decode_row(row).stack()
        assert recomposition_error(image, layers)[1] <= 1.0
        assert row["layers"][0]["kind"] == "background" and (layers[0][..., 3] == 255).all()
        assert [lay["z"] for lay in row["layers"]] == list(range(len(layers)))
        meta = json.loads(row["meta"])
        horizon = meta["horizon_y"]
        assert meta["plan"]["background"] in lib.backgrounds
        assert all(p["asset_id"] in lib.objects for p in meta["plan"]["objects"])
        for i, (lay, arr) in enumerate(zip(row["layers"], layers, strict=True)):
            if lay["kind"] == "object":
                solid = arr[..., 3] >= 128
                assert not (solid[0].any() or solid[-1].any() or solid[:, 0].any() or solid[:, -1].any())
                assert np.flatnonzero(solid.any(axis=1))[-1] >= horizon  # standing on the ground
            if lay["kind"] == "shadow":  # directly below its object, touching its contact region
                assert row["layers"][i + 1]["name"] == lay["parent"] and row["layers"][i + 1]["kind"] == "object"
                parent = layers[i + 1][..., 3] >= 128
                assert contact_share(arr[..., 3] / 255.0, contact_region(parent)) >= 0.5
    traces = ShardStore(composed).read_table("traces").to_pylist()
    assert {t["node"] for t in traces} >= {"plan", "render", "audit", "verify", "emit"}


def test_compose_is_deterministic_per_seed_and_resumes(assets, composed, tmp_path):
    again = tmp_path / "again"
    compose(assets, again, n=6, seed=3, local=True, workers=2, progress=False)
    first, second = _rows(composed), _rows(again)
    assert {k: r["image"]["bytes"] for k, r in first.items()} == {k: r["image"]["bytes"] for k, r in second.items()}
    other = tmp_path / "other"
    compose(assets, other, n=6, seed=4, local=True, workers=1, progress=False)
    images = {r["image"]["bytes"] for r in _rows(other).values()}
    assert not images & {r["image"]["bytes"] for r in first.values()}
    stats = compose(assets, composed, n=6, seed=3, local=True, workers=1, progress=False)
    assert stats["last_run"]["processed"] == 0 and stats["accepted"] + stats["rejected"] == 6


def _placement(lib: AssetLibrary, aid: str, bg_id: str, height_frac: float, contact_y: float) -> Placement:
    obj, bg = lib.objects[aid], lib.backgrounds[bg_id]
    p = Placement(asset_id=aid, x=bg.width / 2, contact_y=contact_y,
                  scale=height_frac * bg.height / obj.object_height, shadow="cast")
    assert not placement_errors(obj, p, bg, load_compose_workflow("compose-default", 0)[1])
    return p


def test_openai_compose_policy_retries_malformed_answers_and_replans(assets):
    lib = AssetLibrary.load(assets)
    bg_id = next(iter(lib.backgrounds))
    bg = lib.backgrounds[bg_id]
    back, front = sorted(lib.objects)[:2]
    bottom = bg.height - 8.0
    crowded = CompositionPlan(  # the back object hides behind the front one: the audit must fail it
        background=bg_id, light=Light(dx=0.6, dy=-0.4), shadow_strength=0.5, harmonize=0.3,
        objects=[_placement(lib, back, bg_id, 0.3, bottom - 3), _placement(lib, front, bg_id, 0.33, bottom)])
    single = crowded.model_copy(update={"objects": crowded.objects[1:]})
    unknown = crowded.model_dump(mode="json")
    unknown["objects"][0]["asset_id"] = "no/such/object"
    client = FakeClient("Sure! Here is the plan: {", json.dumps(unknown), crowded.model_dump_json(),
                        single.model_dump_json())
    wf, settings = load_compose_workflow("compose-default", 7)
    policy = build_compose_policy("openai", model="fake-llm", client=client, vision=False)
    job = ComposeJob(wf, build_compose_graph(), policy, lib, settings, seed=7)
    out = job.process(composition_items(assets, 1, 7)[0], LocalToolRunner(wf))
    assert out.reject is None, out.reject
    assert not client.replies and len(client.requests) == 4
    plans = [t for t in out.traces if t["node"] == "plan" and t["tool"] == "openai"]
    assert [json.loads(t["output"])["attempts"] for t in plans] == [3, 1]
    assert "unknown object" in json.loads(plans[0]["output"])["errors"][1]
    verdicts = [json.loads(t["decision"])["verdict"] for t in out.traces if t["node"] == "verify"]
    assert verdicts == ["replan", "accept"]
    assert "visible_frac" in str(client.requests[-1]["messages"])  # the feedback reached the model
    meta = json.loads(out.row["meta"])
    assert meta["attempts"] == 1 and [p["asset_id"] for p in meta["plan"]["objects"]] == [front]
