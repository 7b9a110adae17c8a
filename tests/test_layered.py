"""The storage rule of schema v2 (layers cut to their boxes, the background stored where it differs
from the photo) and the reader, checked against layers made from known parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from add_pipeline.io import LayeredShards, ReaderError
from add_pipeline.io.images import decode_png, encode_png
from add_pipeline.io.layered import decode_row, pack_layer, place
from add_pipeline.io.shards import SHARD_SCHEMA_V1, ShardStore
from tests.layered_fixtures import known_layers, write_known_out


def _same_layer(got: np.ndarray, want: np.ndarray) -> None:
    """Equal alpha everywhere and equal straight colour wherever alpha > 0 (colour under alpha 0 has
    no meaning and is stored as 0)."""
    assert got.shape == want.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got[..., 3], want[..., 3])
    seen = want[..., 3] > 0
    np.testing.assert_array_equal(got[seen, :3], want[seen, :3])


@pytest.mark.parametrize("codec", ["webp", "png"])
def test_rows_decode_to_the_known_layers_exactly(tmp_path: Path, codec: str) -> None:
    truth = write_known_out(tmp_path, ["a", "b", "c"], codec=codec)
    shards = LayeredShards(tmp_path)
    assert shards.ids() == ["a", "b", "c"]
    for sample in shards:
        photo, layers = truth[sample.sample_id]
        np.testing.assert_array_equal(sample.image, photo)
        assert [lay.kind for lay in sample.layers] == ["background", "shadow", "object"]
        assert sample.layers[1].parent == "obj0"
        for got, want in zip(sample.layers, layers, strict=True):
            _same_layer(got.rgba, want.rgba)
        assert np.abs(sample.composite().astype(int) - photo).max() <= 1
        assert sample.layers[2].scores["alpha_solidity"] >= 0.9 and sample.layers[0].scores == {"seam": 1.5}
        assert sample.meta["note"] in (0, 1, 2)


def test_layers_are_stored_cut_to_their_boxes(tmp_path: Path) -> None:
    write_known_out(tmp_path, ["a"])
    row = ShardStore(tmp_path).read_table("shards").to_pylist()[0]
    photo, layers = known_layers(0)
    for lay, want in zip(row["layers"], layers, strict=True):
        stored = decode_png(lay["image"]["bytes"])
        x0, y0, x1, y1 = lay["bbox"]
        assert stored.shape[:2] == (y1 - y0, x1 - x0)
        if lay["kind"] == "background":
            assert lay["fill"] == "image"
            differs = (want.rgba[..., :3] != photo).any(-1)
            ys, xs = np.nonzero(differs)
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == lay["bbox"]  # only where it differs
            np.testing.assert_array_equal(stored[..., 3] > 0, differs[y0:y1, x0:x1])
        else:
            assert lay["fill"] is None
            ys, xs = np.nonzero(want.rgba[..., 3])
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == lay["bbox"]
    assert (x1 - x0) * (y1 - y0) < photo.shape[0] * photo.shape[1]


def test_empty_layer_and_background_equal_to_photo() -> None:
    photo, layers = known_layers(1)
    empty = np.zeros_like(layers[2].rgba)
    data, box = pack_layer(empty, photo, fill=False)
    assert box == (0, 0, 0, 0)
    np.testing.assert_array_equal(place(decode_png(data), box, photo.shape[1], photo.shape[0], None), empty)
    opaque = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    data, box = pack_layer(opaque, photo, fill=True)
    assert box == (0, 0, 0, 0)
    np.testing.assert_array_equal(place(decode_png(data), box, photo.shape[1], photo.shape[0], photo), opaque)
    with pytest.raises(ValueError, match="opaque"):
        pack_layer(layers[2].rgba, photo, fill=True)


def test_schema_v1_rows_still_decode(tmp_path: Path) -> None:
    """A part written by the v1 encoder (full-canvas PNG layers, scores as a map, no version metadata)."""
    photo, layers = known_layers(2)
    h, w = photo.shape[:2]
    v1_layers = []
    for z, lay in enumerate(layers):
        ys, xs = np.nonzero(lay.rgba[..., 3])
        box = [0, 0, w, h] if lay.kind == "background" else [int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                                                             int(ys.max()) + 1]
        v1_layers.append({"name": lay.name, "kind": lay.kind, "z": z, "image": {"bytes": encode_png(lay.rgba),
                          "path": None}, "bbox": box, "parent": lay.parent, "scores": [("q", 0.5)]})
    row = {"sample_id": "old", "source": "/x.png", "source_kind": "decomposed", "width": w, "height": h,
           "image": {"bytes": encode_png(photo), "path": None}, "layers": v1_layers, "status": "accepted",
           "trace_id": "t", "workflow": "cpu-default", "meta": json.dumps({"v": 1})}
    for sub in ("shards", "_commits"):
        (tmp_path / sub).mkdir()
    pq.write_table(pa.Table.from_pylist([row], schema=SHARD_SCHEMA_V1), tmp_path / "shards" / "part-00000.parquet")
    (tmp_path / "_commits" / "part-00000.json").write_text(json.dumps(
        {"part": 0, "files": {"shards": "shards/part-00000.parquet"}, "rows": {"shards": 1}}))
    assert ShardStore(tmp_path).schema_versions() == {1: ["shards/part-00000.parquet"]}
    sample = LayeredShards(tmp_path).get("old")
    for got, want in zip(sample.layers, layers, strict=True):
        _same_layer(got.rgba, want.rgba)
    assert sample.layers[1].scores == {"q": 0.5}
    upgraded = ShardStore(tmp_path).read_table("shards").to_pylist()[0]
    assert upgraded["layers"][0]["scores"] == [{"name": "q", "value": 0.5}] and decode_row(upgraded).meta == {"v": 1}


def test_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    write_known_out(tmp_path, ["a"])
    part = tmp_path / "shards" / "part-00000.parquet"
    table = pq.read_table(part)
    meta = dict(table.schema.metadata)
    meta[b"liwi"] = json.dumps({"schema_version": 99, "table": "shards"}).encode()
    pq.write_table(table.replace_schema_metadata(meta), part)
    with pytest.raises(ValueError, match="schema v99, newer than this liwi reads.*upgrade add-pipeline"):
        list(LayeredShards(tmp_path))


def test_selection_by_ids_where_and_limit(tmp_path: Path) -> None:
    write_known_out(tmp_path, ["a", "b", "c", "d", "e"])
    assert LayeredShards(tmp_path, ids=["d", "b"]).ids() == ["b", "d"]  # part order
    chosen = LayeredShards(tmp_path, where="sample_id >= 'c' and n_objects = 1 and n_shadows = 1")
    assert chosen.ids() == ["c", "d", "e"]
    assert LayeredShards(tmp_path, where="json_extract(meta, '$.note')::int % 2 = 0").ids() == ["a", "c", "e"]
    assert LayeredShards(tmp_path, limit=2).ids() == ["a", "b"]
    with pytest.raises(ReaderError, match="no committed sample with id 'zz'"):
        LayeredShards(tmp_path, ids=["zz"])
    with pytest.raises(ReaderError, match="not a valid SQL expression"):
        LayeredShards(tmp_path, where="1; copy (select 1) to 'x.csv'")
    with pytest.raises(ReaderError, match="file system operations are disabled"):
        LayeredShards(tmp_path, where="sample_id in (select * from read_csv('/etc/hostname'))")
    with pytest.raises(ReaderError, match="not a liwi output folder"):
        LayeredShards(tmp_path / "shards")


def test_split_gives_every_sample_to_exactly_one_share(tmp_path: Path) -> None:
    write_known_out(tmp_path, [f"s{i}" for i in range(7)], shard_size=2)  # 4 parts
    shards = LayeredShards(tmp_path)
    for world in (1, 2, 3, 4, 5, 8):
        shares = [shards.split(r, world) for r in range(world)]
        assert sorted(i for s in shares for i in s) == list(range(7)), world
        assert max(map(len, shares)) - min(map(len, shares)) <= 1, world  # balanced: DDP ranks stay in step
    # contiguous: a reader opens only the parts its run touches (2 readers of 4 parts: at most 3 between them)
    parts = {i: shards._entries[i].part for i in range(7)}
    assert len({parts[i] for i in shards.split(0, 2)}) + len({parts[i] for i in shards.split(1, 2)}) <= 5
