"""The kubelet on a fake clock with a fake launcher and fake probes, against the real store: a Pod
becomes a replica whose status follows it (started, not ready and why, ready), a crash or a failed
liveness probe restarts it after CrashLoopBackOff's back-off, a retiring or deleted Pod's replica
is stopped (SIGTERM, then SIGKILL after the grace period), one bad Pod leaves the others alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from modelport.controlplane.kubelet import Kubelet
from modelport.controlplane.meta import Recorder, iso
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.supervisor import BackOffPolicy
from modelport.testing import FakeClock, FakeLauncher, FakeProcess, InlineProber
from support import PATIENCE

Obj = dict[str, Any]
NOT_READY = (False, "HTTP probe failed with statuscode: 503: version 1 of m is LOADING")


class Probes:
    """Every probe answers what `answers[path]` says (200 unless told); each call is recorded."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[bool, str]] = {}
        self.calls: list[tuple[int, str]] = []

    def __call__(self, port: int, path: str, timeout: float) -> tuple[bool, str]:
        self.calls.append((port, path))
        return self.answers.get(path, (True, "HTTP 200"))


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.store = ObjectStore(tmp_path / "state.db")
        self.events = Recorder(self.store, self.clock, "test")
        self.launcher = FakeLauncher()
        self.probes = Probes()
        self.kubelet = Kubelet(
            self.store, self.clock, self.events, tmp_path / "pods", BackOffPolicy(initial_seconds=10.0),
            grace_seconds=10.0, launcher=self.launcher, prober=InlineProber(self.probes),
        )  # fmt: skip

    def pod(self, name: str = "web-0", **spec: Any) -> None:
        self.store.create({
            "apiVersion": "modelport/v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"model": {"name": "m", "basePath": "/models/m"}, **spec},
            "status": {},
        })  # fmt: skip

    def status(self, name: str = "web-0") -> Obj:
        found = self.store.get("Pod", "default", name)
        assert found is not None
        status: Obj = found["status"]
        return status

    def process(self, index: int = -1) -> FakeProcess:
        return self.launcher.started[index]

    def events_of(self, name: str = "web-0") -> dict[tuple[str, str], int]:
        """(reason, message) -> count (a repeated event is counted, as in Kubernetes)."""
        events = self.store.list_kind("Event")[0]
        return {
            (e["reason"], e["message"]): e["count"] for e in events if e["involvedObject"]["name"] == name
        }

    def reasons(self, name: str = "web-0") -> dict[str, int]:
        counts: dict[str, int] = {}
        for (reason, _), count in self.events_of(name).items():
            counts[reason] = counts.get(reason, 0) + count
        return counts

    def gone(self, name: str = "web-0") -> bool:
        return self.store.get("Pod", "default", name) is None

    def step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.kubelet.sync_all()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def until(check: Any, what: str) -> None:
    """For the kubelet's stop threads (a fake process stops at once; the thread still runs)."""
    deadline = time.monotonic() + 10 * PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_pod_becomes_a_replica_that_reports_why_it_is_not_ready_then_ready(world: World) -> None:
    world.pod(args=["--enable_batching"], resources={"limits": {"memory": "512Mi"}})
    world.probes.answers["/readyz"] = NOT_READY
    world.kubelet.sync_all()
    (process,) = world.launcher.started
    assert process.argv[-5:] == ["--model_name", "m", "--model_base_path", "/models/m", "--enable_batching"]
    assert process.limits.memory_bytes == 512 * 2**20
    status = world.status()
    assert (status["phase"], status["reason"], status["ready"]) == ("Running", "Running", False)
    assert status["pid"] == process.pid and status["port"] == 41002 and status["restartCount"] == 0
    assert status["message"] == f"Readiness probe failed: {NOT_READY[1]}"
    started = iso(world.clock.now())
    assert status["readyTransitionTime"] == started
    world.step(1.0)
    assert world.status()["readyTransitionTime"] == started  # still not ready: no transition
    world.probes.answers["/readyz"] = (True, "HTTP 200")
    world.step(1.0)  # the default period, from spec.objects' Probe
    status = world.status()
    assert status["ready"] is True and "message" not in status
    assert status["readySince"] == status["readyTransitionTime"] == iso(world.clock.now())
    world.probes.answers["/readyz"] = NOT_READY
    world.step(1.0)
    status = world.status()
    assert status["ready"] is False and "readySince" not in status
    assert status["readyTransitionTime"] == iso(world.clock.now())  # ready -> not ready is a transition too
    assert world.events_of() == {
        ("Started", f"Started replica: pid {process.pid}"): 1,
        ("Unhealthy", f"Readiness probe failed: {NOT_READY[1]}"): 2,  # before ready, and after
    }


def test_probes_run_once_a_period_as_the_spec_says(world: World) -> None:
    world.pod(readinessProbe={"periodSeconds": 5}, livenessProbe={"periodSeconds": 5, "path": "/healthz"})
    world.kubelet.sync_all()
    assert world.probes.calls == [(41002, "/readyz"), (41002, "/healthz")]
    world.step(4.99)
    assert len(world.probes.calls) == 2
    world.step(0.01)
    assert len(world.probes.calls) == 4


