"""``liwi export``: every format read back by an independent reader gives the known layers.

The fixture commits samples whose layers are known exactly (synthetic scenes: an opaque textured
background, objects with soft alpha edges, each with its soft black shadow; the photo is their
composite), under ids that try to leave the folder.  Each format is read back with a reader that
is not ours (the ``webdataset`` package, ``psd_tools``, ``zipfile`` + XML, the LayerD folder
reader) and compared with the known layers.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from add_pipeline.cli import main
from add_pipeline.core.peel import AssembledLayer
from add_pipeline.core.synthetic import make_scene
from add_pipeline.eval.readers import read_folder_stacks
from add_pipeline.export import EXPORTERS, ExportError, ExportOptions, build_exporter, export
from add_pipeline.export.cli import FORMATS
from add_pipeline.export.layerd import LayerdExporter
from add_pipeline.export.ora import OraExporter
from add_pipeline.export.psd import PsdExporter
from add_pipeline.export.webdataset import WebDatasetExporter, wds_key
from add_pipeline.io.lock import output_lock
from add_pipeline.io.shards import ShardStore
from add_pipeline.tools.encoder import LayeredRowEncoder

ROOT = Path(__file__).resolve().parents[1]
MAIN = "scene-a"
HOSTILE = ["../evil", "/abs", "a/b.c", "a%2Fb.c", "日本語 ü.png", "export.json"]


def _over(layers: list[np.ndarray]) -> np.ndarray:
    """Straight-alpha 'over', back to front, written here independently of ``core.composite``: HxWx3 float [0, 255]."""
    out = np.zeros(layers[0].shape[:2] + (3,))
    for rgba in layers:
        a = rgba[..., 3:4] / 255.0
        out = rgba[..., :3] * a + out * (1.0 - a)
    return out


def _scene(seed: int, size: tuple[int, int], n_objects: int) -> tuple[np.ndarray, list[AssembledLayer]]:
    scene = make_scene(seed, size=size, n_objects=n_objects)
    arrays = scene.layers()
    layers = [AssembledLayer("background", "background", arrays[0], None)]
    for i in range(n_objects):
        layers.append(AssembledLayer(f"obj{i}_shadow", "shadow", arrays[1 + 2 * i], f"obj{i}"))
        layers.append(AssembledLayer(f"obj{i}", "object", arrays[2 + 2 * i], None))
    return scene.image, layers


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> tuple[Path, dict[str, tuple[np.ndarray, list[AssembledLayer]]]]:
    """A committed OUT: ``scene-a`` (200x320, two objects, two shadows) and one small sample per hostile id."""
    out = tmp_path_factory.mktemp("known") / "out"
    samples = {MAIN: _scene(7, (200, 320), 2)}
    for i, sid in enumerate(HOSTILE):
        samples[sid] = _scene(20 + i, (64, 80), 1 + i % 2)
    image, layers = samples[MAIN]
    alpha = layers[2].rgba[..., 3]
    assert ((alpha > 0) & (alpha < 255)).sum() > 50, "the object must have a soft edge for this test to mean much"
    assert (layers[1].rgba[..., 3] > 0).sum() > 50, "the object must cast a shadow"
    assert np.array_equal(np.round(_over([lay.rgba for lay in layers])).astype(np.uint8), image)
    encoder = LayeredRowEncoder()
    rows = []
    for sid, (img, lays) in samples.items():
        scores = {lay.name: {"alpha_solidity": 0.5 + 0.01 * k} for k, lay in enumerate(lays) if lay.kind == "object"}
        row = encoder(sid, f"synthetic://{sid}", img, lays, scores, {"note": "known"})
        rows.append({**row, "trace_id": f"t-{len(rows)}", "workflow": "handmade"})
    store = ShardStore(out)
    store.commit(rows[:3], [], [])
    store.commit(rows[3:], [], [])  # two parts: the reader reads across them
    return out, samples


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", *args, "--no-progress"])
    return result.exit_code, result.output


def _check_layer(rgba: np.ndarray, expected: np.ndarray, where: str) -> None:
    """Alpha equal everywhere, colour equal where alpha > 0 (straight colour has no meaning under alpha 0)."""
    assert rgba.shape == expected.shape, where
    assert np.array_equal(rgba[..., 3], expected[..., 3]), f"{where}: alpha differs"
    seen = expected[..., 3] > 0
    assert np.array_equal(rgba[..., :3][seen], expected[..., :3][seen]), f"{where}: colour differs"


def _place(crop: np.ndarray, x: int, y: int, h: int, w: int) -> np.ndarray:
    canvas = np.zeros((h, w, 4), np.uint8)
    canvas[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
    return canvas


def _rgba(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def _tight(rgba: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(rgba[..., 3])
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _no_temp_left(dest: Path) -> None:
    left = [p for p in dest.rglob("*") if p.name.startswith(".tmp-")]
    assert not left, f"temporary entries left: {left}"


# ---------------------------------------------------------------- registry


def test_registry_names_the_formats(tmp_path):
    assert tuple(EXPORTERS) == FORMATS
    with pytest.raises(ExportError, match="webdataset, psd, ora, layerd"):
        build_exporter("tiff", tmp_path)
    assert isinstance(build_exporter("webdataset", tmp_path, samples_per_tar=5), WebDatasetExporter)
    with pytest.raises(ExportError, match="samples-per-tar"):
        build_exporter("webdataset", tmp_path, samples_per_tar=0)


# ---------------------------------------------------------------- round trips


def test_webdataset_round_trip(known, tmp_path):
    import webdataset as wds

    out, samples = known
    dest = tmp_path / "wds"
    code, text = _run(str(out), "--format", "webdataset", "--out", str(dest), "--samples-per-tar", "3")
    assert code == 0, text
    tars = sorted(dest.glob("shard-*.tar"))
    assert [p.name for p in tars] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    seen: dict[str, dict] = {}
    for item in wds.WebDataset([str(p) for p in tars], shardshuffle=False):
        meta = json.loads(item["json"])
        key = item["__key__"]
        assert "." not in key and "/" not in key and key == wds_key(meta["sample_id"])
        assert meta["sample_id"] not in seen
        seen[meta["sample_id"]] = {"meta": meta, "item": item}
    assert set(seen) == set(samples)
    for sid, (image, layers) in samples.items():
        meta, item = seen[sid]["meta"], seen[sid]["item"]
        assert np.array_equal(_rgba(item["image.png"])[..., :3], image)
        assert (meta["width"], meta["height"]) == (image.shape[1], image.shape[0])
        assert [(m["name"], m["kind"], m["z"], m["parent"]) for m in meta["layers"]] == \
               [(lay.name, lay.kind, z, lay.parent) for z, lay in enumerate(layers)]
        got = [_rgba(item[m["ext"]]) for m in meta["layers"]]
        for g, lay in zip(got, layers, strict=True):
            _check_layer(g, lay.rgba, f"{sid}/{lay.name}")
        assert np.abs(_over(got) - image).max() <= 1.0
    scores = seen[MAIN]["meta"]["layers"][2]["scores"]
    assert scores == {"alpha_solidity": pytest.approx(0.52)}


def test_psd_round_trip(known, tmp_path):
    from psd_tools import PSDImage

    out, samples = known
    dest = tmp_path / "psd"
    code, text = _run(str(out), "--format", "psd", "--out", str(dest), "--ids", MAIN)
    assert code == 0, text
    image, layers = samples[MAIN]
    h, w = image.shape[:2]
    psd = PSDImage.open(dest / f"{MAIN}.psd")
    assert psd.size == (w, h)
    got = list(psd)  # bottom first
    assert [g.name for g in got] == [lay.name for lay in layers]
    for i, (g, lay) in enumerate(zip(got, layers, strict=True)):
        assert g.kind == "pixel" and g.visible and g.opacity == 255
        crop = np.asarray(g.topil().convert("RGBA"))
        if lay.kind == "background":
            assert (g.left, g.top, g.right, g.bottom) == (0, 0, w, h)
            assert (crop[..., 3] == 255).all()
        else:
            x0, y0, x1, y1 = _tight(lay.rgba)
            assert (g.left, g.top, g.right, g.bottom) == (x0, y0, x1, y1), f"{lay.name} is not placed at its box"
        _check_layer(_place(crop, g.left, g.top, h, w), lay.rgba, lay.name)
        if lay.kind == "shadow":
            assert got[i + 1].name == lay.parent, "a shadow lies directly under its object"
    assert np.abs(np.asarray(psd.composite().convert("RGB")).astype(int) - image).max() <= 1
    assert psd.has_preview()
    with Image.open(dest / f"{MAIN}.psd") as other:  # a second reader (Pillow's) sees the same layers and boxes
        boxes = [(0, 0, w, h) if lay.kind == "background" else _tight(lay.rgba) for lay in layers]
        assert [(item[0], tuple(item[2])) for item in other.layers] == list(zip([lay.name for lay in layers], boxes))
    assert np.abs(np.asarray(psd.topil().convert("RGB")).astype(int) - image).max() <= 1  # the merged image


def test_ora_round_trip(known, tmp_path):
    out, samples = known
    dest = tmp_path / "ora"
    code, text = _run(str(out), "--format", "ora", "--out", str(dest), "--ids", MAIN)
    assert code == 0, text
    image, layers = samples[MAIN]
    h, w = image.shape[:2]
    with zipfile.ZipFile(dest / f"{MAIN}.ora") as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED and not first.extra
        assert zf.read("mimetype") == b"image/openraster"
        root = ET.fromstring(zf.read("stack.xml"))
        assert (root.tag, root.get("version"), root.get("w"), root.get("h")) == ("image", "0.0.3", str(w), str(h))
        stacks = root.findall("stack")
        assert len(stacks) == 1
        nodes = list(stacks[0])
        assert all(n.tag == "layer" for n in nodes)
        nodes = nodes[::-1]  # the spec lists the top layer first
        assert [n.get("name") for n in nodes] == [lay.name for lay in layers]
        stacked = []
        for n, lay in zip(nodes, layers, strict=True):
            assert (n.get("opacity"), n.get("visibility"), n.get("composite-op")) == ("1.0", "visible", "svg:src-over")
            crop = _rgba(zf.read(n.get("src")))
            x, y = int(n.get("x")), int(n.get("y"))
            if lay.kind != "background":
                assert (x, y, x + crop.shape[1], y + crop.shape[0]) == _tight(lay.rgba), "cropped to its box"
            placed = _place(crop, x, y, h, w)
            _check_layer(placed, lay.rgba, lay.name)
            stacked.append(placed)
        assert np.abs(_over(stacked) - image).max() <= 1.0
        merged = _rgba(zf.read("mergedimage.png"))
        assert merged.shape[:2] == (h, w) and np.abs(merged[..., :3].astype(int) - image).max() <= 1
        thumb = Image.open(io.BytesIO(zf.read("Thumbnails/thumbnail.png")))
        assert thumb.size == (256, 160)  # 320x200 shrunk to fit 256x256


def test_layerd_round_trip_and_eval(known, tmp_path):
    from add_pipeline.eval.report import evaluate

    out, samples = known
    dest = tmp_path / "layerd"
    code, text = _run(str(out), "--format", "layerd", "--out", str(dest), "--ids", MAIN)
    assert code == 0, text
    image, layers = samples[MAIN]
    stacks = read_folder_stacks(dest)
    assert list(stacks) == [MAIN]
    got = stacks[MAIN]
    assert [g.kind for g in got] == [lay.kind for lay in layers]
    names = {lay.name: g.name for g, lay in zip(got, layers, strict=True)}  # our name -> the file stem
    for g, lay in zip(got, layers, strict=True):
        assert g.parent == (names[lay.parent] if lay.parent else None), f"{g.name}: parent {g.parent}"
        assert np.array_equal(g.rgba[..., 3], lay.rgba[..., 3])
        _check_layer(g.rgba, lay.rgba, lay.name)
    record = json.loads((dest / MAIN / "layers.json").read_text())
    assert record["sample_id"] == MAIN and [m["name"] for m in record["layers"]] == [lay.name for lay in layers]
    report = evaluate(dest, out)  # liwi eval --pred DIR --gt OUT: the one shared sample scores perfectly
    assert report["unmatched"]["pred_only"] == [] and len(report["unmatched"]["gt_only"]) == len(HOSTILE)
    assert report["count"] == 1 and report["failed"] == []
    kinds = report["kinds"]
    assert (kinds["matched_objects"], kinds["matched_shadows"]) == (2, 2)
    assert kinds["object_iou"] == pytest.approx(1.0) and kinds["shadow_iou"] == pytest.approx(1.0)
    assert report["levels"][0]["alpha_iou"] == pytest.approx(1.0) and report["levels"][0]["rgb_l1"] == 0


def test_layerd_names_never_change_the_kind(tmp_path):
    from add_pipeline.export.layerd import layer_files
    from add_pipeline.io.layered import Layer

    blank = np.zeros((4, 4, 4), np.uint8)
    lays = [Layer("Shadowland background", "background", 0, (0, 0, 0, 0), None, {}, blank),
            Layer("BACKGROUND shadow", "object", 1, (0, 0, 0, 0), None, {}, blank),
            Layer("x", "shadow", 2, (0, 0, 0, 0), "nobody", {}, blank)]
    files = layer_files(lays)
    assert files[0].startswith("00_background_") and "shadow" not in files[0].lower()
    assert "shadow" not in files[1].lower() and "background" not in files[1].lower()
    assert files[2] == "02_shadow_x.png"


# ---------------------------------------------------------------- ids, selection


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_ids_stay_inside_and_distinct(known, tmp_path, fmt):
    out, samples = known
    box = tmp_path / "box"
    box.mkdir()
    dest = box / "dest"
    code, text = _run(str(out), "--format", fmt, "--out", str(dest))
    assert code == 0, text
    assert [p.name for p in box.iterdir()] == ["dest"], "nothing is written beside DIR"
    assert not (tmp_path / "abs").exists() and not (tmp_path / "evil").exists()
    for p in dest.rglob("*"):
        assert p.resolve().is_relative_to(dest.resolve()), p
    record = json.loads((dest / "export.json").read_text())
    assert record["status"] == "complete" and record["count"] == len(samples)
    assert sorted(s["id"] for s in record["samples"]) == sorted(samples)
    if fmt == "webdataset":
        with tarfile.open(dest / "shard-000000.tar") as tf:
            metas = [json.load(tf.extractfile(m)) for m in tf.getmembers() if m.name.endswith(".json")]
        assert sorted(m["sample_id"] for m in metas) == sorted(samples)
        return
    entries = [p for p in dest.iterdir() if not p.name.startswith(".") and p.name != "export.json"]
    assert len(entries) == len(samples) == len({s["path"] for s in record["samples"]})
    assert {p.name for p in entries} == {s["path"] for s in record["samples"]}
    if fmt == "layerd":
        ids = {json.loads((p / "layers.json").read_text())["sample_id"] for p in entries}
        assert ids == set(samples)


@pytest.mark.parametrize(("args", "expected"), [
    (["--where", "n_objects >= 2"], [MAIN] + [s for i, s in enumerate(HOSTILE) if i % 2 == 1]),
    (["--ids", "a/b.c", "--ids", MAIN], [MAIN, "a/b.c"]),
    (["--limit", "2"], [MAIN, HOSTILE[0]]),
    (["--where", "source like 'synthetic://a%'", "--limit", "1"], ["a/b.c"]),
])
def test_selection(known, tmp_path, args, expected):
    out, _ = known
    dest = tmp_path / "sel"
    code, text = _run(str(out), "--format", "layerd", "--out", str(dest), *args)
    assert code == 0, text
    record = json.loads((dest / "export.json").read_text())
    assert [s["id"] for s in record["samples"]] == expected
    assert len([p for p in dest.iterdir() if p.is_dir()]) == len(expected)


def test_ids_file(known, tmp_path):
    out, _ = known
    listing = tmp_path / "ids.txt"
    listing.write_text("日本語 ü.png\n\n/abs\n", encoding="utf-8")
    dest = tmp_path / "f"
    code, text = _run(str(out), "--format", "ora", "--out", str(dest), "--ids-file", str(listing))
    assert code == 0, text
    record = json.loads((dest / "export.json").read_text())
    assert sorted(s["id"] for s in record["samples"]) == sorted(["日本語 ü.png", "/abs"])


# ---------------------------------------------------------------- resume


_RENDER = {"psd": PsdExporter, "ora": OraExporter, "layerd": LayerdExporter}


@pytest.mark.parametrize("fmt", FORMATS)
def test_failure_midway_then_rerun_exports_each_sample_once(known, tmp_path, monkeypatch, fmt):
    out, samples = known
    dest = tmp_path / "resume"
    cls = WebDatasetExporter if fmt == "webdataset" else _RENDER[fmt]
    method = "_write" if fmt == "webdataset" else "render"
    original = getattr(cls, method)
    calls = {"n": 0}

    def failing(self, sample, *rest):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("injected failure")
        return original(self, sample, *rest)

    monkeypatch.setattr(cls, method, failing)
    opts = ExportOptions(out=out, dest=dest, format=fmt, samples_per_tar=2, progress=False)
    with pytest.raises(RuntimeError, match="injected"):
        export(opts)
    _no_temp_left(dest)  # an error removes its own temporary entries
    record = json.loads((dest / "export.json").read_text())
    assert record["status"] == "running"
    # what a kill -9 would leave besides: a temporary file and a temporary folder
    (dest / ".tmp-0123456789-stray.psd").write_bytes(b"partial")
    (dest / ".tmp-abcdef0123-stray").mkdir()
    (dest / ".tmp-abcdef0123-stray" / "00_background.png").write_bytes(b"partial")
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir() if not p.name.startswith(".")}
    monkeypatch.setattr(cls, method, original)
    record = export(opts)
    _no_temp_left(dest)
    finished_before = 2 if fmt == "webdataset" else 3  # webdataset: the open tar (sample 3) was dropped
    assert record["status"] == "complete" and record["last_run"]["exported"] == len(samples) - finished_before
    assert sorted(s["id"] for s in record["samples"]) == sorted(samples)
    for name, mtime in before.items():  # finished entries are kept, not redone
        if name != "export.json":
            assert (dest / name).stat().st_mtime_ns == mtime
    if fmt == "webdataset":
        ids = [json.loads(m)["sample_id"] for m in _tar_jsons(dest)]
        assert sorted(ids) == sorted(samples), "each sample exactly once across the tars"
    else:
        entries = [p for p in dest.iterdir() if not p.name.startswith(".") and p.name != "export.json"]
        assert len(entries) == len(samples)


def _tar_jsons(dest: Path) -> list[bytes]:
    out = []
    for tar in sorted(dest.glob("shard-*.tar")):
        with tarfile.open(tar) as tf:
            out += [tf.extractfile(m).read() for m in tf.getmembers() if m.name.endswith(".json")]
    return out


_KILLER = """
import os, signal, sys
from add_pipeline.export.webdataset import WebDatasetExporter
original = WebDatasetExporter._write
calls = [0]
def _write(self, sample):
    calls[0] += 1
    if calls[0] == 4:  # two tars of 2 would be done after 4; the 2nd holds 1 sample, unfinished
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, sample)
WebDatasetExporter._write = _write
from add_pipeline.cli import main
main(["export", sys.argv[1], "--format", "webdataset", "--out", sys.argv[2], "--samples-per-tar", "2",
      "--no-progress"])
