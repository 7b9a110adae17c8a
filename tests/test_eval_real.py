"""The real cut-and-paste score (libcom layout) on a hand-made case with known answers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from add_pipeline.eval.real import score_composites_with


def _case(root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A 40x60 composite: a flat background with a red 10x20 block pasted at rows 10..20, cols 20..40."""
    case = root / "composites" / name
    case.mkdir(parents=True)
    bg = np.full((40, 60, 3), (30, 90, 150), np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 20:40] = 255
    comp = bg.copy()
    comp[mask > 0] = (200, 20, 20)
    cv2.imwrite(str(case / "background.png"), cv2.cvtColor(bg, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(case / "composite.png"), cv2.cvtColor(comp, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(case / "composite_mask.png"), mask)
    return bg, mask


def test_scores_against_the_paste(tmp_path: Path) -> None:
    bg, mask = _case(tmp_path, "a")
    _case(tmp_path, "b")
    half = mask.copy()
    half[:, 30:] = 0  # half the pasted block

    def decompose(name: str, path: Path) -> tuple[list[np.ndarray], list[str]] | str:
        if name == "b":
            return "no object found"
        opaque_bg = np.dstack([bg, np.full(bg.shape[:2], 255, np.uint8)])
        obj = np.zeros((40, 60, 4), np.uint8)
        obj[..., 3] = half
        wrong = np.zeros((40, 60, 4), np.uint8)
        wrong[30:35, 0:10, 3] = 255
        return [opaque_bg, wrong, obj], ["background", "object", "object"]

    r = score_composites_with(tmp_path, decompose)
    assert r["count"] == 2 and r["decomposed"] == 1 and r["cases"]["b"] == {"rejected": "no object found"}
    a = r["cases"]["a"]
    # The best object layer covers half the paste and nothing else: IoU 0.5; the background is exact.
    assert a["object_iou"] == pytest.approx(0.5) and a["bg_l1_in_mask"] == 0.0
    # The composite as background is off by the red block's colour inside the paste.
    assert a["composite_as_bg_l1_in_mask"] == pytest.approx((170 + 70 + 130) / 3 / 255)
    assert r["mean"]["object_iou"] == pytest.approx(0.5)
