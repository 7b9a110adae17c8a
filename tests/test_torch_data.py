"""The PyTorch datasets over the reader: each sample once across DataLoader workers and ranks, and a
collate that pads a variable number of layers and sizes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from add_pipeline.io.torch_data import LayeredDataset, LayeredIterableDataset, collate_layers, to_tensors
from tests.layered_fixtures import write_known_out

IDS = [f"s{i}" for i in range(7)]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("torch") / "out"
    write_known_out(folder, IDS, shard_size=2)
    return folder


def test_two_workers_see_each_sample_exactly_once(out: Path) -> None:
    loader = DataLoader(LayeredIterableDataset(out), batch_size=2, num_workers=2, collate_fn=collate_layers)
    seen = Counter(sid for batch in loader for sid in batch["sample_id"])
    assert seen == Counter(IDS)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_times_workers_see_each_sample_exactly_once(out: Path, world: int) -> None:
    seen: Counter[str] = Counter()
    for rank in range(world):
        data = LayeredIterableDataset(out, rank=rank, world_size=world)
        seen.update(sid for batch in DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate_layers)
                    for sid in batch["sample_id"])
    assert seen == Counter(IDS)


def test_tensors_and_collate_pad_layers_and_sizes(out: Path) -> None:
    ds = LayeredDataset(out, where="sample_id in ('s1', 's2')")
    a, b = ds[0], ds[1]
    assert a["image"].shape == (3, 48, 64) and a["layers"].shape == (3, 4, 48, 64) and a["kinds"][0] == "background"
    assert float(a["layers"][0, 3].min()) == 1.0  # the background is opaque
    small = dict(b, image=b["image"][:, :40, :50], layers=b["layers"][:2, :, :40, :50], bboxes=b["bboxes"][:2],
                 kinds=b["kinds"][:2])
    batch = collate_layers([a, small])
    assert batch["image"].shape == (2, 3, 48, 64) and batch["layers"].shape == (2, 3, 4, 48, 64)
    assert batch["layer_mask"].tolist() == [[True, True, True], [True, True, False]]
    valid = batch["valid"][1]
    assert valid[:40, :50].all() and not valid[40:].any() and not valid[:, 50:].any()
    assert torch.equal(batch["layers"][1, :2, :, :40, :50], small["layers"]) and batch["layers"][1, 2].abs().sum() == 0
    with pytest.raises(IndexError):
        ds[2]


def test_to_tensors_recomposes_the_photo(out: Path) -> None:
    sample = next(iter(LayeredIterableDataset(out, transform=lambda s: s)))
    t = to_tensors(sample)
    comp = torch.zeros(3, 48, 64)
    for lay in t["layers"]:
        comp = lay[:3] * lay[3:4] + comp * (1 - lay[3:4])
    assert np.abs(comp.numpy().transpose(1, 2, 0) * 255 - sample.image).max() <= 1.0


def test_rank_is_taken_in_the_main_process_so_spawned_workers_keep_it(out: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers started by spawn never join the process group: the share must travel with the dataset."""
    import add_pipeline.io.torch_data as td

    seen: Counter[str] = Counter()
    for rank in range(2):
        monkeypatch.setattr(td, "_distributed", lambda rank=rank: (rank, 2))
        data = LayeredIterableDataset(out)
        loader = DataLoader(data, batch_size=2, num_workers=2, collate_fn=collate_layers,
                            multiprocessing_context="spawn")
        seen.update(sid for batch in loader for sid in batch["sample_id"])
    assert seen == Counter(IDS)
