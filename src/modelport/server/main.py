"""The model server's composition root: build every part from a typed config, then run.

Nothing here decides anything; it wires the repository manager, runtimes, metrics and the ASGI
app together, starts the poll threads, and serves HTTP with uvicorn (uvloop + httptools; the
choice is measured in bench/RESULTS.md; each response in one write, server/http_protocol.py) on
a socket it binds itself, so port 0 works and the bound port can be reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import uvicorn
from PIL import Image

from modelport.clock import SystemClock
from modelport.errors import ModelportError
from modelport.repository.config import ModelServerConfig, load_model_config_file
from modelport.repository.manager import ModelManager
from modelport.repository.policy import State
from modelport.runtimes import default_runtimes
from modelport.security.audit import AuditEvent, AuditLog, audit_path
from modelport.security.auth import Authenticator, AuthFailure
from modelport.security.keys import SqliteKeyStore, default_path
from modelport.security.tls import TlsIdentity, check_identity
from modelport.server.app import RestApp, ServerOptions
from modelport.server.batching import Batchers, BatchingParameters
from modelport.server.guard import Guard, compute_auth_required, is_loopback
from modelport.server.http_limits import ConnectionLimits, protocol_factory
from modelport.server.http_protocol import OneWriteHttpToolsProtocol
from modelport.server.inference import InferencePath
from modelport.server.metrics import ServerMetrics
from modelport.server.mirror import Mirror
from modelport.server.monitor import MonitorOptions
from modelport.server.monitor_process import MonitorClient
from modelport.server.readiness import Readiness
from modelport.server.seat import Announcement, Seat, bind
from modelport.server.siblings import Siblings

if TYPE_CHECKING:
    from modelport.server.grpc_service import GrpcServer

log = logging.getLogger("modelport.server")


@dataclass(frozen=True)
class ServeConfig:
    models: ModelServerConfig
    host: str = "127.0.0.1"
    rest_api_port: int = 8501
    grpc_port: int = 8500
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    version_settle_seconds: float = 1.0
    inference_threads: int = 4
    onnx_options: dict[str, Any] = field(default_factory=dict)
    allow_pickle: bool = False
    trusted_types: Sequence[str] = ()
    port_file: str | None = None
    mirror_file: str | None = None  # where the control plane says which canary to copy to (mirror.py)
    batching: BatchingParameters | None = None  # None: every request runs on its own
    options: ServerOptions = field(default_factory=ServerOptions)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    keep_alive_timeout_seconds: int = 5
    auth: str = "auto"  # on | off | auto (keys required when bound beyond loopback)
    key_store: Path | None = None  # the SQLite file keys live in (default $MODELPORT_HOME/registry.db)
    # TLS (None: plain): REST's from files (uvicorn reads them), gRPC's the same identity or
    # TF Serving's --ssl_config_file.
    rest_tls: TlsIdentity | None = None
    grpc_tls: TlsIdentity | None = None
    monitoring: MonitorOptions = field(default_factory=MonitorOptions)
    workers: int = 1  # server processes sharing the ports (server/workers.py)


# File descriptors kept for what is not a client connection: models, logs, gRPC, the pool.
_RESERVED_FDS = 128


def default_max_connections() -> int:
    """1024 open connections, or fewer when the process's file limit would not hold them and as
    many again refused with a 503 (each one open is a file descriptor until it is answered)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, (soft - _RESERVED_FDS) // 2))


def _listen(config: ServeConfig, seat: Seat | None) -> socket.socket:
    """The REST socket: this server's, or a worker's own on the port the workers share."""
    return bind(config.host, config.rest_api_port, reuse_port=seat is not None)


def _watch_config(manager: ModelManager, path: str, every: float, stop: threading.Event) -> None:
    clock = SystemClock()
    last = os.stat(path).st_mtime_ns
    while not clock.wait(stop, every):
        try:
            mtime = os.stat(path).st_mtime_ns
            if mtime == last:
                continue
            last = mtime
            manager.apply_config(load_model_config_file(path))
            log.info("reloaded model config %s", path)
        except (OSError, ModelportError) as exc:
            # A bad edit must not take models down: keep serving the last good config.
            log.error("model config %s not reloaded, keeping the previous one: %s", path, exc)


def _freeze_heap() -> None:
    """Move every object alive now out of the cyclic collector's sight.

    Modules, config, loaded models live as long as the process; without this a full collection
    under load walks them all and pauses every request in flight for tens of milliseconds.
    """
    gc.collect()
    gc.freeze()


def _on_version_state(
    metrics: ServerMetrics, model: str, version: int, state: State, seconds: float | None
) -> None:
    metrics.version_state(model, version, int(state), seconds)
    if state == State.AVAILABLE:
        _freeze_heap()  # a newly loaded model is long-lived too


