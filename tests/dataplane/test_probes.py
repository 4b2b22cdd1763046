"""Probes run concurrently and never hold up the supervisor (README, "Probes"): a replica whose
probes do not answer (a frozen process) turns unready after one `timeoutSeconds` and is restarted
after `failureThreshold` of them, while the other replicas are probed every period as before.
On a fake clock, with a fake launcher and a prober whose answers for one port never come."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path

from modelport.dataplane.supervisor import ProbeResult, ProbeSpec, Replica, Supervisor
from modelport.testing import FakeClock, FakeLauncher
from support import PATIENCE


class OnePortFrozen:
    """Every probe answers 200 at once, except those of port `frozen`: never answered."""

    def __init__(self) -> None:
        self.frozen: int | None = None
        self.started: list[tuple[int, str]] = []

    def start(self, port: int, path: str, timeout: float) -> Future[ProbeResult]:
        self.started.append((port, path))
        future: Future[ProbeResult] = Future()
        if port != self.frozen:
            future.set_result((True, "HTTP 200"))
        return future

    def count(self, port: int) -> int:
        return sum(1 for p, _ in self.started if p == port)


def test_a_frozen_replica_turns_unready_then_is_restarted_and_the_others_are_probed_on_time(
    tmp_path: Path,
) -> None:
    clock, launcher, prober = FakeClock(), FakeLauncher(), OnePortFrozen()
    supervisor = Supervisor(clock, prober=prober, launcher=launcher)
    probes = {"readiness": ProbeSpec("/readyz"), "liveness": ProbeSpec("/healthz")}  # 1 s, 1 s, 3
    frozen = supervisor.add(Replica("a", [], tmp_path, **probes))
    other = supervisor.add(Replica("b", [], tmp_path, **probes))
    supervisor.tick()
    assert frozen.ready and other.ready
    first_pid, port = frozen.pid, frozen.port
    assert port is not None and other.port is not None
    prober.frozen = port
    before = prober.count(other.port)
    history = []
    for _ in range(4):
        clock.advance(1.0)
        started = time.monotonic()
        supervisor.tick()
        assert time.monotonic() - started < 0.5  # never waits for the frozen replica's answers
        history.append((frozen.ready, frozen.restarts))
    # second 1: probes under way, no answer yet; second 2: their 1 s is up (unready);
    # seconds 3 and 4: the second and third liveness timeouts (restarted)
    assert history == [(True, 0), (False, 0), (False, 0), (False, 1)]
    assert frozen.pid is None and _stopped(launcher)
    assert frozen.message == (
        f"Liveness probe failed: Get http://127.0.0.1:{port}/healthz: context deadline exceeded "
        "(no answer within 1 s)"
    )
    assert other.ready and prober.count(other.port) - before == 4 * 2  # both probes, every second
    clock.advance(10.0)  # its back-off
    supervisor.tick()  # started again
    supervisor.tick()  # its port read, probed
    assert frozen.pid is not None and frozen.pid != first_pid and frozen.ready
    supervisor.stop_all(grace_seconds=1)


def _stopped(launcher: FakeLauncher) -> bool:
    """The frozen replica's process is stopped off the supervisor's thread (SIGTERM, SIGKILL
    after a grace period: a frozen process would hold the supervisor that long): wait for it."""
    deadline = time.monotonic() + 10 * PATIENCE
    while launcher.started[0].returncode is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
