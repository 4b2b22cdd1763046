"""The world the Deployment and Rollout controller tests run in: a store on a fake clock, its event
recorder and API, the ReplicaSet controller under the controller that owns the ReplicaSets, and a
simulated kubelet (a live replica is ready when the test says so; a retired one is gone)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from modelport.controlplane.api import Api
from modelport.controlplane.deployments import ReplicaSetController
from modelport.controlplane.meta import Recorder, iso, terminating
from modelport.controlplane.store import ObjectStore
from modelport.testing.clock import FakeClock

Obj = dict[str, Any]


class Owner(Protocol):
    def sync_all(self) -> None: ...


class World:
    """`owner` makes the controller whose ReplicaSets the world runs (Deployment's or Rollout's)
    from the store, the clock and the recorder; the test may replace `self.owner` (a restarted
    control plane's new controller on the same store)."""

    def __init__(self, tmp_path: Path, owner: Callable[[ObjectStore, FakeClock, Recorder], Owner]) -> None:
        self.clock = FakeClock()
        self.store = ObjectStore(tmp_path / "state.db", self.clock)
        self.events = Recorder(self.store, self.clock, "test")
        self.owner = owner(self.store, self.clock, self.events)
        self.replica_sets = ReplicaSetController(self.store, self.clock, self.events)
        self.api = Api(self.store, self.events, lambda: {}, lambda keep: None)

    def put(self, body: Obj) -> Obj:
        """Created, or replaced when it is there (`modelport apply`)."""
        kind, name = body["kind"], body["metadata"]["name"]
        if self.store.get(kind, "default", name) is None:
            return self.api.create(kind, "default", body)
        return self.api.replace(kind, "default", name, body)

    def sync(self, ready: Callable[[Obj], bool] = lambda pod: True) -> None:
        """One round: the controllers, then the kubelet (each live pod is ready if `ready(pod)`,
        retired pods are gone), then the owner again."""
        self.owner.sync_all()
        self.replica_sets.sync_all()
        for pod in self.pods(live_only=False):
            meta = pod["metadata"]
            if terminating(pod):
                self.store.delete("Pod", meta["namespace"], meta["name"])
                continue
            status: Obj = {"ready": ready(pod), "port": 1}
            if status["ready"]:
                status["readySince"] = pod.get("status", {}).get("readySince") or iso(self.clock.now())
            self.store.update({**pod, "status": status}, status_only=True)
        self.owner.sync_all()

    def pods(self, live_only: bool = True) -> list[Obj]:
        pods = self.store.list_kind("Pod")[0]
        return [p for p in pods if not (live_only and terminating(p))]

    def event_messages(self) -> list[str]:
        return [e["message"] for e in self.store.list_kind("Event")[0]]
