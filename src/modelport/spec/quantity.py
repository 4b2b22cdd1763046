"""Kubernetes' numbers: int-or-percent (`25%` of 10 replicas) and quantities (`500m`, `2Gi`)."""

from __future__ import annotations

import math
import re

_PERCENT = re.compile(r"(\d+)%")


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """Kubernetes' int-or-percent: 25% of 10 replicas is 3 for maxSurge (up), 2 for maxUnavailable."""
    if isinstance(value, int):
        return value
    match = _PERCENT.fullmatch(value)
    assert match is not None  # validated
    exact = int(match[1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


_QUANTITY = re.compile(r"(\d+(\.\d+)?)(m|k|K|Ki|Mi|Gi|M|G)?")


def quantity(value: str | int | float) -> float:
    """Kubernetes' quantities as plain numbers: 500m -> 0.5, 2Gi -> 2147483648, 10 -> 10."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a quantity: {value!r} (like 500m, 2, 256Mi)")
    factor = {
        None: 1,
        "m": 1e-3,
        "k": 1e3,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
    }
    return float(match[1]) * factor[match[3]]
