"""The curate and compose stages: reusable assets from decomposed shards, and new layered samples from them.

``curate(out, assets)`` (:mod:`.curate`) and ``compose(assets, out, n, seed)`` (:mod:`.job`) are the
entry points; they are imported lazily here so that importing the package stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compose", "curate"]


def __getattr__(name: str) -> Any:
    if name == "curate":
        from add_pipeline.compose.curate import curate

        return curate
    if name == "compose":
        from add_pipeline.compose.job import compose

        return compose
    raise AttributeError(name)
