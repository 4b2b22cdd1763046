"""The request limits as pure checks (runtimes/limits.py), and the serve flags that set them. The
protocols' use of them runs against a real server in tests/e2e/test_request_limits.py."""

from __future__ import annotations

import json

import pytest

from claims_support import serve_config
from modelport.errors import ModelportError
from modelport.runtimes.limits import RequestLimits

SMALL = RequestLimits(max_batch_size=4, max_bytes_elements=10, max_request_pixels=100)


def test_each_limit_admits_its_value_and_refuses_one_more_naming_the_setting() -> None:
    SMALL.check_rows("x", 4)
    SMALL.check_bytes_elements("x", 10)
    SMALL.check_pixels("x", 2, 100)
    with pytest.raises(ModelportError, match=r"input 'x' has 5 rows, more than the limit of 4 rows"):
        SMALL.check_rows("x", 5)
    with pytest.raises(ModelportError, match=r"holds 11 BYTES elements.*\(--max_bytes_elements\)"):
        SMALL.check_bytes_elements("x", 11)
    with pytest.raises(ModelportError, match=r"2 images hold 101 pixels.*\(--max_request_pixels\)"):
        SMALL.check_pixels("x", 2, 101)


def test_a_models_max_batch_size_replaces_the_servers_and_keeps_the_rest() -> None:
    assert SMALL.for_model(None) is SMALL
    assert SMALL.for_model(9) == RequestLimits(9, 10, 100)


def _strings(values: list[str]) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "data": values}]}).encode()


def test_the_json_guard_refuses_only_bodies_that_really_hold_too_many_strings() -> None:
    """Limit 10 + 4,096 names = 4,106 strings. The body's own keys and values are 6 strings."""
    RequestLimits(max_bytes_elements=10).check_json_strings(_strings(["a"] * 4_100))  # 4,106
    with pytest.raises(ModelportError, match="holds at least 4107 JSON strings"):
        RequestLimits(max_bytes_elements=10).check_json_strings(_strings(["a"] * 4_101))
    # Escaped quotes inside a few long strings are not strings: 3 strings of 10,000 quotes pass.
    RequestLimits(max_bytes_elements=10).check_json_strings(_strings(['"' * 10_000] * 3))
    # An escaped backslash before a closing quote undercounts, never overcounts: let through here,
    # and the declared shape is checked after parsing.
    RequestLimits(max_bytes_elements=10).check_json_strings(_strings(["\\"] * 5_000))


def test_the_serve_flags_set_the_limits(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    base = ["--model_name", "m", "--model_base_path", str(tmp_path)]
    assert serve_config(monkeypatch, *base).options.limits == RequestLimits(64, 65_536, 40_000_000)
    flags = ["--max_batch_size", "8", "--max_bytes_elements", "100", "--max_request_pixels", "1000"]
    assert serve_config(monkeypatch, *base, *flags).options.limits == RequestLimits(8, 100, 1000)
