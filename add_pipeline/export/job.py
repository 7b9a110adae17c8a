"""``export(ExportOptions)``: select committed samples of an output folder and write them into
``DIR`` in one format, resumably.

The job, under ``DIR``'s single-writer lock (:func:`~add_pipeline.io.lock.output_lock`):

1. check ``DIR`` (before taking the lock, so a refused folder gets no lock file, and again under
   it): it must be empty or hold an export (``DIR/export.json``) whose other entries all have the
   form of that export's files; any other file is refused, never deleted.  An export with other
   settings (format, source, selection, format options) is refused unless ``--overwrite``, which
   deletes that export's own entries and starts over;
2. delete temporary entries a killed run left, then let the format drop incomplete work;
3. export the selected samples that are not finished yet (each finished entry was renamed into
   place, so what exists is complete), with a progress bar;
4. write ``DIR/export.json`` (``status: complete``): format, source, selection, options, count,
   each sample id with the path it went to, the liwi version and the times.

``export.json`` is first written with ``status: running`` before anything else, so a killed
export is recognised as ours and resumed by the same command.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from add_pipeline import __version__
from add_pipeline.export.base import (
    TEMP_PREFIX,
    Exporter,
    ExportError,
    PerSampleExporter,
    json_bytes,
    remove,
    write_atomic,
)
from add_pipeline.export.registry import build_exporter
from add_pipeline.io.layered import decode_row
from add_pipeline.io.lock import LOCK_NAME, output_lock
from add_pipeline.io.reader import LayeredShards

RECORD = "export.json"
CONFIG_KEYS = ("format", "source", "selection", "options")


@dataclass(frozen=True)
class ExportOptions:
    """What ``liwi export`` was asked.

    Attributes:
        out: the liwi output folder to read (``OUT/_commits`` must exist).
        dest: the export folder ``DIR`` (created if missing).
        format: an :data:`~add_pipeline.export.registry.EXPORTERS` name.
        ids / where / limit: the selection, as :class:`~add_pipeline.io.reader.LayeredShards` takes it.
        samples_per_tar: ``webdataset`` only (``None``: its default).
        overwrite: replace an export with other settings in ``dest`` (only its own entries are deleted).
        progress: show a progress bar.
    """

    out: Path
    dest: Path
    format: str
    ids: tuple[str, ...] | None = None
    where: str | None = None
    limit: int | None = None
    samples_per_tar: int | None = None
    overwrite: bool = False
    progress: bool = True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: not a readable export record ({e}); move the folder aside or choose another "
                          "--out") from e
    if not isinstance(record, dict) or not isinstance(record.get("format"), str):
        raise ExportError(f"{path}: not an export record (no format); choose another --out")
    return record


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _check(dest: Path, exporter: Exporter, config: dict[str, Any], overwrite: bool) -> list[Path]:
    """Check that ``dest`` is empty or our export (see the module docstring, step 1); return the
    entries to delete: the old export's with ``overwrite``, else the temporary ones of a killed run.
    Reads only, so that it can run before the lock is taken (a refused folder gets no lock file)."""
    if not dest.is_dir():
        return []
    entries = sorted(p for p in dest.iterdir() if p.name != LOCK_NAME)
    if not (dest / RECORD).is_file():
        if entries:
            raise ExportError(f"{dest} holds files liwi export did not make (e.g. {entries[0].name}); give an empty "
                              "or new folder as --out")
        return []
    record = _read_record(dest / RECORD)
    old = exporter if record["format"] == exporter.name else build_exporter(record["format"], dest)
    foreign = [p for p in entries if p.name != RECORD and not p.name.startswith(TEMP_PREFIX) and not old.owns(p)]
    if foreign:
        raise ExportError(f"{foreign[0]} was not made by liwi export (this folder holds a {old.name} export); move "
                          "it out of the folder or choose another --out")
    differ = [k for k in CONFIG_KEYS if record.get(k) != config[k]]
    if differ and not overwrite:
        was = "; ".join(f"{k} {_short(record.get(k))}" for k in differ)
        raise ExportError(f"{dest} holds an export with other settings ({was}); rerun with that export's arguments "
                          "to resume it, add --overwrite to replace it, or choose another --out")
    return [p for p in entries if overwrite or p.name.startswith(TEMP_PREFIX)]


def export(opts: ExportOptions) -> dict[str, Any]:
    """Run the export (module docstring) and return the ``export.json`` record it wrote.

    Raises:
        ExportError: bad destination (a file, ``OUT`` itself, foreign files, an export with other
            settings), unknown format, or a sample that cannot be exported.
        ReaderError: ``out`` is not a liwi output folder, ``where`` is not valid, an id is not committed.
        OutputLockedError: another export writes into ``dest``.
    """
    out, dest = Path(opts.out), Path(opts.dest)
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} is a file; --out must be a folder")
    if dest.resolve() == out.resolve():
        raise ExportError(f"--out {dest} is the folder being exported; choose another folder")
    shards = LayeredShards(out, ids=opts.ids, where=opts.where, limit=opts.limit)
    exporter = build_exporter(opts.format, dest, samples_per_tar=opts.samples_per_tar)
    ids = shards.ids()
    if isinstance(exporter, PerSampleExporter):
        names: dict[str, str] = {}
        for sid in ids:
            name = exporter.target(sid).name
            if name in names:
                raise ExportError(f"samples {names[name]!r} and {sid!r} would both be written to {dest / name}")
            names[name] = sid
    selection = {"ids": list(opts.ids) if opts.ids is not None else None, "where": opts.where, "limit": opts.limit}
    config = json.loads(json.dumps({"format": exporter.name, "source": str(out.resolve()), "selection": selection,
                                    "options": exporter.options()}))
    started, t0 = _now(), time.perf_counter()
    _check(dest, exporter, config, opts.overwrite)  # refuse before the lock file is made
    with output_lock(dest):
        for entry in _check(dest, exporter, config, opts.overwrite):  # again: now no one else writes
            remove(entry)
        write_atomic(dest / RECORD, json_bytes({**config, "status": "running", "liwi_version": __version__,
                                                "started_at": started}))
        exporter.prepare()
        done = exporter.finished(ids)
        todo = [i for i, sid in enumerate(ids) if sid not in done]
        with tqdm(total=len(ids), initial=len(ids) - len(todo), unit="sample", disable=not opts.progress,
                  dynamic_ncols=True, desc=f"export {exporter.name}") as bar:
            try:
                for row in shards.rows(todo):
                    exporter.write(decode_row(row))
                    bar.update(1)
                exporter.close()
            except BaseException:
                exporter.abort()
                raise
        done = exporter.finished(ids)
        missing = [sid for sid in ids if sid not in done]
        if missing:
            raise ExportError(f"{dest}: {len(missing)} selected samples are not in the export after writing "
                              f"(e.g. {missing[0]!r}); rerun the same command")
        wall = time.perf_counter() - t0
        record = {**config, "status": "complete", "count": len(ids),
                  "samples": [{"id": sid, "path": done[sid]} for sid in ids],
                  "not_selected": sorted(set(done) - set(ids)),
                  "last_run": {"exported": len(todo), "wall_s": round(wall, 3),
                               "s_per_sample": round(wall / len(todo), 4) if todo else None},
                  "liwi_version": __version__, "started_at": started, "finished_at": _now()}
        write_atomic(dest / RECORD, json_bytes(record))
    return record
