"""Connection hygiene of a real `modelport serve` (README, "Connection limits"), spoken to over raw
sockets and gRPC: half-sent requests are answered 408 and closed instead of kept forever, idle
connections are closed, header blocks are capped at 64 KiB without counting pipelined requests
that follow, open connections are capped with a 503 that still lets health checks through, gRPC
messages are capped, and unknown model names do not grow /metrics."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from support import PATIENCE, Server, half_plus_two, mark_complete, running

TIMEOUT = 1.0  # --header_timeout_seconds and --body_timeout_seconds of the `quick` server
KEEP_ALIVE = 1  # --keep_alive_timeout_seconds
CAP = 8  # --max_connections of the `capped` server


def _repo(root: Path) -> Path:
    half_plus_two(root / "half" / "1")
    mark_complete(root / "half" / "1")
    return root / "half"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("http_limits")
    args = [
        "--model_name", "half", "--model_base_path", str(_repo(root)),
        "--header_timeout_seconds", str(TIMEOUT), "--body_timeout_seconds", str(TIMEOUT),
        "--keep_alive_timeout_seconds", str(KEEP_ALIVE), "--max_request_bytes", "2000000",
    ]  # fmt: skip
    with running(args, root) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("http_capped")
    args = [
        "--model_name", "half", "--model_base_path", str(_repo(root)),
        "--max_connections", str(CAP), "--keep_alive_timeout_seconds", "60",
    ]  # fmt: skip
    with running(args, root) as srv:
        srv.wait_ready()
        yield srv


def _connect(server: Server, timeout: float = 15) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout * PATIENCE)


def _until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails)."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


class Responses:
    """HTTP/1.1 responses read off one connection, one at a time: (status, headers, body)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buffer = conn, b""

    def _fill(self) -> None:
        chunk = self.conn.recv(1 << 20)
        if not chunk:
            raise ConnectionError(f"closed by the server; unparsed: {self.buffer[:200]!r}")
        self.buffer += chunk

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- time limits --


def test_half_sent_requests_are_answered_408_and_closed(quick: Server) -> None:
    """The review left 100 of 100 half-sent requests open after 75 s. Now each one, headers never
    finished or a body never finished, gets 408 and its connection closed within the limit."""
    heads = [b"GET /v1/models/half HTTP/1.1\r\nhost: x\r\nx-never: end" for _ in range(60)]
    bodies = [
        b'POST /v1/models/half:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{"instances": '
        for _ in range(40)
    ]
    conns = [_connect(quick) for _ in heads + bodies]
    started = time.monotonic()
    for conn, request in zip(conns, heads + bodies, strict=True):
        conn.sendall(request)
    answers = [_until_closed(conn) for conn in conns]  # each returns once its connection is closed
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.close()
    assert all(a.startswith(b"HTTP/1.1 408 Request Timeout\r\n") for a in answers), set(answers)
    assert all(b"headers did not arrive in time" in a for a in answers[: len(heads)])
    assert all(b"body did not arrive fast enough" in a for a in answers[len(heads) :])
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 5 * PATIENCE, elapsed
    assert quick.get("/healthz").status_code == 200


def _early_answer(conn: socket.socket, wait: float) -> bytes:
    """Whatever the server says within `wait` seconds (b"" if nothing): the pace of a trickle."""
    conn.settimeout(wait)
    try:
        return conn.recv(65536)
    except TimeoutError:
        return b""
    finally:
        conn.settimeout(15 * PATIENCE)


def test_headers_trickled_byte_by_byte_are_cut_at_the_limit(quick: Server) -> None:
    """A slowloris client keeps sending, a byte every 20 ms: the limit counts from the
    connection's start, not from its last byte, so activity buys it no time."""
    head = b"GET /healthz HTTP/1.1\r\nx-slow: " + b"a" * 1000
    answer = b""
    with _connect(quick) as conn:
        started = time.monotonic()
        for i in range(len(head)):
            conn.sendall(head[i : i + 1])
            if answer := _early_answer(conn, 0.02):
                break
        elapsed = time.monotonic() - started
        answer += _until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:100]
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 3 * PATIENCE, elapsed


