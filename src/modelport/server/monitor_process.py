"""The quality monitor in a process of its own: the server's process keeps only the request's side.

Model monitoring's work per answer (the class of each row, the input statistics and their drift
bins, the request ids remembered for feedback, the prediction log's lines and files) is Python and
numpy on small arrays: it holds the GIL, and a model server's event loop, bound by the GIL, paid
for it in req/s (bench/RESULTS.md: 12% of the MLP's :predict at 64 connections with the default
monitoring, more with the log at sampleRate 1.0). Here it runs in a child process (`python -m
modelport.server.monitor_process`), on another core when there is one, and the server's process
does per answer what it did before (one Observation, a queue append) and per batch of 256 answers
one packing: each model input and output of the batch concatenated into one array, sent through a
socket pair by the server's monitor thread (the write lets go of the GIL).

What the server's process still does: bound what waits (the queue and the batches not yet sent
hold at most `queue_size` answers and `queue_bytes` of model inputs; past that an answer is counted
in `modelport_prediction_log_dropped_total`), tell the process each served version once (its class
names, input ranges, reference profile and log settings) and the versions no longer served, and
pass on feedback and report calls, which the process answers in order after every answer sent
before them. The process sends back what it sets in the quality metrics (drift scores, live
accuracy, ...), which the server applies to its own registry: /metrics is still one process's.

The process runs at niceness +10: where a core is contended, the server's threads go first (a
model's intra-op threads waited for it: the CNN at 1 connection answered 0.94 of its req/s with
it at the server's niceness, 0.97 at +10); its queue is bounded and what it cannot take is counted.
The process starts with the first answer to monitor (a server that answers nothing starts none),
ignores SIGINT and SIGTERM (a Ctrl-C or a group's SIGTERM must not lose the last answers: the
server stops it after them), and ends at the end of its socket: with the server, however the
server ends. If it dies, the server logs it, counts the answers it could not take as dropped, and
starts a new one at the next batch (at most 3 starts a minute); what the old one remembered
(feedback's request ids, drift windows) is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NamedTuple
from weakref import WeakKeyDictionary

import numpy as np

from modelport.errors import Code, ModelportError
from modelport.server.monitor import (
    _EVERY,
    _WAITED,
    AnswerQueue,
    Monitor,
    MonitorOptions,
    Observation,
    VersionInfo,
)

if TYPE_CHECKING:
    from modelport.repository.manager import ModelView, Servable
    from modelport.server.metrics import QualityMetrics

log = logging.getLogger("modelport.monitor")

_STARTS = 3  # at most this many processes started ...
_STARTS_SECONDS = 60.0  # ... within this long (a crash loop costs little)
_NICE = 10  # the monitor process's niceness, added to the server's
_STOP_SECONDS = 10.0  # the process's last round (the last answers, the log's files) at most this long


class _Wanted(NamedTuple):
    """An output an answer asked for, as the monitor reads it (OutputBinding's name, transform and
    class labels)."""

    name: str
    transform: str
    labels: tuple[str, ...] | None


class _Item(NamedTuple):
    """A message for the process, and what it carries: answers (their count, their bytes of model
    inputs, per model: counted as dropped if it cannot be sent) or a call's number."""

    parts: list[bytes | pickle.PickleBuffer]  # see _encoded
    answers: int = 0
    size: int = 0
    models: dict[str, int] = {}  # noqa: RUF012 - never changed
    call: int = 0


def _encoded(message: Any) -> list[bytes | pickle.PickleBuffer]:
    """`message` pickled, its arrays' memory apart (pickle's out-of-band buffers): the pickle holds
    what they are, and the socket's write copies them from where they are. (Pickled in band, a
    batch's 800 KB of inputs were copied once more into a new bytes object: 2.2 us a request.)"""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    return [len(buffers).to_bytes(4, "little") + data, *buffers]


def _send(conn: Connection, parts: Sequence[bytes | pickle.PickleBuffer]) -> None:
    for part in parts:
        conn.send_bytes(part.raw() if isinstance(part, pickle.PickleBuffer) else part)


