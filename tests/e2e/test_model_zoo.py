"""Models people bring, made by tools other than ours, served with no model.yaml: every protocol
answers what ONNX Runtime itself returns for the same rows.

The zoo: skl2onnx conversions (with and without ZipMap, whose output is one {class: probability}
map per row; int and string labels; a regressor; a pipeline), a PyTorch export with several
inputs and outputs, and onnx.helper graphs with float16, uint8, int64 and bool tensors and a
scalar output. Each is asked a few rows over TF Serving v1 (row and columnar), v2 REST (JSON)
and v2 gRPC (tritonclient), and the answer is compared with `InferenceSession.run` on the same
rows: ints, strings and booleans exactly, and floats exactly too once read back into the
output's dtype (JSON carries float32 and float16 in their shortest round-tripping form). An
output a protocol cannot express (ZipMap's maps on v2, a scalar in the row format) is a 400 (gRPC
INVALID_ARGUMENT) whose message names the output, and the other outputs stay reachable.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from tritonclient.utils import InferenceServerException

from support import Server, mark_complete, running

V2_NAMES = dict(bool="BOOL", uint8="UINT8", int64="INT64", float16="FP16", float32="FP32", object="BYTES")
DIGIT_NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@dataclass(frozen=True)
class Exhibit:
    """A model of the zoo: how to build it, the rows asked, and what a protocol cannot say."""

    build: Callable[[], onnx.ModelProto]
    feeds: Callable[[], dict[str, np.ndarray]]
    not_v2: tuple[str, ...] = ()  # outputs v2 has no datatype for (sequences of maps)
    not_rows: tuple[str, ...] = ()  # outputs the row format cannot hold (scalars)


def _digits(rows: int = 200) -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data[:rows].astype(np.float32), data.target[:rows]


def _fit(estimator: Any, labels: Callable[[np.ndarray], np.ndarray] = lambda y: y) -> Any:
    x, y = _digits()
    with warnings.catch_warnings():
        # A few iterations on 200 rows is enough for a model to serve; it need not converge.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(x, labels(y))


def _converted(estimator: Any, zipmap: bool = True) -> onnx.ModelProto:
    from skl2onnx import to_onnx

    options = None if zipmap else {id(estimator): {"zipmap": False}}
    model: onnx.ModelProto = to_onnx(estimator, _digits(1)[0], options=options, target_opset=17)
    return model


def mlp() -> onnx.ModelProto:
    """The issue's model: label int64 [N], probabilities float32 [N, 10]. Its row format answered
    500 `Type is not JSON serializable: numpy.longlong` (ONNX Runtime's int64 scalars)."""
    return _converted(
        _fit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0)), zipmap=False
    )


def tree_named() -> onnx.ModelProto:
    """skl2onnx's defaults on string labels: output_label string [N], output_probability a
    sequence of {label: probability} maps."""
    return _converted(_fit(DecisionTreeClassifier(max_depth=4, random_state=0), lambda y: DIGIT_NAMES[y]))


def pipeline() -> onnx.ModelProto:
    """StandardScaler + LogisticRegression, defaults: int64 labels and maps keyed by int."""
    return _converted(_fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=50))))


def regressor() -> onnx.ModelProto:
    """LinearRegression: variable float32 [N, 1]."""
    return _converted(_fit(LinearRegression(), lambda y: y.astype(np.float32)))


def digit_rows() -> dict[str, np.ndarray]:
    return {"X": load_digits().data[[3, 150, 1500]].astype(np.float32)}


def _graph_model(
    nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any]
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "zoo", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _tensors(**named: tuple[int, list[Any]]) -> list[Any]:
    return [helper.make_tensor_value_info(name, dtype, shape) for name, (dtype, shape) in named.items()]


