"""The shared inference path's deadline rule, in-process: work that cannot finish by its deadline
is not started. A version whose requests take at least 1 s, and a request that gets a thread
with 0.7 s left of its 3 s: dropped (counted as expired), the model never called for it; one that
gets a thread with time to spare is run. (The real-server paths are in
tests/e2e/test_loop_and_deadlines.py.)"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import Code, ModelportError
from modelport.repository.manager import Servable
from modelport.runtimes.limits import RequestLimits
from modelport.runtimes.signature import PreparedCall
from modelport.server.inference import Deadline, InferencePath, Job


class SecondModel:
    """Takes 1 s a call, and counts its calls."""

    inputs: Sequence[object] = ()
    outputs: Sequence[object] = ()

    def __init__(self) -> None:
        self.calls = 0

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        self.calls += 1
        time.sleep(1.0)
        return {}


def _prepare(limits: RequestLimits) -> Job[str]:
    return Job(PreparedCall({}, [], []), lambda outputs: "answered")


def test_a_request_that_gets_a_thread_with_less_time_left_than_it_takes_is_not_started() -> None:
    model = SecondModel()
    servable = Servable("m", 1, Path("."), "test", model, {})  # type: ignore[arg-type]
    expired: list[Servable] = []
    with ThreadPoolExecutor(1) as pool:
        path = InferencePath(pool, None, RequestLimits(), expired.append)

        async def scenario() -> None:
            # The first request: the version's cost is measured (1 s), in the pool.
            assert await path.run(servable, _prepare, 10, Deadline.after(30)) == "answered"
            # The one thread is busy for 2.3 s; a request with a 3 s deadline gets it with 0.7 s left.
            gate = threading.Event()
            pool.submit(gate.wait)
            threading.Timer(2.3, gate.set).start()
            with pytest.raises(ModelportError) as caught:
                await path.run(servable, _prepare, 10, Deadline.after(3.0))
            assert caught.value.code is Code.DEADLINE_EXCEEDED
            assert (model.calls, len(expired)) == (1, 1)  # dropped unstarted, and counted
            # With time to spare it runs.
            assert await path.run(servable, _prepare, 10, Deadline.after(30)) == "answered"
            assert model.calls == 2

        asyncio.run(scenario())
