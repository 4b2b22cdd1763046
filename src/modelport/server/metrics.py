"""The model server's Prometheus metrics, on a registry of its own (no module globals).

    modelport_requests_total{model,version,api,status}            counter
    modelport_request_duration_seconds{model,version,api,status}  histogram
    modelport_requests_in_flight{model}                           gauge
    modelport_model_load_seconds{model,version}                   gauge (last load)
    modelport_model_state{model,version}                          gauge (10 START .. 50 END)
    modelport_batch_size{model,version}                           histogram (rows per model call)
    modelport_batch_padding_rows_total{model,version}             counter (filler rows)
    modelport_batch_queue_seconds{model,version}                  histogram (oldest task's wait)
    modelport_batch_queue_rows                                    gauge (rows waiting now)
    modelport_requests_expired_total{model,version}               counter (dropped unstarted at
                                                                  their deadline)
    modelport_api_key_requests_total{key,status}                  counter (with API keys on: per
                                                                  key id; 200 let in, 401, 403, 429)
    modelport_predictions_total{model,version,class}              counter (rows answered, by
                                                                  predicted class: a classifier's
                                                                  argmax, at most MAX_CLASSES)
    modelport_drift_score{model,version,kind}                     gauge (input | prediction: JS
                                                                  distance of the current window)
    modelport_drift_threshold{model,version,kind}                 gauge (from the reference profile)
    modelport_live_accuracy{model,version}                        gauge (sliding window of feedback)
    modelport_live_precision{model,version,class}                 gauge (same window)
    modelport_live_recall{model,version,class}                    gauge (same window)
    modelport_published_accuracy{model,version}                   gauge (the evaluation's)
    modelport_feedback_total{model,version}                       counter (rows with a true label)
    modelport_feedback_correct_total{model,version}               counter (of those, answered right)
    modelport_prediction_log_dropped_total{model}                 counter (records not monitored
                                                                  or logged: queue full, disk error)
    process_cpu_seconds_total, process_resident_memory_bytes, ... (prometheus_client)

`api` is predict | classify | regress | status | metadata; `status` is the HTTP status code.
Labelled children are cached: `labels()` costs more than the increment it guards.

`model` and `version` come from URLs anyone can send, so only names the server knows become
labels; the rest are counted under `_unknown`. Otherwise every 404 to a new name was a new
series: 20,000 of them took /metrics from 23 KB to 47.6 MB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from modelport.server.siblings import Siblings

# From 250 µs (a small ONNX model on one core) to 10 s (a large one queued behind others).
_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
UNKNOWN = "_unknown"
# A classifier's classes are its output's width; wider outputs (embeddings, images) and integer
# labels past this many are not classes worth a series each.
MAX_CLASSES = 1000


def predicted_classes(outputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Rows by predicted class from a model's outputs: the first output that is a classifier's
    scores ([rows, 2..MAX_CLASSES] floats: their argmax) or labels ([rows] integers); {} if none."""
    return {str(c): n for c, n in _class_counts(outputs)}


def _class_counts(outputs: Mapping[str, np.ndarray]) -> list[tuple[int, int]]:
    """predicted_classes' (class, rows) pairs, cheaply: it runs on every request (one row's is an
    argmax; np.unique cost ~40 us a request)."""
    for array in outputs.values():
        if array.ndim == 2 and 2 <= array.shape[1] <= MAX_CLASSES and array.dtype.kind == "f":
            if len(array) == 1:
                return [(int(array.argmax()), 1)]
            labels = array.argmax(axis=1)
        elif array.ndim == 1 and array.dtype.kind in "iu":
            if len(array) == 1:
                label = int(array[0])
                return [(label, 1)] if 0 <= label < MAX_CLASSES else []
            labels = array[(array >= 0) & (array < MAX_CLASSES)].astype(np.intp)
        else:
            continue
        counts = np.bincount(labels)
        found = np.flatnonzero(counts)
        return list(zip(found.tolist(), counts[found].tolist(), strict=True))
    return []


