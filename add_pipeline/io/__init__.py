"""Reading and writing: inputs, images, the shard store, and the public reader of layered samples.

    from add_pipeline.io import LayeredShards

The names below are imported on first use, so importing a submodule (as ``liwi`` does at start-up)
does not load pyarrow, NumPy or OpenCV.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"Layer": "layered", "LayeredSample": "layered", "decode_row": "layered",
            "LayeredShards": "reader", "ReaderError": "reader"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'add_pipeline.io' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"add_pipeline.io.{_EXPORTS[name]}"), name)
