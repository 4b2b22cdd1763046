"""A Service's data plane: one HAProxy process (Debian's) per Service, its replicas changed live
through HAProxy's runtime API, never by a reload.

    lb = LoadBalancer(workdir, "mnist", port=8501, balance="roundRobin", affinity="None")
    lb.set_endpoints({"mnist-7d9-0": 40123, "mnist-7d9-1": 40124})   # add, keep, drain, remove

Requests are HTTP; a request whose replica dies before answering is sent again to another one
(`retry-on all-retryable-errors` with the request buffered, `option redispatch`): model
predictions have no side effects, so retrying them is safe, and a replica crash costs no client
request. A replica leaving the rotation is first set to `drain` (no new requests, those under
way finish), then removed. HAProxy's own health check on `/readyz` takes a replica that stops
being ready out of the rotation even before the control plane notices.

Header routes (a Rollout's setHeaderRoute): a second backend holds the canary's replicas, and a
request whose header block matches one of the regexes in the Service's routes map goes there
while one of them is up (else to the weighted rotation, as any other request):

    lb.set_routes({"mnist-5f-0": 40125}, [header_pattern(...)])   # dataplane/header_routes.py

The map is replaced live (`prepare map` / `add map` / `commit map`: atomically), never reloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelport.dataplane.ports import free_port
from modelport.dataplane.process import AdoptedProcess
from modelport.errors import Code, ModelportError

BALANCE = {"roundRobin": "roundrobin", "random": "random", "leastConnection": "leastconn"}
BACKEND = "replicas"
SLOT, SLOTS, PARKED_PORT = "slot", 64, 1
ROUTED, ROUTE_SLOT, ROUTE_SLOTS = "canary", "route", 16  # the header routes' backend
HAPROXY_METRICS_PATH = "/haproxy/metrics"
MAX_WEIGHT = 256  # HAProxy's


def render_config(
    socket_path: Path, port: int, balance: str, affinity: str, health_path: str, per_replica: int,
    tls_pem: Path | None = None, address: str = "127.0.0.1", routes_map: Path | None = None,
) -> str:  # fmt: skip
    """HAProxy's configuration for one Service, listening on `address`; with `tls_pem`
    (certificate and key in one file) its port serves HTTPS (TLS ends here: the replicas behind it
    are plain HTTP on loopback)."""
    tls = f" ssl crt {tls_pem} alpn http/1.1" if tls_pem is not None else ""
    stick = (
        "    stick-table type ip size 200k expire 30m\n    stick on src\n" if affinity == "ClientIP" else ""
    )
    routed = ""
    if routes_map is not None:
        # The cheap test first: with no routed replica (no header route), the header block is
        # never assembled nor matched.
        routed = (f"    use_backend {ROUTED} if {{ nbsrv({ROUTED}) gt 0 }} "
                  f"{{ req.hdrs,map_reg({routes_map}) -m found }}\n")  # fmt: skip
    checks = f"""    option httpchk GET {health_path}
    # A dead replica is out at its first connection error (observe layer4); a busy one is not
    # mistaken for dead (checks get 2 s).
    timeout check 2s
    # At most `per_replica` requests at once on a replica; the rest wait in HAProxy's fair queue
    # (a replica's single event loop answers a few at a time faster than many: p99 /10).
    default-server inter 500ms fall 2 rise 1 maxconn {per_replica}
    default-server observe layer4 error-limit 1 on-error mark-down
"""
    return f"""global
    stats socket {socket_path} mode 600 level admin
    maxconn 4096
    # One thread: on a machine whose cores the replicas keep busy, a second one costs more in
    # hand-offs than it adds (bench/RESULTS.md).
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 30s
    timeout http-request 30s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    option http-buffer-request
    option http-keep-alive
frontend service
    bind {address}:{port}{tls}
    # HAProxy's own Prometheus exporter, on the Service's port at a path no model server has.
    http-request use-service prometheus-exporter if {{ path {HAPROXY_METRICS_PATH} }}
{routed}    default_backend {BACKEND}
backend {BACKEND}
    balance {BALANCE[balance]}
{stick}{checks}    # Replicas come and go through the runtime API into these slots, parked in maintenance when
    # free (servers declared here keep their idle connections for reuse; `add server` ones do not,
    # which costs a quarter of the throughput: bench/RESULTS.md).
    server-template {SLOT} 1-{SLOTS} 127.0.0.1:{PARKED_PORT} disabled check
