"""The Deployment and ReplicaSet controllers, as Kubernetes runs them.

A Deployment owns ReplicaSets, one per distinct pod template (named `<deployment>-<template
hash>`, its revision number in the `deployment.kubernetes.io/revision` annotation); a ReplicaSet
owns Pods. Each `sync_all()` reads the whole state and moves it one step towards the spec: the
Deployment controller sets how many replicas each ReplicaSet should have (the rolling-update
arithmetic is in `rollout.py`), the ReplicaSet controller creates or retires Pods to match, the
kubelet runs them. Everything they decide is in the store, so a control plane that restarts
picks up where the last one stopped.

A Pod is retired by setting `metadata.deletionTimestamp`: the Service controller takes it out of
the load balancer first (drained), then the kubelet stops its process and deletes it.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

from modelport.clock import Clock
from modelport.controlplane import rollout
from modelport.controlplane.meta import (
    API_VERSION,
    CHANGE_CAUSE,
    HASH_LABEL,
    REVISION,
    Recorder,
    condition,
    iso,
    owned_by,
    owner_ref,
    parse_iso,
    revision,
    template_hash,
    terminating,
)
from modelport.controlplane.store import ObjectStore
from modelport.errors import ModelportError

Obj = dict[str, Any]


def pod_available(pod: Obj, min_ready_seconds: float, now: float) -> bool:
    """Ready, not on its way out, and ready for at least minReadySeconds (Kubernetes' 'available')."""
    status = pod.get("status", {})
    if terminating(pod) or not status.get("ready") or "readySince" not in status:
        return False
    return now - parse_iso(status["readySince"]) >= min_ready_seconds


class _Controller:
    def __init__(self, store: ObjectStore, clock: Clock, recorder: Recorder) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder

    def _world(self) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """Every Deployment, ReplicaSet and Pod, as stored now."""
        lists = [self._store.list_kind(kind)[0] for kind in ("Deployment", "ReplicaSet", "Pod")]
        return lists[0], lists[1], lists[2]


class DeploymentController(_Controller):
    def sync_all(self) -> None:
        deployments, replica_sets, pods = self._world()
        pods_of: dict[str, list[Obj]] = defaultdict(list)
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences", []):
                pods_of[ref["uid"]].append(pod)
        for deployment in deployments:
            mine = [rs for rs in replica_sets if owned_by(rs, deployment)]
            try:
                self.sync(deployment, mine, pods_of)
            except ModelportError as exc:  # a conflict with a writer: the next round sees the new state
                if exc.code.name not in ("ABORTED", "NOT_FOUND", "ALREADY_EXISTS"):
                    raise

    def sync(self, deployment: Obj, replica_sets: list[Obj], pods_of: dict[str, list[Obj]]) -> None:
        spec = deployment["spec"]
        desired = int(spec["replicas"])
        now = self._clock.now()
        min_ready = float(spec.get("minReadySeconds", 0))

        def live_pods(rs: Obj) -> list[Obj]:
            return [p for p in pods_of.get(rs["metadata"]["uid"], []) if not terminating(p)]

        def available(rs: Obj) -> int:
            return sum(pod_available(p, min_ready, now) for p in live_pods(rs))

        wanted_hash = template_hash(spec["template"])
        new = next(
            (rs for rs in replica_sets if rs["metadata"]["labels"].get(HASH_LABEL) == wanted_hash), None
        )
        top = max((revision(rs) for rs in replica_sets), default=0)
        created = False
        if not spec.get("paused"):
            if new is None:
                new = self._create_replica_set(deployment, wanted_hash, top + 1)
                replica_sets = [*replica_sets, new]
                created = True
            elif revision(new) < top:  # back to an older template (undo): it becomes the newest revision
                new["metadata"]["annotations"][REVISION] = str(top + 1)
                new = self._store.update(_without_rv(new))
        olds = sorted((rs for rs in replica_sets if rs is not new), key=revision)
        if new is not None and not spec.get("paused"):
            if spec["strategy"]["type"] == "Recreate":
                self._recreate(deployment, new, olds, desired, pods_of)
            else:
                self._roll(deployment, new, olds, desired, available)
        self._cleanup(spec, olds, pods_of)
        self._write_status(deployment, new, olds, desired, live_pods, available, created)

    # -- strategies --

    def _roll(self, deployment: Obj, new: Obj, olds: list[Obj], desired: int, available: Any) -> None:
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        surge, unavailable = rollout.fenceposts(rolling["maxSurge"], rolling["maxUnavailable"], desired)
        new_rev = rollout.Revision(new["metadata"]["name"], new["spec"]["replicas"], available(new))
        old_revs = [
            rollout.Revision(o["metadata"]["name"], o["spec"]["replicas"], available(o)) for o in olds
        ]
        target = rollout.next_new_replicas(desired, surge, new_rev, old_revs)
        if target != new_rev.replicas:
            self._scale(deployment, new, target)
            new_rev = rollout.Revision(new_rev.name, target, new_rev.available)
        targets = rollout.next_old_replicas(desired, unavailable, new_rev, old_revs)
        for old in olds:
            if targets[old["metadata"]["name"]] != old["spec"]["replicas"]:
                self._scale(deployment, old, targets[old["metadata"]["name"]])

    def _recreate(
        self, deployment: Obj, new: Obj, olds: list[Obj], desired: int, pods_of: dict[str, list[Obj]]
    ) -> None:
        """Every old replica stopped (and gone) before any new one starts."""
        running_olds = [o for o in olds if o["spec"]["replicas"] > 0]
        for old in running_olds:
            self._scale(deployment, old, 0)
        if running_olds or any(pods_of.get(o["metadata"]["uid"]) for o in olds):
            return
        if new["spec"]["replicas"] != desired:
            self._scale(deployment, new, desired)

    def _scale(self, deployment: Obj, rs: Obj, replicas: int) -> None:
        before = rs["spec"]["replicas"]
        rs["spec"]["replicas"] = replicas
        updated = self._store.update(_without_rv(rs))
        rs["metadata"] = updated["metadata"]
        direction = "up" if replicas > before else "down"
        self._events.event(
            deployment,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {rs['metadata']['name']} to {replicas} from {before}",
        )

    def _create_replica_set(self, deployment: Obj, hash_: str, number: int) -> Obj:
        spec, meta = deployment["spec"], deployment["metadata"]
        template = spec["template"]
        labels = {**(template.get("metadata") or {}).get("labels", {}), HASH_LABEL: hash_}
        annotations = {REVISION: str(number)}
        if CHANGE_CAUSE in meta.get("annotations", {}):
            annotations[CHANGE_CAUSE] = meta["annotations"][CHANGE_CAUSE]
        rs = self._store.create(
            {
                "apiVersion": API_VERSION,
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{meta['name']}-{hash_}",
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [owner_ref(deployment)],
                },
                "spec": {
                    "replicas": 0,
                    "minReadySeconds": spec.get("minReadySeconds", 0),
                    "selector": {"matchLabels": {**spec["selector"]["matchLabels"], HASH_LABEL: hash_}},
                    "template": {
                        **template,
                        "metadata": {**(template.get("metadata") or {}), "labels": labels},
                    },
                },
                "status": {"replicas": 0},
            }
        )
        return rs

    def _cleanup(self, spec: Obj, olds: list[Obj], pods_of: dict[str, list[Obj]]) -> None:
        """Old revisions with no replicas left, beyond revisionHistoryLimit, oldest first."""
        idle = [o for o in olds if o["spec"]["replicas"] == 0 and not pods_of.get(o["metadata"]["uid"])]
        limit = int(spec.get("revisionHistoryLimit", 10))
        for old in idle[: max(0, len(idle) - limit)]:
            self._store.delete("ReplicaSet", old["metadata"]["namespace"], old["metadata"]["name"])

    # -- status --

    def _write_status(
        self,
        deployment: Obj,
        new: Obj | None,
        olds: list[Obj],
        desired: int,
        live_pods: Any,
        available: Any,
        created: bool,
    ) -> None:
        spec, old_status = deployment["spec"], deployment.get("status", {})
        now = iso(self._clock.now())
        all_rs = ([new] if new is not None else []) + olds
        counts = {
            "replicas": sum(len(live_pods(rs)) for rs in all_rs),
            "updatedReplicas": len(live_pods(new)) if new is not None else 0,
            "readyReplicas": sum(
                sum(bool(p.get("status", {}).get("ready")) for p in live_pods(rs)) for rs in all_rs
            ),
            "availableReplicas": sum(available(rs) for rs in all_rs),
        }
        counts["unavailableReplicas"] = max(0, desired - counts["availableReplicas"])
        rolling = spec["strategy"].get("rollingUpdate", {"maxSurge": 0, "maxUnavailable": 0})
        _, max_unavailable = rollout.fenceposts(rolling["maxSurge"], rolling["maxUnavailable"], desired)
        if spec["strategy"]["type"] == "Recreate":
            max_unavailable = desired
        conditions = old_status.get("conditions", [])
        ok = counts["availableReplicas"] >= desired - max_unavailable
        available_condition = condition(
            conditions,
            "Available",
            "True" if ok else "False",
            "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if ok
            else "Deployment does not have minimum availability.",
            now,
            touch=False,
        )
        progressing = self._progressing(deployment, new, olds, desired, counts, conditions, now, created)
        status = {
            "observedGeneration": deployment["metadata"]["generation"],
            **counts,
            "conditions": [available_condition, progressing],
        }
        if new is not None:
            status["currentRevision"] = revision(new)
        if status != old_status:
            self._store.update_status({**deployment, "status": status})
        for rs in all_rs:
            rs_status = {
                "replicas": len(live_pods(rs)),
                "readyReplicas": sum(bool(p.get("status", {}).get("ready")) for p in live_pods(rs)),
                "availableReplicas": available(rs),
            }
            if rs.get("status") != rs_status:
                self._store.update_status({**rs, "status": rs_status})

    def _progressing(
        self,
        deployment: Obj,
        new: Obj | None,
        olds: list[Obj],
        desired: int,
        counts: dict[str, int],
        conditions: list[Obj],
        now: str,
        created: bool,
    ) -> Obj:
        spec, old_status = deployment["spec"], deployment.get("status", {})
        previous = next((c for c in conditions if c["type"] == "Progressing"), None)
        rs_name = new["metadata"]["name"] if new is not None else ""
        if spec.get("paused"):
            return condition(
                conditions,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                now,
                touch=False,
            )
        done = (
            new is not None
            and counts["updatedReplicas"] == desired == counts["replicas"]
            and counts["availableReplicas"] == desired
            and all(o["spec"]["replicas"] == 0 for o in olds)
            and new["spec"]["replicas"] == desired
        )
        if done:
            return condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                now,
                touch=False,
            )
        if created:
            return condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{rs_name}"',
                now,
                touch=True,
            )
        keys = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        moved = (
            previous is None
            or previous["reason"] in ("DeploymentPaused", "NewReplicaSetAvailable")
            or any(old_status.get(k) != counts[k] for k in keys)
            or old_status.get("observedGeneration") != deployment["metadata"]["generation"]
        )
        if moved:
            return condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                now,
                touch=True,
            )
        assert previous is not None
        if previous["reason"] == "ProgressDeadlineExceeded":
            return previous
        waited = self._clock.now() - parse_iso(previous["lastUpdateTime"])
        if waited > float(spec.get("progressDeadlineSeconds", 600)):
            message = f'ReplicaSet "{rs_name}" has timed out progressing.'
            self._events.event(deployment, "Warning", "ProgressDeadlineExceeded", message)
            return condition(
                conditions, "Progressing", "False", "ProgressDeadlineExceeded", message, now, touch=True
            )
        return previous


