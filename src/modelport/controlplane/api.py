"""The control plane's HTTP API, on loopback, in Kubernetes' shape:

    GET    /apis/modelport/v1/namespaces/{ns}/{plural}            list (?watch=true&resourceVersion=N)
    GET    /apis/modelport/v1/{plural}                            list, every namespace
    POST   /apis/modelport/v1/namespaces/{ns}/{plural}            create
    GET    /apis/modelport/v1/namespaces/{ns}/{plural}/{name}     read
    PUT    /apis/modelport/v1/namespaces/{ns}/{plural}/{name}     replace (resourceVersion, if sent: current)
    DELETE /apis/modelport/v1/namespaces/{ns}/{plural}/{name}     delete
    POST   /apis/modelport/v1/namespaces/{ns}/deployments/{name}/rollback   {"toRevision": N}
    GET    /api/top                                               CPU, memory, req/s per replica
    GET    /api/prometheus/targets                                replicas, for Prometheus' http_sd
    GET    /api/history/{ns}/{hpa}                                an HPA's decisions over time
    POST   /api/shutdown                                          {"keepReplicas": bool}
    GET    /healthz                                               (the only path without the token)

Every request but /healthz carries `Authorization: Bearer <token>`, the token being in a file
only its user can read. Errors are Kubernetes `Status` objects with the HTTP code and a reason.
People write Deployments and Services; ReplicaSets, Pods and Events are the controllers' (a Pod
may be deleted: its ReplicaSet replaces it).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelport.controlplane.meta import (
    HASH_LABEL,
    KINDS,
    Recorder,
    owned_by,
    revision,
)
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.ports import service_port
from modelport.errors import Code, ModelportError
from modelport.spec import parse_object, to_dict

Obj = dict[str, Any]
Objs = list[Obj]  # (Api has a method named `list`)
PREFIX = "/apis/modelport/v1"
USER_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler")
REASONS = {
    Code.NOT_FOUND: "NotFound",
    Code.ALREADY_EXISTS: "AlreadyExists",
    Code.ABORTED: "Conflict",
    Code.INVALID_ARGUMENT: "Invalid",
    Code.UNAUTHENTICATED: "Unauthorized",
    Code.FAILED_PRECONDITION: "BadRequest",
    Code.UNIMPLEMENTED: "MethodNotAllowed",
}


def status_body(exc: ModelportError) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": exc.message,
        "reason": REASONS.get(exc.code, "InternalError"),
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
    ) -> None:
        self.store = store
        self._events = recorder
        self._usage = usage
        self._shutdown = shutdown
        self._history = history

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
                f"{kind}s are made by the control plane; write a Deployment or a Service",
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
        return to_dict(parse_object(body))

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

    def top(self) -> Obj:
        return self._usage()

    def prometheus_targets(self) -> Objs:
        """Prometheus' HTTP service discovery: every running replica, labelled like Kubernetes'."""
        groups = []
        for pod in self.store.list_kind("Pod")[0]:
            meta, status = pod["metadata"], pod.get("status", {})
            if status.get("port") and status.get("phase") == "Running" and "deletionTimestamp" not in meta:
                # Prometheus' label names allow [a-zA-Z0-9_] only (pod-template-hash -> pod_template_hash).
                labels = {f"__meta_modelport_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
                          for k, v in meta.get("labels", {}).items()}  # fmt: skip
                groups.append({
                    "targets": [f"127.0.0.1:{status['port']}"],
                    "labels": {"namespace": meta["namespace"], "pod": meta["name"], **labels},
                })  # fmt: skip
        return groups

    def history(self, namespace: str, name: str) -> Obj:
        """What an HPA saw and decided at each sync (for `modelport plot`)."""
        self.get("HorizontalPodAutoscaler", namespace, name)
        return {"items": self._history(namespace, name)}

    def shutdown(self, keep_replicas: bool) -> None:
        self._shutdown(keep_replicas)


_SERVER_FIELDS = ("uid", "generation", "resourceVersion", "creationTimestamp", "deletionTimestamp")


def make_server(api: Api, token: str, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Obj | list[Obj]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Obj:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise ModelportError(Code.INVALID_ARGUMENT, f"the request body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise ModelportError(Code.INVALID_ARGUMENT, "the request body must be a JSON object")
            return body

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            try:
                if url.path == "/healthz":
                    self._send(200, {"status": "ok"})
                    return
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    raise ModelportError(
                        Code.UNAUTHENTICATED, "a valid bearer token is needed (see `modelport up`)"
                    )
                self._route(method, url.path, query)
            except ModelportError as exc:
                self._send(exc.http_status, status_body(exc))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _route(self, method: str, path: str, query: dict[str, str]) -> None:
            if path == "/api/top" and method == "GET":
                self._send(200, api.top())
                return
            if path == "/api/prometheus/targets" and method == "GET":
                self._send(200, api.prometheus_targets())
                return
            if path.startswith("/api/history/") and method == "GET":  # /api/history/{ns}/{hpa}
                parts = path.split("/")
                if len(parts) != 5:
                    raise ModelportError(Code.NOT_FOUND, f"no such path: {path}")
                self._send(200, api.history(parts[3], parts[4]))
                return
            if path == "/api/shutdown" and method == "POST":
                keep = bool(self._body().get("keepReplicas", False))
                self._send(200, {"status": "stopping", "keepReplicas": keep})
                threading.Thread(target=api.shutdown, args=(keep,), daemon=True).start()
                return
            if not path.startswith(PREFIX + "/"):
                raise ModelportError(Code.NOT_FOUND, f"no such path: {path}")
            parts = path[len(PREFIX) + 1 :].split("/")
            namespace: str | None = None
            if parts[0] == "namespaces" and len(parts) >= 3:
                namespace, parts = parts[1], parts[2:]
            kind = KINDS.get(parts[0])
            if kind is None:
                raise ModelportError(Code.NOT_FOUND, f'the server doesn\'t have a resource type "{parts[0]}"')
            name = parts[1] if len(parts) > 1 else None
            if len(parts) == 3 and parts[2] == "rollback" and kind == "Deployment" and method == "POST":
                assert namespace is not None and name is not None
                to = self._body().get("toRevision", 0)
                if not isinstance(to, int) or to < 0:
                    raise ModelportError(Code.INVALID_ARGUMENT, "toRevision: must be a non-negative integer")
                self._send(200, api.rollback(namespace, name, to))
            elif len(parts) > 2:
                raise ModelportError(Code.NOT_FOUND, f"no such path: {path}")
            elif name is None and method == "GET":
                if query.get("watch") in ("true", "1"):
                    self._watch(kind, namespace, query)
                else:
                    self._send(200, api.list(kind, namespace))
            elif namespace is None:
                raise ModelportError(Code.NOT_FOUND, f"{method} {path}: a namespace is needed")
            elif name is None and method == "POST":
                self._send(201, api.create(kind, namespace, self._body()))
            elif name is not None and method == "GET":
                self._send(200, api.get(kind, namespace, name))
            elif name is not None and method == "PUT":
                self._send(200, api.replace(kind, namespace, name, self._body()))
            elif name is not None and method == "DELETE":
                self._send(200, api.delete(kind, namespace, name))
            else:
                raise ModelportError(Code.UNIMPLEMENTED, f"{method} is not allowed on {path}")

        def _watch(self, kind: str, namespace: str | None, query: dict[str, str]) -> None:
            """Every change after resourceVersion, one JSON line each, until timeoutSeconds idle."""
            since = int(query.get("resourceVersion") or api.store.resource_version())
            timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
            name = query.get("fieldSelector", "").removeprefix("metadata.name=") or None
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for change in api.store.watch(since, (kind,), timeout=timeout):
                meta = change.object["metadata"]
                if (namespace and meta["namespace"] != namespace) or (name and meta["name"] != name):
                    continue
                self.wfile.write(json.dumps({"type": change.type, "object": change.object}).encode() + b"\n")
                self.wfile.flush()

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


__all__ = ["Api", "make_server", "status_body"]
