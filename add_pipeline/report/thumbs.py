"""Thumbnails for the report: square tiles (photo, layers on a checkerboard, error map) in one strip.

A sample's tiles are laid side by side in one ``T x (n*T)`` image (a *strip*) and stored as one
lossy WebP: one file per sample instead of one per layer keeps 10,000 samples at 10,000 files,
and the page shows tile ``k`` by shifting the strip (CSS), so a strip is fetched once.

Every array here is ``uint8``: photos ``HxWx3`` RGB, layers ``HxWx4`` straight (not
premultiplied) RGBA, tiles ``TxTx3`` RGB.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

TILE_PX = 144
"""Side of one square tile, in pixels."""

WEBP_QUALITY = 72
"""Lossy WebP quality of the strips (thumbnails only: the shards keep the exact pixels)."""

WEBP_METHOD = 1
"""libwebp effort (0-6): 1 encodes a strip in ~4 ms; 3 and up make it ~15% smaller at 2-5x the time."""

ERROR_FULL_SCALE = 8.0
"""Recomposition error (8-bit levels) shown at full colour: the verifier's default ``recomposition_max``."""

_MATTE = (236, 236, 236)  # tile area outside the canvas
_CHECK = (250, 222)  # checkerboard greys (low contrast: it compresses, and the layer stands out)
_CHECK_PX = 8


def _fit(h: int, w: int, tile: int) -> tuple[int, int, int, int]:
    """``(th, tw, y0, x0)``: the canvas scaled to fit a ``tile`` square (never up), centred."""
    scale = min(tile / max(h, w), 1.0)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    return th, tw, (tile - th) // 2, (tile - tw) // 2


def _blank(tile: int) -> np.ndarray:
    return np.full((tile, tile, 3), _MATTE, np.uint8)


def checkerboard(h: int, w: int) -> np.ndarray:
    """``HxWx3 uint8`` light-grey checkerboard (the usual "transparent" pattern)."""
    yy, xx = np.mgrid[0:h, 0:w]
    on = ((yy // _CHECK_PX + xx // _CHECK_PX) % 2).astype(bool)
    return np.where(on[..., None], np.uint8(_CHECK[1]), np.uint8(_CHECK[0])).repeat(3, axis=2)


def photo_tile(rgb: np.ndarray, tile: int = TILE_PX) -> np.ndarray:
    """A ``tile x tile x 3`` tile of an ``HxWx3 uint8`` photo (area-averaged, centred)."""
    h, w = rgb.shape[:2]
    th, tw, y0, x0 = _fit(h, w, tile)
    out = _blank(tile)
    out[y0:y0 + th, x0:x0 + tw] = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA)
    return out


def alpha_box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)``, half-open, of the pixels of an ``HxW uint8`` alpha that are > 0; None if none."""
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def layer_tile(rgba: np.ndarray, tile: int = TILE_PX) -> np.ndarray:
    """A tile of one full-canvas ``HxWx4 uint8`` layer over a checkerboard.

    Only the box of the layer's visible pixels is resized, premultiplied (so soft edges grow no
    dark or light halo), and composited over the checkerboard at tile resolution; the box lands
    on the tile within half a tile pixel of where it is on the canvas.
    """
    h, w = rgba.shape[:2]
    th, tw, y0, x0 = _fit(h, w, tile)
    out = _blank(tile)
    board = checkerboard(th, tw)
    out[y0:y0 + th, x0:x0 + tw] = board
    box = alpha_box(rgba[..., 3])
    if box is None:
        return out
    by0, by1, bx0, bx1 = box
    sy, sx = th / h, tw / w
    ty0, ty1 = min(int(by0 * sy), th - 1), max(int(by0 * sy) + 1, min(th, round(by1 * sy)))
    tx0, tx1 = min(int(bx0 * sx), tw - 1), max(int(bx0 * sx) + 1, min(tw, round(bx1 * sx)))
    crop = rgba[by0:by1, bx0:bx1]
    size = (tx1 - tx0, ty1 - ty0)
    if crop[..., 3].min() == 255:  # opaque (a background): no premultiplying needed
        small = cv2.resize(np.ascontiguousarray(crop[..., :3]), size, interpolation=cv2.INTER_AREA)
        out[y0 + ty0:y0 + ty1, x0 + tx0:x0 + tx1] = small
        return out
    a = crop[..., 3:4].astype(np.float32) * (1.0 / 255.0)
    prem = np.concatenate([crop[..., :3].astype(np.float32) * a, a], axis=-1)
    small = cv2.resize(prem, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 4)
    under = board[ty0:ty1, tx0:tx1].astype(np.float32)
    mixed = small[..., :3] + under * (1.0 - small[..., 3:4])
    out[y0 + ty0:y0 + ty1, x0 + tx0:x0 + tx1] = np.clip(mixed, 0, 255).round().astype(np.uint8)
    return out


def error_tile(err: np.ndarray, tile: int = TILE_PX) -> np.ndarray:
    """A heat-map tile of a ``HxW float`` per-pixel error in 8-bit levels (``0`` black, ``>=``
    :data:`ERROR_FULL_SCALE` bright yellow, inferno colour map).

    The map is max-pooled before it is shrunk, so a single bad pixel stays visible.
    """
    h, w = err.shape[:2]
    th, tw, y0, x0 = _fit(h, w, tile)
    k = max(1, math.ceil(max(h / th, w / tw)))
    levels = (np.clip(err * (255.0 / ERROR_FULL_SCALE), 0.0, 255.0) + 0.5).astype(np.uint8)
    if k > 1:
        levels = cv2.dilate(levels, np.ones((k, k), np.uint8))
    levels = cv2.resize(levels, (tw, th), interpolation=cv2.INTER_AREA)
    out = _blank(tile)
    out[y0:y0 + th, x0:x0 + tw] = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    return out


def encode_strip(tiles: list[np.ndarray]) -> bytes:
    """Lossy WebP bytes of ``tiles`` (each ``TxTx3 uint8``) side by side, in order."""
    if not tiles:
        raise ValueError("encode_strip needs at least one tile")
    strip = np.concatenate(tiles, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(strip), "RGB").save(buf, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return buf.getvalue()


def write_strip(tiles: list[np.ndarray], path: Path) -> int:
    """Write the strip of ``tiles`` to ``path``; returns its size in bytes."""
    data = encode_strip(tiles)
    path.write_bytes(data)
    return len(data)


SOURCE_MAX_BYTES = 64_000_000
SOURCE_MAX_PIXELS = 64_000_000


def source_tile(source: str, tile: int = TILE_PX) -> tuple[np.ndarray | None, str | None]:
    """A tile of an input file named by a reject row, or ``(None, why not)``.

    The file is read by :func:`add_pipeline.io.images.load_image`: regular files only (a FIFO,
    a device or a folder is refused without blocking), at most :data:`SOURCE_MAX_BYTES` bytes and
    :data:`SOURCE_MAX_PIXELS` pixels.  Anything that goes wrong is the reason returned, never an
    exception: a reject is often a file that does not decode.
    """
    from add_pipeline.io.images import InputError, load_image

    if not source or "://" in source:
        return None, "not a local file"
    try:
        loaded = load_image(source, working_size=max(tile, 16), max_pixels=SOURCE_MAX_PIXELS,
                            max_bytes=SOURCE_MAX_BYTES)
    except InputError as e:
        return None, e.reason
    except Exception as e:  # noqa: BLE001 - an untrusted file: whatever a decoder raises is shown as the reason
        return None, f"{type(e).__name__}: {e}"[:300]
    return photo_tile(loaded.rgb, tile), None
