"""Stabilization windows and rate policies, pure, table-driven. Rows named `Test...` are ported
from Kubernetes' `pkg/controller/podautoscaler/horizontal_test.go` (and `legacy_horizontal_test.go`,
`pkg/apis/autoscaling/v2/defaults_test.go`); times are seconds before NOW."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.controlplane.stabilization import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    History,
    Outcome,
    Policy,
    Recommendation,
    Rules,
    ScaleEvent,
    limit_with_behavior,
    limit_without_behavior,
    record_initial,
    record_scale,
    scale_down_rules,
    scale_up_limit,
    scale_up_rules,
    stabilize,
    stabilize_with_behavior,
    tolerances,
)
from modelport.spec import Behavior

NOW = 100_000.0
MIN = 60


def recs(*pairs: tuple[int, float]) -> History:
    """(replicas, seconds ago) pairs, oldest first as given."""
    return History(recommendations=tuple(Recommendation(NOW - ago, r) for r, ago in pairs))


def rules(pods: int, pods_period: int, percent: int, percent_period: int, window: int) -> Rules:
    """Kubernetes' generateScalingRules: Max, the Pods policy if pods, the Percent one if percent."""
    policies = ((Policy("Pods", pods, pods_period),) if pods else ()) + (
        (Policy("Percent", percent, percent_period),) if percent else ()
    )
    return Rules(window, "Max", policies)


def uniform(changes: list[int], period: int) -> tuple[ScaleEvent, ...]:
    """Kubernetes' generateEventsUniformDistribution: [1, 5, 9] over 120 s -> 100, 60, 20 s ago."""
    segment = period / len(changes)
    return tuple(ScaleEvent(NOW - (period - segment * i - segment / 2), c) for i, c in enumerate(changes))


# TestNormalizeDesiredReplicas (no behavior, 300 s): (name, recommendations, desired, stabilized, log length)
WITHOUT_BEHAVIOR: list[tuple[str, History, int, int, int]] = [
    ("empty log", recs(), 5, 5, 1),
    ("stabilize", recs((4, 2 * MIN), (5, 1 * MIN)), 3, 5, 3),
    ("no stabilize", recs((1, 2 * MIN), (2, 1 * MIN)), 3, 3, 3),
    ("no stabilize - old recommendations", recs((10, 10 * MIN), (9, 9 * MIN)), 3, 3, 2),
    (
        "stabilize - old recommendations",
        recs((10, 10 * MIN), (4, 1 * MIN), (5, 2 * MIN), (9, 9 * MIN)),
        3,
        5,
        4,
    ),
]


@pytest.mark.parametrize("row", WITHOUT_BEHAVIOR, ids=[row[0] for row in WITHOUT_BEHAVIOR])
def test_normalize_desired_replicas(row: tuple[Any, ...]) -> None:
    _, history, desired, stabilized, length = row
    got, after = stabilize(history, desired, NOW)
    assert got == stabilized
    assert after.recommendations is not None and len(after.recommendations) == length
    assert history == row[1]  # pure: the history given is not changed


# TestNormalizeDesiredReplicasWithBehavior: (name, recommendations, current, desired, up window,
# down window, stabilized, recommendations kept)
WITH_BEHAVIOR: list[tuple[str, History, int, int, int, int, int, list[int]]] = [
    ("empty recommendations for scaling down", recs(), 100, 5, 0, 0, 5, [5]),
    ("simple scale down stabilization", recs((4, 2 * MIN), (5, MIN)), 100, 3, 0, 3 * MIN, 5, [4, 5, 3]),
    ("simple scale up stabilization", recs((4, 2 * MIN), (5, MIN)), 1, 7, 5 * MIN, 0, 4, [4, 5, 7]),
    ("no scale down stabilization", recs((1, 2 * MIN), (2, MIN)), 100, 3, 5 * MIN, 0, 3, [1, 2, 3]),
    ("no scale up stabilization", recs((4, 2 * MIN), (5, MIN)), 1, 3, 0, 5 * MIN, 3, [4, 5, 3]),
    ("no scale down stabilization, reuse recommendation element", recs((10, 10 * MIN), (9, 9 * MIN)), 100, 3,
     0, 0, 3, [10, 3]),
    ("no scale up stabilization, reuse recommendation element", recs((10, 10 * MIN), (9, 9 * MIN)), 1, 100,
     0, 0, 100, [10, 100]),
    ("scale down stabilization, reuse one of obsolete recommendation element",
     recs((10, 10 * MIN), (4, MIN), (5, 2 * MIN), (9, 9 * MIN)), 100, 3, 0, 3 * MIN, 5, [10, 4, 5, 3]),
    ("scale up stabilization, reuse one of obsolete recommendation element",
     recs((10, 100 * MIN), (6, MIN), (5, 2 * MIN), (9, 3 * MIN)), 1, 100, 300, 0, 5, [100, 6, 5, 9]),
]  # fmt: skip


