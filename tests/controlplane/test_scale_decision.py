"""One HPA round decided (`compute_scale`), pure. Rows named `Test...` are ported from Kubernetes'
`pkg/controller/podautoscaler/horizontal_test.go`, with the conditions it expects after the round
(a successful rescale adds AbleToScale SucceededRescale, as the controller does). Its tests raise
scaleUpLimitFactor to 8; where that matters here, the row says what the default 2 gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelport.controlplane.autoscaler import set_conditions
from modelport.controlplane.replica_calculator import MetricError, PodMetric, PodState
from modelport.controlplane.scale_decision import Condition, Reading, Scale, ScaleDecision, compute_scale
from modelport.controlplane.stabilization import History, Recommendation
from modelport.spec import HPASpec

NOW, WALL = 100_000.0, 1_000_000.0
STARTED = History(recommendations=())  # Kubernetes' tests' `recommendations: []`: no first-round size


def cpu(target: int) -> dict[str, Any]:
    utilization = {"type": "Utilization", "averageUtilization": target}
    return {"type": "Resource", "resource": {"name": "cpu", "target": utilization}}


QPS = {
    "type": "Pods",
    "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "15"}},
}
EXTERNAL = {"type": "External", "external": {"metric": {"name": "qps", "query": "sum(qps)"},
                                             "target": {"type": "Value", "value": "100m"}}}  # fmt: skip
OBJECT = {"type": "Object", "object": {"describedObject": {"kind": "Deployment", "name": "some-deployment"},
                                       "metric": {"name": "qps", "query": "sum(qps)"},
                                       "target": {"type": "Value", "value": "15"}}}  # fmt: skip
OK = [("AbleToScale", "True", "SucceededRescale"), ("ScalingActive", "True", "ValidMetricFound"),
      ("ScalingLimited", "False", "DesiredWithinRange")]  # fmt: skip


def ok(**overrides: tuple[str, str]) -> list[tuple[str, str, str]]:
    """Kubernetes' statusOkWithOverrides: `AbleToScale=("True", "ReadyForNewScale")`."""
    return [(t, *overrides[t]) if t in overrides else (t, s, r) for t, s, r in OK]


@dataclass
class Case:
    name: str
    low: int
    high: int
    current: int
    metrics: list[dict[str, Any]]
    desired: int
    conditions: list[tuple[str, str, str]] = field(default_factory=lambda: OK)
    levels: list[int] = field(default_factory=list)  # per replica, milli (CPU and Pods metrics)
    requests: list[int] | None = None  # CPU per replica, milli; one replica each (default 1000m each)
    pods: int | None = None  # replicas that exist (default: one per request, or `current`)
    failing: tuple[int, ...] = ()  # metrics whose reading fails
    behavior: dict[str, Any] | None = None
    history: History = field(default_factory=History)
    value: int = 0  # Object/External readings, milli


def decide(case: Case, previous_desired: int | None = None) -> ScaleDecision:
    spec = HPASpec.model_validate(
        {"scaleTargetRef": {"name": "web"}, "minReplicas": case.low, "maxReplicas": case.high,
         "metrics": case.metrics, "behavior": case.behavior}
    )  # fmt: skip
    count = case.pods or (len(case.requests) if case.requests is not None else case.current)
    pods = tuple(PodState(f"p{i}", True, start=WALL - 3600, transition=WALL - 3600) for i in range(count))
    requests = {f"p{i}": {"cpu": (case.requests or [1000] * count)[i]} for i in range(count)}
    if case.requests == []:
        requests = {}
    samples = {f"p{i}": PodMetric(level, WALL, 60) for i, level in enumerate(case.levels)}
    readings = [
        Reading(error=MetricError("", "something went wrong")) if i in case.failing
        else Reading(samples=samples) if m["type"] in ("Resource", "Pods") else Reading(value=case.value)
        for i, m in enumerate(case.metrics)
    ]  # fmt: skip
    scale = Scale(case.current, count, pods, requests)
    previous = case.current if previous_desired is None else previous_desired
    return compute_scale(spec, scale, readings, case.history, previous, NOW, WALL)


