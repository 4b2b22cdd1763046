"""Limits on what one HTTP connection may cost the model server: its header block's size, the
time it takes to send a request, and how many connections are open at once.

uvicorn and httptools have none of these (400 MiB of headers were read and answered 200; 100
half-sent requests were all still open 75 s later). Here, on uvicorn's httptools protocol:

    header block > 64 KiB            -> 431, counted as it arrives, each pipelined request alone
    headers not in within 10 s       -> 408 (a connection that sent nothing: closed)
    body not in within 30 s          -> 408; each 64 KiB received adds 1 s
    open connections > cap           -> 503 + retry-after (health routes answered), then closed
    open connections > 2 x cap       -> closed at once
    TLS handshake not done in 10 s   -> closed (the header timeout); counted as open meanwhile

After a 431 or 408 the connection is half-closed and what the client still sends is dropped
for a while, so that the answer reaches it before the close (a close with unread bytes is a TCP
reset, which can destroy the answer). Timers are armed only for what a read leaves unfinished:
a request that arrives whole in one read, the usual case, costs no timer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A request's header block (request line and headers) may be this long; a longer one is answered
# 431 and the connection closed. 64 KiB is 8x what nginx (8 KiB buffers) and Node (16 KiB) take by
# default; neither httptools nor uvicorn has any limit (400 MiB of headers were read, then answered).
MAX_HEADER_BYTES = 64 * 1024
_HEALTH_PATHS = frozenset((b"/healthz", b"/readyz", b"/v2/health/live", b"/v2/health/ready"))
# After a refusal (431, 408) the server stops reading requests but takes in (and drops) what the
# client is still sending, for this long or this much: closing with unread bytes makes the kernel
# send a reset, which can destroy the answer before the client has read it.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024


def _plain(status: bytes, text: bytes) -> bytes:
    """A whole answer the protocol writes itself, closing the connection."""
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
        + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )  # fmt: skip


_TOO_LARGE = _plain(b"431 Request Header Fields Too Large", b"the request's headers exceed 65536 bytes\n")
_HEAD_TIMEOUT = _plain(b"408 Request Timeout", b"the request's headers did not arrive in time\n")
_BODY_TIMEOUT = _plain(b"408 Request Timeout", b"the request's body did not arrive fast enough\n")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection may take over its request, and how many may be open at once.

    header_timeout: seconds from a connection's start (or its first byte after a response) to a
        complete header block; then 408 (nothing received at all: closed without one).
    body_timeout: seconds from a complete header block to a complete body, plus one more second
        for every `body_min_rate` bytes that arrive, so a large body that keeps flowing is not cut.
    max_connections: open connections beyond this many get 503 with `retry-after` and are closed
        (health and readiness requests are answered, then closed); beyond twice this many, they
        are closed at once, so that open file descriptors stay bounded. A TLS connection counts
        from its first byte, its handshake included, which must end within `header_timeout`.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    body_min_rate: int = 64 * 1024
    max_connections: int = 1024


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing; httptools re-raises it as a parser error."""


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    body = b"too many open connections to this server; retry in a moment\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header block longer than MAX_HEADER_BYTES answered 431,
    and the time and connection limits of `ConnectionLimits` (`with_limits`; the defaults
    otherwise). Its transport may be a wrapper (http_protocol.HeldTransport) that holds an answer
    until it is complete: this class writes only through `self.transport`."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    # The protocols of TLS connections whose handshake is under way (_Handshake): open, though not
    # yet among uvicorn's connections (a protocol's connection is made after the handshake).
    handshakes: ClassVar[set[object]] = set()

    _in_head = False  # between a message's first byte and the end of its headers
    _head_bytes = 0  # bytes of the current head received in chunks before this one
    _began_here = False  # the current message began in the chunk being parsed
    _last_body: bytes | None = None  # the last body piece parsed from this chunk
    _body_before: bytes | None = None  # the body piece that came just before this message, if any
    _headers_before: Sequence[tuple[bytes, bytes]] = ()  # that message's headers
    _refused = False  # a refusal was written: parse nothing more
    _head_too_large = False
    _chunk_bytes = 0  # the size of the chunk being parsed
    _over = False  # opened beyond max_connections
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _body_deadline = 0.0
    _linger: asyncio.TimerHandle | None = None
    _lingered = 0

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[Self]:
        """This protocol with these limits (uvicorn builds it from the class)."""
        return cast("type[Self]", type(cls.__name__, (cls,), {"limits": limits, "handshakes": set()}))

    @classmethod
    def open_connections(cls, connections: set[Any]) -> int:
        return len(connections) + len(cls.handshakes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.handshakes.discard(self)  # TLS: its handshake is done
        super().connection_made(transport)
        open_now = self.open_connections(self.connections)
        self._over = open_now > self.limits.max_connections
        if open_now > 2 * self.limits.max_connections:  # no answer even: file descriptors stay bounded
            self._refused = True
            self.transport.close()
            return
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # drop what the client is still sending
            self._lingered += len(data)
            if self._lingered > _LINGER_BYTES:
                self.transport.close()
            return
        self._chunk_bytes = len(data)
        self._began_here, self._last_body, self._body_before = False, None, None
        super().data_received(data)
        # Timers are armed only for what this chunk left unfinished: a request that arrives whole
        # (the usual case) costs none.
        cycle = self.cycle
        if self._in_head:
            if self._refused or self.transport.is_closing():
                return
            # httptools keeps a header it has not finished in memory, so the limit must hold
            # before the header ends: count what this chunk added to the head.
            self._head_bytes += self._head_part(data) if self._began_here else len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._refuse_head()
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        elif cycle is not None and not cycle.response_complete:
            # A body still coming (a queued request's is due once it starts: on_response_complete).
            if cycle.more_body and self._body_timer is None and not self.pipeline and not self._refused:
                self._arm_body()
        elif self._head_timer is None and not self._refused and not self.transport.is_closing():
            # Bytes that began no request (blank lines) after an answer stopped the keep-alive
            # timer: the head's limit applies from here.
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _head_part(self, data: bytes) -> int:
        """How many of this chunk's bytes belong to a head that began in it, still incomplete.

        The chunk ends with that head, which holds no blank line yet; before it come whole
        messages (several, when requests are pipelined). Everything after the chunk's last blank
        line is this head, except the tail of a body that came just before it (a body that ends
        in a blank line itself, as chunked ones do, leaves none)."""
        end = data.rfind(b"\r\n\r\n")
        after = len(data) - (end + 4 if end >= 0 else 0)
        body = self._body_before
        # A chunked body ends in a blank line, like a head: nothing of it is left to discount.
        if body is not None and all(name != b"transfer-encoding" for name, _ in self._headers_before):
            blank = body.rfind(b"\r\n\r\n")
            after -= len(body) - (blank + 4) if blank >= 0 else len(body)
        return max(after, 0)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._began_here = True, 0, True

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        # The head came in the bytes counted so far and this chunk: if those are within the limit,
        # so is the head, and the usual request pays for no count. Otherwise the exact size:
        # "NAME: VALUE\r\n" per header, plus the request line's URL.
        if self._head_bytes + self._chunk_bytes > MAX_HEADER_BYTES and (
            len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEADER_BYTES
        ):
            self._head_too_large = True
            raise _HeadTooLarge
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._last_body = body
        self._body_deadline += len(body) / self.limits.body_min_rate
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._body_before, self._last_body = self._last_body, None
        self._headers_before = self.headers
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:  # the parser error is ours: say which
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        self.logger.warning("a request's headers exceed %d bytes: 431, connection closed", MAX_HEADER_BYTES)
        self._refuse(_TOO_LARGE)

    def _refuse(self, answer: bytes, to_current: bool = False) -> None:
        """Answer, read no more requests, and close once the client stops sending (or soon).

        `to_current`: the answer is the current request's (its body is late). Otherwise it is a
        later request's: behind a response still being made (pipelining), it would be read as
        that response, so none is written and the connection closes after that response."""
        self._refused = True
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        if not to_current and not self._idle():
            self.cycle.keep_alive = False
            return
        self.transport.write(answer)
        self._linger = self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then FIN; what still comes in is dropped
        else:
            self.transport.close()

    def _idle(self) -> bool:
        """No request is being answered on this connection."""
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm_body(self) -> None:
        self._body_deadline = self.loop.time() + self.limits.body_timeout
        self._body_timer = self.loop.call_at(self._body_deadline, self._body_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if not self._idle():  # a pipelined head is late behind a response: close after it
            self.cycle.keep_alive = False
        elif self._in_head:
            self.logger.warning("a request's headers took over %gs: 408", self.limits.header_timeout)
            self._refuse(_HEAD_TIMEOUT)
        else:  # nothing of a request came: an idle connection
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if self.loop.time() < self._body_deadline:  # the body kept coming: more time
            self._body_timer = self.loop.call_at(self._body_deadline, self._body_timed_out)
        elif self.cycle is not None and self.cycle.response_started:
            # Answered already (413): the rest of its body is not wanted. Close now if the answer
            # is out, else once it is.
            self.cycle.keep_alive = False
            if self.cycle.response_complete:
                self.transport.close()
        else:
            self.logger.warning("a request's body did not arrive in time: 408")
            self._refuse(_BODY_TIMEOUT, to_current=True)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if self._over:
            if cycle.scope["raw_path"] in _HEALTH_PATHS:
                cycle.keep_alive = False
            else:
                app = _over_capacity
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the next pipelined request, if one is queued
        cycle = self.cycle
        if not cycle.response_complete and cycle.more_body and not self.pipeline and self._body_timer is None:
            self._arm_body()  # it started late: the rest of its body is due from now


__all__ = ["MAX_HEADER_BYTES", "ConnectionLimits", "LimitedHttpToolsProtocol"]


def _tls_protocol(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's own TLS layer: what its create_server(ssl=...) and start_tls put in."""
    import uvloop

    if isinstance(loop, uvloop.Loop):
        from uvloop.loop import SSLProtocol as UvSSLProtocol  # type: ignore[attr-defined]  # no stub

        return UvSSLProtocol
    from asyncio.sslproto import SSLProtocol

    return SSLProtocol


class _Handshake(asyncio.Protocol):
    """A TLS connection at its start: it puts the loop's TLS layer in front of `http` at once (the
    ClientHello is the TLS layer's to read), as create_server(ssl=...) does, but counts the
    connection against max_connections from then on (beyond twice the cap it is closed at once,
    as a plain one is) and bounds the handshake by the header timeout: a client that opens
    connections and never finishes the handshake costs what one that never finishes its header
    does. (Through uvicorn's TLS settings, asyncio waits 60 s for each handshake, and uvicorn
    counts a connection only once its handshake is done.)"""

    def __init__(self, http: LimitedHttpToolsProtocol, context: ssl.SSLContext) -> None:
        self._http, self._context = http, context

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        http = self._http
        if http.open_connections(http.connections) + 1 > 2 * http.limits.max_connections:
            transport.close()
            return
        loop = http.loop
        done = loop.create_future()
        tls = _tls_protocol(loop)(
            loop, http, self._context, done, server_side=True,
            ssl_handshake_timeout=http.limits.header_timeout,
        )  # fmt: skip
        cast(asyncio.Transport, transport).set_protocol(tls)  # uvloop's: an unregistered Transport
        http.handshakes.add(http)
        done.add_done_callback(lambda _: self._done(done, transport))
        tls.connection_made(transport)

    def _done(self, handshake: asyncio.Future[None], transport: asyncio.BaseTransport) -> None:
        self._http.handshakes.discard(self._http)
        if handshake.cancelled() or handshake.exception() is not None:
            # Not TLS, a certificate refused, or too slow: the client's doing, nothing to log.
            # Closed now: the TLS layer's own close would wait for a shutdown that cannot come.
            cast(asyncio.Transport, transport).abort()


def protocol_factory(
    protocol: type[LimitedHttpToolsProtocol], tls: ssl.SSLContext | None
) -> Callable[..., asyncio.Protocol]:
    """What `uvicorn.Config(http=...)` takes: `protocol` for plain HTTP; for TLS (uvicorn given no
    TLS settings of its own), each connection's handshake through _Handshake, then `protocol`."""
    if tls is None:
        return protocol

    def make(**kwargs: Any) -> asyncio.Protocol:
        return _Handshake(protocol(**kwargs), tls)

    return make
