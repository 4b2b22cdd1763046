"""What an HPA remembers between rounds and how it tempers a metric's proposal, as Kubernetes'
`horizontal.go` does, pure: each function takes the history and `now` and returns its answer
and the new history (nothing here reads a clock or changes its arguments).

Two paths, chosen by whether the HPA has a `behavior` (even a partial one):

- without: `normalizeDesiredReplicas`. Scale-down stabilization takes the highest recommendation
  of the last 300 s; a scale-up goes at most to max(2 x current, 4) per round (3 -> 6, 1 -> 4);
  then [minReplicas, maxReplicas].
- with: `normalizeDesiredReplicasWithBehaviors`. The lowest recommendation of the scaleUp window
  (default 0 s) and the highest of the scaleDown window (default 300 s); rate policies counted
  from the replicas there were when each policy's period began (defaults: up max(+4 pods, +100%)
  per 15 s, down -100% per 15 s); then [minReplicas, maxReplicas].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from modelport.controlplane.replica_calculator import DEFAULT_TOLERANCE, Tolerances
from modelport.spec import Behavior, ScalingRules

DOWNSCALE_STABILIZATION_SECONDS = 300  # --horizontal-pod-autoscaler-downscale-stabilization
SCALE_UP_LIMIT_FACTOR = 2.0  # scaleUpLimitFactor
SCALE_UP_LIMIT_MINIMUM = 4.0  # scaleUpLimitMinimum


@dataclass(frozen=True)
class Policy:
    kind: str  # Pods | Percent
    value: int
    period: int  # seconds


@dataclass(frozen=True)
class Rules:
    """One direction's HPAScalingRules with every default filled in."""

    window: int
    select: str  # Max | Min | Disabled
    policies: tuple[Policy, ...]
    tolerance: float = DEFAULT_TOLERANCE


DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = Rules(DOWNSCALE_STABILIZATION_SECONDS, "Max", (Policy("Percent", 100, 15),))


def _rules(given: ScalingRules | None, default: Rules) -> Rules:
    """GenerateHPAScaleUpRules/ScaleDownRules: each field given replaces the default's."""
    if given is None:
        return default
    return Rules(
        default.window if given.stabilization_window_seconds is None else given.stabilization_window_seconds,
        given.select_policy,
        tuple(Policy(p.type, p.value, p.period_seconds) for p in given.policies or ()) or default.policies,
        default.tolerance if given.tolerance is None else given.tolerance,
    )


def scale_up_rules(behavior: Behavior | None) -> Rules:
    return _rules(behavior.scale_up if behavior else None, DEFAULT_SCALE_UP)


def scale_down_rules(behavior: Behavior | None) -> Rules:
    return _rules(behavior.scale_down if behavior else None, DEFAULT_SCALE_DOWN)


def tolerances(behavior: Behavior | None) -> Tolerances:
    """tolerancesForHpa: a tolerance given for one direction leaves the other at 0.1."""
    return Tolerances(down=scale_down_rules(behavior).tolerance, up=scale_up_rules(behavior).tolerance)


@dataclass(frozen=True)
class Recommendation:
    at: float  # monotonic seconds
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    change: int  # replicas added (ups) or removed (downs)
    outdated: bool = False