"""


def test_killed_webdataset_export_resumes(known, tmp_path):
    out, samples = known
    dest = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(out), str(dest)], cwd=ROOT, capture_output=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    names = sorted(p.name for p in dest.iterdir())
    assert "shard-000000.tar" in names and "shard-000000.index.json" in names
    assert any(n.startswith(".tmp-") and n.endswith("shard-000001.tar") for n in names), names
    # a tar renamed into place whose index was never written (killed between the two): unfinished
    (dest / "shard-000007.tar").write_bytes((dest / "shard-000000.tar").read_bytes())
    code, text = _run(str(out), "--format", "webdataset", "--out", str(dest), "--samples-per-tar", "2")
    assert code == 0, text
    _no_temp_left(dest)
    assert not (dest / "shard-000007.tar").exists()
    ids = [json.loads(m)["sample_id"] for m in _tar_jsons(dest)]
    assert sorted(ids) == sorted(samples)
    tars = sorted(p.name for p in dest.glob("shard-*.tar"))
    assert tars == [f"shard-{i:06d}.tar" for i in range(4)]
    assert all((dest / t.replace(".tar", ".index.json")).is_file() for t in tars)


def test_rerun_of_a_finished_export_does_nothing(known, tmp_path):
    out, _ = known
    dest = tmp_path / "again"
    args = (str(out), "--format", "psd", "--out", str(dest), "--limit", "2")
    assert _run(*args)[0] == 0
    stamp = {p.name: p.stat().st_mtime_ns for p in dest.glob("*.psd")}
    code, text = _run(*args)
    assert code == 0 and "0 exported this run" in text
    assert {p.name: p.stat().st_mtime_ns for p in dest.glob("*.psd")} == stamp


# ---------------------------------------------------------------- errors


def _one_line_error(code: int, text: str, *needles: str) -> None:
    assert code == 1, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    for needle in needles:
        assert needle in lines[0], text


def test_cli_errors_are_one_line(known, tmp_path):
    out, _ = known
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = str(tmp_path / "d")
    _one_line_error(*_run(str(empty), "--format", "psd", "--out", dest), str(empty), "not a liwi output folder")
    _one_line_error(*_run(str(out), "--format", "psd", "--out", dest, "--where", "n_objects >>> 2"), "--where")
    _one_line_error(*_run(str(out), "--format", "psd", "--out", dest, "--where", "nope = 1"), "--where")
    _one_line_error(*_run(str(out), "--format", "psd", "--out", dest, "--ids", "missing-id"), "'missing-id'")
    _one_line_error(*_run(str(out), "--format", "tiff", "--out", dest), "'tiff'", "webdataset, psd, ora, layerd")
    _one_line_error(*_run(str(out), "--format", "psd", "--out", str(out)), "the folder being exported")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(MAIN)
    _one_line_error(*_run(str(out), "--format", "psd", "--out", dest, "--ids", MAIN, "--ids-file", str(ids_file)),
                    "not both")
    _one_line_error(*_run(str(out), "--format", "ora", "--out", dest, "--samples-per-tar", "3"), "webdataset only")
    assert not Path(dest).exists(), "a refused export writes nothing"


def test_destination_rules(known, tmp_path):
    out, _ = known
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    _one_line_error(*_run(str(out), "--format", "ora", "--out", str(dest)), "did not make", "mine.txt")
    _one_line_error(*_run(str(out), "--format", "ora", "--out", str(dest), "--overwrite"), "mine.txt")
    assert (dest / "mine.txt").read_text() == "keep me"
    assert [p.name for p in dest.iterdir()] == ["mine.txt"], "a refused folder gets nothing, not even a lock file"
    (dest / "mine.txt").unlink()
    assert _run(str(out), "--format", "ora", "--out", str(dest), "--limit", "2")[0] == 0
    # another selection, or another format, into the same folder: refused, then replaced with --overwrite
    _one_line_error(*_run(str(out), "--format", "ora", "--out", str(dest), "--limit", "3"), "other settings", "limit")
    _one_line_error(*_run(str(out), "--format", "layerd", "--out", str(dest)), "other settings", "format")
    (dest / "notes.md").write_text("mine")
    _one_line_error(*_run(str(out), "--format", "layerd", "--out", str(dest), "--overwrite"), "notes.md")
    (dest / "notes.md").unlink()
    code, text = _run(str(out), "--format", "layerd", "--out", str(dest), "--overwrite", "--limit", "1")
    assert code == 0, text
    assert not list(dest.glob("*.ora")) and len([p for p in dest.iterdir() if p.is_dir()]) == 1
    file_dest = tmp_path / "file"
    file_dest.write_text("x")
    _one_line_error(*_run(str(out), "--format", "ora", "--out", str(file_dest)), "is a file")


def test_one_writer_per_folder(known, tmp_path):
    out, _ = known
    dest = tmp_path / "locked"
    with output_lock(dest):
        _one_line_error(*_run(str(out), "--format", "ora", "--out", str(dest)), "being written by another run")