def test_a_big_body_that_keeps_flowing_is_not_cut(quick: Server) -> None:
    """The body limit grows by 1 s per 64 KiB received: 1 MiB sent over ~3 s (3x the base limit,
    at ~340 KiB/s) is served."""
    body = b'{"instances": [[1.0], [2.0]]' + b" " * (1 << 20) + b"}"
    request = (
        b"POST /v1/models/half:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with _connect(quick) as conn:
        conn.sendall(request)
        started = time.monotonic()
        piece = len(body) // 30 + 1
        for i in range(0, len(body), piece):
            conn.sendall(body[i : i + piece])
            if i + piece < len(body):  # no answer may come before the body is complete
                assert _early_answer(conn, 0.1) == b""
        status, _, answer = Responses(conn).next()
        elapsed = time.monotonic() - started
    assert status == 200, answer
    assert json.loads(answer) == {"predictions": [[2.5], [3.0]]}
    assert elapsed > 2 * TIMEOUT  # it really took longer than the base limit


def test_a_body_refused_with_413_that_then_stalls_is_closed_without_a_second_answer(quick: Server) -> None:
    """A body declared over --max_request_bytes is answered 413 at once; if the client then
    neither sends the rest nor closes, the connection is closed at the body limit, with nothing
    more written."""
    head = b"POST /v1/models/half:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 3000000\r\n\r\n"
    with _connect(quick) as conn:
        conn.sendall(head + b"{" * 1000)
        started = time.monotonic()
        responses = Responses(conn)
        status, _, body = responses.next()
        assert status == 413 and b"--max_request_bytes" in body
        assert _until_closed(conn) == b"" and responses.buffer == b""
        assert time.monotonic() - started < TIMEOUT + 5 * PATIENCE


def test_idle_connections_are_closed(quick: Server) -> None:
    """A connection that sends nothing is closed after the header limit (no 408: nothing was asked);
    a keep-alive connection idle after its answer after --keep_alive_timeout_seconds; one that
    sends only blank lines after its answer after the header limit."""
    with _connect(quick) as silent, _connect(quick) as kept, _connect(quick) as blank:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        blank.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert Responses(blank).next()[0] == 200
        started = time.monotonic()
        blank.sendall(b"\r\n")
        assert _until_closed(silent) == b""
        first = Responses(kept)
        assert first.next()[0] == 200
        assert _until_closed(kept) == first.buffer == b""
        assert _until_closed(blank) == b""
        assert time.monotonic() - started < max(TIMEOUT, KEEP_ALIVE) + 5 * PATIENCE


# -- header block size --


def test_pipelined_requests_in_one_write_are_all_answered(quick: Server) -> None:
    """200 requests with 1 KiB of headers each, then 100 POSTs, sent in one write on one
    connection: every answer is 200. (The 431 check counted the bytes of the requests that
    followed a head as that head's: 200 such GETs got a 431.)"""
    get = b"GET /v1/models/half HTTP/1.1\r\nhost: x\r\nx-pad: " + b"p" * 1000 + b"\r\n\r\n"
    body = b'{"instances": [1.0, 2.0, 3.0]}'  # a body with no blank line, then the next head
    post = (
        b"POST /v1/models/half:predict HTTP/1.1\r\nhost: x\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nx-pad: "
        + b"q" * 2000
        + b"\r\n\r\n"
        + body
    )
    with _connect(quick) as conn:
        conn.sendall(get * 200 + post * 100)
        responses = Responses(conn)
        answers = [responses.next() for _ in range(300)]
    assert [status for status, _, _ in answers] == [200] * 300
    assert json.loads(answers[-1][2]) == {"predictions": [[2.5], [3.0], [3.5]]}


def _read_into(conn: socket.socket, parts: list[bytes]) -> None:
    """What the server sends until it closes, or resets, the connection."""
    try:
        while chunk := conn.recv(65536):
            parts.append(chunk)
    except OSError:
        pass


def test_400_mib_of_headers_get_a_431_quickly_and_memory_stays_bounded(quick: Server) -> None:
    """The review sent 400 MiB of headers on one connection: RSS went from 340 to 676 MB and the
    answer was 200. Now the server answers 431 once 64 KiB are in, drops a little more (so that the
    client can read the answer), and closes; the client cannot send the rest."""
    assert quick.proc.pid is not None
    before = _rss_kib(quick.proc.pid)
    piece = b"a" * (1 << 20)
    sent = 0
    answer = b""
    started = time.monotonic()
    with _connect(quick) as conn:
        answer_parts: list[bytes] = []
        reader = threading.Thread(target=_read_into, args=(conn, answer_parts), daemon=True)
        reader.start()
        try:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-huge: ")
            while sent < 400 << 20:
                conn.sendall(piece)
                sent += len(piece)
        except OSError:
            pass  # refused: the server has closed
        reader.join(15 * PATIENCE)
        answer = b"".join(answer_parts)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:100]
    assert sent < 64 << 20, sent  # the server stopped taking them long before 400 MiB
    assert elapsed < 10 * PATIENCE, elapsed
    assert _rss_kib(quick.proc.pid) - before < 32 * 1024
    assert quick.get("/healthz").status_code == 200


