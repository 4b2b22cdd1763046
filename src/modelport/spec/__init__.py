"""The declarative objects, `apiVersion: modelport/v1`: Deployment and Service, in Kubernetes'
shapes and with its defaults, loaded from YAML and validated whole.

    objects = load_objects(Path("examples/mnist/deploy.yaml").read_text())   # [Deployment, Service]

Every problem is reported at once, each with its field path and the rule it breaks
(`spec.strategy.rollingUpdate.maxUnavailable: must not be 0 when maxSurge is 0`); an invalid
file is refused as a whole.
"""

from modelport.spec.objects import (
    ALIASES,
    API_VERSION,
    KINDS,
    Behavior,
    CrossVersionObjectReference,
    Deployment,
    DeploymentSpec,
    ExternalMetricSource,
    GatewayRef,
    HorizontalPodAutoscaler,
    HPASpec,
    LabelSelector,
    MetricIdentifier,
    MetricSpec,
    MetricTarget,
    ModelRef,
    Object,
    ObjectMeta,
    ObjectMetricSource,
    PodsMetricSource,
    Probe,
    ReplicaSpec,
    ResourceMetricSource,
    Resources,
    RollingUpdate,
    ScalingPolicy,
    ScalingRules,
    Service,
    ServicePort,
    ServiceSpec,
    Strategy,
    Template,
    to_dict,
)
from modelport.spec.quantity import quantity, scaled
from modelport.spec.validate import load_objects, parse_object

__all__ = [
    "ALIASES",
    "API_VERSION",
    "KINDS",
    "Behavior",
    "CrossVersionObjectReference",
    "Deployment",
    "DeploymentSpec",
    "ExternalMetricSource",
    "GatewayRef",
    "HPASpec",
    "HorizontalPodAutoscaler",
    "LabelSelector",
    "MetricIdentifier",
    "MetricSpec",
    "MetricTarget",
    "ModelRef",
    "Object",
    "ObjectMeta",
    "ObjectMetricSource",
    "PodsMetricSource",
    "Probe",
    "ReplicaSpec",
    "ResourceMetricSource",
    "Resources",
    "RollingUpdate",
    "ScalingPolicy",
    "ScalingRules",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "Strategy",
    "Template",
    "load_objects",
    "parse_object",
    "quantity",
    "scaled",
    "to_dict",
]
