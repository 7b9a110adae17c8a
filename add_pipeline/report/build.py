"""``liwi report``: one static HTML page plus a folder of assets, from an output folder's own records.

Layout written (``FILE.html`` defaults to ``OUT/report.html``)::

    FILE.html            the page: run figures (inline SVG), tables, the gallery's index as JSON, the script
    FILE_files/img/      one WebP strip of thumbnails per gallery entry (photo, layers, error map)
    FILE_files/trace/    the agent traces and rebuilt checks, 50 entries per script file, loaded on demand

The page never holds pixels, only the index; the gallery shows one page of cards at a time (the
script builds only those), so a browser fetches only the strips on screen and a trace file only
when a sample's trace is opened.  Both are written to temporary names and swapped in at the end;
an existing ``FILE_files`` folder is replaced only if it carries this writer's marker.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from add_pipeline.report import page
from add_pipeline.report.evals import ROW_FIELDS, gallery_metrics, load_eval
from add_pipeline.report.gallery import GalleryJob, render_entries
from add_pipeline.report.run_info import collect_run, reject_rows
from add_pipeline.report.thumbs import TILE_PX
from add_pipeline.report.traces import CheckBuilder, event_rows, finite, iter_events, verdicts

TRACE_CHUNK = 50
"""Gallery entries per trace script file."""

MAX_EVENTS = 400
"""Most trace events kept per sample (a runaway loop would otherwise fill a trace file)."""

MARKER = ".liwi-report"
"""File in an assets folder that says ``liwi report`` wrote it (and may replace it)."""


class ReportError(ValueError):
    """The report cannot be written as asked (the message says what to change)."""


@dataclass(frozen=True)
class ReportOptions:
    """What ``liwi report`` was asked.

    Attributes:
        out: the output folder of ``liwi run`` / ``compose`` / ``synth``.
        html: the page to write (default ``out/report.html``); assets go beside it in ``<stem>_files/``.
        limit: at most this many accepted samples (and at most this many rejects) in the gallery.
        where: the reader's SQL filter over the accepted samples (rejects are then left out).
        evals: ``liwi eval`` reports (``REPORT.json``) to show and join to the gallery by sample id.
        workers: processes rendering thumbnails (default: the CPUs).
    """

    out: Path
    html: Path | None = None
    limit: int | None = None
    where: str | None = None
    evals: tuple[Path, ...] = ()
    workers: int | None = None


@dataclass
class ReportResult:
    """What was written: paths, counts, sizes (bytes) and the seconds it took."""

    html: Path
    assets: Path
    samples: int
    rejects: int
    html_bytes: int
    asset_bytes: int
    asset_files: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def _assets_for(html: Path) -> Path:
    return html.with_name(html.stem + "_files")


def _check_target(assets: Path) -> None:
    if assets.exists() and not (assets / MARKER).is_file():
        raise ReportError(f"{assets} exists and was not written by liwi report; move it away or choose another "
                          "--out")


def _target_kind(target: str) -> str:
    return target if target in ("sample", "background") else "object"


def _bound(v: float | None, unbounded: str) -> str:
    return unbounded if v is None else f"{v:g}"


class CheckSummary:
    """Per (check, target kind), over every sample's last measured attempt: measured, failed, the
    values (min / median / max) and the bounds seen."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(
            lambda: {"checked": 0, "failed": 0, "values": [], "bounds": Counter()})

    def add(self, checks: list[dict[str, Any]]) -> None:
        for c in checks:
            g = self._groups[(c["name"], _target_kind(c["target"]))]
            g["checked"] += 1
            g["failed"] += not c["ok"]
            if c["value"] is not None:
                g["values"].append(c["value"])
            g["bounds"][(c["low"], c["high"])] += 1

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for (name, kind), g in sorted(self._groups.items()):
            vals, common = g["values"], [b for b, _ in g["bounds"].most_common()]
            text = [f"[{_bound(lo, '-inf')}, {_bound(hi, 'inf')}]" for lo, hi in common]
            out.append({"name": name, "target_kind": kind, "checked": g["checked"], "failed": g["failed"],
                        "min": min(vals) if vals else None, "median": statistics.median(vals) if vals else None,
                        "max": max(vals) if vals else None, "values": vals, "low": common[0][0],
                        "high": common[0][1], "bounds": ", ".join(text[:3]) + (" …" if len(text) > 3 else "")})
        return out


def _describe(c: dict[str, Any]) -> str:
    value = "?" if c["value"] is None else f"{c['value']:.3g}"
    return f"{c['target']}.{c['name']}={value}"


BASE_METRICS = ("recomposition mean (levels)", "recomposition max (levels)", "failed checks", "attempts",
                "tool time (s)")


