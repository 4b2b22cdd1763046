"""How deeply a JSON request body may nest, and the scan that measures it before a recursive
parser sees it.

orjson, the parser on every fast path, refuses more than 1024 levels itself (a JSONDecodeError,
so a 400) and never recurses on the C stack. What comes after it must cope with up to 1024:
tensor data deeper than 64 levels is refused as more dimensions than a tensor has (numpy's
maximum, and the most a v2 `shape` may have).

Python's `json`, the fallback only for TF Serving's NaN / Infinity tokens, recurses once per
level and hits the interpreter's limit near 1000 (a RecursionError, which was a 500). Before it
runs, the body is scanned: the deepest request a protocol needs is a 64-dimension tensor inside
TF Serving's row envelope `{"instances": [{"name": <tensor>}]}` (3 containers) with a
`{"b64": ...}` at the leaf (1 more): 64 + 4 = 68 levels. The scan costs about 250 µs for a
500 KB body, so it runs on the fallback path only, not on every request.
"""

from __future__ import annotations

import numpy as np

from modelport.errors import invalid

MAX_DEPTH = 68
_KEEP_ONLY = bytes(range(256)).translate(None, b'"[]{}')  # what `translate` deletes: all else
_STEP = np.zeros(256, np.int32)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def depth(body: bytes) -> int:
    """The maximum nesting of `[` and `{` outside strings (for valid JSON; garbage gets a number
    that does not matter, as the parser refuses it anyway).

    `{"a": ["x]", [1]]}` -> escapes dropped, then only `"[]{}` kept: `{""[""[]]}`; split on
    quotes, the even parts are outside strings: `{`, `[`, `[]]}` -> depth 3."""
    if b"\\" in body:  # `\\` then `\"`, left to right: neither may end or start a string
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(body.translate(None, _KEEP_ONLY).split(b'"')[::2])
    if not structure:
        return 0
    return int(np.cumsum(_STEP[np.frombuffer(structure, np.uint8)]).max())


def check(body: bytes) -> None:
    """A 400 for a body nested deeper than any request needs."""
    levels = depth(body)
    if levels > MAX_DEPTH:
        raise invalid(too_deep(levels))


def too_deep(levels: int | str) -> str:
    return (
        f"JSON Parse error: the document nests {levels} levels deep, more than the limit of "
        f"{MAX_DEPTH} (a tensor of at most 64 dimensions in its request envelope)"
    )