@dataclass(frozen=True)
class History:
    """One HPA's memory (Kubernetes keeps it in the controller, so a restart forgets it)."""

    # None until the first round (Go's nil slice): that round remembers the size it found.
    recommendations: tuple[Recommendation, ...] | None = None
    ups: tuple[ScaleEvent, ...] = ()
    downs: tuple[ScaleEvent, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """A tempered replica count and the condition reason/message that says why."""

    replicas: int
    reason: str
    message: str


def _stored(history: History, old: int | None, replicas: int, now: float) -> History:
    """The new recommendation takes the place of an outdated one, or is added."""
    fresh = Recommendation(now, replicas)
    if old is None:
        return replace(history, recommendations=(*(history.recommendations or ()), fresh))
    recommendations = list(history.recommendations or ())
    recommendations[old] = fresh
    return replace(history, recommendations=tuple(recommendations))


def record_initial(history: History, current: int, now: float) -> History:
    """recordInitialRecommendation: an HPA's first round remembers the size it found, so the first
    scale-down is stabilized too (5 replicas, metrics say 3: stays 5 for the window)."""
    return history if history.recommendations is not None else _stored(history, None, current, now)


def stabilize(history: History, desired: int, now: float) -> tuple[int, History]:
    """stabilizeRecommendation (no behavior): the highest recommendation of the last 300 s."""
    cutoff = now - DOWNSCALE_STABILIZATION_SECONDS
    highest, old = desired, None
    for i, rec in enumerate(history.recommendations or ()):
        if rec.at < cutoff:
            old = i
        elif rec.replicas > highest:
            highest = rec.replicas
    return highest, _stored(history, old, desired, now)


def stabilize_with_behavior(
    history: History, current: int, desired: int, up: Rules, down: Rules, now: float
) -> tuple[Outcome, History]:
    """stabilizeRecommendationWithBehaviors: between the lowest recommendation of the scaleUp
    window and the highest of the scaleDown window, as close to `current` as they allow."""
    up_cutoff, down_cutoff = now - up.window, now - down.window
    lowest, highest, old = desired, desired, None
    for i, rec in enumerate(history.recommendations or ()):
        if rec.at > up_cutoff:
            lowest = min(lowest, rec.replicas)
        if rec.at > down_cutoff:
            highest = max(highest, rec.replicas)
        if rec.at < up_cutoff and rec.at < down_cutoff:
            old = i
    replicas = min(max(current, lowest), highest)
    if desired >= current:
        outcome = Outcome(
            replicas,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    else:
        outcome = Outcome(
            replicas,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    return outcome, _stored(history, old, desired, now)


def _changed(events: tuple[ScaleEvent, ...], period: int, now: float) -> int:
    return sum(event.change for event in events if event.at > now - period)


def _period_starts(history: History, current: int, rules: Rules, now: float) -> list[tuple[Policy, int]]:
    """Each policy with the replicas there were when its period began: 100 now, 15 added in the
    last 120 s -> a 120 s policy counts from 85."""
    return [
        (p, current - _changed(history.ups, p.period, now) + _changed(history.downs, p.period, now))
        for p in rules.policies
    ]


def scale_up_limit(history: History, current: int, rules: Rules, now: float) -> int:
    """calculateScaleUpLimitWithScalingRules: Max takes the policy allowing most, Min the least.
    10 replicas, Pods 4 and Percent 100 per 15 s: max(14, 20) = 20."""
    if rules.select == "Disabled":
        return current
    proposals = [
        start + p.value if p.kind == "Pods" else math.ceil(start * (1 + p.value / 100))
        for p, start in _period_starts(history, current, rules, now)
    ]
    return min(proposals) if rules.select == "Min" else max(proposals)


def scale_down_limit(history: History, current: int, rules: Rules, now: float) -> int:
    """calculateScaleDownLimitWithBehaviors: 80 replicas, Pods 4 and Percent 10 per 60 s:
    Max (the bigger change) -> min(76, int(72.0)) = 72."""
    if rules.select == "Disabled":
        return current
    proposals = [
        start - p.value if p.kind == "Pods" else int(start * (1 - p.value / 100))
        for p, start in _period_starts(history, current, rules, now)
    ]
    return max(proposals) if rules.select == "Min" else min(proposals)


_WITHIN = Outcome(0, "DesiredWithinRange", "the desired count is within the acceptable range")
_UP_LIMIT = "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
_TOO_MANY = "TooManyReplicas", "the desired replica count is more than the maximum replica count"
_DOWN_LIMIT = "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
_TOO_FEW = "TooFewReplicas", "the desired replica count is less than the minimum replica count"


def limit_with_behavior(
    history: History, current: int, desired: int, low: int, high: int, up: Rules, down: Rules, now: float
) -> Outcome:
    """convertDesiredReplicasWithBehaviorRate: the rate policies, then [low, high]."""
    if desired > current:
        ceiling = max(scale_up_limit(history, current, up, now), current)
        allowed, (reason, message) = (ceiling, _UP_LIMIT) if high > ceiling else (high, _TOO_MANY)
        if desired > allowed:
            return Outcome(allowed, reason, message)
    elif desired < current:
        floor = min(scale_down_limit(history, current, down, now), current)
        allowed, (reason, message) = (floor, _DOWN_LIMIT) if low < floor else (low, _TOO_FEW)
        if desired < allowed:
            return Outcome(allowed, reason, message)
    return replace(_WITHIN, replicas=desired)


def limit_without_behavior(current: int, desired: int, low: int, high: int) -> Outcome:
    """convertDesiredReplicasWithRules: [low, max(2 x current, 4)] within [low, high]."""
    ceiling = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    allowed, (reason, message) = (ceiling, _UP_LIMIT) if high > ceiling else (high, _TOO_MANY)
    if desired < low:
        return Outcome(low, *_TOO_FEW)
    if desired > allowed:
        return Outcome(allowed, reason, message)
    return replace(_WITHIN, replicas=desired)


def record_scale(history: History, up: Rules, down: Rules, before: int, after: int, now: float) -> History:
    """storeScaleEvent (behavior path only): the change takes the place of an event older than
    the direction's longest policy period, or is added."""
    rules, events = (up, history.ups) if after > before else (down, history.downs)
    longest = max((p.period for p in rules.policies), default=0)
    marked = [replace(e, outdated=True) if e.at < now - longest else e for e in events]
    old = max((i for i, e in enumerate(marked) if e.outdated), default=None)
    fresh = ScaleEvent(now, abs(after - before))
    if old is None:
        marked.append(fresh)
    else:
        marked[old] = fresh
    return replace(history, ups=tuple(marked)) if after > before else replace(history, downs=tuple(marked))
