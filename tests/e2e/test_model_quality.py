"""Is the model still right: request ids on every answer, the prediction log, feedback and live
accuracy, and drift from the version's reference profile, against one real server serving the
MNIST example."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from PIL import Image
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelport.examples import write_mnist_repository
from modelport.examples.mnist_data import load_mnist_5k, split_stratified
from modelport.pipeline.data.datasets import read_idx
from support import Server, poll, running

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("quality") / "mnist"
    write_mnist_repository(base)
    return base


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    logs = repo.parent / "logs"
    args = ["--model_name", "mnist", "--model_base_path", str(repo), "--prediction_log_sample_rate", "1.0",
            "--prediction_log_dir", str(logs)]  # fmt: skip
    with running(args, repo.parent) as srv:
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


def _metric(server: Server, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            found = ",".join(sorted(series[len(name) + 1 : -1].split(",")))
            if found == wanted:
                return float(value)
    return None


def _png(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_the_prediction_log_summarises_each_request_not_its_image(server: Server, repo: Path) -> None:
    answer = server.post("/v1/models/mnist:predict", _digit(repo, 7), headers={"x-request-id": "log-me"})
    assert answer.status_code == 200
    log = repo.parent / "logs" / "mnist" / "1.jsonl"

    def logged() -> dict[str, object] | None:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        return next((r for r in lines if r["request_id"] == "log-me"), None)

    assert poll(lambda: logged() is not None, 10, 0.05) is None, "the request was not logged"
    record = logged()
    assert record is not None
    assert (record["model"], record["version"], record["api"]) == ("mnist", "1", "predict")
    pixels = record["inputs"]["pixels"]  # type: ignore[index]
    assert pixels["shape"] == [1, 784]
    assert 0.05 < pixels["intensity"][0] < 0.4 and 0.05 < pixels["ink"][0] < 0.4
    assert len(pixels["hash"][0]) == 16 and "b64" not in json.dumps(record)
    assert record["outputs"]["classes"] == [7]  # type: ignore[index]
    assert record["latency_ms"] > 0  # type: ignore[operator]


def test_feedback_gives_live_accuracy_per_class_figures_and_a_confusion_matrix(
    server: Server, repo: Path
) -> None:
    ids = {}
    for digit in range(10):
        answer = server.post("/v1/models/mnist:predict", _digit(repo, digit))
        assert answer.json()["predictions"][0]["classes"] == digit
        ids[digit] = answer.headers["x-request-id"]
    # The truth says the model was wrong twice: the "3" was a 5, the "8" a 9.
    truth = {d: {3: 5, 8: 9}.get(d, d) for d in range(10)}
    items = [{"request_id": ids[d], "label": truth[d]} for d in range(9)]
    answer = server.post("/v1/models/mnist/versions/1:feedback", {"feedback": items})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 9
    # the v2 route, a class name for a label
    v2 = server.post("/v2/models/mnist/feedback", {"feedback": [{"request_id": ids[9], "label": "9"}]})
    assert v2.status_code == 200, v2.text
    assert _metric(server, "modelport_live_accuracy", model="mnist", version="1") == pytest.approx(0.8)
    assert _metric(server, "modelport_feedback_total", model="mnist", version="1") == 10
    assert _metric(server, "modelport_feedback_correct_total", model="mnist", version="1") == 8
    assert _metric(server, "modelport_published_accuracy", model="mnist", version="1") == pytest.approx(0.96)
    assert _metric(server, "modelport_live_precision", model="mnist", version="1", **{"class": "3"}) == 0
    assert _metric(server, "modelport_live_recall", model="mnist", version="1", **{"class": "5"}) == 0.5
    live = server.get("/v1/models/mnist/quality").json()["versions"][0]["live"]
    assert live["accuracy"] == pytest.approx(0.8) and live["feedback"] == 10
    assert live["confusion_matrix"][5][3] == 1 and live["confusion_matrix"][9][8] == 1
    assert live["per_class"]["9"] == {"precision": 1.0, "recall": 0.5, "support": 2}


def test_bad_feedback_is_a_4xx_naming_the_problem(server: Server, repo: Path) -> None:
    rid = server.post("/v1/models/mnist:predict", _digit(repo, 4)).headers["x-request-id"]
    cases = [
        ({"feedback": [{"request_id": "never-seen", "label": 1}]}, 404, "never-seen"),
        ({"feedback": [{"request_id": rid, "label": "cat"}]}, 400, "'cat' is not a class"),
        ({"feedback": [{"request_id": rid, "label": 3.5}]}, 400, "class index (integer) or a class name"),
        ({"feedback": [{"request_id": rid, "labels": [1, 2]}]}, 400, "had 1 rows: give 1 labels, not 2"),
        ({"feedback": [{"request_id": rid}]}, 400, "one of label"),
        ({"labels": [1]}, 400, '{"feedback": [{"request_id"'),
    ]
    for body, status, words in cases:
        answer = server.post("/v1/models/mnist:feedback", body)
        assert answer.status_code == status, (body, answer.text)
        assert words in answer.json()["error"], (body, answer.text)
    wrong_version = server.post(
        "/v1/models/mnist/versions/2:feedback", {"feedback": [{"request_id": rid, "label": 4}]}
    )
    assert wrong_version.status_code == 400
    assert f"request {rid} was answered by version 1, not 2" in wrong_version.json()["error"]
    assert server.post("/v1/models/mnist:feedback", {"feedback": [{"request_id": rid, "label": 4}]}).ok
    again = server.post("/v1/models/mnist:feedback", {"feedback": [{"request_id": rid, "label": 4}]})
    assert again.status_code == 400 and "already has its feedback" in again.json()["error"]


def _send_all(server: Server, images: np.ndarray) -> None:
    with requests.Session() as session:
        for pixels in images:
            body = {"instances": [{"image_bytes": {"b64": _png(pixels)}}]}
            assert session.post(server.url + "/v1/models/mnist:predict", json=body, timeout=10).ok


def _drift(server: Server) -> dict[str, float]:
    report = server.get("/v1/models/mnist/quality").json()["versions"][0]["drift"]
    assert report["thresholds"] == {"input": 0.2, "prediction": 0.2}
    return {k: report["scores"][k] for k in ("input", "prediction")}


def test_fashion_images_raise_drift_over_the_threshold_and_mnist_digits_stay_under(server: Server) -> None:
    assert FASHION.exists(), (
        "scripts/system-packages.sh dataset-fashion-mnist installs Debian's Fashion-MNIST"
    )
    images, labels = load_mnist_5k()
    _, held_out, _ = split_stratified(labels, seed=0)  # digits the profile (test split) never saw
    _send_all(server, images[held_out])
    digits = _drift(server)
    assert digits["input"] < 0.2 and digits["prediction"] < 0.2, digits
    for kind in ("input", "prediction"):
        assert _metric(
            server, "modelport_drift_score", model="mnist", version="1", kind=kind
        ) == pytest.approx(digits[kind])
        assert _metric(server, "modelport_drift_threshold", model="mnist", version="1", kind=kind) == 0.2
    _send_all(server, read_idx(FASHION)[:500])
    fashion = _drift(server)
    assert fashion["input"] > 0.2 and fashion["prediction"] > 0.2, fashion
    over = server.get("/v1/models/mnist/quality").json()["versions"][0]["drift"]["over"]
    assert over == ["input", "prediction"]