def serve(config: ServeConfig, seat: Seat | None = None) -> None:
    """Serve until SIGTERM or SIGINT. With `config.workers` > 1, this process becomes a
    supervisor of that many workers instead (server/workers.py: it execs, never returns);
    `seat`: this process is one of them."""
    if seat is None and config.workers > 1:
        from modelport.server.workers import supervise

        supervise(config, announcement(config))
    if seat is not None:
        suffix = f".worker{seat.index}"
        config = replace(config, monitoring=replace(config.monitoring, log_suffix=suffix))
    metrics = ServerMetrics()
    siblings = None if seat is None else Siblings(seat, metrics.registry)
    runtimes = default_runtimes(config.allow_pickle, config.trusted_types, config.onnx_options)
    manager = ModelManager(
        config.models,
        runtimes,
        SystemClock(),
        settle_seconds=config.version_settle_seconds,
        listener=lambda m, v, s, t: _on_version_state(metrics, m, v, s, t),
        published=None if siblings is None else siblings.publish,
    )
    readiness = Readiness(manager, None if siblings is None else siblings.others_published)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=manager.run, args=(stop, config.file_system_poll_wait_seconds),
            name="model-repository", daemon=True,
        )
    ]  # fmt: skip
    if config.model_config_file and config.model_config_file_poll_wait_seconds > 0:
        threads.append(
            threading.Thread(
                target=_watch_config,
                args=(manager, config.model_config_file, config.model_config_file_poll_wait_seconds, stop),
                name="model-config", daemon=True,
            )
        )  # fmt: skip
    if siblings is not None:
        metrics.siblings = siblings
        threads.append(threading.Thread(target=siblings.run, args=(stop,), name="siblings", daemon=True))
    sock = _listen(config, seat)
    port = sock.getsockname()[1]
    pool = ThreadPoolExecutor(config.inference_threads, thread_name_prefix="inference")
    batchers = Batchers(config.batching, metrics.batch_observer) if config.batching else None
    if batchers is not None:
        metrics.batch_queue(batchers.queued_rows)
    if config.batching:
        log.info("batching on: %s", config.batching)
    # Heavy models' calls, one at a time in arrival order (server/inference.py, HEAVY_CALL_SECONDS).
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
    inference = InferencePath(
        pool, batchers, config.options.limits, metrics.expired, metrics.predicted, model_thread
    )
    guard = _guard(config, metrics)
    monitor = None
    if config.monitoring.enabled:
        monitor = MonitorClient(metrics.quality, config.monitoring, lambda: manager.view)
        threads.append(threading.Thread(target=monitor.run, args=(stop,), name="monitor", daemon=True))
    mirror = None
    if config.mirror_file:
        mirror = Mirror(Path(config.mirror_file), metrics.registry)
        threads.append(threading.Thread(target=mirror.watch, args=(stop,), name="mirror", daemon=True))
    app = RestApp(
        manager, metrics, config.options, pool, batchers, inference, guard, monitor, mirror, readiness
    )
    grpc_server, grpc_port = None, None
    if config.grpc_port != config.rest_api_port or config.grpc_port == 0:
        shared = seat is not None
        grpc_server = _start_grpc(config, manager, metrics, inference, guard, monitor, readiness, shared)
        grpc_port = None if grpc_server is None else grpc_server.port
    if seat is None:
        announcement(config).say(port, grpc_port)
    else:
        log.info("worker %d of %d (pid %d) listening", seat.index, seat.count, os.getpid())
        seat.notify(port, grpc_port)
    for thread in threads:
        thread.start()
    Image.init()  # import Pillow's format plugins now, before the heap is frozen
    _freeze_heap()
    # The event loop waits for the GIL while an inference thread holds it in Python code; the
    # holder is asked to let go after this long (CPython's default: 5 ms, several times per
    # request the loop handles). 1 ms keeps /healthz answering fast beside a decoding request.
    # With batching on, the batch thread wants the GIL at every batch, and at 1 ms it and the
    # loop hand it over several times a batch: that cost the batched MLP 14% more CPU a request
    # than the default's 5 ms (bench/RESULTS.md), so there the default stays.
    sys.setswitchinterval(0.005 if batchers is not None else 0.001)
    server = _Server(
        uvicorn.Config(
            app, loop="uvloop", http=cast(Any, _http(config)),
            lifespan="off", access_log=False, log_level="warning", timeout_graceful_shutdown=10,
            backlog=2048, timeout_keep_alive=config.keep_alive_timeout_seconds,
            # No X-Forwarded-* rewriting (nothing trusted sits in front yet) and no
            # "server: uvicorn" header: both cost time on every request.
            proxy_headers=False, server_header=False,
        )
    )  # fmt: skip
    try:
        server.run(sockets=[sock])  # not asyncio.run(serve()): run() is what installs uvloop
    finally:
        if siblings is not None:  # draining: the others are not ready without this one
            siblings.withdraw()
        stop.set()
        if grpc_server is not None:
            grpc_server.stop(grace=5)
        pool.shutdown(wait=False, cancel_futures=True)
        model_thread.shutdown(wait=False, cancel_futures=True)
        for thread in threads:
            thread.join(timeout=5)
        sock.close()
        log.info("server stopped")


