"""Our Deployment and Service as apps/v1 and v1 objects, field by field, plus what each Deployment
needs beside it on a cluster: a PodDisruptionBudget and (for a model server) the ConfigMap of its
model config. Pure: objects in, dicts and notes out."""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from modelport.errors import Code, ModelportError
from modelport.kube import layout
from modelport.kube.notes import Note
from modelport.kube.pods import PodOptions, config_map_name, render_pod_template
from modelport.repository.config import parse_model_config
from modelport.spec import Deployment, ObjectMeta, Service


def render_metadata(meta: ObjectMeta, kind: str, notes: list[Note]) -> dict[str, Any]:
    """Name, labels and annotations; the namespace only when it is not `default`, so that
    `kustomize edit set namespace` or `kubectl apply -n` can place the default ones."""
    where = f"{kind}/{meta.name}"
    for field in ("uid", "generation", "resource_version", "creation_timestamp"):
        if getattr(meta, field) is not None:
            alias = ObjectMeta.model_fields[field].alias or field
            notes.append(Note(where, f"metadata.{alias}", "left out: the cluster sets its own"))
    out: dict[str, Any] = {"name": meta.name}
    if meta.namespace != "default":
        out["namespace"] = meta.namespace
    out["labels"] = {**meta.labels, **layout.MANAGED_BY}
    if meta.annotations:
        out["annotations"] = dict(meta.annotations)
    return out


def status_note(status: dict[str, Any], where: str, notes: list[Note]) -> None:
    if status:
        notes.append(Note(where, "status", "left out: the cluster writes its own status"))


def render_model_config(dep: Deployment) -> dict[str, Any] | None:
    """The ConfigMap a model server reads with --model_config_file: its one model, at the path
    where the image (or the models volume) holds it. None for a gateway."""
    model = dep.spec.template.spec.model
    if model is None:
        return None
    config = {
        "model_config_list": {
            "config": [{"name": model.name, "base_path": f"{layout.MODELS_DIR}/{model.name}"}]
        }
    }
    text = yaml.safe_dump(config, sort_keys=False)
    parse_model_config(text, config_map_name(dep))  # what the server will read: checked here
    meta: dict[str, Any] = {"name": config_map_name(dep)}
    if dep.metadata.namespace != "default":
        meta["namespace"] = dep.metadata.namespace
    meta["labels"] = {**dep.metadata.labels, **layout.MANAGED_BY}
    # Where the model came from here (a folder or registry://MODEL@LABEL): `modelport build`
    # copies it into the image; kept so the cluster's object says what it serves.
    meta["annotations"] = {layout.BASE_PATH_ANNOTATION: model.base_path}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {layout.CONFIG_FILE: text}}


def config_digest(config_map: dict[str, Any] | None) -> str | None:
    if config_map is None:
        return None
    return hashlib.sha256(config_map["data"][layout.CONFIG_FILE].encode()).hexdigest()


def render_deployment(
    dep: Deployment, options: PodOptions, upstream: str | None, config_sha: str | None, notes: list[Note]
) -> dict[str, Any]:
    spec = dep.spec
    where = f"Deployment/{dep.metadata.name}"
    strategy: dict[str, Any] = {"type": spec.strategy.type}
    if spec.strategy.type == "RollingUpdate":
        rolling = spec.strategy.rolling_update
        strategy["rollingUpdate"] = {"maxSurge": rolling.max_surge, "maxUnavailable": rolling.max_unavailable}
    elif "rolling_update" in spec.strategy.model_fields_set:
        notes.append(
            Note(where, "spec.strategy.rollingUpdate", "left out: Recreate takes no rollingUpdate (as here)")
        )
    status_note(dep.status, where, notes)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": render_metadata(dep.metadata, "Deployment", notes),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": dict(spec.selector.match_labels)},
            "strategy": strategy,
            "minReadySeconds": spec.min_ready_seconds,
            "revisionHistoryLimit": spec.revision_history_limit,
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "paused": spec.paused,
            "template": render_pod_template(dep, options, upstream, config_sha, notes),
        },
    }


def render_disruption_budget(dep: Deployment) -> dict[str, Any]:
    """At most one replica of the Deployment evicted at a time by a node drain or an upgrade.
    1 and not the rollout's maxUnavailable: that is often 0 (the example's), and a budget of 0
    would block every node drain forever."""
    meta = {k: v for k, v in render_metadata(dep.metadata, "Deployment", []).items() if k != "annotations"}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(dep.spec.selector.match_labels)}},
    }


_BALANCING = {
    "roundRobin": "kube-proxy spreads connections at random in its default iptables/nftables mode; "
    "round robin needs IPVS mode with --ipvs-scheduler=rr (a cluster-wide kube-proxy setting)",
    "leastConnection": "Kubernetes cannot express it per Service: choose kube-proxy's IPVS mode with "
    "--ipvs-scheduler=lc (cluster-wide), or a service mesh (Istio DestinationRule loadBalancer "
    "LEAST_REQUEST; Linkerd balances by latency), or loadBalancing: random here",
}


def _service_notes(svc: Service, where: str, notes: list[Note]) -> None:
    spec = svc.spec
    explicit = spec.model_fields_set
    if "load_balancing" in explicit and spec.load_balancing in _BALANCING:
        notes.append(
            Note(where, "spec.loadBalancing", f"{spec.load_balancing}: {_BALANCING[spec.load_balancing]}")
        )
    if "max_requests_per_replica" in explicit:
        why = (
            f"{spec.max_requests_per_replica}: a Service has no per-replica limit or queue (requests go "
            "straight to the Pods); Knative Serving's containerConcurrency is one (a queue per Pod)"
        )
        notes.append(Note(where, "spec.maxRequestsPerReplica", why))
    if spec.cluster_ip is not None:
        notes.append(Note(where, "spec.clusterIP", f"{spec.cluster_ip} left out: the cluster assigns one"))
    if spec.tls is not None:
        secret = spec.tls.secret_name or "a kubernetes.io/tls Secret made from certFile and keyFile"
        why = (
            f"a v1 Service does not terminate TLS: put an Ingress in front of it with "
            f"tls: [{{secretName: {secret}}}] (its tls.crt and tls.key are the same files)"
        )
        notes.append(Note(where, "spec.tls", why))
    status_note(svc.status, where, notes)


def render_service(svc: Service, notes: list[Note]) -> dict[str, Any]:
    """A port with no targetPort goes to the container port named `http` (REST of `modelport
    serve`, or the gateway's page), as locally it goes to each replica's REST port."""
    where = f"Service/{svc.metadata.name}"
    _service_notes(svc, where, notes)
    ports = []
    for port in svc.spec.ports:
        if port.port == 0:
            why = (
                "port 0 (a free one, picked locally) cannot be rendered: a cluster Service needs a fixed port"
            )
            raise ModelportError(Code.INVALID_ARGUMENT, f"{where}: spec.ports: {why}")
        rendered: dict[str, Any] = {"name": port.name} if port.name is not None else {}
        target = port.target_port if port.target_port is not None else "http"
        ports.append({**rendered, "port": port.port, "targetPort": target, "protocol": port.protocol})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": render_metadata(svc.metadata, "Service", notes),
        "spec": {
            "type": svc.spec.type,
            "selector": dict(svc.spec.selector),
            "ports": ports,
            "sessionAffinity": svc.spec.session_affinity,
        },
    }
