"""The kubelet: makes every Pod object a supervised `modelport serve` process and writes back
what the process does (pid, ports, ready, restarts, the reason it is not ready) as the Pod's
status, with events on each change a person would want to know about.

A control plane that restarts after a crash finds the replicas the last one started by the pid in
each Pod's status (checked against the command line, which holds the Pod's own port-file path),
adopts those still running, and restarts the rest; any other replica process under this home is
an orphan and is stopped, so none is ever left running or started twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from modelport.clock import Clock
from modelport.controlplane.meta import Recorder, iso, selects, terminating
from modelport.controlplane.objects import ViewCache
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.launcher import Launcher
from modelport.dataplane.logs import LogPolicy
from modelport.dataplane.process import processes_with
from modelport.dataplane.supervisor import (
    BackOffPolicy,
    Prober,
    ProbeSpec,
    Replica,
    Supervisor,
    stop_replica,
)
from modelport.errors import ModelportError
from modelport.spec import ReplicaSpec

Obj = dict[str, Any]
log = logging.getLogger("modelport.controlplane")
AUTH_ON = "--auth=on"


def needs_keys(pod: Obj, services: list[Obj]) -> bool:
    """A model replica behind a NodePort or LoadBalancer Service (reachable beyond this machine)
    requires API keys; one behind ClusterIP Services only does not (its args may still ask)."""
    labels = pod["metadata"].get("labels", {})
    return any(
        s["metadata"]["namespace"] == pod["metadata"]["namespace"]
        and s["spec"].get("type", "ClusterIP") != "ClusterIP"
        and selects(s["spec"].get("selector", {}), labels)
        for s in services
    )


@dataclass(frozen=True)
class PodView:
    """What the kubelet reads of a Pod object, typed; `raw` is what it writes back (with a new
    status). The spec is parsed (pydantic, with spec.objects' defaults) only to start a replica."""

    namespace: str
    name: str
    retiring: bool
    status: Obj
    raw: Obj

    @classmethod
    def of(cls, raw: Obj) -> PodView:
        meta = raw["metadata"]
        return cls(meta["namespace"], meta["name"], terminating(raw), raw.get("status") or {}, raw)

    @cached_property
    def key(self) -> str:
        return f"{self.namespace}.{self.name}"

    def spec(self) -> ReplicaSpec:
        return ReplicaSpec.model_validate(self.raw["spec"])


class Kubelet:
    def __init__(
        self,
        store: ObjectStore,
        clock: Clock,
        recorder: Recorder,
        workdir: Path,
        backoff: BackOffPolicy | None = None,
        grace_seconds: float = 10.0,
        launcher: Launcher | None = None,
        prober: Prober | None = None,
        log_policy: LogPolicy | None = None,
        gateway_token: Callable[[str], Path] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self.workdir = workdir
        self._backoff = backoff or BackOffPolicy()
        # A gateway replica's token to the API (services:get in its namespace): a file's path.
        self._gateway_token = gateway_token
        self._grace = grace_seconds
        self.supervisor = Supervisor(clock, prober=prober, launcher=launcher, log_policy=log_policy)
        self._pods = ViewCache(PodView.of)
        self._written: dict[str, Obj] = {}
        # What each replica's status was last made of, once it is in the store: while that stays
        # the same, the status would be the same, and is not made again (3,000 Pods a round).
        self._reported: dict[str, tuple[Any, ...]] = {}
        self._exposed: list[Obj] = []  # the NodePort and LoadBalancer Services, this round
        self._stopping: set[str] = set()
        self._lock = threading.Lock()

    def _replica(self, pod: PodView, keys: bool = False) -> Replica:
        """`keys`: the replica must require API keys (`needs_keys`)."""
        spec = pod.spec()
        if spec.gateway is not None:
            front = spec.gateway
            args = ["--service", front.service, "--namespace", pod.namespace, "--model", front.model,
                    "--timeout", str(front.timeout_seconds)]  # fmt: skip
            if self._gateway_token is not None:
                args += ["--token-file", str(self._gateway_token(pod.namespace))]
        else:
            assert spec.model is not None  # validation: a replica serves a model or is a gateway
            args = ["--model_name", spec.model.name, "--model_base_path", spec.model.base_path]
            if keys:
                args.append(AUTH_ON)
        return Replica(
            pod.key,
            [*args, *spec.args],
            self.workdir,
            program="gateway" if spec.gateway is not None else "serve",
            readiness=ProbeSpec.of(spec.readiness_probe),
            liveness=ProbeSpec.of(spec.liveness_probe),
            memory_limit=spec.resources.limits.get("memory"),
            backoff=self._backoff,
        )

    def adopt(self) -> list[str]:
        """On start: take over the replicas a previous control plane left running; stop orphans."""
        pods, _ = self._store.list_kind("Pod")
        services, _ = self._store.list_kind("Service")
        adopted = []
        for pod in map(PodView.of, pods):
            status = pod.status
            replica = self._replica(pod, needs_keys(pod.raw, services))
            if status.get("pid") and self.supervisor.adopt(
                replica, status["pid"], status.get("port"), status.get("grpcPort")
            ):
                replica.restarts = int(status.get("restartCount", 0))
                replica.ready = bool(status.get("ready"))
                adopted.append(pod.key)
                self._written[pod.key] = status
        keep = {r.pid for r in self.supervisor.replicas.values()}
        for proc in processes_with(f" {self.workdir}/"):  # a port file of this home's replicas
            if proc.pid not in keep:
                proc.kill()
        return adopted

    def sync_all(self) -> None:
        """Start a replica for each new Pod, stop those of retiring or deleted Pods, probe, and
        report. One Pod that fails is logged and retried next round; the others go on."""
        pods = self._pods.views(self._store.list_shared("Pod"))
        # Only these can make a replica need keys (`needs_keys`): usually none of 1,000 Services.
        services = self._store.list_shared("Service")
        self._exposed = [s for s in services if s["spec"].get("type", "ClusterIP") != "ClusterIP"]
        for pod in pods:
            self._each(pod, self._start_or_stop)
        for key in set(self.supervisor.replicas) - {pod.key for pod in pods}:  # its Pod was deleted
            replica = self.supervisor.replicas.pop(key)
            self._reported.pop(key, None)
            threading.Thread(target=stop_replica, args=(replica, self._grace), daemon=True).start()
        self.supervisor.tick()
        for pod in pods:
            if not pod.retiring and pod.key in self.supervisor.replicas:
                self._each(pod, self._report)

    @staticmethod
    def _each(pod: PodView, work: Callable[[PodView], None]) -> None:
        try:
            work(pod)
        except Exception:  # one Pod's failure must not stop the others
            log.exception("Pod %s failed; retrying next round", pod.key)

    def _start_or_stop(self, pod: PodView) -> None:
        if pod.retiring:
            self._terminate(pod)
            return
        keys = not pod.raw["spec"].get("gateway") and needs_keys(pod.raw, self._exposed)
        current = self.supervisor.replicas.get(pod.key)
        if current is not None and keys and AUTH_ON not in current.args:
            # An exposed Service now selects it: restart it requiring keys (until then it is
            # kept out of that Service's endpoints).
            self._events.event(pod.raw, "Normal", "Restarting", "A NodePort/LoadBalancer Service selects "
                               "this replica: restarting it with API keys required")  # fmt: skip
            replica = self.supervisor.replicas.pop(pod.key)
            self._reported.pop(pod.key, None)
            threading.Thread(target=stop_replica, args=(replica, self._grace), daemon=True).start()
            current = None
        if current is None:
            self.supervisor.add(self._replica(pod, keys))

    def _report(self, pod: PodView) -> None:
        key = pod.key
        replica = self.supervisor.replicas[key]
        alive = replica.proc is not None
        seen = (alive, replica.pid, replica.port, replica.grpc_port, replica.ready, replica.restarts,
                replica.message, replica.last_exit)  # fmt: skip
        if self._reported.get(key) == seen:
            return
        before: Obj = self._written.get(key) or pod.status
        if not alive:
            reason = "CrashLoopBackOff" if replica.restarts else "ContainerCreating"
        else:
            reason = "ContainerCreating" if replica.port is None and not replica.ready else "Running"
        status: Obj = {
            "phase": "Running" if alive else "Pending",
            "reason": reason,
            "ready": replica.ready,
            "podIP": "127.0.0.1",
            "pid": replica.pid,
            "port": replica.port,
            "grpcPort": replica.grpc_port,
            "restartCount": replica.restarts,
            "logPath": str(replica.log_path),
            "apiKeys": AUTH_ON in replica.args,
            "startTime": before.get("startTime") or iso(self._clock.now()),
        }
        # When `ready` last changed, either way (the Ready condition's lastTransitionTime): the HPA
        # tells a replica that was ready and is not (counted) from one never ready yet (set aside).
        flipped = bool(before.get("ready")) != replica.ready
        status["readyTransitionTime"] = (None if flipped else before.get("readyTransitionTime")) or iso(
            self._clock.now()
        )
        if replica.ready:
            status["readySince"] = status["readyTransitionTime"]
        if replica.message:
            status["message"] = replica.message
        if replica.last_exit is not None:
            status["lastExitCode"] = replica.last_exit
        if status == before:
            self._reported[key] = seen
            return
        self._announce(pod.raw, replica, status, before)
        try:
            self._store.update_status({**pod.raw, "status": status})
        except ModelportError:
            return  # deleted meanwhile
        self._written[key] = status
        self._reported[key] = seen

    def _announce(self, pod: Obj, replica: Replica, status: Obj, before: Obj) -> None:
        """The events a person would want: Started, BackOff (a restart), Unhealthy (a new reason)."""
        if status["pid"] and status["pid"] != before.get("pid"):
            self._events.event(pod, "Normal", "Started", f"Started replica: pid {status['pid']}")
        if status["restartCount"] > int(before.get("restartCount", 0)):
            self._events.event(
                pod, "Warning", "BackOff", f"Back-off restarting failed replica: {replica.message}"
            )
        elif replica.message and replica.message != before.get("message"):
            self._events.event(pod, "Warning", "Unhealthy", replica.message)

    def _terminate(self, pod: PodView) -> None:
        """Stop the process (SIGTERM, grace, SIGKILL) off the loop, then delete the Pod."""
        key = pod.key
        with self._lock:
            if key in self._stopping:
                return
            self._stopping.add(key)
        replica = self.supervisor.replicas.pop(key, None)
        self._reported.pop(key, None)
        if replica is not None:
            self._events.event(pod.raw, "Normal", "Killing", "Stopping replica")

        def stop() -> None:
            try:
                if replica is not None:
                    stop_replica(replica, self._grace)
                self._store.delete("Pod", pod.namespace, pod.name)
            except ModelportError:
                pass
            finally:
                self._written.pop(key, None)
                with self._lock:
                    self._stopping.discard(key)

        threading.Thread(target=stop, daemon=True).start()

    def stop_all(self) -> None:
        self.supervisor.stop_all(self._grace)

    def processes(self) -> dict[str, tuple[int | None, int | None]]:
        """Each replica's pid and REST port, for the metrics collector."""
        return {key: (r.pid, r.port) for key, r in list(self.supervisor.replicas.items())}
