"""Fetch weights: download the pinned npm tarball, check it, and reassemble each file from its chunks.

The tarball of an ``@imgly/background-removal-data``-style package holds ``package/dist/resources.json``,
which maps a resource key to ``{"chunks": [{"hash": sha256hex, "offsets": [start, end]}, ...], "size": N}``,
and one member ``package/dist/<hash>`` per chunk; in order, the chunks form the file. Nothing is ever
extracted by a member's own name: only those two exact names are read, hashes must be 64 hex digits, and
the output file name comes from the :class:`~add_pipeline.weights.registry.WeightSpec`. Files are written
to a temporary name and renamed; the sidecar is written last.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from add_pipeline.weights.registry import WeightsError, WeightSpec, get_spec
from add_pipeline.weights.store import read_sidecar, sha256_file, short, sidecar_path, weights_dir

NPM_TIMEOUT_S = 1200  # npm pack of a ~136 MB tarball; generous for slow links
RESOURCES_MEMBER = "package/dist/resources.json"
_MAX_RESOURCES_BYTES = 16 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BLOCK = 1 << 20
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)

Log = Callable[[str], None]


def fetch(name: str | WeightSpec, force: bool = False, tarball: Path | None = None, log: Log | None = None) -> Path:
    """Make the file of ``name`` present and verified in :func:`weights_dir`; return its path.

    A file already there whose full sha256 matches is kept (no network). Otherwise the pinned tarball is
    taken from ``tarball`` (a local ``.tgz``) or downloaded with ``npm pack``. ``force`` refetches anyway.
    Raises :class:`WeightsError` with a one-line reason and fix.
    """
    return fetch_many([name], force=force, tarball=tarball, log=log)[0]


def fetch_many(names: Sequence[str | WeightSpec], force: bool = False, tarball: Path | None = None,
               log: Log | None = None) -> list[Path]:
    """:func:`fetch` for several names; each pinned tarball is downloaded (or read) once for all of them."""
    specs = list({s.name: s for s in map(get_spec, names)}.values())
    root = weights_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights folder {root} ({exc}); "
                           "set LIWI_WEIGHTS_DIR to a writable folder") from exc
    groups: dict[tuple[str, str, str], list[WeightSpec]] = {}
    for spec in specs:
        if force or not _keep_present(spec, root, log):
            groups.setdefault((spec.package, spec.version, spec.tarball_sha512), []).append(spec)
    for group in groups.values():
        label = ", ".join(s.name for s in group)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
            if tarball is None:
                tgz, source = npm_pack(group[0], Path(tmp), label, log), f"npm pack {group[0].source}"
            else:
                tgz, source = Path(tarball), f"tarball {Path(tarball).resolve()}"
            check_tarball(group, tgz, from_npm=tarball is None)
            assemble(group, tgz, root, source, log)
    return [root / s.file_name for s in specs]


def _keep_present(spec: WeightSpec, root: Path, log: Log | None) -> bool:
    """True when the file of ``spec`` is already there with the pinned sha256 (its sidecar is rewritten if off)."""
    path = root / spec.file_name
    if not path.is_file() or path.stat().st_size != spec.size or sha256_file(path) != spec.sha256:
        return False
    meta = read_sidecar(path)
    if meta is None or meta.get("sha256") != spec.sha256 or meta.get("size") != spec.size:
        try:
            _write_sidecar(spec, path, source="already present, sha256 checked")
        except OSError as exc:
            raise WeightsError(f"{spec.name}: cannot write {sidecar_path(path)} ({exc}); set LIWI_WEIGHTS_DIR "
                               "to a writable folder") from exc
    if log:
        log(f"{spec.name}: already present and verified ({path})")
    return True


def npm_pack(spec: WeightSpec, dest: Path, label: str, log: Log | None = None) -> Path:
    """Run ``npm pack <package>@<version>`` into ``dest`` (a throwaway npm cache, no scripts); return the ``.tgz``."""
    npm_spec = spec.source
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError(f"{label}: npm not found on PATH; install Node.js/npm (apt-get install npm) and run "
                           "`liwi weights fetch`, or pass a local tarball with "
                           "`liwi weights fetch --from-tarball FILE`")
    if log:
        log(f"{label}: downloading {npm_spec} ({spec.tarball_size / 1e6:.0f} MB) with npm pack")
    out = dest / "pack"
    out.mkdir()
    cmd = [npm, "pack", npm_spec, "--pack-destination", str(out), "--cache", str(dest / "npm-cache"),
           "--ignore-scripts", "--no-update-notifier", "--loglevel=warn", "--logs-max=0"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WeightsError(f"{label}: `npm pack {npm_spec}` ran past {NPM_TIMEOUT_S} s; check the network "
                           "(or npm's proxy config) and run `liwi weights fetch`") from exc
    except OSError as exc:
        raise WeightsError(f"{label}: cannot run {npm} ({exc}); reinstall Node.js/npm and run "
                           "`liwi weights fetch`") from exc
    if proc.returncode != 0:
        raise WeightsError(f"{label}: `npm pack {npm_spec}` failed (exit {proc.returncode}): "
                           f"{npm_reason(proc.stderr)}; check the network and run `liwi weights fetch`")
    found = sorted(out.glob("*.tgz"))
    if len(found) != 1:
        raise WeightsError(f"{label}: `npm pack {npm_spec}` wrote {len(found)} .tgz files, expected 1; "
                           "run `liwi weights fetch --force`")
    return found[0]


def npm_reason(stderr: str) -> str:
    """The line of npm's stderr that says what went wrong (npm ends with log-file notices, so not the last)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        body = re.sub(r"^npm (error|ERR!)\s*", "", ln)
        if body != ln and body and not re.match(r"(code|errno|syscall)\b|(a complete )?log", body, re.I):
            return body[:300]
    return lines[-1][:300] if lines else "no output"


