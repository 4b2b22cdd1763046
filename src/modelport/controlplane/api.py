"""The control plane's HTTP API, on loopback, in Kubernetes' shape:

    GET    /apis/modelport/v1/namespaces/{ns}/{plural}            list (?watch=true&resourceVersion=N)
    GET    /apis/modelport/v1/{plural}                            list, every namespace
    POST   /apis/modelport/v1/namespaces/{ns}/{plural}            create
    GET    /apis/modelport/v1/namespaces/{ns}/{plural}/{name}     read
    PUT    /apis/modelport/v1/namespaces/{ns}/{plural}/{name}     replace (resourceVersion, if sent: current)
    DELETE /apis/modelport/v1/namespaces/{ns}/{plural}/{name}     delete
    POST   /apis/modelport/v1/namespaces/{ns}/deployments/{name}/rollback   {"toRevision": N}
    GET    /api/top                                               CPU, memory, req/s per replica
    GET    /api/prometheus/targets                                replicas and load balancers, for
                                                                  Prometheus' http_sd
    GET    /metrics                                               the objects' state (state_metrics.py)
    GET    /dashboard[/{ns}/{name}[/versions/{v}]]                HTML pages (dashboard_page.py); a
                                                                  browser passes the token once as
                                                                  ?token=, then by cookie
    GET    /api/history/{ns}/{hpa}                                an HPA's decisions over time
    POST   /api/shutdown                                          {"keepReplicas": bool}
    GET    /healthz                                               (the only path without the token)

Every request but /healthz carries `Authorization: Bearer <token>`, the token being in a file
only its user can read. Errors are Kubernetes `Status` objects with the HTTP code and a reason.
People write Deployments and Services; ReplicaSets, Pods and Events are the controllers' (a Pod
may be deleted: its ReplicaSet replaces it).

This module is the API's logic (`Api`, plain objects in and out); apiserver.py serves it over HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from modelport.controlplane.admission import Admission
from modelport.controlplane.dashboard import History
from modelport.controlplane.dashboard_page import Dashboard
from modelport.controlplane.meta import (
    HASH_LABEL,
    Recorder,
    owned_by,
    revision,
)
from modelport.controlplane.state_metrics import deployment_of, pod_deployments, render_state, state_registry
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.haproxy import HAPROXY_METRICS_PATH
from modelport.dataplane.ports import service_port
from modelport.errors import Code, ModelportError
from modelport.spec import parse_object, to_dict

Obj = dict[str, Any]
Objs = list[Obj]  # (Api has a method named `list`)
PREFIX = "/apis/modelport/v1"
USER_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "Rollout", "AnalysisTemplate")


def status_body(exc: ModelportError) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": exc.message,
        "reason": exc.code.reason,
        "code": exc.http_status,
    }


class Api:
    """The API's logic, apart from HTTP: every method takes and returns plain objects."""

    def __init__(
        self,
        store: ObjectStore,
        recorder: Recorder,
        usage: Callable[[], Obj],
        shutdown: Callable[[bool], None],
        history: Callable[[str, str], list[Obj]] = lambda namespace, name: [],
        admission: Admission | None = None,
        dashboard: Dashboard | None = None,
    ) -> None:
        self.store = store
        self._events = recorder
        self._usage = usage
        self._shutdown = shutdown
        self._history = history
        self._admission = admission or Admission()
        self._state_metrics = state_registry(store)
        self.dashboard = dashboard or Dashboard(lambda kind: store.list_kind(kind)[0], History())

    def create(self, kind: str, namespace: str, body: Obj) -> Obj:
        obj = self._validated(kind, namespace, body)
        if kind == "Service":
            self._allocate_port(obj, None)
        obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in _SERVER_FIELDS}
        return self.store.create(obj)

    def replace(self, kind: str, namespace: str, name: str, body: Obj) -> Obj:
        obj = self._validated(kind, namespace, body)
        if obj["metadata"]["name"] != name:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"metadata.name: {obj['metadata']['name']!r} does not match the URL's {name!r}",
            )
        current = self.store.get(kind, namespace, name)
        if current is None:
            raise ModelportError(Code.NOT_FOUND, f'{kind.lower()}s "{name}" not found')
        if kind == "Service":
            self._allocate_port(obj, current)
        rv = obj["metadata"].get("resourceVersion")
        obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in _SERVER_FIELDS}
        if rv is not None:
            obj["metadata"]["resourceVersion"] = rv
        return self.store.update(obj)

    def _validated(self, kind: str, namespace: str, body: Obj) -> Obj:
        if kind not in USER_KINDS:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"{kind}s are made by the control plane; write a Deployment, a Rollout or a Service",
            )
        if body.get("kind") != kind:
            raise ModelportError(
                Code.INVALID_ARGUMENT, f"kind: must be {kind} at this URL, got {body.get('kind')!r}"
            )
        meta = body.get("metadata")  # not a mapping: the validation below names it
        if isinstance(meta, dict) and meta.setdefault("namespace", namespace) != namespace:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"metadata.namespace: {meta['namespace']!r} does not match the URL's {namespace!r}",
            )
        body = {**body, "status": {}}
        obj = to_dict(parse_object(body))
        problems = self._admission.problems(obj)
        if problems:
            raise ModelportError(Code.INVALID_ARGUMENT, "; ".join(problems))
        return obj

    def _allocate_port(self, service: Obj, current: Obj | None) -> None:
        """Port 0 means 'pick one': a free port now, outside the ephemeral range the replicas' own
        ports come from, kept on every later apply (like a clusterIP). A new Service's status
        lists its endpoints from the start: none yet."""
        port = service["spec"]["ports"][0]
        if port["port"] == 0:
            port["port"] = current["spec"]["ports"][0]["port"] if current is not None else service_port()
        if current is None:
            service["status"] = {**service.get("status", {}), "endpoints": []}
        services, _ = self.store.list_kind("Service")
        for other in services:
            same = other["metadata"]["namespace"] == service["metadata"]["namespace"] and (
                other["metadata"]["name"] == service["metadata"]["name"]
            )
            if not same and other["spec"]["ports"][0]["port"] == port["port"]:
                raise ModelportError(
                    Code.INVALID_ARGUMENT,
                    f"spec.ports[0].port: Invalid value: {port['port']}: provided port is already allocated "
                    f"(service {other['metadata']['name']})",
                )
        service["spec"]["clusterIP"] = "127.0.0.1"

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        obj = self.store.get(kind, namespace, name)
        if obj is None:
            raise ModelportError(Code.NOT_FOUND, f'{kind.lower()}s "{name}" not found')
        return obj

    def list(self, kind: str, namespace: str | None) -> Obj:
        items, rv = self.store.list_kind(kind, namespace)
        return {
            "apiVersion": "modelport/v1",
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    def delete(self, kind: str, namespace: str, name: str) -> Obj:
        if kind in ("ReplicaSet", "Event"):
            raise ModelportError(Code.INVALID_ARGUMENT, f"{kind}s are removed by the control plane")
        return self.store.delete(kind, namespace, name)

    def rollback(self, namespace: str, name: str, to_revision: int) -> Obj:
        """`rollout undo`: the old revision's template becomes the Deployment's (a new revision)."""
        deployment = self.get("Deployment", namespace, name)
        history = sorted(
            (rs for rs in self.store.list_kind("ReplicaSet", namespace)[0] if owned_by(rs, deployment)),
            key=revision,
        )
        if to_revision == 0:
            if len(history) < 2:
                raise ModelportError(
                    Code.FAILED_PRECONDITION, f'no rollout history found for deployment "{name}"'
                )
            target = history[-2]
        else:
            found = [rs for rs in history if revision(rs) == to_revision]
            if not found:
                raise ModelportError(
                    Code.FAILED_PRECONDITION, f"unable to find specified revision {to_revision} in history"
                )
            target = found[0]
        template = json.loads(json.dumps(target["spec"]["template"]))
        template["metadata"]["labels"].pop(HASH_LABEL, None)
        if template == deployment["spec"]["template"]:
            return {"deployment": deployment, "skipped": True, "revision": revision(target)}
        deployment["spec"]["template"] = template
        updated = self.store.update(deployment)  # with the resourceVersion read: a conflict, not a merge
        self._events.event(
            updated,
            "Normal",
            "DeploymentRollback",
            f'Rolled back deployment "{name}" to revision {revision(target)}',
        )
        return {"deployment": updated, "skipped": False, "revision": revision(target)}

    def metrics(self) -> bytes:
        return render_state(self._state_metrics)

    def top(self) -> Obj:
        return self._usage()

    def prometheus_targets(self) -> Objs:
        """Prometheus' HTTP service discovery: every running replica, labelled like Kubernetes'
        (and with its Deployment), and every Service's HAProxy, whose exporter answers on the
        Service's own port at HAPROXY_METRICS_PATH."""
        groups = []
        owners = pod_deployments(self.store.list_kind("ReplicaSet")[0])
        for pod in self.store.list_kind("Pod")[0]:
            meta, status = pod["metadata"], pod.get("status", {})
            if status.get("port") and status.get("phase") == "Running" and "deletionTimestamp" not in meta:
                # Prometheus' label names allow [a-zA-Z0-9_] only (pod-template-hash -> pod_template_hash).
                labels = {f"__meta_modelport_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
                          for k, v in meta.get("labels", {}).items()}  # fmt: skip
                groups.append({
                    "targets": [f"127.0.0.1:{status['port']}"],
                    "labels": {"namespace": meta["namespace"], "pod": meta["name"], "component": "replica",
                               "deployment": deployment_of(pod, owners), **labels},
                })  # fmt: skip
        for service in self.store.list_kind("Service")[0]:
            meta, status = service["metadata"], service.get("status") or {}
            if status.get("haproxyPid"):
                groups.append({
                    "targets": [f"127.0.0.1:{service['spec']['ports'][0]['port']}"],
                    "labels": {"namespace": meta["namespace"], "service": meta["name"],
                               "component": "loadbalancer", "__metrics_path__": HAPROXY_METRICS_PATH},
                })  # fmt: skip
        return groups

    def history(self, namespace: str, name: str) -> Obj:
        """What an HPA saw and decided at each sync (for `modelport plot`)."""
        self.get("HorizontalPodAutoscaler", namespace, name)
        return {"items": self._history(namespace, name)}

    def shutdown(self, keep_replicas: bool) -> None:
        self._shutdown(keep_replicas)


_SERVER_FIELDS = ("uid", "generation", "resourceVersion", "creationTimestamp", "deletionTimestamp")


__all__ = ["Api", "status_body"]
