"""The TF Serving REST API of a real `modelport serve` process, driven over HTTP."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import skops.io as sio
from onnx import TensorProto, helper
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from support import Server, half_plus_two, mark_complete, running


def _two_inputs(version_dir: Path) -> None:
    """sum = a + b, both float32 [-1, 2]: a model with named inputs."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 2]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    version_dir.mkdir(parents=True)
    onnx.save(model, str(version_dir / "model.onnx"))
    mark_complete(version_dir)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("repo")
    for version, offset in [(1, 2.0), (2, 3.0)]:
        half_plus_two(root / "half" / str(version), offset=offset)
        mark_complete(root / "half" / str(version))
    _two_inputs(root / "add" / "1")
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    (root / "iris" / "1").mkdir(parents=True)
    sio.dump(LogisticRegression(max_iter=500).fit(x, names[y]), root / "iris" / "1" / "model.skops")
    mark_complete(root / "iris" / "1")
    (root / "line" / "1").mkdir(parents=True)
    sio.dump(
        LinearRegression().fit(np.arange(10.0).reshape(5, 2), np.arange(5.0) * 3),
        root / "line" / "1" / "model.skops",
    )
    mark_complete(root / "line" / "1")
    config = root / "models.config"
    config.write_text(
        f"""
        model_config_list {{
          config {{ name: 'half' base_path: '{root / "half"}' model_platform: 'onnx'
                   model_version_policy {{ all {{}} }}
                   version_labels {{ key: 'stable' value: 1 }} version_labels {{ key: 'canary' value: 2 }} }}
          config {{ name: 'add' base_path: '{root / "add"}' }}
          config {{ name: 'iris' base_path: '{root / "iris"}' model_platform: 'sklearn' }}
          config {{ name: 'line' base_path: '{root / "line"}' }}
        }}
        """
    )
    with running(["--model_config_file", str(config), "--max_request_bytes", "100000"], root) as srv:
        srv.wait_ready()
        yield srv


# -- predict --


def test_predict_row_format_single_input(server: Server) -> None:
    r = server.post("/v1/models/half:predict", {"instances": [1.0, 2.0, 5.0]})
    assert r.status_code == 200, r.text
    # latest version (2) answers: 0.5 x + 3; one output -> its name is omitted
    assert r.json() == {"predictions": [[3.5], [4.0], [5.5]]}


def test_predict_columnar_format(server: Server) -> None:
    r = server.post("/v1/models/half:predict", {"inputs": [[1.0], [2.0]]})
    assert r.json() == {"outputs": [[3.5], [4.0]]}
    r = server.post("/v1/models/half:predict", {"inputs": {"x": [[4.0]]}})
    assert r.json() == {"outputs": [[5.0]]}


def test_predict_named_inputs_in_both_formats(server: Server) -> None:
    rows = {"instances": [{"a": [1, 2], "b": [10, 20]}, {"a": [3, 4], "b": [30, 40]}]}
    assert server.post("/v1/models/add:predict", rows).json() == {"predictions": [[11, 22], [33, 44]]}
    cols = {"inputs": {"a": [[1, 2]], "b": [[0.5, 0.5]]}}
    assert server.post("/v1/models/add:predict", cols).json() == {"outputs": [[1.5, 2.5]]}


def test_versions_and_labels_route(server: Server) -> None:
    body = {"instances": [[2.0]]}
    assert server.post("/v1/models/half/versions/1:predict", body).json() == {"predictions": [[3.0]]}
    assert server.post("/v1/models/half/versions/2:predict", body).json() == {"predictions": [[4.0]]}
    assert server.post("/v1/models/half/labels/stable:predict", body).json() == {"predictions": [[3.0]]}
    assert server.post("/v1/models/half/labels/canary:predict", body).json() == {"predictions": [[4.0]]}


def test_signature_name(server: Server) -> None:
    body = {"signature_name": "serving_default", "instances": [[2.0]]}
    assert server.post("/v1/models/half:predict", body).json() == {"predictions": [[4.0]]}
    r = server.post("/v1/models/half:predict", {"signature_name": "nope", "instances": [[2.0]]})
    assert r.status_code == 400
    assert r.json()["error"].startswith('Serving signature key "nope" not found.')


