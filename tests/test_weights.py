"""add_pipeline.weights: fetch from a pinned tarball, reassemble, verify, resolve; no network, no npm.

Every test builds a tiny tarball with the layout of ``@imgly/background-removal-data`` (resources.json
plus one member per chunk, named by its sha256) from known bytes, so the reassembled file is known.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from add_pipeline.cli import main
from add_pipeline.weights import (
    WEIGHTS,
    WeightsError,
    WeightSpec,
    fetch,
    fetch_many,
    get_spec,
    list_weights,
    resolve,
    status,
    verify,
    weights_dir,
)
from add_pipeline.weights.fetch import npm_reason

REAL_DIR = weights_dir()  # read before the fixtures point LIWI_WEIGHTS_DIR at tmp_path
PAYLOADS = {"/models/a": bytes(range(256)) * 3 + b"tail", "/models/b": b"the small model" * 5}
CHUNK = 100  # /models/a: 772 bytes -> 8 chunks (the last 72 bytes); /models/b: 75 bytes -> 1 chunk


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_tgz(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A gzip tarball with these regular members (and symlinks name -> target)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def package_members(payloads: dict[str, bytes] = PAYLOADS, chunk: int = CHUNK) -> dict[str, bytes]:
    """resources.json and one ``package/dist/<sha256>`` member per chunk, as the npm package lays them out."""
    members: dict[str, bytes] = {"package/package.json": b'{"name": "fake"}'}
    resources = {}
    for key, data in payloads.items():
        chunks = []
        for start in range(0, len(data), chunk):
            part = data[start:start + chunk]
            members[f"package/dist/{_sha256(part)}"] = part
            chunks.append({"hash": _sha256(part), "offsets": [start, start + len(part)]})
        resources[key] = {"chunks": chunks, "size": len(data), "mime": "application/octet-stream"}
    members["package/dist/resources.json"] = json.dumps(resources).encode()
    return members


def spec_for(tgz: Path, resource: str, name: str, **changes: Any) -> WeightSpec:
    """A spec pinned to ``tgz`` and to the payload of ``resource``."""
    spec = WeightSpec(name=name, package="@test/fake-data", version="1.0.0",
                      tarball_sha512=hashlib.sha512(tgz.read_bytes()).hexdigest(), tarball_size=tgz.stat().st_size,
                      resource=resource, size=len(PAYLOADS[resource]), sha256=_sha256(PAYLOADS[resource]),
                      licence="MIT (test)", description="test weights", file_name=f"{name}.bin")
    return replace(spec, **changes)


@pytest.fixture(autouse=True)
def wdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the weights folder at tmp_path/weights for every test."""
    monkeypatch.setenv("LIWI_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path / "weights"


@pytest.fixture
def tgz(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    return write_tgz(tmp_path / "src" / "fake-data-1.0.0.tgz", package_members())


@pytest.fixture
def specs(tgz: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[WeightSpec, WeightSpec]:
    """Two specs from one tarball, registered in place of the real ones for this test."""
    a, b = spec_for(tgz, "/models/a", "fake-a"), spec_for(tgz, "/models/b", "fake-b")
    for name in list(WEIGHTS):
        monkeypatch.delitem(WEIGHTS, name)
    monkeypatch.setitem(WEIGHTS, a.name, a)
    monkeypatch.setitem(WEIGHTS, b.name, b)
    return a, b


@pytest.fixture
def fake_npm(tmp_path: Path, tgz: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``npm`` on PATH (the only thing there) that copies ``tgz`` into --pack-destination; returns its call log."""
    bindir, log = tmp_path / "bin", tmp_path / "npm-calls.txt"
    bindir.mkdir()
    script = bindir / "npm"
    script.write_text('#!/bin/sh\necho "$@" >> "$FAKE_NPM_LOG"\ndest=""\nwhile [ $# -gt 0 ]; do\n'
                      '  if [ "$1" = "--pack-destination" ]; then dest="$2"; fi\n  shift\ndone\n'
                      f'{shutil.which("cp")} "$FAKE_TGZ" "$dest/fake-data-1.0.0.tgz"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("FAKE_TGZ", str(tgz))
    monkeypatch.setenv("FAKE_NPM_LOG", str(log))
    return log


def one_line(exc: pytest.ExceptionInfo[WeightsError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_weights_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIWI_WEIGHTS_DIR", str(tmp_path / "x"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert weights_dir() == tmp_path / "x"
    monkeypatch.delenv("LIWI_WEIGHTS_DIR")
    assert weights_dir() == tmp_path / "cache" / "liwi" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights_dir() == Path.home() / ".cache" / "liwi" / "weights"


def test_registry_pins_the_real_models() -> None:
    medium, small = get_spec("isnet-medium"), get_spec("isnet-small")
    assert (medium.size, medium.sha256[:8], medium.resource) == (88_188_479, "b6e8497b", "/models/medium")
    assert (small.size, small.sha256[:8], small.resource) == (44_342_436, "7001d607", "/models/small")
    assert medium.tarball_sha512 == small.tarball_sha512 and medium.tarball_size == 136_455_985
    assert medium.source == "@imgly/background-removal-data@1.4.5"
    with pytest.raises(WeightsError, match=r"unknown weights 'nope'; valid names: isnet-medium, isnet-small"):
        get_spec("nope")
    with pytest.raises(ValueError, match="not a plain file name"):
        replace(medium, file_name="../evil.onnx")


def test_fetch_from_tarball_reassembles_bytes_exactly(specs: tuple[WeightSpec, WeightSpec], tgz: Path,
                                                      wdir: Path) -> None:
    a, b = specs
    paths = fetch_many([a.name, b.name], tarball=tgz)
    assert paths == [wdir / "fake-a.bin", wdir / "fake-b.bin"]
    assert paths[0].read_bytes() == PAYLOADS["/models/a"] and paths[1].read_bytes() == PAYLOADS["/models/b"]
    meta = json.loads((wdir / "fake-a.bin.json").read_text())
    assert {k: meta[k] for k in ("name", "version", "sha256", "size", "licence", "package")} == {
        "name": "fake-a", "version": "1.0.0", "sha256": a.sha256, "size": 772, "licence": "MIT (test)",
        "package": "@test/fake-data"}
    assert meta["source"] == f"tarball {tgz.resolve()}" and meta["fetched_at"].endswith("+00:00")
    assert sorted(p.name for p in wdir.iterdir()) == ["fake-a.bin", "fake-a.bin.json", "fake-b.bin", "fake-b.bin.json"]
    assert tgz.is_file()  # the user's own tarball is left alone
    assert [s.status for s in list_weights()] == ["ok", "ok"] and verify(a).ok and resolve(b.name) == paths[1]


def test_second_fetch_does_nothing(specs: tuple[WeightSpec, WeightSpec], tgz: Path, wdir: Path,
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, _ = specs
    path = fetch(a.name, tarball=tgz)
    before = [(p.name, p.stat().st_mtime_ns) for p in sorted(wdir.iterdir())]
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no npm: a download attempt would fail
    assert fetch(a.name) == path
    assert [(p.name, p.stat().st_mtime_ns) for p in sorted(wdir.iterdir())] == before


def test_npm_path_downloads_once_for_several_names_and_deletes_the_tarball(
        specs: tuple[WeightSpec, WeightSpec], fake_npm: Path, wdir: Path) -> None:
    a, b = specs
    paths = fetch_many([a.name, b.name, a.name])
    assert [p.read_bytes() for p in paths] == [PAYLOADS["/models/a"], PAYLOADS["/models/b"]]
    calls = fake_npm.read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("pack @test/fake-data@1.0.0 --pack-destination ")
    assert "--ignore-scripts" in calls[0]
    assert sorted(p.name for p in wdir.iterdir()) == ["fake-a.bin", "fake-a.bin.json", "fake-b.bin", "fake-b.bin.json"]
    assert json.loads((wdir / "fake-b.bin.json").read_text())["source"] == "npm pack @test/fake-data@1.0.0"
    fetch_many([a.name, b.name], force=True)
    assert len(fake_npm.read_text().splitlines()) == 2


def test_corrupt_chunk_names_the_chunk(tmp_path: Path, wdir: Path) -> None:
    members = package_members()
    third = json.loads(members["package/dist/resources.json"])["/models/a"]["chunks"][2]["hash"]
    members[f"package/dist/{third}"] = b"X" + members[f"package/dist/{third}"][1:]
    tgz = write_tgz(tmp_path / "bad.tgz", members)
    with pytest.raises(WeightsError) as exc:
        fetch(spec_for(tgz, "/models/a", "fake-a"), tarball=tgz)
    assert one_line(exc).startswith(f"fake-a: chunk 3 of 8 (package/dist/{third[:12]}…) has sha256 ")
    assert one_line(exc).endswith(f"expected {third[:12]}…; the download is corrupt, run `liwi weights fetch --force`")
    assert not (wdir / "fake-a.bin").exists() and list(wdir.iterdir()) == []  # no partial file left behind


def test_wrong_final_hash_is_refused(tgz: Path, wdir: Path) -> None:
    spec = spec_for(tgz, "/models/a", "fake-a", sha256=_sha256(b"something else"))
    with pytest.raises(WeightsError) as exc:
        fetch(spec, tarball=tgz)
    assert "fake-a: reassembled file has sha256" in one_line(exc) and "--force" in one_line(exc)
    assert list(wdir.iterdir()) == []


def test_tarball_hash_or_size_mismatch_is_refused(tgz: Path, wdir: Path) -> None:
    with pytest.raises(WeightsError) as exc:
        fetch(spec_for(tgz, "/models/a", "fake-a", tarball_sha512="0" * 128), tarball=tgz)
    assert one_line(exc).startswith(f"fake-a: tarball {tgz} has sha512 ")
    assert one_line(exc).endswith("expected 000000000000…; it is not @test/fake-data@1.0.0; "
                                  "get that with `npm pack @test/fake-data@1.0.0`")
    with pytest.raises(WeightsError, match=r"is \d+ bytes, expected 5; it is not @test/fake-data@1.0.0"):
        fetch(spec_for(tgz, "/models/a", "fake-a", tarball_size=5), tarball=tgz)
    assert list(wdir.iterdir()) == []


def test_path_traversal_members_are_never_written(tmp_path: Path, wdir: Path) -> None:
    members = package_members()
    members["../evil.txt"] = b"pwned"
    members["package/dist/../../evil2.txt"] = b"pwned"
    members["/tmp/evil3.txt"] = b"pwned"
    tgz = write_tgz(tmp_path / "sneaky.tgz", members)
    path = fetch(spec_for(tgz, "/models/a", "fake-a"), tarball=tgz)
    assert path.read_bytes() == PAYLOADS["/models/a"]
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*")) and not Path("/tmp/evil3.txt").exists()
    assert sorted(p.name for p in wdir.iterdir()) == ["fake-a.bin", "fake-a.bin.json"]


def test_traversal_hash_in_resources_json_is_refused(tmp_path: Path, wdir: Path) -> None:
    members = package_members()
    resources = json.loads(members["package/dist/resources.json"])
    resources["/models/a"]["chunks"][0]["hash"] = "../../evil"
    members["package/dist/resources.json"] = json.dumps(resources).encode()
    tgz = write_tgz(tmp_path / "sneaky.tgz", members)
    with pytest.raises(WeightsError) as exc:
        fetch(spec_for(tgz, "/models/a", "fake-a"), tarball=tgz)
    assert "chunk 1 of 8 has hash '../../evil', not 64 hex digits" in one_line(exc)
    assert list(wdir.iterdir()) == []


def test_symlink_chunk_is_refused(tmp_path: Path, wdir: Path) -> None:
    members = package_members()
    first = json.loads(members["package/dist/resources.json"])["/models/b"]["chunks"][0]["hash"]
    del members[f"package/dist/{first}"]
    tgz = write_tgz(tmp_path / "link.tgz", members, links={f"package/dist/{first}": "/etc/passwd"})
    with pytest.raises(WeightsError, match=f"tarball member package/dist/{first} is not a regular file"):
        fetch(spec_for(tgz, "/models/b", "fake-b"), tarball=tgz)


def test_missing_npm_gives_the_one_line_fix(specs: tuple[WeightSpec, WeightSpec], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, wdir: Path) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(WeightsError) as exc:
        fetch(specs[0].name)
    assert one_line(exc) == ("fake-a: npm not found on PATH; install Node.js/npm (apt-get install npm) and run "
                             "`liwi weights fetch`, or pass a local tarball with "
                             "`liwi weights fetch --from-tarball FILE`")
    assert list(wdir.iterdir()) == []  # the temporary download folder is gone


def test_npm_failure_reports_npms_reason(specs: tuple[WeightSpec, WeightSpec], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = ("npm error code ECONNREFUSED\nnpm error syscall connect\nnpm error FetchError: request to "
              "http://127.0.0.1:9/x failed, reason: connect ECONNREFUSED\nnpm error\n"
              "npm error Log files were not written due to the config logs-max=0\n")
    assert npm_reason(stderr) == "FetchError: request to http://127.0.0.1:9/x failed, reason: connect ECONNREFUSED"
    assert npm_reason("something odd\nlast words\n") == "last words"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "npm").write_text(f"#!/bin/sh\nprintf '{stderr}' >&2\nexit 1\n")
    (bindir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(WeightsError) as exc:
        fetch(specs[0].name)
    assert one_line(exc) == ("fake-a: `npm pack @test/fake-data@1.0.0` failed (exit 1): FetchError: request to "
                             "http://127.0.0.1:9/x failed, reason: connect ECONNREFUSED; check the network and "
                             "run `liwi weights fetch`")


def test_resolve_missing_and_corrupt_files(specs: tuple[WeightSpec, WeightSpec], tgz: Path, wdir: Path) -> None:
    a, _ = specs
    with pytest.raises(WeightsError) as exc:
        resolve(a.name)
    assert one_line(exc) == f"fake-a: not fetched (no {wdir / 'fake-a.bin'}); run `liwi weights fetch fake-a`"
    path = fetch(a.name, tarball=tgz)

    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, sidecar intact: the cheap check passes, the full one does not
    assert resolve(a.name) == path and status(a.name).ok
    assert verify(a.name).status == f"corrupt: sha256 {_sha256(bytes(data))[:12]}… expected {a.sha256[:12]}…"

    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(WeightsError) as exc:
        resolve(a.name)
    assert one_line(exc) == (f"fake-a: {path} is corrupt: size 771 bytes, expected 772; "
                             "run `liwi weights fetch --force fake-a`")

    assert fetch(a.name, tarball=tgz) == path and path.read_bytes() == PAYLOADS["/models/a"]  # repaired
    (wdir / "fake-a.bin.json").unlink()
    with pytest.raises(WeightsError, match=r"corrupt: no readable sidecar fake-a.bin.json; run `liwi weights fetch"):
        resolve(a.name)
    fetch(a.name)  # the file's sha256 is right: the sidecar is rewritten, nothing downloaded
    assert resolve(a.name) == path
    assert json.loads((wdir / "fake-a.bin.json").read_text())["source"] == "already present, sha256 checked"


def test_cli_list_fetch_verify(specs: tuple[WeightSpec, WeightSpec], tgz: Path, wdir: Path) -> None:
    runner = CliRunner()
    env = {"LIWI_WEIGHTS_DIR": str(wdir)}
    res = runner.invoke(main, ["weights", "list"], env=env)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["name", "version", "size", "MB", "licence", "path", "status"]
    assert lines[1].split() == ["fake-a", "1.0.0", "0.0", "MIT", "(test)", str(wdir / "fake-a.bin"), "missing"]

    res = runner.invoke(main, ["weights", "verify"], env=env)
    assert res.exit_code == 1
    assert res.output.splitlines()[-1] == ("Error: 2 of 2 weights not ok (fake-a missing, fake-b missing); "
                                           "run `liwi weights fetch --force fake-a fake-b`")

    res = runner.invoke(main, ["weights", "fetch", "--from-tarball", str(tgz)], env=env)
    assert res.exit_code == 0, res.output
    assert "fake-a: fetched and verified" in res.output
    res = runner.invoke(main, ["weights", "verify", "fake-b"], env=env)
    assert res.exit_code == 0, res.output
    assert [ln.split()[-1] for ln in res.output.splitlines()[1:]] == ["ok"]

    (wdir / "fake-a.bin").write_bytes(b"\0" * 772)
    res = runner.invoke(main, ["weights", "verify"], env=env)
    assert res.exit_code == 1 and "corrupt: sha256" in res.output
    assert "Error: 1 of 2 weights not ok (fake-a corrupt: sha256" in res.output
    res = runner.invoke(main, ["weights", "list"], env=env)  # cheap: size and sidecar still match
    assert res.exit_code == 0 and res.output.count(" ok") == 2

    res = runner.invoke(main, ["weights", "fetch", "nope"], env=env)
    assert res.exit_code == 1 and "Error: unknown weights 'nope'; valid names: fake-a, fake-b" in res.output


@pytest.mark.skipif(not (REAL_DIR / "isnet-medium.onnx").is_file(),
                    reason="real isnet-medium not fetched (run `liwi weights fetch isnet-medium`)")
def test_real_isnet_medium_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIWI_WEIGHTS_DIR", str(REAL_DIR))
    st = verify("isnet-medium")
    assert st.status == "ok", st.status
    assert st.path.stat().st_size == 88_188_479 and resolve("isnet-medium") == st.path
    with st.path.open("rb") as f:
        assert f.read(2) == b"\x08\x08"  # ONNX ModelProto: field 1 (ir_version) = 8
