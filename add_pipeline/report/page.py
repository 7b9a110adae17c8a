"""The report's HTML: server-rendered run figures and tables, plus the data the page's script renders.

Everything that came from the run (ids, sources, reasons, tool and layer names, versions) is
escaped here with :func:`html.escape`, or, for what the script renders, handed over as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc.
(so neither ``</script>`` nor ``<!--`` can end the block) and put into the page with
``textContent`` only.  A Content-Security-Policy allows only the page's own nonce-tagged script
(and what it loads), so even markup that slipped through could run nothing and fetch nothing
from the network.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from html import escape
from importlib import resources
from typing import Any

from add_pipeline.report import plots
from add_pipeline.report.evals import ROW_FIELDS, EvalReport
from add_pipeline.report.run_info import RunInfo


def script_json(data: Any) -> str:
    """JSON text safe inside ``<script type="application/json">`` (no NaN: ``allow_nan=False``)."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def static_text(name: str) -> str:
    """A file of the package's ``report/static`` folder (the page's CSS and script)."""
    return resources.files("add_pipeline.report").joinpath("static", name).read_text(encoding="utf-8")


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool) or isinstance(v, int):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return escape(str(v))
    if f != f or f in (float("inf"), float("-inf")):
        return "–"
    return f"{f:.0f}" if abs(f) >= 1000 else f"{f:.{digits}g}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    """An HTML table; every cell is escaped (numbers formatted by :func:`_num`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_num(c) if isinstance(c, (int, float)) or c is None else escape(str(c))}"
                                    "</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kpi(label: str, value: str, cls: str = "") -> str:
    return (f'<div class="kpi {escape(cls)}"><div class="kpi-v">{escape(value)}</div>'
            f'<div class="kpi-l">{escape(label)}</div></div>')


def run_section(info: RunInfo) -> str:
    """Counts, acceptance, reject reasons, layers, timing and per-tool latency of the whole run."""
    s = info.stats
    wf = info.run.get("workflow") or {}
    kpis = [_kpi("inputs done", str(s["inputs_done"])), _kpi("accepted", str(s["accepted"]), "ok"),
            _kpi("rejected", str(s["rejected"]), "bad" if s["rejected"] else ""),
            _kpi("acceptance", f"{100 * s['acceptance_rate']:.1f}%"),
            _kpi("layers / sample", f"{s['layers_per_sample']:.2f}")]
    if s.get("duplicate_ids"):
        kpis.append(_kpi("ids committed twice", str(s["duplicate_ids"]), "bad"))
    warn = []
    if s.get("fallback"):
        fb = s["fallback"]
        warn.append(f'<p class="warn">Ran {escape(str(fb.get("to")))} instead of {escape(str(fb.get("from")))}: '
                    f'{escape(str(fb.get("reason")))}</p>')
    if info.run_problem:
        warn.append(f'<p class="warn">{escape(info.run_problem)}: workflow, versions and options are unknown.</p>')
    charts = [plots.stacked([("accepted", s["accepted"], plots.GREEN), ("rejected", s["rejected"], plots.RED)],
                            "Acceptance"),
              plots.hbars(list(s["reject_reasons"].items()), "Reject reasons (stage: reason)", plots.RED),
              plots.vbars(info.layer_counts, "Layers per accepted sample", "layers")]
    last = info.last_run or {}
    if last:
        charts.append(plots.stacked([("start-up", float(last.get("startup_s") or 0), plots.GREY),
                                     ("processing", float(last.get("processing_s") or 0), plots.BLUE)],
                                    f"Last invocation: {last.get('processed', 0)} processed in "
                                    f"{float(last.get('wall_s') or 0):.1f} s wall", " s"))
    timing = [("last invocation: wall", last.get("wall_s")), ("start-up", last.get("startup_s")),
              ("processing", last.get("processing_s")), ("images / s (processing)", last.get("images_per_s")),
              ("tool time (sum)", last.get("tool_s")), ("sample time (sum)", last.get("sample_s")),
              ("driver CPU", last.get("driver_cpu_s")), ("workers", last.get("workers")),
              ("all traces span (every invocation)", info.span_s)]
    key_versions = " · ".join(f"{k} {v}" for k, v in info.versions.items()
                              if k in ("add_pipeline", "python", "torch", "ray", "langgraph"))
    tools = s["tools"]
    rows = [(name, t["median_s"], t["p90_s"], info.tool_times.get(name, [])) for name, t in tools.items()]
    tool_rows = [(name, t["calls"], t["median_s"], t["p90_s"], t["total_s"], t["errors"], t["retries"])
                 for name, t in tools.items()]
    return (
        '<section id="run"><h2>Run</h2>' + "".join(warn) + f'<div class="kpis">{"".join(kpis)}</div>'
        + f'<div class="charts">{"".join(charts)}</div>'
        + '<h3>Time per tool</h3><div class="charts">'
        + plots.latency(rows, "Per-tool latency (own time of each call, log scale)")
        + plots.histograms({n: info.tool_times.get(n, []) for n in tools}, "Call time histograms (log bins)")
        + '</div><div class="cols">'
        + table(["tool", "calls", "median s", "p90 s", "total s", "errors", "retries"], tool_rows, "num")
        + table(["timing", "seconds"], timing, "num kv") + "</div>"
        + f'<p>Workflow <b>{escape(str(wf.get("name", "?")))}</b> ({escape(info.stage)}, policy '
          f'{escape(str((wf.get("policy") or {}).get("name", "?")))}): {escape(str(wf.get("description", "")))}'
          f'<br><span class="muted">{escape(key_versions)}</span></p>'
        + "<details><summary><b>Workflow, versions and options</b></summary>"
        + table(["key", "value"], [("stage", info.stage), ("workflow", wf.get("name")),
                                   ("description", wf.get("description")),
                                   ("policy", (wf.get("policy") or {}).get("name")),
                                   ("workflow hash", info.run.get("workflow_hash")),
                                   ("shard schema", ", ".join(f"v{v}: {len(p)} parts"
                                                              for v, p in sorted(info.schema_versions.items())))],
                "kv")
        + '<div class="cols">' + table(["package", "version"], sorted(info.versions.items()), "kv")
        + table(["option", "value"], sorted((k, json.dumps(v)) for k, v in info.options.items()), "kv")
        + "</div></details></section>")


