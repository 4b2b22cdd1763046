"""Images over the pixel limit are refused *before* they are decoded (README, "model.yaml" and
"The gateway"): a PNG that is only a header claiming 100,000 x 100,000 pixels, with no image data
at all, is refused for its size. Had it been decoded, it would have failed as broken instead."""

from __future__ import annotations

import struct
import zlib

import pytest

from modelport.errors import ModelportError
from modelport.gateway.app import Upload, checked_image
from modelport.runtimes import codecs
from modelport.runtimes.metadata import ImageSpec


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _header_only_png(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (8-bit grey), then IEND: no IDAT, nothing to decode."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def test_the_model_server_refuses_a_huge_header_without_decoding() -> None:
    spec = ImageSpec(mode="L", width=28, height=28)
    assert spec.max_pixels == 40_000_000  # the README's default
    with pytest.raises(
        ModelportError, match="100000x100000 = 10000000000 pixels, more than the limit of 40000000"
    ):
        codecs.decode_image(_header_only_png(100_000, 100_000), spec)
    with pytest.raises(ModelportError) as small:  # the same file within the limit: decoding it fails
        codecs.decode_image(_header_only_png(20, 20), spec)
    assert "pixels, more than the limit" not in small.value.message


def test_the_gateway_refuses_a_huge_header_without_decoding() -> None:
    with pytest.raises(ModelportError) as caught:
        checked_image(Upload("huge.png", _header_only_png(100_000, 100_000)), max_pixels=25_000_000)
    assert (caught.value.code.http_status, caught.value.message) == (
        413, "huge.png: 100000 x 100000 pixels is more than the limit of 25,000,000",
    )  # fmt: skip
