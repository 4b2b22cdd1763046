"""The kubelet: makes every Pod object a supervised `modelport serve` process and writes back
what the process does (pid, ports, ready, restarts, the reason it is not ready) as the Pod's
status, with events on each change a person would want to know about.

A control plane that restarts after a crash finds the replicas the last one started by the pid in
each Pod's status (checked against the command line, which holds the Pod's own port-file path),
adopts those still running, and restarts the rest; any other replica process under this home is
an orphan and is stopped, so none is ever left running or started twice.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from modelport.clock import Clock
from modelport.controlplane.meta import Recorder, iso, terminating
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.process import processes_with
from modelport.dataplane.supervisor import BackOffPolicy, ProbeSpec, Replica, Supervisor, stop_replica
from modelport.errors import ModelportError

Obj = dict[str, Any]


def _probe(spec: Obj | None, default_path: str) -> ProbeSpec:
    spec = spec or {}
    return ProbeSpec(
        path=spec.get("path", default_path),
        period_seconds=float(spec.get("periodSeconds", 1)),
        timeout_seconds=float(spec.get("timeoutSeconds", 1)),
        initial_delay_seconds=float(spec.get("initialDelaySeconds", 0)),
        success_threshold=int(spec.get("successThreshold", 1)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
    )


class Kubelet:
    def __init__(
        self,
        store: ObjectStore,
        clock: Clock,
        recorder: Recorder,
        workdir: Path,
        backoff: BackOffPolicy | None = None,
        grace_seconds: float = 10.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self.workdir = workdir
        self._backoff = backoff or BackOffPolicy()
        self._grace = grace_seconds
        self.supervisor = Supervisor(clock)
        self._written: dict[str, Obj] = {}
        self._stopping: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def key(pod: Obj) -> str:
        return f"{pod['metadata']['namespace']}.{pod['metadata']['name']}"

    def _replica(self, pod: Obj) -> Replica:
        spec = pod["spec"]
        if spec.get("gateway"):
            front = spec["gateway"]
            args = ["--service", front["service"], "--namespace", pod["metadata"]["namespace"], "--model",
                    front["model"], "--timeout", str(front.get("timeoutSeconds", 10.0))]  # fmt: skip
        else:
            args = ["--model_name", spec["model"]["name"], "--model_base_path", spec["model"]["basePath"]]
        return Replica(
            self.key(pod),
            [*args, *spec.get("args", [])],
            self.workdir,
            program="gateway" if spec.get("gateway") else "serve",
            readiness=_probe(spec.get("readinessProbe"), "/readyz"),
            liveness=_probe(spec.get("livenessProbe"), "/healthz"),
            memory_limit=(spec.get("resources") or {}).get("limits", {}).get("memory"),
            backoff=self._backoff,
        )

    def adopt(self) -> list[str]:
        """On start: take over the replicas a previous control plane left running; stop orphans."""
        pods, _ = self._store.list_kind("Pod")
        adopted = []
        for pod in pods:
            status = pod.get("status", {})
            replica = self._replica(pod)
            if status.get("pid") and self.supervisor.adopt(
                replica, status["pid"], status.get("port"), status.get("grpcPort")
            ):
                replica.restarts = int(status.get("restartCount", 0))
                replica.ready = bool(status.get("ready"))
                adopted.append(self.key(pod))
                self._written[self.key(pod)] = status
        keep = {r.pid for r in self.supervisor.replicas.values()}
        for proc in processes_with(f" {self.workdir}/"):  # a port file of this home's replicas
            if proc.pid not in keep:
                proc.kill()
        return adopted

    def sync_all(self) -> None:
        pods, _ = self._store.list_kind("Pod")
        seen = set()
        for pod in pods:
            key = self.key(pod)
            seen.add(key)
            if terminating(pod):
                self._terminate(pod)
            elif key not in self.supervisor.replicas:
                self.supervisor.add(self._replica(pod))
        for key in list(self.supervisor.replicas):
            if key not in seen:  # its Pod was deleted outright
                replica = self.supervisor.replicas.pop(key)
                threading.Thread(target=stop_replica, args=(replica, self._grace), daemon=True).start()
        self.supervisor.tick()
        for pod in pods:
            if not terminating(pod) and self.key(pod) in self.supervisor.replicas:
                self._report(pod, self.supervisor.replicas[self.key(pod)])

    def _report(self, pod: Obj, replica: Replica) -> None:
        key = self.key(pod)
        before: Obj = self._written.get(key) or pod.get("status") or {}
        alive = replica.proc is not None
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
            "startTime": before.get("startTime") or iso(self._clock.now()),
        }
        if replica.ready:
            status["readySince"] = before.get("readySince") if before.get("ready") else iso(self._clock.now())
        if replica.message:
            status["message"] = replica.message
        if replica.last_exit is not None:
            status["lastExitCode"] = replica.last_exit
        if status == before:
            return
        if status["pid"] and status["pid"] != before.get("pid"):
            self._events.event(pod, "Normal", "Started", f"Started replica: pid {status['pid']}")
        if status["restartCount"] > int(before.get("restartCount", 0)):
            self._events.event(
                pod, "Warning", "BackOff", f"Back-off restarting failed replica: {replica.message}"
            )
        elif replica.message and replica.message != before.get("message"):
            self._events.event(pod, "Warning", "Unhealthy", replica.message)
        try:
            self._store.update_status({**pod, "status": status})
        except ModelportError:
            return  # deleted meanwhile
        self._written[key] = status

    def _terminate(self, pod: Obj) -> None:
        """Stop the process (SIGTERM, grace, SIGKILL) off the loop, then delete the Pod."""
        key = self.key(pod)
        with self._lock:
            if key in self._stopping:
                return
            self._stopping.add(key)
        replica = self.supervisor.replicas.pop(key, None)
        if replica is not None:
            self._events.event(pod, "Normal", "Killing", "Stopping replica")

        def stop() -> None:
            try:
                if replica is not None:
                    stop_replica(replica, self._grace)
                self._store.delete("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
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
