"""One HPA round decided, pure (Kubernetes' `reconcileAutoscaler` without its reads and writes):
what was read in, a `ScaleDecision` out — the replicas, the conditions to set, the events, the
metric statuses and the new history. The controller (`autoscaler.py`) reads and writes.

    target at 0 (minReplicas >= 1)    ScalingActive False ScalingDisabled; nothing changes
    outside [min, max]                straight to the bound, no metrics read
    every metric fails, or one fails  ScalingActive False (the first failure's reason), no scale,
    and the rest propose fewer        no recommendation recorded; one failing while the rest
                                      propose more scales up (ValidMetricFound)
    otherwise                         the largest proposal, stabilized and limited
                                      (`stabilization.py`), ScalingActive True ValidMetricFound
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.controlplane import replica_calculator as calc
from modelport.controlplane import stabilization as stab
from modelport.controlplane.replica_calculator import MetricError, PodMetric, PodState, Proposal, Tolerances
from modelport.spec import HPASpec, MetricSpec, MetricTarget, quantity

FAILED_REASON = {
    "Resource": "FailedGetResourceMetric",
    "Pods": "FailedGetPodsMetric",
    "Object": "FailedGetObjectMetric",
    "External": "FailedGetExternalMetric",
}


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Scale:
    """The scale target as read (Kubernetes' scale subresource) and its replicas."""

    spec_replicas: int
    status_replicas: int
    pods: tuple[PodState, ...] = ()
    requests: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # pod -> resource -> milli


@dataclass(frozen=True)
class Reading:
    """What was read for one metric: per-replica samples (Resource, Pods), a value in milli
    (Object, External), or why it could not be read."""

    samples: Mapping[str, PodMetric] | None = None
    value: int | None = None
    error: MetricError | None = None


@dataclass(frozen=True)
class ScaleDecision:
    desired: int  # status.desiredReplicas (the replicas to write when `rescale`)
    rescale: bool
    reason: str  # the rescale event's reason
    conditions: tuple[Condition, ...]  # set in this order onto the ones the HPA has
    events: tuple[Event, ...]
    current_metrics: tuple[dict[str, Any], ...]
    observed: dict[str, float] | None  # for the HPA's plot history; None: nothing measured
    history: stab.History


def describe(metric: MetricSpec) -> tuple[str, str]:
    """Kubernetes' name for a metric in events and conditions, and its key in our metrics."""
    if metric.resource is not None:
        utilization = metric.resource.target.type == "Utilization"
        suffix = " utilization (percentage of request)" if utilization else ""
        return f"{metric.resource.name} resource{suffix}", metric.resource.name
    if metric.pods is not None:
        return f"pods metric {metric.pods.metric.name}", metric.pods.metric.name
    if metric.object is not None:
        kind = metric.object.described_object.kind
        return f"{kind} metric {metric.object.metric.name}", metric.object.metric.name
    assert metric.external is not None
    return f"external metric {metric.external.metric.name}", metric.external.metric.name


def _milli(given: str | int | float | None) -> int:
    assert given is not None  # validated: the target type's field is set
    return calc.milli(quantity(given))


def _shown(key: str, value_milli: int) -> str:
    if key == "cpu":
        return f"{value_milli}m"
    if key == "memory":
        return f"{round(value_milli / 1000 / 2**20)}Mi"
    return f"{value_milli / 1000:.4g}"


@dataclass(frozen=True)
class MetricProposal:
    """One metric's replicas, its name for conditions and events, its status entry, its value."""

    replicas: int
    name: str
    status: dict[str, Any]
    observed: float


def _per_pod(
    metric: MetricSpec, reading: Reading, scale: Scale, tol: Tolerances, now: float
) -> MetricProposal:
    name, key = describe(metric)
    source = metric.resource or metric.pods
    assert source is not None  # validated: the type's field is set
    target = source.target
    samples = reading.samples or {}
    if not samples:
        api = "resource" if metric.resource else "custom"
        raise MetricError("", f"unable to get metric {key}: no metrics returned from {api} metrics API")
    current = scale.spec_replicas
    if target.type == "Utilization":
        assert target.average_utilization is not None
        requests = {pod.name: scale.requests.get(pod.name, {}).get(key) for pod in scale.pods}
        got = calc.utilization_replicas(
            current, target.average_utilization, scale.pods, samples, requests, key, tol, now
        )
        entry = {"averageUtilization": got.utilization, "averageValue": _shown(key, got.usage)}
        shown: float = got.utilization or 0
    else:
        resource = key if metric.resource else None
        got = calc.average_replicas(
            current, _milli(target.average_value), scale.pods, samples, resource, tol, now
        )
        entry, shown = {"averageValue": _shown(key, got.usage)}, got.usage / 1000
    body = {"name": key, "current": entry} if metric.resource else {"metric": {"name": key}, "current": entry}
    return MetricProposal(got.replicas, name, {"type": metric.type, metric.type.lower(): body}, shown)


def _single(metric: MetricSpec, reading: Reading, scale: Scale, tol: Tolerances) -> MetricProposal:
    name, key = describe(metric)
    source = metric.object or metric.external
    assert source is not None and reading.value is not None
    target: MetricTarget = source.target
    got: Proposal
    if target.type == "Value":
        got = calc.value_replicas(scale.spec_replicas, reading.value, _milli(target.value), scale.pods, tol)
        entry = {"value": f"{got.usage / 1000:g}"}
    else:
        got = calc.average_value_replicas(
            scale.status_replicas, reading.value, _milli(target.average_value), tol
        )
        entry = {"averageValue": f"{got.usage / 1000:g}"}
    body = {"metric": {"name": key}, "current": entry}
    return MetricProposal(
        got.replicas, name, {"type": metric.type, metric.type.lower(): body}, reading.value / 1000
    )


def replicas_for_metric(
    metric: MetricSpec, reading: Reading, scale: Scale, tol: Tolerances, now: float
) -> MetricProposal:
    """One metric's proposal; a MetricError carries Kubernetes' reason for the metric's type."""
    try:
        if reading.error is not None:
            raise reading.error
        if metric.type in ("Resource", "Pods"):
            return _per_pod(metric, reading, scale, tol, now)
        return _single(metric, reading, scale, tol)
    except MetricError as exc:
        raise MetricError(FAILED_REASON[metric.type], exc.message) from None


@dataclass(frozen=True)
class _Metrics:
    """computeReplicasForMetrics: the largest proposal, or the condition that says why none."""

    replicas: int
    name: str
    statuses: tuple[dict[str, Any], ...]
    observed: dict[str, float]
    events: tuple[Event, ...]
    failure: Condition | None  # ScalingActive False, when no scaling may follow


def _replicas_for_metrics(
    spec: HPASpec, scale: Scale, readings: Sequence[Reading], tol: Tolerances, now: float
) -> _Metrics:
    replicas, name, statuses, observed, events = 0, "", [], {}, []
    failed: list[MetricError] = []
    for metric, reading in zip(spec.metrics, readings, strict=True):
        try:
            got = replicas_for_metric(metric, reading, scale, tol, now)
        except MetricError as exc:
            failed.append(exc)
            events.append(Event("Warning", exc.reason, f"unable to get {describe(metric)[0]}: {exc.message}"))
            continue
        statuses.append(got.status)
        observed[got.name] = got.observed
        if replicas == 0 or got.replicas > replicas:  # the first of the largest names the reason
            replicas, name = got.replicas, got.name
    failure = None
    # Every metric failed, or one did and the others propose fewer replicas: not on part of the picture.
    if failed and (len(failed) == len(spec.metrics) or replicas < scale.spec_replicas):
        first = failed[0]
        failure = Condition(
            "ScalingActive",
            "False",
            first.reason,
            f"the HPA was unable to compute the replica count: {first.message}",
        )
        count = f"{len(failed)} invalid out of {len(spec.metrics)}"
        message = f"invalid metrics ({count}), first error is: {first.message}"
        events.append(Event("Warning", "FailedComputeMetricsReplicas", message))
    return _Metrics(replicas, name, tuple(statuses), observed, tuple(events), failure)


_GOT_SCALE = Condition(
    "AbleToScale",
    "True",
    "SucceededGetScale",
    "the HPA controller was able to get the target's current scale",
)
_READY = Condition("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
_DOWN_STABILIZED = Condition(
    "AbleToScale",
    "True",
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
)
_DISABLED = Condition(
    "ScalingActive",
    "False",
    "ScalingDisabled",
    "scaling is disabled since the replica count of the target is zero",
)


def normalize(
    spec: HPASpec, current: int, desired: int, history: stab.History, now: float
) -> tuple[int, tuple[Condition, ...], stab.History]:
    """normalizeDesiredReplicas (no `behavior`) or ...WithBehaviors: stabilize, then limit."""
    low, high = spec.min_replicas, spec.max_replicas
    if spec.behavior is None:
        stabilized, history = stab.stabilize(history, desired, now)
        able = _DOWN_STABILIZED if stabilized != desired else _READY
        limited = stab.limit_without_behavior(current, stabilized, low, high)
    else:
        up, down = stab.scale_up_rules(spec.behavior), stab.scale_down_rules(spec.behavior)
        outcome, history = stab.stabilize_with_behavior(history, current, desired, up, down, now)
        stabilized = outcome.replicas
        able = Condition("AbleToScale", "True", outcome.reason, outcome.message)
        able = able if stabilized != desired else _READY
        limited = stab.limit_with_behavior(history, current, stabilized, low, high, up, down, now)
    bound = Condition(
        "ScalingLimited",
        "True" if limited.replicas != stabilized else "False",
        limited.reason,
        limited.message,
    )
    return limited.replicas, (able, bound), history


def compute_scale(
    spec: HPASpec,
    scale: Scale,
    readings: Sequence[Reading],
    history: stab.History,
    previous_desired: int,
    now: float,
    wall_now: float,
) -> ScaleDecision:
    """One round: `readings` line up with `spec.metrics`; `now` is monotonic (the history's
    clock), `wall_now` the wall clock the replicas' start times are on."""
    current = scale.spec_replicas
    history = stab.record_initial(history, current, now)
    if current == 0 and spec.min_replicas != 0:
        return ScaleDecision(0, False, "", (_GOT_SCALE, _DISABLED), (), (), None, history)
    if current > spec.max_replicas or current < spec.min_replicas:
        above = current > spec.max_replicas
        bound, word = (
            (spec.max_replicas, "above Spec.MaxReplicas")
            if above
            else (spec.min_replicas, "below Spec.MinReplicas")
        )
        return ScaleDecision(
            bound, True, f"Current number of replicas {word}", (_GOT_SCALE,), (), (), {}, history
        )
    got = _replicas_for_metrics(spec, scale, readings, stab.tolerances(spec.behavior), wall_now)
    if got.failure is not None:
        conditions = (_GOT_SCALE, got.failure)
        return ScaleDecision(
            previous_desired, False, "", conditions, got.events, got.statuses, got.observed, history
        )
    valid = f"the HPA was able to successfully calculate a replica count from {got.name}"
    active = Condition("ScalingActive", "True", "ValidMetricFound", valid)
    reason = ""
    if got.replicas != current:
        reason = f"{got.name} above target" if got.replicas > current else "All metrics below target"
    desired, normalized, history = normalize(spec, current, got.replicas, history, now)
    return ScaleDecision(
        desired,
        desired != current,
        reason,
        (_GOT_SCALE, active, *normalized),
        got.events,
        got.statuses,
        got.observed,
        history,
    )
