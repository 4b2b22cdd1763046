"""Uvicorn's HTTP protocols, changed so that a response leaves the process in one write.

Uvicorn writes a response's status line and headers when the app sends `http.response.start`
and the body when it sends `http.response.body`: two `write()` calls, and uvloop sends each at
once. A replica killed between the two leaves its load balancer a valid header block, then EOF:
HAProxy has committed that answer to the client and cannot retry it, so the client gets a cut
response (requests: `ChunkedEncodingError`, "IncompleteRead(0 bytes read, 23 more expected)").
Killed before the one write, the replica leaves HAProxy nothing, which it retries on another
replica (`retry-on all-retryable-errors`: an empty response is retryable).

So the transport holds every byte of a response from its header block until the response is
complete, then writes it all at once:

    start (head, 128 B) -> held;  body (23 B) -> held;  response complete -> write(151 B)

What is not held: an interim `100 Continue` (the client waits for it), and a chunked response
(streamed on purpose: holding it would change what the app asked for). A response the app
abandons half-way (an exception after `http.response.start`) is dropped, not flushed: the
connection closes with nothing written, which a proxy retries, instead of a cut answer.

One `write()` is one `send()` into the kernel's socket buffers, which the kernel delivers even
if the process is killed right after. How much one `send()` takes is bounded by those buffers:
measured on loopback with Linux's default tcp_wmem/tcp_rmem, 4 MiB -> 3,919,872 bytes taken (1 MiB
and less: all); a larger answer, or one to a peer that has stopped reading, can still leave in
parts. A replica's answers are a few hundred bytes to a few KiB.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from modelport.server.http_limits import LimitedHttpToolsProtocol


class HeldTransport(asyncio.Transport):
    """The connection's transport, in front of the real one: `send(data, hold=True)` holds bytes,
    any write that does not hold sends them with its own bytes in one call. Closing drops what is
    held: a whole response is flushed when its cycle completes, so what is left is a cut one."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._held: list[bytes] = []

    def send(self, data: bytes, hold: bool) -> None:
        if hold:
            self._held.append(data)
            return
        if self._held:
            data = b"".join([*self._held, data])
            self._held.clear()
        if data:
            self._transport.write(data)

    def write(self, data: Any) -> None:
        self.send(bytes(data), hold=False)

    def flush(self) -> None:
        self.send(b"", hold=False)

    def close(self) -> None:
        self._held.clear()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class _CycleTransport(asyncio.Transport):
    """What one request-response cycle writes through: its bytes are held from its
    `http.response.start` until it is complete; closing after a complete response flushes it
    first, closing an abandoned one drops it.

    The cycle holds this as its transport, so this holds the cycle by a weak reference: a strong
    one made every cycle a reference cycle, ten objects a request that only the garbage
    collector could free (its collections were ~3% of a small request's CPU). Only the cycle
    writes through this, so the cycle is alive whenever it is used."""

    __slots__ = ("_cycle", "_held", "_streamed")

    def __init__(self, held: HeldTransport, cycle: Any) -> None:
        # No asyncio.Transport.__init__: its `extra` is the held transport's (get_extra_info).
        self._held = held
        self._cycle = weakref.ref(cycle)
        self._streamed: bool | None = None  # known at the response's head

    def write(self, data: Any) -> None:
        cycle: Any = self._cycle()
        data = bytes(data)
        hold = cycle.response_started and not cycle.response_complete
        if hold and self._streamed is None:
            # httptools' cycle has decided before it writes its head; h11's says nothing.
            chunked = getattr(cycle, "chunked_encoding", None)
            self._streamed = _chunked(data) if chunked is None else chunked
        self._held.send(data, hold=hold and not self._streamed)

    def close(self) -> None:
        cycle: Any = self._cycle()
        if cycle is not None and cycle.response_complete:
            self._held.flush()
        self._held.close()

    def is_closing(self) -> bool:
        return self._held.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._held.get_extra_info(name, default)


def _chunked(head: bytes) -> bool:
    """Whether a response's header block names `transfer-encoding: chunked` (ASGI header names
    are lower case; uvicorn adds this one itself when the app gives no content-length)."""
    end = head.find(b"\r\n\r\n")
    return b"\r\ntransfer-encoding: chunked\r\n" in head[: end + 2].lower()


class _OneWrite:
    """The part both protocols share: the connection's transport holds; each cycle writes
    through its own view of it; a completed response is flushed."""

    transport: asyncio.Transport

    def _hold(self, transport: asyncio.Transport) -> HeldTransport:
        return HeldTransport(transport)

    def _adopt(self, cycle: Any) -> None:
        held = self.transport
        if cycle is not None and isinstance(held, HeldTransport) and cycle.transport is held:
            cycle.transport = _CycleTransport(held, cycle)

    def _flush(self) -> None:
        if isinstance(self.transport, HeldTransport):
            self.transport.flush()


class OneWriteHttpToolsProtocol(_OneWrite, LimitedHttpToolsProtocol):
    """`http=OneWriteHttpToolsProtocol.with_limits(...)` in `uvicorn.Config`: httptools, one write
    per response, and the connection limits of server/http_limits.py."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(self._hold(transport))

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._adopt(cycle)  # every cycle starts here, pipelined ones later
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        self._flush()
        super().on_response_complete()


class OneWriteH11Protocol(_OneWrite, H11Protocol):
    """The same on h11 (uvicorn's pure-Python parser)."""

    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(self._hold(transport))

    def handle_events(self) -> None:
        super().handle_events()  # creates at most one cycle (h11 waits for its response)
        self._adopt(self.cycle)  # before its task first runs: that is on a later loop turn

    def on_response_complete(self) -> None:
        self._flush()
        super().on_response_complete()


__all__ = ["HeldTransport", "OneWriteH11Protocol", "OneWriteHttpToolsProtocol"]