# -- open connections --


def _served(conn: socket.socket, path: str) -> tuple[int, dict[str, str], bytes]:
    conn.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    return Responses(conn).next()


def _take_slots(server: Server, count: int) -> list[socket.socket]:
    """`count` new connections, each served once and kept open. (The server may still count a
    connection the client has closed, such as the fixture's readiness checks, for a moment: one
    that gets a 503 is closed and tried again.)"""
    held: list[socket.socket] = []

    def take_a_slot() -> bool:
        conn = _connect(server)
        if _served(conn, "/v1/models/half")[0] == 200:
            held.append(conn)
            return True
        conn.close()
        return False

    for _ in range(count):
        server.wait_until(take_a_slot, what="a connection served within the cap")
    return held


def test_connections_beyond_the_cap_get_503_and_health_still_answers(capped: Server) -> None:
    held: list[socket.socket] = []
    try:
        held += _take_slots(capped, CAP)  # all CAP slots taken
        with _connect(capped) as extra:
            status, headers, body = _served(extra, "/v1/models/half")
            assert status == 503 and headers["retry-after"] == "1", body
            assert b"too many open connections" in body
            assert _until_closed(extra) == b""  # and closed
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
            with _connect(capped) as probe:  # a liveness probe beyond the cap is still answered
                status, headers, _ = _served(probe, path)
                assert status == 200 and headers["connection"] == "close", path
        for conn in held:  # the connections within the cap keep being served
            assert _served(conn, "/v1/models/half")[0] == 200
    finally:
        for conn in held:
            conn.close()
    # Once those are closed, a new connection is served again.
    capped.wait_until(lambda: capped.get("/v1/models/half").status_code == 200, what="a slot free again")


def test_connections_beyond_twice_the_cap_are_closed_at_once(capped: Server) -> None:
    """Beyond the cap a connection waits for its request (to answer it 503); beyond twice the cap,
    one is closed at once, so that a flood of silent connections cannot use up the process's
    file descriptors (each one open is one)."""
    held = _take_slots(capped, CAP)
    try:
        held += [_connect(capped) for _ in range(CAP)]  # silent, beyond the cap
        with _connect(capped) as extra:
            started = time.monotonic()
            assert _until_closed(extra) == b""
            assert time.monotonic() - started < 5  # not the 10 s header limit
    finally:
        for conn in held:
            conn.close()
    capped.wait_until(lambda: capped.get("/v1/models/half").status_code == 200, what="a slot free again")


