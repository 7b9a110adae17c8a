"""Image loading as a tool, so that decoding runs on workers and bad input is a recorded tool error."""

from __future__ import annotations

from typing import ClassVar

from add_pipeline.io.images import LoadedImage, load_image
from add_pipeline.tools.base import Tool, register


@register
class PillowLoader(Tool):
    """Decode, orient, convert and resize one input file (see :func:`add_pipeline.io.images.load_image`).

    Raises :class:`add_pipeline.io.images.InputError` naming the file and the reason.
    """

    family: ClassVar[str] = "load"
    name: ClassVar[str] = "pillow"

    def __init__(self, working_size: int = 512, max_pixels: int = 64_000_000, max_bytes: int = 256_000_000) -> None:
        self.working_size = int(working_size)
        self.max_pixels = int(max_pixels)
        self.max_bytes = int(max_bytes)

    def __call__(self, source: str) -> LoadedImage:
        """``source``: a file path. Returns the HxWx3 uint8 image at working size plus notes."""
        return load_image(source, working_size=self.working_size, max_pixels=self.max_pixels,
                          max_bytes=self.max_bytes)
