"""The on-disk contract: Parquet parts plus commit markers, written exactly once.

Layout of an output folder::

    OUT/shards/part-00000.parquet    one row per accepted sample   (SHARD_SCHEMA)
    OUT/traces/part-00000.parquet    one row per agent/tool event  (TRACE_SCHEMA)
    OUT/rejects/part-00000.parquet   one row per rejected input    (REJECT_SCHEMA)
    OUT/_commits/part-00000.json     commit marker, written last

A commit writes each non-empty table to a temporary name in its folder, fsyncs it
and renames it into place; only then is the marker written (also temp + rename).
A part is *committed* iff its marker exists.  Readers only look at committed parts
and :meth:`ShardStore.prepare` deletes anything else (a crash between the part files
and the marker), so a sample id is final once its marker exists: the caller skips
:meth:`ShardStore.done_ids` on resume.

The ``image`` structs use the Hugging Face ``Image`` feature layout
(``{"bytes": encoded image, "path": str | None}``), and every part file carries the
``huggingface`` features metadata (:mod:`add_pipeline.io.hf`), so ``datasets`` decodes them
as images with no arguments.  How layer pixels are stored (cut to ``bbox``; the background
only where it differs from the photo) is :mod:`add_pipeline.io.layered`'s rule.  On disk every
field is nullable (as ``datasets`` writes them); which ones are required, top-level and in each
layer, is checked here, on write.  Every part records ``liwi.schema_version`` (:data:`SCHEMA_VERSION`) in its metadata;
parts of version 1 are read (upgraded in memory), a newer version is refused.

Rows are plain dicts keyed by column name; nullable columns may be left out (they become
null), all others are required.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from add_pipeline.io.layered import SCHEMA_VERSION

Kind = Literal["shards", "traces", "rejects"]
KINDS: tuple[Kind, ...] = ("shards", "traces", "rejects")
COMMITS_DIR = "_commits"

IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
"""Hugging Face ``Image`` feature layout: encoded bytes (PNG) and an optional path."""

SCORE_TYPE = pa.struct([pa.field("name", pa.string(), nullable=False), pa.field("value", pa.float64())])
"""One QA score of a layer (a list of these, not a map: ``datasets`` has no map type)."""

LAYER_TYPE = pa.struct(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("z", pa.int32(), nullable=False),
        pa.field("image", IMAGE_TYPE, nullable=False),
        pa.field("bbox", pa.list_(pa.int32()), nullable=False),  # [x0, y0, x1, y1], half-open
        pa.field("parent", pa.string(), nullable=True),
        pa.field("scores", pa.list_(SCORE_TYPE), nullable=True),  # sorted by name
        pa.field("fill", pa.string(), nullable=True),  # "image": pixels not stored are the photo's (background)
    ]
)

UTC_MICROS = pa.timestamp("us", tz="UTC")

SHARD_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_kind", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("image", IMAGE_TYPE, nullable=False),
        pa.field("layers", pa.list_(LAYER_TYPE), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("workflow", pa.string(), nullable=False),
        pa.field("meta", pa.string(), nullable=True),  # JSON object
    ]
)
"""One row per accepted sample; ``layers`` is back to front."""

TRACE_SCHEMA = pa.schema(
    [
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("seq", pa.int32(), nullable=False),
        pa.field("node", pa.string(), nullable=False),
        pa.field("tool", pa.string(), nullable=True),
        pa.field("started_at", UTC_MICROS, nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("input", pa.string(), nullable=True),  # JSON
        pa.field("output", pa.string(), nullable=True),  # JSON
        pa.field("decision", pa.string(), nullable=True),
        pa.field("error", pa.string(), nullable=True),
        pa.field("attempt", pa.int32(), nullable=False),
    ]
)
"""One row per agent or tool event, ordered by ``seq`` within a trace."""

REJECT_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("workflow", pa.string(), nullable=False),
        pa.field("rejected_at", UTC_MICROS, nullable=False),
    ]
)
"""One row per rejected input: the failed ``stage`` and a ``reason`` with a fixed prefix."""

SHARD_SCHEMA_V1 = pa.schema(
    [
        *(SHARD_SCHEMA.field(c) for c in ("sample_id", "source", "source_kind", "width", "height", "image")),
        pa.field("layers", pa.list_(pa.struct([
            *(LAYER_TYPE.field(c) for c in ("name", "kind", "z", "image", "bbox", "parent")),
            pa.field("scores", pa.map_(pa.string(), pa.float64()), nullable=True),
        ])), nullable=False),
        *(SHARD_SCHEMA.field(c) for c in ("status", "trace_id", "workflow", "meta")),
    ]
)
"""The shard layout before schema v2 (what :func:`read_part` upgrades): every layer a full-canvas
PNG, scores as a map, no ``fill``, no version metadata."""

SCHEMAS: dict[Kind, pa.Schema] = {"shards": SHARD_SCHEMA, "traces": TRACE_SCHEMA, "rejects": REJECT_SCHEMA}

_PART_RE = re.compile(r"^part-(\d{5,})\.(parquet|json)$")


class ShardStore:
    """Reads and writes the committed parts of one output folder.

    Not thread-safe: a single caller serialises :meth:`commit` calls.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.dropped_parts: list[str] = []  # set by prepare(): parts uncommitted because a file was gone

    # ------------------------------------------------------------ lifecycle

    def prepare(self, overwrite: bool = False) -> None:
        """Create the folders; clear them (``overwrite``) or drop uncommitted leftovers.

        With ``overwrite`` the store's own files are deleted first (part files, their
        temporaries and commit markers; nothing else in ``out_dir`` is touched).  Without it,
        every temporary part file and every part file not listed by a commit marker is deleted,
        so a crash mid-commit leaves no trace. Files that do not look like ours
        (:data:`_PART_RE`) are never deleted.
        """
        for sub in (*KINDS, COMMITS_DIR):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        self.dropped_parts = [] if overwrite else self._drop_broken_parts()
        committed = set() if overwrite else {f for marker in self._markers() for f in marker["files"].values()}
        for sub in (*KINDS, COMMITS_DIR):
            for p in (self.out_dir / sub).iterdir():
                tmp = p.name.endswith(".tmp")
                if not p.is_file() or not _PART_RE.match(p.name[:-4] if tmp else p.name):
                    continue  # not ours: left alone
                rel = f"{sub}/{p.name}"
                if tmp or overwrite or (sub != COMMITS_DIR and rel not in committed):
                    p.unlink()

    def done_ids(self) -> set[str]:
        """Sample ids that are final: present in committed shards or rejects."""
        return set(self.id_counts())

    def id_counts(self) -> Counter[str]:
        """How often each final sample id is committed (shards + rejects); more than 1 is a duplicate."""
        counts: Counter[str] = Counter()
        for kind in ("shards", "rejects"):
            for path in self.committed_files(kind):
                counts.update(pq.read_table(path, columns=["sample_id"]).column("sample_id").to_pylist())
        return counts

    # ------------------------------------------------------------ writing

    def commit(self, accepted: list[dict], rejected: list[dict], traces: list[dict],
               workflow_hash: str | None = None) -> int | None:
        """Write the non-empty tables as part ``n`` and then its marker; return ``n``.

        ``workflow_hash`` (the digest of the workflow that made the rows) is recorded in the
        marker, so a resume can check every committed part, not only ``run.json``.

        Returns ``None`` (and writes nothing) when all three lists are empty.

        Raises:
            ValueError: a row misses a required column, has an unknown column or a value
                of the wrong type, or a sample id appears twice among accepted + rejected.
        """
        given: dict[Kind, list[dict]] = {"shards": accepted, "rejects": rejected, "traces": traces}
        tables = {kind: _to_table(kind, rows) for kind, rows in given.items() if rows}
        if not tables:
            return None
        counts = Counter(r["sample_id"] for r in [*accepted, *rejected])
        dups = sorted(sid for sid, c in counts.items() if c > 1)
        if dups:
            raise ValueError(f"sample ids appear more than once among accepted + rejected rows: {dups[:10]}")

        for sub in (*KINDS, COMMITS_DIR):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        n = self._next_index()
        name = f"part-{n:05d}"
        files: dict[str, str] = {}
        row_counts: dict[str, int] = {}
        sample_ids: dict[str, list[str]] = {}
        for kind, table in tables.items():
            rel = f"{kind}/{name}.parquet"
            _write_parquet_atomic(table, self.out_dir / rel)
            files[kind] = rel
            row_counts[kind] = table.num_rows
            sample_ids[kind] = sorted(set(table.column("sample_id").to_pylist()))
        marker = {
            "part": n,
            "committed_at": datetime.now(UTC).isoformat(),
            "files": files,
            "rows": row_counts,
            "sample_ids": sample_ids,
            **({"workflow_hash": workflow_hash} if workflow_hash else {}),
        }
        payload = json.dumps(marker, indent=1).encode("utf-8")
        _write_bytes_atomic(payload, self.out_dir / COMMITS_DIR / f"{name}.json")
        return n

    # ------------------------------------------------------------ reading

    def read_table(self, kind: Kind, columns: list[str] | None = None) -> pa.Table:
        """All committed rows of ``kind`` (only ``columns``, if given) as one table under
        ``SCHEMAS[kind]`` (empty, with the schema, if none); version-1 parts are upgraded."""
        if kind not in SCHEMAS:
            raise ValueError(f"unknown table kind {kind!r}; expected one of {list(KINDS)}")
        schema = SCHEMAS[kind] if columns is None else pa.schema([SCHEMAS[kind].field(c) for c in columns])
        parts = [read_part(p, kind, columns) for p in self.committed_files(kind)]
        if not parts:
            return schema.empty_table()
        return pa.concat_tables(parts)

    def arrow_source(self, kind: Kind) -> pa.Table | Any:
        """The committed rows of ``kind`` for a query engine: a lazy ``pyarrow.dataset`` over the part
        files (columns a query skips are never read) when every part has one schema version (a v1
        folder keeps its v1 column types there: scores as a map, no ``fill``), else the upgraded
        table (:meth:`read_table`; only a folder mixing versions, which a run never writes)."""
        import pyarrow.dataset as ds

        files = self.committed_files(kind)
        versions = {part_version(p) for p in files}
        if versions == {SCHEMA_VERSION}:
            return ds.dataset([str(p) for p in files], schema=_disk_schema(kind), format="parquet")
        if len(versions) == 1:
            return ds.dataset([str(p) for p in files], schema=pq.read_schema(files[0]), format="parquet")
        return self.read_table(kind)

    def schema_versions(self) -> dict[int, list[str]]:
        """Committed shard/reject/trace part files by the schema version they were written with."""
        out: dict[int, list[str]] = {}
        for marker in self._markers():
            for rel in marker["files"].values():
                if (self.out_dir / rel).is_file():  # a missing one is dropped by prepare() and redone
                    out.setdefault(part_version(self.out_dir / rel), []).append(rel)
        return out

    # ------------------------------------------------------------ internals

    def _markers(self) -> list[dict]:
        """Parsed commit markers, in part order."""
        folder = self.out_dir / COMMITS_DIR
        if not folder.is_dir():
            return []
        markers = []
        for p in sorted(folder.iterdir()):
            m = _PART_RE.match(p.name)
            if m is None or m.group(2) != "json":
                continue
            try:
                markers.append(json.loads(p.read_text(encoding="utf-8")))
            except json.JSONDecodeError as e:  # markers are written atomically; this is outside damage
                raise ValueError(f"commit marker {p} is not valid JSON: {e}") from e
        return markers

    def _drop_broken_parts(self) -> list[str]:
        """Uncommit every part whose marker lists a file that is gone (deleted by hand, a lost disk
        block): its marker goes, so its other files are cleaned below and its samples are redone.
        Returns what was dropped, as ``"part-NNNNN: shards/part-NNNNN.parquet is missing"``."""
        dropped = []
        for marker in self._markers():
            missing = [rel for rel in marker["files"].values() if not (self.out_dir / rel).is_file()]
            if missing:
                name = f"part-{marker['part']:05d}"
                (self.out_dir / COMMITS_DIR / f"{name}.json").unlink()
                dropped.append(f"{name}: {', '.join(missing)} is missing")
        return dropped

    def workflow_hashes(self) -> set[str]:
        """The workflow hashes recorded by the commit markers (markers written before they were
        recorded contribute none)."""
        return {m["workflow_hash"] for m in self._markers() if m.get("workflow_hash")}

    def committed_files(self, kind: Kind) -> list[Path]:
        """Paths of the committed Parquet parts of ``kind``, in part order."""
        paths = []
        for marker in self._markers():
            rel = marker["files"].get(kind)
            if rel is None:
                continue
            path = self.out_dir / rel
            if not path.is_file():
                raise FileNotFoundError(f"{self.out_dir}: commit marker of part {marker['part']} lists {rel}, which "
                                        "is missing; rerun the same liwi command to redo that part's samples")
            paths.append(path)
        return paths

    def _next_index(self) -> int:
        """One past the highest part index in use anywhere (markers or stray part files)."""
        highest = -1
        for sub in (*KINDS, COMMITS_DIR):
            folder = self.out_dir / sub
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                m = _PART_RE.match(p.name)
                if m is not None:
                    highest = max(highest, int(m.group(1)))
        return highest + 1


