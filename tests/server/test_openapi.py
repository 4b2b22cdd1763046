"""The OpenAPI document at /openapi.json (README, "The REST API") is valid OpenAPI 3 and names the
routes the server answers, no more and no fewer: every path and method below is sent to the real
ASGI app (half_plus_two and the MNIST example loaded), and the app serving it (any answer but
TF Serving's `404 Malformed request`) must agree with the document listing it."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from openapi_spec_validator import validate

from claims_support import call
from modelport.repository.config import parse_yaml_config
from modelport.repository.manager import ModelManager
from modelport.runtimes import default_runtimes
from modelport.server.app import RestApp, ServerOptions
from modelport.server.metrics import ServerMetrics
from modelport.testing.clock import FakeClock
from support import half_and_mnist

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> ModelManager:
    config = half_and_mnist(tmp_path_factory.mktemp("openapi"))
    manager = ModelManager(parse_yaml_config(config.read_text()), default_runtimes(), FakeClock())
    manager.poll()
    assert manager.is_ready()
    return manager


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def _app(manager: ModelManager, pool: ThreadPoolExecutor, cors: bool) -> RestApp:
    return RestApp(manager, ServerMetrics(), ServerOptions(enable_cors=cors), pool)


def _served_document(app: RestApp) -> dict[str, Any]:
    answer = call(app, "GET", "/openapi.json")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    doc: dict[str, Any] = json.loads(answer.body)
    return doc


@pytest.mark.parametrize("cors", [False, True], ids=["default", "--enable_cors"])
def test_the_served_document_is_valid_openapi_3(
    manager: ModelManager, pool: ThreadPoolExecutor, cors: bool
) -> None:
    doc = _served_document(_app(manager, pool, cors))
    validate(doc)  # raises, naming the first error
    assert doc["openapi"].startswith("3.")
    # Every operation is named, and names are unique (generators make a function of each).
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m in _VERBS]
    assert len(ids) == len(set(ids))


_VERBS = {m.lower() for m in METHODS}


def _candidates() -> list[str]:
    """Paths the server might take: every route shape, and near misses of each."""
    v1 = [
        base + middle + tail
        for base in ("/v1/models/half",)
        for middle in ("", "/versions/1", "/labels/stable", "/versions/1/labels/stable", "/other/1")
        for tail in (
            "",
            "/",
            "/metadata",
            ":predict",
            ":classify",
            ":regress",
            ":explain",
            "/predict",
            ":feedback",
            "/quality",
            "/feedback",
            ":quality",
        )
    ]
    v2_models = [
        "/v2/models/half" + middle + tail
        for middle in ("", "/versions/1")
        for tail in ("", "/", "/ready", "/infer", "/stats", "/load", "/ready/x", "/feedback", "/quality")
    ]
    other = [
        "/v1", "/v1/models", "/v1/models/", "/v2", "/v2/", "/v2/models", "/v2/models/",
        "/v2/health/live", "/v2/health/ready", "/v2/health", "/v2/repository/index",
        "/healthz", "/readyz", "/metrics", "/openapi.json", "/", "/docs", "/health",
    ]  # fmt: skip
    return v1 + v2_models + other


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, method) pairs the document says are served, by matching its templates."""
    patterns = [
        (re.compile(re.sub(r"\{[^}]+\}", "[^/:]+", template) + "/?"), item)
        for template, item in doc["paths"].items()
    ]
    served = set()
    for path, method in itertools.product(_candidates(), METHODS):
        for pattern, item in patterns:
            if pattern.fullmatch(path) and method.lower() in item:
                served.add((path, method))
    return served


def _answered(app: RestApp) -> set[tuple[str, str]]:
    """(path, method) pairs the app serves: anything but a 404 `Malformed request` (a HEAD,
    which has no body, by its status: the model and version asked for exist)."""
    served = set()
    for path, method in itertools.product(_candidates(), METHODS):
        answer = call(app, method, path, b"{}" if method in ("POST", "PUT", "PATCH") else b"")
        malformed = answer.status == 404 and (
            method == "HEAD" or json.loads(answer.body)["error"].startswith("Malformed request")
        )
        if not malformed:
            served.add((path, method))
    return served


