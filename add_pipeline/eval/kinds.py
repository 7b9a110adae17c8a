"""Per-kind figures that the LayerD protocol hides, on the un-grouped stacks.

* background: RGB L1 and PSNR inside the *removed region* (pixels where any ground-truth
  object or shadow has ``alpha > 0``), i.e. how well the hidden background was filled in;
* objects: predicted objects are matched to ground-truth objects by Hungarian assignment
  on soft alpha IoU (pairs with IoU 0 count as unmatched); every ground-truth object
  contributes its IoU, its alpha SAD (``sum |alpha_p - alpha_g|`` with alphas in [0, 1],
  divided by 1000) and its boundary SAD (the same inside a band around its edge); an
  unmatched object is compared with an empty matte;
* shadows: each ground-truth shadow is paired through its parent object (the shadows of
  the predicted object matched to that parent, united by maximum); shadows left over are
  paired by Hungarian assignment on IoU; each contributes its soft IoU and its MAE over
  the union of both supports (``alpha > 0`` in either), an unmatched one against nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from add_pipeline.core.composite import alpha_over
from add_pipeline.core.types import LayerKind
from add_pipeline.eval.layerd import soft_iou

PSNR_CAP_DB = 100.0
"""PSNR reported for an exact background fill (zero error), so that means stay finite."""
LAYER_KINDS: tuple[LayerKind, ...] = ("background", "object", "shadow")


@dataclass(frozen=True)
class EvalLayer:
    """One layer as the evaluation sees it.

    Attributes:
        rgba: ``HxWx4 uint8`` straight-alpha RGBA.
        kind: ``background``, ``object`` or ``shadow``.
        name: unique within its stack (object identity, used to pair shadows).
        parent: for a shadow, the name of the object that casts it, if known.
    """

    rgba: np.ndarray
    kind: LayerKind
    name: str
    parent: str | None = None

    def __post_init__(self) -> None:
        a = self.rgba
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 4:
            got = f"{a.shape} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"layer {self.name!r}: rgba must be HxWx4 uint8, got {got}")
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer {self.name!r}: kind must be one of {list(LAYER_KINDS)}, got {self.kind!r}")


@dataclass(frozen=True)
class ObjectScore:
    """One ground-truth object against its matched prediction (``pred`` None when unmatched)."""

    gt: str
    pred: str | None
    iou: float
    sad: float
    boundary_sad: float


@dataclass(frozen=True)
class ShadowScore:
    """One ground-truth shadow against its paired prediction (``pred`` None when unpaired)."""

    gt: str
    pred: str | None
    iou: float
    mae: float


@dataclass(frozen=True)
class KindScores:
    """Per-kind figures of one sample; ``bg_*`` are None when nothing was removed."""

    bg_rgb_l1: float | None
    bg_psnr: float | None
    removed_fraction: float
    objects: tuple[ObjectScore, ...]
    shadows: tuple[ShadowScore, ...]
    n_pred_objects: int
    n_pred_shadows: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _alpha(layer: EvalLayer) -> np.ndarray:
    """``HxW float64`` alpha in [0, 1]."""
    return layer.rgba[..., 3].astype(np.float64) / 255.0


def _background(stack: Sequence[EvalLayer]) -> np.ndarray:
    """``HxWx3 float64`` [0, 1]: the background-kind layers composited, else the first layer."""
    bgs = [layer.rgba for layer in stack if layer.kind == "background"] or [stack[0].rgba]
    return alpha_over(bgs)


def boundary_band(alpha: np.ndarray, band_px: int) -> np.ndarray:
    """``HxW bool``: pixels within ``band_px`` of the edge of ``alpha >= 0.5``, plus the soft rim.

    Args:
        alpha: ``HxW float`` matte in [0, 1].
        band_px: half-width of the band in pixels (>= 1).
    """
    if band_px < 1:
        raise ValueError(f"band_px must be >= 1, got {band_px}")
    mask = (alpha >= 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
    band = cv2.dilate(mask, kernel) != cv2.erode(mask, kernel)
    return band | ((alpha > 0) & (alpha < 1))


def hungarian_by_iou(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """``(pred_index, gt_index)`` pairs maximising the total soft IoU; pairs with IoU 0 dropped."""
    if not pred or not gt:
        return []
    iou = np.array([[soft_iou(p, g) for g in gt] for p in pred])
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] > 0]


def _psnr(mse: float) -> float:
    return PSNR_CAP_DB if mse <= 0 else min(PSNR_CAP_DB, float(10.0 * np.log10(1.0 / mse)))


def kind_scores(pred: Sequence[EvalLayer], gt: Sequence[EvalLayer], band_px: int = 10) -> KindScores:
    """Per-kind figures of one sample (see the module docstring).

    Args:
        pred, gt: un-grouped stacks, back to front, all layers the same size.
        band_px: half-width of the boundary band around each ground-truth object edge.
    """
    if not pred or not gt:
        raise ValueError(f"both stacks need at least one layer, got {len(pred)} pred and {len(gt)} gt")
    shape = gt[0].rgba.shape
    if any(layer.rgba.shape != shape for layer in [*pred, *gt]):
        raise ValueError(f"all layers must share the ground truth's size {shape[:2]}")
    g_obj, g_sh = [x for x in gt if x.kind == "object"], [x for x in gt if x.kind == "shadow"]
    p_obj, p_sh = [x for x in pred if x.kind == "object"], [x for x in pred if x.kind == "shadow"]

    removed = np.zeros(shape[:2], bool)
    for layer in (*g_obj, *g_sh):
        removed |= layer.rgba[..., 3] > 0
    bg_l1 = bg_psnr = None
    if removed.any():
        diff = _background(pred)[removed] - _background(gt)[removed]
        bg_l1 = float(np.abs(diff).mean())
        bg_psnr = _psnr(float((diff**2).mean()))

    objects = _object_scores(p_obj, g_obj, band_px)
    owner = {o.gt: o.pred for o in objects if o.pred is not None}  # gt object name -> pred object name
    return KindScores(
        bg_rgb_l1=bg_l1,
        bg_psnr=bg_psnr,
        removed_fraction=float(removed.mean()),
        objects=objects,
        shadows=_shadow_scores(p_sh, g_sh, owner),
        n_pred_objects=len(p_obj),
        n_pred_shadows=len(p_sh),
    )


def _object_scores(pred: list[EvalLayer], gt: list[EvalLayer], band_px: int) -> tuple[ObjectScore, ...]:
    """Each gt object against its Hungarian match (or an empty matte)."""
    ga, pa = [_alpha(x) for x in gt], [_alpha(x) for x in pred]
    match = {gi: pi for pi, gi in hungarian_by_iou(pa, ga)}
    out = []
    for gi, g_layer in enumerate(gt):
        pi = match.get(gi)
        p_alpha = pa[pi] if pi is not None else np.zeros_like(ga[gi])
        err = np.abs(p_alpha - ga[gi])
        out.append(
            ObjectScore(
                gt=g_layer.name,
                pred=None if pi is None else pred[pi].name,
                iou=soft_iou(p_alpha, ga[gi]),
                sad=float(err.sum()) / 1000.0,
                boundary_sad=float(err[boundary_band(ga[gi], band_px)].sum()) / 1000.0,
            )
        )
    return tuple(out)


def _shadow_scores(pred: list[EvalLayer], gt: list[EvalLayer], owner: dict[str, str]) -> tuple[ShadowScore, ...]:
    """Each gt shadow against the pred shadows of its parent's match, else a Hungarian match."""
    assigned: dict[int, list[int]] = {}
    used: set[int] = set()
    for gi, g_layer in enumerate(gt):
        parent = owner.get(g_layer.parent) if g_layer.parent is not None else None
        kids = [pi for pi, p_layer in enumerate(pred) if parent is not None and p_layer.parent == parent]
        kids = [pi for pi in kids if pi not in used]
        if kids:
            assigned[gi] = kids
            used.update(kids)
    rest_g = [gi for gi in range(len(gt)) if gi not in assigned]
    rest_p = [pi for pi in range(len(pred)) if pi not in used]
    for a, b in hungarian_by_iou([_alpha(pred[i]) for i in rest_p], [_alpha(gt[i]) for i in rest_g]):
        assigned[rest_g[b]] = [rest_p[a]]
    out = []
    for gi, g_layer in enumerate(gt):
        g_alpha = _alpha(g_layer)
        kids = assigned.get(gi, [])
        p_alpha = np.max([_alpha(pred[k]) for k in kids], axis=0) if kids else np.zeros_like(g_alpha)
        support = (g_alpha > 0) | (p_alpha > 0)
        mae = float(np.abs(p_alpha - g_alpha)[support].mean()) if support.any() else 0.0
        name = "+".join(pred[k].name for k in kids) or None
        out.append(ShadowScore(gt=g_layer.name, pred=name, iou=soft_iou(p_alpha, g_alpha), mae=mae))
    return tuple(out)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def aggregate_kinds(items: Sequence[KindScores]) -> dict[str, float | int | None]:
    """Dataset figures: background means over samples with a removed region; object and
    shadow means pooled over all ground-truth objects / shadows (each counts once).

    A figure with nothing to average is None.
    """
    bg = [k for k in items if k.bg_rgb_l1 is not None]
    objs = [o for k in items for o in k.objects]
    shs = [s for k in items for s in k.shadows]
    return {
        "bg_rgb_l1": _mean([k.bg_rgb_l1 for k in bg if k.bg_rgb_l1 is not None]),
        "bg_psnr": _mean([k.bg_psnr for k in bg if k.bg_psnr is not None]),
        "bg_samples": len(bg),
        "object_iou": _mean([o.iou for o in objs]),
        "object_sad": _mean([o.sad for o in objs]),
        "boundary_sad": _mean([o.boundary_sad for o in objs]),
        "gt_objects": len(objs),
        "pred_objects": sum(k.n_pred_objects for k in items),
        "matched_objects": sum(o.pred is not None for o in objs),
        "shadow_iou": _mean([s.iou for s in shs]),
        "shadow_mae": _mean([s.mae for s in shs]),
        "gt_shadows": len(shs),
        "pred_shadows": sum(k.n_pred_shadows for k in items),
        "matched_shadows": sum(s.pred is not None for s in shs),
    }
