"""The AnalysisRun controller: takes each metric's measurements when they fall due, judges each
(Argo Rollouts' rules), and records them with their values in the run's status.

    measurement k of a metric is due at  startedAt + initialDelay + (k+1) * interval
                                        (no interval: one, at startedAt + initialDelay)

Providers:
    modelport   the replicas' own /metrics, canary against stable, over the measurement's
                interval (the counters' growth since the last one): errorRate (5xx share of the
                canary's answers), latencyP50 / latencyP99 (seconds, the canary's), classDistance
                (total variation distance between the canary's and stable's predicted-class
                shares, 0 same to 1 disjoint), agreement (under setMirror: the share of the
                requests stable's replicas copied to the canary that it answered as stable did;
                an error counts as not agreeing; from stable's replicas' counts), liveAccuracy
                (the share of the canary's answers whose true label came back through `:feedback`
                in the interval that it answered right; minSamples counts those labelled rows).
    prometheus  an instant query (`{{args.canaryHash}}`, `{{args.stableHash}}`, `{{args.namespace}}`
                and `{{args.rollout}}` filled in); its first sample.

No data is never a number: fewer than `minSamples` requests in the window, an empty or NaN
Prometheus answer, are an Inconclusive measurement, and `inconclusiveLimit` decides. A metric is
Successful only with at least one Successful measurement.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelport.clock import Clock
from modelport.controlplane.meta import HASH_LABEL, Recorder, iso, parse_iso, terminating
from modelport.controlplane.metrics import quantile
from modelport.controlplane.store import ObjectStore
from modelport.errors import ModelportError
from modelport.spec import condition, seconds

Obj = dict[str, Any]
log = logging.getLogger("modelport.controlplane")
MAX_MEASUREMENTS = 20  # kept per metric in the run's status (the counts cover them all)
INFERENCE_APIS = ("status", "metadata")  # requests of these `api` labels are not predictions


# -- judging (pure) --


def assess(value: float | None, success: str | None, failure: str | None) -> str:
    """One measurement's verdict, as Argo Rollouts gives it; no value (or NaN) is Inconclusive."""
    if value is None or math.isnan(value):
        return "Inconclusive"
    if failure is not None and condition(failure)(value):
        return "Failed"
    if success is not None:
        if condition(success)(value):
            return "Successful"
        return "Inconclusive" if failure is not None else "Failed"
    return "Successful"


def metric_phase(metric: Obj, result: Obj) -> tuple[str | None, str]:
    """A metric's phase from its counts (None: still measuring), and why."""
    name = metric["name"]
    for count, limit, phase in (
        ("failed", "failureLimit", "Failed"),
        ("consecutiveError", "consecutiveErrorLimit", "Error"),
        ("inconclusive", "inconclusiveLimit", "Inconclusive"),
    ):
        allowed = int(metric.get(limit, 4 if limit == "consecutiveErrorLimit" else 0))
        if result.get(count, 0) > allowed:
            values = ", ".join(_shown(m.get("value")) for m in result.get("measurements", [])[-5:])
            return phase, (
                f'Metric "{name}" assessed {phase} due to {count} ({result[count]}) > {limit} ({allowed}); '
                f"last values: {values}"
            )
    if result.get("count", 0) >= wanted_count(metric):
        if result.get("successful", 0) == 0:
            return "Inconclusive", f'Metric "{name}": no Successful measurement in {result["count"]}'
        return "Successful", f'Metric "{name}" assessed Successful'
    return None, ""


def _shown(value: Any) -> str:
    return "no data" if value is None else f"{value:.4g}"


def wanted_count(metric: Obj) -> float:
    if metric.get("count") is not None:
        return int(metric["count"])
    return math.inf if metric.get("interval") is not None else 1


def due_at(started: float, metric: Obj, taken: int) -> float:
    delay = seconds(metric["initialDelay"]) if metric.get("initialDelay") is not None else 0.0
    interval = seconds(metric["interval"]) if metric.get("interval") is not None else 0.0
    return started + delay + (taken + 1) * interval


# -- modelport's figures, from the replicas' /metrics --


