"""The mirror controller's decision, pure: during setMirror a Rollout's stable replicas copy to its
ready canary replicas, and nothing else copies anything; and the Rollout controller's setMirror
step, which waits for the canary's replicas before it says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controlplane.test_rollout_controller import World, is_canary
from modelport.controlplane.mirrors import MirrorController, compute_mirrors
from modelport.dataplane.supervisor import mirror_path
from modelport.server.mirror import MirrorRule, read_rules

Obj = dict[str, Any]


def _pod(name: str, hash_: str, ready: bool = True, port: int = 0, app: str = "web") -> Obj:
    labels = {"app": app, "pod-template-hash": hash_}
    return {"metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"model": {"name": "m"}}, "status": {"ready": ready, "port": port}}  # fmt: skip


def _rollout(status: Obj) -> Obj:
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}}, "status": status}  # fmt: skip


PODS = [_pod("s1", "s", port=1), _pod("s2", "s", port=2), _pod("c1", "c", port=3),
        _pod("c2", "c", ready=False, port=4), _pod("x1", "s", port=5, app="other")]  # fmt: skip


def test_stable_replicas_copy_to_ready_canary_replicas_only_while_mirroring() -> None:
    mirroring = {"stableHash": "s", "canaryHash": "c", "mirrorPercent": 50}
    rules = compute_mirrors([_rollout(mirroring)], PODS)
    copy = (MirrorRule("m", 50, ("http://127.0.0.1:3",)),)
    assert rules == {
        "default.s1": copy,
        "default.s2": copy,
        "default.c1": (),
        "default.c2": (),
        "default.x1": (),
    }
    for status in ({**mirroring, "mirrorPercent": 0}, {**mirroring, "abort": True},
                   {**mirroring, "canaryHash": "s"}):  # fmt: skip
        assert not any(compute_mirrors([_rollout(status)], PODS).values())
    unready = [p for p in PODS if p["metadata"]["name"] != "c1"]
    assert not any(compute_mirrors([_rollout(mirroring)], unready).values())


def test_the_set_mirror_step_waits_for_the_canary_then_the_files_say_so(tmp_path: Path) -> None:
    world = World(tmp_path)
    steps = {
        "canary": {
            "steps": [{"setMirror": {"percent": 50}}, {"analysis": {"templates": [{"templateName": "t"}]}}]
        }
    }
    world.apply("/v1", steps)
    for _ in range(3):
        world.sync()
    world.apply("/v2", steps)
    world.sync(lambda pod: not is_canary(world)(pod))  # the canary's replicas are not ready yet
    assert "mirrorPercent" not in world.status() and world.sizes() == {"stable": 4, "canary": 2}
    world.sync()
    st = world.status()
    assert (st["mirrorPercent"], st["canaryWeight"], st["currentStepIndex"]) == (50, 0, 1)
    mirrors = MirrorController(world.store, tmp_path / "pods")
    mirrors.sync_all()
    pods = world.store.list_kind("Pod")[0]
    stable = [p for p in pods if p["metadata"]["labels"]["pod-template-hash"] == st["stableHash"]]
    files = [mirror_path(tmp_path / "pods", f"default.{p['metadata']['name']}") for p in stable]
    assert [read_rules(f)["m"].percent for f in files] == [50] * 4
    world.run_phase("Failed")  # the analysis finds the canary wanting: abort, and the copying stops
    world.sync()
    assert "mirrorPercent" not in world.status()
    mirrors.sync_all()
    assert not any(f.exists() for f in files)