backend {ROUTED}
    balance roundrobin
{checks}    server-template {ROUTE_SLOT} 1-{ROUTE_SLOTS} 127.0.0.1:{PARKED_PORT} disabled check
"""


HAPROXY_MAX_SOCKET_PATH = 97


def _socket_path(path: Path) -> Path:
    """Unix socket paths are limited to 107 bytes, and HAProxy takes at most 97 (it refuses a
    longer one: "socket path ... too long (max 97)"); a longer one moves to a short name in the
    temporary folder, derived from the long one, so the same Service always finds its socket."""
    if len(str(path)) <= HAPROXY_MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"modelport-{digest}.sock"


@dataclass
class ServerState:
    name: str
    port: int
    status: str  # UP, DOWN, MAINT, DRAIN, ...
    current_sessions: int
    total_sessions: int = 0


class _Pool:
    """One backend's replicas, in its slots: replica name -> slot, port and weight."""

    def __init__(self, backend: str, slot: str, size: int) -> None:
        self.backend, self.slot, self.size = backend, slot, size
        self.slots: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        # the weight set; empty after adoption, so the next call sets them all
        self.weights: dict[str, int] = {}

    def free(self) -> list[str]:
        taken = set(self.slots.values())
        return [f"{self.slot}{i}" for i in range(1, self.size + 1) if f"{self.slot}{i}" not in taken]