def mixed() -> onnx.ModelProto:
    """Three inputs, five outputs: float16, uint8, int64 (beyond 2**53) and bool."""
    t, rows = TensorProto, "batch"
    outputs = _tensors(
        half_twice=(t.FLOAT16, [rows, 3]), pixels_inverted=(t.UINT8, [rows, 4]),
        ids_squared=(t.INT64, [rows, 2]), ids_sum=(t.INT64, [rows]), ids_positive=(t.BOOL, [rows, 2]),
    )  # fmt: skip
    return _graph_model(
        [
            helper.make_node("Add", ["half", "half"], ["half_twice"]),
            helper.make_node("BitwiseNot", ["pixels"], ["pixels_inverted"]),
            helper.make_node("Mul", ["ids", "ids"], ["ids_squared"]),
            helper.make_node("ReduceSum", ["ids", "axis"], ["ids_sum"], keepdims=0),
            helper.make_node("Greater", ["ids", "zero"], ["ids_positive"]),
        ],
        _tensors(half=(t.FLOAT16, [rows, 3]), pixels=(t.UINT8, [rows, 4]), ids=(t.INT64, [rows, 2])),
        outputs,
        [
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
        ],
    )


def mixed_rows() -> dict[str, np.ndarray]:
    return {
        "half": np.array([[0.1, -2.5, 1000.0], [1 / 3, 0.0, -65504 / 2], [6e-5, 7.0, 3.14]], np.float16),
        "pixels": np.array([[0, 1, 128, 255], [7, 200, 30, 4], [255, 255, 0, 0]], np.uint8),
        # 3_000_000_019 squared is 9.000000114e18: past 2**53, exact only if nothing goes via float.
        "ids": np.array([[3_000_000_019, -2], [0, 9_007_199_254_740_993], [-5, 1]], np.int64),
    }


def torch_export() -> onnx.ModelProto:
    """A PyTorch module exported as people do: two inputs (float32, int64 ids), three outputs
    (float32 scores, int64 argmax, bool), batch dimension dynamic."""
    import io

    import torch

    class Scorer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.embedding = torch.nn.Linear(4, 3), torch.nn.Embedding(10, 3)

        def forward(self, x: Any, ids: Any) -> tuple[Any, Any, Any]:
            scores = self.linear(x) + self.embedding(ids)
            return scores, scores.argmax(dim=1), scores > 0

    torch.manual_seed(0)
    names = ["x", "ids", "scores", "best", "positive"]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter (what most exported models out there came from) is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Scorer().eval(), (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)), buffer,
            input_names=names[:2], output_names=names[2:], dynamic_axes={n: {0: "batch"} for n in names},
            dynamo=False,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def torch_rows() -> dict[str, np.ndarray]:
    return {
        "x": np.array([[0.5, -1.0, 2.0, 0.0], [3.0, 0.25, -0.75, 1.0], [0.0, 0.0, 0.0, 0.0]], np.float32),
        "ids": np.array([0, 9, 4], np.int64),
    }


def scalar() -> onnx.ModelProto:
    """A total over the whole batch: shape [], beside a per-row output."""
    return _graph_model(
        [
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
            helper.make_node("Neg", ["x"], ["negated"]),
        ],
        _tensors(x=(TensorProto.FLOAT, ["batch", 2])),
        _tensors(total=(TensorProto.FLOAT, []), negated=(TensorProto.FLOAT, ["batch", 2])),
        [],
    )


def scalar_rows() -> dict[str, np.ndarray]:
    return {"x": np.array([[0.25, 1.5], [-3.0, 0.1]], np.float32)}


