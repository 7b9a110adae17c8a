"""Sample ids (and layer names) as file names: safe, distinct, and never a way out of a folder.

Ids come from manifests, i.e. from users: ``../../etc``, ``/abs/path``, ``a/b``, ``..`` or a NUL
must not become paths. :func:`safe_name` keeps ``[A-Za-z0-9._-]`` and percent-encodes every other
byte of the UTF-8 id (``/`` and ``%`` included, and a leading ``.``, so no name is ``.``, ``..``
or hidden), so distinct ids give distinct names and the id can be read back
(:func:`unsafe_name`); over-long names are cut and suffixed with a hash of the whole id.
:func:`child` joins a name under a folder and checks that the result stays inside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote, unquote

MAX_NAME = 180  # bytes; below the 255 of common file systems, with room for suffixes like "_shadow.png"


def safe_name(text: str) -> str:
    """A file name for ``text`` (any string): ``[A-Za-z0-9._%-]`` only, not starting with ``.``, at most
    :data:`MAX_NAME` chars."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"a name must be a non-empty string, got {text!r}")
    name = quote(text, safe="-_.")
    if name.startswith("."):  # no ".", "..", nor hidden files
        name = "%2E" + name[1:]
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[: MAX_NAME - 18]}~{digest}"
    return name


def unsafe_name(name: str) -> str:
    """The text :func:`safe_name` encoded (exact for names that were not shortened)."""
    return unquote(name)


def child(folder: Path, name: str) -> Path:
    """``folder / safe_name(name)``, checked to lie directly inside ``folder``."""
    path = folder / safe_name(name)
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"{name!r} does not make a file name inside {folder}")
    return path