@pytest.mark.parametrize("row", WITH_BEHAVIOR, ids=[row[0] for row in WITH_BEHAVIOR])
def test_normalize_desired_replicas_with_behavior(row: tuple[Any, ...]) -> None:
    _, history, current, desired, up_window, down_window, stabilized, kept = row
    up, down = Rules(up_window, "Max", ()), Rules(down_window, "Max", ())
    got, after = stabilize_with_behavior(history, current, desired, up, down, NOW)
    assert got.replicas == stabilized
    assert [r.replicas for r in after.recommendations or ()] == kept


# TestConvertDesiredReplicasWithRules (no behavior): (current, desired, min, max, replicas, reason)
WITHOUT_RULES = [
    (5, 7, 3, 8, 7, "DesiredWithinRange"),  # prenormalized desired replicas within range
    (3, 1, 2, 8, 2, "TooFewReplicas"),  # prenormalized desired replicas < minReplicas
    (20, 1000, 1, 10, 10, "TooManyReplicas"),  # maxReplicas is the limit because maxReplicas < scaleUpLimit
    (3, 1000, 1, 2000, 6, "ScaleUpLimit"),  # scaleUpLimit (max(2 x 3, 4)) < maxReplicas
    (1, 10, 1, 100, 4, "ScaleUpLimit"),  # scaleUpLimitMinimum: max(2 x 1, 4) = 4
]


@pytest.mark.parametrize(("current", "desired", "low", "high", "replicas", "reason"), WITHOUT_RULES)
def test_convert_desired_replicas_with_rules(
    current: int, desired: int, low: int, high: int, replicas: int, reason: str
) -> None:
    got = limit_without_behavior(current, desired, low, high)
    assert (got.replicas, got.reason) == (replicas, reason)


