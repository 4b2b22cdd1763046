"""Image decoding and output transforms."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelport.errors import ModelportError
from modelport.runtimes import codecs
from modelport.runtimes.metadata import ImageSpec

MNIST = ImageSpec(mode="L", width=28, height=28, invert="auto", fit="mnist")


def _png(pixels: np.ndarray, mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode).save(out, "PNG")
    return out.getvalue()


def _stroke(size: int, ink: int, paper: int) -> np.ndarray:
    """A vertical bar, off-centre, like a hastily drawn 1."""
    img = np.full((size, size), paper, np.uint8)
    img[size // 8 : size // 2, size // 8 : size // 8 + size // 10] = ink
    return img


def test_exact_size_image_is_taken_as_it_is() -> None:
    pixels = np.random.default_rng(0).integers(0, 30, (28, 28)).astype(np.uint8)
    pixels[10:20, 12:15] = 255
    out = codecs.decode_image(_png(pixels), MNIST)
    assert out.shape == (28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out, pixels / 255.0, atol=1e-6)


def test_dark_on_light_is_inverted_and_centred() -> None:
    out = codecs.decode_image(_png(_stroke(280, ink=0, paper=255)), MNIST)
    assert out.shape == (28, 28)
    assert out[0].max() == 0.0 and out[:, 0].max() == 0.0  # background black, as MNIST
    mass = out / out.sum()
    cy = (mass.sum(axis=1) * np.arange(28)).sum()
    cx = (mass.sum(axis=0) * np.arange(28)).sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centre of mass in the middle
    rows = np.nonzero(out.max(axis=1) > 0.1)[0]
    assert 18 <= rows.max() - rows.min() + 1 <= 21  # long side scaled to ~20 px


def test_invert_never_keeps_light_background() -> None:
    spec = ImageSpec(width=4, height=4, invert="never")
    out = codecs.decode_image(_png(np.full((4, 4), 255)), spec)
    assert out.min() == 1.0


def test_transparent_drawing_is_flattened_on_white() -> None:
    rgba = np.zeros((56, 56, 4), np.uint8)  # transparent everywhere
    rgba[10:40, 25:30] = (0, 0, 0, 255)  # black opaque stroke
    out = codecs.decode_image(_png(rgba, "RGBA"), MNIST)
    assert out.max() > 0.9 and out[0].max() == 0.0  # stroke is bright, background dark


def test_rgb_channels_first_and_scale() -> None:
    spec = ImageSpec(mode="RGB", width=2, height=2, channels_first=True, scale=(-1.0, 1.0))
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[..., 0] = 255
    out = codecs.decode_image(_png(pixels, "RGB"), spec)
    assert out.shape == (3, 2, 2)
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], -1.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"GIF87a but not really", "cannot decode image"),
        (b"plain text", "cannot decode image"),
    ],
)
def test_undecodable(data: bytes, message: str) -> None:
    with pytest.raises(ModelportError, match=message):
        codecs.decode_image(data, MNIST)


def test_pixel_limit_checked_before_decoding() -> None:
    # Only the first 60 bytes of each file: the header, then a cut. Decoding the cut file fails
    # (the 9 x 11 one shows how), so the pixel-count refusal of the 10 x 11 one came first.
    spec = ImageSpec(width=28, height=28, max_pixels=100)
    noise = np.random.default_rng(0).integers(0, 255, (10, 11))  # incompressible: the cut is mid-data
    with pytest.raises(ModelportError, match="11x10 = 110 pixels, more than the limit of 100"):
        codecs.decode_image(_png(noise)[:60], spec)
    with pytest.raises(ModelportError, match="cannot decode image: image file is truncated"):
        codecs.decode_image(_png(noise[:9])[:60], spec)


def test_softmax_argmax_labels() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [1000.0, 0.0, 0.0]], np.float32)
    probs = codecs.softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert np.isfinite(probs).all()  # no overflow on large logits
    assert codecs.argmax(logits).tolist() == [1, 0]
    assert codecs.label(codecs.argmax(logits), ("a", "b", "c")).tolist() == ["b", "a"]
    np.testing.assert_allclose(codecs.sigmoid(np.array([0.0])), [0.5])


@pytest.mark.parametrize(
    ("data", "named"),
    [
        # The fuzzer's find (tests/e2e/test_fuzz_memory.py): a JPEG's magic alone, 3 bytes. Naming
        # its format ran a plugin's magic test that reads 4 bytes: a struct.error, answered
        # 500 "unpack_from requires a buffer of at least 4 bytes ... (actual buffer size is 3)".
        pytest.param(b"\xff\xd8\xff", "a broken JPEG file", id="JPEG magic, 3 bytes"),
        # A PNG cut inside its IHDR chunk was Pillow's OSError "Truncated File Read", also a 500.
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "a broken PNG file", id="PNG cut in IHDR"),
        pytest.param(b"\x89PNG\r\n\x1a\n", "a broken PNG file", id="PNG magic alone"),
    ],
)
def test_an_image_cut_short_is_a_400_naming_its_format(data: bytes, named: str) -> None:
    with pytest.raises(ModelportError) as caught:
        codecs.decode_image(data, MNIST)
    assert caught.value.http_status == 400
    assert caught.value.message == f"cannot decode image: {named}"
