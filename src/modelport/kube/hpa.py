"""Our HorizontalPodAutoscaler as autoscaling/v2: the same shape, so the metrics and the behavior
pass unchanged. What differs is where a metric comes from: cpu and memory from the cluster's
metrics-server; every other metric from a custom or external metrics API, which on a plain
cluster nobody serves. For those, render says so and writes the Prometheus Adapter rules that
would serve them from the replicas' own /metrics (the Pods carry the scrape annotations)."""

from __future__ import annotations

from typing import Any

from modelport.kube.mapping import render_metadata, status_note
from modelport.kube.notes import Note
from modelport.spec import HorizontalPodAutoscaler, MetricIdentifier, MetricSpec, MetricTarget, ScalingRules

_POD = {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
_LATENCY = "histogram_quantile({q}, sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[1m])) by (le, <<.GroupBy>>))"
# Our derived per-replica metrics (what the local metrics collector computes, see `modelport
# top`) as PromQL over the series each replica exports: name -> (series, metricsQuery).
_DERIVED = {
    "requests_per_second": (
        "modelport_requests_total", "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)"),
    "requests_in_flight": (
        "modelport_requests_in_flight", "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"),
    "request_latency_p50_seconds": ("modelport_request_duration_seconds_bucket", _LATENCY.format(q=0.5)),
    "request_latency_p99_seconds": ("modelport_request_duration_seconds_bucket", _LATENCY.format(q=0.99)),
}  # fmt: skip
_ADAPTER = (
    "install the Prometheus Adapter (prometheus-community/prometheus-adapter) with the rules "
    "render wrote to prometheus-adapter-values.yaml"
)


def _target(target: MetricTarget) -> dict[str, Any]:
    out: dict[str, Any] = {"type": target.type}
    if target.average_utilization is not None:
        out["averageUtilization"] = target.average_utilization
    if target.average_value is not None:
        out["averageValue"] = str(target.average_value)  # a quantity: "1500", "500m"
    if target.value is not None:
        out["value"] = str(target.value)
    return out


def _identifier(metric: MetricIdentifier) -> dict[str, Any]:
    out: dict[str, Any] = {"name": metric.name}
    if metric.selector is not None:
        out["selector"] = {"matchLabels": dict(metric.selector.match_labels)}
    return out


def _metric(metric: MetricSpec) -> dict[str, Any]:
    if metric.resource is not None:
        res = metric.resource
        return {"type": "Resource", "resource": {"name": res.name, "target": _target(res.target)}}
    if metric.pods is not None:
        pods = metric.pods
        return {"type": "Pods", "pods": {"metric": _identifier(pods.metric), "target": _target(pods.target)}}
    if metric.object is not None:
        obj = metric.object
        described = {
            "apiVersion": "apps/v1",
            "kind": obj.described_object.kind,
            "name": obj.described_object.name,
        }
        return {"type": "Object", "object": {"describedObject": described, "metric": _identifier(obj.metric),
                                             "target": _target(obj.target)}}  # fmt: skip
    assert metric.external is not None  # validation: the source named by `type` is set
    ext = metric.external
    return {
        "type": "External",
        "external": {"metric": _identifier(ext.metric), "target": _target(ext.target)},
    }


def _rules(rules: ScalingRules, field: str, where: str, notes: list[Note]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rules.stabilization_window_seconds is not None:
        out["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    out["selectPolicy"] = rules.select_policy
    if rules.policies is not None:
        out["policies"] = [
            {"type": p.type, "value": p.value, "periodSeconds": p.period_seconds} for p in rules.policies
        ]
    if rules.tolerance is not None:
        why = (
            f"{rules.tolerance:g} left out: per-HPA tolerance is alpha (Kubernetes 1.33+, feature gate "
            "HPAConfigurableTolerance); the cluster's --horizontal-pod-autoscaler-tolerance (0.1) applies"
        )
        notes.append(Note(where, f"{field}.tolerance", why))
    return out


def _metric_note(metric: MetricSpec, i: int, where: str) -> Note | None:
    field = f"spec.metrics[{i}]"
    if metric.pods is not None:
        why = f"Pods metric {metric.pods.metric.name!r} needs a custom metrics API: {_ADAPTER}"
        if metric.pods.metric.query:
            why += " (its metric.query is not used, as here: a Pods metric is read by name)"
        return Note(where, field, why)
    if metric.object is not None:
        why = (
            f"Object metric {metric.object.metric.name!r} (PromQL from metric.query) needs a metrics "
            "adapter; the Prometheus Adapter serves a PromQL query only as an External metric: change "
            f"the type to External and {_ADAPTER}, or use KEDA's prometheus trigger"
        )
        return Note(where, field, why)
    if metric.external is not None:
        return Note(where, field, f"External metric {metric.external.metric.name!r} (PromQL from "
            f"metric.query) needs an external metrics API: {_ADAPTER}")  # fmt: skip
    return None


def render_hpa(hpa: HorizontalPodAutoscaler, notes: list[Note]) -> dict[str, Any]:
    spec = hpa.spec
    where = f"HorizontalPodAutoscaler/{hpa.metadata.name}"
    for i, metric in enumerate(spec.metrics):
        note = _metric_note(metric, i, where)
        if note is not None:
            notes.append(note)
    status_note(hpa.status, where, notes)
    out: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.scale_target_ref.name},
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "metrics": [_metric(m) for m in spec.metrics],
    }
    if spec.behavior is not None:
        behavior = {}
        for field, rules in (("scaleUp", spec.behavior.scale_up), ("scaleDown", spec.behavior.scale_down)):
            if rules is not None:
                behavior[field] = _rules(rules, f"spec.behavior.{field}", where, notes)
        out["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": render_metadata(hpa.metadata, "HorizontalPodAutoscaler", notes),
        "spec": out,
    }


def _pods_rule(name: str) -> dict[str, Any]:
    """A custom-metrics rule: per Pod, by the namespace and pod labels Prometheus' Kubernetes
    service discovery attaches to every scraped series. Any other name is a gauge the replicas
    export, summed over its labels (as the local collector does)."""
    series, query = _DERIVED.get(name, (name, "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"))
    return {
        "seriesQuery": f'{series}{{namespace!="",pod!=""}}',
        "resources": {"overrides": _POD},
        "name": {"matches": f"^{series}$", "as": name},
        "metricsQuery": query,
    }


def _external_rule(metric: MetricIdentifier) -> dict[str, Any]:
    """An external-metrics rule that answers with the HPA's own PromQL; the series query only
    makes the adapter list the name (every replica exports modelport_requests_total)."""
    return {
        "seriesQuery": 'modelport_requests_total{namespace!=""}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
        "name": {"matches": "^modelport_requests_total$", "as": metric.name},
        "metricsQuery": metric.query or "",
    }


def render_adapter_values(hpas: list[HorizontalPodAutoscaler]) -> dict[str, Any] | None:
    """The prometheus-adapter Helm chart's `rules` values for every metric the HPAs need beyond
    cpu and memory; None when they need none."""
    custom: dict[str, dict[str, Any]] = {}
    external: dict[str, dict[str, Any]] = {}
    for hpa in hpas:
        for metric in hpa.spec.metrics:
            if metric.pods is not None:
                custom.setdefault(metric.pods.metric.name, _pods_rule(metric.pods.metric.name))
            source = metric.object or metric.external
            if source is not None:
                external.setdefault(source.metric.name, _external_rule(source.metric))
    if not custom and not external:
        return None
    rules: dict[str, Any] = {"default": False}
    if custom:
        rules["custom"] = [custom[k] for k in sorted(custom)]
    if external:
        rules["external"] = [external[k] for k in sorted(external)]
    return {"rules": rules}