def test_gzip_body(server: Server) -> None:
    data = gzip.compress(json.dumps({"instances": [[2.0]]}).encode())
    r = server.post("/v1/models/half:predict", data=data, headers={"Content-Encoding": "gzip"})
    assert r.json() == {"predictions": [[4.0]]}


# -- classify / regress (scikit-learn) --


def test_classify(server: Server) -> None:
    r = server.post("/v1/models/iris:classify", {"examples": [{"X": [5.1, 3.5, 1.4, 0.2]}]})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert [label for label, _ in result] == ["setosa", "versicolor", "virginica"]
    assert max(result, key=lambda pair: pair[1])[0] == "setosa"
    assert sum(score for _, score in result) == pytest.approx(1.0)


def test_classify_with_context(server: Server) -> None:
    # context features are shared by every example; here it carries the whole input
    r = server.post("/v1/models/iris:classify", {"context": {"X": [6.7, 3.0, 5.2, 2.3]}, "examples": [{}]})
    assert max(r.json()["results"][0], key=lambda pair: pair[1])[0] == "virginica"


def test_regress(server: Server) -> None:
    r = server.post("/v1/models/line:regress", {"examples": [{"X": [0.0, 1.0]}, {"X": [2.0, 3.0]}]})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == pytest.approx([0.0, 3.0])


def test_sklearn_predict_gives_labels(server: Server) -> None:
    r = server.post("/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    (row,) = r.json()["predictions"]
    assert row["classes"] == "setosa"
    assert len(row["probabilities"]) == 3


def test_classify_needs_scores(server: Server) -> None:
    r = server.post("/v1/models/line:classify", {"examples": [{"X": [0.0, 1.0]}]})
    assert r.status_code == 400
    assert ":classify needs one score per class" in r.json()["error"]


# -- status and metadata --


def test_model_status(server: Server) -> None:
    r = server.get("/v1/models/half")
    assert r.status_code == 200
    assert r.json() == {
        "model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        ]
    }
    assert [
        s["version"] for s in server.get("/v1/models/half/versions/1").json()["model_version_status"]
    ] == ["1"]
    assert [
        s["version"] for s in server.get("/v1/models/half/labels/canary").json()["model_version_status"]
    ] == ["2"]


def test_model_metadata(server: Server) -> None:
    r = server.get("/v1/models/half/versions/1/metadata")
    assert r.status_code == 200
    doc = r.json()
    assert doc["model_spec"] == {"name": "half", "signature_name": "", "version": "1"}
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": False,
        },
        "name": "x",
    }
    assert sig["outputs"]["y"]["dtype"] == "DT_FLOAT"


# -- health and metrics --


def test_health_endpoints(server: Server) -> None:
    assert server.get("/healthz").status_code == 200
    ready = server.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"]["half"]["available_versions"] == [1, 2]
    assert server.get("/v2/health/live").status_code == 200
    assert server.get("/v2/health/ready").status_code == 200


