"""``liwi export``: committed layered samples as files other tools read (WebDataset tars, layered
PSD, OpenRaster, LayerD-style folders), written resumably and atomically into one folder.

The names below are imported on first use (``liwi`` registers the command without loading them).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"Exporter": "base", "ExportError": "base", "PerSampleExporter": "base", "ExportOptions": "job",
            "export": "job", "EXPORTERS": "registry", "build_exporter": "registry"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'add_pipeline.export' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"add_pipeline.export.{_EXPORTS[name]}"), name)
