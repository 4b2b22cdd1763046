"""The metrics collector (the role of Kubernetes' metrics-server, plus the replicas' own
Prometheus metrics): every `interval` it samples each replica process's CPU and memory and
scrapes its /metrics, and keeps a short window of samples. A replica's CPU and memory are those
of its process and every process under it, as a container's are (a server's monitor process,
`--workers`' workers). From two samples in the window it derives what `modelport top` shows and
what an HPA scales on:

    cpu                           cores (CPU seconds per second)
    memory                        resident bytes (summed over the processes)
    requests_per_second           answered requests per second (every status)
    requests_in_flight            requests being processed (at the last sample)
    request_latency_p50_seconds   from the latency histogram, over the window
    request_latency_p99_seconds
    <any gauge the replica exports>, summed over its labels (e.g. modelport_requests_in_flight)
"""

from __future__ import annotations

import math
import urllib.request
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from modelport.clock import Clock

DERIVED = (
    "cpu", "memory", "requests_per_second", "requests_in_flight", "request_latency_p50_seconds",
    "request_latency_p99_seconds",
)  # fmt: skip


@dataclass
class Sample:
    at: float  # monotonic
    wall: float
    cpu_seconds: float
    memory: float
    requests: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # latency histogram, cumulative
    gauges: dict[str, float] = field(default_factory=dict)
    errors: float = 0.0  # predictions answered 5xx
    versions: dict[tuple[str, str], float] = field(default_factory=dict)  # predictions by (model, version)
    quality: dict[tuple[str, str, str, str], float] = field(
        default_factory=dict
    )  # (metric, model, version, kind)


# The model-quality gauges kept with their labels (for the dashboard), not only summed.
QUALITY = ("modelport_drift_score", "modelport_drift_threshold", "modelport_live_accuracy",
           "modelport_published_accuracy")  # fmt: skip
PREDICTING = ("predict", "classify", "regress", "infer", "grpc_infer")


