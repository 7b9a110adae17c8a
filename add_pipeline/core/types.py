"""The record types that flow through the pipeline.

Conventions used everywhere in the package:

* images are ``HxWx3 uint8`` RGB in [0, 255] unless a docstring says otherwise;
* masks are ``HxW bool``;
* mattes (alpha, shadow strength) are ``HxW float32`` in [0, 1];
* layers are ``HxWx4 uint8`` RGBA with *straight* (not premultiplied) colour, at full canvas size;
* boxes are ``(x0, y0, x1, y1)`` ints, half-open (``x1``/``y1`` exclusive), inside the canvas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

LayerKind = Literal["background", "object", "shadow"]
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Layer:
    """One layer of a decomposition.

    Attributes:
        name: unique within the sample, e.g. ``"background"``, ``"obj0"``, ``"obj0_shadow"``.
        kind: ``background`` (opaque RGB), ``object`` (soft alpha) or ``shadow`` (alpha = strength).
        rgba: ``HxWx4 uint8`` straight-alpha RGBA at full canvas size.
        z: back-to-front index; the background is 0.
        bbox: tight box of ``alpha > 0`` (the whole canvas for the background).
        parent: for a shadow, the name of the object that casts it; otherwise ``None``.
        scores: QA values (floats) measured by the tools and the verifier.
    """

    name: str
    kind: LayerKind
    rgba: np.ndarray
    z: int
    bbox: Box
    parent: str | None = None
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class LayeredSample:
    """One input photo and what became of it: the record every stage takes and returns.

    ``image`` is the working-size input (``HxWx3 uint8``); ``layers`` is back to front.
    ``status`` is ``"accepted"`` or ``"rejected"``; a rejected sample carries ``stage`` and ``reason``.
    """

    sample_id: str
    source: str
    image: np.ndarray | None = None
    layers: list[Layer] = field(default_factory=list)
    status: str = "pending"
    stage: str | None = None
    reason: str | None = None
    trace_id: str = ""
    workflow: str = ""
    meta: dict[str, object] = field(default_factory=dict)


def bbox_of(mask: np.ndarray) -> Box:
    """Tight half-open box of the true pixels of an ``HxW`` mask; ``(0, 0, 0, 0)`` if empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
