"""The HorizontalPodAutoscaler controller, with Kubernetes' arithmetic (autoscaling/v2):

    desired = ceil(current_ready * metric / target)        per metric; the largest proposal wins
    no change while |metric / target - 1| <= tolerance (0.1)
    missing metrics: 100% of target when scaling down, 0 when scaling up; not-yet-ready replicas
    count 0 on a CPU scale-up; re-checked so the direction never flips
    a metric that fails and the others proposing a scale-down: no scaling
    stabilization: the highest recommendation of the last scaleDown window (300 s), the lowest
    of the scaleUp window (0 s)
    rate policies per period (up: max(+4 pods, +100%) per 15 s; down: -100% per 15 s), selectPolicy
    clamped to [minReplicas, maxReplicas]

`ReplicaCalculator` and `Behavior` are pure (numbers in, numbers out); `Autoscaler` reads the
objects and the metrics, decides on the clock, scales the Deployment, and reports status,
conditions (AbleToScale, ScalingActive, ScalingLimited) and events as `kubectl describe hpa` does.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelport.clock import Clock
from modelport.controlplane.meta import Recorder, condition, iso, parse_iso, selects, terminating
from modelport.controlplane.metrics import MetricsCollector
from modelport.controlplane.store import ObjectStore
from modelport.errors import ModelportError
from modelport.spec import quantity

Obj = dict[str, Any]
TOLERANCE = 0.1
HISTORY_BYTES = 4 * 2**20  # per HPA, for `modelport plot`
CPU_INITIALIZATION_SECONDS = 300.0
INITIAL_READINESS_DELAY_SECONDS = 30.0
DEFAULT_RULES = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    },
}


class MetricError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PodState:
    name: str
    ready: bool
    pending: bool = False
    deleting: bool = False
    start: float | None = None  # wall seconds
    transition: float | None = None  # when `ready` last changed


@dataclass(frozen=True)
class PodMetric:
    value: float
    timestamp: float = 0.0
    window: float = 0.0


class ReplicaCalculator:
    def __init__(self, tolerance: float = TOLERANCE, down_tolerance: float | None = None) -> None:
        """`tolerance` for ratios above 1 (and below, unless `down_tolerance` is given: Kubernetes'
        per-direction `behavior.scaleUp/scaleDown.tolerance`)."""
        self.tolerance = tolerance
        self.down_tolerance = tolerance if down_tolerance is None else down_tolerance

    def _within(self, ratio: float) -> bool:
        return abs(1.0 - ratio) <= (self.tolerance if ratio >= 1.0 else self.down_tolerance)

    def _group(
        self, pods: list[PodState], metrics: dict[str, PodMetric], resource: str | None, now: float
    ) -> tuple[set[str], set[str], set[str]]:
        """Kubernetes' groupPods: (unready, missing, ignored) pod names."""
        unready, missing, ignored = set(), set(), set()
        for pod in pods:
            if pod.deleting:
                ignored.add(pod.name)
            elif pod.pending:
                unready.add(pod.name)
            elif pod.name not in metrics:
                missing.add(pod.name)
            elif resource == "cpu":
                if pod.start is None or pod.transition is None:
                    unready.add(pod.name)
                elif pod.start + CPU_INITIALIZATION_SECONDS > now:
                    # Starting up: its CPU is not what it will use; a sample from before it got ready too.
                    metric = metrics[pod.name]
                    if not pod.ready or metric.timestamp < pod.transition + metric.window:
                        unready.add(pod.name)
                elif not pod.ready and pod.start + INITIAL_READINESS_DELAY_SECONDS > pod.transition:
                    unready.add(pod.name)  # unready and never been ready
        return unready, missing, ignored

    def per_pod(
        self,
        current: int,
        pods: list[PodState],
        metrics: dict[str, PodMetric],
        target: float,
        now: float,
        resource: str | None = None,
        requests: dict[str, float] | None = None,
    ) -> tuple[int, float]:
        """Replicas for a per-replica metric, and the metric's current value (the average, or the
        utilization in percent of the requests when `requests` is given)."""
        unready, missing, ignored = self._group(pods, metrics, resource, now)
        known = {p.name for p in pods}
        values = {n: m.value for n, m in metrics.items() if n in known and n not in unready | ignored}
        if not values:
            raise MetricError(
                "FailedGetResourceMetric" if resource else "FailedGetPodsMetric",
                "did not receive metrics for targeted pods (pods might be unready)",
            )

        def ratio_of(vals: dict[str, float]) -> tuple[float, float]:
            if requests is not None:
                utilization = sum(vals.values()) * 100 / sum(requests[n] for n in vals)
                return utilization / target, utilization
            average = sum(vals.values()) / len(vals)
            return average / target, average

        ratio, shown = ratio_of(values)
        up_with_unready = bool(unready) and ratio > 1.0
        if not up_with_unready and not missing:
            if self._within(ratio):
                return current, shown
            return math.ceil(ratio * len(values)), shown
        if missing:
            if ratio < 1.0:  # scaling down: a replica without a metric counts as using its whole target
                for name in missing:
                    values[name] = (
                        requests[name] * max(100.0, target) / 100 if requests is not None else target
                    )
            elif ratio > 1.0:  # scaling up: as using nothing
                for name in missing:
                    values[name] = 0.0
        if up_with_unready:
            for name in unready:
                values[name] = 0.0
        new_ratio, _ = ratio_of(values)
        if self._within(new_ratio) or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
            return current, shown
        proposed = math.ceil(new_ratio * len(values))
        if (new_ratio < 1.0 and proposed > current) or (new_ratio > 1.0 and proposed < current):
            return current, shown
        return proposed, shown

    def value(self, current: int, ready: int, usage: float, target: float) -> int:
        """An Object/External metric with a Value target: the ratio applied to the ready replicas."""
        ratio = usage / target
        if current == 0:
            return math.ceil(ratio)
        if self._within(ratio):
            return current
        if ready == 0:
            raise MetricError("FailedGetObjectMetric", "no ready replicas to scale from")
        return math.ceil(ratio * ready)

    def average_value(self, current: int, usage: float, target: float) -> int:
        """An Object/External metric with an AverageValue target: usage shared over replicas."""
        if current and self._within(usage / (target * current)):
            return current
        return math.ceil(usage / target)


