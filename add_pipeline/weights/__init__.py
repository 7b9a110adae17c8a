"""Pretrained weights as a checked dependency: pinned npm tarballs, reassembled and verified locally.

Model tools call :func:`resolve` to find their file; ``liwi weights fetch`` (or :func:`fetch`) puts it
in :func:`weights_dir`. Nothing here touches the network or the disk at import.
"""

from add_pipeline.weights.fetch import fetch, fetch_many
from add_pipeline.weights.registry import WEIGHTS, WeightsError, WeightSpec, get_spec
from add_pipeline.weights.store import WeightStatus, list_weights, resolve, status, verify, weights_dir, weights_path

__all__ = [
    "WEIGHTS",
    "WeightSpec",
    "WeightStatus",
    "WeightsError",
    "fetch",
    "fetch_many",
    "get_spec",
    "list_weights",
    "resolve",
    "status",
    "verify",
    "weights_dir",
    "weights_path",
]
