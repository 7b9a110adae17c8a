"""``build_exporter(name, dest, **options)``: the export formats by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from add_pipeline.export.base import Exporter, ExportError
from add_pipeline.export.layerd import LayerdExporter
from add_pipeline.export.ora import OraExporter
from add_pipeline.export.psd import PsdExporter
from add_pipeline.export.webdataset import WebDatasetExporter

EXPORTERS: dict[str, type[Exporter]] = {cls.name: cls for cls in (WebDatasetExporter, PsdExporter, OraExporter,
                                                                   LayerdExporter)}
"""Every format ``liwi export --format`` accepts, by name."""


def build_exporter(name: str, dest: Path, **options: Any) -> Exporter:
    """The exporter of format ``name`` writing into ``dest``.

    ``options`` are the format's own (``samples_per_tar`` for ``webdataset``); an option given as
    ``None`` takes the format's default, and options of other formats are ignored.

    Raises:
        ExportError: ``name`` is not a format (the message lists the valid ones), or an option is invalid.
    """
    cls = EXPORTERS.get(name)
    if cls is None:
        raise ExportError(f"unknown export format {name!r}; choose one of {', '.join(EXPORTERS)}")
    return cls(dest, **{k: v for k, v in options.items() if k in cls.option_names and v is not None})
