"""A Service's HAProxy in front of real replicas: requests spread over them, a replica killed
mid-load costs no request (retried on another), and a replica taken out is drained first.

What HAProxy can retry, measured with stub replicas behind the Service's own configuration: a
replica that dies before writing anything (an empty answer) is retried on another; one that dies
after writing its header block commits a cut answer that HAProxy forwards as it is. A real replica
writes each answer in one write (server/http_protocol.py), so it is never caught in between."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from modelport.dataplane.haproxy import ROUTED, LoadBalancer
from modelport.dataplane.header_routes import header_pattern
from modelport.errors import ModelportError
from modelport.spec import HeaderMatch
from support import PATIENCE, Load, Server, half_plus_two, mark_complete

ANSWER = {"predictions": [[3.0]]}
PREDICT = "/v1/models/half:predict"


class Replicas:
    """Two replicas for the whole module; a test that kills one gets it back before the next."""

    def __init__(self, root: Path) -> None:
        base = half_plus_two(root / "half" / "1").parent.parent
        mark_complete(base / "1")
        self.args = ["--model_name", "half", "--model_base_path", str(base)]
        self.dirs = [root / "a", root / "b"]
        for folder in self.dirs:
            folder.mkdir()
        self.servers = [Server(self.args, folder) for folder in self.dirs]

    def alive(self) -> list[Server]:
        for i, server in enumerate(self.servers):
            if server.proc.poll() is not None:
                server.stop()
                self.servers[i] = Server(self.args, self.dirs[i])
        for server in self.servers:
            server.wait_ready()
        return list(self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    replicas = Replicas(tmp_path_factory.mktemp("replicas"))
    yield replicas
    replicas.stop()


@pytest.fixture
def replicas(pool: Replicas) -> list[Server]:
    return pool.alive()


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[LoadBalancer]:
    lb = LoadBalancer(tmp_path / "lb", "half")
    yield lb
    lb.stop()


def until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def answers(balancer: LoadBalancer) -> Load:
    """Six clients posting through the balancer back to back until the block ends. Each answer is
    kept as what the client got: 200 (the right prediction), "wrong" (200, another body),
    "HTTP <code>", or the exception's name."""
    url = f"http://127.0.0.1:{balancer.port}{PREDICT}"
    return Load(url, {"instances": [2.0]}, threads=6, read=lambda got: 200 if got == ANSWER else "wrong")


def tally(load: Load) -> collections.Counter[Any]:
    return collections.Counter(load.values())


def test_requests_spread_over_the_ready_replicas(replicas: list[Server], balancer: LoadBalancer) -> None:
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    url = f"http://127.0.0.1:{balancer.port}{PREDICT}"
    for _ in range(20):
        assert requests.post(url, json={"instances": [2.0]}, timeout=5).json() == ANSWER
    totals = {name: state.total_sessions for name, state in balancer.servers().items()}
    assert set(totals) == {"a", "b"}
    assert totals["a"] >= 8 and totals["b"] >= 8  # round robin: about half each


def test_a_replica_killed_under_load_costs_no_request(replicas: list[Server], balancer: LoadBalancer) -> None:
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    with answers(balancer) as load:
        load.wait_for(100, 60)  # six requests in flight, about half of them on a
        os.kill(replicas[0].proc.pid, signal.SIGKILL)
        killed_at = len(load.outcomes)
        until(lambda: balancer.servers()["a"].status.startswith("DOWN"), "HAProxy to mark a DOWN")
        load.wait_for(killed_at + 200, 60)  # and on, all on b
    assert set(tally(load)) == {200}, tally(load)


def test_a_replica_leaving_is_drained_without_failures(
    replicas: list[Server], balancer: LoadBalancer
) -> None:
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    with answers(balancer) as load:
        load.wait_for(100, 60)
        balancer.set_endpoints({"b": replicas[1].port})  # a's requests finish, then it is out
        removed_at = len(load.outcomes)
        load.wait_for(removed_at + 100, 60)
    assert set(tally(load)) == {200}, tally(load)
    assert set(balancer.servers()) == {"b"}


def test_a_load_balancer_given_the_pid_of_a_running_haproxy_adopts_it_and_its_rotation(
    replicas: list[Server], balancer: LoadBalancer, tmp_path: Path
) -> None:
    """What a restarted control plane does (the whole story: tests/e2e/test_controlplane.py)."""
    balancer.set_endpoints({"a": replicas[0].port, "b": replicas[1].port})
    url = f"http://127.0.0.1:{balancer.port}{PREDICT}"
    again = LoadBalancer(tmp_path / "lb", "half", balancer.port, adopt_pid=balancer.proc.pid)
    assert again.proc.pid == balancer.proc.pid  # the same HAProxy: its clients never noticed
    assert again.endpoints == {"a": replicas[0].port, "b": replicas[1].port}
    again.set_endpoints({"b": replicas[1].port})
    assert set(again.servers()) == {"b"}
    assert [requests.post(url, json={"instances": [2.0]}, timeout=5).json() for _ in range(10)] == [
        ANSWER
    ] * 10
    stranger = LoadBalancer(tmp_path / "lb2", "half", adopt_pid=os.getpid())  # not an HAProxy: a new one
    try:
        assert stranger.proc.pid != os.getpid() and stranger.endpoints == {}
    finally:
        stranger.stop()


