"""Decode any image file into a fully loaded RGB PIL image, or fail with `BadImageError`.

Real datasets hold zero-byte files, truncated downloads, CMYK JPEGs, 16-bit PNGs and
transparent palettes. Every loader goes through `decode_image`, so one set of rules decides
what a pixel is and which files are bad.

Truncated files are bad: we never set `ImageFile.LOAD_TRUNCATED_IMAGES`, because the missing
part would be filled with grey and the encoder would be scored on pixels that never existed.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitbench.errors import BadImageError

# Transparent pixels are composited onto white. The colour stored under a fully transparent
# pixel is arbitrary (often black, sometimes leftover paint), so dropping alpha would show the
# model whatever the encoder happened to leave there; white is how the image is displayed.
BACKGROUND = (255, 255, 255)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_UINT16_MAX = 65535


def decode_image(data: str | os.PathLike[str] | bytes, source: str | None = None) -> Image.Image:
    """Decode an image file (path or encoded bytes) into an RGB image.

    Applies the EXIF orientation and converts every colour mode to 8-bit RGB (see `to_rgb`).

    Args:
        data: path of an image file, or its encoded bytes.
        source: where the image comes from, for error messages; defaults to the path.

    Returns:
        A fully loaded RGB image, independent of any open file.

    Raises:
        BadImageError: the file is missing, empty, truncated, corrupt or not an image.
    """
    if source is None:
        source = "<bytes>" if isinstance(data, bytes) else os.fspath(data)
    raw = data if isinstance(data, bytes) else _read(data, source)
    if not raw:
        raise BadImageError(source, "empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except UnidentifiedImageError:
        raise BadImageError(source, "not an image in a format PIL can read") from None
    except Image.DecompressionBombError as error:
        raise BadImageError(source, _one_line(error)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports truncation and corrupt streams with these, depending on the codec.
        what = "truncated file" if "truncated" in str(error).lower() else "corrupt data"
        raise BadImageError(source, f"{what} ({_one_line(error)})") from None
    return to_rgb(_apply_orientation(image), source)


def to_rgb(image: Image.Image, source: str = "<image>") -> Image.Image:
    """Convert a loaded image of any PIL mode to 8-bit RGB.

    - 16/32-bit integer grey ('I;16*', 'I'): values in 0..65535 are the 16-bit range and map
      to 0..255 by dividing by 257 (65535 / 255); other ranges are stretched min..max.
    - float grey ('F'): values in [0, 1] scale by 255; other ranges are stretched min..max.
    - alpha ('RGBA', 'LA', 'PA', palettes or grey with a transparent colour): composited onto
      white (see `BACKGROUND`).
    - everything else ('L', '1', 'P', 'CMYK', 'YCbCr', ...): PIL's own conversion, which
      handles Adobe's inverted CMYK JPEGs.

    Args:
        image: a loaded PIL image.
        source: where it comes from, for error messages.

    Returns:
        An RGB image (`image` itself when it already is one).

    Raises:
        BadImageError: a mode PIL cannot convert to RGB.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _INT_MODES:
        return _grey_to_rgb(_int_to_uint8(np.asarray(image)))
    if image.mode == "F":
        return _grey_to_rgb(_float_to_uint8(np.asarray(image)))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise BadImageError(source, f"unsupported colour mode {image.mode!r}") from None


def _read(path: str | os.PathLike[str], source: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise BadImageError(source, "file not found") from None
    except OSError as error:
        raise BadImageError(source, f"cannot read file ({_one_line(error)})") from None


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        # Broken EXIF is common in camera files whose pixels are fine; keep them as stored.
        return image


def _int_to_uint8(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    if values.size and (values.min() < 0 or values.max() > _UINT16_MAX):
        return _stretch(values)
    return np.round(values / 257.0).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        return _stretch(values)
    return np.round(values * 255.0).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((values - low) * scale).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(grey)).convert("RGB")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] or type(error).__name__
