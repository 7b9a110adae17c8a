"""Contact sheet: real photos with their layers on a checkerboard, one workflow's row beside another's.

Runs ``liwi run`` (afresh) with each workflow on the 13 photos of ``../shared/data/photos`` and the
7 bundled sample photos, then draws, per photo, the input and then every layer back to front
(background, each object's shadow, each object) over a grey checkerboard, for each workflow in turn,
labelled. Writes ``bench/results/contact_sheet.png`` (one PNG, meant to be looked at).

    python bench/contact_sheet.py [--workflows cpu-classical cpu-default] [--out bench/results]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from add_pipeline.core.composite import alpha_over
from add_pipeline.eval.readers import read_shard_stacks
from add_pipeline.exec.run import RunOptions, run
from add_pipeline.samples import write_samples

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
TILE = 120  # tile height, px


def checkerboard(h: int, w: int, cell: int = 8) -> np.ndarray:
    """``HxWx3 float32`` light/dark grey checkerboard in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 0.80, 0.62).astype(np.float32).repeat(3, 2)


def on_checker(rgba: np.ndarray) -> np.ndarray:
    """An ``HxWx4 uint8`` layer over a checkerboard -> ``HxWx3 uint8``."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) / 255.0 * a + checkerboard(*rgba.shape[:2]) * (1.0 - a)
    return np.round(out * 255).astype(np.uint8)


def tile(img: np.ndarray, label: str) -> np.ndarray:
    """``img`` scaled to :data:`TILE` px high with ``label`` written on a strip under it."""
    h, w = img.shape[:2]
    t = cv2.resize(img, (max(1, int(round(w * TILE / h))), TILE), interpolation=cv2.INTER_AREA)
    strip = np.full((16, t.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, label[: max(4, t.shape[1] // 7)], (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([t, strip], 0)


def hstack(tiles: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Tiles side by side with white gaps."""
    h = max(t.shape[0] for t in tiles)
    parts: list[np.ndarray] = []
    for t in tiles:
        parts += [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0)), constant_values=255),
                  np.full((h, gap, 3), 255, np.uint8)]
    return np.concatenate(parts, 1)


def vstack(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Rows one under another, left-aligned, white-padded."""
    w = max(r.shape[1] for r in rows)
    parts: list[np.ndarray] = []
    for r in rows:
        parts += [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=255),
                  np.full((gap, w, 3), 255, np.uint8)]
    return np.concatenate(parts, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workflows", nargs="+", default=["cpu-classical", "cpu-default"])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "contact")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    inputs = args.work / "inputs"
    if not inputs.is_dir():
        write_samples(inputs / "bundled")
        shutil.copytree(PHOTOS, inputs / "shared", ignore=shutil.ignore_patterns("*.md"))
    stacks = {}
    for wf in args.workflows:
        out = args.work / wf
        # always a fresh run: layers resumed from an earlier version of the tools would be stale
        run(RunOptions(input=str(inputs), out=out, workflow=wf, workers=args.workers, progress=False, overwrite=True))
        stacks[wf] = read_shard_stacks(out)
    ids = sorted(set().union(*[set(s) for s in stacks.values()]))
    rows = []
    for sid in ids:
        for wf in args.workflows:
            stack = stacks[wf].get(sid) if sid in stacks[wf] else None
            if stack is None:
                rows.append(hstack([tile(np.full((TILE, TILE, 3), 255, np.uint8), f"{wf}: rejected")]))
                continue
            photo = np.round(alpha_over([lay.rgba for lay in stack]) * 255).astype(np.uint8)
            tiles = [tile(photo, f"{sid.split('__')[-1]} [{wf}]")]
            tiles += [tile(on_checker(lay.rgba), f"{lay.kind}: {lay.name}") for lay in stack]
            rows.append(hstack(tiles))
    sheet = vstack(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{path}: {len(ids)} photos x {len(args.workflows)} workflows, {sheet.shape[1]}x{sheet.shape[0]} px")


if __name__ == "__main__":
    main()