@pytest.mark.parametrize("length", [97, 98, 100, 107])
def test_a_home_whose_socket_path_is_long_still_gets_a_load_balancer(
    replicas: list[Server], tmp_path: Path, length: int
) -> None:
    """HAProxy refuses a runtime-API socket path over 97 bytes (a home a few folders deeper than
    usual, e.g. under pytest-xdist's popen-gw0/, made every Service fail to start)."""
    base = tmp_path / "h"
    pad = length - len(str(base / "x" / "svc.haproxy.sock"))
    workdir = base / ("x" * (1 + pad))
    assert len(str(workdir / "svc.haproxy.sock")) == length
    lb = LoadBalancer(workdir, "svc")
    try:
        assert len(str(lb.socket_path)) <= 97
        lb.set_endpoints({"a": replicas[0].port})
        answer = requests.post(f"http://127.0.0.1:{lb.port}{PREDICT}", json={"instances": [2.0]}, timeout=5)
        assert answer.json() == ANSWER
    finally:
        lb.stop()


def test_a_config_haproxy_refuses_is_an_error_that_says_why(tmp_path: Path) -> None:
    with pytest.raises(ModelportError, match=r"HAProxy refused its config .*unknown keyword 'frobnicate'"):
        LoadBalancer(tmp_path / "lb", "bad", health_path="/readyz bad path\n    frobnicate")


# -- stub replicas: what HAProxy does with an answer cut at each point --

BODY = b'{"predictions":[[3.0]]}'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 23\r\n\r\n"


class Stub(socketserver.ThreadingTCPServer):
    """A replica that answers health checks, and predictions with `reply` (the bytes it writes
    before it closes the connection, as a replica killed at that point would)."""

    daemon_threads = True

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.predictions = 0  # requests to predict it received
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.port = int(self.server_address[1])
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _StubHandler(socketserver.BaseRequestHandler):
    server: Stub

    def handle(self) -> None:
        sock: socket.socket = self.request
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        if data.startswith(b"GET /readyz"):
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        else:
            with self.server.lock:
                self.server.predictions += 1
            sock.sendall(self.server.reply)
        sock.close()


@contextlib.contextmanager
def stubs(*replies: bytes) -> Iterator[list[Stub]]:
    servers = [Stub(reply) for reply in replies]
    try:
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_replica_that_dies_before_answering_is_retried_on_another(balancer: LoadBalancer) -> None:
    with stubs(b"", HEAD + BODY) as (dead, alive):
        balancer.set_endpoints({"dead": dead.port, "alive": alive.port})
        url = f"http://127.0.0.1:{balancer.port}{PREDICT}"
        answers = []
        deadline = time.monotonic() + 30 * PATIENCE
        while dead.predictions == 0:  # round robin: the first or second request goes to it
            answers.append(requests.post(url, json={}, timeout=5).json())
            assert time.monotonic() < deadline, "no request reached the dead replica"
    assert answers == [ANSWER] * len(answers)  # every one answered, that one by the other replica
    assert alive.predictions == len(answers)


def test_a_replica_that_dies_after_its_header_block_costs_a_cut_answer(balancer: LoadBalancer) -> None:
    """The one case HAProxy cannot retry (the answer is committed to the client once its headers
    are forwarded): what one write per response rules out."""
    with stubs(HEAD) as (cut,):
        balancer.set_endpoints({"cut": cut.port})
        with pytest.raises(requests.exceptions.ChunkedEncodingError, match="0 bytes read, 23 more expected"):
            requests.post(f"http://127.0.0.1:{balancer.port}{PREDICT}", json={}, timeout=5)
        assert cut.predictions == 1  # not retried


def test_requests_matching_a_header_route_go_to_the_routed_replicas_only(balancer: LoadBalancer) -> None:
    """A Rollout's setHeaderRoute: every header of a route must match (exact, prefix, or a regex on
    the whole value), in any order and case of the names; the others go to the weighted rotation."""
    other = b'{"predictions":[[4.0]]}'  # the canary's answer, as long as stable's
    tester = HeaderMatch(headerName="X-Tester", headerValue={"exact": "a b;c"})
    beta = HeaderMatch(headerName="x-group", headerValue={"prefix": "beta"})
    user = HeaderMatch(headerName="x-user", headerValue={"regex": "^al.ce$"})
    url = f"http://127.0.0.1:{balancer.port}{PREDICT}"

    def answered(headers: dict[str, str]) -> float:
        value: float = requests.post(url, json={}, headers=headers, timeout=5).json()["predictions"][0][0]
        return value

    with stubs(HEAD + BODY, HEAD + other) as (stable, canary):
        balancer.set_endpoints({"s": stable.port, "c": canary.port}, weights={"s": 1, "c": 0})
        balancer.set_routes({"c": canary.port}, [header_pattern([tester, beta]), header_pattern([user])])
        until(lambda: balancer.servers(ROUTED)["c"].status.startswith("UP"), "the routed replica up")
        both = {"x-group": "beta-7", "X-TESTER": "a b;c"}
        assert [answered(both) for _ in range(10)] == [4.0] * 10
        assert [answered({}) for _ in range(10)] == [3.0] * 10  # weight 0: none to the canary
        assert answered({"X-Tester": "a b;c"}) == 3.0  # one header of two
        assert answered({"X-Tester": "a b;cd", "X-Group": "beta"}) == 3.0  # exact is exact
        assert (answered({"X-User": "alice"}), answered({"X-User": "malice"})) == (4.0, 3.0)
        balancer.set_routes({}, [])
        assert answered(both) == 3.0 and balancer.routes == [] and balancer.routed == {}
