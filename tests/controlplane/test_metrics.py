"""The metrics collector behind `modelport top pods` and the HPA's Pods metrics, against a real
`modelport serve` replica on a fake clock: request rate, latency quantiles from its histogram,
requests in flight, CPU and memory of the process; and the quantile arithmetic on its own."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import psutil
import pytest
import requests

from claims_support import spinning_onnx
from modelport.controlplane.metrics import MetricsCollector, quantile
from modelport.testing.clock import FakeClock
from support import Server, mark_complete, running


def test_quantiles_interpolate_within_a_bucket_as_prometheus_does() -> None:
    # 20 requests: 10 under 1 ms, 8 more under 10 ms, the last 2 under 100 ms.
    buckets = {0.001: 10.0, 0.01: 18.0, 0.1: 20.0, float("inf"): 20.0}
    assert quantile(0.5, buckets) == pytest.approx(0.001)  # rank 10: the top of the first bucket
    assert quantile(0.8, buckets) == pytest.approx(0.001 + 0.009 * (16 - 10) / 8)  # rank 16 of 10..18
    assert quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * (19.8 - 18) / 2)  # = 0.091
    assert quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None  # no request: no latency
    assert quantile(0.99, {0.1: 1.0, float("inf"): 3.0}) == 0.1  # past the last bound: that bound


def _histogram(server: Server) -> dict[float, float]:
    """The replica's own latency buckets, summed over labels (read here, not by the collector)."""
    buckets: dict[float, float] = {}
    pattern = r'^modelport_request_duration_seconds_bucket\{.*le="([^"]+)".*\} (\S+)$'
    for bound, count in re.findall(pattern, server.get("/metrics").text, re.M):
        buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(count)
    return buckets


def _bucket_of(rank: float, buckets: dict[float, float]) -> tuple[float, float]:
    """The (lower, upper) bounds of the bucket holding the request of this rank."""
    lower = 0.0
    for bound in sorted(buckets):
        if buckets[bound] >= rank:
            return lower, bound
        lower = bound
    raise AssertionError(f"rank {rank} beyond {buckets}")


def _in_flight(server: Server) -> float:
    found = re.findall(
        r'^modelport_requests_in_flight\{model="spin"\} (\S+)$', server.get("/metrics").text, re.M
    )
    return float(found[0]) if found else 0.0


def test_pods_metrics_from_a_real_replica(tmp_path: Path) -> None:
    spinning_onnx(tmp_path / "spin" / "1" / "model.onnx")
    mark_complete(tmp_path / "spin" / "1")
    args = [
        "--model_name",
        "spin",
        "--model_base_path",
        str(tmp_path / "spin"),
        "--rest_api_timeout_in_ms",
        "600000",
    ]
    with running(args, tmp_path) as server:
        server.wait_ready()
        clock = FakeClock()
        collector = MetricsCollector(clock, interval=5.0, window=30.0)
        replicas = {"default.spin-0": (server.proc.pid, server.port)}
        collector.collect(replicas)
        assert collector.pod("default.spin-0") is None  # one sample: no rate yet
        process = psutil.Process(server.proc.pid)
        cpu_before = sum(process.cpu_times()[:2])
        # First, while the server has no cost estimate for the model, so it runs in the thread
        # pool (a request the server thinks fast runs on its event loop, where this one would
        # block every other request).
        stuck = threading.Thread(target=_post_forever, args=(server.url,), daemon=True)
        stuck.start()
        server.wait_until(lambda: _in_flight(server) == 1.0, 30, "the endless request to be in flight")
        for _ in range(20):
            assert server.post("/v1/models/spin:predict", {"instances": [[1.0]]}).json() == {
                "predictions": [[2.0]]
            }
        server.wait_until(
            lambda: sum(process.cpu_times()[:2]) - cpu_before >= 0.5,
            30,
            "the replica to spin 0.5 CPU-seconds",
        )
        clock.advance(5.0)
        collector.collect(replicas)
        pod = collector.pod("default.spin-0")
        assert pod is not None
        assert pod["requests_per_second"] == 20 / 5.0  # answered ones: the endless one is not yet
        assert pod["requests_in_flight"] == 1.0
        assert pod["modelport_requests_in_flight"] == 1.0  # the replica's own gauge, by its name
        assert pod["cpu"] >= 0.5 / 5.0  # at least the spinning, in cores over the 5 s between samples
        rss = sum(
            p.memory_info().rss for p in (process, *process.children(recursive=True))
        )  # its monitor's too
        assert abs(pod["memory"] - rss) <= 0.2 * rss
        buckets = _histogram(server)
        for q, key in ((0.5, "request_latency_p50_seconds"), (0.99, "request_latency_p99_seconds")):
            lower, upper = _bucket_of(q * 20, buckets)
            assert lower <= pod[key] <= upper, (key, pod[key], buckets)
        assert pod["request_latency_p50_seconds"] <= pod["request_latency_p99_seconds"]
        server.proc.kill()  # the endless request ends with its server
        stuck.join(30)
        assert not stuck.is_alive()


