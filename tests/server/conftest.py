"""Fixtures of the in-process REST app tests: the inference thread pool, and a runtime whose model
call waits on a gate the test opens."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from claims_support import GatedRuntime


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


@pytest.fixture
def gated() -> Iterator[GatedRuntime]:
    runtime = GatedRuntime()
    yield runtime
    runtime.gate.set()  # let a model call still waiting finish, whatever the test did
