"""Natural photos that ship inside installed packages, written out as demo inputs.

No network is needed: scikit-image bundles these four images in its wheel,
scikit-learn bundles its two sample JPEGs, and matplotlib bundles Grace Hopper.
JPEGs are copied byte for byte (no re-encoding loss); scikit-image arrays are
written as PNG.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image


def _skimage_png(name: str) -> Callable[[], bytes]:
    def load() -> bytes:
        import skimage.data

        rgb = np.asarray(getattr(skimage.data, name)())
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise RuntimeError(f"skimage.data.{name}: expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()

    return load


def _sklearn_jpeg(name: str) -> Callable[[], bytes]:
    def load() -> bytes:
        # the files behind sklearn.datasets.load_sample_image
        return (resources.files("sklearn.datasets") / "images" / name).read_bytes()

    return load


def _matplotlib_jpeg(name: str) -> Callable[[], bytes]:
    def load() -> bytes:
        from matplotlib import cbook

        return Path(cbook.get_sample_data(name, asfileobj=False)).read_bytes()

    return load


SAMPLE_PHOTOS: dict[str, Callable[[], bytes]] = {
    "astronaut.png": _skimage_png("astronaut"),
    "chelsea.png": _skimage_png("chelsea"),
    "coffee.png": _skimage_png("coffee"),
    "rocket.png": _skimage_png("rocket"),
    "china.jpg": _sklearn_jpeg("china.jpg"),
    "flower.jpg": _sklearn_jpeg("flower.jpg"),
    "grace_hopper.jpg": _matplotlib_jpeg("grace_hopper.jpg"),
}
"""Output file name -> loader returning the encoded file bytes."""


def write_samples(out_dir: str | Path) -> list[Path]:
    """Write every :data:`SAMPLE_PHOTOS` entry into ``out_dir``; return the paths, in table order.

    Idempotent: files that already exist are left as they are.  Each file is written
    to a temporary name and renamed, so an interrupted call never leaves a partial image.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname, load in SAMPLE_PHOTOS.items():
        path = out / fname
        if not path.is_file():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(load())
            os.replace(tmp, path)
        paths.append(path)
    return paths
