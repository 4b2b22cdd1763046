"""The README's fault table at the supervisor, with real `modelport serve` replicas and a fake clock
(the back-off and probe periods are the clock's; only process start-up takes real time):
a failing liveness probe restarts a replica after its back-off, the back-off returns to 10 s once
a replica has been up 10 minutes, and a replica over its memory limit fails with its reason."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from modelport.dataplane.supervisor import ProbeSpec, Replica, Supervisor
from modelport.testing.clock import FakeClock
from support import half_plus_two, mark_complete, says_out_of_memory


@pytest.fixture
def model_args(tmp_path: Path) -> list[str]:
    version = half_plus_two(tmp_path / "half" / "1").parent
    mark_complete(version)
    return ["--model_name", "half", "--model_base_path", str(version.parent)]


def _until(sup: Supervisor, check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Tick (without moving the fake clock) until `check` holds: waits only for real processes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sup.tick()
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _serving(replica: Replica) -> bool:
    """The replica's own server answers (checked here, not by the supervisor's probes)."""
    if replica.port is None:
        return False
    try:
        return requests.get(f"http://127.0.0.1:{replica.port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_replica_failing_its_liveness_probe_is_restarted_after_its_backoff(
    supervisor: Supervisor, clock: FakeClock, model_args: list[str], tmp_path: Path
) -> None:
    replica = supervisor.add(Replica(
        "half-0", model_args, tmp_path / "replicas",
        # 10 s to answer: on a busy machine a slow answer must not pass for the 404 under test
        liveness=ProbeSpec("/v1/models/nope", period_seconds=1.0, timeout_seconds=10.0, failure_threshold=3),
    ))  # fmt: skip
    _until(supervisor, lambda: _serving(replica), "the replica to serve")
    first = replica.pid
    assert first is not None
    periods = 0
    while replica.proc is not None:  # at most three probe periods, each a 404 from the live server
        if "liveness" not in replica.probing:  # the last one answered: on to the next period
            assert periods < 3, "three failed liveness probes must stop it"
            clock.advance(1.0)
            periods += 1
        supervisor.tick()
        time.sleep(0.01)  # the probe is a real request, answered in its own thread
    _until(supervisor, lambda: not _alive(first), "the replica that failed liveness to be stopped")
    assert replica.restarts == 1 and replica.last_exit == -1
    assert replica.message == "Liveness probe failed: HTTP probe failed with statuscode: 404: " + (
        '{"error":"Could not find any versions of model nope"}'
    )
    assert "[supervisor] exited with -1; restart 1 in 10.0 s" in replica.log_path.read_text()
    clock.advance(9.9)
    supervisor.tick()
    assert replica.proc is None, "restarted before its 10 s back-off"
    clock.advance(0.1)
    supervisor.tick()
    assert replica.pid is not None and replica.pid != first
    _until(supervisor, lambda: _serving(replica), "the restarted replica to serve")


def _kill_and_restart(supervisor: Supervisor, clock: FakeClock, replica: Replica) -> float:
    """SIGKILL the replica, then return the back-off the supervisor chose for it."""
    assert replica.pid is not None
    os.killpg(replica.pid, signal.SIGKILL)
    _until(supervisor, lambda: replica.proc is None, "the supervisor to see the kill")
    delay = replica.next_start_at - clock.monotonic()
    clock.advance(delay)
    supervisor.tick()
    _until(supervisor, lambda: _serving(replica), "the restarted replica to serve")
    return delay


def test_the_backoff_is_back_to_10_s_once_a_replica_has_been_up_10_minutes(
    supervisor: Supervisor, clock: FakeClock, model_args: list[str], tmp_path: Path
) -> None:
    replica = supervisor.add(Replica("half-0", model_args, tmp_path / "replicas"))
    _until(supervisor, lambda: _serving(replica), "the replica to serve")
    assert _kill_and_restart(supervisor, clock, replica) == 10.0
    clock.advance(599.0)  # up 9 min 59 s: the back-off still remembers the crash
    supervisor.tick()
    assert _kill_and_restart(supervisor, clock, replica) == 20.0
    clock.advance(600.0)  # up 10 min: forgiven
    supervisor.tick()
    assert _kill_and_restart(supervisor, clock, replica) == 10.0
    assert (
        replica.restarts == 3
    )  # the back-off forgets; the restart count (Kubernetes' restartCount) does not


def test_a_replica_over_its_memory_limit_fails_with_its_reason_and_is_restarted(
    supervisor: Supervisor, clock: FakeClock, model_args: list[str], tmp_path: Path
) -> None:
    # 64 MiB of address space: Python starts, the server's libraries cannot be mapped.
    replica = supervisor.add(Replica("half-0", model_args, tmp_path / "replicas", memory_limit="64Mi"))
    _until(supervisor, lambda: replica.proc is None, "the replica to fail")
    assert replica.last_exit == 1 and replica.restarts == 1
    assert replica.message.startswith("exited with 1: ")
    assert says_out_of_memory(replica.message), replica.message
    clock.advance(10.0)
    supervisor.tick()
    _until(supervisor, lambda: replica.proc is None and replica.restarts == 2, "the restart to fail too")
    assert replica.next_start_at - clock.monotonic() == 20.0


def test_a_replica_within_its_memory_limit_serves(
    supervisor: Supervisor, model_args: list[str], tmp_path: Path
) -> None:
    replica = supervisor.add(Replica("half-0", model_args, tmp_path / "replicas", memory_limit="4Gi"))
    _until(supervisor, lambda: _serving(replica), "the replica to serve")
    answer = requests.post(
        f"http://127.0.0.1:{replica.port}/v1/models/half:predict", json={"instances": [2.0]}
    )
    assert answer.json() == {"predictions": [[3.0]]}
