"""The gateway as a real process in front of a real model server, called with the exact client
code people use (`requests.post(url, files={"img": ...})`), and every way an upload or the model
service can go wrong."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from PIL import Image

from modelport.dataplane.haproxy import free_port
from modelport.examples import write_mnist_repository
from support import Server


@contextmanager
def gateway(tmp: Path, *args: str) -> Iterator[str]:
    """`modelport gateway --port 0` as a process; its base URL."""
    port_file = tmp / f"gateway-{time.monotonic_ns()}.json"
    log = open(tmp / "gateway.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "modelport", "gateway", "--port", "0", "--port-file",
                             str(port_file), *args], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp / "gateway.log").read_text()
            time.sleep(0.05)
        yield f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist_repository(root / "mnist")
    return root / "mnist"


@pytest.fixture(scope="module")
def model(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        ["--model_name", "mnist", "--model_base_path", str(repo)], tmp_path_factory.mktemp("serve")
    )
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def url(model: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gateway(tmp_path_factory.mktemp("gw"), "--model-url", model.url, "--max-bytes", "300000",
                 "--max-pixels", "4000000") as base:  # fmt: skip
        yield base


def sample(repo: Path, digit: int) -> Path:
    return repo / "samples" / f"digit-{digit}.png"


def test_the_articles_client_gets_the_articles_answer(url: str, repo: Path) -> None:
    # The Flask example's contract, called the way its users call it.
    response = requests.post(url + "/", files={"img": open(sample(repo, 7), "rb")})  # noqa: SIM115
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"result": [7]}


def test_the_richer_endpoint_and_a_batch_of_uploads(url: str, repo: Path) -> None:
    files = [("img", (f"digit-{d}.png", sample(repo, d).read_bytes(), "image/png")) for d in (0, 1, 2)]
    answer = requests.post(url + "/api/predict", files=files, timeout=10).json()
    assert answer["model"] == {"name": "mnist", "version": "1"}
    assert [p["class"] for p in answer["predictions"]] == [0, 1, 2]
    assert [p["filename"] for p in answer["predictions"]] == ["digit-0.png", "digit-1.png", "digit-2.png"]
    for prediction in answer["predictions"]:
        assert len(prediction["probabilities"]) == 10 and abs(sum(prediction["probabilities"]) - 1) < 1e-3
    assert answer["latencyMs"]["total"] >= answer["latencyMs"]["model"] > 0


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_other_sizes_modes_and_formats_are_converted(url: str, repo: Path) -> None:
    digit = Image.open(sample(repo, 7))
    for name, data in [
        ("big-rgb.jpg", _png(digit.convert("RGB").resize((200, 200)), "JPEG")),
        ("palette.gif", _png(digit.convert("P"), "GIF")),
        ("rgba.bmp", _png(digit.convert("RGB"), "BMP")),
    ]:
        answer = requests.post(url + "/", files={"img": (name, data)}, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"result": [7]}, (name, answer.text)


@pytest.mark.parametrize(
    ("files", "data", "headers", "status", "message"),
    [
        ({"img": ("notes.txt", b"hello, not an image")}, None, None, 415, "notes.txt: not an image"),
        ({"img": ("empty.png", b"")}, None, None, 400, "empty.png: the upload is empty"),
        ({"image": ("digit.png", b"\x89PNG")}, None, None, 400, "missing the file field 'img'"),
        (None, b'{"img": "x"}', {"content-type": "application/json"}, 415, "multipart/form-data"),
        ({"img": ("huge.bin", b"\0" * 400_000)}, None, None, 413, "the limit is 300,000"),
    ],
    ids=["not-an-image", "empty", "missing-field", "wrong-content-type", "too-many-bytes"],
)
def test_bad_uploads_get_a_4xx_that_says_why(
    url: str,
    files: dict | None,
    data: bytes | None,
    headers: dict | None,
    status: int,
    message: str,  # type: ignore[type-arg]
) -> None:
    answer = requests.post(url + "/", files=files, data=data, headers=headers, timeout=10)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_an_image_with_too_many_pixels_is_refused_before_it_is_decoded(url: str) -> None:
    huge = _png(Image.new("L", (3000, 3000)))  # 9 megapixels, a small file
    assert len(huge) < 300_000
    answer = requests.post(url + "/api/predict", files={"img": ("huge.png", huge)}, timeout=10)
    assert answer.status_code == 413
    assert answer.json()["error"] == "huge.png: 3000 x 3000 pixels is more than the limit of 4,000,000"


def test_health_and_metrics(url: str) -> None:
    assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(url + "/readyz", timeout=5).json()["model"]["available"] is True
    page = requests.get(url + "/", timeout=5)
    assert page.status_code == 200 and "<canvas" in page.text and "http" not in page.text.split("<script>")[1]
    metrics = requests.get(url + "/metrics", timeout=5).text
    assert 'modelport_gateway_requests_total{endpoint="/",status="200"}' in metrics


def test_a_model_service_that_is_down_slow_or_failing(tmp_path: Path, model: Server) -> None:
    png = {"img": ("x.png", _png(Image.new("L", (28, 28))))}
    dead = f"http://127.0.0.1:{free_port()}"
    with gateway(tmp_path, "--model-url", dead) as base:
        answer = requests.post(base + "/", files=png, timeout=10)
        assert (
            answer.status_code == 503
            and f"the model service at {dead} is unavailable" in answer.json()["error"]
        )
        ready = requests.get(base + "/readyz", timeout=10)  # the gateway stays in rotation to explain
        assert ready.status_code == 200 and ready.json()["model"]["available"] is False
        assert dead in ready.json()["model"]["reason"]
    with gateway(tmp_path, "--model-url", model.url, "--model", "nosuch") as base:
        answer = requests.post(base + "/", files=png, timeout=10)
        assert answer.status_code == 502
        assert (
            "the model service answered 404" in answer.json()["error"] and "nosuch" in answer.json()["error"]
        )
    # A server that accepts the connection and never answers: the deadline.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        with gateway(
            tmp_path, "--model-url", f"http://127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.5"
        ) as base:
            started = time.monotonic()
            answer = requests.post(base + "/", files=png, timeout=10)
            assert answer.status_code == 504 and "did not answer within 0.5 s" in answer.json()["error"]
            assert time.monotonic() - started < 3


def test_the_example_deploys_the_gateway_beside_the_model(repo: Path, tmp_path: Path) -> None:
    """examples/mnist/deploy.yaml as the quickstart applies it: the gateway as a Deployment and
    Service of its own, finding Service mnist by name through the control plane."""
    from support import Plane

    example = Path(__file__).resolve().parents[2] / "examples" / "mnist" / "deploy.yaml"
    text = example.read_text().replace("/tmp/tfserving/saved_model", str(repo))
    (tmp_path / "deploy.yaml").write_text(
        text.replace("port: 8501", "port: 0").replace("port: 5000", "port: 0")
    )
    plane = Plane(tmp_path / "home")
    try:
        plane.up()
        plane.cli("apply", "-f", str(tmp_path / "deploy.yaml"))
        plane.cli("rollout", "status", "deployment/mnist")
        plane.cli("rollout", "status", "deployment/gateway")
        url = plane.service_url("gateway")
        answer = requests.post(url + "/", files={"img": open(sample(repo, 7), "rb")}, timeout=10)  # noqa: SIM115
        assert answer.json() == {"result": [7]}
        assert "gateway from svc/mnist" in plane.cli("describe", "deployment", "gateway").stdout
        # No model replica at all: the gateway stays up and says so, in JSON.
        plane.cli("scale", "deployment/mnist", "--replicas", "0")
        plane.wait(
            lambda: plane.json("get", "svc", "mnist")["status"]["endpoints"] == [], what="no endpoints"
        )
        down = requests.post(url + "/", files={"img": open(sample(repo, 7), "rb")}, timeout=10)  # noqa: SIM115
        assert down.status_code == 503 and "has no ready replica" in down.json()["error"]
    finally:
        plane.stop()


def test_a_model_service_restart_costs_no_request(repo: Path, tmp_path: Path) -> None:
    """The pooled connections die with the old process; the gateway retries on a new one."""
    port = free_port()
    args = ["--model_name", "mnist", "--model_base_path", str(repo), "--rest_api_port", str(port)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Server(args, tmp_path / "a")
    first.wait_ready()
    with gateway(tmp_path, "--model-url", f"http://127.0.0.1:{port}") as base, requests.Session() as client:
        digit = sample(repo, 7).read_bytes()
        assert client.post(base + "/", files={"img": ("7.png", digit)}, timeout=10).json() == {"result": [7]}
        first.stop()
        second = Server(args, tmp_path / "b")
        try:
            second.wait_ready()
            answers = [client.post(base + "/", files={"img": ("7.png", digit)}, timeout=10) for _ in range(5)]
            assert [a.status_code for a in answers] == [200] * 5, answers[0].text
        finally:
            second.stop()
