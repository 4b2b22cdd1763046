"""What `modelport diagnose` reads about a Deployment: its objects and events from the control
plane's API, each replica's usage (/api/top), its /readyz and /metrics (straight from the
replica, on loopback), the last lines of its log, and the alerts of the Prometheus that
`monitoring up` started, if it runs. Whatever does not answer is left out, never an error: a
diagnosis is most needed when things do not answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelport.controlplane.client import Client
from modelport.controlplane.meta import owned_by
from modelport.dataplane.logs import previous_log
from modelport.monitor.diagnosis import Facts, ReplicaFacts
from modelport.monitor.prometheus import Monitoring

Obj = dict[str, Any]
LOG_LINES = 20
# The replica's series a diagnosis reads (the rest of /metrics is left out).
READ = ("modelport_requests_total", "modelport_drift_score", "modelport_drift_threshold",
        "modelport_live_accuracy", "modelport_published_accuracy", "modelport_feedback_total")  # fmt: skip


def gather(api: Client, home: Path, namespace: str, name: str, kind: str = "Deployment") -> Facts:
    """`kind`: Deployment or Rollout (a Deployment whose revisions go out as canaries)."""
    deployment = api.get(kind, name, namespace)
    replica_sets = [rs for rs in api.list("ReplicaSet", namespace)["items"] if owned_by(rs, deployment)]
    pods = [p for p in api.list("Pod", namespace)["items"] if any(owned_by(p, rs) for rs in replica_sets)]
    names = {name, *(o["metadata"]["name"] for o in (*replica_sets, *pods))}
    events = [e for e in api.list("Event", namespace)["items"] if e["involvedObject"]["name"] in names]
    hpas = [
        h for h in api.list("HorizontalPodAutoscaler", namespace)["items"]
        if h["spec"]["scaleTargetRef"].get("name") == name
    ]  # fmt: skip
    usage = {(i["namespace"], i["pod"]): i for i in api.request("GET", "/api/top").get("items", [])}
    replicas = [_replica(p, usage.get((namespace, p["metadata"]["name"]))) for p in pods]
    return Facts(deployment, replicas, sorted(events, key=lambda e: e["lastTimestamp"]),
                 hpas[0] if hpas else None, _alerts(home, namespace, name))  # fmt: skip


def _replica(pod: Obj, usage: Obj | None) -> ReplicaFacts:
    st = pod.get("status") or {}
    facts = ReplicaFacts(pod, usage, log_tail=_log_tail(st))
    port = st.get("port") if st.get("phase") == "Running" else None
    if port:
        readiness = _fetch(f"http://127.0.0.1:{port}/readyz")
        facts.readiness = json.loads(readiness) if readiness and readiness.startswith("{") else None
        text = _fetch(f"http://127.0.0.1:{port}/metrics")
        if text:
            facts.samples = [
                (s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name in READ
            ]
    return facts


def _log_tail(status: Obj) -> list[str]:
    """The last lines of the replica's log; of its previous run when the current one is empty
    (a replica waiting in back-off has not written yet)."""
    path = Path(status.get("logPath") or "/nonexistent")
    for candidate in (path, previous_log(path)):
        try:
            with open(candidate, errors="replace") as log:
                lines = [line.rstrip("\n") for line in deque(log, LOG_LINES) if line.strip()]
        except OSError:
            continue
        if lines:
            return lines
    return []


def _fetch(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return str(answer.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:  # /readyz answers 503 with its report
        return str(exc.read().decode(errors="replace"))
    except (OSError, ValueError):
        return None


def _alerts(home: Path, namespace: str, name: str) -> list[Obj]:
    running = Monitoring(home).running()
    if running is None:
        return []
    text = _fetch(f"{running.url}/api/v1/alerts")
    try:
        alerts = json.loads(text or "")["data"]["alerts"]
    except (ValueError, KeyError, TypeError):
        return []
    return [
        a for a in alerts
        if a.get("state") == "firing" and a["labels"].get("deployment") == name
        and a["labels"].get("namespace", namespace) == namespace
    ]  # fmt: skip
