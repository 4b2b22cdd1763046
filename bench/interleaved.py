"""Several servers up at once, wrk on each in turn, round after round: a same-run comparison for a
machine whose speed drifts (each round's ratios pair turns seconds apart, not minutes).

    bash bench/run.sh interleaved --model mnist --connections 64 --rounds 9 \\
        off=.:--disable_model_monitoring defaults=. log=.:--prediction_log_sample_rate=1 old=@28d78dc
    bash bench/run.sh interleaved --model cnn --connections 1 --rounds 10 \\
        off=.:--disable_model_monitoring defaults=. then=@83a6150

A server is NAME=TREE[:FLAGS]: TREE `.` is this checkout, `@REF` the code at a commit (checked out
into the work folder with `git worktree add --detach`, run with the same Python and packages),
FLAGS more `modelport serve` flags, separated by spaces. Every body is one 28x28 PNG digit (the
article's request); the CNN is examples/cnn/build.py's. Printed: each turn's req/s, then per server
the median, its ratio to the first server's median, and the median of the rounds' own ratios.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import http_bench as hb

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("servers", nargs="+", metavar="NAME=TREE[:FLAGS]")
    parser.add_argument("--model", choices=("mnist", "cnn"), default="mnist")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    hb.ensure_wrk()
    cli = hb.modelport_cli()
    if cli is None:
        raise SystemExit("no `modelport` CLI beside this Python: pip install -e . first")
    work = Path(tempfile.mkdtemp(prefix="modelport-interleaved-"))
    checkouts: list[Path] = []
    try:
        return run(args, cli, work, checkouts)
    finally:
        hb._kill_all()
        for checkout in checkouts:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)],
                           capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, cli: str, work: Path, checkouts: list[Path]) -> int:
    subprocess.run([cli, "example", "mnist", str(work / "mnist")], check=True, capture_output=True)
    if args.model == "cnn":
        subprocess.run([sys.executable, str(ROOT / "examples/cnn/build.py"), str(work / "cnn" / "1")],
                       check=True, capture_output=True)  # fmt: skip
        (work / "cnn" / "1" / "_COMPLETE").write_text("")
    png = (work / "mnist" / "samples" / "digit-7.png").read_bytes()
    body = work / "v1.json"
    body.write_text(json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}))
    targets = []
    for i, spec in enumerate(args.servers):
        name, _, rest = spec.partition("=")
        tree, _, flags = rest.partition(":")
        cmd = [sys.executable, "-m", "modelport"]
        env = {}
        if tree.startswith("@"):
            checkout = work / f"tree-{i}"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(checkout), tree[1:]],
                           check=True, capture_output=True)  # fmt: skip
            checkouts.append(checkout)
            env["PYTHONPATH"] = str(checkout / "src")
        elif tree not in (".", ""):
            env["PYTHONPATH"] = str(Path(tree).resolve() / "src")
        port, grpc_port = hb.free_port(), hb.free_port()
        cmd += [
            "serve", "--host", "127.0.0.1", f"--rest_api_port={port}", f"--port={grpc_port}",
            f"--model_name={args.model}", f"--model_base_path={work / args.model}", "--log_level=warning",
            *shlex.split(flags),
        ]  # fmt: skip
        if "--prediction_log_sample_rate" in flags:  # its files in the work folder (older code: no flag)
            cmd.append(f"--prediction_log_dir={work / 'logs' / name}")
        base = f"http://127.0.0.1:{port}/v1/models/{args.model}"
        targets.append(hb.Target(name, cmd, f"{base}:predict", base, ready_text="AVAILABLE", env=env))
    rps: dict[str, list[float]] = {t.name: [] for t in targets}
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(hb.started(t, work, 90)) for t in targets]
        for n in range(args.rounds):
            for server in servers:
                pid = server.proc.pid
                hb.wrk(server.target.url, body, args.connections, args.warmup, 1, pid)
                r = hb.wrk(server.target.url, body, args.connections, args.seconds, 1, pid)
                rps[server.target.name].append(r.rps)
                errors = f"  !!! {r.errors} errors" if r.errors else ""
                print(
                    f"[{n + 1}/{args.rounds}] {server.target.name:>12} {r.rps:9,.0f} req/s  "
                    f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
                    f"server CPU {r.server_cpu_pct:4.0f}%{errors}",
                    flush=True,
                )
    first = targets[0].name
    rows = [["server", "req/s of each round", "median", f"/ {first} (medians)", f"/ {first} (rounds')"]]
    reference = statistics.median(rps[first])
    for name, values in rps.items():
        paired = statistics.median(v / w for v, w in zip(values, rps[first], strict=True))
        median = statistics.median(values)
        spread = " ".join(f"{v:,.0f}" for v in values)
        rows.append([name, spread, f"{median:,.0f}", f"{median / reference:.3f}", f"{paired:.3f}"])
    command = f"bash bench/run.sh interleaved {shlex.join(sys.argv[1:])}"
    info = hb.machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"\n{when}; {info['cpu']}, {info['cores']} cores, load average {load}; `{command}` "
          f"({args.rounds} rounds of {args.seconds} s each after {args.warmup} s warm-up)\n")  # fmt: skip
    print(hb._table(rows, True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
