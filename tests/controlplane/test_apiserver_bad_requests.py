"""The control plane's API answers a request it cannot parse - a malformed `Content-Length`, a query
value that is not what the parameter takes - with a 400 `Status` naming the header or parameter, as
Kubernetes does, instead of dropping the connection, hanging on the body, or ignoring the value.

A real API server on loopback (port 0), spoken to over a raw socket so that any bytes can be sent.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelport.clock import SystemClock
from modelport.controlplane.api import PREFIX, Api
from modelport.controlplane.apiserver import ApiServer, make_server
from modelport.controlplane.meta import Recorder
from modelport.controlplane.store import ObjectStore

TOKEN = "test-token"
DEPLOYMENTS = f"{PREFIX}/namespaces/default/deployments"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    clock = SystemClock()
    store = ObjectStore(tmp_path / "state.db", clock)
    api = Api(store, Recorder(store, clock, "test"), lambda: {}, lambda keep: None)
    server = make_server(api, TOKEN, 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def _send(server: ApiServer, head: str, body: bytes = b"") -> tuple[socket.socket, http.client.HTTPResponse]:
    sock = socket.create_connection(server.server_address[:2], timeout=10)  # type: ignore[arg-type]
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    return sock, answer


def _request(server: ApiServer, method: str, path: str, headers: str = "") -> tuple[int, Any, bool]:
    """Status code, JSON body, and whether the server closed the connection after answering."""
    head = f"{method} {path} HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\n{headers}"
    sock, answer = _send(server, head)
    with sock:
        body = json.loads(answer.read())
        closed = answer.will_close
    return answer.status, body, closed


def _bad_request(message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "BadRequest",
            "code": 400, "message": message}  # fmt: skip


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("value", ["abc", "-1", "+5", "1_0", "5, 6"])  # int() takes "+5" and "1_0"
def test_a_malformed_content_length_is_a_400_and_the_connection_closes(
    server: ApiServer, method: str, value: str
) -> None:
    status, body, closed = _request(server, method, DEPLOYMENTS, f"Content-Length: {value}\n")
    assert (status, body) == (400, _bad_request(f"Content-Length: {value!r} is not a non-negative integer"))
    assert closed  # where the body would end is unknown, so nothing after it can be read


def test_two_different_content_lengths_are_a_400(server: ApiServer) -> None:
    status, body, closed = _request(server, "POST", DEPLOYMENTS, "Content-Length: 2\nContent-Length: 3\n")
    assert (status, body) == (400, _bad_request("Content-Length: '2, 3' is not a non-negative integer"))
    assert closed


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("watch=maybe", "watch: 'maybe' is not a boolean (true or false)"),
        ("watch=yes", "watch: 'yes' is not a boolean (true or false)"),
        ("watch=true&resourceVersion=x", "resourceVersion: 'x' is not a non-negative integer"),
        ("watch=true&resourceVersion=-1", "resourceVersion: '-1' is not a non-negative integer"),
        ("watch=true&timeoutSeconds=soon", "timeoutSeconds: 'soon' is not a non-negative number"),
        ("watch=true&timeoutSeconds=-1", "timeoutSeconds: '-1' is not a non-negative number"),
        ("watch=true&timeoutSeconds=nan", "timeoutSeconds: 'nan' is not a non-negative number"),
        ("watch=true&timeoutSeconds=inf", "timeoutSeconds: 'inf' is not a non-negative number"),
        ("fieldSelector=spec.replicas%3D2",
         "fieldSelector: 'spec.replicas=2' is not supported; only metadata.name=NAME is"),
    ],
)  # fmt: skip
def test_a_malformed_query_value_is_a_400_that_names_the_parameter(
    server: ApiServer, query: str, message: str
) -> None:
    status, body, closed = _request(server, "GET", f"{DEPLOYMENTS}?{query}")
    assert (status, body) == (400, _bad_request(message))
    assert not closed  # the request itself was whole: the connection serves the next one


def test_well_formed_values_are_still_served(server: ApiServer) -> None:
    status, body, _ = _request(server, "GET", f"{DEPLOYMENTS}?watch=false", "Content-Length: 0\n")
    assert status == 200 and body["items"] == []
    # A watch that sees no change within its timeout ends with no line: an empty body, then close.
    head = (f"GET {DEPLOYMENTS}?watch=1&resourceVersion=0&timeoutSeconds=0.2&fieldSelector=metadata.name%3Dx "
            f"HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\n")  # fmt: skip
    sock, answer = _send(server, head)
    with sock:
        assert answer.status == 200
        assert answer.read() == b""
