"""Kubernetes' replica calculator (`replica_calculator.go`, `metrics/utilization.go`), pure:
pods, samples and a target in, a replica count out; no clock, no I/O.

Values are integer milli-units, as Kubernetes keeps them (`Quantity.MilliValue()`), and the
averages divide as integers, because the truncation changes answers near a boundary:

    3 replicas at 100m, 100m, 133m of 1000m requested, target 10%:
    utilization = 333 * 100 // 3000 = 11 (not 11.1) -> ratio 1.1 -> inside the 0.1 tolerance

    desired = ceil(ratio * ready replicas)         no change while 1 - down <= ratio <= 1 + up
    missing samples: the target (100% of the request, or the target if higher) on a scale-down,
    0 on a scale-up; not-yet-ready replicas count 0 on a scale-up (CPU: also a replica still in
    its first 300 s whose sample predates its readiness); re-checked so the direction never flips
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from modelport.errors import Code, ModelportError

DEFAULT_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
CPU_INITIALIZATION_SECONDS = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
INITIAL_READINESS_DELAY_SECONDS = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay


class MetricError(ModelportError):
    """A metric that could not be read or used; `reason` is Kubernetes' condition reason
    (FailedGetResourceMetric, FailedGetPodsMetric, FailedGetObjectMetric, FailedGetExternalMetric)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(Code.UNAVAILABLE, message)
        self.reason = reason


def milli(value: float) -> int:
    """A reading in base units as a milli-value: 0.3 cores -> 300 (the nearest, as "0.3" parses)."""
    return round(value * 1000)


@dataclass(frozen=True)
class Tolerances:
    """Per direction (`behavior.scaleDown/scaleUp.tolerance`), each 0.1 unless given."""

    down: float = DEFAULT_TOLERANCE
    up: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        # Compared as Kubernetes does, not as |1 - ratio| <= t: 55% / 50% = 1.1 is inside
        # (1.1 <= 1 + 0.1), while abs(1 - 1.1) = 0.10000000000000009 would not be.
        return 1.0 - self.down <= ratio <= 1.0 + self.up


@dataclass(frozen=True)
class PodState:
    name: str
    ready: bool
    pending: bool = False  # phase Pending
    deleting: bool = False  # has a deletionTimestamp
    start: float | None = None  # wall seconds
    transition: float | None = None  # when `ready` last changed
    failed: bool = False  # phase Failed

    @property
    def running(self) -> bool:
        return not self.pending and not self.failed


@dataclass(frozen=True)
class PodMetric:
    value: int  # milli-units
    timestamp: float = 0.0
    window: float = 0.0


@dataclass(frozen=True)
class PodGroups:
    """Kubernetes' groupPods: pods counted, and the names set aside."""

    ready: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


@dataclass(frozen=True)
class Proposal:
    replicas: int
    usage: int  # milli: the average per replica (per-pod metrics) or the metric's value
    utilization: int | None = None  # percent of the requests (Utilization targets)


def _cpu_unready(pod: PodState, metric: PodMetric, now: float) -> bool:
    if pod.start is None or pod.transition is None:
        return True
    if pod.start + CPU_INITIALIZATION_SECONDS > now:
        # Starting up: its CPU is not what it will use; a sample from before it got ready neither.
        return not pod.ready or metric.timestamp < pod.transition + metric.window
    # Unready and never been ready (it went unready within 30 s of starting).
    return not pod.ready and pod.start + INITIAL_READINESS_DELAY_SECONDS > pod.transition