def check_tarball(specs: Sequence[WeightSpec], tgz: Path, from_npm: bool) -> None:
    """Raise unless ``tgz`` has the pinned size and sha512 of the specs' package version."""
    spec, label = specs[0], ", ".join(s.name for s in specs)
    fix = ("the download is corrupt, run `liwi weights fetch --force`" if from_npm
           else f"it is not {spec.source}; get that with `npm pack {spec.source}`")
    if not tgz.is_file():
        raise WeightsError(f"{label}: tarball {tgz} not found; pass the .tgz that `npm pack {spec.source}` writes")
    size = tgz.stat().st_size
    if size != spec.tarball_size:
        raise WeightsError(f"{label}: tarball {tgz} is {size} bytes, expected {spec.tarball_size}; {fix}")
    h = hashlib.sha512()
    with tgz.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    if h.hexdigest() != spec.tarball_sha512:
        raise WeightsError(f"{label}: tarball {tgz} has sha512 {short(h.hexdigest())} expected "
                           f"{short(spec.tarball_sha512)}; {fix}")


def _chunk_plan(spec: WeightSpec, resources: dict[str, Any]) -> list[tuple[str, int, int]]:
    """The (hash, start, end) of each chunk of ``spec``'s resource, checked to tile [0, size) in order."""
    def bad(why: str) -> WeightsError:
        return WeightsError(f"{spec.name}: resources.json of {spec.source}: {why}; "
                            "the tarball does not match the registry, run `liwi weights fetch --force`")

    entry = resources.get(spec.resource)
    if not isinstance(entry, dict) or not isinstance(entry.get("chunks"), list) or not entry["chunks"]:
        raise bad(f"no resource {spec.resource!r} with a list of chunks")
    if entry.get("size") != spec.size:
        raise bad(f"{spec.resource} has size {entry.get('size')!r}, expected {spec.size}")
    plan, pos, n = [], 0, len(entry["chunks"])
    for i, chunk in enumerate(entry["chunks"], 1):
        digest = chunk.get("hash") if isinstance(chunk, dict) else None
        offsets = chunk.get("offsets") if isinstance(chunk, dict) else None
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise bad(f"chunk {i} of {n} has hash {digest!r}, not 64 hex digits")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or offsets[0] != pos or offsets[1] <= pos):
            raise bad(f"chunk {i} of {n} has offsets {offsets!r}, expected [{pos}, end > {pos}]")
        plan.append((digest, pos, offsets[1]))
        pos = offsets[1]
    if pos != spec.size:
        raise bad(f"chunks of {spec.resource} end at {pos}, expected {spec.size}")
    return plan


def _member(tf: tarfile.TarFile, name: str, label: str, tgz: Path) -> tarfile.TarInfo:
    """The regular-file member called exactly ``name``."""
    try:
        member = tf.getmember(name)
    except KeyError:
        raise WeightsError(f"{label}: tarball {tgz} has no member {name}; run `liwi weights fetch --force`") from None
    if not member.isreg():
        raise WeightsError(f"{label}: tarball member {name} is not a regular file; run `liwi weights fetch --force`")
    return member


def _read(tf: tarfile.TarFile, member: tarfile.TarInfo, label: str, tgz: Path) -> bytes:
    """The bytes of a regular member (never extracted to disk)."""
    f = tf.extractfile(member)
    if f is None:
        raise WeightsError(f"{label}: cannot read {member.name} from {tgz}; run `liwi weights fetch --force`")
    with f:
        return f.read()


def _read_resources(tf: tarfile.TarFile, label: str, tgz: Path) -> dict[str, Any]:
    """The parsed ``package/dist/resources.json`` of the tarball (a JSON object of bounded size)."""
    member = _member(tf, RESOURCES_MEMBER, label, tgz)
    if member.size > _MAX_RESOURCES_BYTES:
        raise WeightsError(f"{label}: {RESOURCES_MEMBER} is {member.size} bytes, too large; "
                           "run `liwi weights fetch --force`")
    try:
        resources = json.loads(_read(tf, member, label, tgz))
    except ValueError as exc:
        raise WeightsError(f"{label}: {RESOURCES_MEMBER} is not JSON ({exc}); "
                           "run `liwi weights fetch --force`") from exc
    if not isinstance(resources, dict):
        raise WeightsError(f"{label}: {RESOURCES_MEMBER} is not a JSON object; run `liwi weights fetch --force`")
    return resources


