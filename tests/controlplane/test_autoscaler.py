"""The HorizontalPodAutoscaler's rules, table-driven, on a fake clock. Every expected replica
count is worked out by hand from Kubernetes' rules (the comment on each row shows the sum)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelport.controlplane.api import Api
from modelport.controlplane.autoscaler import (
    Autoscaler,
    Behavior,
    MetricError,
    PodMetric,
    PodState,
    ReplicaCalculator,
)
from modelport.controlplane.meta import Recorder, iso
from modelport.controlplane.store import ObjectStore
from modelport.errors import ModelportError
from modelport.spec import load_objects
from modelport.testing.clock import FakeClock

NOW = 10_000.0
calc = ReplicaCalculator()


def ready(name: str, started: float = NOW - 3600) -> PodState:
    return PodState(name, ready=True, start=started, transition=started + 5)


def sample(value: float) -> PodMetric:
    return PodMetric(value, timestamp=NOW, window=15)


# (name, pods, metrics, target, resource, requests, expected replicas)
PER_POD = [
    # 3 replicas at 90% of their CPU request, target 50%: 1.8 x 3 = 5.4 -> 6 (REFERENCE's worked check)
    ("cpu-up", 3, {"a": 0.9, "b": 0.9, "c": 0.9}, 50, "cpu", 1.0, 6),
    # 54% against 50%: ratio 1.08, inside the 0.1 tolerance -> unchanged
    ("tolerance", 3, {"a": 0.54, "b": 0.54, "c": 0.54}, 50, "cpu", 1.0, 3),
    # 30% against 50%: 0.6 x 3 = 1.8 -> 2
    ("cpu-down", 3, {"a": 0.3, "b": 0.3, "c": 0.3}, 50, "cpu", 1.0, 2),
    # requests per second, AverageValue 10: (30 + 30) / 2 = 30 -> 3.0 x 2 = 6
    ("rps-up", 2, {"a": 30.0, "b": 30.0}, 10, None, None, 6),
    # missing metric, scaling down: the missing replica counts as 100% of target;
    # 4 at 10% + 1 missing (100%): (40 + 100) / 5 = 28% -> 0.56 x 5 = 2.8 -> 3
    ("missing-down", 5, {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1}, 50, "cpu", 1.0, 3),
    # missing, scaling down, and the correction flips the direction: 2 at 10% + 2 missing at 100%:
    # (20 + 200) / 4 = 55% -> ratio 1.1 > 1 while the first ratio was 0.2 < 1 -> unchanged
    ("missing-flip", 4, {"a": 0.1, "b": 0.1}, 50, "cpu", 1.0, 4),
    # missing, scaling up: the missing replica counts as 0: (100 + 100 + 0) / 3 = 66.7% -> 1.33 x 3 -> 4
    ("missing-up", 3, {"a": 1.0, "b": 1.0}, 50, "cpu", 1.0, 4),
    # requests differ: utilization is sum(usage) / sum(requests): (0.5 + 0.5) / (0.5 + 1.5) = 50% -> unchanged
    ("requests-sum", 2, {"a": 0.5, "b": 0.5}, 50, "cpu", {"a": 0.5, "b": 1.5}, 2),
]


@pytest.mark.parametrize(
    ("name", "count", "metrics", "target", "resource", "requests", "expected"),
    PER_POD,
    ids=[row[0] for row in PER_POD],
)
def test_per_replica_metrics(
    name: str,
    count: int,
    metrics: dict[str, float],
    target: float,
    resource: str | None,
    requests: float | dict[str, float] | None,
    expected: int,
) -> None:
    pods = [ready(chr(ord("a") + i)) for i in range(count)]
    asked = (
        None
        if requests is None
        else (requests if isinstance(requests, dict) else {p.name: requests for p in pods})
    )
    replicas, _ = calc.per_pod(
        count, pods, {k: sample(v) for k, v in metrics.items()}, target, NOW, resource, asked
    )
    assert replicas == expected


def test_not_yet_ready_replicas_count_zero_on_a_cpu_scale_up_and_are_left_out_of_a_scale_down() -> None:
    starting = PodState("c", ready=False, start=NOW - 10, transition=NOW - 10)
    pods = [ready("a"), ready("b"), starting]
    requests = {"a": 1.0, "b": 1.0, "c": 1.0}
    # up: a, b at 100% of request, target 50 -> ratio 2; c counts 0: 200 / 3 = 66.7% -> 1.33 x 3 -> 4
    up = {"a": sample(1.0), "b": sample(1.0), "c": sample(1.0)}
    assert calc.per_pod(3, pods, up, 50, NOW, "cpu", requests)[0] == 4
    # down: a, b at 10% -> ratio 0.2 over the 2 ready ones -> 0.4 -> 1 (c's sample is ignored)
    down = {"a": sample(0.1), "b": sample(0.1), "c": sample(5.0)}
    assert calc.per_pod(3, pods, down, 50, NOW, "cpu", requests)[0] == 1
    # a sample taken partly before the replica got ready, within the CPU initialization period: unready
    fresh = PodState("c", ready=True, start=NOW - 60, transition=NOW - 5)
    assert calc.per_pod(3, [ready("a"), ready("b"), fresh], up, 50, NOW, "cpu", requests)[0] == 4
    # not CPU: a ready replica's metric counts however young it is: 3 x 100 / 50 -> 6
    assert calc.per_pod(3, [ready("a"), ready("b"), fresh], {k: sample(100) for k in "abc"}, 50, NOW)[0] == 6


def test_pending_and_deleting_replicas() -> None:
    pods = [ready("a"), PodState("b", ready=False, pending=True), PodState("c", ready=True, deleting=True)]
    metrics = {"a": sample(20.0), "c": sample(1000.0)}
    # only a counts: 20 / 10 = 2 x 1 = 2; b pending: counted as 0 on a scale-up: (20 + 0) / 2 = 10 -> 1.0
    assert calc.per_pod(3, pods, metrics, 10, NOW)[0] == 3  # new ratio 1.0 is inside the tolerance
    with pytest.raises(MetricError, match="did not receive metrics"):
        calc.per_pod(3, pods, {}, 10, NOW)


# (name, current, ready, usage, target, kind, expected)
OBJECT_EXTERNAL = [
    ("value-up", 2, 2, 300.0, 100.0, "Value", 6),  # 3.0 x 2 ready -> 6
    ("value-tolerance", 2, 2, 105.0, 100.0, "Value", 2),  # 1.05: unchanged
    ("value-from-zero", 0, 0, 250.0, 100.0, "Value", 3),  # ceil(2.5)
    ("average-up", 2, 2, 50.0, 10.0, "AverageValue", 5),  # 50 / 10 = 5
    ("average-tolerance", 5, 5, 52.0, 10.0, "AverageValue", 5),  # 52 / (10 x 5) = 1.04: unchanged
]


@pytest.mark.parametrize(
    ("name", "current", "ready_count", "usage", "target", "kind", "expected"),
    OBJECT_EXTERNAL,
    ids=[row[0] for row in OBJECT_EXTERNAL],
)
def test_object_and_external_metrics(
    name: str, current: int, ready_count: int, usage: float, target: float, kind: str, expected: int
) -> None:
    if kind == "Value":
        assert calc.value(current, ready_count, usage, target) == expected
    else:
        assert calc.average_value(current, usage, target) == expected


def _spec(**behavior: Any) -> dict[str, Any]:
    return {"minReplicas": 1, "maxReplicas": 100, "behavior": behavior or None}


def test_scale_up_rate_defaults_are_the_larger_of_4_pods_and_100_percent_per_15_s() -> None:
    b = Behavior()
    # 3 replicas want 10: the limit is max(3 + 4, 3 x 2) = 7 (REFERENCE's worked check)
    assert b.limit(_spec(), 3, 10, 0.0) == (
        7,
        "ScaleUpLimit",
        "the desired replica count is increasing faster than the maximum scale rate",
    )
    assert b.limit(_spec(), 3, 6, 0.0)[0] == 6
    b.record(3, 7, 0.0)
    # 5 s later, from 7: the period started at 3 -> max(3 + 4, 6) = 7: no more this period
    assert b.limit(_spec(), 7, 10, 5.0)[0] == 7
    # 16 s later, the period has moved on: max(7 + 4, 14) = 14 >= 10
    assert b.limit(_spec(), 7, 10, 16.0)[0] == 10


def test_scale_down_policies_as_in_the_kubernetes_documentation() -> None:
    spec = _spec(
        scaleDown={
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 10, "periodSeconds": 60},
            ]
        }
    )
    b = Behavior()
    # 80 replicas: Pods 76, Percent 72; selectPolicy Max = the bigger change -> 72
    assert b.limit(spec, 80, 10, 0.0)[0] == 72
    b.record(80, 72, 0.0)
    assert b.limit(spec, 72, 10, 30.0)[0] == 72  # within the 60 s period: nothing more
    # after the period: 10% of 72 = 7.2 -> 72 x 0.9 = 64.8 -> 64 (8 replicas), Pods: 68 -> 64
    assert b.limit(spec, 72, 10, 61.0) == (
        64,
        "ScaleDownLimit",
        "the desired replica count is decreasing faster than the maximum scale rate",
    )


def test_select_policy_min_and_disabled() -> None:
    up_min = _spec(
        scaleUp={
            "selectPolicy": "Min",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        }
    )
    assert Behavior().limit(up_min, 10, 50, 0.0)[0] == 14  # min(10 + 4, 20)
    down_off = _spec(scaleDown={"selectPolicy": "Disabled"})
    assert Behavior().limit(down_off, 10, 2, 0.0)[0] == 10
    up_off = _spec(scaleUp={"selectPolicy": "Disabled"})
    assert Behavior().limit(up_off, 10, 20, 0.0)[0] == 10


def test_clamped_to_min_and_max() -> None:
    spec = {"minReplicas": 2, "maxReplicas": 10}
    assert Behavior().limit(spec, 9, 30, 0.0) == (
        10,
        "TooManyReplicas",
        "the desired replica count is more than the maximum replica count",
    )
    assert Behavior().limit(spec, 3, 1, 0.0) == (
        2,
        "TooFewReplicas",
        "the desired replica count is less than the minimum replica count",
    )
    assert Behavior().limit(spec, 3, 5, 0.0)[1] == "DesiredWithinRange"


def test_stabilization_takes_the_highest_recent_recommendation_when_scaling_down() -> None:
    b = Behavior()
    spec = _spec()  # scale-down window 300 s, scale-up 0 s
    assert b.stabilize(spec, 5, 5, 0.0) == 5
    assert b.stabilize(spec, 5, 8, 10.0) == 8  # up: no window
    assert b.stabilize(spec, 8, 2, 100.0) == 8  # down: 8 was recommended 90 s ago
    assert b.stabilize(spec, 8, 3, 200.0) == 8
    assert b.stabilize(spec, 8, 3, 311.0) == 3  # 8 (at 10 s) is out of the window; 2 and 3 remain: 3
    short = _spec(scaleDown={"stabilizationWindowSeconds": 0})
    assert Behavior().stabilize(short, 8, 2, 0.0) == 2


# -- the controller, against objects in a store --


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(start=NOW)
        self.store = ObjectStore(tmp_path / "state.db")
        self.events = Recorder(self.store, self.clock, "test")
        self.api = Api(self.store, self.events, lambda: {}, lambda keep: None)
        self.values: dict[str, dict[str, Any]] = {}
        self.prometheus: float | Exception = 0.0
        self.autoscaler = Autoscaler(self.store, self.clock, self.events, self, sync_seconds=15)

    # the metrics source the controller reads
    def pod(self, key: str) -> dict[str, Any] | None:
        found = self.values.get(key.split(".", 1)[1])
        return None if found is None else {**found, "timestamp": self.clock.now(), "window": 15.0}

    def query(self, promql: str) -> float:
        if isinstance(self.prometheus, Exception):
            raise self.prometheus
        return self.prometheus

    def deploy(self, replicas: int, cpu_request: str | None = "1") -> None:
        resources = {"requests": {"cpu": cpu_request}} if cpu_request else {}
        (obj,) = load_objects(f"""
