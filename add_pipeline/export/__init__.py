"""``liwi export``: committed layered samples as files other tools read (WebDataset tars, layered
PSD, OpenRaster, LayerD-style folders), written resumably and atomically into one folder."""

from add_pipeline.export.base import Exporter, ExportError, PerSampleExporter
from add_pipeline.export.job import ExportOptions, export
from add_pipeline.export.registry import EXPORTERS, build_exporter

__all__ = ["EXPORTERS", "ExportError", "ExportOptions", "Exporter", "PerSampleExporter", "build_exporter", "export"]
