"""The control plane process: the object store, the API on loopback, and the controllers.

    home/controlplane/
        state.db        the objects (SQLite, WAL): all that must survive a crash
        token           the API's bearer token, mode 600
        api.json        {"url", "pid"} of the running control plane
        controlplane.log  its output when started with `up --detach`, rotated like a replica's
        lock            held while one runs (a second `modelport up` on the same home is refused)
        pods/           each replica's log and port file
        services/       each Service's HAProxy config, socket and log

The controllers run in one loop, in the order the work flows (Deployments, AnalysisRuns,
Rollouts -> ReplicaSets -> kubelet -> Services -> mirrors), woken by any change to the store and at least
every `sync_seconds` to probe. The kubelet and the Service controller catch per object: one Pod
or Service that fails is logged and the others go on; an exception escaping any other
controller ends only that controller's pass. Either way the next round retries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelport.clock import Clock, SystemClock
from modelport.controlplane.admission import Admission
from modelport.controlplane.analysis import AnalysisController
from modelport.controlplane.api import Api
from modelport.controlplane.apiserver import make_server
from modelport.controlplane.autoscaler import Autoscaler, PodMetrics
from modelport.controlplane.dashboard import History
from modelport.controlplane.dashboard_page import Dashboard
from modelport.controlplane.deployments import DeploymentController, ReplicaSetController
from modelport.controlplane.home import (
    check_token_file,
    gateway_token,
    make_state_dir,
    read_token,
    tokens_path,
)
from modelport.controlplane.kubelet import Kubelet
from modelport.controlplane.meta import Recorder
from modelport.controlplane.metrics import MetricsCollector
from modelport.controlplane.mirrors import MirrorController
from modelport.controlplane.rollouts import RolloutController
from modelport.controlplane.secrets import secrets_dir
from modelport.controlplane.services import ServiceController
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.logs import LogPolicy, rotate_if_full
from modelport.dataplane.supervisor import BackOffPolicy
from modelport.errors import Code, ModelportError
from modelport.security.audit import AuditLog, audit_path
from modelport.security.keys import ALL_MODELS, METRICS, ApiKey, SqliteKeyStore, new_token
from modelport.security.tokens import TokenFile
from modelport.spec import quantity

log = logging.getLogger("modelport.controlplane")


@dataclass(frozen=True)
class Options:
    port: int = 0
    sync_seconds: float = 0.2
    backoff_seconds: float = 10.0  # the first CrashLoopBackOff delay (Kubernetes: 10 s)
    grace_seconds: float = 10.0  # SIGTERM to SIGKILL when a replica is stopped
    metrics_seconds: float = 5.0  # how often each replica's CPU, memory and /metrics are sampled
    metrics_window: float = 30.0  # rates and latency quantiles are over this many seconds
    hpa_sync_seconds: float = 15.0  # how often each HorizontalPodAutoscaler decides (Kubernetes: 15)
    prometheus_url: str | None = None  # for Object/External metrics (PromQL)
    container_log_max_size: str = "10Mi"  # a replica's log is rotated beyond this (Kubernetes' name)
    container_log_max_files: int = 5  # the live log and 4 rotated parts
    model_roots: tuple[str, ...] = ()  # a Deployment's basePath must be inside one (empty: anywhere)
    allow_unsafe_args: bool = False  # take any flag in a Deployment's args (security/allowlist.py)


METRICS_KEY = "controlplane-metrics"
# The API's request threads wait for the GIL while a controllers' round holds it; the holder is
# asked to let go after this long. CPython's 5 ms, paid at each of the ~10 times a `get` takes the
# GIL back (accept, thread start, reads, SQLite, the answer), gave a p99 of 93 ms at 1,000
# Deployments with rounds back to back; 0.5 ms costs a round nothing while no request waits.
SWITCH_INTERVAL_SECONDS = 0.0005


def metrics_key(home: Path, now: float) -> str:
    """The control plane's own API key (scope `metrics`, every model) to read replicas that
    require keys: made on first start, given a new secret on every start (the secret lives only
    in this process's memory; the store keeps its hash)."""
    store = SqliteKeyStore(home / "registry.db")
    existing = [k for k in store.list_keys() if k.active(now) and k.name == METRICS_KEY]
    key_id, token, digest = new_token(existing[0].id if existing else None)
    if existing:
        store.update(replace(existing[0], digest=digest))
    else:
        store.create(ApiKey(key_id, METRICS_KEY, digest, (METRICS,), (ALL_MODELS,), created=now))
    return token


class ControlPlane:
    def __init__(self, home: Path, options: Options = Options(), clock: Clock | None = None) -> None:
        self.home = home
        self.dir = make_state_dir(home)
        token = read_token(home)
        check_token_file(home)
        os.environ["MODELPORT_HOME"] = str(home)  # replicas (gateways) find this control plane by it
        self.options = options
        self.clock = clock or SystemClock()
        self._lock_file = open(self.dir / "lock", "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelportError(
                Code.FAILED_PRECONDITION,
                f"a control plane is already running for {home} ({self.dir / 'api.json'}); "
                "`modelport down` first",
            ) from None
        self.store = ObjectStore(self.dir / "state.db", self.clock)
        self.recorder = Recorder(self.store, self.clock, "modelport-controlplane")
        backoff = BackOffPolicy(initial_seconds=options.backoff_seconds)
        self.deployments = DeploymentController(self.store, self.clock, self.recorder)
        self.replica_sets = ReplicaSetController(self.store, self.clock, self.recorder)
        self.rollouts = RolloutController(self.store, self.clock, self.recorder)
        self.analysis = AnalysisController(self.store, self.clock, self.recorder, options.prometheus_url)
        self._logs = LogPolicy(int(quantity(options.container_log_max_size)), options.container_log_max_files)
        self.kubelet = Kubelet(
            self.store, self.clock, self.recorder, self.dir / "pods", backoff, options.grace_seconds,
            log_policy=self._logs, gateway_token=lambda namespace: gateway_token(home, namespace),
        )  # fmt: skip
        self.mirrors = MirrorController(self.store, self.kubelet.workdir)
        secrets = secrets_dir(home)
        self.services = ServiceController(
            self.store, self.clock, self.recorder, self.dir / "services", secrets=secrets
        )
        self.metrics = MetricsCollector(
            self.clock, options.metrics_seconds, options.metrics_window, metrics_key(home, self.clock.now())
        )
        self.autoscaler = Autoscaler(
            self.store, self.clock, self.recorder, PodMetrics(self.metrics, options.prometheus_url),
            options.hpa_sync_seconds, self.dir / "hpa",
        )  # fmt: skip
        self.history = History()
        dashboard = Dashboard(lambda kind: self.store.list_kind(kind)[0], self.history, self._published)
        self.api = Api(
            self.store, self.recorder, self._usage, self._request_shutdown, self.autoscaler.history,
            Admission(secrets, tuple(Path(r) for r in options.model_roots), options.allow_unsafe_args),
            dashboard,
        )  # fmt: skip
        self._stop = threading.Event()
        self._keep_replicas = False
        self._server = make_server(
            self.api, token, options.port, TokenFile(tokens_path(home)), AuditLog(audit_path(home))
        )
        self.port = int(self._server.server_address[1])

    def _usage(self) -> dict[str, Any]:
        items = []
        for key in sorted(self.kubelet.processes()):
            usage = self.metrics.pod(key)
            if usage is not None:
                namespace, pod = key.split(".", 1)
                items.append({"pod": pod, "namespace": namespace, **usage})
        return {"items": items}

    def _published(self, model: str, version: int) -> dict[str, Any] | None:
        """The registry's record of a version (for the dashboard), None if it has none."""
        if not (self.home / "registry.db").exists():  # opening it would make one
            return None
        from modelport.registry import Registry

        try:
            return dataclasses.asdict(Registry.open(self.home).version(model, version))
        except ModelportError:
            return None

    def _record_history(self) -> None:
        kinds = ("Deployment", "Rollout", "ReplicaSet", "Pod", "HorizontalPodAutoscaler")
        objects = {k: self.store.list_kind(k)[0] for k in kinds}
        self.history.record(self.clock.now(), objects, self.metrics, lambda: self.store.list_kind("Event")[0])

    def _request_shutdown(self, keep_replicas: bool) -> None:
        self._keep_replicas = keep_replicas
        self._stop.set()
        self._server.shutdown()

    def reconcile_once(self) -> None:
        """One round of every controller; one that raises is logged and the next one runs."""
        controllers = (
            self.autoscaler, self.deployments, self.analysis, self.rollouts, self.replica_sets, self.kubelet,
            self.services, self.mirrors,
        )  # fmt: skip
        for controller in controllers:
            try:
                controller.sync_all()
            except Exception:  # one bad object must not stop the control plane
                log.exception("%s failed; retrying next round", type(controller).__name__)
        if self.metrics.collect(self.kubelet.processes()):
            try:
                self._record_history()
            except Exception:  # the dashboard's memory must not stop the controllers
                log.exception("recording the dashboard's history failed")
        # Its own log too (`up --detach` makes it its output), by the replicas' rule: a Pod that
        # fails every round logs a traceback every round, and that must not fill the disk either.
        rotate_if_full(self.dir / "controlplane.log", self._logs)

    def _controllers(self) -> None:
        adopted = self.kubelet.adopt()
        services = self.services.adopt()
        log.info("adopted %d replicas and %d load balancers", len(adopted), len(services))
        cursor = self.store.resource_version()
        compacted = self.clock.monotonic()
        while not self._stop.is_set():
            self.reconcile_once()
            if self.clock.monotonic() - compacted > 60:
                compacted = self.clock.monotonic()
                self.store.compact()
            # Wake on the next change to any object, or after sync_seconds to probe.
            for _change in self.store.watch(
                cursor, timeout=self.options.sync_seconds, poll=self.options.sync_seconds
            ):
                break
            cursor = self.store.resource_version()

    def run(self) -> None:
        """Serve until shut down (the API's /api/shutdown, SIGTERM or SIGINT)."""
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        worker = threading.Thread(target=self._controllers, name="controllers", daemon=True)
        worker.start()
        info = self.dir / "api.json"
        tmp = info.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": f"http://127.0.0.1:{self.port}", "pid": os.getpid()}))
        tmp.replace(info)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(
                signum, lambda *_: threading.Thread(target=self._request_shutdown, args=(False,)).start()
            )
        log.info("control plane listening on http://127.0.0.1:%d", self.port)
        if self.options.allow_unsafe_args:
            log.warning(
                "--allow-unsafe-args: apply takes any flag in a Deployment's args (--allow_pickle, ...)"
            )
        if not self.options.model_roots:
            log.info("no --model-root: a Deployment's basePath may be any folder")
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            began = time.monotonic()
            self._stop.set()
            worker.join(30)
            if not self._keep_replicas:
                log.info("stopping %d replicas", len(self.kubelet.supervisor.replicas))
                self.services.stop_all()
                self.kubelet.stop_all()
            log.info("shut down in %.1f s", time.monotonic() - began)
            with contextlib.suppress(FileNotFoundError):
                if json.loads(info.read_text()).get("pid") == os.getpid():
                    info.unlink()
            self._server.server_close()
            log.info("control plane stopped%s", " (replicas kept running)" if self._keep_replicas else "")
