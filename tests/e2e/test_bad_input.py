"""Bad input against a real `modelport serve` (README, "Errors"): over gRPC each one is
INVALID_ARGUMENT naming the problem, never INTERNAL; over REST a 400; the server answers the next
good request on both, and unknown model names are counted under `_unknown`. The full REST table
runs in-process in tests/server/test_bad_input.py."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from support import Server, half_and_mnist, running

HUGE = 4611686018427387904  # 2**62
DIMS = "input 'x': shape has 65 dimensions, more than the limit of 64"
ELEMENTS = f"input 'x': shape [0,{HUGE}] describes more than 2147483648 elements"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("bad_input")
    with running(["--model_config_file", str(half_and_mnist(root))], root) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _request(shape: list[int], raw: bool, model: str = "half") -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=shape)
    count = 1 if 0 not in shape else 0
    if raw:
        request.raw_input_contents.append(struct.pack("<f", 4.0) * count)
    else:
        tensor.contents.fp32_contents.extend([4.0] * count)
    return request


@pytest.mark.parametrize(
    ("shape", "raw", "named"),
    [
        pytest.param([1] * 65, True, DIMS, id="raw 65 dims"),
        pytest.param([1] * 65, False, DIMS, id="contents 65 dims"),
        pytest.param([0, HUGE], True, ELEMENTS, id="raw [0, 2**62]"),
        pytest.param([0, HUGE], False, ELEMENTS, id="contents [0, 2**62]"),
    ],
)
def test_grpc_bad_shapes_are_invalid_argument(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, shape: list[int], raw: bool, named: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(_request(shape, raw), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (caught.value.details() or "")
    answer = stub.ModelInfer(_request([1, 1], raw=True), timeout=10)
    assert struct.unpack("<f", answer.raw_output_contents[0]) == (4.0,)


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        pytest.param(
            "/v1/models/half:predict", b"[" * 100_000, "nests 100000 levels deep", id="v1 [ x100000"
        ),
        pytest.param("/v2/models/half/infer", b"[" * 100_000, "depth limit exceeded", id="v2 [ x100000"),
        pytest.param(
            "/v2/models/half/infer",
            json.dumps(
                {"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, HUGE], "data": []}]}
            ).encode(),
            ELEMENTS,
            id="v2 JSON [0, 2**62]",
        ),
    ],
)
def test_rest_bad_input_is_a_400(server: Server, path: str, body: bytes, named: str) -> None:
    answer = server.post(path, data=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert named in answer.json()["error"]
    assert server.post("/v1/models/half:predict", {"instances": [[4.0]]}).json() == {"predictions": [[4.0]]}


def test_unknown_names_are_counted_under_unknown(
    server: Server, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    for i in range(3):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(_request([1, 1], raw=True, model=f"nope-grpc-{i}"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert server.post(f"/v1/models/nope-rest-{i}:predict", {"instances": [1.0]}).status_code == 404
    text = server.get("/metrics").text
    assert "nope-" not in text
    grpc_line = 'modelport_requests_total{api="grpc_infer",model="_unknown",status="404",version=""} 3.0'
    rest_line = 'modelport_requests_total{api="predict",model="_unknown",status="404",version=""} 3.0'
    assert grpc_line in text and rest_line in text


def test_grpc_a_version_of_unicode_digits_is_invalid_argument(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    """Found by the fuzzer: version "²" passes str.isdigit(), then int() refuses it: UNKNOWN."""
    assert not stub.ModelReady(service_pb2.ModelReadyRequest(name="half", version="²"), timeout=10).ready
    metadata = service_pb2.ModelMetadataRequest(name="half", version="²")
    infer = service_pb2.ModelInferRequest(model_name="half", model_version="²")
    for rpc, message in ((stub.ModelMetadata, metadata), (stub.ModelInfer, infer)):
        with pytest.raises(grpc.RpcError) as caught:
            rpc(message, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "version must be a positive integer, got '²'"
