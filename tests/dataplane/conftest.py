"""Fixtures of the supervisor tests: a fake clock, and a Supervisor on it that stops what it started."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelport.dataplane.supervisor import Supervisor
from modelport.testing.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def supervisor(clock: FakeClock) -> Iterator[Supervisor]:
    sup = Supervisor(clock)
    yield sup
    sup.stop_all(grace_seconds=5)
