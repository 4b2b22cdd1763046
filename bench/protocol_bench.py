"""The HTTP protocol's own cost per request, this tree's against another revision's.

    python bench/protocol_bench.py --base 1650ca2      # the protocol before the connection limits
    python bench/protocol_bench.py --base main --repeats 60 --requests 5000

Method. No sockets: each protocol class (`OneWriteHttpToolsProtocol` of this tree's src/, and
of --base's, unpacked with `git archive`) runs in a process of its own, with its own tree first
on sys.path; it gets a connection whose transport drops what is written, then one keep-alive
connection's worth of requests, each a 131-byte POST whose 30-byte body arrives with its head,
answered by a minimal ASGI app (reads the body, sends 23 bytes). Each request is fed to
`data_received` and its task awaited. CPU time (`time.process_time`) per request is measured over
--requests requests, the two processes taking turns, --repeats times; the minimum and median are
printed. CPU time rather than wall time, and the minimum, because the machine is shared: noise
only ever adds time. What it leaves out: the kernel, the event loop's I/O, the model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def _tree_at(revision: str) -> Path:
    """src/ of `revision`, unpacked into a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="protocol-bench-"))
    archive = subprocess.run(
        ["git", "archive", revision, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def _protocol() -> type[Any]:
    """The protocol `modelport serve` would use, from whichever modelport is first on sys.path."""
    from modelport.server import http_protocol

    cls: type[Any] = http_protocol.OneWriteHttpToolsProtocol
    if not hasattr(cls, "with_limits"):  # before the connection limits
        return cls
    from modelport.server import http_limits

    return cls.with_limits(http_limits.ConnectionLimits())


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


def _measure(requests: int) -> None:
    """The child: one measurement per line read from stdin, printed in µs."""
    cls = _protocol()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    for _ in sys.stdin:
        print(_microseconds(cls, loop, requests), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _measure(args.requests)
        return
    trees = {args.base: _tree_at(args.base), "this tree": ROOT / "src"}
    children = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--measure", "--base", args.base, "--requests", str(args.requests)],
            env={**os.environ, "PYTHONPATH": str(tree)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for name, tree in trees.items()
    }  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name in children}
    try:
        for _ in range(args.repeats):
            for name, child in children.items():
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write("run\n")
                child.stdin.flush()
                results[name].append(float(child.stdout.readline()))
    finally:
        for child in children.values():
            child.kill()
            child.wait()
    for name, values in results.items():
        low, middle = min(values), statistics.median(values)
        print(f"{name:>12}: min {low:6.2f} µs, median {middle:6.2f} µs CPU per request")


if __name__ == "__main__":
    main()
