"""One writer per output folder: a second run into the same OUT is refused, naming the holder; a
killed holder frees it; ids committed twice (as two writers used to) are reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from add_pipeline.exec.run import RunError, RunOptions, run
from add_pipeline.exec.stats import compute_stats
from add_pipeline.io.lock import LOCK_NAME, OutputLockedError, output_lock

REPO = Path(__file__).resolve().parents[1]


def _photos(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        img = np.full((96, 128, 3), 200, np.uint8)
        img[30:70, 40 + 10 * k : 80 + 10 * k] = rng.integers(0, 80, 3)
        Image.fromarray(img).save(folder / f"p{k}.png")
    return folder


def _hold_lock(out: Path) -> subprocess.Popen:
    """Another process that takes OUT's writer lock and keeps it until killed."""
    code = ("import sys, time; from pathlib import Path; from add_pipeline.io.lock import output_lock\n"
            "with output_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused_and_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = _hold_lock(out)
    try:
        with pytest.raises(RunError, match=rf"being written by another run \(pid {holder.pid} on "):
            run(RunOptions(input=str(_photos(tmp_path / "in", 1)), out=out, workflow="cpu-classical", local=True,
                           progress=False))
        assert not (out / "shards").exists()  # refused before touching anything
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    stats = run(RunOptions(input=str(tmp_path / "in"), out=out, workflow="cpu-classical", local=True, progress=False))
    assert stats["inputs_done"] == 1 and stats["duplicate_ids"] == 0
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    with output_lock(tmp_path):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path):
                pass
    with output_lock(tmp_path):  # released on exit
        pass


@pytest.mark.slow
def test_two_concurrent_runs_commit_every_id_once(tmp_path: Path) -> None:
    """The reported bug: `liwi run ... & liwi run ...` into one OUT committed every id twice."""
    photos = _photos(tmp_path / "in", 4)
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "liwi"), "run", "--input", str(photos), "--out", str(out),
           "--workflow", "cpu-classical", "--local", "--no-progress", "--shard-size", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)]
    time.sleep(0.5)
    procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO))
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    refused = next(err for rc, err in results if rc != 0)
    assert "being written by another run" in refused
    stats = compute_stats(out)
    assert stats["inputs_done"] == 4 and stats["duplicate_ids"] == 0


def test_stats_report_ids_committed_twice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(RunOptions(input=str(_photos(tmp_path / "in", 1)), out=out, workflow="cpu-classical", local=True,
                   progress=False))
    # what two writers used to leave behind: the same sample committed in a second part
    commits = sorted((out / "_commits").glob("part-*.json"))
    marker = json.loads(commits[0].read_text())
    for kind, rel in marker["files"].items():
        src = out / rel
        (src.parent / "part-00099.parquet").write_bytes(src.read_bytes())
        marker["files"][kind] = f"{kind}/part-00099.parquet"
    marker["part"] = 99
    (out / "_commits" / "part-00099.json").write_text(json.dumps(marker))
    stats = compute_stats(out)
    assert stats["duplicate_ids"] == 1 and stats["duplicate_examples"] == ["p0.png"]
    again = run(RunOptions(input=str(tmp_path / "in"), out=out, workflow="cpu-classical", local=True,
                           progress=False))
    assert again["last_run"]["processed"] == 0  # nothing committed a third time
    assert json.loads((out / "run.json").read_text())["duplicates_on_start"] == 1


def test_a_run_deletes_only_files_it_wrote(tmp_path: Path) -> None:
    """`mkdir -p o/traces; echo x > o/traces/notes.txt; liwi run ... --out o` used to delete notes.txt."""
    out = tmp_path / "out"
    (out / "traces").mkdir(parents=True)
    (out / "traces" / "notes.txt").write_text("x")
    (out / "shards").mkdir()
    (out / "shards" / "mine.parquet.tmp").write_text("not ours either")
    photos = _photos(tmp_path / "in", 1)
    for overwrite in (False, True):
        stats = run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False,
                               overwrite=overwrite))
        assert stats["inputs_done"] == 1
        assert (out / "traces" / "notes.txt").read_text() == "x"
        assert (out / "shards" / "mine.parquet.tmp").exists()
    assert len(list((out / "shards").glob("part-*.parquet"))) == 1  # --overwrite replaced our own part


