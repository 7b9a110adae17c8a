"""The FSR inpainter (``fsr``) on images whose hidden pixels are known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from add_pipeline.core.config import load_card
from add_pipeline.tools.base import ToolError, available, build_tool
from add_pipeline.tools.classical.inpaint import FsrInpainter

OBJECT = (255, 0, 0)  # what the hole holds before filling: a red object that must not leak


def gradient(h: int, w: int) -> np.ndarray:
    """HxWx3 uint8: a smooth linear colour ramp."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([40 + 1.2 * xx, 30 + 1.5 * yy, 200 - 0.6 * xx - 0.4 * yy], axis=-1).round().astype(np.uint8)


def stripes(h: int, w: int, period: float = 12.0) -> np.ndarray:
    """HxWx3 uint8: vertical sinusoidal stripes (red and blue 48..208, green 100)."""
    xx = np.mgrid[0:h, 0:w][1].astype(np.float64)
    s = 128 + 80 * np.sin(2 * np.pi * xx / period)
    return np.stack([s, np.full_like(s, 100), s], axis=-1).round().astype(np.uint8)


def disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def fill_error(tool: object, truth: np.ndarray, hole: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(mean abs error of the fill in the hole, same for leaving the object there, output), 8-bit levels."""
    src = truth.copy()
    src[hole] = OBJECT
    out = tool(src, hole)  # type: ignore[operator]
    err = float(np.abs(out.astype(np.float64) - truth)[hole].mean())
    left = float(np.abs(src.astype(np.float64) - truth)[hole].mean())
    return err, left, out


def test_registered_and_card_builds() -> None:
    assert "fsr" in available("inpaint")
    card = load_card("fsr")
    tool = build_tool(card.family, card.backend, **card.params)
    assert isinstance(tool, FsrInpainter)
    assert tool.describe()["params"] == {"quality": "fast", "coarse_px": 1000, "margin": 32}


def test_continues_periodic_texture_where_diffusion_smears() -> None:
    truth = stripes(64, 96)
    hole = disc(64, 96, 32, 48, 14)
    err, left, _ = fill_error(build_tool("inpaint", "fsr"), truth, hole)
    telea, _, _ = fill_error(build_tool("inpaint", "telea"), truth, hole)
    assert err < 3.0, err  # the stripes go on through the hole
    assert err < 0.05 * left
    assert telea > 5 * err, (telea, err)  # diffusion fills it with a flat average


def test_fills_a_smooth_gradient() -> None:
    truth = gradient(64, 96)
    hole = disc(64, 96, 30, 50, 12)
    err, left, out = fill_error(build_tool("inpaint", "fsr"), truth, hole)
    assert err < 8.0, err
    assert err < 0.1 * left
    assert (out[..., 0][hole] < 250).all()  # no trace of the red object


def test_big_hole_goes_through_the_coarse_scale() -> None:
    truth = gradient(96, 128)
    hole = disc(96, 128, 48, 64, 36)  # ~4000 px, 16x coarse_px: filled at 1/4 scale
    err, left, out = fill_error(build_tool("inpaint", "fsr", coarse_px=250), truth, hole)
    assert err < 12.0, err
    assert err < 0.1 * left
    src = truth.copy()
    src[hole] = OBJECT
    np.testing.assert_array_equal(out[~hole], src[~hole])  # outside the hole, untouched


def test_best_quality_on_a_small_hole() -> None:
    truth = stripes(32, 48)
    hole = np.zeros((32, 48), bool)
    hole[12:20, 20:28] = True
    err, left, _ = fill_error(build_tool("inpaint", "fsr", quality="best"), truth, hole)
    assert err < 3.0, err
    assert err < 0.05 * left


@pytest.mark.parametrize("shape", [(28, 35), (33, 64), (17, 17), (64, 31)])
def test_sides_that_are_not_multiples_of_16(shape: tuple[int, int]) -> None:
    """cv2.xphoto FSR alone fills garbage into partial 16 px blocks; the tool pads them away."""
    h, w = shape
    truth = np.full((h, w, 3), (200, 100, 50), np.uint8)
    hole = np.zeros((h, w), bool)
    hole[:, w // 3 :] = True
    err, _, _ = fill_error(build_tool("inpaint", "fsr", coarse_px=0), truth, hole)
    assert err < 1.0, err


def test_hole_at_the_corner_and_a_single_known_pixel() -> None:
    truth = np.full((40, 50, 3), (20, 180, 90), np.uint8)
    corner = np.zeros((40, 50), bool)
    corner[:15, :20] = True
    assert fill_error(build_tool("inpaint", "fsr"), truth, corner)[0] < 1.0
    almost_all = np.ones((40, 50), bool)
    almost_all[30, 40] = False  # a coarse pass keeps the one known pixel's colour
    assert fill_error(build_tool("inpaint", "fsr", coarse_px=200), truth, almost_all)[0] < 1.0


def test_empty_mask_is_identity() -> None:
    img = stripes(20, 30)
    np.testing.assert_array_equal(build_tool("inpaint", "fsr")(img, np.zeros((20, 30), bool)), img)


def test_bad_inputs_raise() -> None:
    tool = build_tool("inpaint", "fsr")
    img = stripes(20, 30)
    ok = np.zeros((20, 30), bool)
    ok[5:10, 5:10] = True
    with pytest.raises(ToolError, match="uint8"):
        tool(img.astype(np.float32), ok)
    with pytest.raises(ToolError, match="bool mask"):
        tool(img, ok.astype(np.uint8))
    with pytest.raises(ToolError, match="bool mask"):
        tool(img, ok[:10])
    with pytest.raises(ToolError, match="whole image"):
        tool(img, np.ones((20, 30), bool))
    with pytest.raises(ToolError, match="quality"):
        build_tool("inpaint", "fsr", quality="medium")
    with pytest.raises(ToolError, match=">= 0"):
        build_tool("inpaint", "fsr", coarse_px=-1)
    with pytest.raises(ToolError, match="bad parameters"):
        build_tool("inpaint", "fsr", radius=3)


def test_missing_contrib_build_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(cv2, "xphoto")
    with pytest.raises(ToolError, match="opencv-contrib-python-headless"):
        build_tool("inpaint", "fsr")
