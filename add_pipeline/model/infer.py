"""Run a trained decomposer on a photo and return layers that recompose to it exactly.

:func:`load_model` loads a run folder, a checkpoint file, or ``"bundled"`` (the checkpoint
shipped in ``add_pipeline/model/bundled/model.pt``).  :func:`decompose_image` runs the
network at its working size, brings its estimates back to the photo's size, and then
*solves* the layers with :func:`~add_pipeline.core.composite.solve_layer`, back to front,
exactly as the pipeline's assembler does: the network's alpha is the estimate, and each
layer is made exact against the quantised composite below it.  Recomposition is therefore
exact by construction (rounding only: at most half a grey level), whatever the network's
quality; the network decides *how* the photo is split, not *whether* it adds up.

Objects: a slot is an occlusion level (see :mod:`~add_pipeline.model.data`) and may hold
several objects, which never overlap.  A kept slot is split into objects by the connected
components of its confident alpha (``> 0.5``, at least ``min_area`` of the image); every other
pixel of the slot's matte above ``alpha_floor`` (and of its shadow matte above ``shadow_floor``, in a
region that reaches ``shadow_seed``) joins the nearest component.  Each component becomes an object
layer with its own shadow layer directly below.

Targets of the solve: a pixel is owned by the topmost layer whose domain (alpha above
1/255) contains it, and that layer's target there is the photo.  Under an owner, a lower
layer's target is the network's own composite of the layers up to it (its best guess of
what is hidden).  Pixels no layer covers are the photo in the background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold

from add_pipeline.core.composite import opaque, over, solve_layer
from add_pipeline.core.peel import AssembledLayer
from add_pipeline.model.config import TrainConfig
from add_pipeline.model.model import LayerDecomposer

BUNDLED = Path(__file__).resolve().parent / "bundled" / "model.pt"
_DOMAIN_EPS = 1.0 / 255.0


def load_model(source: str | Path = "bundled") -> LayerDecomposer:
    """Load a decomposer in eval mode; its TrainConfig is attached as ``model.train_config``.

    Args:
        source: ``"bundled"``, a run folder (holding ``ckpt.pt`` or ``model.pt``) or a ``.pt`` file
            (a training checkpoint dict or a slim ``{model, config}`` dict).
    Raises:
        FileNotFoundError: nothing to load there (for ``"bundled"``: the package ships no weights yet).
    """
    if str(source) == "bundled":
        path = BUNDLED
        if not path.is_file():
            raise FileNotFoundError(
                f"no bundled model: {path} is missing. Train one (liwi train --data SHARDS --out RUN) and "
                "pass --model RUN, or copy RUN/ckpt.pt (or a slim export) to that path.")
    else:
        path = Path(source)
        if path.is_dir():
            found = [path / n for n in ("ckpt.pt", "model.pt") if (path / n).is_file()]
            if not found:
                raise FileNotFoundError(f"{path} holds neither ckpt.pt nor model.pt")
            path = found[0]
        elif not path.is_file():
            raise FileNotFoundError(f"model {source!r}: no such run folder or checkpoint file")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a decomposer checkpoint (expected a dict with 'model' and 'config')")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = LayerDecomposer(cfg.model)
    model.load_state_dict(ckpt["model"])
    model.eval()
    model.train_config = cfg  # type: ignore[attr-defined]
    return model


def export_slim(run_dir: str | Path, path: str | Path, inference: dict[str, float | bool] | None = None) -> None:
    """Write ``{model, config, step}`` of a run (no optimiser state): what ``bundled/model.pt`` should hold.

    ``inference`` replaces the inference settings in the exported config (those of
    :data:`~add_pipeline.model.config.INFERENCE_FIELDS`: values calibrated after training);
    nothing else may change.
    """
    ckpt = torch.load(Path(run_dir) / "ckpt.pt", map_location="cpu", weights_only=False)
    config = TrainConfig.from_dict(ckpt["config"]).with_inference(**(inference or {}))
    torch.save({"model": ckpt["model"], "config": config.to_dict(), "step": ckpt["step"]}, path)


@torch.no_grad()
def predict(model: LayerDecomposer, rgb: np.ndarray, size: int | None = None,
            flip: bool = False) -> dict[str, np.ndarray]:
    """Network estimates at the photo's size (floats in [0, 1]).

    Args:
        rgb: ``HxWx3 uint8``.
        size: working size (long side); default the model's training size.
        flip: also run the mirrored photo (one batch of two) and average the two estimates,
            mirrored back (test-time augmentation; about twice the network's time).
    Returns:
        ``background`` HxWx3, ``color`` KxHxWx3, ``alpha`` KxHxW, ``shadow`` KxHxW (zeros without
        the shadow branch), ``presence`` K probabilities.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"decompose_image expects an HxWx3 uint8 RGB image, got {got}")
    h, w = rgb.shape[:2]
    s = int(size or model.config.size)
    scale = s / max(h, w)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x = torch.from_numpy(small.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    if flip:
        x = torch.cat([x, x.flip(-1)])  # padding goes right of both, so crop first, then mirror back
    ph, pw = (-sh) % 32, (-sw) % 32
    x = F.pad(x, (0, pw, 0, ph), mode="replicate").to(next(model.parameters()).device)
    pred = model(x)
    k = model.config.slots

    def back(t: torch.Tensor) -> torch.Tensor:
        """``Bx...xHpxWp`` -> the batch mean (mirrored copies mirrored back) at the photo's size, on the CPU."""
        t = t[..., :sh, :sw]
        if flip:
            t = (t[:1] + t[1:].flip(-1)) / 2.0
        t = F.interpolate(t.flatten(0, -4), size=(h, w), mode="bilinear", align_corners=False)
        return t.clamp(0.0, 1.0).cpu()

    shadow = back(pred.shadow[:, :, 0])[0] if pred.shadow is not None else torch.zeros(k, h, w)
    return {
        "background": back(pred.background)[0].permute(1, 2, 0).numpy().astype(np.float64),
        "color": back(pred.color).reshape(k, 3, h, w).permute(0, 2, 3, 1).numpy().astype(np.float64),
        "alpha": back(pred.alpha[:, :, 0])[0].numpy().astype(np.float64),
        "shadow": shadow.numpy().astype(np.float64),
        "presence": torch.sigmoid(pred.presence).mean(dim=0).numpy().astype(np.float64),
    }


def split_objects(alpha: np.ndarray, shadow: np.ndarray, min_area: float, floor: float,
                  shadow_floor: float | None = None,
                  shadow_seed: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split one slot's mattes into objects.

    Args:
        alpha, shadow: ``HxW`` float mattes in [0, 1] of one slot.
        min_area: a component of ``alpha > 0.5`` smaller than this share of the image is dropped.
        floor: alpha values at or below it are set to 0 (the network's faint haze), as is
            the alpha of dropped components.
        shadow_floor: shadow values at or below it are set to 0 (default: ``floor``).
        shadow_seed: hysteresis: a 4-connected region of shadow above ``shadow_floor`` is kept only if
            some pixel of it exceeds ``shadow_seed`` (no effect at or below ``shadow_floor``).
    Returns:
        ``(alpha, shadow)`` per object, ``HxW`` float64, ordered top to bottom of the image by
        their lowest row; the alphas are disjoint, as are the shadows.  Empty when no component passes.
    """
    core = alpha > 0.5
    n, labels, stats, _ = cv2.connectedComponentsWithStats(core.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area * alpha.size]
    if not keep:
        return []
    kept = np.isin(labels, keep)
    # Nearest kept core pixel of every pixel, hence its component.
    _, (iy, ix) = ndimage.distance_transform_edt(~kept, return_indices=True)
    owner = labels[iy, ix]
    a = np.where((alpha > floor) & ~(core & ~kept), alpha, 0.0)  # dropped specks go, not to a neighbour
    s_low = floor if shadow_floor is None else shadow_floor
    s_mask = apply_hysteresis_threshold(shadow, s_low, shadow_seed) if shadow_seed > s_low else shadow > s_low
    s = np.where(s_mask, shadow, 0.0)
    bottom = {i: stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] for i in keep}
    return [(np.where(owner == i, a, 0.0), np.where(owner == i, s, 0.0)) for i in sorted(keep, key=bottom.get)]


def decompose_image(model: LayerDecomposer, rgb: np.ndarray, size: int | None = None,
                    presence_threshold: float | None = None, min_area: float | None = None,
                    alpha_floor: float | None = None, shadow_floor: float | None = None,
                    shadow_seed: float | None = None, flip: bool | None = None) -> list[AssembledLayer]:
    """Decompose a photo into layers that recompose to it (mean <= 1/255, max <= 8/255 guaranteed by the solve).

    Args:
        model: from :func:`load_model` (or any LayerDecomposer; thresholds then default to TrainConfig's).
        rgb: ``HxWx3 uint8`` photo; layers come back at this size.
        size: working size of the network (default: its training size).
        presence_threshold, min_area, alpha_floor, shadow_floor, shadow_seed: the empty-slot test and the object split
            (default: the model's config; see :func:`split_objects`).
        flip: mirror test-time augmentation (default: the model's ``flip_tta``; see :func:`predict`).
    Returns:
        back to front: ``background``; then per object ``i`` its shadow ``obj{i}_shadow`` (parent
        ``obj{i}``, only if it has one) and the object ``obj{i}``; objects of deeper slots first.
        ``rgba`` ``HxWx4 uint8``.
    """
    cfg: TrainConfig = getattr(model, "train_config", None) or TrainConfig(model=model.config)
    thr = cfg.presence_threshold if presence_threshold is None else presence_threshold
    area = cfg.min_area if min_area is None else min_area
    floor = cfg.alpha_floor if alpha_floor is None else alpha_floor
    s_floor = cfg.shadow_floor if shadow_floor is None else shadow_floor
    s_seed = cfg.shadow_seed if shadow_seed is None else shadow_seed
    est = predict(model, rgb, size, flip=cfg.flip_tta if flip is None else flip)
    image = rgb.astype(np.float64) / 255.0
    h, w = rgb.shape[:2]

    # Kept objects and their layers, back to front: (name, kind, parent, alpha, colour or None).
    plan: list[tuple[str, str, str | None, np.ndarray, np.ndarray | None]] = []
    n_obj = 0
    for k in range(model.config.slots):
        if est["presence"][k] <= thr:
            continue
        for a, sh in split_objects(est["alpha"][k], est["shadow"][k], area, floor, s_floor, s_seed):
            name = f"obj{n_obj}"
            n_obj += 1
            if (sh > _DOMAIN_EPS).any():
                plan.append((f"{name}_shadow", "shadow", name, sh, None))
            plan.append((name, "object", None, a, est["color"][k]))
    domains = [p[3] > _DOMAIN_EPS for p in plan]

    # Background: the network's fill where some layer will cover it, the photo everywhere else.
    covered = np.zeros((h, w), bool)
    for d in domains:
        covered |= d
    bg = np.where(covered[..., None], est["background"], image)
    layers = [AssembledLayer("background", "background", opaque(bg), None)]
    below = layers[0].rgba[..., :3].astype(np.float64) / 255.0
    guess = bg.copy()  # the network's float composite of the layers so far
    above = [np.zeros((h, w), bool) for _ in plan]
    for j in range(len(plan) - 2, -1, -1):
        above[j] = above[j + 1] | domains[j + 1]
    for j, (name, kind, parent, a, color) in enumerate(plan):
        c = np.zeros_like(image) if color is None else color
        guess = c * a[..., None] + guess * (1.0 - a[..., None])
        target = np.where(above[j][..., None], guess, image)
        rgba = solve_layer(target, below, a, color, domains[j])
        layers.append(AssembledLayer(name, kind, rgba, parent))
        below = over(rgba, below)
    return layers
