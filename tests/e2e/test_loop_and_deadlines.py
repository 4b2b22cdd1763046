"""No heavy work on the event loop, and a deadline on every path, against a real `modelport serve`
(README, "Limits"). The maximum-size request of the MNIST example is 10 PNGs of 2000x2000 with
strokes on them: 40 million pixels, --max_request_pixels' default, about a second of decoding.
While such requests are served over REST or gRPC, `/healthz` answers within 50 ms (p99 of 300
probes; _healthz_p99_stays_within_bound says how a shared test machine is allowed for). A request
that runs past `--rest_api_timeout_in_ms` gets 504 (gRPC: DEADLINE_EXCEEDED) at its deadline, and a
request that waited for a thread past its deadline is never started (counted in /metrics)."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from PIL import Image, ImageDraw
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from claims_support import spinning_onnx
from support import Server, half_and_mnist, mark_complete, running

PROBES = 300
P99_BOUND = 0.050
WORST_BOUND = 1.0


def _strokes(seed: int) -> bytes:
    """2000x2000, dark strokes on white: 4 million pixels that take real work to decode and fit."""
    image = Image.new("L", (2000, 2000), 255)
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(seed)
    for _ in range(40):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 2000, 4))
        draw.line((x0, y0, x1, y1), fill=0, width=25)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _digit() -> bytes:
    """A 28x28 stroke: a small request."""
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line((14, 4, 14, 24), fill=255, width=3)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


MAX_IMAGES = [_strokes(seed) for seed in range(10)]  # 40,000,000 pixels: the default limit


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("loop")
    with running(["--model_config_file", str(half_and_mnist(root))], root) as srv:
        srv.wait_ready()
        yield srv


def _p99(latencies: list[float]) -> float:
    return sorted(latencies)[int(len(latencies) * 0.99) - 1]


def _healthz_p99_stays_within_bound(server: Server, heavy: Callable[[], None]) -> None:
    """/healthz p99 < 50 ms while `heavy` requests are served, the issue's bound.

    The probes cross a machine shared with other work (2 cores, a dozen busy processes while
    the suite runs), where an inference thread descheduled while it holds the GIL stalls the
    event loop too. So: up to 3 rounds, each idle probes then probes under load; the bound is
    50 ms, or twice the round's idle p99 if the machine alone is slower than 25 ms; one round
    within it passes. No probe in any round may take 1 s (a liveness probe's default timeout):
    a loop blocked by decoding (15.9 s in the issue, 1 to 3 s per request here) fails that.

    First, small requests: the server measures the version as fast (a digit in well under 2 ms)
    and runs such requests on its event loop, as it did when the issue's request froze it."""
    digit = {"instances": [{"image_bytes": {"b64": base64.b64encode(_digit()).decode()}}]}
    for _ in range(20):
        assert server.post("/v1/models/mnist:predict", digit).status_code == 200
    rounds = []
    for _ in range(3):
        idle = _probe(server)
        latencies, answered = _probe_while(server, heavy)
        assert answered >= 1  # the probes ran while maximum-size requests were being served
        rounds.append(
            f"p99 {_p99(latencies) * 1000:.1f} ms (max {max(latencies) * 1000:.1f} ms), "
            f"idle p99 {_p99(idle) * 1000:.1f} ms"
        )
        # p99 alone would let a freeze per heavy request through (3 requests in 300 probes): in
        # no round may a probe wait Kubernetes' default probe timeout (1 s).
        assert max(latencies) < WORST_BOUND, "; ".join(rounds)
        if _p99(latencies) < max(P99_BOUND, 2 * _p99(idle)):
            return
    raise AssertionError("/healthz while serving maximum-size requests: " + "; ".join(rounds))


def _probe(server: Server) -> list[float]:
    """/healthz PROBES times, 5 ms apart, on one keep-alive connection: each one's latency."""
    latencies = []
    with requests.Session() as session:
        session.get(server.url + "/healthz", timeout=5)  # the connection is made before timing
        for _ in range(PROBES):
            started = time.perf_counter()
            assert session.get(server.url + "/healthz", timeout=5).status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
    return latencies


def _probe_while(server: Server, heavy: Callable[[], None]) -> tuple[list[float], int]:
    """/healthz probed while `heavy` runs over and over in a thread (then /metrics and a small
    :predict): each probe's latency, and how many heavy requests were answered meanwhile.
    `heavy` sends bytes made beforehand, so that this process's own GIL is not what the probes
    measure."""
    done = threading.Event()
    answered = [0]
    errors: list[BaseException] = []

    def load() -> None:
        try:
            while not done.is_set():
                heavy()
                answered[0] += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    worker = threading.Thread(target=load, name="max-size-requests")
    latencies = []
    with requests.Session() as session:
        session.get(server.url + "/healthz", timeout=5)  # the connection is made before timing
        worker.start()
        try:
            time.sleep(0.2)  # the first heavy request is in: the server is decoding it
            for _ in range(PROBES):
                started = time.perf_counter()
                assert session.get(server.url + "/healthz", timeout=5).status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.005)
            # Metrics and a small request are answered meanwhile too, each well within a second.
            started = time.perf_counter()
            assert session.get(server.url + "/metrics", timeout=5).status_code == 200
            small = session.post(server.url + "/v1/models/half:predict", json={"instances": [2.0]}, timeout=5)
            assert small.json() == {"predictions": [[3.0]]}
            assert time.perf_counter() - started < 1.0
        finally:
            done.set()
            worker.join(60)
    assert not errors, errors
    print(
        f"/healthz p50 {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms, {answered[0]} answered"
    )
    return latencies, answered[0]


