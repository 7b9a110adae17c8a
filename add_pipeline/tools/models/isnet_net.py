"""IS-Net (DIS, Qin et al. 2022) as a plain ``nn.Module``, and its weights read from an ONNX export.

The architecture follows the DIS paper's ISNetDIS: a stride-2 stem, six nested-U encoder stages
(RSU7 .. RSU4 with pooling between them, two dilated RSU4F at the bottom), five decoder stages fed
by upsampled deeper features concatenated with the encoder's, and six 3x3 side heads. Shapes for an
``N x 3 x H x W`` input (H, W any size; the ONNX export is fixed at 1024):

==========  ===============================  ==========
stage       output                           resolution
==========  ===============================  ==========
conv_in     N x 64                           H/2
stage1      N x 64   (RSU7, mid 32)          H/2
stage2      N x 128  (RSU6, mid 32)          H/4
stage3      N x 256  (RSU5, mid 64)          H/8
stage4      N x 512  (RSU4, mid 128)         H/16
stage5      N x 512  (RSU4F, mid 256)        H/32
stage6      N x 512  (RSU4F, mid 256)        H/64
stage5d     N x 512  (RSU4F on 1024 ch)      H/32
stage4d     N x 256  (RSU4 on 1024 ch)       H/16
stage3d     N x 128  (RSU5 on 512 ch)        H/8
stage2d     N x 64   (RSU6 on 256 ch)        H/4
stage1d     N x 64   (RSU7 on 128 ch)        H/2
side1       N x 1 logits, upsampled to H x W (the prediction that is used)
==========  ===============================  ==========

The exported weights (npm ``@imgly/background-removal-data``) have every BatchNorm folded into its
convolution, so :class:`ISNet` is built with ``fused=True`` for them: each ``REBNCONV`` is then a
biased conv + ReLU. ``fused=False`` gives the training form (conv + BatchNorm + ReLU). Weights are
matched to modules by the ONNX node names (``/stage1/rebnconvin/conv_s1/Conv`` ->
``stage1.rebnconvin.conv_s1``), never by position, and every shape is checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# (levels, dilated) per RSU kind: RSU-L has L-1 pooled encoder levels plus one dilated level;
# RSU4F keeps the resolution and dilates 1, 2, 4, 8 instead of pooling.
_ENCODER = (("stage1", 7, 64, 32, 64), ("stage2", 6, 64, 32, 128), ("stage3", 5, 128, 64, 256),
            ("stage4", 4, 256, 128, 512), ("stage5", 0, 512, 256, 512), ("stage6", 0, 512, 256, 512))
_DECODER = (("stage5d", 0, 1024, 256, 512), ("stage4d", 4, 1024, 128, 256), ("stage3d", 5, 512, 64, 128),
            ("stage2d", 6, 256, 32, 64), ("stage1d", 7, 128, 16, 64))
_SIDES = (("side1", 64), ("side2", 64), ("side3", 128), ("side4", 256), ("side5", 512), ("side6", 512))

MEAN = 0.5  # input = RGB / 255 - 0.5, std 1 (DIS's normalisation)


def upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``ref``'s spatial size (half-pixel centres, as the export's Resize)."""
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    """3x3 conv (dilation ``d``) + BatchNorm + ReLU; with ``fused`` the BatchNorm lives in the conv's bias."""

    def __init__(self, cin: int, cout: int, d: int = 1, fused: bool = False) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(cin, cout, 3, padding=d, dilation=d, bias=True)
        self.bn_s1 = nn.Identity() if fused else nn.BatchNorm2d(cout)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block RSU-L: ``N x cin x h x w`` -> ``N x cout x h x w``.

    ``levels`` = L >= 4: an L-level U-Net (L-2 max-pools, ceil mode) with a dilation-2 bottom, plus
    the residual ``in``. ``levels`` = 0: RSU4F, four levels at full resolution dilated 1, 2, 4, 8.
    Module names (``rebnconvin``, ``rebnconv1`` .. ``rebnconvL``, ``rebnconv{L-1}d`` .. ``rebnconv1d``)
    are DIS's, so exported weights load by name.
    """

    def __init__(self, levels: int, cin: int, mid: int, cout: int, fused: bool = False) -> None:
        super().__init__()
        self.dilated = levels == 0
        n = 4 if self.dilated else levels
        self.n = n
        dil = [1, 2, 4, 8] if self.dilated else [1] * (n - 1) + [2]
        self.rebnconvin = REBNCONV(cin, cout, 1, fused)
        self.rebnconv1 = REBNCONV(cout, mid, dil[0], fused)
        for i in range(2, n + 1):
            setattr(self, f"rebnconv{i}", REBNCONV(mid, mid, dil[i - 1], fused))
        for i in range(n - 1, 0, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(mid * 2, cout if i == 1 else mid, dil[i - 1], fused))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        enc = [self.rebnconv1(hxin)]
        for i in range(2, self.n + 1):
            h = enc[-1]
            if not self.dilated and i < self.n:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            enc.append(getattr(self, f"rebnconv{i}")(h))
        hd = enc[-1]
        for i in range(self.n - 1, 0, -1):
            hd = getattr(self, f"rebnconv{i}d")(torch.cat((hd, enc[i - 1]), 1))
            if not self.dilated and i > 1:
                hd = upsample_like(hd, enc[i - 2])
        return hd + hxin


class ISNet(nn.Module):
    """ISNetDIS: ``N x 3 x H x W`` float (RGB/255 - 0.5) -> ``N x 1 x H x W`` logits of the side-1 head.

    :meth:`forward` returns the logits (apply ``sigmoid``); :meth:`sides` returns all six side
    logits at input size, for training or inspection. ``width`` divides every channel count (1 is
    the published network, 44 M parameters; tests use a tiny random-weight ``width=16``).
    """

    def __init__(self, fused: bool = False, width: int = 1) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")

        def c(v: int) -> int:
            return max(2, v // width)

        self.width = width
        self.conv_in = nn.Conv2d(3, c(64), 3, stride=2, padding=1)
        for name, lv, cin, mid, cout in _ENCODER + _DECODER:
            setattr(self, name, RSU(lv, c(cin), c(mid), c(cout), fused))
        for name, cin in _SIDES:
            setattr(self, name, nn.Conv2d(c(cin), 1, 3, padding=1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features ``[hx1d, hx2d, hx3d, hx4d, hx5d, hx6]`` (resolutions H/2 .. H/64)."""
        h = self.conv_in(x)
        enc = []
        for i, (name, *_rest) in enumerate(_ENCODER):
            if i:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            h = getattr(self, name)(h)
            enc.append(h)
        dec = [enc[5]]
        for k, (name, *_rest) in enumerate(_DECODER):
            skip = enc[4 - k]
            dec.append(getattr(self, name)(torch.cat((upsample_like(dec[-1], skip), skip), 1)))
        return dec[::-1]

    def sides(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six side logits, each ``N x 1 x H x W`` (side1 first)."""
        feats = self.features(x)
        return [upsample_like(getattr(self, name)(f), x) for (name, _), f in zip(_SIDES, feats)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hx1d = self.features(x)[0]
        return upsample_like(self.side1(hx1d), x)


def onnx_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A fused :class:`ISNet` state dict from an ISNetDIS ONNX export, matched by node name, as fp32.

    Raises ``ValueError`` (naming the file) when the graph is not an ISNetDIS export.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        # '/stage1/rebnconvin/conv_s1/Conv' -> 'stage1.rebnconvin.conv_s1'; '/side1/Conv' -> 'side1'
        module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        if len(node.input) != 3:
            raise ValueError(f"{path}: conv {node.name} has no bias; not a fused ISNetDIS export")
        for suffix, tensor_name in (("weight", node.input[1]), ("bias", node.input[2])):
            if tensor_name not in inits:
                raise ValueError(f"{path}: conv {node.name} input {tensor_name!r} is not a stored weight")
            arr = numpy_helper.to_array(inits[tensor_name]).astype(np.float32)
            state[f"{module}.{suffix}"] = torch.from_numpy(arr)
    return state


def load_onnx_weights(net: ISNet, path: Path) -> ISNet:
    """Load an ISNetDIS ONNX export's weights into a fused, full-width ``net``; every tensor must match."""
    state = onnx_state_dict(path)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"{path}: weights do not match ISNet (missing {missing[:3]}, unexpected {extra[:3]})")
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"{path}: shape mismatch for {bad[0]}: {tuple(state[bad[0]].shape)} vs "
                         f"{tuple(own[bad[0]].shape)}")
    net.load_state_dict(state)
    return net
