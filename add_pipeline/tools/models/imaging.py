"""Numpy / PIL pre- and post-processing shared by the model tools (no torchvision, no torch).

Images are ``HxWx3 uint8`` in [0, 255] on input; network inputs are ``CxHxW float32``. Boxes are
``(x0, y0, x1, y1)`` floats in pixels unless a name says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from add_pipeline.core.types import Box

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}


def resize_rgb(image: np.ndarray, wh: tuple[int, int], resample: str = "bilinear") -> np.ndarray:
    """Resize an ``HxWx3 uint8`` image to ``wh = (width, height)`` with PIL."""
    if (image.shape[1], image.shape[0]) == tuple(wh):
        return image
    return np.asarray(Image.fromarray(image).resize(wh, _RESAMPLE[resample]))


def resize_float(arr: np.ndarray, wh: tuple[int, int], resample: str = "bilinear") -> np.ndarray:
    """Resize an ``HxW float`` map to ``wh = (width, height)`` (PIL mode ``F``); returns float32."""
    if (arr.shape[1], arr.shape[0]) == tuple(wh):
        return arr.astype(np.float32)
    return np.asarray(Image.fromarray(arr.astype(np.float32), mode="F").resize(wh, _RESAMPLE[resample]))


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``HxWx3 uint8`` -> ``3xHxW float32``: scaled to [0, 1], then ``(x - mean) / std`` per channel."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def pad_to(x: np.ndarray, hw: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of ``x`` at the bottom and right to ``hw`` with ``value``."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(hw):
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(0, hw[0] - h), (0, hw[1] - w)]
    return np.pad(x, pad, constant_values=value)


def round_up(v: int, multiple: int) -> int:
    return -(-int(v) // multiple) * multiple


def scale_to_fit(hw: tuple[int, int], shortest: int, longest: int | None) -> float:
    """Scale making the short side ``shortest`` px, reduced so the long side stays <= ``longest``."""
    h, w = hw
    s = shortest / min(h, w)
    if longest is not None and max(h, w) * s > longest:
        s = longest / max(h, w)
    return s


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``Nx4`` (cx, cy, w, h) -> ``Nx4`` (x0, y0, x1, y1), same units."""
    cx, cy, w, h = boxes.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``Nx4`` and ``Mx4`` xyxy boxes -> ``NxM``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first.

    A box is dropped when its IoU with an already kept, higher-scored box exceeds ``iou_threshold``.
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def pixel_box(box: Sequence[float], hw: tuple[int, int]) -> Box | None:
    """Float xyxy box -> integer box inside an ``hw`` canvas that covers it, or None if it is empty."""
    h, w = hw
    x0 = int(np.clip(np.floor(box[0]), 0, w))
    y0 = int(np.clip(np.floor(box[1]), 0, h))
    x1 = int(np.clip(np.ceil(box[2]), 0, w))
    y1 = int(np.clip(np.ceil(box[3]), 0, h))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def interior_point(mask: np.ndarray) -> tuple[float, float] | None:
    """A point ``(x, y)`` inside ``mask``: its centroid if that lies in the mask, else its most interior pixel."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    cx, cy = float(xs.mean()), float(ys.mean())
    if mask[int(round(cy)), int(round(cx))]:  # a mean of pixel indices is inside the canvas
        return cx, cy
    import cv2

    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def resize_float_rgb(image: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    """Resize an ``HxWx3 float`` image (any range) to ``wh = (width, height)``, bilinear, per channel."""
    return np.stack([resize_float(image[..., c], wh) for c in range(image.shape[2])], axis=-1)
