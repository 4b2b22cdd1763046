"""The declarative objects, `apiVersion: modelport/v1`: Deployment and Service, in Kubernetes'
shapes and with its defaults, loaded from YAML and validated whole.

    objects = load_objects(Path("examples/mnist/deploy.yaml").read_text())   # [Deployment, Service]

Every problem is reported at once, each with its field path and the rule it breaks
(`spec.strategy.rollingUpdate.maxUnavailable: must not be 0 when maxSurge is 0`); an invalid
file is refused as a whole.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelport.errors import Code, ModelportError

API_VERSION = "modelport/v1"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_PERCENT = re.compile(r"(\d+)%")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectMeta(_Spec):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the control plane; a client may send resourceVersion back to update safely.
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
            raise ValueError(
                "must be a lowercase DNS label: a-z, 0-9 and '-', at most 63 long, "
                "starting and ending alphanumeric"
            )
        return value


class LabelSelector(_Spec):
    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")


class Probe(_Spec):
    path: str = "/readyz"
    initial_delay_seconds: float = Field(default=0, ge=0, alias="initialDelaySeconds")
    period_seconds: float = Field(default=1, gt=0, alias="periodSeconds")
    timeout_seconds: float = Field(default=1, gt=0, alias="timeoutSeconds")
    success_threshold: int = Field(default=1, ge=1, alias="successThreshold")
    failure_threshold: int = Field(default=3, ge=1, alias="failureThreshold")


class Resources(_Spec):
    limits: dict[Literal["cpu", "memory"], str] = Field(default_factory=dict)
    # What a replica is expected to use: the base of an HPA's averageUtilization.
    requests: dict[Literal["cpu", "memory"], str] = Field(default_factory=dict)


class ModelRef(_Spec):
    name: str
    base_path: str = Field(alias="basePath")  # a folder, or registry://MODEL@LABEL


class GatewayRef(_Spec):
    """A gateway replica: `modelport gateway` in front of a Service, by name."""

    service: str
    model: str = "mnist"
    timeout_seconds: float = Field(default=10.0, gt=0, alias="timeoutSeconds")


class ReplicaSpec(_Spec):
    """What each replica runs: `modelport serve` of one model, or (`gateway`) the web front end;
    with the flags given."""

    model: ModelRef | None = None
    gateway: GatewayRef | None = None
    args: list[str] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    readiness_probe: Probe = Field(default_factory=Probe, alias="readinessProbe")
    liveness_probe: Probe = Field(default_factory=lambda: Probe(path="/healthz"), alias="livenessProbe")


class Template(_Spec):
    metadata: dict[str, Any] = Field(default_factory=dict)  # labels (and annotations)
    spec: ReplicaSpec


class RollingUpdate(_Spec):
    max_surge: int | str = Field(default="25%", alias="maxSurge")
    max_unavailable: int | str = Field(default="25%", alias="maxUnavailable")


class Strategy(_Spec):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdate = Field(default_factory=RollingUpdate, alias="rollingUpdate")


class DeploymentSpec(_Spec):
    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector
    template: Template
    strategy: Strategy = Field(default_factory=Strategy)
    min_ready_seconds: int = Field(default=0, ge=0, alias="minReadySeconds")
    revision_history_limit: int = Field(default=10, ge=0, alias="revisionHistoryLimit")
    progress_deadline_seconds: int = Field(default=600, gt=0, alias="progressDeadlineSeconds")
    paused: bool = False


class Deployment(_Spec):
    api_version: Literal["modelport/v1"] = Field(alias="apiVersion")
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: dict[str, Any] = Field(default_factory=dict)


class ServicePort(_Spec):
    name: str | None = None
    port: int = Field(ge=0, le=65535)  # 0: the control plane picks a free one
    target_port: int | str | None = Field(default=None, alias="targetPort")
    protocol: Literal["TCP"] = "TCP"


class ServiceSpec(_Spec):
    selector: dict[str, str]
    ports: list[ServicePort] = Field(min_length=1)
    type: Literal["ClusterIP"] = "ClusterIP"
    cluster_ip: Literal["127.0.0.1"] | None = Field(
        default=None, alias="clusterIP"
    )  # set by the control plane
    session_affinity: Literal["None", "ClientIP"] = Field(default="None", alias="sessionAffinity")
    # modelport's own: how requests are spread over the ready replicas.
    load_balancing: Literal["roundRobin", "random", "leastConnection"] = Field(
        default="roundRobin", alias="loadBalancing"
    )
    # modelport's own: requests in flight per replica; more wait in the load balancer's queue.
    # Raise it for replicas with batching, whose batches form from concurrent requests.
    max_requests_per_replica: int = Field(default=4, ge=1, le=10000, alias="maxRequestsPerReplica")


class Service(_Spec):
    api_version: Literal["modelport/v1"] = Field(alias="apiVersion")
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec
    status: dict[str, Any] = Field(default_factory=dict)


# -- HorizontalPodAutoscaler (autoscaling/v2's shape) --


class CrossVersionObjectReference(_Spec):
    api_version: str = Field(default="modelport/v1", alias="apiVersion")
    kind: Literal["Deployment"] = "Deployment"
    name: str


class MetricTarget(_Spec):
    type: Literal["Utilization", "AverageValue", "Value"]
    average_utilization: int | None = Field(default=None, alias="averageUtilization")
    average_value: str | int | float | None = Field(default=None, alias="averageValue")
    value: str | int | float | None = None


class ResourceMetricSource(_Spec):
    name: Literal["cpu", "memory"]
    target: MetricTarget


class MetricIdentifier(_Spec):
    name: str
    selector: LabelSelector | None = None
    # modelport's own: the PromQL that gives this metric's value (Object/External from Prometheus).
    query: str | None = None


class PodsMetricSource(_Spec):
    metric: MetricIdentifier
    target: MetricTarget


class ObjectMetricSource(_Spec):
    described_object: CrossVersionObjectReference = Field(alias="describedObject")
    metric: MetricIdentifier
    target: MetricTarget


class ExternalMetricSource(_Spec):
    metric: MetricIdentifier
    target: MetricTarget


class MetricSpec(_Spec):
    type: Literal["Resource", "Pods", "Object", "External"]
    resource: ResourceMetricSource | None = None
    pods: PodsMetricSource | None = None
    object: ObjectMetricSource | None = None
    external: ExternalMetricSource | None = None


class ScalingPolicy(_Spec):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(gt=0, le=1800, alias="periodSeconds")


class ScalingRules(_Spec):
    stabilization_window_seconds: int | None = Field(
        default=None, ge=0, le=3600, alias="stabilizationWindowSeconds"
    )
    select_policy: Literal["Max", "Min", "Disabled"] = Field(default="Max", alias="selectPolicy")
    policies: list[ScalingPolicy] | None = None
    tolerance: float | None = Field(default=None, ge=0)


class Behavior(_Spec):
    scale_up: ScalingRules | None = Field(default=None, alias="scaleUp")
    scale_down: ScalingRules | None = Field(default=None, alias="scaleDown")


class HPASpec(_Spec):
    scale_target_ref: CrossVersionObjectReference = Field(alias="scaleTargetRef")
    min_replicas: int = Field(default=1, alias="minReplicas")
    max_replicas: int = Field(alias="maxReplicas")
    metrics: list[MetricSpec] = Field(default_factory=list)
    behavior: Behavior | None = None


class HorizontalPodAutoscaler(_Spec):
    api_version: Literal["modelport/v1"] = Field(alias="apiVersion")
    kind: Literal["HorizontalPodAutoscaler"]
    metadata: ObjectMeta
    spec: HPASpec
    status: dict[str, Any] = Field(default_factory=dict)


Object = Deployment | Service | HorizontalPodAutoscaler
KINDS: dict[str, type[Deployment] | type[Service] | type[HorizontalPodAutoscaler]] = {
    "Deployment": Deployment, "Service": Service, "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
}  # fmt: skip
ALIASES = {
    "deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
    "service": "Service", "services": "Service", "svc": "Service",
    "horizontalpodautoscaler": "HorizontalPodAutoscaler", "hpa": "HorizontalPodAutoscaler",
}  # fmt: skip


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """Kubernetes' int-or-percent: 25% of 10 replicas is 3 for maxSurge (up), 2 for maxUnavailable."""
    if isinstance(value, int):
        return value
    match = _PERCENT.fullmatch(value)
    assert match is not None  # validated
    exact = int(match[1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def _int_or_percent(value: int | str, path: str, problems: list[str]) -> None:
    if isinstance(value, int):
        if value < 0:
            problems.append(f"{path}: must be greater than or equal to 0")
    elif not _PERCENT.fullmatch(value):
        problems.append(f"{path}: must be an integer or a percentage like '25%', got {value!r}")


def _loc(loc: tuple[Any, ...]) -> str:
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
        problems = [f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
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
        if spec.progress_deadline_seconds <= spec.min_ready_seconds:
            problems.append("spec.progressDeadlineSeconds: must be greater than minReadySeconds")
    elif isinstance(obj, HorizontalPodAutoscaler):
        problems += _hpa_rules(obj.spec)
    else:
        names = [p.name for p in obj.spec.ports]
        if len(obj.spec.ports) > 1 and (None in names or len(set(names)) != len(names)):
            problems.append("spec.ports: with more than one port, each needs a unique name")
        if not obj.spec.selector:
            problems.append("spec.selector: must not be empty")
    return problems


_QUANTITY = re.compile(r"(\d+(\.\d+)?)(m|k|K|Ki|Mi|Gi|M|G)?")


def quantity(value: str | int | float) -> float:
    """Kubernetes' quantities as plain numbers: 500m -> 0.5, 2Gi -> 2147483648, 10 -> 10."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a quantity: {value!r} (like 500m, 2, 256Mi)")
    factor = {
        None: 1,
        "m": 1e-3,
        "k": 1e3,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
    }
    return float(match[1]) * factor[match[3]]


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


def to_dict(obj: Object) -> dict[str, Any]:
    return obj.model_dump(by_alias=True, exclude_none=True)