def scrape(port: int, timeout: float = 0.5, api_key: str | None = None) -> Sample | None:
    """Requests answered (and those of them that are predictions, by version, and 5xx), the
    latency histogram, every gauge summed over its labels, and the quality gauges by their
    labels, from a replica's /metrics (with `api_key` for a replica that requires keys); in a
    Sample without its time and process figures."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if api_key is not None:
        request.add_header("x-api-key", api_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    found = Sample(0.0, 0.0, 0.0, 0.0)
    for family in text_string_to_metric_families(text):
        if family.name == "modelport_requests":
            for s in family.samples:
                if s.name == "modelport_requests_total":
                    found.requests += s.value
                    if s.labels.get("api") in PREDICTING:
                        key = (s.labels.get("model", ""), s.labels.get("version", ""))
                        found.versions[key] = found.versions.get(key, 0.0) + s.value
                        found.errors += s.value if s.labels.get("status", "").startswith("5") else 0.0
        elif family.name == "modelport_request_duration_seconds":
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    bound = float(s.labels["le"])
                    found.buckets[bound] = found.buckets.get(bound, 0.0) + s.value
        elif family.type == "gauge":
            found.gauges[family.name] = sum(s.value for s in family.samples)
            if family.name in QUALITY:
                for s in family.samples:
                    labels = s.labels
                    found.quality[(family.name, labels.get("model", ""), labels.get("version", ""),
                                   labels.get("kind", ""))] = s.value  # fmt: skip
    return found


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts (linear within a bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = bound, count
    return lower


class MetricsCollector:
    def __init__(
        self, clock: Clock, interval: float = 5.0, window: float = 30.0, api_key: str | None = None
    ) -> None:
        """`api_key`: a key with the `metrics` scope, for replicas that require keys."""
        self._api_key = api_key
        self._clock = clock
        self.interval = interval
        self.window = window
        self._samples: dict[str, deque[Sample]] = {}
        self._last = -1e18

    def collect(self, replicas: dict[str, tuple[int | None, int | None]]) -> bool:
        """Sample each replica (name -> (pid, REST port)) if an interval has passed (True then)."""
        now = self._clock.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        for name in set(self._samples) - set(replicas):
            del self._samples[name]
        # All at once: a replica that does not answer (frozen) costs one scrape timeout (0.5 s)
        # of this round, not 0.5 s for each such replica, one after another.
        names = list(replicas)
        children = _children()
        with ThreadPoolExecutor(max(1, min(16, len(names))), thread_name_prefix="scrape") as pool:
            samples = list(pool.map(lambda name: self._sample(*replicas[name], now, children), names))
        for name, sample in zip(names, samples, strict=True):
            if sample is None:
                self._samples.pop(name, None)  # a restarted process starts a new series
                continue
            series = self._samples.setdefault(name, deque())
            if series and series[-1].cpu_seconds > sample.cpu_seconds:
                series.clear()  # a new process under the same name
            series.append(sample)
            while series and now - series[0].at > self.window:
                series.popleft()
        return True

    def _sample(
        self, pid: int | None, port: int | None, now: float, children: Mapping[int, list[int]]
    ) -> Sample | None:
        """The replica's figures: CPU and memory of its process and every process under it (as
        a container's: a server's monitor process, `--workers`' workers), and its /metrics."""
        if pid is None or port is None:
            return None
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            cpu, rss = times.user + times.system, float(proc.memory_info().rss)
        except psutil.Error:
            return None
        for child in _descendants(pid, children):
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    cpu, rss = cpu + times.user + times.system, rss + child.memory_info().rss
            except psutil.Error:  # ended meanwhile
                continue
        sample = Sample(now, self._clock.now(), cpu, rss)
        scraped = scrape(port, api_key=self._api_key)
        if scraped is not None:
            sample.requests, sample.buckets, sample.gauges = scraped.requests, scraped.buckets, scraped.gauges
            sample.errors, sample.versions, sample.quality = scraped.errors, scraped.versions, scraped.quality
        return sample

    def pod(self, name: str) -> dict[str, Any] | None:
        """The derived metrics of one replica, with the time of the last sample; None until it
        has two samples (a rate needs two)."""
        series = self._samples.get(name)
        if not series or len(series) < 2:
            return None
        first, last = series[0], series[-1]
        elapsed = last.at - first.at
        if elapsed <= 0:
            return None
        delta = {b: last.buckets.get(b, 0.0) - first.buckets.get(b, 0.0) for b in last.buckets}
        values: dict[str, Any] = {
            **last.gauges,
            "cpu": max(0.0, (last.cpu_seconds - first.cpu_seconds) / elapsed),
            "memory": last.memory,
            "requests_per_second": max(0.0, (last.requests - first.requests) / elapsed),
            "requests_in_flight": last.gauges.get("modelport_requests_in_flight", 0.0),
            "timestamp": last.wall,
            "window": elapsed,
        }
        for q, key in ((0.5, "request_latency_p50_seconds"), (0.99, "request_latency_p99_seconds")):
            found = quantile(q, delta)
            if found is not None:
                values[key] = found
        return values

    def figures(self, names: list[str]) -> Figures | None:
        """A group of replicas' (a Deployment's) figures over the window: rates summed, latency
        quantiles from their histograms merged, quality gauges averaged; None while no replica
        of the group has two samples."""
        windows = [(s[0], s[-1]) for s in (self._samples.get(n) for n in names) if s and len(s) >= 2]
        windows = [(first, last) for first, last in windows if last.at > first.at]
        if not windows:
            return None
        rate = 0.0
        errors = cpu = 0.0
        buckets: dict[float, float] = {}
        versions: dict[str, float] = {}
        quality: dict[tuple[str, str, str, str], list[float]] = {}
        for first, last in windows:
            elapsed = last.at - first.at
            rate += max(0.0, last.requests - first.requests) / elapsed
            errors += max(0.0, last.errors - first.errors) / elapsed
            cpu += max(0.0, last.cpu_seconds - first.cpu_seconds) / elapsed
            for bound, count in last.buckets.items():
                buckets[bound] = buckets.get(bound, 0.0) + count - first.buckets.get(bound, 0.0)
            for (model, version), count in last.versions.items():
                key = f"{model} v{version}"
                added = max(0.0, count - first.versions.get((model, version), 0.0))
                versions[key] = versions.get(key, 0.0) + added / elapsed
            for labels, value in last.quality.items():
                quality.setdefault(labels, []).append(value)
        return Figures(
            rate, errors, quantile(0.5, buckets), quantile(0.99, buckets), cpu, versions,
            {key: sum(values) / len(values) for key, values in quality.items()},
        )  # fmt: skip


@dataclass(frozen=True)
class Figures:
    requests_per_second: float  # every answered request
    errors_per_second: float  # predictions answered 5xx
    p50: float | None
    p99: float | None
    cpu: float  # cores
    versions: dict[str, float]  # predictions per second by "model vN"
    quality: dict[tuple[str, str, str, str], float]  # (metric, model, version, kind) -> value


def _children() -> dict[int, list[int]]:
    """Every process's children (pid -> pids), read once per round of the collector."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    return children


def _descendants(pid: int, children: Mapping[int, list[int]]) -> list[psutil.Process]:
    out = []
    stack = list(children.get(pid, ()))
    while stack:
        child = stack.pop()
        try:
            out.append(psutil.Process(child))
        except psutil.Error:
            continue
        stack.extend(children.get(child, ()))
    return out
