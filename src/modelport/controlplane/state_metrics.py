"""The control plane's own Prometheus metrics (GET /metrics, with the API's token): the state of
the objects, read from the store at each scrape, in the shape of kube-state-metrics, so alerts
on restarts and on autoscalers at their limit need nothing but Prometheus.

    modelport_deployment_spec_replicas{namespace,deployment}              gauge
    modelport_deployment_status_replicas_ready{namespace,deployment}      gauge
    modelport_pod_restarts_total{namespace,pod,deployment}                counter (the Pod's restartCount)
    modelport_pod_ready{namespace,pod,deployment}                         gauge (1 or 0)
    modelport_hpa_spec_min_replicas{namespace,hpa,deployment}             gauge
    modelport_hpa_spec_max_replicas{namespace,hpa,deployment}             gauge
    modelport_hpa_status_current_replicas{namespace,hpa,deployment}       gauge
    modelport_hpa_status_desired_replicas{namespace,hpa,deployment}       gauge
    modelport_service_endpoints{namespace,service}                        gauge (replicas in rotation)

A Pod's `deployment` is its ReplicaSet's owner, a Deployment or a Rollout ("" for a Pod neither
owns); a Rollout's figures are under `deployment` too, in the same families, and its
`modelport_rollout_canary_weight{namespace,deployment}` is its canary's share (0-100).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelport.controlplane.store import ObjectStore

Obj = dict[str, Any]
WORKLOADS = ("Deployment", "Rollout")  # what owns ReplicaSets: a Rollout is a Deployment with canaries
METRICS_TYPE = CONTENT_TYPE_LATEST


def pod_deployments(replica_sets: list[Obj]) -> dict[tuple[str, str], str]:
    """(namespace, ReplicaSet name) -> the name of the Deployment (or Rollout) that owns it."""
    owners = {}
    for rs in replica_sets:
        meta = rs["metadata"]
        for ref in meta.get("ownerReferences", []):
            if ref.get("kind") in WORKLOADS:
                owners[(meta["namespace"], meta["name"])] = str(ref["name"])
    return owners


def deployment_of(pod: Obj, owners: dict[tuple[str, str], str]) -> str:
    meta = pod["metadata"]
    for ref in meta.get("ownerReferences", []):
        if ref.get("kind") == "ReplicaSet":
            return owners.get((meta["namespace"], ref["name"]), "")
    return ""


class StateCollector:
    """A prometheus_client collector over the store: nothing kept between scrapes."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        yield from self._deployments()
        yield from self._pods()
        yield from self._hpas()
        yield from self._services()

    def _deployments(self) -> Iterator[Metric]:
        labels = ["namespace", "deployment"]
        spec = GaugeMetricFamily(
            "modelport_deployment_spec_replicas", "Replicas a Deployment asks for.", labels=labels
        )
        ready = GaugeMetricFamily(
            "modelport_deployment_status_replicas_ready", "A Deployment's ready replicas.", labels=labels
        )
        weight = GaugeMetricFamily(
            "modelport_rollout_canary_weight",
            "A Rollout's canary's share of the requests (%).",
            labels=labels,
        )
        for kind in WORKLOADS:
            for d in self._store.list_kind(kind)[0]:
                values = [d["metadata"]["namespace"], d["metadata"]["name"]]
                spec.add_metric(values, float(d["spec"].get("replicas", 1)))
                ready.add_metric(values, float((d.get("status") or {}).get("readyReplicas", 0)))
                if kind == "Rollout":
                    weight.add_metric(values, float((d.get("status") or {}).get("canaryWeight", 0)))
        yield from (spec, ready, weight)

    def _pods(self) -> Iterator[Metric]:
        labels = ["namespace", "pod", "deployment"]
        restarts = CounterMetricFamily(
            "modelport_pod_restarts", "Times a replica's process was restarted.", labels=labels
        )
        ready = GaugeMetricFamily("modelport_pod_ready", "1 when a replica is ready, else 0.", labels=labels)
        owners = pod_deployments(self._store.list_kind("ReplicaSet")[0])
        for pod in self._store.list_kind("Pod")[0]:
            status = pod.get("status") or {}
            values = [pod["metadata"]["namespace"], pod["metadata"]["name"], deployment_of(pod, owners)]
            restarts.add_metric(values, float(status.get("restartCount", 0)))
            ready.add_metric(values, 1.0 if status.get("ready") else 0.0)
        yield from (restarts, ready)

    def _hpas(self) -> Iterator[Metric]:
        labels = ["namespace", "hpa", "deployment"]
        families = {
            key: GaugeMetricFamily(f"modelport_hpa_{name}", text, labels=labels)
            for key, name, text in (
                ("minReplicas", "spec_min_replicas", "An autoscaler's lower limit."),
                ("maxReplicas", "spec_max_replicas", "An autoscaler's upper limit."),
                ("currentReplicas", "status_current_replicas", "Replicas an autoscaler last saw."),
                ("desiredReplicas", "status_desired_replicas", "Replicas an autoscaler last decided on."),
            )
        }
        for hpa in self._store.list_kind("HorizontalPodAutoscaler")[0]:
            spec, status = hpa["spec"], hpa.get("status") or {}
            values = [hpa["metadata"]["namespace"], hpa["metadata"]["name"], spec["scaleTargetRef"]["name"]]
            families["minReplicas"].add_metric(values, float(spec.get("minReplicas", 1)))
            families["maxReplicas"].add_metric(values, float(spec["maxReplicas"]))
            for key in ("currentReplicas", "desiredReplicas"):
                if key in status:
                    families[key].add_metric(values, float(status[key]))
        yield from families.values()

    def _services(self) -> Iterator[Metric]:
        endpoints = GaugeMetricFamily(
            "modelport_service_endpoints",
            "Replicas in a Service's rotation.",
            labels=["namespace", "service"],
        )
        for s in self._store.list_kind("Service")[0]:
            count = len((s.get("status") or {}).get("endpoints", []))
            endpoints.add_metric([s["metadata"]["namespace"], s["metadata"]["name"]], float(count))
        yield endpoints


def state_registry(store: ObjectStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(store))
    return registry


def render_state(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
