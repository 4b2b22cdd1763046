"""Is the model still right: per version, the classes it answers, drift from its reference
profile, live accuracy from feedback, and the prediction log.

The server runs this monitor in a process of its own (server/monitor_process.py: the server's
side observes and queues answers and sends them in batches; `take` takes each batch there, and
`step` does the rest between them). In one process, as the tests use it: `observe` makes one small
object the inference path shows the request's model inputs and outputs to (references only, no
copy), and `done` appends it to a queue, taken batch by batch, _BATCH at a time, by the request
that queues the _BATCH-th (or by `run`'s thread when traffic is too thin to make a batch, or when
a flush asks). Taking a batch: the class of each answered row, the input statistics and their
bins, the drift windows, the request ids remembered for feedback, the prediction log's lines.
`step` also does what is not per answer: the drift scores (the gauges), forgetting versions no
longer served, and writing the log's lines to its files. The queue holds at most `queue_size`
answers holding at most `queue_bytes` of model inputs, and the log's lines not yet written at most
_MAX_UNWRITTEN bytes; past that an answer is counted in `modelport_prediction_log_dropped_total`
and not monitored (or not logged), never waited for.

Feedback (`feedback`) names request ids with their true labels. The server remembers the
classes it answered for the last `feedback_requests` request ids (100,000 by default, about
25 MB), each for at most `feedback_seconds` (7 days), in memory: an id older than either, or
answered before a restart or by another replica, is unknown. Each row's (true, answered) pair
goes into its version's sliding window of the last `feedback_window` pairs (1,000): accuracy,
precision and recall per class, and the confusion matrix (quality/feedback.py).

Prediction log (opt-in: model.yaml `logging: {sampleRate, maxBytes}`, or the server's
--prediction_log_sample_rate for versions that set none): JSON lines in
`<dir>/<model>/<version>.jsonl` (with --workers N, worker i's in `<version>.worker<i>.jsonl`: no
two processes append to or rotate one file), one per sampled request:

    {"time": "2026-12-07T15:40:01.123456Z", "request_id": "...", "model": "mnist", "version": "1",
     "api": "predict", "latency_ms": 0.41,
     "inputs": {"pixels": {"shape": [1, 784], "intensity": [0.13], "ink": [0.14],
                           "hash": ["5c1d0e9a4f7b2c33"]}},
     "outputs": {"classes": [7], "probabilities": [[0.0, ...]]}}

Inputs are summarised, never written: per row its mean (`intensity`), its share of values above
the middle of its range (`ink`: for images and profiled inputs) and a hash of the row as the model
saw it (for an image: of its thumbnail, the decoded 28x28 pixels), so a row can be matched, not
read back. An output of more than 1,000 values per request is written as its shape. The file
rotates at a quarter of maxBytes into `.1`, `.2`, `.3`: on disk at most maxBytes per version.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelport.errors import Code, ModelportError, invalid
from modelport.quality.drift import DriftWindows
from modelport.quality.feedback import Confusion
from modelport.quality.profile import Profile, statistics

if TYPE_CHECKING:  # not imported at run time: the monitor's process (monitor_process.py) needs none
    from modelport.repository.manager import ModelView, Servable
    from modelport.runtimes.signature import OutputBinding, PreparedCall
    from modelport.server.metrics import QualityMetrics

log = logging.getLogger("modelport.monitor")

# Answers per batch taken on the thread that queues them. Not in the monitor's thread: a batch
# there ran beside the event loop, on the other core, on objects the loop had just made, and cost
# 2-4 times the CPU it costs on the loop (measured in the server, log at sampleRate 1.0: 31 us an
# answer in the thread's batches of ~200, 22 on the loop; 8 in a quiet single-thread loop), and
# made the loop's own work dearer too (bench/RESULTS.md). A batch has fixed costs (numpy calls
# for the drift windows and the input statistics): in the server, log at 1.0, :predict was 0.86
# of monitoring off with batches of 32 or 64, 0.88 with 128, 0.91 with 256, 0.89 with 512. A
# batch of 256 holds the loop ~4 ms.
_BATCH = 256
_EVERY = 0.05  # seconds between the monitor thread's rounds: scores, sweeps, the log's writes
_WAITED = 0.25  # an answer queued this long is taken by the monitor's thread (thin traffic)
_MAX_UNWRITTEN = 16 * 1024 * 1024  # bytes of log lines waiting for the monitor's thread
_SCORE_EVERY = 0.25  # seconds between drift scores (the gauges); the report computes its own
_KEEP = 3  # rotated prediction log files kept beside the current one
_MAX_LOGGED_VALUES = 1000  # an output larger than this is logged as its shape
_MAX_FEEDBACK_ITEMS = 10_000
_LEAST_ROWS = 100  # a drift score is exported once its window holds this many rows


def default_log_dir() -> Path:
    home = os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport"
    return Path(home).expanduser() / "prediction-logs"


@dataclass(frozen=True)
class MonitorOptions:
    enabled: bool = True
    log_dir: Path | None = None  # None: $MODELPORT_HOME/prediction-logs
    sample_rate: float = 0.0  # the prediction log, for versions whose model.yaml sets none
    max_bytes: int = 64 * 1024 * 1024
    queue_size: int = 10_000
    queue_bytes: int = 256 * 1024 * 1024  # model inputs held by the queue (an image model's are large)
    feedback_requests: int = 100_000
    feedback_seconds: float = 7 * 24 * 3600.0
    feedback_window: int = 1000
    log_suffix: str = ""  # between the version and .jsonl: ".worker1" for worker 1 of several


class Observation:
    """One answered request, as the monitor needs it (references, not copies): its model inputs
    and outputs, and which outputs it asked for. Not the request's PreparedCall: an object held
    until the answer's batch is taken is one more for the garbage collector's young generation
    (a collection comes every 700 held; with the call held, 4.6 a request with monitoring on,
    0.9 without)."""

    __slots__ = ("api", "feeds", "latency", "outputs", "request_id", "servable", "size", "time", "wanted")

    def __init__(self, servable: Servable, request_id: str, api: str) -> None:
        self.servable = servable
        self.request_id = request_id
        self.api = api
        self.feeds: dict[str, np.ndarray] | None = None  # None: the model never answered
        self.wanted: list[OutputBinding] = []
        self.outputs: dict[str, np.ndarray] = {}
        self.latency = 0.0
        self.time = 0.0
        self.size = 0  # bytes of model inputs it holds

    def __call__(self, call: PreparedCall, outputs: dict[str, np.ndarray]) -> None:
        self.feeds = call.feeds
        self.wanted = call.wanted
        self.outputs = outputs


# What the server answered for one request id, kept for its feedback: (model, version, class
# index per row, time.monotonic(), feedback came). A plain tuple of strings, an array, a float and
# a bool, so the cyclic garbage collector untracks it: 100,000 kept answers as objects it tracks
# made every full collection walk them all (measured: ~20 us more CPU per request).
_Answer = tuple[str, str, np.ndarray, float, bool]


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, a key like a Servable
class VersionInfo:
    """What the monitor needs of a served version, as plain values (sent to the monitor's process
    once per version): its names, class names, value ranges of its inputs, reference profile and
    prediction log settings."""

    model_name: str
    version: str
    names: tuple[str, ...]  # class names (profile's, else the signature's labels, else indices)
    ranges: dict[str, tuple[float, float]]  # input tensor -> value range, where known
    profile: Profile | None
    sample_rate: float | None  # model.yaml's prediction log; None: the server's flags
    max_bytes: int | None

    @classmethod
    def of(cls, servable: Servable) -> VersionInfo:
        signature = servable.signature(None) if servable.signatures else None
        profile = servable.profile
        names = profile.classes if profile else (signature.labels or ()) if signature else ()
        ranges = {name: (p.lo, p.hi) for name, p in profile.inputs.items()} if profile else {}
        if signature is not None:
            for binding in signature.inputs.values():
                if binding.image is not None:
                    ranges.setdefault(binding.tensor.name, tuple(binding.image.scale))  # type: ignore[arg-type]
        if not names and signature is not None:  # class indices, as many as the model's outputs have
            names = _index_names(signature.outputs.values())
        spec = servable.logging
        return cls(
            servable.model_name, str(servable.version), tuple(names), ranges, profile,
            spec.sample_rate if spec is not None else None, spec.max_bytes if spec is not None else None,
        )  # fmt: skip


class _LogFile:
    """JSON lines, rotated at max_bytes / 4 into .1 .. .3 (the oldest dropped)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.limit = max(1024, max_bytes // (_KEEP + 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()

    def write(self, line: bytes) -> None:
        if self._size and self._size + len(line) > self.limit:
            self._rotate()
        self._file.write(line)
        self._size += len(line)

    def write_lines(self, data: bytes) -> None:
        """Whole lines (each ending in a newline) in one write when they fit before the next
        rotation, else line by line (JSON has no raw newline inside a line)."""
        if self._size + len(data) <= self.limit:
            self._file.write(data)
            self._size += len(data)
        else:
            for line in data.split(b"\n")[:-1]:
                self.write(line + b"\n")

    def _rotate(self) -> None:
        self._file.close()
        for i in range(_KEEP - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class _Version:
    """The monitor thread's state for one served version."""

    model: str
    version: str
    names: tuple[str, ...]  # class names (profile's, else the signature's labels, else indices)
    ranges: dict[str, tuple[float, float]]  # input tensor -> value range, where known
    drift: DriftWindows | None
    thresholds: Mapping[str, float]
    sample_rate: float
    log: _LogFile | None
    confusion: Confusion | None = None
    answered: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    scored_at: float = 0.0  # time.monotonic() of the scores
    unscored: bool = False  # rows arrived since the scores (scored once _SCORE_EVERY has passed)


class AnswerQueue:
    """The request's side of a monitor, O(1) a request: answers queued, bounded, until a batch is
    full (this monitor takes it; the server's packs it for the monitor's process)."""

    def __init__(self, metrics: QualityMetrics, options: MonitorOptions) -> None:
        self._metrics = metrics
        self._options = options
        self._queue: deque[Any] = deque()  # Observations (and a monitor's flush markers)
        self._taking = threading.Lock()  # one taker of queued answers at a time, in order
        self._size_lock = threading.Lock()
        self._held = 0  # answers queued, or taken and not yet let go (see _let_go)
        self._queued = 0  # their bytes of model inputs

    def observe(self, servable: Servable, request_id: str, api: str) -> Observation | None:
        return Observation(servable, request_id, api) if self._options.enabled else None

    def done(self, observation: Observation | None, seconds: float) -> None:
        """`observation` answered (status 200) in `seconds`: queue it; the _BATCH-th queued
        takes the batch, here (unless another thread is taking answers now)."""
        if observation is None or observation.feeds is None:  # the model never answered
            return
        size = 0
        for array in observation.feeds.values():
            size += array.nbytes
        with self._size_lock:  # the REST and gRPC loops both queue
            if self._held >= self._options.queue_size or self._queued + size > self._options.queue_bytes:
                self._metrics.dropped.labels(observation.servable.model_name).inc()
                return
            self._held += 1
            self._queued += size
        observation.size = size
        observation.latency = seconds
        observation.time = time.time()
        self._queue.append(observation)
        if len(self._queue) >= _BATCH and self._taking.acquire(blocking=False):
            try:
                self._batch_full()
            finally:
                self._taking.release()

    def _batch_full(self) -> None:
        """Take what is queued (the caller holds self._taking)."""
        raise NotImplementedError

    def _feedback_items(self, body: bytes) -> list[tuple[str, list[Any]]]:
        """A feedback call's (request id, labels), or the 4xx that says what is wrong with it."""
        if not self._options.enabled:
            raise ModelportError(
                Code.FAILED_PRECONDITION,
                "model monitoring is off on this server (--disable_model_monitoring)",
            )
        return _parse_feedback(body)

    def _let_go(self, answers: int, size: int) -> None:
        """`answers` holding `size` bytes of model inputs no longer count against the bounds."""
        with self._size_lock:
            self._held -= answers
            self._queued -= size


class Monitor(AnswerQueue):
    def __init__(
        self, metrics: QualityMetrics, options: MonitorOptions, view: Callable[[], Mapping[str, ModelView]]
    ) -> None:
        super().__init__(metrics, options)
        self._view = view  # what is served now: versions no longer in it are forgotten
        self._wake = threading.Event()  # a flush: a round of the monitor's thread now
        self._versions: dict[Servable | VersionInfo, _Version] = {}
        self._answers: OrderedDict[str, _Answer] = OrderedDict()
        self._lock = threading.Lock()  # the thread's batches and feedback change the same state
        self._unwritten: deque[tuple[_Version, bytes, int]] = deque()  # log lines, their records
        self._unwritten_bytes = 0
        self._log_dir = options.log_dir or default_log_dir()
        self._last_sweep = 0.0

    # -- the monitor's thread --

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            flushed = self._wake.wait(_EVERY)
            self._wake.clear()
            if flushed or self._waited():
                self.step()
            else:  # the requests take their answers: leave the objects they made alone
                self._maintain()
        self.step()
        self.close()

    def close(self) -> None:
        """Close the prediction log's files."""
        for state in self._versions.values():
            if state.log is not None:
                state.log.close()

    def _waited(self) -> bool:
        """An answer queued for _WAITED or more (traffic too thin to make a batch), or a flush."""
        try:
            first = self._queue[0]
        except IndexError:
            return False
        return type(first) is not Observation or time.time() - first.time >= _WAITED

    def step(self) -> None:
        """Take every answer queued so far, in order, and answer the flushes among them; then
        the scores, the sweep and the log's writes."""
        with self._taking:
            self._take_queued()
        self._maintain()

    def _maintain(self) -> None:
        now = time.monotonic()
        self._score_the_last_rows(now)
        self._write_unwritten()
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            self._sweep()

    def _take_queued(self) -> None:
        """Every answer queued so far, in order; the flushes among them answered. (The caller
        holds self._taking.)"""
        batch: list[Observation] = []
        answers = freed = 0
        while self._queue:
            item = self._queue.popleft()
            if type(item) is Observation:
                batch.append(item)
                answers += 1
                freed += item.size
            else:
                self._take(batch)
                batch = []
                item.set_result(None)
        self._let_go(answers, freed)
        self._take(batch)

    _batch_full = _take_queued

    def take(self, batch: Sequence[Observation]) -> None:
        """Take these answers now, on this thread (the monitor's process takes the batches sent)."""
        with self._taking:
            self._take(batch)

    def _take(self, batch: Sequence[Observation]) -> None:
        if not batch:
            return
        groups: dict[Servable, list[Observation]] = {}
        for observation in batch:
            groups.setdefault(observation.servable, []).append(observation)
        with self._lock:
            for servable, observations in groups.items():
                state = self._versions.get(servable)
                if state is None:
                    state = self._versions[servable] = self._start(servable)
                try:
                    self._take_version(state, servable, observations)
                except Exception:  # a model whose outputs we misread must not stop the monitor
                    log.exception("monitoring %s version %s failed", state.model, state.version)

    def _start(self, servable: Servable | VersionInfo) -> _Version:
        info = servable if isinstance(servable, VersionInfo) else VersionInfo.of(servable)
        profile = info.profile
        model, version = info.model_name, info.version
        drift = None
        if profile is not None:
            references = {
                f"{name}.{stat}": shares
                for name, p in profile.inputs.items()
                for stat, shares in p.histograms.items()
            }
            drift = DriftWindows(profile.predictions, references, profile.window)
            for kind, value in profile.thresholds.items():
                self._metrics.drift_threshold.labels(model, version, kind).set(value)
            if profile.accuracy is not None:
                self._metrics.published_accuracy.labels(model, version).set(profile.accuracy)
        rate = info.sample_rate if info.sample_rate is not None else self._options.sample_rate
        max_bytes = info.max_bytes if info.max_bytes is not None else self._options.max_bytes
        log_file = None
        if rate > 0:
            try:
                log_file = _LogFile(
                    self._log_dir / model / f"{version}{self._options.log_suffix}.jsonl", max_bytes
                )
            except OSError as exc:  # an unwritable folder costs the log, not the monitoring
                log.error("prediction log of %s version %s not written: %s", model, version, exc)
        return _Version(
            model, version, info.names, dict(info.ranges), drift,
            profile.thresholds if profile else {}, rate, log_file,
        )  # fmt: skip

    def _take_version(
        self, state: _Version, servable: Servable | VersionInfo, observations: Sequence[Observation]
    ) -> None:
        classes, answered = _batch_classes(observations, state.names)
        now = time.monotonic()
        rows = None
        if answered:
            rows = np.concatenate(answered) if len(answered) > 1 else answered[0]
            rows = rows[rows >= 0]
            if not state.names and len(rows):
                state.names = tuple(str(i) for i in range(int(rows.max()) + 1))
            state.answered += len(rows)  # (modelport_predictions_total is counted on the request path)
        answers = self._answers
        limit = self._options.feedback_requests
        model, version = state.model, state.version
        for observation, row_classes in zip(observations, classes, strict=True):
            if row_classes is not None:  # a client reusing an id: the latest answer counts
                answers.pop(observation.request_id, None)
                answers[observation.request_id] = (model, version, row_classes, now, False)
        while len(answers) > limit:
            answers.popitem(last=False)
        logged = [] if state.log is None else _sampled(observations, state.sample_rate)
        # The inputs' statistics, for the whole batch at once, shared by drift and the log.
        inputs = _batch_inputs(observations, state.ranges) if logged or state.drift else {}
        if state.drift is not None and servable.profile is not None:
            self._drift(state, servable.profile, rows, inputs)
        if logged:
            self._write_log(state, observations, logged, inputs)

    def _drift(
        self,
        state: _Version,
        profile: Profile,
        rows: np.ndarray | None,
        inputs: Mapping[str, _BatchInput],
    ) -> None:
        assert state.drift is not None
        if rows is not None:
            state.drift.predictions.add(rows[rows < len(profile.classes)])
        for name, input_profile in profile.inputs.items():
            batch = inputs.get(name)
            if batch is None:
                continue
            for stat, values in input_profile.bins_of(batch.stats).items():
                state.drift.inputs[f"{name}.{stat}"].add(values)
        state.unscored = True
        if time.monotonic() - state.scored_at >= _SCORE_EVERY:
            self._score(state)

    def _score(self, state: _Version) -> None:
        """The drift scores of the windows now, and their gauges."""
        assert state.drift is not None
        state.scored_at = time.monotonic()
        state.unscored = False
        state.scores = state.drift.scores(min(_LEAST_ROWS, state.drift.predictions.size))
        for kind, value in state.scores.items():
            self._metrics.drift.labels(state.model, state.version, kind).set(value)

    def _write_log(
        self,
        state: _Version,
        observations: Sequence[Observation],
        logged: Sequence[int],
        inputs: Mapping[str, _BatchInput],
    ) -> None:
        """The lines of the `logged` observations (their indices in the batch), for the monitor's
        thread to write (a file's write may block: never on a request's thread)."""
        lines = _lines(state, observations, logged, inputs)
        with self._size_lock:
            if self._unwritten_bytes + len(lines) > _MAX_UNWRITTEN:
                self._metrics.dropped.labels(state.model).inc(len(logged))
                return
            self._unwritten_bytes += len(lines)
        self._unwritten.append((state, lines, len(logged)))

    def _write_unwritten(self) -> None:
        """The log's lines waiting, in order, each file flushed once."""
        written: dict[int, _LogFile] = {}
        while self._unwritten:
            state, lines, records = self._unwritten.popleft()
            with self._size_lock:
                self._unwritten_bytes -= len(lines)
            log_file = state.log
            if log_file is None:  # its version no longer served
                continue
            try:
                log_file.write_lines(lines)
                written[id(log_file)] = log_file
            except OSError as exc:
                log.warning("prediction log %s: %s", log_file.path, exc)
                self._metrics.dropped.labels(state.model).inc(records)
        for log_file in written.values():
            try:
                log_file.flush()
            except OSError as exc:
                log.warning("prediction log %s: %s", log_file.path, exc)

    def _score_the_last_rows(self, now: float) -> None:
        """Rows that came within _SCORE_EVERY of the last scores are scored once it has passed,
        traffic or not: the gauges must not keep the figures of before the traffic's last burst."""
        with self._lock:
            for state in self._versions.values():
                if state.unscored and now - state.scored_at >= _SCORE_EVERY:
                    self._score(state)

    def _sweep(self) -> None:
        """Forget versions no longer served, and answers too old for feedback."""
        served = {s for view in self._view().values() for s in view.versions.values()}
        with self._lock:
            for servable in [s for s in self._versions if s not in served]:
                state = self._versions.pop(servable)
                if state.log is not None:
                    state.log.close()
                    state.log = None
                self._metrics.forget(state.model, state.version, state.names)
            oldest = time.monotonic() - self._options.feedback_seconds
            while self._answers and next(iter(self._answers.values()))[3] < oldest:
                self._answers.popitem(last=False)

    # -- feedback and the report (the event loop's side) --

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every answer queued before now has been taken by the monitor thread."""
        marker: Future[None] = Future()
        self._queue.append(marker)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.wrap_future(marker), timeout)
        except TimeoutError:
            raise ModelportError(
                Code.UNAVAILABLE, f"the quality monitor is more than {timeout:g} s behind; try again"
            ) from None

    async def feedback(self, model: str, version: int | None, body: bytes) -> dict[str, Any]:
        items = self._feedback_items(body)
        await self.flush()
        return self.feedback_now(model, version, items)

    def feedback_now(
        self, model: str, version: int | None, items: Sequence[tuple[str, list[Any]]]
    ) -> dict[str, Any]:
        """`feedback` once every answer before it has been taken."""
        with self._lock:
            pairs = self._judge(model, version, items)
            accepted: dict[str, int] = {}
            for request_id, (answered_by, version_name, classes, at, _), truth in pairs:
                state = self._state_of(answered_by, version_name)
                if state is None:
                    continue  # unloaded between the check and now: nothing to add it to
                if state.confusion is None:
                    state.confusion = Confusion(len(state.names), self._options.feedback_window)
                state.confusion.add(truth, classes)
                self._answers[request_id] = (answered_by, version_name, classes, at, True)
                self._metrics.feedback.labels(answered_by, version_name).inc(len(truth))
                right = int((truth == np.asarray(classes)).sum())
                self._metrics.correct.labels(answered_by, version_name).inc(right)
                accepted[version_name] = accepted.get(version_name, 0) + len(truth)
            for key in accepted:
                state = self._state_of(model, key)
                if state is not None:
                    self._export_live(state)
        return {"accepted": sum(accepted.values()), "versions": self._live_summary(model, set(accepted))}

    def _judge(
        self, model: str, version: int | None, items: Sequence[tuple[str, list[Any]]]
    ) -> list[tuple[str, _Answer, np.ndarray]]:
        """Every item's request id, answer and true classes, or one error naming every problem."""
        unknown: list[str] = []
        problems: list[str] = []
        pairs: list[tuple[str, _Answer, np.ndarray]] = []
        seen: set[str] = set()
        for request_id, labels in items:
            answer = self._answers.get(request_id)
            state = None if answer is None or answer[0] != model else self._state_of(answer[0], answer[1])
            if answer is None or state is None:
                unknown.append(request_id)
                continue
            _, answered_by, classes, _, judged = answer
            if version is not None and answered_by != str(version):
                problems.append(f"request {request_id} was answered by version {answered_by}, not {version}")
            elif judged or request_id in seen:
                problems.append(f"request {request_id} already has its feedback")
            elif len(labels) != len(classes):
                problems.append(
                    f"request {request_id} had {len(classes)} rows: "
                    f"give {len(classes)} labels, not {len(labels)}"
                )
            else:
                truth, bad = _class_indices(labels, state.names)
                if bad:
                    problems.append(f"request {request_id}: {bad}")
                else:
                    pairs.append((request_id, answer, truth))
            seen.add(request_id)
        if problems:
            if unknown:
                problems.append(_unknown_message(unknown, model, self._options))
            raise invalid("; ".join(problems))
        if unknown:
            raise ModelportError(Code.NOT_FOUND, _unknown_message(unknown, model, self._options))
        return pairs

    def _state_of(self, model: str, version: str) -> _Version | None:
        for state in self._versions.values():
            if state.model == model and state.version == version:
                return state
        return None

    def _export_live(self, state: _Version) -> None:
        confusion = state.confusion
        if confusion is None or confusion.accuracy is None:
            return
        self._metrics.live_accuracy.labels(state.model, state.version).set(confusion.accuracy)
        for name, figures in confusion.per_class(state.names).items():
            if figures["precision"] is not None:
                self._metrics.live_precision.labels(state.model, state.version, name).set(
                    figures["precision"]
                )
            if figures["recall"] is not None:
                self._metrics.live_recall.labels(state.model, state.version, name).set(figures["recall"])

    def _live_summary(self, model: str, versions: set[str]) -> dict[str, Any]:
        out = {}
        for state in self._versions.values():
            if state.model == model and state.version in versions and state.confusion is not None:
                out[state.version] = {
                    "live_accuracy": state.confusion.accuracy,
                    "feedback": state.confusion.total,
                }
        return out

    async def report(self, view: ModelView, version: int | None) -> dict[str, Any]:
        """The model's quality figures per served version (or the one asked for)."""
        await self.flush()
        servables = [view.resolve(version)] if version is not None else list(view.versions.values())
        return {"model": view.name, "versions": self.report_now(sorted(servables, key=lambda s: s.version))}

    def report_now(self, servables: Sequence[Servable | VersionInfo]) -> list[dict[str, Any]]:
        """`report`'s figures of these versions, once every answer before it has been taken."""
        with self._lock:
            return [self._report_version(s) for s in servables]

    def _report_version(self, servable: Servable | VersionInfo) -> dict[str, Any]:
        state = self._versions.get(servable)
        profile = servable.profile
        confusion = state.confusion if state is not None else None
        names = state.names if state is not None else ()
        drift = None
        if profile is not None:
            if state is not None and state.drift is not None:  # now, not as of the last gauges
                self._score(state)
            drift = {
                "scores": dict(state.scores) if state is not None else {},
                "thresholds": dict(profile.thresholds),
                "window": profile.window,
                "rows": state.drift.predictions.filled if state is not None and state.drift else 0,
                "over": sorted(
                    k for k, v in (state.scores if state else {}).items() if v > profile.thresholds[k]
                ),
            }
        live = None
        if confusion is not None:
            live = {
                "accuracy": confusion.accuracy,
                "feedback": confusion.total,
                "window": confusion.size,
                "rows": confusion.filled,
                "per_class": confusion.per_class(names),
                "confusion_matrix": confusion.matrix.tolist(),
                "classes": list(names),
            }
        return {
            "version": str(servable.version),
            "answered_rows": state.answered if state is not None else 0,
            "published_accuracy": profile.accuracy if profile is not None else None,
            "live": live,
            "drift": drift,
            "prediction_log": (
                {"path": str(state.log.path), "sample_rate": state.sample_rate}
                if state is not None and state.log is not None
                else None
            ),
        }


def _classes_of(observation: Observation, names: tuple[str, ...]) -> np.ndarray | None:
    """The class index of each row of the answer: an argmax output's, else the argmax of a
    2-D output (probabilities, scores, logits); None when the answer has no classes."""
    if observation.feeds is None:
        return None
    for binding in observation.wanted:
        if binding.transform == "argmax":
            value = observation.outputs[binding.name]
            if value.dtype.kind in "iu":
                return value.reshape(-1).astype(np.int64, copy=False)
            index = {name: i for i, name in enumerate(binding.labels or names)}
            return np.asarray([index.get(str(v), -1) for v in value.reshape(-1)], dtype=np.int64)
    for binding in observation.wanted:
        value = observation.outputs[binding.name]
        if value.ndim == 2 and value.shape[1] > 1 and value.dtype.kind == "f":
            indices: np.ndarray = value.argmax(axis=1)
            return indices
    return None


def _batch_classes(
    observations: Sequence[Observation], names: tuple[str, ...]
) -> tuple[list[np.ndarray | None], list[np.ndarray]]:
    """`_classes_of` every observation, and the batch's class indices as arrays to concatenate.
    Observations answered through the same outputs (the same `wanted` list: every request that
    names no outputs) are done at once: one concatenation, one slice (a view) each."""
    out: list[np.ndarray | None] = [None] * len(observations)
    groups: dict[int, list[int]] = {}
    for i, observation in enumerate(observations):
        if observation.feeds is not None:
            groups.setdefault(id(observation.wanted), []).append(i)
    answered: list[np.ndarray] = []
    for members in groups.values():
        first = observations[members[0]]
        name = _class_output(first)
        values = [observations[i].outputs.get(name) for i in members] if name is not None else []
        if name is None or len(members) == 1 or any(v is None or v.ndim != 1 for v in values):
            for i in members:  # the unusual answers one by one (labels, one observation)
                out[i] = found = _classes_of(observations[i], names)
                if found is not None:
                    answered.append(found)
            continue
        flat: np.ndarray = np.concatenate(values).astype(np.int64, copy=False)  # type: ignore[arg-type]
        answered.append(flat)
        at = 0
        for i, value in zip(members, values, strict=True):
            size = len(value)  # type: ignore[arg-type]
            out[i] = flat[at : at + size]
            at += size
    return out, answered


def _class_output(observation: Observation) -> str | None:
    """The name of the output that is the answer's class indices (an integer argmax), if any."""
    for binding in observation.wanted:
        if binding.transform == "argmax":
            value = observation.outputs.get(binding.name)
            return binding.name if value is not None and value.dtype.kind in "iu" else None
    return None


def _index_names(outputs: Any) -> tuple[str, ...]:
    for binding in outputs:
        size = binding.source.shape[-1] if binding.source.shape else -1
        if binding.transform in ("argmax", "softmax") and size > 0:
            return tuple(str(i) for i in range(size))
    return ()


@dataclass
class _BatchInput:
    """One model input over a batch of observations: its statistics per row, and each
    observation's slice of them for the log."""

    arrays: list[np.ndarray]  # each observation's
    offsets: list[int]  # observation i's rows are [offsets[i], offsets[i + 1])
    stats: dict[str, np.ndarray]  # intensity (and ink, its range known) per row
    rows: np.ndarray  # [rows, values]
    _parts: list[tuple[bytes, list[bytes]]] | None = None  # per statistic: its key, each row's JSON
    _rows: list[bytes] = field(default_factory=list)  # per row: its statistics' JSON

    def summary(self, out: bytearray, i: int, shapes: dict[tuple[int, ...], bytes]) -> None:
        """Observation i's summary as JSON onto `out`: `{"shape": [...], "intensity": [...],
        "ink": [...], "hash": [...]}`, its values' JSON made once per batch (one orjson call per
        statistic)."""
        if self._parts is None:  # once per batch, for the log only
            self._parts = [
                (b"," + orjson.dumps(k) + b":[", _json_items(np.round(v.astype(np.float64), 5).tolist()))
                for k, v in self.stats.items()
            ]
            hexes = _row_hashes(self.rows).astype(">u8").tobytes().hex(",", 8).encode()  # 16 digits each
            hashes = (b'"' + hexes.replace(b",", b'","') + b'"').split(b",") if hexes else []
            self._parts.append((b',"hash":[', hashes))
            # A row's statistics after its shape, each row's in one formatting: the usual
            # observation has one row.
            template = b"".join(key.replace(b"%", b"%%") + b"%s]" for key, _ in self._parts) + b"}"
            self._rows = [template % values for values in zip(*(v for _, v in self._parts), strict=True)]
        shape = self.arrays[i].shape
        encoded = shapes.get(shape)
        if encoded is None:
            encoded = shapes[shape] = b'{"shape":' + orjson.dumps(list(shape))
        out += encoded
        lo, hi = self.offsets[i], self.offsets[i + 1]
        if hi == lo + 1:
            out += self._rows[lo]
            return
        for key, items in self._parts:
            out += key
            out += b",".join(items[lo:hi])
            out += b"]"
        out += b"}"


def _json_items(values: list[Any]) -> list[bytes]:
    """Each of `values` (numbers, None) as orjson writes it, from one call: a number's JSON has
    no comma."""
    return orjson.dumps(values)[1:-1].split(b",") if values else []


def _sampled(observations: Sequence[Observation], rate: float) -> list[int]:
    """The indices of the observations the log takes."""
    if rate >= 1.0:
        return list(range(len(observations)))
    return [i for i in range(len(observations)) if random.random() < rate]


def _batch_inputs(
    observations: Sequence[Observation], ranges: Mapping[str, tuple[float, float]]
) -> dict[str, _BatchInput]:
    """Every numeric model input the batch's observations all have, at once: per row its mean
    (`intensity`), its share of values above the middle of its range (`ink`, range known), and
    for the log a hash of its bytes as the model saw them."""
    first = observations[0].feeds
    assert first is not None
    out = {}
    for name, sample in first.items():
        feeds = [o.feeds.get(name) for o in observations if o.feeds is not None]
        if sample.dtype.kind not in "fiub" or sample.ndim == 0 or any(f is None for f in feeds):
            continue
        arrays = [np.asarray(f) for f in feeds]
        shape = sample.shape[1:]
        if sample.ndim > 1 and all(a.shape[1:] == shape for a in arrays):  # rows of one shape: at once
            rows = np.concatenate(arrays).reshape(-1, max(1, int(np.prod(shape))))
        else:
            rows = np.concatenate([a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(-1, 1) for a in arrays])
        bounds = ranges.get(name)
        stats = statistics(rows, *bounds) if bounds is not None else {"intensity": rows.mean(axis=1)}
        out[name] = _BatchInput(
            arrays=arrays,
            offsets=[0, *np.cumsum([len(a) if a.ndim else 1 for a in arrays]).tolist()],
            stats=stats,
            rows=rows,
        )
    return out


def _row_hashes(values: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes, for the whole batch at once: the bytes as 64-bit
    words times fixed odd multipliers, summed modulo 2**64, then mixed (SplitMix64's finaliser).
    Equal rows hash equal; it finds the same input again, it is no cryptographic digest."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1)
    width = -(-raw.shape[1] // 8) * 8
    if width != raw.shape[1]:
        raw = np.pad(raw, ((0, 0), (0, width - raw.shape[1])))
    words = raw.view(np.uint64)
    h: np.ndarray = (words * _multipliers(words.shape[1])).sum(axis=1, dtype=np.uint64)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


_MULTIPLIERS: dict[int, np.ndarray] = {}


def _multipliers(n: int) -> np.ndarray:
    found = _MULTIPLIERS.get(n)
    if found is None:
        rng = np.random.default_rng(17)  # fixed: a row hashes the same in every process
        found = _MULTIPLIERS[n] = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(
            1
        )
    return found


def _second(at: int) -> bytes:
    """`"2026-12-07T15:40:01`: a time stamp's JSON up to its second (ISO 8601, UTC)."""
    return time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(at)).encode()


_OUTPUTS = orjson.OPT_SERIALIZE_NUMPY


def _lines(
    state: _Version,
    observations: Sequence[Observation],
    logged: Sequence[int],
    inputs: Mapping[str, _BatchInput],
) -> bytes:
    """The log's line of each of the `logged` observations (their indices in the batch), as
    orjson would write the record `{"time", "request_id", "model", "version", "api",
    "latency_ms", "inputs", "outputs"}`, byte for byte: what is the same for every line (the
    model, the version, the keys) encoded once, the latencies and the inputs' statistics once
    per batch, per line its request id and outputs."""
    model = b',"model":%s,"version":%s,"api":' % (orjson.dumps(state.model), orjson.dumps(state.version))
    latencies = _json_items([round(observations[i].latency * 1000, 3) for i in logged])
    apis: dict[str, bytes] = {}
    names: dict[str, bytes] = {}
    shapes: dict[tuple[int, ...], bytes] = {}
    # One growing buffer, each piece copied in and let go at once: orjson's results kept in a list
    # until a join cost ~2.5 us more each (256 live buffers of a few hundred bytes).
    out = bytearray()
    last, prefix = -1, b""
    for latency, i in zip(latencies, logged, strict=True):
        observation = observations[i]
        feeds = observation.feeds
        assert feeds is not None
        api = apis.get(observation.api)
        if api is None:
            api = apis[observation.api] = orjson.dumps(observation.api)
        at = observation.time
        second = int(at)
        if second != last:
            last, prefix = second, _second(second)
        out += b'{"time":%s.%06dZ","request_id":%s%s%s,"latency_ms":%s,"inputs":{' % (
            prefix,
            int((at - second) * 1e6),
            orjson.dumps(observation.request_id),
            model,
            api,
            latency,
        )
        first = True
        for name, value in feeds.items():
            key = names.get(name)
            if key is None:
                key = names[name] = orjson.dumps(name) + b":"
            if not first:
                out += b","
            first = False
            out += key
            batch = inputs.get(name)
            if batch is not None:
                batch.summary(out, i, shapes)
            else:
                out += orjson.dumps({"shape": list(np.shape(value))})
        out += b'},"outputs":'
        out += orjson.dumps(_logged_outputs(observation.outputs), option=_OUTPUTS, default=_plain)
        out += b"}\n"
    return bytes(out)


def _logged_outputs(outputs: dict[str, np.ndarray]) -> Mapping[str, Any]:
    for value in outputs.values():
        if value.size > _MAX_LOGGED_VALUES:  # rare: the shapes instead, of every large output
            return {n: v if v.size <= _MAX_LOGGED_VALUES else _shape_of(v) for n, v in outputs.items()}
    return outputs


def _shape_of(value: np.ndarray) -> dict[str, Any]:
    return {"shape": list(value.shape), "dtype": str(value.dtype)}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # object arrays (labels), non-contiguous ones
        return value.tolist()
    if isinstance(value, np.generic | bytes):
        return str(value)
    raise TypeError


def _parse_feedback(body: bytes) -> list[tuple[str, list[Any]]]:
    """`{"feedback": [{"request_id": "...", "label": 3}, {"request_id": "...", "labels": [1, 4]}]}`
    -> [(request id, labels)]; a label is a class index or a class name."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"feedback: not JSON: {exc}") from None
    items = doc.get("feedback") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise invalid('feedback: give {"feedback": [{"request_id": "...", "label": ...}, ...]}')
    if len(items) > _MAX_FEEDBACK_ITEMS:
        raise invalid(f"feedback: {len(items)} items; send at most {_MAX_FEEDBACK_ITEMS} at a time")
    parsed = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("request_id"), str):
            raise invalid(f"{where}: must be an object with a string request_id")
        has_one, has_many = "label" in item, "labels" in item
        if has_one == has_many or set(item) - {"request_id", "label", "labels"}:
            raise invalid(f"{where}: give request_id and one of label (one row) or labels (one per row)")
        labels = [item["label"]] if has_one else item["labels"]
        if not isinstance(labels, list) or not labels:
            raise invalid(f"{where}.labels: must be a non-empty list, one label per row of the request")
        for label in labels:
            if isinstance(label, bool) or not isinstance(label, int | str):
                raise invalid(
                    f"{where}: label {orjson.dumps(label).decode()[:60]} must be a class index (integer) "
                    "or a class name (string)"
                )
        parsed.append((item["request_id"], labels))
    return parsed


def _class_indices(labels: Sequence[Any], names: tuple[str, ...]) -> tuple[np.ndarray, str]:
    """Labels -> class indices, or the problem with them."""
    index = {name: i for i, name in enumerate(names)}
    out = []
    for label in labels:
        if isinstance(label, int) and 0 <= label < len(names):
            out.append(label)
        elif isinstance(label, str) and label in index:
            out.append(index[label])
        else:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            return np.zeros(0, dtype=np.int64), (
                f"label {label!r} is not a class of this model "
                f"(indices 0-{len(names) - 1}, or names: {shown})"
            )
    return np.asarray(out, dtype=np.int64), ""


def _unknown_message(unknown: Sequence[str], model: str, options: MonitorOptions) -> str:
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    return (
        f"request ids not known for model '{model}': {shown} (an id is remembered for "
        f"{options.feedback_seconds / 86400:g} days, the last {options.feedback_requests} of them, by the "
        "replica that answered it, until it restarts or the version is unloaded)"
    )
