"""A against B on one model: two `modelport serve` processes of the MNIST MLP side by side, each
warmed up, then driven by wrk in turns (A, B, A, B, ...) so the machine's drift hits both alike.
Shared by bench/tls_bench.py and bench/keys_bench.py."""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
