"""Decode one input photo into a working-size ``HxWx3 uint8`` RGB array, or say why not.

:func:`load_image` is the single entry point from bytes on disk to pixels.  It never
trusts the file: the pixel count is checked from the header before anything is
decoded, a truncated or corrupt file fails on the full decode (Pillow's
``LOAD_TRUNCATED_IMAGES`` stays off), and every failure is an :class:`InputError`
whose ``reason`` starts with a short fixed prefix (``"empty file"``, ``"unreadable"``,
``"not an image"``, ``"truncated or corrupt"``, ``"too large"``, ``"too small"``,
``"unsupported"``) so rejects can be grouped by reason.

Odd but valid inputs are normalised and the fix is recorded in
:attr:`LoadedImage.notes`: grayscale, palette, alpha (flattened over white), 16-bit
and 32-bit samples, CMYK, embedded ICC profiles, EXIF orientation, multi-frame files.

:func:`encode_png` / :func:`decode_png` are the PNG codec used for layer images in shards.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_SIDE = 16
"""Inputs (and their working-size versions) must be at least this many pixels on each side."""

PNG_COMPRESSION = 1
"""zlib level for :func:`encode_png`: layers are large and written once, so favour speed."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# EXIF orientation tag value -> (how to make the pixels upright, label for the note).
# Same table as Pillow's ImageOps.exif_transpose, applied to arrays so that the
# 16-bit path (decoded by OpenCV) is oriented exactly like the Pillow path.
_ORIENTATION_TAG = 0x0112
_ORIENTATIONS: dict[int, str] = {
    2: "mirrored",
    3: "rotated 180",
    4: "flipped",
    5: "transposed",
    6: "rotated 90",
    7: "transversed",
    8: "rotated 270",
}


