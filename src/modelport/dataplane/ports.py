"""Ports on loopback: any free one (the kernel's pick, from its ephemeral range), and a Service's
port, which must stay free for the Service's whole life and so is chosen outside that range.

Replicas bind port 0, so the kernel hands them ports from the ephemeral range (Linux: 32768-60999,
`/proc/sys/net/ipv4/ip_local_port_range`), and so do outgoing connections. A Service's port is
picked when it is applied and bound by its HAProxy later; picked inside that range, a replica or a
client connection can take it in between. Kubernetes' NodePort range, 30000-32767, lies just below
Linux's default ephemeral range: Service ports come from it (or, if the ephemeral range was
widened over it, from the largest gap the ephemeral range leaves).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from modelport.errors import Code, ModelportError

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
SERVICE_PORTS = range(30000, 32768)  # Kubernetes' default --service-node-port-range


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, picked by the kernel (in the ephemeral range)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ephemeral_range(path: Path = EPHEMERAL) -> range:
    """The kernel's ephemeral ports (both ends included); Linux's default where unreadable."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def service_ports(ephemeral: range) -> range:
    """Where Service ports come from: the NodePort range less the ephemeral one, or else the
    largest gap the ephemeral range leaves above 1023. Ephemeral 32768-60999 -> 30000-32767;
    31000-60999 -> 30000-30999; 10000-40000 -> 40001-65535; 1024-65535 -> none."""
    below = range(SERVICE_PORTS.start, min(SERVICE_PORTS.stop, ephemeral.start))
    above = range(max(SERVICE_PORTS.start, ephemeral.stop), SERVICE_PORTS.stop)
    best = max(below, above, key=len)
    if best:
        return best
    return max(range(1024, ephemeral.start), range(ephemeral.stop, 65536), key=len)


def service_port(host: str = "127.0.0.1", ephemeral: range | None = None) -> int:
    """A free port outside the ephemeral range, for a Service (bound later by its HAProxy)."""
    candidates = service_ports(ephemeral if ephemeral is not None else ephemeral_range())
    for port in random.sample(candidates, min(len(candidates), 200)):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise ModelportError(
        Code.RESOURCE_EXHAUSTED,
        f"no free port for the Service in {candidates.start}-{candidates.stop - 1} (outside the "
        f"ephemeral range {EPHEMERAL}); give spec.ports[0].port",
    )


__all__ = ["ephemeral_range", "free_port", "service_port", "service_ports"]
