"""The Service controller: one load balancer (HAProxy) per Service on its stable port, its
servers kept equal to the ready Pods the Service selects.

A Pod leaves the rotation (drained: no new requests, those under way finish) as soon as it stops
being ready or is being retired, before the kubelet stops its process. The load balancer's pid is
kept in the Service's status, so a restarted control plane takes over the running HAProxy and
its traffic never stops.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from modelport.clock import Clock
from modelport.controlplane.meta import Recorder, selects, terminating
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.haproxy import LoadBalancer
from modelport.dataplane.process import processes_with
from modelport.errors import ModelportError

Obj = dict[str, Any]
RETRY_SECONDS = 5.0


def _config(service: Obj) -> tuple[int, str, str, int]:
    spec = service["spec"]
    return (
        int(spec["ports"][0]["port"]),
        spec.get("loadBalancing", "roundRobin"),
        spec.get("sessionAffinity", "None"),
        int(spec.get("maxRequestsPerReplica", 4)),
    )


def endpoints_for(service: Obj, pods: list[Obj]) -> dict[str, int]:
    """The ready, not-retiring Pods the Service selects: name -> port."""
    ns = service["metadata"]["namespace"]
    return {
        pod["metadata"]["name"]: pod["status"]["port"]
        for pod in pods
        if pod["metadata"]["namespace"] == ns
        and selects(service["spec"]["selector"], pod["metadata"].get("labels", {}))
        and not terminating(pod)
        and pod.get("status", {}).get("ready")
        and pod["status"].get("port")
    }


class ServiceController:
    def __init__(self, store: ObjectStore, clock: Clock, recorder: Recorder, workdir: Path) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self.workdir = workdir
        self._balancers: dict[str, tuple[LoadBalancer, tuple[int, str, str, int]]] = {}
        self._failed_at: dict[str, float] = {}

    @staticmethod
    def key(service: Obj) -> str:
        return f"{service['metadata']['namespace']}.{service['metadata']['name']}"

    def adopt(self) -> list[str]:
        """On start: take over the load balancers a previous control plane left running."""
        services, _ = self._store.list_kind("Service")
        adopted = []
        for service in services:
            pid = service.get("status", {}).get("haproxyPid")
            if pid:
                self._start(service, adopt_pid=pid)
                if self.key(service) in self._balancers:
                    adopted.append(self.key(service))
        keep = {lb.proc.pid for lb, _ in self._balancers.values()}
        for proc in processes_with(f"-f {self.workdir}/"):
            if proc.pid not in keep:
                proc.kill()
        return adopted

    def _start(self, service: Obj, adopt_pid: int | None = None) -> LoadBalancer | None:
        key = self.key(service)
        port, balance, affinity, per_replica = config = _config(service)
        try:
            lb = LoadBalancer(
                self.workdir, key, port, balance, affinity, adopt_pid=adopt_pid, per_replica=per_replica
            )
        except ModelportError as exc:
            self._failed_at[key] = self._clock.monotonic()
            self._events.event(service, "Warning", "FailedToStartLoadBalancer", exc.message)
            self._write_status(
                service,
                {
                    "conditions": [
                        {
                            "type": "LoadBalancerReady",
                            "status": "False",
                            "reason": "FailedToStart",
                            "message": exc.message,
                        }
                    ]
                },
            )
            return None
        self._balancers[key] = (lb, config)
        return lb

    def sync_all(self) -> None:
        services, _ = self._store.list_kind("Service")
        pods, _ = self._store.list_kind("Pod")
        keys = set()
        for service in services:
            key = self.key(service)
            keys.add(key)
            lb, config = self._balancers.get(key, (None, None))
            if lb is not None and lb.proc.poll() is not None:  # HAProxy died (killed, crashed): a new one
                message = f"HAProxy (pid {lb.proc.pid}) exited; starting a new one on the same port"
                self._events.event(service, "Warning", "LoadBalancerExited", message)
                lb.stop()
                del self._balancers[key]
                lb = None
            if lb is not None and config != _config(service):
                lb.stop()
                del self._balancers[key]
                lb = None
            if lb is None:
                if self._clock.monotonic() - self._failed_at.get(key, -1e9) < RETRY_SECONDS:
                    continue
                lb = self._start(service)
                if lb is None:
                    continue
                self._events.event(
                    service,
                    "Normal",
                    "LoadBalancerStarted",
                    f"Listening on 127.0.0.1:{lb.port} (HAProxy pid {lb.proc.pid})",
                )
            wanted = endpoints_for(service, pods)
            if wanted != lb.endpoints:
                try:
                    lb.set_endpoints(wanted)
                except ModelportError as exc:  # more replicas than the load balancer has slots
                    self._events.event(service, "Warning", "FailedToUpdateEndpoints", exc.message)
            self._write_status(
                service,
                {
                    "loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]},
                    "haproxyPid": lb.proc.pid,
                    "endpoints": [{"pod": name, "port": port} for name, port in sorted(wanted.items())],
                    "conditions": [
                        {
                            "type": "LoadBalancerReady",
                            "status": "True",
                            "reason": "Listening",
                            "message": f"127.0.0.1:{lb.port}",
                        }
                    ],
                },
            )
        for key in list(self._balancers):
            if key not in keys:
                self._balancers.pop(key)[0].stop()

    def _write_status(self, service: Obj, status: Obj) -> None:
        if service.get("status") == status:
            return
        with contextlib.suppress(ModelportError):  # deleted meanwhile
            self._store.update_status({**service, "status": status})

    def stop_all(self) -> None:
        for lb, _ in self._balancers.values():
            lb.stop()
        self._balancers.clear()
