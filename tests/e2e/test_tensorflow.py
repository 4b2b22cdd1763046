"""A TF Serving user's SavedModel served as it is: the article's model, export, config file,
command line and Flask client, unchanged but for the paths (tests/tf_mnist.py builds the model).

Two servers load TensorFlow (a TF start-up costs seconds): the article's, and one with two
versions, labels, hot reload, a .keras file and batching. A third server, with an ONNX model only,
shows that TensorFlow is not loaded where no model needs it, and that a TF model on a server
without TensorFlow fails to load with the command that installs it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from click.testing import CliRunner, Result

from modelport.cli import cli
from modelport.errors import ModelportError
from modelport.examples import write_mnist_repository
from modelport.registry.convert import check_conversion, convert_to_onnx
from support import Server, articles_command_line, flask_app, half_plus_two, mark_complete, running
from tf_mnist import cached_model, held_out, png

# TensorFlow imports take seconds: on a busy machine the conversion test took over 2 minutes.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import keras

    root = tmp_path_factory.mktemp("tfserving")
    shutil.copytree(cached_model(), root, dirs_exist_ok=True)  # a copy: tests publish beside it
    mark_complete(root / "saved_model" / "1")  # published as TF Serving users do; --convert keeps it out
    model = keras.models.load_model(root / "keras" / "1" / "model.keras")
    write_mnist_repository(root / "samples-repo")  # only for its sample digits
    images, labels = held_out()
    return {"root": root, "model": model, "images": images, "labels": labels}


@pytest.fixture(scope="module")
def article(built: dict[str, Any]) -> Iterator[Server]:
    """The article's config.yaml and command line, with only the paths changed."""
    root: Path = built["root"]
    args, _ = articles_command_line(root, root / "saved_model")
    work = root / "article"
    work.mkdir()
    with running(args, work) as server:
        server.wait_ready(60)
        yield server


def _samples(built: dict[str, Any]) -> list[tuple[int, bytes]]:
    paths = sorted((built["root"] / "samples-repo" / "samples").glob("digit-?.png"))
    assert len(paths) == 10
    return [(int(p.stem[-1]), p.read_bytes()) for p in paths]


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def test_the_articles_flask_client_gets_the_right_digits(article: Server, built: dict[str, Any]) -> None:
    client = flask_app(article.url + "/v1/models/mnist:predict").test_client()
    for digit, data in _samples(built):
        response = client.post("/", data={"img": (io.BytesIO(data), "digit.png")})
        assert response.status_code == 200
        assert response.get_json() == {"result": digit}


def test_predict_answers_what_tensorflow_answers_in_rows_and_columns(
    article: Server, built: dict[str, Any]
) -> None:
    images, labels = built["images"][:64], built["labels"][:64]
    want = built["model"].predict(images / 255.0, verbose=0)
    rows = article.post(
        "/v1/models/mnist:predict", {"instances": [{"image_bytes": _b64(png(i))} for i in images]}
    )
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert [p["classes"] for p in predictions] == np.argmax(want, axis=1).tolist()
    probabilities = np.array([p["probabilities"] for p in predictions])
    np.testing.assert_allclose(probabilities, _softmax(want), atol=1e-5)
    assert np.mean(np.argmax(want, axis=1) == labels) > 0.85  # a model that learned its digits
    columns = article.post(
        "/v1/models/mnist:predict", {"inputs": {"image_bytes": [_b64(png(i)) for i in images]}}
    )
    assert columns.json()["outputs"]["classes"] == np.argmax(want, axis=1).tolist()
    # The second signature, by name, in the columnar format.
    pixels = (images.reshape(-1, 784) / 255.0).astype(np.float32).tolist()
    other = article.post("/v1/models/mnist:predict", {"signature_name": "pixels", "inputs": pixels})
    np.testing.assert_allclose(np.array(other.json()["outputs"]), _softmax(want), atol=1e-5)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _saved_model_cli(version_dir: Path) -> dict[str, Any]:
    """`saved_model_cli show --all` (from the TF package), read back into signature_def's shape."""
    tool = Path(sys.executable).with_name("saved_model_cli")
    text = subprocess.run(
        [str(tool), "show", "--all", "--dir", str(version_dir)], capture_output=True, text=True, check=True
    ).stdout
    signatures: dict[str, Any] = {}
    for block in re.split(r"\n(?=signature_def\[)", text.split("contains the following SignatureDefs:")[1]):
        name = re.match(r"signature_def\['([^']+)'\]", block.strip())
        if name is None:
            continue
        sig: dict[str, Any] = {"inputs": {}, "outputs": {}}
        inputs, outputs = block.split("contains the following output(s):")
        for side, part in (("inputs", inputs), ("outputs", outputs)):
            for key, dtype, shape, tensor in re.findall(
                r"\w+\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+?)\s+name: (\S+)", part
            ):
                sig[side][key] = (dtype, shape, tensor)
        sig["method_name"] = re.search(r"Method name is: ?(\S*)", outputs).group(1)  # type: ignore[union-attr]
        signatures[name.group(1)] = sig
    return signatures


