"""Failures a user meets get one line naming the file and what to do, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from add_pipeline.cli import main


def _layerd(root: Path, size: int) -> Path:
    """One LayerD-style sample: an opaque background and one square object, ``size`` px."""
    folder = root / "s1"
    folder.mkdir(parents=True)
    bg = np.zeros((size, size, 4), np.uint8)
    bg[..., :3], bg[..., 3] = 120, 255
    obj = np.zeros((size, size, 4), np.uint8)
    obj[size // 4 : size // 2, size // 4 : size // 2] = (200, 30, 30, 255)
    Image.fromarray(bg).save(folder / "00_background.png")
    Image.fromarray(obj).save(folder / "01_object.png")
    return root


def test_eval_resizes_only_when_asked(tmp_path: Path) -> None:
    gt, pred = _layerd(tmp_path / "gt", 64), _layerd(tmp_path / "pred", 32)
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "r1.md")])
    assert res.exit_code == 0 and "1 failed" in res.output and "differ from the ground truth" in res.output
    res = runner.invoke(main, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "r2.md"),
                               "--resize-pred"])
    assert res.exit_code == 0 and "failed" not in res.output
    assert '"resize_pred": true' in (tmp_path / "r2.json").read_text()


def test_eval_over_a_truncated_part_is_one_line(tmp_path: Path) -> None:
    photos = tmp_path / "in"
    photos.mkdir()
    img = np.full((64, 80, 3), 190, np.uint8)
    img[20:50, 25:55] = (30, 60, 120)
    Image.fromarray(img).save(photos / "a.png")
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(main, ["run", "--input", str(photos), "--out", str(out), "--workflow", "cpu-classical",
                                "--local", "--no-progress"]).exit_code == 0
    part = next((out / "shards").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    res = runner.invoke(main, ["eval", "--pred", str(out), "--gt", str(out), "--out", str(tmp_path / "r.md")])
    assert res.exit_code != 0 and "Traceback" not in res.output and res.output.startswith("Error: ")


def test_workflow_files_that_are_not_yaml_text(tmp_path: Path) -> None:
    runner = CliRunner()
    binary = tmp_path / "wf.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe\x00bad")
    res = runner.invoke(main, ["run", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--workflow",
                               str(binary), "--local"])
    assert res.exit_code != 0 and f"{binary}: not UTF-8 text" in res.output
    jpg = tmp_path / "x.jpg"
    jpg.write_bytes(b"\xff\xd8\xff")
    res = runner.invoke(main, ["run", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--workflow",
                               str(jpg), "--local"])
    assert res.exit_code != 0 and "must be YAML" in res.output and "not found" not in res.output
