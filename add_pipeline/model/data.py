"""Training samples from layered shards: photo + ground-truth stack as fixed-size tensors.

Rows come from the public reader (:class:`~add_pipeline.io.LayeredShards`: only committed parts,
so a folder that another job is still writing is safe to train on), are held compressed in memory
and decoded on access by :func:`~add_pipeline.io.layered.decode_row`, the one parser of the format.

Ground truth per row, built from the layers sorted by ``z`` (back to front).  An object and
its shadow layers form a *unit*.  Slots are **occlusion levels**, counted from the front:

* a unit's level is 0 when no unit above it (in z) conflicts with it, else one more than the
  deepest such unit's level.  Unit ``j`` above unit ``i`` conflicts with it when ``j``'s object
  covers ``i``'s object or ``i``'s shadow, or ``j``'s shadow falls on ``i``'s object (the pairs
  whose compositing order matters; everything else commutes);
* slot ``K-1-level`` holds the union of the units of that level: their objects are pairwise
  disjoint, so alpha and colour add up, and their shadows are united (``1 - prod(1 - s)``);
* units of level ``>= K``, the background layers and shadows without a kept parent are
  composited, in z order, into the background target.

So the slot order is a valid compositing order (deeper levels first) and the targets
recompose the photo exactly, and a slot's content is visible in the photo (what covers what),
unlike "the k-th object from the back", which depends on objects elsewhere in the image.
Inference splits a slot into objects by connected components (:mod:`~add_pipeline.model.infer`).

Resizing: the long side goes to ``size`` (colours resized premultiplied, so no dark fringes),
the short side is padded to ``size``; ``valid`` is 0 on the padding and losses ignore it.
Flips are horizontal only (a vertical flip would put shadows above their casters) and are
chosen by the caller, as is the colour augmentation (:class:`ColorJitter`), so the sample
sequence is a pure function of (seed, step).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from add_pipeline.core.synthetic import Scene
from add_pipeline.io.layered import decode_row
from add_pipeline.io.reader import LayeredShards
from add_pipeline.io.shards import ShardStore


@dataclass(frozen=True)
class ColorJitter:
    """A linear colour change applied alike to the photo and every colour target:
    ``x -> brightness * ((1 - desaturate) * x[perm] + desaturate * luma(x))``.

    It is linear and maps 0 to 0, so it commutes with alpha compositing and with the shadows'
    multiplication: the jittered targets still recompose the jittered photo exactly.  It is a
    convex mix scaled by ``brightness <= 1``, so values stay in [0, 1].  It multiplies the
    appearances of the few real objects the compositions are made of.
    """

    perm: tuple[int, int, int] = (0, 1, 2)
    desaturate: float = 0.0
    brightness: float = 1.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ColorJitter:
        """A random jitter: any channel order, up to 60% desaturated, 65-100% brightness."""
        perm = tuple(int(i) for i in rng.permutation(3))
        return cls(perm, float(rng.uniform(0.0, 0.6)), float(rng.uniform(0.65, 1.0)))  # type: ignore[arg-type]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``...x3xHxW`` colours in [0, 1]."""
        luma = 0.299 * x[..., 0:1, :, :] + 0.587 * x[..., 1:2, :, :] + 0.114 * x[..., 2:3, :, :]
        mixed = (1.0 - self.desaturate) * x[..., list(self.perm), :, :] + self.desaturate * luma
        return (self.brightness * mixed).clamp(0.0, 1.0)


def _over(rgba: np.ndarray, below: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4]
    return rgba[..., :3] * a + below * (1.0 - a)