# ---------------------------------------------------------------- versions


def part_version(path: Path) -> int:
    """The ``liwi.schema_version`` a part file was written with (1 if it records none)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"liwi")
    if raw is None:
        return 1
    try:
        return int(json.loads(raw)["schema_version"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: unreadable liwi schema metadata ({e})") from e


def read_part(path: Path, kind: Kind, columns: list[str] | None = None) -> pa.Table:
    """One committed part file as a table under ``SCHEMAS[kind]`` (or its ``columns``).

    Raises:
        ValueError: the part was written by a newer liwi (its schema version is unknown here).
    """
    version = part_version(path)
    if version > SCHEMA_VERSION:
        raise ValueError(f"{path} uses shard schema v{version}, newer than this liwi reads (v{SCHEMA_VERSION}); "
                         "upgrade add-pipeline to read it")
    schema = SCHEMAS[kind] if columns is None else pa.schema([SCHEMAS[kind].field(c) for c in columns])
    if version == 1 and kind == "shards" and (columns is None or "layers" in columns):
        rows = pq.read_table(path, columns=columns).to_pylist()
        for row in rows:
            for lay in row["layers"]:
                lay["scores"] = [{"name": k, "value": v} for k, v in sorted(lay.get("scores") or [])]
                lay["fill"] = None
        return pa.Table.from_pylist(rows, schema=schema)
    return pq.read_table(path, columns=columns).cast(schema)


def drop_layer_pixels(layers: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A ``layers`` list column with the ``image`` field of each layer struct dropped."""
    arr = layers.combine_chunks() if isinstance(layers, pa.ChunkedArray) else layers
    structs = arr.values
    names = [f.name for f in structs.type if f.name != "image"]
    kept = pa.StructArray.from_arrays([structs.field(n) for n in names], names=names)
    return pa.ListArray.from_arrays(arr.offsets, kept)


