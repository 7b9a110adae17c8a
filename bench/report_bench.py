"""``liwi report`` at scale: a 10,000-sample output folder, the page's size, the time to write and to open it.

1. A small real run: the bundled photos (``liwi samples``) plus a flat grey picture (rejected: no
   object, but it decodes) and a file that is not an image (rejected at load), decomposed with
   ``liwi run --workflow cpu-classical``.  Its report is opened in headless Chromium and
   screenshotted to ``bench/results/report.png``.
2. A big folder: that run's committed shard, reject and trace rows replicated under new sample and
   trace ids until there are ``--n`` samples, committed 64 samples a part with
   :class:`~add_pipeline.io.shards.ShardStore` (its run.json / stats.json are the small run's).
3. ``liwi report`` on it, timed (wall, peak RSS), the page and its assets measured, and the page
   opened in Chromium: time until drawn, time of a filter change and of a page turn.

Writes ``bench/results/report.md`` and ``report.json``.
Usage: ``python bench/report_bench.py [--n 10000] [--work /tmp/liwi-report-bench] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from add_pipeline.io.shards import ShardStore

ROOT = Path(__file__).resolve().parents[1]
LIWI = str(Path(sys.executable).with_name("liwi"))
PART = 64


def small_run(work: Path) -> Path:
    """The real run everything else is made of."""
    photos, out = work / "photos", work / "small"
    if (out / "_commits").is_dir():
        return out
    subprocess.run([LIWI, "samples", str(photos)], check=True, stdout=subprocess.DEVNULL)
    Image.fromarray(np.full((150, 200, 3), 128, np.uint8)).save(photos / "flat_gray.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    subprocess.run([LIWI, "run", "--input", str(photos), "--out", str(out), "--workflow", "cpu-classical",
                    "--no-progress"], check=True)
    return out


def screenshot(small: Path, png: Path) -> dict:
    """Report of the small run, opened in Chromium; the first screen and the gallery's first cards."""
    from add_pipeline.report.browser import chromium, console_errors, missing, open_report

    html = small / "report.html"
    subprocess.run([LIWI, "report", str(small), "--out", str(html)], check=True)
    why = missing()
    if why:
        print(f"no screenshot: {why}", file=sys.stderr)
        return {"screenshot": None, "why": why}
    with chromium(1400, 2600) as d:
        open_report(d, html)
        d.save_screenshot(str(png))
        return {"screenshot": png.name, "console_errors": console_errors(d)}


def replicate(small: Path, big: Path, n: int) -> dict:
    """``big``: the small run's rows copied under new ids until ``n`` samples (accepted + rejected)."""
    src = ShardStore(small)
    shards, rejects = src.read_table("shards").to_pylist(), src.read_table("rejects").to_pylist()
    traces: dict[str, list[dict]] = {}
    for ev in src.read_table("traces").to_pylist():
        traces.setdefault(ev["trace_id"], []).append(ev)
    base = [("a", r) for r in shards] + [("r", r) for r in rejects]
    if big.exists():
        shutil.rmtree(big)
    store = ShardStore(big)
    store.prepare()
    t0 = time.perf_counter()
    made = {"accepted": 0, "rejected": 0}
    batch: tuple[list, list, list] = ([], [], [])
    for k in range(n):
        kind, row = base[k % len(base)]
        copy = k // len(base)
        sid, tid = f"{row['sample_id']}~{copy:05d}", f"{row['trace_id']}-{copy:05d}"
        new = {**row, "sample_id": sid, "trace_id": tid}
        batch[0 if kind == "a" else 1].append(new)
        made["accepted" if kind == "a" else "rejected"] += 1
        batch[2].extend({**ev, "sample_id": sid, "trace_id": tid} for ev in traces.get(row["trace_id"], []))
        if len(batch[0]) + len(batch[1]) == PART or k == n - 1:
            store.commit(*batch)
            batch = ([], [], [])
    for name in ("run.json", "stats.json"):
        shutil.copy(small / name, big / name)
    size = sum(p.stat().st_size for p in big.rglob("*") if p.is_file())
    return {**made, "out_bytes": size, "build_s": time.perf_counter() - t0}


def time_report(big: Path) -> dict:
    html = big / "report.html"
    # A wrapper process, so that the peak RSS is that of liwi report and its workers (RUSAGE_CHILDREN counts
    # every waited-for descendant) and not of the runs this script started before.
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, LIWI, "report", str(big), "--out", str(html)], check=True,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    *said, rss = proc.stdout.strip().splitlines()
    rss_kb = int(rss)
    assets = html.with_name(html.stem + "_files")
    files = [p for p in assets.rglob("*") if p.is_file()]
    strips = [p.stat().st_size for p in files if p.suffix == ".webp"]
    chunks = [p.stat().st_size for p in files if p.suffix == ".js"]
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "html_bytes": html.stat().st_size,
            "asset_bytes": sum(p.stat().st_size for p in files), "asset_files": len(files),
            "strip_bytes_mean": float(np.mean(strips)) if strips else 0.0,
            "trace_chunk_bytes_max": max(chunks, default=0), "stdout": "\n".join(said)}