def _as_cli_prints(signature_def: dict[str, Any]) -> dict[str, Any]:
    def shape(info: dict[str, Any]) -> str:
        if info["tensor_shape"]["unknown_rank"]:
            return "unknown_rank"
        dims = [d["size"] for d in info["tensor_shape"]["dim"]]
        return "(" + ", ".join(dims) + ")"

    return {
        name: {
            side: {k: (i["dtype"], shape(i), i["name"]) for k, i in sig[side].items()}
            for side in ("inputs", "outputs")
        }
        | {"method_name": sig["method_name"]}
        for name, sig in signature_def.items()
    }


def test_metadata_is_the_saved_models_own(article: Server, built: dict[str, Any]) -> None:
    assert "intra-op threads 1, inter-op threads 1" in article.log()  # the serve defaults
    doc = article.get("/v1/models/mnist/metadata").json()
    served = doc["metadata"]["signature_def"]["signature_def"]
    assert _as_cli_prints(served) == _saved_model_cli(built["root"] / "saved_model" / "1")
    default = served["serving_default"]
    assert default["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(default["outputs"]) == {"classes", "probabilities"}
    assert doc["metadata"]["modelport"]["platform"] == "tensorflow"


def test_classify_and_v2_rest(article: Server, built: dict[str, Any]) -> None:
    samples = _samples(built)
    digit, data = samples[4]
    (result,) = article.post("/v1/models/mnist:classify", {"examples": [{"image_bytes": _b64(data)}]}).json()[
        "results"
    ]
    assert max(result, key=lambda pair: pair[1])[0] == str(digit)
    meta = article.get("/v2/models/mnist").json()
    assert meta["inputs"] == [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "classes": "INT64",
        "probabilities": "FP32",
    }
    body = {
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [len(samples)],
                "datatype": "BYTES",
                "data": [_b64(d) for _, d in samples],
            }
        ],
        "outputs": [{"name": "classes"}],
    }
    answer = article.post("/v2/models/mnist/infer", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [d for d, _ in samples]


def test_classify_and_regress_signatures_take_examples(article: Server, built: dict[str, Any]) -> None:
    """TF Serving's own classify and regress signatures: JSON examples become tf.Example protos."""
    images = built["images"][:5]
    pixels = (images.reshape(-1, 784) / 255.0).tolist()
    want = _softmax(built["model"].predict(images / 255.0, verbose=0))
    body = {"signature_name": "classify", "examples": [{"pixels": row} for row in pixels]}
    r = article.post("/v1/models/mnist:classify", body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [[name for name, _ in row] for row in results] == [[str(i) for i in range(10)]] * 5
    np.testing.assert_allclose([[score for _, score in row] for row in results], want, atol=1e-5)
    # A feature shared by every example goes in `context`.
    shared = {"signature_name": "regress", "context": {"pixels": pixels[0]}, "examples": [{}, {}]}
    r = article.post("/v1/models/mnist:regress", shared)
    assert r.status_code == 200, r.text
    expected = float((want[0] * np.arange(10)).sum())
    np.testing.assert_allclose(r.json()["results"], [expected, expected], atol=1e-4)
    for bad, message in (
        ({"pixels": [True] * 784}, "is not a number, a string or"),
        ({"pixels": ["a"] * 784}, "model rejected the input"),
        ({"pixels": [0.5] * 10}, "model rejected the input"),
    ):
        r = article.post("/v1/models/mnist:classify", {"signature_name": "classify", "examples": [bad]})
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [{"image_bytes": _b64(b"this is not a png")}]}, "model rejected the input"),
        ({"signature_name": "pixels", "inputs": [[0.5] * 783]}, "expects shape [-1, 784]"),
        ({"signature_name": "pixels", "inputs": [["a"] * 784]}, "expects float32"),
        ({"signature_name": "nope", "instances": [1]}, "nope"),
    ],
)
def test_bad_input_is_a_400_naming_it(article: Server, body: dict[str, Any], message: str) -> None:
    r = article.post("/v1/models/mnist:predict", body)
    assert r.status_code in (400, 404), r.text
    assert message in r.json()["error"]


