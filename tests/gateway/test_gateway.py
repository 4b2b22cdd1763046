"""The gateway as a real process in front of a real model server, called with the exact client
code people use (`requests.post(url, files={"img": ...})`), and every way an upload or the model
service can go wrong."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from PIL import Image

from modelport.examples import write_mnist_repository
from support import PATIENCE, Server, port_below_the_ephemeral_range


@contextmanager
def gateway(tmp: Path, *args: str) -> Iterator[str]:
    """`modelport gateway --port 0` as a process; its base URL."""
    port_file = tmp / f"gateway-{time.monotonic_ns()}.json"
    log = open(tmp / "gateway.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "modelport", "gateway", "--port", "0", "--port-file",
                             str(port_file), *args], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 20 * PATIENCE
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
    with open(sample(repo, 7), "rb") as image:
        response = requests.post(url + "/", files={"img": image}, timeout=10)
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


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])  # PNG's header read without PIL, BMP's with it
def test_an_image_with_too_many_pixels_is_refused_before_it_is_decoded(url: str, fmt: str) -> None:
    # The first 100 bytes of a 9-megapixel image: its header says 3000 x 3000, and there is
    # nothing to decode. Decoding would fail (a short file of that size is refused as undecodable,
    # below), so the pixel-count answer shows the header alone was read.
    name = f"huge.{fmt.lower()}"
    huge = _png(Image.new("L", (3000, 3000)), fmt)[:100]
    answer = requests.post(url + "/api/predict", files={"img": (name, huge)}, timeout=10)
    assert answer.status_code == 413
    assert answer.json()["error"] == f"{name}: 3000 x 3000 pixels is more than the limit of 4,000,000"
    small = _png(Image.new("L", (300, 300)), fmt)[:100]  # under the limit: it is decoded, and fails
    answer = requests.post(url + "/api/predict", files={"img": (name, small)}, timeout=10)
    # (BMP: the gateway's decoder fails, 415; PNG goes through: the model server's 400 passed on)
    assert answer.status_code in (415, 400) and "pixels" not in answer.json()["error"], answer.text


@pytest.fixture(scope="module")
def wide(model: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway with its default per-image limit (25 M pixels, wider than the model's 4 M) and
    50 M pixels per request."""
    with gateway(tmp_path_factory.mktemp("wide"), "--model-url", model.url,
                 "--max-request-pixels", "50000000") as base:  # fmt: skip
        yield base


def test_the_model_services_4xx_is_passed_on_with_its_message(wide: str) -> None:
    """A PNG the gateway lets through (9 M pixels) but the model refuses (its limit is 4 M): the
    client gets the model server's 400 and its words, not a 502 that blames the service."""
    answer = requests.post(
        wide + "/", files={"img": ("big.png", _png(Image.new("L", (3000, 3000))))}, timeout=30
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error.startswith("the model refused the request: ") and "limit" in error, error


def test_the_pixels_of_all_images_together_are_limited_before_any_is_decoded(wide: str) -> None:
    """Three headers of 5000 x 5000 (each within the 25 M per image): 75 M pixels in all, over
    the request's 50 M. Nothing follows the headers, so decoding would fail: the 413 shows the
    headers alone were read."""
    header = _png(Image.new("L", (5000, 5000)))[:100]
    files = [("img", (f"{i}.png", header)) for i in range(3)]
    answer = requests.post(wide + "/api/predict", files=files, timeout=30)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == (
        "the 3 images hold 75,000,000 pixels in all; the limit per request is 50,000,000"
    )


def test_images_are_converted_off_the_event_loop(wide: str) -> None:
    """Two 1 KB WebP images of 5000 x 5000 take the gateway seconds to convert to PNG; meanwhile
    it answers /healthz at once (were conversion on its event loop, every request would wait for
    all of it). The bound is a quarter of the conversion's time, or 0.5 s: on a machine shared
    with other work a health answer can wait for a core, but not for the conversion."""
    big = _png(Image.new("L", (5000, 5000), 128), "WEBP")
    files = [("img", (f"{i}.webp", big)) for i in range(2)]
    result: list[requests.Response] = []
    upload = threading.Thread(
        target=lambda: result.append(requests.post(wide + "/", files=files, timeout=60))
    )
    with requests.Session() as health:
        upload.start()
        _wait_for_metric(health, wide, "modelport_gateway_converting_requests 1.0")
        began, slowest, answered = time.monotonic(), 0.0, 0
        while upload.is_alive():
            started = time.monotonic()
            assert health.get(wide + "/healthz", timeout=10).status_code == 200
            slowest, answered = max(slowest, time.monotonic() - started), answered + 1
            time.sleep(0.02)
        upload.join()
        took = time.monotonic() - began
    assert result[0].status_code == 400 and "limit" in result[0].json()["error"]  # the model's pixels
    assert answered >= 5 and slowest < max(0.5, took / 4), (answered, slowest, took)


def _wait_for_metric(client: requests.Session, base: str, line: str) -> None:
    deadline = time.monotonic() + 20 * PATIENCE
    while line not in client.get(base + "/metrics", timeout=10).text:
        assert time.monotonic() < deadline, f"never saw {line}"
        time.sleep(0.02)


def test_health_and_metrics(url: str) -> None:
    assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(url + "/readyz", timeout=5).json()["model"]["available"] is True
    page = requests.get(url + "/", timeout=5)
    assert page.status_code == 200 and "<canvas" in page.text and "http" not in page.text.split("<script>")[1]
    metrics = requests.get(url + "/metrics", timeout=5).text
    assert 'modelport_gateway_requests_total{endpoint="/",status="200"}' in metrics


def test_a_model_service_that_is_down_slow_or_failing(tmp_path: Path, model: Server) -> None:
    # A port that stays closed: bound (so nothing else takes it) but not listening.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        _down_or_failing(tmp_path, model, dead)


def _down_or_failing(tmp_path: Path, model: Server, dead: str) -> None:
    png = {"img": ("x.png", _png(Image.new("L", (28, 28))))}
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
    # A server that accepts the connection and never answers: the deadline. (Were it not kept,
    # the gateway would wait for ever and the client's own 30 s timeout would fire instead.)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        with gateway(
            tmp_path, "--model-url", f"http://127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.5"
        ) as base:
            answer = requests.post(base + "/", files=png, timeout=30)
            assert answer.status_code == 504
            assert answer.json()["error"] == "the model service did not answer within 0.5 s"


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
    digit = sample(repo, 7).read_bytes()
    try:
        plane.up(grace=1)
        plane.cli("apply", "-f", str(tmp_path / "deploy.yaml"))
        plane.cli("rollout", "status", "deployment/mnist")
        plane.cli("rollout", "status", "deployment/gateway")
        url = plane.service_url("gateway")
        answer = requests.post(url + "/", files={"img": ("7.png", digit)}, timeout=10)
        assert answer.json() == {"result": [7]}
        assert "gateway from svc/mnist" in plane.cli("describe", "deployment", "gateway").stdout
        # No model replica at all: the gateway stays up and says so, in JSON.
        plane.cli("scale", "deployment/mnist", "--replicas", "0")
        plane.wait(lambda: plane.get("Service", "mnist")["status"]["endpoints"] == [], what="no endpoints")
        down = requests.post(url + "/", files={"img": ("7.png", digit)}, timeout=10)
        assert down.status_code == 503
        assert down.json() == {
            "error": f"the model service at {plane.client().resolve('mnist')} is unavailable: "
            "it has no ready replica"
        }
    finally:
        plane.stop()


