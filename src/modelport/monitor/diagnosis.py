"""`modelport diagnose`'s reasoning, pure: what was gathered about a Deployment (`Facts`) in, the
likely causes out, each in words with the evidence that supports it, worst first.

    replica mnist-7c9-x restarts (3 times, last exit code 1) at its 64Mi memory limit;
      last log line: MemoryError ...
    model mnist version 2 fails to load: cannot load ONNX model ...: Protobuf parsing failed
    p99 0.41 s over the 0.25 s SLO: CPU 98% of the request; HPA mnist at maxReplicas (3)
    input drift 0.41 > 0.2 (mnist v2)
    live accuracy 0.80, published 0.92 (mnist v1, 120 labels)

The thresholds are the alert rules' (rules.yml): 5% errors, the 250 ms latency SLO, an accuracy
margin of 0.05 on at least 50 labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Obj = dict[str, Any]
SLO_P99_SECONDS = 0.25
ERROR_RATIO = 0.05
MIN_REQUESTS = 20  # fewer, and a ratio of errors says little
ACCURACY_MARGIN = 0.05
MIN_LABELS = 50
SUPERVISOR = "[supervisor]"  # the lines the supervisor adds to a replica's log (restarts, exits)


@dataclass(frozen=True)
class Finding:
    severity: int  # 3: the replicas fail, 2: the answers are slow or wrong, 1: worth knowing
    cause: str
    evidence: list[str] = field(default_factory=list)
    since: str | None = None
    topic: str = ""  # what it is about, to match Prometheus' alerts to it (alert_topic)

    def to_dict(self) -> Obj:
        return asdict(self)


@dataclass
class ReplicaFacts:
    pod: Obj
    usage: Obj | None = None  # /api/top's row for it
    readiness: Obj | None = None  # its /readyz answer
    log_tail: list[str] = field(default_factory=list)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)  # its /metrics

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def status(self) -> Obj:
        return dict(self.pod.get("status") or {})


@dataclass
class Facts:
    deployment: Obj
    replicas: list[ReplicaFacts]
    events: list[Obj]
    hpa: Obj | None = None
    alerts: list[Obj] = field(default_factory=list)  # Prometheus' firing alerts about it, if it runs


def compute_findings(facts: Facts, slo_p99: float = SLO_P99_SECONDS) -> list[Finding]:
    """Every likely cause, worst first; one saying nothing is wrong when there is none."""
    found = [
        *_rollout(facts),
        *(f for r in facts.replicas for f in _replica(r, facts)),
        *_errors(facts),
        *_latency(facts, slo_p99),
        *_drift(facts),
        *_accuracy(facts),
        *_hpa_at_max(facts, slo_p99),
    ]
    found = _with_alerts(found, facts.alerts)
    if not found:
        ready = sum(1 for r in facts.replicas if r.status.get("ready"))
        found.append(Finding(0, f"no problem found: {ready}/{len(facts.replicas)} replicas ready"))
    return sorted(found, key=lambda f: -f.severity)


def _rollout(facts: Facts) -> list[Finding]:
    st = facts.deployment.get("status") or {}
    if facts.deployment.get("kind") == "Rollout" and st.get("phase") == "Degraded":
        evidence = [f"stable revision {st.get('stableHash')} serves"]
        return [Finding(3, f"the canary was aborted: {st.get('message', '')}", evidence, st.get("abortedAt"))]
    conditions = {c["type"]: c for c in st.get("conditions", [])}
    progressing = conditions.get("Progressing")
    if progressing and progressing["status"] == "False":
        cause = f"the rollout is stuck: {progressing['message']}"
        return [Finding(3, cause, [f"reason {progressing['reason']}"], progressing.get("lastTransitionTime"))]
    return []


def _replica(r: ReplicaFacts, facts: Facts) -> list[Finding]:
    st = r.status
    own = [line for line in r.log_tail if not line.startswith(SUPERVISOR)]
    last_line = own[-1].strip() if own else ""
    if st.get("restartCount", 0) and not st.get("ready"):
        limit = ((r.pod.get("spec") or {}).get("resources") or {}).get("limits", {}).get("memory")
        at_limit = f" at its {limit} memory limit" if limit and _memory_failure(own) else ""
        exit_code = f", last exit code {st['lastExitCode']}" if "lastExitCode" in st else ""
        back_offs = [e for e in _events_of(facts.events, r.name) if e["reason"] == "BackOff"]
        evidence = [f"status: {st.get('reason', '')}: {st.get('message', '')}".strip()]
        if back_offs:
            evidence.append(f"{sum(e.get('count', 1) for e in back_offs)} BackOff events")
        return [Finding(
            3, f"replica {r.name} restarts ({st['restartCount']} times{exit_code}){at_limit}; "
               f"last log line: {last_line or '<empty log>'}",
            evidence, back_offs[0].get("firstTimestamp") if back_offs else None, f"restarts:{r.name}",
        )]  # fmt: skip
    if st.get("phase") == "Running" and not st.get("ready"):
        failed = _failed_versions(r.readiness)
        if failed:
            said = [line.strip() for line in own if "ERROR" in line][-1:]
            evidence = [f"replica {r.name}: not ready", *(f"log: {line}" for line in said)]
            since = st.get("readyTransitionTime")
            return [
                Finding(3, f"model {model} version {version} fails to load: {error}", evidence, since)
                for model, version, error in failed
            ]
        cause = f"replica {r.name} is not ready: {st.get('message') or st.get('reason', '')}"
        evidence = [f"last log line: {last_line}"] if last_line else []
        return [Finding(2, cause, evidence, st.get("readyTransitionTime"))]
    return []


def _memory_failure(lines: list[str]) -> bool:
    """The replica's last lines say it ran out of memory: Python's MemoryError, the loader's
    "failed to map segment", OpenBLAS' "Memory allocation still failed", "Cannot allocate"."""
    text = " ".join(lines[-5:]).lower()
    return any(word in text for word in ("memory", "failed to map segment", "cannot allocate"))


