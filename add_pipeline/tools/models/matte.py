"""ViTMatte (Hugging Face ``transformers``): trimap-conditioned alpha matting.

The trimap is grown from the binary mask exactly as the classical matters do
(:func:`add_pipeline.tools.classical.matting.make_trimap`: mask eroded by ``band`` px = foreground,
outside the mask dilated by ``band`` px = background, the rest unknown). Only a crop around the
unknown band plus ``context`` px is sent to the network; outside the unknown band alpha is the
trimap's exact 0 / 1. Foreground colours come from pymatting's ``estimate_foreground_ml``.
"""

from __future__ import annotations

import numpy as np

from add_pipeline.tools.base import Matte, Matter, register
from add_pipeline.tools.batching import BatchedTool
from add_pipeline.tools.classical.matting import matte_in_band
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
        def solve(crop: np.ndarray, t: np.ndarray) -> np.ndarray:
            self.ensure_loaded()
            x = np.concatenate([im.normalize(crop, self._mean, self._std), t[None].astype(np.float32)])
            return self.forward(x)

        return matte_in_band(image, mask, band if band is not None else self.band, self.context, solve, self.name)

    def _forward(self, items: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        hp = im.round_up(max(x.shape[1] for x in items), self._divisor)
        wp = im.round_up(max(x.shape[2] for x in items), self._divisor)
        batch = torch.from_numpy(np.stack([im.pad_to(x, (hp, wp)) for x in items])).to(self._device, self._dtype)
        with torch.inference_mode():
            alphas = self._model(pixel_values=batch).alphas.float().cpu().numpy()[:, 0]
        return [alphas[k, : x.shape[1], : x.shape[2]] for k, x in enumerate(items)]
