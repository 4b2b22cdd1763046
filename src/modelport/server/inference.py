"""One inference path for every protocol (TF Serving REST, v2 REST, v2 gRPC): where a request's
work runs, and its deadline.

A protocol hands over a `prepare` function (parse, check the limits, decode: everything before
the model call) and gets back what the returned Job's `encode` makes of the model's outputs.

Where the work runs:
- on the event loop itself, when the request is small (body up to 64 KiB, images up to 512x512
  together) and the version has answered such requests in under 2 ms: a small ONNX model takes
  ~50 us, less than the hop to a thread would cost. A small request that turns out to carry
  bigger images is moved to the pool before any of them is decoded (TooHeavyForTheLoop);
  - but a model whose call alone takes at least 0.15 ms (HEAVY_CALL_SECONDS: the CNN example's
    0.26 ms, not the MNIST MLP's 0.01-0.05) is called in the model thread, one call at a time in
    arrival order, while the loop keeps reading, decoding and answering the other requests (ONNX
    Runtime lets go of the GIL while it computes). Called back to back on the loop, such calls
    left some connections unread for half a second at 64 connections (p99 20x p50). A lone
    request (no other one on the path, the model thread idle, still so after one turn of the
    loop, which lets the requests read with it begin) is called on the loop all the same: the
    hop there and back cost it ~0.5 ms of thread wake-ups (1 connection: 0.64 of the req/s);
- in the inference thread pool otherwise, so health checks, metrics and small requests keep
  being answered while a 40-million-pixel request decodes;
- with batching on, the model call runs in the version's batch, the rest as above.

Deadlines: every path has one (`--rest_api_timeout_in_ms`; a gRPC call's own deadline when it
is sooner). Work that cannot finish by its deadline is not started: a request that waited in the
pool's queue until less time was left than the version's fastest request took (or in the
batcher's queue past its deadline) is dropped there, counted in
`modelport_requests_expired_total`; its caller gets 504 / DEADLINE_EXCEEDED. A model call that
runs past the deadline is stopped there when the runtime can stop one (ONNX Runtime).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, NamedTuple, TypeVar
from weakref import WeakKeyDictionary

import numpy as np

from modelport.errors import Code, ModelportError, deadline_exceeded
from modelport.repository.manager import Servable
from modelport.runtimes.limits import RequestLimits, TooHeavyForTheLoop
from modelport.runtimes.signature import PreparedCall
from modelport.server.batching import Batchers

R = TypeVar("R")
T = TypeVar("T")

# What may run on the event loop: a body this small (a few rows, or one small encoded image) ...
LOOP_MAX_BYTES = 64 * 1024
# ... whose images decode to at most this many pixels together (512x512: ~2 ms of PNG decoding) ...
LOOP_MAX_PIXELS = 512 * 512
# ... for a version whose small requests have taken less than this.
LOOP_MAX_SECONDS = 0.002
# A model call at least this long runs in the model thread even for a request on the loop: about
# three times what the hop there and back costs the loop (~50 us of CPU).
HEAVY_CALL_SECONDS = 0.00015


class Job(NamedTuple, Generic[R]):
    """A parsed, validated request: the model call it needs and how to answer from its outputs."""

    call: PreparedCall
    encode: Callable[[dict[str, np.ndarray]], R]

    def answer(self, results: Mapping[str, np.ndarray], watch: Watch | None = None) -> R:
        outputs = self.call.finish(results)
        if watch is not None:
            watch(self.call, outputs)
        return self.encode(outputs)


# What sees a request's model inputs and its answer's outputs (the quality monitor): called once
# the model has answered, in the thread that encodes the answer; it must only keep references.
Watch = Callable[[PreparedCall, dict[str, np.ndarray]], None]


Prepare = Callable[[RequestLimits], Job[R]]


class Deadline:
    """When a request's answer is due (time.monotonic()), and the timeout it came from. (A
    plain class with slots: one is made per request, a frozen dataclass costs twice as much.)"""

    __slots__ = ("at", "seconds")

    def __init__(self, at: float, seconds: float) -> None:
        self.at = at
        self.seconds = seconds

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def error(self, servable: Servable) -> ModelportError:
        return deadline_exceeded(servable.model_name, servable.version, self.seconds)


class _Cost:
    """A servable's intrinsic time for a small request: the minimum over a sliding window.

    Noise only ever adds time (a GC pause, the GIL held by another thread, a pool hop), so the
    minimum is what the work itself costs. An average would let one 20 ms pause push a 60 us
    model into the thread pool, where GIL hand-offs keep every request slow and the average high.
    The window is two blocks of 64: the estimate follows a model that really got slower within
    128 requests.
    """

    __slots__ = ("_count", "_current", "_previous", "least", "seconds")

    def __init__(self) -> None:
        self._previous = self._current = float("inf")  # unknown: the first request uses the pool
        self._count = 0
        # Kept up to date by `add`, read as attributes (several reads a request): `seconds` is
        # the minimum over the window (inf while unknown), `least` the same, but 0 while unknown.
        self.seconds = float("inf")
        self.least = 0.0

    def add(self, seconds: float) -> None:
        current = self._current = min(self._current, seconds)
        self._count += 1
        if self._count == 64:
            self._previous, self._current, self._count = current, float("inf"), 0
        least = self.seconds = min(self._previous, self._current)
        self.least = 0.0 if least == float("inf") else least


class _Expired(Exception):
    pass


class _PerVersion:
    """What the path keeps per loaded version: its limits (model.yaml's max_batch_size applied),
    the same for preparing on the loop, and its cost estimates: a small request's, and its model
    call's alone. Made once: not per request. (Threads may add to a _Cost at once: a lost
    minimum is found again among the next ones.)"""

    __slots__ = ("call", "cost", "limits", "loop_limits", "on_loop")

    def __init__(self, limits: RequestLimits, model: object) -> None:
        self.limits = limits
        self.loop_limits = limits.on_the_loop(LOOP_MAX_PIXELS)
        self.cost = _Cost()
        self.call = _Cost()  # unknown at first: heavy until a call says otherwise
        # A runtime may keep its calls off the loop however fast they have been (TensorFlow's).
        self.on_loop: bool = getattr(model, "call_on_the_loop", True)


class InferencePath:
    def __init__(
        self,
        pool: ThreadPoolExecutor,
        batchers: Batchers | None,
        limits: RequestLimits,
        expired: Callable[[Servable], None],
        predicted: Callable[[Servable, Mapping[str, np.ndarray]], None] = lambda servable, outputs: None,
        model_thread: ThreadPoolExecutor | None = None,
    ) -> None:
        """`model_thread`: where heavy models' calls run, one at a time (an executor of one
        thread, whose queue is first in, first out); None: `pool`."""
        self._pool = pool
        self._model_thread = pool if model_thread is None else model_thread
        self._predicted = predicted  # sees each model call's outputs (per-class counts)
        self._batchers = batchers
        self._limits = limits
        self._expired = expired  # counts a request dropped, unstarted, at its deadline
        self._versions: WeakKeyDictionary[Servable, _PerVersion] = WeakKeyDictionary()
        self._running = 0  # requests in `run` now (the event loop's: no lock)
        self._model_calls = 0  # calls handed to the model thread and not yet back
        self._gate: asyncio.Future[None] | None = None  # see _alone

    async def run(
        self,
        servable: Servable,
        prepare: Prepare[R],
        size: int,
        deadline: Deadline,
        watch: Watch | None = None,
    ) -> R:
        """`size`: the request's bytes on the wire, the first measure of how heavy it is.
        `watch`: shown the request's inputs and outputs once answered (see Watch)."""
        version = self._admitted(servable, deadline)
        small = size <= LOOP_MAX_BYTES
        cost = version.cost
        least = cost.least  # 0 while unknown
        if self._batchers is not None:
            return await self._batched(servable, prepare, version, small, deadline, watch)
        self._running += 1
        try:
            if small and 0.0 < least < LOOP_MAX_SECONDS and version.on_loop:
                started = time.perf_counter()
                job = _prepared_on_the_loop(prepare, version)
                if job is not None:  # else its images are too big for the loop: all of it goes to the pool
                    if version.call.seconds >= HEAVY_CALL_SECONDS and not await self._alone():
                        return await self._heavy_call(servable, job, version, deadline, watch, started)
                    outputs = _timed_model_call(servable, job, deadline, version.call)
                    self._predicted(servable, outputs)
                    reply = job.answer(outputs, watch)
                    cost.add(time.perf_counter() - started)
                    return reply
            work = _whole(servable, prepare, version, deadline, self._predicted, watch)
            reply, seconds = await self._in_pool(servable, work, deadline, least)
            if small:
                cost.add(seconds)
            return reply
        finally:
            self._running -= 1

    async def _alone(self) -> bool:
        """Is this the only request on the path, with the model thread idle, even once the
        requests that became ready with it have begun (one turn of the loop)? Then its heavy call
        is made on the loop: nothing waits behind it, and the hop would cost it two thread
        wake-ups. Otherwise it takes its turn in the model thread, and those that began during
        its turn of the loop take theirs after it (arrival order)."""
        gate = self._gate
        if gate is not None:  # an earlier request is finding out: after it
            await asyncio.shield(gate)  # (a cancelled waiter must not cancel the gate for the rest)
            return False
        if self._running != 1 or self._model_calls:
            return False
        gate = self._gate = asyncio.get_running_loop().create_future()
        try:
            await asyncio.sleep(0)
            return self._running == 1 and not self._model_calls
        finally:
            self._gate = None
            gate.set_result(None)

    def run_here(
        self,
        servable: Servable,
        prepare: Prepare[R],
        size: int,
        deadline: Deadline,
        watch: Watch | None = None,
    ) -> R:
        """`run` for a caller that is a thread of its own (the gRPC server's), blocking it, with
        this thread in the event loop's place: a small request of a fast version runs here,
        without a hop; any other in the pool, its model call in the batch when batching is on,
        this thread waiting until the deadline."""
        version = self._admitted(servable, deadline)
        least = version.cost.least
        if self._batchers is not None:
            job = prepare(version.limits)
            if deadline.remaining() <= 0:
                self._expired(servable)
                raise deadline.error(servable)
            batch = self._batchers.get(servable).submit(job.call.feeds, job.call.sources)
            results = self._waited(servable, batch, deadline)
            self._predicted(servable, results)
            return job.answer(results, watch)
        work = _whole(servable, prepare, version, deadline, self._predicted, watch)
        small = size <= LOOP_MAX_BYTES
        if small and 0.0 < least < LOOP_MAX_SECONDS and version.on_loop:
            started = time.perf_counter()
            reply = work()
            version.cost.add(time.perf_counter() - started)
            return reply
        future = self._pool.submit(self._timed(servable, work, deadline, least))
        reply, seconds = self._waited(servable, future, deadline)
        if small:
            version.cost.add(seconds)
        return reply

    def _admitted(self, servable: Servable, deadline: Deadline) -> _PerVersion:
        """The version's costs and limits (made on its first request), once its deadline leaves
        time for its fastest request so far; else counted expired and refused."""
        version = self._versions.get(servable)
        if version is None:
            limits = self._limits.for_model(servable.max_batch_size)
            version = self._versions[servable] = _PerVersion(limits, servable.model)
        if deadline.remaining() <= version.cost.least:  # e.g. a gRPC call whose own deadline is (nearly) up
            self._expired(servable)
            raise deadline.error(servable)
        return version

    def _waited(self, servable: Servable, future: Future[T], deadline: Deadline) -> T:
        """`_awaited` for a thread: blocks until the answer or the deadline."""
        try:
            return future.result(max(deadline.remaining(), 0))
        except (TimeoutError, _Expired):
            if future.cancel():  # not started yet: it never will be
                self._expired(servable)
            raise deadline.error(servable) from None

    async def _heavy_call(
        self,
        servable: Servable,
        job: Job[R],
        version: _PerVersion,
        deadline: Deadline,
        watch: Watch | None,
        started: float,
    ) -> R:
        """A request prepared on the loop whose model call runs in the model thread. Its cost
        is the loop's part and the call's, without the wait for the thread (at 64 connections
        the wait is most of the time, and would send every request to the pool)."""
        on_loop = time.perf_counter() - started
        call = functools.partial(_timed_model_call, servable, job, deadline, version.call)
        least = version.call.least
        self._model_calls += 1
        try:
            outputs, seconds = await self._in_pool(servable, call, deadline, least, self._model_thread)
        finally:
            self._model_calls -= 1
        resumed = time.perf_counter()
        self._predicted(servable, outputs)
        reply = job.answer(outputs, watch)
        version.cost.add(on_loop + seconds + time.perf_counter() - resumed)
        return reply

    async def _batched(
        self,
        servable: Servable,
        prepare: Prepare[R],
        version: _PerVersion,
        small: bool,
        deadline: Deadline,
        watch: Watch | None,
    ) -> R:
        """Prepare (on the loop if small, else in the pool), run in a shared batch, answer."""
        assert self._batchers is not None
        on_loop = _prepared_on_the_loop(prepare, version) if small else None
        job = (
            on_loop
            if on_loop is not None
            else (await self._in_pool(servable, functools.partial(prepare, version.limits), deadline))[0]
        )
        if deadline.remaining() <= 0:
            self._expired(servable)
            raise deadline.error(servable)
        future = self._batchers.get(servable).submit(job.call.feeds, job.call.sources)
        results = await self._awaited(servable, future, deadline)
        self._predicted(servable, results)
        if small:
            return job.answer(results, watch)
        reply, _ = await self._in_pool(servable, functools.partial(job.answer, results, watch), deadline)
        return reply

    async def _in_pool(
        self,
        servable: Servable,
        work: Callable[[], R],
        deadline: Deadline,
        least: float = 0.0,
        pool: ThreadPoolExecutor | None = None,
    ) -> tuple[R, float]:
        """Run `work` in the pool (or `pool`), unless, when a thread takes it, less than `least`
        seconds (what it takes at the least) are left before its deadline: it could not finish
        in time."""

        timed = self._timed(servable, work, deadline, least)
        return await self._awaited(servable, (pool or self._pool).submit(timed), deadline)

    def _timed(
        self, servable: Servable, work: Callable[[], R], deadline: Deadline, least: float
    ) -> Callable[[], tuple[R, float]]:
        """`work` for a pool thread, and the time it took; refused (_Expired) when, as a thread
        takes it, no more than `least` seconds are left before its deadline."""

        def timed() -> tuple[R, float]:
            if deadline.remaining() <= least:
                self._expired(servable)  # it waited in the queue past (or too near) its deadline
                raise _Expired
            started = time.perf_counter()
            return work(), time.perf_counter() - started

        return timed

    async def _awaited(self, servable: Servable, future: Future[R], deadline: Deadline) -> R:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(deadline.remaining(), 0))
        except (TimeoutError, _Expired):
            # wait_for cancelled the future: a pool or batch task not started yet never will be.
            if future.cancelled():
                self._expired(servable)
            raise deadline.error(servable) from None
        except asyncio.CancelledError:  # the caller went away (a gRPC call past its own deadline)
            if future.cancelled():
                self._expired(servable)
            raise


