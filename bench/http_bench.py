"""HTTP load benchmark: modelport's :predict beside the floor, driven by wrk; medians of repeats.

    python bench/http_bench.py                        # modelport vs floor at 1/8/64 connections
    python bench/http_bench.py --stack-compare        # floor + hello under uvicorn/httptools, h11, granian
    python bench/http_bench.py --ort-compare          # floor with different ONNX Runtime thread settings
    python bench/http_bench.py --duration 5 --repeats 5 --connections 1,64 --targets floor

Method. The model repository is written by `modelport example mnist DIR`; the request body is
DIR/samples/request.json (one 28x28 PNG digit, base64, the TF Serving "instances" format). Each
target is ONE server process on 127.0.0.1 (a free port found by binding port 0), and only one
runs at a time: for each repeat, each target in turn is started, waited for, driven by wrk at
every connection count (a warm-up run first, discarded), then stopped. The target order rotates
between repeats (A B, B A, ...) so drift and noisy neighbours hurt all targets alike. wrk uses
one thread unless --wrk-threads says otherwise (on a 2-core machine: one core for the server,
one for the load). Reported figures are the median
over the repeats of req/s, p50 and p99; errors (non-2xx answers, socket errors) are summed over
every measured run and flagged loudly (the exit status is then 3).

Writes bench/results/latest.json (or stacks.json / ort.json for the comparison modes; --out
overrides) and prints a Markdown snippet for bench/RESULTS.md. Every child process is killed on
exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import datetime
import importlib.metadata
import io
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
BIN = Path(PY).parent
LUA = HERE / "post.lua"
BASELINE = "floor"


# --------------------------------------------------------------------------- processes


_live: dict[int, subprocess.Popen[bytes]] = {}


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a server started in its own session: SIGTERM to its process group, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # The leader may be gone while workers it forked (granian) linger: always sweep the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    _live.pop(proc.pid, None)


def _kill_all() -> None:
    for proc in list(_live.values()):
        _kill_group(proc, grace=3.0)


def _on_signal(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in a process group (the server and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[0] is state; pgrp is the 5th field of stat
            total += int(fields[11]) + int(fields[12])
    return total / tick


# --------------------------------------------------------------------------- targets

# modelport as served by default (model monitoring on: drift against the example's reference
# profile, request ids kept for feedback), with monitoring off, and with the prediction log
# writing every request too (issue 17's speed budget compares the last two).
MODELPORT_VARIANTS: dict[str, list[str]] = {
    "modelport": [],
    "modelport-unmonitored": ["--disable_model_monitoring"],
    "modelport-logged": ["--prediction_log_sample_rate=1.0", "--prediction_log_dir={work}/prediction-logs"],
}


@dataclass
class Target:
    name: str
    cmd: list[str]
    url: str  # what wrk drives
    ready_url: str  # polled with GET until 200 (and ready_text in the body, when given)
    ready_text: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    group: str = ""  # stack-compare: "predict" or "hello"
    check_text: str | None = "predictions"  # the sanity request's answer must contain this


@dataclass
class Server:
    target: Target
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def started(target: Target, log_dir: Path, timeout: float) -> Iterator[Server]:
    log_path = log_dir / f"{target.name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} {shlex.join(target.cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            target.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **target.env},
            cwd=target.cwd,
            # Its own process group (Ctrl-C reaches us, we stop it) in our session: a session of
            # its own is a scheduler autogroup of its own (Linux's sched_autogroup), which on a
            # loaded machine starved a one-thread REST server at 1 connection to a fifth of its
            # req/s beside the load generator (p50 2.4 ms against 0.3 ms), a threaded one far less.
            process_group=0,
        )
    _live[proc.pid] = proc
    try:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{target.name} exited with status {proc.returncode} before answering.\n"
                    f"command: {shlex.join(target.cmd)}\n---- its log ({log_path}) ----\n"
                    f"{log_path.read_text(errors='replace')[-6000:]}"
                )
            try:
                with urllib.request.urlopen(target.ready_url, timeout=2) as r:
                    text = r.read().decode(errors="replace")
                    if r.status == 200 and (target.ready_text is None or target.ready_text in text):
                        break
                    last = f"{r.status}: {text[:200]}"
            except (OSError, urllib.error.HTTPError) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{target.name} did not become ready within {timeout:.0f} s (last: {last}).\n"
                    f"command: {shlex.join(target.cmd)}\n---- its log ({log_path}) ----\n"
                    f"{log_path.read_text(errors='replace')[-6000:]}"
                )
            time.sleep(0.1)
        yield Server(target, proc, log_path)
    finally:
        _kill_group(proc)


def sanity(target: Target, body: bytes) -> str:
    """One request by hand before the load: it must answer 200 with the expected content."""
    req = urllib.request.Request(target.url, body, {"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode(errors="replace")
            status = r.status
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    if status != 200 or (target.check_text and target.check_text not in text):
        raise RuntimeError(f"{target.name}: sanity request answered {status}: {text[:500]}")
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
        return f"class {json.loads(text)['predictions'][0]['classes']}"
    return text[:60]


def modelport_cli() -> str | None:
    """The modelport executable beside this Python (or on PATH), if it has `serve` and `example`."""
    exe = BIN / "modelport"
    path = str(exe) if exe.exists() else shutil.which("modelport")
    if not path:
        return None
    for sub in ("serve", "example"):
        try:
            subprocess.run([path, sub, "--help"], capture_output=True, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
    return path


def floor_target(
    name: str, model: str, port: int, *, app: str = "predict", http: str = "httptools",
    intra: int = 1, inter: int = 1, spin: bool = False, group: str = "",
) -> Target:  # fmt: skip
    cmd = [PY, str(HERE / "floor.py"), model if app == "predict" else "-", str(port), "--app", app]
    cmd += ["--http", http, "--intra", str(intra), "--inter", str(inter)] + (["--spin"] if spin else [])
    base = f"http://127.0.0.1:{port}"
    path = "/v1/models/mnist:predict" if app == "predict" else "/hello"
    return Target(
        name,
        cmd,
        base + path,
        base + "/",
        group=group,
        check_text="predictions" if app == "predict" else "ok",
    )


def granian_target(
    name: str, model: str, port: int, extra: list[str], *, app: str, intra: int, inter: int, group: str
) -> Target:
    cmd = [
        str(BIN / "granian"), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--http", "1", "--no-ws", "--log-level", "warning",
        *extra, "floor:from_env",
    ]  # fmt: skip
    env = {"FLOOR_APP": app, "FLOOR_MODEL": model, "FLOOR_INTRA": str(intra), "FLOOR_INTER": str(inter)}
    base = f"http://127.0.0.1:{port}"
    path = "/v1/models/mnist:predict" if app == "predict" else "/hello"
    return Target(
        name, cmd, base + path, base + "/", env=env, cwd=str(HERE), group=group,
        check_text="predictions" if app == "predict" else "ok",
    )  # fmt: skip


# Granian variants measured by --stack-compare (names are what --stacks selects).
GRANIAN_VARIANTS: dict[str, list[str]] = {
    "granian": ["--loop", "uvloop", "--runtime-threads", "1", "--runtime-mode", "st"],
    "granian-mt2": ["--loop", "uvloop", "--runtime-threads", "2", "--runtime-mode", "mt"],
    "granian-rusttask": ["--loop", "uvloop", "--runtime-threads", "1", "--runtime-mode", "st",
                         "--task-impl", "rust"],
    "granian-asyncio": ["--loop", "asyncio", "--runtime-threads", "1", "--runtime-mode", "st"],
}  # fmt: skip
STACKS = ["uvicorn-httptools", "uvicorn-h11", *GRANIAN_VARIANTS]
DEFAULT_STACKS = "uvicorn-httptools,uvicorn-h11,granian,granian-mt2"


def stack_targets(model: str, stacks: list[str], apps: list[str], intra: int, inter: int) -> list[Target]:
    targets = []
    for app in apps:
        for stack in stacks:
            name = f"{app}:{stack}"
            if stack.startswith("uvicorn-"):
                http = stack.removeprefix("uvicorn-")
                targets.append(
                    floor_target(
                        name, model, free_port(), app=app, http=http, intra=intra, inter=inter, group=app
                    )
                )
            elif stack in GRANIAN_VARIANTS:
                targets.append(
                    granian_target(
                        name, model, free_port(), GRANIAN_VARIANTS[stack], app=app, intra=intra, inter=inter,
                        group=app,
                    )
                )  # fmt: skip
            else:
                raise SystemExit(f"unknown stack {stack!r}; known: {', '.join(STACKS)}")
    return targets


ORT_VARIANTS = {  # name: (intra, inter, spin)
    "floor-intra1": (1, 1, False),
    "floor-intra2": (2, 1, False),
    "floor-intra0": (0, 0, False),
    "floor-ortdefault": (0, 0, True),
}


# --------------------------------------------------------------------------- load


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    requests: int
    server_cpu_pct: float  # CPU of the server's process group over the run, 100 = one core
    wrk_cpu_pct: float

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def parse_wrk(out: str) -> tuple[float, float, float, int, int, int]:
    def grab(pattern: str) -> str:
        m = re.search(pattern, out, re.M)
        if not m:
            raise ValueError(f"wrk output without {pattern!r}:\n{out}")
        return m.group(1)

    rps = float(grab(r"Requests/sec:\s+([\d.]+)"))
    p50 = _ms(grab(r"^\s+50%\s+(\S+)"))
    p99 = _ms(grab(r"^\s+99%\s+(\S+)"))
    requests = int(grab(r"(\d+) requests in"))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        sock = sum(int(x) for x in m.groups())
    return rps, p50, p99, non2xx, sock, requests


def wrk(
    url: str, body_file: Path, conns: int, seconds: int, threads: int, server_pgid: int, api_key: str = ""
) -> Run:
    """`api_key`: sent as x-api-key on every request (post.lua's BENCH_API_KEY)."""
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(LUA), url]
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_API_KEY": api_key}
    cpu0, wall0 = group_cpu_seconds(server_pgid), time.monotonic()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - wall0
    cpu = group_cpu_seconds(server_pgid) - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    wrk_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    rps, p50, p99, non2xx, sock, requests = parse_wrk(proc.stdout)
    return Run(rps, p50, p99, non2xx, sock, requests, 100 * cpu / wall, 100 * wrk_cpu / wall)


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("wrk is missing: installing it with apt-get", flush=True)
    sudo = [] if os.geteuid() == 0 else (["sudo"] if shutil.which("sudo") else None)
    if sudo is None or not shutil.which("apt-get"):
        raise SystemExit("wrk is missing and cannot be installed here (needs apt-get as root): install wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    if not shutil.which("wrk"):
        raise SystemExit("apt-get installed wrk but it is not on PATH")


# --------------------------------------------------------------------------- model repository


def write_repository(directory: Path, cli: str | None) -> str:
    """`modelport example mnist DIR`; without the CLI, a stand-in MLP (random weights) for trials."""
    if cli:
        subprocess.run(
            [cli, "example", "mnist", str(directory)], check=True, capture_output=True, timeout=120
        )
        for need in ("1/model.onnx", "samples/request.json"):
            if not (directory / need).exists():
                raise SystemExit(f"`modelport example mnist` wrote no {need} in {directory}")
        return "modelport example mnist"
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array((rng.standard_normal((784, 128)) * 0.05).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(128, np.float32), "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((128, 10)) * 0.1).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(10, np.float32), "b2")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["pixels", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["hr"]),
            helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [-1, 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [-1, 10])],
        [w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (directory / "1").mkdir(parents=True)
    (directory / "samples").mkdir()
    onnx.save(model, str(directory / "1" / "model.onnx"))
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
    image.save(directory / "samples" / "digit-7.png")
    png = io.BytesIO()
    image.save(png, format="PNG")
    request = {
        "signature_name": "serving_default",
        "instances": [{"image_bytes": {"b64": base64.b64encode(png.getvalue()).decode()}}],
    }
    (directory / "samples" / "request.json").write_text(json.dumps(request))
    return "stand-in MLP (modelport CLI missing)"


# --------------------------------------------------------------------------- report


def package_versions() -> dict[str, str]:
    names = ["modelport", "onnxruntime", "onnx", "numpy", "orjson", "pillow", "uvicorn", "uvloop",
             "httptools", "h11", "granian"]  # fmt: skip
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    osname = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = f"{line.split('=', 1)[1].strip(chr(34))}, kernel {platform.release()}"
    wrk_version = "-"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        text = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        wrk_version = (text.stdout + text.stderr).split("Copyright")[0].strip().removeprefix("wrk ")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": osname,
        "python": platform.python_version(),
        "wrk": wrk_version,
        "packages": package_versions(),
    }


def median_run(runs: list[Run]) -> dict[str, float]:
    return {
        "rps": statistics.median(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "server_cpu_pct": statistics.median(r.server_cpu_pct for r in runs),
        "wrk_cpu_pct": statistics.median(r.wrk_cpu_pct for r in runs),
        "errors": sum(r.errors for r in runs),
        "runs": len(runs),
    }


def _table(rows: list[list[str]], markdown: bool) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = [all(re.fullmatch(r"[!\d.,\s]+", r[i]) for r in rows[1:]) for i in range(len(widths))]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded)

    out = [line(rows[0])]
    if markdown:
        out.append(
            "|"
            + "|".join(("-" * (w + 1) + ":") if right[i] else "-" * (w + 2) for i, w in enumerate(widths))
            + "|"
        )
    else:
        out.append("  ".join("-" * w for w in widths))
    out += [line(r) for r in rows[1:]]
    return "\n".join(out)


def _err(m: dict[str, float]) -> str:
    return f"!! {m['errors']:.0f}" if m["errors"] else "0"


def side_by_side(
    med: dict[str, dict[int, dict[str, float]]], conns: list[int], base: str, markdown: bool
) -> str:
    """One row per connection count, the targets side by side, then each target / base."""
    names = list(med)
    others = [n for n in names if n != base] if base in names else []
    head = ["conns"]
    for n in names:
        head += [f"{n} req/s", f"{n} p50 ms", f"{n} p99 ms", f"{n} errors"]
    for n in others:
        head += [f"{n}/{base} req/s", f"{n}/{base} p99"]
    rows = [head]
    for c in conns:
        row = [str(c)]
        for n in names:
            m = med[n][c]
            row += [f"{m['rps']:,.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}", _err(m)]
        for n in others:
            m, b = med[n][c], med[base][c]
            row += [f"{m['rps'] / b['rps']:.2f}", f"{m['p99_ms'] / b['p99_ms']:.2f}"]
        rows.append(row)
    return _table(rows, markdown)


def long_table(
    med: dict[str, dict[int, dict[str, float]]], conns: list[int], targets: list[Target], markdown: bool
) -> str:
    """Stack comparison: one row per (app, stack, connections), ratios against the group's first stack."""
    rows = [["app", "stack", "conns", "req/s", "p50 ms", "p99 ms", "req/s vs first", "p99 vs first",
             "server CPU %", "errors"]]  # fmt: skip
    groups: dict[str, list[Target]] = {}
    for t in targets:
        groups.setdefault(t.group, []).append(t)
    for group, members in groups.items():
        first = members[0].name
        for c in conns:
            for t in members:
                m, b = med[t.name][c], med[first][c]
                rows.append([
                    group, t.name.split(":", 1)[-1], str(c), f"{m['rps']:,.0f}", f"{m['p50_ms']:.2f}",
                    f"{m['p99_ms']:.2f}", f"{m['rps'] / b['rps']:.2f}", f"{m['p99_ms'] / b['p99_ms']:.2f}",
                    f"{m['server_cpu_pct']:.0f}", _err(m),
                ])  # fmt: skip
    return _table(rows, markdown)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded warm-up before each run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="measured runs per target and connection count"
    )
    parser.add_argument("--connections", default="1,8,64", help="comma-separated (default 1,8,64)")
    parser.add_argument("--wrk-threads", default="1", help="wrk threads (default 1), or auto")
    parser.add_argument("--intra", type=int, default=1, help="ONNX Runtime intra-op threads, every target")
    parser.add_argument("--inter", type=int, default=1, help="ONNX Runtime inter-op threads, every target")
    parser.add_argument(
        "--targets",
        default="modelport,floor",
        help="default mode: which of modelport,modelport-unmonitored,modelport-logged,floor",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stack-compare", action="store_true", help="floor and hello under each HTTP stack")
    mode.add_argument("--ort-compare", action="store_true", help="floor under several ORT thread settings")
    parser.add_argument(
        "--stacks", default=DEFAULT_STACKS, help=f"--stack-compare: any of {','.join(STACKS)}"
    )
    parser.add_argument("--apps", default="predict,hello", help="--stack-compare: predict,hello")
    parser.add_argument(
        "--start-timeout", type=float, default=90, help="seconds for a server to become ready"
    )
    parser.add_argument("--out", type=Path, help="JSON results file (default bench/results/<mode>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (model, server logs)")
    args = parser.parse_args()
    conns = [int(c) for c in args.connections.split(",") if c.strip()]
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(_kill_all)

    ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="modelport-bench-"))
    try:
        return run(args, conns, work)
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}): servers stopped", file=sys.stderr)
        return 130
    finally:
        _kill_all()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, conns: list[int], work: Path) -> int:
    cli = modelport_cli()
    repo = work / "mnist"
    source = write_repository(repo, cli)
    model = str(repo / "1" / "model.onnx")
    body_file = repo / "samples" / "request.json"
    body = body_file.read_bytes().strip()
    print(f"model repository: {repo} ({source}); request body {len(body):,} bytes", flush=True)

    if args.stack_compare:
        mode, base = "stacks", None
        apps = [a for a in args.apps.split(",") if a]
        targets = stack_targets(model, args.stacks.split(","), apps, args.intra, args.inter)
    elif args.ort_compare:
        mode, base = "ort", "floor-intra1"
        targets = [
            floor_target(name, model, free_port(), intra=i, inter=j, spin=s)
            for name, (i, j, s) in ORT_VARIANTS.items()
        ]
    else:
        mode, base = "latest", BASELINE
        wanted = [t for t in args.targets.split(",") if t]
        targets = []
        variants = [w for w in wanted if w in MODELPORT_VARIANTS]
        if variants and cli is None:
            print(
                "\n*** modelport target SKIPPED: no working `modelport serve` / `modelport example` CLI "
                f"beside {PY} or on PATH (pip install -e . first). Only the floor is measured.\n",
                flush=True,
            )
        for name in variants if cli is not None else []:
            port = free_port()
            extra = [a.replace("{work}", str(repo.parent)) for a in MODELPORT_VARIANTS[name]]
            targets.append(
                Target(
                    name,
                    [
                        cli,
                        "serve",
                        "--host",
                        "127.0.0.1",
                        f"--rest_api_port={port}",
                        "--model_name=mnist",
                        f"--model_base_path={repo}",
                        f"--intra_op_parallelism={args.intra}",
                        f"--inter_op_parallelism={args.inter}",
                        "--log_level=warning",
                        *extra,
                    ],
                    f"http://127.0.0.1:{port}/v1/models/mnist:predict",
                    f"http://127.0.0.1:{port}/v1/models/mnist",
                    ready_text="AVAILABLE",
                )
            )
        if "floor" in wanted:
            targets.append(floor_target("floor", model, free_port(), intra=args.intra, inter=args.inter))
    if not targets:
        raise SystemExit("nothing to measure")

    def threads(c: int) -> int:
        return min(c, 2) if args.wrk_threads == "auto" else int(args.wrk_threads)

    total = len(targets) * len(conns) * args.repeats * (args.duration + args.warmup)
    print(
        f"{len(targets)} targets x {conns} connections x {args.repeats} repeats, "
        f"{args.warmup}+{args.duration} s each: about {total / 60:.1f} min of load",
        flush=True,
    )
    results: dict[str, dict[int, list[Run]]] = {t.name: {c: [] for c in conns} for t in targets}
    sanity_answers: dict[str, str] = {}
    started_at = time.time()
    for repeat in range(args.repeats):
        shift = repeat % len(targets)
        for target in targets[shift:] + targets[:shift]:
            with started(target, work, args.start_timeout) as server:
                answer = sanity(target, body)
                sanity_answers.setdefault(target.name, answer)
                for c in conns:
                    wrk(target.url, body_file, c, args.warmup, threads(c), server.proc.pid)
                    r = wrk(target.url, body_file, c, args.duration, threads(c), server.proc.pid)
                    results[target.name][c].append(r)
                    flag = (
                        f"   !!! {r.non2xx} non-2xx, {r.socket_errors} socket errors !!!" if r.errors else ""
                    )
                    print(
                        f"[{repeat + 1}/{args.repeats}] {target.name:>26} c={c:<3} t={threads(c)} "
                        f"{r.rps:9,.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
                        f"server CPU {r.server_cpu_pct:4.0f}%  wrk CPU {r.wrk_cpu_pct:4.0f}%  "
                        f"({answer}){flag}",
                        flush=True,
                    )

    med = {n: {c: median_run(rs) for c, rs in by.items()} for n, by in results.items()}
    info = machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    launcher = os.environ.get("BENCH_LAUNCHER", "python bench/http_bench.py")
    command = f"{launcher} {shlex.join(sys.argv[1:])}".strip()
    errors = {f"{n} c={c}": m["errors"] for n, by in med.items() for c, m in by.items() if m["errors"]}

    if mode == "stacks":
        console, markdown = (long_table(med, conns, targets, md) for md in (False, True))
    else:
        console, markdown = (side_by_side(med, conns, base or "", md) for md in (False, True))
    wrk_threads = "min(connections, 2)" if args.wrk_threads == "auto" else args.wrk_threads
    print(f"\n==== medians of {args.repeats} runs of {args.duration} s (wrk threads {wrk_threads}) ====\n")
    print(console)
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    print("\n---- Markdown for bench/RESULTS.md ----\n")
    print(
        f"{when}; {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}; "
        f"Python {info['python']}; wrk {info['wrk']}; {pkgs}.  \n"
        f"`{command}` (medians of {args.repeats} x {args.duration} s after a {args.warmup} s warm-up; "
        f"wrk threads {wrk_threads}; ORT intra {args.intra}, inter {args.inter})\n"
    )
    print(markdown)
    if errors:
        print("\n**ERRORS during the runs (non-2xx or socket errors): " +
              ", ".join(f"{k}: {v:.0f}" for k, v in errors.items()) + "**")  # fmt: skip

    out = args.out or HERE / "results" / f"{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": when,
                "command": command,
                "machine": info,
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "model": source,
                "elapsed_s": round(time.time() - started_at),
                "targets": [
                    {
                        "name": t.name,
                        "cmd": shlex.join(t.cmd),
                        "env": t.env,
                        "url": t.url,
                        "sanity": sanity_answers.get(t.name),
                    }
                    for t in targets
                ],
                "medians": {n: {str(c): m for c, m in by.items()} for n, by in med.items()},
                "runs": {
                    n: {str(c): [asdict(r) for r in rs] for c, rs in by.items()} for n, by in results.items()
                },
                "errors": errors,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nresults: {out}")
    if errors:
        bad = ", ".join(f"{k}: {v:.0f}" for k, v in errors.items())
        bar = "!" * 78
        print(
            f"\n{bar}\n!!! SOME RUNS HAD ERRORS (non-2xx answers or socket errors): the figures above\n"
            f"!!! are not trustworthy. {bad}\n{bar}",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
