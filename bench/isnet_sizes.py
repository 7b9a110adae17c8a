"""IS-Net's input size: quality on real ground truth against time, to choose the tools' ``input_size``.

For each network size (long side, aspect kept, multiples of 32; and the export's own 1024 square):

* libcom composites (8 real cut-and-paste images, at 512 px as the pipeline sees them): soft IoU of
  the best connected component of ``map > 0.5`` (the map inside it) with the pasted object's mask;
* alphamatting GT04 / GT05 (full resolution): IoU of the proposer's mask (the union of its instances
  lying mostly inside the object) with the true alpha >= 0.5, and the soft IoU with the true alpha
  of the ``isnet-matting`` matte (at the same network size) given that mask: the figure
  ``make eval`` reports as "soft IoU from own mask" for the workflow's size;
* seconds per network forward at 512 px working size (one thread, median of the libcom images).

Writes ``bench/results/isnet.md`` and ``.json``. Needs the weights (``liwi weights fetch``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from add_pipeline.eval.layerd import soft_iou
from add_pipeline.eval.real import first_file, read_composite, read_image, union_inside
from add_pipeline.tools.models.isnet import IsNetMatter, IsNetProposer

ROOT = Path(__file__).resolve().parents[1]
GT = ROOT.parent / "shared" / "data" / "groundtruth"
SIZES = [("keep", 384), ("keep", 512), ("keep", 640), ("keep", 768), ("keep", 1024), ("square", 1024)]


class SquareProposer(IsNetProposer):
    """The proposer with the ONNX export's preprocessing: the image squashed to an ``input_size`` square."""

    def soft_map(self, image: np.ndarray) -> np.ndarray:
        self.ensure_loaded()
        h, w = image.shape[:2]
        x = cv2.resize(image, (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
        prob = self.forward((x.astype(np.float32) / 255.0 - 0.5).transpose(2, 0, 1))
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        lo, hi = float(prob.min()), float(prob.max())
        return np.clip((prob - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def libcom(tool: IsNetProposer) -> tuple[list[float], list[float]]:
    """Per composite: best component soft IoU with the pasted mask, and seconds of the map."""
    ious, secs = [], []
    for case in sorted(p for p in (GT / "composites").iterdir() if p.is_dir()):
        img, gt, _ = read_composite(case, 512)
        t0 = time.perf_counter()
        prob = tool.soft_map(img)
        secs.append(time.perf_counter() - t0)
        n, lab = cv2.connectedComponents((prob > 0.5).astype(np.uint8))
        gtf = gt.astype(np.float32)
        ious.append(max([soft_iou(np.where(lab == i, prob, 0), gtf) for i in range(1, n)] or [0.0]))
    return ious, secs


def matting(tool: IsNetProposer) -> dict[str, float]:
    """Per image: ``GTnn`` the proposer's mask IoU, ``GTnn_soft`` the matte's soft IoU from that mask."""
    out = {}
    matter = IsNetMatter(input_size=tool.input_size, device="cpu")
    for case in ("GT04", "GT05"):
        folder = GT / "matting" / case
        img = read_image(first_file(folder, "image"))
        alpha = read_image(first_file(folder, "alpha"), gray=True).astype(np.float32) / 255.0
        truth = alpha >= 0.5
        union = union_inside([p.mask for p in tool(img, 4) if p.mask is not None], truth)
        out[case] = float((union & truth).sum() / max((union | truth).sum(), 1))
        out[f"{case}_soft"] = soft_iou(matter(img, union, None).alpha, alpha) if union.any() else 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for mode, size in SIZES:
        cls = SquareProposer if mode == "square" else IsNetProposer
        tool = cls(input_size=size, device="cpu")
        tool.ensure_loaded()
        tool.soft_map(np.zeros((64, 64, 3), np.uint8))  # warm-up
        ious, secs = libcom(tool)
        rows.append({"mode": mode, "size": size, "libcom_iou": float(np.mean(ious)), "libcom_cases": ious,
                     "seconds": float(np.median(secs)), **matting(tool)})
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "isnet.json").write_text(json.dumps(rows, indent=2))
    md = ["# IS-Net input size: quality on real ground truth against time", "",
          "`python bench/isnet_sizes.py` (isnet-medium in PyTorch, one CPU thread). libcom: best component's soft "
          "IoU with the pasted object (8 real composites at 512 px); GT04/GT05: the proposer's mask against the "
          "true alpha >= 0.5 (full resolution), then the soft IoU of isnet-matting's matte (same size) from that "
          "mask; seconds: median network time per libcom image at 512 px.", "",
          "| network input | libcom soft IoU | GT04 mask IoU | GT05 mask IoU | GT04 / GT05 soft IoU after matting "
          "| s / image (1 thread) |", "|---|---|---|---|---|---|"]
    for r in rows:
        label = f"{r['size']} long side" if r["mode"] == "keep" else f"{r['size']}x{r['size']} square (the export's)"
        md.append(f"| {label} | {r['libcom_iou']:.3f} | {r['GT04']:.3f} | {r['GT05']:.3f} "
                  f"| {r['GT04_soft']:.3f} / {r['GT05_soft']:.3f} | {r['seconds']:.2f} |")
    (args.out / "isnet.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
