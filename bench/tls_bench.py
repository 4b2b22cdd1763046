"""What TLS costs the model server: `:predict` on the MNIST MLP over plain HTTP and over HTTPS,
two `modelport serve` processes of the same model side by side, driven in turns by wrk (which
speaks TLS; its connections are kept alive, so this is the steady cost of encrypting, not of
handshakes); medians of the repeats and their ratio.

    python bench/tls_bench.py                      # 64 connections, 5 repeats of 10 s
    python bench/tls_bench.py --conns 1 64 --repeats 3 --seconds 5

The certificate is a throw-away P-256 one made with `openssl` for 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import os
import ssl
import subprocess
import sys
from pathlib import Path

import ab
import http_bench as hb


def make_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def report(results: dict[int, dict[str, list[hb.Run]]], args: argparse.Namespace) -> None:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    conns = " ".join(map(str, args.conns))
    print(f"### {when} — `python bench/tls_bench.py --conns {conns} --repeats {args.repeats} "
          f"--seconds {args.seconds}`\n")  # fmt: skip
    print("| conns | plain req/s | p99 ms | CPU µs/req | TLS req/s | p99 ms | CPU µs/req | TLS/plain "
          "req/s | TLS/plain CPU/req | errors |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, runs in results.items():
        p, t = hb.median_run(runs["plain"]), hb.median_run(runs["tls"])
        pc = ab.cpu_per_request(runs["plain"], args.seconds)
        tc = ab.cpu_per_request(runs["tls"], args.seconds)
        print(f"| {n} | {p['rps']:,.0f} | {p['p99_ms']:.2f} | {pc:.0f} | {t['rps']:,.0f} | "
              f"{t['p99_ms']:.2f} | {tc:.0f} | **{t['rps'] / p['rps']:.2f}** | **{tc / pc:.2f}** | "
              f"{int(p['errors'] + t['errors'])} |")  # fmt: skip
        for name in ("plain", "tls"):
            print(f"\n{name}, req/s per run: {[round(r.rps) for r in runs[name]]}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> int:
    args = ab.arguments(__doc__).parse_args()
    with ab.workspace("tls-bench-") as (work, repo):
        cert, key = make_cert(work)
        tls = ["--ssl_cert_file", str(cert), "--ssl_key_file", str(key)]
        context = ssl.create_default_context(cafile=str(cert))
        sides = [ab.Side("plain", []), ab.Side("tls", tls, scheme="https", context=context)]
        results = ab.turns(sides, repo, work, args)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
