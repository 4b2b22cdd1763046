"""Validation of the declarative objects: the schema's errors and the rules between fields, every
problem at once with its field path; an invalid file is refused as a whole."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError

from modelport.errors import Code, ModelportError
from modelport.spec.conditions import condition
from modelport.spec.objects import (
    API_VERSION,
    KINDS,
    AnalysisTemplate,
    AnalysisTemplateSpec,
    CanaryStrategy,
    Deployment,
    DeploymentSpec,
    Duration,
    HeaderMatch,
    HorizontalPodAutoscaler,
    HPASpec,
    MetricTarget,
    Object,
    ReplicaSpec,
    Rollout,
    ServiceTLS,
    seconds,
)
from modelport.spec.quantity import _PERCENT, quantity, scaled


def _int_or_percent(value: int | str, path: str, problems: list[str]) -> None:
    if isinstance(value, int):
        if value < 0:
            problems.append(f"{path}: must be greater than or equal to 0")
    elif not _PERCENT.fullmatch(value):
        problems.append(f"{path}: must be an integer or a percentage like '25%', got {value!r}")


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a field path: ("spec", "stages", 2, "gate") -> spec.stages[2].gate."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_object(doc: Any, where: str = "") -> Object:
    """One object from its dict; every problem named by field path."""
    prefix = f"{where}: " if where else ""
    if not isinstance(doc, dict):
        raise ModelportError(
            Code.INVALID_ARGUMENT, f"{prefix}an object must be a mapping with apiVersion and kind"
        )
    kind = doc.get("kind")
    if doc.get("apiVersion") != API_VERSION:
        raise ModelportError(
            Code.INVALID_ARGUMENT, f"{prefix}apiVersion: must be {API_VERSION}, got {doc.get('apiVersion')!r}"
        )
    if kind not in KINDS:
        raise ModelportError(
            Code.INVALID_ARGUMENT, f"{prefix}kind: must be one of {sorted(KINDS)}, got {kind!r}"
        )
    try:
        obj = KINDS[kind].model_validate(doc)
    except ValidationError as exc:
        problems = [f"{field_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ModelportError(Code.INVALID_ARGUMENT, prefix + "; ".join(problems)) from None
    problems = _rules(obj)
    if problems:
        raise ModelportError(Code.INVALID_ARGUMENT, prefix + "; ".join(problems))
    return obj


def _rules(obj: Object) -> list[str]:
    """What a schema cannot say: the rules between fields, as Kubernetes checks them."""
    problems: list[str] = []
    if isinstance(obj, Deployment):
        spec = obj.spec
        problems += _workload_rules(spec)
        rolling = spec.strategy.rolling_update
        base = "spec.strategy.rollingUpdate"
        _int_or_percent(rolling.max_surge, f"{base}.maxSurge", problems)
        _int_or_percent(rolling.max_unavailable, f"{base}.maxUnavailable", problems)
        if not problems and spec.strategy.type == "RollingUpdate":
            total = max(spec.replicas, 1)
            if (
                scaled(rolling.max_surge, total, True) == 0
                and scaled(rolling.max_unavailable, total, False) == 0
            ):
                problems.append(f"{base}.maxUnavailable: must not be 0 when maxSurge is 0")
    elif isinstance(obj, Rollout):
        problems += _workload_rules(obj.spec)
        strategy = obj.spec.strategy
        given = [f for f, v in (("canary", strategy.canary), ("blueGreen", strategy.blue_green)) if v]
        if len(given) != 1:
            problems.append("spec.strategy: needs exactly one of canary and blueGreen, got "
                            f"{' and '.join(given) or 'neither'}")  # fmt: skip
        if strategy.canary is not None:
            problems += _canary_rules(strategy.canary)
        bg = strategy.blue_green
        if bg is not None and bg.active_service == bg.preview_service:
            problems.append("spec.strategy.blueGreen.previewService: must differ from activeService")
    elif isinstance(obj, AnalysisTemplate):
        problems += _analysis_rules(obj.spec)
    elif isinstance(obj, HorizontalPodAutoscaler):
        problems += _hpa_rules(obj.spec)
    else:
        names = [p.name for p in obj.spec.ports]
        if len(obj.spec.ports) > 1 and (None in names or len(set(names)) != len(names)):
            problems.append("spec.ports: with more than one port, each needs a unique name")
        if not obj.spec.selector:
            problems.append("spec.selector: must not be empty")
        if obj.spec.tls is not None:
            problems += _tls_rules(obj.spec.tls)
    return problems


def _tls_rules(tls: ServiceTLS) -> list[str]:
    files = tls.cert_file is not None or tls.key_file is not None
    if (tls.secret_name is not None) == files:
        return ["spec.tls: give secretName, or certFile and keyFile (one of the two)"]
    if tls.secret_name is not None:
        if not _DNS_NAME.fullmatch(tls.secret_name):
            return [f"spec.tls.secretName: must be a lowercase DNS name, got {tls.secret_name!r}"]
        return []
    problems = []
    pairs = (("certFile", "keyFile", tls.cert_file), ("keyFile", "certFile", tls.key_file))
    for field, other, path in pairs:
        if path is None:
            problems.append(f"spec.tls.{field}: needed with {other}")
        elif not path.startswith("/"):
            problems.append(f"spec.tls.{field}: must be an absolute path, got {path!r}")
    return problems


_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


# A probe's path is appended to http://127.0.0.1:PORT: "@evil.example/" would make the URL's host
# evil.example (the part before "@" is read as user info), and a space would split the request line.
_PROBE_PATH = re.compile(r"/[^@\s]*")


# A probe under way holds a thread until its timeout; a bound keeps a frozen replica's probes from
# piling up (and says a minute without an answer is a failure, whatever the file hoped for).
MAX_PROBE_TIMEOUT_SECONDS = 60


def _workload_rules(spec: DeploymentSpec) -> list[str]:
    """A Deployment's and a Rollout's: what runs, the selector, the deadline, the probes."""
    problems = []
    runs = [f for f in ("model", "gateway") if getattr(spec.template.spec, f) is not None]
    if len(runs) != 1:
        problems.append("spec.template.spec: needs exactly one of `model` and `gateway`, got "
                        f"{' and '.join(runs) or 'neither'}")  # fmt: skip
    selector = spec.selector.match_labels
    labels = spec.template.metadata.get("labels") or {}
    if not selector:
        problems.append("spec.selector.matchLabels: must not be empty")
    elif any(labels.get(k) != v for k, v in selector.items()):
        problems.append("spec.template.metadata.labels: `selector` does not match template `labels`")
    if spec.progress_deadline_seconds <= spec.min_ready_seconds:
        problems.append("spec.progressDeadlineSeconds: must be greater than minReadySeconds")
    return problems + _probe_rules(spec.template.spec)


def _canary_rules(canary: CanaryStrategy) -> list[str]:
    problems = []
    base = "spec.strategy.canary"
    for i, step in enumerate(canary.steps):
        kinds = (("setWeight", step.set_weight), ("setMirror", step.set_mirror),
                 ("setHeaderRoute", step.set_header_route), ("pause", step.pause),
                 ("analysis", step.analysis))  # fmt: skip
        given = [f for f, v in kinds if v is not None]
        if len(given) != 1:
            got = " and ".join(given) or "none"
            problems.append(f"{base}.steps[{i}]: needs exactly one of setWeight, setMirror, "
                            f"setHeaderRoute, pause and analysis, got {got}")  # fmt: skip
        if step.pause is not None and step.pause.duration is not None:
            problems += _duration(step.pause.duration, f"{base}.steps[{i}].pause.duration")
        if step.set_header_route is not None:
            for j, match in enumerate(step.set_header_route.match or []):
                problems += _header_match(match, f"{base}.steps[{i}].setHeaderRoute.match[{j}]")
    if canary.canary_service is not None and canary.canary_service == canary.stable_service:
        problems.append(f"{base}.canaryService: must differ from stableService")
    for field, value in (("maxSurge", canary.max_surge), ("maxUnavailable", canary.max_unavailable)):
        if value is not None:
            _int_or_percent(value, f"{base}.{field}", problems)
    return problems


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's header field name


def _header_match(match: HeaderMatch, path: str) -> list[str]:
    problems = []
    if not _TOKEN.fullmatch(match.header_name):
        problems.append(f"{path}.headerName: {match.header_name!r} is not a header name")
    value = match.header_value
    given = [(k, v) for k, v in (("exact", value.exact), ("prefix", value.prefix), ("regex", value.regex))
             if v is not None]  # fmt: skip
    if len(given) != 1:
        return [*problems, f"{path}.headerValue: needs exactly one of exact, prefix and regex"]
    kind, text = given[0]
    if "\r" in text or "\n" in text:
        problems.append(f"{path}.headerValue.{kind}: a header value holds no line break")
    elif kind == "regex":
        try:
            re.compile(text)
        except re.error as exc:
            problems.append(f"{path}.headerValue.regex: {text!r} is not a regular expression: {exc}")
    return problems


def _duration(value: Duration, path: str) -> list[str]:
    try:
        seconds(value)
    except ValueError as exc:
        return [f"{path}: {exc}"]
    return []


def _analysis_rules(spec: AnalysisTemplateSpec) -> list[str]:
    problems = []
    names = [m.name for m in spec.metrics]
    if len(set(names)) != len(names):
        problems.append("spec.metrics: each metric needs a unique name")
    for i, metric in enumerate(spec.metrics):
        path = f"spec.metrics[{i}]"
        providers = [p for p in ("modelport", "prometheus") if getattr(metric.provider, p) is not None]
        if len(providers) != 1:
            problems.append(f"{path}.provider: needs exactly one of modelport and prometheus, got "
                            f"{' and '.join(providers) or 'neither'}")  # fmt: skip
        for field, value in (("interval", metric.interval), ("initialDelay", metric.initial_delay)):
            if value is not None:
                problems += _duration(value, f"{path}.{field}")
        positive = metric.interval is None or _duration(metric.interval, "") or seconds(metric.interval) > 0
        if not positive:
            problems.append(f"{path}.interval: must be greater than 0")
        if metric.success_condition is None and metric.failure_condition is None:
            problems.append(f"{path}: needs a successCondition, a failureCondition or both")
        for field, text in (("successCondition", metric.success_condition),
                            ("failureCondition", metric.failure_condition)):  # fmt: skip
            if text is not None:
                try:
                    condition(text)
                except ValueError as exc:
                    problems.append(f"{path}.{field}: {exc}")
    return problems


def _probe_rules(replica: ReplicaSpec) -> list[str]:
    probes = {"readinessProbe": replica.readiness_probe, "livenessProbe": replica.liveness_probe}
    rule = 'must start with "/" and hold no "@" or whitespace'
    paths = [
        f"spec.template.spec.{name}.path: {rule}, got {probe.path!r}"
        for name, probe in probes.items()
        if not _PROBE_PATH.fullmatch(probe.path)
    ]
    timeouts = [
        f"spec.template.spec.{name}.timeoutSeconds: must be at most {MAX_PROBE_TIMEOUT_SECONDS}, "
        f"got {probe.timeout_seconds:g}"
        for name, probe in probes.items()
        if probe.timeout_seconds > MAX_PROBE_TIMEOUT_SECONDS
    ]
    return paths + timeouts


def _target_rules(target: MetricTarget, path: str, allowed: tuple[str, ...]) -> list[str]:
    problems = []
    if target.type not in allowed:
        return [f"{path}.type: must be one of {list(allowed)} for this metric, got {target.type!r}"]
    field = {"Utilization": "averageUtilization", "AverageValue": "averageValue", "Value": "value"}[
        target.type
    ]
    given = {"Utilization": target.average_utilization, "AverageValue": target.average_value,
             "Value": target.value}[target.type]  # fmt: skip
    if given is None:
        problems.append(f"{path}.{field}: must be set when type is {target.type}")
    elif isinstance(given, int) and target.type == "Utilization":
        if given <= 0:
            problems.append(f"{path}.{field}: must be greater than 0")
    else:
        try:
            if quantity(given) <= 0:
                problems.append(f"{path}.{field}: must be greater than 0")
        except ValueError as exc:
            problems.append(f"{path}.{field}: {exc}")
    return problems


_TARGET_TYPES = {
    "Resource": ("Utilization", "AverageValue"), "Pods": ("AverageValue",),
    "Object": ("Value", "AverageValue"), "External": ("Value", "AverageValue"),
}  # fmt: skip


def _hpa_rules(spec: HPASpec) -> list[str]:
    problems = []
    if spec.min_replicas < 1:
        problems.append("spec.minReplicas: must be greater than or equal to 1")
    if spec.max_replicas < 1:
        problems.append("spec.maxReplicas: must be greater than or equal to 1")
    elif spec.max_replicas < spec.min_replicas:
        problems.append(
            f"spec.maxReplicas: must be greater than or equal to `minReplicas` ({spec.min_replicas})"
        )
    if not spec.metrics:
        problems.append("spec.metrics: must have at least one metric")
    for i, metric in enumerate(spec.metrics):
        path = f"spec.metrics[{i}]"
        field = {"Resource": "resource", "Pods": "pods", "Object": "object", "External": "external"}[
            metric.type
        ]
        source = getattr(metric, field)
        others = [f for f in ("resource", "pods", "object", "external") if f != field and getattr(metric, f)]
        if source is None:
            problems.append(f"{path}.{field}: must be set when type is {metric.type}")
            continue
        if others:
            problems.append(f"{path}.{others[0]}: must be omitted when type is {metric.type}")
        allowed = _TARGET_TYPES[metric.type]
        problems += _target_rules(source.target, f"{path}.{field}.target", allowed)
        if metric.type in ("Object", "External") and not source.metric.query:
            problems.append(
                f"{path}.{field}.metric.query: the PromQL giving the value is needed (from Prometheus)"
            )
    return problems


def load_objects(text: str, source: str = "<input>") -> list[Object]:
    """Every object of a YAML stream (`---` separated); all are checked before any is returned."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: not valid YAML: {exc}") from None
    if not docs:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: no objects")
    objects, problems = [], []
    for i, doc in enumerate(docs):
        name = doc.get("metadata", {}).get("name") if isinstance(doc, dict) else None
        try:
            objects.append(parse_object(doc, f"{source} (object {i + 1}{f', {name}' if name else ''})"))
        except ModelportError as exc:
            problems.append(exc.message)
    if problems:
        raise ModelportError(Code.INVALID_ARGUMENT, "\n".join(problems))
    return objects