class ReplicaSetController(_Controller):
    """Each ReplicaSet gets exactly `spec.replicas` live Pods; Pods and ReplicaSets whose owner is
    gone are retired (Kubernetes' garbage collector)."""

    def sync_all(self) -> None:
        deployments, replica_sets, pods = self._world()
        owners = {d["metadata"]["uid"] for d in deployments}
        alive = {rs["metadata"]["uid"]: rs for rs in replica_sets}
        for rs in replica_sets:
            refs = rs["metadata"].get("ownerReferences", [])
            if refs and refs[0]["uid"] not in owners:
                self._store.delete("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"])
                alive.pop(rs["metadata"]["uid"])
        mine: dict[str, list[Obj]] = defaultdict(list)
        for pod in pods:
            if terminating(pod):
                continue
            refs = pod["metadata"].get("ownerReferences", [])
            if refs and refs[0]["uid"] in alive:
                mine[refs[0]["uid"]].append(pod)
            elif refs:
                self._retire(pod, None)
        for uid, rs in alive.items():
            live = mine.get(uid, [])
            want = int(rs["spec"]["replicas"])
            for _ in range(want - len(live)):
                self._create_pod(rs)
            if len(live) > want:
                # Not ready first, then the youngest (Kubernetes' order): the ones serving longest stay.
                unready = [p for p in live if not p.get("status", {}).get("ready")]
                ready = sorted(
                    (p for p in live if p.get("status", {}).get("ready")),
                    key=lambda p: p["metadata"]["creationTimestamp"],
                    reverse=True,
                )
                for pod in (unready + ready)[: len(live) - want]:
                    self._retire(pod, rs)

    def _create_pod(self, rs: Obj) -> None:
        template, meta = rs["spec"]["template"], rs["metadata"]
        suffix = "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        pod = self._store.create(
            {
                "apiVersion": API_VERSION,
                "kind": "Pod",
                "metadata": {
                    "name": f"{meta['name']}-{suffix}",
                    "namespace": meta["namespace"],
                    "labels": dict((template.get("metadata") or {}).get("labels", {})),
                    "ownerReferences": [owner_ref(rs)],
                },
                "spec": template["spec"],
                "status": {"phase": "Pending", "reason": "ContainerCreating", "ready": False},
            }
        )
        self._events.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

    def _retire(self, pod: Obj, rs: Obj | None) -> None:
        pod["metadata"]["deletionTimestamp"] = iso(self._clock.now())
        self._store.update(_without_rv(pod))
        if rs is not None:
            self._events.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")


def _without_rv(obj: Obj) -> Obj:
    """A controller's write of an object it owns: last writer wins, no conflict check."""
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}
