"""The HorizontalPodAutoscaler controller against objects in a store, on a fake clock: it reads,
decides (`scale_decision`, `replica_calculator`, `stabilization`, each tested on its own) and
writes the scale, the status, conditions and events. Every expected replica count is worked out
by hand from Kubernetes' rules (the comment on each row shows the sum)."""

from __future__ import annotations

import timeit
from pathlib import Path
from typing import Any

import pytest

from modelport.controlplane.api import Api
from modelport.controlplane.autoscaler import Autoscaler, MetricError
from modelport.controlplane.meta import Recorder, iso
from modelport.controlplane.store import ObjectStore
from modelport.errors import Code, ModelportError
from modelport.spec import HorizontalPodAutoscaler, load_objects
from modelport.testing.clock import FakeClock

NOW = 10_000.0


class Store(ObjectStore):
    """The store, refusing Deployment writes while `refuse` says why (a conflicting writer)."""

    refuse: str | None = None

    def update(self, obj: dict[str, Any], status_only: bool = False) -> dict[str, Any]:
        if self.refuse and obj["kind"] == "Deployment" and not status_only:
            raise ModelportError(Code.ABORTED, self.refuse)
        return super().update(obj, status_only)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(start=NOW)
        self.store = Store(tmp_path / "state.db")
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
        # the Deployment controller's count of the replicas that exist (the scale's status.replicas)
        self.store.update_status({**deployment, "status": {"replicas": count}})

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

    def status(self) -> dict[str, Any]:
        hpa = self.store.get("HorizontalPodAutoscaler", "default", "web")
        assert hpa is not None
        return dict(hpa["status"])


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
    ("case", "condition", "expected_reason"),
    [
        ("missing-target", "AbleToScale", "FailedGetScale"),
        ("no-export", "ScalingActive", "FailedGetPodsMetric"),
        ("prometheus-down", "ScalingActive", "FailedGetExternalMetric"),
        ("no-request", "ScalingActive", "FailedGetResourceMetric"),
        ("scaled-to-zero", "ScalingActive", "ScalingDisabled"),
    ],
)
def test_bad_input_is_a_condition_and_nothing_scales(
    world: World, case: str, condition: str, expected_reason: str
) -> None:
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
    assert world.condition(condition) == ("False", expected_reason)
    if condition == "ScalingActive":  # the target was read: only the metrics failed
        assert world.condition("AbleToScale") == ("True", "SucceededGetScale")
    else:  # no target, so nothing about metrics to say yet
        assert not _has(world, "ScalingActive")
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
    assert world.replicas() == 4  # no behavior: the up limit is max(2 x 2, 4) = 4
    assert world.condition("ScalingLimited") == ("True", "ScaleUpLimit")


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


def test_without_behavior_a_scale_up_goes_to_at_most_twice_current_or_4(world: World) -> None:
    """Kubernetes' older path (normalizeDesiredReplicas): 3 replicas at 150% of their CPU request,
    target 50%: 3.0 x 3 = 9, limited to max(2 x 3, 4) = 6 (the behavior defaults would give 7)."""
    world.deploy(3)
    world.hpa(CPU_50)
    world.values = {f"web-{i}": {"cpu": 1.5} for i in range(3)}
    world.sync()
    assert world.replicas() == 6
    assert world.condition("ScalingLimited") == ("True", "ScaleUpLimit")
    world.set_pods(6)  # the next round: from 6 up to max(12, 4), here the 10 of maxReplicas
    world.values = {f"web-{i}": {"cpu": 1.5} for i in range(6)}
    world.sync()
    assert world.replicas() == 10
    assert world.condition("ScalingLimited") == ("True", "TooManyReplicas")


def test_with_a_partial_behavior_the_missing_direction_has_its_defaults(world: World) -> None:
    """`behavior.scaleDown` alone: scale-up follows the default policies, max(3 + 4, 2 x 3) = 7."""
    world.deploy(3)
    world.hpa(CPU_50 + "  behavior:\n    scaleDown: {stabilizationWindowSeconds: 60}\n")
    world.values = {f"web-{i}": {"cpu": 1.5} for i in range(3)}
    world.sync()
    assert world.replicas() == 7


EXTERNAL_TOO = """  - type: External
    external: {metric: {name: queue, query: sum(queue_depth)}, target: {type: Value, value: "100"}}
"""


def test_a_metric_that_fails_while_the_others_propose_fewer_replicas_stops_scaling(world: World) -> None:
    """computeReplicasForMetrics: Prometheus down, CPU at 10% proposes 1 of 4: no scaling,
    ScalingActive False with the failed metric's reason, desiredReplicas as it was."""
    world.deploy(4)
    world.hpa(CPU_50 + EXTERNAL_TOO)
    world.values = {f"web-{i}": {"cpu": 0.5} for i in range(4)}  # on target
    world.prometheus = 400.0  # 4.0 x 4 ready -> 16, limited to max(8, 4) = 8
    world.sync()
    assert world.replicas() == 8
    world.set_pods(8)
    world.values = {f"web-{i}": {"cpu": 0.1} for i in range(8)}
    world.prometheus = MetricError("FailedGetExternalMetric", "Prometheus at http://127.0.0.1:1: refused")
    world.sync(400)
    assert world.replicas() == 8
    assert world.condition("ScalingActive") == ("False", "FailedGetExternalMetric")
    assert world.status()["desiredReplicas"] == 8
    assert any(
        m.startswith("invalid metrics (1 invalid out of 2), first error is:") for m in world.messages()
    )


