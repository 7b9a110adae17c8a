"""write_samples: the bundled photos come out as readable images, idempotently."""

from __future__ import annotations

from pathlib import Path

from add_pipeline.io.images import load_image
from add_pipeline.samples import SAMPLE_PHOTOS, write_samples


def test_write_samples_writes_seven_readable_photos(tmp_path: Path) -> None:
    paths = write_samples(tmp_path / "photos")
    assert len(paths) == len(SAMPLE_PHOTOS) == 7
    assert {p.name for p in paths} == {
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.png",
        "china.jpg",
        "flower.jpg",
        "grace_hopper.jpg",
    }
    for p in paths:
        img = load_image(p, working_size=256)
        assert img.rgb.ndim == 3 and img.rgb.shape[2] == 3 and max(img.rgb.shape[:2]) == 256
        assert min(img.original_size) >= 300
        assert img.rgb.std() > 10  # a real photo, not a blank

    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert write_samples(tmp_path / "photos") == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == sorted(p.name for p in paths)
