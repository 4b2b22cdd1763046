"""Supervised replicas: real `modelport serve` processes become ready, a killed one is restarted
after Kubernetes' back-off, a replica that never gets ready is never counted ready."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from modelport.clock import SystemClock
from modelport.dataplane.supervisor import BackOffPolicy, Replica, Supervisor
from support import half_plus_two, mark_complete


def test_backoff_doubles_to_a_cap() -> None:
    policy = BackOffPolicy()
    assert [policy.delay(n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor(SystemClock())
    yield sup
    sup.stop_all(grace_seconds=5)


def _until(sup: Supervisor, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sup.tick()
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_killed_replica_comes_back_after_its_backoff(supervisor: Supervisor, tmp_path: Path) -> None:
    model = half_plus_two(tmp_path / "half" / "1").parent
    mark_complete(model)
    replica = supervisor.add(Replica(
        "half-0", ["--model_name", "half", "--model_base_path", str(model.parent)], tmp_path / "replicas",
        backoff=BackOffPolicy(initial_seconds=1.0),
    ))  # fmt: skip
    _until(supervisor, lambda: replica.ready)
    answer = requests.post(
        f"http://127.0.0.1:{replica.port}/v1/models/half:predict", json={"instances": [2.0]}
    )
    assert answer.json() == {"predictions": [[3.0]]}
    first_pid = replica.pid
    assert first_pid is not None
    os.killpg(first_pid, signal.SIGKILL)
    _until(supervisor, lambda: replica.proc is None)
    assert not replica.ready and replica.restarts == 1 and replica.last_exit == -signal.SIGKILL
    killed_at = time.monotonic()
    _until(supervisor, lambda: replica.ready)
    assert time.monotonic() - killed_at >= 0.9  # waited out the back-off first
    assert replica.pid != first_pid
    assert "[supervisor] exited with -9; restart 1 in 1.0 s" in replica.log_path.read_text()


def test_a_replica_whose_model_is_missing_never_gets_ready(supervisor: Supervisor, tmp_path: Path) -> None:
    replica = supervisor.add(Replica(
        "ghost-0", ["--model_name", "ghost", "--model_base_path", str(tmp_path / "nowhere")], tmp_path / "r",
    ))  # fmt: skip
    _until(supervisor, lambda: replica.port is not None)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        supervisor.tick()
        assert not replica.ready
        time.sleep(0.05)
    assert replica.pid is not None  # alive (liveness passes), just not ready
    status = requests.get(f"http://127.0.0.1:{replica.port}/readyz").json()
    assert status["ready"] is False and "nowhere" in str(status)
