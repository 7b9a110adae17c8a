"""OpenRaster files (GIMP, Krita, MyPaint, Pinta): ``DIR/<id>.ora``.

An OpenRaster file is a zip (https://www.openraster.org/baseline/file-layout-spec.html):

* ``mimetype`` first, stored uncompressed, holding ``image/openraster``;
* ``stack.xml``: ``<image version="0.0.3" w= h=>`` with one ``<stack>`` whose ``<layer>`` children
  are listed top first (the spec's order: the first child is drawn last), each with ``name``,
  ``src``, ``x``, ``y``, ``opacity="1.0"``, ``visibility="visible"`` and
  ``composite-op="svg:src-over"``;
* ``data/layer000.png``, ...: each layer (``layer000`` is the background) cut to the tight box of
  its alpha > 0 and placed at ``x``/``y``; straight-colour RGBA PNG (the background opaque, full
  canvas); the file names are fixed, only the ``name`` attribute carries our layer name;
* ``mergedimage.png``: the layers composited (the photo within one grey level), ``HxWx3``;
* ``Thumbnails/thumbnail.png``: the same, shrunk to fit 256x256.

Written with :mod:`zipfile` and :mod:`xml.etree.ElementTree` (which escapes names for XML).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np

from add_pipeline.export.base import FileExporter, placed_crop, write_file
from add_pipeline.io.images import encode_png
from add_pipeline.io.layered import LayeredSample

MIMETYPE = "image/openraster"
THUMBNAIL_SIDE = 256


def stack_xml(sample: LayeredSample, srcs: list[str], places: list[tuple[int, int]]) -> bytes:
    """``stack.xml`` for ``sample``: one ``<layer>`` per layer, top first; ``srcs`` and ``places``
    (``(x, y)``) are back to front like ``sample.layers``."""
    image = ET.Element("image", {"version": "0.0.3", "w": str(sample.width), "h": str(sample.height)})
    stack = ET.SubElement(image, "stack")
    for lay, src, (x, y) in reversed(list(zip(sample.layers, srcs, places, strict=True))):
        ET.SubElement(stack, "layer", {"name": lay.name, "src": src, "x": str(x), "y": str(y), "opacity": "1.0",
                                       "visibility": "visible", "composite-op": "svg:src-over"})
    return ET.tostring(image, encoding="utf-8", xml_declaration=True)


def thumbnail(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """``rgb`` (``HxWx3 uint8``) shrunk to fit ``side x side``, aspect kept (unchanged if it fits)."""
    from PIL import Image

    im = Image.fromarray(rgb, "RGB")
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(im)


class OraExporter(FileExporter):
    """One ``.ora`` per sample."""

    name = "ora"
    suffix = ".ora"

    def render(self, sample: LayeredSample, tmp: Path) -> None:
        srcs, places, pngs = [], [], []
        for i, lay in enumerate(sample.layers):
            x, y, crop = placed_crop(lay)
            srcs.append(f"data/layer{i:03d}.png")
            places.append((x, y))
            pngs.append(encode_png(np.ascontiguousarray(crop)))
        merged = sample.composite()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE.encode("ascii"), compress_type=zipfile.ZIP_STORED)
            zf.writestr("stack.xml", stack_xml(sample, srcs, places), compress_type=zipfile.ZIP_DEFLATED)
            for src, data in zip(srcs, pngs, strict=True):  # PNGs are compressed already
                zf.writestr(src, data, compress_type=zipfile.ZIP_STORED)
            zf.writestr("mergedimage.png", encode_png(merged), compress_type=zipfile.ZIP_STORED)
            zf.writestr("Thumbnails/thumbnail.png", encode_png(thumbnail(merged)), compress_type=zipfile.ZIP_STORED)
        write_file(tmp, buf.getvalue())