apiVersion: modelport/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{model: {{name: m, basePath: /m}}, resources: {resources}}}
""")
        self.api.create("Deployment", "default", obj.model_dump(by_alias=True, exclude_none=True))
        self.set_pods(replicas)

    def set_pods(self, count: int) -> None:
        for pod in self.store.list_kind("Pod")[0]:
            self.store.delete("Pod", "default", pod["metadata"]["name"])
        deployment = self.store.get("Deployment", "default", "web")
        assert deployment is not None
        for i in range(count):
            self.store.create(
                {
                    "apiVersion": "modelport/v1",
                    "kind": "Pod",
                    "metadata": {"name": f"web-{i}", "namespace": "default", "labels": {"app": "web"}},
                    "spec": deployment["spec"]["template"]["spec"],
                    "status": {
                        "phase": "Running",
                        "ready": True,
                        "startTime": iso(NOW - 3600),
                        "readySince": iso(NOW - 3590),
                    },
                }
            )

    def hpa(self, text: str) -> None:
        (obj,) = load_objects(
            "apiVersion: modelport/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n" + text
        )
        self.api.create(
            "HorizontalPodAutoscaler", "default", obj.model_dump(by_alias=True, exclude_none=True)
        )

    def replicas(self) -> int:
        found = self.store.get("Deployment", "default", "web")
        assert found is not None
        return int(found["spec"]["replicas"])

    def condition(self, type_: str) -> tuple[str, str]:
        hpa = self.store.get("HorizontalPodAutoscaler", "default", "web")
        assert hpa is not None
        found = next(c for c in hpa["status"]["conditions"] if c["type"] == type_)
        return found["status"], found["reason"]

    def sync(self, seconds: float = 15.0) -> None:
        self.clock.advance(seconds)
        self.autoscaler.sync_all()

    def messages(self) -> list[str]:
        return [e["message"] for e in self.store.list_kind("Event")[0]]


CPU_50 = """spec:
  scaleTargetRef: {kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_scales_up_then_down_after_the_window_with_events_and_conditions(world: World) -> None:
    world.deploy(3)
    world.hpa(CPU_50)
    world.values = {f"web-{i}": {"cpu": 0.9} for i in range(3)}
    world.sync()
    assert world.replicas() == 6  # 1.8 x 3 = 5.4 -> 6, within the up limit of 7
    assert world.condition("AbleToScale") == ("True", "SucceededRescale")
    assert world.condition("ScalingActive") == ("True", "ValidMetricFound")
    assert (
        "New size: 6; reason: cpu resource utilization (percentage of request) above target"
        in world.messages()
    )
    world.set_pods(6)
    world.values = {f"web-{i}": {"cpu": 0.05} for i in range(6)}  # load gone: 5% -> 0.1 x 6 = 0.6 -> 1
    world.sync()
    assert world.replicas() == 6 and world.condition("AbleToScale") == ("True", "ScaleDownStabilized")
    world.sync(290)  # 305 s after the recommendation of 6
    assert world.replicas() == 1
    assert "New size: 1; reason: All metrics below target" in world.messages()
    hpa = world.store.get("HorizontalPodAutoscaler", "default", "web")
    assert (
        hpa is not None
        and hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 5
    )


def test_several_metrics_take_the_largest_and_a_failing_one_blocks_scaling_down(world: World) -> None:
    world.deploy(4)
    world.hpa(
        CPU_50
        + """  - type: Pods
    pods: {metric: {name: requests_per_second}, target: {type: AverageValue, averageValue: "10"}}
"""
    )
    # cpu 25% -> 0.5 x 4 = 2; rps 25 -> 2.5 x 4 = 10: the largest (10) wins, limited to max 10
    world.values = {f"web-{i}": {"cpu": 0.25, "requests_per_second": 25.0} for i in range(4)}
    world.sync()
    assert world.replicas() == 8  # the up limit: max(4 + 4, 4 x 2) = 8
    assert world.condition("ScalingLimited") == ("True", "ScaleUpLimit")
    world.set_pods(8)
    # rps is no longer exported; cpu alone proposes a scale-down: not taken
    world.values = {f"web-{i}": {"cpu": 0.05} for i in range(8)}
    world.sync(400)
    assert world.replicas() == 8
    assert any("unable to get pods metric requests_per_second" in m for m in world.messages())


@pytest.mark.parametrize(
    ("case", "expected_reason"),
    [
        ("missing-target", "FailedGetScale"),
        ("no-export", "FailedGetPodsMetric"),
        ("prometheus-down", "FailedGetExternalMetric"),
        ("no-request", "FailedGetResourceMetric"),
        ("scaled-to-zero", "ScalingDisabled"),
    ],
)
def test_bad_input_is_a_condition_and_nothing_scales(world: World, case: str, expected_reason: str) -> None:
    world.deploy(0 if case == "scaled-to-zero" else 2, cpu_request=None if case == "no-request" else "1")
    world.values = {f"web-{i}": {"cpu": 0.9, "something_else": 1.0} for i in range(2)}
    metric = {
        "missing-target": CPU_50.replace("name: web", "name: nowhere"),
        "no-export": CPU_50.replace(
            """  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}""",
            """  - type: Pods
    pods: {metric: {name: requests_per_second}, target: {type: AverageValue, averageValue: "10"}}""",
        ),
        "prometheus-down": CPU_50.replace(
            """  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}""",
            """  - type: External
    external: {metric: {name: queue, query: sum(queue_depth)}, target: {type: Value, value: "100"}}""",
        ),
        "no-request": CPU_50,
        "scaled-to-zero": CPU_50,
    }[case]
    world.prometheus = MetricError("FailedGetExternalMetric", "Prometheus at http://127.0.0.1:1: refused")
    world.hpa(metric)
    world.sync()
    statuses = {c: world.condition(c) for c in ("AbleToScale", "ScalingActive") if _has(world, c)}
    assert expected_reason in {reason for _, reason in statuses.values()}
    assert all(status in ("True", "False") for status, _ in statuses.values())
    assert world.replicas() == (0 if case == "scaled-to-zero" else 2)


def _has(world: World, type_: str) -> bool:
    hpa = world.store.get("HorizontalPodAutoscaler", "default", "web")
    return hpa is not None and any(c["type"] == type_ for c in hpa["status"].get("conditions", []))


def test_external_metric_from_prometheus_scales(world: World) -> None:
    world.deploy(2)
    world.hpa("""spec:
  scaleTargetRef: {kind: Deployment, name: web}
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metric: {name: queue, query: sum(queue_depth)}
      target: {type: AverageValue, averageValue: "20"}
""")
    world.prometheus = 130.0  # 130 / 20 = 6.5 -> 7
    world.sync()
    assert world.replicas() == 6  # the up limit: max(2 + 4, 2 x 2) = 6


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "minReplicas: 5\n  maxReplicas: 2",
            "spec.maxReplicas: must be greater than or equal to `minReplicas` (5)",
        ),
        ("minReplicas: 0\n  maxReplicas: 2", "spec.minReplicas: must be greater than or equal to 1"),
        (
            "maxReplicas: 2\n  metrics:\n  - type: Resource\n    resource: {name: cpu, "
            "target: {type: Utilization, "
            "averageUtilization: 0}}",
            "spec.metrics[0].resource.target.averageUtilization: must be greater than 0",
        ),
        (
            "maxReplicas: 2\n  metrics:\n  - type: Pods\n    pods: {metric: {name: rps}, "
            "target: {type: AverageValue, "
            "averageValue: '-5'}}",
            "spec.metrics[0].pods.target.averageValue: not a quantity: '-5'",
        ),
        (
            "maxReplicas: 2\n  metrics:\n  - type: Pods\n    resource: {name: cpu, "
            "target: {type: Utilization, "
            "averageUtilization: 50}}",
            "spec.metrics[0].pods: must be set when type is Pods",
        ),
    ],
)
def test_invalid_autoscalers_are_refused_with_the_field_named(spec: str, message: str) -> None:
    text = (
        "apiVersion: modelport/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n"
        "  scaleTargetRef: {kind: Deployment, name: web}\n  " + spec + "\n"
    )
    if "metrics" not in spec:
        text += CPU_50[CPU_50.index("  metrics:") :]
    with pytest.raises(ModelportError) as caught:
        load_objects(text)
    assert message in caught.value.message


def test_tolerance_per_direction() -> None:
    pods = [ready(n) for n in "abc"]
    requests = {n: 1.0 for n in "abc"}
    hot = {n: sample(0.7) for n in "abc"}  # 70% / 50% = 1.4
    assert ReplicaCalculator().per_pod(3, pods, hot, 50, NOW, "cpu", requests)[0] == 5  # ceil(4.2)
    assert (
        ReplicaCalculator(0.5).per_pod(3, pods, hot, 50, NOW, "cpu", requests)[0] == 3
    )  # scaleUp tolerance 0.5
    cold = {n: sample(0.3) for n in "abc"}  # 0.6
    assert ReplicaCalculator(0.1, 0.5).per_pod(3, pods, cold, 50, NOW, "cpu", requests)[0] == 3
    assert ReplicaCalculator(0.5, 0.1).per_pod(3, pods, cold, 50, NOW, "cpu", requests)[0] == 2  # ceil(1.8)