def _post_forever(url: str) -> None:
    with contextlib.suppress(requests.RequestException):  # the server is killed under it, as intended
        requests.post(f"{url}/v1/models/spin:predict", json={"instances": [[1e12]]}, timeout=600)


def test_replicas_that_do_not_answer_cost_one_scrape_timeout_not_one_each() -> None:
    """Eight replicas frozen (their ports take connections, nothing answers): one round of the
    collector waits out one 0.5 s scrape timeout for all of them together, not 4 s one after
    another, so the controllers' loop it runs in is held up no longer by eight than by one."""
    import os
    import socket
    import time

    from modelport.controlplane.metrics import MetricsCollector
    from modelport.testing import FakeClock

    frozen = [socket.create_server(("127.0.0.1", 0)) for _ in range(8)]
    try:
        replicas = {f"default.frozen-{i}": (os.getpid(), s.getsockname()[1]) for i, s in enumerate(frozen)}
        collector = MetricsCollector(FakeClock(), interval=5.0, window=30.0)
        started = time.monotonic()
        collector.collect(replicas)
        took = time.monotonic() - started
    finally:
        for sock in frozen:
            sock.close()
    assert 0.5 <= took < 2.0, took


def test_a_replicas_cpu_and_memory_count_every_process_under_it(tmp_path: Path) -> None:
    """As a container's: with `--workers 2` the process the control plane started (the
    supervisor) does almost none of the work, its workers (and their monitor processes) do."""
    import base64

    from modelport.examples import write_mnist_repository

    write_mnist_repository(tmp_path / "mnist")
    png = (tmp_path / "mnist" / "samples" / "digit-7.png").read_bytes()
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}
    args = ["--model_name", "mnist", "--model_base_path", str(tmp_path / "mnist"), "--workers", "2"]
    with running(args, tmp_path) as server:
        server.wait_ready()
        supervisor = psutil.Process(server.proc.pid)

        def tree() -> list[psutil.Process]:
            return [supervisor, *supervisor.children(recursive=True)]

        clock = FakeClock()
        collector = MetricsCollector(clock, interval=5.0, window=30.0)
        replicas = {"default.mnist-0": (server.proc.pid, server.port)}
        collector.collect(replicas)
        before = {p.pid: sum(p.cpu_times()[:2]) for p in tree()}
        for _ in range(300):
            assert server.post("/v1/models/mnist:predict", body).status_code == 200
        after = {p.pid: sum(p.cpu_times()[:2]) for p in tree()}
        clock.advance(5.0)
        collector.collect(replicas)
        pod = collector.pod("default.mnist-0")
        assert pod is not None
        spent = sum(after[pid] - before.get(pid, 0.0) for pid in after)
        assert after[supervisor.pid] - before[supervisor.pid] < 0.2 * spent  # the work is under it
        assert pod["cpu"] * 5.0 >= 0.9 * spent, (pod["cpu"], spent)
        rss = sum(p.memory_info().rss for p in tree())
        assert abs(pod["memory"] - rss) <= 0.2 * rss
        assert supervisor.memory_info().rss < 0.5 * pod["memory"]