def _prepared_on_the_loop(prepare: Prepare[R], version: _PerVersion) -> Job[R] | None:
    """The prepared request, or None when its images are more than the loop may decode."""
    try:
        return prepare(version.loop_limits)
    except TooHeavyForTheLoop:
        return None


def _whole(
    servable: Servable, prepare: Prepare[R], version: _PerVersion, deadline: Deadline,
    predicted: Callable[[Servable, Mapping[str, np.ndarray]], None], watch: Watch | None,
) -> Callable[[], R]:  # fmt: skip
    """Prepare, run and encode: a request's whole work, for a pool thread."""

    def work() -> R:
        job = prepare(version.limits)
        outputs = _timed_model_call(servable, job, deadline, version.call)
        predicted(servable, outputs)
        return job.answer(outputs, watch)

    return work


def _timed_model_call(
    servable: Servable, job: Job[Any], deadline: Deadline, cost: _Cost
) -> Mapping[str, np.ndarray]:
    """The model call, its time added to `cost`; stopped at the deadline when the runtime can
    stop one (ONNX Runtime)."""
    started = time.perf_counter()
    run_until = getattr(servable.model, "run_until", None)
    if run_until is None:
        outputs: Mapping[str, np.ndarray] = servable.model.run(job.call.feeds, job.call.sources)
    else:
        try:
            outputs = run_until(job.call.feeds, job.call.sources, deadline.at)
        except ModelportError as exc:
            if exc.code is Code.DEADLINE_EXCEEDED:
                raise deadline.error(servable) from None
            raise
    cost.add(time.perf_counter() - started)
    return outputs
