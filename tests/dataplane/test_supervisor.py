"""Supervised replicas: real `modelport serve` processes become ready, a killed one is restarted
after Kubernetes' back-off (on a fake clock: exactly when it is due, not before), a replica that
never gets ready is never counted ready."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests

from modelport.dataplane.supervisor import BackOffPolicy, ProbeSpec, Replica, Supervisor
from modelport.testing import FakeClock
from support import PATIENCE, half_plus_two, mark_complete


def test_backoff_doubles_to_a_cap() -> None:
    policy = BackOffPolicy()
    assert [policy.delay(n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def _until(sup: Supervisor, clock: FakeClock, check: Callable[[], bool], step: float = 0.0) -> None:
    """Tick until `check()`, polling the real processes; the fake clock moves `step` a round (a
    probe period, so probes run; 0 where the back-off must not run out)."""
    deadline = time.monotonic() + 30 * PATIENCE
    while not check():
        assert time.monotonic() < deadline, "timed out"
        clock.advance(step)
        sup.tick()
        time.sleep(0.02)  # poll interval: the replica is a real process


def _serving(sup: Supervisor, clock: FakeClock, replica: Replica) -> None:
    """Until the replica's process answers HTTP (its port read, the clock still: until then a
    probe round would count liveness failures the real clock would not have had time for)."""
    _until(sup, clock, lambda: replica.port is not None)
    deadline = time.monotonic() + 30 * PATIENCE
    while True:
        try:
            requests.get(f"http://127.0.0.1:{replica.port}/healthz", timeout=5)
            return
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the replica never answered"
            time.sleep(0.02)


def test_a_killed_replica_comes_back_after_its_backoff(
    supervisor: Supervisor, clock: FakeClock, tmp_path: Path
) -> None:
    model = half_plus_two(tmp_path / "half" / "1").parent
    mark_complete(model)
    replica = supervisor.add(Replica(
        "half-0", ["--model_name", "half", "--model_base_path", str(model.parent)], tmp_path / "replicas",
        backoff=BackOffPolicy(initial_seconds=10.0),
    ))  # fmt: skip
    _serving(supervisor, clock, replica)
    _until(supervisor, clock, lambda: replica.ready, step=1.0)
    answer = requests.post(
        f"http://127.0.0.1:{replica.port}/v1/models/half:predict", json={"instances": [2.0]}
    )
    assert answer.json() == {"predictions": [[3.0]]}
    first_pid = replica.pid
    assert first_pid is not None
    os.killpg(first_pid, signal.SIGKILL)
    _until(supervisor, clock, lambda: replica.proc is None)
    assert not replica.ready and replica.restarts == 1 and replica.last_exit == -signal.SIGKILL
    clock.advance(9.99)
    supervisor.tick()
    assert replica.proc is None  # still backing off: 10 s after the crash, not before
    clock.advance(0.01)
    supervisor.tick()
    assert replica.proc is not None and replica.pid != first_pid
    _serving(supervisor, clock, replica)
    _until(supervisor, clock, lambda: replica.ready, step=1.0)
    assert "[supervisor] exited with -9; restart 1 in 10.0 s" in replica.previous_log_path.read_text()


def test_a_replica_whose_model_is_missing_never_gets_ready(
    supervisor: Supervisor, clock: FakeClock, tmp_path: Path
) -> None:
    # Probes wait PATIENCE seconds for an answer: on a busy machine a live replica's /healthz can take
    # longer than Kubernetes' default 1 s, and that failure's message would replace readiness's.
    replica = supervisor.add(Replica(
        "ghost-0", ["--model_name", "ghost", "--model_base_path", str(tmp_path / "nowhere")], tmp_path / "r",
        readiness=ProbeSpec("/readyz", timeout_seconds=PATIENCE),
        liveness=ProbeSpec("/healthz", timeout_seconds=PATIENCE),
    ))  # fmt: skip
    _serving(supervisor, clock, replica)
    for _ in range(5):  # five probe periods, each a real probe of the running server
        clock.advance(replica.readiness.period_seconds)
        supervisor.tick()
        _until(supervisor, clock, lambda: "readiness" not in replica.probing)  # its answer is in
        assert not replica.ready and replica.message.startswith("Readiness probe failed: HTTP probe failed")
    assert replica.pid is not None and replica.restarts == 0  # alive (liveness passes), just not ready
    status = requests.get(f"http://127.0.0.1:{replica.port}/readyz").json()
    assert status["ready"] is False and "nowhere" in str(status)
