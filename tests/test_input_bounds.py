"""Reading is bounded: only regular files, at most max_bytes; scans count each real file once and never
loop; what cannot be read becomes a reject with its reason while the rest is decomposed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from add_pipeline.exec.run import RunOptions, run
from add_pipeline.io.images import InputError, load_image
from add_pipeline.io.inputs import enumerate_inputs
from add_pipeline.io.shards import ShardStore


def _png(path: Path, seed: int = 0) -> Path:
    img = np.full((64, 80, 3), 190, np.uint8)
    img[20:50, 25 + seed : 55 + seed] = (30, 60, 120)
    Image.fromarray(img).save(path)
    return path


def test_fifo_and_devices_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe.jpg: not a regular file \(a FIFO\)"):
        load_image(fifo)  # no writer: a blocking open would wait forever
    with pytest.raises(InputError, match=r"/dev/zero: not a regular file \(a device\)"):
        load_image("/dev/zero")
    with pytest.raises(InputError, match="not a regular file"):
        load_image(tmp_path)


def test_max_bytes(tmp_path: Path) -> None:
    path = _png(tmp_path / "a.png")
    size = path.stat().st_size
    assert load_image(path, max_bytes=size).rgb.shape == (64, 80, 3)
    with pytest.raises(InputError, match=f"too large: {size} bytes exceeds max_bytes={size - 1}"):
        load_image(path, max_bytes=size - 1)


def test_glob_through_a_symlink_loop_counts_each_file_once(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for k in range(3):
        _png(root / f"p{k}.jpg", k)
    for k in range(2):
        _png(root / "sub" / f"q{k}.jpg", k)
    (root / "sub" / "loop").symlink_to("..")
    items = enumerate_inputs(str(root / "**" / "*.jpg"))
    assert sorted(Path(it.source).name for it in items) == ["p0.jpg", "p1.jpg", "p2.jpg", "q0.jpg", "q1.jpg"]
    assert len(enumerate_inputs(str(root))) == 5  # folder scans do not follow linked folders


def test_a_fifo_and_a_device_become_rejects_and_the_rest_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    _png(root / "good.png")
    os.mkfifo(root / "stuck.png")
    manifest = tmp_path / "in.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in (
        {"source": str(root / "good.png")}, {"source": str(root / "stuck.png")}, {"source": "/dev/zero", "id": "z"})))
    assert len(enumerate_inputs(str(root))) == 2  # the FIFO is listed, not silently skipped
    out = tmp_path / "out"
    stats = run(RunOptions(input=str(manifest), out=out, workflow="cpu-classical", local=True, progress=False))
    assert stats["accepted"] == 1 and stats["rejected"] == 2
    reasons = {r["sample_id"]: r["reason"] for r in ShardStore(out).read_table("rejects").to_pylist()}
    assert reasons["z"] == "/dev/zero: not a regular file (a device)"
    assert reasons["in__stuck.png"].endswith("stuck.png: not a regular file (a FIFO)")
