"""Tools on IS-Net's soft object map: a proposer, a segmenter and a matter (same contracts as the others).

IS-Net (DIS) answers "which pixels belong to the salient foreground objects" with a soft map in
[0, 1]. The three tools share one network per process and one small cache of soft maps, so a
photo's map is computed once even though proposing, segmenting and matting each ask for it:

* :class:`IsNetProposer` (``isnet``): connected components of the map above ``threshold``, each
  split into instances at narrow necks (:mod:`~add_pipeline.tools.classical.instances`), best first.
* :class:`IsNetSegmenter` (``isnet``): the map's mask inside a box (or the prior it is given).
* :class:`IsNetMatter` (``isnet-closed-form``): the map says where the edge is uncertain (the
  trimap's unknown region), closed-form matting (pymatting) solves the edge on the photo.

``checkpoint`` is a weights name of :mod:`add_pipeline.weights` (``isnet-medium``: fetched from the
npm registry at setup and verified) or a file: an ISNetDIS ``.onnx`` export or a ``.pt`` dict
``{"isnet": {"width": w, "fused": bool}, "state_dict": ...}`` (tests use a tiny random one). The
network runs at ``input_size`` px on the long side (aspect kept, sides rounded to multiples of 32):
it is fully convolutional, and on the libcom composites 640 px is about as good as the export's
fixed 1024 square at a fifth of the cost (``bench/results/isnet.md``). It runs in PyTorch (any
device, fp32/fp16/bf16) or, with ``runtime="onnxruntime"`` (the CPU cards), on onnxruntime from our
module's own any-size export (:mod:`~add_pipeline.tools.models.isnet_ort`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from add_pipeline.core.types import Box
from add_pipeline.tools.base import Matte, Matter, Proposal, Proposer, Segmentation, Segmenter, ToolError, register
from add_pipeline.tools.batching import BatchedTool
from add_pipeline.tools.models.runtime import ModelRuntime, missing_packages

_NETS: dict[tuple[str, str, str, str], Any] = {}
_MAPS: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_SHARED_LOCK = threading.Lock()
_MAP_CACHE_SIZE = 4
RUNTIMES = ("torch", "onnxruntime")


def _torch_net(path: Path) -> Any:
    """The fp32 CPU :class:`ISNet` in eval mode of weights file ``path`` (``.onnx`` export or ``.pt``)."""
    import torch

    from add_pipeline.tools.models.isnet_net import ISNet, load_onnx_weights

    if path.suffix == ".onnx":
        return load_onnx_weights(ISNet(fused=True), path).eval()
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob or "isnet" not in blob:
        raise ToolError(f"{path}: not an IS-Net checkpoint (expected keys 'isnet' and 'state_dict')")
    net = ISNet(**blob["isnet"])
    net.load_state_dict(blob["state_dict"])
    return net.eval()


def _shared_net(path: Path, device: str, dtype: Any, runtime: str = "torch") -> Any:
    """One loaded network per (file, runtime, device, dtype) in this process, shared by every IS-Net tool:
    a PyTorch module, or with ``runtime="onnxruntime"`` an :class:`~.isnet_ort.OrtIsNet` on the
    cached export of the same weights."""
    key = (str(path), runtime, device, str(dtype))
    with _SHARED_LOCK:
        if key in _NETS:
            return _NETS[key]
        if runtime == "onnxruntime":
            from add_pipeline.tools.models.isnet_ort import OrtIsNet, ensure_export

            try:
                net = OrtIsNet(ensure_export(path, lambda: _torch_net(path)))
            except ToolError:
                raise
            except Exception as exc:  # noqa: BLE001 (export or session: one clear line, and the way out)
                raise ToolError(f"{path}: cannot run it on onnxruntime ({type(exc).__name__}: {exc}); "
                                "set runtime: torch in the IS-Net tool cards") from exc
        else:
            net = _torch_net(path).to(device=device, dtype=dtype).eval()
        _NETS[key] = net
        return net


def network_size(hw: tuple[int, int], input_size: int) -> tuple[int, int]:
    """``(height, width)`` the network sees: long side ``input_size``, aspect kept, multiples of 32."""
    h, w = hw
    s = input_size / max(h, w)
    return max(32, int(round(h * s / 32)) * 32), max(32, int(round(w * s / 32)) * 32)


class IsNetRuntime(ModelRuntime, BatchedTool):
    """Weights, device and the cached soft map shared by the IS-Net tools."""

    requires: ClassVar[tuple[str, ...]] = ("torch", "onnx")
    checkpoint_is_file = True

    def _init_isnet(self, checkpoint: str | None, input_size: int, device: str, precision: str,
                    batch_size: int, runtime: str = "torch") -> None:
        if runtime not in RUNTIMES:
            raise ToolError(f"{self.name}: runtime must be one of {RUNTIMES}, got {runtime!r}")  # type: ignore[attr-defined]
        if runtime == "onnxruntime":
            if device not in ("auto", "cpu") or precision != "fp32":
                raise ToolError(f"{self.name}: runtime onnxruntime runs fp32 on the CPU (got device {device!r}, "  # type: ignore[attr-defined]
                                f"precision {precision!r}); use runtime: torch for CUDA or fp16/bf16")
            device = "cpu"
        self._init_runtime(checkpoint, device, precision, batch_size, local_files_only=True)
        if not 64 <= int(input_size) <= 2048:
            raise ToolError(f"{self.name}: input_size must be in [64, 2048] px, got {input_size}")  # type: ignore[attr-defined]
        self.input_size = int(input_size)
        self.runtime = runtime
        if runtime == "onnxruntime":  # checked with the others before loading (a clear error, not an ImportError)
            self.requires = (*type(self).requires, "onnxruntime")  # type: ignore[misc]

    def weights_path(self) -> Path:
        """The weights file: a registered weights name (fetched and verified) or an existing path."""
        from add_pipeline import weights

        ckpt = str(self.checkpoint)
        if ckpt in weights.WEIGHTS:
            try:
                return weights.resolve(ckpt)
            except weights.WeightsError as exc:
                raise ToolError(str(exc)) from exc
        path = Path(ckpt).expanduser()
        if not path.is_file():
            raise ToolError(f"{self.name}: weights file {ckpt} not found "  # type: ignore[attr-defined]
                            f"(or a weights name: {', '.join(sorted(weights.WEIGHTS))})")
        return path

    def _load(self) -> None:
        self._net = _shared_net(self.weights_path(), self._device, self._dtype, self.runtime)

    def check(self) -> list[str]:
        problems = missing_packages(self.requires)
        if not self.checkpoint:
            return problems + ["no checkpoint configured"]
        try:
            self.weights_path()
        except ToolError as exc:
            problems.append(str(exc))
        if self.device.startswith("cuda") and not problems:
            import torch

            if not torch.cuda.is_available():
                problems.append(f"device {self.device!r} requested but torch sees no CUDA GPU")
        return problems

    def soft_map(self, image: np.ndarray) -> np.ndarray:
        """``HxW float32`` in [0, 1]: IS-Net's foreground map of ``image`` (HxWx3 uint8), min-max normalised.

        Cached per process by the image's content (the last few images) and the network's settings,
        so the proposer, the segmenter and the matter of one photo share one forward pass.
        """
        digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()
        key = (str(self.checkpoint), self.input_size, self.runtime, self.device, self.precision, image.shape, digest)
        with _SHARED_LOCK:
            if key in _MAPS:
                _MAPS.move_to_end(key)
                return _MAPS[key]
        self.ensure_loaded()
        h, w = image.shape[:2]
        nh, nw = network_size((h, w), self.input_size)
        x = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR)
        x = (x.astype(np.float32) / 255.0 - 0.5).transpose(2, 0, 1)
        prob = cv2.resize(self.forward(x), (w, h), interpolation=cv2.INTER_LINEAR)
        lo, hi = float(prob.min()), float(prob.max())
        out = ((prob - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(prob)).astype(np.float32)
        out = np.clip(out, 0.0, 1.0)
        with _SHARED_LOCK:
            _MAPS[key] = out
            while len(_MAPS) > _MAP_CACHE_SIZE:
                _MAPS.popitem(last=False)
        return out

    def _forward(self, items: list[np.ndarray]) -> list[np.ndarray]:
        """``items``: ``3 x h x w float32`` inputs -> ``h x w float32`` probabilities.

        Inputs of one size run as one batch; sizes are never mixed by padding, which would change
        the map near the padded border (photos of one aspect ratio, the usual case, batch fully).
        """
        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, x in enumerate(items):
            groups.setdefault(x.shape, []).append(k)
        if self.runtime == "onnxruntime":
            for idx in groups.values():
                logits = self._net(np.stack([items[k] for k in idx]))
                prob = (1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))).astype(np.float32)
                for j, k in enumerate(idx):
                    out[k] = prob[j]
            return out  # type: ignore[return-value]
        import torch

        with torch.inference_mode():
            for idx in groups.values():
                t = torch.from_numpy(np.stack([items[k] for k in idx])).to(self._device, self._dtype)
                prob = torch.sigmoid(self._net(t).float()).cpu().numpy()[:, 0]
                for j, k in enumerate(idx):
                    out[k] = prob[j]
        return out  # type: ignore[return-value]


@register
class IsNetProposer(IsNetRuntime, Proposer):
    """Object proposals from IS-Net's map: components above ``threshold``, split into instances.

    Args:
        checkpoint: weights name or file (module docstring); input_size: network long side, px.
        threshold: map value above which a pixel is object.
        min_area_frac: components smaller than this share of the image are dropped (specks).
        split: split components into instances at narrow necks
            (:func:`~add_pipeline.tools.classical.instances.split_instances`).
        neck_ratio, min_part_frac: the split's parameters (see there).
        device, precision, batch_size: as every model tool.
        runtime: ``torch`` (any device and precision) or ``onnxruntime`` (fp32 on the CPU, about a fifth
            faster there: :mod:`~add_pipeline.tools.models.isnet_ort`).
    """

    name = "isnet"

    def __init__(self, checkpoint: str | None = "isnet-medium", input_size: int = 640, threshold: float = 0.5,
                 min_area_frac: float = 0.002, split: bool = True, neck_ratio: float = 0.45,
                 min_part_frac: float = 0.25, device: str = "auto", precision: str = "fp32",
                 batch_size: int = 4, runtime: str = "torch") -> None:
        self._init_isnet(checkpoint, input_size, device, precision, batch_size, runtime)
        self.threshold = float(threshold)
        self.min_area_frac = float(min_area_frac)
        self.split = bool(split)
        self.neck_ratio = float(neck_ratio)
        self.min_part_frac = float(min_part_frac)

    def infer(self, image: np.ndarray, max_objects: int, labels: tuple[str, ...]) -> list[Proposal]:
        from add_pipeline.tools.classical.instances import split_instances

        prob = self.soft_map(image)
        fg = prob > self.threshold
        n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
        min_px = self.min_area_frac * fg.size
        parts: list[np.ndarray] = []
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < min_px:
                continue
            comp = lab == i
            if self.split:
                parts += split_instances(comp, self.neck_ratio, self.min_part_frac)
            else:
                parts.append(comp)
        out = []
        for m in parts:
            ys, xs = np.nonzero(m)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            out.append((float(prob[m].sum()), Proposal(box=box, score=float(prob[m].mean()), mask=m)))
        out.sort(key=lambda t: -t[0])  # most object mass first
        return [p for _, p in out[:max_objects]]


@register
class IsNetSegmenter(IsNetRuntime, Segmenter):
    """The object's mask from IS-Net's map: the prior where it has one, else the map inside the box.

    With a prior (e.g. the proposer's instance) the mask is the prior with its holes smaller than
    ``hole_frac`` of its area filled. Without one it is the largest component of
    ``map > threshold`` inside the box. Score: the map's mean over the mask.
    """

    name = "isnet"

    def __init__(self, checkpoint: str | None = "isnet-medium", input_size: int = 640, threshold: float = 0.5,
                 hole_frac: float = 0.01, device: str = "auto", precision: str = "fp32",
                 batch_size: int = 4, runtime: str = "torch") -> None:
        self._init_isnet(checkpoint, input_size, device, precision, batch_size, runtime)
        self.threshold = float(threshold)
        self.hole_frac = float(hole_frac)

    def infer(self, image: np.ndarray, box: Box, prior: np.ndarray | None) -> Segmentation:
        prob = self.soft_map(image)
        x0, y0, x1, y1 = box
        if prior is not None and prior[y0:y1, x0:x1].any():
            mask = fill_small_holes(prior, self.hole_frac)
        else:
            inbox = np.zeros(prob.shape, bool)
            inbox[y0:y1, x0:x1] = True
            fg = (prob > self.threshold) & inbox
            n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
            if n < 2:
                return Segmentation(mask=np.zeros(prob.shape, bool), score=0.0)
            mask = lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        return Segmentation(mask=mask, score=float(prob[mask].mean()) if mask.any() else 0.0)


def fill_small_holes(mask: np.ndarray, frac: float) -> np.ndarray:
    """``mask`` (HxW bool) with enclosed holes smaller than ``frac`` of its area filled."""
    inv = (~mask).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    out = mask.copy()
    h, w = mask.shape
    limit = frac * float(mask.sum())
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches and area <= limit:
            out[lab == i] = True
    return out


@register
class IsNetMatter(IsNetRuntime, Matter):
    """Closed-form matting on a trimap that IS-Net's map draws: it says where the edge is uncertain.

    Trimap: unknown within ``band`` px of the mask's outline (as the classical matter's) and,
    outside the mask's core, wherever the map is unsure (``low < map < high``) up to ``reach``
    bands from the mask (hair, fur, wisps the threshold cut off); sure foreground in the mask's
    core (the mask eroded by ``band``), sure background elsewhere.
    The unknown region is solved with closed-form matting (Levin et al., pymatting) on the photo,
    foreground colours decontaminated as for the classical matter.

    Args:
        band: half width of the unknown band around the outline, px (None: ``default_band``).
        low, high: the map's sure-background / sure-foreground levels.
        reach: how far past the mask (in bands) hair-like low map values may still be unknown.
        margin: known pixels kept around the unknown region in the solved crop.
        checkpoint, input_size, device, precision, batch_size, runtime: as the proposer's.
    """

    name = "isnet-closed-form"

    def __init__(self, checkpoint: str | None = "isnet-medium", input_size: int = 640, band: int | None = None,
                 low: float = 0.05, high: float = 0.95, reach: float = 3.0, margin: int = 8,
                 device: str = "auto", precision: str = "fp32", batch_size: int = 4,
                 runtime: str = "torch") -> None:
        self._init_isnet(checkpoint, input_size, device, precision, batch_size, runtime)
        if not 0.0 <= low < high <= 1.0:
            raise ToolError(f"{self.name}: need 0 <= low < high <= 1, got {low}, {high}")
        self.band = None if band is None else int(band)
        self.low, self.high = float(low), float(high)
        self.reach = float(reach)
        self.margin = int(margin)

    def trimap(self, prob: np.ndarray, mask: np.ndarray, band: int) -> np.ndarray:
        """``HxW float64`` trimap (1 fg, 0 bg, 0.5 unknown) from the map and the object mask."""
        from add_pipeline.tools.classical.matting import make_trimap

        tri = make_trimap(mask, band)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(self.reach * band) + 1,) * 2)
        near = cv2.dilate(mask.astype(np.uint8), k) > 0
        unsure = near & (prob > self.low) & (prob < self.high) & (tri != 1.0)  # the mask's core stays object
        tri[unsure] = 0.5
        tri[~near] = 0.0
        return tri

    def infer(self, image: np.ndarray, mask: np.ndarray, band: int | None) -> Matte:
        from add_pipeline.tools.classical.matting import default_band, matte_with_trimap, solve_closed_form

        prob = self.soft_map(image)
        b = band if band is not None else (self.band if self.band is not None else default_band(mask.shape))
        if b < 1:
            raise ToolError(f"{self.name}: band must be >= 1 px, got {b}")
        return matte_with_trimap(image, mask, self.trimap(prob, mask, int(b)), self.margin, solve_closed_form)