def checks_section(stage: str, summary: list[dict[str, Any]], problem: str | None) -> str:
    """Per check of the verifier (decompose) or the compose audit: how often measured, how often
    failed on the last attempt, the spread of values and the bounds."""
    title = "Audit checks (liwi compose)" if stage == "compose" else "Verifier checks"
    if not summary:
        why = problem or "no sample reached the verifier"
        return f'<section id="checks"><h2>{title}</h2><p class="muted">No checks: {escape(why)}.</p></section>'
    strips = [(f"{c['name']} ({c['target_kind']})", c["values"], c["low"], c["high"], c["failed"])
              for c in sorted(summary, key=lambda c: (-c["failed"], c["name"]))]
    rows = [(c["name"], c["target_kind"], c["checked"], c["failed"], c["min"], c["median"], c["max"],
             c["bounds"]) for c in summary]
    note = "" if problem is None else f'<p class="muted">{escape(problem)}</p>'
    return (f'<section id="checks"><h2>{title}</h2>' + note
            + '<p class="muted">Rebuilt from each sample\'s last measured attempt and the run\'s workflow bounds '
              '(accepted and rejected samples).</p><div class="charts">'
            + plots.bounds_strips(strips, "Measured values against the bounds (last attempt of every sample)")
            + "</div>"
            + table(["check", "target", "measured", "failed", "min", "median", "max", "bounds (most used first)"],
                    rows, "num")
            + "</section>")


