"""Per-request limits against a real `modelport serve` (README, "Limits"): rows per request
(`max_batch_size`, default 64, or the model's model.yaml), BYTES elements per request
(`--max_bytes_elements`, default 65,536) and decoded pixels per request (`--max_request_pixels`,
default 40 million). Each is checked from what the request declares, before anything is decoded,
on every protocol: TF Serving v1 (row and columnar), v2 JSON, the v2 binary extension (through
tritonclient.http) and gRPC (tritonclient.grpc). Over a limit is a 400 / INVALID_ARGUMENT whose
message names the limit, the size asked and the setting; at the limit is served."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from PIL import Image
from tritonclient.utils import InferenceServerException

from support import Server, half_and_mnist, mark_complete, running

ROWS = (
    "more than the limit of 64 rows per request (max_batch_size: model.yaml, or the server's "
    "--max_batch_size)"
)
PIXELS = "more than the limit of 40000000 pixels per request (--max_request_pixels)"
ELEMENTS = "more than the limit of 65536 per request (--max_bytes_elements)"


def _strings_model(version: Path) -> None:
    """y = x for a string tensor [batch]: a model that takes BYTES. Its model.yaml allows 10
    million rows, so that the BYTES element limit is what refuses the requests below."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "strings",
        [helper.make_tensor_value_info("x", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    version.mkdir(parents=True)
    onnx.save(model, str(version / "model.onnx"))
    (version / "model.yaml").write_text("max_batch_size: 10000000\n")
    mark_complete(version)


def _eight_rows_model(root: Path) -> Path:
    """half_plus_two again, whose model.yaml says `max_batch_size: 8`."""
    from support import half_plus_two

    version = root / "eight" / "1"
    half_plus_two(version)
    (version / "model.yaml").write_text("max_batch_size: 8\n")
    mark_complete(version)
    return root / "eight"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("limits")
    config = half_and_mnist(root)
    _strings_model(root / "strings" / "1")
    eight = _eight_rows_model(root)
    config.write_text(
        config.read_text()
        + f"    - {{name: strings, base_path: {root / 'strings'}}}\n"
        + f"    - {{name: eight, base_path: {eight}}}\n"
    )
    with running(["--model_config_file", str(config)], root) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}", network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


def _png(width: int, height: int) -> bytes:
    """A blank image: 2000x2000 is 4 million pixels in a few KB of PNG."""
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, "PNG")
    return out.getvalue()


def _refused(answer: requests.Response, *named: str) -> None:
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    for part in named:
        assert part in message, message


# -- rows per request --


def _half_v2(rows: int) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [rows, 1], "datatype": "FP32", "data": [1.0] * rows}]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/models/half:predict", lambda n: {"instances": [[1.0]] * n}, id="v1 row"),
        pytest.param("/v1/models/half:predict", lambda n: {"inputs": [[1.0]] * n}, id="v1 columnar"),
        pytest.param("/v1/models/half:regress", lambda n: {"examples": [{"x": [1.0]}] * n}, id="v1 regress"),
        pytest.param("/v2/models/half/infer", _half_v2, id="v2 JSON"),
    ],
)
def test_more_rows_than_max_batch_size_is_a_400_naming_it_and_the_limit_itself_is_served(
    server: Server, path: str, body: object
) -> None:
    make = body  # a function of the number of rows
    _refused(server.post(path, make(65)), "input 'x' has 65 rows", ROWS)  # type: ignore[operator]
    assert server.post(path, make(64)).status_code == 200  # type: ignore[operator]


def test_more_rows_than_max_batch_size_over_the_binary_extension_and_grpc(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    x = np.ones((65, 1), np.float32)
    tensor = httpclient.InferInput("x", [65, 1], "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        http.infer("half", [tensor])
    assert "input 'x' has 65 rows" in str(caught.value) and ROWS in str(caught.value)
    typed = grpcclient.InferInput("x", [65, 1], "FP32")
    typed.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.infer("half", [typed])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'x' has 65 rows" in caught.value.message() and ROWS in caught.value.message()
    fits = grpcclient.InferInput("x", [64, 1], "FP32")
    fits.set_data_from_numpy(x[:64])
    assert grpc_client.infer("half", [fits]).as_numpy("y").shape == (64, 1)


def test_a_models_own_max_batch_size_in_model_yaml_replaces_the_servers(server: Server) -> None:
    _refused(
        server.post("/v1/models/eight:predict", {"instances": [[1.0]] * 9}),
        "has 9 rows, more than the limit of 8 rows",
    )
    assert server.post("/v1/models/eight:predict", {"instances": [[1.0]] * 8}).status_code == 200


def test_100_pngs_of_2000x2000_in_650_kb_are_refused_before_decoding(
    server: Server, http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    """The issue's request: it held /healthz for 15.9 s. Now the rows are counted first."""
    png = _png(2000, 2000)
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}] * 100}
    assert len(json.dumps(body)) < 650_000
    started = time.perf_counter()
    _refused(server.post("/v1/models/mnist:predict", body), "input 'image_bytes' has 100 rows", ROWS)
    images = np.array([png] * 100, dtype=object)
    tensor = httpclient.InferInput("image_bytes", [100], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=True)
    with pytest.raises(InferenceServerException, match="has 100 rows"):
        http.infer("mnist", [tensor])
    typed = grpcclient.InferInput("image_bytes", [100], "BYTES")
    typed.set_data_from_numpy(images)
    with pytest.raises(InferenceServerException, match="has 100 rows"):
        grpc_client.infer("mnist", [typed])
    # Decoding them took 15.9 s; three refusals that decode nothing take milliseconds. The bound
    # leaves room for a machine shared with other work.
    assert time.perf_counter() - started < 3.0


