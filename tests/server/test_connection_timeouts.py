"""The time limits on requests pipelined behind a slow answer: a real uvicorn server on loopback
with the model server's protocol and limits of half a second, an app whose /slow answer waits on
a gate the test opens, spoken to over a raw socket. (The limits on a real `modelport serve` are
tests/e2e/test_http_limits.py.)"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelport.server.http_limits import ConnectionLimits
from modelport.server.http_protocol import OneWriteHttpToolsProtocol
from support import PATIENCE, uvicorn_in_thread

LIMIT = 0.5
GATE = threading.Event()


async def app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/slow":
        await asyncio.to_thread(GATE.wait, 10)
    answer = b"got %d" % len(body)
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    GATE.clear()
    protocol = OneWriteHttpToolsProtocol.with_limits(
        ConnectionLimits(header_timeout=LIMIT, body_timeout=LIMIT)
    )
    try:
        with uvicorn_in_thread(app, protocol) as address:
            yield address
    finally:
        GATE.set()  # before the server waits for a /slow request to finish


def _until_closed(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_for_answer(conn: socket.socket, seconds: float) -> bytes:
    """What the server sends within `seconds` (b"" if nothing)."""
    conn.settimeout(seconds)
    try:
        return conn.recv(65536)
    except TimeoutError:
        return b""
    finally:
        conn.settimeout(10 * PATIENCE)


def test_a_slow_answer_is_not_cut_by_the_limits(address: tuple[str, int]) -> None:
    # An answer that takes 3x the limits to make: the limits are on the client, not the server.
    with socket.create_connection(address, timeout=10 * PATIENCE) as conn:
        conn.sendall(b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        assert _wait_for_answer(conn, 3 * LIMIT) == b""
        GATE.set()
        assert _wait_for_answer(conn, 10 * PATIENCE).endswith(b"\r\n\r\ngot 3")


def test_a_pipelined_body_is_due_from_when_its_request_starts(address: tuple[str, int]) -> None:
    # The second request's body is incomplete while the first is answered slowly (3x the limit):
    # its time counts from when it starts, so it is not cut while it waits its turn; once started,
    # the body it still lacks gets 408 at the limit.
    with socket.create_connection(address, timeout=10 * PATIENCE) as conn:
        conn.sendall(
            b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789"
        )
        assert _wait_for_answer(conn, 3 * LIMIT) == b""
        GATE.set()
        started = time.monotonic()
        answers = _until_closed(conn)
        elapsed = time.monotonic() - started
    first, _, second = answers.partition(b"got 0")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n"), answers
    assert second.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answers
    assert LIMIT * 0.9 < elapsed < LIMIT + 5 * PATIENCE, elapsed


def test_a_pipelined_head_late_behind_a_slow_answer_closes_after_it(address: tuple[str, int]) -> None:
    # A head left unfinished behind an answer still being made: no 408 is written into that
    # answer; it goes out whole, then the connection closes.
    with socket.create_connection(address, timeout=10 * PATIENCE) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nx-never: end")
        assert _wait_for_answer(conn, 3 * LIMIT) == b""
        GATE.set()
        answers = _until_closed(conn)
    assert answers.startswith(b"HTTP/1.1 200 OK\r\n") and answers.endswith(b"\r\n\r\ngot 0"), answers
