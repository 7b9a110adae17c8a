"""Shard size and decode time, before (schema v1) and after (v2), on the same decoded layers.

For each dataset (the 7 bundled photos decomposed by ``cpu-default``; the composed benchmark of
``make eval``, ``bench/work/synth``) every committed sample is decoded to full-canvas layers
(``LayeredShards``) and encoded again by each storage variant:

* ``v1 full-canvas PNG``: what liwi wrote before schema v2 (every layer a full-canvas PNG, zlib 1);
* ``v2 PNG``: layers cut to their boxes, the background only where it differs from the photo, PNG;
* ``v2 WebP`` (the default): the same rule, lossless WebP.

Bytes per sample are the Parquet part size (zstd, as ``ShardStore`` writes it) over the sample
count; decode time is ``decode_row`` to full-canvas arrays (what every reader and export does),
median over samples of the per-sample time, best of 3 passes; encode time likewise.  Every variant
is checked to decode to the same layers (alpha equal, colour equal where alpha > 0).  A second
table compares WebP effort settings on the layer crops alone, to choose the encoder's setting.

    python bench/shard_bytes.py --out bench/results      # -> shards.md, shards.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from add_pipeline.core.peel import AssembledLayer
from add_pipeline.io import LayeredSample, LayeredShards
from add_pipeline.io.images import encode_png, encode_webp
from add_pipeline.io.layered import decode_row, stored_crop
from add_pipeline.io.shards import SHARD_SCHEMA_V1, _to_table
from add_pipeline.tools.encoder import LayeredRowEncoder

ROOT = Path(__file__).resolve().parents[1]


def v1_row(s: LayeredSample) -> dict[str, Any]:
    """The row the v1 encoder wrote: full-canvas PNG layers and photo, scores as a map."""
    return {"sample_id": s.sample_id, "source": s.source, "source_kind": s.source_kind, "width": s.width,
            "height": s.height, "image": {"bytes": encode_png(s.image), "path": f"{s.sample_id}.png"},
            "layers": [{"name": lay.name, "kind": lay.kind, "z": lay.z,
                        "image": {"bytes": encode_png(lay.rgba), "path": f"{s.sample_id}/{lay.z:02d}_{lay.name}.png"},
                        "bbox": list(lay.bbox), "parent": lay.parent, "scores": sorted(lay.scores.items())}
                       for lay in s.layers],
            "status": s.status, "trace_id": s.trace_id, "workflow": s.workflow, "meta": json.dumps(s.meta)}


def v2_row(s: LayeredSample, codec: str) -> dict[str, Any]:
    layers = [AssembledLayer(lay.name, lay.kind, lay.rgba, lay.parent) for lay in s.layers]
    scores: dict[str, dict[str, float]] = {}
    for lay in s.layers:
        key = "background" if lay.kind == "background" else (lay.parent if lay.kind == "shadow" else lay.name)
        scores[key or ""] = lay.scores
    row = LayeredRowEncoder(codec=codec)(s.sample_id, s.source, s.image, layers, scores, s.meta,  # type: ignore[arg-type]
                                         source_kind=s.source_kind)
    return {**row, "trace_id": s.trace_id, "workflow": s.workflow}


def _timed(fn: Any, items: list[Any]) -> tuple[list[Any], float]:
    """Results of ``fn`` on each item and the median per-item seconds (best of 3 passes per item)."""
    best = [float("inf")] * len(items)
    results: list[Any] = []
    for _ in range(3):
        results = []
        for i, item in enumerate(items):
            t = time.perf_counter()
            results.append(fn(item))
            best[i] = min(best[i], time.perf_counter() - t)
    return results, statistics.median(best)


def _same(a: LayeredSample, b: LayeredSample) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    for x, y in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(x.rgba[..., 3], y.rgba[..., 3])
        seen = x.rgba[..., 3] > 0
        np.testing.assert_array_equal(x.rgba[seen, :3], y.rgba[seen, :3])


def measure(folder: Path) -> dict[str, Any]:
    samples = list(LayeredShards(folder))
    out: dict[str, Any] = {"folder": str(folder), "samples": len(samples),
                           "layers": sum(len(s.layers) for s in samples)}
    variants = {"v1 full-canvas PNG (before)": (lambda s: v1_row(s), True),
                "v2 PNG": (lambda s: v2_row(s, "png"), False),
                "v2 WebP (default)": (lambda s: v2_row(s, "webp"), False)}
    for name, (encode, is_v1) in variants.items():
        rows, enc_s = _timed(encode, samples)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "part.parquet"
            table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA_V1) if is_v1 else _to_table("shards", rows)
            pq.write_table(table, path, compression="zstd")
            size = path.stat().st_size
            read = pq.read_table(path).to_pylist()
        decoded, dec_s = _timed(decode_row, read)
        for a, b in zip(samples, decoded, strict=True):
            _same(a, b)
        photo = sum(len(r["image"]["bytes"]) for r in rows) / len(rows)
        out[name] = {"bytes_per_sample": size / len(samples), "photo_bytes_per_sample": photo,
                     "encode_ms": 1e3 * enc_s, "decode_ms": 1e3 * dec_s}
    return out


def webp_settings(folder: Path) -> list[dict[str, Any]]:
    """Bytes and times of the stored crops (photo + packed layers) under WebP settings and PNG."""
    crops: list[np.ndarray] = []
    for s in LayeredShards(folder):
        crops.append(s.image)
        for lay in s.layers:
            crop, _ = stored_crop(lay.rgba, s.image, fill=lay.kind == "background")
            if crop is not None:
                crops.append(crop)
    import cv2

    def dec(b: bytes) -> Any:
        return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)

    rows = []
    n = len(list(LayeredShards(folder).ids()))
    for label, fn in [("PNG zlib 1", encode_png)] + [
            (f"WebP method {m} effort {q}", (lambda a, m=m, q=q: encode_webp(a, method=m, effort=q)))
            for m, q in ((0, 0), (1, 0), (2, 25), (4, 50), (6, 100))]:
        t = time.perf_counter()
        blobs = [fn(a) for a in crops]
        enc_total = time.perf_counter() - t
        t = time.perf_counter()
        for b in blobs:
            if dec(b) is None:
                raise RuntimeError(f"{label}: a crop does not decode")
        dec_total = time.perf_counter() - t
        rows.append({"setting": label, "kB_per_sample": sum(map(len, blobs)) / n / 1e3,
                     "encode_ms_per_sample": 1e3 * enc_total / n, "decode_ms_per_sample": 1e3 * dec_total / n})
    return rows


def _demo(work: Path) -> Path:
    out = work / "shards-demo"
    if not (out / "_commits").is_dir():
        photos = work / "shards-demo-photos"
        liwi = [str(Path(sys.executable).with_name("liwi"))]
        subprocess.run([*liwi, "samples", str(photos)], check=True)
        subprocess.run([*liwi, "run", "--input", str(photos), "--out", str(out), "--no-progress"], check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--demo", type=Path, default=None, help="a decompose output of the bundled photos")
    ap.add_argument("--benchmark", type=Path, default=ROOT / "bench" / "work" / "synth")
    args = ap.parse_args()
    demo = args.demo or _demo(ROOT / "bench" / "work")
    results: dict[str, Any] = {"demo photos": measure(demo)}
    if (args.benchmark / "_commits").is_dir():
        results["benchmark"] = measure(args.benchmark)
    results["webp settings (demo)"] = webp_settings(demo)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shards.json").write_text(json.dumps(results, indent=2))
    lines = ["# Shard size and decode time (`python bench/shard_bytes.py`, part of `make bench`)", "",
             "Same decoded layers stored three ways; every variant decodes back to the same layers (checked).",
             "Decode = `decode_row` to full-canvas arrays; medians over samples, best of 3.", ""]
    for name, r in results.items():
        if name.startswith("webp"):
            continue
        before = r["v1 full-canvas PNG (before)"]
        lines += [f"## {name}: {r['samples']} samples, {r['layers']} layers (`{r['folder']}`)", "",
                  "| storage | kB / sample | smaller than before by | photo alone, kB | encode ms / sample | "
                  "decode ms / sample |", "|---|---|---|---|---|---|"]
        for variant in ("v1 full-canvas PNG (before)", "v2 PNG", "v2 WebP (default)"):
            v = r[variant]
            lines.append(f"| {variant} | {v['bytes_per_sample'] / 1e3:.1f} | "
                         f"{before['bytes_per_sample'] / v['bytes_per_sample']:.2f}x | "
                         f"{v['photo_bytes_per_sample'] / 1e3:.1f} | {v['encode_ms']:.1f} | {v['decode_ms']:.1f} |")
        lines.append("")
    lines += ["## WebP settings on the stored crops (demo photos)", "",
              "| setting | kB / sample | encode ms / sample | decode ms / sample |", "|---|---|---|---|"]
    for r in results["webp settings (demo)"]:
        lines.append(f"| {r['setting']} | {r['kB_per_sample']:.1f} | {r['encode_ms_per_sample']:.1f} | "
                     f"{r['decode_ms_per_sample']:.1f} |")
    (args.out / "shards.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
