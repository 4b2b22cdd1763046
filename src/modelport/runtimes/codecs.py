"""Declarative pre- and post-processing: encoded images in, classes and probabilities out.

Pure functions on bytes and arrays; they know nothing of JSON or HTTP.
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
from PIL import Image, PngImagePlugin

from modelport.errors import invalid
from modelport.runtimes.metadata import ImageSpec

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What Pillow's parsers raise on bytes that are cut short or corrupt: its own `Image.open` takes
# SyntaxError, IndexError, TypeError and struct.error from a plugin to mean "not this format";
# past that, OSError (UnidentifiedImageError, "Truncated File Read"), EOFError and ValueError.
# A PNG cut in its IHDR was an OSError, and a 500 (as was a JPEG's 3-byte magic, in `_accepts`).
_BROKEN = (OSError, EOFError, ValueError, SyntaxError, IndexError, TypeError, struct.error)

# The formats the README documents. Pillow would otherwise try each of its ~45 plugins (TIFF,
# PSD, FITS, ...), each a parser of untrusted bytes that nobody here tests or needs.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
READ_NAMES = "PNG, JPEG, GIF, BMP, WebP"

# MNIST's recipe: the digit's bounding box is scaled to fit 20x20 inside the 28x28 frame.
_MNIST_BOX_FRACTION = 20 / 28


def open_image(data: bytes, spec: ImageSpec) -> Image.Image:
    """Read the header only (Pillow opens lazily); the pixel count is checked before anything
    is decoded, here against the image spec's `max_pixels` and by the caller against the
    request's limit (runtimes/limits.py)."""
    if not data:
        raise invalid("empty image: no bytes to decode")
    try:
        # PNG, what browsers and most clients send, skips Pillow's format detection.
        if data.startswith(_PNG_MAGIC):
            image: Image.Image = PngImagePlugin.PngImageFile(io.BytesIO(data))
        else:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except _BROKEN as exc:
        raise invalid(f"cannot decode image: {unreadable(data)}") from exc
    width, height = image.size
    if width * height > spec.max_pixels:
        raise invalid(
            f"image is {width}x{height} = {width * height} pixels, more than the limit of {spec.max_pixels}"
        )
    return image


def sniff_format(data: bytes) -> str | None:
    """Pillow's name for the format of `data` ("TIFF", "ICO", ...), from its magic bytes alone:
    each plugin's `accept` test looks at the first 16 bytes and parses nothing."""
    Image.init()
    prefix = data[:16]
    return next((f for f in Image.ID if _accepts(f, prefix)), None)


def _accepts(plugin: str, prefix: bytes) -> bool:
    """A plugin's own test of the magic bytes; some read past a short prefix (JPEG's unpacks 4
    bytes where `ff d8 ff` has 3), which means "not this one", not an error."""
    accept = Image.OPEN[plugin][1]
    try:
        return bool(accept and accept(prefix))
    except _BROKEN:
        return False


def unreadable(data: bytes) -> str:
    """Why Pillow, limited to IMAGE_FORMATS, could not open `data`, with the format named."""
    found = sniff_format(data)
    if found in IMAGE_FORMATS:
        return f"a broken {found} file"
    what = f"{found} is not" if found else "not an image in"
    return f"{what} a format the server reads ({READ_NAMES})"


def _pixels(image: Image.Image, mode: str) -> np.ndarray:
    """Decode (once) into `mode`; truncated or corrupt data becomes a clear error."""
    try:
        if image.mode != mode:
            image = _flatten_alpha(image).convert(mode)
        return np.asarray(image)
    except _BROKEN as exc:
        raise invalid(f"cannot decode image: {exc}") from exc


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent pixels become white, as a browser shows a transparent drawing on a page."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba)
    return image


def _light_background(pixels: np.ndarray) -> bool:
    """Is the picture mostly light? Ink covers less than half of any digit or drawing, so a
    mean above mid-grey means dark ink on light paper, the opposite of MNIST."""
    return int(np.add.reduce(pixels, axis=None, dtype=np.uint64)) > 127.5 * pixels.size


