"""Images are read only in the formats the README documents (PNG, JPEG, GIF, BMP, WebP), not in
every format Pillow has a plugin for: each of those is a parser of untrusted bytes. TIFF, ICO,
PCX and the rest are refused with the format named: 400 from the model server, 415 from the
gateway. Both are called in-process, as they are called on a request."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelport.errors import ModelportError
from modelport.gateway.app import Upload, checked_image
from modelport.runtimes import codecs
from modelport.runtimes.metadata import ImageSpec

SPEC = ImageSpec(mode="L", width=4, height=4)
READ = "PNG, JPEG, GIF, BMP, WebP"


def _encoded(fmt: str) -> bytes:
    """A 4x4 grey square with a white pixel, encoded in `fmt`."""
    pixels = np.full((4, 4), 100, np.uint8)
    pixels[1, 2] = 255
    out = io.BytesIO()
    Image.fromarray(pixels, "L").convert("RGB").save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_the_documented_formats_are_read_by_both(fmt: str) -> None:
    data = _encoded(fmt)
    pixels = codecs.decode_image(data, SPEC)
    assert pixels.shape == (4, 4) and pixels[1, 2] > pixels[0, 0]  # the white pixel is there
    sent = checked_image(Upload(f"x.{fmt.lower()}", data), max_pixels=1_000)
    assert Image.open(io.BytesIO(sent)).format == ("JPEG" if fmt == "JPEG" else "PNG")


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PCX", "PPM", "SGI"])
def test_the_model_server_refuses_other_formats_with_400_naming_them(fmt: str) -> None:
    data = _encoded(fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself would have read it
    with pytest.raises(ModelportError) as caught:
        codecs.decode_image(data, SPEC)
    assert (caught.value.code.http_status, caught.value.message) == (
        400, f"cannot decode image: {fmt} is not a format the server reads ({READ})",
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PCX", "PPM", "SGI"])
def test_the_gateway_refuses_other_formats_with_415_naming_them(fmt: str) -> None:
    with pytest.raises(ModelportError) as caught:
        checked_image(Upload("scan.img", _encoded(fmt)), max_pixels=1_000)
    assert (caught.value.code.http_status, caught.value.message) == (
        415, f"scan.img: {fmt} is not a format the server reads ({READ})",
    )  # fmt: skip


def test_a_broken_file_of_a_documented_format_is_called_broken() -> None:
    with pytest.raises(ModelportError, match="cannot decode image: a broken GIF file"):
        codecs.decode_image(b"GIF89a and nothing else", SPEC)


def test_bytes_of_no_known_format_are_not_an_image() -> None:
    with pytest.raises(ModelportError) as caught:
        checked_image(Upload("notes.txt", b"plain text"), max_pixels=1_000)
    assert caught.value.message == f"notes.txt: not an image in a format the server reads ({READ})"
