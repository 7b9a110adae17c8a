"""Turn an input spec (folder, glob pattern or JSONL manifest) into a sorted list of inputs.

Sample ids are derived from paths so a rerun over the same inputs yields the same
ids (resume depends on it): the path relative to the spec's root, with ``/``
replaced by ``__`` (``sub/cat.jpg`` -> ``sub__cat.jpg``).  Two inputs that would
share an id are an error, never silently renamed.

Only a folder scan filters by extension.  A glob pattern or a manifest keeps every
file it names, so broken or mislabelled files reach the decoder and become rejects
with a reason instead of vanishing.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
"""Extensions (lower case) picked up when the spec is a folder."""

ID_SEPARATOR = "__"
"""Replaces path separators in derived sample ids."""

_GLOB_MAGIC = ("*", "?", "[")


@dataclass(frozen=True)
class InputItem:
    """One input to process.

    Attributes:
        sample_id: unique, deterministic id of the sample.
        source: absolute path of the file (it may not exist or not be an image;
            the decoder decides).
    """

    sample_id: str
    source: str


def enumerate_inputs(spec: str) -> list[InputItem]:
    """List the inputs named by ``spec``, sorted by ``sample_id``.

    ``spec`` is, in this order of precedence:

    * an existing folder: every non-hidden file with an image extension
      (:data:`IMAGE_EXTENSIONS`, any case) below it, recursively, skipping hidden folders;
    * an existing ``.jsonl`` file: a manifest, one ``{"source": path, "id": optional}``
      object per line; relative sources resolve against the manifest's folder and
      blank lines are skipped;
    * otherwise a glob pattern (``**`` recurses); every regular file it matches is kept,
      whatever its extension.  A plain path to one file is a pattern matching itself.

    Raises:
        ValueError: nothing matches, a manifest line is malformed (the message names the
            line number), or two inputs share a sample id (the message lists them).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        items = _from_folder(path)
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        items = _from_manifest(path)
    else:
        items = _from_glob(str(path))
    if not items:
        raise ValueError(f"input spec {spec!r} matches no files")
    _check_unique(items)
    return sorted(items, key=lambda it: it.sample_id)


def sample_id_for(path: Path, root: Path) -> str:
    """Deterministic id of ``path``: relative to ``root`` if below it, else the absolute path.

    Path separators become :data:`ID_SEPARATOR`; e.g. ``root/sub/cat.jpg`` -> ``sub__cat.jpg``.
    """
    path, root = _absolute(path), _absolute(root)
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(*path.parts[1:])  # outside the root: the absolute path minus its anchor
    return ID_SEPARATOR.join(rel.parts)


# ---------------------------------------------------------------- the three spec kinds


def _from_folder(root: Path) -> list[InputItem]:
    """Every non-folder entry with an image extension below ``root``. Linked folders are not followed
    (no loops); FIFOs, devices and dangling links are kept, so the loader rejects them with a reason
    instead of the scan dropping them silently; a file reached twice (hard or soft links) counts once."""
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prune hidden folders
        for fname in filenames:
            if fname.startswith(".") or Path(fname).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            p = Path(dirpath) / fname
            items.append(InputItem(sample_id_for(p, root), str(_absolute(p))))
    return _once_per_file(items)


def _from_glob(pattern: str) -> list[InputItem]:
    """Every non-folder match of ``pattern``; ``**`` may wander through linked folders (even a loop of
    them), so each real file is kept once, under its shortest matching path."""
    root = _glob_root(pattern)
    items = []
    for match in glob.glob(pattern, recursive=True):
        p = Path(match)
        if not p.is_dir():
            items.append(InputItem(sample_id_for(p, root), str(_absolute(p))))
    return _once_per_file(items)


def _once_per_file(items: list[InputItem]) -> list[InputItem]:
    """``items`` with one entry per real file (device and inode), the one with the shortest path;
    entries that cannot be stat'ed (dangling links) are kept as they are."""
    best: dict[tuple[int, int], InputItem] = {}
    rest = []
    for it in items:
        try:
            st = os.stat(it.source)
        except OSError:
            rest.append(it)
            continue
        key = (st.st_dev, st.st_ino)
        if key not in best or (len(it.source), it.source) < (len(best[key].source), best[key].source):
            best[key] = it
    return list(best.values()) + rest


def _from_manifest(manifest: Path) -> list[InputItem]:
    base = _absolute(manifest).parent
    items = []
    with manifest.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{manifest}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg})") from e
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            source = record.get("source")
            if not isinstance(source, str) or not source:
                raise ValueError(f"{where}: 'source' must be a non-empty string, got {source!r}")
            sample_id = record.get("id")
            if sample_id is not None and (not isinstance(sample_id, str) or not sample_id):
                raise ValueError(f"{where}: 'id' must be a non-empty string when given, got {sample_id!r}")
            p = Path(source).expanduser()
            if not p.is_absolute():
                p = base / p
            p = _absolute(p)
            items.append(InputItem(sample_id or sample_id_for(p, base), str(p)))
    return items


# ---------------------------------------------------------------- helpers


def _absolute(p: Path) -> Path:
    """Absolute, normalised path (``..`` folded) without resolving symlinks."""
    return Path(os.path.normpath(os.path.abspath(p)))


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard component."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:  # the last part is the file name (or pattern)
        if any(ch in part for ch in _GLOB_MAGIC):
            break
        fixed.append(part)
    return _absolute(Path(*fixed)) if fixed else _absolute(Path("."))


def _check_unique(items: list[InputItem]) -> None:
    counts = Counter(it.sample_id for it in items)
    dups = sorted(sid for sid, n in counts.items() if n > 1)
    if dups:
        sources = {sid: sorted(it.source for it in items if it.sample_id == sid) for sid in dups[:10]}
        more = f" (and {len(dups) - 10} more)" if len(dups) > 10 else ""
        raise ValueError(f"duplicate sample ids: {sources}{more}")
