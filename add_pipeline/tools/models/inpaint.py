"""LaMa inpainting from a TorchScript file (no ``transformers``; only ``torch``).

Expected TorchScript signature (what the common LaMa exports, e.g. ``big-lama.pt``, provide)::

    model(image: float32[B, 3, H, W] in [0, 1], mask: float32[B, 1, H, W] in {0, 1}, 1 = hole)
        -> float32[B, 3, H, W] in [0, 1]

with ``H`` and ``W`` multiples of 8. The model receives the unmasked image and does its own
masking. The image is padded (mirror) to a multiple of ``pad_multiple``, the result cropped back;
outside the mask the family contract restores the input exactly.
"""

from __future__ import annotations

import numpy as np

from add_pipeline.tools.base import Inpainter, ToolError, register
from add_pipeline.tools.batching import BatchedTool
from add_pipeline.tools.models import imaging as im
from add_pipeline.tools.models.runtime import ModelRuntime


@register
class LamaInpainter(ModelRuntime, BatchedTool, Inpainter):
    """LaMa (TorchScript). ``checkpoint`` is a local ``.pt`` file (e.g. ``weights/big-lama.pt``).

    Args:
        checkpoint: path of the TorchScript file.
        pad_multiple: H and W are padded to a multiple of this (8 for LaMa's down/up-sampling).
        device: ``auto`` (cuda if available), ``cpu`` or ``cuda[:N]``.
        precision: ``fp32``, ``fp16`` or ``bf16`` (half precision on CUDA only).
        batch_size: most images per forward pass in batched (actor) calls.
    """

    name = "lama"
    requires = ("torch",)
    checkpoint_is_file = True

    def __init__(self, checkpoint: str | None = None, pad_multiple: int = 8, device: str = "auto",
                 precision: str = "fp32", batch_size: int = 4) -> None:
        self._init_runtime(checkpoint, device, precision, batch_size, local_files_only=True)
        if pad_multiple < 1:
            raise ToolError(f"{self.name}: pad_multiple must be >= 1, got {pad_multiple}")
        self.pad_multiple = int(pad_multiple)

    def _load(self) -> None:
        import torch

        try:
            model = torch.jit.load(str(self.checkpoint), map_location=self._device)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ToolError(f"{self.name}: cannot load TorchScript {self.checkpoint}: {exc}") from exc
        self._model = model.to(dtype=self._dtype).eval()

    def infer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return image.copy()
        self.ensure_loaded()
        h, w = mask.shape
        hp, wp = im.round_up(h, self.pad_multiple), im.round_up(w, self.pad_multiple)
        img = np.pad(image.astype(np.float32) / 255.0, ((0, hp - h), (0, wp - w), (0, 0)), mode="symmetric")
        hole = np.pad(mask.astype(np.float32), ((0, hp - h), (0, wp - w)), mode="symmetric")
        out = self.forward((np.ascontiguousarray(img.transpose(2, 0, 1)), hole[None]))
        return np.round(np.clip(out[:, :h, :w].transpose(1, 2, 0), 0.0, 1.0) * 255.0).astype(np.uint8)

    def _forward(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        import torch

        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, (img, _) in enumerate(items):  # sizes differ: one forward per padded shape
            groups.setdefault(img.shape, []).append(k)
        for idx in groups.values():
            img = torch.from_numpy(np.stack([items[k][0] for k in idx])).to(self._device, self._dtype)
            hole = torch.from_numpy(np.stack([items[k][1] for k in idx])).to(self._device, self._dtype)
            with torch.inference_mode():
                res = self._model(img, hole)
            if tuple(res.shape) != tuple(img.shape):
                raise ToolError(f"{self.name}: model returned {tuple(res.shape)} for input {tuple(img.shape)}")
            res = res.float().cpu().numpy()
            for j, k in enumerate(idx):
                out[k] = res[j]
        return out  # type: ignore[return-value]
