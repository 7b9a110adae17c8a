"""The LayerD evaluation protocol: grouping, DTW alignment and greedy merge edits.

Both stacks (``HxWx4 uint8`` straight-alpha RGBA, back to front) are first *grouped*:
the layers whose hard masks (``alpha > 0``) overlap no remaining layer above them
are peeled off as one group, repeatedly, and each group is flattened by alpha-over;
groups are then ordered back to front.  The grouped stacks are aligned by monotone
DTW on the pair cost ``(RGB L1 + 1 - alpha IoU) / 2`` and a sample scores the mean of
each metric over the pairs on the path.  Then up to ``max_merges`` edits merge two
adjacent layers of either stack (only while it has more than 2 layers), re-aligning
after each.  The scores after 0..``max_merges`` merges are kept; a sample that stopped
early carries its last value.

Two merge rules are offered.  ``"layerd"`` (the default) reproduces LayerD's choice:
the merge is picked by a local gain estimated from the current alignment, not by
re-running DTW, and an edit is taken whenever that estimate is positive, even if the
re-aligned score then gets worse.  ``"exhaustive"`` re-aligns every candidate and takes
the one that lowers the mean pair cost most, stopping when none lowers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

MergeRule = Literal["layerd", "exhaustive"]
Side = Literal["pred", "gt"]
MERGE_RULES: tuple[MergeRule, ...] = ("layerd", "exhaustive")
MIN_LAYERS = 2
"""A stack with this many layers or fewer is never merged further."""


# ---------------------------------------------------------------- pair metrics


def _check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("pred", "gt")) -> None:
    """Raise ValueError unless ``a`` and ``b`` are same-size ``HxWx4 uint8`` arrays."""
    for name, arr in zip(names, (a, b), strict=True):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 4:
            got = f"{arr.shape} {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise ValueError(f"{name} layer must be HxWx4 uint8 RGBA, got {got}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} layer {a.shape[:2]} and {names[1]} layer {b.shape[:2]} differ in size")


def soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(min(a, b)) / sum(max(a, b))`` of two same-shape mattes; 0 when the union is empty.

    Works on any non-negative dtype (``uint8`` mattes give the same ratio as [0, 1] floats).
    """
    if a.shape != b.shape:
        raise ValueError(f"soft_iou needs same-shape mattes, got {a.shape} and {b.shape}")
    wide = np.int64 if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer) else np.float64
    union = float(np.maximum(a, b).sum(dtype=wide))
    if union <= 0:
        return 0.0
    return float(np.minimum(a, b).sum(dtype=wide)) / union


def rgb_l1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean ``|rgb_pred - rgb_gt|`` in [0, 1] (averaged over channels) where ``alpha_gt > 0``.

    Colours are straight (not premultiplied).  Returns 0 when the ground truth is empty,
    as LayerD does (its denominator is ``count + 1e-8``).
    """
    _check_pair(pred, gt)
    mask = (gt[..., 3] > 0).view(np.uint8)
    if not mask.any():
        return 0.0
    per_channel = cv2.mean(cv2.absdiff(np.ascontiguousarray(pred), np.ascontiguousarray(gt)), mask=mask)
    return float(sum(per_channel[:3])) / (3.0 * 255.0)


def alpha_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Soft IoU of the two alpha channels, in [0, 1]; 0 when both are empty."""
    _check_pair(pred, gt)
    return soft_iou(pred[..., 3], gt[..., 3])


@dataclass(frozen=True)
class PairScore:
    """Metrics of one (pred, gt) layer pair, or their mean over a DTW path."""

    cost: float
    rgb_l1: float
    alpha_iou: float


def pair_score(pred: np.ndarray, gt: np.ndarray) -> PairScore:
    """RGB L1, alpha IoU and the pair cost ``(L1 + 1 - IoU) / 2`` (in [0, 1]) of two layers."""
    l1, iou = rgb_l1(pred, gt), alpha_iou(pred, gt)
    return PairScore(cost=(l1 + 1.0 - iou) / 2.0, rgb_l1=l1, alpha_iou=iou)


