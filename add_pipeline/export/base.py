"""The one exporter interface, and what every format shares: temporary names, atomic publishing,
where a layer sits on the canvas, and the per-sample metadata record.

An :class:`Exporter` writes committed samples (:class:`~add_pipeline.io.layered.LayeredSample`)
of one output folder into a destination folder ``DIR`` in one format.  It never writes outside
``DIR`` and publishes every file by renaming a finished temporary file (or folder) into place, so
a file under its final name is always complete; what a killed export leaves is only temporary
entries (names starting with :data:`TEMP_PREFIX`), which the next run deletes.  Which samples are
finished is read back from ``DIR`` itself (:meth:`Exporter.finished`): a rerun exports the rest.

:meth:`Exporter.write` is a template method: it checks the sample (shapes, dtypes, kinds), then
calls the format's :meth:`Exporter._write`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from add_pipeline.core.types import Box, bbox_of
from add_pipeline.io.layered import Layer, LayeredSample
from add_pipeline.io.names import child
from add_pipeline.io.shards import fsync_dir

TEMP_PREFIX = ".tmp-"
"""Every entry an exporter has not finished yet is named ``.tmp-<token>-<final name>`` inside ``DIR``."""

KINDS = ("background", "object", "shadow")


class ExportError(ValueError):
    """An export that cannot run as asked (bad destination, unknown format, a sample that does not fit)."""


# ---------------------------------------------------------------- atomic files


def temp_path(dest: Path, final_name: str) -> Path:
    """A fresh temporary path in ``dest`` for an entry that will be renamed to ``final_name``."""
    return dest / f"{TEMP_PREFIX}{uuid.uuid4().hex[:10]}-{final_name}"


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (a temporary name) and flush it to disk."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def publish(tmp: Path, final: Path) -> None:
    """Rename the finished temporary file or folder ``tmp`` to ``final`` (same folder), atomically.

    Raises:
        ExportError: ``final`` exists already (an exporter never replaces a finished entry).
    """
    if final.exists():
        remove(tmp)
        raise ExportError(f"{final} exists already; it was not expected to (another export into the same folder?)")
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_atomic(final: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name beside ``final`` and rename it into place (replacing it)."""
    tmp = temp_path(final.parent, final.name)
    try:
        write_file(tmp, data)
        os.replace(tmp, final)
    except BaseException:
        remove(tmp)
        raise
    fsync_dir(final.parent)


def remove(path: Path) -> None:
    """Delete a file or a folder tree if it exists (only called on entries an exporter made)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ---------------------------------------------------------------- layers


def placed_crop(layer: Layer) -> tuple[int, int, np.ndarray]:
    """Where a layer sits and its pixels there: ``(left, top, hxwx4 uint8 RGBA)``.

    The background keeps the full canvas (it is opaque everywhere; its stored ``bbox`` is only
    where it differs from the photo).  An object or shadow is cut to the tight box of alpha > 0
    (its ``bbox`` for schema v2 rows); a layer with no visible pixel becomes one transparent pixel
    at ``(0, 0)``, so that it keeps its place and name in the stack.
    """
    if layer.kind == "background":
        return 0, 0, layer.rgba
    x0, y0, x1, y1 = tight_box(layer.rgba)
    if x1 <= x0 or y1 <= y0:
        return 0, 0, np.zeros((1, 1, 4), np.uint8)
    return x0, y0, layer.rgba[y0:y1, x0:x1]


def tight_box(rgba: np.ndarray) -> Box:
    """Tight half-open box ``(x0, y0, x1, y1)`` of alpha > 0 of an ``HxWx4`` layer; ``(0, 0, 0, 0)`` if none."""
    return bbox_of(rgba[..., 3] > 0)


def sample_record(sample: LayeredSample, files: Sequence[str], field: str = "file") -> dict[str, Any]:
    """The JSON-ready metadata of one sample: ids, size, and per layer (back to front) its name,
    kind, z, stored bbox, parent, scores and ``field`` = the file it was written to."""
    return {
        "sample_id": sample.sample_id,
        "source": sample.source,
        "source_kind": sample.source_kind,
        "workflow": sample.workflow,
        "width": sample.width,
        "height": sample.height,
        "layers": [{"name": lay.name, "kind": lay.kind, "z": lay.z, "bbox": list(lay.bbox), "parent": lay.parent,
                    "scores": dict(sorted(lay.scores.items())), field: f} for lay, f in zip(sample.layers, files,
                                                                                           strict=True)],
    }


def json_bytes(record: Any) -> bytes:
    """``record`` as indented UTF-8 JSON (non-ASCII kept as is)."""
    return (json.dumps(record, indent=1, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")


def check_sample(sample: LayeredSample) -> None:
    """Raise :class:`ExportError` unless ``sample`` has an ``HxWx3 uint8`` photo and at least one
    layer, each ``HxWx4 uint8`` of the photo's size with a known kind."""
    h, w = sample.height, sample.width
    sid = sample.sample_id
    if sample.image.shape != (h, w, 3) or sample.image.dtype != np.uint8:
        raise ExportError(f"sample {sid!r}: photo is {sample.image.shape} {sample.image.dtype}, expected "
                          f"({h}, {w}, 3) uint8")
    if not sample.layers:
        raise ExportError(f"sample {sid!r} has no layers")
    for lay in sample.layers:
        if lay.rgba.shape != (h, w, 4) or lay.rgba.dtype != np.uint8:
            raise ExportError(f"sample {sid!r}: layer {lay.name!r} is {lay.rgba.shape} {lay.rgba.dtype}, expected "
                              f"({h}, {w}, 4) uint8")
        if lay.kind not in KINDS:
            raise ExportError(f"sample {sid!r}: layer {lay.name!r} has kind {lay.kind!r}, expected one of {KINDS}")


