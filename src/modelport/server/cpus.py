"""How many CPUs this process may use: what `--workers auto` starts."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def compute_usable_cpus(affinity: int, cpu_max: Iterable[str]) -> int:
    """The CPUs a process may use: those it may run on, capped by the tightest cgroup v2
    `cpu.max` ("QUOTA PERIOD" in µs, or "max PERIOD": no cap) on its cgroup's path, rounded up.

    4 CPUs, "max 100000" -> 4; 4 CPUs, "150000 100000" -> 2 (1.5 CPUs); 1 CPU, "400000 100000" -> 1.
    """
    usable = affinity
    for text in cpu_max:
        quota, _, period = text.strip().partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            usable = min(usable, max(1, math.ceil(int(quota) / int(period))))
    return max(1, usable)


def usable_cpus() -> int:
    """compute_usable_cpus for this process: its affinity and its cgroup's cpu.max files."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return compute_usable_cpus(affinity, _cpu_max_files())


def _cpu_max_files() -> list[str]:
    try:
        line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::"))
    except (OSError, StopIteration):
        return []
    found, here = [], _CGROUP / line[3:].strip("/")
    while True:
        with contextlib.suppress(OSError):
            found.append((here / "cpu.max").read_text())
        if here == _CGROUP or _CGROUP not in here.parents:
            return found
        here = here.parent
