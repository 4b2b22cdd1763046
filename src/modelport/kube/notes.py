"""What render tells its user: a field of ours that a Kubernetes object cannot carry, with what to
install or choose instead. Never dropped silently: printed as a warning, written at the top of the
kustomization, and with `--strict` a refusal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Note:
    where: str  # the object: "Service/mnist"
    field: str  # our field path: "spec.loadBalancing"
    message: str  # what happens to it, and what to do instead

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}"


def whole_seconds(value: float, minimum: int, where: str, field: str, notes: list[Note]) -> int:
    """Kubernetes counts probe times in whole seconds (at least `minimum`): 2.5 becomes 3, never
    less than asked, and the change is said."""
    seconds = max(minimum, int(-(-value // 1)))
    if seconds != value:
        notes.append(
            Note(where, field, f"{value:g} s rounded up to {seconds} s (Kubernetes counts whole seconds)")
        )
    return seconds
