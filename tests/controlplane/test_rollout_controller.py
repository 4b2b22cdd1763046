"""The Rollout controller on a fake clock, with a simulated kubelet (replicas ready when the test
says so) and the analysis verdicts set by the test: stable is never scaled down before the canary
is ready and no weight moves before it is; an abort gives the weight back at once and scales the
canary down after abortScaleDownDelaySeconds; a new controller on the same store carries on; a
blue-green rollout whose post-promotion analysis fails switches back to the previous revision."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import controller_support
from modelport.controlplane.meta import HASH_LABEL
from modelport.controlplane.rollouts import RolloutController
from modelport.controlplane.services import header_routes

Obj = dict[str, Any]


class World(controller_support.World):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, RolloutController)

    def apply(self, base: str, strategy: Obj) -> None:
        if self.store.get("AnalysisTemplate", "default", "t") is None:
            metric = {
                "name": "m",
                "successCondition": "result < 1",
                "provider": {"modelport": {"metric": "errorRate"}},
            }
            template = {"apiVersion": "modelport/v1", "kind": "AnalysisTemplate", "metadata": {"name": "t"},
                        "spec": {"metrics": [metric]}}  # fmt: skip
            self.put(template)
        self.put({
            "apiVersion": "modelport/v1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"model": {"name": "m", "basePath": base}}},
                     "strategy": strategy},
        })  # fmt: skip

    def status(self) -> Obj:
        found = self.store.get("Rollout", "default", "web")
        assert found is not None
        return dict(found["status"])

    def sizes(self) -> dict[str, int]:
        """Replicas wanted per revision: 'stable', 'canary', or the hash of another."""
        st = self.status()
        names = {st.get("canaryHash"): "canary", st.get("stableHash"): "stable"}  # the same when steady
        return {names.get(rs["metadata"]["labels"][HASH_LABEL], rs["metadata"]["labels"][HASH_LABEL]):
                rs["spec"]["replicas"] for rs in self.store.list_kind("ReplicaSet")[0]}  # fmt: skip

    def run_phase(self, phase: str) -> None:
        """What the analysis controller would conclude, for every run still running."""
        for run in self.store.list_kind("AnalysisRun")[0]:
            if run["status"].get("phase") == "Running":
                self.store.update_status(
                    {**run, "status": {**run["status"], "phase": phase, "message": "m says so"}}
                )


def is_canary(world: World) -> Callable[[Obj], bool]:
    return lambda pod: pod["metadata"]["labels"][HASH_LABEL] == world.status().get("canaryHash")


CANARY = {"canary": {"steps": [{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "t"}]}}],
                     "abortScaleDownDelaySeconds": 10}}  # fmt: skip


def test_no_weight_before_the_canary_is_ready_and_stable_keeps_every_replica(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.apply("/v1", CANARY)
    for _ in range(3):
        world.sync()
    assert world.status()["phase"] == "Healthy" and world.sizes() == {"stable": 4}
    world.apply("/v2", CANARY)
    for _ in range(5):  # the canary's replica never gets ready
        world.sync(lambda pod: not is_canary(world)(pod))
        assert world.status()["canaryWeight"] == 0 and world.sizes() == {"stable": 4, "canary": 1}
    world.sync()  # ready: the weight moves, and the analysis starts
    st = world.status()
    assert st["canaryWeight"] == 25 and st["currentStepIndex"] == 1 and st["analysis"]["phase"] == "Running"
    # A new controller on the same store (a restarted control plane) carries on from there.
    world.owner = RolloutController(world.store, world.clock, world.events)
    world.sync()
    assert world.status()["canaryWeight"] == 25 and world.status()["currentStepIndex"] == 1
    world.run_phase("Failed")
    world.sync()
    st = world.status()
    assert (st["phase"], st["canaryWeight"]) == ("Degraded", 0) and "m says so" in st["message"]
    assert world.sizes() == {"stable": 4, "canary": 1}  # kept abortScaleDownDelaySeconds
    world.clock.advance(11)
    world.sync()
    assert world.sizes() == {"stable": 4, "canary": 0}


def test_a_failed_post_promotion_analysis_switches_blue_green_back(tmp_path: Path) -> None:
    post = {"templates": [{"templateName": "t"}]}
    strategy = {"blueGreen": {"activeService": "web", "previewService": "web-preview",
                              "scaleDownDelaySeconds": 30, "postPromotionAnalysis": post}}  # fmt: skip
    world = World(tmp_path)
    world.apply("/v1", strategy)
    for _ in range(3):
        world.sync()
    first = world.status()["stableHash"]
    world.apply("/v2", strategy)
    for _ in range(3):
        world.sync()
    st = world.status()
    assert st["stableHash"] != first and st["previousHash"] == first  # promoted: active switched
    assert sorted(world.sizes().values()) == [4, 4]  # the previous one kept, full size
    run = world.store.list_kind("AnalysisRun")[0][0]
    assert run["spec"]["args"]["stableHash"] == first  # judged against what it replaced
    world.run_phase("Failed")
    world.sync()
    st = world.status()
    assert st["stableHash"] == first and st["phase"] == "Degraded"  # switched back at once


def test_header_routes_are_set_and_removed_by_name(tmp_path: Path) -> None:
    world = World(tmp_path)
    match = [{"headerName": "x-tester", "headerValue": {"exact": "1"}}]
    steps = [{"setHeaderRoute": {"name": "testers", "match": match}}, {"pause": {"duration": 5}},
             {"setHeaderRoute": {"name": "testers"}}, {"pause": {}}]  # fmt: skip
    world.apply("/v1", {"canary": {"steps": steps}})
    for _ in range(3):
        world.sync()
    world.apply("/v2", {"canary": {"steps": steps}})
    world.sync(lambda pod: not is_canary(world)(pod))  # no route before a canary replica is ready
    assert "headerRoutes" not in world.status() and world.sizes() == {"stable": 4, "canary": 1}
    world.sync()
    st = world.status()
    assert (st["headerRoutes"], st["canaryWeight"], st["phase"]) == ({"testers": match}, 0, "Paused")
    pods = world.store.list_kind("Pod")[0]
    routed, patterns = header_routes({p["metadata"]["name"]: 1 for p in pods}, pods, st)
    assert len(routed) == 1 and len(patterns) == 1 and "x\\x{2d}tester" in patterns[0]
    world.clock.advance(6)
    world.sync()
    st = world.status()
    assert "headerRoutes" not in st and (st["currentStepIndex"], st["phase"]) == (3, "Paused")
    assert header_routes({p["metadata"]["name"]: 1 for p in pods}, pods, st) == ({}, [])


def test_with_max_surge_the_promotion_rolls_stable_down_as_the_canary_comes_up(tmp_path: Path) -> None:
    """4 replicas, maxSurge 1, maxUnavailable 0: never more than 5 nor fewer than 4 available while
    the canary takes over; without them the canary goes to 4 beside stable's 4, then switches."""
    seen: dict[bool, list[dict[str, int]]] = {}
    for rolling in (True, False):
        world = World(tmp_path / str(rolling))
        limits = {"maxSurge": 1, "maxUnavailable": 0} if rolling else {}
        strategy = {"canary": {"steps": [{"setWeight": 50}], **limits}}
        world.apply("/v1", strategy)
        for _ in range(3):
            world.sync()
        world.apply("/v2", strategy)
        seen[rolling] = []
        for _ in range(6):
            world.sync()
            seen[rolling].append({k: v for k, v in world.sizes().items() if k in ("stable", "canary")})
        assert world.status()["phase"] == "Healthy" and "rolling" not in world.status()
    assert seen[True][:2] == [{"canary": 2, "stable": 2}, {"canary": 3, "stable": 1}]
    assert all(4 <= sum(sizes.values()) <= 5 for sizes in seen[True])
    assert {"canary": 4, "stable": 4} in seen[False]


def test_an_abort_mid_rolling_promotion_gives_stable_every_replica_back(tmp_path: Path) -> None:
    world = World(tmp_path)
    strategy = {"canary": {"steps": [{"setWeight": 50}], "maxSurge": 1, "maxUnavailable": 0,
                           "analysis": {"templates": [{"templateName": "t"}]}}}  # fmt: skip
    world.apply("/v1", strategy)
    for _ in range(3):
        world.sync()
    world.apply("/v2", strategy)
    world.sync()
    assert world.sizes() == {"canary": 2, "stable": 2}  # rolling: stable scaled down already
    world.run_phase("Failed")  # the background analysis fails mid-promotion
    world.sync()
    world.sync()
    st = world.status()
    assert st["phase"] == "Degraded" and "rolling" not in st
    assert world.sizes()["stable"] == 4
