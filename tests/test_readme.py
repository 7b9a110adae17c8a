"""Every command of the README runs as written, in order, in a fresh folder.

The ``liwi`` lines of the README's shell blocks and its Python blocks are taken from the file
itself, so a command that changes in the README is the command that is tested.  ``make`` lines are
the two setup commands (CI runs ``make test``; ``make demo`` is ``liwi samples`` + ``liwi run`` +
``liwi stats``, run here too) and the benchmark targets, which are not tests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LIWI = Path(sys.executable).with_name("liwi")
MAKE_TARGETS = {"demo", "test", "eval", "bench", "model", "eval-model", "bench-models", "setup"}


def _blocks() -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of the README, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README.read_text(), re.M | re.S)]


def _commands() -> list[tuple[str, str]]:
    """``("shell", line)`` for each ``liwi`` command and ``("python", body)`` for each Python block, in order."""
    out: list[tuple[str, str]] = []
    for lang, body in _blocks():
        if lang == "python":
            out.append(("python", body))
            continue
        for line in body.splitlines():
            cmd = line.split("  #", 1)[0].strip()
            if cmd.startswith("liwi "):
                out.append(("shell", cmd))
    return out


def test_readme_make_lines_are_real_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for _, body in _blocks():
        for line in body.splitlines():
            if line.startswith("make "):
                target = line.split()[1]
                assert target in MAKE_TARGETS and re.search(rf"^{re.escape(target)}:", makefile, re.M), line


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path: Path) -> None:
    commands = _commands()
    assert sum(kind == "shell" for kind, _ in commands) >= 20 and any(kind == "python" for kind, _ in commands)
    for kind, text in commands:
        if kind == "shell":
            argv = shlex.split(text)
            if argv[1] == "weights" and argv[2] == "fetch":
                continue  # make setup ran it (the cache is shared); tests/test_weights.py tests the fetch
            proc = subprocess.run([str(LIWI), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        else:
            proc = subprocess.run([sys.executable, "-c", text], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=600, env={**os.environ, "HF_DATASETS_OFFLINE": "1",
                                                    "HF_HUB_OFFLINE": "1",
                                                    "HF_DATASETS_CACHE": str(tmp_path / ".hf-cache")})
        assert proc.returncode == 0, f"README command failed: {text}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    for made in ("out/demo/README.md", "out/demo-report.html", "out/psd", "out/ora", "out/wds", "out/layerd",
                 "out/run", "out/decomposed", "out/self-eval.json"):
        assert (tmp_path / made).exists(), made
