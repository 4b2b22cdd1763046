"""No field of ours is dropped in silence: every field of the spec's models, set to a value of its
own, either shows up in what render writes or is named by one of render's warnings. A field added
to the spec fails here until the objects below set it (and render carries it or warns)."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import yaml
from pydantic import BaseModel

from modelport.kube.pods import PodOptions
from modelport.kube.render import render_kubernetes
from modelport.spec import Deployment, HorizontalPodAutoscaler, Service, load_objects

# Every field set, each to a value found nowhere else (so finding it in the output means it was
# carried). Values Kubernetes cannot hold as they are (a 2.5 s probe period, a liveness success
# threshold of 3, leastConnection, ...) must come back as warnings.
FULL = """\
apiVersion: modelport/v1
kind: Deployment
metadata:
  name: full
  namespace: ns-full
  labels: {app: full, tier: tier-full}
  annotations: {note-full: annotation-full}
  uid: uid-4711
  generation: 4712
  resourceVersion: "rv-4713"
  creationTimestamp: "2026-01-02T03:04:05Z"
spec:
  replicas: 17
  selector: {matchLabels: {app: full}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 19, maxUnavailable: "23%"}}
  minReadySeconds: 29
  revisionHistoryLimit: 31
  progressDeadlineSeconds: 637
  paused: true
  template:
    metadata: {labels: {app: full}, annotations: {pod-note: pod-annotation-full}, name: pod-name-full}
    spec:
      model: {name: digits-full, basePath: "registry://digits-full@staging"}
      args: [--enable_batching, --rest_api_timeout_in_ms=4321]
      resources: {limits: {cpu: "3700m", memory: 3701Mi}, requests: {cpu: "3702m", memory: 3703Mi}}
      readinessProbe: {path: /readyz-full, initialDelaySeconds: 41, periodSeconds: 2.5,
                       timeoutSeconds: 43, successThreshold: 47, failureThreshold: 53}
      livenessProbe: {path: /healthz-full, initialDelaySeconds: 59, periodSeconds: 61,
                      timeoutSeconds: 37, successThreshold: 3, failureThreshold: 71}
status: {observedGeneration: 4714}
---
apiVersion: modelport/v1
kind: Deployment
metadata: {name: front-full, namespace: ns-full}
spec:
  selector: {matchLabels: {app: front-full}}
  template:
    metadata: {labels: {app: front-full}}
    spec:
      gateway: {service: svc-full, model: gateway-model-full, timeoutSeconds: 12.5}
---
apiVersion: modelport/v1
kind: Service
metadata: {name: svc-full, namespace: ns-full, labels: {svc-label: svc-label-full},
           annotations: {svc-note: svc-annotation-full}, uid: uid-4721, generation: 4722,
           resourceVersion: "rv-4723", creationTimestamp: "2026-01-02T03:04:06Z"}
spec:
  selector: {app: full}
  ports: [{name: web-full, port: 8601, targetPort: 9601, protocol: TCP}]
  type: ClusterIP
  clusterIP: 127.0.0.1
  sessionAffinity: ClientIP
  loadBalancing: leastConnection
  maxRequestsPerReplica: 73
  tls: {secretName: tls-full}
status: {endpoints: [pod-full]}
---
apiVersion: modelport/v1
kind: Service
metadata: {name: svc-files, namespace: ns-full}
spec:
  selector: {app: full}
  ports: [{port: 8602}]
  tls: {certFile: /etc/tls-full/tls.crt, keyFile: /etc/tls-full/tls.key}
---
apiVersion: modelport/v1
kind: HorizontalPodAutoscaler
metadata: {name: full, namespace: ns-full, labels: {hpa-label: hpa-label-full},
           annotations: {hpa-note: hpa-annotation-full}, uid: uid-4731, generation: 4732,
           resourceVersion: "rv-4733", creationTimestamp: "2026-01-02T03:04:07Z"}
spec:
  scaleTargetRef: {apiVersion: modelport/v1, kind: Deployment, name: full}
  minReplicas: 2
  maxReplicas: 79
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 83, averageValue: 8905m, value: 8906m}
    - type: Pods
      pods:
        metric: {name: pods-metric-full, selector: {matchLabels: {sel: sel-full}}, query: "pods_full_query"}
        target: {type: AverageValue, averageValue: "8901", averageUtilization: 84, value: "8907"}
    - type: Object
      object:
        describedObject: {apiVersion: modelport/v1, kind: Deployment, name: front-full}
        metric: {name: object-metric-full, query: "sum(rate(object_full_total[1m]))",
                 selector: {matchLabels: {object-sel: object-sel-full}}}
        target: {type: Value, value: "8902", averageValue: "8903", averageUtilization: 89}
    - type: External
      external:
        metric: {name: external-metric-full, query: "avg(external_full)",
                 selector: {matchLabels: {external-sel: external-sel-full}}}
        target: {type: AverageValue, averageValue: "8904", value: "8908", averageUtilization: 85}
  behavior:
    scaleUp: {stabilizationWindowSeconds: 97, selectPolicy: Min, tolerance: 0.07,
              policies: [{type: Percent, value: 101, periodSeconds: 103}]}
    scaleDown: {stabilizationWindowSeconds: 107, selectPolicy: Disabled, tolerance: 0.11,
                policies: [{type: Pods, value: 109, periodSeconds: 113}]}
