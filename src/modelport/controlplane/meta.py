"""What every controller needs about objects: kinds and their plural names, owners, labels,
template hashes, timestamps, and events (Kubernetes' `kubectl get events` records)."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from modelport.clock import Clock
from modelport.controlplane.store import ObjectStore
from modelport.controlplane.store import iso as iso  # where controllers have always found it
from modelport.errors import Code, ModelportError

API_VERSION = "modelport/v1"
# Kinds people write, and the ones the controllers keep.
PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "ReplicaSet": "replicasets",
    "Pod": "pods",
    "Event": "events",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "Rollout": "rollouts",
    "AnalysisTemplate": "analysistemplates",
    "AnalysisRun": "analysisruns",
}
KINDS = {plural: kind for kind, plural in PLURALS.items()}
# The names people write for each kind (kubectl's short names). Written out here rather than
# taken from spec's ALIASES: importing spec loads pydantic, which every `modelport get` would pay.
SHORT_NAMES = {
    "deployment": "Deployment", "deploy": "Deployment", "service": "Service", "svc": "Service",
    "horizontalpodautoscaler": "HorizontalPodAutoscaler", "hpa": "HorizontalPodAutoscaler",
    "replicaset": "ReplicaSet", "rs": "ReplicaSet", "pod": "Pod", "po": "Pod",
    "event": "Event", "ev": "Event", "rollout": "Rollout", "ro": "Rollout",
    "analysistemplate": "AnalysisTemplate", "analysisrun": "AnalysisRun",
}  # fmt: skip
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
RESTARTED_AT = "modelport.io/restartedAt"
# `modelport rollout promote|abort|retry`: "VERB ID" on a Rollout; its controller acts on each ID once.
ROLLOUT_COMMAND = "rollout.modelport.io/command"
MAX_EVENTS = 2000


def kind_of(word: str) -> str:
    """`deploy`, `deployments`, `Deployment` -> Deployment; anything else is an error that lists them."""
    kind = SHORT_NAMES.get(word.lower()) or KINDS.get(word.lower())
    if kind is None:
        raise ModelportError(
            Code.INVALID_ARGUMENT,
            f'the server doesn\'t have a resource type "{word}" '
            f"(known: {', '.join(sorted(PLURALS.values()))})",
        )
    return kind


def workload(pod_spec: dict[str, Any]) -> tuple[str, str]:
    """What a replica runs, in words: (model name, where from) or ("gateway", "svc/NAME")."""
    if pod_spec.get("gateway"):
        return "gateway", f"svc/{pod_spec['gateway']['service']}"
    return pod_spec["model"]["name"], pod_spec["model"]["basePath"]


def parse_iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def template_hash(template: dict[str, Any]) -> str:
    """A revision's name suffix: the same template always hashes the same (Kubernetes' pod-template-hash)."""
    labels = {k: v for k, v in (template.get("metadata") or {}).get("labels", {}).items() if k != HASH_LABEL}
    canonical = {**template, "metadata": {**(template.get("metadata") or {}), "labels": labels}}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    # Kubernetes' alphabet for generated names: no vowels, no look-alike digits.
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    number = int(digest[:16], 16)
    out = ""
    for _ in range(10):
        number, rest = divmod(number, len(alphabet))
        out += alphabet[rest]
    return out


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
    }


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(
        ref.get("uid") == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences", [])
    )


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class LabelIndex:
    """Objects by (namespace, label, value), to find the ones a selector picks without testing
    every one: at 1,000 Services over 3,000 Pods, a round tests 3 Pods per Service, not 3,000.
    `selected` answers what filtering them all with `selects` would, in the same order."""

    def __init__(self, objects: Iterable[dict[str, Any]]) -> None:
        self._by_label: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for obj in objects:
            meta = obj["metadata"]
            for label, value in meta.get("labels", {}).items():
                self._by_label.setdefault((meta["namespace"], label, value), []).append(obj)

    def selected(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        if not selector:
            return []  # an empty selector selects nothing (`selects`)
        label, value = next(iter(selector.items()))
        candidates = self._by_label.get((namespace, label, value), [])
        return [obj for obj in candidates if selects(selector, obj["metadata"].get("labels", {}))]


def revision(rs: dict[str, Any]) -> int:
    return int(rs["metadata"].get("annotations", {}).get(REVISION, "0"))


def condition(
    old: list[dict[str, Any]], type_: str, status: str, reason: str, message: str, now: str,
    touch: bool | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A status condition as Kubernetes keeps it: lastTransitionTime moves only when `status`
    changes. Conditions that carry a lastUpdateTime (a Deployment's) pass `touch`: it moves when
    the controller says so (progress) or when anything about the condition changed."""
    before = next((c for c in old if c["type"] == type_), None)
    found = {
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": before["lastTransitionTime"] if before and before["status"] == status else now,
    }  # fmt: skip
    if touch is not None:
        same = before is not None and (before["status"], before["reason"], before["message"]) == (
            status, reason, message,
        )  # fmt: skip
        found["lastUpdateTime"] = before["lastUpdateTime"] if before and same and not touch else now
    return found


def terminating(obj: dict[str, Any]) -> bool:
    return "deletionTimestamp" in obj["metadata"]


class Recorder:
    """Writes events as Kubernetes does: one per (object, reason, message), its count and
    lastTimestamp bumped when it happens again; the oldest dropped past MAX_EVENTS."""

    def __init__(self, store: ObjectStore, clock: Clock, component: str) -> None:
        self._store = store
        self._clock = clock
        self._component = component
        self._seq = 0

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        key = hashlib.sha256(f"{obj['kind']}/{meta['name']}/{reason}/{message}".encode()).hexdigest()[:10]
        name = f"{meta['name']}.{key}"
        now = iso(self._clock.now())
        existing = self._store.get("Event", meta["namespace"], name)
        if existing is not None:
            existing["count"] = existing.get("count", 1) + 1
            existing["lastTimestamp"] = now
            existing["metadata"].pop("resourceVersion", None)
            self._store.update(existing)
            return
        self._store.create(
            {
                "apiVersion": API_VERSION,
                "kind": "Event",
                "metadata": {"name": name, "namespace": meta["namespace"]},
                "involvedObject": {"kind": obj["kind"], "name": meta["name"], "uid": meta.get("uid")},
                "type": type_,
                "reason": reason,
                "message": message,
                "source": {"component": self._component},
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
            }
        )
        self._seq += 1
        if self._seq % 100 == 0:
            self.prune()

    def prune(self) -> None:
        events, _ = self._store.list_kind("Event")
        if len(events) > MAX_EVENTS:
            events.sort(key=lambda e: e["lastTimestamp"])
            for old in events[: len(events) - MAX_EVENTS]:
                self._store.delete("Event", old["metadata"]["namespace"], old["metadata"]["name"])
