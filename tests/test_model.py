"""The layer-decomposition model: shapes, losses, degradations, training, exact resume, inference.

Everything runs on a tiny network at 64 px so the file takes seconds; fixtures are synthetic
scenes whose layers are known exactly (make_scene), written as shards like the pipeline's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from add_pipeline.core.composite import recomposition_error
from add_pipeline.model.config import ModelConfig, TrainConfig, load_config, save_config
from add_pipeline.model.data import ColorJitter, LayeredShardDataset, write_synthetic_shards
from add_pipeline.model.degrade import apply, blur, boundary_band, degrade, dilate, erode, sample_params, spill
from add_pipeline.model.infer import BUNDLED, decompose_image, load_model
from add_pipeline.model.losses import composite, decomposition_losses, restoration_loss, soft_jaccard
from add_pipeline.model.model import LayerDecomposer, LayerPrediction
from add_pipeline.model.train import train

TINY = ModelConfig(size=64, widths=(8, 8, 12, 16, 16), head_width=8, slots=2, refine_width=4)


def tiny_config(**kw) -> TrainConfig:
    # threads=1: on a shared 2-core machine OpenMP's spinning makes 2 threads far slower for tiny convs
    base = dict(model=TINY, steps=6, batch=2, lr=3e-3, warmup=1, eval_every=3, ckpt_every=2, log_every=1, threads=1,
                eval_fraction=0.25, eval_max=2, degrade_radius=2, degrade_blur=1.5, band_px=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    write_synthetic_shards(out, 6, seed=3, size=64, max_objects=3, shard_size=4)  # 2 parts, 1-3 objects
    return out


def disc(size: int = 96, radius: float = 12.0, soft: float = 3.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    d = torch.hypot(yy - size / 2, xx - size / 2)
    return ((radius - d) / soft + 0.5).clamp(0, 1)[None, None]


# ---------------------------------------------------------------- model


def test_forward_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    m = LayerDecomposer(TINY)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        p = m(x)
    assert p.background.shape == (2, 3, 64, 96)
    assert p.color.shape == (2, 2, 3, 64, 96)
    assert p.alpha.shape == p.alpha_coarse.shape == p.shadow.shape == (2, 2, 1, 64, 96)
    assert p.presence.shape == (2, 2)
    for t in (p.background, p.color, p.alpha, p.shadow):
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert LayerDecomposer(ModelConfig(**{**TINY.__dict__, "shadow_branch": False}))(x).shadow is None
    with pytest.raises(ValueError, match="multiples of 32"):
        m(torch.rand(1, 3, 50, 64))


def test_object_shadow_head_sees_its_own_slot() -> None:
    """The per-slot shadow head: same shapes and ranges, starts at "no shadow", and a slot's shadow
    depends on that slot's alpha, not on the other slot's."""
    torch.manual_seed(0)
    cfg = ModelConfig(**{**TINY.__dict__, "shadow_head": "object"})
    m = LayerDecomposer(cfg).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        p = m(x)
    assert p.shadow.shape == (2, 2, 1, 64, 96)
    assert float(p.shadow.max()) < 0.02  # an untrained head predicts (almost) no shadow
    for prm in m.shadow_head.parameters():  # a random head, so the output varies with its inputs
        torch.nn.init.normal_(prm, std=0.3)
    feats, img = torch.rand(1, cfg.head_width, 64, 96), torch.rand(1, 3, 64, 96)
    a = torch.zeros(1, 2, 1, 64, 96)
    b = a.clone()
    b[0, 1, :, 20:40, 30:60] = 1.0  # only slot 1's alpha changes
    with torch.no_grad():
        sa, sb = m.shadow_head(feats, img, a), m.shadow_head(feats, img, b)
    assert torch.equal(sa[:, 0], sb[:, 0]) and not torch.allclose(sa[:, 1], sb[:, 1])
    with pytest.raises(ValueError, match="shadow_head"):
        ModelConfig(shadow_head="separate")


def test_config_round_trip(tmp_path: Path) -> None:
    cfg = tiny_config(restoration_loss=False)
    for name in ("c.yaml", "c.json"):
        save_config(cfg, tmp_path / name)
        assert load_config(tmp_path / name) == cfg
    (tmp_path / "bad.yaml").write_text("stepz: 3\n")
    with pytest.raises(ValueError, match="unknown train config keys"):
        load_config(tmp_path / "bad.yaml")
    # Inference settings: replaced only through with_inference, and checked like the rest.
    assert cfg.with_inference(shadow_seed=0.4).shadow_seed == 0.4
    with pytest.raises(ValueError, match="shadow_seed=1.0"):
        cfg.with_inference(shadow_seed=1.0)
    with pytest.raises(ValueError, match="not inference settings"):
        cfg.with_inference(steps=3)


# ---------------------------------------------------------------- losses


def test_perfect_prediction_has_zero_loss() -> None:
    g = torch.Generator().manual_seed(0)
    b, k, h, w = 2, 2, 32, 32
    bg = torch.rand(b, 3, h, w, generator=g)
    color = torch.rand(b, k, 3, h, w, generator=g)
    alpha = torch.zeros(b, k, 1, h, w)
    alpha[:, 0, :, 4:20, 4:20] = 1.0
    alpha[:, 0, :, 3, 4:20] = 0.5
    alpha[0, 1, :, 10:28, 12:30] = 0.7
    shadow = torch.zeros(b, k, 1, h, w)
    shadow[:, 0, :, 20:26, 2:22] = 0.4
    present = (alpha.flatten(2).amax(-1) > 0).float()
    image = composite(bg, color, alpha, shadow)
    t = {"image": image, "background": bg, "color": color, "alpha": alpha, "shadow": shadow,
         "present": present, "valid": torch.ones(b, 1, h, w)}
    pred = LayerPrediction(bg, color, alpha, alpha, shadow, (present * 2 - 1) * 40.0)
    for shadow_branch in (True, False):
        cfg = TrainConfig(model=ModelConfig(size=64, slots=k, shadow_branch=shadow_branch))
        p = pred if shadow_branch else LayerPrediction(bg * torch.prod(1 - shadow, 1), color, alpha, alpha, None,
                                                       pred.presence)
        parts = decomposition_losses(p, t, cfg)
        assert set(parts) >= {"recompose", "background", "color", "alpha", "boundary", "presence", "jaccard"}
        assert ("shadow" in parts) == ("shadow_jaccard" in parts) == shadow_branch
        for name, v in parts.items():
            assert float(v) < 1e-6, (shadow_branch, name, float(v))
    a, c = alpha[:, 0], color[:, 0]
    assert float(restoration_loss(a, c, a, c, torch.ones_like(a, dtype=torch.bool), torch.ones_like(a))) == 0.0
    # ...and a wrong shadow is penalised by both the shadow and the recomposition loss
    bad = LayerPrediction(bg, color, alpha, alpha, torch.zeros_like(shadow), pred.presence)
    parts = decomposition_losses(bad, t, TrainConfig(model=ModelConfig(size=64, slots=k)))
    assert float(parts["shadow"]) > 0.01 and float(parts["recompose"]) > 1e-3


def test_jaccard_counts_a_small_missed_object_fully() -> None:
    # A 4x4 object on a 32x32 canvas: missing it costs the image-mean L1 ~1.6%, the Jaccard distance all of it.
    alpha = torch.zeros(1, 2, 1, 32, 32)
    alpha[0, 1, :, 10:14, 10:14] = 1.0
    missed = torch.zeros_like(alpha)
    valid = torch.ones(1, 1, 1, 32, 32)
    present = torch.tensor([[False, True]])
    assert float((missed - alpha).abs().mean()) < 0.01
    assert float(soft_jaccard(missed, alpha, valid, present)) == pytest.approx(1.0)
    half = alpha * 0.5  # half the matte everywhere: IoU 1/2
    assert float(soft_jaccard(half, alpha, valid, present)) == pytest.approx(0.5)
    assert float(soft_jaccard(alpha, alpha, valid, present)) == 0.0
    # padding does not count, and slots without an object are not scored
    assert float(soft_jaccard(missed, alpha, torch.zeros_like(valid), present)) == 0.0
    assert float(soft_jaccard(missed, alpha, valid, torch.zeros_like(present))) == 0.0


# ---------------------------------------------------------------- degradations


@pytest.mark.parametrize("op", ["erode", "dilate", "blur", "spill", "random"])
def test_degradations_change_only_the_boundary_band(op: str) -> None:
    a = disc()
    fg = torch.rand(1, 3, *a.shape[-2:], generator=torch.Generator().manual_seed(1)) * (a > 0)
    bg = torch.rand_like(fg)
    if op == "erode":
        a2, f2, reach = erode(a, 3), fg, 3
    elif op == "dilate":
        a2, f2, reach = dilate(a, 3), fg, 3
    elif op == "blur":
        a2, f2, reach = blur(a, 1.5), fg, 5
    elif op == "spill":
        a2, f2, reach = a, spill(fg, a, bg, 0.8), 0
    else:
        p = sample_params(torch.Generator().manual_seed(7), 3, 2.0, 0.6)
        a2, f2 = apply(p, a, fg, bg)
        reach = p.reach
    band = boundary_band(a, reach)
    changed = ((a2 - a).abs() > 1e-6) | ((f2 - fg).abs().amax(1, keepdim=True) > 1e-6)
    assert changed.any(), "the operator did nothing"
    assert not (changed & ~band).any(), "changed pixels outside the boundary band"
    assert band.float().mean() < 0.35  # the band is a band, not the whole image
    assert float(a2.min()) >= 0 and float(a2.max()) <= 1 and float(f2.min()) >= 0 and float(f2.max()) <= 1


def test_degrade_batch_is_deterministic() -> None:
    a = disc().repeat(3, 1, 1, 1)
    fg, bg = torch.rand(3, 3, 96, 96), torch.rand(3, 3, 96, 96)
    r1 = degrade(a, fg, bg, torch.Generator().manual_seed(5), 3, 2.0, 0.6)
    r2 = degrade(a, fg, bg, torch.Generator().manual_seed(5), 3, 2.0, 0.6)
    assert torch.equal(r1[0], r2[0]) and torch.equal(r1[1], r2[1]) and r1[3] == r2[3]
    assert not (((r1[0] - a).abs() > 1e-6) & ~r1[2]).any()


# ---------------------------------------------------------------- data, training, resume


def test_dataset_targets_recompose_the_photo(shards: Path) -> None:
    ds = LayeredShardDataset([shards], 64, 2)
    assert len(ds) == 6
    for i in range(len(ds)):
        s = ds.load(i, flip=bool(i % 2))
        assert s["image"].shape == (3, 64, 64) and s["alpha"].shape == (2, 1, 64, 64)
        # 3-object scenes fold their backmost object into the background: still exact
        rec = composite(s["background"][None], s["color"][None], s["alpha"][None], s["shadow"][None])[0]
        assert float((rec - s["image"]).abs().max()) < 1.5 / 255
    assert [int(ds.load(i, False)["present"].sum()) for i in range(3)] == [1, 2, 2]
    # A colour jitter is linear: the jittered targets still recompose the jittered photo.
    jitter = ColorJitter((2, 0, 1), 0.4, 0.7)
    s, j = ds.load(2, False), ds.load(2, False, jitter)
    assert not torch.allclose(s["image"], j["image"]) and torch.equal(s["alpha"], j["alpha"])
    rec = composite(j["background"][None], j["color"][None], j["alpha"][None], j["shadow"][None])[0]
    assert float((rec - j["image"]).abs().max()) < 1.5 / 255 and float(j["image"].max()) <= 1.0
    train_idx, eval_idx = ds.split(0.25)
    assert sorted(train_idx + eval_idx) == list(range(6)) and train_idx


def test_training_reduces_the_loss(tmp_path: Path) -> None:
    # Two scenes, batch 2: every step sees the same batch, so the loss curve is not batch noise.
    write_synthetic_shards(tmp_path / "two", 2, seed=5, size=64, max_objects=2)
    cfg = tiny_config(steps=30, eval_every=0, ckpt_every=0, lr=5e-3, hflip=False, eval_fraction=0.0)
    res = train([tmp_path / "two"], tmp_path / "run", cfg, log=lambda s: None)
    losses = [h["loss"] for h in res["history"]]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert {"restore", "shadow", "boundary"} <= set(res["history"][-1])
    no_abl = train([tmp_path / "two"], tmp_path / "abl", tiny_config(steps=2, restoration_loss=False,
                                                           model=ModelConfig(**{**TINY.__dict__,
                                                                                "shadow_branch": False})),
                   log=lambda s: None)
    assert not {"restore", "shadow"} & set(no_abl["history"][-1])


def test_resume_continues_exactly(shards: Path, tmp_path: Path) -> None:
    cfg = tiny_config(color_jitter=True)  # jitters, like flips and degradations, come from (seed, step)
    full = train([shards], tmp_path / "full", cfg, log=lambda s: None)["history"]
    part = train([shards], tmp_path / "cut", cfg, until=3, log=lambda s: None)
    assert part["step"] == 3 and not part["done"]
    with pytest.raises(FileExistsError):
        train([shards], tmp_path / "cut", cfg, log=lambda s: None)
    with pytest.raises(ValueError, match="different config"):
        train([shards], tmp_path / "cut", tiny_config(lr=1e-3), resume=True, log=lambda s: None)
    rest = train([shards], tmp_path / "cut", cfg, resume=True, log=lambda s: None)["history"]
    assert [h["step"] for h in rest] == list(range(1, 7))
    for a, b in zip(full, rest):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), (a["step"], k)
    log_steps = [json.loads(ln)["step"] for ln in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert log_steps == [json.loads(ln)["step"] for ln in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    ckpt = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)
    assert set(ckpt) >= {"model", "optimizer", "config", "step", "rng"} and ckpt["step"] == 6


def test_init_fine_tunes_from_a_run(shards: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from add_pipeline.model.cli import train_cmd

    base = tiny_config(steps=3, eval_every=0, lr=1e-2)
    train([shards], tmp_path / "base", base, log=lambda s: None)
    trained = torch.load(tmp_path / "base" / "ckpt.pt", weights_only=False)["model"]
    # until=0: the step-0 checkpoint holds exactly the weights it started from
    ft = base.with_overrides(init=str(tmp_path / "base"), lr=1e-3)
    train([shards], tmp_path / "ft", ft, until=0, log=lambda s: None)
    start = torch.load(tmp_path / "ft" / "ckpt.pt", weights_only=False)
    assert start["step"] == 0 and start["config"]["init"] == str(tmp_path / "base")
    assert all(torch.equal(start["model"][k], v) for k, v in trained.items())
    assert not start["optimizer"]["state"]  # a fresh optimiser, not the source's
    # the run then trains on (and resumes) like any other
    assert train([shards], tmp_path / "ft", ft, resume=True, log=lambda s: None)["step"] == 3
    wider = base.with_overrides(init=str(tmp_path / "base"), model={"head_width": 6})
    with pytest.raises(ValueError, match="head_width"):
        train([shards], tmp_path / "bad", wider, log=lambda s: None)
    # CLI: without --config the run takes the source's recipe
    res = CliRunner().invoke(train_cmd, ["--data", str(shards), "--out", str(tmp_path / "cli"),
                                         "--init", str(tmp_path / "base")])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert saved == {**base.to_dict(), "init": str(tmp_path / "base")}
    # with --config, the fields the file sets replace the source's; a typo is an error naming the file
    (tmp_path / "ft.yaml").write_text("steps: 2\nlr: 0.0005\n")
    res = CliRunner().invoke(train_cmd, ["--data", str(shards), "--out", str(tmp_path / "cli2"),
                                         "--init", str(tmp_path / "base"), "--config", str(tmp_path / "ft.yaml")])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "cli2" / "config.json").read_text())
    assert saved == {**base.to_dict(), "init": str(tmp_path / "base"), "steps": 2, "lr": 0.0005}
    (tmp_path / "typo.yaml").write_text("stesp: 2\n")
    res = CliRunner().invoke(train_cmd, ["--data", str(shards), "--out", str(tmp_path / "cli3"),
                                         "--init", str(tmp_path / "base"), "--config", str(tmp_path / "typo.yaml")])
    assert res.exit_code != 0 and "stesp" in res.output and "typo.yaml" in res.output
    res = CliRunner().invoke(train_cmd, ["--data", str(shards), "--out", str(tmp_path / "none"),
                                         "--init", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "--init" in res.output and "missing" in res.output


# ---------------------------------------------------------------- inference


def _photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::4, ::3])  # 128x171: not square, not a multiple of 32


def test_decompose_image_recomposes_the_photo(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = LayerDecomposer(TINY)
    with torch.no_grad():  # a random head, so alphas, shadows and colours vary over the image
        torch.nn.init.normal_(m.out.weight, std=0.6)
        m.out.bias.zero_()  # alphas and shadows straddle 0.5, so slots split into several objects
    m.eval()
    rgb = _photo()
    layers = decompose_image(m, rgb, presence_threshold=1e-6, min_area=0.0)
    kinds = [lay.kind for lay in layers]
    assert kinds[0] == "background" and "object" in kinds and "shadow" in kinds
    for lay in layers:
        assert lay.rgba.shape == (*rgb.shape[:2], 4) and lay.rgba.dtype == np.uint8
        if lay.kind == "shadow":
            assert lay.parent in {x.name for x in layers if x.kind == "object"}
    mean, worst = recomposition_error(rgb, [lay.rgba for lay in layers])
    assert mean <= 1.0 and worst <= 8.0, (mean, worst)
    # With the empty test on (default threshold), the stack is still exact.
    mean, worst = recomposition_error(rgb, [lay.rgba for lay in decompose_image(m, rgb)])
    assert mean <= 1.0 and worst <= 8.0


def test_flip_tta_averages_the_mirrored_estimate() -> None:
    from add_pipeline.model.infer import predict

    torch.manual_seed(1)
    m = LayerDecomposer(TINY)
    with torch.no_grad():
        torch.nn.init.normal_(m.out.weight, std=0.6)
        torch.nn.init.normal_(m.presence.weight, std=0.5)
    m.eval()
    rgb = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)  # no resize, no padding
    plain, mirror, both = predict(m, rgb, 96), predict(m, np.ascontiguousarray(rgb[:, ::-1]), 96), \
        predict(m, rgb, 96, flip=True)
    assert not np.allclose(plain["alpha"], mirror["alpha"][..., ::-1], atol=1e-3)  # the net is not symmetric
    for key in ("background", "color", "alpha", "shadow"):
        axis = 1 if key == "background" else 2  # the width axis
        expect = (plain[key] + np.flip(mirror[key], axis=axis)) / 2
        assert both[key].shape == plain[key].shape and np.allclose(both[key], expect, atol=1e-5), key
    assert np.allclose(both["presence"], (plain["presence"] + mirror["presence"]) / 2, atol=1e-6)
    # Any photo size: padded, resized back, and the solved stack still recomposes the photo.
    odd = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    est = predict(m, odd, 64, flip=True)
    assert est["alpha"].shape == (2, 50, 70) and est["color"].shape == (2, 50, 70, 3)
    mean, worst = recomposition_error(odd, [lay.rgba for lay in decompose_image(m, odd, 64, 1e-6, 0.0, flip=True)])
    assert mean <= 1.0 and worst <= 8.0


def test_split_objects_by_components() -> None:
    from add_pipeline.model.infer import split_objects

    h, w = 60, 100
    yy, xx = np.mgrid[0:h, 0:w]
    left = np.hypot(yy - 20, xx - 20) < 10  # two disjoint objects in one slot, and a 2-px speck
    right = np.hypot(yy - 40, xx - 70) < 12
    alpha = np.where(left | right, 0.9, 0.01)  # 0.01: haze under the floor
    alpha[2:4, 50:52] = 0.9
    shadow = np.zeros((h, w))
    shadow[28:32, 10:35] = 0.5  # under the left object
    shadow[52:56, 60:90] = 0.4  # under the right one
    parts = split_objects(alpha, shadow, min_area=0.001, floor=0.02)
    assert len(parts) == 2  # the speck (4 px < 6 px) is dropped
    (a0, s0), (a1, s1) = parts  # ordered by lowest row: left object first
    assert np.array_equal(a0 > 0, left) and np.array_equal(a1 > 0, right)
    assert s0[28:32, 10:35].min() == 0.5 and not s0[52:].any()
    assert s1[52:56, 60:90].min() == 0.4 and not s1[:40].any()
    assert split_objects(np.full((h, w), 0.3), shadow, 0.0, 0.02) == []
    # Shadows have their own floor: the 0.4 shadow goes, the 0.5 one stays, the objects are untouched.
    (b0, t0), (b1, t1) = split_objects(alpha, shadow, min_area=0.001, floor=0.02, shadow_floor=0.45)
    assert np.array_equal(b0, a0) and np.array_equal(b1, a1)
    assert t0[28:32, 10:35].min() == 0.5 and not t1.any()
    # Hysteresis: a faint rim joined to a confident core stays, a faint patch with no core goes.
    soft = shadow.copy()
    soft[32:34, 10:35] = 0.15  # penumbra under the left object's 0.5 shadow
    soft[52:56, 60:90] = 0.15  # the right object's shadow is faint all over
    (c0, u0), (c1, u1) = split_objects(alpha, soft, 0.001, 0.02, shadow_floor=0.1, shadow_seed=0.3)
    assert np.array_equal(c0, a0) and np.array_equal(c1, a1)
    assert u0[28:32, 10:35].min() == 0.5 and u0[32:34, 10:35].min() == 0.15 and not u1.any()
    # At or below the floor the seed changes nothing.
    (_, v0), (_, v1) = split_objects(alpha, soft, 0.001, 0.02, shadow_floor=0.1, shadow_seed=0.1)
    assert u0.tolist() == v0.tolist() and v1[52:56, 60:90].min() == 0.15


def test_load_model_round_trip_and_bundled_error(shards: Path, tmp_path: Path) -> None:
    train([shards], tmp_path / "run", tiny_config(steps=1, eval_every=0), log=lambda s: None)
    m = load_model(tmp_path / "run")
    assert not m.training and m.config == TINY
    layers = decompose_image(m, _photo())
    assert recomposition_error(_photo(), [lay.rgba for lay in layers])[1] <= 8.0
    if not BUNDLED.exists():
        with pytest.raises(FileNotFoundError, match="no bundled model"):
            load_model("bundled")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing")


def test_cli_functions(shards: Path, tmp_path: Path) -> None:
    from add_pipeline.io.images import encode_png
    from add_pipeline.io.shards import ShardStore
    from add_pipeline.model.cli import decompose_files, eval_model

    train([shards], tmp_path / "run", tiny_config(steps=1, eval_every=0), log=lambda s: None)
    report = eval_model(tmp_path / "run", shards, source_kind="composed", limit=3)
    assert report["count"] == 3 and not report["failed"]
    assert report["protocol"]["recompose_max"] <= 8.0
    # calibrated inference settings: overridable for evaluation, baked into an export
    assert eval_model(tmp_path / "run", shards, limit=1, inference={"alpha_floor": 0.3})["count"] == 1
    with pytest.raises(ValueError, match="not inference settings"):
        eval_model(tmp_path / "run", shards, limit=1, inference={"lr": 0.1})
    from add_pipeline.model.infer import export_slim

    export_slim(tmp_path / "run", tmp_path / "slim.pt", inference={"alpha_floor": 0.3, "min_area": 0.01})
    slim = load_model(tmp_path / "slim.pt")
    assert slim.train_config.alpha_floor == 0.3 and slim.train_config.min_area == 0.01
    with pytest.raises(ValueError):
        export_slim(tmp_path / "run", tmp_path / "bad.pt", inference={"alpha_floor": 0.9})
    photo = tmp_path / "astro.png"
    photo.write_bytes(encode_png(_photo()))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "dec"
    res = decompose_files([photo, tmp_path / "broken.png"], out, tmp_path / "run", working_size=128)
    assert res == {"accepted": 1, "rejected": 1, "skipped": 0}
    assert (out / "layers" / "astro" / "00_background.png").is_file()
    assert ShardStore(out).done_ids() == {"astro", "broken"}
    assert decompose_files([photo], out, tmp_path / "run", working_size=128)["skipped"] == 1
