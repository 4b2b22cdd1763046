"""Replicas of the model server as supervised processes: started, probed, restarted with
Kubernetes' back-off, stopped gracefully.

A replica is `modelport serve` on 127.0.0.1 with ports the OS picks (the server writes them to a
port file, so there is no race for a port), its output appended to a log file kept within a size
limit while it runs (dataplane/logs.py), its memory limited where the OS allows.

Probes are HTTP GETs against the server's own health endpoints: readiness (`/readyz`: every
model has an AVAILABLE version) decides whether it takes traffic, liveness (`/healthz`) whether
it must be restarted. Probes run concurrently, each in a thread of its own (Kubernetes: a
goroutine per probe), and `tick()` never waits for one: it starts the probes that are due and
reads the answers that have come in. A probe that has not answered within its `timeoutSeconds`
(at most 60) has failed. So a replica that is frozen (stopped, or its event loop blocked) costs
nobody else anything: it turns unready after one timeout and is restarted after
`failureThreshold` of them, while every other replica is probed on time and the controllers go
on reconciling.

A replica that exits or fails liveness is restarted after the CrashLoopBackOff delay: 10 s,
doubled at each restart, at most 300 s, back to 10 s once it has run for 10 minutes —
Kubernetes' numbers, each settable.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

from modelport.clock import Clock
from modelport.dataplane.launcher import Launcher, Limits, Process, SubprocessLauncher
from modelport.dataplane.logs import LogPolicy, previous_log, retire, rotate_if_full
from modelport.dataplane.process import AdoptedProcess
from modelport.spec import Probe, quantity


@dataclass(frozen=True)
class BackOffPolicy:
    initial_seconds: float = 10.0
    max_seconds: float = 300.0
    reset_after_seconds: float = 600.0

    def delay(self, restarts: int) -> float:
        """The wait before restart number `restarts` + 1 (0 restarts so far: the initial delay)."""
        return float(min(self.max_seconds, self.initial_seconds * 2.0**restarts))


_PROBE = Probe()  # the defaults, stated once in spec.objects


@dataclass(frozen=True)
class ProbeSpec:
    path: str
    period_seconds: float = _PROBE.period_seconds
    timeout_seconds: float = _PROBE.timeout_seconds
    initial_delay_seconds: float = _PROBE.initial_delay_seconds
    success_threshold: int = _PROBE.success_threshold
    failure_threshold: int = _PROBE.failure_threshold

    @classmethod
    def of(cls, probe: Probe) -> ProbeSpec:
        return cls(
            probe.path, probe.period_seconds, probe.timeout_seconds, probe.initial_delay_seconds,
            probe.success_threshold, probe.failure_threshold,
        )  # fmt: skip


def http_probe(port: int, path: str, timeout: float) -> tuple[bool, str]:
    """Kubernetes' HTTP probe: success is 200 <= status < 400. The detail says why it failed
    (the status and the start of the body the server gave as its reason)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return bool(200 <= answer.status < 400), f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode(errors="replace").strip()
        return False, f"HTTP probe failed with statuscode: {exc.code}: {body}"
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            return False, timed_out(port, path, timeout)
        return False, f"Get http://127.0.0.1:{port}{path}: {reason}"


def timed_out(port: int, path: str, timeout: float) -> str:
    """Why a probe failed that got no answer in time (Kubernetes' words, and the time)."""
    return f"Get http://127.0.0.1:{port}{path}: context deadline exceeded (no answer within {timeout:g} s)"


ProbeResult = tuple[bool, str]  # (success, the detail: why it failed, in words)
ProbeFunction = Callable[[int, str, float], ProbeResult]  # (port, path, timeout)


class Prober(Protocol):
    """Starts one probe; its answer comes later, in the future returned (a probe may take up to
    its timeout). None: not started now (too many under way); the supervisor tries next round."""

    def start(self, port: int, path: str, timeout: float) -> Future[ProbeResult] | None: ...