def after(decision: ScaleDecision) -> list[tuple[str, str, str]]:
    """The conditions after the round, a rescale succeeding."""
    done = (Condition("AbleToScale", "True", "SucceededRescale", ""),) if decision.rescale else ()
    return [
        (c["type"], c["status"], c["reason"]) for c in set_conditions([], decision.conditions + done, "t")
    ]


GOT_SCALE = ("AbleToScale", "True", "SucceededGetScale")
CASES = [
    Case("TestScaleUpRCImmediately", 2, 6, 1, [cpu(50)], 2, [("AbleToScale", "True", "SucceededRescale")],
         levels=[0] * 4, requests=[1000] * 4),
    Case("TestScaleDownRCImmediately", 2, 5, 6, [cpu(50)], 5, [("AbleToScale", "True", "SucceededRescale")],
         levels=[8000, 9500, 1000], requests=[900, 1000, 1100]),
    Case("TestTooFewReplicas", 3, 5, 2, [cpu(90)], 3, [("AbleToScale", "True", "SucceededRescale")]),
    Case("TestTooManyReplicas", 3, 5, 10, [cpu(90)], 5, [("AbleToScale", "True", "SucceededRescale")]),
    Case("TestZeroReplicas", 3, 5, 0, [cpu(90)], 0,
         [GOT_SCALE, ("ScalingActive", "False", "ScalingDisabled")]),
    # 115 * 100 // 3000 = 3% of 90% -> ceil(0.1) = 1 < min 2
    Case("TestMinReplicas", 2, 5, 3, [cpu(90)], 2, ok(ScalingLimited=("True", "TooFewReplicas")),
         levels=[10, 95, 10], requests=[900, 1000, 1100], history=STARTED),
    Case("TestMinReplicasDesiredZero", 2, 5, 3, [cpu(90)], 2, ok(ScalingLimited=("True", "TooFewReplicas")),
         levels=[0, 0, 0], requests=[900, 1000, 1100], history=STARTED),
    # 616% of 90% -> 21; max(2 x 3, 4) = 6 > 5 (with Kubernetes' test factor 8: 24): TooManyReplicas
    Case("TestMaxReplicas", 2, 5, 3, [cpu(90)], 5, ok(ScalingLimited=("True", "TooManyReplicas")),
         levels=[8000, 9500, 1000], requests=[900, 1000, 1100]),
    Case("TestSuperfluousMetrics", 2, 6, 4, [cpu(100)], 6, ok(ScalingLimited=("True", "TooManyReplicas")),
         levels=[4000, 9500, 3000, 7000, 3200, 2000], requests=[1000] * 4),
    Case("TestMissingMetrics", 2, 6, 4, [cpu(100)], 3, levels=[400, 95], requests=[1000] * 4,
         history=STARTED),
    Case("TestEmptyMetrics", 2, 6, 4, [cpu(100)], 4, [GOT_SCALE, ("ScalingActive", "False",
         "FailedGetResourceMetric")], requests=[1000] * 4),
    Case("TestEmptyCPURequest", 1, 5, 1, [cpu(100)], 1, [GOT_SCALE, ("ScalingActive", "False",
         "FailedGetResourceMetric")], levels=[200], requests=[], pods=1),
    Case("TestEventCreated", 1, 5, 1, [cpu(50)], 2, levels=[200], requests=[200]),
    Case("TestEventNotCreated", 1, 5, 2, [cpu(50)], 2, ok(AbleToScale=("True", "ReadyForNewScale")),
         levels=[200, 200], requests=[400, 400]),
    Case("TestMissingReports", 1, 5, 4, [cpu(50)], 2, levels=[200], requests=[200], pods=1, history=STARTED),
    # 200% of 10% -> 60; Percent 700 per 60 s from 3: ceil(3 x 8) = 24
    Case("TestUpscaleCap", 1, 100, 3, [cpu(10)], 24, ok(ScalingLimited=("True", "ScaleUpLimit")),
         levels=[100, 200, 300], requests=[100] * 3,
         behavior={"scaleUp": {"stabilizationWindowSeconds": 0, "policies": [
             {"type": "Percent", "value": 700, "periodSeconds": 60}]}}),
    Case("TestUpscaleCapGreaterThanMaxReplicas", 1, 20, 3, [cpu(10)], 20,
         ok(ScalingLimited=("True", "TooManyReplicas")), levels=[100, 200, 300], requests=[100] * 3,
         behavior={"scaleUp": {"stabilizationWindowSeconds": 0, "policies": [
             {"type": "Percent", "value": 700, "periodSeconds": 60}]}}),
    # a rolling update's surge: 5 replicas exist for 4 wanted, all at the target
    Case("TestMoreReplicasThanSpecNoScale", 1, 8, 4, [cpu(50)], 4,
         ok(AbleToScale=("True", "ReadyForNewScale")),
         levels=[500] * 5, requests=[1000] * 5),
    Case("TestTolerance", 1, 5, 3, [cpu(100)], 3, ok(AbleToScale=("True", "ReadyForNewScale")),
         levels=[1010, 1030, 1020], requests=[900, 1000, 1100]),
    # 28% of 50% -> 3; the first round remembers the 5 it found: stabilized at 5
    Case("TestScaleDownStabilizeInitialSize", 2, 6, 5, [cpu(50)], 5,
         ok(AbleToScale=("True", "ScaleDownStabilized")), levels=[100, 300, 500, 250, 250],
         requests=[1000] * 5),
    Case("TestStabilizeDownscale", 1, 5, 4, [cpu(100)], 4, ok(AbleToScale=("True", "ScaleDownStabilized")),
         levels=[50, 50, 50], requests=[100] * 3,
         history=History(recommendations=(Recommendation(NOW - 600, 10), Recommendation(NOW - 60, 4)))),
    Case("TestNoBackoffUpscaleCM", 1, 5, 3, [QPS], 4, levels=[20000, 10000, 30000]),
    Case("TestNoBackoffUpscaleCMNoBackoffCpu", 1, 5, 3, [cpu(10), QPS], 5,
         ok(ScalingLimited=("True", "TooManyReplicas")), levels=[20000, 10000, 30000]),
    # the external metric fails, CPU proposes more (40% of 30% -> 4): scale up
    Case("TestScaleUpOneMetricEmpty", 2, 6, 3, [cpu(30), EXTERNAL], 4, levels=[300, 400, 500], failing=(1,)),
    # the external metric fails, CPU proposes fewer (28% of 50% -> 3): no scaling at all
    Case("TestNoScaleDownOneMetricEmpty", 2, 6, 5, [cpu(50), EXTERNAL], 5,
         [GOT_SCALE, ("ScalingActive", "False", "FailedGetExternalMetric")], levels=[100, 300, 500, 250, 250],
         failing=(1,)),
    *(Case(f"TestConditionFailedGetMetrics {reason}", 1, 100, 3, [metric], 3,
           [GOT_SCALE, ("ScalingActive", "False", reason)], levels=[100, 200, 300], requests=[100] * 3,
           failing=(0,))
      for reason, metric in [("FailedGetResourceMetric", cpu(10)), ("FailedGetPodsMetric", QPS),
                             ("FailedGetObjectMetric", OBJECT), ("FailedGetExternalMetric", EXTERNAL)]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kubernetes_rounds(case: Case) -> None:
    decision = decide(case)
    assert (decision.desired, decision.rescale) == (case.desired, case.desired != case.current)
    assert after(decision) == case.conditions


def test_without_behavior_the_older_path_limits_a_scale_up_to_twice_current_or_4() -> None:
    """normalizeDesiredReplicas: 3 replicas at 300% of their CPU target want 9; max(2 x 3, 4) = 6
    (the behavior defaults would allow max(3 + 4, 2 x 3) = 7)."""
    base = Case("no-behavior", 1, 20, 3, [cpu(30)], 6, levels=[900] * 3)
    decision = decide(base)
    assert decision.desired == 6 and after(decision)[2] == ("ScalingLimited", "True", "ScaleUpLimit")
    with_behavior = decide(Case("behavior", 1, 20, 3, [cpu(30)], 7, levels=[900] * 3,
                                behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}))  # fmt: skip
    assert with_behavior.desired == 7


def test_without_behavior_a_scale_down_takes_the_highest_recommendation_of_300_s() -> None:
    """stabilizeRecommendation: recommendations 8 (200 s ago) and 6 (100 s ago), metrics now 2:
    8; with a behavior whose scaleDown window is 60 s: 6 is the only one inside -> 6."""
    history = History(recommendations=(Recommendation(NOW - 200, 8), Recommendation(NOW - 100, 6)))
    # 10 replicas at 10% of a 50% target -> 2
    case = Case("no-behavior", 1, 20, 10, [cpu(50)], 8, levels=[100] * 10, history=history)
    assert decide(case).desired == 8
    case.behavior = {"scaleDown": {"stabilizationWindowSeconds": 150}}
    assert decide(case).desired == 6


def test_a_failing_metric_with_the_others_proposing_fewer_records_no_recommendation() -> None:
    """computeReplicasForMetrics returns -1: status keeps the previous desiredReplicas, events say
    why, and the round leaves no recommendation behind (only the first round's size)."""
    case = Case("fail", 2, 6, 5, [cpu(50), EXTERNAL], 5, levels=[100, 300, 500, 250, 250], failing=(1,))
    decision = decide(case, previous_desired=4)
    assert (decision.desired, decision.rescale) == (4, False)
    assert decision.history.recommendations == (Recommendation(NOW, 5),)  # the size found, nothing else
    reasons = [e.reason for e in decision.events]
    assert reasons == ["FailedGetExternalMetric", "FailedComputeMetricsReplicas"]
    assert "invalid metrics (1 invalid out of 2)" in decision.events[1].message
    assert [m["type"] for m in decision.current_metrics] == ["Resource"]
    # both agreeing on the current size: ValidMetricFound, a recommendation recorded
    steady = decide(Case("steady", 2, 6, 5, [cpu(50), EXTERNAL], 5, levels=[500] * 5, failing=(1,)))
    assert after(steady)[1] == ("ScalingActive", "True", "ValidMetricFound")
    assert len(steady.history.recommendations or ()) == 2


def test_a_tolerance_given_for_scale_up_leaves_scale_down_at_0_1() -> None:
    """60% against 50%... and 30% against 50%: a scaleUp tolerance of 0.5 holds the first, the
    default 0.1 scale-down tolerance still lets the second scale 3 -> 2."""
    behavior = {"scaleUp": {"tolerance": 0.5}, "scaleDown": {"stabilizationWindowSeconds": 0}}
    hot = Case("hot", 1, 10, 3, [cpu(50)], 3, levels=[600] * 3, behavior=behavior)
    assert decide(hot).desired == 3
    cold = Case("cold", 1, 10, 3, [cpu(50)], 2, levels=[300] * 3, behavior=behavior)
    assert decide(cold).desired == 2


@given(
    low=st.integers(1, 10),
    span=st.integers(0, 20),
    data=st.data(),
    behavior=st.sampled_from([None, {"scaleDown": {"stabilizationWindowSeconds": 0}},
                              {"scaleUp": {"policies": [{"type": "Pods", "value": 1,
                                                         "periodSeconds": 60}]}}]),
)  # fmt: skip
def test_the_result_is_always_within_min_and_max(
    low: int, span: int, data: st.DataObject, behavior: dict[str, Any] | None
) -> None:
    high = low + span
    current = data.draw(st.integers(low, high))
    levels = data.draw(st.lists(st.integers(0, 5000), min_size=current, max_size=current))
    history = History(recommendations=tuple(
        Recommendation(NOW - ago, r) for ago, r in data.draw(st.lists(st.tuples(st.integers(0, 600),
                                                                                   st.integers(1, 40)))))
    )  # fmt: skip
    case = Case("any", low, high, current, [cpu(50)], 0, levels=levels, behavior=behavior, history=history)
    assert low <= decide(case).desired <= high
