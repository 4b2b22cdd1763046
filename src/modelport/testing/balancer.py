"""A load balancer that balances nothing: it records its rotation, and a test can make it die
or fail to start or to answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelport.errors import Code, ModelportError


@dataclass
class FakeLoadBalancer:
    name: str
    port: int
    balance: str
    affinity: str
    per_replica: int
    pid: int
    tls_pem: Path | None = None
    address: str = "127.0.0.1"
    running: bool = True
    fail_with: Exception | None = None  # raised by the next set_endpoints
    history: list[dict[str, int]] = field(default_factory=list)
    _endpoints: dict[str, int] = field(default_factory=dict)
    _weights: dict[str, int] = field(default_factory=dict)
    _routed: dict[str, int] = field(default_factory=dict)
    _routes: list[str] = field(default_factory=list)

    @property
    def endpoints(self) -> dict[str, int]:
        return dict(self._endpoints)

    def alive(self) -> bool:
        return self.running

    @property
    def weights(self) -> dict[str, int]:
        return dict(self._weights)

    def set_endpoints(
        self, endpoints: dict[str, int], drain_seconds: float = 10.0, weights: Mapping[str, int] | None = None
    ) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self._endpoints = dict(endpoints)
        self._weights = {name: (weights or {}).get(name, 1) for name in endpoints}
        self.history.append(dict(endpoints))

    @property
    def routed(self) -> dict[str, int]:
        return dict(self._routed)

    @property
    def routes(self) -> list[str]:
        return list(self._routes)

    def set_routes(self, routed: dict[str, int], routes: list[str], drain_seconds: float = 10.0) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self._routed, self._routes = dict(routed), list(routes) if routed else []

    def stop(self) -> None:
        self.running = False


class FakeBalancers:
    """The factory: `FakeBalancers()(workdir, name, port, ...)` starts a FakeLoadBalancer, unless
    `refuse[name]` holds an error to raise instead."""

    def __init__(self, first_pid: int = 800000) -> None:
        self.started: list[FakeLoadBalancer] = []
        self.refuse: dict[str, Exception] = {}
        self._pid = first_pid

    def __call__(
        self, workdir: Path, name: str, port: int, balance: str, affinity: str, *,
        adopt_pid: int | None, per_replica: int, tls_pem: Path | None = None, address: str = "127.0.0.1",
    ) -> FakeLoadBalancer:  # fmt: skip
        if name in self.refuse:
            raise self.refuse[name]
        adopted = next((b for b in self.started if b.pid == adopt_pid and b.running), None)
        if adopted is not None:
            return adopted
        self._pid += 1
        balancer = FakeLoadBalancer(
            name, port, balance, affinity, per_replica, self._pid, tls_pem=tls_pem, address=address
        )
        self.started.append(balancer)
        return balancer

    def live(self, name: str) -> FakeLoadBalancer:
        found = [b for b in self.started if b.name == name and b.running]
        if len(found) != 1:
            raise ModelportError(Code.NOT_FOUND, f"{len(found)} running load balancers named {name}")
        return found[0]


__all__ = ["FakeBalancers", "FakeLoadBalancer"]
