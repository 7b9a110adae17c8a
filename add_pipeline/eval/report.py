"""Dataset reports: the LayerD protocol and per-kind figures over matched samples.

A report is a JSON-able dict::

    {"protocol": {...settings...},
     "count": samples scored, "mean_merges": mean merges made,
     "levels": [{"merges": k, "cost", "rgb_l1", "alpha_iou",     # means over all samples,
                 "reached": samples that made >= k merges,       # early stoppers carried
                 "mean_merges": mean of min(merges, k)}, ...],   # k = 0..max_merges
     "kinds": {...see kinds.aggregate_kinds...},
     "unmatched": {"pred_only": [...], "gt_only": [...]},
     "failed": [{"sample_id", "error"}],
     "samples": {sample_id: {per-level lists, merges, edits, path, "kinds": {...}}}}

Prediction layers whose size differs from the ground truth are resized to it (see
:func:`~add_pipeline.eval.readers.fit_to`) unless ``resize_pred=False``, in which case
the sample fails with the reason recorded.  A sample that cannot be scored (empty stack,
bad layer, size mismatch) lands in ``failed``, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from add_pipeline.eval.kinds import EvalLayer, KindScores, aggregate_kinds, kind_scores
from add_pipeline.eval.layerd import MergeRule, SampleResult, evaluate_sample
from add_pipeline.eval.readers import as_eval_layers, fit_to, pair_samples, read_stacks

StackInput = Sequence[np.ndarray | EvalLayer]


def _conform(pred: list[EvalLayer], gt: list[EvalLayer], resize_pred: bool) -> list[EvalLayer]:
    """``pred`` at the ground truth's size; raises ValueError on inconsistent sizes."""
    if not pred or not gt:
        raise ValueError(f"empty stack: {len(pred)} pred and {len(gt)} gt layers")
    h, w = gt[0].rgba.shape[:2]
    if any(layer.rgba.shape[:2] != (h, w) for layer in gt):
        raise ValueError("ground-truth layers differ in size")
    if all(layer.rgba.shape[:2] == (h, w) for layer in pred):
        return pred
    if not resize_pred:
        sizes = sorted({layer.rgba.shape[:2] for layer in pred})
        raise ValueError(f"pred layer sizes {sizes} differ from the ground truth's {(h, w)} and resize_pred is off")
    return [fit_to(layer, h, w) for layer in pred]


def evaluate_stacks(
    pred: Mapping[str, StackInput],
    gt: Mapping[str, StackInput],
    max_merges: int = 5,
    merge_rule: MergeRule = "layerd",
    band_px: int = 10,
    resize_pred: bool = True,
) -> dict:
    """Score in-memory stacks (``sample_id -> layers``, back to front) and aggregate.

    Args:
        pred, gt: each layer an ``HxWx4 uint8`` straight-alpha array (first = background,
            others = objects) or an :class:`EvalLayer` carrying its kind.
        max_merges: merge edits allowed per sample.
        merge_rule: ``"layerd"`` or ``"exhaustive"`` (see :mod:`add_pipeline.eval.layerd`).
        band_px: half-width of the object boundary band, in pixels.
        resize_pred: resize mismatched prediction layers to the ground-truth size.
    Returns:
        the report dict described in the module docstring.
    """
    pairing = pair_samples(list(pred.keys()), list(gt.keys()))
    scored: list[tuple[str, SampleResult, KindScores]] = []
    failed: list[dict[str, str]] = []
    for sid in pairing.common:
        try:
            g = as_eval_layers(gt[sid])
            p = _conform(as_eval_layers(pred[sid]), g, resize_pred)
            res = evaluate_sample([x.rgba for x in p], [x.rgba for x in g], max_merges, merge_rule)
            kinds = kind_scores(p, g, band_px)
        except (ValueError, OSError) as e:  # one bad sample is data, not a crash of the whole report
            failed.append({"sample_id": sid, "error": f"{type(e).__name__}: {e}"})
            continue
        scored.append((sid, res, kinds))
    return {
        "protocol": {
            "name": "layerd",
            "max_merges": max_merges,
            "merge_rule": merge_rule,
            "band_px": band_px,
            "resize_pred": resize_pred,
        },
        "count": len(scored),
        "mean_merges": float(np.mean([r.merges for _, r, _ in scored])) if scored else None,
        "levels": _levels([r for _, r, _ in scored], max_merges),
        "kinds": aggregate_kinds([k for _, _, k in scored]),
        "unmatched": {"pred_only": list(pairing.pred_only), "gt_only": list(pairing.gt_only)},
        "failed": failed,
        "samples": {sid: {**r.to_dict(), "kinds": k.to_dict()} for sid, r, k in scored},
    }


