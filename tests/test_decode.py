"""decode_image: every colour mode becomes the right 8-bit RGB, and bad files fail with a path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitbench.data.decode import decode_image, to_rgb
from vitbench.errors import BadImageError

WHITE = np.array([255, 255, 255])


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def _noise(height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _decoded(path_or_bytes) -> np.ndarray:
    image = decode_image(path_or_bytes)
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def _jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


# --- valid files ---------------------------------------------------------------------------


def test_png_round_trips_exactly(tmp_path):
    pixels = _noise()
    path = _save(Image.fromarray(pixels), tmp_path / "x.png")
    np.testing.assert_array_equal(_decoded(path), pixels)


def test_jpeg_decodes_close_to_the_original(tmp_path):
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, :16] = (200, 30, 40)
    pixels[:, 16:] = (20, 60, 210)
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg_bytes(Image.fromarray(pixels), quality=95))
    decoded = _decoded(path)
    assert decoded.shape == (32, 32, 3)
    assert np.abs(decoded[4:-4, 2:12] - pixels[4:-4, 2:12]).max() <= 8


def test_bytes_and_path_decode_the_same(tmp_path):
    path = _save(Image.fromarray(_noise()), tmp_path / "x.png")
    np.testing.assert_array_equal(_decoded(path.read_bytes()), _decoded(str(path)))


def test_result_is_independent_of_the_file(tmp_path):
    path = _save(Image.fromarray(_noise()), tmp_path / "x.png")
    image = decode_image(path)
    path.unlink()
    assert image.getpixel((0, 0)) == tuple(_noise()[0, 0])


# --- bad files -------------------------------------------------------------------------------


def _assert_bad(path: Path, reason: str) -> None:
    with pytest.raises(BadImageError) as caught:
        decode_image(path)
    message = str(caught.value)
    assert str(path) in message and reason in message and "\n" not in message
    assert caught.value.path == str(path)


def test_zero_byte_file_is_bad(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _assert_bad(path, "empty")


def test_truncated_jpeg_is_bad(tmp_path):
    data = _jpeg_bytes(Image.fromarray(_noise(128, 128)), quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    _assert_bad(path, "truncated")


def test_truncated_png_is_bad(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_noise(128, 128)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(BadImageError, match="cut.png"):
        decode_image(path)


def test_garbage_is_bad(tmp_path):
    path = tmp_path / "garbage.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_bad(path, "not an image")


def test_missing_file_is_bad(tmp_path):
    _assert_bad(tmp_path / "nope.png", "not found")


def test_bytes_errors_name_the_source():
    with pytest.raises(BadImageError, match=r"ds/train\[3\]"):
        decode_image(b"not an image", source="ds/train[3]")


# --- colour modes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmyk", "rgb"),
    [
        ((0, 255, 255, 0), (255, 0, 0)),
        ((255, 0, 255, 0), (0, 255, 0)),
        ((255, 255, 0, 0), (0, 0, 255)),
        ((0, 0, 0, 0), (255, 255, 255)),
        ((0, 0, 0, 255), (0, 0, 0)),
    ],
)
def test_cmyk_jpeg_becomes_rgb(tmp_path, cmyk, rgb):
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(_jpeg_bytes(Image.new("CMYK", (16, 16), cmyk), quality=95))
    with Image.open(path) as raw:  # PIL writes Adobe (inverted) CMYK: the tricky case
        assert raw.mode == "CMYK" and "adobe" in raw.info
    assert np.abs(_decoded(path) - np.array(rgb)).max() <= 6


def test_16bit_grey_png_divides_by_257(tmp_path):
    gradient = np.linspace(0, 65535, 32 * 40).round().astype(np.uint16).reshape(32, 40)
    path = _save(Image.fromarray(gradient), tmp_path / "grey16.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    decoded = _decoded(path)
    expected = np.floor(gradient / 257 + 0.5).astype(int)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], expected)
    assert decoded.min() == 0 and decoded.max() == 255


def test_big_endian_16bit_and_32bit_int_grey():
    values = np.array([[0, 257, 1000, 65535]])
    big_endian = Image.frombytes("I;16B", (4, 1), values.astype(">u2").tobytes())
    as_int32 = Image.fromarray(values.astype(np.int32))
    for image in (big_endian, as_int32):
        np.testing.assert_array_equal(np.asarray(to_rgb(image))[0, :, 0], [0, 1, 4, 255])


def test_int_grey_outside_16bit_range_is_stretched():
    image = Image.fromarray(np.array([[-50, 0, 200]], dtype=np.int32))
    np.testing.assert_array_equal(np.asarray(to_rgb(image))[0, :, 1], [0, 51, 255])


def test_float_grey_is_scaled(tmp_path):
    unit = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    path = _save(Image.fromarray(unit), tmp_path / "float.tif")
    np.testing.assert_array_equal(_decoded(path)[0, :, 2], [0, 64, 255])
    wide = Image.fromarray(np.array([[-2.0, 0.0, 2.0, np.nan]], dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(to_rgb(wide))[0, :, 0], [0, 128, 255, 128])


def test_rgba_composites_onto_white(tmp_path):
    colour = np.array([200, 40, 10])
    rgba = np.zeros((4, 3, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[0, :, 3] = 0  # transparent: the stored red must not show
    rgba[1, :, 3] = 255
    rgba[2:, :, 3] = 100
    path = _save(Image.fromarray(rgba), tmp_path / "rgba.png")
    decoded = _decoded(path)
    np.testing.assert_array_equal(decoded[0], np.tile(WHITE, (3, 1)))
    np.testing.assert_array_equal(decoded[1], np.tile(colour, (3, 1)))
    blended = colour * 100 / 255 + WHITE * (1 - 100 / 255)
    assert np.abs(decoded[2:] - blended).max() <= 1


def test_palette_with_transparency_composites_onto_white(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    palette_image = Image.frombytes("P", (3, 2), indices.tobytes())
    palette_image.putpalette([0, 0, 0, 10, 200, 30, 90, 20, 220] + [0] * (3 * 253))
    path = _save(palette_image, tmp_path / "palette.png", transparency=0)
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    decoded = _decoded(path)
    lookup = np.array([WHITE, [10, 200, 30], [90, 20, 220]])
    np.testing.assert_array_equal(decoded, lookup[indices])


def test_palette_without_transparency(tmp_path):
    palette_image = Image.frombytes("P", (2, 1), bytes([0, 1]))
    palette_image.putpalette([5, 6, 7, 250, 0, 100] + [0] * (3 * 254))
    path = _save(palette_image, tmp_path / "p.gif")
    np.testing.assert_array_equal(_decoded(path)[0], [[5, 6, 7], [250, 0, 100]])


def test_grey_with_alpha_composites_onto_white(tmp_path):
    grey, alpha = np.array([[80, 80]], np.uint8), np.array([[0, 255]], np.uint8)
    la = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)])
    path = _save(la, tmp_path / "la.png")
    np.testing.assert_array_equal(_decoded(path)[0], [[255] * 3, [80] * 3])


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_and_bilevel_become_rgb(tmp_path, mode):
    grey = np.array([[0, 255, 0], [255, 255, 0]], dtype=np.uint8)
    if mode == "L":
        grey[0, 1] = 123
    path = _save(Image.fromarray(grey).convert(mode), tmp_path / f"{mode}.png")
    decoded = _decoded(path)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], grey)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high, left half red, right half blue. Orientation 6 means "rotate
    # 90 degrees clockwise to display": 20 wide x 40 high, red on top.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (230, 20, 20)
    pixels[:, 20:] = (20, 20, 230)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_bytes(Image.fromarray(pixels), quality=95, exif=exif))
    decoded = _decoded(path)
    expected = np.rot90(pixels, k=-1).astype(int)
    assert decoded.shape == expected.shape == (40, 20, 3)
    assert np.abs(decoded - expected).mean() < 4
    assert decoded[5, 10, 0] > 200 and decoded[35, 10, 2] > 200