class LoadBalancer:
    def __init__(
        self,
        workdir: Path,
        name: str,
        port: int = 0,
        balance: str = "roundRobin",
        affinity: str = "None",
        health_path: str = "/readyz",
        *,
        adopt_pid: int | None = None,
        per_replica: int = 4,
        tls_pem: Path | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        """Start HAProxy for a Service; or, given `adopt_pid`, take over the one an earlier control
        plane started with this same configuration, if it still runs (its traffic never stops)."""
        # Debian puts it in /usr/sbin, which a non-root PATH often leaves out.
        binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
        if binary is None:
            raise ModelportError(
                Code.FAILED_PRECONDITION, "HAProxy is not installed: apt-get install haproxy (Debian)"
            )
        if balance not in BALANCE:
            raise ModelportError(
                Code.INVALID_ARGUMENT, f"loadBalancing {balance!r} is not one of {sorted(BALANCE)}"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port or free_port()
        self.socket_path = _socket_path(workdir / f"{name}.haproxy.sock")
        self.config_path = workdir / f"{name}.haproxy.cfg"
        self.log_path = workdir / f"{name}.haproxy.log"
        self.slots_path = workdir / f"{name}.slots.json"
        self.routes_path = workdir / f"{name}.routes.map"
        config = render_config(
            self.socket_path, self.port, balance, affinity, health_path, per_replica, tls_pem, address,
            self.routes_path,
        )  # fmt: skip
        self._pool = _Pool(BACKEND, SLOT, SLOTS)
        self._routed = _Pool(ROUTED, ROUTE_SLOT, ROUTE_SLOTS)
        self._routes: list[str] = []
        self.proc: subprocess.Popen[bytes] | AdoptedProcess
        adopted = AdoptedProcess.find(adopt_pid, str(self.config_path))
        if adopted is not None and self.config_path.exists() and self.config_path.read_text() == config:
            self.proc = adopted
            try:
                self._pool.ports = self._read_ports()
                self._replace_routes([])  # routes and their replicas are set again on the next call
                for slot in self._routed.free():
                    self._park(self._routed, slot)
                return
            except (OSError, ValueError, StopIteration):
                adopted.kill()  # alive but not answering its runtime API: replace it
                adopted.wait(5)
        self.config_path.write_text(config)
        self.routes_path.write_text("")
        self._save_slots()
        check = subprocess.run([binary, "-c", "-f", str(self.config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            said = (check.stderr + check.stdout).splitlines()
            reasons = [line.strip() for line in said if "[ALERT]" in line] or [
                line.strip() for line in said if line.strip()
            ]
            raise ModelportError(
                Code.INTERNAL,
                f"HAProxy refused its config {self.config_path} (exit {check.returncode}): "
                f"{' '.join(reasons[:3]) or 'no reason given'}",
            )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-db", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        # Started once its runtime API accepts a connection: the socket file appears at bind(),
        # a moment before listen(), and a busy machine stretches that moment (a command sent in it
        # was refused).
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ModelportError(Code.INTERNAL, f"HAProxy did not start; see {self.log_path}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(self.socket_path))
            except OSError:  # not there yet, or not listening yet
                return False
        return True

    # -- the runtime API --

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def _read_ports(self) -> dict[str, int]:
        """On adoption: the replicas in the rotation, from the slot map written beside the config,
        checked against what HAProxy has (`show servers state`: the slot's port, not in maintenance)."""
        lines = self.command(f"show servers state {BACKEND}").splitlines()
        header = next(x for x in lines if x.startswith("#")).lstrip("# ").split()
        live = {}
        for line in lines:
            if line and not line.startswith("#") and len(line.split()) == len(header):
                row = dict(zip(header, line.split(), strict=True))
                if not int(row["srv_admin_state"]) & 0x01 and int(row["srv_port"]) != PARKED_PORT:
                    live[row["srv_name"]] = int(row["srv_port"])
        try:
            saved = json.loads(self.slots_path.read_text())
        except (OSError, ValueError):
            saved = {}
        for name, slot in saved.items():
            if live.get(slot):
                self._pool.slots[name] = slot
        for slot in set(live) - set(self._pool.slots.values()):  # in the rotation, but whose? take it out
            self._park(self._pool, slot)
        return {name: live[slot] for name, slot in self._pool.slots.items()}

    @property
    def endpoints(self) -> dict[str, int]:
        return dict(self._pool.ports)

    @property
    def routed(self) -> dict[str, int]:
        """The replicas requests matching a header route go to."""
        return dict(self._routed.ports)

    @property
    def routes(self) -> list[str]:
        return list(self._routes)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def servers(self, backend: str = BACKEND) -> dict[str, ServerState]:
        """The replicas in a backend (the rotation, or ROUTED), by name: `show stat`, parsed."""
        pool = self._pool if backend == BACKEND else self._routed
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        names = {slot: name for name, slot in pool.slots.items()}
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") in names:
                name = names[row["svname"]]
                out[name] = ServerState(
                    name,
                    pool.ports.get(name, 0),
                    row.get("status", ""),
                    int(row.get("scur") or 0),
                    int(row.get("stot") or 0),
                )
        return out

    def set_endpoints(
        self, endpoints: dict[str, int], drain_seconds: float = 10.0, weights: Mapping[str, int] | None = None
    ) -> None:
        """Make the rotation exactly `endpoints` (replica name -> port): new ones in first, then the
        ones leaving are drained (their requests finish) and taken out. `weights` (0 to 256, 1
        for a replica it leaves out; all 1 when None) are each replica's share of the requests:
        a new replica gets its weight before it enters the rotation, so never a request more."""
        self._set(self._pool, endpoints, drain_seconds, weights)

    def set_routes(self, routed: dict[str, int], routes: list[str], drain_seconds: float = 10.0) -> None:
        """Requests whose header block matches one of `routes` (PCRE regexes, header_routes.py) go
        to the `routed` replicas (round robin) while one of them is up. Replicas join before the
        routes that need them, and leave after the routes that needed them are gone."""
        effective = routes if routed else []
        if effective != self._routes and not effective:
            self._replace_routes([])
        self._set(self._routed, routed, drain_seconds, None)
        if effective != self._routes:
            self._replace_routes(effective)

    def _replace_routes(self, routes: list[str]) -> None:
        """The routes map, replaced in one step (`prepare`, `add`, `commit`)."""
        answer = self.command(f"prepare map {self.routes_path}")
        version = answer.split(":")[-1].strip()
        if not version.isdigit():
            raise ModelportError(Code.INTERNAL, f"HAProxy runtime API: {answer.strip()}")
        for pattern in routes:
            # The runtime API's parser takes a backslash away unless doubled (and splits on spaces,
            # which header_routes.py never writes).
            key = pattern.replace("\\", "\\\\")
            self._expect(self.command(f"add map @{version} {self.routes_path} {key} {ROUTED}"), "")
        self._expect(self.command(f"commit map @{version} {self.routes_path}"), "")
        self._routes = list(routes)

    def _set(
        self, pool: _Pool, endpoints: dict[str, int], drain_seconds: float, weights: Mapping[str, int] | None
    ) -> None:
        """New replicas are made ready at weight 0 (no request yet); then their weights, the
        changed weights of those staying and the drain of those leaving are sent as one
        runtime-API line, which HAProxy applies back to back: a switch from one set of replicas
        to another (blue-green's promotion, a canary's step) takes effect at one instant, not
        over the several round trips the commands would take one by one on a busy machine."""
        current = set(pool.ports)
        wanted = {name: (weights or {}).get(name, 1) for name in endpoints}
        for weight in wanted.values():
            if not 0 <= weight <= MAX_WEIGHT:
                raise ModelportError(Code.INVALID_ARGUMENT, f"a weight is 0 to {MAX_WEIGHT}, got {weight}")
        switch: list[str] = []
        for name in sorted(current & set(endpoints)):
            if pool.weights.get(name) != wanted[name] and pool.ports[name] == endpoints[name]:
                switch.append(f"set server {pool.backend}/{pool.slots[name]} weight {wanted[name]}")
        for name, port in endpoints.items():
            if name in current and pool.ports[name] == port:
                continue
            if name in current:
                self._remove(pool, [name], drain_seconds)
            free = pool.free()
            if not free:
                raise ModelportError(
                    Code.RESOURCE_EXHAUSTED,
                    f"a Service balances at most {pool.size} replicas; {name} left out",
                )
            slot, backend = free[0], pool.backend
            self._expect(self.command(f"set server {backend}/{slot} addr 127.0.0.1 port {port}"), "changed")
            self._expect(self.command(f"set server {backend}/{slot} weight 0"), "")
            self._expect(self.command(f"set server {backend}/{slot} state ready"), "")
            switch.append(f"set server {backend}/{slot} weight {wanted[name]}")
            pool.slots[name], pool.ports[name] = slot, port
            self._save_slots()
        leaving = sorted(current - set(endpoints))
        switch += [f"set server {pool.backend}/{pool.slots[name]} state drain" for name in leaving]
        if switch:
            self._expect(self.command("; ".join(switch)), "")
        for name in endpoints:
            pool.weights[name] = wanted[name]
        self._remove(pool, leaving, drain_seconds, draining=True)

    @property
    def weights(self) -> dict[str, int]:
        return dict(self._pool.weights)

    def _remove(self, pool: _Pool, names: list[str], drain_seconds: float, draining: bool = False) -> None:
        """Every replica in `names` out of the rotation at once (all drained in one runtime-API
        line before any is waited for, unless `draining` already), then taken out once their
        requests have finished or `drain_seconds` have passed."""
        if not names:
            return
        slots = {name: pool.slots[name] for name in names}
        if not draining:
            drains = [f"set server {pool.backend}/{slot} state drain" for slot in slots.values()]
            self._expect(self.command("; ".join(drains)), "")
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            states = self.servers(pool.backend)
            if all(states.get(name) is None or states[name].current_sessions == 0 for name in names):
                break
            time.sleep(0.05)
        for name, slot in slots.items():
            self._park(pool, slot)
            pool.slots.pop(name)
            pool.ports.pop(name, None)
            pool.weights.pop(name, None)
        self._save_slots()

    def _park(self, pool: _Pool, slot: str) -> None:
        """Out of the rotation, its connections closed, the slot free for the next replica."""
        self.command(f"set server {pool.backend}/{slot} state maint")
        self.command(f"shutdown sessions server {pool.backend}/{slot}")
        self.command(f"set server {pool.backend}/{slot} addr 127.0.0.1 port {PARKED_PORT}")

    def _save_slots(self) -> None:
        tmp = self.slots_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._pool.slots))
        tmp.replace(self.slots_path)

    @staticmethod
    def _expect(answer: str, wanted: str) -> None:
        text = answer.strip()
        if (wanted and wanted not in text) or (not wanted and text):
            raise ModelportError(Code.INTERNAL, f"HAProxy runtime API: {text}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.socket_path.unlink(missing_ok=True)
