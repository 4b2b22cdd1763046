"""Which versions to serve, and the next load or unload: pure functions, no I/O, no clock.

Version lifecycle (TF Serving's states, the numbers its status API reports):

    START(10) ──load──▶ LOADING(20) ──ok──▶ AVAILABLE(30) ──unload──▶ UNLOADING(40) ──▶ END(50)
                             └──────────────── failed ──────────────────────────────────▶ END
                                                 (error kept in the status; a changed folder → START)

`compute_next_action` returns at most one action, like TF Serving's AspiredVersionPolicy: the manager
applies it and asks again, so the rules stay small and every intermediate state is valid.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from modelport.repository.config import VersionPolicy


class State(enum.IntEnum):
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class Transition(enum.Enum):
    # Load the new version, then unload the old one: no gap, twice the memory for a moment.
    AVAILABILITY_PRESERVING = "availability_preserving"
    # Unload the old version first: never two in memory, but no version served in between.
    RESOURCE_PRESERVING = "resource_preserving"


@dataclass(frozen=True)
class Load:
    version: int


@dataclass(frozen=True)
class Unload:
    version: int


Action = Load | Unload


def compute_aspired(policy: VersionPolicy, complete_on_disk: Collection[int]) -> frozenset[int]:
    """The versions the policy wants, among the complete version folders on disk.

    latest{2} with {1, 2, 5} on disk -> {2, 5}; all -> every one; specific{2, 7} -> {2}
    (7 is reported missing by the manager, not invented).
    """
    present = sorted(complete_on_disk)
    if policy.kind == "all":
        return frozenset(present)
    if policy.kind == "specific":
        return frozenset(v for v in present if v in policy.versions)
    return frozenset(present[-policy.num_versions :]) if present else frozenset()


def compute_next_action(
    states: Mapping[int, State], aspired: frozenset[int], transition: Transition
) -> Action | None:
    """One step towards serving exactly the aspired versions.

    `states` holds every version the manager tracks. A version in START that is aspired is
    waiting to load; END versions are finished (unloaded or failed) and are never acted on.

    Availability preserving: unload a version that is no longer aspired only once some aspired
    version is AVAILABLE (or nothing is aspired at all: the model was removed), so a new version
    that fails to load leaves the old one serving. Resource preserving: unload first, load after.
    Loads go newest first.
    """
    loaded = {v for v, s in states.items() if s == State.AVAILABLE}
    stale = sorted(loaded - aspired)
    waiting = sorted(v for v in aspired if states.get(v) == State.START)
    if stale:
        aspired_up = any(states.get(v) == State.AVAILABLE for v in aspired)
        may_unload = transition is Transition.RESOURCE_PRESERVING or aspired_up or not aspired
        if may_unload:
            return Unload(stale[0])
    if waiting:
        return Load(waiting[-1])
    return None
