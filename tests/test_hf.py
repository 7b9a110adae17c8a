"""The shards load with Hugging Face datasets as they are: features from the Parquet metadata, the
dataset card's configs, pixels equal to the known layers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

from add_pipeline.io.card import write_card  # noqa: E402
from add_pipeline.io.hf import arrow_nullable, features_dict, features_yaml  # noqa: E402
from add_pipeline.io.layered import place  # noqa: E402
from add_pipeline.io.shards import SCHEMAS, ShardStore  # noqa: E402
from tests.layered_fixtures import write_known_out  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


@pytest.mark.parametrize("kind", ["shards", "traces", "rejects"])
def test_our_features_are_what_datasets_makes_of_them(kind: str) -> None:
    feats = datasets.Features.from_dict(features_dict(SCHEMAS[kind]))
    assert feats.arrow_schema.equals(arrow_nullable(SCHEMAS[kind]))
    assert feats._to_yaml_list() == features_yaml(SCHEMAS[kind])


def _check_pixels(ds, truth: dict) -> None:
    assert sorted(ds["sample_id"]) == sorted(truth)
    for rec in ds:
        photo, layers = truth[rec["sample_id"]]
        np.testing.assert_array_equal(np.asarray(rec["image"].convert("RGB")), photo)
        assert [lay["kind"] for lay in rec["layers"]] == [lay.kind for lay in layers]
        h, w = photo.shape[:2]
        for stored, want in zip(rec["layers"], layers, strict=True):
            crop = np.asarray(stored["image"].convert("RGBA"))  # a datasets Image: PIL, cut to its bbox
            full = place(crop, stored["bbox"], w, h, photo if stored["fill"] == "image" else None)
            np.testing.assert_array_equal(full[..., 3], want.rgba[..., 3])
            seen = want.rgba[..., 3] > 0
            np.testing.assert_array_equal(full[seen, :3], want.rgba[seen, :3])
        assert {s["name"] for s in rec["layers"][2]["scores"]} == {"alpha_solidity"}


def test_load_dataset_parquet_decodes_images_with_no_arguments(tmp_path: Path) -> None:
    truth = write_known_out(tmp_path / "out", ["a", "b", "c"])
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "shards" / "*.parquet"), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    _check_pixels(ds, truth)


def test_card_makes_the_folder_loadable_with_its_configs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    truth = write_known_out(out, ["a", "b", "c"])
    store = ShardStore(out)
    store.commit([], [{"sample_id": "bad", "source": "/x.jpg", "stage": "load", "reason": "/x.jpg: truncated",
                       "trace_id": "t9", "workflow": "known", "rejected_at": datetime.now(UTC)}], [])
    write_card(out, {"accepted": 3, "rejected": 1, "layers_total": 9, "layers_per_sample": 3.0,
                     "reject_reasons": {"load: truncated": 1}})
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: unknown\n") and "config_name: rejects" in card
    assert "config_name: traces" not in card  # no traces were committed: no config that would load nothing
    _check_pixels(datasets.load_dataset(str(out), split="train"), truth)
    rejects = datasets.load_dataset(str(out), "rejects", split="train")
    assert rejects["sample_id"] == ["bad"] and rejects["reason"] == ["/x.jpg: truncated"]


def test_a_users_readme_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_known_out(out, ["a"])
    (out / "README.md").write_text("# my notes\n")
    assert write_card(out, {"accepted": 1}) is None
    assert (out / "README.md").read_text() == "# my notes\n"
    (out / "README.md").unlink()
    assert write_card(out, {"accepted": 1}) == out / "README.md"
    card = (out / "README.md").read_text()
    assert "shards/part-00000.parquet" in card and "part-*" not in card  # committed parts by name
    assert write_card(out, {"accepted": 1}) == out / "README.md"  # our own card is rewritten
