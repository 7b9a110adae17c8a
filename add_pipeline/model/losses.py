"""Training losses of the layer decomposer.  Each is zero for a perfect prediction.

Targets (a dict of tensors, see :mod:`add_pipeline.model.data`): ``image`` ``Bx3xHxW``,
``background`` ``Bx3xHxW`` (shadow-free), ``color`` ``BxKx3xHxW``, ``alpha`` and ``shadow``
``BxKx1xHxW``, ``present`` ``BxK`` (0/1), ``valid`` ``Bx1xHxW`` (0 on padding).

* ``recompose``: L1 between the photo and the prediction composited back to front with straight
  alpha-over (background, then per slot its black shadow and its object).  It ties the layers
  together: whatever one layer misses another must explain.
* ``background``: L1 to the ground-truth background, weighted up where it is hidden by an object
  or a shadow (that is where the hard part, inpainting, happens and it is a small area).
  Without the shadow branch the target is the background *with* the shadows multiplied in.
* ``color``: L1 of the straight colour, weighted by the ground-truth alpha (colour is undefined
  where the object is absent).
* ``alpha``: L1 of the refined alpha plus a soft binary KL of the coarse one (see :func:`soft_kl`),
  over the image; ``boundary``: the refined alpha's
  L1 inside the band around each ground-truth edge, normalised by the band's area, so that a
  few-pixel boundary error is not drowned by the large, easy interior and exterior.
* ``jaccard``: the soft Jaccard distance ``1 - sum(min(p, y)) / sum(max(p, y))`` of the refined alpha
  of every slot that holds an object, averaged over those slots.  The per-pixel losses above are
  means over the image, so a small object (an eye, a cup) weighs next to nothing in them and the
  network learns to leave it out; here every object counts the same whatever its size.  It is the
  soft IoU the benchmark scores (:func:`~add_pipeline.eval.layerd.soft_iou`), and 0 exactly when
  ``p == y``, soft values included.
* ``presence``: binary cross-entropy of the slot presence logits.
* ``shadow`` (shadow-guided learning): L1 + soft KL of each slot's shadow matte to its object's
  ground-truth shadow, weighted up on the shadow's support.
* ``shadow_jaccard``: the same distance for each slot whose object casts a shadow (faint shadows are
  as small a share of the image as small objects).
* ``restore`` (degradation-restoration): L1 of the refiner's output on degraded ground truth to
  the clean alpha and colour, inside the band the degradation could reach.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from add_pipeline.model.config import TrainConfig
from add_pipeline.model.degrade import boundary_band
from add_pipeline.model.model import LayerPrediction


def composite(background: torch.Tensor, color: torch.Tensor, alpha: torch.Tensor,
              shadow: torch.Tensor | None) -> torch.Tensor:
    """Straight alpha-over, back to front: background, then per slot shadow (black) and object.

    Shapes as in :class:`~add_pipeline.model.model.LayerPrediction`; returns ``Bx3xHxW``.
    """
    out = background
    for k in range(color.shape[1]):
        if shadow is not None:
            out = out * (1.0 - shadow[:, k])
        a = alpha[:, k]
        out = color[:, k] * a + out * (1.0 - a)
    return out


def shadowed_background(background: torch.Tensor, shadow: torch.Tensor) -> torch.Tensor:
    """The background with every shadow multiplied in (the target when there is no shadow branch)."""
    return background * torch.prod(1.0 - shadow, dim=1)


def soft_kl(p: torch.Tensor, y: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Per-pixel binary KL divergence ``KL(y || p)`` for soft targets: cross-entropy minus the target's
    entropy, so it is 0 exactly when ``p == y``.  Its gradient on the logits is ``p - y``, which does
    not vanish when a sigmoid output is saturated (L1 on a sigmoid does: that stalls empty-looking mattes)."""
    p = p.clamp(eps, 1.0 - eps)
    yc = y.clamp(eps, 1.0 - eps)
    return y * (torch.log(yc) - torch.log(p)) + (1.0 - y) * (torch.log1p(-yc) - torch.log1p(-p))


