"""Known-answer tests of the classical tools on synthetic scenes (exact layers from ``make_scene``).

Bounds come from measurements over seeds 0-7 at 256x256 (bench/results/tool_tuning.md) with
margin, and are tight enough that a trivial output fails (noted at each bound).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from add_pipeline.core.composite import alpha_over, recomposition_error
from add_pipeline.core.synthetic import make_scene
from add_pipeline.tools.base import ToolError, available, build_tool

SEEDS = [0, 1, 2, 3]


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def coarse(mask: np.ndarray, cells: int = 16) -> np.ndarray:
    """A blocky version of ``mask``, as a proposal's coarse mask would be."""
    h, w = mask.shape
    small = cv2.resize(mask.astype(np.uint8), (cells, cells), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST) > 0


# ---------------------------------------------------------------- synthetic scenes


@pytest.mark.parametrize("n_objects", [0, 1, 3])
def test_scene_layers_recompose_exactly(n_objects: int) -> None:
    scene = make_scene(5, (96, 128), n_objects=n_objects)
    layers = scene.layers()
    assert len(layers) == 1 + 2 * n_objects
    assert scene.image.shape == (96, 128, 3) and scene.image.dtype == np.uint8
    assert np.array_equal(np.round(alpha_over(layers) * 255.0).astype(np.uint8), scene.image)
    assert recomposition_error(scene.image, layers)[1] <= 0.5


def test_scene_is_deterministic_and_well_formed() -> None:
    a, b = make_scene(11, n_objects=2), make_scene(11, n_objects=2)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.background, b.background)
    assert not np.array_equal(a.image, make_scene(12, n_objects=2).image)
    h, w = a.image.shape[:2]
    for obj in a.objects:
        assert obj.alpha.dtype == np.float32 and obj.shadow.dtype == np.float32
        x0, y0, x1, y1 = obj.bbox
        assert 0 < x0 < x1 < w and 0 < y0 < y1 < h  # inside the canvas, not touching it
        edge = (obj.alpha > 0) & (obj.alpha < 1)
        assert edge.sum() > 0.5 * np.sqrt((obj.alpha > 0.5).sum())  # a soft edge all around
        visible = (obj.shadow > 0.1) & (obj.alpha < 0.5)
        assert visible.sum() > 100  # the shadow is not hidden behind its object
        assert 0.25 <= obj.shadow.max() <= 0.75


def test_scene_without_shadows() -> None:
    scene = make_scene(3, shadows=False)
    assert all(float(o.shadow.max()) == 0.0 for o in scene.objects)
    assert np.array_equal(np.round(alpha_over(scene.layers()) * 255.0).astype(np.uint8), scene.image)


def test_scene_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        make_scene(0, (32, 32))


# ---------------------------------------------------------------- registry


def test_registry_lists_classical_tools() -> None:
    assert "saliency" in available("propose")
    assert "grabcut" in available("segment")
    assert "closed-form" in available("matte")
    assert "physics" in available("shadow")
    assert {"telea", "ns", "biharmonic"} <= set(available("inpaint"))
    assert "depth-cues" in available("order")
    with pytest.raises(ToolError):
        build_tool("segment", "grabcut", no_such_param=1)


# ---------------------------------------------------------------- tools


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_objects", [1, 2])
def test_proposals_find_every_object(seed: int, n_objects: int) -> None:
    # measured: min best IoU 0.84 (one object), 0.63 (two objects) over seeds 0-7
    scene = make_scene(seed, n_objects=n_objects)
    props = build_tool("propose", "saliency")(scene.image, 5)
    assert props and all(0.0 <= p.score <= 1.0 for p in props)
    assert [p.score for p in props] == sorted((p.score for p in props), reverse=True)
    for obj in scene.objects:
        assert max(box_iou(p.box, obj.bbox) for p in props) >= 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_grabcut_recovers_the_object_mask(seed: int) -> None:
    # measured: IoU >= 0.98 with a blocky prior, >= 0.94 from the box alone
    scene = make_scene(seed)
    obj = scene.objects[0]
    gt = obj.alpha > 0.5
    tool = build_tool("segment", "grabcut")
    with_prior = tool(scene.image, obj.bbox, coarse(gt))
    assert iou(with_prior.mask, gt) >= 0.85 and 0.0 <= with_prior.score <= 1.0
    assert iou(tool(scene.image, obj.bbox, None).mask, gt) >= 0.85