def _resize(arr: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return arr
    h, w = arr.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    out = cv2.resize(arr, size, interpolation=interp)
    return out[..., None] if arr.ndim == 3 and out.ndim == 2 else out  # keep the input's ndim


class LayeredShardDataset(torch.utils.data.Dataset):
    """Samples of one or more shard folders as tensors at ``size x size``.

    Args:
        dirs: shard folders (``OUT`` of ``liwi run`` / the compose stage / the synthetic writer).
        size: working size (long side, px).
        slots: K, the number of object slots.
    Raises:
        ValueError: a folder has no committed shards, or a sample id occurs twice.
    """

    def __init__(self, dirs: Sequence[str | Path], size: int, slots: int) -> None:
        self.size, self.slots = int(size), int(slots)
        self.rows: list[dict] = []  # raw shard rows (compressed images), decoded on access by io.layered.decode_row
        seen: set[str] = set()
        for d in dirs:
            shards = LayeredShards(d)
            if not len(shards):
                raise ValueError(f"{d}: no committed shards to train on")
            for r in shards.rows():
                sid = r["sample_id"]
                if sid in seen:
                    raise ValueError(f"sample {sid!r} occurs more than once across {list(map(str, dirs))}")
                seen.add(sid)
                self.rows.append({k: r[k] for k in ("sample_id", "width", "height", "image", "layers")})

    def __len__(self) -> int:
        return len(self.rows)

    def split(self, eval_fraction: float) -> tuple[list[int], list[int]]:
        """``(train, eval)`` indices; a sample is held out by a hash of its id, so the split of
        a sample never changes when shards are added.  Keeps at least one training sample."""
        held = [i for i, r in enumerate(self.rows)
                if (zlib.crc32(r["sample_id"].encode()) % 10_000) < eval_fraction * 10_000]
        held_set = set(held)
        train = [i for i in range(len(self.rows)) if i not in held_set]
        if not train:
            train, held = held[:1], held[1:]
        return train, held

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.load(index, flip=False)

    def load(self, index: int, flip: bool, jitter: ColorJitter | None = None) -> dict[str, torch.Tensor]:
        """One sample (tensors as documented in :mod:`~add_pipeline.model.losses`, without batch dim),
        flipped and colour-jittered as asked."""
        sample = decode_row(self.rows[index])
        image = sample.image.astype(np.float32) / 255.0
        h, w = image.shape[:2]
        decoded = [({"name": lay.name, "kind": lay.kind, "z": lay.z, "parent": lay.parent},
                    lay.rgba.astype(np.float32) / 255.0) for lay in sample.layers]
        slot_of = occlusion_slots(decoded, self.slots)

        bg = np.zeros((h, w, 3), np.float32)
        color = np.zeros((self.slots, h, w, 3), np.float32)
        alpha = np.zeros((self.slots, h, w), np.float32)
        shadow = np.zeros((self.slots, h, w), np.float32)
        for lay, arr in decoded:
            kind = lay["kind"]
            if kind == "object" and lay["name"] in slot_of:
                k = slot_of[lay["name"]]
                a = arr[..., 3]
                color[k] = np.where(a[..., None] > 0, arr[..., :3], color[k])  # disjoint within a slot
                alpha[k] = alpha[k] + a
            elif kind == "shadow" and lay.get("parent") in slot_of:
                k = slot_of[lay["parent"]]
                shadow[k] = 1.0 - (1.0 - shadow[k]) * (1.0 - arr[..., 3])
            else:  # background, deep units and orphan shadows become part of the background
                bg = _over(arr, bg)
        alpha = np.clip(alpha, 0.0, 1.0)

        scale = self.size / max(h, w)
        image, bg = _resize(image, scale), _resize(bg, scale)
        color = np.stack([_resize(c * a[..., None], scale) for c, a in zip(color, alpha)])
        alpha = np.stack([_resize(a, scale) for a in alpha])
        shadow = np.stack([_resize(s, scale) for s in shadow])
        color = np.where(alpha[..., None] > 1e-4, color / np.maximum(alpha[..., None], 1e-4), 0.0)

        t = {
            "image": _chw(image), "background": _chw(bg),
            "color": torch.from_numpy(np.ascontiguousarray(color.transpose(0, 3, 1, 2), np.float32)),
            "alpha": torch.from_numpy(np.ascontiguousarray(alpha[:, None], np.float32)),
            "shadow": torch.from_numpy(np.ascontiguousarray(shadow[:, None], np.float32)),
        }
        rh, rw = image.shape[:2]
        valid = torch.zeros(1, self.size, self.size)
        valid[:, :rh, :rw] = 1.0
        out = {key: _pad(v, self.size) for key, v in t.items()}
        for key in ("color", "alpha", "shadow"):
            out[key] = out[key].clamp(0.0, 1.0)
        out["valid"] = valid
        out["present"] = (out["alpha"].flatten(1).amax(dim=1) > 0).float()
        if flip:
            out = {key: (v.flip(-1) if v.ndim >= 3 else v) for key, v in out.items()}
        if jitter is not None:
            for key in ("image", "background", "color"):
                out[key] = jitter(out[key])
        return out


def occlusion_slots(decoded: Sequence[tuple[dict, np.ndarray]], slots: int) -> dict[str, int]:
    """Slot of every object that gets one: ``K - 1 - level`` (see the module docstring).

    Args:
        decoded: ``(layer, HxWx4 float32 RGBA)`` pairs sorted back to front.
        slots: K.
    Returns:
        object name -> slot index in ``[0, K)``; objects of level ``>= K`` are absent.
    """
    names = [lay["name"] for lay, _ in decoded if lay["kind"] == "object"]
    obj = {lay["name"]: arr[..., 3] > 0 for lay, arr in decoded if lay["kind"] == "object"}
    shadow = {n: np.zeros_like(m) for n, m in obj.items()}
    for lay, arr in decoded:
        if lay["kind"] == "shadow" and lay.get("parent") in shadow:
            shadow[lay["parent"]] |= arr[..., 3] > 0
    level: dict[str, int] = {}
    for i in range(len(names) - 1, -1, -1):
        me = names[i]
        deps = [level[j] + 1 for j in names[i + 1:]
                if (obj[j] & (obj[me] | shadow[me])).any() or (shadow[j] & obj[me]).any()]
        level[me] = max(deps, default=0)
    return {n: slots - 1 - lv for n, lv in level.items() if lv < slots}


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float32))


