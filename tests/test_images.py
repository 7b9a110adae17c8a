"""load_image on bad and odd inputs built on the fly, with known answers."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from add_pipeline.io.images import InputError, decode_png, encode_png, load_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(h: int = 40, w: int = 60) -> np.ndarray:
    """``HxWx3 uint8``: red top-left, green top-right, blue bottom-left, white bottom-right."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = RED
    a[: h // 2, w // 2 :] = GREEN
    a[h // 2 :, : w // 2] = BLUE
    a[h // 2 :, w // 2 :] = WHITE
    return a


def save(tmp_path: Path, name: str, im: Image.Image, **kw: object) -> Path:
    p = tmp_path / name
    im.save(p, **kw)
    return p


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def reject_reason(path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_image(path)
    err = info.value
    assert err.source == str(path)
    assert str(err).startswith(f"{path}: ")
    return err.reason


# ---------------------------------------------------------------- failures


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert reject_reason(p) == "empty file"


def test_missing_file(tmp_path: Path) -> None:
    assert reject_reason(tmp_path / "nope.png").startswith("unreadable")


def test_text_with_image_extension(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo\n" * 20)
    assert reject_reason(p).startswith("not an image")


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = buf.tobytes()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    assert reject_reason(p).startswith("truncated or corrupt")


def test_corrupt_png_idat(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = bytearray(png_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    idat = data.find(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    mid = idat + 4 + length // 2
    for k in range(mid, mid + 16):
        data[k] ^= 0xFF
    p = tmp_path / "flipped.png"
    p.write_bytes(bytes(data))
    assert reject_reason(p).startswith("truncated or corrupt")


def with_ihdr_size(png: bytes, w: int, h: int) -> bytes:
    """Rewrite the IHDR width/height of ``png`` and fix the chunk CRC."""
    data = bytearray(png)
    # signature (8) + length (4) + b"IHDR" (4) -> width at 16, height at 20, CRC at 29
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_header_claims_30000_square(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(with_ihdr_size(png_bytes(quadrants()), 30000, 30000))
    assert reject_reason(p).startswith("too large")


def test_header_over_max_pixels_is_checked_before_decode(tmp_path: Path) -> None:
    # 9000x9000 = 81M pixels: under Pillow's own limit, over ours; the data is tiny
    p = tmp_path / "big.png"
    p.write_bytes(with_ihdr_size(png_bytes(quadrants()), 9000, 9000))
    assert reject_reason(p) == "too large: 9000x9000 pixels exceeds max_pixels=64000000"


def test_too_small(tmp_path: Path) -> None:
    p = save(tmp_path, "tiny.png", Image.fromarray(quadrants(10, 40)))
    assert reject_reason(p).startswith("too small: 40x10")


def test_too_thin_after_resize(tmp_path: Path) -> None:
    p = save(tmp_path, "strip.png", Image.fromarray(quadrants(20, 2000)))
    assert reject_reason(p).startswith("too small: 2000x20 becomes 512x5")


def test_data_argument_and_bad_working_size(tmp_path: Path) -> None:
    img = load_image("in-memory.png", data=png_bytes(quadrants()))
    assert img.rgb.shape == (40, 60, 3)
    with pytest.raises(ValueError):
        load_image("x.png", data=png_bytes(quadrants()), working_size=0)


# ---------------------------------------------------------------- odd but valid


def test_plain_rgb_png_is_exact(tmp_path: Path) -> None:
    q = quadrants()
    img = load_image(save(tmp_path, "q.png", Image.fromarray(q)))
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (40, 60, 3)
    np.testing.assert_array_equal(img.rgb, q)
    assert img.original_size == (60, 40)
    assert img.notes == []


def test_grayscale_l(tmp_path: Path) -> None:
    g = np.tile(np.arange(0, 240, 4, dtype=np.uint8), (30, 1))
    img = load_image(save(tmp_path, "g.png", Image.fromarray(g, mode="L")))
    np.testing.assert_array_equal(img.rgb, np.repeat(g[:, :, None], 3, axis=2))
    assert any("grayscale" in n for n in img.notes)


def test_bilevel_and_la(tmp_path: Path) -> None:
    bw = Image.fromarray(quadrants()[:, :, 0] > 0).convert("1")
    img = load_image(save(tmp_path, "bw.png", bw))
    assert set(np.unique(img.rgb)) <= {0, 255}
    la = Image.fromarray(np.dstack([np.full((20, 20), 0, np.uint8), np.full((20, 20), 0, np.uint8)]), mode="LA")
    img = load_image(save(tmp_path, "la.png", la))
    np.testing.assert_array_equal(img.rgb, np.full((20, 20, 3), 255, np.uint8))  # transparent -> white


def test_palette_without_and_with_transparency(tmp_path: Path) -> None:
    q = quadrants()
    pal = Image.fromarray(q).quantize(colors=4)
    img = load_image(save(tmp_path, "p.png", pal))
    np.testing.assert_array_equal(img.rgb, q)
    assert "converted from palette" in img.notes

    index_of_red = int(np.asarray(pal)[0, 0])
    img = load_image(save(tmp_path, "pt.png", pal, transparency=index_of_red))
    assert tuple(img.rgb[0, 0]) == WHITE  # red quadrant was made transparent
    assert tuple(img.rgb[0, -1]) == GREEN
    assert "flattened RGBA over white" in img.notes


def test_rgba_flattened_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200  # reddish
    rgba[:, :10, 3] = 255  # left half opaque
    rgba[:, 10:, 3] = 0  # right half transparent
    rgba[0, 0, 3] = 128  # one half-transparent pixel
    img = load_image(save(tmp_path, "a.png", Image.fromarray(rgba, mode="RGBA")))
    assert tuple(img.rgb[5, 5]) == (200, 0, 0)
    assert tuple(img.rgb[5, 15]) == WHITE
    expected = np.rint(np.array([200, 0, 0]) * 128 / 255 + 255 * (1 - 128 / 255))
    np.testing.assert_array_equal(img.rgb[0, 0], expected)


def test_16bit_grayscale_png(tmp_path: Path) -> None:
    g = np.tile(np.array([0, 257 * 100, 65535, 1000], np.uint16), (20, 5))
    p = tmp_path / "g16.png"
    cv2.imwrite(str(p), g)
    img = load_image(p)
    assert img.rgb.dtype == np.uint8
    assert [int(v) for v in img.rgb[0, :4, 0]] == [0, 100, 255, 4]
    assert "16-bit scaled to 8-bit" in img.notes


def test_16bit_rgb_png_rounds_properly(tmp_path: Path) -> None:
    # Pillow reads 48-bit PNG as RGB keeping the high byte (1000 -> 3); we round (-> 4)
    bgr = np.zeros((20, 20, 3), np.uint16)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 65535, 40000, 1000  # blue, green, red
    p = tmp_path / "rgb16.png"
    cv2.imwrite(str(p), bgr)
    img = load_image(p)
    assert tuple(int(v) for v in img.rgb[0, 0]) == (4, 156, 255)
    assert "16-bit scaled to 8-bit" in img.notes


def test_16bit_rgba_png(tmp_path: Path) -> None:
    bgra = np.zeros((20, 20, 4), np.uint16)
    bgra[..., 2] = 65535  # red
    bgra[:, :10, 3] = 65535
    p = tmp_path / "rgba16.png"
    cv2.imwrite(str(p), bgra)
    img = load_image(p)
    assert tuple(img.rgb[0, 0]) == RED and tuple(img.rgb[0, 15]) == WHITE


def test_int32_mode_i(tmp_path: Path) -> None:
    arr = np.tile(np.array([0, 257 * 10, 65535], np.int32), (20, 6))
    img = load_image(save(tmp_path, "i.tif", Image.fromarray(arr, mode="I")))
    assert [int(v) for v in img.rgb[0, :3, 1]] == [0, 10, 255]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    img = load_image(save(tmp_path, "c.jpg", cmyk, quality=95))
    assert "converted from CMYK" in img.notes
    r, g, b = (int(v) for v in img.rgb[16, 16])
    assert r > 240 and g < 15 and b < 15


def test_exif_orientation_6_comes_out_upright(tmp_path: Path) -> None:
    upright = quadrants(40, 60)  # what the viewer should see (W=60, H=40)
    # a camera held sideways stores the pixels rotated 90 deg counter-clockwise and tags 6
    stored = np.ascontiguousarray(np.rot90(upright, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    p = save(tmp_path, "rot.jpg", Image.fromarray(stored), exif=exif, quality=95)
    img = load_image(p)
    assert img.rgb.shape == (40, 60, 3)
    assert img.original_size == (60, 40)
    assert "exif-rotated 90 (orientation 6)" in img.notes
    for (y, x), colour in {(5, 5): RED, (5, 55): GREEN, (35, 5): BLUE, (35, 55): WHITE}.items():
        assert np.abs(img.rgb[y, x].astype(int) - colour).max() < 20, (y, x, img.rgb[y, x])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = save(tmp_path, f"o{orientation}.png", Image.fromarray(quadrants(20, 36)), exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    np.testing.assert_array_equal(load_image(p).rgb, expected)


def test_multi_frame_gif_takes_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (24, 24), c) for c in (RED, BLUE, GREEN)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    img = load_image(p)
    assert tuple(img.rgb[10, 10]) == RED
    assert any(n.startswith("multi-frame (3 frames)") for n in img.notes)


def test_big_image_resized_to_working_size(tmp_path: Path) -> None:
    q = quadrants(768, 1024)
    img = load_image(save(tmp_path, "big.png", Image.fromarray(q)), working_size=512)
    assert img.rgb.shape == (384, 512, 3)
    assert img.original_size == (1024, 768)
    assert "resized 1024x768 -> 512x384" in img.notes
    assert tuple(img.rgb[10, 10]) == RED and tuple(img.rgb[370, 500]) == WHITE


def test_small_image_is_never_upscaled(tmp_path: Path) -> None:
    img = load_image(save(tmp_path, "s.png", Image.fromarray(quadrants(100, 200))), working_size=512)
    assert img.rgb.shape == (100, 200, 3)


# ---------------------------------------------------------------- PNG codec


@pytest.mark.parametrize("channels", [3, 4])
def test_png_round_trip(channels: int) -> None:
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (17, 23, channels), dtype=np.uint8)
    data = encode_png(arr)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(decode_png(data), arr)
    # the channel order is RGB(A), as Pillow reads it
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), arr)


def test_png_codec_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        decode_png(b"not a png")


def test_icc_profiles(tmp_path: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = load_image(save(tmp_path, "srgb.png", Image.fromarray(quadrants()), icc_profile=srgb))
    np.testing.assert_array_equal(img.rgb, quadrants())  # sRGB profile: untouched
    assert img.notes == []
    img = load_image(save(tmp_path, "junk.png", Image.fromarray(quadrants()), icc_profile=b"garbage"))
    np.testing.assert_array_equal(img.rgb, quadrants())
    assert any(n.startswith("ICC profile ignored") for n in img.notes)
