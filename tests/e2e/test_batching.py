"""Batching in a real server: under concurrent load with mixed request sizes every answer equals
what the same model gives unbatched (a second server with batching off), over TF Serving's REST
and v2 alike; a full queue answers 503 at once; an oversized request gets TF Serving's message."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests

from modelport.examples import write_mnist_repository
from support import Server, cached_build, half_plus_two, mark_complete, running

ROOT = Path(__file__).parents[2]


def cnn_build() -> Path:
    """examples/cnn/build.py's model repository (version 1), built once per content of what it is
    built from (support.cached_build)."""
    from modelport.examples import mnist_data

    def build(folder: Path) -> None:
        subprocess.run([sys.executable, str(ROOT / "examples/cnn/build.py"), str(folder / "1")], check=True)
        mark_complete(folder / "1")

    inputs = [ROOT / "examples/cnn/build.py", Path(mnist_data.__file__), mnist_data.mnist_5k_path()]
    return cached_build("cnn", inputs, ("numpy", "scikit-learn", "onnx", "onnxruntime"), build)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batching")
    half_plus_two(root / "half" / "1")
    mark_complete(root / "half" / "1")
    write_mnist_repository(root / "mnist-samples")  # only for its sample digits
    (root / "models.yaml").write_text(
        "model_config_list:\n  config:\n"
        f"    - {{name: cnn, base_path: {cnn_build()}}}\n"
        f"    - {{name: half, base_path: {root / 'half'}}}\n"
    )
    return root


@contextmanager
def _serve(repo: Path, name: str, parameters: str | None) -> Iterator[Server]:
    work = repo / name
    work.mkdir(exist_ok=True)
    args = ["--model_config_file", str(repo / "models.yaml")]
    if parameters is not None:
        (work / "batching.config").write_text(parameters)
        args += ["--batching_parameters_file", str(work / "batching.config")]
    with running(args, work) as srv:
        srv.wait_ready(60)
        yield srv


@pytest.fixture(scope="module")
def batched(repo: Path) -> Iterator[Server]:
    parameters = "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 5000 }\nnum_batch_threads: 1\n"
    with _serve(repo, "batched", parameters) as srv:
        yield srv


@pytest.fixture(scope="module")
def unbatched(repo: Path) -> Iterator[Server]:
    with _serve(repo, "unbatched", None) as srv:
        yield srv


def _digits(repo: Path) -> list[str]:
    paths = sorted((repo / "mnist-samples" / "samples").glob("digit-*.png"))
    return [base64.b64encode(p.read_bytes()).decode() for p in paths]


def _requests(repo: Path, count: int) -> list[tuple[str, dict[str, object]]]:
    """A mix: CNN predictions of 1-3 images (v1), half_plus_two of 1-4 rows (v1 and v2)."""
    rng = random.Random(7)
    digits = _digits(repo)
    mixed: list[tuple[str, dict[str, object]]] = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            images = [{"image_bytes": {"b64": rng.choice(digits)}} for _ in range(rng.randint(1, 3))]
            mixed.append(("/v1/models/cnn:predict", {"instances": images}))
        elif kind == 1:
            rows = [[rng.uniform(-100, 100)] for _ in range(rng.randint(1, 4))]
            mixed.append(("/v1/models/half:predict", {"instances": rows}))
        else:
            rows = [rng.uniform(-100, 100) for _ in range(rng.randint(1, 4))]
            tensor = {"name": "x", "shape": [len(rows), 1], "datatype": "FP32", "data": rows}
            mixed.append(("/v2/models/half/infer", {"inputs": [tensor]}))
    return mixed


def _numbers(doc: object) -> np.ndarray:
    if isinstance(doc, dict):
        if "predictions" in doc:
            rows = doc["predictions"]
            if rows and isinstance(rows[0], dict):
                return np.concatenate([np.ravel(np.asarray(r["probabilities"])) for r in rows])
            return np.ravel(np.asarray(rows, dtype=np.float64))
        return np.ravel(np.asarray(doc["outputs"][0]["data"], dtype=np.float64))
    raise AssertionError(doc)


def _batch_calls(server: Server, model: str) -> float:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(f'modelport_batch_size_count{{model="{model}"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_batched_answer_equals_the_unbatched_one(
    repo: Path, batched: Server, unbatched: Server
) -> None:
    mixed = _requests(repo, 240)
    session = requests.Session()

    def ask(item: tuple[str, dict[str, object]]) -> tuple[int, object]:
        path, body = item
        r = session.post(batched.url + path, json=body, timeout=30)
        return r.status_code, r.json()

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, mixed))
    for (path, body), (status, doc) in zip(mixed, answers, strict=True):
        assert status == 200, doc
        alone = unbatched.post(path, body)
        assert alone.status_code == 200
        np.testing.assert_allclose(_numbers(doc), _numbers(alone.json()), rtol=1e-5, atol=1e-6)
    cnn_requests = sum(1 for p, _ in mixed if "cnn" in p)
    calls = _batch_calls(batched, "cnn")
    assert 0 < calls < cnn_requests, f"{calls} model calls for {cnn_requests} requests: nothing merged"


def test_grpc_requests_are_batched_too(batched: Server) -> None:
    import tritonclient.grpc as grpcclient

    before = _batch_calls(batched, "half")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{batched.grpc_port}")

    def ask(i: int) -> np.ndarray:
        tensor = grpcclient.InferInput("x", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[float(i)]], np.float32))
        result = client.infer("half", [tensor]).as_numpy("y")
        assert result is not None
        return result

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(64)))
    client.close()
    assert [float(a[0, 0]) for a in answers] == [0.5 * i + 2 for i in range(64)]
    calls = _batch_calls(batched, "half") - before
    assert 0 < calls < 64, f"{calls} model calls for 64 gRPC requests"
    metrics = batched.get("/metrics").text
    assert 'modelport_batch_queue_seconds_count{model="half",version="1"}' in metrics


def test_a_bad_request_among_good_ones_fails_alone(batched: Server) -> None:
    bodies = [{"instances": [[1.0]]}] * 20 + [{"instances": [["x"]]}] + [{"instances": [[3.0]]}] * 20
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda b: batched.post("/v1/models/half:predict", b), bodies))
    assert [a.status_code for a in answers].count(400) == 1
    good = [a.json()["predictions"] for a in answers if a.status_code == 200]
    assert sorted(good) == [[[2.5]]] * 20 + [[[3.5]]] * 20


def test_an_oversized_request_gets_tf_servings_message(batched: Server) -> None:
    r = batched.post("/v1/models/half:predict", {"instances": [[1.0]] * 40})
    assert r.status_code == 400
    assert r.json()["error"] == "Task size 40 is larger than maximum input batch size 32"


def test_a_full_queue_answers_503_at_once_and_the_server_carries_on(repo: Path) -> None:
    digits = _digits(repo)
    body = {"instances": [{"image_bytes": {"b64": d}} for d in digits[:8]]}
    tight = "max_batch_size { value: 8 }\nmax_enqueued_batches { value: 1 }\nnum_batch_threads { value: 1 }\n"
    with _serve(repo, "tight", tight) as server:
        url = server.url + "/v1/models/cnn:predict"
        depths: list[float] = []
        done = threading.Event()

        def queue_depth() -> float:
            text = requests.get(server.url + "/metrics", timeout=10).text
            return float(
                next(x for x in text.splitlines() if x.startswith("modelport_batch_queue_rows ")).split()[1]
            )

        def watch() -> None:  # what an autoscaler reads: the rows waiting, sampled all along
            while not done.is_set():
                depths.append(queue_depth())

        watcher = threading.Thread(target=watch)
        watcher.start()
        # Each request is a whole batch (8 digits) and the queue holds one: any three at once
        # and one is refused. 48 clients, 100 requests.
        with ThreadPoolExecutor(48) as pool, requests.Session() as session:
            answers = list(pool.map(lambda _: session.post(url, json=body, timeout=30), range(100)))
        done.set()
        watcher.join()
        assert depths and queue_depth() == 0  # the gauge is there, and empty once the load is gone
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) > 0, "the queue never filled"
        refused = next(a for a in answers if a.status_code == 503)
        full = "The batch scheduling queue to which this task was submitted is full"
        assert full in refused.json()["error"]
        accepted = [a.json()["predictions"] for a in answers if a.status_code == 200]
        classes = {tuple(p["classes"] for p in predictions) for predictions in accepted}
        assert len(classes) == 1  # every accepted request got the same, full answer
        after = server.post("/v1/models/cnn:predict", body)
        assert after.status_code == 200
        assert tuple(p["classes"] for p in after.json()["predictions"]) in classes
