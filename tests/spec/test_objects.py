"""Deployment and Service objects: Kubernetes' shapes and defaults, and whole-file refusal with
every field named."""

from __future__ import annotations

import pytest

from modelport.errors import ModelportError
from modelport.spec import Deployment, Service, load_objects, scaled

DEPLOY = """
apiVersion: modelport/v1
kind: Deployment
metadata: {name: mnist, labels: {app: mnist}}
spec:
  replicas: 2
  selector: {matchLabels: {app: mnist}}
  template:
    metadata: {labels: {app: mnist}}
    spec:
      model: {name: mnist, basePath: registry://mnist@production}
---
apiVersion: modelport/v1
kind: Service
metadata: {name: mnist}
spec:
  selector: {app: mnist}
  ports: [{port: 8501}]
"""


def test_a_deployment_and_a_service_with_kubernetes_defaults() -> None:
    deployment, service = load_objects(DEPLOY)
    assert isinstance(deployment, Deployment) and isinstance(service, Service)
    spec = deployment.spec
    assert (spec.replicas, spec.revision_history_limit, spec.progress_deadline_seconds) == (2, 10, 600)
    assert spec.strategy.type == "RollingUpdate"
    assert (spec.strategy.rolling_update.max_surge, spec.strategy.rolling_update.max_unavailable) == (
        "25%",
        "25%",
    )
    assert deployment.metadata.namespace == "default"
    assert spec.template.spec.readiness_probe.path == "/readyz"
    assert spec.template.spec.liveness_probe.path == "/healthz"
    assert service.spec.session_affinity == "None" and service.spec.load_balancing == "roundRobin"


def test_percentages_round_as_kubernetes_does() -> None:
    assert scaled("25%", 10, round_up=True) == 3  # maxSurge rounds up
    assert scaled("25%", 10, round_up=False) == 2  # maxUnavailable rounds down
    assert scaled(1, 10, round_up=False) == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            "maxSurge: 0\n      maxUnavailable: 0",
            "spec.strategy.rollingUpdate.maxUnavailable: must not be 0 when maxSurge is 0",
        ),
        (
            "maxSurge: 0\n      maxUnavailable: 10%",
            "spec.strategy.rollingUpdate.maxUnavailable: must not be 0 when maxSurge is 0",
        ),
        ("maxSurge: -1", "spec.strategy.rollingUpdate.maxSurge: must be greater than or equal to 0"),
        ("maxSurge: lots", "spec.strategy.rollingUpdate.maxSurge: must be an integer or a percentage"),
    ],
)
def test_rolling_update_rules(change: str, named: str) -> None:
    text = DEPLOY.split("---")[0].replace(
        "  replicas: 2\n", f"  replicas: 2\n  strategy:\n    rollingUpdate:\n      {change}\n"
    )
    with pytest.raises(ModelportError) as caught:
        load_objects(text)
    assert named in caught.value.message


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("replicas: 2", "replicas: -1", "spec.replicas: Input should be greater than or equal to 0"),
        ("replicas: 2", "replicas: two", "spec.replicas: Input should be a valid integer"),
        ("replicas: 2", "replica: 2", "spec.replica: Extra inputs are not permitted"),
        (
            "name: mnist, labels",
            "name: MNIST_1, labels",
            "metadata.name: Value error, must be a lowercase DNS label",
        ),
        (
            "template:\n    metadata: {labels: {app: mnist}}",
            "template:\n    metadata: {labels: {app: other}}",
            "spec.template.metadata.labels: `selector` does not match template `labels`",
        ),
        (
            "model: {name: mnist, basePath: registry://mnist@production}",
            "model: {name: mnist}",
            "spec.template.spec.model.basePath: Field required",
        ),
        (
            "kind: Deployment",
            "kind: Deploymint",
            "kind: must be one of ['AnalysisTemplate', 'Deployment', 'HorizontalPodAutoscaler', 'Rollout', "
            "'Service']",
        ),
        (
            "apiVersion: modelport/v1\nkind: Deployment",
            "apiVersion: apps/v1\nkind: Deployment",
            "apiVersion: must be modelport/v1",
        ),
    ],
)
def test_mistakes_are_named(old: str, new: str, named: str) -> None:
    assert old in DEPLOY
    with pytest.raises(ModelportError) as caught:
        load_objects(DEPLOY.replace(old, new, 1), "deploy.yaml")
    assert named in caught.value.message
    assert "deploy.yaml (object 1" in caught.value.message


def test_a_file_with_one_bad_object_is_refused_whole() -> None:
    text = DEPLOY.replace("ports: [{port: 8501}]", "ports: []")
    with pytest.raises(ModelportError) as caught:
        load_objects(text, "deploy.yaml")
    assert "(object 2, mnist): spec.ports: List should have at least 1 item" in caught.value.message
    two = DEPLOY.replace("ports: [{port: 8501}]", "ports: [{port: 8501}, {port: 8502}]")
    with pytest.raises(ModelportError, match="with more than one port, each needs a unique name"):
        load_objects(two)
    with pytest.raises(ModelportError, match="not valid YAML"):
        load_objects("kind: [unclosed")


def test_a_replica_runs_a_model_or_a_gateway_not_both() -> None:
    from modelport.spec import load_objects as load

    base = """apiVersion: modelport/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {spec}
"""
    template = load(base.format(spec="{gateway: {service: mnist}}"))[0].spec.template.spec
    assert template.gateway is not None and template.gateway.service == "mnist" and template.model is None
    for spec, words in [
        ("{}", "neither"),
        ("{model: {name: m, basePath: /m}, gateway: {service: s}}", "model and gateway"),
    ]:
        with pytest.raises(
            ModelportError,
            match=f"spec.template.spec: needs exactly one of `model` and `gateway`, got {words}",
        ):
            load(base.format(spec=spec))
