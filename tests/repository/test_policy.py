"""Version policy and next-action rules, as tables that read like TF Serving's documentation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelport.repository.config import VersionPolicy
from modelport.repository.policy import (
    Load,
    State,
    Transition,
    Unload,
    compute_aspired,
    compute_next_action,
)

A, S, E, L = State.AVAILABLE, State.START, State.END, State.LOADING
AVAIL = Transition.AVAILABILITY_PRESERVING
RES = Transition.RESOURCE_PRESERVING


@pytest.mark.parametrize(
    ("policy", "on_disk", "aspired"),
    [
        (VersionPolicy("latest", 1), {1, 2, 5}, {5}),
        (VersionPolicy("latest", 2), {1, 2, 5}, {2, 5}),
        (VersionPolicy("latest", 3), {4}, {4}),
        (VersionPolicy("latest", 1), set(), set()),
        (VersionPolicy("all"), {1, 2, 5}, {1, 2, 5}),
        (VersionPolicy("specific", versions=(2, 7)), {1, 2, 5}, {2}),
        (VersionPolicy("specific", versions=(7,)), {1, 2, 5}, set()),
    ],
)
def test_aspired_versions(policy: VersionPolicy, on_disk: set[int], aspired: set[int]) -> None:
    assert compute_aspired(policy, on_disk) == aspired


@pytest.mark.parametrize(
    ("states", "aspired", "transition", "action"),
    [
        # a new version appears: load it first, the old one keeps serving
        ({1: A, 2: S}, {2}, AVAIL, Load(2)),
        # ... and once it is AVAILABLE the old one goes
        ({1: A, 2: A}, {2}, AVAIL, Unload(1)),
        # the new version failed to load: the old one is never unloaded
        ({1: A, 2: E}, {2}, AVAIL, None),
        # resource preserving: unload first, then load
        ({1: A, 2: S}, {2}, RES, Unload(1)),
        ({1: E, 2: S}, {2}, RES, Load(2)),
        # several waiting: newest first
        ({1: S, 2: S, 3: S}, {1, 2, 3}, AVAIL, Load(3)),
        # nothing aspired any more (specific version removed from disk): unload
        ({1: A}, set(), AVAIL, Unload(1)),
        # steady state
        ({1: A, 2: A}, {1, 2}, AVAIL, None),
        # a load in progress is left alone
        ({1: A, 2: L}, {2}, AVAIL, None),
    ],
)
def test_next_action(
    states: dict[int, State], aspired: set[int], transition: Transition, action: object
) -> None:
    assert compute_next_action(states, frozenset(aspired), transition) == action


def _apply(states: dict[int, State], action: Load | Unload, fail: set[int]) -> None:
    if isinstance(action, Load):
        states[action.version] = E if action.version in fail else A
    else:
        states[action.version] = E


@given(
    old=st.sets(st.integers(1, 20), max_size=4),
    new=st.sets(st.integers(1, 20), min_size=1, max_size=4),
    fail=st.sets(st.integers(1, 20), max_size=3),
)
def test_availability_preserving_never_leaves_a_gap(old: set[int], new: set[int], fail: set[int]) -> None:
    """Moving from serving `old` to `new`: while some version was available, one always is."""
    states: dict[int, State] = {v: A for v in old}
    states.update({v: S for v in new - old})
    for _ in range(50):
        action = compute_next_action(states, frozenset(new), AVAIL)
        if action is None:
            break
        _apply(states, action, fail)
        if old:
            assert any(s == A for s in states.values())
    else:
        pytest.fail("the policy did not converge")
    # converged: every aspired version that can load is AVAILABLE
    assert {v for v, s in states.items() if s == A} >= new - fail