# ---------------------------------------------------------------- the interface


class Exporter(ABC):
    """Writes samples into ``dest`` in one format (subclasses set :attr:`name` and implement the
    abstract methods).  Lifecycle, driven by :func:`add_pipeline.export.job.export` under the
    folder's writer lock: :meth:`prepare`, :meth:`finished`, :meth:`write` per sample not finished,
    :meth:`close` (or :meth:`abort` on an error)."""

    name: ClassVar[str]
    option_names: ClassVar[tuple[str, ...]] = ()
    """The keyword options of ``__init__`` besides ``dest`` (what :func:`build_exporter` passes on)."""

    def __init__(self, dest: Path) -> None:
        self.dest = Path(dest)

    def options(self) -> dict[str, Any]:
        """The options that shape this format's files (recorded in ``export.json``; a resume must match)."""
        return {}

    @abstractmethod
    def owns(self, entry: Path) -> bool:
        """Whether ``entry`` (directly in ``dest``) has the form of a finished entry of this format."""

    @abstractmethod
    def finished(self, ids: Sequence[str]) -> dict[str, str]:
        """``sample id -> path relative to dest`` of every finished sample (of ``ids``, or any for
        formats that index their own files)."""

    def prepare(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Remove incomplete work a killed run left under final names (temporary entries are gone already)."""

    def write(self, sample: LayeredSample) -> None:
        """Check ``sample`` (:func:`check_sample`), then write it (:meth:`_write`)."""
        check_sample(sample)
        self._write(sample)

    @abstractmethod
    def _write(self, sample: LayeredSample) -> None:
        """Write one checked sample."""

    def close(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Finish what is buffered (nothing for one-file-per-sample formats)."""

    def abort(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Drop what is buffered and not finished (called when the export stops on an error)."""


class PerSampleExporter(Exporter):
    """A format with one finished entry (file or folder) per sample, named from its id: rendered
    under a temporary name, then renamed; a sample is finished when its entry exists."""

    @abstractmethod
    def target(self, sample_id: str) -> Path:
        """The final path of ``sample_id``'s entry, directly inside ``dest``."""

    @abstractmethod
    def render(self, sample: LayeredSample, tmp: Path) -> None:
        """Write ``sample``'s entry at the temporary path ``tmp``."""

    def finished(self, ids: Sequence[str]) -> dict[str, str]:
        out = {}
        for sid in ids:
            path = self.target(sid)
            if path.exists():
                out[sid] = path.name
        return out

    def _write(self, sample: LayeredSample) -> None:
        final = self.target(sample.sample_id)
        tmp = temp_path(self.dest, final.name)
        try:
            self.render(sample, tmp)
        except BaseException:
            remove(tmp)
            raise
        publish(tmp, final)


class FileExporter(PerSampleExporter):
    """A format with one file per sample: ``dest/<safe_name(id)><suffix>``."""

    suffix: ClassVar[str] = ""

    def owns(self, entry: Path) -> bool:
        return entry.is_file() and entry.name.endswith(self.suffix)

    def target(self, sample_id: str) -> Path:
        path = child(self.dest, sample_id)
        return path.with_name(path.name + self.suffix)