# -- gRPC --


def _raw_request(values: int, model: str = "half") -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=[values])
    request.raw_input_contents.append(struct.pack(f"<{values}f", *([1.0] * values)))
    return request


def test_a_grpc_message_over_the_body_limit_is_resource_exhausted(quick: Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{quick.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(_raw_request(600_000), timeout=10)  # 2.4 MB > --max_request_bytes 2000000
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2000000" in (caught.value.details() or "")
        answer = stub.ModelInfer(_raw_request(4), timeout=10)
    assert struct.unpack("<4f", answer.raw_output_contents[0]) == (2.5, 2.5, 2.5, 2.5)


def test_grpc_metadata_over_64_kib_is_resource_exhausted(quick: Server) -> None:
    """gRPC's headers are capped as REST's are (gRPC's own default would take 8 KiB)."""
    options = [("grpc.max_metadata_size", 1 << 20)]  # the client's own cap out of the way
    with grpc.insecure_channel(f"127.0.0.1:{quick.grpc_port}", options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ModelInfer(
            _raw_request(1), metadata=[("x-pad", "a" * 60_000)], timeout=10
        ).raw_output_contents
        for size in (70_000, 1_000_000):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_raw_request(1), metadata=[("x-pad", "a" * size)], timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, size
            assert "metadata size exceeds" in (caught.value.details() or "")


# -- /metrics --


def test_20000_unknown_model_names_grow_metrics_by_less_than_10_kb(quick: Server) -> None:
    """The review's 20,000 404s to new names took /metrics from 23 KB to 47.6 MB and rendering it
    to 12.6 s. Here 15,000 over REST (TF Serving status and predict, v2 infer; pipelined, 500 a
    write) and 5,000 over gRPC, each name new."""

    def metrics() -> tuple[bytes, float]:
        started = time.monotonic()
        body = quick.get("/metrics").content
        return body, time.monotonic() - started

    # The `_unknown` series exist from the first request of each kind on.
    quick.get("/v1/models/warm-up")
    quick.post("/v1/models/warm-up:predict", {"instances": [1.0]})
    quick.post("/v2/models/warm-up/infer", {"inputs": []})
    with grpc.insecure_channel(f"127.0.0.1:{quick.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(_raw_request(1, "warm-up"), timeout=10)
        before, _ = metrics()
        kinds = [
            lambda i: f"GET /v1/models/nope-{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode(),
            lambda i: (
                f"POST /v1/models/nope-{i}:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 18\r\n\r\n"
                '{"instances": [1]}'
            ).encode(),
            lambda i: (
                f"POST /v2/models/nope-{i}/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 14\r\n\r\n"
                '{"inputs": []}'
            ).encode(),
        ]
        statuses: dict[int, int] = {}
        with _connect(quick) as conn:
            responses = Responses(conn)
            for start in range(0, 15_000, 500):
                conn.sendall(b"".join(kinds[i % 3](i) for i in range(start, start + 500)))
                for _ in range(500):
                    status = responses.next()[0]
                    statuses[status] = statuses.get(status, 0) + 1
        codes = set()
        for start in range(0, 5000, 250):  # 250 at once: within the server's 1024 calls at once
            calls = [
                stub.ModelInfer.future(_raw_request(1, f"nope-grpc-{i}"), timeout=30)
                for i in range(start, start + 250)
            ]
            codes |= {call.exception().code() for call in calls}  # type: ignore[union-attr]
    assert statuses == {404: 15_000}
    assert codes == {grpc.StatusCode.NOT_FOUND}
    after, seconds = metrics()
    assert len(after) - len(before) < 10_000, (len(before), len(after))
    assert b"nope-" not in after
    assert seconds < 1.0, seconds  # 12.6 s before: the series' count no longer grows