@pytest.mark.parametrize("seed", SEEDS)
def test_closed_form_matting_recovers_soft_alpha(seed: int) -> None:
    # measured: soft IoU >= 0.996, MAE on the soft edge <= 0.012. The hard mask itself scores
    # soft IoU ~0.95 but edge MAE >= 0.15, an all-zero alpha soft IoU 0: both fail.
    scene = make_scene(seed)
    gt = scene.objects[0].alpha
    matte = build_tool("matte", "closed-form")(scene.image, gt > 0.5)
    a = matte.alpha
    assert np.minimum(a, gt).sum() / np.maximum(a, gt).sum() >= 0.85
    edge = (gt > 0) & (gt < 1)
    assert np.abs(a - gt)[edge].mean() <= 0.04
    inner = gt == 1.0
    colour = scene.objects[0].color
    assert np.abs(matte.foreground[inner] - colour[inner]).mean() <= 0.02


@pytest.mark.parametrize("seed", range(8))
def test_physics_shadow_matches_ground_truth(seed: int) -> None:
    # measured: IoU >= 0.77, MAE on the shadow <= 0.092 where the shadow is an umbra (seeds 0-2, 4-7,
    # mean strength 0.33-0.44); all-zero gives IoU 0, MAE >= 0.25. Seed 3's shadow is faint (mean
    # 0.23, under the umbra limit 0.25): left in the background by design, as texture would be.
    scene = make_scene(seed)
    obj = scene.objects[0]
    mask = obj.alpha > 0.5
    tool = build_tool("shadow", "physics")
    out = tool(scene.image, mask, np.zeros_like(mask))
    gt = (obj.shadow > 0.1) & ~mask
    if obj.shadow[gt].mean() < tool.umbra:
        assert not (out.matte > 0.1).any() and out.stats["found"] == 0.0
        return
    assert iou(out.matte > 0.1, gt) >= 0.5
    assert np.abs(out.matte - obj.shadow)[gt].mean() <= 0.13
    assert out.stats["area"] > 0 and 0.0 <= out.score <= 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_physics_shadow_is_empty_without_shadow(seed: int) -> None:
    scene = make_scene(seed, shadows=False)
    mask = scene.objects[0].alpha > 0.5
    out = build_tool("shadow", "physics")(scene.image, mask, np.zeros_like(mask))
    assert (out.matte > 0.1).sum() <= 0.01 * mask.sum()


def test_physics_shadow_respects_other_objects() -> None:
    scene = make_scene(1, n_objects=2)
    masks = [scene.visible_alpha(i) > 0.5 for i in range(2)]
    out = build_tool("shadow", "physics")(scene.image, masks[1], masks[0])
    assert not (out.matte[masks[0] | masks[1]] > 0).any()