def eval_section(reports: Sequence[EvalReport]) -> str:
    """Summary tables of each eval report; the per-sample rows are rendered by the script (worst first)."""
    if not reports:
        return ""
    parts = ['<section id="eval"><h2>Evaluation (liwi eval)</h2>']
    for k, rep in enumerate(reports):
        s = rep.summary
        levels = [(lv.get("merges"), lv.get("cost"), lv.get("rgb_l1"), lv.get("alpha_iou"), lv.get("reached"))
                  for lv in s.get("levels") or [] if isinstance(lv, dict)]
        kinds = s.get("kinds") or {}
        krows = [(key, kinds.get(key)) for key in ("bg_rgb_l1", "bg_psnr", "object_iou", "object_sad", "boundary_sad",
                                                    "shadow_iou", "shadow_mae")]
        krows += [("objects matched", f"{kinds.get('matched_objects')}/{kinds.get('gt_objects')}"),
                  ("shadows matched", f"{kinds.get('matched_shadows')}/{kinds.get('gt_shadows')}")]
        un = s.get("unmatched") or {}
        failed = s.get("failed") or []
        parts.append(
            f"<h3>{escape(rep.name)}</h3><p class=\"muted\">{escape(rep.path)}: {_num(s.get('count'))} samples "
            f"scored, {len(un.get('gt_only') or [])} ground-truth samples without prediction, "
            f"{len(un.get('pred_only') or [])} predictions without ground truth, {len(failed)} failed; protocol "
            f"{escape(json.dumps(s.get('protocol') or {}, sort_keys=True))}</p>"
            '<div class="cols">' + table(["merges", "cost", "RGB L1", "alpha IoU", "reached"], levels, "num")
            + table(["per-kind figure", "value"], krows, "num kv") + "</div>"
            + (table(["failed sample", "error"], [(f.get("sample_id"), f.get("error")) for f in failed[:50]])
               if failed else "")
            + f'<h4>Per sample, worst first (by cost after the last merge level)</h4><div class="eval-rows" '
              f'data-eval="{k}"></div>')
    return "".join(parts) + "</section>"


GALLERY_HTML = """
<section id="gallery"><h2>Gallery</h2>
<form class="controls" id="controls" autocomplete="off">
 <label>status <select id="f-status"><option value="">all</option><option>accepted</option><option>rejected</option>
  <option>unreadable</option></select></label>
 <label>reject reason <select id="f-reason"><option value="">any</option></select></label>
 <label>layers <input id="f-lmin" type="number" min="0" placeholder="min"> – <input id="f-lmax" type="number"
  min="0" placeholder="max"></label>
 <label>verdict <select id="f-verdict"><option value="">any</option></select></label>
 <label>score <select id="f-metric"></select> <input id="f-mmin" type="number" step="any" placeholder="min"> –
  <input id="f-mmax" type="number" step="any" placeholder="max"></label>
 <label>search <input id="f-q" type="search" placeholder="id, source or reason"></label>
 <label>sort <select id="f-sort"><option value="index">run order</option><option value="id">id</option>
  <option value="layers">layers</option><option value="metric">score</option></select>
  <select id="f-dir"><option value="asc">ascending</option><option value="desc">descending</option></select></label>
 <label>per page <select id="f-size"><option>24</option><option selected>48</option><option>96</option>
  <option>192</option></select></label>
 <button type="reset" id="f-reset">reset</button>
</form>
<div class="pager" id="pager-top"></div><div id="cards"></div><div class="pager" id="pager-bottom"></div>
</section>
<section id="rejects"><h2>Rejects</h2><div id="reject-rows"></div></section>
"""


def render_page(title: str, subtitle: str, sections: Sequence[str], data: dict[str, Any]) -> str:
    """The whole page: ``sections`` (HTML) in order, the gallery, and the script with ``data``."""
    nonce = secrets.token_urlsafe(16)
    csp = (f"default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
           f"script-src 'nonce-{nonce}' 'strict-dynamic'; base-uri 'none'; form-action 'none'")
    nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in
                  [("run", "Run"), ("checks", "Checks"), ("gallery", "Gallery"), ("rejects", "Rejects")]
                  + ([("eval", "Eval")] if data.get("evals") else []))
    run_html, *rest = sections
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{static_text('report.css')}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><p class="muted">{escape(subtitle)}</p><nav>{nav}</nav></header><main>'
        + run_html + "".join(rest[:1]) + GALLERY_HTML + "".join(rest[1:])
        + "</main><footer>Generated by <code>liwi report</code> from the run's own records; "
          "it loads nothing from the network.</footer>"
        f'<script type="application/json" id="liwi-data">{script_json(data)}</script>'
        f'<script nonce="{nonce}">{static_text("report.js")}</script></body></html>\n')


__all__ = ["ROW_FIELDS", "checks_section", "eval_section", "render_page", "run_section", "script_json", "table"]
