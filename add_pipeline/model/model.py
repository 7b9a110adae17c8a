"""LayerDecomposer: one photo in, a background, K object slots and K shadow mattes out, in one pass.

Design (the why, for the choices the issue left open):

* **Fixed slots, not iterative peeling.**  The network emits K slots at once; each has an
  alpha, a straight colour, a shadow matte and a presence logit, and a slot is empty when its
  presence probability is under a threshold.  One pass costs the same for every photo, trains
  in batches with the whole stack recomposed differentiably, and cannot accumulate errors the
  way peeling does (each peel step would see its own previous inpainting as input).
* **A slot is an occlusion level, not an object.**  Slot K-1 holds every object that nothing
  covers, slot K-2 the objects those cover, and so on (deeper levels fold into the background;
  see :mod:`~add_pipeline.model.data`).  Objects of one level never overlap, so inference splits
  a slot into objects by connected components, and the number of object layers is the number
  of components that pass the empty test.  The slot order is a valid compositing order, so no
  ordering head is needed.  The first version assigned slot k to the k-th object from the back:
  which slot an object belongs to then depends on how many objects stand behind it elsewhere in
  the photo, the network hedged, and every slot became a faint copy of all objects (object IoU
  0.06 on the held-out benchmark).  What covers what, by contrast, is visible locally.  A global
  context vector is still broadcast into the decoder so that every pixel sees the whole photo.
* **Shadow-guided.**  Each slot has its own black shadow matte, composited directly under its
  object, as in the dataset.  Shadows are therefore neither left in the background nor
  smeared into the object's alpha.  With ``shadow_branch=False`` the head is absent.
* **Residual colour heads.**  Background and object colours are predicted as logit offsets of
  the input photo, so "copy the photo" (right for visible background and object interiors) is
  the zero output and the network spends its capacity on hidden background and rims.
* **Boundary refiner (the restoration branch).**  A small full-resolution network takes the
  photo plus one slot's alpha and colour and returns cleaned versions.  It refines every slot
  of the main head, and during training it also learns to restore *degraded ground truth*
  (eroded, dilated, blurred, colour-spilled; :mod:`~add_pipeline.model.degrade`) into the
  clean foreground.  The degradations imitate a coarse matte's errors but are far more varied
  and plentiful than the coarse head's own, so they supervise the alpha boundary directly; the
  same weights serve both, so the restoration objective improves inference.

Tensors are ``float32``; images ``Bx3xHxW`` in [0, 1]; H and W multiples of 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from add_pipeline.model.config import ModelConfig


def _logit(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x.clamp(eps, 1.0 - eps)
    return torch.log(x) - torch.log1p(-x)


def _groups(ch: int) -> int:
    # GroupNorm instead of BatchNorm: tiny batches on CPU, identical train/eval behaviour.
    return 4 if ch % 4 == 0 else 1


class ConvBlock(nn.Sequential):
    """3x3 conv (optionally strided / dilated) -> GroupNorm -> SiLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.GroupNorm(_groups(cout), cout),
            nn.SiLU(inplace=True),
        )


@dataclass
class LayerPrediction:
    """What :class:`LayerDecomposer` returns (``K`` slots, back to front).

    Attributes:
        background: ``Bx3xHxW`` in [0, 1].
        color: ``BxKx3xHxW`` straight colour in [0, 1].
        alpha: ``BxKx1xHxW`` in [0, 1], after the refiner (where refined).
        alpha_coarse: ``BxKx1xHxW`` in [0, 1], straight from the main head.
        shadow: ``BxKx1xHxW`` shadow strength in [0, 1], or None without the shadow branch.
        presence: ``BxK`` logits that slot k holds an object.
    """

    background: torch.Tensor
    color: torch.Tensor
    alpha: torch.Tensor
    alpha_coarse: torch.Tensor
    shadow: torch.Tensor | None
    presence: torch.Tensor


