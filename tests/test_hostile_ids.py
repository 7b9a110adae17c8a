"""Sample ids come from users: as file names they never lead out of the folder they are written to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from add_pipeline.cli import main
from add_pipeline.io.names import child, safe_name, unsafe_name

HOSTILE = ["../../escape", "/tmp/abs-escape", "a/b/c", "..", ".", ".hidden", "nul\x00byte", "back\\slash",
           "%2E%2E", "x" * 400, "ünï cødé ✓"]


@pytest.mark.parametrize("sid", HOSTILE)
def test_safe_name_is_one_plain_component(sid: str, tmp_path: Path) -> None:
    name = safe_name(sid)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..") and not name.startswith(".") and len(name) <= 180
    assert child(tmp_path, sid).parent == tmp_path
    if len(sid) < 60:
        assert unsafe_name(name) == sid


def test_distinct_ids_get_distinct_names() -> None:
    names = [safe_name(s) for s in HOSTILE + ["a%2Fb%2Fc", "a_b_c", "x" * 401]]
    assert len(set(names)) == len(names)


def test_show_save_with_hostile_ids_writes_only_inside_dest(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    img = np.full((64, 80, 3), 190, np.uint8)
    img[20:50, 25:55] = (30, 60, 120)
    Image.fromarray(img).save(photo)
    ids = ["../../escape", "/tmp/liwi-abs-escape", "sub/dir"]
    manifest = tmp_path / "in.jsonl"
    manifest.write_text("".join(json.dumps({"source": str(photo), "id": sid}) + "\n" for sid in ids))
    out, dest = tmp_path / "out", tmp_path / "dest"
    runner = CliRunner()
    res = runner.invoke(main, ["run", "--input", str(manifest), "--out", str(out), "--workflow", "cpu-classical",
                               "--local", "--no-progress"])
    assert res.exit_code == 0, res.output
    before = {p for p in tmp_path.parent.rglob("*") if "escape" in p.name}
    for sid in ids:
        res = runner.invoke(main, ["show", str(out), sid, "--save", str(dest)])
        assert res.exit_code == 0, res.output
    written = [p for p in dest.rglob("*") if p.is_file()]
    assert written and all(dest.resolve() in p.resolve().parents for p in written)
    assert {p.name for p in dest.iterdir()} == {safe_name(s) for s in ids}
    assert not Path("/tmp/liwi-abs-escape").exists()
    assert {p for p in tmp_path.parent.rglob("*") if "escape" in p.name} - before <= set(dest.rglob("*"))
