"""The dashboard's memory: per Deployment (and Rollout: a Deployment with canaries), a bounded
series of points taken at each metrics round (every `up --metrics-seconds`, 5 s by default):
replicas wanted and ready, the HPA's desired count, and the replicas' figures (req/s, errors,
p50/p99, CPU, traffic by version, drift and live accuracy); and the autoscaler's decisions as
marks. In memory only: it is a view of the last hour, not a record (Prometheus keeps the
record, `modelport monitoring up`).

    720 points x 5 s = an hour per Deployment; at most 50 marks; a Deployment deleted is forgotten.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelport.controlplane.meta import owned_by
from modelport.controlplane.metrics import Figures, MetricsCollector

Obj = dict[str, Any]
POINTS = 720
MARKS = 50


@dataclass(frozen=True)
class Point:
    at: float  # wall seconds
    replicas: int  # the Deployment's spec.replicas
    ready: int
    hpa_desired: int | None
    figures: Figures | None


@dataclass(frozen=True)
class Mark:
    at: float
    words: str  # "HPA busy: 1 -> 3 (cpu resource utilization ... above target)"


class History:
    def __init__(self, points: int = POINTS, marks: int = MARKS) -> None:
        self._points: dict[str, deque[Point]] = {}
        self._marks: dict[str, deque[Mark]] = {}
        self._size, self._marks_size = points, marks

    def record(
        self, at: float, objects: dict[str, list[Obj]], metrics: MetricsCollector,
        events: Callable[[], list[Obj]] = list,
    ) -> None:  # fmt: skip
        """One point per Deployment from the store's objects (kind -> list) and the collector;
        the events are read only when an HPA has decided (for the decision's reason)."""
        keys = set()
        for d in [*objects.get("Deployment", []), *objects.get("Rollout", [])]:
            key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
            keys.add(key)
            replica_sets = [rs for rs in objects.get("ReplicaSet", []) if owned_by(rs, d)]
            pods = [p for p in objects.get("Pod", []) if any(owned_by(p, rs) for rs in replica_sets)]
            hpa = _hpa_of(d, objects.get("HorizontalPodAutoscaler", []))
            # 0 is an HPA that has not decided yet (its minReplicas is at least 1).
            desired = ((hpa.get("status") or {}).get("desiredReplicas") or None) if hpa else None
            names = [f"{p['metadata']['namespace']}.{p['metadata']['name']}" for p in pods]
            point = Point(
                at, int(d["spec"].get("replicas", 1)), int((d.get("status") or {}).get("readyReplicas", 0)),
                int(desired) if desired is not None else None, metrics.figures(names),
            )  # fmt: skip
            series = self._points.setdefault(key, deque(maxlen=self._size))
            if hpa and series and point.hpa_desired is not None:
                before = series[-1].hpa_desired or series[-1].replicas  # its first decision: from the spec
                if before != point.hpa_desired:
                    self._mark(key, Mark(at, _decision_words(hpa, before, events())))
            series.append(point)
        for gone in set(self._points) - keys:
            del self._points[gone]
            self._marks.pop(gone, None)

    def _mark(self, key: str, mark: Mark) -> None:
        self._marks.setdefault(key, deque(maxlen=self._marks_size)).append(mark)

    def points(self, key: str) -> list[Point]:
        return list(self._points.get(key, ()))

    def marks(self, key: str) -> list[Mark]:
        return list(self._marks.get(key, ()))

    def keys(self) -> list[str]:
        return sorted(self._points)


def _hpa_of(deployment: Obj, hpas: list[Obj]) -> Obj | None:
    meta = deployment["metadata"]
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        if hpa["metadata"]["namespace"] == meta["namespace"] and ref.get("name") == meta["name"]:
            return hpa
    return None


def _decision_words(hpa: Obj, before: int, events: list[Obj]) -> str:
    """The decision, with the reason of the HPA's latest SuccessfulRescale event."""
    name, after = hpa["metadata"]["name"], (hpa.get("status") or {}).get("desiredReplicas")
    rescales = [
        e for e in events
        if e["involvedObject"]["name"] == name and e["reason"] == "SuccessfulRescale"
    ]  # fmt: skip
    reason = max(rescales, key=lambda e: e["lastTimestamp"])["message"] if rescales else ""
    return f"HPA {name}: {before} -> {after}" + (f" ({reason})" if reason else "")
