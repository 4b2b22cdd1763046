"""A against B on one model: two `modelport serve` processes of the MNIST MLP side by side, each
warmed up, then driven by wrk in turns (A, B, A, B, ...) so the machine's drift hits both alike
(turns(): bench/tls_bench.py, keys_bench.py). And what every A/B bench shares: gRPC load from
h2load with a hand-framed call checked first (serving_bench.py, grpc_bench.py), the server's CPU
per request, and the report (a console table, then the Markdown for bench/RESULTS.md with the
date, machine, load average and command)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import http_bench as hb

Results = dict[int, dict[str, list[hb.Run]]]  # per connection count, per side: the runs in order


@dataclass
class Side:
    name: str
    args: list[str]  # `modelport serve` flags beyond the model and ports
    scheme: str = "http"
    api_key: str = ""  # sent on every request
    context: ssl.SSLContext | None = None  # what checks its certificate, for https


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """--conns, --repeats and --seconds; the bench adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conns", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    return parser


@contextmanager
def workspace(prefix: str) -> Iterator[tuple[Path, Path]]:
    """wrk checked, a temporary folder with the MNIST repository in it: (folder, repository)."""
    hb.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        hb.write_repository(work / "mnist", hb.modelport_cli())
        yield work, work / "mnist"


def start(name: str, repo: Path, work: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port_file = work / f"{name}.port.json"
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - the server's for its life
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "serve", "--host", "127.0.0.1", "--rest_api_port", "0",
         "--port", "0", "--model_name", "mnist", "--model_base_path", str(repo),
         "--port_file", str(port_file), *extra],
        # Its own process group (stopped with killpg) in the bench's session: a session of its own
        # would be a scheduler autogroup of its own (http_bench.started says what that cost).
        stdout=log, stderr=subprocess.STDOUT, process_group=0,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start: {(work / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, json.loads(port_file.read_text())["rest_api_port"]


def wait_ready(url: str, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready within 60 s")


def ensure_h2load() -> None:
    if shutil.which("h2load"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-client"], check=True, env=env)


def h2load(port: int, body: Path, conns: int, seconds: int, pgid: int, log: Path) -> hb.Run:
    """Unary gRPC calls over HTTP/2: `conns` connections, one stream each (like wrk's connections)."""
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
    log.unlink(missing_ok=True)
    cmd = [
        "h2load", "-t1", f"-c{conns}", "-m1", f"-D{seconds}", "-d", str(body),
        "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", str(log), url,
    ]  # fmt: skip
    cpu0, wall0 = hb.group_cpu_seconds(pgid), time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - wall0
    cpu = hb.group_cpu_seconds(pgid) - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed: {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    latencies, failed = [], 0
    for line in log.read_text().splitlines():
        _start, status, micros = line.split("\t")[:3]
        latencies.append(int(micros) / 1000)
        failed += status != "200"
    latencies.sort()
    done = len(latencies)
    p50 = latencies[done // 2] if done else 0.0
    p99 = latencies[min(done - 1, int(done * 0.99))] if done else 0.0
    return hb.Run(done / seconds, p50, p99, failed, 0, done, 100 * cpu / wall, 0.0)


def grpc_sanity(port: int, model: str, framed: Path) -> None:
    """One call by hand: the hand-framed body must get a real answer (h2load sees HTTP status only)."""
    import grpc

    from modelport.server.grpc_v2 import inference_pb2 as pb

    request = pb.ModelInferRequest.FromString(framed.read_bytes()[5:])
    request.model_name = model
    framed.write_bytes(b"\x00" + struct.pack(">I", request.ByteSize()) + request.SerializeToString())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response = call(request, timeout=10)
    if not response.outputs:
        raise RuntimeError(f"gRPC sanity call got no outputs: {response}")


def cpu_us(run: hb.Run, seconds: int) -> float:
    """The server's CPU time per answered request in µs: the figure that survives a shared machine
    (req/s follows the share of the cores the server got)."""
    return run.server_cpu_pct / 100 * seconds / max(run.requests, 1) * 1e6


def cpu_per_request(runs: list[hb.Run], seconds: int) -> float:
    """cpu_us's median over runs."""
    return statistics.median(cpu_us(r, seconds) for r in runs)


def print_report(
    rows: list[list[str]], ratios: list[list[str]], command: str, repeats: int, seconds: int, warmup: int
) -> tuple[dict[str, Any], str]:
    """The medians' and the ratios' tables, for the console and then as Markdown under a line that
    says when, on what, at which load and with which command; returns (machine, when)."""
    info = hb.machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"\n==== medians of {repeats} runs of {seconds} s ====\n")
    print(hb._table(rows, False) + "\n\n" + hb._table(ratios, False))
    print("\n---- Markdown for bench/RESULTS.md ----\n")
    print(f"{when}; {info['cpu']}, {info['cores']} cores, load average {load}; `{command}` "
          f"(medians of {repeats} x {seconds} s after {warmup} s warm-up)\n")  # fmt: skip
    print(hb._table(rows, True) + "\n\n" + hb._table(ratios, True))
    return info, when


def turns(sides: list[Side], repo: Path, work: Path, args: argparse.Namespace) -> Results:
    """Each side's server started and ready; per connection count a 2 s warm-up each, not counted,
    then `args.repeats` turns of `args.seconds` each; the servers stopped."""
    body = repo / "samples" / "request.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls, pgids = {}, {}
        for side in sides:
            proc, port = start(side.name, repo, work, side.args)
            procs.append(proc)
            urls[side.name] = f"{side.scheme}://127.0.0.1:{port}"
            pgids[side.name] = os.getpgid(proc.pid)
        for side in sides:
            wait_ready(urls[side.name], side.context)
        results: Results = {}
        for conns in args.conns:
            runs: dict[str, list[hb.Run]] = {side.name: [] for side in sides}
            for side in sides:  # warm-up, not counted
                url = urls[side.name] + "/v1/models/mnist:predict"
                hb.wrk(url, body, conns, 2, 1, pgids[side.name], side.api_key)
            for _ in range(args.repeats):
                for side in sides:  # in turns: the machine's drift hits both
                    url = urls[side.name] + "/v1/models/mnist:predict"
                    runs[side.name].append(
                        hb.wrk(url, body, conns, args.seconds, 1, pgids[side.name], side.api_key)
                    )
            results[conns] = runs
        return results
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
