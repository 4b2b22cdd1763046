"""The Service controller: one load balancer (HAProxy) per Service on its stable port, its
servers kept equal to the ready Pods the Service selects.

A Pod leaves the rotation (drained: no new requests, those under way finish) as soon as it stops
being ready or is being retired, before the kubelet stops its process. The load balancer's pid is
kept in the Service's status, so a restarted control plane takes over the running HAProxy and
its traffic never stops.

Every pass writes each Service's `status.endpoints` (the Pods in its rotation, `[]` when none or
when its load balancer is down), so a reader never sees the key come and go. A Service whose load
balancer cannot start or be programmed gets a `LoadBalancerReady False` condition and an event;
the others are synced all the same.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.clock import Clock
from modelport.controlplane.meta import HASH_LABEL, LabelIndex, Recorder, selects, terminating
from modelport.controlplane.objects import identical
from modelport.controlplane.secrets import check_tls_files, tls_files, write_pem
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.balancer import Balancer, BalancerFactory
from modelport.dataplane.haproxy import MAX_WEIGHT, LoadBalancer
from modelport.dataplane.header_routes import header_pattern
from modelport.dataplane.process import processes_with
from modelport.errors import Code, ModelportError
from modelport.spec import HeaderMatch, Service

Obj = dict[str, Any]
RETRY_SECONDS = 5.0
log = logging.getLogger("modelport.controlplane")


@dataclass(frozen=True)
class BalancerConfig:
    port: int
    balance: str
    affinity: str
    per_replica: int
    # TLS: the certificate's and key's files and their modification times (a renewed
    # certificate restarts the load balancer with it); None: plain HTTP.
    tls: tuple[str, str, int] | None = None
    address: str = "127.0.0.1"

    @classmethod
    def of(cls, service: Service, secrets: Path | None = None) -> BalancerConfig:
        spec = service.spec
        tls = None
        if spec.tls is not None and secrets is not None:
            cert, key, _ = tls_files(spec.tls, service.metadata.namespace, secrets)
            tls = (str(cert), str(key), _mtime(cert) + _mtime(key))
        return cls(
            spec.ports[0].port, spec.load_balancing, spec.session_affinity, spec.max_requests_per_replica,
            tls, config_address(service),
        )  # fmt: skip


def exposed(service: Service) -> bool:
    """NodePort and LoadBalancer Services listen on every interface: beyond this machine."""
    return service.spec.type != "ClusterIP"


def config_address(service: Service) -> str:
    return "0.0.0.0" if exposed(service) else "127.0.0.1"


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def key_of(service: Service) -> str:
    return f"{service.metadata.namespace}.{service.metadata.name}"


def endpoints_for(service: Service, pods: list[Obj]) -> dict[str, int]:
    """The ready, not-retiring Pods the Service selects: name -> port. An exposed Service
    (`exposed`) takes only model replicas that require API keys (status.apiKeys), and gateways
    (a public page: they limit each client address, and call the model with a key of their own)."""
    ns = service.metadata.namespace
    keys_needed = exposed(service)
    return {
        pod["metadata"]["name"]: pod["status"]["port"]
        for pod in pods
        if pod["metadata"]["namespace"] == ns
        and selects(service.spec.selector, pod["metadata"].get("labels", {}))
        and not terminating(pod)
        and pod.get("status", {}).get("ready")
        and pod["status"].get("port")
        and (pod["status"].get("apiKeys") or not keys_needed or pod["spec"].get("gateway"))
    }


def canary_weights(
    endpoints: dict[str, int], pods: list[Obj], stable: str, canary: str, weight: int
) -> dict[str, int]:
    """HAProxy server weights that give the canary's replicas `weight`% of the requests together
    and the stable ones the rest, exactly, however many of each are in the rotation; replicas of
    any other revision get 0 (on their way out). Stable keeps them all when no canary is ready."""
    hashes = {p["metadata"]["name"]: p["metadata"].get("labels", {}).get(HASH_LABEL) for p in pods}
    stables = [n for n in endpoints if hashes.get(n) == stable]
    canaries = [n for n in endpoints if hashes.get(n) == canary and canary != stable]
    if not canaries or weight <= 0:
        each_stable, each_canary = 1, 0
    elif not stables or weight >= 100:
        each_stable, each_canary = 0, 1
    else:  # c*wc : s*ws = weight : 100-weight
        each_canary, each_stable = weight * len(stables), (100 - weight) * len(canaries)
        common = math.gcd(each_canary, each_stable)
        each_canary, each_stable = each_canary // common, each_stable // common
        top = max(each_canary, each_stable)
        if top > MAX_WEIGHT:
            each_canary = max(1, round(each_canary * MAX_WEIGHT / top))
            each_stable = max(1, round(each_stable * MAX_WEIGHT / top))
    weights = dict.fromkeys(endpoints, 0)
    weights.update(dict.fromkeys(stables, each_stable))
    weights.update(dict.fromkeys(canaries, each_canary))
    return weights


def header_routes(endpoints: dict[str, int], pods: list[Obj], st: Obj) -> tuple[dict[str, int], list[str]]:
    """A canary Rollout's header routes (its status' `headerRoutes`) as HAProxy wants them: the
    canary's replicas in the rotation, and one pattern per route, by name; none when aborted."""
    routes = st.get("headerRoutes") or {}
    canary = st.get("canaryHash")
    if not routes or st.get("abort") or not canary or canary == st.get("stableHash"):
        return {}, []
    hashes = {p["metadata"]["name"]: p["metadata"].get("labels", {}).get(HASH_LABEL) for p in pods}
    routed = {name: port for name, port in endpoints.items() if hashes.get(name) == canary}
    patterns = [header_pattern([HeaderMatch.model_validate(m) for m in routes[n]]) for n in sorted(routes)]
    return routed, patterns