def _fit_mnist(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Crop to the ink, scale into a 20/28 box keeping aspect, centre by centre of mass."""
    ink = pixels > 0.2 * float(pixels.max()) if pixels.max() > 0 else pixels > 0
    if not ink.any():
        return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    # The ink's bounding box from which rows and columns hold any: a pass over the mask, where
    # np.nonzero would list every inked pixel (a million indices on a 2000x2000 page).
    mask: np.ndarray = ink if ink.ndim == 2 else np.any(ink, axis=2)
    rows, cols = np.flatnonzero(np.any(mask, axis=1)), np.flatnonzero(np.any(mask, axis=0))
    crop = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box_w, box_h = width * _MNIST_BOX_FRACTION, height * _MNIST_BOX_FRACTION
    factor = min(box_w / crop.shape[1], box_h / crop.shape[0])
    new_w = max(1, round(crop.shape[1] * factor))
    new_h = max(1, round(crop.shape[0] * factor))
    small = np.asarray(Image.fromarray(crop).resize((new_w, new_h), Image.Resampling.LANCZOS), np.float32)
    canvas = np.zeros((height, width, *small.shape[2:]), np.float32)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = small
    mass = canvas if canvas.ndim == 2 else canvas.mean(axis=2)
    total = float(mass.sum())
    if total > 0:
        cy = float((mass.sum(axis=1) * np.arange(height)).sum()) / total
        cx = float((mass.sum(axis=0) * np.arange(width)).sum()) / total
        shift_y, shift_x = round((height - 1) / 2 - cy), round((width - 1) / 2 - cx)
        canvas = np.roll(canvas, (shift_y, shift_x), axis=(0, 1))
    return np.clip(canvas, 0, 255)


_TAKE_MAX_ELEMENTS = 512 * 512 * 3


@functools.lru_cache(maxsize=64)
def _scale_table(low: float, high: float, invert: bool) -> np.ndarray:
    """uint8 pixel -> float32 value, inversion included: one indexing op instead of three."""
    values = np.arange(256, dtype=np.float32)
    if invert:
        values = 255 - values
    return (values * np.float32((high - low) / 255.0) + np.float32(low)).astype(np.float32)


def decode_image(data: bytes, spec: ImageSpec) -> np.ndarray:
    """Encoded image bytes -> float32 array [H, W] (mode L) or [H, W, 3] / [3, H, W] (RGB)."""
    return decode_opened(open_image(data, spec), spec)


def decode_opened(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """`decode_image` for an image whose header `open_image` has read."""
    pixels = _pixels(image, spec.mode)
    invert = spec.invert == "always" or (spec.invert == "auto" and _light_background(pixels))
    if pixels.shape[:2] != (spec.height, spec.width):
        if invert:
            pixels, invert = 255 - pixels, False
        if spec.fit == "mnist":
            pixels = _fit_mnist(pixels, spec.width, spec.height).round().astype(np.uint8)
        else:
            resized = Image.fromarray(pixels).resize((spec.width, spec.height), Image.Resampling.BILINEAR)
            pixels = np.asarray(resized)
    table = _scale_table(spec.scale[0], spec.scale[1], invert)
    # `take` is 1.5-2x faster than indexing, but first copies the indices as intp (8 bytes a
    # pixel): for small images only (up to 512x512 RGB: 6 MiB), not a 40-million-pixel one.
    out: np.ndarray = table.take(pixels) if pixels.size <= _TAKE_MAX_ELEMENTS else table[pixels]
    if spec.mode == "RGB" and spec.channels_first:
        out = np.transpose(out, (2, 0, 1))
    return out


# The output transforms run on every answer, mostly on one row of a few classes: the ufuncs are
# called directly, without numpy's Python wrappers (`np.argmax`, `ndarray.max`, `ndarray.sum`
# are each a Python frame or two around the same call: the same results, bit for bit).


def argmax(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = values.argmax(axis=-1).astype(np.int64, copy=False)
    return result


def softmax(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = values - np.maximum.reduce(values, axis=-1, keepdims=True)  # no overflow in exp
    np.exp(result, out=result)
    result /= np.add.reduce(result, axis=-1, keepdims=True)
    return result


def sigmoid(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-values))
    return result


def label(indices: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """Class indices -> label strings (an object array, so JSON shows strings)."""
    table = np.asarray(labels, dtype=object)
    result: np.ndarray = table[indices]
    return result