def test_a_crashed_replica_restarts_after_its_backoff_and_the_status_says_why(world: World) -> None:
    world.pod()
    world.kubelet.sync_all()
    world.process().exit(3)
    world.kubelet.sync_all()
    status = world.status()
    assert (status["phase"], status["reason"], status["ready"]) == ("Pending", "CrashLoopBackOff", False)
    assert status["restartCount"] == 1 and status["lastExitCode"] == 3 and status["pid"] is None
    assert status["message"].startswith("exited with 3: ")
    world.step(9.99)
    assert len(world.launcher.started) == 1  # backing off: 10 s
    world.step(0.01)
    assert len(world.launcher.started) == 2 and world.status()["pid"] == world.process().pid
    world.process().exit(3)
    world.step(0)
    world.step(19.99)
    assert len(world.launcher.started) == 2  # the second delay doubles: 20 s
    world.step(0.01)
    assert len(world.launcher.started) == 3 and world.status()["restartCount"] == 2
    assert world.reasons() == {"Started": 3, "BackOff": 2}


def test_a_replica_failing_liveness_three_times_is_restarted(world: World) -> None:
    world.pod()
    world.kubelet.sync_all()
    world.probes.answers["/healthz"] = (False, "Get http://127.0.0.1:41002/healthz: timed out")
    world.step(1.0)
    world.step(1.0)
    assert world.process().returncode is None  # two failures: the threshold is 3
    world.step(1.0)
    assert world.process().signals == ["SIGTERM"] and world.process().returncode is not None
    status = world.status()
    assert status["reason"] == "CrashLoopBackOff" and status["restartCount"] == 1
    assert status["message"] == "Liveness probe failed: Get http://127.0.0.1:41002/healthz: timed out"
    world.probes.answers.pop("/healthz")
    world.step(10.0)  # restarted
    world.step(0)  # its port read, probed
    assert len(world.launcher.running()) == 1 and world.status()["ready"] is True


def test_a_retiring_pod_is_stopped_then_deleted(world: World) -> None:
    world.pod()
    world.kubelet.sync_all()
    world.process().ignores_sigterm = True  # the grace period runs out: SIGKILL
    pod = world.store.get("Pod", "default", "web-0")
    assert pod is not None
    world.store.update({**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-12-03T00:00:00Z"}})
    world.kubelet.sync_all()
    until(world.gone, "the Pod to be deleted")
    assert world.process().signals == ["SIGTERM", "SIGKILL"]
    assert world.events_of()[("Killing", "Stopping replica")] == 1


def test_a_deleted_pods_replica_is_stopped(world: World) -> None:
    world.pod()
    world.kubelet.sync_all()
    world.store.delete("Pod", "default", "web-0")
    world.kubelet.sync_all()
    until(lambda: world.process().returncode is not None, "the replica to stop")
    assert world.process().signals == ["SIGTERM"] and world.kubelet.processes() == {}


def test_a_replica_that_cannot_be_started_backs_off_like_a_crash(world: World) -> None:
    world.pod()
    world.launcher.fail_with = OSError(11, "Resource temporarily unavailable")
    world.kubelet.sync_all()
    status = world.status()
    assert (status["reason"], status["restartCount"]) == ("CrashLoopBackOff", 1)
    assert status["message"] == "failed to start: [Errno 11] Resource temporarily unavailable"
    world.launcher.fail_with = None
    world.step(10.0)
    assert len(world.launcher.running()) == 1 and world.status()["phase"] == "Running"


def test_one_bad_pod_leaves_the_others_alone(world: World) -> None:
    world.pod("web-0", model={"name": "m"})  # no basePath: it cannot be started
    world.pod("web-1")
    world.kubelet.sync_all()
    assert [p.argv[-1] for p in world.launcher.started] == ["/models/m"]
    assert world.status("web-1")["phase"] == "Running" and world.status("web-0") == {}


def test_a_second_round_with_nothing_changed_writes_nothing(world: World) -> None:
    world.pod()
    world.kubelet.sync_all()
    world.step(1.0)
    version = world.store.resource_version()
    world.step(1.0)
    assert world.store.resource_version() == version


def test_a_replica_needs_keys_when_a_nodeport_or_loadbalancer_service_of_its_namespace_selects_it() -> None:
    from modelport.controlplane.kubelet import needs_keys

    pod = {"metadata": {"namespace": "default", "labels": {"app": "web", "track": "stable"}}}

    def service(kind: str, selector: dict[str, str], namespace: str = "default") -> dict[str, object]:
        return {"metadata": {"namespace": namespace}, "spec": {"type": kind, "selector": selector}}

    assert not needs_keys(pod, [])
    assert not needs_keys(pod, [service("ClusterIP", {"app": "web"})])
    assert needs_keys(pod, [service("ClusterIP", {"app": "web"}), service("NodePort", {"app": "web"})])
    assert needs_keys(pod, [service("LoadBalancer", {"track": "stable"})])
    assert not needs_keys(pod, [service("NodePort", {"app": "other"})])
    assert not needs_keys(pod, [service("NodePort", {"app": "web"}, namespace="prod")])
