"""Bad input is the client's error (README, "Errors"): every request below gets a 400 whose
message names the problem, never a 500, and the server answers the next good request. In-process
on the real ASGI app, half_plus_two (`x` FP32 [-1, 1]) and the MNIST example (`image_bytes`
BYTES [-1]); gRPC's share is in tests/e2e/test_bad_input.py."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from claims_support import call
from modelport.repository.config import parse_yaml_config
from modelport.repository.manager import ModelManager
from modelport.runtimes import default_runtimes
from modelport.server.app import RestApp, ServerOptions
from modelport.server.metrics import ServerMetrics
from modelport.testing.clock import FakeClock
from support import half_and_mnist

V1 = "/v1/models/half:predict"
V2 = "/v2/models/half/infer"
HUGE = 4611686018427387904  # 2**62


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestApp]:
    config = half_and_mnist(tmp_path_factory.mktemp("bad_input"))
    manager = ModelManager(parse_yaml_config(config.read_text()), default_runtimes(), FakeClock())
    manager.poll()
    assert manager.is_ready()
    with ThreadPoolExecutor(2) as pool:
        yield RestApp(manager, ServerMetrics(), ServerOptions(), pool)


def _nested(levels: int, leaf: str) -> str:
    return "[" * levels + leaf + "]" * levels


def _v2(tensor: dict[str, Any], binary: bytes = b"") -> tuple[bytes, dict[str, str]]:
    text = json.dumps({"inputs": [tensor]}).encode()
    headers = {"inference-header-content-length": str(len(text))} if binary else {}
    return text + binary, headers


def _x(shape: list[int], size: int | None = None, data: Any = None) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": shape}
    if size is not None:
        tensor["parameters"] = {"binary_data_size": size}
    else:
        tensor["data"] = data
    return tensor


def _image(data: Any) -> dict[str, Any]:
    return {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": data}


def _data_text(tensor: dict[str, Any], data: str) -> bytes:
    """A v2 body whose `data` is given as JSON text: too deep for json.dumps to write."""
    return _v2({**tensor, "data": None})[0].replace(b'"data": null', b'"data": ' + data.encode())


DEPTH = "more than the limit of 68 (a tensor of at most 64 dimensions in its request envelope)"
ELEMENTS = f"input 'x': shape [0,{HUGE}] describes more than 2147483648 elements"

CASES = [
    pytest.param(V1, b"[" * 100_000, {}, f"nests 100000 levels deep, {DEPTH}", id="v1 [ x100000"),
    pytest.param(
        V1, b'{"instances":' + b"[" * 5000, {}, f"nests 5001 levels deep, {DEPTH}", id="v1 instances [ x5000"
    ),
    pytest.param(
        V1, f'{{"instances": {_nested(3000, "NaN")}}}'.encode(), {}, f"nests 3001 levels deep, {DEPTH}",
        id="v1 NaN 3000 deep",
    ),
    pytest.param(
        V1, _nested(1000, "1").encode(), {}, "<list nested too deeply to show> Is not an object",
        id="v1 list 1000 deep",
    ),
    pytest.param(
        V1, f'{{"instances": {_nested(100, "1.0")}}}'.encode(), {},
        "The requested array would exceed the maximum number of dimension of 64", id="v1 instances 100 deep",
    ),
    pytest.param(
        V1, f'{{"instances": [[1.0]], "signature_name": {_nested(1000, "")}}}'.encode(), {},
        "JSON Value: <list nested too deeply to show> 'signature_name' must be a string",
        id="v1 signature_name 1000 deep",
    ),
    pytest.param(
        V2, _data_text(_x([1, 1]), _nested(100, "1")), {},
        "'data' is a ragged nested list (setting an array element with a sequence. The requested array "
        "would exceed the maximum number of dimension of 64.)", id="v2 FP32 data 100 deep",
    ),
    pytest.param(V2, b"[" * 100_000, {}, "not valid JSON: depth limit exceeded", id="v2 [ x100000"),
    pytest.param(
        V2, b'{"inputs":' + b"[" * 5000, {}, "not valid JSON: depth limit exceeded", id="v2 inputs [ x5000"
    ),
    pytest.param(
        V2, f'{{"inputs": {_nested(3000, "NaN")}}}'.encode(), {}, "not valid JSON: depth limit exceeded",
        id="v2 NaN 3000 deep",
    ),
    pytest.param(
        "/v2/models/mnist/infer", *_v2(_image([{"b64": "abc"}])),
        """input 'image_bytes' row 0: {"b64": ...} is not valid base64""", id="v2 b64 abc",
    ),
    pytest.param(
        "/v2/models/mnist/infer", _data_text(_image(None), _nested(990, '"a"')), {},
        "input 'image_bytes': 'data' nests deeper than 64 levels", id="v2 BYTES data 990 deep",
    ),
    pytest.param(
        V2, *_v2(_x([1] * 65, 4), struct.pack("<f", 1.0)),
        "input 'x': shape has 65 dimensions, more than the limit of 64", id="v2 binary 65 dims",
    ),
    pytest.param(
        V2, *_v2(_x([1] * 65, data=[1.0])),
        "input 'x': shape has 65 dimensions, more than the limit of 64", id="v2 JSON 65 dims",
    ),
    pytest.param(V2, *_v2(_x([0, HUGE], 0), b""), ELEMENTS, id="v2 binary [0, 2**62]"),
    pytest.param(V2, *_v2(_x([0, HUGE], data=[])), ELEMENTS, id="v2 JSON [0, 2**62]"),
    # Found by the fuzzer (tests/e2e/test_fuzz_memory.py): a 500 "unpack_from requires a buffer
    # of at least 4 bytes" while naming the format of an image that is a JPEG's 3-byte magic.
    pytest.param(
        "/v1/models/mnist:predict", b'{"instances": [{"b64": "/9j/"}]}', {},
        "cannot decode image: a broken JPEG file", id="v1 image ff d8 ff",
    ),
    pytest.param(
        "/v2/models/mnist/infer", *_v2(_image([{"b64": "/9j/"}])),
        "cannot decode image: a broken JPEG file", id="v2 image ff d8 ff",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "headers", "named"), CASES)
def test_bad_input_is_a_400_naming_it_and_the_server_keeps_answering(
    app: RestApp, path: str, body: bytes, headers: dict[str, str], named: str
) -> None:
    answer = call(app, "POST", path, body, headers)
    assert answer.status == 400, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert named in json.loads(answer.body)["error"]
    good = call(app, "POST", V1, b'{"instances": [[4.0]]}')
    assert (good.status, json.loads(good.body)) == (200, {"predictions": [[4.0]]})
    good = call(app, "POST", V2, _v2(_x([1, 1], data=[4.0]))[0])
    assert good.status == 200 and json.loads(good.body)["outputs"][0]["data"] == [4.0]


def _requests(text: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelport_requests_total" and labels.items() <= sample.labels.items()
    )


def test_unknown_model_names_do_not_grow_the_metrics(app: RestApp) -> None:
    """20,000 404s to new names took /metrics from 23 KB to 47.6 MB, one series per name."""
    call(app, "GET", "/v1/models/nope-warm-up")  # the `_unknown` series exist from here on
    call(app, "POST", "/v1/models/nope-warm-up:predict", b"{}")
    call(app, "POST", "/v2/models/nope-warm-up/infer", b"{}")
    call(app, "GET", "/v1/models/half/versions/999")
    before = call(app, "GET", "/metrics").body
    for i in range(500):  # 2,000 requests, each to a name or version never seen before
        assert call(app, "GET", f"/v1/models/nope-{i}-a").status == 404
        assert call(app, "POST", f"/v1/models/nope-{i}-b:predict", b'{"instances": [1.0]}').status == 404
        assert call(app, "POST", f"/v2/models/nope-{i}-c/infer", b"{}").status == 404
        assert call(app, "GET", f"/v1/models/half/versions/{1000 + i}").status == 404
    after = call(app, "GET", "/metrics").body
    assert len(after) - len(before) < 10_000, (len(before), len(after))
    text = after.decode()
    assert "nope-" not in text and 'version="1000"' not in text
    unknown = {"model": "_unknown", "status": "404"}
    assert _requests(text, **unknown, api="status") == 501
    assert _requests(text, **unknown, api="predict", version="") == 501
    assert _requests(text, **unknown, api="infer", version="") == 501
    assert _requests(text, model="half", version="_unknown", api="status", status="404") == 501


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/half/versions/²"),
        ("GET", "/v2/models/half/versions/²/ready"),
        ("POST", "/v2/models/half/versions/²/infer"),
    ],
)
def test_a_version_of_unicode_digits_is_a_400(app: RestApp, method: str, path: str) -> None:
    """Found by the fuzzer: "²" passes str.isdigit() and then int() refuses it, a 500."""
    answer = call(app, method, path, b"{}" if method == "POST" else b"")
    assert answer.status == 400
    assert json.loads(answer.body) == {"error": "version must be a positive integer, got '²'"}
