"""The rolling-update arithmetic, driven step by step like the controller drives it: the surge and
availability promises hold at every step, and the rollout always finishes."""

from __future__ import annotations

import pytest

from modelport.controlplane.rollout import (
    Revision,
    complete,
    fenceposts,
    next_new_replicas,
    next_old_replicas,
)


def test_fenceposts_round_as_kubernetes_does() -> None:
    assert fenceposts("25%", "25%", 10) == (3, 2)
    assert fenceposts("25%", "25%", 2) == (1, 0)
    assert fenceposts(0, "10%", 5) == (0, 1)  # both zero: one may be unavailable
    assert fenceposts(2, 0, 3) == (2, 0)


def _simulate(desired: int, old_replicas: int, max_surge: int | str, max_unavailable: int | str,
              ready_per_step: int = 10**6) -> list[tuple[int, int]]:  # fmt: skip
    """Step the rollout to the end; new replicas become available `ready_per_step` at a time."""
    surge, unavailable = fenceposts(max_surge, max_unavailable, desired)
    new = Revision("new", 0, 0)
    old = Revision("old", old_replicas, old_replicas)
    history = [(new.replicas, old.replicas)]
    for _ in range(100):
        if complete(desired, new, [old]):
            return history
        new_target = next_new_replicas(desired, surge, new, [old])
        new = Revision("new", new_target, min(new_target, new.available + ready_per_step))
        old_target = next_old_replicas(desired, unavailable, new, [old])["old"]
        old = Revision("old", old_target, min(old.available, old_target))
        total, available = new.replicas + old.replicas, new.available + old.available
        assert total <= desired + surge, f"surge broken: {total} > {desired} + {surge}"
        assert available >= min(desired - unavailable, old_replicas), f"availability broken at {history}"
        history.append((new.replicas, old.replicas))
    raise AssertionError(f"rollout never finished: {history}")


@pytest.mark.parametrize(
    ("desired", "surge", "unavailable"),
    [
        (2, "25%", "25%"),
        (10, "25%", "25%"),
        (3, 1, 0),
        (3, 0, 1),
        (5, "50%", "50%"),
        (4, 4, 0),
        (1, "25%", "25%"),
    ],
)
@pytest.mark.parametrize("ready_per_step", [1, 100])
def test_every_rollout_keeps_its_promises_and_finishes(
    desired: int, surge: int | str, unavailable: int | str, ready_per_step: int
) -> None:
    history = _simulate(desired, desired, surge, unavailable, ready_per_step)
    assert history[-1] == (desired, 0)


def test_two_replicas_with_the_defaults_go_one_at_a_time() -> None:
    # maxSurge 25% of 2 -> 1, maxUnavailable 25% of 2 -> 0: one new up, one old down, repeat.
    assert _simulate(2, 2, "25%", "25%", ready_per_step=1) == [(0, 2), (1, 1), (2, 0)]


def test_unavailable_old_replicas_go_first() -> None:
    new = Revision("new", 1, 1)
    olds = [Revision("v1", 2, 0), Revision("v2", 2, 2)]  # v1's replicas are crash-looping
    targets = next_old_replicas(4, 1, new, olds)
    assert targets["v1"] == 0  # removed first: they served nothing
    assert targets["v2"] == 2  # keeps availability: 1 new + 2 old >= 4 - 1


def test_nothing_moves_while_new_replicas_are_not_ready() -> None:
    new = Revision("new", 1, 0)  # started, not ready (a model that does not load)
    old = Revision("old", 2, 2)
    assert next_new_replicas(2, 1, new, [old]) == 1  # no room to surge further
    assert next_old_replicas(2, 0, new, [old]) == {"old": 2}  # and the old keep serving
