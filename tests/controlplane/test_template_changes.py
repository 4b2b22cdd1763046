"""`apply` of an edited Deployment does what `set model` does for any field of the pod template
(README: "for any field of the template (probes, args, memory limit)"): a new revision, rolled
out until every replica runs the new template; a change outside the template makes none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelport.controlplane.api import Api
from modelport.controlplane.deployments import DeploymentController, ReplicaSetController
from modelport.controlplane.meta import Recorder, iso, revision, terminating
from modelport.controlplane.store import ObjectStore
from modelport.testing.clock import FakeClock

Obj = dict[str, Any]
MODEL = {"name": "m", "basePath": "/models/v1"}


class _Plane:
    """The API and both controllers on one store and a fake clock; every replica gets ready."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.store = ObjectStore(tmp_path / "state.db")
        events = Recorder(self.store, self.clock, "test")
        self.controllers = [DeploymentController(self.store, self.clock, events),
                            ReplicaSetController(self.store, self.clock, events)]  # fmt: skip
        self.api = Api(self.store, events, lambda: {}, lambda keep: None)

    def apply(self, template_spec: Obj, replicas: int = 2) -> None:
        body = {
            "apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": template_spec}},
        }  # fmt: skip
        if self.store.get("Deployment", "default", "web") is None:
            self.api.create("Deployment", "default", body)
        else:
            self.api.replace("Deployment", "default", "web", body)

    def settle(self) -> None:
        for _ in range(20):  # a 2-replica rolling update needs a handful of rounds
            for controller in self.controllers:
                controller.sync_all()  # type: ignore[attr-defined]
            for pod in self.store.list_kind("Pod")[0]:
                meta = pod["metadata"]
                if terminating(pod):
                    self.store.delete("Pod", meta["namespace"], meta["name"])
                elif not pod.get("status", {}).get("ready"):
                    status = {"ready": True, "port": 1, "readySince": iso(self.clock.now())}
                    self.store.update({**pod, "status": status}, status_only=True)

    def revisions(self) -> list[int]:
        return sorted(revision(rs) for rs in self.store.list_kind("ReplicaSet")[0])

    def pod_specs(self) -> list[Obj]:
        return [p["spec"] for p in self.store.list_kind("Pod")[0] if not terminating(p)]


CHANGES = {
    "model": {"model": {"name": "m", "basePath": "/models/v2"}},
    "args": {"model": MODEL, "args": ["--rest_api_timeout_in_ms=5000"]},
    "readinessProbe": {"model": MODEL, "readinessProbe": {"path": "/v1/models/m", "periodSeconds": 2}},
    "livenessProbe": {"model": MODEL, "livenessProbe": {"path": "/healthz", "failureThreshold": 5}},
    "memory limit": {"model": MODEL, "resources": {"limits": {"memory": "512Mi"}}},
}


@pytest.mark.parametrize("field", list(CHANGES))
def test_applying_an_edited_template_rolls_out_a_new_revision(field: str, tmp_path: Path) -> None:
    plane = _Plane(tmp_path)
    plane.apply({"model": MODEL})
    plane.settle()
    assert plane.revisions() == [1]
    plane.apply(CHANGES[field])
    plane.settle()
    assert plane.revisions() == [1, 2]
    specs = plane.pod_specs()
    assert len(specs) == 2
    for key, value in CHANGES[field].items():
        assert all(_subset(value, spec[key]) for spec in specs), (key, specs)


def test_a_change_outside_the_template_makes_no_revision(tmp_path: Path) -> None:
    plane = _Plane(tmp_path)
    plane.apply({"model": MODEL})
    plane.settle()
    plane.apply({"model": MODEL}, replicas=3)
    plane.settle()
    assert plane.revisions() == [1] and len(plane.pod_specs()) == 3


def _subset(want: Any, got: Any) -> bool:
    """Every key given is there with its value (the spec also carries defaults filled in)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and _subset(v, got[k]) for k, v in want.items())
    return bool(want == got)
