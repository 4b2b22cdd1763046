"""What `serve --workers N`'s supervisor and its workers share, on the standard library alone:
the supervisor imports this and server/workers.py only, so it holds no server code, numpy or
model runtime (its memory: bench/RESULTS.md, "--workers"). A worker's seat, the sockets that
hold the ports, and what is announced once the server listens.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

log = logging.getLogger("modelport.server")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Seat:
    """Where worker `index` of `count` sits: the run's private directory (its metrics socket)
    and the pipe it tells the supervisor on that it listens."""

    index: int
    count: int
    run_dir: str
    notify_fd: int

    def socket_path(self, index: int) -> Path:
        return Path(self.run_dir) / f"metrics-{index}.sock"

    def ready_path(self, index: int) -> Path:
        return ready_path(self.run_dir, index)

    def notify(self, rest_port: int, grpc_port: int | None) -> None:
        """Tell the supervisor this worker listens: one JSON line. The pipe stays open as long as
        this process lives (and in no child of it): its end-of-file tells the supervisor at once
        that the worker is gone, and the others stop counting it ready."""
        line = json.dumps({"rest_api_port": rest_port, "grpc_port": grpc_port, "pid": os.getpid()})
        os.set_inheritable(self.notify_fd, False)
        os.write(self.notify_fd, (line + "\n").encode())


def ready_path(run_dir: str, index: int) -> Path:
    """Where worker `index` publishes the models and versions it serves (server/readiness.py)."""
    return Path(run_dir) / f"ready-{index}.json"


def read_only(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """What a read-only mapping in a worker's pickled config is rebuilt with."""
    return MappingProxyType(mapping)


def bind(host: str, port: int, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """`reuse_port`: SO_REUSEPORT, for several workers' sockets on one port (`listen=False`:
    a socket that only holds the port, so that port 0 picks one the workers then share)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted connections inherit this. Without it, a response written as headers then body
    # waits for the client's delayed ACK: 40 ms per request on Linux.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class Announcement:
    """What is said once the server listens, from the flags (server/main.py's `announcement`)."""

    host: str
    rest_api_port: int  # as given (0: pick one)
    grpc_port: int
    models: str  # their names, comma-separated
    rest_scheme: str = "http"
    rest_tls_note: str = ""
    grpc_tls_note: str = ""
    port_file: str | None = None

    def say(self, port: int, grpc_port: int | None) -> None:
        """Log where the APIs listen; write the port file (the pid in it: the process to signal)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        if grpc_port is None and self.grpc_port == self.rest_api_port and self.grpc_port != 0:
            log.info(
                "--port (gRPC) and --rest_api_port are both %d: serving REST on it; gRPC is not started "
                "(give --port another number to serve the v2 gRPC API there)",
                self.rest_api_port,
            )
        else:
            log.info(
                "gRPC API (inference.GRPCInferenceService) at %s:%d%s", host, grpc_port, self.grpc_tls_note
            )
        log.info(
            "REST API at %s://%s:%d (models: %s)%s",
            self.rest_scheme,
            host,
            port,
            self.models,
            self.rest_tls_note,
        )
        if self.port_file:
            tmp = Path(self.port_file).with_suffix(".tmp")
            tmp.write_text(json.dumps({"rest_api_port": port, "grpc_port": grpc_port, "pid": os.getpid()}))
            os.replace(tmp, self.port_file)