def _failed_versions(readiness: Obj | None) -> list[tuple[str, str, str]]:
    models = (readiness or {}).get("models") or {}
    return [
        (name, str(version), str(error))
        for name, model in models.items()
        if isinstance(model, dict)
        for version, error in (model.get("failed_versions") or {}).items()
    ]


def _events_of(events: list[Obj], name: str) -> list[Obj]:
    return [e for e in events if e.get("involvedObject", {}).get("name") == name]


def _sum(r: ReplicaFacts, metric: str, **match: str) -> float:
    return sum(
        v for n, labels, v in r.samples if n == metric and all(labels.get(k) == m for k, m in match.items())
    )


def _errors(facts: Facts) -> list[Finding]:
    total = errors = 0.0
    for r in facts.replicas:
        for name, labels, value in r.samples:
            if name == "modelport_requests_total" and labels.get("api") in _PREDICTING:
                total += value
                errors += value if labels.get("status", "").startswith("5") else 0.0
    if total >= MIN_REQUESTS and errors / total > ERROR_RATIO:
        return [Finding(3, f"{errors / total:.0%} of predictions answered 5xx ({errors:.0f} of {total:.0f} "
                           "since the replicas started)", [], topic="errors")]  # fmt: skip
    return []


_PREDICTING = {"predict", "classify", "regress", "infer", "grpc_infer"}


def _latency(facts: Facts, slo: float) -> list[Finding]:
    slow = [
        (r, float(r.usage["request_latency_p99_seconds"]))
        for r in facts.replicas
        if r.usage and r.usage.get("request_latency_p99_seconds", 0) > slo
    ]
    if not slow:
        return []
    worst = max(p99 for _, p99 in slow)
    evidence = [f"replica {r.name}: p99 {p99:.3f} s, {_cpu_words(r)}" for r, p99 in slow]
    cause = f"p99 {worst:.2f} s over the {slo:g} s SLO: {_cpu_words(slow[0][0])}; {_hpa_words(facts)}"
    return [Finding(2, cause, evidence, topic="latency")]


def _cpu_words(r: ReplicaFacts) -> str:
    cpu = float((r.usage or {}).get("cpu", 0.0))
    request = ((r.pod.get("spec") or {}).get("resources") or {}).get("requests", {}).get("cpu")
    if request:
        return f"CPU {cpu / _cores(str(request)):.0%} of its {request} request"
    return f"CPU {cpu:.2f} cores"


def _cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _hpa_words(facts: Facts) -> str:
    if facts.hpa is None:
        replicas = facts.deployment["spec"].get("replicas", 1)
        return f"no HPA: fixed at {replicas} replica{'s' if replicas != 1 else ''}"
    spec, st = facts.hpa["spec"], facts.hpa.get("status") or {}
    name, top = facts.hpa["metadata"]["name"], spec["maxReplicas"]
    if st.get("desiredReplicas", 0) >= top:
        return f"HPA {name} at maxReplicas ({top})"
    return f"HPA {name} at {st.get('currentReplicas', '?')} of at most {top} replicas"