def group_pods(
    pods: Sequence[PodState], metrics: Mapping[str, PodMetric], resource: str | None, now: float
) -> PodGroups:
    ready, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        if pod.deleting or pod.failed:
            ignored.add(pod.name)
        elif pod.pending:
            unready.add(pod.name)
        elif pod.name not in metrics:
            missing.add(pod.name)
        elif resource == "cpu" and _cpu_unready(pod, metrics[pod.name], now):
            unready.add(pod.name)
        else:
            ready += 1
    return PodGroups(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def utilization_ratio(
    values: Mapping[str, int], requests: Mapping[str, int], target: int
) -> tuple[float, int, int]:
    """(ratio, utilization %, average milli) over the replicas with a request: sum over sum,
    integer division. 3 replicas at 300m, 500m, 700m of 1000m each, target 30%:
    1500 * 100 // 3000 = 50% -> ratio 50 / 30 = 1.67."""
    counted = [name for name in values if name in requests]
    requested = sum(requests[name] for name in counted)
    if requested == 0:
        raise MetricError("FailedGetResourceMetric", "no metrics returned matched known pods")
    total = sum(values[name] for name in counted)
    utilization = total * 100 // requested
    return utilization / target, utilization, total // len(counted)


def usage_ratio(values: Mapping[str, int], target: int) -> tuple[float, int]:
    """(ratio, average milli): 20000m, 10000m, 30000m against 15000m -> 20000 / 15000 = 1.33."""
    usage = sum(values.values()) // len(values)
    return usage / target, usage


def _usable(
    pods: Sequence[PodState], metrics: Mapping[str, PodMetric], resource: str | None, now: float
) -> tuple[PodGroups, dict[str, int]]:
    if not pods:
        raise MetricError(
            "FailedGetResourceMetric" if resource else "FailedGetPodsMetric",
            "no pods returned by selector while calculating replica count",
        )
    groups = group_pods(pods, metrics, resource, now)
    values = {n: m.value for n, m in metrics.items() if n not in groups.unready | groups.ignored}
    if not values:
        raise MetricError(
            "FailedGetResourceMetric" if resource else "FailedGetPodsMetric",
            "did not receive metrics for targeted pods (pods might be unready)",
        )
    return groups, values


def _corrected(
    current: int,
    ratio: float,
    groups: PodGroups,
    values: dict[str, int],
    fallback: Callable[[str], int],
    ratio_of: Callable[[dict[str, int]], float],
    tolerances: Tolerances,
) -> int:
    """The replica count, with missing and unready replicas filled in when they matter."""
    up_with_unready = bool(groups.unready) and ratio > 1.0
    if not up_with_unready and not groups.missing:
        return current if tolerances.within(ratio) else math.ceil(ratio * groups.ready)
    filled = dict(values)
    if groups.missing and ratio < 1.0:  # scaling down: a replica without a sample uses its share
        filled.update({name: fallback(name) for name in groups.missing})
    elif groups.missing and ratio > 1.0:  # scaling up: as using nothing
        filled.update(dict.fromkeys(groups.missing, 0))
    if up_with_unready:
        filled.update(dict.fromkeys(groups.unready, 0))
    new_ratio = ratio_of(filled)
    if tolerances.within(new_ratio) or ratio < 1.0 < new_ratio or new_ratio < 1.0 < ratio:
        return current  # too small a change, or the filling-in flipped the direction
    proposed = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and proposed > current) or (new_ratio > 1.0 and proposed < current):
        return current
    return proposed


def utilization_replicas(
    current: int,
    target: int,
    pods: Sequence[PodState],
    metrics: Mapping[str, PodMetric],
    requests: Mapping[str, int | None],
    resource: str,
    tolerances: Tolerances,
    now: float,
) -> Proposal:
    """GetResourceReplicas: a Resource metric against `target` percent of the requests."""
    groups, values = _usable(pods, metrics, resource, now)
    known: dict[str, int] = {}
    for pod in pods:  # every replica needs a request, counted or not
        asked = requests.get(pod.name)
        if asked is None:
            raise MetricError(
                "FailedGetResourceMetric", f"missing request for {resource} in replica {pod.name}"
            )
        known[pod.name] = asked
    ratio, utilization, raw = utilization_ratio(values, known, target)
    fallback = max(100, target)  # a missing replica on a scale-down: 100%, or the target if higher

    def ratio_of(filled: dict[str, int]) -> float:
        return utilization_ratio(filled, known, target)[0]

    replicas = _corrected(
        current, ratio, groups, values, lambda n: known[n] * fallback // 100, ratio_of, tolerances
    )
    return Proposal(replicas, raw, utilization)


def average_replicas(
    current: int,
    target: int,
    pods: Sequence[PodState],
    metrics: Mapping[str, PodMetric],
    resource: str | None,
    tolerances: Tolerances,
    now: float,
) -> Proposal:
    """calcPlainMetricReplicas: a Pods metric, or a Resource one with an AverageValue target
    (`resource` names it, so CPU's start-up rules apply), against `target` milli per replica."""
    groups, values = _usable(pods, metrics, resource, now)
    ratio, usage = usage_ratio(values, target)
    replicas = _corrected(
        current, ratio, groups, values, lambda _: target, lambda v: usage_ratio(v, target)[0], tolerances
    )
    return Proposal(replicas, usage)


def value_replicas(
    current: int, usage: int, target: int, pods: Sequence[PodState], tolerances: Tolerances
) -> Proposal:
    """getUsageRatioReplicaCount: an Object/External metric with a Value target, the ratio applied
    to the running, ready replicas (none ready: 0, which min/max clamp)."""
    ratio = usage / target
    if current == 0:
        return Proposal(math.ceil(ratio), usage)
    if tolerances.within(ratio):
        return Proposal(current, usage)
    if not pods:
        raise MetricError(
            "FailedGetExternalMetric",
            "unable to calculate ready pods: no pods returned by selector while calculating replica count",
        )
    ready = sum(1 for pod in pods if pod.running and pod.ready)
    return Proposal(math.ceil(ratio * ready), usage)


def average_value_replicas(status_replicas: int, usage: int, target: int, tolerances: Tolerances) -> Proposal:
    """GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas: an Object/External metric
    with an AverageValue target, shared over the replicas that exist (the scale's status):
    8600m over 3 replicas against 2150m each: 8600 / 6450 = 1.33 -> ceil(8600 / 2150) = 4."""
    ratio = usage / (target * status_replicas) if status_replicas else math.inf
    replicas = status_replicas if tolerances.within(ratio) else math.ceil(usage / target)
    return Proposal(replicas, -(-usage // status_replicas) if status_replicas else usage)
