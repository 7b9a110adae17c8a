"""``liwi report``: a static HTML report of an output folder (run figures, gallery, traces, rejects, eval).

    from add_pipeline.report import ReportOptions, build_report
    result = build_report(ReportOptions(out=Path("out/demo")))   # writes out/demo/report.html + report_files/

The names below are imported on first use, so that ``liwi`` (which registers the command) does
not load NumPy, OpenCV or DuckDB at start-up.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"ReportError": "build", "ReportOptions": "build", "ReportResult": "build", "build_report": "build",
            "EvalReportError": "evals"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'add_pipeline.report' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"add_pipeline.report.{_EXPORTS[name]}"), name)
