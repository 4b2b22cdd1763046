"""The Deployment controller, as Kubernetes runs it.

A Deployment owns ReplicaSets, one per distinct pod template (named `<deployment>-<template
hash>`, its revision number in the `deployment.kubernetes.io/revision` annotation); a ReplicaSet
owns Pods. Each `sync_all()` reads the whole state and moves it one step towards the spec: the
Deployment controller sets how many replicas each ReplicaSet should have (the rolling-update
arithmetic is in `rollout.py`, the status in `deployment_status.py`), the ReplicaSet controller
(`replicasets.py`) creates or retires Pods to match, the kubelet runs them. Everything they decide
is in the store, so a control plane that restarts picks up where the last one stopped.

A Pod is retired by setting `metadata.deletionTimestamp`: the Service controller takes it out of
the load balancer first (drained), then the kubelet stops its process and deletes it.

The controllers read typed views (`objects.py`); what they write goes back to the store as dicts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping

from pydantic import ValidationError

from modelport.clock import Clock
from modelport.controlplane import rollout
from modelport.controlplane.deployment_status import (
    Census,
    compute_status,
    deadline_newly_exceeded,
    replica_set_status,
)
from modelport.controlplane.meta import (
    API_VERSION,
    CHANGE_CAUSE,
    HASH_LABEL,
    REVISION,
    Recorder,
    owner_ref,
)
from modelport.controlplane.objects import (
    Deployment,
    Obj,
    Pod,
    ReplicaSet,
    ViewCache,
    identical,
    without_rv,
)
from modelport.controlplane.replicasets import ReplicaSetController
from modelport.controlplane.store import ObjectStore
from modelport.errors import ModelportError

__all__ = ["DeploymentController", "ReplicaSetController"]

log = logging.getLogger("modelport.controlplane")


def _parse_or_log(raw: Obj) -> Deployment | None:
    """A stored Deployment that no longer parses (stored before a schema change) is logged, once
    per version, and left alone, so the others still make progress."""
    try:
        return Deployment.parse(raw)
    except ValidationError as exc:
        log.warning("deployment %s/%s: %s", raw["metadata"]["namespace"], raw["metadata"]["name"], exc)
        return None


def _at_rest(deployment: Deployment) -> bool:
    """Whether time alone cannot change its status: its rollout is complete (every replica of the
    new revision available, which no later `now` undoes) and it is not paused. A Deployment still
    rolling out is not: a replica becomes available minReadySeconds after it is ready, and the
    progress deadline passes, with nothing else changing."""
    status = deployment.status
    progressing: Obj = next((c for c in status.get("conditions", []) if c["type"] == "Progressing"), {})
    return (
        not deployment.spec.paused
        and progressing.get("reason") == "NewReplicaSetAvailable"
        and status.get("availableReplicas") == status.get("replicas") == deployment.spec.replicas
    )


class DeploymentController:
    def __init__(self, store: ObjectStore, clock: Clock, recorder: Recorder) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self._deployments = ViewCache(_parse_or_log)
        self._replica_sets = ViewCache(ReplicaSet.parse)
        self._pods = ViewCache(Pod.parse)
        # What each Deployment at rest was synced from (its view, its ReplicaSets', their Pods'),
        # when that sync wrote nothing: synced again from the same objects, it would write
        # nothing again, so it is not (1,000 Deployments a round).
        self._at_rest: dict[str, tuple[object, ...]] = {}

    def sync_all(self) -> None:
        deployments = self._deployments.views(self._store.list_shared("Deployment"))
        replica_sets_of: dict[str, list[ReplicaSet]] = defaultdict(list)
        for rs in self._replica_sets.views(self._store.list_shared("ReplicaSet")):
            for owner in dict.fromkeys(rs.owners):
                replica_sets_of[owner].append(rs)
        pods_of: dict[str, list[Pod]] = defaultdict(list)
        for pod in self._pods.views(self._store.list_shared("Pod")):
            for owner in pod.owners:
                pods_of[owner].append(pod)
        at_rest: dict[str, tuple[object, ...]] = {}
        for deployment in (d for d in deployments if d is not None):
            mine = replica_sets_of.get(deployment.uid, [])
            read = (deployment, *mine, *(pod for rs in mine for pod in pods_of.get(rs.uid, ())))
            if identical(self._at_rest.get(deployment.uid, ()), read):
                at_rest[deployment.uid] = read  # at rest, and nothing it reads has changed
                continue
            writes = self._store.writes
            try:
                self.sync(deployment, mine, pods_of)
            except ModelportError as exc:  # a conflict with a writer: the next round sees the new state
                if exc.code.name not in ("ABORTED", "NOT_FOUND", "ALREADY_EXISTS"):
                    raise
                continue
            if self._store.writes == writes and _at_rest(deployment):
                at_rest[deployment.uid] = read
        self._at_rest = at_rest

    def sync(
        self, deployment: Deployment, replica_sets: list[ReplicaSet], pods_of: Mapping[str, list[Pod]]
    ) -> None:
        spec = deployment.spec
        census = Census(pods_of, spec.min_ready_seconds, self._clock.now())
        new, olds, created = self._revisions(deployment, replica_sets)
        if new is not None and not spec.paused:
            if spec.strategy.type == "Recreate":
                new, olds = self._recreate(deployment, new, olds, census)
            else:
                new, olds = self._roll(deployment, new, olds, census)
        self._cleanup(deployment, olds, census)
        self._write_status(deployment, new, olds, census, created)

    def _revisions(
        self, deployment: Deployment, replica_sets: list[ReplicaSet]
    ) -> tuple[ReplicaSet | None, list[ReplicaSet], bool]:
        """The ReplicaSet of the current template (made now, or renumbered as the newest revision
        after an undo; neither while paused), the others oldest first, and whether it was made now."""
        wanted = deployment.template_hash
        new = next((rs for rs in replica_sets if rs.template_hash == wanted), None)
        top = max((rs.revision for rs in replica_sets), default=0)
        created = False
        if not deployment.spec.paused:
            if new is None:
                new = self._create_replica_set(deployment, wanted, top + 1)
                created = True
            elif new.revision < top:  # back to an older template (undo): it becomes the newest revision
                new = self._renumber(new, top + 1)
        olds = sorted(
            (rs for rs in replica_sets if new is None or rs.uid != new.uid), key=lambda rs: rs.revision
        )
        return new, olds, created

    # -- strategies --

    def _roll(
        self, deployment: Deployment, new: ReplicaSet, olds: list[ReplicaSet], census: Census
    ) -> tuple[ReplicaSet, list[ReplicaSet]]:
        desired = deployment.spec.replicas
        rolling = deployment.spec.strategy.rolling_update
        surge, unavailable = rollout.fenceposts(rolling.max_surge, rolling.max_unavailable, desired)
        new_rev, old_revs = census.revision(new), [census.revision(o) for o in olds]
        target = rollout.next_new_replicas(desired, surge, new_rev, old_revs)
        if target != new.replicas:
            new = self._scale(deployment, new, target)
            new_rev = rollout.Revision(new.name, target, new_rev.available)
        targets = rollout.next_old_replicas(desired, unavailable, new_rev, old_revs)
        olds = [
            self._scale(deployment, o, targets[o.name]) if targets[o.name] != o.replicas else o for o in olds
        ]
        return new, olds

    def _recreate(
        self, deployment: Deployment, new: ReplicaSet, olds: list[ReplicaSet], census: Census
    ) -> tuple[ReplicaSet, list[ReplicaSet]]:
        """Every old replica stopped (and gone) before any new one starts."""
        running = any(o.replicas > 0 for o in olds)
        olds = [self._scale(deployment, o, 0) if o.replicas > 0 else o for o in olds]
        if running or any(census.has_pods(o) for o in olds):
            return new, olds
        if new.replicas != deployment.spec.replicas:
            new = self._scale(deployment, new, deployment.spec.replicas)
        return new, olds

    # -- writes --

    def _scale(self, deployment: Deployment, rs: ReplicaSet, replicas: int) -> ReplicaSet:
        scaled = {**rs.raw, "spec": {**rs.raw["spec"], "replicas": replicas}}
        updated = ReplicaSet.parse(self._store.update(without_rv(scaled)))
        direction = "up" if replicas > rs.replicas else "down"
        message = f"Scaled {direction} replica set {rs.name} to {replicas} from {rs.replicas}"
        self._events.event(deployment.raw, "Normal", "ScalingReplicaSet", message)
        return updated

    def _renumber(self, rs: ReplicaSet, number: int) -> ReplicaSet:
        meta = rs.raw["metadata"]
        annotations = {**meta.get("annotations", {}), REVISION: str(number)}
        renumbered = {**rs.raw, "metadata": {**meta, "annotations": annotations}}
        return ReplicaSet.parse(self._store.update(without_rv(renumbered)))

    def _create_replica_set(self, deployment: Deployment, hash_: str, number: int) -> ReplicaSet:
        meta, template = deployment.metadata, deployment.template
        labels = {**(template.get("metadata") or {}).get("labels", {}), HASH_LABEL: hash_}
        annotations = {REVISION: str(number)}
        if CHANGE_CAUSE in meta.annotations:
            annotations[CHANGE_CAUSE] = meta.annotations[CHANGE_CAUSE]
        created = self._store.create(
            {
                "apiVersion": API_VERSION,
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{meta.name}-{hash_}",
                    "namespace": meta.namespace,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [owner_ref(deployment.raw)],
                },
                "spec": {
                    "replicas": 0,
                    "minReadySeconds": deployment.spec.min_ready_seconds,
                    "selector": {"matchLabels": {**deployment.spec.selector.match_labels, HASH_LABEL: hash_}},
                    "template": {
                        **template,
                        "metadata": {**(template.get("metadata") or {}), "labels": labels},
                    },
                },
                "status": {"replicas": 0},
            }
        )
        return ReplicaSet.parse(created)

    def _cleanup(self, deployment: Deployment, olds: list[ReplicaSet], census: Census) -> None:
        """Old revisions with no replicas left, beyond revisionHistoryLimit, oldest first."""
        idle = [o for o in olds if o.replicas == 0 and not census.has_pods(o)]
        for old in idle[: max(0, len(idle) - deployment.spec.revision_history_limit)]:
            self._store.delete("ReplicaSet", old.namespace, old.name)

    def _write_status(
        self,
        deployment: Deployment,
        new: ReplicaSet | None,
        olds: list[ReplicaSet],
        census: Census,
        created: bool,
    ) -> None:
        status = compute_status(deployment, new, olds, census, created)
        exceeded = deadline_newly_exceeded(deployment.status, status)
        if exceeded is not None:
            self._events.event(deployment.raw, "Warning", "ProgressDeadlineExceeded", exceeded["message"])
        if status != deployment.status:
            self._store.update_status({**deployment.raw, "status": status})
        for rs in ([new] if new is not None else []) + olds:
            rs_status: Obj = replica_set_status(rs, census)
            if rs.status != rs_status:
                self._store.update_status({**rs.raw, "status": rs_status})
