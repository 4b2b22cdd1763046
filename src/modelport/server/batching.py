"""Adaptive batching: requests to one model version that arrive together share one model call.

Each request is validated and decoded on its own first, so a bad request fails alone and never
joins a batch. A batch thread takes the oldest waiting task, adds every waiting task that can be
stacked with it (same outputs wanted, same per-row shapes and dtypes, or paddable ones when
`pad_variable_length_inputs`), and runs the model once; the rows are split back to their tasks.

Adaptive: a batch waits for more tasks (up to `batch_timeout_micros` after its oldest task) only
while tasks keep coming; a request alone is run at once, so batching costs a lone client nothing.
The queue is bounded (`max_enqueued_batches` x `max_batch_size` rows): a task that does not fit is
refused at once with TF Serving's UNAVAILABLE (HTTP 503) rather than queued without bound.

Parameters take TF Serving's names, from its text format (`max_batch_size { value: 32 }`) or YAML.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelport.errors import Code, ModelportError, invalid
from modelport.runtimes.base import Model

log = logging.getLogger("modelport.batching")

Feeds = Mapping[str, np.ndarray]
Results = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's batching parameters. A field left out takes TF Serving's value: its
    `GetQueueOptions` copies only the fields that are set onto `SharedBatchScheduler`'s
    `QueueOptions` (input_batch_size_limit 1000, batch_timeout_micros 0, max_enqueued_batches 10)
    and `Options` (num_batch_threads: the machine's parallelism). `--enable_batching` without a
    file sets none, so it means exactly these: a queue of 10 x 1000 rows, no waiting."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size
    # modelport's own: a batch stops waiting when no task has arrived for this long.
    idle_micros: int = 300

    @property
    def execution_size(self) -> int:
        return self.max_execution_batch_size or self.max_batch_size


_INT_FIELDS = (
    "max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
    "max_execution_batch_size", "idle_micros",
)  # fmt: skip
_BOOL_FIELDS = ("pad_variable_length_inputs", "enable_large_batch_splitting")


def parse_batching_parameters(text: str, source: str = "<batching parameters>") -> BatchingParameters:
    """TF Serving's text format (wrapper types `{ value: N }` or plain `N`, repeated
    `allowed_batch_sizes`) or YAML of the same content."""
    from modelport.repository.config import _TextParser, _unlist

    try:
        doc = _unlist(_TextParser(text, source).message(None), frozenset({"allowed_batch_sizes"}))
    except ModelportError as text_error:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            raise text_error from None
        if not isinstance(doc, dict):
            raise text_error from None
    return _validated(doc or {}, source)


def load_batching_parameters(path: str | os.PathLike[str]) -> BatchingParameters:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelportError(
            Code.INVALID_ARGUMENT, f"cannot read batching parameters {file}: {exc.strerror}"
        ) from exc
    return parse_batching_parameters(text, str(file))


def _unwrap(value: Any) -> Any:
    """`{ value: 8 }` (protobuf wrapper types) -> 8."""
    if isinstance(value, dict) and set(value) == {"value"}:
        return value["value"]
    return value


def _validated(doc: Any, source: str) -> BatchingParameters:
    if not isinstance(doc, dict):
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: must be a set of batching parameters")
    problems: list[str] = []
    values: dict[str, Any] = {}
    known = {*_INT_FIELDS, *_BOOL_FIELDS, "allowed_batch_sizes"}
    for key in sorted(set(doc) - known):
        problems.append(f"{key}: unknown field (known: {', '.join(sorted(known))})")
    for key in _INT_FIELDS:
        if key in doc:
            value = _unwrap(doc[key])
            minimum = 0 if key in ("batch_timeout_micros", "max_execution_batch_size", "idle_micros") else 1
            if type(value) is not int or value < minimum:
                problems.append(f"{key}: must be an integer >= {minimum}, got {value!r}")
            else:
                values[key] = value
    for key in _BOOL_FIELDS:
        if key in doc:
            value = _unwrap(doc[key])
            value = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
            if not isinstance(value, bool):
                problems.append(f"{key}: must be true or false, got {value!r}")
            else:
                values[key] = value
    if "allowed_batch_sizes" in doc:
        sizes = doc["allowed_batch_sizes"]
        sizes = sizes if isinstance(sizes, list) else [sizes]
        if not all(type(s) is int and s > 0 for s in sizes) or sizes != sorted(set(sizes)):
            problems.append(f"allowed_batch_sizes: must be increasing positive integers, got {sizes!r}")
        else:
            values["allowed_batch_sizes"] = tuple(sizes)
    params = BatchingParameters(**values)
    if params.allowed_batch_sizes and params.allowed_batch_sizes[-1] != params.execution_size:
        problems.append(
            f"allowed_batch_sizes: the last entry ({params.allowed_batch_sizes[-1]}) must equal "
            f"max_batch_size ({params.execution_size})"
        )
    if params.max_execution_batch_size > params.max_batch_size:
        problems.append("max_execution_batch_size: must not be larger than max_batch_size")
    if problems:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: " + "; ".join(problems))
    return params


# -- the batcher --


@dataclass(eq=False)
class _Task:
    feeds: Feeds
    outputs: tuple[str, ...]
    rows: int
    key: tuple[Any, ...]  # tasks with equal keys stack without padding
    future: Future[Results]
    enqueued: float


BatchObserver = Callable[[int, int, float], None]  # (rows, padding rows, seconds the oldest waited)


def _rows(feeds: Feeds) -> int:
    sizes = {a.shape[0] for a in feeds.values() if a.ndim > 0}
    if len(sizes) != 1:
        raise invalid("a batched model needs every input to have the same batch dimension")
    return int(sizes.pop())


class Batcher:
    """One model version's queue and batch threads. `submit` is thread-safe and never blocks."""

    def __init__(
        self,
        model: Model,
        params: BatchingParameters,
        name: str = "",
        observe: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model = model
        self._params = params
        self._observe = observe or (lambda *_: None)
        self._clock = clock
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._capacity = params.max_enqueued_batches * params.max_batch_size
        self._last_arrival = 0.0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
            for i in range(params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # -- callers --

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def submit(self, feeds: Feeds, outputs: Sequence[str]) -> Future[Results]:
        rows = _rows(feeds)
        limit = self._params.execution_size
        if rows > limit and not self._params.enable_large_batch_splitting:
            raise invalid(f"Task size {rows} is larger than maximum input batch size {limit}")
        if rows > limit:
            return self._split(feeds, tuple(outputs), rows, limit)
        return self._enqueue([self._task(feeds, tuple(outputs), rows)])[0]

    def run(self, feeds: Feeds, outputs: Sequence[str]) -> Results:
        """Blocking form, for callers on their own threads (gRPC)."""
        return self.submit(feeds, outputs).result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for task in pending:
            task.future.set_exception(ModelportError(Code.UNAVAILABLE, "the model version was unloaded"))

    # -- internals --

    def _task(self, feeds: Feeds, outputs: tuple[str, ...], rows: int) -> _Task:
        key = (outputs, tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(feeds.items())))
        return _Task(feeds, outputs, rows, key, Future(), 0.0)

    def _split(self, feeds: Feeds, outputs: tuple[str, ...], rows: int, limit: int) -> Future[Results]:
        tasks = [
            self._task(
                {n: a[start : start + limit] for n, a in feeds.items()}, outputs, min(limit, rows - start)
            )
            for start in range(0, rows, limit)
        ]
        parts = self._enqueue(tasks)
        whole: Future[Results] = Future()
        remaining = [len(parts)]
        lock = threading.Lock()

        def done(_: Future[Results]) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            errors = [p.exception() for p in parts if p.exception() is not None]
            if errors:
                whole.set_exception(errors[0])
                return
            results = [p.result() for p in parts]
            whole.set_result({n: np.concatenate([r[n] for r in results]) for n in results[0]})

        for part in parts:
            part.add_done_callback(done)
        return whole

    def _enqueue(self, tasks: list[_Task]) -> list[Future[Results]]:
        rows = sum(t.rows for t in tasks)
        with self._cond:
            if self._closed:
                raise ModelportError(Code.UNAVAILABLE, "the model version is being unloaded")
            if self._queued_rows + rows > self._capacity:
                raise ModelportError(
                    Code.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            now = self._clock()
            for task in tasks:
                task.enqueued = now
                self._queue.append(task)
            self._queued_rows += rows
            self._last_arrival = now
            self._cond.notify()
        return [t.future for t in tasks]

    def _take_batch(self) -> list[_Task] | None:
        params = self._params
        limit = params.execution_size
        timeout = params.batch_timeout_micros / 1e6
        idle = params.idle_micros / 1e6
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            while not first.future.set_running_or_notify_cancel():  # its caller gave up
                self._queued_rows -= first.rows
                if not self._queue:
                    return []
                first = self._queue.popleft()
            batch, rows = [first], first.rows
            deadline = first.enqueued + timeout
            while rows < limit:
                rows = self._gather(batch, rows, limit)
                now = self._clock()
                if rows >= limit or now >= deadline or self._closed:
                    break
                # Wait only while tasks keep coming: none since the oldest, or none for `idle`.
                if self._last_arrival <= first.enqueued or now - self._last_arrival >= idle:
                    break
                self._cond.wait(min(deadline - now, idle))
            self._queued_rows -= rows
            if self._queue:
                self._cond.notify()  # another thread can start on the rest
            return batch

    def _gather(self, batch: list[_Task], rows: int, limit: int) -> int:
        """Move waiting tasks that stack with the batch's first into it, oldest first."""
        first = batch[0]
        pad = self._params.pad_variable_length_inputs
        kept: collections.deque[_Task] = collections.deque()
        while self._queue:
            task = self._queue.popleft()
            fits = rows + task.rows <= limit
            if fits and (task.key == first.key or (pad and _paddable(first, task))):
                if task.future.set_running_or_notify_cancel():
                    batch.append(task)
                    rows += task.rows
                else:
                    self._queued_rows -= task.rows
            else:
                kept.append(task)
        self._queue.extendleft(reversed(kept))
        return rows

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue
            try:
                self._run(batch)
            except BaseException as exc:  # never lose a waiting request
                log.exception("batch failed")
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(exc)

    def _run(self, batch: list[_Task]) -> None:
        started = self._clock()
        if len(batch) == 1 and not self._params.allowed_batch_sizes:
            task = batch[0]
            self._observe(task.rows, 0, started - task.enqueued)
            _settle(task, lambda: self._model.run(task.feeds, list(task.outputs)))
            return
        rows = sum(t.rows for t in batch)
        feeds, padding = self._merge(batch, rows)
        self._observe(rows, padding, started - batch[0].enqueued)
        try:
            results = self._model.run(feeds, list(batch[0].outputs))
        except Exception:
            # One request the checks let through can make the whole call fail: run each alone,
            # so only that one gets the error.
            for task in batch:
                _settle(task, functools.partial(self._model.run, task.feeds, list(task.outputs)))
            return
        at = 0
        for task in batch:
            part = {}
            for name, value in results.items():
                if value.ndim == 0 or value.shape[0] != rows + padding:
                    part[name] = value  # not batched along rows: every task gets it whole
                else:
                    part[name] = value[at : at + task.rows]
            at += task.rows
            task.future.set_result(part)

    def _merge(self, batch: list[_Task], rows: int) -> tuple[dict[str, np.ndarray], int]:
        target = rows
        for size in self._params.allowed_batch_sizes:
            if size >= rows:
                target = size
                break
        padding = target - rows
        merged: dict[str, np.ndarray] = {}
        for name in batch[0].feeds:
            parts = [t.feeds[name] for t in batch]
            if self._params.pad_variable_length_inputs:
                parts = _pad_to_common(parts)
            if padding:
                parts.append(np.repeat(parts[0][:1], padding, axis=0))  # filler rows, dropped after
            merged[name] = np.concatenate(parts)
        return merged, padding


def _settle(task: _Task, call: Callable[[], Results]) -> None:
    try:
        task.future.set_result(call())
    except BaseException as exc:
        task.future.set_exception(exc)


def _paddable(first: _Task, task: _Task) -> bool:
    if first.outputs != task.outputs or first.feeds.keys() != task.feeds.keys():
        return False
    return all(
        first.feeds[n].dtype == task.feeds[n].dtype and first.feeds[n].ndim == task.feeds[n].ndim
        for n in first.feeds
    )


def _pad_to_common(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Zero-pad every dimension but the first to the largest in the batch."""
    biggest = np.max([p.shape[1:] for p in parts], axis=0)
    padded = []
    for p in parts:
        extra = [(0, 0)] + [(0, int(b) - d) for b, d in zip(biggest, p.shape[1:], strict=True)]
        padded.append(np.pad(p, extra) if any(e for _, e in extra) else p)
    return padded


class Batchers:
    """A batcher per loaded model version, made on first use and closed when the version goes."""

    def __init__(self, params: BatchingParameters, observer: Callable[[str, int], BatchObserver]) -> None:
        self.params = params
        self._observer = observer
        self._by_version: weakref.WeakKeyDictionary[Any, Batcher] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def queued_rows(self) -> int:
        """Rows waiting in every version's queue now (the batch queue depth an autoscaler reads)."""
        with self._lock:
            batchers = list(self._by_version.values())
        return sum(b.queued_rows for b in batchers)

    def get(self, servable: Any) -> Batcher:
        """`servable`: anything with model_name, version and model (a manager's Servable)."""
        batcher = self._by_version.get(servable)
        if batcher is None:
            with self._lock:
                batcher = self._by_version.get(servable)
                if batcher is None:
                    name, version = servable.model_name, servable.version
                    batcher = Batcher(
                        servable.model, self.params, f"{name}-{version}", self._observer(name, version)
                    )
                    weakref.finalize(servable, batcher.close)
                    self._by_version[servable] = batcher
        return batcher
