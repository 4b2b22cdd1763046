"""The declarative objects, `apiVersion: modelport/v1`: Deployment, Service and
HorizontalPodAutoscaler as pydantic models, in Kubernetes' shapes and with its defaults (each default
is stated here once)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

API_VERSION = "modelport/v1"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


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
    # 1 s, where Kubernetes' default is 10: a local replica loads in well under a second, and a
    # rollout waits for each new replica to be ready, so with 10 every step of a rollout would
    # take 10 s or more (4 replicas one at a time: 40 s instead of about 4). The kubelet and the
    # supervisor take every probe default from here.
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


class ServiceTLS(_Spec):
    """TLS terminated by the Service's load balancer: a certificate and key from a secret
    (`$MODELPORT_HOME/secrets/<namespace>/<secretName>/tls.crt` and `tls.key`, the keys of a
    Kubernetes TLS Secret) or from files named here. The replicas behind it stay plain HTTP on
    loopback."""

    secret_name: str | None = Field(default=None, alias="secretName")
    cert_file: str | None = Field(default=None, alias="certFile")
    key_file: str | None = Field(default=None, alias="keyFile")


class ServiceSpec(_Spec):
    selector: dict[str, str]
    ports: list[ServicePort] = Field(min_length=1)
    # ClusterIP: on this machine only (127.0.0.1); NodePort, LoadBalancer: on every interface,
    # and only replicas that require API keys are put behind it.
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
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
    tls: ServiceTLS | None = None


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


# -- Rollout and AnalysisTemplate (Argo Rollouts' vocabulary) --

# A duration as Argo writes one: seconds as a number, or "500ms", "30s", "5m", "1h".
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def seconds(value: str | int | float) -> float:
    """A duration in seconds; ValueError for one that is not a duration."""
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a duration (e.g. 30, '30s', '5m', '1h', '500ms')")
    return float(match[1]) * _UNIT[match[2]]


Duration = str | int | float


class Pause(_Spec):
    duration: Duration | None = None  # none: until `modelport rollout promote`


class TemplateRef(_Spec):
    template_name: str = Field(alias="templateName")


class RolloutAnalysis(_Spec):
    templates: list[TemplateRef] = Field(min_length=1)


class SetMirror(_Spec):
    """From this step on, `percent`% of the requests stable answers are copied to the canary (its
    answers compared with stable's and thrown away); 0 stops copying."""

    percent: int = Field(ge=0, le=100)


class HeaderValue(_Spec):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None  # the whole value must match (as Argo's routers read it)


class HeaderMatch(_Spec):
    header_name: str = Field(min_length=1, alias="headerName")
    header_value: HeaderValue = Field(alias="headerValue")


class SetHeaderRoute(_Spec):
    """Requests whose headers all match `match` go to the canary, whatever its weight; a step
    naming the route without `match` removes it. Every route ends at promotion or abort."""

    name: str = Field(min_length=1)
    match: list[HeaderMatch] | None = None


class CanaryStep(_Spec):
    set_weight: int | None = Field(default=None, ge=0, le=100, alias="setWeight")
    set_mirror: SetMirror | None = Field(default=None, alias="setMirror")
    set_header_route: SetHeaderRoute | None = Field(default=None, alias="setHeaderRoute")
    pause: Pause | None = None
    analysis: RolloutAnalysis | None = None


class CanaryStrategy(_Spec):
    steps: list[CanaryStep] = Field(default_factory=list)
    # Runs from the first step until promotion; failing it aborts, as a step's does.
    analysis: RolloutAnalysis | None = None
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0, alias="abortScaleDownDelaySeconds")
    # Services that see only the canary's replicas / only stable's (Argo's), e.g. to call the
    # canary directly; the Rollout's own Service still shares the requests by the weights.
    canary_service: str | None = Field(default=None, alias="canaryService")
    stable_service: str | None = Field(default=None, alias="stableService")
    # Promotion as a rolling update (Deployment arithmetic): at most replicas + maxSurge in all,
    # at least replicas - maxUnavailable available, stable scaled down as the canary comes up.
    # Neither set: the canary is scaled to the full count beside a whole stable, then switched.
    max_surge: int | str | None = Field(default=None, alias="maxSurge")
    max_unavailable: int | str | None = Field(default=None, alias="maxUnavailable")


