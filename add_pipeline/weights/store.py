"""The weights folder: where fetched files live, their sidecars, and the checks run before use.

Each weights file ``<file_name>`` has a sidecar ``<file_name>.json`` written after it (the completion
record: name, version, sha256, size, licence, fetched_at, source). :func:`resolve` trusts a file whose
size matches and whose sidecar records the pinned sha256 (cheap, done by every model tool);
:func:`verify` rehashes the whole file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from add_pipeline.weights.registry import WEIGHTS, WeightsError, WeightSpec, get_spec

_BLOCK = 1 << 20


def weights_dir() -> Path:
    """``$LIWI_WEIGHTS_DIR`` if set, else ``$XDG_CACHE_HOME/liwi/weights``, else ``~/.cache/liwi/weights``."""
    env = os.environ.get("LIWI_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "liwi" / "weights"


def weights_path(name: str | WeightSpec) -> Path:
    """Where the file of ``name`` lives (whether or not it has been fetched)."""
    return weights_dir() / get_spec(name).file_name


def sidecar_path(path: Path) -> Path:
    """The sidecar of a weights file: ``<file>.json`` beside it."""
    return path.with_name(path.name + ".json")


def short(digest: str) -> str:
    """The first 12 hex digits of a digest, for messages."""
    return digest[:12] + "…"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of weights file ``path`` as a dict, or None when absent or unreadable."""
    try:
        data = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class WeightStatus:
    """One row of ``liwi weights list``: a registered file and whether it is usable.

    ``size`` is the pinned size in bytes; ``status`` is ``ok``, ``missing`` or ``corrupt: <why>``.
    """

    name: str
    version: str
    size: int
    licence: str
    path: Path
    status: str

    @property
    def ok(self) -> bool:
        """True when the file is present and passed the check that produced this status."""
        return self.status == "ok"


def _problem(spec: WeightSpec, path: Path, full: bool) -> str | None:
    """Why ``path`` is not the file of ``spec`` (None when it is): 'missing' or a reason it is corrupt."""
    if not path.is_file():
        return "missing"
    actual = path.stat().st_size
    if actual != spec.size:
        return f"size {actual} bytes, expected {spec.size}"
    meta = read_sidecar(path)
    if full:
        digest = sha256_file(path)
        if digest != spec.sha256:
            return f"sha256 {short(digest)} expected {short(spec.sha256)}"
    if meta is None:
        return f"no readable sidecar {sidecar_path(path).name}"
    if meta.get("sha256") != spec.sha256 or meta.get("size") != spec.size:
        return f"sidecar records sha256 {short(str(meta.get('sha256')))} expected {short(spec.sha256)}"
    return None


def status(name: str | WeightSpec, full: bool = False) -> WeightStatus:
    """Whether the file of ``name`` is usable: exists, size and sidecar match; ``full`` also rehashes it."""
    spec = get_spec(name)
    path = weights_path(spec)
    problem = _problem(spec, path, full)
    text = "ok" if problem is None else "missing" if problem == "missing" else f"corrupt: {problem}"
    return WeightStatus(spec.name, spec.version, spec.size, spec.licence, path, text)


def verify(name: str | WeightSpec) -> WeightStatus:
    """:func:`status` with a full sha256 of the file."""
    return status(name, full=True)


def list_weights(full: bool = False) -> list[WeightStatus]:
    """The status of every registered weights file, in registry order."""
    return [status(spec, full=full) for spec in WEIGHTS.values()]


def resolve(name: str | WeightSpec) -> Path:
    """The path of the fetched file of ``name``, after the cheap check; model tools call this.

    Raises :class:`WeightsError` (one line, with the command that fixes it) when it is missing or corrupt.
    """
    spec = get_spec(name)
    st = status(spec)
    if st.status == "missing":
        raise WeightsError(f"{spec.name}: not fetched (no {st.path}); run `liwi weights fetch {spec.name}`")
    if not st.ok:
        raise WeightsError(f"{spec.name}: {st.path} is {st.status}; run `liwi weights fetch --force {spec.name}`")
    return st.path