class BoundaryRefiner(nn.Module):
    """Restores one foreground: (photo, alpha, colour) -> (alpha, colour), full resolution.

    A full-resolution branch keeps the edge sharp; a half-resolution dilated branch sees
    ~20 px around it, enough to undo the erosion/dilation/blur the training degradations apply.
    Both outputs are logit offsets of the inputs and the last conv starts at zero, so an untrained
    refiner is the identity and gradients reach the main head unchanged.  The input alpha is
    clamped to [0.01, 0.99] before the logit, so a hard 0/1 input (degraded ground truth) is
    only ~4.6 logits from flipping.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.full = ConvBlock(7, width)
        self.wide = nn.Sequential(
            ConvBlock(width, 2 * width, stride=2),
            ConvBlock(2 * width, 2 * width, dilation=2),
            ConvBlock(2 * width, 2 * width, dilation=4),
        )
        self.fuse = ConvBlock(3 * width, width)
        self.out = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor,
                color: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image``/``color``: ``Nx3xHxW``, ``alpha``: ``Nx1xHxW``; returns refined (alpha, color)."""
        f = self.full(torch.cat([image, alpha, color], dim=1))
        g = F.interpolate(self.wide(f), size=f.shape[-2:], mode="bilinear", align_corners=False)
        d = self.out(self.fuse(torch.cat([f, g], dim=1)))
        a = torch.sigmoid(_logit(alpha, 0.01) + d[:, :1])
        c = torch.sigmoid(_logit(color) + d[:, 1:])
        return a, c