def _levels(results: list[SampleResult], max_merges: int) -> list[dict]:
    """Per merge level means; each result already carries its last value past its stop."""
    out = []
    for k in range(max_merges + 1):
        row: dict[str, float | int | None] = {"merges": k}
        for key in ("cost", "rgb_l1", "alpha_iou"):
            row[key] = float(np.mean([getattr(r.levels[k], key) for r in results])) if results else None
        row["reached"] = sum(r.merges >= k for r in results)
        row["mean_merges"] = float(np.mean([min(r.merges, k) for r in results])) if results else None
        out.append(row)
    return out


def evaluate(
    pred: str | Path,
    gt: str | Path,
    max_merges: int = 5,
    merge_rule: MergeRule = "layerd",
    band_px: int = 10,
    resize_pred: bool = True,
) -> dict:
    """Score a prediction folder against a ground-truth folder.

    Each folder is a shard folder (has ``_commits/``) or a LayerD-style folder (one
    subfolder of layer PNGs per sample); see :mod:`add_pipeline.eval.readers`.
    """
    p, g = read_stacks(pred), read_stacks(gt)
    report = evaluate_stacks(p, g, max_merges, merge_rule, band_px, resize_pred)
    report["protocol"].update({"pred": p.origin, "gt": g.origin})
    return report


# ---------------------------------------------------------------- markdown


def _fmt(value: object, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def to_markdown(report_or_reports: Mapping[str, dict]) -> str:
    """Markdown tables, one row per method: per-kind figures (object IoU, objects matched, shadows,
    background inside the removed regions), then LayerD scores per merge level.

    Args:
        report_or_reports: ``{method name: report}``, or a single report (named ``"method"``).
    """
    reports: Mapping[str, dict] = report_or_reports
    if "levels" in report_or_reports:  # a single report
        reports = {"method": dict(report_or_reports)}
    if not reports:
        raise ValueError("to_markdown needs at least one report")
    n_levels = max(len(r["levels"]) for r in reports.values())
    ks = range(n_levels)
    head = ["method", "n", *[f"RGB L1 @{k}" for k in ks], *[f"Alpha IoU @{k}" for k in ks], "mean merges"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for name, r in reports.items():
        lv = r["levels"]
        l1 = [_fmt(lv[k]["rgb_l1"], 4) if k < len(lv) else "-" for k in ks]
        iou = [_fmt(lv[k]["alpha_iou"], 4) if k < len(lv) else "-" for k in ks]
        lines.append("| " + " | ".join([name, str(r["count"]), *l1, *iou, _fmt(r["mean_merges"], 2)]) + " |")
        un, failed = r.get("unmatched", {}), r.get("failed", [])
        if un.get("pred_only") or un.get("gt_only") or failed:
            notes.append(
                f"- {name}: {len(un.get('gt_only', []))} gt samples without prediction, "
                f"{len(un.get('pred_only', []))} predictions without gt, {len(failed)} failed"
            )
    kind_cols = [
        ("bg L1", "bg_rgb_l1", 4),
        ("bg PSNR (dB)", "bg_psnr", 2),
        ("object IoU", "object_iou", 4),
        ("object SAD/1000", "object_sad", 3),
        ("boundary SAD/1000", "boundary_sad", 3),
        ("shadow IoU", "shadow_iou", 4),
        ("shadow MAE", "shadow_mae", 4),
    ]
    khead = ["method", *[c[0] for c in kind_cols], "objects matched", "shadows matched"]
    klines = ["| " + " | ".join(khead) + " |", "|" + "---|" * len(khead)]
    for name, r in reports.items():
        k = r["kinds"]
        cells = [_fmt(k.get(key), d) for _, key, d in kind_cols]
        cells += [f"{k['matched_objects']}/{k['gt_objects']}", f"{k['matched_shadows']}/{k['gt_shadows']}"]
        klines.append("| " + " | ".join([name, *cells]) + " |")
    lines = klines + [""] + lines  # the per-kind figures first: they say whether the layers are usable
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