def _wmean(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``err`` (weights broadcast over channels); 0 when the weights are all 0."""
    weight = weight.expand_as(err)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def soft_jaccard(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 keep: torch.Tensor) -> torch.Tensor:
    """Mean soft Jaccard distance ``1 - sum(min) / sum(max)`` over the slots where ``keep`` is true.

    Args:
        pred, target: ``BxKx1xHxW`` mattes in [0, 1].
        valid: ``Bx1x1xHxW`` (or broadcastable) weights, 0 on padding.
        keep: ``BxK`` bool, the slots to score.
    Returns:
        a scalar in [0, 1]; 0 when no slot is kept (a slot whose target is empty inside ``valid`` is not).
    """
    inter = (torch.minimum(pred, target) * valid).flatten(2).sum(-1)
    union = (torch.maximum(pred, target) * valid).flatten(2).sum(-1)
    dist = 1.0 - inter / union.clamp_min(1e-6)
    k = (keep & ((target * valid).flatten(2).sum(-1) > 0)).float()  # an object hidden by padding is not scored
    return (dist * k).sum() / k.sum().clamp_min(1.0)


def decomposition_losses(pred: LayerPrediction, t: dict[str, torch.Tensor],
                         cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """All losses except ``restore``, unweighted, as scalar tensors (see the module docstring)."""
    v = t["valid"]
    shadow_branch = cfg.model.shadow_branch
    if shadow_branch and pred.shadow is None:
        raise ValueError("config says shadow_branch but the prediction has no shadow mattes")
    parts: dict[str, torch.Tensor] = {}
    comp = composite(pred.background, pred.color, pred.alpha, pred.shadow if shadow_branch else None)
    parts["recompose"] = _wmean((comp - t["image"]).abs(), v)

    gt_shadow = t["shadow"]
    bg_target = t["background"] if shadow_branch else shadowed_background(t["background"], gt_shadow)
    hidden = t["alpha"].amax(dim=1) > 0
    if shadow_branch:
        hidden = hidden | (gt_shadow.amax(dim=1) > 0)
    parts["background"] = _wmean((pred.background - bg_target).abs(), v * (1.0 + 4.0 * hidden.float()))

    a_gt = t["alpha"]
    vk = v.unsqueeze(1)  # Bx1x1xHxW, broadcasts over slots
    parts["color"] = _wmean((pred.color - t["color"]).abs(), a_gt * vk)
    parts["alpha"] = (_wmean((pred.alpha - a_gt).abs(), vk.expand_as(a_gt))
                      + _wmean(soft_kl(pred.alpha_coarse, a_gt), vk.expand_as(a_gt)))
    b, k = a_gt.shape[:2]
    band = boundary_band(a_gt.reshape(b * k, 1, *a_gt.shape[-2:]), cfg.band_px).reshape_as(a_gt)
    band = band & (t["present"][:, :, None, None, None] > 0)
    parts["boundary"] = _wmean((pred.alpha - a_gt).abs(), band.float() * vk)
    parts["jaccard"] = soft_jaccard(pred.alpha, a_gt, vk, t["present"] > 0)
    parts["presence"] = F.binary_cross_entropy_with_logits(pred.presence, t["present"])
    if shadow_branch:
        assert pred.shadow is not None
        err = (pred.shadow - gt_shadow).abs() + soft_kl(pred.shadow, gt_shadow)
        parts["shadow"] = _wmean(err, vk * (1.0 + 4.0 * (gt_shadow > 0).float()))
        parts["shadow_jaccard"] = soft_jaccard(pred.shadow, gt_shadow, vk, gt_shadow.flatten(2).amax(-1) > 0)
    return parts


def restoration_loss(alpha: torch.Tensor, color: torch.Tensor, alpha_gt: torch.Tensor, color_gt: torch.Tensor,
                     band: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 of restored alpha and (alpha-weighted) colour to the clean ones inside ``band``.

    Args:
        alpha, alpha_gt: ``Nx1xHxW``; color, color_gt: ``Nx3xHxW``; band, valid: ``Nx1xHxW``.
    """
    w = band.float() * valid
    return _wmean((alpha - alpha_gt).abs(), w) + _wmean((color - color_gt).abs(), w * alpha_gt)


def weighted_total(parts: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.Tensor:
    """Sum of the parts with the config's ``w_<name>`` weights."""
    total = torch.zeros(())
    for name, value in parts.items():
        total = total + getattr(cfg, f"w_{name}") * value
    return total
