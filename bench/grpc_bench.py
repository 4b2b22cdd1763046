"""gRPC against REST on the MLP (784 floats), side by side in one run, and the grpcio floors.

    python bench/grpc_bench.py                          # 5 repeats x 6 s, 1 and 64 streams
    python bench/grpc_bench.py --repeats 3 --duration 4 --conns 1 64
    python bench/grpc_bench.py --baseline main~1 --no-floors   # gRPC also with the code at a commit

What is driven, each with the same 784-float row for the example MLP served raw (its model.onnx
without model.yaml, so the input is `pixels` [N, 784] FP32):
- `modelport serve` REST v1 `:predict` (`{"instances": [[784 floats]]}`) and v2 `/infer` (JSON
  `data`), both from wrk (one thread);
- `modelport serve` gRPC ModelInfer with the row in `raw_input_contents` (what tritonclient
  sends), from h2load (one thread, unary calls framed by hand: a 5-byte prefix and a serialized
  ModelInferRequest);
- two grpcio floors (bench/grpc_floor.py): the least a Python gRPC server can do for the same
  call (parse, np.frombuffer, the same ONNX session, answer raw), on grpc.aio and on the sync
  grpc.server with a thread pool: what grpcio itself costs per call, whatever modelport does.

`--baseline REF` checks REF out into the work folder and serves gRPC with that code too (same
Python and packages): its case "grpc @REF" runs beside this tree's in the same run.

`--conns N` means N connections with one stream each (wrk's and h2load's -c). Every case runs in
every repeat, their order rotated; the server process is started afresh for each repeat.
Reported per case: medians of req/s, p50, and the server's CPU time per request (its process
group's user+system time over the run divided by the requests answered). CPU per request is the
robust figure on a shared machine; req/s ratios are taken within the run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import ab
import http_bench as hb
import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = "mlp"
REST = {"rest v1": (f"/v1/models/{MODEL}:predict", "v1"), "rest v2": (f"/v2/models/{MODEL}/infer", "v2")}


def bodies(work: Path) -> dict[str, Path]:
    """One 784-float row in each protocol's request."""
    from modelport.server.grpc_v2 import inference_pb2 as pb

    row = (np.arange(784, dtype=np.float32) % 255) / 255
    values = [round(float(v), 4) for v in row]
    v1 = {"instances": [values]}
    v2 = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": values}]}
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 784])
    request.raw_input_contents.append(np.asarray(values, dtype=np.float32).tobytes())
    message = request.SerializeToString()
    paths = {"v1": work / "v1.json", "v2": work / "v2.json", "grpc": work / "grpc.bin"}
    paths["v1"].write_text(json.dumps(v1))
    paths["v2"].write_text(json.dumps(v2))
    paths["grpc"].write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
    return paths


def drive(
    name: str, port: int, grpc_port: int, paths: dict[str, Path], conns: int, seconds: int,
    pgid: int, log: Path,
) -> hb.Run:  # fmt: skip
    """One case's load: a REST case's from wrk, gRPC's from h2load."""
    if name in REST:
        path, body = REST[name]
        return hb.wrk(f"http://127.0.0.1:{port}{path}", paths[body], conns, seconds, 1, pgid)
    return ab.h2load(grpc_port, paths["grpc"], conns, seconds, pgid, log)


def modelport_target(
    cli: str, repo: Path, port: int, grpc_port: int, source: Path | None = None
) -> hb.Target:
    """`source`: a checkout whose src/ the server runs (--baseline), else this tree's."""
    cmd = [
        cli, "serve", "--host", "127.0.0.1", f"--rest_api_port={port}", f"--port={grpc_port}",
        f"--model_name={MODEL}", f"--model_base_path={repo}", "--log_level=warning",
    ]  # fmt: skip
    env = {}
    if source is not None:
        cmd = [sys.executable, "-m", "modelport", *cmd[1:]]
        env = {"PYTHONPATH": str(source / "src")}
    base = f"http://127.0.0.1:{port}"
    return hb.Target(
        "modelport", cmd, base, f"{base}/v1/models/{MODEL}", ready_text="AVAILABLE", env=env, check_text=None
    )


