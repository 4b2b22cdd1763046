"""Request ids: every answer carries one (`x-request-id` on REST, the same key in a gRPC call's
initial metadata), so a client, a log line, the prediction log and later feedback can name the
same request.

A client's own id is echoed when it is sane: 1 to 128 characters of `A-Z a-z 0-9 . _ : - + / =`
(a UUID, a trace id, base64). Anything else (too long, spaces, control bytes, non-ASCII) is
replaced by a generated one rather than refused: an id is for finding a request, not a reason to
fail it. Generated ids are a random per-process prefix and a counter (`3f9c1a2be07d41aa-1c`):
unique across replicas and restarts, and cheaper than a UUID per request.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterable

HEADER = b"x-request-id"
METADATA_KEY = "x-request-id"
MAX_LENGTH = 128
_SANE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
_PREFIX = secrets.token_hex(8)
_PREFIX_BYTES = _PREFIX.encode()
_COUNTER = itertools.count(1)


def generate() -> str:
    return f"{_PREFIX}-{next(_COUNTER):x}"


def sane(value: bytes) -> bool:
    return _SANE.fullmatch(value) is not None


def from_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request's `x-request-id` if sane, else a new one (ASGI headers: lower-case names)."""
    for key, value in headers:
        if key == HEADER and _SANE.fullmatch(value):
            return value
    return b"%s-%x" % (_PREFIX_BYTES, next(_COUNTER))  # generate()'s, made as bytes


def from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None, field: str = "") -> str:
    """A gRPC call's id: its `x-request-id` metadata, else the request's own `id` field (the v2
    protocol's), when sane; else a new one."""
    for key, value in metadata or ():
        if key == METADATA_KEY:
            raw = value.encode() if isinstance(value, str) else value
            if _SANE.fullmatch(raw):
                return raw.decode()
    if field and _SANE.fullmatch(field.encode()):
        return field
    return generate()
