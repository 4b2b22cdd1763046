"""The Open Inference Protocol v2 over gRPC, judged by tritonclient.grpc against a real server;
malformed messages are built with the same client's generated protobuf classes."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from support import Server, half_and_mnist, running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grpc")
    half_and_mnist(root)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    with running(["--model_config_file", str(repo / "models.yaml")], repo) as srv:
        srv.wait_ready()
        assert srv.grpc_port
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_health_readiness_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.is_model_ready("half", "1")
    assert not client.is_model_ready("half", "9")
    assert not client.is_model_ready("nope")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "modelport"
    model = client.get_model_metadata("mnist", as_json=True)
    assert model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "image_bytes", "datatype": "BYTES", "shape": ["-1"]}]
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_metadata("nope")


def test_infer_fp32(client: grpcclient.InferenceServerClient) -> None:
    x = np.array([[1.0], [4.0], [-2.0]], dtype=np.float32)
    tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("half", [tensor], outputs=[grpcclient.InferRequestedOutput("y")], request_id="g-1")
    np.testing.assert_allclose(result.as_numpy("y"), 0.5 * x + 2.0)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("g-1", "half", "1")


def test_infer_bytes_images(client: grpcclient.InferenceServerClient, repo: Path) -> None:
    paths = sorted((repo / "mnist" / "samples").glob("digit-?.png"))
    images = np.array([p.read_bytes() for p in paths], dtype=np.object_)
    tensor = grpcclient.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(images)
    result = client.infer("mnist", [tensor])
    classes = result.as_numpy("classes")
    assert classes is not None
    right = sum(int(c) == int(p.stem[-1]) for c, p in zip(classes, paths, strict=True))
    assert right >= len(paths) - 1


def test_wrong_shape_is_invalid_argument(client: grpcclient.InferenceServerClient) -> None:
    tensor = grpcclient.InferInput("x", [2, 2], "FP32")
    tensor.set_data_from_numpy(np.ones((2, 2), np.float32))
    with pytest.raises(InferenceServerException, match=r"expects shape \[-1, 1\], got \[2, 2\]") as caught:
        client.infer("half", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert client.is_server_live()


def _request(**fields: object) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="half")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    for key, value in fields.items():
        if key == "fp32":
            tensor.contents.fp32_contents.extend(value)  # type: ignore[arg-type]
        elif key == "bytes":
            tensor.contents.bytes_contents.extend(value)  # type: ignore[arg-type]
        elif key == "raw":
            request.raw_input_contents.append(value)  # type: ignore[arg-type]
        elif key == "datatype":
            tensor.datatype = value  # type: ignore[assignment]
        elif key == "output":
            request.outputs.add(name=value)
    return request


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"fp32": [1.0, 2.0], "raw": np.ones(2, "<f4").tobytes()}, "both contents and raw_input_contents"),
        ({"raw": np.ones(2, "<f4").tobytes()[:5]}, "takes 8 bytes, binary_data_size is 5"),
        ({"fp32": [1.0]}, "shape [2, 1] holds 2 elements, the contents have 1"),
        ({"bytes": [b"1", b"2"]}, "is FP32, whose data goes in fp32_contents, not bytes_contents"),
        ({"datatype": "BYTES", "bytes": [b"1", b"2"]}, "has datatype BYTES, but the model expects FP32"),
        ({"fp32": [1.0, 2.0], "output": "nope"}, "unknown output 'nope'"),
    ],
)
def test_malformed_messages_are_invalid_argument(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, fields: dict[str, object], named: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(_request(**fields), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in caught.value.details()


def test_unknown_model_is_not_found(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = _request(fp32=[1.0, 2.0])
    request.model_name = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_raw_bytes_and_typed_contents_give_the_same_answer(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    typed = stub.ModelInfer(_request(fp32=[1.0, 3.0]), timeout=10)
    raw = stub.ModelInfer(_request(raw=np.array([1.0, 3.0], "<f4").tobytes()), timeout=10)
    for response in (typed, raw):
        assert np.frombuffer(response.raw_output_contents[0], "<f4").tolist() == [2.5, 3.5]


def test_grpc_requests_are_counted(server: Server, client: grpcclient.InferenceServerClient) -> None:
    tensor = grpcclient.InferInput("x", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 1), np.float32))
    client.infer("half", [tensor])
    metrics = server.get("/metrics").text
    assert 'modelport_requests_total{api="grpc_infer",model="half",status="200",version="1"}' in metrics


def test_image_bytes_sent_as_base64_text_over_rest_match_grpc(
    server: Server, client: grpcclient.InferenceServerClient, repo: Path
) -> None:
    png = (repo / "mnist" / "samples" / "digit-4.png").read_bytes()
    tensor = grpcclient.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([png], dtype=np.object_))
    over_grpc = client.infer("mnist", [tensor]).as_numpy("probabilities")
    doc = {
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(png).decode()],
            }
        ]
    }
    over_rest = server.post("/v2/models/mnist/infer", doc).json()
    probabilities = next(o for o in over_rest["outputs"] if o["name"] == "probabilities")["data"]
    np.testing.assert_allclose(over_grpc.ravel(), probabilities, rtol=1e-6)
    assert int(np.argmax(over_grpc)) == 4  # digit-4.png, by both routes