@dataclass
class Figures:
    """A revision's counters (a replica's, or several summed)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    classes: dict[str, float] = field(default_factory=dict)
    mirrored: dict[str, float] = field(default_factory=dict)  # copies to a canary, by outcome
    labelled: float = 0.0  # answered rows whose true label came back (feedback)
    correct: float = 0.0  # of those, answered right

    def add(self, other: Figures, sign: float = 1.0) -> None:
        self.requests += sign * other.requests
        self.errors += sign * other.errors
        self.labelled += sign * other.labelled
        self.correct += sign * other.correct
        for mine, theirs in ((self.classes, other.classes), (self.mirrored, other.mirrored)):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0.0) + sign * count
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + sign * count


def parse_figures(text: str) -> Figures:
    figures = Figures()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            api = s.labels.get("api")
            if s.name == "modelport_requests_total" and api not in INFERENCE_APIS:
                figures.requests += s.value
                if s.labels.get("status", "").startswith("5"):
                    figures.errors += s.value
            elif s.name == "modelport_request_duration_seconds_bucket" and api not in INFERENCE_APIS:
                bound = float(s.labels["le"])
                figures.buckets[bound] = figures.buckets.get(bound, 0.0) + s.value
            elif s.name == "modelport_predictions_total":
                name = s.labels.get("class", "")
                figures.classes[name] = figures.classes.get(name, 0.0) + s.value
            elif s.name == "modelport_feedback_total":
                figures.labelled += s.value
            elif s.name == "modelport_feedback_correct_total":
                figures.correct += s.value
            elif s.name == "modelport_mirror_requests_total":
                outcome = s.labels.get("outcome", "")
                figures.mirrored[outcome] = figures.mirrored.get(outcome, 0.0) + s.value
    return figures


def scrape_figures(port: int, timeout: float = 0.5) -> Figures | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as answer:
            return parse_figures(answer.read().decode())
    except (OSError, ValueError):
        return None


Snapshot = dict[str, tuple[str, Figures]]  # pod -> (its template hash, its counters)


def window(before: Snapshot, after: Snapshot, revision: str) -> Figures:
    """What a revision's replicas counted between two snapshots (a replica new since, or restarted
    and counting from 0 again, counts whole)."""
    total = Figures()
    for pod, (hash_, now) in after.items():
        if hash_ != revision:
            continue
        total.add(now)
        then = before.get(pod)
        if then is not None and then[1].requests <= now.requests:
            total.add(then[1], -1.0)
    return total


def modelport_value(
    name: str, canary: Figures, stable: Figures, min_samples: int
) -> tuple[float | None, str]:
    """A metric's value from the canary's and stable's window, or None and why not."""
    if name == "agreement":
        return _agreement(stable, min_samples)
    if name == "liveAccuracy":
        said = f"{canary.labelled:.0f} canary answers labelled by feedback"
        if canary.labelled < min_samples:
            return None, f"{said}, fewer than minSamples {min_samples}"
        return canary.correct / canary.labelled, said
    if canary.requests < min_samples:
        return None, f"{canary.requests:.0f} canary requests, fewer than minSamples {min_samples}"
    if name == "errorRate":
        return canary.errors / canary.requests, f"{canary.requests:.0f} canary requests"
    if name in ("latencyP50", "latencyP99"):
        found = quantile(0.5 if name == "latencyP50" else 0.99, canary.buckets)
        return found, f"{canary.requests:.0f} canary requests"
    seen, known = sum(canary.classes.values()), sum(stable.classes.values())
    if min(seen, known) < min_samples:
        return (
            None,
            f"{seen:.0f} canary and {known:.0f} stable predictions, fewer than minSamples {min_samples}",
        )
    names = set(canary.classes) | set(stable.classes)
    distance = 0.5 * sum(
        abs(canary.classes.get(c, 0) / seen - stable.classes.get(c, 0) / known) for c in names
    )
    return distance, f"{seen:.0f} canary and {known:.0f} stable predictions"


def _agreement(stable: Figures, min_samples: int) -> tuple[float | None, str]:
    """Of the copies stable's replicas sent the canary and heard back from (or failed to), the
    share it answered alike: 45 agree, 4 disagree, 1 error -> 0.9. Dropped copies were never sent."""
    agree, disagree, error = (stable.mirrored.get(o, 0.0) for o in ("agree", "disagree", "error"))
    compared = agree + disagree + error
    said = f"{compared:.0f} mirrored requests ({disagree:.0f} disagreed, {error:.0f} failed)"
    if compared < min_samples:
        return None, f"{said}, fewer than minSamples {min_samples}"
    return agree / compared, said