def test_a_metric_that_fails_while_the_others_propose_more_replicas_scales_up(world: World) -> None:
    world.deploy(2)
    world.hpa(CPU_50 + EXTERNAL_TOO)
    world.values = {f"web-{i}": {"cpu": 1.0} for i in range(2)}  # 100% of 50%: 2.0 x 2 = 4
    world.prometheus = MetricError("FailedGetExternalMetric", "Prometheus at http://127.0.0.1:1: refused")
    world.sync()
    assert world.replicas() == 4
    assert world.condition("ScalingActive") == ("True", "ValidMetricFound")


def test_a_scale_up_tolerance_leaves_scale_down_at_the_default(world: World) -> None:
    """behavior.scaleUp.tolerance 0.5 only: 30% of 50% (0.6) is outside scale-down's 0.1."""
    world.deploy(3)
    world.hpa(
        CPU_50
        + "  behavior:\n    scaleUp: {tolerance: 0.5}\n    scaleDown: {stabilizationWindowSeconds: 0}\n"
    )
    world.values = {f"web-{i}": {"cpu": 0.6} for i in range(3)}  # 1.2: inside scale-up's 0.5
    world.sync()
    assert world.replicas() == 3
    world.values = {f"web-{i}": {"cpu": 0.3} for i in range(3)}  # 0.6 x 3 = 1.8 -> 2
    world.sync()
    assert world.replicas() == 2


def test_outside_min_and_max_goes_straight_to_the_bound_without_reading_metrics(world: World) -> None:
    """TestTooManyReplicas: a new HPA gets AbleToScale only; no metric is read or reported."""
    world.deploy(12)
    world.hpa(CPU_50)
    world.sync()
    assert world.replicas() == 10
    status = world.status()
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [("AbleToScale", "SucceededRescale")]
    assert status["currentMetrics"] == [] and status["desiredReplicas"] == 10
    assert "New size: 10; reason: Current number of replicas above Spec.MaxReplicas" in world.messages()


def test_a_refused_scale_keeps_the_desired_count_and_says_why(world: World) -> None:
    """TestConditionFailedUpdateScale: AbleToScale False FailedUpdateScale; lastScaleTime unset."""
    world.deploy(3)
    world.hpa(CPU_50)
    world.values = {f"web-{i}": {"cpu": 0.9} for i in range(3)}
    world.store.refuse = "the object has been modified"
    world.sync()
    assert world.replicas() == 3
    assert world.condition("AbleToScale") == ("False", "FailedUpdateScale")
    assert world.status()["desiredReplicas"] == 0 and world.status()["lastScaleTime"] is None
    assert (
        "New size: 6; reason: cpu resource utilization (percentage of request) above target; "
        "error: the object has been modified" in world.messages()
    )
    world.store.refuse = None
    world.sync()
    assert world.replicas() == 6
    assert world.status()["lastScaleTime"] == iso(NOW + 30)


def test_a_missing_target_leaves_the_rest_of_the_status_as_it_was(world: World) -> None:
    world.deploy(3)
    world.hpa(CPU_50)
    world.values = {f"web-{i}": {"cpu": 0.5} for i in range(3)}
    world.sync()
    world.store.delete("Deployment", "default", "web")
    world.sync()
    status = world.status()
    assert world.condition("AbleToScale") == ("False", "FailedGetScale")
    assert world.condition("ScalingActive") == ("True", "ValidMetricFound")
    assert (status["currentReplicas"], status["desiredReplicas"]) == (3, 3)


def test_parsing_the_stored_hpa_gives_the_controller_its_typed_spec(world: World) -> None:
    """The controller reads the HPA through spec.HorizontalPodAutoscaler; what that costs per
    round is printed (`pytest -s`), not asserted (timing belongs in benchmarks)."""
    world.deploy(3)
    world.hpa(CPU_50 + EXTERNAL_TOO + "  behavior:\n    scaleDown: {stabilizationWindowSeconds: 60}\n")
    world.values = {f"web-{i}": {"cpu": 0.9} for i in range(3)}
    world.sync()
    stored = world.store.get("HorizontalPodAutoscaler", "default", "web")
    assert stored is not None and len(stored["status"]["conditions"]) == 3
    parsed = HorizontalPodAutoscaler.model_validate(stored)
    assert parsed.spec.behavior is not None and parsed.spec.behavior.scale_down is not None
    assert parsed.spec.behavior.scale_down.stabilization_window_seconds == 60
    rounds = 2000
    seconds = timeit.timeit(lambda: HorizontalPodAutoscaler.model_validate(stored), number=rounds)
    print(f"parsing one stored HPA: {seconds / rounds * 1e6:.1f} µs")


def test_a_replica_that_was_ready_and_lost_readiness_counts_with_its_cpu(world: World) -> None:
    """Kubernetes' groupPods: past the CPU initialization period, a not-ready pod is set aside only
    if its readiness last changed within 30 s of its start (it never became ready); one that was
    ready for an hour and lost readiness 60 s ago is counted with its usage. The kubelet's
    `readyTransitionTime` tells the two apart; `readySince` alone (gone once unready) cannot."""
    world.deploy(3)
    world.hpa(CPU_50)
    pod = world.store.get("Pod", "default", "web-2")
    assert pod is not None
    status = {k: v for k, v in pod["status"].items() if k != "readySince"}  # as the kubelet writes it
    world.store.update_status(
        {**pod, "status": {**status, "ready": False, "readyTransitionTime": iso(NOW - 60)}}
    )
    world.values = {f"web-{i}": {"cpu": 0.9} for i in range(3)}
    world.sync()
    # counted: 3 x 90% / 50% = 5.4 -> 6 (at the no-behavior limit max(2 x 3, 4) = 6). Set aside as
    # unready it would be 0 on a scale-up: (90 + 90 + 0) / 3 = 60% -> 1.2 x 3 = 3.6 -> 4.
    assert world.replicas() == 6
