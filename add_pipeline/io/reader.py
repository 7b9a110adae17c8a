"""``LayeredShards``: the public reader of an output folder's committed samples.

    from add_pipeline.io import LayeredShards
    shards = LayeredShards("out/demo", where="source_kind = 'decomposed' and n_objects >= 2")
    for sample in shards:            # LayeredSample: image, layers (full canvas), scores, meta
        ...

Only committed parts are read (a folder another job is still writing is safe to read).  The
index (sample ids per part and row) is built once from the ``sample_id`` column; rows are read
part by part and decoded one at a time, so memory holds one part's compressed bytes and one
decoded sample.  :meth:`LayeredShards.split` gives one DataLoader worker / distributed rank its
share (contiguous, balanced), every sample in exactly one share.

``where`` is a SQL boolean expression over one row per sample with the columns ``sample_id``,
``source``, ``source_kind``, ``width``, ``height``, ``status``, ``trace_id``, ``workflow``, ``meta``
(JSON text), ``n_layers``, ``n_objects``, ``n_shadows`` and ``layers`` (name, kind, z, bbox,
parent, scores, fill: no pixels).  It runs in DuckDB with no file access
(:func:`~add_pipeline.exec.stats.connect`'s sandbox), as one expression: a second statement is
refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from add_pipeline.io.layered import LayeredSample, decode_row
from add_pipeline.io.shards import COMMITS_DIR, ShardStore, drop_layer_pixels, read_part, read_part_without_pixels

FILTER_COLUMNS = ("sample_id", "source", "source_kind", "width", "height", "status", "trace_id", "workflow", "meta",
                  "layers")


class ReaderError(ValueError):
    """The folder cannot be read as asked (not a shard folder, a bad filter, an unknown id)."""


@dataclass(frozen=True)
class _Entry:
    """Where one selected sample lives: part file and row number in it."""

    sample_id: str
    part: Path
    row: int


class LayeredShards:
    """The committed samples of one output folder (``liwi run`` / ``compose`` / ``synth``), in part order.

    Args:
        out: the output folder (it has ``_commits/``).
        ids: keep only these sample ids (an id that is not committed is an error).
        where: keep only rows for which this SQL expression holds (see the module docstring).
        limit: keep at most this many (after ``ids`` and ``where``).
    Raises:
        ReaderError: ``out`` is not a shard folder, ``where`` is not one valid expression, an id in
            ``ids`` is not committed, or a sample id is committed twice.
    """

    def __init__(self, out: str | Path, ids: Iterable[str] | None = None, where: str | None = None,
                 limit: int | None = None) -> None:
        self.out = Path(out)
        if not (self.out / COMMITS_DIR).is_dir():
            raise ReaderError(f"{self.out} is not a liwi output folder (no {COMMITS_DIR}/); give the --out of a "
                              "liwi run, compose or synth")
        self._parts = ShardStore(self.out).committed_files("shards")
        entries: list[_Entry] = []
        seen: set[str] = set()
        for part in self._parts:
            for i, sid in enumerate(pq.read_table(part, columns=["sample_id"]).column("sample_id").to_pylist()):
                if sid in seen:
                    raise ReaderError(f"{self.out}: sample {sid!r} is committed more than once (liwi stats lists "
                                      "duplicates)")
                seen.add(sid)
                entries.append(_Entry(sid, part, i))
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            missing = [s for s in wanted if s not in seen]
            if missing:
                raise ReaderError(f"{self.out}: no committed sample with id {missing[0]!r}"
                                  + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            keep = set(wanted)
            entries = [e for e in entries if e.sample_id in keep]
        if where:
            keep = self._matching(where)
            entries = [e for e in entries if e.sample_id in keep]
        if limit is not None:
            entries = entries[: max(0, int(limit))]
        self._entries = entries

    # ------------------------------------------------------------ selection

    def scalar_table(self) -> pa.Table:
        """One row per committed sample with the :data:`FILTER_COLUMNS` and the layer counts (no pixels)."""
        tables = []
        for part in self._parts:
            t = read_part_without_pixels(part, list(FILTER_COLUMNS))  # the layers' pixels are never read
            layers = t.column("layers").combine_chunks()
            kinds = pc.list_flatten(layers).field("kind")
            parents = pc.list_parent_indices(layers)
            counts = {k: [0] * len(t) for k in ("object", "shadow")}
            for row, kind in zip(parents.to_pylist(), kinds.to_pylist(), strict=True):
                if kind in counts:
                    counts[kind][row] += 1
            t = t.append_column("n_layers", pc.list_value_length(layers).cast(pa.int32()))
            t = t.append_column("n_objects", pa.array(counts["object"], pa.int32()))
            t = t.append_column("n_shadows", pa.array(counts["shadow"], pa.int32()))
            tables.append(t)
        if not tables:
            return read_part_schema_empty()
        return pa.concat_tables(tables)

    def _matching(self, where: str) -> set[str]:
        import duckdb

        sql = f"select sample_id from samples where ({where})"
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as e:
            raise ReaderError(f"--where {where!r} is not a valid SQL expression: {str(e).splitlines()[0]}") from e
        if len(statements) != 1:
            raise ReaderError(f"--where {where!r} must be one expression, not several statements")
        con = duckdb.connect()
        try:
            con.register("samples", self.scalar_table())
            con.execute("set enable_external_access = false")
            con.execute("set lock_configuration = true")
            rows = con.execute(sql).fetchall()
        except duckdb.Error as e:
            raise ReaderError(f"--where {where!r} failed: {str(e).splitlines()[0]}") from e
        finally:
            con.close()
        return {r[0] for r in rows}

    # ------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> list[str]:
        """The selected sample ids, in part order."""
        return [e.sample_id for e in self._entries]

    def rows(self, indices: Sequence[int] | None = None) -> Iterator[dict]:
        """The selected raw rows (dicts, compressed images), or those at ``indices`` of :meth:`ids`,
        in the order given; one part file is read at a time."""
        chosen = self._entries if indices is None else [self._entries[i] for i in indices]
        i = 0
        while i < len(chosen):
            part = chosen[i].part
            j = i
            while j < len(chosen) and chosen[j].part == part:
                j += 1
            table = self._table(part)
            for row in table.take(pa.array([e.row for e in chosen[i:j]], pa.int64())).to_pylist():
                yield row
            i = j

    def _table(self, part: Path) -> pa.Table:
        """One part file's table; the last one read is kept (one part's compressed bytes), so
        consecutive random reads from the same part read it once."""
        cached = getattr(self, "_cached", None)
        if cached is None or cached[0] != part:
            self._cached = (part, read_part(part, "shards"))
        return self._cached[1]

    def __iter__(self) -> Iterator[LayeredSample]:
        for row in self.rows():
            yield decode_row(row)

    def __getitem__(self, index: int) -> LayeredSample:
        """The ``index``-th selected sample (reads its part file: for many random reads hold
        :meth:`rows` instead)."""
        return decode_row(next(self.rows([index])))

    def get(self, sample_id: str) -> LayeredSample:
        """The sample with this id."""
        for i, e in enumerate(self._entries):
            if e.sample_id == sample_id:
                return self[i]
        raise ReaderError(f"{self.out}: no selected sample with id {sample_id!r}")

    def split(self, rank: int, world: int) -> list[int]:
        """Indices (into :meth:`ids`) of share ``rank`` of ``world``: a contiguous run of the selected
        samples in part order, so a reader opens only the part files its run touches and the shares
        differ in size by at most one. Together they hold every selected sample exactly once."""
        if world < 1 or not 0 <= rank < world:
            raise ReaderError(f"rank {rank} of world {world} is not a valid share")
        n = len(self._entries)
        return list(range(rank * n // world, (rank + 1) * n // world))


def read_part_schema_empty() -> pa.Table:
    """An empty :meth:`LayeredShards.scalar_table`."""
    from add_pipeline.io.shards import SHARD_SCHEMA

    base = pa.schema([SHARD_SCHEMA.field(c) for c in FILTER_COLUMNS])
    empty = base.empty_table()
    at = empty.schema.get_field_index("layers")
    empty = empty.set_column(at, "layers", drop_layer_pixels(empty.column("layers")))
    return empty.append_column("n_layers", pa.array([], pa.int32())).append_column(
        "n_objects", pa.array([], pa.int32())).append_column("n_shadows", pa.array([], pa.int32()))
