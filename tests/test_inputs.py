"""enumerate_inputs: folders, glob patterns and JSONL manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from add_pipeline.io.inputs import InputItem, enumerate_inputs


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_folder_is_recursive_and_filters_extensions(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "b.png",
        "a.JPG",
        "sub/cat.jpeg",
        "sub/deeper/dog.webp",
        "notes.txt",
        "noext",
        ".hidden.png",
        ".cache/x.png",
        "sub/scan.TIFF",
    )
    items = enumerate_inputs(str(tmp_path))
    assert [it.sample_id for it in items] == [
        "a.JPG",
        "b.png",
        "sub__cat.jpeg",
        "sub__deeper__dog.webp",
        "sub__scan.TIFF",
    ]
    assert items[2] == InputItem("sub__cat.jpeg", str(tmp_path / "sub" / "cat.jpeg"))
    assert all(Path(it.source).is_absolute() for it in items)


def test_folder_id_collision_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path, "a__b.png", "a/b.png")
    with pytest.raises(ValueError, match="duplicate sample ids.*a__b.png"):
        enumerate_inputs(str(tmp_path))


def test_glob_keeps_any_matched_file(tmp_path: Path) -> None:
    touch(tmp_path, "imgs/one.png", "imgs/two.txt", "imgs/sub/three.jpg", "other/four.png")
    items = enumerate_inputs(str(tmp_path / "imgs" / "*"))
    assert [it.sample_id for it in items] == ["one.png", "two.txt"]  # folders are not files
    items = enumerate_inputs(str(tmp_path / "imgs" / "**" / "*.*"))
    assert [it.sample_id for it in items] == ["one.png", "sub__three.jpg", "two.txt"]


def test_single_file_path(tmp_path: Path) -> None:
    touch(tmp_path, "x/photo.png")
    items = enumerate_inputs(str(tmp_path / "x" / "photo.png"))
    assert items == [InputItem("photo.png", str(tmp_path / "x" / "photo.png"))]


def test_nothing_matches(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="matches no files"):
        enumerate_inputs(str(tmp_path / "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="matches no files"):
        enumerate_inputs(str(tmp_path / "empty"))


def write_manifest(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_relative_paths_and_custom_ids(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "z.png"
    m = write_manifest(
        tmp_path / "data" / "inputs.jsonl",
        [
            json.dumps({"source": "imgs/b.png"}),
            "",
            json.dumps({"source": "a.jpg", "id": "custom-a"}),
            "   ",
            json.dumps({"source": str(elsewhere)}),
            json.dumps({"source": "missing/later-a-reject.png", "extra": 1}),
        ],
    )
    items = enumerate_inputs(str(m))
    by_id = {it.sample_id: it.source for it in items}
    assert by_id["imgs__b.png"] == str(tmp_path / "data" / "imgs" / "b.png")
    assert by_id["custom-a"] == str(tmp_path / "data" / "a.jpg")
    assert by_id["missing__later-a-reject.png"] == str(tmp_path / "data" / "missing" / "later-a-reject.png")
    outside_id = [sid for sid, src in by_id.items() if src == str(elsewhere)]
    assert outside_id and outside_id[0].endswith("elsewhere__z.png")
    assert [it.sample_id for it in items] == sorted(by_id)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id": "x"}', "'source' must be"),
        ('{"source": "a.png", "id": 3}', "'id' must be"),
    ],
)
def test_manifest_malformed_line_names_line_number(tmp_path: Path, bad: str, message: str) -> None:
    m = write_manifest(tmp_path / "m.jsonl", [json.dumps({"source": "ok.png"}), "", bad])
    with pytest.raises(ValueError, match=rf"m\.jsonl:3: {message}"):
        enumerate_inputs(str(m))


def test_manifest_duplicate_ids(tmp_path: Path) -> None:
    m = write_manifest(
        tmp_path / "m.jsonl",
        [json.dumps({"source": "a.png", "id": "same"}), json.dumps({"source": "b.png", "id": "same"})],
    )
    with pytest.raises(ValueError, match="duplicate sample ids.*same"):
        enumerate_inputs(str(m))
