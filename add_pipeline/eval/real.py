"""Scores against the small real ground-truth sets in ``../shared/data/groundtruth`` (benchmarks only).

* matting (alphamatting.com GT04, GT05): our matting tool against the true alpha, given the binary
  mask ``alpha >= 0.5`` (the matter alone) and given the pipeline's own mask (its proposer and
  segmenter; the proposal overlapping the object best); the hard mask is the baseline.
* shadows (DESOBA tuples): our shadow extractor on the real shadowed image against the true shadow
  mask, given the true object mask and given the pipeline's own object mask; an empty matte is the
  baseline.
* composites (libcom cut-and-paste): the whole decompose graph on the composite; the best object
  layer against the pasted object's mask, and the background inside that mask against the true
  background; the composite itself as background is the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from add_pipeline.core.config import Workflow
from add_pipeline.eval.kinds import boundary_band
from add_pipeline.eval.layerd import soft_iou
from add_pipeline.exec.runner import LocalToolRunner


def read_image(path: Path, gray: bool = False) -> np.ndarray:
    """``path`` as ``HxWx3 uint8`` RGB (or ``HxW uint8`` with ``gray``); FileNotFoundError naming it."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: missing or unreadable")
    return img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def first_file(folder: Path, stem: str) -> Path:
    """The first (sorted) ``folder/stem.*``; FileNotFoundError naming what is missing."""
    found = sorted(folder.glob(f"{stem}.*"))
    if not found:
        raise FileNotFoundError(f"{folder}: no {stem}.*")
    return found[0]


