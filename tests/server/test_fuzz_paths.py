"""Any method on any path (README, "Errors": never a 500): paths built from the routes' own
pieces (names of served and unknown models, versions and labels of any text, the verbs, near
misses) and from arbitrary text, sent to the real ASGI app with half_plus_two and the MNIST example.
Every answer is < 500, and every 4xx with a body carries `{"error": <a message>}`. Deterministic,
400 cases, ~4 s (FUZZ_EXAMPLES=5000 explores further)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claims_support import call
from modelport.repository.config import parse_yaml_config
from modelport.repository.manager import ModelManager
from modelport.runtimes import default_runtimes
from modelport.server.app import RestApp, ServerOptions
from modelport.server.metrics import ServerMetrics
from modelport.testing.clock import FakeClock
from support import half_and_mnist

_TEXT = st.text(max_size=6)
_WORDS = [
    "v1", "v2", "models", "half", "mnist", "versions", "labels", "1", "0", "-1", "01", "²", "stable",
    "metadata", "ready", "infer", "health", "live", "healthz", "readyz", "metrics", "openapi.json", "",
    "half:predict", "half:classify", "half:REGRESS", "x:explain", ":",
]  # fmt: skip
_PIECES = st.one_of(st.sampled_from(_WORDS), _TEXT)
PATHS = st.one_of(
    st.lists(_PIECES, max_size=7).map(lambda parts: "/" + "/".join(parts)),
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(["/v1/models/half", "/v1/models/", "/v2/models/half", "/v2/models/", "/v2/"]),
        st.lists(_PIECES, max_size=4).map(lambda parts: "".join(f"/{p}" for p in parts)),
    ),
)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestApp]:
    config = half_and_mnist(tmp_path_factory.mktemp("fuzz_paths"))
    manager = ModelManager(parse_yaml_config(config.read_text()), default_runtimes(), FakeClock())
    manager.poll()
    with ThreadPoolExecutor(2) as pool:
        yield RestApp(manager, ServerMetrics(), ServerOptions(enable_cors=True), pool)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")), derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(method=METHODS, path=PATHS, body=st.sampled_from([b"", b"{}", b'{"instances": [[1.0]]}', b"\xff"]))
def test_any_method_on_any_path_gets_no_5xx_and_4xx_name_their_problem(
    app: RestApp, method: str, path: str, body: bytes
) -> None:
    answer = call(app, method, path, body)
    assert answer.status < 500, (method, path, answer)
    if answer.status >= 400 and answer.body:
        error = json.loads(answer.body)["error"]
        assert isinstance(error, str) and error, (method, path, answer)
