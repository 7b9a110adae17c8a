"""WebDataset tar shards: ``DIR/shard-000000.tar``, ``shard-000001.tar``, ... for streaming training.

One sample is one WebDataset key with these members (``KEY.<ext>``):

* ``image.png``: the photo, ``HxWx3 uint8`` RGB;
* ``layer000.png``, ``layer001.png``, ...: every layer back to front (``layer000`` is the
  background), full canvas ``HxWx4 uint8`` RGBA, straight colour;
* ``json``: :func:`~add_pipeline.export.base.sample_record` (the true sample id, source, size,
  and per layer name, kind, z, bbox, parent, scores and ``ext``, the member holding its pixels).

WebDataset splits a member name into key and extension at the first ``.``, so the key is
:func:`wds_key` of the id: :func:`~add_pipeline.io.names.safe_name` with dots encoded too
(no ``.`` nor ``/``; distinct ids give distinct keys; ``urllib.parse.unquote`` gives the id back).

A tar is written under a temporary name and renamed when it holds ``samples_per_tar`` samples
(or the export ends); then its index ``shard-000000.index.json`` (the ids and keys it holds) is
written, and that index is the tar's completion record: a tar without an index is unfinished and
the next run deletes it, and a rerun writes only ids that no index lists, into new tar numbers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from add_pipeline.export.base import (
    Exporter,
    ExportError,
    json_bytes,
    publish,
    remove,
    sample_record,
    temp_path,
    write_atomic,
)
from add_pipeline.io.images import encode_png
from add_pipeline.io.layered import LayeredSample
from add_pipeline.io.names import safe_name

_TAR = re.compile(r"shard-(\d{6,})\.tar")
_INDEX = re.compile(r"shard-(\d{6,})\.index\.json")


def wds_key(sample_id: str) -> str:
    """The WebDataset key of ``sample_id``: ``[A-Za-z0-9_%~-]`` only, never empty."""
    return safe_name(sample_id).replace(".", "%2E")


def tar_name(number: int) -> str:
    """``shard-000042.tar`` for 42."""
    return f"shard-{number:06d}.tar"


def _index_name(tar: str) -> str:
    return tar[: -len(".tar")] + ".index.json"


class WebDatasetExporter(Exporter):
    """Tar shards of ``samples_per_tar`` samples each (the last one may hold fewer).

    Args:
        dest: the export folder.
        samples_per_tar: samples per tar, at least 1.
    """

    name = "webdataset"
    option_names = ("samples_per_tar",)

    def __init__(self, dest: Path, samples_per_tar: int = 1000) -> None:
        super().__init__(dest)
        if not isinstance(samples_per_tar, int) or samples_per_tar < 1:
            raise ExportError(f"--samples-per-tar must be a whole number >= 1, got {samples_per_tar!r}")
        self.samples_per_tar = samples_per_tar
        self._next = 0
        self._fh: IO[bytes] | None = None
        self._writer: Any = None
        self._tmp: Path | None = None
        self._held: list[dict[str, str]] = []

    def options(self) -> dict[str, Any]:
        return {"samples_per_tar": self.samples_per_tar}

    def owns(self, entry: Path) -> bool:
        return entry.is_file() and bool(_TAR.fullmatch(entry.name) or _INDEX.fullmatch(entry.name))

    # ------------------------------------------------------------ state on disk

    def _indexes(self) -> list[Path]:
        return sorted(p for p in self.dest.iterdir() if _INDEX.fullmatch(p.name))

    def _read_index(self, path: Path) -> dict[str, Any]:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            tar = str(record["tar"])
            samples = [(str(s["id"]), str(s["key"])) for s in record["samples"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{path}: not a readable tar index ({e}); delete it and its tar to redo them") from e
        if tar != path.name[: -len(".index.json")] + ".tar":
            raise ExportError(f"{path}: names tar {tar!r}, expected the tar beside it")
        return {"tar": tar, "samples": samples}

    def prepare(self) -> None:
        """Delete tars without an index (renamed, but the run died before indexing them) and indexes
        whose tar is gone; number new tars after the highest indexed one."""
        indexed = set()
        for path in self._indexes():
            tar = self.dest / (path.name[: -len(".index.json")] + ".tar")
            if tar.is_file():
                indexed.add(tar.name)
            else:
                remove(path)
        highest = -1
        for entry in self.dest.iterdir():
            m = _TAR.fullmatch(entry.name)
            if m is None:
                continue
            if entry.name not in indexed:
                remove(entry)
            else:
                highest = max(highest, int(m.group(1)))
        self._next = highest + 1

    def finished(self, ids: Sequence[str]) -> dict[str, str]:
        done: dict[str, str] = {}
        for path in self._indexes():
            record = self._read_index(path)
            for sid, _key in record["samples"]:
                if sid in done:
                    raise ExportError(f"{self.dest}: sample {sid!r} is in both {done[sid]} and {record['tar']}; "
                                      "delete one of the two tars and its index")
                done[sid] = record["tar"]
        return done

    # ------------------------------------------------------------ writing

    def _open(self) -> None:
        import webdataset as wds

        self._tar = tar_name(self._next)
        self._next += 1
        self._tmp = temp_path(self.dest, self._tar)
        self._fh = open(self._tmp, "wb")
        # PAX: member names longer than USTAR's 100 characters (long ids) stay exact
        self._writer = wds.TarWriter(self._fh, encoder=False, format="PAX_FORMAT")
        self._held = []

    def _write(self, sample: LayeredSample) -> None:
        if self._writer is None:
            self._open()
        key = wds_key(sample.sample_id)
        exts = [f"layer{i:03d}.png" for i in range(len(sample.layers))]
        record = sample_record(sample, exts, field="ext")
        record["image"] = "image.png"
        member: dict[str, Any] = {"__key__": key, "image.png": encode_png(sample.image), "json": json_bytes(record)}
        for ext, lay in zip(exts, sample.layers, strict=True):
            member[ext] = encode_png(lay.rgba)
        self._writer.write(member)
        self._held.append({"id": sample.sample_id, "key": key})
        if len(self._held) >= self.samples_per_tar:
            self._finish()

    def _finish(self) -> None:
        """Close the open tar, rename it into place, then write its index (the completion record)."""
        if self._writer is None or self._fh is None or self._tmp is None:
            return
        self._writer.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        publish(self._tmp, self.dest / self._tar)
        write_atomic(self.dest / _index_name(self._tar), json_bytes({"tar": self._tar, "samples": self._held}))
        self._writer = self._fh = self._tmp = None
        self._held = []

    def close(self) -> None:
        if self._writer is not None:
            self._finish()

    def abort(self) -> None:
        """Delete the open, unfinished tar (its samples are written again by the next run)."""
        try:
            if self._writer is not None:
                self._writer.close()  # before the file, or tarfile writes into a closed file later
        except (OSError, ValueError):
            pass  # the export is failing already (that error is raised); the temporary tar goes below
        if self._fh is not None:
            self._fh.close()
        if self._tmp is not None:
            remove(self._tmp)
        self._writer = self._fh = self._tmp = None
        self._held = []