def _compact(entries: list[dict[str, Any]], extra: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    """Shrink the entries for the page and describe their metrics (10,000 of them are embedded).

    Each entry's layers become ``[name, kind, z, bbox, parent, [score values]]`` with the values
    aligned to the returned ``"scores"`` names (None where a layer has none), its ``"m"`` holds the
    values of :data:`BASE_METRICS` and of ``extra`` (eval figures by sample id), and keys whose value
    is None are dropped.  The returned ``"metrics"`` are the names the page can filter and sort by;
    ``"spec"`` says how the script gets each: ``["m", k]`` (``m[k]``) or ``["s", j, "min" | "max"]``
    (min / max of score ``j`` over the layers).
    """
    score_names = sorted({k for e in entries for lay in e["layers"] for k in lay["scores"]})
    metrics = list(BASE_METRICS) + list(extra) + [f"{n} ({agg})" for n in score_names for agg in ("min", "max")]
    spec: list[list[Any]] = [["m", k] for k in range(len(BASE_METRICS) + len(extra))]
    spec += [["s", j, agg] for j in range(len(score_names)) for agg in ("min", "max")]
    for e in entries:
        rec = e.get("rec") or [None, None]
        e["m"] = [rec[0], rec[1], e.get("nfail"), e.get("att"), e.get("tsum")] + [
            finite(extra[k].get(e["id"])) for k in extra]
        e["layers"] = [[lay["name"], lay["kind"], lay["z"], lay["bbox"], lay["parent"],
                        [lay["scores"].get(n) for n in score_names]] for lay in e["layers"]]
        for key in [k for k, v in e.items() if v is None or k == "tiles"]:
            del e[key]
    return {"metrics": metrics, "spec": spec, "scores": score_names}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_report(opts: ReportOptions) -> ReportResult:
    """Write the report of ``opts.out``; returns what was written.

    Raises:
        ReaderError: ``out`` is not an output folder or ``where`` is not a valid expression.
        ReportError: the assets folder is not ours to replace.
        EvalReportError: a file in ``evals`` is not an eval report.
        OSError, ValueError: committed parts cannot be read (as ``liwi stats``).
    """
    from add_pipeline.exec.stats import connect
    from add_pipeline.io import LayeredShards

    t0 = time.perf_counter()
    out = Path(opts.out)
    html = Path(opts.html) if opts.html else out / "report.html"
    assets = _assets_for(html)
    _check_target(assets)
    evals = [load_eval(Path(p)) for p in opts.evals]
    shards = LayeredShards(out, where=opts.where, limit=opts.limit)
    con = connect(out)
    info = collect_run(out, con)
    notes = []
    rejects = [] if opts.where else reject_rows(con)
    if opts.where:
        notes.append(f"gallery: accepted samples where {opts.where} (rejects left out)")
    if opts.limit is not None:
        if len(rejects) > opts.limit:
            notes.append(f"gallery: the first {opts.limit} of {len(rejects)} rejects")
        rejects = rejects[: opts.limit]
        notes.append(f"gallery: at most {opts.limit} accepted samples")

    html.parent.mkdir(parents=True, exist_ok=True)
    tmp = assets.with_name(assets.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "trace").mkdir(parents=True)
    (tmp / MARKER).write_text("written by liwi report; replaced by the next liwi report to this page\n")
    try:
        entries = render_entries(GalleryJob(str(out), opts.where, opts.limit, str(tmp)), len(shards), rejects,
                                 opts.workers)
        ids_traces = shards.scalar_table().select(["sample_id", "trace_id"]).to_pydict()
        trace_of = dict(zip(ids_traces["sample_id"], ids_traces["trace_id"], strict=True))
        tids = [trace_of.get(e["id"], "") for e in entries[: len(shards)]] + [r["trace_id"] for r in rejects]
        builder = CheckBuilder(info.run)
        summary, chunk = CheckSummary(), {}
        for (_, ev), e, tid in zip(iter_events(con, tids), entries, tids, strict=True):
            checks, problem = builder.checks(ev)
            summary.add(checks)
            e.update(v=verdicts(ev), att=(max(x["attempt"] for x in ev) + 1) if ev else 0,
                     nerr=sum(x["error"] is not None for x in ev), nfail=sum(not c["ok"] for c in checks),
                     fails=[_describe(c) for c in checks if not c["ok"]][:12],
                     tsum=round(sum(x["tool_s"] or 0.0 for x in ev), 6), c=e["i"] // TRACE_CHUNK)
            chunk[e["i"]] = {"tid": tid, "ev": event_rows(ev[:MAX_EVENTS]), "more": max(0, len(ev) - MAX_EVENTS),
                             "checks": checks, "chk_problem": problem}
            if len(chunk) == TRACE_CHUNK or e is entries[-1]:
                n = e["c"]
                (tmp / "trace" / f"c{n:05d}.js").write_text(
                    f"LIWI_TRACES({n},{json.dumps(chunk, ensure_ascii=True, allow_nan=False)});\n")
                chunk = {}
        data = {"assets": assets.name, "tile": TILE_PX, "chunk": TRACE_CHUNK,
                **_compact(entries, gallery_metrics(evals)), "samples": entries,
                "reasons": sorted({e["key"] for e in entries if e.get("key")}),
                "verdicts": sorted({e["v"][-1]["verdict"] for e in entries if e["v"]}),
                "evals": [{"name": r.name, "fields": list(ROW_FIELDS), "rows": r.rows} for r in evals]}
        sections = [page.run_section(info),
                    page.checks_section(info.stage, summary.rows(), builder.problem),
                    page.eval_section(evals)]
        subtitle = (f"{out.resolve()} · {info.stage} · workflow {(info.run.get('workflow') or {}).get('name', '?')} · "
                    f"{len(shards)} samples and {len(rejects)} rejects in the gallery"
                    + "".join(f" · {n}" for n in notes))
        text = page.render_page(f"liwi report: {out.name}", subtitle, sections, data)
        _check_target(assets)
        if assets.exists():
            shutil.rmtree(assets)
        os.replace(tmp, assets)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomic(html, text)
    files = [p for p in assets.rglob("*") if p.is_file()]
    return ReportResult(html=html, assets=assets, samples=len(shards), rejects=len(rejects),
                        html_bytes=html.stat().st_size, asset_bytes=sum(p.stat().st_size for p in files),
                        asset_files=len(files), seconds=time.perf_counter() - t0, notes=notes)
