"""LayerD protocol and per-kind metrics on hand-made stacks with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from add_pipeline.eval.kinds import EvalLayer, kind_scores
from add_pipeline.eval.layerd import (
    alpha_iou,
    dtw_path,
    evaluate_grouped,
    evaluate_sample,
    group_indices,
    group_layers,
    pair_score,
    rgb_l1,
    soft_iou,
)
from add_pipeline.eval.readers import read_folder_stacks, read_shard_stacks, read_stacks
from add_pipeline.eval.report import evaluate, evaluate_stacks, to_markdown
from add_pipeline.io.images import encode_png
from add_pipeline.io.shards import ShardStore

H, W = 16, 16
RED, GREY = (200, 30, 30), (100, 100, 100)


def full(color: tuple[int, int, int]) -> np.ndarray:
    out = np.empty((H, W, 4), np.uint8)
    out[...] = (*color, 255)
    return out


def rect(color: tuple[int, int, int], y0: int, y1: int, x0: int, x1: int, alpha: int = 255) -> np.ndarray:
    out = np.zeros((H, W, 4), np.uint8)
    out[y0:y1, x0:x1] = (*color, alpha)
    return out


# ---------------------------------------------------------------- pair metrics


def test_identical_stacks_score_perfect_at_every_level() -> None:
    stack = [full(GREY), rect(RED, 2, 8, 2, 8), rect((0, 0, 255), 5, 12, 5, 12), rect((0, 255, 0), 12, 15, 0, 3)]
    res = evaluate_sample(stack, [s.copy() for s in stack], max_merges=5)
    assert res.merges == 0 and len(res.levels) == 6
    for lv in res.levels:
        assert lv.rgb_l1 == 0.0 and lv.alpha_iou == 1.0 and lv.cost == 0.0


def test_known_colour_shift_gives_known_l1() -> None:
    gt = [full(GREY), rect(RED, 4, 8, 4, 8)]
    shifted = rect((RED[0], RED[1] + 51, RED[2]), 4, 8, 4, 8)  # +0.2 on one channel inside the alpha
    shifted[0, 0, :3] = 255  # colour under zero gt alpha is ignored
    assert rgb_l1(shifted, gt[1]) == pytest.approx(0.2 / 3)
    assert pair_score(shifted, gt[1]).cost == pytest.approx((0.2 / 3) / 2)
    res = evaluate_sample([gt[0], shifted], gt, max_merges=5)
    assert res.path == ((0, 0), (1, 1))
    assert res.levels[0].rgb_l1 == pytest.approx(0.2 / 6)  # mean over the two pairs on the path
    assert res.levels[0].alpha_iou == 1.0 and res.merges == 0


def test_soft_iou_of_known_mattes_and_empty_union() -> None:
    a = np.array([0.2, 0.6, 1.0, 0.0])
    b = np.array([0.4, 0.6, 0.5, 0.3])
    assert soft_iou(a, b) == pytest.approx(1.3 / 2.3)
    pa, pb = np.zeros((1, 2, 4), np.uint8), np.zeros((1, 2, 4), np.uint8)
    pa[0, :, 3], pb[0, :, 3] = (255, 100), (50, 200)
    assert alpha_iou(pa, pb) == pytest.approx(150 / 455)
    empty = np.zeros((H, W, 4), np.uint8)
    assert alpha_iou(empty, empty) == 0.0 and soft_iou(np.zeros(3), np.zeros(3)) == 0.0
    assert rgb_l1(full(RED), empty) == 0.0  # empty ground truth: LayerD returns 0
    with pytest.raises(ValueError, match="differ in size"):
        rgb_l1(full(RED), np.zeros((H, W + 1, 4), np.uint8))


# ---------------------------------------------------------------- grouping and DTW


def test_grouping_joins_disjoint_layers_and_splits_overlapping_ones() -> None:
    left, right = rect(RED, 2, 6, 1, 5), rect(RED, 2, 6, 9, 13)
    assert group_indices([full(GREY)[..., 3], left[..., 3], right[..., 3]]) == [[0], [1, 2]]
    groups = group_layers([full(GREY), left, right])
    assert len(groups) == 2 and np.array_equal(groups[1][..., 3] > 0, (left[..., 3] > 0) | (right[..., 3] > 0))
    overlapping = rect(RED, 4, 8, 3, 7)
    assert group_indices([full(GREY)[..., 3], left[..., 3], overlapping[..., 3]]) == [[0], [1], [2]]
    # LayerD peels from the top: a layer clear of everything above joins the topmost group
    far = rect(RED, 12, 15, 12, 15)
    assert group_indices([full(GREY)[..., 3], left[..., 3], overlapping[..., 3], far[..., 3]]) == [[0], [1], [2, 3]]


def test_dtw_known_optimum_and_tie_breaks() -> None:
    cost = np.array([[0.1, 0.9, 0.9], [0.9, 0.2, 0.9], [0.9, 0.3, 0.9], [0.9, 0.9, 0.1]])
    assert dtw_path(cost) == [(0, 0), (1, 1), (2, 1), (3, 2)]
    assert dtw_path(np.zeros((2, 2))) == [(0, 0), (1, 1)]  # ties prefer the diagonal
    assert dtw_path(np.zeros((3, 2))) == [(0, 0), (1, 0), (2, 1)]
    blocked = np.zeros((3, 3))
    blocked[1, 1] = 9.0  # diagonal worse; equal up/left prefer the prediction step
    assert dtw_path(blocked) == [(0, 0), (0, 1), (1, 2), (2, 2)]
    assert dtw_path(np.array([[0.5]])) == [(0, 0)]
    with pytest.raises(ValueError, match="non-empty 2-D"):
        dtw_path(np.zeros((0, 3)))


# ---------------------------------------------------------------- merge edits


def split_object_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """GT object split into two overlapping predicted parts that recompose it exactly."""
    gt = [full(GREY), rect(RED, 4, 12, 3, 13)]
    pred = [full(GREY), rect(RED, 4, 12, 3, 9), rect(RED, 4, 12, 8, 13)]
    return pred, gt


@pytest.mark.parametrize("rule", ["layerd", "exhaustive"])
def test_over_split_prediction_recovers_after_one_merge(rule: str) -> None:
    pred, gt = split_object_case()
    res = evaluate_sample(pred, gt, max_merges=5, merge_rule=rule)  # type: ignore[arg-type]
    assert (res.n_pred_groups, res.n_gt_groups) == (3, 2)
    assert res.merges == 1 and res.edits == ("pred 1+2",)
    assert res.levels[0].cost > 0.05 and res.levels[0].alpha_iou < 1.0
    assert res.levels[1].cost == 0.0 and res.levels[1].alpha_iou == 1.0 and res.levels[1].rgb_l1 == 0.0
    assert all(lv == res.levels[1] for lv in res.levels[2:])  # stopped early: last value carried
    # the same split on the ground-truth side is merged there
    back = evaluate_sample(gt, pred, max_merges=5, merge_rule=rule)  # type: ignore[arg-type]
    assert back.edits == ("gt 1+2",) and back.levels[1].cost == 0.0


def test_no_helpful_merge_carries_level_zero_and_respects_limits() -> None:
    gt = [full(GREY), rect(RED, 2, 6, 2, 6)]
    pred = [full((0, 0, 0)), rect((0, 0, 255), 9, 14, 9, 14)]
    res = evaluate_sample(pred, gt, max_merges=3)
    assert res.merges == 0 and len(res.levels) == 4 and len(set(res.levels)) == 1
    pred3, gt3 = split_object_case()
    assert evaluate_sample(pred3, gt3, max_merges=0).levels[0].cost > 0  # max_merges=0: no edits
    two = evaluate_grouped(pred3[:2], gt3, max_merges=5)  # two-layer stacks are never merged
    assert two.merges == 0
    with pytest.raises(ValueError, match="merge_rule"):
        evaluate_sample(pred3, gt3, merge_rule="best")  # type: ignore[arg-type]


# ---------------------------------------------------------------- per-kind metrics


def test_kind_scores_on_hand_made_case() -> None:
    gt_bg = full(GREY)
    obj = rect(RED, 4, 8, 4, 8)
    shadow = rect((0, 0, 0), 8, 10, 4, 8, alpha=128)
    gt = [
        EvalLayer(gt_bg, "background", "bg"),
        EvalLayer(obj, "object", "O"),
        EvalLayer(shadow, "shadow", "O_shadow", parent="O"),
    ]
    pred_bg = gt_bg.copy()
    pred_bg[4:8, 4:8, :3] = 151  # +0.2 on all channels over the 16 object pixels
    pred_obj = obj.copy()
    pred_obj[5, 5, 3] = pred_obj[6, 6, 3] = 0  # interior holes
    pred_obj[4, 4, 3] = 0  # one hole on the edge
    pred = [
        EvalLayer(pred_bg, "background", "bg"),
        EvalLayer(rect(RED, 13, 15, 13, 15), "object", "fp"),  # false positive, disjoint
        EvalLayer(pred_obj, "object", "P"),
        EvalLayer(rect((0, 0, 0), 8, 10, 4, 8, alpha=64), "shadow", "P_shadow", parent="P"),
        EvalLayer(rect((0, 0, 0), 0, 2, 0, 2, alpha=64), "shadow", "stray"),
    ]
    k = kind_scores(pred, gt, band_px=1)
    removed = 16 + 8
    assert k.removed_fraction == pytest.approx(removed / (H * W))
    assert k.bg_rgb_l1 == pytest.approx(16 * 0.2 / removed)
    assert k.bg_psnr == pytest.approx(10 * math.log10(1 / (16 * 0.04 / removed)))
    (o,) = k.objects
    assert (o.gt, o.pred) == ("O", "P")
    assert o.iou == pytest.approx(13 / 16) and o.sad == pytest.approx(3 / 1000)
    assert o.boundary_sad == pytest.approx(1 / 1000)  # only the edge hole lies in the 1-px band
    (s,) = k.shadows
    assert (s.gt, s.pred) == ("O_shadow", "P_shadow")
    assert s.iou == pytest.approx(0.5) and s.mae == pytest.approx(64 / 255)
    assert (k.n_pred_objects, k.n_pred_shadows) == (2, 2)

    # nothing predicted: IoU 0, SAD = the whole matte, shadow against nothing
    bare = kind_scores([EvalLayer(gt_bg, "background", "bg")], gt, band_px=1)
    assert bare.bg_rgb_l1 == 0.0 and bare.bg_psnr == 100.0
    assert bare.objects[0].pred is None and bare.objects[0].iou == 0.0 and bare.objects[0].sad == pytest.approx(0.016)
    assert bare.shadows[0].pred is None and bare.shadows[0].mae == pytest.approx(128 / 255)


# ---------------------------------------------------------------- readers and reports


def write_folder(root: Path, samples: dict[str, dict[str, np.ndarray]]) -> None:
    for sid, layers in samples.items():
        (root / sid).mkdir(parents=True)
        for name, arr in layers.items():
            (root / sid / f"{name}.png").write_bytes(encode_png(arr))


def shard_row(sid: str, layers: list[tuple[str, str, np.ndarray, str | None]]) -> dict:
    return {
        "sample_id": sid,
        "source": f"/in/{sid}.png",
        "source_kind": "file",
        "width": W,
        "height": H,
        "image": {"bytes": encode_png(full(GREY)[..., :3]), "path": None},
        "layers": [
            {"name": n, "kind": k, "z": z, "image": {"bytes": encode_png(a), "path": None},
             "bbox": [0, 0, W, H], "parent": p, "scores": {}}
            for z, (n, k, a, p) in enumerate(layers)
        ],
        "status": "accepted",
        "trace_id": f"t-{sid}",
        "workflow": "classic",
    }


def test_layerd_folder_round_trip_and_unmatched_samples(tmp_path: Path) -> None:
    bg, car, sh = full(GREY), rect(RED, 4, 8, 4, 8), rect((0, 0, 0), 8, 10, 4, 8, alpha=100)
    s1 = {"00": bg, "01_car": car, "02_car_shadow": sh}
    write_folder(tmp_path / "gt", {"s1": s1, "s3": s1})
    write_folder(tmp_path / "pred", {"s1": s1, "s2": s1})
    stacks = read_folder_stacks(tmp_path / "gt")
    assert sorted(stacks) == ["s1", "s3"]
    layers = stacks["s1"]
    assert [(x.name, x.kind, x.parent) for x in layers] == [
        ("00", "background", None), ("01_car", "object", None), ("02_car_shadow", "shadow", "01_car")]
    assert np.array_equal(layers[1].rgba, car) and np.array_equal(layers[2].rgba, sh)

    report = evaluate(tmp_path / "pred", tmp_path / "gt", max_merges=5)
    json.dumps(report)  # JSON-able
    assert report["count"] == 1 and report["failed"] == []
    assert report["unmatched"] == {"pred_only": ["s2"], "gt_only": ["s3"]}
    assert [lv["cost"] for lv in report["levels"]] == [0.0] * 6
    assert report["kinds"]["object_iou"] == 1.0 and report["kinds"]["shadow_iou"] == 1.0
    assert report["samples"]["s1"]["kinds"]["shadows"][0]["pred"] == "02_car_shadow"


def test_shard_folder_round_trip_reads_only_committed_parts(tmp_path: Path) -> None:
    bg, car, sh = full(GREY), rect(RED, 4, 8, 4, 8), rect((0, 0, 0), 8, 10, 4, 8, alpha=100)
    layers = [("background", "background", bg), ("obj0", "object", car), ("obj0_shadow", "shadow", sh)]
    store = ShardStore(tmp_path / "out")
    store.prepare(overwrite=False)
    store.commit([shard_row("a", [(n, k, a, "obj0" if k == "shadow" else None) for n, k, a in layers])], [], [])
    store.commit([shard_row("b", [(n, k, a, None) for n, k, a in layers[:2]])], [], [])
    (tmp_path / "out" / "_commits" / "part-00001.json").unlink()  # part 1 is no longer committed
    stacks = read_shard_stacks(tmp_path / "out")
    assert list(stacks) == ["a"]
    got = stacks["a"]
    assert [(x.name, x.kind, x.parent) for x in got] == [
        ("background", "background", None), ("obj0", "object", None), ("obj0_shadow", "shadow", "obj0")]
    assert all(np.array_equal(x.rgba, a) for x, (_, _, a) in zip(got, layers, strict=True))
    assert read_stacks(tmp_path / "out").origin.startswith("shards:")

    write_folder(tmp_path / "gt", {"a": {"0_background": bg, "1_obj0": car, "2_obj0_shadow": sh}})
    report = evaluate(tmp_path / "out", tmp_path / "gt")
    assert report["count"] == 1 and report["levels"][0]["alpha_iou"] == 1.0
    assert report["kinds"]["matched_shadows"] == 1


def test_evaluate_stacks_aggregates_resizes_and_reports_failures() -> None:
    pred_split, gt_split = split_object_case()
    same = [full(GREY), rect(RED, 2, 6, 2, 6)]
    double = [np.repeat(np.repeat(x, 2, axis=0), 2, axis=1) for x in same]  # 32x32 prediction, 16x16 truth
    pred = {"split": pred_split, "same": [x.copy() for x in same], "big": double, "empty": []}
    gt = {"split": gt_split, "same": same, "big": same, "empty": same}
    report = evaluate_stacks(pred, gt, max_merges=5)
    assert report["count"] == 3 and [f["sample_id"] for f in report["failed"]] == ["empty"]
    lv = report["levels"]
    assert lv[0]["reached"] == 3 and lv[1]["reached"] == 1 and lv[2]["reached"] == 0
    assert lv[0]["mean_merges"] == 0.0 and lv[5]["mean_merges"] == pytest.approx(1 / 3)
    assert report["mean_merges"] == pytest.approx(1 / 3)
    assert lv[1]["cost"] < lv[0]["cost"] and lv[5]["cost"] == lv[1]["cost"]
    assert report["samples"]["big"]["alpha_iou"][0] == 1.0  # area-resized exactly onto the 16x16 grid
    assert report["samples"]["big"]["rgb_l1"][0] == 0.0

    strict = evaluate_stacks({"big": double}, {"big": same}, resize_pred=False)
    assert strict["count"] == 0 and "resize_pred is off" in strict["failed"][0]["error"]
    assert strict["levels"][0]["cost"] is None

    md = to_markdown({"ours": report, "strict": strict})
    assert "| method | n | RGB L1 @0 |" in md and "Alpha IoU @5 | mean merges |" in md
    assert md.count("| ours |") == 2 and "strict: 0 gt samples without prediction" in md
    single = to_markdown(report)  # a single report is accepted too, named "method"
    assert single.count("| method | 3 |") == 1 and single.count("| method | bg L1 |") == 1