def read_part_without_pixels(path: Path, columns: list[str]) -> pa.Table:
    """``columns`` of a committed shard part, with the ``image`` field of every layer left out and
    never read from disk (a pixel-free view for filters and counts: the layers' names, kinds, boxes,
    parents, scores, fill). A top-level ``image`` in ``columns`` is refused: this view has no pixels."""
    if "image" in columns:
        raise ValueError("read_part_without_pixels: 'image' is pixels")
    if part_version(path) != SCHEMA_VERSION:  # older layout: upgrade in memory, then drop the pixels
        table = read_part(path, "shards", columns)
        if "layers" in columns:
            table = table.set_column(table.schema.get_field_index("layers"), "layers",
                                     drop_layer_pixels(table.column("layers")))
        return table
    pf = pq.ParquetFile(path)
    leaves = [pf.schema.column(i).path for i in range(len(pf.schema))]
    wanted = [leaf for leaf in leaves
              if leaf.split(".")[0] in columns and not leaf.startswith("layers.list.element.image.")]
    table = pf.read(columns=wanted)
    return table.select(columns)


def _disk_schema(kind: Kind) -> pa.Schema:
    """``SCHEMAS[kind]`` as written: every field nullable (the form ``datasets`` compares its features
    with), plus the ``huggingface`` features and ``liwi`` version metadata."""
    from add_pipeline.io.hf import arrow_nullable, features_metadata

    schema = arrow_nullable(SCHEMAS[kind])
    return schema.with_metadata({
        b"huggingface": json.dumps(features_metadata(kind)).encode("utf-8"),
        b"liwi": json.dumps({"schema_version": SCHEMA_VERSION, "table": kind}).encode("utf-8"),
    })