def test_healthz_answers_within_50_ms_while_maximum_size_requests_are_served_over_rest(
    server: Server,
) -> None:
    rows = [{"image_bytes": {"b64": base64.b64encode(png).decode()}} for png in MAX_IMAGES]
    body = json.dumps({"instances": rows}).encode()
    session = requests.Session()

    def heavy() -> None:
        answer = session.post(server.url + "/v1/models/mnist:predict", data=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 10

    _healthz_p99_stays_within_bound(server, heavy)
    session.close()


def test_healthz_answers_within_50_ms_while_maximum_size_requests_are_served_over_grpc(
    server: Server,
) -> None:
    request = service_pb2.ModelInferRequest(model_name="mnist")
    request.inputs.add(name="image_bytes", datatype="BYTES", shape=[10])
    request.raw_input_contents.append(b"".join(struct.pack("<I", len(png)) + png for png in MAX_IMAGES))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def heavy() -> None:
            answer = stub.ModelInfer(request, timeout=60)
            assert "classes" in [o.name for o in answer.outputs]

        _healthz_p99_stays_within_bound(server, heavy)


# -- deadlines --

SPIN = {"instances": [[1e12]]}  # runs for days unless stopped
QUICK = {"instances": [[3.0]]}  # answers [[6.0]] at once


def _expired(server: Server) -> float:
    """modelport_requests_expired_total for the spinning model: requests dropped unstarted."""
    text = server.get("/metrics").text
    found = re.search(r'^modelport_requests_expired_total\{model="spin",version="1"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _spinning(tmp_path: Path, *flags: str) -> Iterator[Server]:
    """The spinning model with a 2 s deadline and one inference thread."""
    spinning_onnx(tmp_path / "spin" / "1" / "model.onnx")
    mark_complete(tmp_path / "spin" / "1")
    args = ["--model_name", "spin", "--model_base_path", str(tmp_path / "spin"),
            "--rest_api_timeout_in_ms", "2000", "--rest_api_num_threads", "1", *flags]  # fmt: skip
    with running(args, tmp_path) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture
def spinning(tmp_path: Path) -> Iterator[Server]:
    yield from _spinning(tmp_path)


@pytest.fixture
def spinning_batched(tmp_path: Path) -> Iterator[Server]:
    """Batching on, one batch thread. A batch already running is not stopped at a deadline (its
    rows belong to several requests), so the spinning one keeps its thread: the test kills the
    server at its end."""
    batching = tmp_path / "batching.txt"
    batching.write_text("num_batch_threads { value: 1 }\n")
    yield from _spinning(tmp_path, "--batching_parameters_file", str(batching))


def _timed_post(server: Server, body: object) -> tuple[requests.Response, float]:
    started = time.perf_counter()
    answer = server.post("/v1/models/spin:predict", body)
    return answer, time.perf_counter() - started


def test_a_request_past_its_deadline_gets_504_at_the_deadline_and_its_thread_is_freed(
    spinning: Server,
) -> None:
    """The first request to a version runs in the pool (the server has not measured it yet)."""
    slow, elapsed = _timed_post(spinning, SPIN)
    assert slow.status_code == 504 and "longer than the 2 s timeout" in slow.json()["error"]
    assert 1.9 < elapsed < 4.0  # at the deadline, not at the end of the work
    # The model call was stopped at the deadline: the one inference thread answers the next one.
    quick, elapsed = _timed_post(spinning, QUICK)
    assert (quick.status_code, quick.json()) == (200, {"predictions": [[6.0]]})
    assert elapsed < 1.0
    assert _expired(spinning) == 0  # both were started


def test_a_request_run_on_the_event_loop_is_stopped_at_its_deadline_too(spinning: Server) -> None:
    """After 50 quick answers the server has measured the version under 2 ms and runs its small
    requests on the event loop itself. A spinning one there is stopped at the deadline, not left
    to hold the loop (and /healthz) for days."""
    for _ in range(50):
        assert spinning.post("/v1/models/spin:predict", QUICK).status_code == 200
    slow, elapsed = _timed_post(spinning, SPIN)
    assert slow.status_code == 504 and 1.9 < elapsed < 4.0
    assert spinning.get("/healthz").status_code == 200
    assert spinning.post("/v1/models/spin:predict", QUICK).json() == {"predictions": [[6.0]]}


def test_batched_requests_past_their_deadline_get_504_and_queued_ones_are_never_started(
    spinning_batched: Server,
) -> None:
    server = spinning_batched
    with requests.Session() as session:
        outcome: list[requests.Response] = []
        url = server.url + "/v1/models/spin:predict"
        spinner = threading.Thread(target=lambda: outcome.append(session.post(url, json=SPIN, timeout=10)))
        spinner.start()
        # In flight and out of the queue: in its batch's model call, so the next one cannot join it.
        taken = re.compile(r"^modelport_batch_queue_rows 0\.0$", re.M)
        server.wait_until(
            lambda: _in_flight(server) == 1 and taken.search(server.get("/metrics").text) is not None,
            5, "the spinning request in its batch",
        )  # fmt: skip
        queued, elapsed = _timed_post(server, QUICK)  # waits behind it in the batch queue
        spinner.join(10)
    assert outcome[0].status_code == 504
    assert queued.status_code == 504 and 1.9 < elapsed < 4.0
    assert _expired(server) == 1  # the queued one was dropped, never run
    assert server.get("/healthz").status_code == 200
    server.proc.kill()  # the batch thread still spins: no graceful stop to wait for


def _in_flight(server: Server) -> float:
    found = re.search(
        r'^modelport_requests_in_flight\{model="spin"\} (\S+)$', server.get("/metrics").text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_grpc_calls_have_the_servers_deadline_and_their_own(spinning: Server) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{spinning.grpc_port}")
    spin = grpcclient.InferInput("x", [1, 1], "FP32")
    spin.set_data_from_numpy(np.array([[1e12]], np.float32))
    quick = grpcclient.InferInput("x", [1, 1], "FP32")
    quick.set_data_from_numpy(np.array([[3.0]], np.float32))
    started = time.perf_counter()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("spin", [spin])  # no deadline of its own: the server's 2 s applies
    assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert "longer than the 2 s timeout" in caught.value.message()
    assert 1.9 < time.perf_counter() - started < 4.0
    # A call with a deadline of its own (0.5 s) behind a spinning one: dropped unstarted.
    errors: list[InferenceServerException] = []

    def spin_call() -> None:
        try:
            client.infer("spin", [spin])
        except InferenceServerException as exc:
            errors.append(exc)

    spinner = threading.Thread(target=spin_call)
    spinner.start()
    spinning.wait_until(lambda: _in_flight(spinning) == 1, 5, "the spinning call in the pool")
    with pytest.raises(InferenceServerException) as caught:
        client.infer("spin", [quick], client_timeout=0.5)
    assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    spinning.wait_until(lambda: _expired(spinning) == 1, 5, "the queued call dropped unstarted")
    spinner.join(10)
    assert [e.status() for e in errors] == ["StatusCode.DEADLINE_EXCEEDED"]
    assert client.infer("spin", [quick]).as_numpy("y").tolist() == [[6.0]]  # the thread is free
    client.close()