def read_composite(folder: Path, long_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A libcom case folder at ``long_side`` px (aspect kept): ``(composite HxWx3 uint8, pasted mask
    HxW bool, true background HxWx3 uint8)``; area resampling for images, nearest for the mask."""
    comp = read_image(first_file(folder, "composite"))
    h, w = comp.shape[:2]
    s = long_side / max(h, w)
    size = (max(round(w * s), 1), max(round(h * s), 1))
    mask = cv2.resize(read_image(first_file(folder, "composite_mask"), gray=True), size,
                      interpolation=cv2.INTER_NEAREST) > 127
    bg = cv2.resize(read_image(first_file(folder, "background")), size, interpolation=cv2.INTER_AREA)
    return cv2.resize(comp, size, interpolation=cv2.INTER_AREA), mask, bg


def _alpha_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """``pred``, ``gt``: HxW float in [0, 1]."""
    diff = np.abs(pred - gt)
    band = boundary_band(gt, 10)
    return {"sad_k": float(diff.sum() / 1000.0), "mse": float((diff ** 2).mean()),
            "iou": soft_iou(pred, gt), "boundary_sad_k": float(diff[band].sum() / 1000.0)}


def score_matting(root: Path, runner: LocalToolRunner) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case in sorted(p for p in (root / "matting").iterdir() if p.is_dir()):
        image = read_image(first_file(case, "image"))
        gt = read_image(first_file(case, "alpha"), gray=True).astype(np.float32) / 255.0
        mask = gt >= 0.5
        pred = runner.call("matte", image, mask).value.alpha
        out[case.name] = {"ours": _alpha_scores(pred, gt), "hard_mask": _alpha_scores(mask.astype(np.float32), gt)}
        own = _pipeline_mask(image, mask, runner)
        if own is not None:
            alpha = runner.call("matte", image, own).value.alpha
            out[case.name]["pipeline_mask"] = _alpha_scores(alpha, gt)
            out[case.name]["pipeline_mask"]["mask_iou"] = float((own & mask).sum() / max((own | mask).sum(), 1))
    return out


def _pipeline_mask(image: np.ndarray, truth: np.ndarray, runner: LocalToolRunner) -> np.ndarray | None:
    """The pipeline's own mask of the object: the union of the masks (the workflow's proposer, then
    its segmenter) that lie mostly (> 50%) inside ``truth`` (the true alpha >= 0.5) — GT04's two
    trolls are two objects to the pipeline and one alpha to the benchmark; None if there are none."""
    masks = [runner.call("segment", image, p.box, p.mask).value.mask for p in runner.call("propose", image, 4).value]
    union = union_inside(masks, truth)
    return union if union.any() else None


def union_inside(masks: list[np.ndarray], truth: np.ndarray) -> np.ndarray:
    """The union of the ``masks`` (HxW bool) lying mostly (> 50%) inside ``truth`` (HxW bool): the
    instances a decomposer made of one true object."""
    union = np.zeros(truth.shape, bool)
    for m in masks:
        if m.any() and (m & truth).sum() > 0.5 * m.sum():
            union |= m
    return union


FOUND_IOU = 0.1
"""A shadow counts as found when its matte (> 0.1) has at least this IoU with the true shadow mask."""


def score_shadows(root: Path, runner: LocalToolRunner) -> dict[str, Any]:
    cases = sorted(p for p in (root / "shadows" / "desoba").iterdir() if p.is_dir())
    rows: dict[str, Any] = {}
    for case in cases:
        image = read_image(case / "shadow_image_gt.png")
        obj = read_image(case / "fg_instance_mask.png", gray=True) > 127
        others = read_image(case / "bg_instance_mask.png", gray=True) > 127
        gt = (read_image(case / "fg_shadow_mask.png", gray=True) > 127) & ~obj
        rows[case.name] = {**_shadow_iou(runner, image, obj, others & ~obj, gt), "gt_px": int(gt.sum())}
        own = _pipeline_mask(image, obj, runner)
        if own is not None:
            got = _shadow_iou(runner, image, own, others & ~own, gt & ~own)
            rows[case.name].update({"own_iou": got["iou"], "own_found": got["found"],
                                    "own_mask_iou": float((own & obj).sum() / max((own | obj).sum(), 1))})
    ious = [r["iou"] for r in rows.values()]
    own_ious = [r.get("own_iou", 0.0) for r in rows.values()]
    return {"cases": rows, "mean_iou": float(np.mean(ious)) if ious else 0.0,
            "found": sum(r["found"] for r in rows.values()), "count": len(rows), "empty_baseline_iou": 0.0,
            "own_mean_iou": float(np.mean(own_ious)) if own_ious else 0.0,
            "own_found": sum(bool(r.get("own_found")) for r in rows.values())}


def _shadow_iou(runner: LocalToolRunner, image: np.ndarray, obj: np.ndarray, others: np.ndarray,
                gt: np.ndarray) -> dict[str, Any]:
    """The workflow's shadow extractor for object ``obj``: IoU of its matte > 0.1 with ``gt``, and whether
    it found the shadow: IoU >= ``FOUND_IOU`` (a matte elsewhere is not a found shadow); ``claimed``:
    whether it returned any matte at all."""
    pred = runner.call("shadow", image, obj, others).value.matte > 0.1
    union = float((pred | gt).sum())
    iou = float((pred & gt).sum()) / union if union else 0.0
    return {"iou": iou, "found": iou >= FOUND_IOU, "claimed": bool(pred.any())}


Decomposer = Callable[[str, Path], "tuple[list[np.ndarray], list[str]] | str"]
"""``(case name, composite path) -> (HxWx4 uint8 layers back to front, their kinds)``, or a reject reason."""


def score_composites_with(root: Path, decompose: Decomposer) -> dict[str, Any]:
    """Score any decomposer on the libcom composites under ``root / "composites"``.

    Per case: the best object layer's soft IoU with the pasted object's mask, and the background
    layer's RGB L1 (0..1) inside that mask against the true background, next to the composite
    itself as background (the baseline); the ground truth is resized to the layers' size.
    """
    rows: dict[str, Any] = {}
    for case in sorted(p for p in (root / "composites").iterdir() if p.is_dir()):
        src = first_file(case, "composite")
        got = decompose(case.name, src)
        if isinstance(got, str):
            rows[case.name] = {"rejected": got}
            continue
        layers, kinds = got
        h, w = layers[0].shape[:2]
        size = (w, h)
        gt_mask = cv2.resize(read_image(first_file(case, "composite_mask"), gray=True), size, cv2.INTER_NEAREST) > 127
        gt_bg = cv2.resize(read_image(first_file(case, "background")), size,
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        comp = cv2.resize(read_image(src), size, interpolation=cv2.INTER_AREA).astype(np.float32)
        ious = [soft_iou(lay[..., 3] / 255.0, gt_mask.astype(np.float32))
                for lay, k in zip(layers, kinds) if k == "object"]
        bg = layers[0][..., :3].astype(np.float32)
        rows[case.name] = {
            "object_iou": max(ious) if ious else 0.0,
            "bg_l1_in_mask": float(np.abs(bg - gt_bg)[gt_mask].mean() / 255.0),
            "composite_as_bg_l1_in_mask": float(np.abs(comp - gt_bg)[gt_mask].mean() / 255.0),
        }
    done = [r for r in rows.values() if "object_iou" in r]
    summary = {k: float(np.mean([r[k] for r in done])) for k in
               ("object_iou", "bg_l1_in_mask", "composite_as_bg_l1_in_mask")} if done else {}
    return {"cases": rows, "mean": summary, "count": len(rows), "decomposed": len(done)}


def score_composites(root: Path, workflow: Workflow, work: Path) -> dict[str, Any]:
    """Decompose each composite with the in-process graph and score it (:func:`score_composites_with`)."""
    from add_pipeline.agents.graph import build_graph
    from add_pipeline.agents.policy import build_policy
    from add_pipeline.exec.sample import decompose_one
    from add_pipeline.io.inputs import InputItem
    from add_pipeline.io.layered import decode_row

    runner = LocalToolRunner(workflow)
    graph, policy = build_graph(), build_policy(workflow.policy.name, **workflow.policy.options)

    def pipeline(name: str, src: Path) -> tuple[list[np.ndarray], list[str]] | str:
        outcome = decompose_one(InputItem(name, str(src)), graph, workflow, runner, policy, workflow.name)
        if outcome.row is None:
            return outcome.reject["reason"] if outcome.reject else "?"
        sample = decode_row(outcome.row)
        return [lay.rgba for lay in sample.layers], [lay.kind for lay in sample.layers]

    return score_composites_with(root, pipeline)


def score_real(root: Path, workflow: Workflow, work: Path) -> dict[str, Any]:
    """All three real-GT tables; a missing set is reported as skipped."""
    runner = LocalToolRunner(workflow)
    out: dict[str, Any] = {"root": str(root)}
    for name, fn in (("matting", lambda: score_matting(root, runner)),
                     ("shadows", lambda: score_shadows(root, runner)),
                     ("composites", lambda: score_composites(root, workflow, work))):
        try:
            out[name] = fn()
        except FileNotFoundError as exc:
            out[name] = {"skipped": str(exc)}
    return out


def real_markdown(res: dict[str, Any]) -> str:
    """Markdown tables of :func:`score_real`'s result."""
    lines = ["## Real ground truth (`../shared/data/groundtruth`)", ""]
    m = res.get("matting", {})
    if "skipped" not in m:
        names = {"ours": "matter, given the true alpha >= 0.5",
                 "pipeline_mask": "matter, given the pipeline's own mask", "hard_mask": "hard mask (true alpha >= 0.5)"}
        lines += ["Matting (alphamatting.com, full resolution; SAD in thousands; mask IoU: the pipeline's mask "
                  "against the true alpha >= 0.5):", "",
                  "| image | method | SAD | MSE | soft IoU | boundary SAD | mask IoU |",
                  "|---|---|---|---|---|---|---|"]
        for case, r in m.items():
            for method in ("pipeline_mask", "ours", "hard_mask"):
                if method not in r:
                    continue
                s = r[method]
                mask_iou = f"{s['mask_iou']:.3f}" if "mask_iou" in s else "-"
                lines.append(f"| {case} | {names[method]} | {s['sad_k']:.2f} | {s['mse']:.4f} | "
                             f"**{s['iou']:.3f}** | {s['boundary_sad_k']:.2f} | {mask_iou} |")
        lines.append("")
    s = res.get("shadows", {})
    if "skipped" not in s:
        lines += [f"Shadows (DESOBA, {s['count']} real tuples): mean IoU of matte > 0.1 vs the true shadow mask "
                  f"**{s['mean_iou']:.3f}** given the true object mask, a shadow found "
                  f"(IoU >= {FOUND_IOU}) in {s['found']}/{s['count']}; "
                  f"**{s.get('own_mean_iou', 0.0):.3f}** given the pipeline's own object mask, found in "
                  f"{s.get('own_found', 0)}/{s['count']} (empty-matte baseline 0.000).", ""]
    c = res.get("composites", {})
    if "skipped" not in c and c.get("mean"):
        mm = c["mean"]
        lines += [f"Cut-and-paste composites (libcom, {c['decomposed']}/{c['count']} decomposed): best object "
                  f"layer's soft IoU with the pasted mask **{mm['object_iou']:.3f}**; background RGB L1 inside the "
                  f"pasted region **{mm['bg_l1_in_mask']:.3f}** vs {mm['composite_as_bg_l1_in_mask']:.3f} for the "
                  f"composite itself as background.", ""]
    return "\n".join(lines)
