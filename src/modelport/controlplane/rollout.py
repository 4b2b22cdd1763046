"""The rolling-update arithmetic of a Deployment, as Kubernetes' deployment controller does it.

Pure functions on counts: given the desired replicas, maxSurge and maxUnavailable, and how many
replicas the new and the old revisions have (and how many of those are available), say how many
each should have next. The controller applies one step, waits for replicas to become available
(readiness plus minReadySeconds), and asks again. Two promises hold at every step:

    total replicas      <= desired + maxSurge
    available replicas  >= desired - maxUnavailable   (once it held before the rollout began)
"""

from __future__ import annotations

from dataclasses import dataclass

from modelport.spec import scaled


@dataclass(frozen=True)
class Revision:
    name: str
    replicas: int  # how many it has (running or starting)
    available: int  # of those, ready for at least minReadySeconds


def fenceposts(max_surge: int | str, max_unavailable: int | str, desired: int) -> tuple[int, int]:
    """maxSurge rounds up, maxUnavailable down; if both come to 0, one may be unavailable
    (Kubernetes' ResolveFenceposts), so a rollout can always move."""
    surge = scaled(max_surge, desired, round_up=True)
    unavailable = scaled(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def next_new_replicas(desired: int, surge: int, new: Revision, olds: list[Revision]) -> int:
    """Scale the new revision up as far as the surge allows (never past desired)."""
    if new.replicas >= desired:
        return desired
    total = new.replicas + sum(o.replicas for o in olds)
    room = desired + surge - total
    if room <= 0:
        return new.replicas
    return new.replicas + min(room, desired - new.replicas)


def next_old_replicas(desired: int, unavailable: int, new: Revision, olds: list[Revision]) -> dict[str, int]:
    """Scale old revisions down as far as availability allows: unavailable old replicas first
    (they serve nothing), then the oldest revisions' available ones."""
    targets = {o.name: o.replicas for o in olds}
    if not olds or sum(o.replicas for o in olds) == 0:
        return targets
    total = new.replicas + sum(o.replicas for o in olds)
    min_available = desired - unavailable
    new_unavailable = new.replicas - new.available
    budget = total - min_available - new_unavailable
    if budget <= 0:
        return targets
    # 1. Replicas of old revisions that are not available cost nothing to remove.
    for old in olds:
        if budget <= 0:
            break
        cut = min(budget, old.replicas - old.available)
        if cut > 0:
            targets[old.name] -= cut
            budget -= cut
    # 2. Available ones, oldest revision first, keeping min_available.
    available = new.available + sum(min(o.available, targets[o.name]) for o in olds)
    spare = available - min_available
    for old in olds:
        if spare <= 0:
            break
        cut = min(spare, targets[old.name])
        targets[old.name] -= cut
        spare -= cut
    return targets


def complete(desired: int, new: Revision, olds: list[Revision]) -> bool:
    """Kubernetes' rollout status: every replica is the new revision and available."""
    return new.replicas == desired and new.available == desired and all(o.replicas == 0 for o in olds)
