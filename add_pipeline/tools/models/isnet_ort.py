"""IS-Net on onnxruntime: our :class:`~add_pipeline.tools.models.isnet_net.ISNet` exported once to an
ONNX file of any batch and size, then run by onnxruntime's CPU kernels.

The npm package's export is fixed at 1024x1024 (its Resize sizes are constants), so it cannot run at
the pipeline's 640 px; our module can, and its own export keeps that freedom. On this project's
CPU the export runs about a fifth faster than PyTorch (``bench/results/isnet_runtime.md``).

The export is derived from the weights file and cached beside it as
``<stem>.<digest>.v<EXPORT_VERSION>-torch<version>.ort.onnx`` (``digest``: BLAKE2b of the source
file; a new network definition bumps ``EXPORT_VERSION``), so neither new weights nor new code meet a
stale export. Processes that need it at once (Ray workers) take an exclusive lock; the file appears
by an atomic rename, and temporary files a killed export left behind are removed under the lock.
The folder must be writable (the weights cache is).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ORT_SUFFIX = ".ort.onnx"
EXPORT_VERSION = 1
"""Bump when :class:`~add_pipeline.tools.models.isnet_net.ISNet` or the export's settings change."""


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """16 hex digits of BLAKE2b over the file's bytes."""
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def export_path(source: Path) -> Path:
    """Where the onnxruntime export of weights file ``source`` is cached."""
    import torch

    version = torch.__version__.split("+")[0]
    return source.with_name(f"{source.stem}.{file_digest(source)}.v{EXPORT_VERSION}-torch{version}{ORT_SUFFIX}")


def ensure_export(source: Path, build: Callable[[], Any]) -> Path:
    """The cached export of ``source``, made now (from ``build()``, an fp32 CPU ``ISNet`` in eval mode)
    if missing. Safe when several processes ask at once; a failed export leaves nothing behind."""
    import torch

    target = export_path(source)
    if target.is_file():
        return target
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another process made it while we waited
            return target
        for stale in target.parent.glob(f"{target.name}.tmp-*"):  # from an export killed midway
            stale.unlink(missing_ok=True)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            net = build()
            with torch.inference_mode():
                torch.onnx.export(net, (torch.zeros(1, 3, 64, 64),), str(tmp), input_names=["input"],
                                  output_names=["output"], opset_version=17, dynamo=False,
                                  dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h", 3: "w"}})
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def omp_threads() -> int:
    """The first number of ``OMP_NUM_THREADS`` (``"4"``, ``"4,2"``), or 0 (onnxruntime's default) if
    it is unset or not a number."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


class OrtIsNet:
    """``__call__(x)``: ``N x 3 x H x W float32`` (RGB/255 - 0.5) -> ``N x 1 x H x W float32`` logits.

    Threads: ``OMP_NUM_THREADS`` when set (Ray gives each task its CPUs that way), else
    onnxruntime's default.
    """

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = omp_threads()
        opts.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": np.ascontiguousarray(x, np.float32)})[0]