ZOO = {
    "mlp": Exhibit(mlp, digit_rows),
    "tree_named": Exhibit(tree_named, digit_rows, not_v2=("output_probability",)),
    "pipeline": Exhibit(pipeline, digit_rows, not_v2=("output_probability",)),
    "regressor": Exhibit(regressor, digit_rows),
    "mixed": Exhibit(mixed, mixed_rows),
    "torch": Exhibit(torch_export, torch_rows),
    "scalar": Exhibit(scalar, scalar_rows, not_rows=("total",)),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Each model in <name>/1/model.onnx (no model.yaml), a config serving them all, and what
    ONNX Runtime itself answers for each model's rows."""
    root = tmp_path_factory.mktemp("zoo")
    entries, expected = [], {}
    for name, exhibit in ZOO.items():
        version = root / name / "1"
        version.mkdir(parents=True)
        onnx.save(exhibit.build(), str(version / "model.onnx"))
        mark_complete(version)
        entries.append(f"    - {{name: {name}, base_path: {root / name}}}\n")
        session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        expected[name] = dict(zip(names, session.run(names, exhibit.feeds()), strict=True))
    (root / "models.yaml").write_text("model_config_list:\n  config:\n" + "".join(entries))
    return root, expected


@pytest.fixture(scope="module")
def server(zoo: tuple[Path, dict[str, dict[str, Any]]]) -> Iterator[Server]:
    root, _ = zoo
    with running(["--model_config_file", str(root / "models.yaml")], root) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def triton(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


def _assert_json_equal(where: str, want: Any, got: Any) -> None:
    """A JSON value against ONNX Runtime's: a ZipMap's list of maps (JSON keys are strings),
    strings, or numbers read back into the output's dtype."""
    if isinstance(want, list):
        assert got == [{str(k): v for k, v in row.items()} for row in want], where
    elif want.dtype == object:
        assert got == want.tolist(), where
    else:
        kinds = {"b": "b", "i": "iu", "u": "iu", "f": "f"}[want.dtype.kind]  # ints stay ints, ...
        assert np.asarray(got).dtype.kind in kinds, f"{where}: {got!r}"
        array = np.asarray(got, dtype=want.dtype)
        assert array.shape == want.shape, where
        np.testing.assert_array_equal(array, want, err_msg=where)


def _rows(feeds: dict[str, np.ndarray]) -> list[Any]:
    """The row format's instances: a list per row for one input, an object per row for several."""
    if len(feeds) == 1:
        return next(iter(feeds.values())).tolist()
    count = len(next(iter(feeds.values())))
    return [{k: v[i].tolist() for k, v in feeds.items()} for i in range(count)]


@pytest.mark.parametrize("model", ZOO)
def test_tf_serving_row_format_answers_what_onnx_runtime_does(
    server: Server, zoo: tuple[Path, dict[str, dict[str, Any]]], model: str
) -> None:
    want, exhibit = zoo[1][model], ZOO[model]
    answer = server.post(f"/v1/models/{model}:predict", {"instances": _rows(exhibit.feeds())})
    if exhibit.not_rows:
        assert answer.status_code == 400, answer.text
        assert all(f"'{name}'" in answer.json()["error"] for name in exhibit.not_rows), answer.text
        assert "columnar" in answer.json()["error"]
        return
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    for name, value in want.items():
        column = predictions if len(want) == 1 else [row[name] for row in predictions]
        _assert_json_equal(f"{model}.{name}", value, column)


@pytest.mark.parametrize("model", ZOO)
def test_tf_serving_columnar_format_answers_what_onnx_runtime_does(
    server: Server, zoo: tuple[Path, dict[str, dict[str, Any]]], model: str
) -> None:
    want, feeds = zoo[1][model], ZOO[model].feeds()
    inputs = {k: v.tolist() for k, v in feeds.items()}
    answer = server.post(f"/v1/models/{model}:predict", {"inputs": inputs})
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    for name, value in want.items():
        _assert_json_equal(f"{model}.{name}", value, outputs if len(want) == 1 else outputs[name])


def _v2_inputs(feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return [
        {"name": k, "datatype": V2_NAMES[v.dtype.name], "shape": list(v.shape), "data": v.ravel().tolist()}
        for k, v in feeds.items()
    ]


@pytest.mark.parametrize("model", ZOO)
def test_v2_rest_answers_what_onnx_runtime_does(
    server: Server, zoo: tuple[Path, dict[str, dict[str, Any]]], model: str
) -> None:
    want, exhibit = zoo[1][model], ZOO[model]
    body: dict[str, Any] = {"inputs": _v2_inputs(exhibit.feeds())}
    if exhibit.not_v2:
        refused = server.post(f"/v2/models/{model}/infer", body)
        assert refused.status_code == 400, refused.text
        assert all(f"'{name}'" in refused.json()["error"] for name in exhibit.not_v2), refused.text
        body["outputs"] = [{"name": n} for n in want if n not in exhibit.not_v2]
    answer = server.post(f"/v2/models/{model}/infer", body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert sorted(outputs) == sorted(n for n in want if n not in exhibit.not_v2)
    for name, tensor in outputs.items():
        value = want[name]
        assert (tensor["datatype"], tensor["shape"]) == (V2_NAMES[value.dtype.name], list(value.shape)), name
        data = tensor["data"] if value.dtype == object else np.asarray(tensor["data"]).reshape(value.shape)
        _assert_json_equal(f"{model}.{name}", value.ravel() if value.dtype == object else value, data)


def _grpc_inputs(feeds: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    tensors = []
    for name, value in feeds.items():
        tensor = grpcclient.InferInput(name, list(value.shape), V2_NAMES[value.dtype.name])
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


@pytest.mark.parametrize("model", ZOO)
def test_v2_grpc_answers_what_onnx_runtime_does(
    triton: grpcclient.InferenceServerClient, zoo: tuple[Path, dict[str, dict[str, Any]]], model: str
) -> None:
    want, exhibit = zoo[1][model], ZOO[model]
    inputs = _grpc_inputs(exhibit.feeds())
    outputs = None
    if exhibit.not_v2:
        with pytest.raises(InferenceServerException) as refused:
            triton.infer(model, inputs)
        assert refused.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
        assert all(f"'{name}'" in str(refused.value.message()) for name in exhibit.not_v2)
        outputs = [grpcclient.InferRequestedOutput(n) for n in want if n not in exhibit.not_v2]
    result = triton.infer(model, inputs, outputs=outputs)
    for name, value in want.items():
        if name in exhibit.not_v2:
            assert result.as_numpy(name) is None, name
            continue
        got = result.as_numpy(name)
        assert got is not None, name
        if value.dtype == object:  # BYTES come back as bytes
            assert [b.decode() for b in got.ravel()] == value.ravel().tolist(), name
        else:
            # Raw little-endian bytes: every dtype, float16 included, arrives bit for bit.
            assert got.dtype == value.dtype, name
            np.testing.assert_array_equal(got, value, err_msg=name)


def test_classify_and_regress_on_converted_models(
    server: Server, zoo: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    """TF Serving's :classify reads the `probabilities` output (class names are indices: an
    ONNX file carries none); :regress the single output of a regressor."""
    examples = [{"X": row} for row in digit_rows()["X"].tolist()]
    classified = server.post("/v1/models/mlp:classify", {"examples": examples})
    assert classified.status_code == 200, classified.text
    probabilities = zoo[1]["mlp"]["probabilities"]
    for got, want in zip(classified.json()["results"], probabilities, strict=True):
        assert [label for label, _ in got] == [str(i) for i in range(10)]
        np.testing.assert_array_equal(np.asarray([p for _, p in got], np.float32), want)
    regressed = server.post("/v1/models/regressor:regress", {"examples": examples})
    assert regressed.status_code == 200, regressed.text
    np.testing.assert_array_equal(
        np.asarray(regressed.json()["results"], np.float32), zoo[1]["regressor"]["variable"][:, 0]
    )


def test_metadata_names_every_output_type_truthfully(server: Server) -> None:
    """A ZipMap's output is no v2 datatype: the v2 metadata says what it is rather than "BYTES"
    (which inference would then refuse), and TF Serving's says DT_INVALID, the DataType enum's
    value for "no type"."""
    v2 = server.get("/v2/models/tree_named").json()
    want_v2 = {"output_label": "BYTES", "output_probability": "seq(map(string,tensor(float)))"}
    assert {o["name"]: o["datatype"] for o in v2["outputs"]} == want_v2
    v1 = server.get("/v1/models/pipeline/metadata").json()["metadata"]["signature_def"]["signature_def"]
    outputs = v1["serving_default"]["outputs"]
    want_v1 = {"output_label": "DT_INT64", "output_probability": "DT_INVALID"}
    assert {n: o["dtype"] for n, o in outputs.items()} == want_v1