def _rollout_of(service: Service, rollouts: list[Obj]) -> Obj | None:
    """The canary Rollout whose replicas this Service selects (and which has a stable revision yet)."""
    for rollout in rollouts:
        labels = (rollout["spec"]["template"].get("metadata") or {}).get("labels", {})
        if (
            rollout["metadata"]["namespace"] == service.metadata.namespace
            and "canary" in rollout["spec"]["strategy"]
            and selects(service.spec.selector, labels)
            and rollout.get("status", {}).get("stableHash")
        ):
            return rollout
    return None


def pinned_revision(service: Service, rollouts: list[Obj]) -> str | None:
    """A Service a Rollout names sees one revision: blue-green's active one the stable, its
    preview one the new; a canary's `stableService` the stable, its `canaryService` the canary
    (while one runs and is not aborted). With no new revision, or an aborted one, both see the
    stable: they never go empty while it serves. None for any other Service."""
    name = service.metadata.name
    for rollout in rollouts:
        strategy, st = rollout["spec"]["strategy"], rollout.get("status", {})
        if rollout["metadata"]["namespace"] != service.metadata.namespace or not st.get("stableHash"):
            continue
        stable, new = str(st["stableHash"]), str(st.get("canaryHash") or st["stableHash"])
        names = strategy.get("blueGreen") or {}
        active, preview = names.get("activeService"), names.get("previewService")
        if "canary" in strategy:
            active, preview = strategy["canary"].get("stableService"), strategy["canary"].get("canaryService")
            new = stable if st.get("abort") else new
        if name == active:
            return stable
        if name == preview:
            return new
    return None


def _condition(ready: bool, reason: str, message: str) -> Obj:
    status = "True" if ready else "False"
    return {"type": "LoadBalancerReady", "status": status, "reason": reason, "message": message}