class ObjectShadowHead(nn.Module):
    """One slot's shadow matte from the layer head's features, the photo and that slot's coarse alpha.

    A cast shadow lies next to the object that casts it; the shared head predicts every slot's
    shadow from the same features and also marks dark background far from any object.  This head
    sees the slot's alpha (detached: the shadow loss does not move the object's matte) at half
    resolution (shadows are soft) through a branch at 1/2 and one at 1/4 dilated 2 and 4 (~60 px
    around the object), and upsamples its logits.  The last conv starts at zero with bias -4, so an
    untrained head predicts no shadow.
    """

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.entry = ConvBlock(cin + 4, width)
        self.wide = nn.Sequential(
            ConvBlock(width, 2 * width, stride=2),
            ConvBlock(2 * width, 2 * width, dilation=2),
            ConvBlock(2 * width, 2 * width, dilation=4),
        )
        self.fuse = ConvBlock(3 * width, width)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, -4.0)

    def forward(self, feats: torch.Tensor, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``feats``: ``BxCxHxW``, ``image``: ``Bx3xHxW``, ``alpha``: ``BxKx1xHxW`` in [0, 1] (H and W
        even); returns shadow strength ``BxKx1xHxW`` in [0, 1]."""
        b, k = alpha.shape[:2]
        h, w = alpha.shape[-2:]
        shared = F.avg_pool2d(torch.cat([feats, image], dim=1), 2)
        own = F.avg_pool2d(alpha.detach().reshape(b * k, 1, h, w), 2)
        x = torch.cat([shared.repeat_interleave(k, dim=0), own], dim=1)
        f = self.entry(x)
        g = F.interpolate(self.wide(f), size=f.shape[-2:], mode="bilinear", align_corners=False)
        logit = F.interpolate(self.out(self.fuse(torch.cat([f, g], dim=1))), size=(h, w), mode="bilinear",
                              align_corners=False)
        return torch.sigmoid(logit).reshape(b, k, 1, h, w)


class LayerDecomposer(nn.Module):
    """U-Net encoder/decoder (strides 2..32) with a full-resolution layer head and a boundary refiner."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        k = config.slots
        # Two coordinate channels: slots are assigned by depth order, which is mostly about
        # where an object stands; telling the network where it looks makes that cheaper to learn.
        self.down = nn.ModuleList([nn.Sequential(ConvBlock(5, w[0], stride=2), ConvBlock(w[0], w[0]))])
        for i in range(1, len(w)):
            self.down.append(nn.Sequential(ConvBlock(w[i - 1], w[i], stride=2), ConvBlock(w[i], w[i])))
        self.context = nn.Linear(w[-1], w[-1])  # global context, broadcast back into the bottleneck
        self.presence = nn.Linear(w[-1], k)
        self.up = nn.ModuleList([ConvBlock(w[i + 1] + w[i], w[i]) for i in range(len(w) - 1)])
        hw = config.head_width
        self.image_feat = ConvBlock(3, hw)  # full-resolution detail the decoder (stride 2) lacks
        self.head = ConvBlock(w[0] + hw, hw)
        shared_shadow = config.shadow_branch and config.shadow_head == "shared"
        n_out = 3 + k * 4 + (k if shared_shadow else 0)
        self.out = nn.Conv2d(hw, n_out, 1)  # 1x1: the 3x3 head already mixes neighbours
        nn.init.zeros_(self.out.weight)  # start as "background = photo, colours = photo"
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[3 : 3 + k] = -3.0  # alphas start near 0: empty slots are the common case
            if shared_shadow:
                self.out.bias[3 + 4 * k :] = -4.0
        object_shadow = config.shadow_branch and config.shadow_head == "object"
        self.shadow_head = ObjectShadowHead(hw, hw) if object_shadow else None
        self.refiner = BoundaryRefiner(config.refine_width)

    def forward(self, image: torch.Tensor, refine: torch.Tensor | None = None) -> LayerPrediction:
        """Decompose ``image`` (``Bx3xHxW`` in [0, 1], H and W multiples of 32).

        Args:
            refine: optional ``BxK bool``: which slots go through the refiner (default: all).
                Training refines only slots that hold an object, inference those that pass the
                presence test; the others keep their coarse alpha.
        """
        b, _, h, w = image.shape
        if h % 32 or w % 32:
            raise ValueError(f"LayerDecomposer needs H and W multiples of 32, got {h}x{w}")
        k = self.config.slots
        ys = torch.linspace(-1.0, 1.0, h, device=image.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=image.device).view(1, 1, 1, w).expand(b, 1, h, w)
        x = torch.cat([image * 2.0 - 1.0, xs, ys], dim=1)
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        pooled = x.mean(dim=(2, 3))
        x = x + F.silu(self.context(pooled))[:, :, None, None]
        presence = self.presence(pooled)
        for i in range(len(self.up) - 1, -1, -1):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        feats = self.head(torch.cat([x, self.image_feat(image)], dim=1))
        y = self.out(feats)

        img_logit = _logit(image)
        background = torch.sigmoid(img_logit + y[:, :3])
        alpha_c = torch.sigmoid(y[:, 3 : 3 + k]).unsqueeze(2)
        color = torch.sigmoid(img_logit.unsqueeze(1) + y[:, 3 + k : 3 + 4 * k].reshape(b, k, 3, h, w))
        if self.shadow_head is not None:
            shadow = self.shadow_head(feats, image, alpha_c)
        elif self.config.shadow_branch:
            shadow = torch.sigmoid(y[:, 3 + 4 * k :]).unsqueeze(2)
        else:
            shadow = None

        alpha = alpha_c
        if refine is None:
            refine = torch.ones(b, k, dtype=torch.bool, device=image.device)
        bi, ki = torch.nonzero(refine, as_tuple=True)
        if bi.numel():
            ra, rc = self.refiner(image[bi], alpha_c[bi, ki], color[bi, ki])
            alpha = alpha_c.clone()
            color = color.clone()
            alpha[bi, ki] = ra
            color[bi, ki] = rc
        return LayerPrediction(background, color, alpha, alpha_c, shadow, presence)


def count_params(model: nn.Module) -> int:
    """Number of parameters (what a float32 checkpoint stores, times 4 bytes)."""
    return sum(p.numel() for p in model.parameters())
