"""A property-based fuzzer over every request grammar the model server takes (README, "Errors":
bad input is a 4xx naming the problem, never a 5xx), against a live `modelport serve` of
half_plus_two, the MNIST example and a model of five inputs of five dtypes (tests/fuzz_support.py):
TF Serving v1 JSON (gzipped or not), v2 JSON, the v2 binary extension, gRPC ModelInfer
(tests/fuzz_grammars.py).

Every answer is < 500, a 4xx carries `{"error": <a message>}`, and every body fits its schema in
the server's own /openapi.json (the many 200s included, which schemathesis' random bodies rarely
reach); over gRPC no call ends INTERNAL or UNKNOWN, and a refused one says why.

Deterministic (derandomized, no example database) and bounded: the same 450 requests every run,
to a server without and with `--enable_batching`, about 10 s here (FUZZ_EXAMPLES=3000 explores
further: that many per grammar)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator
from tritonclient.grpc import service_pb2, service_pb2_grpc

from fuzz_grammars import DTYPES, grpc_request, v1_request, v2_request
from fuzz_support import fuzz_repository
from support import Server, running

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", params=[[], ["--enable_batching"]], ids=["inline", "batching"])
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Server]:
    """Each model call made on its own, then in TF Serving's batcher (another path to the model:
    requests queued, concatenated, padded and split)."""
    root = tmp_path_factory.mktemp("fuzz_requests")
    with running(["--model_config_file", str(fuzz_repository(root)), *request.param], root) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


Validate = Callable[[Any], None]


@pytest.fixture(scope="module")
def schemas(server: Server) -> dict[str, Validate]:
    """Each body schema of the server's /openapi.json, its references inlined, as a validator."""
    doc = server.get("/openapi.json").json()

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {
        name: OAS30Validator(inline(schema)).validate for name, schema in doc["components"]["schemas"].items()
    }


# Which schema of the document a 200 to each verb must fit.
_ANSWERS = {"predict": "PredictResponse", "classify": "ClassifyResponse", "regress": "RegressResponse"}


def assert_answered(answer: requests.Response, request: object, schemas: dict[str, Validate]) -> None:
    """< 500; a 4xx names its problem; the body is what the document says (the Error schema, or
    the verb's answer); a binary answer's JSON part is as long as its header says."""
    where = f"{answer.status_code} {answer.text[:300]!r} for {request!r:.600}"
    assert answer.status_code < 500, where
    verb = answer.url.rsplit(":", 1)[-1] if "/v1/" in answer.url else "infer"
    if answer.status_code >= 400:
        error = answer.json().get("error")
        assert isinstance(error, str) and error, where
        schemas["Error"](answer.json())
    elif answer.headers["content-type"] == "application/json":
        schemas[_ANSWERS.get(verb, "V2InferResponse")](json.loads(answer.content))
    else:  # binary outputs: JSON of the length the header says, then each output's bytes
        assert answer.headers["content-type"] == "application/octet-stream", where
        length = int(answer.headers["inference-header-content-length"])
        doc = json.loads(answer.content[:length])
        schemas["V2InferResponse"](doc)
        sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"] if "parameters" in o]
        assert length + sum(sizes) == len(answer.content), where


@FUZZ
@given(case=v1_request())
def test_tf_serving_json_requests_get_no_5xx(
    server: Server,
    session: requests.Session,
    schemas: dict[str, Validate],
    case: tuple[str, bytes, dict[str, str]],
) -> None:
    path, body, headers = case
    answer = session.post(server.url + path, data=body, headers=headers, timeout=10)
    assert_answered(answer, case, schemas)


@FUZZ
@given(case=v2_request())
def test_v2_json_and_binary_requests_get_no_5xx(
    server: Server,
    session: requests.Session,
    schemas: dict[str, Validate],
    case: tuple[str, bytes, dict[str, str]],
) -> None:
    path, body, headers = case
    answer = session.post(server.url + path, data=body, headers=headers, timeout=10)
    assert_answered(answer, case, schemas)


@FUZZ
@given(request=grpc_request())
def test_grpc_model_infer_never_ends_internal_or_unknown(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, request: object
) -> None:
    try:
        answer = stub.ModelInfer(request, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (exc, request)
        assert exc.details(), (exc.code(), request)
        return
    # An answer: one raw blob per output, each the size its datatype and shape make.
    assert len(answer.raw_output_contents) == len(answer.outputs), answer
    for output, raw in zip(answer.outputs, answer.raw_output_contents, strict=True):
        if output.datatype != "BYTES":
            size = math.prod(output.shape) * np.dtype(DTYPES[output.datatype]).itemsize
            assert len(raw) == size, (output, len(raw))


_NAMES = st.one_of(st.sampled_from(["half", "mnist", "mixed", ""]), st.text(max_size=8))
_VERSIONS = st.one_of(st.sampled_from(["", "1", "2", "0", "-1", "01", " 1", "1.0"]), st.text(max_size=4))


@settings(FUZZ, max_examples=FUZZ.max_examples // 3)
@given(name=_NAMES, version=_VERSIONS)
def test_grpc_model_ready_and_metadata_never_end_internal_or_unknown(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, name: str, version: str
) -> None:
    ready = stub.ModelReady(service_pb2.ModelReadyRequest(name=name, version=version), timeout=10)
    try:
        meta = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=name, version=version), timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), exc
        assert exc.details()
        assert not ready.ready or version, (name, version)  # a ready model without a version has metadata
    else:
        assert meta.name == name and ready.ready


def test_the_server_still_answers_and_the_fuzzers_reached_the_models(server: Server) -> None:
    assert server.post("/v1/models/half:predict", {"instances": [[4.0]]}).json() == {"predictions": [[4.0]]}
    metrics = server.get("/metrics").text
    counted = [line for line in metrics.splitlines() if line.startswith("modelport_requests_total")]
    # Which model each grammar's 150 requests reach varies between processes (the same seed, but
    # not the same interpreter state), so: on every protocol some model answered and refused.
    for api in ("predict", "infer", "grpc_infer"):
        for status in ("200", "400"):
            reached = [line for line in counted if f'api="{api}",' in line and f'status="{status}"' in line]
            assert reached, (api, status, counted)