def _pad(t: torch.Tensor, size: int) -> torch.Tensor:
    """Pad the last two dims to ``size`` at the bottom/right, repeating the edge (so colours stay plausible)."""
    ph, pw = size - t.shape[-2], size - t.shape[-1]
    if ph == 0 and pw == 0:
        return t
    shape = t.shape
    flat = t.reshape(-1, 1, shape[-2], shape[-1])
    flat = torch.nn.functional.pad(flat, (0, pw, 0, ph), mode="replicate")
    return flat.reshape(*shape[:-2], size, size)


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch."""
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def write_synthetic_shards(out_dir: str | Path, n: int, seed: int = 0, size: int = 256,
                           max_objects: int = 3, shadows: bool = True, shard_size: int = 64,
                           prefix: str = "syn") -> int:
    """Write ``n`` exact layered scenes of :func:`~add_pipeline.core.synthetic.make_scene` as shards.

    See :func:`write_scene_shards` for the row layout and the seeds.  Returns the rows written.
    """
    from add_pipeline.core.synthetic import make_scene

    def make(scene_seed: int, n_objects: int) -> Scene:
        return make_scene(scene_seed, (size, size), n_objects, shadows)

    return write_scene_shards(out_dir, n, make, seed, max_objects, shard_size, prefix, "synthetic")


def write_cutpaste_shards(out_dir: str | Path, n: int, backgrounds: Sequence[np.ndarray],
                          textures: Sequence[np.ndarray] = (), seed: int = 0, size: int = 256,
                          max_objects: int = 3, shard_size: int = 64, prefix: str = "cut",
                          cutouts: Sequence[np.ndarray] = (), origin: str = "cutpaste") -> int:
    """Write ``n`` exact scenes of :func:`~add_pipeline.model.cutpaste.make_cutpaste_scene` as shards.

    ``backgrounds`` / ``textures``: ``HxWx3 uint8`` RGB photos (:func:`~add_pipeline.model.cutpaste.load_pool`);
    ``cutouts``: ``hxwx4 uint8`` RGBA objects (:func:`~add_pipeline.model.cutpaste.load_cutouts`), which
    then make every object.  See :func:`write_scene_shards` for the row layout, the seeds and ``origin``
    (the rows' workflow).  Returns the rows written.
    """
    from add_pipeline.model.cutpaste import make_cutpaste_scene

    def make(scene_seed: int, n_objects: int) -> Scene:
        return make_cutpaste_scene(scene_seed, backgrounds, textures, (size, size), n_objects, cutouts=cutouts)

    return write_scene_shards(out_dir, n, make, seed, max_objects, shard_size, prefix, origin)


def write_scene_shards(out_dir: str | Path, n: int, make: Callable[[int, int], Scene], seed: int = 0,
                       max_objects: int = 3, shard_size: int = 64, prefix: str = "syn",
                       origin: str = "synthetic") -> int:
    """Write ``n`` exact layered scenes ``make(scene_seed, n_objects)`` as shards (resumable).

    Scene ``i`` uses seed ``seed * 100_003 + i`` and ``1 + (i % max_objects)`` objects (so every
    object count is equally common); rows already committed are skipped.  Rows are
    ``source_kind="composed"``, sample id ``{prefix}-{seed}-{i:06d}``, workflow ``origin``; layers
    are named ``obj{j}`` / ``obj{j}_shadow`` (empty shadow layers are left out).  Returns ``n``.
    """
    from add_pipeline.core.peel import AssembledLayer
    from add_pipeline.tools.encoder import LayeredRowEncoder

    store, enc = ShardStore(out_dir), LayeredRowEncoder()
    store.prepare()
    done = store.done_ids()
    rows: list[dict] = []
    for i in range(n):
        sid = f"{prefix}-{seed}-{i:06d}"
        if sid in done:
            continue
        scene = make(seed * 100_003 + i, 1 + i % max_objects)
        stack = scene.layers()
        layers = [AssembledLayer("background", "background", stack[0], None)]
        for j in range(len(scene.objects)):
            sh, ob = stack[1 + 2 * j], stack[2 + 2 * j]
            if sh[..., 3].any():
                layers.append(AssembledLayer(f"obj{j}_shadow", "shadow", sh, f"obj{j}"))
            layers.append(AssembledLayer(f"obj{j}", "object", ob, None))
        row = enc(sid, f"{origin}:{seed * 100_003 + i}", scene.image, layers, {}, {origin: True},
                  source_kind="composed")
        rows.append({**row, "trace_id": sid, "workflow": origin})
        if len(rows) >= shard_size:
            store.commit(rows, [], [])
            rows = []
    if rows:
        store.commit(rows, [], [])
    return n