def model_label(name: str, known: Collection[str]) -> str:
    """The `model` label: the name if the server serves such a model, else `_unknown`."""
    return name if name in known else UNKNOWN


def version_label(version: int | None, known: Collection[int]) -> str:
    """The `version` label: "" when none was asked for, `_unknown` for one the model lacks."""
    if version is None:
        return ""
    return str(version) if version in known else UNKNOWN


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        labels = ["model", "version", "api", "status"]
        self._requests = Counter(
            "modelport_requests", "Requests answered, by model, version, API and HTTP status.",
            labels, registry=self.registry,
        )  # fmt: skip
        self._latency = Histogram(
            "modelport_request_duration_seconds", "Time from request body received to response.",
            labels, buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._in_flight = Gauge(
            "modelport_requests_in_flight", "Requests being processed.", ["model"], registry=self.registry
        )
        self._load_seconds = Gauge(
            "modelport_model_load_seconds", "How long the last load of a version took.",
            ["model", "version"], registry=self.registry,
        )  # fmt: skip
        self._state = Gauge(
            "modelport_model_state",
            "Version state: 10 START, 20 LOADING, 30 AVAILABLE, 40 UNLOADING, 50 END.",
            ["model", "version"], registry=self.registry,
        )  # fmt: skip
        self._batch_size = Histogram(
            "modelport_batch_size", "Rows per batched model call (padding included).",
            ["model", "version"], buckets=_BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._batch_padding = Counter(
            "modelport_batch_padding_rows", "Filler rows added to reach an allowed batch size.",
            ["model", "version"], registry=self.registry,
        )  # fmt: skip
        self._batch_wait = Histogram(
            "modelport_batch_queue_seconds", "How long a batch's oldest request waited in the queue.",
            ["model", "version"], buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._expired = Counter(
            "modelport_requests_expired",
            "Requests whose deadline passed while they waited for a thread or a batch: not started.",
            ["model", "version"], registry=self.registry,
        )  # fmt: skip
        self._key_requests = Counter(
            "modelport_api_key_requests",
            "Requests checked for an API key, by key id (_none: no valid key) and status (200: let in).",
            ["key", "status"], registry=self.registry,
        )  # fmt: skip
        self._key_children: dict[tuple[str | None, int], Counter] = {}
        self._predictions = Counter(
            "modelport_predictions", "Rows answered, by predicted class (a classifier's argmax).",
            ["model", "version", "class"], registry=self.registry,
        )  # fmt: skip
        self._class_children: dict[tuple[str, int, int], Counter] = {}
        self.quality = QualityMetrics(self.registry)
        self._children: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
        self._in_flight_children: dict[str, Gauge] = {}
        self.siblings: Siblings | None = None  # set when this is one worker of several

    def observe(self, model: str, version: str, api: str, status: int, seconds: float) -> None:
        key = (model, version, api, status)
        child = self._children.get(key)
        if child is None:
            values = (model, version, api, str(status))
            child = (self._requests.labels(*values), self._latency.labels(*values))
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def key_request(self, key_id: str | None, status: int) -> None:
        """`key_id`: a key in the store (a bounded set), or None. Thread-safe."""
        child = self._key_children.get((key_id, status))
        if child is None:
            child = self._key_requests.labels(key_id or "_none", str(status))
            self._key_children[(key_id, status)] = child
        child.inc()

    def expired(self, servable: Any) -> None:
        """A request to `servable` (a loaded version: its name and version are known ones)
        dropped unstarted at its deadline. Thread-safe: pool threads call it."""
        self._expired.labels(servable.model_name, str(servable.version)).inc()

    def predicted(self, servable: Any, outputs: Mapping[str, np.ndarray]) -> None:
        """Count a model call's rows by predicted class (canary analysis compares the shares).
        Thread-safe: pool threads call it."""
        for label, rows in _class_counts(outputs):
            key = (servable.model_name, servable.version, label)
            child = self._class_children.get(key)
            if child is None:
                child = self._predictions.labels(servable.model_name, str(servable.version), str(label))
                self._class_children[key] = child
            child.inc(rows)

    def in_flight(self, model: str) -> Gauge:
        child = self._in_flight_children.get(model)
        if child is None:
            child = self._in_flight_children[model] = self._in_flight.labels(model)
        return child

    def version_state(self, model: str, version: int, state: int, load_seconds: float | None) -> None:
        self._state.labels(model, str(version)).set(state)
        if load_seconds is not None:
            self._load_seconds.labels(model, str(version)).set(load_seconds)

    def batch_observer(self, model: str, version: int) -> Callable[[int, int, float], None]:
        """What a version's batcher calls once per model call: (rows, padding rows, queue wait)."""
        values = (model, str(version))
        size = self._batch_size.labels(*values)
        padding = self._batch_padding.labels(*values)
        wait = self._batch_wait.labels(*values)

        def observe(rows: int, pad: int, seconds: float) -> None:
            size.observe(rows + pad)
            if pad:
                padding.inc(pad)
            wait.observe(seconds)

        return observe

    def batch_queue(self, rows: Callable[[], int]) -> None:
        """The batch queue depth, read when scraped: rows waiting in every version's queue."""
        Gauge(
            "modelport_batch_queue_rows", "Rows waiting in the batch queues now.", registry=self.registry
        ).set_function(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def exposition(self) -> bytes:
        """What /metrics answers: this process's series, or with --workers every worker's, each
        labelled with its worker (server/siblings.py says why)."""
        if self.siblings is None:
            return self.render()
        return await self.siblings.render()


class QualityMetrics:
    """Is the model still right (server/monitor.py sets these, from its own thread)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        versioned = ["model", "version"]
        self.drift = Gauge(
            "modelport_drift_score",
            "Jensen-Shannon distance of the current window of requests from the version's reference "
            "profile: kind=input (the largest input statistic's) or prediction (classes answered).",
            [*versioned, "kind"], registry=registry,
        )  # fmt: skip
        self.drift_threshold = Gauge(
            "modelport_drift_threshold", "Drift score above which traffic has drifted (the profile's).",
            [*versioned, "kind"], registry=registry,
        )  # fmt: skip
        self.live_accuracy = Gauge(
            "modelport_live_accuracy", "Accuracy over the sliding window of feedback.", versioned,
            registry=registry,
        )  # fmt: skip
        self.live_precision = Gauge(
            "modelport_live_precision", "Precision per class over the sliding window of feedback.",
            [*versioned, "class"], registry=registry,
        )  # fmt: skip
        self.live_recall = Gauge(
            "modelport_live_recall", "Recall per class over the sliding window of feedback.",
            [*versioned, "class"], registry=registry,
        )  # fmt: skip
        self.published_accuracy = Gauge(
            "modelport_published_accuracy", "Accuracy measured by `modelport evaluate` on held-out data.",
            versioned, registry=registry,
        )  # fmt: skip
        self.feedback = Counter(
            "modelport_feedback_total", "Answered rows whose true label came back as feedback.",
            versioned, registry=registry,
        )  # fmt: skip
        self.correct = Counter(
            "modelport_feedback_correct_total",
            "Answered rows whose true label came back as feedback and was the class answered.",
            versioned, registry=registry,
        )  # fmt: skip
        self.dropped = Counter(
            "modelport_prediction_log_dropped_total",
            "Answers not monitored or logged: the monitor's queue was full, or the log could not be written.",
            ["model"], registry=registry,
        )  # fmt: skip

    def forget(self, model: str, version: str, classes: Collection[str]) -> None:
        """Drop an unloaded version's series (its labels stay bounded by what is served)."""
        for metric in (self.live_accuracy, self.published_accuracy, self.feedback, self.correct):
            _remove(metric, model, version)
        for kind in ("input", "prediction"):
            _remove(self.drift, model, version, kind)
            _remove(self.drift_threshold, model, version, kind)
        for name in classes:
            for metric in (self.live_precision, self.live_recall):
                _remove(metric, model, version, name)


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        metric.remove(*labels)
