"""Batching on and off, and the three protocols, side by side in one run; medians of repeats.

    python bench/serving_bench.py                     # everything (about 10 min)
    python bench/serving_bench.py --only batching     # batching off/on, MLP and CNN, 1 and 64 conns
    python bench/serving_bench.py --only protocols    # v1 REST, v2 REST, v2 gRPC on the MLP
    python bench/serving_bench.py --only batching --baseline main~3   # each case also at a commit
    python bench/serving_bench.py --only unbatched --baseline REF   # MLP and CNN, batching off
    python bench/serving_bench.py --only tensorflow   # a SavedModel as it is vs its ONNX conversion

`--baseline REF` checks REF out into the work folder (`git worktree add --detach`) and runs every
case a second time with that code (PYTHONPATH=<checkout>/src, same Python and packages),
interleaved with the current code, and adds the ratio of each case to its baseline: a change's
cost measured side by side in one run.

Each target is one `modelport serve` process on 127.0.0.1 (all share the machine with the load
generator: on 2 cores, one for the server, one for the load). REST load comes from wrk (one
thread), gRPC load from h2load (nghttp2, one thread, unary calls framed by hand: a 5-byte prefix
and a serialized ModelInferRequest); h2load's per-request log gives p50/p99. Every body carries
one 28x28 PNG digit. Batching on means `--batching_parameters_file` with
max_batch_size 32, batch_timeout_micros 2000, num_batch_threads 1; off means no batching at all.

The CNN (examples/cnn/build.py) is built into the work folder first (about 7 s).

`--only tensorflow` (needs `pip install 'modelport[tensorflow]'`) builds the tests' Keras MNIST
model exported as the article's (tests/tf_mnist.py: `serving_default` decodes the PNG in the
graph), publishes it with `modelport registry publish --convert onnx` (the `pixels` signature
converted by tf2onnx, images decoded by modelport), and compares the two `:predict` with the
article's request: the SavedModel served as it is (model "tf") and its ONNX version ("tfonnx").
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import ab
import http_bench as hb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCHING = (
    "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\nnum_batch_threads { value: 1 }\n"
)


@dataclass
class Case:
    name: str
    model: str  # mnist | cnn
    protocol: str  # v1 | v2 | grpc
    batching: bool
    source: Path | None = None  # a checkout whose src/ the server runs (--baseline), or this one
    extra: tuple[str, ...] = ()  # more `modelport serve` flags (--unmonitored)


def bodies(work: Path, png: bytes) -> dict[str, Path]:
    """The same digit in each protocol's request."""
    from modelport.server.grpc_v2 import inference_pb2 as pb

    b64 = base64.b64encode(png).decode()
    v1 = {"signature_name": "serving_default", "instances": [{"image_bytes": {"b64": b64}}]}
    v2 = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64]}]}
    request = pb.ModelInferRequest()
    tensor = request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(png)
    message = request.SerializeToString()
    paths = {"v1": work / "v1.json", "v2": work / "v2.json", "grpc": work / "grpc.bin"}
    paths["v1"].write_text(json.dumps(v1))
    paths["v2"].write_text(json.dumps(v2))
    paths["grpc"].write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
    return paths


def serve_cmd(
    cli: str, repo: Path, model: str, port: int, grpc_port: int, batching: Path | None
) -> list[str]:
    cmd = [
        cli, "serve", "--host", "127.0.0.1", f"--rest_api_port={port}", f"--port={grpc_port}",
        f"--model_name={model}", f"--model_base_path={repo}", "--log_level=warning",
    ]  # fmt: skip
    return [*cmd, f"--batching_parameters_file={batching}"] if batching else cmd


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("batching", "unbatched", "protocols", "tensorflow"))
    parser.add_argument(
        "--baseline", metavar="REF", help="also run every case with the code at this git commit"
    )
    parser.add_argument(
        "--unmonitored", action="store_true",
        help="also run this code's cases with --disable_model_monitoring (model monitoring's share)",
    )  # fmt: skip
    parser.add_argument(
        "--logged", action="store_true",
        help="also run this code's cases with the prediction log at sampleRate 1.0 (issue 17's budget: "
        "against --unmonitored)",
    )  # fmt: skip
    args = parser.parse_args()
    hb.ensure_wrk()
    ab.ensure_h2load()
    cli = hb.modelport_cli()
    if cli is None:
        raise SystemExit("no `modelport` CLI beside this Python: pip install -e . first")
    work = Path(tempfile.mkdtemp(prefix="modelport-serving-bench-"))
    try:
        return run(args, cli, work)
    finally:
        hb._kill_all()
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                           capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