def _hpa_at_max(facts: Facts, slo: float) -> list[Finding]:
    if facts.hpa is None or _latency(facts, slo):  # said with the latency already
        return []
    spec, st = facts.hpa["spec"], facts.hpa.get("status") or {}
    if st.get("desiredReplicas", 0) >= spec["maxReplicas"] > spec.get("minReplicas", 1):
        return [Finding(1, _hpa_words(facts), ["demand may be above what it may add"], topic="hpa")]
    return []


def _drift(facts: Facts) -> list[Finding]:
    scores: dict[tuple[str, str, str], float] = {}
    limits: dict[tuple[str, str, str], float] = {}
    for r in facts.replicas:
        for name, labels, value in r.samples:
            key = (labels.get("model", ""), labels.get("version", ""), labels.get("kind", ""))
            if name == "modelport_drift_score":
                scores[key] = max(scores.get(key, value), value)
            elif name == "modelport_drift_threshold":
                limits[key] = value
    return [
        Finding(2, f"{kind} drift {score:.2f} > {limits[key]:g} ({model} v{version})",
                ["live traffic no longer looks like the data the version was evaluated on"],
                topic=f"drift:{model}:{version}:{kind}")
        for key, score in sorted(scores.items())
        for model, version, kind in [key]
        if key in limits and score > limits[key]
    ]  # fmt: skip


def _accuracy(facts: Facts) -> list[Finding]:
    found = []
    versions = {
        (labels.get("model", ""), labels.get("version", ""))
        for r in facts.replicas
        for name, labels, _ in r.samples
        if name == "modelport_live_accuracy"
    }
    for model, version in sorted(versions):
        live = [_sum(r, "modelport_live_accuracy", model=model, version=version) for r in facts.replicas
                if any(n == "modelport_live_accuracy" for n, _, _ in r.samples)]  # fmt: skip
        published = max(
            _sum(r, "modelport_published_accuracy", model=model, version=version) for r in facts.replicas
        )
        labels = sum(
            _sum(r, "modelport_feedback_total", model=model, version=version) for r in facts.replicas
        )
        accuracy = sum(live) / len(live)
        if labels >= MIN_LABELS and published and accuracy < published - ACCURACY_MARGIN:
            which = f"{model} v{version}, {labels:.0f} labels"
            cause = f"live accuracy {accuracy:.2f}, published {published:.2f} ({which})"
            found.append(
                Finding(2, cause, ["the model has started to be wrong"], topic=f"accuracy:{model}:{version}")
            )
    return found


def alert_topic(labels: dict[str, str]) -> str:
    """The topic of the finding an alert of rules.yml confirms ("" for none)."""
    name, version = labels.get("alertname", ""), f"{labels.get('model')}:{labels.get('version')}"
    return {
        "ModelportReplicaRestarting": f"restarts:{labels.get('pod')}",
        "ModelportHighErrorRate": "errors",
        "ModelportLatencyBudgetBurnFast": "latency",
        "ModelportLatencyBudgetBurnSlow": "latency",
        "ModelportHPAAtMax": "hpa",
        "ModelportDriftOverThreshold": f"drift:{version}:{labels.get('kind')}",
        "ModelportAccuracyBelowPublished": f"accuracy:{version}",
    }.get(name, "")


def _with_alerts(found: list[Finding], alerts: list[Obj]) -> list[Finding]:
    """Each firing alert joins the finding it confirms, as evidence and with its start as the
    finding's `since` when it has none (when Prometheus saw it first); an alert no finding
    matches is one itself."""
    out = list(found)
    for alert in alerts:
        labels = alert.get("labels") or {}
        words = f"alert {labels.get('alertname')} firing: {_alert_words(alert)}"
        topic = alert_topic(labels)
        matched = [i for i, f in enumerate(out) if topic and f.topic == topic]
        for i in matched:
            f = out[i]
            since = f.since or alert.get("activeAt")
            out[i] = Finding(f.severity, f.cause, [*f.evidence, words], since, f.topic)
        if not matched:
            out.append(Finding(1, f"alert {labels.get('alertname')} firing", [_alert_words(alert)],
                               alert.get("activeAt"), topic))  # fmt: skip
    return out


def _alert_words(alert: Obj) -> str:
    annotations = alert.get("annotations") or {}
    return str(annotations.get("summary") or alert["labels"].get("alertname"))