def test_every_commit_marker_guards_the_workflow(tmp_path: Path) -> None:
    """Deleting run.json (or its hash) no longer lets another workflow resume into the same OUT."""
    out = tmp_path / "out"
    photos = _photos(tmp_path / "in", 2)
    run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False, limit=1))
    marker = json.loads(next((out / "_commits").glob("part-*.json")).read_text())
    assert len(marker["workflow_hash"]) == 64
    (out / "run.json").unlink()
    with pytest.raises(RunError, match="different workflow configuration"):
        run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False, seed=1))
    stats = run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False))
    assert stats["inputs_done"] == 2  # the same workflow resumes


def test_an_unreadable_run_json_is_one_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("{not json")
    with pytest.raises(RunError, match=r"run.json: unreadable"):
        run(RunOptions(input=str(_photos(tmp_path / "in", 1)), out=out, workflow="cpu-classical", local=True,
                       progress=False))


def test_a_deleted_part_is_reported_and_its_samples_redone(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from add_pipeline.cli import main

    out = tmp_path / "out"
    photos = _photos(tmp_path / "in", 3)
    run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False, shard_size=1))
    victim = sorted((out / "shards").glob("part-*.parquet"))[1]
    victim.unlink()
    res = CliRunner().invoke(main, ["stats", str(out)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert f"lists shards/{victim.name}, which is missing" in res.output
    stats = run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False,
                           shard_size=1))
    assert stats["last_run"]["processed"] == 1 and stats["inputs_done"] == 3 and stats["duplicate_ids"] == 0
    assert json.loads((out / "run.json").read_text())["dropped_parts"] == [
        f"{victim.stem}: shards/{victim.name} is missing"]


def test_an_unreachable_ray_address_fails_fast_and_touches_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port on this machine with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "out"
    t0 = time.perf_counter()
    with pytest.raises(RunError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port} within 2 s"):
        run(RunOptions(input=str(_photos(tmp_path / "in", 1)), out=out, workflow="cpu-classical", progress=False,
                       ray_address=f"127.0.0.1:{port}", ray_timeout_s=2.0))
    assert time.perf_counter() - t0 < 10 and not out.exists()
    with pytest.raises(RunError, match=r"cluster at ray://\*\*\*@127.0.0.1"):  # no password in the message
        run(RunOptions(input=str(tmp_path / "in"), out=out, progress=False, ray_address=f"ray://u:pw@127.0.0.1:{port}",
                       ray_timeout_s=2.0))


def _orphans() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["ppid", "cmdline"])
            if p.info["ppid"] == 1 and (p.info["cmdline"] or [""])[0].startswith("ray::")]


@pytest.mark.slow
@pytest.mark.ray
def test_ray_agents_left_by_a_killed_driver_are_reaped_by_the_next_start(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "in", 6)
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "liwi"), "run", "--input", str(photos), "--out", str(out),
           "--workflow", "cpu-classical", "--workers", "1", "--shard-size", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any((out / "_commits").glob("*.json")):  # Ray up, work under way
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)
    left = _orphans()
    assert left, "a killed driver left no Ray agents behind: nothing to test"
    stats = run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", workers=1, progress=False))
    assert stats["inputs_done"] == 6
    assert not set(left) & set(_orphans())


def test_an_out_with_someone_elses_files_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    photos = _photos(tmp_path / "in", 1)
    with pytest.raises(RunError, match=r"holds files that no liwi run wrote \(thesis.tex\)"):
        run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False))
    stats = run(RunOptions(input=str(photos), out=out, workflow="cpu-classical", local=True, progress=False,
                           overwrite=True))
    assert stats["inputs_done"] == 1 and (out / "thesis.tex").read_text() == "years of work"


def test_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from add_pipeline.cli import main

    photos = _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    args = ["run", "--input", str(photos), "--out", str(out), "--workflow", "cpu-classical", "--local",
            "--no-progress", "--shard-size", "1"]
    real, calls = pq.write_table, []

    def fill_up(table, where, *a, **k):  # the second part file finds the disk full
        calls.append(where)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *a, **k)

    monkeypatch.setattr(pq, "write_table", fill_up)
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "No space left on device; fix that and rerun" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    monkeypatch.setattr(pq, "write_table", real)
    assert CliRunner().invoke(main, args).exit_code == 0
    assert compute_stats(out)["inputs_done"] == 3 and compute_stats(out)["duplicate_ids"] == 0