status: {currentReplicas: 4715}
"""


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """The pydantic models a field's type holds, each with whether it is in a list."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
    elif origin is list:
        for model, _ in _models_in(typing.get_args(annotation)[0]):
            yield model, True
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def schema_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf field of the model, by its YAML path (`spec.ports[].port`)."""
    paths = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}" if prefix else field.alias or name
        nested = list(_models_in(field.annotation))
        if not nested:
            paths.add(path)
        for sub, in_list in nested:
            paths |= schema_paths(sub, path + ("[]" if in_list else ""))
    return paths


def set_leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path with indices, value) of every scalar the object sets, dicts and lists opened."""
    if isinstance(value, BaseModel):
        for name in value.model_fields_set:
            field = type(value).model_fields[name]
            yield from set_leaves(
                getattr(value, name), f"{path}.{field.alias or name}" if path else field.alias or name
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from set_leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from set_leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _scalars(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from _scalars(item)
    else:
        yield value


def _found(value: Any, scalars: list[Any]) -> bool:
    if isinstance(value, float | int) and not isinstance(value, bool):
        numbers = (s for s in scalars if isinstance(s, float | int) and not isinstance(s, bool))
        # 12.5 s is a number in a field, or a flag's value (`--timeout=12.5`)
        return any(s == value for s in numbers) or any(str(s).endswith(f"={value:g}") for s in scalars)
    text = str(value)
    if isinstance(value, str) and len(value) >= 4:
        return any(text in str(s) for s in scalars)  # within an argument or the model config text
    return any(str(s) == text for s in scalars)


def test_every_field_shows_up_or_is_warned() -> None:
    objects = load_objects(FULL)
    rendered = render_kubernetes(objects, PodOptions("full:1"))
    docs = [d for text in rendered.files.values() for d in yaml.safe_load_all(text)]
    scalars = list(_scalars(docs))
    warned = {(n.where, re.sub(r"\[\d+\]", "[]", n.field)) for n in rendered.notes}
    covered: dict[str, set[str]] = {}
    missing = []
    for obj in objects:
        where = f"{obj.kind}/{obj.metadata.name}"
        for path, value in set_leaves(obj, ""):
            general = re.sub(r"\[\d+\]", "[]", path)
            covered.setdefault(obj.kind, set()).add(general)
            if path.endswith("apiVersion") and value == "modelport/v1":
                continue  # our apiVersion is what render translates (to apps/v1, v1, autoscaling/v2)
            if any(w == where and (general + ".").startswith(f + ".") for w, f in warned):
                continue
            if not _found(value, scalars):
                missing.append(f"{where}: {path} = {value!r}")
    assert not missing, "neither in the output nor warned:\n" + "\n".join(missing)
    for kind, model in (
        ("Deployment", Deployment),
        ("Service", Service),
        ("HorizontalPodAutoscaler", HorizontalPodAutoscaler),
    ):
        unset = {
            p
            for p in schema_paths(model)
            if not any(c == p or c.startswith((p + ".", p + "[")) for c in covered[kind])
        }
        assert not unset, (
            f"set these {kind} fields in FULL above (a new field needs a value here): {sorted(unset)}"
        )


def test_what_cannot_be_carried_is_named_with_what_to_do() -> None:
    notes = {
        f"{n.where} {n.field}": n.message
        for n in render_kubernetes(load_objects(FULL), PodOptions("full:1")).notes
    }
    assert "rounded up to 3 s" in notes["Deployment/full spec.template.spec.readinessProbe.periodSeconds"]
    assert (
        "requires 1 for a liveness probe"
        in notes["Deployment/full spec.template.spec.livenessProbe.successThreshold"]
    )
    assert "--ipvs-scheduler=lc" in notes["Service/svc-full spec.loadBalancing"]
    assert (
        "Ingress" in notes["Service/svc-full spec.tls"] and "tls-full" in notes["Service/svc-full spec.tls"]
    )
    assert "Prometheus Adapter" in notes["HorizontalPodAutoscaler/full spec.metrics[1]"]
    assert "HPAConfigurableTolerance" in notes["HorizontalPodAutoscaler/full spec.behavior.scaleUp.tolerance"]
    assert "the cluster sets its own" in notes["Deployment/full metadata.uid"]


def test_the_full_objects_render_valid_kubernetes_too() -> None:
    rendered = render_kubernetes(load_objects(FULL), PodOptions("full:1", "volume"))
    for name, text in rendered.files.items():
        if name.endswith(".yaml") and name not in ("kustomization.yaml", "prometheus-adapter-values.yaml"):
            for version in ("1.28", kubernetes_validate.latest_version()):
                kubernetes_validate.validate(yaml.safe_load(text), version, strict=True)
    rules = yaml.safe_load(rendered.files["prometheus-adapter-values.yaml"])["rules"]
    assert [r["name"]["as"] for r in rules["custom"]] == ["pods-metric-full"]
    assert {r["name"]["as"]: r["metricsQuery"] for r in rules["external"]} == {
        "external-metric-full": "avg(external_full)",
        "object-metric-full": "sum(rate(object_full_total[1m]))",
    }
