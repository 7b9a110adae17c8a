"""Load layer stacks for evaluation from a shard folder or a LayerD-style folder.

Both readers return a :class:`LazyStacks` mapping ``sample_id -> list[EvalLayer]``
(back to front).  Only the index (and, for shards, the compressed PNG bytes) is held;
layers are decoded when a sample is accessed, so a large test set does not sit decoded
in memory.

* Shard folder (``OUT`` written by :class:`~add_pipeline.io.shards.ShardStore`): only
  committed parts are read; layers keep their ``name``, ``kind`` and ``parent`` and are
  ordered by ``z``.
* LayerD-style folder: one subfolder per sample (its name, percent-decoded, is the sample id), layer PNGs
  sorted back to front by file name.  A file name containing ``shadow``, ``background``
  or ``object`` (checked in that order, case-insensitive) sets the kind; otherwise the
  first layer is the background and the others are objects.  A shadow named like
  ``<object>_shadow.png`` gets the layer named ``<object>`` as its parent when there is
  one (leading ordering numbers ignored: ``02_car_shadow`` belongs to ``01_car``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from add_pipeline.core.types import LayerKind
from add_pipeline.eval.kinds import EvalLayer
from add_pipeline.io.images import decode_png
from add_pipeline.io.layered import as_rgba, decode_row
from add_pipeline.io.names import unsafe_name
from add_pipeline.io.reader import LayeredShards, ReaderError
from add_pipeline.io.shards import COMMITS_DIR

Loader = Callable[[], list[EvalLayer]]


class LazyStacks(Mapping[str, list[EvalLayer]]):
    """Read-only mapping ``sample_id -> stack``; each access decodes the stack afresh."""

    def __init__(self, loaders: Mapping[str, Loader], origin: str) -> None:
        self._loaders = dict(loaders)
        self.origin = origin

    def __getitem__(self, sample_id: str) -> list[EvalLayer]:
        return self._loaders[sample_id]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


# ---------------------------------------------------------------- shard folders


def read_shard_stacks(out_dir: str | Path) -> LazyStacks:
    """Stacks of every sample in the committed shard parts of ``out_dir`` (decoded by
    :func:`~add_pipeline.io.layered.decode_row`, so full-canvas layers whatever the schema version).

    Raises:
        ValueError: a sample id occurs in more than one row.
        FileNotFoundError: ``out_dir`` has no commit markers folder.
    """
    out = Path(out_dir)
    if not (out / COMMITS_DIR).is_dir():
        raise FileNotFoundError(f"{out} is not a shard folder (no {COMMITS_DIR}/)")
    try:
        shards = LayeredShards(out)
    except ReaderError as e:
        raise ValueError(str(e)) from e
    loaders: dict[str, Loader] = {sid: _shard_loader(row) for sid, row in zip(shards.ids(), shards.rows(), strict=True)}
    return LazyStacks(loaders, origin=f"shards:{out}")


def _shard_loader(row: dict) -> Loader:
    def load() -> list[EvalLayer]:
        sample = decode_row(row)
        return [EvalLayer(rgba=lay.rgba, kind=lay.kind, name=lay.name, parent=lay.parent) for lay in sample.layers]

    return load


# ---------------------------------------------------------------- LayerD-style folders

_SHADOW_SUFFIX = re.compile(r"[_\-. ]*shadow$", re.IGNORECASE)
_ORDER_PREFIX = re.compile(r"^\d+[_\-. ]*")


def _owner_key(stem: str) -> str:
    """``stem`` without a leading ordering number and a trailing ``shadow`` (``02_car_shadow`` -> ``car``)."""
    return _SHADOW_SUFFIX.sub("", _ORDER_PREFIX.sub("", stem))


def _kind_from_name(stem: str) -> LayerKind | None:
    low = stem.lower()
    for kind in ("shadow", "background", "object"):
        if kind in low:
            return kind  # type: ignore[return-value]
    return None


def _folder_id(sample_dir: Path) -> str:
    """The sample id of a LayerD-style folder: the ``sample_id`` of its ``layers.json`` (written by
    ``liwi export --format layerd``, exact even for ids whose file name was shortened), else the
    folder name, percent-decoded (``safe_name`` inverted)."""
    record = sample_dir / "layers.json"
    if record.is_file():
        try:
            sid = json.loads(record.read_text(encoding="utf-8")).get("sample_id")
        except (OSError, ValueError, AttributeError):
            sid = None
        if isinstance(sid, str) and sid:
            return sid
    return unsafe_name(sample_dir.name)


def read_folder_stacks(root: str | Path) -> LazyStacks:
    """Stacks of a LayerD-style folder: ``root/<sample_id>/*.png`` sorted by file name.

    Subfolders without PNGs are kept (as empty stacks, which evaluation reports as failed).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{base} is not a folder")
    loaders: dict[str, Loader] = {}
    for sample_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sample_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png")
        loaders[_folder_id(sample_dir)] = _folder_loader(files)
    return LazyStacks(loaders, origin=f"folder:{base}")


def _folder_loader(files: list[Path]) -> Loader:
    def load() -> list[EvalLayer]:
        kinds = [_kind_from_name(p.stem) or ("background" if i == 0 else "object") for i, p in enumerate(files)]
        owners = {_owner_key(p.stem): p.stem for p, k in zip(files, kinds, strict=True) if k == "object"}
        owners.pop("", None)
        stack = []
        for path, kind in zip(files, kinds, strict=True):
            parent = owners.get(_owner_key(path.stem)) if kind == "shadow" else None
            try:
                rgba = as_rgba(decode_png(path.read_bytes()))
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from e
            stack.append(EvalLayer(rgba=rgba, kind=kind, name=path.stem, parent=parent))
        return stack

    return load


def read_stacks(path: str | Path) -> LazyStacks:
    """:func:`read_shard_stacks` if ``path`` has a ``_commits/`` folder, else :func:`read_folder_stacks`."""
    p = Path(path)
    return read_shard_stacks(p) if (p / COMMITS_DIR).is_dir() else read_folder_stacks(p)


# ---------------------------------------------------------------- normalising stacks


def as_eval_layers(stack: Sequence[np.ndarray | EvalLayer]) -> list[EvalLayer]:
    """Wrap bare ``HxWx4 uint8`` arrays as layers: the first a background, the rest objects.

    :class:`EvalLayer` items pass through unchanged; bare arrays are named ``layer{i}``.
    """
    out = []
    for i, item in enumerate(stack):
        if isinstance(item, EvalLayer):
            out.append(item)
        else:
            out.append(EvalLayer(rgba=item, kind="background" if i == 0 else "object", name=f"layer{i}"))
    return out


def fit_to(layer: EvalLayer, height: int, width: int) -> EvalLayer:
    """``layer`` resized to ``height x width`` (unchanged if it already is).

    Colour is resized premultiplied, so pixels with zero alpha do not bleed into the
    edge, with area interpolation when shrinking and bilinear when enlarging; alpha uses
    the same interpolation (nearest would turn soft mattes into jagged ones).
    """
    h, w = layer.rgba.shape[:2]
    if (h, w) == (height, width):
        return layer
    interp = cv2.INTER_AREA if height * width < h * w else cv2.INTER_LINEAR
    a = layer.rgba[..., 3:4].astype(np.float32) / 255.0
    prem = np.concatenate([layer.rgba[..., :3].astype(np.float32) * a, a * 255.0], axis=-1)
    small = cv2.resize(prem, (width, height), interpolation=interp)
    alpha = np.clip(small[..., 3:4], 0.0, 255.0)
    rgb = np.where(alpha > 0, small[..., :3] * 255.0 / np.maximum(alpha, 1e-6), 0.0)
    rgba = np.clip(np.rint(np.concatenate([rgb, alpha], axis=-1)), 0, 255).astype(np.uint8)
    return EvalLayer(rgba=rgba, kind=layer.kind, name=layer.name, parent=layer.parent)


@dataclass(frozen=True)
class SamplePairing:
    """Sample ids present in both sources (sorted), and those present in only one."""

    common: tuple[str, ...]
    pred_only: tuple[str, ...]
    gt_only: tuple[str, ...]


def pair_samples(pred_ids: Iterable[str], gt_ids: Iterable[str]) -> SamplePairing:
    """Match samples between prediction and ground truth by id."""
    p, g = set(pred_ids), set(gt_ids)
    return SamplePairing(tuple(sorted(p & g)), tuple(sorted(p - g)), tuple(sorted(g - p)))
