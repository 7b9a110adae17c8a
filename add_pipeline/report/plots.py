"""Inline SVG charts for the report, drawn here (no charting library, nothing fetched).

Each function returns one ``<svg>`` element as a string.  Every label that comes from the run
(tool names, reject reasons) is escaped and cut to :data:`LABEL_CHARS` characters, with the
full text in a ``<title>`` tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

LABEL_CHARS = 44
BLUE, ORANGE, GREEN, RED, GREY = "#4c78a8", "#f58518", "#54a24b", "#e45756", "#9d9d9d"
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _label(text: str, n: int = LABEL_CHARS) -> str:
    short = text if len(text) <= n else text[: n - 1] + "…"
    return escape(short)


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {_FONT}><title>{escape(title)}</title>'
            f'<text x="0" y="13" font-weight="600" font-size="12">{escape(title)}</text>{"".join(body)}</svg>')


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def _seconds(v: float) -> str:
    if v >= 1:
        return f"{v:.3g} s"
    if v >= 1e-3:
        return f"{v * 1e3:.3g} ms"
    return f"{v * 1e6:.3g} µs"


def hbars(items: Sequence[tuple[str, float]], title: str, color: str = BLUE, unit: str = "",
          max_items: int = 24, width: int = 640) -> str:
    """Horizontal bars, one per ``(label, value)``, in the given order (the first ``max_items``)."""
    shown = list(items)[:max_items]
    label_w, row_h, top = 280, 18, 24
    height = top + row_h * max(1, len(shown)) + (16 if len(items) > max_items else 4)
    peak = max((v for _, v in shown), default=0.0) or 1.0
    bar_w = width - label_w - 70
    body = []
    if not shown:
        body.append(f'<text x="0" y="{top + 12}" fill="{GREY}">none</text>')
    for k, (label, value) in enumerate(shown):
        y = top + k * row_h
        w = max(1.0, bar_w * value / peak) if value > 0 else 0.0
        body.append(f'<g><title>{escape(label)}: {_fmt(value)}{escape(unit)}</title>'
                    f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{_label(label)}</text>'
                    f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{color}"/>'
                    f'<text x="{label_w + w + 4:.1f}" y="{y + 12}">{_fmt(value)}{escape(unit)}</text></g>')
    if len(items) > max_items:
        body.append(f'<text x="0" y="{height - 4}" fill="{GREY}">… and {len(items) - max_items} more</text>')
    return _svg(width, height, body, title)


def stacked(parts: Sequence[tuple[str, float, str]], title: str, unit: str = "", width: int = 640) -> str:
    """One horizontal bar split into ``(label, value, colour)`` parts, with a legend."""
    total = sum(max(0.0, v) for _, v, _ in parts)
    body, x = [], 0.0
    for label, value, color in parts:
        w = (width - 2) * max(0.0, value) / total if total > 0 else 0.0
        body.append(f'<rect x="{x:.1f}" y="22" width="{w:.1f}" height="22" fill="{color}">'
                    f'<title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></rect>')
        x += w
    lx = 0
    for label, value, color in parts:
        text = f"{label}: {_fmt(value)}{unit}" + (f" ({100 * value / total:.0f}%)" if total > 0 else "")
        body.append(f'<rect x="{lx}" y="52" width="10" height="10" fill="{color}"/>'
                    f'<text x="{lx + 14}" y="61">{_label(text, 60)}</text>')
        lx += 14 + 7 * min(len(text), 60) + 18
    return _svg(width, 70, body, title)


def _log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def latency(rows: Sequence[tuple[str, float | None, float | None, Sequence[float]]], title: str,
            width: int = 640) -> str:
    """Per tool, on a log time axis: every call as a faint tick, the median as a dot and the p90 as a bar end.

    Args:
        rows: ``(tool, median_s, p90_s, every call's seconds)``, drawn in this order.
    """
    vals = [v for _, m, p, ts in rows for v in (m, p, *ts) if v is not None and v > 0]
    label_w, row_h, top = 140, 20, 34
    height = top + row_h * max(1, len(rows)) + 22
    if not vals:
        return _svg(width, 40, [f'<text x="0" y="32" fill="{GREY}">no tool calls</text>'], title)
    ticks = _log_ticks(min(vals), max(vals))
    lo, hi = math.log10(ticks[0]), math.log10(ticks[-1]) if len(ticks) > 1 else math.log10(ticks[0]) + 1
    plot_w = width - label_w - 12

    def xpos(v: float) -> float:
        return label_w + plot_w * (math.log10(max(v, ticks[0])) - lo) / (hi - lo)

    body = [f'<text x="{label_w}" y="27" fill="{GREY}">ticks: calls · dot: median · bar: median to p90</text>']
    for t in ticks:
        x = xpos(t)
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 18}" stroke="#ddd"/>'
                    f'<text x="{x:.1f}" y="{height - 5}" text-anchor="middle" fill="#555">{_seconds(t)}</text>')
    for k, (tool, med, p90, ts) in enumerate(rows):
        y = top + k * row_h + row_h / 2
        body.append(f'<text x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(tool, 22)}</text>')
        ticks_at = sorted({round(xpos(v)) for v in ts if v > 0})  # one tick per pixel: 10,000 calls stay small
        body.append(f'<path d="{"".join(f"M{x} {y - 6:.0f}v12" for x in ticks_at)}" stroke="{BLUE}" '
                    'stroke-opacity="0.3"/>' if ticks_at else "")
        if med is not None and p90 is not None and med > 0:
            body.append(f'<line x1="{xpos(med):.1f}" y1="{y:.1f}" x2="{xpos(max(p90, med)):.1f}" y2="{y:.1f}" '
                        f'stroke="{ORANGE}" stroke-width="4"/>')
        if med is not None and med > 0:
            body.append(f'<circle cx="{xpos(med):.1f}" cy="{y:.1f}" r="4" fill="{RED}"><title>{escape(tool)}: '
                        f'median {_seconds(med)}, p90 {_seconds(p90 or med)}, {len(ts)} calls</title></circle>')
    return _svg(width, height, body, title)


def histograms(times: dict[str, Sequence[float]], title: str, bins: int = 24, cols: int = 3,
               width: int = 640) -> str:
    """Small multiples: per tool a histogram of its call times over log-spaced bins shared by all tools."""
    vals = [v for ts in times.values() for v in ts if v > 0]
    if not vals:
        return _svg(width, 40, [f'<text x="0" y="32" fill="{GREY}">no tool calls</text>'], title)
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    hi = hi if hi > lo else lo + 1
    cell_w, cell_h, top = width // cols, 74, 22
    names = list(times)
    height = top + cell_h * math.ceil(len(names) / cols)
    body = []
    for k, name in enumerate(names):
        counts = [0] * bins
        for v in times[name]:
            if v > 0:
                counts[min(bins - 1, int((math.log10(v) - lo) / (hi - lo) * bins))] += 1
        x0, y0 = (k % cols) * cell_w, top + (k // cols) * cell_h
        peak, bw = max(counts) or 1, (cell_w - 16) / bins
        body.append(f'<text x="{x0}" y="{y0 + 11}">{_label(name, 26)} ({len(times[name])})</text>')
        for b, c in enumerate(counts):
            h = 44 * c / peak
            if c:
                edge = 10 ** (lo + (hi - lo) * b / bins)
                body.append(f'<rect x="{x0 + b * bw:.1f}" y="{y0 + 60 - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                            f'height="{h:.1f}" fill="{BLUE}"><title>{c} calls from {_seconds(edge)}</title></rect>')
        body.append(f'<line x1="{x0}" y1="{y0 + 60}" x2="{x0 + cell_w - 16}" y2="{y0 + 60}" stroke="#999"/>'
                    f'<text x="{x0}" y="{y0 + 71}" fill="#555" font-size="9">{_seconds(10 ** lo)}</text>'
                    f'<text x="{x0 + cell_w - 16}" y="{y0 + 71}" fill="#555" font-size="9" text-anchor="end">'
                    f'{_seconds(10 ** hi)}</text>')
    return _svg(width, height, body, title)


def vbars(counts: dict[int, int], title: str, xlabel: str, width: int = 320, color: str = GREEN) -> str:
    """Vertical bars of an integer histogram ``{value: count}`` (every value from min to max shown)."""
    if not counts:
        return _svg(width, 40, [f'<text x="0" y="32" fill="{GREY}">none</text>'], title)
    keys = list(range(min(counts), max(counts) + 1))
    top, plot_h = 26, 90
    bw = min(40.0, (width - 10) / len(keys))
    peak = max(counts.values()) or 1
    body = []
    for k, key in enumerate(keys):
        c = counts.get(key, 0)
        h = plot_h * c / peak
        x = 4 + k * bw
        body.append(f'<g><title>{key}: {c}</title><rect x="{x:.1f}" y="{top + plot_h - h:.1f}" '
                    f'width="{bw - 3:.1f}" height="{h:.1f}" fill="{color}"/>'
                    f'<text x="{x + (bw - 3) / 2:.1f}" y="{top + plot_h + 12}" text-anchor="middle">{key}</text>'
                    + (f'<text x="{x + (bw - 3) / 2:.1f}" y="{top + plot_h - h - 3:.1f}" text-anchor="middle" '
                       f'font-size="9">{c}</text>' if c else "") + "</g>")
    body.append(f'<text x="4" y="{top + plot_h + 26}" fill="#555">{escape(xlabel)}</text>')
    return _svg(width, top + plot_h + 32, body, title)


def bounds_strips(rows: Sequence[tuple[str, Sequence[float], float | None, float | None, int]], title: str,
                  width: int = 640) -> str:
    """Per check, its measured values as ticks against its bounds (red lines; outside shaded red).

    Args:
        rows: ``(label, values, low, high, failed)``; a None bound is open.
    """
    label_w, row_h, top = 230, 22, 40
    plot_w = width - label_w - 110
    body = [f'<text x="{label_w}" y="{top - 8}" fill="{GREY}">ticks: measured values · red: bounds · '
            'each row its own axis (range at the right)</text>']
    for k, (label, values, low, high, failed) in enumerate(rows):
        y = top + k * row_h
        ends = [v for v in (*values, low, high) if v is not None]
        lo, hi = (min(ends), max(ends)) if ends else (0.0, 1.0)
        pad = (hi - lo) * 0.05 or max(abs(hi), 1.0) * 0.05
        lo, hi = lo - pad, hi + pad

        def xpos(v: float, lo: float = lo, hi: float = hi) -> float:
            return label_w + plot_w * (v - lo) / (hi - lo)

        body.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end"'
                    f'{" fill=" + chr(34) + RED + chr(34) if failed else ""}>{_label(label, 34)}'
                    f'{f" ({failed} failed)" if failed else ""}</text>'
                    f'<rect x="{label_w}" y="{y + 3}" width="{plot_w}" height="{row_h - 6}" fill="#f3f3f6"/>')
        for bound, side in ((low, "low"), (high, "high")):
            if bound is None:
                continue
            x = xpos(bound)
            x0, w = (label_w, x - label_w) if side == "low" else (x, label_w + plot_w - x)
            body.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(w, 0):.1f}" height="{row_h - 6}" fill="{RED}" '
                        f'fill-opacity="0.12"/><line x1="{x:.1f}" y1="{y + 1}" x2="{x:.1f}" y2="{y + row_h - 1}" '
                        f'stroke="{RED}" stroke-width="2"><title>{side} bound {_fmt(bound)}</title></line>')
        ticks = sorted({round(xpos(v)) for v in values})
        if ticks:
            body.append(f'<path d="{"".join(f"M{x} {y + 5}v{row_h - 10}" for x in ticks)}" stroke="{BLUE}" '
                        f'stroke-opacity="0.6"><title>{escape(label)}: {len(values)} values from {_fmt(min(values))} '
                        f'to {_fmt(max(values))}</title></path>')
        body.append(f'<text x="{label_w + plot_w + 6}" y="{y + 14}" font-size="10" fill="#555">'
                    f'{_fmt(lo + pad)} … {_fmt(hi - pad)}</text>')
    return _svg(width, top + row_h * max(1, len(rows)) + 4, body, title)
