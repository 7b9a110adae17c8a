"""Open-vocabulary detectors as proposers: Grounding DINO and OWLv2 (Hugging Face ``transformers``).

Both take text prompts: the planner's object names when the graph passes them
(``tool(image, max_objects, labels=[...])``), else the card's ``default_prompts``. Every
detection is scored in [0, 1] against every prompt; a box keeps its best prompt as its label.
Boxes under ``score_threshold`` are dropped, the rest go through class-agnostic NMS (our own, in
numpy) and the best ``max_objects`` are returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from add_pipeline.tools.base import Proposal, Proposer, ToolError, register
from add_pipeline.tools.batching import BatchedTool
from add_pipeline.tools.models import imaging as im
from add_pipeline.tools.models.runtime import ModelRuntime


class _PromptedProposer(ModelRuntime, BatchedTool, Proposer):
    """Prompt handling, thresholds, NMS; subclasses prepare inputs, run the net and decode it."""

    def __init__(self, checkpoint: str | None = None, default_prompts: str | Sequence[str] = ("object",),
                 score_threshold: float = 0.3, nms_iou: float = 0.5, min_box_px: int = 2,
                 device: str = "auto", precision: str = "fp32", batch_size: int = 4,
                 local_files_only: bool = False) -> None:
        self._init_runtime(checkpoint, device, precision, batch_size, local_files_only)
        if isinstance(default_prompts, str):  # "cat, dog": cards keep it a string (hashable specs)
            default_prompts = default_prompts.split(",")
        self.default_prompts = tuple(s for s in (str(p).strip() for p in default_prompts) if s)
        if not self.default_prompts:
            raise ToolError(f"{self.name}: default_prompts must name at least one object")
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.min_box_px = int(min_box_px)

    def infer(self, image: np.ndarray, max_objects: int, labels: tuple[str, ...] = ()) -> list[Proposal]:
        """Looks for ``labels`` (the planner's object names), else the card's ``default_prompts``."""
        self.ensure_loaded()
        prompts = labels or tuple(p.lower() for p in self.default_prompts)
        boxes, scores = self.forward(self._prepare(image, prompts))  # boxes Nx4 xyxy px, scores NxP
        hw = image.shape[:2]
        if boxes.shape[0] == 0:
            return []
        best = scores.argmax(axis=1)
        conf = scores[np.arange(len(best)), best]
        sel = conf >= self.score_threshold
        boxes, conf, best = boxes[sel], conf[sel], best[sel]
        out: list[Proposal] = []
        for i in im.nms(boxes, conf, self.nms_iou):
            box = im.pixel_box(boxes[i], hw)
            if box is None or min(box[2] - box[0], box[3] - box[1]) < self.min_box_px:
                continue
            out.append(Proposal(box=box, score=float(np.clip(conf[i], 0.0, 1.0)), label=prompts[int(best[i])]))
            if len(out) >= max_objects:
                break
        return out

    def _prepare(self, image: np.ndarray, prompts: tuple[str, ...]) -> dict[str, Any]:
        raise NotImplementedError


@register
class GroundingDinoProposer(_PromptedProposer):
    """Grounding DINO (``GroundingDinoForObjectDetection``), e.g. ``IDEA-Research/grounding-dino-tiny``.

    Preprocessing follows the checkpoint's ``preprocessor_config.json``: short side to
    ``size.shortest_edge`` (800) capped by ``size.longest_edge`` (1333), ImageNet normalisation;
    ``resolution`` overrides the short side. The text is ``"p1 . p2 . "``; a query's score for a
    prompt is the max sigmoid over that prompt's tokens. Images of a batch are padded bottom/right
    and masked with ``pixel_mask``; predicted boxes are relative to each image's unpadded extent.

    Args:
        checkpoint: hub id or local ``save_pretrained`` folder (model, tokenizer, preprocessor config).
        default_prompts: object names used when the call gives no ``labels``: a list, or one string
            of comma-separated names (what cards use: Ray tool specs must be hashable).
        score_threshold: minimum prompt score of a kept box, in [0, 1] (the paper's box threshold).
        nms_iou: class-agnostic NMS IoU threshold.
        min_box_px: boxes thinner than this (px, after rounding) are dropped.
        resolution: short side of the network input, px (None: the checkpoint's).
        device: ``auto`` (cuda if available), ``cpu`` or ``cuda[:N]``.
        precision: ``fp32``, ``fp16`` or ``bf16`` (half precision on CUDA only).
        batch_size: most images per forward pass in batched (actor) calls.
        local_files_only: never download; a hub id must be in the local cache.
    """

    name = "grounding-dino"

    def __init__(self, checkpoint: str | None = None, default_prompts: str | Sequence[str] = ("object",),
                 score_threshold: float = 0.3, nms_iou: float = 0.5, min_box_px: int = 2,
                 resolution: int | None = None, device: str = "auto", precision: str = "fp32",
                 batch_size: int = 4, local_files_only: bool = False) -> None:
        super().__init__(checkpoint, default_prompts, score_threshold, nms_iou, min_box_px, device, precision,
                         batch_size, local_files_only)
        self.resolution = None if resolution is None else int(resolution)

    def _load(self) -> None:
        from transformers import AutoTokenizer, GroundingDinoForObjectDetection

        kw = self._pretrained_kwargs()
        self._model = self._finish_model(GroundingDinoForObjectDetection.from_pretrained(self.checkpoint, **kw))
        self._tok = AutoTokenizer.from_pretrained(self.checkpoint, **kw)
        cfg = self.preprocessor_config()
        size = cfg.get("size") or {}
        self._short = self.resolution or int(size.get("shortest_edge", 800))
        self._long = int(size.get("longest_edge", 1333)) if self.resolution is None else None
        self._mean = cfg.get("image_mean", im.IMAGENET_MEAN)
        self._std = cfg.get("image_std", im.IMAGENET_STD)

    def _text(self, prompts: tuple[str, ...]) -> tuple[list[int], list[list[int]]]:
        """Token ids of ``[CLS] p1 . p2 . [SEP]`` and, per prompt, the positions of its tokens."""
        tok = self._tok
        dot = tok.convert_tokens_to_ids(".")
        ids, spans = [tok.cls_token_id], []
        limit = int(self._model.config.max_text_len) - 1
        for p in prompts:
            piece = tok.encode(p, add_special_tokens=False)
            if len(ids) + len(piece) + 1 > limit:
                raise ToolError(f"{self.name}: prompts exceed the model's {limit + 1} text tokens: {prompts}")
            spans.append(list(range(len(ids), len(ids) + len(piece))))
            ids += piece + [dot]
        return ids + [tok.sep_token_id], spans

    def _prepare(self, image: np.ndarray, prompts: tuple[str, ...]) -> dict[str, Any]:
        h, w = image.shape[:2]
        s = im.scale_to_fit((h, w), self._short, self._long)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        pixels = im.normalize(im.resize_rgb(image, (nw, nh), "bilinear"), self._mean, self._std)
        ids, spans = self._text(prompts)
        return {"pixels": pixels, "ids": ids, "spans": spans, "hw": (h, w)}

    def _forward(self, items: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        hmax = max(it["pixels"].shape[1] for it in items)
        wmax = max(it["pixels"].shape[2] for it in items)
        lmax = max(len(it["ids"]) for it in items)
        pix = np.stack([im.pad_to(it["pixels"], (hmax, wmax)) for it in items])
        pmask = np.stack([im.pad_to(np.ones(it["pixels"].shape[1:], np.int64), (hmax, wmax)) for it in items])
        ids = np.zeros((len(items), lmax), np.int64)
        att = np.zeros((len(items), lmax), np.int64)
        for k, it in enumerate(items):
            ids[k, : len(it["ids"])] = it["ids"]
            att[k, : len(it["ids"])] = 1
        dev = self._device
        with torch.inference_mode():
            out = self._model(pixel_values=torch.from_numpy(pix).to(dev, self._dtype),
                              pixel_mask=torch.from_numpy(pmask).to(dev),
                              input_ids=torch.from_numpy(ids).to(dev), attention_mask=torch.from_numpy(att).to(dev),
                              token_type_ids=torch.zeros_like(torch.from_numpy(ids)).to(dev))
        probs = out.logits.float().sigmoid().cpu().numpy()  # B x Q x max_text_len
        boxes = out.pred_boxes.float().cpu().numpy()  # B x Q x 4, cxcywh relative to the unpadded image
        res = []
        for k, it in enumerate(items):
            h, w = it["hw"]
            xyxy = im.cxcywh_to_xyxy(boxes[k]) * np.array([w, h, w, h], np.float32)
            scores = np.stack([probs[k][:, sp].max(axis=1) for sp in it["spans"]], axis=1)
            res.append((xyxy, scores))
        return res


@register
class Owlv2Proposer(_PromptedProposer):
    """OWLv2 (``Owlv2ForObjectDetection``), e.g. ``google/owlv2-base-patch16-ensemble``.

    Preprocessing as the checkpoint's processor: scale to [0, 1], pad bottom/right to a square
    with grey (0.5), resize to the vision tower's ``image_size`` (960), CLIP normalisation. Boxes
    come relative to the padded square, so they scale back by its side. Prompts are tokenised
    to the text tower's ``max_position_embeddings`` (16) tokens; a box's prompt score is the
    sigmoid of its class logit.

    Args: as :class:`GroundingDinoProposer` (no ``resolution``: OWLv2's input size is fixed);
    ``score_threshold`` defaults to 0.1, the usual OWLv2 threshold.
    """

    name = "owlv2"

    def __init__(self, checkpoint: str | None = None, default_prompts: str | Sequence[str] = ("object",),
                 score_threshold: float = 0.1, nms_iou: float = 0.5, min_box_px: int = 2,
                 device: str = "auto", precision: str = "fp32", batch_size: int = 4,
                 local_files_only: bool = False) -> None:
        super().__init__(checkpoint, default_prompts, score_threshold, nms_iou, min_box_px, device, precision,
                         batch_size, local_files_only)

    def _load(self) -> None:
        from transformers import AutoTokenizer, Owlv2ForObjectDetection

        kw = self._pretrained_kwargs()
        self._model = self._finish_model(Owlv2ForObjectDetection.from_pretrained(self.checkpoint, **kw))
        self._tok = AutoTokenizer.from_pretrained(self.checkpoint, **kw)
        cfg = self.preprocessor_config()
        self._side = int(self._model.config.vision_config.image_size)
        self._mean = cfg.get("image_mean", im.CLIP_MEAN)
        self._std = cfg.get("image_std", im.CLIP_STD)
        self._text_len = int(self._model.config.text_config.max_position_embeddings)

    def _prepare(self, image: np.ndarray, prompts: tuple[str, ...]) -> dict[str, Any]:
        h, w = image.shape[:2]
        side = max(h, w)
        square = np.full((side, side, 3), 127.5, np.float32)
        square[:h, :w] = image
        small = im.resize_float_rgb(square, (self._side, self._side))
        pixels = ((small / 255.0 - np.asarray(self._mean, np.float32)) / np.asarray(self._std, np.float32))
        enc = self._tok(list(prompts), padding="max_length", max_length=self._text_len, truncation=True)
        return {"pixels": np.ascontiguousarray(pixels.transpose(2, 0, 1)), "prompts": prompts,
                "ids": np.asarray(enc["input_ids"], np.int64), "att": np.asarray(enc["attention_mask"], np.int64),
                "hw": (h, w)}

    def _forward(self, items: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
        # OWLv2 takes the same number of text queries for every image of a batch: group by prompts.
        groups: dict[tuple[str, ...], list[int]] = {}
        for k, it in enumerate(items):
            groups.setdefault(it["prompts"], []).append(k)
        res: list[Any] = [None] * len(items)
        for idx in groups.values():
            for k, r in zip(idx, self._forward_group([items[k] for k in idx]), strict=True):
                res[k] = r
        return res

    def _forward_group(self, items: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        dev = self._device
        pix = torch.from_numpy(np.stack([it["pixels"] for it in items])).to(dev, self._dtype)
        ids = torch.from_numpy(np.concatenate([it["ids"] for it in items])).to(dev)
        att = torch.from_numpy(np.concatenate([it["att"] for it in items])).to(dev)
        with torch.inference_mode():
            out = self._model(input_ids=ids, attention_mask=att, pixel_values=pix)
        probs = out.logits.float().sigmoid().cpu().numpy()  # B x patches x prompts
        boxes = out.pred_boxes.float().cpu().numpy()  # B x patches x 4, cxcywh relative to the padded square
        res = []
        for k, it in enumerate(items):
            side = float(max(it["hw"]))
            res.append((im.cxcywh_to_xyxy(boxes[k]) * side, probs[k]))
        return res
