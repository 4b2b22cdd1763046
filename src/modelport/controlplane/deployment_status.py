"""A Deployment's status, computed from what its ReplicaSets' Pods are doing, as Kubernetes'
deployment controller computes it: the replica counts, and the Available and Progressing
conditions. Pure: a snapshot and `now` in, the status out; the controller writes it.

Progressing, in the order it is decided:

    paused                                         Unknown  DeploymentPaused
    new revision complete (all replicas available) True     NewReplicaSetAvailable
    new ReplicaSet created this round              True     NewReplicaSetCreated
    any count or the generation moved              True     ReplicaSetUpdated       (clock restarts)
    nothing moved for progressDeadlineSeconds      False    ProgressDeadlineExceeded (kept until moved)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelport.controlplane import rollout
from modelport.controlplane.meta import condition, iso, parse_iso
from modelport.controlplane.objects import Deployment, Obj, Pod, ReplicaSet

DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class Census:
    """Each ReplicaSet's Pods at `now`: which are live (not on their way out), ready, available."""

    pods_of: Mapping[str, list[Pod]]  # by owner uid, terminating ones included
    min_ready_seconds: float
    now: float
    # Each ReplicaSet's (live, ready, available), counted once: a round asks each about 8 times.
    _counted: dict[str, tuple[int, int, int]] = field(default_factory=dict, compare=False, repr=False)

    def has_pods(self, rs: ReplicaSet) -> bool:
        """Any Pod at all, even one still stopping."""
        return bool(self.pods_of.get(rs.uid))

    def live(self, rs: ReplicaSet) -> list[Pod]:
        return [p for p in self.pods_of.get(rs.uid, []) if not p.terminating]

    def _count(self, rs: ReplicaSet) -> tuple[int, int, int]:
        counted = self._counted.get(rs.uid)
        if counted is None:
            live = self.live(rs)
            available = sum(p.available(self.min_ready_seconds, self.now) for p in live)
            counted = self._counted[rs.uid] = (len(live), sum(p.ready for p in live), available)
        return counted

    def live_count(self, rs: ReplicaSet) -> int:
        return self._count(rs)[0]

    def ready(self, rs: ReplicaSet) -> int:
        return self._count(rs)[1]

    def available(self, rs: ReplicaSet) -> int:
        return self._count(rs)[2]

    def revision(self, rs: ReplicaSet) -> rollout.Revision:
        return rollout.Revision(rs.name, rs.replicas, self.available(rs))


@dataclass(frozen=True)
class Counts:
    """A Deployment's live replicas by state."""

    replicas: int  # every revision's
    updated: int  # the new revision's
    ready: int
    available: int  # ready for at least minReadySeconds

    @classmethod
    def of(cls, new: ReplicaSet | None, olds: list[ReplicaSet], census: Census) -> Counts:
        all_rs = ([new] if new is not None else []) + olds
        return cls(
            replicas=sum(census.live_count(rs) for rs in all_rs),
            updated=census.live_count(new) if new is not None else 0,
            ready=sum(census.ready(rs) for rs in all_rs),
            available=sum(census.available(rs) for rs in all_rs),
        )

    def fields(self) -> dict[str, int]:
        """As the status names them."""
        return {
            "replicas": self.replicas,
            "updatedReplicas": self.updated,
            "readyReplicas": self.ready,
            "availableReplicas": self.available,
        }


def replica_set_status(rs: ReplicaSet, census: Census) -> Obj:
    return {
        "replicas": census.live_count(rs),
        "readyReplicas": census.ready(rs),
        "availableReplicas": census.available(rs),
    }


def compute_status(
    deployment: Deployment, new: ReplicaSet | None, olds: list[ReplicaSet], census: Census, created: bool
) -> Obj:
    """The Deployment's status after this round; `created`: its new ReplicaSet was made in it."""
    desired = deployment.spec.replicas
    counts = Counts.of(new, olds, census)
    conditions = deployment.status.get("conditions", [])
    now = iso(census.now)
    ok = counts.available >= desired - _max_unavailable(deployment)
    available = condition(
        conditions,
        "Available",
        "True" if ok else "False",
        "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
        "Deployment has minimum availability." if ok else "Deployment does not have minimum availability.",
        now,
        touch=False,
    )
    progressing = _progressing(deployment, new, olds, counts, created, census.now)
    status: Obj = {
        "observedGeneration": deployment.generation,
        **counts.fields(),
        "unavailableReplicas": max(0, desired - counts.available),
        "conditions": [available, progressing],
    }
    if new is not None:
        status["currentRevision"] = new.revision
    return status


def deadline_newly_exceeded(before: Obj, after: Obj) -> Obj | None:
    """The Progressing condition if this status is the one where the deadline passed, else None."""
    was, now = (_find(s.get("conditions", []), "Progressing") for s in (before, after))
    if now is not None and now["reason"] == DEADLINE_EXCEEDED:
        return None if was is not None and was["reason"] == DEADLINE_EXCEEDED else now
    return None


def _max_unavailable(deployment: Deployment) -> int:
    """Recreate stops everything, so any number may be unavailable; a rolling update keeps its promise."""
    strategy, desired = deployment.spec.strategy, deployment.spec.replicas
    if strategy.type == "Recreate":
        return desired
    rolling = strategy.rolling_update
    return rollout.fenceposts(rolling.max_surge, rolling.max_unavailable, desired)[1]


def _find(conditions: list[Obj], type_: str) -> Obj | None:
    return next((c for c in conditions if c["type"] == type_), None)


def _progressing(
    deployment: Deployment,
    new: ReplicaSet | None,
    olds: list[ReplicaSet],
    counts: Counts,
    created: bool,
    now: float,
) -> Obj:
    conditions = deployment.status.get("conditions", [])
    rs_name = new.name if new is not None else ""

    def progressing(status: str, reason: str, message: str, touch: bool) -> Obj:
        return condition(conditions, "Progressing", status, reason, message, iso(now), touch=touch)

    if deployment.spec.paused:
        return progressing("Unknown", "DeploymentPaused", "Deployment is paused", touch=False)
    if new is not None and _complete(deployment.spec.replicas, new, olds, counts):
        message = f'ReplicaSet "{rs_name}" has successfully progressed.'
        return progressing("True", "NewReplicaSetAvailable", message, touch=False)
    if created:
        return progressing("True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"', touch=True)
    previous = _find(conditions, "Progressing")
    if previous is None or _moved(deployment, previous, counts):
        return progressing("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', touch=True)
    if previous["reason"] == DEADLINE_EXCEEDED:
        return previous
    if now - parse_iso(previous["lastUpdateTime"]) > deployment.spec.progress_deadline_seconds:
        message = f'ReplicaSet "{rs_name}" has timed out progressing.'
        return progressing("False", DEADLINE_EXCEEDED, message, touch=True)
    return previous


def _complete(desired: int, new: ReplicaSet, olds: list[ReplicaSet], counts: Counts) -> bool:
    return (
        counts.updated == desired == counts.replicas
        and counts.available == desired
        and all(o.replicas == 0 for o in olds)
        and new.replicas == desired
    )


def _moved(deployment: Deployment, previous: Obj, counts: Counts) -> bool:
    """Progress since the last round: a count or the generation changed, or a rollout begins."""
    old = deployment.status
    return (
        previous["reason"] in ("DeploymentPaused", "NewReplicaSetAvailable")
        or any(old.get(field) != value for field, value in counts.fields().items())
        or old.get("observedGeneration") != deployment.generation
    )
