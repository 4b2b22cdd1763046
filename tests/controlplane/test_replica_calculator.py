"""Kubernetes' replica calculator, table-driven. Rows named `Test...` are ported from Kubernetes'
`pkg/controller/podautoscaler/replica_calculator_test.go`: its pods have two containers with the
same level and request each, ours one, so the ratios are the same and the raw average is half
of Kubernetes' `expectedValue`. Its CPU start-up periods are 2 min / 10 s; ours are Kubernetes'
defaults (300 s / 30 s), so "cool" pods here started an hour ago and "hot" ones just now."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from modelport.controlplane.replica_calculator import (
    MetricError,
    PodMetric,
    PodState,
    Tolerances,
    average_replicas,
    average_value_replicas,
    group_pods,
    milli,
    utilization_replicas,
    value_replicas,
)
from modelport.errors import ModelportError

NOW = 10_000.0
COOL, HOT = NOW - 3600, NOW
T, F = True, False
TOL = Tolerances()


def pods_of(
    count: int,
    ready: list[bool] | None = None,
    start: list[float] | None = None,
    phase: list[str] | None = None,
    deleting: list[bool] | None = None,
) -> list[PodState]:
    out = []
    for i in range(count):
        began = start[i] if start else COOL
        kind = phase[i] if phase else "Running"
        out.append(PodState(f"p{i}", ready[i] if ready else True, kind == "Pending",
                            bool(deleting and deleting[i]), began, began, kind == "Failed"))  # fmt: skip
    return out


def samples(levels: list[int], names: list[str] | None = None) -> dict[str, PodMetric]:
    return {(names[i] if names else f"p{i}"): PodMetric(v, NOW, 60) for i, v in enumerate(levels)}


# Utilization targets: (test, current, pods, levels, requests (milli), target %, replicas, utilization, raw)
UTILIZATION: list[tuple[str, int, list[PodState], list[int], list[int], int, int, int, int]] = [
    ("TestReplicaCalcScaleUp", 3, pods_of(3), [300, 500, 700], [1000] * 3, 30, 5, 50, 500),
    ("TestReplicaCalcScaleUpUnreadyLessScale", 3, pods_of(3, [F, T, T]), [300, 500, 700], [1000] * 3, 30,
     4, 60, 600),
    ("TestReplicaCalcScaleUpHotCpuLessScale", 3, pods_of(3, start=[HOT, COOL, COOL]), [300, 500, 700],
     [1000] * 3, 30, 4, 60, 600),
    ("TestReplicaCalcScaleUpUnreadyNoScale", 3, pods_of(3, [T, F, F]), [400, 500, 700], [1000] * 3, 30,
     3, 40, 400),
    ("TestReplicaCalcScaleHotCpuNoScale", 3, pods_of(3, [T, F, F], [COOL, HOT, HOT]), [400, 500, 700],
     [1000] * 3, 30, 3, 40, 400),
    ("TestReplicaCalcScaleUpIgnoresFailedPods", 2,
     pods_of(4, [T, T, F, F], phase=["Running", "Running", "Failed", "Failed"]), [500, 700], [1000] * 4,
     30, 4, 60, 600),
    ("TestReplicaCalcScaleUpIgnoresDeletionPods", 2, pods_of(4, [T, T, F, F], deleting=[F, F, T, T]),
     [500, 700], [1000] * 4, 30, 4, 60, 600),
    ("TestReplicaCalcScaleDown", 5, pods_of(5), [100, 300, 500, 250, 250], [1000] * 5, 50, 3, 28, 280),
    ("TestReplicaCalcScaleDownExcludeUnreadyPods", 5, pods_of(5, [T, T, T, F, F]),
     [100, 300, 500, 250, 250], [1000] * 5, 50, 2, 30, 300),
    ("TestReplicaCalcScaleDownExcludeUnscheduledPods", 5,
     pods_of(5, [T, F, F, F, F], phase=["Running"] + ["Pending"] * 4), [100], [1000] * 5, 50, 1, 10, 100),
    ("TestReplicaCalcScaleDownIgnoreHotCpuPods", 5, pods_of(5, start=[COOL] * 3 + [HOT] * 2),
     [100, 300, 500, 250, 250], [1000] * 5, 50, 2, 30, 300),
    ("TestReplicaCalcScaleDownIgnoresFailedPods", 5,
     pods_of(7, [T] * 5 + [F, F], phase=["Running"] * 5 + ["Failed"] * 2), [100, 300, 500, 250, 250],
     [1000] * 7, 50, 3, 28, 280),
    ("TestReplicaCalcScaleDownIgnoresDeletionPods", 5,
     pods_of(7, [T] * 5 + [F, F], deleting=[F] * 5 + [T, T]), [100, 300, 500, 250, 250], [1000] * 7,
     50, 3, 28, 280),
    # 3060 * 100 // 3000 = 102% -> 1.02: inside the tolerance
    ("TestReplicaCalcTolerance", 3, pods_of(3), [1010, 1030, 1020], [900, 1000, 1100], 100, 3, 102, 1020),
    # 6 samples, 4 replicas: the 2 without a request are left out of the utilization, 587% -> 5.87 x 4 -> 24
    ("TestReplicaCalcSuperfluousMetrics", 4, pods_of(4), [4000, 9500, 3000, 7000, 3200, 2000], [1000] * 4,
     100, 24, 587, 5875),
    # 2 missing on a scale-down count 100%: (495 + 2000) * 100 // 4000 = 62% -> 0.62 x 4 = 2.48 -> 3
    ("TestReplicaCalcMissingMetrics", 4, pods_of(4), [400, 95], [1000] * 4, 100, 3, 24, 247),
    ("TestReplicaCalcMissingMetricsNoChangeEq", 2, pods_of(2), [1000], [1000] * 2, 100, 2, 100, 1000),
    ("TestReplicaCalcMissingMetricsNoChangeGt", 2, pods_of(2), [1900], [1000] * 2, 100, 2, 190, 1900),
    ("TestReplicaCalcMissingMetricsNoChangeLt", 2, pods_of(2), [600], [1000] * 2, 100, 2, 60, 600),
    ("TestReplicaCalcMissingMetricsUnreadyChange", 3, pods_of(3, [F, T, T]), [100, 450], [1000] * 3, 50,
     3, 45, 450),
    ("TestReplicaCalcMissingMetricsHotCpuNoChange", 3, pods_of(3, start=[HOT, COOL, COOL]), [100, 450],
     [1000] * 3, 50, 3, 45, 450),
    ("TestReplicaCalcMissingMetricsUnreadyScaleUp", 3, pods_of(3, [F, T, T]), [100, 2000], [1000] * 3, 50,
     4, 200, 2000),
    ("TestReplicaCalcMissingMetricsHotCpuScaleUp", 3, pods_of(3, [F, T, T], [HOT, COOL, COOL]), [100, 2000],
     [1000] * 3, 50, 4, 200, 2000),
    ("TestReplicaCalcMissingMetricsUnreadyScaleDown", 4, pods_of(4, [F, T, T, T]), [100, 100, 100],
     [1000] * 4, 50, 3, 10, 100),
    # the missing replica counts 300% (the target, above 100%): (200 + 6000) * 100 // 5000 = 124% -> 2
    ("TestReplicaCalcMissingMetricsScaleDownTargetOver100", 4, pods_of(4, [F, T, T, T]), [200, 100, 100],
     [1000, 1000, 2000, 2000], 300, 2, 6, 100),
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurge", 2, pods_of(3), [100, 100], [1000] * 3, 50, 2, 10, 100),
    # 10 x 150m of ~300m; target int(100 / 1.8 + 1) = 56%: 50 / 56 = 0.89 < 0.9 -> ceil(8.9) = 9
    ("TestReplicaCalcComputedToleranceAlgImplementation", 10, pods_of(10), [150] * 10,
     [400, 200, 310, 290, 302, 298, 301, 299, 300, 300], 56, 9, 50, 150),
    # ... target int(100 / 1.8 + 0.4) = 55%: 50 / 55 = 0.909, inside the tolerance
    ("TestReplicaCalcComputedToleranceAlgImplementation (no change)", 10, pods_of(10), [150] * 10,
     [400, 200, 310, 290, 302, 298, 301, 299, 300, 300], 55, 10, 50, 150),
    # 3 replicas at 90% of their CPU request, target 50%: 1.8 x 3 = 5.4 -> 6 (REFERENCE's worked check)
    ("cpu-up", 3, pods_of(3), [900] * 3, [1000] * 3, 50, 6, 90, 900),
    # 54% against 50%: ratio 1.08, inside the 0.1 tolerance -> unchanged
    ("tolerance", 3, pods_of(3), [540] * 3, [1000] * 3, 50, 3, 54, 540),
    ("cpu-down", 3, pods_of(3), [300] * 3, [1000] * 3, 50, 2, 30, 300),  # 0.6 x 3 = 1.8 -> 2
    # missing, scaling down: 4 at 10% + 1 missing at 100%: (400 + 1000) * 100 // 5000 = 28% -> 2.8 -> 3
    ("missing-down", 5, pods_of(5), [100] * 4, [1000] * 5, 50, 3, 10, 100),
    # missing, the correction flips the direction: (200 + 2000) * 100 // 4000 = 55% > 50% -> unchanged
    ("missing-flip", 4, pods_of(4), [100, 100], [1000] * 4, 50, 4, 10, 100),
    # missing, scaling up: counts 0: 2000 * 100 // 3000 = 66% -> 1.32 x 3 = 3.96 -> 4
    ("missing-up", 3, pods_of(3), [1000, 1000], [1000] * 3, 50, 4, 100, 1000),
    # requests differ: sum over sum, (500 + 500) * 100 // (500 + 1500) = 50% -> unchanged
    ("requests-sum", 2, pods_of(2), [500, 500], [500, 1500], 50, 2, 50, 500),
    # 55% against 50% is 1.1: inside, compared as 1.1 <= 1 + 0.1 (not |1 - 1.1| <= 0.1, which is false)
    ("tolerance-boundary", 4, pods_of(4), [550] * 4, [1000] * 4, 50, 4, 55, 550),
]  # fmt: skip


@pytest.mark.parametrize("row", UTILIZATION, ids=[row[0] for row in UTILIZATION])
def test_utilization_targets(row: tuple[Any, ...]) -> None:
    _, current, pods, levels, requests, target, replicas, utilization, raw = row
    names = [p.name for p in pods] + [f"gone{i}" for i in range(len(levels) - len(pods))]
    asked = {p.name: requests[i] for i, p in enumerate(pods)}
    got = utilization_replicas(current, target, pods, samples(levels, names), asked, "cpu", TOL, NOW)
    assert (got.replicas, got.utilization, got.usage) == (replicas, utilization, raw)


# Per-replica averages (Pods metrics): (test, current, pods, levels, target milli, replicas, usage)
AVERAGE: list[tuple[str, int, list[PodState], list[int], int, int, int]] = [
    ("TestReplicaCalcScaleUpCM", 3, pods_of(3), [20000, 10000, 30000], 15000, 4, 20000),
    # not CPU: readiness and start-up do not matter, all three count
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", 3, pods_of(3, [T, T, F], [COOL, COOL, HOT]),
     [50000, 10000, 30000], 15000, 6, 30000),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", 3, pods_of(3, [F, T, F], [HOT, COOL, HOT]),
     [50000, 15000, 30000], 15000, 7, 31666),
    ("TestReplicaCalcScaleUpCMExternal", 1, pods_of(1), [8600], 4400, 2, 8600),
    ("TestReplicaCalcScaleDownCM", 5, pods_of(5), [12000] * 5, 20000, 3, 12000),
    ("TestReplicaCalcToleranceCM", 3, pods_of(3), [20000, 21000, 21000], 20000, 3, 20666),
    ("TestPlainMetricReplicaCalcMissingMetricsNoChangeEq", 5, pods_of(5), [20000, 19000, 21000], 20000, 5,
     20000),
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM", 2, pods_of(3), [10000, 10000], 17000, 2, 10000),
    ("rps-up", 2, pods_of(2), [30000, 30000], 10000, 6, 30000),  # 30 / 10 = 3.0 x 2 = 6
]  # fmt: skip


@pytest.mark.parametrize("row", AVERAGE, ids=[row[0] for row in AVERAGE])
def test_per_replica_averages(row: tuple[Any, ...]) -> None:
    _, current, pods, levels, target, replicas, usage = row
    got = average_replicas(current, target, pods, samples(levels), None, TOL, NOW)
    assert (got.replicas, got.usage) == (replicas, usage)


# Object/External: (test, kind, current (spec; status for AverageValue), ready, usage, target,
# replicas, usage shown)
SINGLE: list[tuple[str, str, int, list[bool], int, int, int, int]] = [
    ("TestReplicaCalcScaleUpCMObject", "Value", 3, [T, T, T], 20000, 15000, 4, 20000),
    # only the ready replica counts: 5.0 x 1 = 5 (15 if the unready ones counted)
    ("TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods", "Value", 3, [F, T, F], 50000, 10000, 5, 50000),
    ("TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods", "Value", 3, [F, T, F], 8600, 4400, 2, 8600),
    ("TestReplicaCalcScaleDownCMObject", "Value", 5, [T] * 5, 12000, 20000, 3, 12000),
    ("TestReplicaCalcScaleDownCMExternal", "Value", 5, [T] * 5, 8600, 14334, 3, 8600),
    ("TestReplicaCalcToleranceCMObject", "Value", 3, [T] * 3, 20666, 20000, 3, 20666),
    ("TestReplicaCalcToleranceCMExternal", "Value", 3, [T] * 3, 8600, 8888, 3, 8600),
    ("TestReplicaCalcScaleUpCMPerPodObject", "AverageValue", 3, [], 20000, 5000, 4, 6667),
    ("TestReplicaCalcScaleUpPerPodCMExternal", "AverageValue", 3, [], 8600, 2150, 4, 2867),
    ("TestReplicaCalcScaleDownPerPodCMObject", "AverageValue", 5, [], 6000, 2000, 3, 1200),
    ("TestReplicaCalcScaleDownPerPodCMExternal", "AverageValue", 5, [], 8600, 2867, 3, 1720),
    ("TestReplicaCalcTolerancePerPodCMObject", "AverageValue", 4, [], 20166, 5000, 4, 5042),
    ("TestReplicaCalcTolerancePerPodCMExternal", "AverageValue", 3, [], 8600, 2900, 3, 2867),
    ("value-up", "Value", 2, [T, T], 300000, 100000, 6, 300000),  # 3.0 x 2 ready -> 6
    ("value-tolerance", "Value", 2, [T, T], 105000, 100000, 2, 105000),  # 1.05: unchanged
    ("value-from-zero", "Value", 0, [], 250000, 100000, 3, 250000),  # ceil(2.5)
    ("average-up", "AverageValue", 2, [], 50000, 10000, 5, 25000),  # 50 / 10 = 5
    ("average-tolerance", "AverageValue", 5, [], 52000, 10000, 5, 10400),  # 52 / (10 x 5) = 1.04
    # no replica exists yet (status 0): the total over the target, 130 / 20 -> 7
    ("average-no-status", "AverageValue", 0, [], 130000, 20000, 7, 130000),
]  # fmt: skip


@pytest.mark.parametrize("row", SINGLE, ids=[row[0] for row in SINGLE])
def test_object_and_external_metrics(row: tuple[Any, ...]) -> None:
    _, kind, current, ready, usage, target, replicas, shown = row
    if kind == "Value":
        got = value_replicas(current, usage, target, pods_of(len(ready), ready), TOL)
    else:
        got = average_value_replicas(current, usage, target, TOL)
    assert (got.replicas, got.usage) == (replicas, shown)


def test_a_value_target_with_no_ready_replica_proposes_zero() -> None:
    # getUsageRatioReplicaCount: 2.0 x 0 ready = 0 (min/max clamp it later), not an error
    assert value_replicas(2, 200000, 100000, pods_of(2, [F, F]), TOL).replicas == 0
    with pytest.raises(MetricError, match="no pods returned by selector"):
        value_replicas(2, 200000, 100000, [], TOL)


# Errors: (test, pods, levels (None: no samples at all), requests, message)
ERRORS: list[tuple[str, list[PodState], list[int], dict[str, int | None], str]] = [
    ("TestReplicaCalcDisjointResourcesMetrics", pods_of(1), [100], {"p0": 1000},
     "no metrics returned matched known pods"),
    ("TestReplicaCalcEmptyCPURequest", pods_of(1), [200], {"p0": None}, "missing request for cpu"),
    ("no-pods", [], [100], {}, "no pods returned by selector"),
    ("all-unready", pods_of(2, [F, F]), [100, 100], {"p0": 1000, "p1": 1000},
     "did not receive metrics for targeted pods"),
]  # fmt: skip


@pytest.mark.parametrize("row", ERRORS, ids=[row[0] for row in ERRORS])
def test_errors_name_the_problem(row: tuple[Any, ...]) -> None:
    name, pods, levels, requests, message = row
    names = ["an-older-pod-name"] if name == "TestReplicaCalcDisjointResourcesMetrics" else None
    with pytest.raises(MetricError, match=message) as caught:
        utilization_replicas(1, 100, pods, samples(levels, names), requests, "cpu", TOL, NOW)
    assert caught.value.reason == "FailedGetResourceMetric"
    assert isinstance(caught.value, ModelportError)  # one exception root


def _pod(name: str, ready: bool = T, start: float | None = None, transition: float | None = None,
         phase: str = "Running", deleting: bool = False) -> PodState:  # fmt: skip
    return PodState(name, ready, phase == "Pending", deleting, start, transition, phase == "Failed")


# TestGroupPods: (name, pods, metrics, resource, ready, unready, missing, ignored)
GROUPS: list[tuple[str, list[PodState], dict[str, PodMetric], str, int, set[str], set[str], set[str]]] = [
    ("void", [], {}, "cpu", 0, set(), set(), set()),
    ("count in a ready pod - memory", [_pod("bentham", F, phase="Succeeded")],
     {"bentham": PodMetric(1, NOW, 60)}, "memory", 1, set(), set(), set()),
    ("unready a pod without ready condition - CPU", [_pod("lucretius", start=NOW)],
     {"lucretius": PodMetric(1)}, "cpu", 0, {"lucretius"}, set(), set()),
    ("count in a ready pod with fresh metrics during initialization period - CPU",
     [_pod("bentham", start=NOW - 60, transition=NOW - 30)], {"bentham": PodMetric(1, NOW, 30)}, "cpu",
     1, set(), set(), set()),
    ("unready a ready pod without fresh metrics during initialization period - CPU",
     [_pod("bentham", start=NOW - 60, transition=NOW - 30)], {"bentham": PodMetric(1, NOW, 60)}, "cpu",
     0, {"bentham"}, set(), set()),
    ("unready an unready pod during initialization period - CPU",
     [_pod("lucretius", F, start=NOW - 600, transition=NOW - 594)], {"lucretius": PodMetric(1)}, "cpu",
     0, {"lucretius"}, set(), set()),
    ("count in a ready pod without fresh metrics after initialization period - CPU",
     [_pod("bentham", start=NOW - 360, transition=NOW - 360)], {"bentham": PodMetric(1, NOW - 120, 60)},
     "cpu", 1, set(), set(), set()),
    ("count in an unready pod that was ready after initialization period - CPU",
     [_pod("lucretius", F, start=NOW - 600, transition=NOW - 540)], {"lucretius": PodMetric(1)}, "cpu",
     1, set(), set(), set()),
    # went unready exactly the readiness delay after starting: not "within", so counted
    ("unready pod that has never been ready after initialization period - CPU",
     [_pod("lucretius", F, start=NOW - 600, transition=NOW - 570)], {"lucretius": PodMetric(1)}, "cpu",
     1, set(), set(), set()),
    ("a missing pod", [_pod("epicurus", start=NOW - 180)], {}, "cpu", 0, set(), {"epicurus"}, set()),
    ("several pods", [_pod("lucretius", start=NOW), _pod("niccolo", start=NOW - 360, transition=NOW - 360),
                      _pod("epicurus", start=NOW - 180)],
     {"lucretius": PodMetric(1), "niccolo": PodMetric(1)}, "cpu", 1, {"lucretius"}, {"epicurus"}, set()),
    ("pending pods are unreadied", [_pod("unscheduled", F, phase="Pending")], {}, "cpu", 0,
     {"unscheduled"}, set(), set()),
    ("ignore pods with deletion timestamps", [_pod("deleted", phase="Pending", deleting=True)],
     {"deleted": PodMetric(1)}, "cpu", 0, set(), set(), {"deleted"}),
    ("ignore pods in a failed state", [_pod("failed", phase="Failed")], {"failed": PodMetric(1)}, "cpu",
     0, set(), set(), {"failed"}),
]  # fmt: skip


@pytest.mark.parametrize("row", GROUPS, ids=[row[0] for row in GROUPS])
def test_group_pods(row: tuple[Any, ...]) -> None:
    _, pods, metrics, resource, ready, unready, missing, ignored = row
    got = group_pods(pods, metrics, resource, NOW)
    assert (got.ready, set(got.unready), set(got.missing), set(got.ignored)) == (
        ready,
        unready,
        missing,
        ignored,
    )


def test_tolerance_per_direction() -> None:
    """behavior.scaleUp.tolerance given alone leaves scale-down at 0.1 (and the other way round)."""
    pods, requests = pods_of(3), {f"p{i}": 1000 for i in range(3)}

    def replicas(level: int, tolerances: Tolerances) -> int:
        return utilization_replicas(
            3, 50, pods, samples([level] * 3), requests, "cpu", tolerances, NOW
        ).replicas

    assert replicas(700, Tolerances()) == 5  # 70% / 50% = 1.4 -> ceil(4.2)
    assert replicas(700, Tolerances(up=0.5)) == 3  # inside the scale-up tolerance
    assert replicas(300, Tolerances(up=0.5)) == 2  # 0.6: scale-down tolerance still 0.1 -> ceil(1.8)
    assert replicas(300, Tolerances(down=0.5)) == 3
    assert replicas(700, Tolerances(down=0.5)) == 5


# TestReplicaCalcConfigurableTolerance: a tolerance per direction, as `behavior.scaleUp/scaleDown
# .tolerance` give it (Kubernetes writes Tolerances{scaleDown, scaleUp}; the one it leaves at its
# defaultTestingTolerance is our default 0.1). 3 replicas requesting 0.9, 1.0 and 1.1 cores, a 100%
# target: (case, tolerances, levels (milli), replicas, utilization, raw). Ours, not Kubernetes':
# where a row gives one direction only, the other is checked still at 0.1 (the last column: levels
# on that side and the replicas 0.1 gives them, which the row's tolerance would have held).
HOT, WARM, COLD = [1890, 1910, 1900], [1210, 1190, 1200], [660, 640, 650]  # 190%, 120%, 65%
PER_DIRECTION: list[tuple[str, Tolerances, list[int], int, int, int, tuple[list[int], int] | None]] = [
    ("Outside of a 0% tolerance", Tolerances(down=0.0, up=0.0), [909, 1010, 1111], 4, 101, 1010, None),
    ("Within a 200% scale-up tolerance", Tolerances(up=2.0), HOT, 3, 190, 1900, (COLD, 2)),
    # 109% is outside 8% up; the scale-down tolerance of 200% would hold anything below the target
    ("Outside 8% scale-up tolerance (and superfluous scale-down tolerance)", Tolerances(down=2.0, up=0.08),
     [1100, 1080, 1090], 4, 109, 1090, None),
    ("Within a 36% scale-down tolerance", Tolerances(down=0.36), COLD, 3, 65, 650, (WARM, 4)),
    ("Outside a 34% scale-down tolerance", Tolerances(down=0.34), COLD, 2, 65, 650, (WARM, 4)),
]  # fmt: skip


@pytest.mark.parametrize(
    "row", PER_DIRECTION, ids=[f"TestReplicaCalcConfigurableTolerance: {row[0]}" for row in PER_DIRECTION]
)
def test_a_tolerance_given_for_one_direction(row: tuple[Any, ...]) -> None:
    _, tolerances, levels, replicas, utilization, raw, other_side = row
    requests = {"p0": 900, "p1": 1000, "p2": 1100}

    def propose(levels: list[int]) -> Any:
        return utilization_replicas(3, 100, pods_of(3), samples(levels), requests, "cpu", tolerances, NOW)

    got = propose(levels)
    assert (got.replicas, got.utilization, got.usage) == (replicas, utilization, raw)
    if other_side is not None:
        other_levels, other_replicas = other_side
        assert propose(other_levels).replicas == other_replicas


# TestReplicaCalcConfigurableTolerance{CM,CMObject,PerPodCMObject,CMExternal,PerPodCMExternal}: a
# scale-up tolerance of 1% (scale-down left at 0.1), each metric just outside it, where the
# default 10% would keep the replicas (TestReplicaCalcToleranceCM and its kin above):
# (test, kind, current, usage, target, replicas, usage shown)
UP_BY_ONE_PERCENT: list[tuple[str, str, int, int, int, int, int]] = [
    ("TestReplicaCalcConfigurableToleranceCM", "Pods", 3, 0, 20000, 4, 20666),  # 20000, 21000, 21000
    ("TestReplicaCalcConfigurableToleranceCMObject", "Value", 3, 20666, 20000, 4, 20666),
    ("TestReplicaCalcConfigurableTolerancePerPodCMObject", "AverageValue", 4, 20208, 5000, 5, 5052),
    ("TestReplicaCalcConfigurableToleranceCMExternal", "Value", 3, 8900, 8800, 4, 8900),
    ("TestReplicaCalcConfigurableTolerancePerPodCMExternal", "AverageValue", 3, 8600, 2800, 4, 2867),
]


@pytest.mark.parametrize("row", UP_BY_ONE_PERCENT, ids=[row[0] for row in UP_BY_ONE_PERCENT])
def test_a_scale_up_tolerance_of_1_percent_on_each_kind_of_metric(row: tuple[Any, ...]) -> None:
    _, kind, current, usage, target, replicas, shown = row
    up, default = Tolerances(up=0.01), Tolerances()
    for tolerances, expected in ((up, replicas), (default, current)):
        if kind == "Pods":
            levels = samples([20000, 21000, 21000])
            got = average_replicas(current, target, pods_of(current), levels, None, tolerances, NOW)
        elif kind == "Value":
            got = value_replicas(current, usage, target, pods_of(current), tolerances)
        else:
            got = average_value_replicas(current, usage, target, tolerances)
        assert (got.replicas, got.usage) == (expected, shown)


def test_not_yet_ready_replicas_count_zero_on_a_cpu_scale_up_and_are_left_out_of_a_scale_down() -> None:
    starting = PodState("p2", ready=False, start=NOW - 10, transition=NOW - 10)
    pods = [*pods_of(2), starting]
    requests = {"p0": 1000, "p1": 1000, "p2": 1000}
    # up: p0, p1 at 100%, target 50 -> 2.0; p2 counts 0: 2000 * 100 // 3000 = 66% -> 1.32 x 3 -> 4
    assert utilization_replicas(3, 50, pods, samples([1000] * 3), requests, "cpu", TOL, NOW).replicas == 4
    # down: p0, p1 at 10% -> 0.2 x 2 ready = 0.4 -> 1 (p2's sample is set aside)
    got = utilization_replicas(3, 50, pods, samples([100, 100, 5000]), requests, "cpu", TOL, NOW)
    assert got.replicas == 1
    # a sample taken partly before the replica got ready, within the CPU initialization period: unready
    fresh = PodState("p2", ready=True, start=NOW - 60, transition=NOW - 5)
    pods = [*pods_of(2), fresh]
    assert utilization_replicas(3, 50, pods, samples([1000] * 3), requests, "cpu", TOL, NOW).replicas == 4
    # not CPU: a ready replica's metric counts however young it is: 3 x 100 / 50 -> 6
    assert average_replicas(3, 50000, pods, samples([100000] * 3), None, TOL, NOW).replicas == 6


def test_pending_and_deleting_replicas() -> None:
    pods = [*pods_of(1), PodState("b", ready=False, pending=True), PodState("c", ready=True, deleting=True)]
    metrics = {"p0": PodMetric(20000), "c": PodMetric(1000000)}
    # only p0 counts: 20 / 10 = 2.0; b pending counts 0 on a scale-up: (20 + 0) / 2 = 10 -> 1.0: inside
    assert average_replicas(3, 10000, pods, metrics, None, TOL, NOW).replicas == 3
    with pytest.raises(MetricError, match="did not receive metrics"):
        average_replicas(3, 10000, pods, {}, None, TOL, NOW)


def test_milli_takes_the_nearest_milli_value() -> None:
    assert [milli(0.3), milli(0.9), milli(1500.0), milli(0.0004)] == [300, 900, 1500000, 0]


def _inside(data: st.DataObject, target: int, tolerances: Tolerances) -> int:
    """A value whose ratio to `target` is inside the tolerances."""
    low, high = math.ceil(target * (1 - tolerances.down)), math.floor(target * (1 + tolerances.up))
    value = data.draw(st.integers(low, max(low, high)))
    assume(tolerances.within(value / target))  # float edges only
    return value


@given(data=st.data(), count=st.integers(1, 20), target=st.integers(1, 300), down=st.floats(0, 0.5),
       up=st.floats(0, 0.5))  # fmt: skip
def test_no_change_inside_the_tolerance(data: st.DataObject, count: int, target: int, down: float,
                                        up: float) -> None:  # fmt: skip
    """Every replica ready and measured: a ratio within [1 - down, 1 + up] keeps the count."""
    tolerances = Tolerances(down, up)
    level = _inside(data, target, tolerances) * 10  # level 10x the utilization: 1000m requested
    pods, requests = pods_of(count), {f"p{i}": 1000 for i in range(count)}
    got = utilization_replicas(
        count, target, pods, samples([level] * count), requests, "cpu", tolerances, NOW
    )
    assert got.replicas == count


@given(data=st.data(), count=st.integers(1, 20), target=st.integers(1, 10**6), down=st.floats(0, 0.5),
       up=st.floats(0, 0.5))  # fmt: skip
def test_no_change_inside_the_tolerance_for_averages(data: st.DataObject, count: int, target: int,
                                                      down: float, up: float) -> None:  # fmt: skip
    tolerances = Tolerances(down, up)
    level = _inside(data, target, tolerances)
    got = average_replicas(count, target, pods_of(count), samples([level] * count), None, tolerances, NOW)
    assert got.replicas == count