# ---------------------------------------------------------------- grouping


def merge_over(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """``HxWx4 uint8`` straight-alpha result of ``above`` over ``below`` (both ``HxWx4 uint8``).

    Uses Pillow's ``alpha_composite``, as LayerD does, so flattened groups and merged
    layers match its rounding exactly.
    """
    _check_pair(below, above, ("below", "above"))
    out = Image.alpha_composite(Image.fromarray(below), Image.fromarray(above))
    return np.asarray(out).copy()


def group_indices(alphas: Sequence[np.ndarray]) -> list[list[int]]:
    """LayerD's occlusion grouping of a back-to-front stack of ``HxW`` alpha mattes.

    Repeatedly, every remaining layer whose ``alpha > 0`` mask overlaps no remaining layer
    above it joins the current group; the group is removed and the next one peeled.
    Returns index groups ordered back to front, each group back to front.  Layers within
    a group never overlap each other.
    """
    masks = [np.asarray(a) > 0 for a in alphas]
    remaining = list(range(len(masks)))
    peeled: list[list[int]] = []
    while remaining:
        top = [
            idx
            for pos, idx in enumerate(remaining)
            if not any((masks[idx] & masks[other]).any() for other in remaining[pos + 1 :])
        ]
        peeled.append(top)  # never empty: the last remaining layer has nothing above it
        remaining = [idx for idx in remaining if idx not in top]
    return peeled[::-1]


def group_layers(layers: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Flatten each occlusion group of ``layers`` (``HxWx4 uint8``, back to front) by alpha-over."""
    if not layers:
        raise ValueError("cannot group an empty layer stack")
    out = []
    for group in group_indices([layer[..., 3] for layer in layers]):
        flat = layers[group[0]]
        for idx in group[1:]:
            flat = merge_over(flat, layers[idx])
        out.append(flat)
    return out


# ---------------------------------------------------------------- DTW


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-total-cost monotone path through an ``N x M`` cost matrix, from (0, 0) to (N-1, M-1).

    Steps are (1, 0), (0, 1) and (1, 1).  The path is traced back from the end choosing,
    among the predecessors, the smallest accumulated cost; ties prefer the diagonal, then
    the step that moves in the first (prediction) index, as in LayerD.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"dtw_path needs a non-empty 2-D cost matrix, got shape {c.shape}")
    n, m = c.shape
    acc = np.empty_like(c)
    acc[0, 0] = c[0, 0]
    acc[1:, 0] = c[0, 0] + np.cumsum(c[1:, 0])
    acc[0, 1:] = c[0, 0] + np.cumsum(c[0, 1:])
    for i in range(1, n):
        for j in range(1, m):
            acc[i, j] = c[i, j] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    i, j = n - 1, m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            diag, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if diag <= up and diag <= left:
                i, j = i - 1, j - 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        path.append((i, j))
    return path[::-1]


class _Aligned:
    """Two grouped stacks and ``mats[k, pred, gt]`` (k: cost, RGB L1, alpha IoU), kept in step."""

    def __init__(self, pred: list[np.ndarray], gt: list[np.ndarray], mats: np.ndarray | None = None) -> None:
        self.pred, self.gt = pred, gt
        if mats is None:
            mats = np.array([[_triple(pair_score(p, g)) for g in gt] for p in pred]).transpose(2, 0, 1)
        self.mats = mats
        self.cost = mats[0]

    def path(self) -> list[tuple[int, int]]:
        return dtw_path(self.cost)

    def score(self, path: list[tuple[int, int]]) -> PairScore:
        rows, cols = np.array(path).T
        return PairScore(*(float(v) for v in self.mats[:, rows, cols].mean(axis=1)))

    def merged(self, side: Side, i: int) -> _Aligned:
        """A copy with layers ``i`` and ``i + 1`` of ``side`` merged (``i + 1`` over ``i``)."""
        pred, gt = list(self.pred), list(self.gt)
        stack = pred if side == "pred" else gt
        stack[i : i + 2] = [merge_over(stack[i], stack[i + 1])]
        mats = np.delete(self.mats, i + 1, axis=1 if side == "pred" else 2)
        if side == "pred":
            mats[:, i, :] = np.array([_triple(pair_score(stack[i], g)) for g in gt]).T
        else:
            mats[:, :, i] = np.array([_triple(pair_score(p, stack[i])) for p in pred]).T
        return _Aligned(pred, gt, mats)


def _triple(s: PairScore) -> tuple[float, float, float]:
    return (s.cost, s.rgb_l1, s.alpha_iou)


# ---------------------------------------------------------------- merge edits


def _layerd_gain(stack: list[np.ndarray], others: list[np.ndarray], sim: np.ndarray,
                 pairs: list[tuple[int, int]], i: int) -> float:
    """LayerD's estimated gain of merging ``stack[i]`` and ``stack[i + 1]``.

    ``sim[a, b] = 1 - cost(stack[a], others[b])`` (the stack's layer in the first slot)
    and ``pairs`` maps stack index to others index along the current path.  Before: each
    of the two layers earns its similarity to the layers it is matched with.  After: the
    merged layer earns it against the matches of layer ``i``, plus the best of (the merged
    layer against the matches of ``i + 1``, layer ``i + 2`` against those of ``i``, layer
    ``i + 2`` against those of ``i + 1``).  Sums, not means, as in LayerD.
    """
    t0 = [b for a, b in pairs if a == i]
    t1 = [b for a, b in pairs if a == i + 1]
    merged = merge_over(stack[i], stack[i + 1])
    m0, m1 = (sum(1.0 - pair_score(merged, others[b]).cost for b in t) for t in (t0, t1))
    before = float(sim[i, t0].sum() + sim[i + 1, t1].sum())
    options = [m1]
    if i + 2 < len(stack):
        options += [float(sim[i + 2, t0].sum()), float(sim[i + 2, t1].sum())]
    return m0 + max(options) - before


def _best_layerd_merge(al: _Aligned, path: list[tuple[int, int]]) -> tuple[Side, int] | None:
    """LayerD's pick: the largest positive estimated gain; a tie between the stacks goes to gt.

    On the ground-truth side LayerD scores with the arguments swapped (a gt layer in the
    prediction slot, so its colour error is taken under the *prediction's* alpha); kept.
    """
    best: dict[Side, tuple[float, int]] = {}
    sides: tuple[Side, Side] = ("pred", "gt")
    for side in sides:
        stack, others = (al.pred, al.gt) if side == "pred" else (al.gt, al.pred)
        if len(stack) <= MIN_LAYERS:
            continue
        if side == "pred":
            sim, pairs = 1.0 - al.cost, path
        else:
            sim = np.array([[1.0 - pair_score(g, p).cost for p in al.pred] for g in al.gt])
            pairs = [(j, i) for i, j in path]
        for i in range(len(stack) - 1):
            gain = _layerd_gain(stack, others, sim, pairs, i)
            if gain > 0 and (side not in best or gain > best[side][0]):  # ties keep the lowest index
                best[side] = (gain, i)
    if "pred" in best and ("gt" not in best or best["pred"][0] > best["gt"][0]):
        return "pred", best["pred"][1]
    if "gt" in best:
        return "gt", best["gt"][1]
    return None


def _best_exhaustive_merge(al: _Aligned, current: float) -> tuple[Side, int, _Aligned] | None:
    """The merge whose re-aligned mean cost is lowest, if it is lower than ``current``.

    Ties prefer the prediction, then the lower index.
    """
    best: tuple[float, Side, int, _Aligned] | None = None
    sides: tuple[Side, Side] = ("pred", "gt")
    for side in sides:
        stack = al.pred if side == "pred" else al.gt
        if len(stack) <= MIN_LAYERS:
            continue
        for i in range(len(stack) - 1):
            cand = al.merged(side, i)
            cost = cand.score(cand.path()).cost
            if cost < current - 1e-12 and (best is None or cost < best[0] - 1e-12):
                best = (cost, side, i, cand)
    return None if best is None else best[1:]


@dataclass(frozen=True)
class SampleResult:
    """LayerD scores of one sample.

    Attributes:
        levels: ``max_merges + 1`` scores, after 0, 1, ... merges; past ``merges`` the
            last reached value is repeated.
        merges: merges actually made (0..max_merges).
        edits: the merges made, in order, as ``"pred 2+3"`` / ``"gt 0+1"`` (indices into
            the stack as it was at that step).
        path: final DTW path as ``(pred_group, gt_group)`` pairs.
        n_pred_groups, n_gt_groups: stack sizes after grouping, before any merge.
    """

    levels: tuple[PairScore, ...]
    merges: int
    edits: tuple[str, ...]
    path: tuple[tuple[int, int], ...]
    n_pred_groups: int
    n_gt_groups: int

    def to_dict(self) -> dict[str, object]:
        return {
            "cost": [lv.cost for lv in self.levels],
            "rgb_l1": [lv.rgb_l1 for lv in self.levels],
            "alpha_iou": [lv.alpha_iou for lv in self.levels],
            "merges": self.merges,
            "edits": list(self.edits),
            "path": [list(p) for p in self.path],
            "n_pred_groups": self.n_pred_groups,
            "n_gt_groups": self.n_gt_groups,
        }


def evaluate_grouped(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], max_merges: int = 5,
                     merge_rule: MergeRule = "layerd") -> SampleResult:
    """Align two already-grouped stacks and apply up to ``max_merges`` merge edits.

    Args:
        pred, gt: ``HxWx4 uint8`` straight-alpha layers, back to front, all the same size.
        max_merges: the most merges to make (>= 0).
        merge_rule: ``"layerd"`` (LayerD's local gain estimate) or ``"exhaustive"``.
    """
    if merge_rule not in MERGE_RULES:
        raise ValueError(f"unknown merge_rule {merge_rule!r}; expected one of {list(MERGE_RULES)}")
    if not isinstance(max_merges, int) or max_merges < 0:
        raise ValueError(f"max_merges must be a non-negative int, got {max_merges!r}")
    if not pred or not gt:
        raise ValueError(f"both stacks need at least one layer, got {len(pred)} pred and {len(gt)} gt")
    al = _Aligned(list(pred), list(gt))
    path = al.path()
    levels: list[PairScore] = [al.score(path)]
    edits: list[str] = []
    while len(edits) < max_merges:
        if merge_rule == "layerd":
            choice = _best_layerd_merge(al, path)
            if choice is None:
                break
            side, i = choice
            al = al.merged(side, i)
        else:
            found = _best_exhaustive_merge(al, levels[-1].cost)
            if found is None:
                break
            side, i, al = found
        edits.append(f"{side} {i}+{i + 1}")
        path = al.path()
        levels.append(al.score(path))
    merges = len(edits)
    levels += [levels[-1]] * (max_merges - merges)
    return SampleResult(tuple(levels), merges, tuple(edits), tuple(path), len(pred), len(gt))


def evaluate_sample(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], max_merges: int = 5,
                    merge_rule: MergeRule = "layerd") -> SampleResult:
    """Group both stacks (LayerD's occlusion groups) and score them with :func:`evaluate_grouped`.

    Args:
        pred, gt: ``HxWx4 uint8`` straight-alpha layers, back to front, all the same size.
    """
    return evaluate_grouped(group_layers(pred), group_layers(gt), max_merges, merge_rule)