@pytest.mark.parametrize("cors", [False, True], ids=["default", "--enable_cors"])
def test_every_route_the_server_answers_is_documented_and_nothing_more(
    manager: ModelManager, pool: ThreadPoolExecutor, cors: bool
) -> None:
    app = _app(manager, pool, cors)
    documented, answered = _documented(_served_document(app)), _answered(app)
    assert sorted(answered - documented) == [], "served but not in the document"
    assert sorted(documented - answered) == [], "in the document but not served"
    assert ("/v1/models/half/labels/stable:predict", "POST") in answered  # the table is not empty
    assert ("/v1/models/half:explain", "POST") not in answered


def test_the_document_describes_the_binary_extension_and_the_error_body(
    manager: ModelManager, pool: ThreadPoolExecutor
) -> None:
    doc = _served_document(_app(manager, pool, False))
    infer = doc["paths"]["/v2/models/{model_name}/infer"]["post"]
    header = doc["components"]["parameters"]["header_length"]
    assert {"$ref": "#/components/parameters/header_length"} in infer["parameters"]
    assert header["name"] == "Inference-Header-Content-Length" and header["in"] == "header"
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    # What a client is told a bad request gets is what it gets.
    answer = call(_app(manager, pool, False), "POST", "/v1/models/half:predict", b'{"instances": 1}')
    assert answer.status == 400 and set(json.loads(answer.body)) == {"error"}


def test_a_model_not_ready_is_a_400_that_says_why_and_an_empty_answer_claims_no_json(
    manager: ModelManager, pool: ThreadPoolExecutor
) -> None:
    """Schemathesis found `GET /v2/models/0/ready` answered 400 with an empty body labelled
    application/json (no JSON document): now the 400 says why, and empty answers have no type."""
    app = _app(manager, pool, False)
    for path, why in [
        ("/v2/models/0/ready", "model '0' is not served here"),
        ("/v2/models/half/versions/7/ready", "version 7 of model 'half' is not available"),
    ]:
        answer = call(app, "GET", path)
        assert (answer.status, answer.headers["content-type"]) == (400, "application/json")
        assert json.loads(answer.body) == {"error": why}
    for path in ("/v2/health/live", "/v2/models/half/ready"):
        answer = call(app, "GET", path)
        assert (answer.status, answer.body) == (200, b"")
        assert "content-type" not in answer.headers


def test_the_v2_extensions_listed_are_the_ones_served(
    manager: ModelManager, pool: ThreadPoolExecutor
) -> None:
    """`GET /v2` listed `model_repository_index`, and POST /v2/repository/index was a 404."""
    app = _app(manager, pool, False)
    assert json.loads(call(app, "GET", "/v2").body)["extensions"] == ["binary_tensor_data"]
    assert call(app, "POST", "/v2/repository/index", b"{}").status == 404


def test_with_keys_required_every_operation_but_health_names_its_key_and_refusals() -> None:
    from modelport.server.openapi import OPEN_PATHS, document

    keyed = document(api_keys=True)
    validate(keyed)
    schemes = keyed["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    for path, item in keyed["paths"].items():
        for method in ("get", "post"):
            if method not in item:
                continue
            operation = item[method]
            if path in OPEN_PATHS:
                assert "security" not in operation and "401" not in operation["responses"], path
            else:
                assert operation["security"] == [{"bearer": []}, {"apiKey": []}], path
                assert {"401", "403", "429"} <= set(operation["responses"]), path
    plain = document()  # the keyed document changed nothing shared
    assert "securitySchemes" not in plain["components"]
    operations = [op for item in plain["paths"].values() for op in item.values() if isinstance(op, dict)]
    assert not any("401" in op.get("responses", {}) for op in operations)