# -- pixels per request --


def test_images_over_max_request_pixels_are_refused_from_their_headers_on_every_protocol(
    server: Server, http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    """11 images of 2000x2000: each within MNIST's per-image max_pixels (4 million), 44 million
    together. The message counts them from the headers; none is decoded."""
    png = _png(2000, 2000)
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}] * 11}
    started = time.perf_counter()
    _refused(server.post("/v1/models/mnist:predict", body), "11 images hold 44000000 pixels", PIXELS)
    v2 = {"inputs": [{"name": "image_bytes", "shape": [11], "datatype": "BYTES",
                      "data": [base64.b64encode(png).decode()] * 11}]}  # fmt: skip
    _refused(server.post("/v2/models/mnist/infer", v2), "11 images hold 44000000 pixels", PIXELS)
    images = np.array([png] * 11, dtype=object)
    tensor = httpclient.InferInput("image_bytes", [11], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        http.infer("mnist", [tensor])
    assert PIXELS in str(caught.value)
    typed = grpcclient.InferInput("image_bytes", [11], "BYTES")
    typed.set_data_from_numpy(images)
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.infer("mnist", [typed])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and PIXELS in caught.value.message()
    assert time.perf_counter() - started < 3.0  # decoding 44 million pixels four times takes longer
    small = {"instances": [{"image_bytes": {"b64": base64.b64encode(_png(28, 28)).decode()}}] * 3}
    assert server.post("/v1/models/mnist:predict", small).status_code == 200


# -- BYTES elements per request --


def _peak_rss(server: Server) -> int:
    """The server's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


MIB = 1024 * 1024
# The server reads a body into memory, and joining its chunks copies it once: two 30 MiB copies.
# Building the 7.8 million strings in them took 888 MB; the bound is that copy plus 60 MiB.
PEAK_GROWTH_BOUND = 120 * MIB


def test_30_mib_of_one_character_strings_in_v2_json_is_refused_quickly_in_bounded_memory(
    server: Server,
) -> None:
    count = 30 * MIB // 4  # `"a",` per element: 7,864,320 elements
    body = (
        b'{"inputs": [{"name": "x", "shape": [%d], "datatype": "BYTES", "data": [' % count
        + b'"a",' * (count - 1)
        + b'"a"]}]}'
    )
    before = _peak_rss(server)
    started = time.perf_counter()
    answer = server.post("/v2/models/strings/infer", data=body, headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - started
    _refused(answer, f"holds at least {count + 7} JSON strings", "65536 BYTES elements per request")
    assert _peak_rss(server) - before < PEAK_GROWTH_BOUND
    assert elapsed < 5.0  # it took 14 s of parsing and building


def test_30_mib_of_one_byte_elements_in_the_binary_extension_is_refused_in_bounded_memory(
    server: Server,
) -> None:
    count = 30 * MIB // 5  # a 4-byte length and one byte each: 6,291,456 elements
    header = json.dumps({"inputs": [{"name": "x", "shape": [count], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 5 * count}}]}).encode()  # fmt: skip
    body = header + (struct.pack("<I", 1) + b"a") * count
    before = _peak_rss(server)
    started = time.perf_counter()
    answer = server.post(
        "/v2/models/strings/infer",
        data=body,
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    elapsed = time.perf_counter() - started
    _refused(answer, f"input 'x' holds {count} BYTES elements", ELEMENTS)
    assert _peak_rss(server) - before < PEAK_GROWTH_BOUND
    assert elapsed < 5.0  # it took 14.2 s


def test_bytes_elements_over_the_limit_over_grpc_and_v1_and_at_the_limit_served(
    server: Server, grpc_client: grpcclient.InferenceServerClient
) -> None:
    over = np.array([b"a"] * 65_537, dtype=object)
    typed = grpcclient.InferInput("x", [65_537], "BYTES")
    typed.set_data_from_numpy(over)
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.infer("strings", [typed])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert (
        "input 'x' holds 65537 BYTES elements" in caught.value.message()
        and ELEMENTS in caught.value.message()
    )
    _refused(
        server.post("/v1/models/strings:predict", {"instances": ["a"] * 65_537}), "holds 65537", ELEMENTS
    )
    # v2 JSON that passes the pre-parse guard (65,537 strings and 7 names), refused from its shape
    v2 = {"inputs": [{"name": "x", "shape": [65_537], "datatype": "BYTES", "data": ["a"] * 65_537}]}
    _refused(server.post("/v2/models/strings/infer", v2), "input 'x' holds 65537 BYTES elements", ELEMENTS)
    fits = grpcclient.InferInput("x", [65_536], "BYTES")
    fits.set_data_from_numpy(over[:65_536])
    assert grpc_client.infer("strings", [fits]).as_numpy("y").shape == (65_536,)
