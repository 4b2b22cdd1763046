"""Every controller of one control plane, in its loop's order, on the fakes (clock, launcher,
prober, load balancers) against the real store: once everything is running, a round that finds
nothing changed writes nothing (no new resourceVersion); a replica that then stops being ready
is still seen at once, in its Pod, its Deployment and its Service, and only its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.controlplane.api import Api
from modelport.controlplane.autoscaler import Autoscaler
from modelport.controlplane.deployments import DeploymentController, ReplicaSetController
from modelport.controlplane.kubelet import Kubelet
from modelport.controlplane.meta import Recorder
from modelport.controlplane.services import ServiceController
from modelport.controlplane.store import ObjectStore
from modelport.testing import FakeBalancers, FakeClock, FakeLauncher, InlineProber

Obj = dict[str, Any]


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.store = ObjectStore(tmp_path / "state.db", self.clock)
        events = Recorder(self.store, self.clock, "test")
        self.api = Api(self.store, events, lambda: {}, lambda keep: None)
        self.unready: set[int] = set()  # the ports whose readiness probe fails
        self.balancers = FakeBalancers()
        self.launcher = FakeLauncher()
        self.controllers = (
            Autoscaler(self.store, self.clock, events, self, 15.0),
            DeploymentController(self.store, self.clock, events),
            ReplicaSetController(self.store, self.clock, events),
            Kubelet(self.store, self.clock, events, tmp_path / "pods", launcher=self.launcher,
                    prober=InlineProber(self.probe)),
            ServiceController(
                self.store, self.clock, events, tmp_path / "services", balancers=self.balancers
            ),
        )  # fmt: skip

    def probe(self, port: int, path: str, timeout: float) -> tuple[bool, str]:
        if path == "/readyz" and port in self.unready:
            return False, "HTTP probe failed with statuscode: 503"
        return True, "HTTP 200"

    # the metrics the HPAs read: every replica at its target (60% of 500m)
    def pod(self, key: str) -> Obj | None:
        return {"cpu": 0.3, "timestamp": self.clock.now(), "window": 15.0}

    def query(self, promql: str) -> float:
        raise AssertionError("not asked")

    def apply(self, app: str, replicas: int) -> None:
        labels = {"app": app}
        resources = {"requests": {"cpu": "500m"}}
        self.api.create("Deployment", "default", {
            "apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": app},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"model": {"name": "m", "basePath": "/m"}, "resources": resources},
            }},
        })  # fmt: skip
        self.api.create("Service", "default", {
            "apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": app},
            "spec": {"selector": labels, "ports": [{"port": 0}]},
        })  # fmt: skip
        self.api.create("HorizontalPodAutoscaler", "default", {
            "apiVersion": "modelport/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": app},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": app},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]},
        })  # fmt: skip

    def round(self, seconds: float = 0.2) -> None:
        self.clock.advance(seconds)
        for controller in self.controllers:
            controller.sync_all()

    def get(self, kind: str, name: str) -> Obj:
        found = self.store.get(kind, "default", name)
        assert found is not None
        return found

    def pods(self, app: str) -> list[Obj]:
        return [p for p in self.store.list_kind("Pod")[0] if p["metadata"]["labels"]["app"] == app]

    def endpoints(self, app: str) -> set[str]:
        return {e["pod"] for e in self.get("Service", app)["status"]["endpoints"]}


def test_a_steady_round_writes_nothing_and_a_change_after_it_is_still_seen(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.apply("a", 3)
    world.apply("ab", 2)  # another app whose label value starts the same: none of a's
    for _ in range(80):  # 16 s: every HPA decides once with the replicas running
        world.round()
    assert world.get("Deployment", "a")["status"]["availableReplicas"] == 3
    assert world.endpoints("a") == {p["metadata"]["name"] for p in world.pods("a")}
    assert world.endpoints("ab") == {p["metadata"]["name"] for p in world.pods("ab")}
    version = world.store.resource_version()
    for _ in range(80):  # every replica probed 16 times, every HPA decides once again
        world.round()
    assert world.store.resource_version() == version
    assert len(world.launcher.started) == 5 and world.get("Deployment", "a")["spec"]["replicas"] == 3
    sick = world.pods("a")[0]
    world.unready.add(sick["status"]["port"])
    world.round(1.0)  # the next readiness probe is due
    world.round()  # the Deployment controller runs before the kubelet: it sees the Pod now
    assert world.get("Pod", sick["metadata"]["name"])["status"]["ready"] is False
    assert world.get("Deployment", "a")["status"]["readyReplicas"] == 2
    assert world.endpoints("a") == {p["metadata"]["name"] for p in world.pods("a")} - {
        sick["metadata"]["name"]
    }
    assert len(world.endpoints("ab")) == 2