def _samples(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = server.get("/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics(server: Server) -> None:
    ok = frozenset({"api": "predict", "model": "half", "status": "200", "version": "1"}.items())
    bad = frozenset({"api": "predict", "model": "half", "status": "400", "version": "2"}.items())
    before = _samples(server)
    for _ in range(3):
        server.post("/v1/models/half/versions/1:predict", {"instances": [[1.0]]})
    for _ in range(2):
        server.post("/v1/models/half:predict", {"instances": "oops"})
    after = _samples(server)

    def made(name: str, labels: frozenset[tuple[str, str]]) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert made("modelport_requests_total", ok) == 3 and made("modelport_requests_total", bad) == 2
    assert made("modelport_request_duration_seconds_count", ok) == 3
    assert made("modelport_request_duration_seconds_bucket", ok | {("le", "+Inf")}) == 3
    text = server.get("/metrics").text
    assert 'modelport_model_state{model="half",version="2"} 30.0' in text
    assert 'modelport_model_load_seconds{model="half",version="1"}' in text
    assert 'modelport_requests_in_flight{model="half"} 0.0' in text
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text


# -- bad input: each a 4xx naming the problem, and the server keeps serving --


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/models/half:predict", b"{not json", 400, "JSON Parse error"),
        ("/v1/models/half:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("/v1/models/half:predict", b"[1, 2]", 400, "Is not an object"),
        (
            "/v1/models/half:predict",
            b'{"signature_name": "serving_default"}',
            400,
            "Missing 'inputs' or 'instances' key",
        ),
        (
            "/v1/models/half:predict",
            b'{"instances": [[1.0]], "inputs": [[1.0]]}',
            400,
            "expecting only one of 'inputs' or 'instances'",
        ),
        ("/v1/models/half:predict", b'{"instances": 3}', 400, "Expecting 'instances' to be an list/array"),
        ("/v1/models/half:predict", b'{"instances": []}', 400, "No values in 'instances' array"),
        (
            "/v1/models/half:predict",
            b'{"instances": [[1.0, 2.0]]}',
            400,
            "input 'x' expects shape [-1, 1], got [1, 2]",
        ),
        ("/v1/models/half:predict", b'{"instances": [[1.0], [1.0, 2.0]]}', 400, "rows have different shapes"),
        ("/v1/models/half:predict", b'{"instances": [["a"]]}', 400, "input 'x' expects float32, got strings"),
        (
            "/v1/models/half:predict",
            b'{"instances": [[true]]}',
            400,
            "input 'x' expects float32, got booleans",
        ),
        ("/v1/models/half:predict", b'{"instances": [[NaN]]}', 400, "input 'x' contains NaN or Infinity"),
        (
            "/v1/models/half:predict",
            b'{"instances": [[Infinity]]}',
            400,
            "input 'x' contains NaN or Infinity",
        ),
        ("/v1/models/half:predict", b'{"instances": [{"b64": "AAAA"}]}', 400, "expects float32"),
        ("/v1/models/add:predict", b'{"instances": [{"a": [1, 2]}]}', 400, "keys must be equal to: a,b"),
        ("/v1/models/add:predict", b'{"inputs": {"a": [[1, 2]], "c": [[1, 2]]}}', 400, "unknown input ['c']"),
        (
            "/v1/models/nope:predict",
            b'{"instances": [1.0]}',
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "/v1/models/half/versions/9:predict",
            b'{"instances": [1.0]}',
            404,
            "Servable not found for request: Specific(half, 9)",
        ),
        (
            "/v1/models/half/labels/beta:predict",
            b'{"instances": [1.0]}',
            400,
            "Unrecognized servable version label: beta",
        ),
        ("/v1/models/half/versions/x:predict", b'{"instances": [1.0]}', 404, "Malformed request"),
        ("/v1/models/half:explain", b'{"instances": [1.0]}', 404, "Malformed request"),
        (
            "/v1/models/half:predict",
            b'{"instances": [1.0], "signature_name": 3}',
            400,
            "'signature_name' must be a string",
        ),
        (
            "/v1/models/iris:classify",
            b'{"examples": {}}',
            400,
            "Expecting 'examples' to be a non-empty list/array",
        ),
    ],
)
def test_bad_input(server: Server, path: str, body: bytes, status: int, message: str) -> None:
    r = server.post(path, data=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert server.post("/v1/models/half:predict", {"instances": [[1.0]]}).json() == {"predictions": [[3.5]]}


def test_unknown_model_status_and_version(server: Server) -> None:
    r = server.get("/v1/models/nope")
    assert (r.status_code, r.json()) == (404, {"error": "Could not find any versions of model nope"})
    r = server.get("/v1/models/half/versions/7")
    assert (r.status_code, r.json()) == (404, {"error": "Could not find version 7 of model half"})
    assert server.get("/v1/models/half/labels/x").status_code == 400


def test_oversize_body_is_refused(server: Server) -> None:
    big = json.dumps({"instances": [[1.0]] * 30000}).encode()
    assert len(big) > 100000
    r = server.post("/v1/models/half:predict", data=big)
    assert r.status_code == 413
    assert "larger than the limit of 100000 bytes" in r.json()["error"]
    bomb = gzip.compress(b'{"instances": [' + b"[1.0]," * 100000 + b"[1.0]]}")
    r = server.post("/v1/models/half:predict", data=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_wrong_method(server: Server) -> None:
    assert server.get("/v1/models/half:predict").status_code == 404
    assert server.post("/v1/models/half", {}).status_code == 404