def test_a_model_service_restarted_under_traffic_fails_only_while_it_is_down(
    repo: Path, tmp_path: Path
) -> None:
    """Requests keep coming while the model service stops and a new one starts on the same
    port. Those that overlap the gap get a 503 that says so; every other gets the right answer,
    the first ones after the restart included (the pooled connections died with the old process:
    the gateway retries on a new one)."""
    port = port_below_the_ephemeral_range()  # not port 0: the new process must take the same one
    args = ["--model_name", "mnist", "--model_base_path", str(repo), "--rest_api_port", str(port)]
    first = Server(args, _mkdir(tmp_path / "a"))
    first.wait_ready()
    with (
        # Steady traffic from one address, faster than a client address may send by default.
        gateway(tmp_path, "--model-url", first.url, "--per-client", "off") as base,
        Uploads(base, sample(repo, 7).read_bytes()) as load,
    ):
        load.wait_for("up", 20)
        load.phase = "down"
        first.stop()
        second = Server(args, _mkdir(tmp_path / "b"))
        try:
            second.wait_ready()
            load.phase = "back"
            load.wait_for("back", 20)
        finally:
            load.stop()
            second.stop()
    outcomes = load.outcomes
    ok = {"result": [7]}
    assert all(answer == ok for started, ended, answer in outcomes if ended == "up"), outcomes
    assert all(answer == ok for started, _, answer in outcomes if started == "back"), outcomes
    gap = [answer for started, ended, answer in outcomes if ended != "up" and started != "back"]
    failed = [answer for answer in gap if answer != ok]
    unavailable = f"503: the model service at {first.url} is unavailable"
    assert all(str(answer).startswith(unavailable) for answer in failed), (len(failed), len(gap), failed)


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


class Uploads:
    """One client posting a digit to the gateway in a loop; each outcome kept with the phase it
    started and ended in (the test moves `phase` along: up, down, back)."""

    def __init__(self, base: str, digit: bytes) -> None:
        self.base, self.digit, self.phase = base, digit, "up"
        self.outcomes: list[tuple[str, str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True)

    def __enter__(self) -> Uploads:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _work(self) -> None:
        with requests.Session() as client:
            while not self._stop.is_set():
                started = self.phase
                try:
                    answer = client.post(self.base + "/", files={"img": ("7.png", self.digit)}, timeout=30)
                    body = answer.json()
                    outcome = body if answer.status_code == 200 else f"{answer.status_code}: {body['error']}"
                except (requests.RequestException, ValueError, KeyError) as exc:
                    outcome = repr(exc)
                self.outcomes.append((started, self.phase, outcome))

    def wait_for(self, phase: str, count: int) -> None:
        deadline = time.monotonic() + 30 * PATIENCE
        while sum(1 for started, _, _ in self.outcomes if started == phase) < count:
            assert time.monotonic() < deadline and self._thread.is_alive(), self.outcomes[-5:]
            time.sleep(0.02)


def test_sigterm_stops_the_gateway_with_exit_code_0(tmp_path: Path, model: Server) -> None:
    """SIGTERM is handled (stop listening, finish what is under way, exit 0), not left to its
    default action: as a container's PID 1 there is none, and `docker stop` or the kubelet would
    wait out the grace period and SIGKILL it (137); tests/kube/test_build_image.py runs it so."""
    port_file = tmp_path / "gateway.json"
    log = tmp_path / "gateway.log"
    with open(log, "ab") as out:
        command = [sys.executable, "-m", "modelport", "gateway", "--port", "0",
                   "--port-file", str(port_file), "--model-url", model.url]  # fmt: skip
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            base = f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"
            assert requests.get(base + "/healthz", timeout=10).status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