# ---------------------------------------------------------------- row validation


_LAYER_REQUIRED = tuple(f.name for f in LAYER_TYPE if not f.nullable)
"""Fields every layer must have (checked on write: the on-disk schema is all-nullable)."""


def _layer_scores_as_list(layer: Any) -> Any:
    """A layer dict whose ``scores`` may be given as a mapping, with them as the stored name/value list."""
    if isinstance(layer, dict) and isinstance(layer.get("scores"), dict):
        return {**layer, "scores": [{"name": str(k), "value": float(v)} for k, v in sorted(layer["scores"].items())]}
    return layer


def _to_table(kind: Kind, rows: list[dict]) -> pa.Table:
    """Arrow table of ``rows`` under ``SCHEMAS[kind]``, as written to disk (:func:`_disk_schema`);
    nullable columns may be absent, and layer ``scores`` may be given as a ``{name: value}`` dict."""
    schema = SCHEMAS[kind]
    names = set(schema.names)
    required = [f.name for f in schema if not f.nullable]
    normalised = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{kind} row {i}: expected a dict, got {type(row).__name__}")
        missing = [c for c in required if row.get(c) is None]
        if missing:
            raise ValueError(f"{kind} row {i} (sample_id={row.get('sample_id')!r}) misses required columns {missing}")
        unknown = sorted(set(row) - names)
        if unknown:
            raise ValueError(f"{kind} row {i} (sample_id={row.get('sample_id')!r}) has unknown columns {unknown}")
        norm = {c: row.get(c) for c in schema.names}
        if kind == "shards" and isinstance(norm["layers"], list):
            norm["layers"] = [_layer_scores_as_list(lay) for lay in norm["layers"]]
            for j, lay in enumerate(norm["layers"]):
                gaps = [f for f in _LAYER_REQUIRED if not isinstance(lay, dict) or lay.get(f) is None]
                if gaps:
                    raise ValueError(f"shards row {i} (sample_id={row.get('sample_id')!r}) layer {j} misses required "
                                     f"fields {gaps}")
        normalised.append(norm)
    try:
        table = pa.Table.from_pylist(normalised, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        raise ValueError(f"{kind} rows do not fit the schema: {e}") from e
    return table.cast(_disk_schema(kind))


# ---------------------------------------------------------------- atomic file writes


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def _write_parquet_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _write_bytes_atomic(payload: bytes, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
