"""A request whose header block exceeds 64 KiB gets 431 and its connection closed, whether the
headers arrive in one piece or trickle in without ever ending: a real uvicorn server on loopback
with the model server's protocol (httptools), spoken to over a raw socket."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from modelport.server.http_limits import MAX_HEADER_BYTES
from modelport.server.http_protocol import OneWriteHttpToolsProtocol
from support import uvicorn_in_thread

GATE = threading.Event()  # what a request to /slow waits for


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    if scope["path"] == "/slow":
        await asyncio.to_thread(GATE.wait, 10)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    with uvicorn_in_thread(app, OneWriteHttpToolsProtocol) as address:
        yield address


def _read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _head(header_bytes: int) -> bytes:
    # One header, "x-pad: ...\r\n", sized so that URL + headers come to header_bytes as counted.
    pad = header_bytes - len("/") - (len("connection") + len("close") + 4) - (len("x-pad") + 4)
    return b"GET / HTTP/1.1\r\nconnection: close\r\nx-pad: " + b"a" * pad + b"\r\n\r\n"


def test_a_header_block_at_the_limit_is_served(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(_head(MAX_HEADER_BYTES))
        assert _read_all(conn).startswith(b"HTTP/1.1 200 ")


def test_a_header_block_over_the_limit_in_one_piece_is_a_431_and_closes(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(_head(MAX_HEADER_BYTES + 1))
        answer = _read_all(conn)  # returns only once the server has closed the connection
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b"\r\n\r\nthe request's headers exceed 65536 bytes\n")


def test_headers_that_never_end_are_cut_off_at_the_limit(address: tuple[str, int]) -> None:
    # One header value that never ends, sent in 4 KiB pieces, one byte past the limit in all: the
    # server answers without waiting for the end (the code before this waited forever: recv timed
    # out). Sending no more than that keeps the close a clean FIN, not a reset that loses the 431.
    head = b"GET / HTTP/1.1\r\nx-pad: " + b"a" * MAX_HEADER_BYTES
    head = head[: MAX_HEADER_BYTES + 1]
    with socket.create_connection(address, timeout=10) as conn:
        for start in range(0, len(head), 4096):
            conn.sendall(head[start : start + 4096])
        answer = _read_all(conn)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def _answers(conn: socket.socket, count: int) -> list[bytes]:
    """The status lines of `count` responses (each of this app's bodies is "ok")."""
    data = b""
    while data.count(b"\r\n\r\nok") < count:
        chunk = conn.recv(1 << 20)
        assert chunk, f"closed after {data.count(b'HTTP/1.1 ')} answers: {data[-200:]!r}"
        data += chunk
    return re.findall(rb"HTTP/1\.1 \d+ [A-Za-z ]+", data)


def test_pipelined_requests_are_not_counted_into_each_others_heads(address: tuple[str, int]) -> None:
    # 200 heads of 1 KiB in one write arrive in reads of up to 256 KiB, each ending in the middle
    # of a head: the head's count took in the whole read (the requests before it), so a read
    # longer than 64 KiB that ended mid-head was a 431.
    get = b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 1000 + b"\r\n\r\n"
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(get * 200)
        assert _answers(conn, 200) == [b"HTTP/1.1 200 OK"] * 200


@pytest.mark.parametrize("body", [b"x" * 3000, b"x\r\n\r\ny" * 500], ids=["no blank line", "blank lines"])
def test_pipelined_requests_with_bodies_are_not_counted_into_the_next_head(
    address: tuple[str, int], body: bytes
) -> None:
    # Bodies between heads, with and without blank lines in them: the body before a head is not
    # the head's.
    length = str(len(body)).encode()
    post = (
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: "
        + length
        + b"\r\nx-pad: "
        + b"b" * 2000
        + b"\r\n\r\n"
        + body
    )
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(post * 100)
        assert _answers(conn, 100) == [b"HTTP/1.1 200 OK"] * 100


def test_a_pipelined_head_too_large_behind_a_slow_answer_does_not_cut_it(address: tuple[str, int]) -> None:
    # A 431 written while the answer before it is still being made would be read as that answer
    # (and the answer then written after the connection's end): the answer comes whole, then
    # the connection closes.
    GATE.clear()
    huge = b"GET / HTTP/1.1\r\nx-pad: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n"
    try:
        with socket.create_connection(address, timeout=10) as conn:
            conn.sendall(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n" + huge)
            GATE.set()
            answer = _read_all(conn)
    finally:
        GATE.set()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok"), answer
    assert b"431" not in answer


def test_pipelined_requests_with_chunked_bodies_are_all_answered(address: tuple[str, int]) -> None:
    # A chunked body ends in a blank line of its own, as a head does.
    body = (
        b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in [b"y" * 1500, b"z" * 1500]) + b"0\r\n\r\n"
    )
    post = (
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nx-pad: "
        + b"c" * 2000
        + b"\r\n\r\n"
        + body
    )
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(post * 100)
        assert _answers(conn, 100) == [b"HTTP/1.1 200 OK"] * 100
