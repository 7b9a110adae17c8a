"""Which inpainter fills an object's hole best: background L1 against the true background.

Usage: ``python bench/inpaint_bench.py --out bench/results [--dilate 3] [--synthetic 24] [--methods a,b]``

Two sets with known backgrounds, both at 512 px long side:

* libcom: the 8 real cut-and-paste composites of ``../shared/data/groundtruth/composites`` (see its
  README). Composite and background are resized with INTER_AREA, the pasted mask with INTER_NEAREST,
  as in ``add_pipeline.eval.real.score_composites_with``.
* synthetic: ``make_scene(seed, (384, 512), 1 + seed % 3, shadows=False)`` for ``--synthetic`` seeds;
  without shadows the photo equals the background outside the objects, so the fill is all that is
  scored. The true mask is the union of the objects' ``alpha > 0``.

The hole given to the inpainter is the true mask dilated by ``--dilate`` px (a disc), as an object's
soft edge is removed with it. The score is the mean RGB L1 (0..1) inside the true mask against the
true background; ``composite`` (no fill) is the baseline. Times are wall seconds of one call, OpenCV
on one thread, on a machine that may be shared: read them as orders of magnitude. A method whose
calls on one set add up to more than ``--budget-s`` stops there (cases run smallest hole first) and
has no mean on that set. Writes ``inpaint.json`` and ``inpaint.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from add_pipeline.core.synthetic import make_scene
from add_pipeline.eval.real import read_composite
from add_pipeline.tools.base import build_tool

ROOT = Path(__file__).resolve().parents[1]
GROUNDTRUTH = ROOT.parent / "shared" / "data" / "groundtruth"
LONG_SIDE = 512
REFERENCE = "telea c2f (current)"  # the inpainter the workflows use now

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(HxWx3 uint8 RGB, HxW bool hole) -> HxWx3 uint8``."""


@dataclass(frozen=True)
class Case:
    """One image: ``image`` and ``background`` HxWx3 uint8 RGB, ``mask`` the true HxW bool object mask."""

    name: str
    image: np.ndarray
    background: np.ndarray
    mask: np.ndarray


def libcom_cases(root: Path) -> list[Case]:
    """The composites under ``root / "composites"`` at 512 px long side."""
    cases = []
    for folder in sorted(p for p in (root / "composites").iterdir() if p.is_dir()):
        image, mask, background = read_composite(folder, LONG_SIDE)
        cases.append(Case(folder.name, image, background, mask))
    if not cases:
        raise FileNotFoundError(f"{root / 'composites'}: no cases")
    return cases


def synthetic_cases(n: int) -> list[Case]:
    """``n`` shadow-free synthetic scenes, 384x512, one to three objects."""
    cases = []
    for seed in range(n):
        scene = make_scene(seed, (384, LONG_SIDE), 1 + seed % 3, shadows=False)
        mask = np.zeros(scene.image.shape[:2], bool)
        for obj in scene.objects:
            mask |= obj.alpha > 0
        cases.append(Case(f"seed{seed}", scene.image, scene.background, mask))
    return cases


def _tool(name: str, **params: Any) -> Fill:
    return build_tool("inpaint", name, **params)  # type: ignore[return-value]


