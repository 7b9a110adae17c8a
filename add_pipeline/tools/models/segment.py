"""Promptable segmenters: SAM and SAM 2 (Hugging Face ``transformers``), prompted by the proposal box.

The box (plus, with ``point_from_prior``, one positive point inside the coarse prior mask) goes to
the prompt encoder; the mask decoder returns ``multimask`` candidates with predicted IoUs; the
candidate with the highest predicted IoU wins and that IoU (clipped to [0, 1]) is the score.
Preprocessing is done here with numpy / PIL (the checkpoints' processors may need torchvision).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from add_pipeline.core.types import Box
from add_pipeline.tools.base import Segmentation, Segmenter, register
from add_pipeline.tools.batching import BatchedTool
from add_pipeline.tools.models import imaging as im
from add_pipeline.tools.models.runtime import ModelRuntime


class _PromptSegmenter(ModelRuntime, BatchedTool, Segmenter):
    """Shared prompt building, forward and candidate choice; subclasses set the image geometry."""

    model_class = ""

    def __init__(self, checkpoint: str | None = None, multimask: bool = True, point_from_prior: bool = True,
                 mask_threshold: float = 0.0, device: str = "auto", precision: str = "fp32",
                 batch_size: int = 8, local_files_only: bool = False) -> None:
        self._init_runtime(checkpoint, device, precision, batch_size, local_files_only)
        self.multimask = bool(multimask)
        self.point_from_prior = bool(point_from_prior)
        self.mask_threshold = float(mask_threshold)

    def _load(self) -> None:
        import transformers

        cls = getattr(transformers, self.model_class)
        self._model = self._finish_model(cls.from_pretrained(self.checkpoint, **self._pretrained_kwargs()))
        cfg = self.preprocessor_config()
        self._side = int(self._model.config.prompt_encoder_config.image_size)
        self._mean = cfg.get("image_mean", im.IMAGENET_MEAN)
        self._std = cfg.get("image_std", im.IMAGENET_STD)

    def _geometry(self, hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
        """Resized ``(width, height)`` of the image inside the ``side`` square and the x, y scales."""
        raise NotImplementedError

    def _logits_to_image(self, low: np.ndarray, hw: tuple[int, int], resized: tuple[int, int]) -> np.ndarray:
        """Low-resolution mask logits -> ``HxW`` logits on the original image."""
        raise NotImplementedError

    def infer(self, image: np.ndarray, box: Box, prior: np.ndarray | None) -> Segmentation:
        self.ensure_loaded()
        hw = image.shape[:2]
        (rw, rh), (sx, sy) = self._geometry(hw)
        pixels = im.pad_to(im.normalize(im.resize_rgb(image, (rw, rh), "bilinear"), self._mean, self._std),
                           (self._side, self._side))
        point = im.interior_point(prior) if (prior is not None and self.point_from_prior) else None
        item = {
            "pixels": pixels,
            "box": np.array([box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy], np.float32),
            "point": None if point is None else np.array([point[0] * sx, point[1] * sy], np.float32),
        }
        low, iou = self.forward(item)  # K x h x w logits, K predicted IoUs
        best = int(np.argmax(iou))
        logits = self._logits_to_image(low[best], hw, (rw, rh))
        return Segmentation(mask=logits > self.mask_threshold, score=float(np.clip(iou[best], 0.0, 1.0)))

    def _forward(self, items: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        dev = self._device
        kw: dict[str, Any] = {
            "pixel_values": torch.from_numpy(np.stack([it["pixels"] for it in items])).to(dev, self._dtype),
            "input_boxes": torch.from_numpy(np.stack([it["box"][None] for it in items])).to(dev, self._dtype),
            "multimask_output": self.multimask,
        }
        if any(it["point"] is not None for it in items):
            # one point per box; requests without a prior get a padding point (label -10, ignored)
            pts = np.stack([(it["point"] if it["point"] is not None else np.zeros(2, np.float32))[None, None]
                            for it in items])
            lab = np.array([[[1 if it["point"] is not None else -10]] for it in items], np.int64)
            kw["input_points"] = torch.from_numpy(pts).to(dev, self._dtype)
            kw["input_labels"] = torch.from_numpy(lab).to(dev)
        with torch.inference_mode():
            out = self._model(**kw)
        masks = out.pred_masks.float().cpu().numpy()[:, 0]  # B x K x h x w
        ious = out.iou_scores.float().cpu().numpy()[:, 0]  # B x K
        return [(masks[k], ious[k]) for k in range(len(items))]


@register
class SamSegmenter(_PromptSegmenter):
    """SAM (``SamModel``), e.g. ``facebook/sam-vit-base``.

    The image's long side is resized to the prompt encoder's ``image_size`` (1024), ImageNet
    normalisation, zero padding bottom/right to a square; low-resolution logits (256 px) are
    upsampled to the square, cropped to the resized image and resized to the input.

    Args:
        checkpoint: hub id or local ``save_pretrained`` folder.
        multimask: ask for 3 candidate masks and keep the one with the best predicted IoU.
        point_from_prior: add a positive point inside the prior mask (centroid, or its most interior
            pixel when the centroid falls outside).
        mask_threshold: logit threshold of the binary mask.
        device, precision, batch_size, local_files_only: as every model tool.
    """

    name = "sam"
    model_class = "SamModel"

    def _geometry(self, hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
        h, w = hw
        s = self._side / max(h, w)
        rw, rh = max(1, int(w * s + 0.5)), max(1, int(h * s + 0.5))
        return (rw, rh), (rw / w, rh / h)

    def _logits_to_image(self, low: np.ndarray, hw: tuple[int, int], resized: tuple[int, int]) -> np.ndarray:
        full = im.resize_float(low, (self._side, self._side))
        return im.resize_float(full[: resized[1], : resized[0]], (hw[1], hw[0]))


@register
class Sam2Segmenter(_PromptSegmenter):
    """SAM 2 (``Sam2Model``, single image), e.g. ``facebook/sam2.1-hiera-tiny``.

    The image is resized (aspect not kept) to the prompt encoder's ``image_size`` square (1024),
    ImageNet normalisation; box and point are scaled per axis; the low-resolution logits are
    resized straight to the input size. Args as :class:`SamSegmenter`.
    """

    name = "sam2"
    model_class = "Sam2Model"

    def _geometry(self, hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
        h, w = hw
        return (self._side, self._side), (self._side / w, self._side / h)

    def _logits_to_image(self, low: np.ndarray, hw: tuple[int, int], resized: tuple[int, int]) -> np.ndarray:
        return im.resize_float(low, (hw[1], hw[0]))
