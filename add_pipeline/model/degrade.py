"""Boundary degradations of a ground-truth foreground, for the degradation-restoration objective.

The refiner (:class:`~add_pipeline.model.model.BoundaryRefiner`) is trained to turn a
*damaged* foreground back into the clean one.  The damage imitates what a coarse matte
gets wrong, and only where it gets it wrong, at the boundary:

* erosion / dilation: the edge sits a few pixels inside / outside the true one;
* blur: the edge is too soft (the typical output of a low-resolution decoder);
* colour spill: the straight colour of the rim is contaminated by the background behind it
  (what you get when a matte is applied to the photo without decontamination).

Every operator is local with a known reach, so a pixel farther than that reach from any
non-constant alpha (deep inside or deep outside the object) is left unchanged; the tests
check this.  All tensors are ``float32``: alpha ``Bx1xHxW`` in [0, 1], colours ``Bx3xHxW``
in [0, 1].  Square windows are used throughout, so "distance" means Chebyshev distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_FLAT = 1e-3  # alpha below this is "outside", above 1 - this is "inside"


def dilate(alpha: torch.Tensor, radius: int) -> torch.Tensor:
    """Max filter over a ``(2r+1)`` square: the matte grows by ``radius`` px.

    Done as a row pass then a column pass (a square's max is separable): O(r) per pixel, not O(r^2).
    """
    if radius < 1:
        return alpha
    k = 2 * radius + 1
    x = F.max_pool2d(alpha, (1, k), stride=1, padding=(0, radius))
    return F.max_pool2d(x, (k, 1), stride=1, padding=(radius, 0))


def erode(alpha: torch.Tensor, radius: int) -> torch.Tensor:
    """Min filter over a ``(2r+1)`` square: the matte shrinks by ``radius`` px."""
    return -dilate(-alpha, radius)


def blur_reach(sigma: float) -> int:
    """Radius (px) of the truncated Gaussian kernel used by :func:`blur`."""
    return max(1, math.ceil(3.0 * sigma))


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur truncated at ``3 sigma``, replicate borders (a flat image stays flat)."""
    if sigma <= 0:
        return x
    r = blur_reach(sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def spill(fg: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor, strength: float) -> torch.Tensor:
    """Mix background colour into the rim: ``fg + strength * (1 - alpha) * (bg - fg)`` where ``0 < alpha < 1``.

    The weight ``1 - alpha`` is what a naive cut-out would leave there (the pixel is that much
    background), so the spill is strongest on the outer rim, and zero inside (alpha = 1) and
    outside (alpha = 0, where the colour is irrelevant anyway).
    """
    rim = ((alpha > _FLAT) & (alpha < 1.0 - _FLAT)).to(fg.dtype)
    w = strength * (1.0 - alpha) * rim
    return fg + w * (bg - fg)


def boundary_band(alpha: torch.Tensor, radius: int) -> torch.Tensor:
    """``Bx1xHxW bool``: pixels within ``radius`` px (Chebyshev) of a pixel whose alpha is neither 0 nor 1,
    or of a 0/1 transition.  Everything a degradation of reach ``radius`` can touch lies inside it."""
    inside = (alpha > 1.0 - _FLAT).to(alpha.dtype)
    outside = (alpha < _FLAT).to(alpha.dtype)
    deep_in = erode(inside, radius) > 0.5
    deep_out = erode(outside, radius) > 0.5
    return ~(deep_in | deep_out)


@dataclass(frozen=True)
class DegradeParams:
    """What :func:`degrade` did to one sample (for logs and tests)."""

    morph: str  # "erode" | "dilate" | "none"
    radius: int
    sigma: float
    spill: float

    @property
    def reach(self) -> int:
        """How far (px) from the boundary this degradation can change anything."""
        return self.radius + (blur_reach(self.sigma) if self.sigma > 0 else 0) + 1


def sample_params(gen: torch.Generator, max_radius: int, max_sigma: float, max_spill: float) -> DegradeParams:
    """Draw one degradation: erode or dilate (40% each) by 1..max_radius px, blur (60%) with sigma in
    [0.5, max_sigma], colour spill (50%) of strength in [0.2, max_spill].  At least one operator applies."""
    u = torch.rand(6, generator=gen).tolist()
    morph = "erode" if u[0] < 0.4 else ("dilate" if u[0] < 0.8 else "none")
    radius = 1 + int(u[1] * max_radius) if morph != "none" else 0
    radius = min(radius, max_radius)
    sigma = 0.5 + u[3] * max(max_sigma - 0.5, 0.0) if (u[2] < 0.6 and max_sigma > 0) else 0.0
    amount = 0.2 + u[5] * max(max_spill - 0.2, 0.0) if (u[4] < 0.5 and max_spill > 0) else 0.0
    if morph == "none" and sigma == 0.0 and amount == 0.0:
        sigma = max(0.5, max_sigma)  # never hand the refiner an undamaged input labelled as damaged
    return DegradeParams(morph, radius, sigma, amount)


def apply(params: DegradeParams, alpha: torch.Tensor, fg: torch.Tensor,
          bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Degrade one ``1x1xHxW`` alpha and its ``1x3xHxW`` straight colour (``bg``: what lies behind)."""
    a = erode(alpha, params.radius) if params.morph == "erode" else dilate(alpha, params.radius) \
        if params.morph == "dilate" else alpha
    a = blur(a, params.sigma)
    # Dilation exposes pixels that had no object colour: give them the nearest object colour
    # (a dilated copy of the premultiplied colour), as a real matting error would show the photo.
    c = fg
    if params.morph == "dilate" or params.sigma > 0:
        r = params.radius + (blur_reach(params.sigma) if params.sigma > 0 else 0)
        num = dilate(fg * alpha, r)
        den = dilate(alpha, r)
        grown = num / den.clamp_min(1e-6)
        c = torch.where(alpha > _FLAT, fg, torch.where(den > _FLAT, grown, fg))
    if params.spill > 0:
        c = spill(c, a, bg, params.spill)
    return a.clamp(0.0, 1.0), c.clamp(0.0, 1.0)


def degrade(
    alpha: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, gen: torch.Generator,
    max_radius: int, max_sigma: float, max_spill: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[DegradeParams]]:
    """Degrade each sample of a batch with its own random operators.

    Args:
        alpha: ``Nx1xHxW`` clean mattes; fg: ``Nx3xHxW`` clean straight colours; bg: ``Nx3xHxW``
            background behind them (the spill colour); gen: the source of randomness.
    Returns:
        ``(alpha_d, fg_d, band, params)``: the degraded inputs, ``Nx1xHxW bool`` the band each
        sample's degradation could reach (where the restoration loss looks), and what was applied.
    """
    outs_a, outs_c, bands, params = [], [], [], []
    for i in range(alpha.shape[0]):
        p = sample_params(gen, max_radius, max_sigma, max_spill)
        a, c = apply(p, alpha[i : i + 1], fg[i : i + 1], bg[i : i + 1])
        outs_a.append(a)
        outs_c.append(c)
        bands.append(boundary_band(alpha[i : i + 1], p.reach))
        params.append(p)
    return torch.cat(outs_a), torch.cat(outs_c), torch.cat(bands), params
