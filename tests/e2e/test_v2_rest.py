"""The Open Inference Protocol v2 over REST, judged by a client we did not write: tritonclient.http
against a real `modelport serve` process. Bad input is sent raw, as a careless client would."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support import Server, half_and_mnist, running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("v2")
    half_and_mnist(root)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    with running(["--model_config_file", str(repo / "models.yaml")], repo) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield triton
    triton.close()


def _digits(repo: Path) -> list[tuple[int, bytes]]:
    paths = sorted((repo / "mnist" / "samples").glob("digit-?.png"))
    return [(int(p.stem[-1]), p.read_bytes()) for p in paths]


def test_health_and_readiness(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.is_model_ready("half", "1")
    assert not client.is_model_ready("half", "7")
    assert not client.is_model_ready("nope")


def test_server_metadata_advertises_binary_data(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "modelport"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("mnist")
    assert meta["name"] == "mnist"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["classes"]["datatype"] == "INT64"
    assert outputs["probabilities"] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
    half = client.get_model_metadata("half", "1")
    assert half["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_infer_fp32(client: httpclient.InferenceServerClient, binary_in: bool, binary_out: bool) -> None:
    x = np.array([[1.0], [2.0], [10.0]], dtype=np.float32)
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("y", binary_data=binary_out)
    result = client.infer("half", [tensor], outputs=[out], request_id="req-42")
    np.testing.assert_allclose(result.as_numpy("y"), 0.5 * x + 2.0)
    response = result.get_response()
    assert response["id"] == "req-42"
    assert response["model_name"] == "half"
    assert response["model_version"] == "1"


def test_infer_bytes_images(client: httpclient.InferenceServerClient, repo: Path) -> None:
    digits = _digits(repo)
    raw = np.array([png for _, png in digits], dtype=np.object_)
    # In JSON an image travels as base64 text; with the binary extension as its own bytes.
    text = np.array([base64.b64encode(png).decode() for _, png in digits], dtype=np.object_)
    for binary, images in ((False, text), (True, raw)):
        tensor = httpclient.InferInput("image_bytes", [len(images)], "BYTES")
        tensor.set_data_from_numpy(images, binary_data=binary)
        result = client.infer("mnist", [tensor])  # every output, binary by default
        classes = result.as_numpy("classes")
        assert classes is not None
        right = sum(int(c) == d for c, (d, _) in zip(classes, digits, strict=True))
        assert right >= len(digits) - 1, classes
        probabilities = result.as_numpy("probabilities")
        assert probabilities is not None
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_wrong_shape_is_a_clean_error(client: httpclient.InferenceServerClient) -> None:
    x = np.ones((2, 3), dtype=np.float32)
    tensor = httpclient.InferInput("x", [2, 3], "FP32")
    tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match=r"input 'x' expects shape \[-1, 1\], got \[2, 3\]"):
        client.infer("half", [tensor])
    assert client.is_server_live()


def _infer(server: Server, model: str, doc: object, binary: bytes = b"", **headers: str) -> tuple[int, str]:
    body = json.dumps(doc).encode()
    extra = dict(headers)
    if binary:
        extra["Inference-Header-Content-Length"] = str(len(body))
    r = server.post(f"/v2/models/{model}/infer", data=body + binary, headers=extra)
    return r.status_code, r.text


def _x(**fields: object) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0], **fields}]}


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        (_x(data=["a"]), "'data' does not hold FP32 values"),
        (_x(data=[True]), "'data' does not hold FP32 values"),
        (_x(shape=[2, 1]), "shape [2, 1] holds 2 elements, 'data' has 1"),
        (_x(datatype="BYTES", data=["1.0"]), "input 'x' has datatype BYTES, but the model expects FP32"),
        (_x(datatype="FP99"), 'datatype "FP99" is not one of BOOL'),
        (_x(shape="1"), "shape must be a list of non-negative integers"),
        (_x(name="z"), "unknown input 'z'"),
        ({**_x(), "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
        ({"inputs": []}, "'inputs' must be a non-empty list"),
        ({**_x(), "id": 5}, "'id' must be a string"),
        ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32"}]}, "neither 'data' nor"),
        (_x(data=[[1.0], [2.0, 3.0]], shape=[2, 1]), "ragged"),
    ],
)
def test_bad_json_requests_name_the_problem(server: Server, doc: object, named: str) -> None:
    status, text = _infer(server, "half", doc)
    assert status == 400, text
    assert named in json.loads(text)["error"]


def test_truncated_and_unclaimed_binary_payloads(server: Server) -> None:
    tensor = {"name": "x", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
    values = np.array([1.0, 2.0], dtype="<f4").tobytes()
    status, text = _infer(server, "half", {"inputs": [tensor]}, values[:5])
    assert status == 400 and "only 5 remain" in text
    status, text = _infer(server, "half", {"inputs": [tensor]}, values + b"xx")
    assert status == 400 and "2 bytes of binary data follow the JSON" in text
    bad_size = {**tensor, "parameters": {"binary_data_size": 4}}
    status, text = _infer(server, "half", {"inputs": [bad_size]}, values[:4])
    assert status == 400 and "takes 8 bytes, binary_data_size is 4" in text
    image = {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}
    truncated_element = struct.pack("<I", 100) + b"PNG..."
    status, text = _infer(server, "mnist", {"inputs": [image]}, truncated_element)
    assert status == 400 and "runs past the end" in text
    r = server.post(
        "/v2/models/half/infer", data=b'{"inputs": []}', headers={"Inference-Header-Content-Length": "999"}
    )
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.text
    status, text = _infer(server, "half", {"inputs": [tensor]}, values)
    assert status == 200, text
    assert json.loads(text)["outputs"][0]["data"] == [2.5, 3.0]


def test_undecodable_image_and_unknown_model(server: Server) -> None:
    doc = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["not a png"]}]}
    status, text = _infer(server, "mnist", doc)
    assert status == 400 and "row 0: an image in JSON must be base64 text" in text
    doc["inputs"][0]["data"] = [base64.b64encode(b"not a png").decode()]
    status, text = _infer(server, "mnist", doc)
    assert status == 400 and "row 0: cannot decode image" in text
    status, text = _infer(server, "nope", _x())
    assert status == 404 and "nope" in text
    r = server.post("/v2/models/half/versions/x/infer", {"inputs": []})
    assert r.status_code == 400 and "version must be a positive integer" in r.text
    assert server.post("/v2/models/half/infer", data=b"{not json").status_code == 400


def test_v2_requests_are_counted_in_metrics(server: Server) -> None:
    _infer(server, "half", _x())
    metrics = server.get("/metrics").text
    assert 'modelport_requests_total{api="infer",model="half",status="200",version="1"}' in metrics
