"""HTTP load benchmark: modelport's :predict beside the floor, driven by wrk, medians of repeats.

    python bench/http_bench.py                      # modelport vs floor, 1/8/64 connections
    python bench/http_bench.py --stack-compare      # the floor under uvicorn+httptools, h11, granian
    python bench/http_bench.py --duration 5 --repeats 5 --connections 1,64

Every target is one process on 127.0.0.1, started once and kept up; runs are interleaved
(target A, target B, A, B, ...) so a noisy neighbour hurts both alike. Each measured run follows
a 2 s warm-up at the same concurrency. Figures are medians over the repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
BIN = Path(PY).parent


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Target:
    name: str
    cmd: list[str]
    path: str
    ready_path: str
    env: dict[str, str] | None = None
    cwd: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return Run(rps, p50, p99, errors)


def wrk(url: str, lua: Path, conns: int, seconds: float) -> Run:
    cmd = [
        "wrk",
        f"-t{min(conns, 2)}",
        f"-c{conns}",
        f"-d{round(seconds)}s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


@contextlib.contextmanager
def started(target: Target, log_dir: Path) -> Iterator[str]:
    log = open(log_dir / f"{target.name}.log", "wb")  # noqa: SIM115
    env = {**os.environ, **(target.env or {})}
    proc = subprocess.Popen(
        target.cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=target.cwd, start_new_session=True
    )
    base = target.path.split("/v1/")[0] if "/v1/" in target.path else target.path.rsplit("/", 1)[0]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + target.ready_path, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{target.name} did not start:\n{(log_dir / f'{target.name}.log').read_text()}"
                )
            time.sleep(0.1)
        yield target.path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def lua_script(body: bytes, directory: Path) -> Path:
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
    )
    return script


def targets_default(repo: Path, work: Path, intra: int) -> list[Target]:
    model = str(repo / "1" / "model.onnx")
    p1, p2 = free_port(), free_port()
    return [
        Target(
            "modelport",
            [
                str(BIN / "modelport"),
                "serve",
                "--host",
                "127.0.0.1",
                f"--rest_api_port={p1}",
                "--model_name=mnist",
                f"--model_base_path={repo}",
                f"--intra_op_parallelism={intra}",
                "--log_level=warning",
            ],
            f"http://127.0.0.1:{p1}/v1/models/mnist:predict",
            "/readyz",
        ),
        Target(
            "floor",
            [PY, str(HERE / "floor.py"), model, str(p2), f"--intra={intra}"],
            f"http://127.0.0.1:{p2}/predict",
            "/",
        ),
    ]


def targets_stacks(repo: Path, intra: int) -> list[Target]:
    model = str(repo / "1" / "model.onnx")
    ports = [free_port() for _ in range(3)]
    env = {"FLOOR_MODEL": model, "FLOOR_INTRA": str(intra)}
    return [
        Target(
            "uvicorn-httptools",
            [PY, str(HERE / "floor.py"), model, str(ports[0]), f"--intra={intra}"],
            f"http://127.0.0.1:{ports[0]}/predict",
            "/",
        ),
        Target(
            "uvicorn-h11",
            [
                PY,
                "-m",
                "uvicorn",
                "--factory",
                "floor:from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[1]),
                "--http",
                "h11",
                "--loop",
                "uvloop",
                "--no-access-log",
                "--log-level",
                "warning",
                "--lifespan",
                "off",
            ],
            f"http://127.0.0.1:{ports[1]}/predict",
            "/",
            env,
            str(HERE),
        ),
        Target(
            "granian",
            [
                str(BIN / "granian"),
                "--interface",
                "asgi",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[2]),
                "--workers",
                "1",
                "--loop",
                "uvloop",
                "--no-ws",
                "--log-level",
                "warning",
                "floor:from_env",
            ],
            f"http://127.0.0.1:{ports[2]}/predict",
            "/",
            env,
            str(HERE),
        ),
    ]


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import onnxruntime
    import uvicorn

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gib": f"{mem:.0f}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "uvicorn": uvicorn.__version__,
    }


def report(results: dict[str, dict[int, list[Run]]], conns: list[int], base: str) -> str:
    names = list(results)
    head = "| connections | " + " | ".join(f"{n} req/s | p50 ms | p99 ms" for n in names)
    others = [n for n in names if n != base]
    head += "".join(f" | {n}/{base} req/s | {n}/{base} p99" for n in others) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(names) + 2 * len(others))]
    for c in conns:
        med = {
            n: Run(
                *(
                    statistics.median(getattr(r, f) for r in results[n][c])
                    for f in ("rps", "p50_ms", "p99_ms")
                ),
                errors=sum(r.errors for r in results[n][c]),
            )
            for n in names
        }
        cells = [f"{med[n].rps:,.0f} | {med[n].p50_ms:.2f} | {med[n].p99_ms:.2f}" for n in names]
        ratios = [
            f"{med[n].rps / med[base].rps:.2f} | {med[n].p99_ms / med[base].p99_ms:.2f}" for n in others
        ]
        lines.append(f"| {c} | " + " | ".join(cells + ratios) + " |")
        for n in names:
            if med[n].errors:
                lines.append(f"\n**{n} at {c} connections: {med[n].errors} errors (non-2xx or socket)**\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--intra", type=int, default=1, help="ONNX Runtime intra-op threads, both sides")
    parser.add_argument("--stack-compare", action="store_true")
    args = parser.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="modelport-bench-"))
    repo = work / "mnist"
    subprocess.run([str(BIN / "modelport"), "example", "mnist", str(repo)], check=True, capture_output=True)
    lua = lua_script((repo / "samples" / "request.json").read_bytes().strip(), work)
    targets = (
        targets_stacks(repo, args.intra) if args.stack_compare else targets_default(repo, work, args.intra)
    )
    base = targets[0].name if args.stack_compare else "floor"
    results: dict[str, dict[int, list[Run]]] = {t.name: {c: [] for c in conns} for t in targets}
    with contextlib.ExitStack() as stack:
        urls = {t.name: stack.enter_context(started(t, work)) for t in targets}
        for repeat in range(args.repeats):
            for c in conns:
                for t in targets:
                    wrk(urls[t.name], lua, c, 2)  # warm-up, discarded
                    run = wrk(urls[t.name], lua, c, args.duration)
                    results[t.name][c].append(run)
                    print(
                        f"[{repeat + 1}/{args.repeats}] {t.name:>18} c={c:<3} {run.rps:9,.0f} req/s "
                        f"p50 {run.p50_ms:6.2f} ms p99 {run.p99_ms:6.2f} ms errors {run.errors}",
                        flush=True,
                    )
    table = report(results, conns, base)
    info = machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{when}; {info}\ncommand: python bench/http_bench.py {' '.join(sys.argv[1:])}\n\n{table}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = "stacks.json" if args.stack_compare else "latest.json"
    (out / name).write_text(
        json.dumps(
            {
                "date": when,
                "machine": info,
                "args": vars(args),
                "runs": {
                    n: {str(c): [asdict(r) for r in rs] for c, rs in by.items()} for n, by in results.items()
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
