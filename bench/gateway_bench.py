"""The gateway's cost: `POST /` with one PNG through the gateway against the same image sent to
the model server directly (TF Serving's JSON with the PNG in base64), side by side, medians of
repeats.

    bash bench/run.sh gateway                   # 5 repeats x 10 s at 8 connections
    python bench/gateway_bench.py --repeats 3 --seconds 5 --conns 8,64

One `modelport serve` of the MNIST example and one `modelport gateway --model-url` in front of
it, all on 127.0.0.1 with wrk (one thread) on the same 2 cores. Target (issue 7): the gateway adds
no more than 2 ms at p50 and loses no more than 20% of the throughput at 8 connections.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import http_bench as hb

BOUNDARY = "modelportbenchboundary"


def multipart(png: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="img"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def wait_port(port_file: Path, proc: subprocess.Popen[bytes], key: str) -> int:
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{proc.args} did not start")
        time.sleep(0.05)
    return int(json.loads(port_file.read_text())[key])


def wrk(url: str, body: Path, content_type: str | None, conns: int, seconds: int) -> hb.Run:
    env = {**os.environ, "BENCH_BODY": str(body)}
    if content_type:
        env["BENCH_CONTENT_TYPE"] = content_type
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(hb.LUA), url],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
    )
    rps, p50, p99, non2xx, sock, requests = hb.parse_wrk(out.stdout)
    return hb.Run(rps, p50, p99, non2xx, sock, requests, 0.0, 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--conns", default="8")
    args = parser.parse_args()
    hb.ensure_wrk()
    cli = hb.modelport_cli()
    if cli is None:
        raise SystemExit("the modelport CLI is needed: pip install -e .")
    work = Path(tempfile.mkdtemp(prefix="modelport-gateway-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hb.write_repository(work / "mnist", cli)
        request = (work / "mnist" / "samples" / "request.json").read_text()
        png = base64.b64decode(json.loads(request)["instances"][0]["image_bytes"]["b64"])
        (work / "direct.json").write_text(request)
        (work / "gateway.body").write_bytes(multipart(png))
        log = open(work / "servers.log", "wb")  # noqa: SIM115 - lives as long as the servers
        procs.append(
            subprocess.Popen(
                [
                    cli,
                    "serve",
                    "--rest_api_port",
                    "0",
                    "--port",
                    "0",
                    "--port_file",
                    str(work / "model.json"),
                    "--model_name",
                    "mnist",
                    "--model_base_path",
                    str(work / "mnist"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        model_port = wait_port(work / "model.json", procs[0], "rest_api_port")
        procs.append(
            subprocess.Popen(
                [
                    cli,
                    "gateway",
                    "--port",
                    "0",
                    "--port-file",
                    str(work / "gateway.json"),
                    "--model-url",
                    f"http://127.0.0.1:{model_port}",
                    "--per-client",  # wrk is one client address: measure the gateway, not its limit
                    "off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        gateway_port = wait_port(work / "gateway.json", procs[1], "port")
        direct = f"http://127.0.0.1:{model_port}/v1/models/mnist:predict"
        through = f"http://127.0.0.1:{gateway_port}/"
        check = urllib.request.Request(
            through,
            data=(work / "gateway.body").read_bytes(),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        with urllib.request.urlopen(check, timeout=10) as answer:
            assert json.loads(answer.read()) == {"result": [7]}
        cases = {
            "direct": (direct, work / "direct.json", None),
            "gateway": (through, work / "gateway.body", f"multipart/form-data; boundary={BOUNDARY}"),
        }
        results: dict[int, dict[str, list[hb.Run]]] = {}
        for c in [int(x) for x in args.conns.split(",")]:
            for case in cases.values():
                wrk(case[0], case[1], case[2], c, 2)  # warm-up
            for repeat in range(args.repeats):
                for name in ["direct", "gateway"] if repeat % 2 == 0 else ["gateway", "direct"]:
                    run = wrk(*cases[name][:3], c, args.seconds)
                    results.setdefault(c, {}).setdefault(name, []).append(run)
                    print(
                        f"{c:>3} conns {name:<8} {run.rps:>8,.0f} req/s  p50 {run.p50_ms:.2f} ms  "
                        f"p99 {run.p99_ms:.2f} ms  errors {run.errors}",
                        flush=True,
                    )
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"### {now} — `bash bench/run.sh gateway --repeats {args.repeats} --seconds {args.seconds} "
            f"--conns {args.conns}`",
            "",
            "| conns | direct req/s | p50 ms | p99 ms | gateway req/s | p50 ms | p99 ms "
            "| req/s ratio | p50 added ms |",
            "|------:|-------------:|-------:|-------:|--------------:|-------:|-------:|------------:|-------------:|",
        ]
        for c, by in results.items():
            d, g = hb.median_run(by["direct"]), hb.median_run(by["gateway"])
            lines.append(
                f"| {c} | {d['rps']:,.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {g['rps']:,.0f} | "
                f"{g['p50_ms']:.2f} | {g['p99_ms']:.2f} | **{g['rps'] / d['rps']:.2f}** | "
                f"**{g['p50_ms'] - d['p50_ms']:+.2f}** |"
            )
        errors = sum(r.errors for by in results.values() for runs in by.values() for r in runs)
        print("\n" + "\n".join(lines) + f"\n\nErrors over all runs: {errors}.")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