def with_baseline(cases: list[tuple[Case, list[int]]], ref: str, work: Path) -> list[tuple[Case, list[int]]]:
    """Each case twice: with this code and with the code at `ref`, checked out into the work folder."""
    checkout = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(checkout), ref],
                   check=True, capture_output=True)  # fmt: skip
    twins = [(Case(f"{c.name} @{ref}", c.model, c.protocol, c.batching, checkout), n) for c, n in cases]
    return [pair for both in zip(cases, twins, strict=True) for pair in both]


ONNX_YAML = """\
signatures:
  serving_default:
    inputs:
      image_bytes: {tensor: pixels, image: {mode: L, width: 28, height: 28, scale: [0.0, 1.0]}}
    outputs:
      classes: {from: probabilities, transform: argmax}
      probabilities: {from: probabilities}
"""


def build_tensorflow(cli: str, work: Path) -> None:
    """work/tf/1: the article-style SavedModel; work/tfonnx/1: its conversion, published."""
    sys.path.insert(0, str(ROOT / "tests"))
    import tf_mnist

    tf_mnist.export_saved_model(tf_mnist.train(), work / "tf" / "1")
    (work / "tf" / "1" / "_COMPLETE").write_text("")
    images, _ = tf_mnist.held_out()
    instances = [{"image_bytes": {"b64": base64.b64encode(tf_mnist.png(i)).decode()}} for i in images]
    (work / "eval.json").write_text(json.dumps({"instances": instances}))
    (work / "onnx.yaml").write_text(ONNX_YAML)
    done = subprocess.run(
        [cli, "registry", "publish", "tfonnx", str(work / "tf" / "1"), "--convert", "onnx",
         "--signature", "pixels", "--model-yaml", str(work / "onnx.yaml"),
         "--eval-data", str(work / "eval.json"), "--repository", str(work / "tfonnx")],
        env={**os.environ, "MODELPORT_HOME": str(work / "home")}, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the conversion failed:\n{done.stderr}")
    print(done.stdout.strip(), flush=True)


def run(args: argparse.Namespace, cli: str, work: Path) -> int:
    subprocess.run([cli, "example", "mnist", str(work / "mnist")], check=True, capture_output=True)
    subprocess.run([sys.executable, str(ROOT / "examples/cnn/build.py"), str(work / "cnn" / "1")],
                   check=True, capture_output=True)  # fmt: skip
    (work / "cnn" / "1" / "_COMPLETE").write_text("")
    paths = bodies(work, (work / "mnist" / "samples" / "digit-7.png").read_bytes())
    (work / "batching.config").write_text(BATCHING)
    cases: list[tuple[Case, list[int]]] = []
    if args.only in (None, "batching"):
        for model in ("mnist", "cnn"):
            for on in (False, True):
                cases.append((Case(f"{model} batching {'on' if on else 'off'}", model, "v1", on), [1, 64]))
    if args.only == "unbatched":  # heavy models off the loop without batching: the CNN's tail, the MLP's cost
        cases += [(Case(f"{model} batching off", model, "v1", False), [1, 64]) for model in ("mnist", "cnn")]
    if args.only in (None, "protocols"):
        for protocol in ("v1", "v2", "grpc"):
            cases.append((Case(f"mnist {protocol}", "mnist", protocol, False), [1, 64]))
    if args.only == "tensorflow":
        build_tensorflow(cli, work)
        cases += [(Case("tf savedmodel", "tf", "v1", False), [1, 64])]
        cases += [(Case("tf onnx", "tfonnx", "v1", False), [1, 64])]
    plain_cases = list(cases)
    if args.unmonitored:
        off = ("--disable_model_monitoring",)
        cases += [(replace(c, name=f"{c.name} unmonitored", extra=off), n) for c, n in plain_cases]
    if args.logged:
        log = ("--prediction_log_sample_rate=1", f"--prediction_log_dir={work / 'logs'}")
        cases += [(replace(c, name=f"{c.name} logged", extra=log), n) for c, n in plain_cases]
    if args.baseline:
        mine = [pair for pair in cases if not pair[0].extra]
        cases = with_baseline(mine, args.baseline, work) + [pair for pair in cases if pair[0].extra]
    results: dict[str, dict[int, list[hb.Run]]] = {c.name: {n: [] for n in conns} for c, conns in cases}
    for repeat in range(args.repeats):
        shift = repeat % len(cases)
        for case, conns in cases[shift:] + cases[:shift]:
            port, grpc_port = hb.free_port(), hb.free_port()
            cmd = serve_cmd(
                cli, work / case.model, case.model, port, grpc_port,
                work / "batching.config" if case.batching else None,
            )  # fmt: skip
            cmd += list(case.extra)
            path = {"v1": f"/v1/models/{case.model}:predict", "v2": f"/v2/models/{case.model}/infer"}
            url = f"http://127.0.0.1:{port}{path.get(case.protocol, path['v1'])}"
            if case.source is not None:  # the baseline's code, same interpreter and packages
                cmd = [sys.executable, "-m", "modelport", *cmd[1:]]
            env = {"PYTHONPATH": str(case.source / "src")} if case.source else {}
            target = hb.Target(
                case.name, cmd, url, f"http://127.0.0.1:{port}/v1/models/{case.model}",
                ready_text="AVAILABLE", env=env, check_text=None,
            )  # fmt: skip
            with hb.started(target, work, 90) as server:
                for c in conns:
                    if case.protocol == "grpc":
                        log, pid = work / "h2load.log", server.proc.pid
                        ab.grpc_sanity(grpc_port, case.model, paths["grpc"])
                        ab.h2load(grpc_port, paths["grpc"], c, args.warmup, pid, log)
                        r = ab.h2load(grpc_port, paths["grpc"], c, args.duration, pid, log)
                    else:
                        body = paths[case.protocol]
                        hb.wrk(url, body, c, args.warmup, 1, server.proc.pid)
                        r = hb.wrk(url, body, c, args.duration, 1, server.proc.pid)
                    results[case.name][c].append(r)
                    print(
                        f"[{repeat + 1}/{args.repeats}] {case.name:>20} c={c:<3} {r.rps:9,.0f} req/s  "
                        f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  server CPU {r.server_cpu_pct:4.0f}%"
                        + (f"  !!! {r.errors} errors" if r.errors else ""),
                        flush=True,
                    )
    med = {name: {c: hb.median_run(runs) for c, runs in by.items()} for name, by in results.items()}
    rows = [["case", "conns", "req/s", "p50 ms", "p99 ms", "server CPU %", "errors"]]
    for case, conns in cases:
        for c in conns:
            m = med[case.name][c]
            rows.append([case.name, str(c), f"{m['rps']:,.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}",
                         f"{m['server_cpu_pct']:.0f}", hb._err(m)])  # fmt: skip
    ratios = [["comparison", "conns", "req/s ratio", "p50 difference ms", "p99 ratio"]]
    pairs = [(f"{m} batching on", f"{m} batching off") for m in ("mnist", "cnn")]
    pairs += [("mnist v2", "mnist v1"), ("mnist grpc", "mnist v1"), ("tf onnx", "tf savedmodel")]
    for c, _ in cases:
        if c.extra:  # this code without monitoring (or logging), against this code and the baseline
            plain = c.name.removesuffix(" unmonitored").removesuffix(" logged")
            pairs += [(c.name, plain)] + ([(c.name, f"{plain} @{args.baseline}")] if args.baseline else [])
            if c.name.endswith(" logged") and f"{plain} unmonitored" in med:  # the log and drift's cost
                pairs.append((c.name, f"{plain} unmonitored"))
        elif args.baseline and c.source is None:
            pairs.append((c.name, f"{c.name} @{args.baseline}"))
    for a, b in pairs:
        if a in med and b in med:
            for c in med[a]:
                x, y = med[a][c], med[b][c]
                ratio, p99 = f"{x['rps'] / y['rps']:.2f}", f"{x['p99_ms'] / y['p99_ms']:.2f}"
                ratios.append([f"{a} / {b}", str(c), ratio, f"{x['p50_ms'] - y['p50_ms']:+.2f}", p99])
    command = f"bash bench/run.sh serving {shlex.join(sys.argv[1:])}".strip()
    info, when = ab.print_report(rows, ratios, command, args.repeats, args.duration, args.warmup)
    out = HERE / "results" / "serving.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": when, "machine": info, "medians": med}, indent=1))
    return 3 if any(m["errors"] for by in med.values() for m in by.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
