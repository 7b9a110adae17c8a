"""ShardStore: commit / read round trip, crash leftovers, overwrite, part numbering."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from add_pipeline.io.hf import arrow_nullable
from add_pipeline.io.images import encode_png
from add_pipeline.io.layered import SCHEMA_VERSION, decode_row
from add_pipeline.io.shards import REJECT_SCHEMA, SHARD_SCHEMA, TRACE_SCHEMA, ShardStore

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def accepted_row(sid: str) -> dict:
    rgb = np.full((8, 10, 3), 7, np.uint8)
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[2:5, 3:6] = (1, 2, 3, 255)
    return {
        "sample_id": sid,
        "source": f"/in/{sid}.png",
        "source_kind": "file",
        "width": 10,
        "height": 8,
        "image": {"bytes": encode_png(rgb), "path": None},
        "layers": [
            {
                "name": "background",
                "kind": "background",
                "z": 0,
                "image": {"bytes": encode_png(np.dstack([rgb, np.full((8, 10), 255, np.uint8)])), "path": None},
                "bbox": [0, 0, 10, 8],
                "parent": None,
                "scores": {},
            },
            {
                "name": "obj0",
                "kind": "object",
                "z": 1,
                "image": {"bytes": encode_png(rgba), "path": None},
                "bbox": [3, 2, 6, 5],
                "parent": None,
                "scores": {"alpha_iou": 0.75},
            },
        ],
        "status": "accepted",
        "trace_id": f"t-{sid}",
        "workflow": "classic",
        "meta": json.dumps({"notes": []}),
    }


def reject_row(sid: str) -> dict:
    return {
        "sample_id": sid,
        "source": f"/in/{sid}.jpg",
        "stage": "load",
        "reason": "empty file",
        "trace_id": f"t-{sid}",
        "workflow": "classic",
        "rejected_at": NOW,
    }


def trace_row(sid: str, seq: int) -> dict:
    return {
        "trace_id": f"t-{sid}",
        "sample_id": sid,
        "seq": seq,
        "node": "segment",
        "tool": "grabcut",
        "started_at": NOW,
        "duration_s": 0.25,
        "input": "{}",
        "output": "{}",
        "attempt": 1,
    }  # decision and error left out: nullable


def test_round_trip_with_schemas(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    store.prepare(overwrite=False)
    n = store.commit([accepted_row("a"), accepted_row("b")], [reject_row("c")], [trace_row("a", 0), trace_row("a", 1)])
    assert n == 0
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["part-00000.parquet"]
    marker = json.loads((tmp_path / "_commits" / "part-00000.json").read_text())
    assert marker["rows"] == {"shards": 2, "rejects": 1, "traces": 2}
    assert marker["sample_ids"]["shards"] == ["a", "b"]

    shards, traces, rejects = (store.read_table(k) for k in ("shards", "traces", "rejects"))
    assert shards.schema.equals(SHARD_SCHEMA)
    assert traces.schema.equals(TRACE_SCHEMA)
    assert rejects.schema.equals(REJECT_SCHEMA)
    on_disk = pq.read_schema(tmp_path / "shards" / "part-00000.parquet")
    assert on_disk.equals(arrow_nullable(SHARD_SCHEMA))  # every field nullable, as datasets compares them
    assert json.loads(on_disk.metadata[b"liwi"]) == {"schema_version": SCHEMA_VERSION, "table": "shards"}
    assert b"huggingface" in on_disk.metadata

    row = shards.to_pylist()[1]
    assert row["sample_id"] == "b" and row["width"] == 10
    obj = row["layers"][1]
    assert obj["bbox"] == [3, 2, 6, 5] and obj["parent"] is None
    assert obj["scores"] == [{"name": "alpha_iou", "value": 0.75}]  # a name/value list: datasets has no map
    assert tuple(decode_row(row).layers[1].rgba[3, 4]) == (1, 2, 3, 255)
    assert traces.column("decision").null_count == 2
    assert traces.column("started_at").to_pylist()[0] == NOW
    assert rejects.column("reason").to_pylist() == ["empty file"]
    assert store.done_ids() == {"a", "b", "c"}


def test_empty_store_and_empty_commit(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "out")
    store.prepare(overwrite=False)
    assert store.commit([], [], []) is None
    assert store.done_ids() == set()
    for kind, schema in (("shards", SHARD_SCHEMA), ("traces", TRACE_SCHEMA), ("rejects", REJECT_SCHEMA)):
        table = store.read_table(kind)
        assert table.num_rows == 0 and table.schema.equals(schema)
    with pytest.raises(ValueError, match="unknown table kind"):
        store.read_table("bogus")  # type: ignore[arg-type]


def test_bad_rows_are_rejected_before_writing(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    store.prepare(overwrite=False)
    row = accepted_row("a")
    del row["trace_id"]
    with pytest.raises(ValueError, match=r"misses required columns \['trace_id'\]"):
        store.commit([row], [], [])
    with pytest.raises(ValueError, match="unknown columns"):
        store.commit([], [{**reject_row("r"), "colour": "red"}], [])
    with pytest.raises(ValueError, match="do not fit the schema"):
        store.commit([{**accepted_row("a"), "width": "wide"}], [], [])
    with pytest.raises(ValueError, match="more than once"):
        store.commit([accepted_row("a")], [reject_row("a")], [])
    assert list((tmp_path / "shards").iterdir()) == []
    assert list((tmp_path / "_commits").iterdir()) == []


def test_crash_leftovers_are_removed_on_prepare(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    store.prepare(overwrite=False)
    assert store.commit([accepted_row("a")], [], [trace_row("a", 0)]) == 0
    # simulate a crash during part 1: the parquet files landed, the marker did not
    assert store.commit([accepted_row("b")], [reject_row("c")], [trace_row("b", 0)]) == 1
    (tmp_path / "_commits" / "part-00001.json").unlink()
    (tmp_path / "shards" / "part-00002.parquet.tmp").write_bytes(b"half")
    (tmp_path / "_commits" / "part-00002.json.tmp").write_bytes(b"{")

    reopened = ShardStore(tmp_path)
    assert reopened.read_table("shards").column("sample_id").to_pylist() == ["a"]
    assert reopened.done_ids() == {"a"}
    reopened.prepare(overwrite=False)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["part-00000.parquet"]
    assert sorted(p.name for p in (tmp_path / "rejects").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "traces").iterdir()) == ["part-00000.parquet"]
    assert sorted(p.name for p in (tmp_path / "_commits").iterdir()) == ["part-00000.json"]
    assert reopened.done_ids() == {"a"}


def test_numbering_continues_after_reopen(tmp_path: Path) -> None:
    first = ShardStore(tmp_path)
    first.prepare(overwrite=False)
    assert first.commit([accepted_row("a")], [], []) == 0
    assert first.commit([], [reject_row("b")], []) == 1
    assert first.commit([], [], [trace_row("a", 0)]) == 2  # traces alone still take a part

    second = ShardStore(tmp_path)
    second.prepare(overwrite=False)
    assert second.commit([accepted_row("c")], [], []) == 3
    assert second.done_ids() == {"a", "b", "c"}
    assert second.read_table("shards").column("sample_id").to_pylist() == ["a", "c"]


def test_overwrite_clears_only_store_folders(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    store.prepare(overwrite=False)
    store.commit([accepted_row("a")], [reject_row("b")], [trace_row("a", 0)])
    (tmp_path / "config.yaml").write_text("keep: me\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.log").write_text("keep")

    store.prepare(overwrite=True)
    assert store.done_ids() == set()
    assert store.read_table("shards").num_rows == 0
    assert (tmp_path / "config.yaml").read_text() == "keep: me\n"
    assert (tmp_path / "logs" / "run.log").exists()
    assert store.commit([accepted_row("z")], [], []) == 0
