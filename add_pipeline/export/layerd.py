"""LayerD-style folders: ``DIR/<id>/`` holding one full-canvas RGBA PNG per layer.

The layout :func:`add_pipeline.eval.readers.read_folder_stacks` reads (so ``liwi eval --pred DIR``
and LayerD's own tooling can use it), back to front by file name::

    DIR/chelsea.png/00_background.png
    DIR/chelsea.png/01_object_obj0_shadow.png     # shadow of obj0: kind and parent from the name
    DIR/chelsea.png/02_object_obj0.png
    DIR/chelsea.png/layers.json                  # the true id, names, kinds, parents, boxes, scores

Every PNG is ``HxWx4 uint8`` straight-colour RGBA of the photo's size.  The folder name is
:func:`~add_pipeline.io.names.safe_name` of the id (equal to the id for ids made of
``[A-Za-z0-9._-]``, which is what the folder reader takes as the sample id).  Layer names go
through ``safe_name`` too; the words ``shadow`` and ``background`` inside a name are written with
their first letter percent-encoded (``%73hadow``), so that a name never changes the kind the
reader infers (``urllib.parse.unquote`` still gives the name back).
"""

from __future__ import annotations

import re
from pathlib import Path

from add_pipeline.export.base import PerSampleExporter, json_bytes, sample_record, write_file
from add_pipeline.io.images import encode_png
from add_pipeline.io.layered import Layer, LayeredSample
from add_pipeline.io.names import child, safe_name

RECORD = "layers.json"
_RESERVED = {"export.json"}
_KIND_WORDS = re.compile(r"(s)(?=hadow)|(b)(?=ackground)", re.IGNORECASE)
_LAYER_FILE = re.compile(r"\d+_(background|object|shadow)[A-Za-z0-9._%~-]*\.png")


def name_stem(name: str) -> str:
    """``safe_name(name)`` with ``shadow`` / ``background`` (any case) masked as ``%73hadow`` / ``%62ackground``."""
    return _KIND_WORDS.sub(lambda m: "%{:02X}".format(ord(m.group(0))), safe_name(name))


def layer_files(layers: list[Layer]) -> list[str]:
    """The file name of each layer (back to front): ``NN_background[_<name>].png``,
    ``NN_object_<name>.png``, ``NN_object_<parent>_shadow.png`` (``NN_shadow_<name>.png`` for a
    shadow without a parent among the objects)."""
    width = max(2, len(str(len(layers) - 1)))
    objects = {lay.name for lay in layers if lay.kind == "object"}
    files = []
    for i, lay in enumerate(layers):
        n = f"{i:0{width}d}"
        if lay.kind == "background":
            tail = "" if lay.name == "background" else f"_{name_stem(lay.name)}"
            files.append(f"{n}_background{tail}.png")
        elif lay.kind == "shadow" and lay.parent in objects:
            files.append(f"{n}_object_{name_stem(lay.parent)}_shadow.png")  # type: ignore[arg-type]
        elif lay.kind == "shadow":
            files.append(f"{n}_shadow_{name_stem(lay.name)}.png")
        else:
            files.append(f"{n}_object_{name_stem(lay.name)}.png")
    return files


class LayerdExporter(PerSampleExporter):
    """One folder of layer PNGs per sample."""

    name = "layerd"

    def owns(self, entry: Path) -> bool:
        if not entry.is_dir() or entry.is_symlink() or entry.name.startswith("."):
            return False
        return all(p.is_file() and (p.name == RECORD or _LAYER_FILE.fullmatch(p.name)) for p in entry.iterdir())

    def target(self, sample_id: str) -> Path:
        path = child(self.dest, sample_id)
        if path.name in _RESERVED:  # a sample called "export.json" must not take the export record's name
            path = path.with_name(path.name.replace(".", "%2E"))
        return path

    def render(self, sample: LayeredSample, tmp: Path) -> None:
        tmp.mkdir()
        files = layer_files(sample.layers)  # distinct: each starts with its own index
        for name, lay in zip(files, sample.layers, strict=True):
            write_file(tmp / name, encode_png(lay.rgba))
        write_file(tmp / RECORD, json_bytes(sample_record(sample, files)))
