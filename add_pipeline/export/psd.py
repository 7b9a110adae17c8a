"""Layered Photoshop files (Photoshop, GIMP, Krita, Affinity, Photopea): ``DIR/<id>.psd``.

One 8-bit RGB document with transparency (psd-tools' ``"RGBA"`` mode) per sample, the size of the
photo, with one pixel layer per layer, bottom to top in our back-to-front order (so each shadow
lies directly under its object, as our stacks put it; the order is kept, never rearranged,
because the order is what recomposes the photo):

* the background: opaque, the full canvas;
* an object or shadow: cut to the tight box of its alpha > 0 and placed there (``left``/``top``),
  RGBA with straight colour (alpha in the layer's transparency channel, no mask), normal
  blending, opacity 255;
* layer names are ours (Unicode kept; Photoshop allows at most 255 characters, longer names are cut).

psd-tools renders the document's merged image (what viewers without layer support show) from the
layers on save, so ``PSDImage.open(path).composite()`` and the stored preview both equal the
photo within one grey level (checked by the tests).
"""

from __future__ import annotations

import io
from pathlib import Path

from add_pipeline.export.base import ExportError, FileExporter, placed_crop, write_file
from add_pipeline.io.layered import LayeredSample

MAX_LAYER_NAME = 255


class PsdExporter(FileExporter):
    """One ``.psd`` per sample (needs ``psd-tools`` with its composite support, for the merged image)."""

    name = "psd"
    suffix = ".psd"

    def __init__(self, dest: Path) -> None:
        super().__init__(dest)
        try:
            import psd_tools  # noqa: F401
            import psd_tools.composite  # noqa: F401  (renders the merged image on save)
        except ImportError as e:
            raise ExportError(f"--format psd needs psd-tools with composite support ({e}); "
                              "pip install 'psd-tools[composite]'") from e

    def render(self, sample: LayeredSample, tmp: Path) -> None:
        from PIL import Image
        from psd_tools import PSDImage

        # "RGBA": layer alpha goes to each layer's transparency channel (in an "RGB" document
        # psd-tools would store it as a layer mask instead); the merged image gets an alpha channel
        psd = PSDImage.new("RGBA", (sample.width, sample.height))
        for lay in sample.layers:  # create_pixel_layer adds on top: back to front
            left, top, crop = placed_crop(lay)
            if lay.kind == "background" and bool((crop[..., 3] == 255).all()):
                image = Image.fromarray(crop[..., :3].copy(), "RGB")
            else:
                image = Image.fromarray(crop.copy(), "RGBA")
            layer = psd.create_pixel_layer(image, name="layer", top=top, left=left)
            layer.name = lay.name[:MAX_LAYER_NAME]  # the setter stores non-Latin names as Unicode
        buf = io.BytesIO()
        psd.save(buf)
        write_file(tmp, buf.getvalue())