def _ground_scene(shadow_darkness: float, link_to: float | None = None,
                  y_obj: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured grey floor (256x256), a red box standing on it at row ``y_obj``, and a shadow
    ellipse of ``shadow_darkness`` to its right at its foot; with ``link_to``, a larger floor patch of
    that darkness touching the shadow from below. Returns ``(image, object mask, true shadow)``."""
    rng = np.random.default_rng(0)
    floor = np.clip(170 + rng.normal(0, 4, (256, 256)), 0, 255)[..., None].repeat(3, 2).astype(np.float32)
    obj = np.zeros((256, 256), bool)
    obj[y_obj - 70:y_obj, 100:140] = True
    shadow = np.zeros((256, 256), np.uint8)
    cv2.ellipse(shadow, (165, y_obj - 6), (32, 9), 0, 0, 360, 1, -1)
    shadow = shadow.astype(bool) & ~obj
    img = floor.copy()
    img[shadow] *= 1.0 - shadow_darkness
    if link_to is not None:
        patch = np.zeros((256, 256), bool)
        patch[y_obj + 2:y_obj + 60, 40:200] = True
        patch &= ~shadow & ~obj
        img[patch] *= 1.0 - link_to
    img[obj] = (200, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8), obj, shadow


def test_physics_shadow_finds_a_strong_shadow_and_not_a_faint_patch() -> None:
    # umbra: a cast shadow (direct light blocked) is far darker than a patch of texture
    tool = build_tool("shadow", "physics")
    img, obj, truth = _ground_scene(0.6)
    assert iou(tool(img, obj, np.zeros_like(obj)).matte > 0.1, truth) >= 0.6
    img, obj, _ = _ground_scene(0.18)
    assert not (tool(img, obj, np.zeros_like(obj)).matte > 0.1).any()


def test_physics_shadow_splits_off_a_darker_surface_it_joins() -> None:
    # the shadow (0.6) touches a larger, less dark patch (0.3): a higher threshold splits it off;
    # without tightening the joined region is too large and nothing is returned
    img, obj, truth = _ground_scene(0.6, link_to=0.3)
    got = build_tool("shadow", "physics")(img, obj, np.zeros_like(obj)).matte > 0.1
    assert iou(got, truth) >= 0.6
    fixed = build_tool("shadow", "physics", tighten=(1.0,))(img, obj, np.zeros_like(obj)).matte > 0.1
    assert not fixed.any()


def test_physics_shadow_none_for_an_object_cut_by_the_bottom_of_the_frame() -> None:
    # its ground contact is outside the photo: the dark region beside it is not its shadow
    img, obj, truth = _ground_scene(0.6, y_obj=256)
    assert not (build_tool("shadow", "physics")(img, obj, np.zeros_like(obj)).matte > 0.1).any()
    found = build_tool("shadow", "physics", frame_bottom=-1.0)(img, obj, np.zeros_like(obj)).matte > 0.1
    assert iou(found, truth) >= 0.5


@pytest.mark.parametrize("name", ["telea", "ns", "biharmonic"])
def test_inpainting_fills_an_object_hole(name: str) -> None:
    # measured (telea): MAE in the hole 3.8-12.3 grey levels; a zero fill gives >= 90
    errors = []
    for seed in SEEDS:
        scene = make_scene(seed)
        hole = cv2.dilate((scene.objects[0].alpha > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        out = build_tool("inpaint", name)(scene.background, hole)
        assert np.array_equal(out[~hole], scene.background[~hole])
        err = np.abs(out.astype(np.float64) - scene.background)[hole].mean()
        assert err <= 20.0
        errors.append(err)
    assert np.mean(errors) <= 10.0


def test_orderer_recovers_occlusion_order() -> None:
    # Scenes with two overlapping objects: the given order, and upside-down images where the
    # ground-contact cue points the wrong way and only the occlusion cue can be right.
    tool = build_tool("order", "depth-cues")
    checked = 0
    for seed in range(40):
        scene = make_scene(seed, n_objects=2)
        if not ((scene.objects[0].alpha > 0.5) & (scene.objects[1].alpha > 0.5)).sum() > 50:
            continue
        vis = [scene.visible_alpha(i) > 0.5 for i in range(2)]
        assert tool(scene.image, vis) == [0, 1]
        assert tool(scene.image, vis[::-1]) == [1, 0]
        flipped = [np.ascontiguousarray(np.flipud(v)) for v in vis]
        assert tool(np.ascontiguousarray(np.flipud(scene.image)), flipped) == [0, 1]
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_orderer_uses_ground_contact_for_separate_objects() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    far, near = np.zeros((100, 100), bool), np.zeros((100, 100), bool)
    far[20:50, 10:30] = True
    near[40:90, 60:90] = True
    assert build_tool("order", "depth-cues")(img, [near, far]) == [1, 0]
