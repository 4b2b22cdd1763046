"""A Service's HAProxy in front of real replicas: requests spread over them, a replica killed
mid-load costs no request (retried on another), and a replica taken out is drained first."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from modelport.dataplane.haproxy import LoadBalancer
from support import Server, half_plus_two, mark_complete, running


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Server]]:
    base = half_plus_two(tmp_path / "half" / "1").parent.parent
    mark_complete(base / "1")
    args = ["--model_name", "half", "--model_base_path", str(base)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running(args, tmp_path / "a") as a, running(args, tmp_path / "b") as b:
        a.wait_ready()
        b.wait_ready()
        yield [a, b]


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[LoadBalancer]:
    lb = LoadBalancer(tmp_path / "lb", "half")
    yield lb
    lb.stop()


def _load(url: str, seconds: float, threads: int = 6) -> collections.Counter[object]:
    counts: collections.Counter[object] = collections.Counter()
    stop = time.monotonic() + seconds

    def worker() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                try:
                    answer = session.post(url, json={"instances": [2.0]}, timeout=10)
                    counts[answer.status_code if answer.json() == {"predictions": [[3.0]]} else "wrong"] += 1
                except requests.RequestException as exc:
                    counts[type(exc).__name__] += 1

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counts


def test_requests_spread_over_the_ready_replicas(replicas: list[Server], balancer: LoadBalancer) -> None:
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    url = f"http://127.0.0.1:{balancer.port}/v1/models/half:predict"
    for _ in range(20):
        assert requests.post(url, json={"instances": [2.0]}, timeout=5).status_code == 200
    totals = {name: state.total_sessions for name, state in balancer.servers().items()}
    assert set(totals) == {"a", "b"}
    assert totals["a"] >= 8 and totals["b"] >= 8  # round robin: about half each


def test_a_replica_killed_under_load_costs_no_request(replicas: list[Server], balancer: LoadBalancer) -> None:
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    url = f"http://127.0.0.1:{balancer.port}/v1/models/half:predict"
    killer = threading.Timer(1.5, lambda: os.kill(replicas[0].proc.pid, signal.SIGKILL))
    killer.start()
    counts = _load(url, 4.0)
    killer.join()
    assert set(counts) == {200}, counts
    assert counts[200] > 200


def test_a_replica_leaving_is_drained_without_failures(
    replicas: list[Server], balancer: LoadBalancer
) -> None:
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    url = f"http://127.0.0.1:{balancer.port}/v1/models/half:predict"
    remover = threading.Timer(1.5, lambda: balancer.set_endpoints({"b": replicas[1].port}))
    remover.start()
    counts = _load(url, 4.0)
    remover.join()
    assert set(counts) == {200}, counts
    assert set(balancer.servers()) == {"b"}


def test_a_restarted_control_plane_takes_over_the_running_load_balancer(
    replicas: list[Server], balancer: LoadBalancer, tmp_path: Path
) -> None:
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    url = f"http://127.0.0.1:{balancer.port}/v1/models/half:predict"
    again = LoadBalancer(tmp_path / "lb", "half", balancer.port, adopt_pid=balancer.proc.pid)
    assert again.proc.pid == balancer.proc.pid  # the same HAProxy: its clients never noticed
    assert again.endpoints == {"a": replicas[0].port, "b": replicas[1].port}
    again.set_endpoints({"b": replicas[1].port})
    assert set(again.servers()) == {"b"}
    assert {requests.post(url, json={"instances": [2.0]}, timeout=5).status_code for _ in range(10)} == {200}
    stranger = LoadBalancer(tmp_path / "lb2", "half", adopt_pid=os.getpid())  # not an HAProxy: a new one
    try:
        assert stranger.proc.pid != os.getpid() and stranger.endpoints == {}
    finally:
        stranger.stop()