def floor_target(kind: str, model: Path, port: int, ready_port: int) -> hb.Target:
    cmd = [
        sys.executable,
        str(HERE / "grpc_floor.py"),
        str(model),
        str(port),
        kind,
        "--ready-port",
        str(ready_port),
    ]
    return hb.Target(f"grpc floor {kind}", cmd, "", f"http://127.0.0.1:{ready_port}/", check_text=None)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--conns", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--no-floors", action="store_true", help="modelport's cases only")
    parser.add_argument("--baseline", metavar="REF", help="also serve gRPC with the code at this git commit")
    args = parser.parse_args()
    hb.ensure_wrk()
    ab.ensure_h2load()
    cli = hb.modelport_cli()
    if cli is None:
        raise SystemExit("no `modelport` CLI beside this Python: pip install -e . first")
    work = Path(tempfile.mkdtemp(prefix="modelport-grpc-bench-"))
    try:
        return run(args, cli, work)
    finally:
        hb._kill_all()
        if args.baseline:
            git = ["git", "-C", str(HERE.parent), "worktree"]
            subprocess.run([*git, "remove", "--force", str(work / "baseline")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, cli: str, work: Path) -> int:
    subprocess.run([cli, "example", "mnist", str(work / "mnist")], check=True, capture_output=True)
    (work / MODEL / "1").mkdir(parents=True)
    shutil.copy(work / "mnist" / "1" / "model.onnx", work / MODEL / "1" / "model.onnx")
    (work / MODEL / "1" / "_COMPLETE").write_text("")
    paths = bodies(work)
    log = work / "h2load.log"
    groups = ["modelport"] + ([] if args.no_floors else ["floor aio", "floor sync"])
    names = {
        "modelport": ["rest v1", "rest v2", "grpc"],
        "floor aio": ["floor aio"],
        "floor sync": ["floor sync"],
    }
    baseline = None
    if args.baseline:
        baseline = work / "baseline"
        git = ["git", "-C", str(HERE.parent), "worktree"]
        subprocess.run(
            [*git, "add", "--detach", str(baseline), args.baseline], check=True, capture_output=True
        )
        groups.append(f"modelport @{args.baseline}")
        names[groups[-1]] = [f"grpc @{args.baseline}"]
    results: dict[str, dict[int, list[hb.Run]]] = {
        name: {c: [] for c in args.conns} for group in groups for name in names[group]
    }
    for repeat in range(args.repeats):
        shift = repeat % len(groups)
        for group in groups[shift:] + groups[:shift]:
            port, grpc_port = hb.free_port(), hb.free_port()
            if group.startswith("modelport"):
                source = baseline if group != "modelport" else None
                target = modelport_target(cli, work / MODEL, port, grpc_port, source)
            else:
                target = floor_target(group.split()[1], work / MODEL / "1" / "model.onnx", grpc_port, port)
            with hb.started(target, work, 90) as server:
                pgid = server.proc.pid
                ab.grpc_sanity(grpc_port, MODEL, paths["grpc"])
                for c in args.conns:
                    cases = names[group]
                    turn = (repeat + c) % len(cases)
                    for name in cases[turn:] + cases[:turn]:
                        drive(name, port, grpc_port, paths, c, args.warmup, pgid, log)  # warm-up
                        m = drive(name, port, grpc_port, paths, c, args.duration, pgid, log)
                        results[name][c].append(m)
                        print(
                            f"[{repeat + 1}/{args.repeats}] {name:>10} c={c:<3} {m.rps:8,.0f} req/s  "
                            f"p50 {m.p50_ms:6.2f} ms  CPU {ab.cpu_us(m, args.duration):5.0f} us/request"
                            + (f"  !!! {m.errors} errors" if m.errors else ""),
                            flush=True,
                        )
    report(args, results)
    return 3 if any(m.errors for by in results.values() for runs in by.values() for m in runs) else 0


def report(args: argparse.Namespace, results: dict[str, dict[int, list[hb.Run]]]) -> None:
    def cpu(run: hb.Run) -> float:
        return ab.cpu_us(run, args.duration)

    rows = [["case", "conns", "req/s", "p50 ms", "server CPU us/request", "errors"]]
    for name, by in results.items():
        for c, runs in by.items():
            m = hb.median_run(runs)
            rows.append([
                name, str(c), f"{m['rps']:,.0f}", f"{m['p50_ms']:.2f}",
                f"{ab.cpu_per_request(runs, args.duration):.0f}", str(sum(r.errors for r in runs)),
            ])  # fmt: skip
    ratios = [["comparison", "conns", "req/s ratio", "CPU per request ratio"]]
    pairs = [("grpc", "rest v1"), ("grpc", "rest v2"), ("floor aio", "rest v1"), ("floor sync", "rest v1")]
    pairs += [(name, "rest v1") for name in results if "@" in name]
    pairs += [("grpc", name) for name in results if "@" in name]
    for a, b in pairs:
        if a in results and b in results:
            for c in args.conns:
                # Ratios within each repeat (the same minutes of the shared machine), then the median.
                turns = list(zip(results[a][c], results[b][c], strict=True))
                rps = statistics.median(x.rps / y.rps for x, y in turns)
                per_request = statistics.median(cpu(y) / cpu(x) for x, y in turns)
                ratios.append([f"{a} / {b}", str(c), f"{rps:.2f}", f"{per_request:.2f}"])
    command = f"python bench/grpc_bench.py {shlex.join(sys.argv[1:])}".strip()
    ab.print_report(rows, ratios, command, args.repeats, args.duration, args.warmup)
    print("\n(CPU per request ratio: the REST case's CPU per request over the gRPC case's, so that")
    print("above 1 means gRPC is cheaper, as req/s ratio above 1 means gRPC is faster.)")


if __name__ == "__main__":
    sys.exit(main())
