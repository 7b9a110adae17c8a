"""The exact layer assembler as a tool (runs on workers: full-frame float work)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from add_pipeline.core.peel import AssembledLayer, PeelLevel, assemble_layers
from add_pipeline.tools.base import Tool, ToolError, register


@register
class ExactAssembler(Tool):
    """Solve background, shadow and object layers so they recompose to the photo (see core.peel)."""

    family: ClassVar[str] = "assemble"
    name: ClassVar[str] = "exact"

    def __call__(self, background: np.ndarray, levels: list[PeelLevel]) -> list[AssembledLayer]:
        """``background``: HxWx3 float [0, 1]; ``levels`` back to front. Returns layers back to front."""
        if background.ndim != 3 or background.shape[2] != 3:
            raise ToolError(f"{self.name}: background must be HxWx3, got {background.shape}")
        hw = background.shape[:2]
        for lv in levels:
            if lv.alpha.shape != hw or lv.shadow.shape != hw or lv.target.shape[:2] != hw:
                raise ToolError(f"{self.name}: level {lv.name} does not match the {hw} canvas")
        return assemble_layers(background, levels)