def _shiftmap(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``cv2.xphoto.inpaint`` SHIFTMAP on the whole image, in Lab as its docs ask; mask 255 = known."""
    src = cv2.cvtColor(image, cv2.COLOR_RGB2Lab)
    dst = np.zeros_like(src)
    cv2.xphoto.inpaint(src, np.where(hole, 0, 255).astype(np.uint8), dst, cv2.xphoto.INPAINT_SHIFTMAP)
    return cv2.cvtColor(dst, cv2.COLOR_Lab2RGB)


def candidates() -> dict[str, Callable[[], Fill]]:
    """Method label -> builder. ``c2f`` = the tool's coarse-to-fine default; ``coarse_depth=0`` /
    ``coarse_px=0`` = one pass at full resolution (on a crop around the hole)."""
    return {
        "composite (no fill)": lambda: lambda image, hole: image,
        "telea c2f (current)": lambda: _tool("telea"),
        "telea coarse_depth=0": lambda: _tool("telea", coarse_depth=0),
        "navier-stokes c2f": lambda: _tool("ns"),
        "navier-stokes coarse_depth=0": lambda: _tool("ns", coarse_depth=0),
        "biharmonic c2f": lambda: _tool("biharmonic"),
        "biharmonic coarse_depth=0": lambda: _tool("biharmonic", coarse_depth=0),
        "fsr fast coarse_px=0": lambda: _tool("fsr", quality="fast", coarse_px=0),
        "fsr fast coarse_px=500": lambda: _tool("fsr", quality="fast", coarse_px=500),
        "fsr fast coarse_px=1000 (default)": lambda: _tool("fsr", quality="fast", coarse_px=1000),
        "fsr fast coarse_px=1500": lambda: _tool("fsr", quality="fast", coarse_px=1500),
        "fsr fast coarse_px=2000": lambda: _tool("fsr", quality="fast", coarse_px=2000),
        "fsr best coarse_px=0": lambda: _tool("fsr", quality="best", coarse_px=0),
        "fsr best coarse_px=500": lambda: _tool("fsr", quality="best", coarse_px=500),
        "fsr best coarse_px=1000": lambda: _tool("fsr", quality="best", coarse_px=1000),
        "shiftmap (full image)": lambda: _shiftmap,
    }


def score(fill: Fill, cases: list[Case], dilate: int, budget_s: float) -> dict[str, Any]:
    """Per-case L1 and seconds, smallest hole first, until the calls add up to ``budget_s``."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    per_case: dict[str, float] = {}
    seconds: list[float] = []
    for case in sorted(cases, key=lambda c: int(c.mask.sum())):
        hole = cv2.dilate(case.mask.astype(np.uint8), disc) > 0 if dilate > 0 else case.mask
        t0 = time.perf_counter()
        out = fill(case.image, hole)
        seconds.append(time.perf_counter() - t0)
        out = np.where(hole[..., None], out, case.image)  # what the Inpainter contract guarantees
        diff = np.abs(out.astype(np.float32) - case.background.astype(np.float32))
        per_case[case.name] = float(diff[case.mask].mean() / 255.0)
        if sum(seconds) > budget_s and len(per_case) < len(cases):
            break
    done = len(per_case) == len(cases)
    return {
        "l1_mean": float(np.mean(list(per_case.values()))) if done else None,
        "cases_done": len(per_case), "cases": {c.name: per_case.get(c.name) for c in cases},
        "median_s": statistics.median(seconds), "max_s": max(seconds),
    }


def markdown(res: dict[str, Any]) -> str:
    """The tables of :func:`main`'s result."""
    def num(v: float | None, fmt: str = ".4f") -> str:
        return "-" if v is None else format(v, fmt)

    libcom_names = list(next(iter(res["methods"].values()))["libcom"]["cases"])
    ref = res["methods"].get(REFERENCE)

    def wins(r: dict[str, Any], key: str) -> str:
        """How many cases of set ``key`` the method fills strictly better than the current tool."""
        if ref is None:
            return "-"
        pairs = [(v, ref[key]["cases"][n]) for n, v in r[key]["cases"].items() if v is not None]
        return f"{sum(v < base for v, base in pairs)}/{len(pairs)}"

    lines = [
        "# Inpainter choice: background L1 inside the true object mask (0..1, lower is better)", "",
        f"Hole = true mask dilated by {res['dilate_px']} px. libcom: {res['libcom_count']} real composites at "
        f"{LONG_SIDE} px long side; synthetic: {res['synthetic_count']} shadow-free `make_scene` scenes, 384x512. "
        "Seconds: wall time of one call at 512 px, OpenCV on one thread, shared 2-core machine "
        f"({res['machine']}). '-' = stopped at the {res['budget_s']:.0f} s budget (cases done shown).", "",
        f"Wins: cases filled strictly better than `{REFERENCE}` (libcom, synthetic).", "",
        "| method | libcom L1 | synthetic L1 | wins | median s (libcom) | max s (libcom) | median s (synthetic) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in res["methods"].items():
        lc, sy = r["libcom"], r["synthetic"]
        lc_l1 = num(lc["l1_mean"]) if lc["l1_mean"] is not None else f"- ({lc['cases_done']}/{res['libcom_count']})"
        sy_l1 = num(sy["l1_mean"]) if sy["l1_mean"] is not None else f"- ({sy['cases_done']}/{res['synthetic_count']})"
        lines.append(f"| {name} | {lc_l1} | {sy_l1} | {wins(r, 'libcom')}, {wins(r, 'synthetic')} | "
                     f"{num(lc['median_s'], '.3f')} | {num(lc['max_s'], '.2f')} | "
                     f"{num(sy['median_s'], '.3f')} |")
    lines += ["", "Per libcom case:", "",
              "| method | " + " | ".join(n[:12] for n in libcom_names) + " |",
              "|---|" + "---|" * len(libcom_names)]
    for name, r in res["methods"].items():
        lines.append(f"| {name} | " + " | ".join(num(r["libcom"]["cases"][n], ".3f") for n in libcom_names) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--groundtruth", type=Path, default=GROUNDTRUTH)
    ap.add_argument("--dilate", type=int, default=3, help="px the true mask is dilated by to make the hole")
    ap.add_argument("--synthetic", type=int, default=24, help="number of synthetic scenes")
    ap.add_argument("--budget-s", type=float, default=60.0, help="seconds of calls per method and set")
    ap.add_argument("--methods", default="", help="comma-separated labels (default: all); see candidates()")
    args = ap.parse_args()
    if args.dilate < 0 or args.synthetic < 1:
        ap.error("--dilate must be >= 0 and --synthetic >= 1")
    cv2.setNumThreads(1)
    builders = candidates()
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()] or list(builders)
    unknown = [m for m in chosen if m not in builders]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {list(builders)}")
    sets = {"libcom": libcom_cases(args.groundtruth), "synthetic": synthetic_cases(args.synthetic)}
    res: dict[str, Any] = {
        "dilate_px": args.dilate, "budget_s": args.budget_s, "libcom_count": len(sets["libcom"]),
        "synthetic_count": len(sets["synthetic"]), "machine": f"{platform.machine()}, {platform.python_version()}",
        "opencv": cv2.__version__, "methods": {},
    }
    for name in chosen:
        fill = builders[name]()
        res["methods"][name] = {k: score(fill, cases, args.dilate, args.budget_s) for k, cases in sets.items()}
        r = res["methods"][name]
        print(f"{name:36s} libcom {r['libcom']['l1_mean']}  synthetic {r['synthetic']['l1_mean']}  "
              f"median {r['libcom']['median_s']:.3f}s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for suffix, text in (("json", json.dumps(res, indent=1)), ("md", markdown(res))):
        tmp = args.out / f"inpaint.{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(args.out / f"inpaint.{suffix}")
    print(f"wrote {args.out / 'inpaint.md'}")


if __name__ == "__main__":
    main()
