"""What the Service controller needs of a load balancer (HAProxy's `LoadBalancer` is the real one;
`modelport.testing.FakeLoadBalancer` a fake): a process on a stable port whose rotation is set
live, that can die and be replaced on the same port."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol


class Balancer(Protocol):
    port: int

    @property
    def pid(self) -> int: ...

    @property
    def endpoints(self) -> dict[str, int]: ...

    def alive(self) -> bool: ...

    @property
    def weights(self) -> dict[str, int]: ...

    def set_endpoints(
        self, endpoints: dict[str, int], drain_seconds: float = 10.0, weights: Mapping[str, int] | None = None
    ) -> None:
        """Make the rotation exactly `endpoints` (replica name -> port), each replica's share of the
        requests its weight (all 1 when None); those leaving drain first. Raises ModelportError
        (e.g. more replicas than it can hold), OSError or TimeoutError."""

    @property
    def routed(self) -> dict[str, int]: ...

    @property
    def routes(self) -> list[str]: ...

    def set_routes(self, routed: dict[str, int], routes: list[str], drain_seconds: float = 10.0) -> None:
        """Requests whose header block matches one of `routes` (regexes, header_routes.py) go to
        the `routed` replicas while one of them is up; the others to the rotation. No routes, or
        no routed replica: every request to the rotation. Raises as set_endpoints does."""

    def stop(self) -> None: ...


class BalancerFactory(Protocol):
    def __call__(
        self, workdir: Path, name: str, port: int, balance: str, affinity: str, *,
        adopt_pid: int | None, per_replica: int, tls_pem: Path | None = None, address: str = "127.0.0.1",
    ) -> Balancer:  # fmt: skip
        """Start one for a Service, listening on `address` (or, given `adopt_pid`, take over the
        one running with this configuration); with `tls_pem` (certificate and key in one PEM file)
        it serves TLS. Raises ModelportError, OSError or TimeoutError when it cannot."""


__all__ = ["Balancer", "BalancerFactory"]
