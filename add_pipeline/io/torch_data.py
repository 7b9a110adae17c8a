"""PyTorch datasets over :class:`~add_pipeline.io.LayeredShards`, and a collate for a variable number
of layers.

    from torch.utils.data import DataLoader
    from add_pipeline.io.torch_data import LayeredIterableDataset, collate_layers
    loader = DataLoader(LayeredIterableDataset("out/demo"), batch_size=4, num_workers=2,
                        collate_fn=collate_layers)

`LayeredIterableDataset` streams part files; each (distributed rank, DataLoader worker) pair
reads its own contiguous share (:meth:`LayeredShards.split`; shares differ by at most one sample),
so every sample is seen exactly once per epoch across all of them.  `LayeredDataset` is map-style
(random access, any sampler); it caches the last part file it read per worker, so a shuffled
sampler reads a whole part (up to ``--shard-size`` samples) per sample: prefer the iterable
dataset for training at scale.  Both yield :func:`to_tensors` dicts unless a ``transform``
(``LayeredSample -> anything``) is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from add_pipeline.io.layered import LayeredSample, decode_row
from add_pipeline.io.reader import LayeredShards

Transform = Callable[[LayeredSample], Any]


def to_tensors(sample: LayeredSample) -> dict[str, Any]:
    """``image``: ``3xHxW float32`` in [0, 1]; ``layers``: ``Lx4xHxW float32`` straight RGBA in [0, 1],
    back to front; ``bboxes``: ``Lx4 int64``; ``kinds``, ``names``, ``parents``: lists of L; ``sample_id``."""
    image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))).float() / 255.0
    stack = np.stack(sample.stack()).transpose(0, 3, 1, 2)
    return {
        "sample_id": sample.sample_id,
        "image": image,
        "layers": torch.from_numpy(np.ascontiguousarray(stack)).float() / 255.0,
        "bboxes": torch.tensor([list(lay.bbox) for lay in sample.layers], dtype=torch.int64).reshape(-1, 4),
        "kinds": [lay.kind for lay in sample.layers],
        "names": [lay.name for lay in sample.layers],
        "parents": [lay.parent for lay in sample.layers],
    }


def _distributed() -> tuple[int, int]:
    """``(rank, world size)`` of this process in ``torch.distributed``, ``(0, 1)`` outside it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class LayeredIterableDataset(IterableDataset):
    """Committed samples of ``out`` streamed part by part, split across workers and ranks.

    Args:
        out: an output folder; ``ids`` / ``where`` / ``limit`` select as in :class:`LayeredShards`.
        transform: applied to each :class:`LayeredSample` (default :func:`to_tensors`).
        rank, world_size: the distributed share; by default taken from ``torch.distributed`` here,
            in the process that builds the dataset (DataLoader workers started by spawn or
            forkserver never join the process group, so they must not ask it themselves).
    """

    def __init__(self, out: str | Path, ids: Iterable[str] | None = None, where: str | None = None,
                 limit: int | None = None, transform: Transform | None = None,
                 rank: int | None = None, world_size: int | None = None) -> None:
        self.shards = LayeredShards(out, ids=ids, where=where, limit=limit)
        self.transform = transform or to_tensors
        detected = _distributed()
        self.rank = int(detected[0] if rank is None else rank)
        self.world_size = int(detected[1] if world_size is None else world_size)

    def __len__(self) -> int:
        return len(self.shards)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        index, count = self.rank * nworkers + wid, self.world_size * nworkers
        for row in self.shards.rows(self.shards.split(index, count)):
            yield self.transform(decode_row(row))


class LayeredDataset(Dataset):
    """Map-style access to the committed samples of ``out`` (arguments as :class:`LayeredIterableDataset`)."""

    def __init__(self, out: str | Path, ids: Iterable[str] | None = None, where: str | None = None,
                 limit: int | None = None, transform: Transform | None = None) -> None:
        self.shards = LayeredShards(out, ids=ids, where=where, limit=limit)
        self.transform = transform or to_tensors

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self.shards):
            raise IndexError(f"index {index} out of range for {len(self.shards)} samples")
        return self.transform(self.shards[index])


def collate_layers(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :func:`to_tensors` dicts of different sizes and layer counts by zero padding.

    Returns ``image`` ``Bx3xHxW``, ``layers`` ``BxLx4xHxW`` (H, W, L the batch maxima), ``layer_mask``
    ``BxL bool`` (real layers), ``valid`` ``BxHxW bool`` (real pixels), ``bboxes`` ``BxLx4``
    (padding rows 0), and ``sample_id``, ``kinds``, ``names``, ``parents`` as lists.
    """
    if not batch:
        raise ValueError("collate_layers got an empty batch")
    h = max(int(b["image"].shape[1]) for b in batch)
    w = max(int(b["image"].shape[2]) for b in batch)
    n = max(int(b["layers"].shape[0]) for b in batch)
    out_img = torch.zeros(len(batch), 3, h, w)
    out_lay = torch.zeros(len(batch), n, 4, h, w)
    mask = torch.zeros(len(batch), n, dtype=torch.bool)
    valid = torch.zeros(len(batch), h, w, dtype=torch.bool)
    boxes = torch.zeros(len(batch), n, 4, dtype=torch.int64)
    for i, b in enumerate(batch):
        bh, bw, bl = int(b["image"].shape[1]), int(b["image"].shape[2]), int(b["layers"].shape[0])
        out_img[i, :, :bh, :bw] = b["image"]
        out_lay[i, :bl, :, :bh, :bw] = b["layers"]
        mask[i, :bl] = True
        valid[i, :bh, :bw] = True
        boxes[i, :bl] = b["bboxes"]
    return {"sample_id": [b["sample_id"] for b in batch], "image": out_img, "layers": out_lay, "layer_mask": mask,
            "valid": valid, "bboxes": boxes, "kinds": [b["kinds"] for b in batch], "names": [b["names"] for b in batch],
            "parents": [b["parents"] for b in batch]}
