"""Is the model still right: request ids on every answer, the prediction log, feedback and live
accuracy, and drift from the version's reference profile, against one real server serving the
MNIST example."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelport.examples import write_mnist_repository
from support import Server, running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("quality") / "mnist"
    write_mnist_repository(base)
    return base


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    with running(["--model_name", "mnist", "--model_base_path", str(repo)], repo.parent) as srv:
        srv.wait_ready()
        yield srv


def _digit(repo: Path, digit: int = 7) -> dict[str, object]:
    png = (repo / "samples" / f"digit-{digit}.png").read_bytes()
    return {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}


def test_every_answer_carries_a_request_id_echoing_a_sane_one(server: Server, repo: Path) -> None:
    mine = server.post("/v1/models/mnist:predict", _digit(repo), headers={"x-request-id": "order-42:a"})
    assert mine.status_code == 200
    assert mine.headers["x-request-id"] == "order-42:a"
    ids = set()
    for path in ("/v1/models/mnist:predict", "/v2/models/mnist/infer"):
        for _ in range(2):
            answer = server.post(path, _digit(repo))
            ids.add(answer.headers["x-request-id"])
    assert len(ids) == 4  # a new one for each answer that came without
    for bad in ("x" * 129, "two words", "caf\u00e9".encode().decode("latin-1")):
        answer = server.post("/v1/models/mnist:predict", _digit(repo), headers={"x-request-id": bad})
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] not in ("", bad)
    # errors and the plain endpoints too
    assert server.post("/v1/models/nope:predict", {}).headers["x-request-id"]
    assert server.get("/healthz", headers={"x-request-id": "probe-1"}).headers["x-request-id"] == "probe-1"


def test_a_grpc_call_carries_its_request_id_in_trailing_metadata(server: Server, repo: Path) -> None:
    png = (repo / "samples" / "digit-3.png").read_bytes()
    request = service_pb2.ModelInferRequest(model_name="mnist", id="from-the-field")
    tensor = request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(png)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "grpc-7"),))
        assert ("x-request-id", "grpc-7") in call.trailing_metadata()
        _, call = stub.ModelInfer.with_call(request)
        assert ("x-request-id", "from-the-field") in call.trailing_metadata()
        with pytest.raises(grpc.RpcError) as failed:
            unknown = service_pb2.ModelInferRequest(model_name="nope")
            stub.ModelInfer(unknown, metadata=(("x-request-id", "e-1"),))
        assert ("x-request-id", "e-1") in failed.value.trailing_metadata()
