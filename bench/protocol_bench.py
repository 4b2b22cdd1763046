"""The HTTP protocol's own cost per request, this tree's against another revision's.

    python bench/protocol_bench.py --base 1650ca2      # the protocol before the connection limits
    python bench/protocol_bench.py --base main --repeats 60 --requests 5000

Method. One process, no sockets: each protocol class (`OneWriteHttpToolsProtocol` of
src/modelport/server/http_protocol.py here, and of the same file at --base, loaded from
`git show`) gets a connection whose transport drops what is written, then one keep-alive
connection's worth of requests, each a 131-byte POST whose 30-byte body arrives with its head,
answered by a minimal ASGI app (reads the body, sends 23 bytes). Each request is fed to
`data_received` and its task awaited. CPU time (`time.process_time`) per request is measured over
--requests requests, the two classes alternating, --repeats times; the minimum and median are
printed. CPU time rather than wall time, and the minimum, because the machine is shared: noise
only ever adds time. What it leaves out: the kernel, the event loop's I/O, the model.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"predictions":[[3.0]]}'
REQUEST_BODY = b'{"instances": [1.0, 2.0, 3.0]}'
REQUEST = (
    b"POST /v1/models/half:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(REQUEST_BODY)
) + REQUEST_BODY


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"23")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


class Sink(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _protocol_at(revision: str) -> type[Any]:
    source = subprocess.run(
        ["git", "show", f"{revision}:src/modelport/server/http_protocol.py"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "base_http_protocol.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("base_http_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls: type[Any] = module.OneWriteHttpToolsProtocol
    return cls.with_limits(module.ConnectionLimits()) if hasattr(cls, "with_limits") else cls


def _microseconds(cls: type[Any], loop: asyncio.AbstractEventLoop, requests: int) -> float:
    config = Config(app, loop="none", http=cls, lifespan="off", access_log=False, log_level="error")
    config.load()
    state = ServerState()
    protocol = cls(config=config, server_state=state, app_state={}, _loop=loop)
    protocol.connection_made(Sink())

    async def drive() -> float:
        started = time.process_time()
        for _ in range(requests):
            protocol.data_received(REQUEST)
            await next(iter(state.tasks))
        return (time.process_time() - started) / requests * 1e6

    try:
        return loop.run_until_complete(drive())
    finally:
        protocol.connection_lost(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from modelport.server import http_protocol

    classes = {
        args.base: _protocol_at(args.base),
        "this tree": http_protocol.OneWriteHttpToolsProtocol.with_limits(http_protocol.ConnectionLimits()),
    }
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    results: dict[str, list[float]] = {name: [] for name in classes}
    for _ in range(args.repeats):
        for name, cls in classes.items():
            results[name].append(_microseconds(cls, loop, args.requests))
    for name, values in results.items():
        low, middle = min(values), statistics.median(values)
        print(f"{name:>12}: min {low:6.2f} µs, median {middle:6.2f} µs CPU per request")


if __name__ == "__main__":
    main()
