"""The Service controller on a fake clock with fake load balancers, against the real store: a
Service's status lists its endpoints from creation on (`[]` when none, after a failed start, and
while its load balancer's API fails), one Service's failure leaves the others synced, a dead load
balancer is replaced on the same port, retiring Pods leave the rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelport.controlplane.api import Api
from modelport.controlplane.meta import Recorder
from modelport.controlplane.services import RETRY_SECONDS, ServiceController
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.ports import ephemeral_range
from modelport.errors import Code, ModelportError
from modelport.testing import FakeBalancers, FakeClock, FakeLoadBalancer

Obj = dict[str, Any]


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.store = ObjectStore(tmp_path / "state.db")
        self.events = Recorder(self.store, self.clock, "test")
        self.api = Api(self.store, self.events, lambda: {}, lambda keep: None)
        self.balancers = FakeBalancers()
        self.services = ServiceController(
            self.store, self.clock, self.events, tmp_path / "services", balancers=self.balancers
        )

    def service(self, name: str = "web", app: str = "web", **spec: Any) -> Obj:
        body = {
            "apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 0}], **spec},
        }  # fmt: skip
        return self.api.create("Service", "default", body)

    def pod(self, name: str, port: int, ready: bool = True, app: str = "web", **status: Any) -> None:
        self.store.create({
            "apiVersion": "modelport/v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"model": {"name": "m", "basePath": "/models"}},
            "status": {"ready": ready, "port": port, **status},
        })  # fmt: skip

    def set_pod(self, name: str, **status: Any) -> None:
        pod = self.store.get("Pod", "default", name)
        assert pod is not None
        self.store.update_status({**pod, "status": {**pod["status"], **status}})

    def retire(self, name: str) -> None:
        pod = self.store.get("Pod", "default", name)
        assert pod is not None
        meta = {**pod["metadata"], "deletionTimestamp": "2026-12-03T00:00:00Z"}
        self.store.update({**pod, "metadata": meta})

    def status(self, name: str = "web") -> Obj:
        found = self.store.get("Service", "default", name)
        assert found is not None
        status: Obj = found["status"]
        return status

    def endpoints(self, name: str = "web") -> list[Obj]:
        endpoints: list[Obj] = self.status(name)["endpoints"]
        return endpoints

    def condition(self, name: str = "web") -> tuple[str, str]:
        (condition,) = self.status(name)["conditions"]
        assert condition["type"] == "LoadBalancerReady"
        return condition["status"], condition["reason"]

    def reasons(self) -> list[str]:
        return [event["reason"] for event in self.store.list_kind("Event")[0]]

    def balancer(self, name: str = "web") -> FakeLoadBalancer:
        return self.balancers.live(f"default.{name}")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_new_service_lists_no_endpoints_from_creation_on(world: World) -> None:
    created = world.service()
    assert created["status"] == {"endpoints": []}  # before any controller ran
    port = created["spec"]["ports"][0]["port"]
    assert port not in ephemeral_range()  # a replica binding port 0 cannot take it
    world.services.sync_all()
    assert world.endpoints() == []
    assert world.condition() == ("True", "Listening")
    assert world.balancer().port == port and world.status()["haproxyPid"] == world.balancer().pid
    assert world.reasons() == ["LoadBalancerStarted"]


def test_the_endpoints_are_the_ready_selected_pods_and_retiring_ones_leave_first(world: World) -> None:
    world.service()
    world.pod("web-a", 41001)
    world.pod("web-b", 41003, ready=False)
    world.pod("other-c", 41005, app="other")
    world.services.sync_all()
    assert world.endpoints() == [{"pod": "web-a", "port": 41001}]
    world.set_pod("web-b", ready=True)
    world.services.sync_all()
    assert world.endpoints() == [{"pod": "web-a", "port": 41001}, {"pod": "web-b", "port": 41003}]
    world.retire("web-a")  # still running (the kubelet drains it later), but out of the rotation now
    world.services.sync_all()
    assert world.endpoints() == [{"pod": "web-b", "port": 41003}]
    assert world.balancer().history == [{"web-a": 41001}, {"web-a": 41001, "web-b": 41003}, {"web-b": 41003}]


def test_a_load_balancer_that_fails_to_start_leaves_empty_endpoints_and_is_retried(world: World) -> None:
    world.service()
    world.pod("web-a", 41001)
    world.balancers.refuse["default.web"] = ModelportError(Code.INTERNAL, "HAProxy refused its config")
    world.services.sync_all()
    assert world.endpoints() == []
    assert world.condition() == ("False", "FailedToStart")
    assert world.reasons() == ["FailedToStartLoadBalancer"]
    del world.balancers.refuse["default.web"]
    world.clock.advance(RETRY_SECONDS - 0.01)
    world.services.sync_all()
    assert world.balancers.started == [] and world.endpoints() == []  # waits out the retry delay
    world.clock.advance(0.01)
    world.services.sync_all()
    assert world.endpoints() == [{"pod": "web-a", "port": 41001}]
    assert world.condition() == ("True", "Listening")


@pytest.mark.parametrize(
    "error",
    [OSError("[Errno 111] Connection refused"), TimeoutError("timed out")],
    ids=["OSError", "Timeout"],
)
def test_one_services_failure_leaves_the_others_synced(world: World, error: Exception) -> None:
    world.service("web")
    world.service("api", app="api")
    world.pod("api-a", 41001, app="api")
    world.balancers.refuse["default.web"] = error  # start fails with what a socket raises
    world.services.sync_all()
    assert world.endpoints("web") == [] and world.condition("web") == ("False", "FailedToStart")
    assert world.endpoints("api") == [{"pod": "api-a", "port": 41001}]
    del world.balancers.refuse["default.web"]
    world.clock.advance(RETRY_SECONDS)
    world.services.sync_all()
    world.pod("web-a", 41003)
    world.pod("api-b", 41005, app="api")
    world.balancer("web").fail_with = error  # its runtime API stops answering
    world.services.sync_all()
    assert world.endpoints("web") == []  # what is in its rotation: still nothing
    assert "FailedToUpdateEndpoints" in world.reasons()
    assert world.endpoints("api") == [{"pod": "api-a", "port": 41001}, {"pod": "api-b", "port": 41005}]


def test_an_unexpected_error_in_one_service_does_not_stop_the_pass(world: World) -> None:
    world.service("web")
    world.service("api", app="api")
    world.services.sync_all()
    world.pod("web-a", 41001)
    world.pod("api-a", 41003, app="api")
    world.balancer("api").fail_with = RuntimeError("a bug")  # not one the controller expects
    world.services.sync_all()
    assert world.endpoints("web") == [{"pod": "web-a", "port": 41001}]
    assert world.endpoints("api") == []


def test_a_dead_load_balancer_is_replaced_on_the_same_port(world: World) -> None:
    world.service()
    world.pod("web-a", 41001)
    world.services.sync_all()
    first = world.balancer()
    first.running = False  # killed, crashed
    world.services.sync_all()
    second = world.balancer()
    assert second is not first and second.port == first.port
    assert second.endpoints == {"web-a": 41001} and world.endpoints() == [{"pod": "web-a", "port": 41001}]
    assert world.status()["haproxyPid"] == second.pid
    assert world.reasons().count("LoadBalancerStarted") == 2 and "LoadBalancerExited" in world.reasons()


def test_a_changed_configuration_restarts_the_load_balancer_and_a_deleted_service_stops_it(
    world: World,
) -> None:
    created = world.service()
    world.services.sync_all()
    first = world.balancer()
    spec = {**created["spec"], "loadBalancing": "leastConnection"}
    world.api.replace("Service", "default", "web", {**created, "spec": spec})
    world.services.sync_all()
    assert not first.running and world.balancer().balance == "leastConnection"
    world.store.delete("Service", "default", "web")
    world.services.sync_all()
    assert [b for b in world.balancers.started if b.running] == []


def test_a_second_pass_with_nothing_changed_writes_nothing(world: World) -> None:
    world.service()
    world.pod("web-a", 41001)
    world.services.sync_all()
    version = world.store.resource_version()
    world.services.sync_all()
    assert world.store.resource_version() == version


def test_an_exposed_service_listens_everywhere_and_takes_only_keyed_replicas_and_gateways(
    world: World,
) -> None:
    world.service(type="NodePort")
    world.pod("web-open", 41001)
    world.pod("web-keyed", 41003, apiKeys=True)
    world.store.create({
        "apiVersion": "modelport/v1", "kind": "Pod",
        "metadata": {"name": "web-page", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"gateway": {"service": "mnist"}}, "status": {"ready": True, "port": 41005},
    })  # fmt: skip
    world.services.sync_all()
    assert world.balancer().address == "0.0.0.0"
    assert [e["pod"] for e in world.endpoints()] == ["web-keyed", "web-page"]
    assert world.status()["conditions"][0]["message"].startswith("0.0.0.0:")
