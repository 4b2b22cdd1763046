"""The ReplicaSet controller, as Kubernetes runs it: each ReplicaSet gets exactly `spec.replicas`
live Pods; Pods and ReplicaSets whose owner is gone are retired (Kubernetes' garbage collector).

A Pod is retired by setting `metadata.deletionTimestamp`: the Service controller takes it out of
the load balancer first (drained), then the kubelet stops its process and deletes it.
"""

from __future__ import annotations

import secrets
from collections import defaultdict

from modelport.clock import Clock
from modelport.controlplane.meta import API_VERSION, Recorder, iso, owner_ref
from modelport.controlplane.objects import Pod, ReplicaSet, ViewCache, without_rv
from modelport.controlplane.store import ObjectStore

# Kubernetes' alphabet for generated names: no vowels, no look-alike digits.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def pods_to_retire(live: list[Pod], want: int) -> list[Pod]:
    """Which of a ReplicaSet's live Pods go when it has more than `want`: not ready first, then the
    youngest (Kubernetes' order), so the ones serving longest stay."""
    if len(live) <= want:
        return []
    unready = [p for p in live if not p.ready]
    ready = sorted((p for p in live if p.ready), key=lambda p: p.created, reverse=True)
    return (unready + ready)[: len(live) - want]


class ReplicaSetController:
    def __init__(self, store: ObjectStore, clock: Clock, recorder: Recorder) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self._replica_sets = ViewCache(ReplicaSet.parse)
        self._pods = ViewCache(Pod.parse)

    def sync_all(self) -> None:
        alive = self._collect_orphans()
        mine: dict[str, list[Pod]] = defaultdict(list)
        for pod in self._pods.views(self._store.list_shared("Pod")):
            if pod.terminating:
                continue
            if pod.owners and pod.owners[0] in alive:
                mine[pod.owners[0]].append(pod)
            elif pod.owners:
                self._retire(pod, None)
        for uid, rs in alive.items():
            self.sync(rs, mine.get(uid, []))

    def sync(self, rs: ReplicaSet, live: list[Pod]) -> None:
        """Create or retire Pods until `rs` has `spec.replicas` live ones."""
        for _ in range(rs.replicas - len(live)):
            self._create_pod(rs)
        for pod in pods_to_retire(live, rs.replicas):
            self._retire(pod, rs)

    def _collect_orphans(self) -> dict[str, ReplicaSet]:
        """Delete the ReplicaSets whose Deployment (or Rollout) is gone; the others, by uid."""
        # Only the owners' uids matter here: no need to parse them whole.
        owners = {
            d["metadata"]["uid"] for kind in ("Deployment", "Rollout") for d in self._store.list_shared(kind)
        }
        alive = {}
        for rs in self._replica_sets.views(self._store.list_shared("ReplicaSet")):
            if rs.owners and rs.owners[0] not in owners:
                self._store.delete("ReplicaSet", rs.namespace, rs.name)
            else:
                alive[rs.uid] = rs
        return alive

    def _create_pod(self, rs: ReplicaSet) -> None:
        template = rs.template
        suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
        pod = self._store.create(
            {
                "apiVersion": API_VERSION,
                "kind": "Pod",
                "metadata": {
                    "name": f"{rs.name}-{suffix}",
                    "namespace": rs.namespace,
                    "labels": dict((template.get("metadata") or {}).get("labels", {})),
                    "ownerReferences": [owner_ref(rs.raw)],
                },
                "spec": template["spec"],
                "status": {"phase": "Pending", "reason": "ContainerCreating", "ready": False},
            }
        )
        self._events.event(rs.raw, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

    def _retire(self, pod: Pod, rs: ReplicaSet | None) -> None:
        meta = {**pod.raw["metadata"], "deletionTimestamp": iso(self._clock.now())}
        self._store.update(without_rv({**pod.raw, "metadata": meta}))
        if rs is not None:
            self._events.event(rs.raw, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.name}")
