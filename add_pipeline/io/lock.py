"""One writer per output folder: an exclusive ``flock`` on ``OUT/.liwi.lock`` for the whole run.

Two runs into one ``OUT`` would each see the same ids as not yet done and commit every sample
twice. :func:`output_lock` takes an exclusive, non-blocking ``fcntl.flock`` on the lock file and
writes the holder (pid, host, start time) into it; a second writer is refused at once
with a message naming the holder. The kernel drops the lock when the holder's process dies, even
by ``kill -9``, so a crashed run never leaves a stale lock: the file stays, the lock does not.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LOCK_NAME = ".liwi.lock"


class OutputLockedError(RuntimeError):
    """Another live process is writing into the same output folder."""


def _holder(fd: int) -> str:
    """The recorded holder of the lock behind ``fd``, as words (or a note that it is unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} since {info['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


@contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``out`` (created if needed) for the ``with`` body.

    Raises :class:`OutputLockedError` naming the holder when another process holds it.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLockedError(f"{out} is being written by another run ({_holder(fd)}); wait for it to "
                                    "finish or choose another --out") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode())
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