def _received(conn: Connection) -> Any:
    head = conn.recv_bytes()
    buffers = [conn.recv_bytes() for _ in range(int.from_bytes(head[:4], "little"))]
    return pickle.loads(memoryview(head)[4:], buffers=buffers)


# One model input or output over a group's observations: their arrays concatenated, and each
# observation's rows of it.
_Packed = tuple[np.ndarray, list[int]]


class MonitorClient(AnswerQueue):
    """The monitor as the server's request paths and API see it (observe, done, flush, feedback,
    report, run), its work done in the monitor's process."""

    def __init__(
        self,
        metrics: QualityMetrics,
        options: MonitorOptions,
        view: Callable[[], Mapping[str, ModelView]],
    ) -> None:
        super().__init__(metrics, options)
        self._view = view
        self._outbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._ids: WeakKeyDictionary[Servable, tuple[int, bool]] = WeakKeyDictionary()
        self._infos: dict[int, tuple[weakref.ref[Servable], VersionInfo]] = {}  # told to the process
        self._next_id = itertools.count(1)
        self._calls: dict[int, Future[Any]] = {}
        self._next_call = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._starts: deque[float] = deque(maxlen=_STARTS)  # when the last ones started
        self._stopping = False

    def _pack_queued(self) -> None:
        """Every answer queued so far, packed into one message for the sender. (The caller holds
        self._taking.)"""
        answers = self._queue
        batch: list[Observation] = [
            answers.popleft() for _ in range(len(answers))
        ]  # (others may append meanwhile)
        if not batch:
            return
        # Grouped by version and outputs asked for: the usual batch is one group, so a group is
        # looked up only when an answer's differ from the one before.
        groups: dict[tuple[int, int], list[Observation]] = {}
        servable: Any = None
        wanted: Any = None
        members: list[Observation] = []
        for observation in batch:
            if observation.servable is not servable or observation.wanted is not wanted:
                servable, wanted = observation.servable, observation.wanted
                members = groups.setdefault((id(servable), id(wanted)), [])
            members.append(observation)
        packed = []
        models: dict[str, int] = {}
        for members in groups.values():
            first = members[0]
            number, logged = self._id_of(first.servable)
            packed.append(_pack(number, members, logged))
            name = first.servable.model_name
            models[name] = models.get(name, 0) + len(members)
        size = sum(map(_SIZE, batch))
        self._outbox.put(_Item(_encoded(("batch", packed)), len(batch), size, models))

    _batch_full = _pack_queued

    def _id_of(self, servable: Servable) -> tuple[int, bool]:
        """The number the process knows `servable` by (told it the first time), and whether its
        answers are logged. (Under _taking.)"""
        known = self._ids.get(servable)
        if known is None:
            info = VersionInfo.of(servable)
            rate = info.sample_rate if info.sample_rate is not None else self._options.sample_rate
            known = self._ids[servable] = (next(self._next_id), rate > 0)
            self._infos[known[0]] = (weakref.ref(servable), info)
            self._post(("version", known[0], info))
        return known

    def _post(self, message: tuple[Any, ...], call: int = 0) -> None:
        self._outbox.put(_Item(_encoded(message), call=call))

    # -- the server's monitor thread: the sender --

    def run(self, stop: threading.Event) -> None:
        last_sweep = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                self._send(self._outbox.get(timeout=_EVERY))
            if self._waited():
                with self._taking:
                    self._pack_queued()
            now = time.monotonic()
            if now - last_sweep >= 1.0:
                last_sweep = now
                self._sweep()
        self._stop()

    def _waited(self) -> bool:
        """An answer queued for _WAITED or more: traffic too thin to make a batch."""
        try:
            first: Observation = self._queue[0]
        except IndexError:
            return False
        return time.time() - first.time >= _WAITED

    def _sweep(self) -> None:
        """Tell the process which versions are no longer served (it forgets them)."""
        served = {s for view in self._view().values() for s in view.versions.values()}
        with self._taking:
            for number, (ref, _) in list(self._infos.items()):
                servable = ref()
                if servable is None or servable not in served:
                    del self._infos[number]
                    if servable is not None:
                        self._ids.pop(servable, None)
                    self._post(("forget", number))

    def _send(self, item: _Item) -> None:
        try:
            conn = self._connected()
            if conn is None:
                raise OSError("the monitor's process could not start")
            _send(conn, item.parts)
        except OSError:  # not started, or it died: what this carried is lost
            for model, count in item.models.items():
                self._metrics.dropped.labels(model).inc(count)
            _settle(
                self._calls.pop(item.call, None),
                error=_unavailable("model monitoring's process is not running"),
            )
        finally:
            if item.answers:
                self._let_go(item.answers, item.size)

    def _connected(self) -> Connection | None:
        """The socket to the process, started if there is none (at most _STARTS a minute)."""
        if self._conn is not None:
            return self._conn
        now = time.monotonic()
        if self._stopping or (len(self._starts) == _STARTS and now - self._starts[0] < _STARTS_SECONDS):
            return None
        self._starts.append(now)
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "modelport.server.monitor_process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.error("model monitoring's process did not start: %s", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        level = logging.getLogger().getEffectiveLevel()
        _send(conn, _encoded(("start", self._options, level)))
        with self._taking:  # a new process: every version known, again
            infos = [(number, info) for number, (_, info) in self._infos.items()]
        for number, info in infos:
            _send(conn, _encoded(("version", number, info)))
        self._conn = conn
        threading.Thread(
            target=self._read, args=(conn, self._process), name="monitor-replies", daemon=True
        ).start()
        return conn

    def _read(self, conn: Connection, process: subprocess.Popen[bytes]) -> None:
        """The process's messages: the metrics it set, and answers to calls."""
        while True:
            try:
                message = _received(conn)
            except (EOFError, OSError):
                break
            kind = message[0]
            self._apply(message[1])
            if kind == "reply":
                _, _, number, error, value = message
                _settle(
                    self._calls.pop(number, None),
                    value,
                    None if error is None else ModelportError(Code[error], value),
                )
        if self._conn is conn:
            self._conn = None
        conn.close()
        if not self._stopping:
            code = process.wait()
            log.error(
                "model monitoring's process ended (exit code %s): a new one starts with the next "
                "answers; the request ids remembered for feedback and the drift windows are lost",
                code,
            )
        for number in list(self._calls):
            _settle(self._calls.pop(number, None), error=_unavailable("model monitoring's process ended"))

    def _apply(self, ops: Sequence[tuple[str, tuple[Any, ...], str, Any]]) -> None:
        for name, labels, verb, value in ops:
            if name == "forget":
                self._metrics.forget(*labels)
            else:
                getattr(getattr(self._metrics, name).labels(*labels), verb)(value)

    def _stop(self) -> None:
        """The last answers to the process, then its end (its last round: scores, log files)."""
        with self._taking:
            self._pack_queued()
        while True:
            try:
                self._send(self._outbox.get_nowait())
            except queue.Empty:
                break
        self._stopping = True
        conn, process = self._conn, self._process
        if conn is None or process is None:
            return
        try:
            _send(conn, _encoded(("stop",)))
            process.wait(_STOP_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    # -- the API's side (the event loop's) --

    def _call(self, *request: Any) -> Future[Any]:
        """Ask the process, after every answer queued before now; its reply in the future."""
        future: Future[Any] = Future()
        number = next(self._next_call)
        self._calls[number] = future
        with self._taking:
            self._pack_queued()
            self._post(("call", number, request), number)
        return future

    async def _answer(self, future: Future[Any], timeout: float = 10.0) -> Any:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise _unavailable(f"the quality monitor is more than {timeout:g} s behind; try again") from None

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every answer queued before now has been taken by the monitor's process."""
        await self._answer(self._call("flush"), timeout)

    async def feedback(self, model: str, version: int | None, body: bytes) -> dict[str, Any]:
        items = self._feedback_items(body)
        result: dict[str, Any] = await self._answer(self._call("feedback", model, version, items))
        return result

    async def report(self, view: ModelView, version: int | None) -> dict[str, Any]:
        """The model's quality figures per served version (or the one asked for)."""
        servables = [view.resolve(version)] if version is not None else list(view.versions.values())
        with self._taking:
            numbers = [self._id_of(s)[0] for s in sorted(servables, key=lambda s: s.version)]
        versions: list[dict[str, Any]] = await self._answer(self._call("report", numbers))
        return {"model": view.name, "versions": versions}


def _settle(future: Future[Any] | None, value: Any = None, error: BaseException | None = None) -> None:
    """A call's reply into its future, unless its caller gave up on it meanwhile (a timed-out
    await cancels the future: setting it then would raise, in the thread reading replies)."""
    if future is None or not future.set_running_or_notify_cancel():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _unavailable(message: str) -> ModelportError:
    return ModelportError(Code.UNAVAILABLE, message)


def _pack(number: int, members: Sequence[Observation], logged: bool = True) -> tuple[Any, ...]:
    """A group's observations (one version, the same outputs asked for) as a few arrays. Unless
    the version's answers are logged, only the output the classes are read from is sent (the
    argmax output, when there is one)."""
    first = members[0]
    wanted = tuple(_Wanted(b.name, b.transform, b.labels) for b in first.wanted)
    outputs = [m.outputs for m in members]
    names = None  # every output
    if not logged:
        argmax = next((w.name for w in wanted if w.transform == "argmax"), None)
        if argmax is not None:
            wanted, names = tuple(w for w in wanted if w.name == argmax), [argmax]
    return (
        number,
        wanted,
        [m.request_id for m in members],
        [m.api for m in members],
        [m.latency for m in members],
        [m.time for m in members],
        _tensors([m.feeds for m in members]),  # type: ignore[misc]
        _tensors(outputs, names),
    )


def _tensors(
    dicts: Sequence[dict[str, np.ndarray]], names: Sequence[str] | None = None
) -> dict[str, _Packed] | list[dict[str, np.ndarray]]:
    """Each name's arrays over the observations (`names`, else every one), concatenated where
    they stack (the usual: the same names, and per name one dtype and row shape), else the
    observations' own dicts."""
    if names is None:
        names = list(dicts[0])
        if any(values.keys() != dicts[0].keys() for values in dicts):
            return list(dicts)
    out: dict[str, _Packed] = {}
    for name in names:
        if any(name not in values for values in dicts):
            return list(dicts)
        arrays = [values[name] for values in dicts]
        if arrays[0].dtype.kind == "O" or len(set(map(_DTYPE, arrays))) != 1:
            return list(dicts)
        try:  # (rows of other shapes, or none: a 0-d array)
            stacked = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        except ValueError:
            return list(dicts)
        if stacked.ndim == 0:
            return list(dicts)
        out[name] = (stacked, list(map(len, arrays)))
    return out


_DTYPE = operator.attrgetter("dtype")
_SIZE = operator.attrgetter("size")


def _unpacked(
    tensors: dict[str, _Packed] | list[dict[str, np.ndarray]], count: int
) -> list[dict[str, np.ndarray]]:
    if isinstance(tensors, list):
        return tensors
    out: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for name, (values, lengths) in tensors.items():
        at = 0
        for i, length in enumerate(lengths):
            out[i][name] = values[at : at + length]
            at += length
    return out


def _observations(packed: Sequence[tuple[Any, ...]], infos: Mapping[int, VersionInfo]) -> list[Observation]:
    out = []
    for number, wanted, ids, apis, latencies, times, feeds, outputs in packed:
        info = infos.get(number)
        if info is None:  # forgotten meanwhile: no longer served
            continue
        wanted_list = list(wanted)  # one list per group: the monitor groups answers by it
        for request_id, api, latency, at, inputs, answers in zip(
            ids, apis, latencies, times, _unpacked(feeds, len(ids)), _unpacked(outputs, len(ids)), strict=True
        ):
            observation = Observation(info, request_id, api)  # type: ignore[arg-type]
            observation.feeds = inputs
            observation.wanted = wanted_list
            observation.outputs = answers
            observation.latency = latency
            observation.time = at
            out.append(observation)
    return out


# -- the monitor's process --


class _Recorded:
    """A quality metric in the monitor's process: what is done to it is recorded for the server."""

    def __init__(self, name: str, ops: list[tuple[str, tuple[Any, ...], str, Any]]) -> None:
        self._name = name
        self._ops = ops

    def labels(self, *values: str) -> _Series:
        return _Series(self._name, values, self._ops)


class _Series(NamedTuple):
    name: str
    values: tuple[str, ...]
    ops: list[tuple[str, tuple[Any, ...], str, Any]]

    def set(self, value: float) -> None:
        self.ops.append((self.name, self.values, "set", value))

    def inc(self, amount: float = 1) -> None:
        self.ops.append((self.name, self.values, "inc", amount))


class _RecordedMetrics:
    """QualityMetrics' interface, recorded (see _Recorded)."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, tuple[Any, ...], str, Any]] = []
        for name in (
            "drift", "drift_threshold", "live_accuracy", "live_precision", "live_recall",
            "published_accuracy", "feedback", "correct", "dropped",
        ):  # fmt: skip
            setattr(self, name, _Recorded(name, self.ops))

    def forget(self, model: str, version: str, classes: Sequence[str]) -> None:
        self.ops.append(("forget", (model, version, tuple(classes)), "", None))

    def taken(self) -> list[tuple[str, tuple[Any, ...], str, Any]]:
        ops = self.ops[:]
        self.ops.clear()
        return ops


class _Served(NamedTuple):
    versions: Mapping[int, VersionInfo]


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops this process after its last answers
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Behind the server's own threads for a core: a model's intra-op threads (the CNN's) must not
    # wait for the monitor, which can wait (its queue is bounded, and drops are counted).
    os.nice(_NICE)
    conn = Connection(fd)
    try:
        _, options, level = _received(conn)
    except EOFError:
        return
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = _RecordedMetrics()
    infos: dict[int, VersionInfo] = {}
    monitor = Monitor(metrics, options, lambda: {"": _Served(infos)})  # type: ignore[arg-type, dict-item]
    try:
        _serve(conn, monitor, metrics, infos)
    finally:
        monitor.step()
        monitor.close()
        with contextlib.suppress(OSError):
            _send(conn, _encoded(("ops", metrics.taken())))


def _serve(
    conn: Connection, monitor: Monitor, metrics: _RecordedMetrics, infos: dict[int, VersionInfo]
) -> None:
    while True:
        if conn.poll(_EVERY):
            try:
                message = _received(conn)
            except EOFError:  # the server is gone
                return
            kind = message[0]
            if kind == "batch":
                monitor.take(_observations(message[1], infos))
            elif kind == "version":
                infos[message[1]] = message[2]
            elif kind == "forget":
                infos.pop(message[1], None)
            elif kind == "call":
                _, number, request = message
                monitor.step()  # scores now, the log's lines written: the caller may read them
                error, value = _called(monitor, infos, request)
                _send(conn, _encoded(("reply", metrics.taken(), number, error, value)))
                continue
            elif kind == "stop":
                return
        monitor.step()
        if metrics.ops:
            _send(conn, _encoded(("ops", metrics.taken())))


def _called(
    monitor: Monitor, infos: Mapping[int, VersionInfo], request: tuple[Any, ...]
) -> tuple[str | None, Any]:
    """A call's (error code name, message) or (None, result)."""
    kind = request[0]
    try:
        if kind == "feedback":
            return None, monitor.feedback_now(request[1], request[2], request[3])
        if kind == "report":
            return None, monitor.report_now([infos[n] for n in request[1] if n in infos])
        return None, None  # flush
    except ModelportError as exc:
        return exc.code.name, exc.message


if __name__ == "__main__":
    main(int(sys.argv[1]))
    os._exit(0)
