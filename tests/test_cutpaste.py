"""Cut-and-paste training scenes: exact layers, real backgrounds kept as background, shards, pool loading."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from add_pipeline.core.composite import alpha_over
from add_pipeline.core.synthetic import make_scene
from add_pipeline.model.cutpaste import load_cutouts, load_pool, make_cutpaste_scene
from add_pipeline.model.data import LayeredShardDataset, write_cutpaste_shards
from add_pipeline.model.losses import composite


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    # Two "photos" with very different content, so a background view is recognisable.
    return [make_scene(11, (120, 160), 2).image, np.full((100, 140, 3), (20, 200, 60), np.uint8)]


def test_scene_is_exact_and_deterministic(photos: list[np.ndarray]) -> None:
    a = make_cutpaste_scene(7, photos[:1], photos[1:], size=(96, 128), n_objects=3)
    b = make_cutpaste_scene(7, photos[:1], photos[1:], size=(96, 128), n_objects=3)
    assert np.array_equal(a.image, b.image) and len(a.objects) == 3
    assert a.image.shape == (96, 128, 3) and a.image.dtype == np.uint8
    # The photo is the rounded composite of the quantised layers.
    assert np.array_equal(a.image, np.round(alpha_over(a.layers()) * 255).astype(np.uint8))
    for obj in a.objects:
        assert obj.alpha.dtype == np.float32 and 0.0 <= obj.alpha.min() and obj.alpha.max() <= 1.0
        assert obj.alpha.max() == 1.0 and not obj.color[obj.alpha == 0].any()
        x0, y0, x1, y1 = obj.bbox
        assert 0 < x0 < x1 < 128 and 0 < y0 < y1 < 96
    # Where no object and no shadow reaches, the photo is the background (a real photo's view).
    free = np.all([(o.alpha == 0) & (o.shadow == 0) for o in a.objects], axis=0)
    assert free.mean() > 0.3 and np.array_equal(a.image[free], a.background[free])
    c = make_cutpaste_scene(8, photos[:1], photos[1:], size=(96, 128), n_objects=3)
    assert not np.array_equal(a.image, c.image)


def test_background_is_a_view_of_a_background_photo(photos: list[np.ndarray]) -> None:
    green = photos[1]
    s = make_cutpaste_scene(3, [green], [photos[0]], size=(64, 64), n_objects=1)
    # The only background photo is flat green: the whole plate is that colour.
    assert np.array_equal(s.background, np.broadcast_to(green[0, 0], s.background.shape))
    # No objects: the photo is the background view itself.
    empty = make_cutpaste_scene(3, photos[:1], size=(64, 64), n_objects=0)
    assert not empty.objects and np.array_equal(empty.image, empty.background)
    with pytest.raises(ValueError, match="no background photos"):
        make_cutpaste_scene(0, [], photos)


def test_shards_recompose_and_resume(photos: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "cut"
    assert write_cutpaste_shards(out, 4, photos[:1], photos[1:], seed=2, size=64, shard_size=3) == 4
    ds = LayeredShardDataset([out], 64, 2)
    assert len(ds) == 4 and sorted(r["sample_id"] for r in ds.rows) == [f"cut-2-{i:06d}" for i in range(4)]
    for i in range(len(ds)):
        s = ds.load(i, flip=False)
        rec = composite(s["background"][None], s["color"][None], s["alpha"][None], s["shadow"][None])[0]
        assert float((rec - s["image"]).abs().max()) < 1.5 / 255
    assert [int(ds.load(i, False)["present"].sum()) >= 1 for i in range(4)] == [True] * 4
    # Resumable: a second call finds every row committed and writes nothing new.
    parts = sorted(p.name for p in out.rglob("*.parquet"))
    write_cutpaste_shards(out, 4, photos[:1], photos[1:], seed=2, size=64, shard_size=3)
    assert sorted(p.name for p in out.rglob("*.parquet")) == parts
    assert torch.equal(LayeredShardDataset([out], 64, 2).load(0, False)["image"], ds.load(0, False)["image"])


def test_load_pool(tmp_path: Path) -> None:
    grey = np.tile(np.arange(80, dtype=np.uint8)[None], (70, 1))
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGR order, half transparent -> pink over white
    rgba[..., 3] = 128
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    big = np.zeros((300, 900, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "big.jpg"), big)
    g, r, b = load_pool([tmp_path / "grey.png", tmp_path / "rgba.png", tmp_path / "big.jpg"], max_side=450)
    assert g.shape == (70, 80, 3) and np.array_equal(g[..., 0], grey) and np.array_equal(g[..., 1], grey)
    assert tuple(r[0, 0]) == (255, 127, 127)
    assert b.shape == (150, 450, 3)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        load_pool([tmp_path / "bad.png"])
    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="tiny.png: 20x20 is too small"):
        load_pool([tmp_path / "tiny.png"])


def _ell(h: int = 90, w: int = 60) -> np.ndarray:
    """An ``hxwx4 uint8`` RGBA cut-out: an opaque blue L (BGR order on disk is the caller's job)."""
    out = np.zeros((h, w, 4), np.uint8)
    out[..., 2] = 255
    out[:, : w // 3, 3] = 255
    out[-h // 4 :, :, 3] = 255
    return out


def test_load_cutouts_crops_and_records_bad_files(tmp_path: Path) -> None:
    ell = _ell()
    padded = np.zeros((130, 100, 4), np.uint8)
    padded[20:110, 15:75] = ell
    cv2.imwrite(str(tmp_path / "ell.png"), cv2.cvtColor(padded, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((80, 80, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "clear.png"), np.zeros((80, 80, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "tiny.png"), np.full((20, 30, 4), 255, np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    names = ["bad.png", "rgb.png", "ell.png", "clear.png", "tiny.png"]
    cutouts, rejects = load_cutouts([tmp_path / n for n in names], max_side=45)
    # The good file survives the bad ones around it: cropped to its alpha, shrunk to 45 px, RGBA order.
    assert len(cutouts) == 1 and cutouts[0].shape == (45, 30, 4) and cutouts[0].dtype == np.uint8
    assert tuple(cutouts[0][-1, -1]) == (0, 0, 255, 255) and cutouts[0][0, -1, 3] == 0
    reasons = dict(r.split(": ", 1) for r in (line.replace(str(tmp_path) + "/", "") for line in rejects))
    assert reasons == {"bad.png": "not a readable image", "rgb.png": "no alpha channel, so no object outline",
                       "clear.png": "nothing opaque (alpha < 0.5 everywhere)",
                       "tiny.png": "30x20 is smaller than 48 px on its long side"}


def test_scene_objects_take_the_cutouts_outline(photos: list[np.ndarray]) -> None:
    ell = _ell()
    for seed in range(4):
        s = make_cutpaste_scene(seed, photos[:1], size=(128, 128), n_objects=2, cutouts=[ell])
        assert len(s.objects) == 2
        assert np.array_equal(s.image, np.round(alpha_over(s.layers()) * 255).astype(np.uint8))
        for obj in s.objects:
            x0, y0, x1, y1 = obj.bbox
            # The object's matte is the L, scaled (aspect kept) and maybe mirrored; never a blob.
            assert abs((x1 - x0) / (y1 - y0) - 60 / 90) < 0.1
            solid = cv2.resize((obj.alpha[y0:y1, x0:x1] >= 0.5).astype(np.uint8), (60, 90),
                               interpolation=cv2.INTER_NEAREST).astype(bool)
            want = ell[..., 3] > 0
            iou = max((solid & m).sum() / (solid | m).sum() for m in (want, want[:, ::-1]))
            assert iou > 0.9