class BlueGreenStrategy(_Spec):
    """The new revision runs at full size behind `previewService` while `activeService` keeps
    sending every request to the stable one; promotion switches the active Service to it."""

    active_service: str = Field(alias="activeService")
    preview_service: str | None = Field(default=None, alias="previewService")
    auto_promotion_enabled: bool = Field(default=True, alias="autoPromotionEnabled")
    auto_promotion_seconds: int | None = Field(default=None, ge=0, alias="autoPromotionSeconds")
    pre_promotion_analysis: RolloutAnalysis | None = Field(default=None, alias="prePromotionAnalysis")
    post_promotion_analysis: RolloutAnalysis | None = Field(default=None, alias="postPromotionAnalysis")
    # The old revision stays at full size this long after promotion (and its post-promotion
    # analysis): a failed one switches back at once.
    scale_down_delay_seconds: int = Field(default=30, ge=0, alias="scaleDownDelaySeconds")


class RolloutStrategy(_Spec):
    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = Field(default=None, alias="blueGreen")


class RolloutSpec(DeploymentSpec):
    """A Deployment's spec with Argo's canary strategy in place of a rolling update."""

    strategy: RolloutStrategy  # type: ignore[assignment]


class Rollout(_Spec):
    api_version: Literal["modelport/v1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: ObjectMeta
    spec: RolloutSpec
    status: dict[str, Any] = Field(default_factory=dict)


class ModelportMetric(_Spec):
    """modelport's own figures, from the replicas' /metrics, canary against stable, over each
    measurement's interval. Fewer than `minSamples` canary requests: Inconclusive, never a number."""

    # agreement: the share of the requests copied to the canary under setMirror that it answered
    # as stable did (from stable's replicas' counts); minSamples counts those copies.
    # liveAccuracy: the canary's answers labelled through `:feedback` in the interval, the share
    # answered right; minSamples counts labelled rows.
    metric: Literal["errorRate", "latencyP50", "latencyP99", "classDistance", "agreement", "liveAccuracy"]
    min_samples: int = Field(default=20, ge=1, alias="minSamples")


class PrometheusMetric(_Spec):
    query: str
    address: str | None = None  # default: the control plane's --prometheus-url


class MetricProvider(_Spec):
    modelport: ModelportMetric | None = None
    prometheus: PrometheusMetric | None = None


class AnalysisMetric(_Spec):
    name: str
    provider: MetricProvider
    interval: Duration | None = None  # none: one measurement
    count: int | None = Field(default=None, ge=1)
    initial_delay: Duration | None = Field(default=None, alias="initialDelay")
    success_condition: str | None = Field(default=None, alias="successCondition")
    failure_condition: str | None = Field(default=None, alias="failureCondition")
    failure_limit: int = Field(default=0, ge=0, alias="failureLimit")
    inconclusive_limit: int = Field(default=0, ge=0, alias="inconclusiveLimit")
    consecutive_error_limit: int = Field(default=4, ge=0, alias="consecutiveErrorLimit")


class AnalysisTemplateSpec(_Spec):
    metrics: list[AnalysisMetric] = Field(min_length=1)


class AnalysisTemplate(_Spec):
    api_version: Literal["modelport/v1"] = Field(alias="apiVersion")
    kind: Literal["AnalysisTemplate"]
    metadata: ObjectMeta
    spec: AnalysisTemplateSpec
    status: dict[str, Any] = Field(default_factory=dict)


Object = Deployment | Service | HorizontalPodAutoscaler | Rollout | AnalysisTemplate
KINDS: dict[str, type[Object]] = {
    "Deployment": Deployment, "Service": Service, "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
    "Rollout": Rollout, "AnalysisTemplate": AnalysisTemplate,
}  # fmt: skip
ALIASES = {
    "deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
    "service": "Service", "services": "Service", "svc": "Service",
    "horizontalpodautoscaler": "HorizontalPodAutoscaler", "hpa": "HorizontalPodAutoscaler",
    "rollout": "Rollout", "rollouts": "Rollout", "ro": "Rollout",
    "analysistemplate": "AnalysisTemplate", "analysistemplates": "AnalysisTemplate",
}  # fmt: skip


def to_dict(obj: Object) -> dict[str, Any]:
    return obj.model_dump(by_alias=True, exclude_none=True)
