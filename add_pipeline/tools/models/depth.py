"""Back-to-front ordering from monocular depth: Depth Anything (Hugging Face ``transformers``).

Depth Anything's *relative* checkpoints (``depth_estimation_type: relative``, e.g.
``depth-anything/Depth-Anything-V2-Small-hf``) predict relative **inverse** depth (disparity):
larger = nearer. *Metric* checkpoints predict depth in metres: larger = farther. The orderer reads
which from the checkpoint's config. Each object gets the median of the map inside its mask;
objects are sorted farthest first; an empty mask counts as farthest.
"""

from __future__ import annotations

import numpy as np

from add_pipeline.tools.base import Orderer, register
from add_pipeline.tools.batching import BatchedTool
from add_pipeline.tools.models import imaging as im
from add_pipeline.tools.models.runtime import ModelRuntime


def constrained_size(hw: tuple[int, int], target: int, multiple: int) -> tuple[int, int]:
    """``(width, height)`` scaled so both sides are >= ``target`` (aspect kept), rounded to ``multiple``."""
    h, w = hw
    s = max(target / h, target / w)

    def snap(v: float) -> int:
        r = int(round(v / multiple)) * multiple
        return r if r >= v - 1e-6 else r + multiple  # never below the bound: ceil when rounding went down

    return snap(w * s), snap(h * s)


@register
class DepthAnythingOrderer(ModelRuntime, BatchedTool, Orderer):
    """Depth Anything (``DepthAnythingForDepthEstimation``): order by median depth inside each mask.

    Preprocessing as the checkpoint's processor: resize (bicubic, aspect kept) so both sides are at
    least ``resolution`` (518) px and multiples of the patch size (14), ImageNet normalisation. The
    predicted map is resized back to the image (bilinear) before taking medians.

    Args:
        checkpoint: hub id or local ``save_pretrained`` folder.
        resolution: lower bound of the network input sides, px (None: the checkpoint's, 518).
        device, precision, batch_size, local_files_only: as every model tool.
    """

    name = "depth-anything"

    def __init__(self, checkpoint: str | None = None, resolution: int | None = None, device: str = "auto",
                 precision: str = "fp32", batch_size: int = 4, local_files_only: bool = False) -> None:
        self._init_runtime(checkpoint, device, precision, batch_size, local_files_only)
        self.resolution = None if resolution is None else int(resolution)

    def _load(self) -> None:
        from transformers import DepthAnythingForDepthEstimation

        self._model = self._finish_model(DepthAnythingForDepthEstimation.from_pretrained(
            self.checkpoint, **self._pretrained_kwargs()))
        cfg = self.preprocessor_config()
        size = cfg.get("size") or {}
        self._target = self.resolution or int(size.get("height", 518))
        self._multiple = int(cfg.get("ensure_multiple_of", self._model.config.patch_size))
        self._mean = cfg.get("image_mean", im.IMAGENET_MEAN)
        self._std = cfg.get("image_std", im.IMAGENET_STD)
        # relative checkpoints predict inverse depth (larger = nearer); metric ones depth (larger = farther)
        self._larger_is_nearer = getattr(self._model.config, "depth_estimation_type", "relative") != "metric"

    def depth_map(self, image: np.ndarray) -> np.ndarray:
        """The model's ``HxW float32`` map at the image size (inverse depth for relative checkpoints)."""
        self.ensure_loaded()
        wh = constrained_size(image.shape[:2], self._target, self._multiple)
        pred = self.forward(im.normalize(im.resize_rgb(image, wh, "bicubic"), self._mean, self._std))
        return im.resize_float(pred, (image.shape[1], image.shape[0]))

    def infer(self, image: np.ndarray, masks: list[np.ndarray]) -> list[int]:
        if len(masks) <= 1:
            return list(range(len(masks)))
        depth = self.depth_map(image)
        sign = 1.0 if self._larger_is_nearer else -1.0
        # nearness per object; empty masks are farthest (-inf)
        near = [sign * float(np.median(depth[m])) if m.any() else -np.inf for m in masks]
        return sorted(range(len(masks)), key=lambda i: (near[i], i))

    def _forward(self, items: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, x in enumerate(items):  # aspect ratios differ: one forward per input shape
            groups.setdefault(x.shape, []).append(k)
        for idx in groups.values():
            batch = torch.from_numpy(np.stack([items[k] for k in idx])).to(self._device, self._dtype)
            with torch.inference_mode():
                pred = self._model(pixel_values=batch).predicted_depth.float().cpu().numpy()
            for j, k in enumerate(idx):
                out[k] = pred[j]
        return out  # type: ignore[return-value]