UP_EVENTS, DOWN_EVENTS = "up", "down"
# TestConvertDesiredReplicasWithBehaviorRate: (name, events (direction, changes, period), min, max,
# scaleUp rules, scaleDown rules, current, desired, replicas, reason); None rules: the defaults
RATE: list[tuple[str, tuple[str, list[int], int] | None, int, int, Rules | None, Rules | None, int, int,
                 int, str]] = [
    ("scaleUp with default behavior", None, 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit"),
    ("scaleUp with pod policy limitation", None, 1, 1000, rules(30, 60, 0, 0, 0), None, 10, 50, 40,
     "ScaleUpLimit"),
    ("scaleUp with percent policy limitation", None, 1, 1000, rules(0, 0, 200, 60, 0), None, 10, 50, 30,
     "ScaleUpLimit"),
    ("scaleDown with percent policy larger than pod policy", None, 1, 1000, None, rules(20, 60, 1, 60, 300),
     100, 2, 80, "ScaleDownLimit"),
    ("scaleDown with pod policy larger than percent policy", None, 1, 1000, None, rules(2, 60, 1, 60, 300),
     100, 2, 98, "ScaleDownLimit"),
    ("scaleDown with spec MinReplicas limitation with large pod policy", None, 1, 1000, None,
     rules(100, 60, 0, 0, 300), 10, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy", None, 5, 1000, None,
     rules(0, 0, 100, 60, 300), 10, 2, 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation", None, 1, 1000, None, rules(5, 60, 0, 0, 300), 10, 2, 5,
     "ScaleDownLimit"),
    ("scaleDown with percent policy limitation", None, 1, 1000, None, rules(0, 0, 50, 60, 300), 10, 5, 5,
     "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy and events", (UP_EVENTS, [1, 5, 9], 120),
     1, 200, rules(300, 60, 0, 0, 0), None, 100, 500, 200, "TooManyReplicas"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy and events",
     (UP_EVENTS, [1, 5, 9], 120), 1, 200, rules(0, 0, 10000, 60, 0), None, 100, 500, 200, "TooManyReplicas"),
    # 120 s ago there were 100 - 15 replicas; + 5 allowed is fewer than now: no scale-up
    ("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
     (UP_EVENTS, [1, 5, 9], 120), 1, 1000, rules(5, 120, 0, 0, 0), None, 100, 500, 100, "ScaleUpLimit"),
    ("scaleUp with pod policy and previous scale up events", (UP_EVENTS, [1, 5, 9], 120), 1, 1000,
     rules(150, 120, 0, 0, 0), None, 100, 500, 235, "ScaleUpLimit"),  # 100 - 15 + 150
    ("scaleUp with percent policy and previous scale up events", (UP_EVENTS, [1, 5, 9], 120), 1, 1000,
     rules(0, 0, 200, 120, 0), None, 100, 500, 255, "ScaleUpLimit"),  # (100 - 15) x 3
    ("scaleDown with default policy and previous events", (DOWN_EVENTS, [1, 5, 9], 120), 1, 1000, None,
     None, 10, 5, 5, "DesiredWithinRange"),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
     (DOWN_EVENTS, [1, 5, 9], 120), 1, 1000, None, rules(115, 120, 0, 0, 300), 100, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large pod policy and previous events",
     (DOWN_EVENTS, [1, 5, 9], 120), 5, 1000, None, rules(130, 120, 0, 0, 300), 100, 0, 5, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy and previous events",
     (DOWN_EVENTS, [1, 5, 9], 120), 5, 1000, None, rules(0, 0, 100, 120, 300), 100, 2, 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation and previous events", (DOWN_EVENTS, [1, 5, 9], 120), 1, 1000,
     None, rules(5, 120, 0, 0, 300), 100, 2, 100, "ScaleDownLimit"),  # 100 + 15 - 5 > 100: keep 100
    ("scaleDown with percent policy limitation and previous events", (DOWN_EVENTS, [2, 4, 6], 120), 1, 1000,
     None, rules(0, 0, 50, 120, 300), 100, 0, 56, "ScaleDownLimit"),  # (100 + 12) x 50%
    ("scaleDown with previous events preventing further scale down", (DOWN_EVENTS, [10, 10, 10], 120), 1,
     1000, None, rules(0, 0, 10, 120, 300), 100, 0, 100, "ScaleDownLimit"),  # (100 + 30) x 90% = 117
    ("scaleDown with with previous events still allowing more scale down", (DOWN_EVENTS, [10, 10, 10], 120),
     1, 1000, None, rules(0, 0, 1000, 120, 300), 10, 5, 5, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for up", (UP_EVENTS, [8, 12, 9, 11], 120), 1, 1000,
     rules(1000, 60, 0, 0, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for up",
     (UP_EVENTS, [8, 12, 9, 11], 120), 1, 1000, rules(1000, 120, 100, 60, 0), None, 100, 200, 200,
     "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for down", (DOWN_EVENTS, [8, 12, 9, 11], 120), 1,
     1000, None, rules(1000, 60, 0, 0, 300), 100, 5, 5, "DesiredWithinRange"),
]  # fmt: skip


@pytest.mark.parametrize("row", RATE, ids=[row[0] for row in RATE])
def test_convert_desired_replicas_with_behavior_rate(row: tuple[Any, ...]) -> None:
    _, events, low, high, up, down, current, desired, replicas, reason = row
    history = History()
    if events is not None:
        direction, changes, period = events
        history = History(**{direction + "s": uniform(changes, period)})
    up, down = up or DEFAULT_SCALE_UP, down or DEFAULT_SCALE_DOWN
    got = limit_with_behavior(history, current, desired, low, high, up, down, NOW)
    assert (got.replicas, got.reason) == (replicas, reason)


def test_calculate_scale_up_limit_with_scaling_rules() -> None:
    """TestCalculateScaleUpLimitWithScalingRules: 1 replica, Min of Pods 2 (3) and Percent 50
    (ceil(1.5) = 2) per 60 s -> 2."""
    min_rules = Rules(300, "Min", (Policy("Pods", 2, 60), Policy("Percent", 50, 60)))
    assert scale_up_limit(History(), 1, min_rules, NOW) == 2


def _given(pods: tuple[int, int] | None = None, percent: tuple[int, int] | None = None,
           window: int | None = None, select: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One direction's rules as a person writes them (fields left out stay out)."""
    policies = ([{"type": "Pods", "value": pods[0], "periodSeconds": pods[1]}] if pods else []) + (
        [{"type": "Percent", "value": percent[0], "periodSeconds": percent[1]}] if percent else []
    )
    given: dict[str, Any] = {"policies": policies} if policies else {}
    if window is not None:
        given["stabilizationWindowSeconds"] = window
    if select is not None:
        given["selectPolicy"] = select
    return given


# TestGenerateScaleUpRules / TestGenerateScaleDownRules (pkg/apis/autoscaling/v2/defaults_test.go):
# (test: annotation, direction, rules given, policies, window, selectPolicy). Kubernetes leaves
# scaleDown's window unset for the controller to fill with its 300 s; here it is filled.
GENERATE: list[tuple[str, str, dict[str, Any], tuple[Policy, ...], int, str]] = [
    ("TestGenerateScaleDownRules: Default values", "scaleDown", {}, (Policy("Percent", 100, 15),), 300,
     "Max"),
    ("TestGenerateScaleDownRules: All parameters are specified", "scaleDown",
     _given((1, 2), (3, 4), 25, "Max"), (Policy("Pods", 1, 2), Policy("Percent", 3, 4)), 25, "Max"),
    ("TestGenerateScaleDownRules: Percent policy is specified", "scaleDown",
     _given(percent=(1, 2), select="Min"), (Policy("Percent", 1, 2),), 300, "Min"),
    ("TestGenerateScaleDownRules: Pods policy is specified", "scaleDown", _given(pods=(3, 4)),
     (Policy("Pods", 3, 4),), 300, "Max"),
    ("TestGenerateScaleUpRules: Default values", "scaleUp", {},
     (Policy("Pods", 4, 15), Policy("Percent", 100, 15)), 0, "Max"),
    ("TestGenerateScaleUpRules: All parameters are specified", "scaleUp", _given((1, 2), (3, 4), 25, "Max"),
     (Policy("Pods", 1, 2), Policy("Percent", 3, 4)), 25, "Max"),
    ("TestGenerateScaleUpRules: Pod policy is specified", "scaleUp", _given(pods=(1, 2), select="Min"),
     (Policy("Pods", 1, 2),), 0, "Min"),
    ("TestGenerateScaleUpRules: Percent policy is specified", "scaleUp", _given(percent=(7, 10)),
     (Policy("Percent", 7, 10),), 0, "Max"),
    ("TestGenerateScaleUpRules: Pod policy and stabilization window are specified", "scaleUp",
     _given(pods=(4, 2), window=25), (Policy("Pods", 4, 2),), 25, "Max"),
    ("TestGenerateScaleUpRules: Percent policy and stabilization window are specified", "scaleUp",
     _given(percent=(7, 60), window=25), (Policy("Percent", 7, 60),), 25, "Max"),
]  # fmt: skip


@pytest.mark.parametrize("row", GENERATE, ids=[row[0] for row in GENERATE])
def test_generate_scaling_rules(row: tuple[Any, ...]) -> None:
    _, direction, given, policies, window, select = row
    behavior = Behavior.model_validate({direction: given})
    generated = scale_up_rules(behavior) if direction == "scaleUp" else scale_down_rules(behavior)
    assert generated == Rules(window, select, policies)
    other = scale_down_rules(behavior) if direction == "scaleUp" else scale_up_rules(behavior)
    assert other in (DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)  # the direction not given: its defaults


def test_without_behavior_the_rules_are_the_defaults() -> None:
    assert scale_up_rules(None) == DEFAULT_SCALE_UP and scale_down_rules(None) == DEFAULT_SCALE_DOWN


def test_a_tolerance_for_one_direction_leaves_the_other_at_the_default() -> None:
    default = tolerances(None)
    assert (default.down, default.up) == (0.1, 0.1) and tolerances(Behavior()) == default
    up_only = tolerances(Behavior.model_validate({"scaleUp": {"tolerance": 0.05}}))
    assert (up_only.down, up_only.up) == (0.1, 0.05)
    down_only = tolerances(Behavior.model_validate({"scaleDown": {"tolerance": 0.3}}))
    assert (down_only.down, down_only.up) == (0.3, 0.1)


# TestStoreScaleEvents (with a behavior): (name, rules, previous (change, seconds ago), kept changes,
# kept outdated flags, changed in the last 60 s before)
STORE = [
    ("empty entries with two-policy-behavior", rules(10, 60, 100, 60, 0), [], [5], [False], 0),
    ("one outdated entry to be replaced with behavior", rules(10, 60, 100, 60, 0), [(7, 61)], [5], [False],
     0),
    ("one actual entry to be not touched with behavior", rules(10, 60, 100, 60, 0), [(7, 58)], [7, 5],
     [False, False], 7),
    ("two entries, one of them to be replaced", rules(10, 60, 0, 0, 0), [(7, 61), (6, 59)], [5, 6],
     [False, False], 6),
    ("replace one entry, use policies with different periods", rules(10, 60, 100, 30, 0),
     [(8, 29), (6, 59), (7, 61), (9, 61)], [8, 6, 7, 5], [False, False, True, False], 14),
    ("two entries, both actual", rules(10, 120, 100, 30, 0), [(7, 58), (6, 59)], [7, 6, 5],
     [False, False, False], 13),
]  # fmt: skip


@pytest.mark.parametrize("row", STORE, ids=[row[0] for row in STORE])
def test_store_scale_events(row: tuple[Any, ...]) -> None:
    _, scaling, previous, kept, outdated, changed = row
    events = tuple(ScaleEvent(NOW - ago, change) for change, ago in previous)
    up = record_scale(History(ups=events), scaling, DEFAULT_SCALE_DOWN, 10, 15, NOW)
    down = record_scale(History(downs=events), DEFAULT_SCALE_UP, scaling, 10, 5, NOW)
    for got in (up.ups, down.downs):
        assert [e.change for e in got] == kept and [e.outdated for e in got] == outdated
    assert sum(e.change for e in events if e.at > NOW - 60) == changed


def test_scale_up_rate_defaults_are_the_larger_of_4_pods_and_100_percent_per_15_s() -> None:
    """The behavior path (a behavior given, here for scale-down only): scale-up has its defaults."""
    up, down = scale_up_rules(Behavior.model_validate({"scaleDown": {}})), DEFAULT_SCALE_DOWN
    history = History()
    # 3 replicas want 10: the limit is max(3 + 4, 3 x 2) = 7 (REFERENCE's worked check)
    assert limit_with_behavior(history, 3, 10, 1, 100, up, down, 0.0) == Outcome(
        7, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
    )
    assert limit_with_behavior(history, 3, 6, 1, 100, up, down, 0.0).replicas == 6
    history = record_scale(history, up, down, 3, 7, 0.0)
    # 5 s later, from 7: the period started at 3 -> max(3 + 4, 6) = 7: no more this period
    assert limit_with_behavior(history, 7, 10, 1, 100, up, down, 5.0).replicas == 7
    # 16 s later, the period has moved on: max(7 + 4, 14) = 14 >= 10
    assert limit_with_behavior(history, 7, 10, 1, 100, up, down, 16.0).replicas == 10


def test_without_behavior_scale_up_is_limited_to_twice_current_or_4_each_round() -> None:
    """normalizeDesiredReplicas: max(2 x current, 4), with no memory of earlier rounds."""
    assert limit_without_behavior(3, 10, 1, 100) == Outcome(
        6, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
    )
    assert limit_without_behavior(6, 10, 1, 100).replicas == 10  # next round: up to 12
    assert limit_without_behavior(1, 10, 1, 100).replicas == 4


def test_scale_down_policies_as_in_the_kubernetes_documentation() -> None:
    down = Rules(300, "Max", (Policy("Pods", 4, 60), Policy("Percent", 10, 60)))
    history = History()
    # 80 replicas: Pods 76, Percent 72; selectPolicy Max = the bigger change -> 72
    assert limit_with_behavior(history, 80, 10, 1, 100, DEFAULT_SCALE_UP, down, 0.0).replicas == 72
    history = record_scale(history, DEFAULT_SCALE_UP, down, 80, 72, 0.0)
    assert limit_with_behavior(history, 72, 10, 1, 100, DEFAULT_SCALE_UP, down, 30.0).replicas == 72
    # after the period: 10% of 72 = 7.2 -> 72 x 0.9 = 64.8 -> 64 (8 replicas), Pods: 68 -> 64
    assert limit_with_behavior(history, 72, 10, 1, 100, DEFAULT_SCALE_UP, down, 61.0) == Outcome(
        64, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
    )


def test_select_policy_min_and_disabled() -> None:
    up_min = Rules(0, "Min", DEFAULT_SCALE_UP.policies)
    assert limit_with_behavior(History(), 10, 50, 1, 100, up_min, DEFAULT_SCALE_DOWN, 0.0).replicas == 14
    down_off = Rules(300, "Disabled", DEFAULT_SCALE_DOWN.policies)
    assert limit_with_behavior(History(), 10, 2, 1, 100, DEFAULT_SCALE_UP, down_off, 0.0).replicas == 10
    up_off = Rules(0, "Disabled", DEFAULT_SCALE_UP.policies)
    assert limit_with_behavior(History(), 10, 20, 1, 100, up_off, DEFAULT_SCALE_DOWN, 0.0).replicas == 10


def test_clamped_to_min_and_max() -> None:
    up, down = DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN
    assert limit_with_behavior(History(), 9, 30, 2, 10, up, down, 0.0) == Outcome(
        10, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    )
    assert limit_with_behavior(History(), 3, 1, 2, 10, up, down, 0.0) == Outcome(
        2, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    )
    assert limit_with_behavior(History(), 3, 5, 2, 10, up, down, 0.0).reason == "DesiredWithinRange"
    assert limit_without_behavior(3, 1, 2, 10).reason == "TooFewReplicas"


def test_stabilization_takes_the_highest_recent_recommendation_when_scaling_down() -> None:
    history = record_initial(History(), 5, 0.0)
    got, history = stabilize(history, 5, 0.0)
    assert got == 5
    got, history = stabilize(history, 8, 10.0)
    assert got == 8  # up: no window
    got, history = stabilize(history, 2, 100.0)
    assert got == 8  # down: 8 was recommended 90 s ago
    got, history = stabilize(history, 3, 200.0)
    assert got == 8
    got, history = stabilize(history, 3, 311.0)
    assert got == 3  # 8 (at 10 s) is out of the window; 2 and 3 remain: 3
    outcome, _ = stabilize_with_behavior(History(), 8, 2, DEFAULT_SCALE_UP, Rules(0, "Max", ()), 0.0)
    assert outcome.replicas == 2  # a scaleDown window of 0 s


def test_the_first_round_remembers_the_size_it_found() -> None:
    """recordInitialRecommendation: only once (an HPA's first round)."""
    first = record_initial(History(), 5, 0.0)
    assert first.recommendations == (Recommendation(0.0, 5),)
    assert record_initial(first, 9, 15.0) == first