class _Server(uvicorn.Server):
    """uvicorn's server but for one thing: after draining on SIGTERM or SIGINT, uvicorn raises the
    signal again, which ended the process before serve()'s cleanup ran (gRPC's 5 s grace for the
    calls in flight, the monitor's last answers and its log files, the threads' joins). Here run()
    returns, serve() stops the rest, and the process exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def _guard(config: ServeConfig, metrics: ServerMetrics) -> Guard | None:
    """API keys, when required (server/guard.py says when); a warning when a server reachable
    from the network was told to take calls without them."""
    if not compute_auth_required(config.host, config.auth):
        if not is_loopback(config.host):
            log.warning(
                "--auth=off on %s: anyone who can reach this port may call every model, read its "
                "metadata and metrics, as much as they like",
                config.host,
            )
        return None
    store = SqliteKeyStore(config.key_store or default_path())
    audit = AuditLog(audit_path(store.path.parent))  # beside the keys: the home's one log
    auth = Authenticator(store, SystemClock(), on_failure=lambda failure: _audit_refusal(audit, failure))
    log.info(
        "API keys required (%d in %s; create one with `modelport keys create NAME --model M`)",
        len(auth.key_ids()), store.path,
    )  # fmt: skip
    return Guard(auth, metrics)


def _audit_refusal(audit: AuditLog, failure: AuthFailure) -> None:
    """A refused key (401) or a key without the right (403) in the audit log; a rate-limited
    call (429) is counted in /metrics instead (one line each would let a client fill the disk)."""
    if failure.status not in (401, 403):
        return
    obj = f"models/{failure.model}" if failure.model else "server"
    actor = f"key:{failure.key_id}" if failure.key_id else "anonymous"
    audit.record(AuditEvent("model-server", actor, failure.client, failure.action, obj, failure.status))


def _start_grpc(
    config: ServeConfig,
    manager: ModelManager,
    metrics: ServerMetrics,
    inference: InferencePath,
    guard: Guard | None,
    monitor: MonitorClient | None,
    readiness: Readiness,
    shared_port: bool,
) -> GrpcServer | None:
    """The v2 gRPC API, or None (logged) when grpcio or protobuf cannot load here: a package that
    pins another version beside modelport must not take REST down with it."""
    try:
        from modelport.server.grpc_service import GrpcServer, InferenceServicer
    except Exception as exc:  # ImportError, or protobuf's VersionError from a generated module
        log.error("gRPC API not started (%s: %s); REST serves", type(exc).__name__, exc)
        return None
    options = config.options
    servicer = InferenceServicer(
        manager, metrics, inference, options.request_timeout_seconds, guard, monitor, readiness
    )
    max_bytes, max_calls = options.max_request_bytes, config.connections.max_connections
    # Threads for the calls: 5, or the pool's and one more when it has more (a heavy call's
    # thread waits on the pool). Fewer threads take the GIL by turns less often: with 5 rather
    # than 8 a small call took ~11% less CPU at 64 streams, with 2 more than with 4
    # (bench/RESULTS.md, gRPC against REST).
    threads = max(5, config.inference_threads + 1)
    return GrpcServer(
        servicer, config.host, config.grpc_port, max_bytes, max_calls, config.grpc_tls, shared_port, threads
    )


def _http(config: ServeConfig) -> Callable[..., asyncio.Protocol]:
    """uvicorn's HTTP protocol with our limits; TLS in it (uvicorn would count a connection only
    after its handshake and give each handshake 60 s: http_limits._Handshake)."""
    protocol = OneWriteHttpToolsProtocol.with_limits(config.connections)
    return protocol_factory(protocol, None if config.rest_tls is None else check_identity(config.rest_tls))


def _tls_note(tls: TlsIdentity | None) -> str:
    if tls is None:
        return ""
    return ", TLS with client certificates" if tls.client_ca else ", TLS"


def announcement(config: ServeConfig) -> Announcement:
    """What is said once the server listens (server/seat.py: the supervisor says it too)."""
    return Announcement(
        host=config.host,
        rest_api_port=config.rest_api_port,
        grpc_port=config.grpc_port,
        models=", ".join(m.name for m in config.models.models),
        rest_scheme="https" if config.rest_tls else "http",
        rest_tls_note=_tls_note(config.rest_tls),
        grpc_tls_note=_tls_note(config.grpc_tls),
        port_file=config.port_file,
    )