def time_browser(big: Path) -> dict:
    from add_pipeline.report.browser import chromium, console_errors, missing, open_report

    why = missing()
    if why:
        return {"browser": None, "why": why}
    with chromium(1400, 1600) as d:
        t0 = time.perf_counter()
        open_report(d, big / "report.html", timeout_s=120)
        load = time.perf_counter() - t0
        cards = d.execute_script("return document.querySelectorAll('#cards .card').length")
        t0 = time.perf_counter()
        d.execute_script("const s=document.getElementById('f-status'); s.value='rejected';"
                         "s.dispatchEvent(new Event('change'));")
        shown = d.execute_script("return document.querySelectorAll('#cards .card.rejected').length")
        filt = time.perf_counter() - t0
        t0 = time.perf_counter()
        d.execute_script("document.querySelector('#pager-top button:last-of-type').click()")
        turn = time.perf_counter() - t0
        heap = d.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : null")
        return {"load_s": load, "cards_on_first_page": cards, "filter_s": filt, "rejected_cards_shown": shown,
                "page_turn_s": turn, "js_heap_mb": heap / 1e6 if heap else None, "console_errors": console_errors(d)}


def write_md(res: dict, path: Path) -> None:
    r, b, w = res["report"], res["browser"], res["big"]
    mb = 1e6
    lines = [
        "# liwi report at scale", "",
        f"Machine: {os.cpu_count()} CPUs; `python bench/report_bench.py --n {res['n']}` "
        f"({time.strftime('%Y-%m-%d')}).", "",
        f"Input: {res['n']} samples ({w['accepted']} accepted, {w['rejected']} rejected) replicated from a real "
        f"cpu-classical run of the bundled photos plus two rejects ({res['small_samples']} samples), "
        f"{w['out_bytes'] / mb:.0f} MB on disk in {-(-res['n'] // PART)} parts (copies of the same rows compress "
        "better than a real run's would; the report's work is the same: every row is read and decoded).", "",
        "| what | value |", "|---|---|",
        f"| `liwi report` wall time | {r['wall_s']:.1f} s ({1000 * r['wall_s'] / res['n']:.1f} ms per sample, "
        f"{os.cpu_count()} worker processes) |",
        f"| peak RSS (largest process) | {r['peak_rss_mb']:.0f} MB |",
        f"| page (`report.html`) | {r['html_bytes'] / mb:.1f} MB |",
        f"| assets (`report_files/`) | {r['asset_bytes'] / mb:.0f} MB in {r['asset_files']} files |",
        f"| thumbnail strip per sample (WebP) | {r['strip_bytes_mean'] / 1e3:.1f} kB mean |",
        f"| largest trace file (50 samples, loaded on demand) | {r['trace_chunk_bytes_max'] / 1e3:.0f} kB |",
    ]
    if b.get("load_s") is not None:
        lines += [
            f"| Chromium: open until drawn | {b['load_s']:.2f} s ({b['cards_on_first_page']} cards on page 1) |",
            f"| Chromium: filter status = rejected | {1000 * b['filter_s']:.0f} ms |",
            f"| Chromium: next page | {1000 * b['page_turn_s']:.0f} ms |",
            f"| Chromium: JS heap after that | {b['js_heap_mb'] or 0:.0f} MB |",
            f"| console errors | {len(b['console_errors'])} |"]
    else:
        lines.append(f"| Chromium | not measured: {b.get('why')} |")
    lines += ["", "The page holds the gallery's index (ids, layer names, scores, verdicts: no pixels); a browser "
              "fetches only the thumbnail strips of the page of cards it shows and a trace file when a trace is "
              "opened.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/liwi-report-bench"))
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the big output folder")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    small = small_run(args.work)
    shot = screenshot(small, args.results / "report.png")
    big = args.work / "big"
    res = {"n": args.n, "small_samples": len(ShardStore(small).done_ids()), "screenshot": shot}
    res["big"] = replicate(small, big, args.n)
    print(f"built {big}: {res['big']}", flush=True)
    res["report"] = time_report(big)
    print(res["report"]["stdout"], flush=True)
    res["browser"] = time_browser(big)
    (args.results / "report.json").write_text(json.dumps(res, indent=2) + "\n")
    write_md(res, args.results / "report.md")
    print((args.results / "report.md").read_text())
    if not args.keep:
        shutil.rmtree(big)


if __name__ == "__main__":
    main()