def test_two_versions_labels_hot_reload_keras_and_batching(built: dict[str, Any]) -> None:
    root: Path = built["root"]
    work = root / "second"
    work.mkdir()
    (work / "batching.config").write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 200000 }\nnum_batch_threads: 1\n"
    )
    (work / "models.yaml").write_text(
        "model_config_list:\n  config:\n"
        # No model_platform: the SavedModel is found by its saved_model.pb.
        f"    - name: mnist\n      base_path: {root / 'saved_model'}\n"
        "      model_version_policy: {specific: {versions: [1, 2]}}\n"
        "      version_labels: {stable: 1, canary: 2}\n"
        f"    - {{name: keras, base_path: {root / 'keras'}}}\n"
    )
    args = ["--model_config_file", str(work / "models.yaml"), "--file_system_poll_wait_seconds", "0.2",
            "--tensorflow_intra_op_parallelism", "2", "--tensorflow_inter_op_parallelism", "3",
            "--enable_batching", "--batching_parameters_file", str(work / "batching.config")]  # fmt: skip
    samples = _samples(built)
    with running(args, work) as server:
        server.wait_until(lambda: server.versions("mnist") == {1: "AVAILABLE"}, 60, "version 1")
        # TensorFlow's own thread settings, read back from it once it loaded: the flags'.
        assert "intra-op threads 2, inter-op threads 3" in server.log()
        # Version 2 (a copy: what tells them apart is the version each answers as), published
        # while the server runs.
        shutil.copytree(root / "saved_model" / "1", root / "saved_model" / ".2.partial")
        (root / "saved_model" / ".2.partial").rename(root / "saved_model" / "2")
        server.wait_until(
            lambda: server.versions("mnist") == {1: "AVAILABLE", 2: "AVAILABLE"}, 60, "version 2"
        )
        for label, version in (("stable", "1"), ("canary", "2")):
            meta = server.get(f"/v1/models/mnist/labels/{label}/metadata").json()
            assert meta["model_spec"]["version"] == version
        body = {"instances": [{"image_bytes": _b64(samples[7][1])}]}
        assert (
            server.post("/v1/models/mnist/labels/canary:predict", body).json()["predictions"][0]["classes"]
            == 7
        )
        # v2 gRPC (the article's server has REST only: its two ports are one)
        assert server.grpc_port is not None
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            tensor = grpcclient.InferInput("image_bytes", [len(samples)], "BYTES")
            tensor.set_data_from_numpy(np.array([d for _, d in samples], dtype=np.object_))
            classes = client.infer("mnist", [tensor], model_version="1").as_numpy("classes")
        finally:
            client.close()
        assert classes is not None and classes.tolist() == [d for d, _ in samples]
        # The .keras file: its model's own input and output (it loads beside mnist, in its own time).
        server.wait_until(lambda: server.versions("keras") == {1: "AVAILABLE"}, 60, "the keras model")
        keras_meta = server.get("/v1/models/keras/metadata").json()["metadata"]["signature_def"][
            "signature_def"
        ]
        (name,) = keras_meta["serving_default"]["inputs"]
        images = built["images"][:8]
        answer = server.post("/v1/models/keras:predict", {"inputs": {name: (images / 255.0).tolist()}})
        assert answer.status_code == 200, answer.text
        want = built["model"].predict(images / 255.0, verbose=0)
        np.testing.assert_allclose(np.array(answer.json()["outputs"]), want, atol=1e-4)
        # Batching: requests that arrive while the model is busy are merged into fewer calls.
        before = _batches(server)
        big = {"instances": [{"image_bytes": _b64(png(i))} for i in built["images"][:60]]}
        bodies = [big] + [body] * 48
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda b: server.post("/v1/models/mnist/versions/1:predict", b), bodies))
        assert all(a.json()["predictions"][0]["classes"] == 7 for a in answers[1:])
        calls, rows = (a - b for a, b in zip(_batches(server), before, strict=True))
        assert rows == 60 + 48 and calls < len(bodies), f"{calls} model calls for {len(bodies)} requests"