class ThreadProber:
    """Each probe in a daemon thread of its own, at most `limit` at once. Daemon: a probe of a
    frozen replica waiting out its timeout never holds up the control plane's exit."""

    def __init__(self, probe: ProbeFunction = http_probe, limit: int = 256) -> None:
        self._probe = probe
        self._slots = threading.BoundedSemaphore(limit)

    def start(self, port: int, path: str, timeout: float) -> Future[ProbeResult] | None:
        if not self._slots.acquire(blocking=False):
            return None
        future: Future[ProbeResult] = Future()

        def run() -> None:
            try:
                future.set_result(self._probe(port, path, timeout))
            except Exception as exc:  # a probe function that fails is a failed probe
                future.set_result((False, f"probe error: {exc}"))
            finally:
                self._slots.release()

        threading.Thread(target=run, name=f"probe-{port}{path}", daemon=True).start()
        return future


@dataclass
class _Probing:
    """A probe under way: its answer to come, when it was started, what it probes."""

    future: Future[ProbeResult]
    started: float
    spec: ProbeSpec


def _memory_limit(text: str | None) -> int | None:
    """Kubernetes quantities: 512Mi, 2Gi, 1G, 100M, or bytes."""
    return int(quantity(text)) if text else None


def mirror_path(workdir: Path, name: str) -> Path:
    """Where replica `name` reads which canary to copy predictions to (server/mirror.py): the
    control plane writes it during a Rollout's setMirror steps."""
    return workdir / f"{name}.mirror.json"


