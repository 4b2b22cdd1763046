"""The Deployment and ReplicaSet controllers on a fake clock, with a simulated kubelet (it marks
replicas ready when the test says so): revisions, the rolling-update promises at every step,
minReadySeconds, the progress deadline, history limits, undo, pause and Recreate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import controller_support
from modelport.controlplane.deployments import DeploymentController
from modelport.controlplane.meta import revision
from modelport.errors import ModelportError

Obj = dict[str, Any]


class World(controller_support.World):
    """The store, the Deployment and ReplicaSet controllers, and a kubelet that does what the test
    tells it."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, DeploymentController)

    def apply(self, replicas: int = 4, base: str = "/models/v1", **spec: Any) -> Obj:
        return self.put({
            "apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"model": {"name": "m", "basePath": base}}},
                **spec,
            },
        })  # fmt: skip

    def replica_set_sizes(self) -> dict[int, int]:
        return {revision(rs): rs["spec"]["replicas"] for rs in self.store.list_kind("ReplicaSet")[0]}

    def deployment(self) -> Obj:
        found = self.store.get("Deployment", "default", "web")
        assert found is not None
        return found

    def condition(self, type_: str) -> Obj:
        return next(c for c in self.deployment()["status"]["conditions"] if c["type"] == type_)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_new_deployment_gets_revision_1_with_every_replica(world: World) -> None:
    world.apply(replicas=3)
    world.sync()
    assert world.replica_set_sizes() == {1: 3}
    assert len(world.pods()) == 3
    status = world.deployment()["status"]
    assert status["availableReplicas"] == 3 and status["observedGeneration"] == 1
    assert world.condition("Progressing")["reason"] == "NewReplicaSetAvailable"
    assert world.condition("Available")["status"] == "True"
    assert any(
        m.startswith("Scaled up replica set web-") and m.endswith(" to 3 from 0")
        for m in world.event_messages()
    )


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [(4, "25%", "25%"), (10, 3, 2), (3, 1, 0), (3, 0, 1), (2, "50%", 0), (1, "25%", "25%")],
)
def test_a_rolling_update_keeps_its_promises_at_every_step(
    world: World, replicas: int, surge: int | str, unavailable: int | str
) -> None:
    strategy = {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    world.apply(replicas=replicas, strategy=strategy)
    world.sync()
    world.apply(replicas=replicas, base="/models/v2", strategy=strategy)
    max_surge = {4: 1, 10: 3, 3: 1 if surge == 1 else 0, 2: 1, 1: 1}[replicas]
    max_unavailable = {4: 1, 10: 2, 3: 0 if unavailable == 0 else 1, 2: 0, 1: 0}[replicas]
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    for _ in range(40):
        world.sync()
        pods = world.pods()
        assert len(pods) <= replicas + max_surge
        ready = sum(bool(p["status"].get("ready")) for p in pods)
        assert ready >= replicas - max_unavailable
        if world.replica_set_sizes() == {1: 0, 2: replicas} and len(pods) == replicas:
            break
    else:
        raise AssertionError(f"rollout did not finish: {world.replica_set_sizes()}")
    assert world.condition("Progressing")["reason"] == "NewReplicaSetAvailable"
    assert all(p["spec"]["model"]["basePath"] == "/models/v2" for p in world.pods())


def test_scaling_makes_no_new_revision(world: World) -> None:
    world.apply(replicas=2)
    world.sync()
    world.apply(replicas=5)
    for _ in range(5):
        world.sync()
    assert world.replica_set_sizes() == {1: 5}
    world.apply(replicas=1)
    world.sync()
    assert world.replica_set_sizes() == {1: 1} and len(world.pods()) == 1


def test_replicas_count_as_available_only_after_min_ready_seconds(world: World) -> None:
    world.apply(replicas=2, minReadySeconds=10)
    world.sync()
    assert world.deployment()["status"]["availableReplicas"] == 0
    assert world.deployment()["status"]["readyReplicas"] == 2
    world.clock.advance(9)
    world.sync()
    assert world.deployment()["status"]["availableReplicas"] == 0
    world.clock.advance(1)
    world.sync()
    assert world.deployment()["status"]["availableReplicas"] == 2


def test_a_rollout_that_never_gets_ready_fails_its_deadline_and_the_old_revision_keeps_serving(
    world: World,
) -> None:
    world.apply(replicas=2, progressDeadlineSeconds=30)
    world.sync()
    world.apply(replicas=2, base="/models/missing", progressDeadlineSeconds=30)

    def kubelet(pod: Obj) -> bool:
        return bool(pod["spec"]["model"]["basePath"] != "/models/missing")

    world.sync(kubelet)
    world.clock.advance(29)
    world.sync(kubelet)
    assert world.condition("Progressing")["status"] == "True"
    world.clock.advance(2)
    world.sync(kubelet)
    progressing = world.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert "has timed out progressing" in progressing["message"]
    # maxUnavailable 25% of 2 is 0: both old replicas still serve, one new one is stuck.
    assert world.replica_set_sizes() == {1: 2, 2: 1}
    assert world.condition("Available")["status"] == "True"
    assert any("has timed out progressing" in m for m in world.event_messages())
    # Fixing the template makes progress again.
    world.apply(replicas=2, base="/models/v3", progressDeadlineSeconds=30)
    for _ in range(10):
        world.sync(kubelet)
    assert world.condition("Progressing")["reason"] == "NewReplicaSetAvailable"
    assert world.replica_set_sizes() == {1: 0, 2: 0, 3: 2}


def test_old_revisions_beyond_the_history_limit_are_deleted(world: World) -> None:
    for version in range(1, 6):
        world.apply(replicas=1, base=f"/models/v{version}", revisionHistoryLimit=2)
        for _ in range(6):
            world.sync()
    assert sorted(world.replica_set_sizes()) == [3, 4, 5]


def test_undo_brings_back_the_previous_template_as_a_new_revision(world: World) -> None:
    world.apply(replicas=2)
    world.sync()
    world.apply(replicas=2, base="/models/v2")
    for _ in range(6):
        world.sync()
    answer = world.api.rollback("default", "web", 0)
    assert answer["revision"] == 1 and not answer["skipped"]
    for _ in range(6):
        world.sync()
    # Kubernetes' numbering: revision 1 becomes revision 3.
    assert world.replica_set_sizes() == {2: 0, 3: 2}
    assert all(p["spec"]["model"]["basePath"] == "/models/v1" for p in world.pods())
    assert 'Rolled back deployment "web" to revision 1' in world.event_messages()
    with pytest.raises(ModelportError, match="unable to find specified revision 7"):
        world.api.rollback("default", "web", 7)
    assert world.api.rollback("default", "web", 3)["skipped"]


def test_a_paused_deployment_rolls_out_nothing_until_resumed(world: World) -> None:
    world.apply(replicas=2)
    world.sync()
    world.apply(replicas=2, base="/models/v2", paused=True)
    for _ in range(3):
        world.sync()
    assert world.replica_set_sizes() == {1: 2}
    assert world.condition("Progressing")["reason"] == "DeploymentPaused"
    world.apply(replicas=2, base="/models/v2", paused=False)
    for _ in range(6):
        world.sync()
    assert world.replica_set_sizes() == {1: 0, 2: 2}


def test_recreate_stops_every_old_replica_before_starting_a_new_one(world: World) -> None:
    world.apply(replicas=3, strategy={"type": "Recreate"})
    world.sync()
    world.apply(replicas=3, base="/models/v2", strategy={"type": "Recreate"})
    seen = []
    for _ in range(6):
        world.sync()
        bases = {p["spec"]["model"]["basePath"] for p in world.pods(live_only=False)}
        seen.append(bases)
        assert len(bases) <= 1  # never both at once
    assert seen[-1] == {"/models/v2"} and len(world.pods()) == 3


def test_a_deleted_deployment_takes_its_replica_sets_and_replicas_with_it(world: World) -> None:
    world.apply(replicas=2)
    world.sync()
    world.store.delete("Deployment", "default", "web")
    world.sync()
    world.sync()
    assert world.store.list_kind("ReplicaSet")[0] == [] and world.pods(live_only=False) == []


def test_a_stored_deployment_that_no_longer_parses_is_left_alone_and_the_others_roll_out(
    world: World,
) -> None:
    # As a store written by an older modelport might hold it: a field today's schema does not know.
    stale = {
        "apiVersion": "modelport/v1", "kind": "Deployment",
        "metadata": {"name": "old", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "old"}}, "retired": True,
                 "template": {"metadata": {"labels": {"app": "old"}},
                              "spec": {"model": {"name": "m", "basePath": "/models/old"}}}},
    }  # fmt: skip
    world.store.create(stale)
    world.apply(replicas=2)
    world.sync()
    world.sync()
    assert world.replica_set_sizes() == {1: 2}
    assert {p["metadata"]["labels"]["app"] for p in world.pods()} == {"web"}
