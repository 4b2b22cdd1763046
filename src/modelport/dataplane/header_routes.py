"""A Rollout's header route (`setHeaderRoute: {name, match: [{headerName, headerValue}]}`) as
one regular expression over a request's header block, for HAProxy's `req.hdrs,map_reg(...)`.

HAProxy gives the header block as `name: value\\r\\n` lines, names in lower case. A route's
headers must all match, in whatever order they come: one lookahead each, anchored at the start.

    [x-canary exact "yes"]   ->  ^(?=[\\s\\S]*?(?:^|\\n)x\\x{2d}canary:[\\x20\\t]*yes[\\x20\\t]*\\r?\\n)
    prefix "Moz"             ->  ...:[\\x20\\t]*Moz[^\\r\\n]*[\\x20\\t]*\\r?\\n
    regex "Mozilla(.*)"      ->  ...:[\\x20\\t]*(?:Mozilla(.*))[\\x20\\t]*\\r?\\n   (the whole value)

The pattern never holds a space, tab or `;` (HAProxy's runtime API would split the command there):
they are written as `\\x20`, `\\t`, `\\x3b`. Pure: matches in, a string out.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelport.spec import HeaderMatch

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE = r"[\x20\t]*"


def _literal(text: str) -> str:
    """`text` matched as it is: every character but letters, digits and `_` as `\\x{..}`."""
    return "".join(c if c in _PLAIN else f"\\x{{{ord(c):x}}}" for c in text)


def _value(match: HeaderMatch) -> str:
    value = match.header_value
    if value.exact is not None:
        return _literal(value.exact)
    if value.prefix is not None:
        return _literal(value.prefix) + r"[^\r\n]*"
    assert value.regex is not None  # validation: exactly one of exact, prefix, regex
    regex = value.regex.removeprefix("^").removesuffix("$")  # the whole value is matched anyway
    return "(?:" + regex.replace(" ", r"\x20").replace("\t", r"\t").replace(";", r"\x3b") + ")"


def header_pattern(matches: Sequence[HeaderMatch]) -> str:
    """One route's regular expression: every one of `matches` holds."""
    ahead = (
        rf"(?=[\s\S]*?(?:^|\n){_literal(m.header_name.lower())}:{_SPACE}{_value(m)}{_SPACE}\r?\n)"
        for m in matches
    )
    return "^" + "".join(ahead)


__all__ = ["header_pattern"]
