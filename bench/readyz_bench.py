"""/readyz's latency with `--workers 2` (every worker's readiness, read from the run's folder)
against one process (its own), as a probe asks it: a new connection per probe.

    python bench/readyz_bench.py [--probes 500] [--repeats 5] [--load 0 16]

Both servers serve the MNIST example. Per turn, each side (in turns: A, B, A, B, ...) gets
`--probes` probes one after the other, with `--load` connections of wrk's :predict on the same
server meanwhile (0: idle). Prints p50 / p99 / max per side and load over all its turns, and the
ratio of p99s.
"""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ab
import http_bench as hb


def _probes(port: int, count: int) -> list[float]:
    """Seconds each: connect, GET /readyz, read the answer (200 expected), close."""
    took = []
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/readyz")
        answer = conn.getresponse()
        answer.read()
        conn.close()
        took.append(time.perf_counter() - started)
        if answer.status != 200:
            raise SystemExit(f"/readyz answered {answer.status} on port {port}")
    return took


def _loaded(url: str, body: Path, conns: int, seconds: int) -> subprocess.Popen[bytes] | None:
    if conns == 0:
        return None
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(hb.LUA), url + "/v1/models/mnist:predict"]
    env = {**os.environ, "BENCH_BODY": str(body), "BENCH_API_KEY": ""}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = ab.arguments(__doc__)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--load", type=int, nargs="+", default=[0, 16])
    args = parser.parse_args()
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    with ab.workspace("readyz-bench-") as (work, repo):
        procs: dict[str, subprocess.Popen[bytes]] = {}
        ports: dict[str, int] = {}
        try:
            for name, extra in [("workers2", ["--workers", "2"]), ("workers1", [])]:
                procs[name], ports[name] = ab.start(name, repo, work, [*extra, "--log_level", "warning"])
            for port in ports.values():
                for _ in range(10):  # a connection each: every worker ready, not just one
                    ab.wait_ready(f"http://127.0.0.1:{port}")
            body = repo / "samples" / "request.json"
            for conns in args.load:
                took: dict[str, list[float]] = {name: [] for name in ports}
                for _ in range(args.repeats):
                    for name, port in ports.items():
                        wrk = _loaded(f"http://127.0.0.1:{port}", body, conns, 600)
                        if wrk is not None:
                            time.sleep(1)  # wrk's connections open and busy
                        try:
                            took[name] += _probes(port, args.probes)
                        finally:
                            if wrk is not None:
                                wrk.send_signal(signal.SIGINT)
                                wrk.wait(10)
                print(f"\n/readyz, {args.repeats} turns of {args.probes} probes, :predict load {conns} conns")
                p99 = {}
                for name, times in took.items():
                    ms = sorted(1000 * t for t in times)
                    p99[name] = ms[int(0.99 * len(ms)) - 1]
                    p50 = statistics.median(ms)
                    print(f"  {name:9} p50 {p50:7.3f} ms  p99 {p99[name]:7.3f} ms  max {ms[-1]:7.3f} ms")
                print(f"  p99 workers2 / workers1: {p99['workers2'] / p99['workers1']:.2f}")
        finally:
            for proc in procs.values():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