class ServiceController:
    def __init__(
        self,
        store: ObjectStore,
        clock: Clock,
        recorder: Recorder,
        workdir: Path,
        balancers: BalancerFactory = LoadBalancer,
        secrets: Path | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._events = recorder
        self.workdir = workdir
        self._new_balancer = balancers
        self._secrets = secrets  # where `spec.tls.secretName`s are (None: TLS is not offered)
        self._balancers: dict[str, tuple[Balancer, BalancerConfig]] = {}
        self._failed_at: dict[str, float] = {}
        # Each Service parsed once per resourceVersion (pydantic), not every round.
        self._parsed: dict[tuple[str, str], Service] = {}
        self._pods: tuple[list[Obj], LabelIndex] = ([], LabelIndex([]))

    def _services(self) -> list[tuple[Obj, Service]]:
        services, _ = self._store.list_kind("Service")
        return [(raw, Service.model_validate(raw)) for raw in services]

    def adopt(self) -> list[str]:
        """On start: take over the load balancers a previous control plane left running."""
        adopted = []
        for raw, service in self._services():
            pid = service.status.get("haproxyPid")
            if pid:
                self._start(raw, service, adopt_pid=pid)
                if key_of(service) in self._balancers:
                    adopted.append(key_of(service))
        keep = {lb.pid for lb, _ in self._balancers.values()}
        for proc in processes_with(f"-f {self.workdir}/"):
            if proc.pid not in keep:
                proc.kill()
        return adopted

    def _start(self, raw: Obj, service: Service, adopt_pid: int | None = None) -> Balancer | None:
        key, config = key_of(service), BalancerConfig.of(service, self._secrets)
        try:
            pem = self._tls_pem(service, key)
            lb = self._new_balancer(
                self.workdir, key, config.port, config.balance, config.affinity,
                adopt_pid=adopt_pid, per_replica=config.per_replica, tls_pem=pem, address=config.address,
            )  # fmt: skip
        except (ModelportError, OSError, TimeoutError) as exc:
            self._failed_at[key] = self._clock.monotonic()
            message = exc.message if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {exc}"
            self._events.event(raw, "Warning", "FailedToStartLoadBalancer", message)
            self._write_status(
                raw, {"endpoints": [], "conditions": [_condition(False, "FailedToStart", message)]}
            )
            return None
        self._balancers[key] = (lb, config)
        return lb

    def _tls_pem(self, service: Service, key: str) -> Path | None:
        """The Service's certificate and key, checked, in the one file HAProxy reads (mode 600)."""
        tls = service.spec.tls
        if tls is None:
            return None
        if self._secrets is None:
            raise ModelportError(Code.FAILED_PRECONDITION, "spec.tls: this control plane offers no TLS")
        self.workdir.mkdir(parents=True, exist_ok=True)
        pem = check_tls_files(tls, service.metadata.namespace, self._secrets)
        return write_pem(self.workdir / f"{key}.tls.pem", pem)

    def sync_all(self) -> None:
        """One pass over every Service; one that fails is logged and retried next pass, the
        others are synced all the same."""
        listed = self._store.list_shared("Pod")
        if not identical(listed, self._pods[0]):  # no Pod changed: the index made last time is right
            self._pods = (listed, LabelIndex(listed))
        pods = self._pods[1]
        rollouts = self._store.list_shared("Rollout")
        keys, parsed = set(), {}
        for raw in self._store.list_shared("Service"):
            key = f"{raw['metadata']['namespace']}.{raw['metadata']['name']}"
            keys.add(key)
            version = (raw["metadata"]["uid"], raw["metadata"]["resourceVersion"])
            try:
                service = self._parsed.get(version) or Service.model_validate(raw)
                parsed[version] = service
                # Only the Pods it selects: at 1,000 Services over 3,000 Pods, 3 each, not 3,000.
                selected = pods.selected(service.metadata.namespace, service.spec.selector)
                self.sync(raw, service, selected, rollouts)
            except Exception:  # one Service's failure must not stop the others
                log.exception("Service %s failed; retrying next pass", key)
        self._parsed = parsed
        for key in list(self._balancers):
            if key not in keys:
                self._balancers.pop(key)[0].stop()

    def sync(self, raw: Obj, service: Service, pods: list[Obj], rollouts: list[Obj] | None = None) -> None:
        """`pods`: the Pods it selects (any others are passed over)."""
        lb = self._running(raw, service)
        if lb is None:  # failed to start (its status says so), waiting to try again
            if "endpoints" not in raw.get("status", {}):
                self._write_status(raw, {**raw.get("status", {}), "endpoints": []})
            return
        wanted = endpoints_for(service, pods)
        pinned = pinned_revision(service, rollouts or [])
        if pinned is not None:
            hashes = {p["metadata"]["name"]: p["metadata"].get("labels", {}).get(HASH_LABEL) for p in pods}
            wanted = {name: port for name, port in wanted.items() if hashes.get(name) == pinned}
        rollout = _rollout_of(service, rollouts or [])
        weights = None
        routed: dict[str, int] = {}
        routes: list[str] = []
        if rollout is not None and pinned is None:  # a pinned Service sees one revision: no weights
            st = rollout["status"]
            weights = canary_weights(
                wanted, pods, st["stableHash"], st.get("canaryHash", ""), int(st.get("canaryWeight", 0))
            )
            routed, routes = header_routes(wanted, pods, st)
        try:
            if wanted != lb.endpoints or (weights or dict.fromkeys(wanted, 1)) != lb.weights:
                lb.set_endpoints(wanted, weights=weights)
            if routed != lb.routed or (routes if routed else []) != lb.routes:
                lb.set_routes(routed, routes)
        except (ModelportError, OSError, TimeoutError) as exc:
            # More replicas than it has slots, or its runtime API did not answer.
            message = exc.message if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {exc}"
            self._events.event(raw, "Warning", "FailedToUpdateEndpoints", message)
        self._write_status(raw, {
            "loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]},
            "haproxyPid": lb.pid,
            "endpoints": [
                {"pod": name, "port": port, **({"weight": lb.weights.get(name, 1)} if weights else {})}
                for name, port in sorted(lb.endpoints.items())
            ],
            "conditions": [_condition(True, "Listening", f"{config_address(service)}:{lb.port}")],
        })  # fmt: skip

    def _running(self, raw: Obj, service: Service) -> Balancer | None:
        """The Service's load balancer: kept, replaced (it died, or its configuration changed),
        or started; None while a failed start waits RETRY_SECONDS to be tried again."""
        key = key_of(service)
        lb, config = self._balancers.get(key, (None, None))
        if lb is not None and not lb.alive():  # HAProxy died (killed, crashed): a new one
            message = f"HAProxy (pid {lb.pid}) exited; starting a new one on the same port"
            self._events.event(raw, "Warning", "LoadBalancerExited", message)
        if lb is not None and (not lb.alive() or config != BalancerConfig.of(service, self._secrets)):
            lb.stop()
            del self._balancers[key]
            lb = None
        if lb is not None:
            return lb
        if self._clock.monotonic() - self._failed_at.get(key, -1e9) < RETRY_SECONDS:
            return None
        lb = self._start(raw, service)
        if lb is not None:
            self._failed_at.pop(key, None)
            message = f"Listening on {config_address(service)}:{lb.port} (HAProxy pid {lb.pid})"
            self._events.event(raw, "Normal", "LoadBalancerStarted", message)
        return lb

    def _write_status(self, service: Obj, status: Obj) -> None:
        if service.get("status") == status:
            return
        with contextlib.suppress(ModelportError):  # deleted meanwhile
            self._store.update_status({**service, "status": status})

    def stop_all(self) -> None:
        for lb, _ in self._balancers.values():
            lb.stop()
        self._balancers.clear()