def _batches(server: Server) -> tuple[float, float]:
    """Batched model calls of mnist version 1, and their rows."""
    text = server.get("/metrics").text

    def value(metric: str) -> float:
        found = re.search(rf'^{metric}\{{model="mnist",version="1"\}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    return value("modelport_batch_size_count"), value("modelport_batch_size_sum")


def test_servers_without_tf_models_do_not_load_it_and_a_tf_model_names_the_extra(
    built: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    half_plus_two(tmp_path / "half" / "1")
    with running(["--model_name", "half", "--model_base_path", str(tmp_path / "half")], tmp_path) as server:
        server.wait_ready()
        assert server.post("/v1/models/half:predict", {"instances": [[2.0]]}).json() == {
            "predictions": [[3.0]]
        }
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert "tensorflow" not in maps
    # A server whose Python has no TensorFlow: a package of that name that fails to import.
    shim = tmp_path / "no-tensorflow"
    (shim / "tensorflow").mkdir(parents=True)
    (shim / "tensorflow" / "__init__.py").write_text("raise ImportError('No module named tensorflow')\n")
    monkeypatch.setenv("PYTHONPATH", f"{shim}:{os.environ.get('PYTHONPATH', '')}")
    config = tmp_path / "models.yaml"
    config.write_text(
        "model_config_list:\n  config:\n"
        f"    - {{name: half, base_path: {tmp_path / 'half'}}}\n"
        f"    - {{name: mnist, base_path: {built['root'] / 'saved_model'}, model_platform: tensorflow,"
        " model_version_policy: {specific: {versions: [1]}}}\n"
    )
    work = tmp_path / "without"
    work.mkdir()
    with running(["--model_config_file", str(config)], work) as server:
        loaded = {"half": {1: "AVAILABLE"}, "mnist": {1: "END"}}
        server.wait_until(
            lambda: {m: server.versions(m) for m in loaded} == loaded, 30, "half, and mnist failed"
        )
        status = server.get("/v1/models/mnist").json()["model_version_status"][0]["status"]
        assert "pip install 'modelport[tensorflow]'" in status["error_message"]
        assert server.post("/v1/models/half:predict", {"instances": [[2.0]]}).json() == {
            "predictions": [[3.0]]
        }


ONNX_YAML = """\
signatures:
  serving_default:
    inputs:
      image_bytes:
        tensor: pixels
        image: {mode: L, width: 28, height: 28, scale: [0.0, %s]}
    outputs:
      classes: {from: probabilities, transform: argmax}
      probabilities: {from: probabilities}
"""


def _publish(home: Path, *args: str) -> Result:
    """`modelport registry publish ...` in this process, which has TensorFlow loaded already
    (a process of its own would import it again; tf2onnx still runs in one)."""
    return CliRunner().invoke(cli, ["registry", "publish", *args], env={"MODELPORT_HOME": str(home)})


def test_publish_convert_onnx_serves_the_same_classes_and_a_disagreement_is_refused(
    article: Server, built: dict[str, Any], tmp_path: Path
) -> None:
    """The SavedModel's `pixels` signature converted with tf2onnx; the image decoding the graph
    did is declared for modelport (--model-yaml); the check asks both the whole test split."""
    requests_ = [{"image_bytes": _b64(png(i))} for i in built["images"]]
    (tmp_path / "eval.json").write_text(json.dumps({"instances": requests_}))
    (tmp_path / "onnx.yaml").write_text(ONNX_YAML % "1.0")
    home, repo = tmp_path / "home", tmp_path / "repo"
    saved_model = str(built["root"] / "saved_model" / "1")
    # The article's signature decodes the PNG in the graph, which ONNX cannot: refused, naming it,
    # before tf2onnx runs (called here as `publish` calls it: this process has TensorFlow loaded).
    with pytest.raises(
        ModelportError, match=r"'serving_default' cannot be converted to ONNX: it runs \['DecodePng'\]"
    ):
        convert_to_onnx(Path(saved_model), tmp_path / "staging", eval_data=tmp_path / "eval.json")
    assert not (tmp_path / "staging").exists()
    convert = ["--convert", "onnx", "--signature", "pixels", "--eval-data", str(tmp_path / "eval.json")]
    done = _publish(home, "mnist", saved_model, *convert, "--model-yaml", str(tmp_path / "onnx.yaml"),
                    "--repository", str(repo))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "converted to ONNX and checked on 500 rows: classes 0, probabilities" in done.output
    version = repo / "1"
    assert (version / "model.onnx").is_file() and (version / "saved_model" / "saved_model.pb").is_file()
    check = json.loads((version / "conversion.json").read_text())
    assert check["agrees"] and check["rows"] == 500 and check["outputs"]["classes"] == {"values_different": 0}
    assert check["outputs"]["probabilities"]["max_abs_diff"] < 1e-4
    # Scaled to 0..255 where the graph scaled to 0..1: the answers differ, and the check says so.
    wrong = tmp_path / "wrong"
    shutil.copytree(version, wrong)
    (wrong / "model.yaml").write_text("platform: onnx\nmodel_file: model.onnx\n" + ONNX_YAML % "255.0")
    with pytest.raises(ModelportError, match=r"conversion refused: .*\(500 rows\).*output 'probabilities': "):
        check_conversion(wrong, tmp_path / "eval.json")
    # The ONNX version served: the same classes as the SavedModel for every digit of the split.
    work = tmp_path / "serve"
    work.mkdir()
    with running(["--model_name", "mnist", "--model_base_path", str(repo)], work) as onnx_server:
        onnx_server.wait_ready(60)
        assert (
            onnx_server.get("/v1/models/mnist/metadata").json()["metadata"]["modelport"]["platform"] == "onnx"
        )
        for start in range(0, len(requests_), 64):
            body = {"instances": requests_[start : start + 64]}
            tf_rows = article.post("/v1/models/mnist:predict", body).json()["predictions"]
            onnx_rows = onnx_server.post("/v1/models/mnist:predict", body).json()["predictions"]
            assert [r["classes"] for r in onnx_rows] == [r["classes"] for r in tf_rows]
