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


class TimedModel:
    """Takes `seconds` a call outside the GIL (as ONNX Runtime computes), and notes its callers."""

    inputs: Sequence[object] = ()
    outputs: Sequence[object] = ()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.threads: list[str] = []

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        self.threads.append(threading.current_thread().name)
        if self.seconds:
            time.sleep(self.seconds)
        return {}


def test_a_heavy_models_calls_leave_the_loop_free_and_answer_in_arrival_order() -> None:
    """A 0.5 ms model (under the loop's 2 ms, over HEAVY_CALL_SECONDS) with 20 requests queued:
    a light model's request made after them is answered before the last of them, and they are
    answered in the order they came. Called on the loop, the 20 calls ran back to back before it."""
    heavy, light = TimedModel(0.0005), TimedModel(0.0)
    heavy_servable = Servable("heavy", 1, Path("."), "test", heavy, {})  # type: ignore[arg-type]
    light_servable = Servable("light", 1, Path("."), "test", light, {})  # type: ignore[arg-type]
    with ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(1, thread_name_prefix="model") as model_thread:
        path = InferencePath(pool, None, RequestLimits(), lambda servable: None, model_thread=model_thread)

        async def scenario() -> None:
            for _ in range(10):  # each version's costs measured (the first call in the pool), noise aside
                await path.run(heavy_servable, _prepare, 10, Deadline.after(30))
                await path.run(light_servable, _prepare, 10, Deadline.after(30))
            answered: list[str] = []

            async def ask(servable: Servable, name: str) -> None:
                await path.run(servable, _prepare, 10, Deadline.after(30))
                answered.append(name)

            heavies = [asyncio.create_task(ask(heavy_servable, f"heavy {i}")) for i in range(20)]
            await asyncio.gather(*heavies, ask(light_servable, "light"))
            assert answered.index("light") < 19, answered
            assert [name for name in answered if name != "light"] == [f"heavy {i}" for i in range(20)]

        asyncio.run(scenario())
    assert all(name.startswith("model") for name in heavy.threads[-20:]), heavy.threads
    assert not any(name.startswith("model") for name in light.threads), light.threads


def test_a_lone_heavy_request_is_called_on_the_loop_and_two_at_once_in_the_model_thread() -> None:
    """One request at a time to a 0.5 ms model: nothing waits behind it, so its call is made on
    the loop, without the two thread wake-ups of the hop to the model thread. Two that arrive
    together both take their turns in the model thread."""
    heavy = TimedModel(0.0005)
    servable = Servable("heavy", 1, Path("."), "test", heavy, {})  # type: ignore[arg-type]
    with ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(1, thread_name_prefix="model") as model_thread:
        path = InferencePath(pool, None, RequestLimits(), lambda servable: None, model_thread=model_thread)

        async def scenario() -> None:
            for _ in range(10):  # the first in the pool (cost unknown), the rest one at a time
                assert await path.run(servable, _prepare, 10, Deadline.after(30)) == "answered"
            assert heavy.threads[-5:] == [threading.current_thread().name] * 5, heavy.threads
            both = [path.run(servable, _prepare, 10, Deadline.after(30)) for _ in range(2)]
            assert await asyncio.gather(*both) == ["answered", "answered"]

        asyncio.run(scenario())
    assert all(name.startswith("model") for name in heavy.threads[-2:]), heavy.threads
