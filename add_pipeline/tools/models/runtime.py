"""What every model-backed tool shares: checkpoint resolution, device and precision, lazy loading.

Nothing here imports torch or transformers at module import: registering the model tools is free,
and a machine without them can still list, describe and check the tools. Weights load on the first
call (:meth:`ModelRuntime.ensure_loaded`), once per process, under a lock.

``checkpoint`` is either a local path (a directory written by ``save_pretrained``, or a file for
TorchScript tools) or a Hugging Face hub id (``owner/name``). With ``local_files_only`` a hub id
must already be in the local cache (``$HF_HOME``); otherwise it is downloaded on first use.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

from add_pipeline.tools.base import ToolError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")


def missing_packages(names: tuple[str, ...]) -> list[str]:
    """Problems for the packages of ``names`` that are not importable (no import is done)."""
    hint = "pip install -e '.[models]'"
    return [f"package {n!r} is not installed ({hint})" for n in names if importlib.util.find_spec(n) is None]


def is_local(checkpoint: str) -> bool:
    """Whether ``checkpoint`` names a local path (exists, or is written like a path) rather than a hub id."""
    p = Path(checkpoint).expanduser()
    return p.exists() or checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") != 1


def hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether ``filename`` of hub repo ``repo_id`` is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; explicit devices are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ToolError(f"device {device!r} requested but torch sees no CUDA GPU")
    return device


def torch_dtype(precision: str, device: str) -> Any:
    """The torch dtype for ``precision`` on ``device``: half precision only on CUDA, fp32 elsewhere."""
    import torch

    if not device.startswith("cuda"):
        if precision != "fp32":
            log.info("precision %s applies on CUDA only; running fp32 on %s", precision, device)
        return torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class ModelRuntime:
    """Mixin for model-backed tools: call :meth:`_init_runtime` in ``__init__``, implement :meth:`_load`.

    Public attributes (``checkpoint``, ``device``, ``precision``, ``batch_size``, ...) are what
    :meth:`~add_pipeline.tools.base.Tool.describe` records; loaded objects live in ``_``-prefixed
    attributes so that weights never reach a trace.
    """

    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    checkpoint_is_file: ClassVar[bool] = False

    def _init_runtime(self, checkpoint: str | None, device: str, precision: str, batch_size: int,
                      local_files_only: bool) -> None:
        if precision not in PRECISIONS:
            raise ToolError(f"{self.name}: precision must be one of {PRECISIONS}, got {precision!r}")  # type: ignore[attr-defined]
        if batch_size < 1:
            raise ToolError(f"{self.name}: batch_size must be >= 1, got {batch_size}")  # type: ignore[attr-defined]
        if not (device == "auto" or device == "cpu" or device.startswith("cuda")):
            raise ToolError(f"{self.name}: device must be auto, cpu or cuda[:N], got {device!r}")  # type: ignore[attr-defined]
        self.checkpoint = checkpoint
        self.device = device
        self.precision = precision
        self.batch_size = int(batch_size)
        self.local_files_only = bool(local_files_only)
        self._loaded = False
        self._load_lock = threading.Lock()
        self._device = "cpu"
        self._dtype: Any = None

    # -------------------------------------------------------------- loading

    def ensure_loaded(self) -> None:
        """Load weights on first use (thread-safe); later calls return at once."""
        if self._loaded:
            return
        with self._load_lock:
            if self._loaded:
                return
            problems = missing_packages(self.requires)
            if problems:
                raise ToolError(f"{self.name}: " + "; ".join(problems))  # type: ignore[attr-defined]
            if not self.checkpoint:
                raise ToolError(f"{self.name}: no checkpoint configured (set 'checkpoint' in the tool card)")  # type: ignore[attr-defined]
            self._device = resolve_device(self.device)
            self._dtype = torch_dtype(self.precision, self._device)
            try:
                self._load()
            except OSError as exc:  # transformers / hub: missing files, not in cache, no network
                raise ToolError(f"{self.name}: cannot load {self.checkpoint}: {exc}") from exc  # type: ignore[attr-defined]
            self._loaded = True

    def _load(self) -> None:
        """Load model(s) from ``self.checkpoint`` onto ``self._device`` in ``self._dtype``."""
        raise NotImplementedError

    def _pretrained_kwargs(self) -> dict[str, Any]:
        return {"local_files_only": self.local_files_only}

    def _finish_model(self, model: Any) -> Any:
        """Move a loaded module to the run-time device and dtype, in eval mode."""
        return model.to(device=self._device, dtype=self._dtype).eval()

    def preprocessor_config(self) -> dict[str, Any]:
        """The checkpoint's ``preprocessor_config.json`` (image size, mean, std), or ``{}`` if it has none."""
        ckpt = str(self.checkpoint)
        if is_local(ckpt):
            path = Path(ckpt).expanduser() / "preprocessor_config.json"
            return json.loads(path.read_text()) if path.exists() else {}
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = hf_hub_download(ckpt, "preprocessor_config.json", local_files_only=self.local_files_only)
        except EntryNotFoundError:
            return {}
        return json.loads(Path(path).read_text())

    # -------------------------------------------------------------- check

    def check(self) -> list[str]:
        """What is missing to run this tool (packages, checkpoint, device); loads no weights."""
        problems = missing_packages(self.requires)
        ckpt = self.checkpoint
        if not ckpt:
            problems.append("no checkpoint configured")
        elif self.checkpoint_is_file or is_local(ckpt):
            p = Path(ckpt).expanduser()
            if not p.exists():
                problems.append(f"checkpoint {ckpt} not found")
            elif self.checkpoint_is_file and not p.is_file():
                problems.append(f"checkpoint {ckpt} is not a file")
            elif not self.checkpoint_is_file and not (p / "config.json").exists():
                problems.append(f"checkpoint {ckpt} has no config.json (not a save_pretrained folder)")
        elif importlib.util.find_spec("huggingface_hub") is not None and not hub_cached(ckpt):
            where = "and local_files_only is set" if self.local_files_only else "(it will be downloaded on first use)"
            problems.append(f"hub id {ckpt} is not in the local Hugging Face cache {where}")
        if self.device.startswith("cuda") and importlib.util.find_spec("torch") is not None:
            import torch

            if not torch.cuda.is_available():
                problems.append(f"device {self.device!r} requested but torch sees no CUDA GPU")
        return problems