@dataclass
class Behavior:
    """The memory of one HPA: recent recommendations and scale events (kept by the controller,
    as Kubernetes keeps them, in memory)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    ups: list[tuple[float, int]] = field(default_factory=list)
    downs: list[tuple[float, int]] = field(default_factory=list)

    @staticmethod
    def rules(spec: Obj, direction: str) -> Obj:
        given = ((spec.get("behavior") or {}).get(direction)) or {}
        default = DEFAULT_RULES[direction]
        return {
            "stabilizationWindowSeconds": given.get("stabilizationWindowSeconds")
            if given.get("stabilizationWindowSeconds") is not None
            else default["stabilizationWindowSeconds"],
            "selectPolicy": given.get("selectPolicy") or "Max",
            "policies": given.get("policies") or default["policies"],
        }

    def stabilize(self, spec: Obj, current: int, desired: int, now: float) -> int:
        up_cutoff = now - self.rules(spec, "scaleUp")["stabilizationWindowSeconds"]
        down_cutoff = now - self.rules(spec, "scaleDown")["stabilizationWindowSeconds"]
        up, down = desired, desired
        for at, replicas in self.recommendations:
            if at > up_cutoff:
                up = min(up, replicas)
            if at > down_cutoff:
                down = max(down, replicas)
        self.recommendations = [(at, r) for at, r in self.recommendations if at > min(up_cutoff, down_cutoff)]
        self.recommendations.append((now, desired))
        return min(max(current, up), down)

    @staticmethod
    def _changed(events: list[tuple[float, int]], period: float, now: float) -> int:
        return sum(change for at, change in events if at > now - period)

    def up_limit(self, spec: Obj, current: int, now: float) -> int:
        return self._rate_limit(spec, "scaleUp", current, now)

    def down_limit(self, spec: Obj, current: int, now: float) -> int:
        return self._rate_limit(spec, "scaleDown", current, now)

    def _rate_limit(self, spec: Obj, direction: str, current: int, now: float) -> int:
        """The most (scaleUp) or fewest (scaleDown) replicas the policies allow now: each policy
        counts from the replicas there were when its period began."""
        rules = self.rules(spec, direction)
        if rules["selectPolicy"] == "Disabled":
            return current
        up = direction == "scaleUp"
        proposals = []
        for policy in rules["policies"]:
            period = policy["periodSeconds"]
            start = current - self._changed(self.ups, period, now) + self._changed(self.downs, period, now)
            if policy["type"] == "Pods":
                proposals.append(start + policy["value"] if up else start - policy["value"])
            elif up:
                proposals.append(math.ceil(start * (1 + policy["value"] / 100)))
            else:
                proposals.append(int(start * (1 - policy["value"] / 100)))
        # Max: the policy allowing the biggest change; Min: the smallest.
        biggest = max(proposals) if up else min(proposals)
        smallest = min(proposals) if up else max(proposals)
        return int(smallest if rules["selectPolicy"] == "Min" else biggest)

    def limit(self, spec: Obj, current: int, desired: int, now: float) -> tuple[int, str, str]:
        """The rate policies and min/max: (replicas, ScalingLimited reason, message)."""
        low, high = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
        if desired > current:
            ceiling = max(self.up_limit(spec, current, now), current)
            if high > ceiling:
                high, reason, message = (
                    ceiling,
                    "ScaleUpLimit",
                    ("the desired replica count is increasing faster than the maximum scale rate"),
                )
            else:
                reason, message = (
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            if desired > high:
                return high, reason, message
        elif desired < current:
            floor = min(self.down_limit(spec, current, now), current)
            if low < floor:
                low, reason, message = (
                    floor,
                    "ScaleDownLimit",
                    ("the desired replica count is decreasing faster than the maximum scale rate"),
                )
            else:
                reason, message = (
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            if desired < low:
                return low, reason, message
        return desired, "DesiredWithinRange", "the desired count is within the acceptable range"

    def record(self, current: int, desired: int, now: float) -> None:
        longest = 1800.0
        self.ups = [(at, c) for at, c in self.ups if at > now - longest]
        self.downs = [(at, c) for at, c in self.downs if at > now - longest]
        if desired > current:
            self.ups.append((now, desired - current))
        elif desired < current:
            self.downs.append((now, current - desired))


class Metrics(Protocol):
    def pod(self, key: str) -> dict[str, Any] | None: ...

    def query(self, promql: str) -> float: ...


class PodMetrics:
    """The collector's per-replica metrics, and Prometheus (PromQL) for Object/External metrics."""

    def __init__(self, collector: MetricsCollector, prometheus_url: str | None) -> None:
        self._collector = collector
        self._prometheus = prometheus_url

    def pod(self, key: str) -> dict[str, Any] | None:
        return self._collector.pod(key)

    def query(self, promql: str) -> float:
        if not self._prometheus:
            raise MetricError(
                "FailedGetExternalMetric",
                "no Prometheus to ask: start the control plane with --prometheus-url",
            )
        url = f"{self._prometheus.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                body = json.loads(answer.read())
        except (OSError, ValueError) as exc:
            raise MetricError("FailedGetExternalMetric", f"Prometheus at {self._prometheus}: {exc}") from None
        result = body.get("data", {}).get("result", [])
        if body.get("status") != "success" or not result:
            raise MetricError("FailedGetExternalMetric", f"Prometheus returned no value for {promql!r}")
        return float(sum(float(r["value"][1]) for r in result))


