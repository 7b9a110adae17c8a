"""ViTMatte (Hugging Face ``transformers``): trimap-conditioned alpha matting.

The trimap is grown from the binary mask exactly as the classical matters do
(:func:`add_pipeline.tools.classical.matting.make_trimap`: mask eroded by ``band`` px = foreground,
outside the mask dilated by ``band`` px = background, the rest unknown). Only a crop around the
unknown band plus ``context`` px is sent to the network; outside the unknown band alpha is the
trimap's exact 0 / 1. Foreground colours come from pymatting's ``estimate_foreground_ml``.
"""

from __future__ import annotations

import numpy as np

from add_pipeline.tools.base import Matte, Matter, ToolError, register
from add_pipeline.tools.batching import BatchedTool
from add_pipeline.tools.classical.matting import default_band, make_trimap
from add_pipeline.tools.models import imaging as im
from add_pipeline.tools.models.runtime import ModelRuntime


@register
class VitMatteMatter(ModelRuntime, BatchedTool, Matter):
    """ViTMatte (``VitMatteForImageMatting``), e.g. ``hustvl/vitmatte-small-composition-1k``.

    Network input: the RGB crop scaled to [0, 1] and normalised with the checkpoint's mean / std
    (0.5 / 0.5), concatenated with the trimap (0, 0.5, 1) as a 4th channel, zero-padded bottom/right
    to a multiple of ``size_divisor`` (32). Output alpha ``HxW`` in [0, 1].

    Args:
        checkpoint: hub id or local ``save_pretrained`` folder.
        band: unknown-band half width in px (None: ``default_band`` of the image size).
        context: known pixels kept around the unknown band's bbox in the crop, px.
        device, precision, batch_size, local_files_only: as every model tool.
    """

    name = "vitmatte"

    def __init__(self, checkpoint: str | None = None, band: int | None = None, context: int = 32,
                 device: str = "auto", precision: str = "fp32", batch_size: int = 4,
                 local_files_only: bool = False) -> None:
        self._init_runtime(checkpoint, device, precision, batch_size, local_files_only)
        self.band = None if band is None else int(band)
        self.context = int(context)

    def _load(self) -> None:
        from transformers import VitMatteForImageMatting

        self._model = self._finish_model(VitMatteForImageMatting.from_pretrained(self.checkpoint,
                                                                                  **self._pretrained_kwargs()))
        cfg = self.preprocessor_config()
        self._mean = cfg.get("image_mean", (0.5, 0.5, 0.5))
        self._std = cfg.get("image_std", (0.5, 0.5, 0.5))
        self._divisor = int(cfg.get("size_divisor", cfg.get("size_divisibility", 32)))

    def infer(self, image: np.ndarray, mask: np.ndarray, band: int | None) -> Matte:
        import pymatting

        h, w = image.shape[:2]
        b = band if band is not None else (self.band if self.band is not None else default_band((h, w)))
        if b < 1:
            raise ToolError(f"{self.name}: band must be >= 1 px, got {b}")
        tri = make_trimap(mask, int(b))
        alpha = (tri == 1.0).astype(np.float32)
        fg = image.astype(np.float32) / 255.0
        unknown = tri == 0.5
        if not unknown.any():
            return Matte(alpha=alpha, foreground=fg)
        self.ensure_loaded()
        ys, xs = np.nonzero(unknown)
        y0, y1 = max(ys.min() - self.context, 0), min(ys.max() + 1 + self.context, h)
        x0, x1 = max(xs.min() - self.context, 0), min(xs.max() + 1 + self.context, w)
        crop, t = image[y0:y1, x0:x1], tri[y0:y1, x0:x1]
        x = np.concatenate([im.normalize(crop, self._mean, self._std), t[None].astype(np.float32)])
        a = np.clip(self.forward(x), 0.0, 1.0)
        a = np.where(t == 0.5, a, t)
        f = pymatting.estimate_foreground_ml(crop.astype(np.float64) / 255.0, a.astype(np.float64))
        alpha[y0:y1, x0:x1] = a.astype(np.float32)
        fg[y0:y1, x0:x1] = np.clip(f, 0.0, 1.0).astype(np.float32)
        return Matte(alpha=alpha, foreground=fg)

    def _forward(self, items: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        hp = im.round_up(max(x.shape[1] for x in items), self._divisor)
        wp = im.round_up(max(x.shape[2] for x in items), self._divisor)
        batch = torch.from_numpy(np.stack([im.pad_to(x, (hp, wp)) for x in items])).to(self._device, self._dtype)
        with torch.inference_mode():
            alphas = self._model(pixel_values=batch).alphas.float().cpu().numpy()[:, 0]
        return [alphas[k, : x.shape[1], : x.shape[2]] for k, x in enumerate(items)]