class InputError(Exception):
    """An input file that cannot become a working image.

    Attributes:
        source: the file (path string) the error is about.
        reason: short, machine-friendly text starting with a fixed prefix such as
            ``"empty file"`` or ``"truncated or corrupt: ..."``.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        # keep both attributes when the error crosses a process boundary (pickling)
        return (type(self), (self.source, self.reason))


@dataclass(frozen=True)
class LoadedImage:
    """A decoded input photo.

    Attributes:
        rgb: ``HxWx3 uint8`` RGB in [0, 255], upright, long side <= the working size
            (never upscaled).
        original_size: ``(width, height)`` of the full-resolution image after EXIF
            orientation, i.e. as the photo is meant to be viewed.
        notes: human-readable record of every normalisation applied, in order.
    """

    rgb: np.ndarray
    original_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def load_image(
    source: str | Path,
    data: bytes | None = None,
    working_size: int = 512,
    max_pixels: int = 64_000_000,
    max_bytes: int = 256_000_000,
) -> LoadedImage:
    """Decode ``source`` (or ``data``, its bytes, when given) into a :class:`LoadedImage`.

    Args:
        source: path of the file; used to read the bytes when ``data`` is ``None`` and
            always used to name the file in errors.
        data: the file's bytes, if the caller already has them.
        working_size: the long side of the returned image is at most this (area
            interpolation); smaller images keep their size.
        max_pixels: images whose header declares more than this many pixels are
            rejected before decoding.
        max_bytes: files larger than this are rejected before reading; only regular files
            are read (a FIFO, a device or a folder is rejected at once).

    Raises:
        InputError: the input cannot be used; ``reason`` says why.
        ValueError: ``working_size`` or ``max_pixels`` is not a positive integer.
    """
    if working_size < MIN_SIDE:
        raise ValueError(f"working_size must be >= {MIN_SIDE}, got {working_size}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    name = str(source)
    if data is None:
        data = _read_bytes(name, max_bytes)
    if len(data) == 0:
        raise InputError(name, "empty file")

    notes: list[str] = []
    im = _open(name, data)
    w, h = im.size
    if w * h > max_pixels:
        raise InputError(name, f"too large: {w}x{h} pixels exceeds max_pixels={max_pixels}")
    if min(w, h) < MIN_SIDE:
        raise InputError(name, f"too small: {w}x{h}, need at least {MIN_SIDE} px on each side")

    n_frames = _frame_count(name, im)
    if n_frames > 1:
        notes.append(f"multi-frame ({n_frames} frames), took the first")
    _decode(name, im)

    if _is_16bit(im, data):
        arr = _decode_16bit_with_cv2(name, data)
        notes.append("16-bit scaled to 8-bit")
    else:
        arr = _to_rgb_or_rgba(name, im, notes)
    if arr.shape[2] == 4:
        arr = _flatten_over_white(arr, notes)

    arr = _apply_orientation(name, im, arr, notes)
    full_h, full_w = arr.shape[:2]
    arr = _resize_to_working(name, arr, working_size, notes)
    return LoadedImage(rgb=np.ascontiguousarray(arr), original_size=(full_w, full_h), notes=notes)


# ---------------------------------------------------------------- decoding steps


def _read_bytes(name: str, max_bytes: int) -> bytes:
    """The bytes of regular file ``name``, at most ``max_bytes`` of them.

    Opened non-blocking, so a FIFO named as an input is refused at once instead of waiting
    forever for a writer; devices (``/dev/zero``), sockets and folders are refused too.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:  # missing, permission denied, a dangling link, ...
        raise InputError(name, f"unreadable: {e.strerror or type(e).__name__}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "a socket")
            raise InputError(name, f"not a regular file ({kind})")
        if st.st_size > max_bytes:
            raise InputError(name, f"too large: {st.st_size} bytes exceeds max_bytes={max_bytes}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise InputError(name, f"unreadable: {e.strerror or type(e).__name__}") from e
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while we read it
        raise InputError(name, f"too large: more than max_bytes={max_bytes} bytes")
    return data


def _open(name: str, data: bytes) -> Image.Image:
    """Parse the header only (Pillow decodes lazily)."""
    try:
        return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(name, f"too large: {e}") from e
    except UnidentifiedImageError as e:
        raise InputError(name, f"not an image: unrecognised format ({len(data)} bytes)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # a recognised signature whose header is broken
        raise InputError(name, f"truncated or corrupt: {e}") from e


def _frame_count(name: str, im: Image.Image) -> int:
    """Number of frames, without failing on a broken later frame (only frame 0 is used)."""
    try:
        if not getattr(im, "is_animated", False):
            return 1
        n = int(getattr(im, "n_frames", 1))
        im.seek(0)
        return n
    except (OSError, SyntaxError, ValueError, EOFError):
        try:
            im.seek(0)
        except (OSError, EOFError, ValueError) as e:
            raise InputError(name, f"truncated or corrupt: {e}") from e
        return 2


def _decode(name: str, im: Image.Image) -> None:
    """Fully decode frame 0; a truncated or corrupt file fails here."""
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(name, f"too large: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise InputError(name, f"truncated or corrupt: {e}") from e


def _is_16bit(im: Image.Image, data: bytes) -> bool:
    """True for 16-bit-per-sample colour files that Pillow would silently truncate to 8 bits.

    Pillow reads 48/64-bit PNG and TIFF as ``RGB``/``RGBA`` by keeping the high byte;
    OpenCV decodes them at full depth so they can be rounded properly.  16-bit
    grayscale (``I;16*``/``I`` modes) is handled by :func:`_to_rgb_or_rgba`.
    """
    if im.mode not in ("RGB", "RGBA", "LA"):
        return False
    if im.format == "PNG" and data[:8] == _PNG_SIGNATURE and len(data) > 24:
        return data[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
        if isinstance(bits, tuple):
            return any(b == 16 for b in bits)
        return bits == 16
    return False


def _decode_16bit_with_cv2(name: str, data: bytes) -> np.ndarray:
    """``HxWx3`` or ``HxWx4 uint8`` RGB(A) from a 16-bit file, rounded (v / 257)."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(name, "truncated or corrupt: OpenCV could not decode the 16-bit data")
    try:
        arr = _scale_to_uint8(arr)
    except TypeError as e:
        raise InputError(name, f"unsupported: {e}") from e
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    if arr.shape[2] == 2:  # gray + alpha
        rgb = cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
        return np.dstack([rgb, arr[:, :, 1]])
    raise InputError(name, f"unsupported: {arr.shape[2]} channels")


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map 16-bit [0, 65535] to [0, 255] with rounding; uint8 passes through."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise TypeError(f"expected uint8 or uint16 samples, got {arr.dtype}")


def _to_rgb_or_rgba(name: str, im: Image.Image, notes: list[str]) -> np.ndarray:
    """``HxWx3`` RGB or ``HxWx4`` RGBA ``uint8`` from any Pillow mode, noting conversions."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(_apply_icc(im, notes))
    if mode in ("RGBA", "RGBa", "RGBX"):
        if mode == "RGBX":
            return np.asarray(im.convert("RGB"))
        return np.asarray(im.convert("RGBA"))
    if mode in ("L", "1"):
        notes.append(f"converted from grayscale ({mode})")
        return np.asarray(im.convert("RGB"))
    if mode in ("LA", "La"):
        notes.append(f"converted from grayscale with alpha ({mode})")
        return np.asarray(im.convert("RGBA"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        notes.append("converted from palette" + (" with transparency" if has_alpha else ""))
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if mode == "CMYK":
        notes.append("converted from CMYK")
        return np.asarray(_apply_icc(im, notes))
    if mode.startswith("I;16"):
        notes.append("16-bit scaled to 8-bit")
        gray = _scale_to_uint8(np.asarray(im).astype(np.uint16))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        gray = _scale_wide_gray(np.asarray(im), mode, notes)
        return np.repeat(gray[:, :, None], 3, axis=2)
    try:
        rgb = im.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(name, f"unsupported: image mode {mode}") from e
    notes.append(f"converted from {mode}")
    return np.asarray(rgb)


def _scale_wide_gray(arr: np.ndarray, mode: str, notes: list[str]) -> np.ndarray:
    """``HxW uint8`` from 32-bit integer (``I``) or float (``F``) grayscale."""
    a = arr.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode == "I" and lo >= 0 and hi <= 65535:
        notes.append("16-bit scaled to 8-bit")
        return _scale_to_uint8(arr.astype(np.uint16))
    if mode == "F" and lo >= 0 and hi <= 1:
        notes.append("float grayscale [0, 1] scaled to 8-bit")
        return np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    notes.append(f"{mode} grayscale rescaled from [{lo:g}, {hi:g}] to 8-bit")
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip(np.rint((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _apply_icc(im: Image.Image, notes: list[str]) -> Image.Image:
    """Convert an ``RGB`` or ``CMYK`` image to ``RGB``, through its ICC profile when it has a non-sRGB one.

    Without a profile (or with an sRGB one) ``RGB`` passes through and ``CMYK`` uses
    Pillow's plain conversion (which undoes Adobe's inverted CMYK JPEGs).
    """
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms  # optional part of Pillow (littlecms)
        except ImportError:
            notes.append("ICC profile ignored (Pillow built without ImageCms)")
        else:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                is_srgb = "srgb" in ImageCms.getProfileDescription(src).lower().replace(" ", "")
                if not is_srgb:
                    dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
                    out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
                    if out is not None:
                        notes.append("converted to sRGB with embedded ICC profile")
                        return out
            except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
                notes.append(f"ICC profile ignored ({e})")
    return im if im.mode == "RGB" else im.convert("RGB")


def _flatten_over_white(rgba: np.ndarray, notes: list[str]) -> np.ndarray:
    """``HxWx3 uint8``: straight-alpha ``rgba`` composited over white."""
    alpha = rgba[:, :, 3]
    if alpha.min() == 255:
        notes.append("dropped opaque alpha channel")
        return rgba[:, :, :3]
    notes.append("flattened RGBA over white")
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    out = rgba[:, :, :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _apply_orientation(name: str, im: Image.Image, arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """Make ``arr`` (``HxWxC``) upright according to the EXIF orientation tag of ``im``."""
    try:
        tag = im.getexif().get(_ORIENTATION_TAG, 1)
        orientation = int(tag)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError) as e:
        notes.append(f"EXIF unreadable, orientation not applied ({type(e).__name__})")
        return arr
    if orientation not in _ORIENTATIONS:
        return arr  # 1 (upright) or an invalid value, which viewers also ignore
    notes.append(f"exif-{_ORIENTATIONS[orientation]} (orientation {orientation})")
    if orientation == 2:
        out = arr[:, ::-1]
    elif orientation == 3:
        out = arr[::-1, ::-1]
    elif orientation == 4:
        out = arr[::-1]
    elif orientation == 5:
        out = arr.transpose(1, 0, 2)
    elif orientation == 6:
        out = np.rot90(arr, k=-1)  # 90 degrees clockwise
    elif orientation == 7:
        out = arr[::-1, ::-1].transpose(1, 0, 2)
    else:  # 8
        out = np.rot90(arr, k=1)  # 90 degrees counter-clockwise
    return np.ascontiguousarray(out)


def _resize_to_working(name: str, arr: np.ndarray, working_size: int, notes: list[str]) -> np.ndarray:
    """Shrink so the long side is ``working_size`` (area interpolation); never upscale."""
    h, w = arr.shape[:2]
    long_side = max(w, h)
    if long_side <= working_size:
        return arr
    scale = working_size / long_side
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if min(nw, nh) < MIN_SIDE:
        raise InputError(
            name,
            f"too small: {w}x{h} becomes {nw}x{nh} at working_size={working_size}, "
            f"need at least {MIN_SIDE} px on each side",
        )
    notes.append(f"resized {w}x{h} -> {nw}x{nh}")
    return cv2.resize(arr, (nw, nh), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- PNG codec for layers


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of an ``HxWx3`` RGB or ``HxWx4`` RGBA ``uint8`` array (fast compression).

    Raises:
        ValueError: ``arr`` is not ``HxWx3`` / ``HxWx4`` ``uint8``.
    """
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        got = f"{arr.shape} {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"encode_png expects HxWx3 or HxWx4 uint8, got {got}")
    code = cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, code), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise ValueError(f"OpenCV failed to encode a {arr.shape} array as PNG")
    return buf.tobytes()


WEBP_MAX_SIDE = 16383
"""Largest width or height WebP can store; :func:`encode_webp` falls back to PNG above it."""


def encode_webp(arr: np.ndarray, method: int = 1, effort: int = 0) -> bytes:
    """Lossless WebP bytes of an ``HxWx3`` RGB or ``HxWx4`` RGBA ``uint8`` array (PNG when a side
    exceeds :data:`WEBP_MAX_SIDE`).

    Exact: colour is kept under alpha 0 too (libwebp's ``exact``). ``method`` (0-6) and ``effort``
    (Pillow's lossless ``quality``, 0-100) trade encode time for size, never pixels; the defaults
    were chosen by ``bench/shard_bytes.py`` (``bench/results/shards.md``).

    Raises:
        ValueError: ``arr`` is not ``HxWx3`` / ``HxWx4`` ``uint8``.
    """
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        got = f"{arr.shape} {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"encode_webp expects HxWx3 or HxWx4 uint8, got {got}")
    if max(arr.shape[:2]) > WEBP_MAX_SIDE:
        return encode_png(arr)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), "RGBA" if arr.shape[2] == 4 else "RGB").save(
        buf, "WEBP", lossless=True, exact=True, method=int(method), quality=int(effort))
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """``HxWx3`` RGB or ``HxWx4`` RGBA ``uint8`` from PNG (or WebP, or any format OpenCV reads) bytes.

    Grayscale PNGs come back as RGB (or RGBA with their alpha); 16-bit PNGs are
    rounded to 8 bits.

    Raises:
        ValueError: the bytes are not a decodable PNG.
    """
    if not data:
        raise ValueError("decode_png got no bytes")
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"decode_png could not decode {len(data)} bytes as an image")
    arr = _scale_to_uint8(arr)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.shape[2] == 2:
        return np.dstack([cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB), arr[:, :, 1]])
    if arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
