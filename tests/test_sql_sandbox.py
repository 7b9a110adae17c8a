"""`liwi traces --sql` reads the run's views and nothing else: no writes, no other files, no extensions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from add_pipeline.cli import main


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sql")
    (root / "in").mkdir()
    img = np.full((64, 80, 3), 190, np.uint8)
    img[20:50, 25:55] = (30, 60, 120)
    Image.fromarray(img).save(root / "in" / "photo.png")
    res = CliRunner().invoke(main, ["run", "--input", str(root / "in"), "--out", str(root / "out"),
                                    "--workflow", "cpu-classical", "--local", "--no-progress"])
    assert res.exit_code == 0, res.output
    return root / "out"


def test_queries_over_the_views_work(out: Path) -> None:
    res = CliRunner().invoke(main, ["traces", str(out), "--sql",
                                    "select s.sample_id, count(*) as n from shards s join traces t using (sample_id) "
                                    "group by all"])
    assert res.exit_code == 0, res.output
    assert "photo.png" in res.output and "(1 rows)" in res.output


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1 AS x) TO '{out}/shards/part-00000.parquet' (FORMAT parquet)",
    "COPY shards TO '{out}/elsewhere.parquet'",
    "ATTACH '{out}/x.db' AS x",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT count(*) FROM read_parquet('{out}/shards/*.parquet')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
])
def test_writes_files_and_settings_are_refused(out: Path, sql: str) -> None:
    part = out / "shards" / "part-00000.parquet"
    before = part.read_bytes()
    res = CliRunner().invoke(main, ["traces", str(out), "--sql", sql.format(out=out)])
    assert res.exit_code != 0
    assert res.output.startswith("Error: SQL ") and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1  # one clear line
    assert part.read_bytes() == before
    assert not (out / "elsewhere.parquet").exists() and not (out / "x.db").exists()


def test_a_bad_query_is_one_line(out: Path) -> None:
    res = CliRunner().invoke(main, ["traces", str(out), "--sql", "select nope from shards"])
    assert res.exit_code != 0 and res.output.startswith("Error: SQL error:")
