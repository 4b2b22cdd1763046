"""Each response leaves the model server in one write: uvicorn's protocols (httptools, which the
server uses, and h11) over a real uvloop socket, with every `write()` to the socket recorded.
A replica killed at any moment has then written a whole answer or none, never a header block
alone (which HAProxy could not retry)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from modelport.server.http_protocol import OneWriteH11Protocol, OneWriteHttpToolsProtocol

App = Callable[[Any, Any, Any], Awaitable[None]]
BODY = b'{"predictions":[[3.0]]}'


class Recorder(asyncio.Transport):
    """Below the protocol's own transport: what reaches the socket, one entry per write()."""

    def __init__(self, real: asyncio.Transport, writes: list[bytes]) -> None:
        super().__init__()
        self._real, self.writes = real, writes

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self._real.write(data)

    def is_closing(self) -> bool:
        return self._real.is_closing()

    def close(self) -> None:
        self._real.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._real.pause_reading()

    def resume_reading(self) -> None:
        self._real.resume_reading()


async def answer(scope: Any, receive: Any, send: Any) -> None:
    """What `RestApp._respond` does: start with content-length, then the whole body."""
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def stream(scope: Any, receive: Any, send: Any) -> None:
    """A chunked response in two parts, the second sent only after the first reached the socket."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await asyncio.sleep(0)  # one loop turn: lets the protocol write
    await send({"type": "http.response.body", "body": b"second"})


async def abandon(scope: Any, receive: Any, send: Any) -> None:
    """Starts a response and fails before its body."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"23")]})
    raise RuntimeError("failed after the header block")


PROTOCOLS = {"httptools": OneWriteHttpToolsProtocol, "h11": OneWriteH11Protocol}


@pytest.fixture(params=sorted(PROTOCOLS))
def protocol(request: pytest.FixtureRequest) -> Iterator[type[Any]]:
    logging.getLogger("uvicorn.error").disabled = True  # the abandoned response's traceback
    yield PROTOCOLS[request.param]
    logging.getLogger("uvicorn.error").disabled = False


def exchange(
    protocol: type[Any], app: App, request: bytes, until: Callable[[bytes], bool] = lambda got: False
) -> tuple[bytes, list[bytes]]:
    """Serve `app` with `protocol` on a real loopback socket (uvloop), send `request`, read until
    `until(what was read)` (or the server closes): what the client read, and each socket write."""
    writes: list[bytes] = []
    config = Config(app, http=protocol, lifespan="off", log_level="critical", server_header=False)
    config.load()
    state = ServerState()

    async def main() -> bytes:
        loop = asyncio.get_running_loop()

        def make() -> asyncio.Protocol:
            proto = protocol(config, state, {}, loop)
            made = proto.connection_made
            proto.connection_made = lambda transport: made(Recorder(transport, writes))
            return proto  # type: ignore[no-any-return]

        server = await loop.create_server(make, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        received = b""
        while not until(received):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            received += chunk
        writer.close()
        for connection in list(state.connections):
            connection.shutdown()
        server.close()
        await server.wait_closed()
        return received

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main()), writes


def post(connection: str = "keep-alive", method: str = "POST") -> bytes:
    return (
        f"{method} /v1/models/half:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 16\r\n"
        f"connection: {connection}\r\n\r\n"
    ).encode() + b'{"instances":[2]}'[:16]


def test_a_response_is_one_write(protocol: type[Any]) -> None:
    received, writes = exchange(protocol, answer, post() + post(), until=lambda got: got.count(BODY) == 2)
    assert len(writes) == 2, writes  # two requests on one connection: one write each
    for write in writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\n" + BODY)
    assert received == b"".join(writes)


def test_a_response_that_closes_the_connection_is_one_write(protocol: type[Any]) -> None:
    received, writes = exchange(protocol, answer, post("close"))
    assert len(writes) == 1 and writes[0].endswith(BODY) and b"connection: close" in writes[0].lower()
    assert received == writes[0]


def test_a_head_response_is_its_header_block_in_one_write(protocol: type[Any]) -> None:
    received, writes = exchange(protocol, answer, post("close", "HEAD"))
    assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\n") and b"content-length: 23\r\n" in writes[0]
    assert received == writes[0]


def test_a_chunked_response_still_streams(protocol: type[Any]) -> None:
    received, writes = exchange(protocol, stream, post("close"))
    first = next(write for write in writes if b"first" in write)
    assert b"second" not in first, writes  # sent as the app sent it, not held to the end
    assert received.endswith(b"0\r\n\r\n")


def test_a_response_abandoned_after_its_header_block_writes_nothing(protocol: type[Any]) -> None:
    received, writes = exchange(protocol, abandon, post("close"))
    assert (received, writes) == (b"", [])  # a proxy retries an empty answer; a cut one it cannot


def test_an_interim_100_continue_is_not_held(protocol: type[Any]) -> None:
    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 16\r\nexpect: 100-continue\r\n\r\n"
    received, writes = exchange(protocol, answer, head, until=lambda got: got.endswith(b"\r\n\r\n"))
    assert received == b"HTTP/1.1 100 Continue\r\n\r\n" and writes == [received]


def test_modelport_serve_answers_through_a_protocol_that_writes_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The protocol `modelport serve` hands uvicorn (whatever it is) writes each answer once. Its
    start-up runs for real up to uvicorn's `run`, which is replaced by a look at the protocol
    uvicorn would serve with; that protocol then answers as above. uvicorn's own httptools
    protocol writes a header block and its body apart (4 writes here), which is what let HAProxy
    forward a cut answer when a replica was killed between them (tests/dataplane/test_haproxy.py)."""
    import uvicorn

    from claims_support import serve_config
    from modelport.server import main
    from support import half_plus_two, mark_complete, port_below_the_ephemeral_range

    serve = main.serve  # the real one (serve_config replaces it to capture the config)
    mark_complete(half_plus_two(tmp_path / "half" / "1").parent)
    port = port_below_the_ephemeral_range()  # --port = --rest_api_port: REST only, no gRPC server
    config = serve_config(monkeypatch, "--model_name", "half", "--model_base_path", str(tmp_path / "half"),
                          "--host", "127.0.0.1", f"--port={port}", f"--rest_api_port={port}")  # fmt: skip
    served_with: list[type[Any]] = []

    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        server.config.load()
        served_with.append(server.config.http_protocol_class)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(main, "_freeze_heap", lambda: None)  # this is the test's process
    serve(config)
    (protocol,) = served_with
    received, writes = exchange(protocol, answer, post() + post(), until=lambda got: got.count(BODY) == 2)
    assert len(writes) == 2, writes  # two requests on one connection: one write each
    assert all(write.endswith(b"\r\n\r\n" + BODY) for write in writes) and received == b"".join(writes)


def test_an_answered_request_leaves_nothing_for_the_garbage_collector(protocol: type[Any]) -> None:
    """A request's objects are freed as its answer completes, not by the cyclic collector: the
    cycle and the transport that holds its answer referring to each other made ten objects a
    request that only a collection could free (~3% of a small `:predict`'s CPU at 64 connections)."""

    def garbage(requests: int) -> int:
        gc.collect()
        gc.disable()
        try:
            exchange(protocol, answer, post() * requests, until=lambda got: got.count(BODY) == requests)
            return gc.collect()
        finally:
            gc.enable()

    garbage(1)  # imports and caches
    assert garbage(21) - garbage(1) == 0