def prometheus_value(address: str, query: str, timeout: float = 5.0) -> float | None:
    """An instant query's first value; None when it has none (or NaN). Raises OSError/ValueError."""
    url = f"{address.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body = json.loads(answer.read())
    if body.get("status") != "success":
        raise ValueError(f"Prometheus: {body.get('error', body)}")
    data = body["data"]
    result = data["result"]
    if data["resultType"] == "scalar":
        value = float(result[1])
    elif result:
        value = float(result[0]["value"][1])
    else:
        return None
    return None if math.isnan(value) else value


class AnalysisController:
    def __init__(
        self, store: ObjectStore, clock: Clock, recorder: Recorder, prometheus_url: str | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self._prometheus = prometheus_url
        self._baselines: dict[tuple[str, str], tuple[float, Snapshot]] = {}  # (run uid, metric) -> at, pods

    def sync_all(self) -> None:
        runs = self._store.list_kind("AnalysisRun")[0]
        owners = {r["metadata"]["uid"] for r in self._store.list_kind("Rollout")[0]}
        live = set()
        for run in runs:
            meta = run["metadata"]
            refs = meta.get("ownerReferences", [])
            if refs and refs[0]["uid"] not in owners:  # its Rollout is gone
                self._store.delete("AnalysisRun", meta["namespace"], meta["name"])
                continue
            if run.get("status", {}).get("phase") == "Running":
                live.add(meta["uid"])
                try:
                    self.sync(run)
                except ModelportError as exc:
                    if exc.code.name not in ("ABORTED", "NOT_FOUND"):
                        raise
        for key in [k for k in self._baselines if k[0] not in live]:
            del self._baselines[key]

    def sync(self, run: Obj) -> None:
        now = self._clock.now()
        status = json.loads(json.dumps(run["status"]))
        started = parse_iso(status["startedAt"])
        metrics = run["spec"]["metrics"]
        results = {r["name"]: r for r in status.setdefault("metricResults", [])}
        pods: Snapshot | None = None
        changed = False
        for metric in metrics:
            result = results.get(metric["name"])
            if result is None:
                result = results[metric["name"]] = {"name": metric["name"], "count": 0, "measurements": []}
                status["metricResults"].append(result)
                changed = True
            if result.get("phase") or run["spec"].get("terminate"):
                continue
            key = (run["metadata"]["uid"], metric["name"])
            modelport = metric["provider"].get("modelport")
            if modelport is not None and key not in self._baselines:  # first sight, or after a restart
                pods = pods if pods is not None else self._snapshot(run)
                self._baselines[key] = (now, pods)
            if now < due_at(started, metric, result["count"]):
                continue
            if modelport is not None and now - self._baselines[key][0] < 0.5 * _interval(metric):
                continue  # the baseline was taken just now (a restart): a window first
            pods = pods if pods is not None else self._snapshot(run)
            measurement = self._measure(run, metric, pods)
            if modelport is not None:
                self._baselines[key] = (now, pods)
            _record(result, measurement)
            phase, why = metric_phase(metric, result)
            if phase is not None:
                result.update(phase=phase, message=why)
            changed = True
        changed |= self._conclude(run, status)
        if changed:
            self._store.update_status({**run, "status": status})

    def _conclude(self, run: Obj, status: Obj) -> bool:
        """The run's phase from its metrics'; on terminate, what was found so far."""
        results = status["metricResults"]
        phases = [r.get("phase") for r in results]
        terminate = bool(run["spec"].get("terminate"))
        for bad in ("Failed", "Error"):
            if bad in phases:
                status.update(phase=bad, message=next(r["message"] for r in results if r.get("phase") == bad))
                break
        else:
            if None in phases and not terminate:
                return False
            if "Inconclusive" in phases or any(r.get("successful", 0) == 0 for r in results):
                status["phase"] = "Inconclusive"
                status["message"] = "; ".join(
                    r.get("message", f'Metric "{r["name"]}": no verdict')
                    for r in results
                    if r.get("phase") != "Successful"
                )
            else:
                status.update(phase="Successful", message="every metric assessed Successful")
            if terminate:
                status["message"] = f"terminated: {status['message']}"
        status["finishedAt"] = iso(self._clock.now())
        kind = "Warning" if status["phase"] in ("Failed", "Error") else "Normal"
        self._events.event(run, kind, f"AnalysisRun{status['phase']}", status["message"])
        return True

    def _snapshot(self, run: Obj) -> Snapshot:
        """Each of the run's two revisions' replicas' counters, scraped at once (a replica that
        does not answer costs one timeout, not one each)."""
        args, namespace = run["spec"]["args"], run["metadata"]["namespace"]
        wanted = {args["stableHash"], args["canaryHash"]}
        # The Rollout's own replicas only (another object's of the same template hash are not).
        owner = _owners(run)
        replica_sets = self._store.list_kind("ReplicaSet", namespace)[0]
        mine = {rs["metadata"]["uid"] for rs in replica_sets if not owner or owner & _owners(rs)}
        targets = []
        for pod in self._store.list_kind("Pod", namespace)[0]:
            hash_ = pod["metadata"].get("labels", {}).get(HASH_LABEL)
            port = pod.get("status", {}).get("port")
            owned = _owners(pod) & mine
            if hash_ in wanted and port and owned and not terminating(pod):
                targets.append((pod["metadata"]["name"], hash_, port))
        if not targets:
            return {}
        with ThreadPoolExecutor(min(16, len(targets)), thread_name_prefix="analysis") as pool:
            scraped = list(pool.map(lambda t: scrape_figures(t[2]), targets))
        return {
            name: (hash_, f) for (name, hash_, _), f in zip(targets, scraped, strict=True) if f is not None
        }

    def _measure(self, run: Obj, metric: Obj, pods: Snapshot) -> Obj:
        started = iso(self._clock.now())
        provider = metric["provider"]
        value: float | None
        try:
            if provider.get("modelport") is not None:
                args = run["spec"]["args"]
                before = self._baselines[(run["metadata"]["uid"], metric["name"])][1]
                canary = window(before, pods, args["canaryHash"])
                stable = window(before, pods, args["stableHash"])
                spec = provider["modelport"]
                value, message = modelport_value(
                    spec["metric"], canary, stable, int(spec.get("minSamples", 20))
                )
            else:
                prom = provider["prometheus"]
                address = prom.get("address") or self._prometheus
                if not address:
                    raise ValueError("no Prometheus address: set provider.prometheus.address or "
                                     "`modelport up --prometheus-url`")  # fmt: skip
                value = prometheus_value(address, _filled(prom["query"], run))
                message = "no data" if value is None else ""
        except (OSError, ValueError, KeyError) as exc:
            return {"phase": "Error", "value": None, "message": f"{type(exc).__name__}: {exc}",
                    "startedAt": started, "finishedAt": iso(self._clock.now())}  # fmt: skip
        phase = assess(value, metric.get("successCondition"), metric.get("failureCondition"))
        return {"phase": phase, "value": value, "message": message, "startedAt": started,
                "finishedAt": iso(self._clock.now())}  # fmt: skip


def _owners(obj: Obj) -> set[str]:
    return {ref["uid"] for ref in obj["metadata"].get("ownerReferences", [])}


def _interval(metric: Obj) -> float:
    return seconds(metric["interval"]) if metric.get("interval") is not None else 1.0


def _filled(query: str, run: Obj) -> str:
    args = {**run["spec"]["args"], "namespace": run["metadata"]["namespace"],
            "rollout": run["metadata"].get("labels", {}).get("rollout", "")}  # fmt: skip
    for name, value in args.items():
        query = query.replace(f"{{{{args.{name}}}}}", str(value))
    return query


def _record(result: Obj, measurement: Obj) -> None:
    phase = measurement["phase"]
    counter = {
        "Successful": "successful",
        "Failed": "failed",
        "Inconclusive": "inconclusive",
        "Error": "error",
    }
    result[counter[phase]] = result.get(counter[phase], 0) + 1
    result["count"] = result.get("count", 0) + 1
    result["consecutiveError"] = result.get("consecutiveError", 0) + 1 if phase == "Error" else 0
    result["measurements"] = [*result.get("measurements", []), measurement][-MAX_MEASUREMENTS:]


__all__ = ["AnalysisController", "Figures", "assess", "metric_phase", "modelport_value", "window"]
