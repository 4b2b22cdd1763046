"""Server CPU per `:predict`, in process: the real `modelport serve` (its CLI, its app, its uvicorn
HTTP protocol class, its threads: the monitor's, the model repository's), each connection's
socket replaced by an in-memory transport. The MNIST MLP answers one PNG digit per request (the
body of bench/serving_bench.py). What is timed is the whole process's CPU (every thread), so a
busy machine's other processes do not count; the kernel's socket work does not either (it is the
same for every tree).

    python bench/predict_cpu.py --baseline 83a6150                    # this tree against a commit
    python bench/predict_cpu.py --baseline 83a6150 --serve-args=--disable_model_monitoring
    python bench/predict_cpu.py --also=--disable_model_monitoring --also=--prediction_log_sample_rate=1
    python bench/predict_cpu.py --modes off,on,log --baseline 83a6150     # monitoring's cost, in process

Each tree (this one, and `--baseline REF ...` checked out with `git worktree add --detach`) runs
in its own process (PYTHONPATH=<tree>/src, the same interpreter and packages), kept alive; the
rounds alternate between them: `--requests` per round on `--connections` connections (each
connection's next request is sent once its answer is complete), `--repeats` rounds each, after a
warm-up. Printed: CPU µs per request (median and range of the rounds) and the ratio to the first
baseline (medians), and the equivalent of req/s on one core.

Two processes of the same tree differ by up to ~10% (hash seeds, memory layout): a cost smaller
than that is measured within one process. `--modes off,on,log` does it for model monitoring: each
process switches between its rounds (the app's monitor detached; attached with the prediction
log's sampleRate 0; 1.0), and each mode is compared with the same process's first mode. A tree
whose monitor runs in its own process (server/monitor_process.py) cannot switch its log: there,
`on` is the monitor as its flags say (`--also=--prediction_log_sample_rate=1 --modes off,on` for
the log), and "CPU" is the server process's; `--threads` shows the monitor process's beside it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _driver(requests_body: bytes, connections: int) -> None:
    """In the tree's process: replace uvicorn.Server.run, then run `modelport serve`."""
    import asyncio
    import gc
    import threading
    import time

    import uvicorn
    import uvloop
    from uvicorn.server import ServerState

    class Sink(asyncio.Transport):
        """A connection's socket: what is written is parsed for the end of its response."""

        def __init__(self, done: asyncio.Future[bytes] | None = None) -> None:
            super().__init__()
            self.done = done
            self.data = bytearray()

        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.data += data
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.data[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            if len(self.data) >= end + 4 + length and self.done is not None and not self.done.done():
                self.done.set_result(bytes(self.data))
                self.data.clear()

        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8501)}.get(name, default)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

        def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
            pass

        def get_write_buffer_size(self) -> int:
            return 0

    collecting = {"since": 0.0, "seconds": 0.0, "full": 0}

    def timed_gc(phase: str, info: dict[str, int]) -> None:  # the cyclic collector's CPU time
        if phase == "start":
            collecting["since"] = time.thread_time()
        else:
            collecting["seconds"] += time.thread_time() - collecting["since"]
            collecting["full"] += info["generation"] == 2

    def threads() -> dict[str, float]:
        """CPU seconds of each thread of this process by name (/proc: 10 ms ticks)."""
        found: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        names = {str(t.native_id): t.name.rstrip("_0123456789") for t in threading.enumerate()}
        for task in os.listdir("/proc/self/task"):
            try:
                comm = names.get(task) or Path(f"/proc/self/task/{task}/comm").read_text().strip()
                fields = Path(f"/proc/self/task/{task}/stat").read_text().rpartition(")")[2].split()
            except OSError:  # ended meanwhile
                continue
            found[comm] = found.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        for task in os.listdir("/proc/self/task"):  # child processes (the monitor's): not in "cpu"
            try:
                children = Path(f"/proc/self/task/{task}/children").read_text().split()
            except OSError:
                continue
            for pid in children:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                found["(process) monitor"] = (
                    found.get("(process) monitor", 0.0) + (int(fields[11]) + int(fields[12])) / tick
                )
        return found

    def set_mode(mode: str) -> None:
        """--modes: this process's monitoring off, on (log off), or on with the log at 1.0."""
        app = made[0]
        monitor = app.__dict__.setdefault("_bench_monitor", app._monitor)
        app._monitor = None if mode == "off" else monitor
        if not hasattr(monitor, "_versions"):  # the monitor's own process (server/monitor_process.py)
            if mode == "log":
                raise SystemExit(
                    "--modes log: this tree's monitor keeps its versions in its own process; compare "
                    "--also=--prediction_log_sample_rate=1 instead"
                )
            return
        for state in monitor._versions.values():
            state.sample_rate = 1.0 if mode == "log" else 0.0

    def run(self: uvicorn.Server, sockets: object = None) -> None:
        gc.callbacks.append(timed_gc)
        config = self.config
        config.load()
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        state = ServerState()

        def connection() -> tuple[object, Sink]:
            protocol = config.http_protocol_class(config=config, server_state=state, app_state={})
            sink = Sink()
            protocol.connection_made(sink)
            return protocol, sink

        conns = [connection() for _ in range(connections)]

        async def one(protocol: object, sink: Sink, data: bytes) -> bytes:
            sink.done = loop.create_future()
            protocol.data_received(data)  # type: ignore[attr-defined]
            return await sink.done

        async def rounds(n: int) -> None:
            left = n

            async def conn(protocol: object, sink: Sink) -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    answer = await one(protocol, sink, requests_body)
                    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]

            await asyncio.gather(*(conn(p, s) for p, s in conns))

        status = b"GET /v1/models/mnist HTTP/1.1\r\nhost: x\r\n\r\n"
        deadline = time.monotonic() + 60
        while b"AVAILABLE" not in loop.run_until_complete(one(*conns[0], status)):
            assert time.monotonic() < deadline, "mnist never became AVAILABLE"
            loop.run_until_complete(asyncio.sleep(0.1))
        print("ready", flush=True)
        for line in sys.stdin:
            n, _, mode = line.partition(" ")
            n = int(n)  # type: ignore[assignment]
            if mode.strip():
                set_mode(mode.strip())
            collecting.update(seconds=0.0, full=0)
            before = threads()
            cpu, thread = time.process_time(), time.thread_time()
            loop.run_until_complete(rounds(n))
            cpu, thread = time.process_time() - cpu, time.thread_time() - thread
            gc_cpu, full = collecting["seconds"], collecting["full"]
            by_thread = {k: (v - before.get(k, 0.0)) / n for k, v in threads().items()}
            print(json.dumps({"cpu": cpu / n, "loop": thread / n, "gc": gc_cpu / n, "full": full,
                              "threads": by_thread}), flush=True)  # fmt: skip
        os._exit(0)

    uvicorn.Server.run = run  # type: ignore[method-assign]
    from modelport.server.app import RestApp

    made: list[RestApp] = []
    init = RestApp.__init__

    def remember(self: RestApp, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    RestApp.__init__ = remember  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", nargs="*", default=[], metavar="REF", help="commits to compare with")
    parser.add_argument("--requests", type=int, default=3000, help="per round")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--serve-args", default="", help="more `modelport serve` flags, for every tree")
    parser.add_argument(
        "--also", action="append", default=[], help="this tree again with these serve flags (repeatable)"
    )
    parser.add_argument("--trees", nargs="*", default=[], help="checkouts to compare as they are (paths)")
    parser.add_argument("--threads", action="store_true", help="also the CPU of each thread, by name")
    parser.add_argument(
        "--modes",
        default="",
        help="e.g. off,on,log: each tree's process runs its rounds in each mode in turn (model "
        "monitoring off; on; on with the prediction log at sampleRate 1.0), so modes are compared "
        "within one process, each to the first mode of the same round",
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return _inner(args)
    with tempfile.TemporaryDirectory(prefix="predict-cpu-") as work:
        return _outer(args, Path(work))


def _inner(args: argparse.Namespace) -> int:
    work = Path(os.environ["PREDICT_CPU_WORK"])
    body = (work / "v1.json").read_bytes()
    request = (
        b"POST /v1/models/mnist:predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    _driver(request, args.connections)
    from modelport.cli import main as cli

    sys.argv = [
        "modelport", "serve", "--host", "127.0.0.1", "--rest_api_port=0", "--port=0",
        "--model_name=mnist", f"--model_base_path={work / 'mnist'}", "--log_level=warning",
        *shlex.split(args.serve_args),
    ]  # fmt: skip
    cli()
    return 0


def _outer(args: argparse.Namespace, work: Path) -> int:
    python = sys.executable
    subprocess.run([python, "-m", "modelport", "example", "mnist", str(work / "mnist")], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    png = (work / "mnist" / "samples" / "digit-7.png").read_bytes()
    b64 = base64.b64encode(png).decode()
    v1 = {"signature_name": "serving_default", "instances": [{"image_bytes": {"b64": b64}}]}
    (work / "v1.json").write_text(json.dumps(v1))
    trees: list[tuple[str, Path]] = [("this tree", ROOT)]
    trees += [(str(Path(t)), Path(t).resolve()) for t in args.trees]
    extra = {len(trees) + i: flags for i, flags in enumerate(args.also)}  # this tree with more flags
    trees += [(f"this tree {flags}", ROOT) for flags in args.also]
    for ref in args.baseline:
        checkout = work / f"at-{len(trees)}"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", "-q", str(checkout), ref], check=True)
        trees.append((f"@{ref}", checkout))
    modes = [m for m in args.modes.split(",") if m]
    # What is measured: each tree's process, in each mode (--modes), or as it is.
    entries = [
        (f"{name} [{m}]" if m else name, i, m) for i, (name, _) in enumerate(trees) for m in modes or [""]
    ]
    procs = []
    try:
        for i, (_name, tree) in enumerate(trees):
            env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PREDICT_CPU_WORK": str(work)}
            logs = f" --prediction_log_dir={work / f'log-{i}'}"
            if "log" in modes:  # started at 1.0: modes off and on set it to 0 (a monitor in process)
                logs += " --prediction_log_sample_rate=1"
            cmd = [python, str(HERE / "predict_cpu.py"), "--inner", f"--connections={args.connections}",
                   f"--serve-args={args.serve_args} {extra.get(i, '')}{logs}"]  # fmt: skip
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(proc)
        for proc in procs:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line.strip() == "ready", f"a tree's server did not start: {line!r}"

        def measure(proc: subprocess.Popen[str], n: int, mode: str = "") -> dict[str, float]:
            proc.stdin.write(f"{n} {mode}\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return json.loads(proc.stdout.readline())  # type: ignore[union-attr]

        for proc in procs:
            measure(proc, max(1000, args.requests // 2), modes[-1] if modes else "")  # warm-up
        cpu: list[list[float]] = [[] for _ in entries]
        loop: list[list[float]] = [[] for _ in entries]
        gcs: list[list[float]] = [[] for _ in entries]
        fulls: list[int] = [0 for _ in entries]
        per_thread: list[dict[str, list[float]]] = [{} for _ in entries]
        for repeat in range(args.repeats):
            order = list(range(len(entries)))
            if repeat % 2:
                order.reverse()
            for i in order:
                m = measure(procs[entries[i][1]], args.requests, entries[i][2])
                cpu[i].append(m["cpu"] * 1e6)
                loop[i].append(m["loop"] * 1e6)
                gcs[i].append(m["gc"] * 1e6)
                fulls[i] += m["full"]
                for k, v in m["threads"].items():
                    per_thread[i].setdefault(k, []).append(v * 1e6)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for name, tree in trees:
            if name.startswith("@"):
                git = ["git", "-C", str(ROOT), "worktree"]
                subprocess.run([*git, "remove", "--force", str(tree)], check=False)
    print(f"CPU per :predict (MNIST MLP, {args.connections} connections, medians of {args.repeats} x "
          f"{args.requests}){' with ' + args.serve_args if args.serve_args else ''}:")  # fmt: skip
    for e, ((name, _, _), c, lo, g, full) in enumerate(zip(entries, cpu, loop, gcs, fulls, strict=True)):
        # The reference: the first baseline tree; with --modes, the same process's first mode.
        ref = e - e % len(modes) if modes else 1 if len(entries) > 1 else None
        med = statistics.median(c)
        ratio = ""
        if ref is not None:
            first = statistics.median(cpu[ref])
            paired = [b / a for a, b in zip(c, cpu[ref], strict=True)]  # same round's
            ratio = (
                f"\n      req/s on one core {first / med:.3f} of {entries[ref][0]} (medians), "
                f"{statistics.median(paired):.3f} (median of the rounds' ratios)"
            )
        print(f"  {name:>24}: {med:6.1f} µs (rounds {min(c):.1f}-{max(c):.1f}; event loop thread "
              f"{statistics.median(lo):.1f}, its garbage collections {statistics.median(g):.1f}, "
              f"{full / args.repeats:.0f} full a round){ratio}")  # fmt: skip
        if args.threads:
            busy = {k: statistics.median(v) for k, v in per_thread[e].items()}
            print(
                "      threads (µs per request): "
                + ", ".join(
                    f"{k} {v:.1f}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1]) if v >= 0.5
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
