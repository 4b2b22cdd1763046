"""Declarative pre- and post-processing: encoded images in, classes and probabilities out.

Pure functions on bytes and arrays; they know nothing of JSON or HTTP.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from modelport.errors import invalid
from modelport.runtimes.metadata import ImageSpec

# MNIST's recipe: the digit's bounding box is scaled to fit 20x20 inside the 28x28 frame.
_MNIST_BOX_FRACTION = 20 / 28


def _open(data: bytes, spec: ImageSpec) -> Image.Image:
    if not data:
        raise invalid("empty image: no bytes to decode")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise invalid("cannot decode image: not a format the server reads (PNG, JPEG, ...)") from exc
    width, height = image.size
    if width * height > spec.max_pixels:
        raise invalid(
            f"image is {width}x{height} = {width * height} pixels, more than the limit of "
            f"{spec.max_pixels}"
        )
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise invalid(f"cannot decode image: {exc}") from exc
    return image


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent pixels become white, as a browser shows a transparent drawing on a page."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba)
    return image


def _light_background(pixels: np.ndarray) -> bool:
    """Is the border brighter than mid-grey? Then the ink is dark on light, unlike MNIST."""
    border = np.concatenate(
        [pixels[0].ravel(), pixels[-1].ravel(), pixels[:, 0].ravel(), pixels[:, -1].ravel()]
    )
    return float(border.mean()) > 127.5


def _fit_mnist(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Crop to the ink, scale into a 20/28 box keeping aspect, centre by centre of mass."""
    ink = pixels > 0.2 * float(pixels.max()) if pixels.max() > 0 else pixels > 0
    if not ink.any():
        return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    rows, cols = np.nonzero(ink if ink.ndim == 2 else ink.any(axis=2))
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
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


def decode_image(data: bytes, spec: ImageSpec) -> np.ndarray:
    """Encoded image bytes -> float32 array [H, W] (mode L) or [H, W, 3] / [3, H, W] (RGB)."""
    image = _flatten_alpha(_open(data, spec)).convert(spec.mode)
    pixels = np.asarray(image)
    if spec.invert == "always" or (spec.invert == "auto" and _light_background(pixels)):
        pixels = 255 - pixels
    if pixels.shape[:2] != (spec.height, spec.width):
        if spec.fit == "mnist":
            pixels = _fit_mnist(pixels.astype(np.uint8), spec.width, spec.height)
        else:
            resized = Image.fromarray(pixels.astype(np.uint8)).resize(
                (spec.width, spec.height), Image.Resampling.BILINEAR
            )
            pixels = np.asarray(resized)
    low, high = spec.scale
    out = pixels.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
    if spec.mode == "RGB" and spec.channels_first:
        out = np.transpose(out, (2, 0, 1))
    return out


def argmax(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.argmax(values, axis=-1).astype(np.int64)
    return result


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - np.max(values, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def sigmoid(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-values))
    return result


def label(indices: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """Class indices -> label strings (an object array, so JSON shows strings)."""
    table = np.asarray(labels, dtype=object)
    result: np.ndarray = table[indices]
    return result