def _describe(metric: Obj) -> tuple[str, str]:
    """Kubernetes' name for a metric in events and conditions, and its key in our metrics."""
    kind = metric["type"]
    if kind == "Resource":
        res = metric["resource"]
        utilization = res["target"]["type"] == "Utilization"
        return f"{res['name']} resource" + (
            " utilization (percentage of request)" if utilization else ""
        ), res["name"]
    if kind == "Pods":
        return f"pods metric {metric['pods']['metric']['name']}", metric["pods"]["metric"]["name"]
    if kind == "Object":
        obj = metric["object"]
        return f"{obj['describedObject']['kind']} metric {obj['metric']['name']}", obj["metric"]["name"]
    return f"external metric {metric['external']['metric']['name']}", metric["external"]["metric"]["name"]


class Autoscaler:
    def __init__(
        self,
        store: ObjectStore,
        clock: Clock,
        recorder: Recorder,
        metrics: Metrics,
        sync_seconds: float = 15.0,
        history_dir: Path | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self._metrics = metrics
        self.sync_seconds = sync_seconds
        self._history = history_dir
        self._memory: dict[str, Behavior] = {}
        self._last: dict[str, float] = {}

    def sync_all(self) -> None:
        hpas, _ = self._store.list_kind("HorizontalPodAutoscaler")
        now = self._clock.monotonic()
        keys = set()
        for hpa in hpas:
            key = f"{hpa['metadata']['namespace']}.{hpa['metadata']['name']}"
            keys.add(key)
            if now - self._last.get(key, -1e18) < self.sync_seconds:
                continue
            self._last[key] = now
            self.sync(hpa)
        for key in set(self._memory) - keys:
            del self._memory[key]

    # -- one HPA --

    def sync(self, hpa: Obj) -> None:
        spec, meta = hpa["spec"], hpa["metadata"]
        key = f"{meta['namespace']}.{meta['name']}"
        behavior = self._memory.setdefault(key, Behavior())
        old = hpa.get("status", {}).get("conditions", [])
        now_wall = self._clock.now()
        stamp = iso(now_wall)
        ref = spec["scaleTargetRef"]
        target = self._store.get("Deployment", meta["namespace"], ref["name"])
        status: Obj = {
            "observedGeneration": meta["generation"],
            "currentMetrics": [],
            "lastScaleTime": hpa.get("status", {}).get("lastScaleTime"),
        }
        if target is None:
            message = f'deployments "{ref["name"]}" not found'
            self._events.event(hpa, "Warning", "FailedGetScale", message)
            status.update(
                currentReplicas=0,
                desiredReplicas=0,
                conditions=[
                    condition(
                        old,
                        "AbleToScale",
                        "False",
                        "FailedGetScale",
                        f"the HPA controller was unable to get the target's current scale: {message}",
                        stamp,
                    ),
                ],
            )
            self._write(hpa, status, None)
            return
        current = int(target["spec"]["replicas"])
        low, high = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
        able = condition(
            old,
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            stamp,
        )
        status.update(currentReplicas=current, desiredReplicas=current)
        if current == 0 and low > 0:
            status["conditions"] = [
                able,
                condition(
                    old,
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                    stamp,
                ),
            ]
            self._write(hpa, status, None)
            return
        limited = condition(
            old,
            "ScalingLimited",
            "False",
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
            stamp,
        )
        observed: dict[str, float] = {}
        if current > high or current < low:
            desired = high if current > high else low
            rescale_reason = f"Current number of replicas {'above' if current > high else 'below'} Spec." + (
                "MaxReplicas" if current > high else "MinReplicas"
            )
            active = condition(
                old,
                "ScalingActive",
                "True",
                "ValidMetricFound",
                "the HPA was able to successfully calculate a replica count",
                stamp,
            )
        else:
            pods = self._pods(target)
            proposals: list[tuple[int, str]] = []
            failed: MetricError | None = None
            for metric in spec["metrics"]:
                name, _ = _describe(metric)
                try:
                    replicas, current_status, value = self._replicas_for(
                        spec, metric, current, pods, now_wall
                    )
                except MetricError as exc:
                    failed = exc
                    self._events.event(hpa, "Warning", exc.reason, f"unable to get {name}: {exc.message}")
                    continue
                proposals.append((replicas, name))
                status["currentMetrics"].append(current_status)
                observed[name] = value
            if not proposals:
                assert failed is not None
                status["conditions"] = [
                    able,
                    condition(
                        old,
                        "ScalingActive",
                        "False",
                        failed.reason,
                        f"the HPA was unable to compute the replica count: {failed.message}",
                        stamp,
                    ),
                    limited,
                ]
                self._write(hpa, status, observed)
                return
            metric_desired, metric_name = max(proposals)
            if failed is not None and metric_desired < current:
                metric_desired = current  # some metric is unknown: never scale down on part of the picture
            active = condition(
                old,
                "ScalingActive",
                "True",
                "ValidMetricFound",
                f"the HPA was able to successfully calculate a replica count from {metric_name}",
                stamp,
            )
            stabilized = behavior.stabilize(spec, current, metric_desired, self._clock.monotonic())
            if stabilized != metric_desired:
                up = stabilized < metric_desired
                able = condition(
                    old,
                    "AbleToScale",
                    "True",
                    "ScaleUpStabilized" if up else "ScaleDownStabilized",
                    f"recent recommendations were {'lower' if up else 'higher'} than current one, "
                    f"applying the {'lowest' if up else 'highest'} recent recommendation",
                    stamp,
                )
            else:
                able = condition(
                    old,
                    "AbleToScale",
                    "True",
                    "ReadyForNewScale",
                    "recommended size matches current size",
                    stamp,
                )
            desired, reason, message = behavior.limit(spec, current, stabilized, self._clock.monotonic())
            limited = condition(
                old, "ScalingLimited", "True" if desired != stabilized else "False", reason, message, stamp
            )
            rescale_reason = (
                f"{metric_name} above target" if desired > current else "All metrics below target"
            )
        status["desiredReplicas"] = desired
        if desired != current:
            target["spec"]["replicas"] = desired
            try:
                self._store.update(target)  # with the resourceVersion read: a person's change wins
            except ModelportError as exc:
                able = condition(
                    old,
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {exc.message}",
                    stamp,
                )
                self._events.event(
                    hpa, "Warning", "FailedRescale", f"New size: {desired}; error: {exc.message}"
                )
            else:
                behavior.record(current, desired, self._clock.monotonic())
                status["lastScaleTime"] = stamp
                able = condition(
                    old,
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    f"the HPA controller was able to update the target scale to {desired}",
                    stamp,
                )
                self._events.event(
                    hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {rescale_reason}"
                )
        status["conditions"] = [able, active, limited]
        self._write(hpa, status, observed)

    def _pods(self, deployment: Obj) -> list[tuple[PodState, Obj]]:
        selector = deployment["spec"]["selector"]["matchLabels"]
        pods, _ = self._store.list_kind("Pod", deployment["metadata"]["namespace"])
        out = []
        for pod in pods:
            if not selects(selector, pod["metadata"].get("labels", {})):
                continue
            st = pod.get("status", {})
            start = parse_iso(st["startTime"]) if st.get("startTime") else None
            transition = parse_iso(st["readySince"]) if st.get("readySince") else start
            out.append(
                (
                    PodState(
                        pod["metadata"]["name"],
                        bool(st.get("ready")),
                        st.get("phase") != "Running",
                        terminating(pod),
                        start,
                        transition,
                    ),
                    pod,
                )
            )
        return out

    def _replicas_for(
        self, spec: Obj, metric: Obj, current: int, pods: list[tuple[PodState, Obj]], now: float
    ) -> tuple[int, Obj, float]:
        """(replicas proposed, the currentMetrics entry, the value shown) for one metric."""
        kind, (_, key) = metric["type"], _describe(metric)
        behavior = spec.get("behavior") or {}
        up, down = ((behavior.get(d) or {}).get("tolerance") for d in ("scaleUp", "scaleDown"))
        calculator = ReplicaCalculator(TOLERANCE if up is None else up, down)
        states = [state for state, _ in pods]
        if kind in ("Resource", "Pods"):
            source = metric["resource"] if kind == "Resource" else metric["pods"]
            target_spec = source["target"]
            samples: dict[str, PodMetric] = {}
            measured = False  # some replica has metrics (if none has this one, it is not exported)
            for state, pod in pods:
                found = self._metrics.pod(f"{pod['metadata']['namespace']}.{state.name}")
                measured = measured or found is not None
                if found is not None and key in found:
                    samples[state.name] = PodMetric(float(found[key]), found["timestamp"], found["window"])
            if not samples and measured:
                raise MetricError(
                    "FailedGetPodsMetric" if kind == "Pods" else "FailedGetResourceMetric",
                    f"no replica exports the metric {key!r}",
                )
            resource = key if kind == "Resource" else None
            if target_spec["type"] == "Utilization":
                requests = {}
                for state, pod in pods:
                    asked = ((pod["spec"].get("resources") or {}).get("requests") or {}).get(key)
                    if asked is None:
                        raise MetricError(
                            "FailedGetResourceMetric", f"missing request for {key} in replica {state.name}"
                        )
                    requests[state.name] = quantity(asked)
                replicas, shown = calculator.per_pod(
                    current,
                    states,
                    samples,
                    float(target_spec["averageUtilization"]),
                    now,
                    resource,
                    requests,
                )
                average = sum(s.value for s in samples.values()) / max(1, len(samples))
                entry = {"averageUtilization": round(shown), "averageValue": _quantity(key, average)}
            else:
                replicas, shown = calculator.per_pod(
                    current, states, samples, quantity(target_spec["averageValue"]), now, resource
                )
                entry = {"averageValue": _quantity(key, shown)}
            body = (
                {"name": key, "current": entry}
                if kind == "Resource"
                else {"metric": {"name": key}, "current": entry}
            )
            return replicas, {"type": kind, kind.lower(): body}, shown
        source = metric["object"] if kind == "Object" else metric["external"]
        usage = self._metrics.query(source["metric"]["query"])
        target_spec = source["target"]
        if target_spec["type"] == "Value":
            ready = sum(1 for s in states if s.ready and not s.deleting)
            replicas = calculator.value(current, ready, usage, quantity(target_spec["value"]))
            entry = {"value": f"{usage:g}"}
        else:
            replicas = calculator.average_value(current, usage, quantity(target_spec["averageValue"]))
            entry = {"averageValue": f"{usage / max(current, 1):g}"}
        return replicas, {"type": kind, kind.lower(): {"metric": {"name": key}, "current": entry}}, usage

    def _history_path(self, namespace: str, name: str) -> Path:
        assert self._history is not None
        return self._history / f"{namespace}.{name}.jsonl"

    def history(self, namespace: str, name: str) -> list[Obj]:
        """What an HPA saw and decided at each sync, oldest first (for `modelport plot`)."""
        if self._history is None or not self._history_path(namespace, name).exists():
            return []
        lines = self._history_path(namespace, name).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _write(self, hpa: Obj, status: Obj, observed: dict[str, float] | None) -> None:
        try:
            self._store.update_status({**hpa, "status": status})
        except ModelportError:
            return  # deleted meanwhile
        if self._history is not None and observed is not None:
            self._history.mkdir(parents=True, exist_ok=True)
            line = {
                "time": self._clock.now(),
                "currentReplicas": status["currentReplicas"],
                "desiredReplicas": status["desiredReplicas"],
                "metrics": observed,
            }
            path = self._history_path(hpa["metadata"]["namespace"], hpa["metadata"]["name"])
            with open(path, "a") as out:
                out.write(json.dumps(line) + "\n")
            if path.stat().st_size > HISTORY_BYTES:  # keep the newer half
                lines = path.read_text().splitlines(keepends=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(lines[len(lines) // 2 :]))
                tmp.replace(path)


def _quantity(key: str, value: float) -> str:
    if key == "cpu":
        return f"{round(value * 1000)}m"
    if key == "memory":
        return f"{round(value / 2**20)}Mi"
    return f"{value:.4g}"
