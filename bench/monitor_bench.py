"""What model monitoring costs per `:predict`, in CPU time, in process: the MNIST example's
request (one PNG digit) through the real ASGI app (routing, parsing, decoding, the model, encoding,
metrics), with monitoring off, and with monitoring on and the prediction log at sampleRate 1.0
(the request's part, plus the monitor thread's batches: classes, drift windows, request ids kept
for feedback, the log's lines). Both parts run in this one thread and are timed with its CPU
clock, so other processes on a busy machine do not count.

    python bench/monitor_bench.py [--requests 5000] [--batch 50] [--repeats 5] [--sample-rate 1.0]

The HTTP server's own work (uvicorn, httptools, the socket) is not in either figure: it adds the
same to both, so the share monitoring takes of a real server's time is smaller than the one here.
On a busy machine the two separate runs (off, on) vary more than monitoring costs; the monitor
thread's share of the monitored runs, measured within them, does not drift with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelport.clock import SystemClock
from modelport.examples import write_mnist_repository
from modelport.repository.config import single_model_config
from modelport.repository.manager import ModelManager
from modelport.runtimes import default_runtimes
from modelport.server.app import RestApp, ServerOptions
from modelport.server.metrics import ServerMetrics
from modelport.server.monitor import Monitor, MonitorOptions


async def _drive(
    app: RestApp, body: bytes, requests: int, batch: int, monitor: Monitor | None
) -> tuple[float, float]:
    """CPU seconds for `requests` predicts, the monitor's steps every `batch` requests included,
    and of those the steps' own."""
    scope: dict[str, Any] = {
        "type": "http", "method": "POST", "path": "/v1/models/mnist:predict", "query_string": b"",
        "http_version": "1.1", "headers": [(b"content-type", b"application/json")],
    }  # fmt: skip
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    steps = 0.0
    started = time.thread_time()
    for i in range(requests):
        await app(dict(scope), receive, send)
        if monitor is not None and ((i + 1) % batch == 0 or i + 1 == requests):
            step_started = time.thread_time()
            monitor.step()
            steps += time.thread_time() - step_started
    seconds = time.thread_time() - started
    assert statuses == [200] * requests, sorted(set(statuses))
    return seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--batch", type=int, default=50, help="answers per monitor step (10 ms at 5,000 req/s)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sample-rate", type=float, default=1.0, help="the prediction log's (default 1.0)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(2) as pool:
        repo = Path(work) / "mnist"
        write_mnist_repository(repo)
        manager = ModelManager(single_model_config("mnist", str(repo)), default_runtimes(), SystemClock())
        manager.poll()
        body = (repo / "samples" / "request.json").read_bytes()
        options = MonitorOptions(log_dir=Path(work) / "logs", sample_rate=args.sample_rate)
        metrics = ServerMetrics()
        monitor = Monitor(metrics.quality, options, lambda: manager.view)
        plain = RestApp(manager, ServerMetrics(), ServerOptions(), pool)
        watched = RestApp(manager, metrics, ServerOptions(), pool, monitor=monitor)
        loop = asyncio.new_event_loop()
        gc.collect()
        gc.freeze()  # as the server does once its models are loaded (server/main.py)
        loop.run_until_complete(_drive(plain, body, 500, args.batch, None))  # warm-up: the loop path
        loop.run_until_complete(_drive(watched, body, 500, args.batch, monitor))
        off, on, shares = [], [], []
        for _ in range(args.repeats):  # alternated, so drift on a busy machine hurts both alike
            off.append(loop.run_until_complete(_drive(plain, body, args.requests, args.batch, None))[0])
            seconds, steps = loop.run_until_complete(
                _drive(watched, body, args.requests, args.batch, monitor)
            )
            on.append(seconds)
            shares.append(steps / seconds)
        stop = threading.Event()
        stop.set()
        monitor.run(stop)  # closes the log
        loop.close()
    per_off = statistics.median(off) / args.requests * 1e6
    per_on = statistics.median(on) / args.requests * 1e6
    print(
        f"CPU per :predict, medians of {args.repeats} x {args.requests}: monitoring off {per_off:.1f} us, "
        f"on with the log at {args.sample_rate:g} {per_on:.1f} us (+{per_on - per_off:.1f} us); "
        f"req/s on one core: {per_off / per_on:.3f} of off; the monitor thread's share of the monitored "
        f"runs (interleaved with the requests, so a busy machine slows both alike): "
        f"{statistics.median(shares):.1%} (runs {min(shares):.1%}-{max(shares):.1%})"
    )


if __name__ == "__main__":
    main()