def assemble(specs: Sequence[WeightSpec], tgz: Path, root: Path, source: str, log: Log | None = None) -> None:
    """Reassemble every spec's file from the (already checked) tarball ``tgz`` into ``root``, with sidecars.

    Each chunk is read once, in archive order (the gzip stream is not rewound per chunk), checked against
    its sha256 and length, and written at its offset into a temporary file; each file's size and sha256 are
    checked before it is renamed into place.
    """
    label = ", ".join(s.name for s in specs)
    parts: dict[str, Path] = {}
    try:
        with tarfile.open(tgz, "r:gz") as tf:
            resources = _read_resources(tf, label, tgz)
            # chunk hash -> every (spec, index, count, start, end) it fills
            wanted: dict[str, list[tuple[WeightSpec, int, int, int, int]]] = {}
            for spec in specs:
                plan = _chunk_plan(spec, resources)
                for i, (digest, start, end) in enumerate(plan, 1):
                    wanted.setdefault(digest, []).append((spec, i, len(plan), start, end))
            members = {d: _member(tf, f"package/dist/{d}", label, tgz) for d in wanted}
            files: dict[str, BinaryIO] = {}
            try:
                for spec in specs:
                    fd, tmp = tempfile.mkstemp(prefix=f".{spec.file_name}.", suffix=".part", dir=root)
                    parts[spec.name] = Path(tmp)
                    files[spec.name] = os.fdopen(fd, "wb")
                    files[spec.name].truncate(spec.size)
                for digest in sorted(wanted, key=lambda d: members[d].offset_data):
                    _copy_chunk(tf, members[digest], digest, wanted[digest], files, tgz)
            finally:
                for f in files.values():
                    f.close()
        for spec in specs:
            _install(spec, parts[spec.name], root / spec.file_name, source)
            if log:
                log(f"{spec.name}: fetched and verified -> {root / spec.file_name}")
    except _TAR_ERRORS as exc:
        raise WeightsError(f"{label}: tarball {tgz} is not a readable .tgz ({exc}); "
                           "run `liwi weights fetch --force`") from exc
    except OSError as exc:
        raise WeightsError(f"{label}: cannot write to {root} ({exc}); free disk space or set "
                           "LIWI_WEIGHTS_DIR to a writable folder") from exc
    finally:
        for part in parts.values():  # a renamed part is gone already
            part.unlink(missing_ok=True)


def _copy_chunk(tf: tarfile.TarFile, member: tarfile.TarInfo, digest: str,
                targets: list[tuple[WeightSpec, int, int, int, int]], files: dict[str, BinaryIO], tgz: Path) -> None:
    """Check one chunk member against its hash and length, then write it at its offset in every target."""
    spec, i, n, start, end = targets[0]
    where = f"{spec.name}: chunk {i} of {n} (package/dist/{short(digest)})"
    if member.size != end - start:
        raise WeightsError(f"{where} is {member.size} bytes, expected {end - start}; "
                           "the download is corrupt, run `liwi weights fetch --force`")
    data = _read(tf, member, spec.name, tgz)
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != end - start or actual != digest:
        raise WeightsError(f"{where} has sha256 {short(actual)} expected {short(digest)}; "
                           "the download is corrupt, run `liwi weights fetch --force`")
    for t_spec, _, _, t_start, _ in targets:
        f = files[t_spec.name]
        f.seek(t_start)
        f.write(data)


def _install(spec: WeightSpec, part: Path, dest: Path, source: str) -> None:
    """Check the reassembled ``part`` (size, sha256), rename it to ``dest``, then write the sidecar."""
    size = part.stat().st_size
    if size != spec.size:
        raise WeightsError(f"{spec.name}: reassembled file is {size} bytes, expected {spec.size}; "
                           "run `liwi weights fetch --force`")
    digest = sha256_file(part)
    if digest != spec.sha256:
        raise WeightsError(f"{spec.name}: reassembled file has sha256 {short(digest)} expected "
                           f"{short(spec.sha256)}; the download is corrupt, run `liwi weights fetch --force`")
    os.chmod(part, 0o644)  # mkstemp makes 0600; a weights cache is readable like any other
    os.replace(part, dest)
    _write_sidecar(spec, dest, source)


def _write_sidecar(spec: WeightSpec, path: Path, source: str) -> None:
    """Write ``<file>.json`` beside ``path`` atomically: what the file is and where it came from."""
    record = {"name": spec.name, "version": spec.version, "package": spec.package, "resource": spec.resource,
              "file": spec.file_name, "sha256": spec.sha256, "size": spec.size, "licence": spec.licence,
              "description": spec.description, "tarball_sha512": spec.tarball_sha512,
              "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"), "source": source}
    side = sidecar_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, side)
    finally:
        Path(tmp).unlink(missing_ok=True)