@dataclass
class Replica:
    """One supervised process and what the supervisor knows about it."""

    name: str
    args: Sequence[str]  # `modelport serve` flags (model, ...), without ports
    workdir: Path
    readiness: ProbeSpec = field(default_factory=lambda: ProbeSpec("/readyz"))
    liveness: ProbeSpec = field(default_factory=lambda: ProbeSpec("/healthz"))
    memory_limit: str | None = None
    program: str = "serve"  # `modelport serve`, or `modelport gateway`
    backoff: BackOffPolicy = field(default_factory=BackOffPolicy)
    # state
    proc: Process | None = None
    port: int | None = None
    grpc_port: int | None = None
    ready: bool = False
    restarts: int = 0  # every restart, never reset: the Pod's restartCount, as in Kubernetes
    crash_streak: int = 0  # restarts since the back-off was last reset: what the delay doubles on
    started_at: float | None = None
    next_start_at: float = 0.0
    last_exit: int | None = None
    message: str = ""  # why it is not ready or not running, in words
    _ready_streak: int = 0
    _live_failures: int = 0
    _last_probe: float = -1e9
    _probing: dict[str, _Probing] = field(default_factory=dict)  # "readiness"/"liveness" under way

    @cached_property  # a Replica's name and workdir never change; its log is looked at every round
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def previous_log_path(self) -> Path:
        return previous_log(self.log_path)

    @property
    def probing(self) -> set[str]:
        """The kinds of probe under way ("readiness", "liveness"): started, not answered yet."""
        return set(self._probing)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class Supervisor:
    """Keeps a set of replicas running. `tick()` does one round of work; call it often."""

    def __init__(
        self,
        clock: Clock,
        command: Sequence[str] | None = None,
        prober: Prober | None = None,
        launcher: Launcher | None = None,
        log_policy: LogPolicy | None = None,
    ) -> None:
        self._clock = clock
        self._log_policy = log_policy or LogPolicy()
        self._launcher = launcher or SubprocessLauncher()
        self._command = list(command or [sys.executable, "-m", "modelport", "serve"])
        self._prober = prober or ThreadProber()
        self.replicas: dict[str, Replica] = {}

    def add(self, replica: Replica) -> Replica:
        replica.workdir.mkdir(parents=True, exist_ok=True)
        self.replicas[replica.name] = replica
        self._launch(replica, self._clock.monotonic())
        return replica

    def adopt(self, replica: Replica, pid: int, port: int | None, grpc_port: int | None) -> bool:
        """Take over a replica process started by an earlier supervisor (one that crashed): it is
        supervised from here on as if started here. False if that process is gone."""
        proc = AdoptedProcess.find(pid, str(replica.workdir / f"{replica.name}.ports.json"), group=True)
        if proc is None:
            return False
        replica.workdir.mkdir(parents=True, exist_ok=True)
        replica.proc, replica.port, replica.grpc_port = proc, port, grpc_port
        replica.started_at = self._clock.monotonic()
        self.replicas[replica.name] = replica
        return True

    def remove(self, name: str, grace_seconds: float = 10.0) -> None:
        replica = self.replicas.pop(name, None)
        if replica is not None:
            replica.ready = False
            stop_replica(replica, grace_seconds)

    def tick(self) -> None:
        now = self._clock.monotonic()
        for replica in list(self.replicas.values()):
            proc = replica.proc
            if proc is None:
                if now >= replica.next_start_at:
                    self._launch(replica, now)
                continue
            code = proc.poll()
            if code is not None:
                self._crashed(replica, code, now)
                continue
            rotate_if_full(replica.log_path, self._log_policy)  # while it runs, not only at restarts
            if replica.port is None:
                replica.port, replica.grpc_port = _read_ports(replica)
                if replica.port is None:
                    continue
            self._probe_round(replica, now)

    def _probe_round(self, replica: Replica, now: float) -> None:
        """Take in the answers that have come (or the timeouts), start the probes that are due
        (one of each kind under way at a time), and take in any of those already answered."""
        assert replica.port is not None and replica.started_at is not None
        self._answers(replica, now)
        if replica.proc is None:
            return  # restarted by its liveness probe
        period = min(replica.readiness.period_seconds, replica.liveness.period_seconds)
        if now - replica._last_probe >= period:
            replica._last_probe = now
            age = now - replica.started_at
            for kind, spec in (("readiness", replica.readiness), ("liveness", replica.liveness)):
                if age >= spec.initial_delay_seconds and kind not in replica._probing:
                    future = self._prober.start(replica.port, spec.path, spec.timeout_seconds)
                    if future is not None:
                        replica._probing[kind] = _Probing(future, now, spec)
            if replica.crash_streak and age >= replica.backoff.reset_after_seconds:
                replica.crash_streak = 0  # 10 min up: the next crash waits 10 s again
        self._answers(replica, now)

    def _answers(self, replica: Replica, now: float) -> None:
        for kind, probing in list(replica._probing.items()):
            if probing.future.done():
                ok, detail = probing.future.result()
            elif now - probing.started >= probing.spec.timeout_seconds:
                # the thread goes on until its own timeout; its answer is not wanted any more
                spec = probing.spec
                ok, detail = False, timed_out(replica.port or 0, spec.path, spec.timeout_seconds)
            else:
                continue
            del replica._probing[kind]
            if kind == "readiness":
                self._readiness(replica, ok, detail)
            else:
                self._liveness(replica, ok, detail, now)
                if replica.proc is None:
                    return  # restarted: the other kind's answer is about the old process

    @staticmethod
    def _readiness(replica: Replica, ok: bool, detail: str) -> None:
        if ok:
            replica._ready_streak += 1
            if replica._ready_streak >= replica.readiness.success_threshold:
                replica.ready = True
                replica.message = ""
        else:
            replica._ready_streak = 0
            replica.ready = False
            replica.message = f"Readiness probe failed: {detail}"

    def _liveness(self, replica: Replica, ok: bool, detail: str, now: float) -> None:
        if ok:
            replica._live_failures = 0
            return
        replica._live_failures += 1
        if replica._live_failures >= replica.liveness.failure_threshold:
            proc = replica.proc
            # not alive: restarted with back-off like a crash; stopped off the loop (a frozen
            # process takes the whole grace period to be killed)
            threading.Thread(target=stop_process, args=(proc, 1.0), daemon=True).start()
            self._crashed(replica, -1, now, f"Liveness probe failed: {detail}")

    def _crashed(self, replica: Replica, code: int, now: float, why: str = "") -> None:
        replica.last_exit = code
        replica.message = why or f"exited with {code}: {_last_line(replica.log_path)}"
        replica.proc = None
        replica._probing.clear()
        replica.ready = False
        replica.port = replica.grpc_port = None
        replica.next_start_at = now + replica.backoff.delay(replica.crash_streak)
        replica.crash_streak += 1
        replica.restarts += 1
        with open(replica.log_path, "ab") as log:
            log.write(f"\n[supervisor] exited with {code}; restart {replica.restarts} in "
                      f"{replica.next_start_at - now:.1f} s\n".encode())  # fmt: skip

    def _launch(self, replica: Replica, now: float) -> None:
        """Start it; a start that fails (no such program, out of processes) backs off like a crash."""
        try:
            self._start(replica)
        except OSError as exc:
            self._crashed(replica, -1, now, f"failed to start: {exc}")

    def _start(self, replica: Replica) -> None:
        port_file = replica.workdir / f"{replica.name}.ports.json"
        port_file.unlink(missing_ok=True)
        if replica.program == "gateway":
            cmd = [*self._command[:-1], "gateway", "--host", "127.0.0.1", "--port", "0", "--port-file",
                   str(port_file), *replica.args]  # fmt: skip
        else:
            mirror = mirror_path(replica.workdir, replica.name)
            cmd = [*self._command, "--host", "127.0.0.1", "--rest_api_port", "0", "--port", "0",
                   "--port_file", str(port_file), "--mirror_file", str(mirror), *replica.args]  # fmt: skip
        retire(replica.log_path, self._log_policy)  # the run before's log: `logs --previous`
        limits = Limits(memory_bytes=_memory_limit(replica.memory_limit))
        replica.proc = self._launcher.start(cmd, replica.log_path, limits)
        replica.started_at = self._clock.monotonic()
        replica.port = replica.grpc_port = None
        replica.ready = False
        replica._ready_streak = replica._live_failures = 0
        replica._last_probe = -1e9
        replica._probing.clear()

    def stop_all(self, grace_seconds: float = 10.0) -> None:
        """Stop every replica at once (each gets the whole grace period, not a share of it)."""
        stopping = [self.replicas.pop(name) for name in list(self.replicas)]
        threads = [threading.Thread(target=stop_replica, args=(r, grace_seconds)) for r in stopping]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _last_line(path: Path) -> str:
    """The last line the process wrote (its reason for exiting, usually)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 2000))
            lines = [x for x in log.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    lines = [x for x in lines if not x.startswith("[supervisor]")]
    return lines[-1][:300] if lines else ""


def _read_ports(replica: Replica) -> tuple[int | None, int | None]:
    try:
        ports = json.loads((replica.workdir / f"{replica.name}.ports.json").read_text())
    except (OSError, ValueError):
        return None, None
    return ports.get("rest_api_port"), ports.get("grpc_port")


def stop_replica(replica: Replica, grace_seconds: float) -> None:
    """SIGTERM (the server drains and exits), then SIGKILL after the grace period."""
    proc = replica.proc
    if proc is None or proc.poll() is not None:
        return
    stop_process(proc, grace_seconds)
    replica.proc = None
    replica.ready = False


def stop_process(proc: Process | None, grace_seconds: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


__all__ = [
    "BackOffPolicy", "ProbeFunction", "ProbeResult", "ProbeSpec", "Prober", "Replica", "Supervisor",
    "ThreadProber", "http_probe", "stop_process", "stop_replica",
]  # fmt: skip
