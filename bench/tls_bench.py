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
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import http_bench as hb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def make_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def start(name: str, repo: Path, work: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port_file = work / f"{name}.port.json"
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - the server's for its life
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "serve", "--host", "127.0.0.1", "--rest_api_port", "0",
         "--port", "0", "--model_name", "mnist", "--model_base_path", str(repo),
         "--port_file", str(port_file), *extra],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start: {(work / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, json.loads(port_file.read_text())["rest_api_port"]


def wait_ready(url: str, context: object = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2, context=context) as answer:  # type: ignore[arg-type]
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready within 60 s")


def cpu_per_request(runs: list[hb.Run], seconds: int) -> float:
    """The server's CPU time per answered request, in µs, median over runs: what TLS adds to each
    request, less swayed than req/s by other processes taking the cores."""
    return statistics.median(r.server_cpu_pct / 100 * seconds / max(r.requests, 1) * 1e6 for r in runs)


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
        pc = cpu_per_request(runs["plain"], args.seconds)
        tc = cpu_per_request(runs["tls"], args.seconds)
        print(f"| {n} | {p['rps']:,.0f} | {p['p99_ms']:.2f} | {pc:.0f} | {t['rps']:,.0f} | "
              f"{t['p99_ms']:.2f} | {tc:.0f} | **{t['rps'] / p['rps']:.2f}** | **{tc / pc:.2f}** | "
              f"{int(p['errors'] + t['errors'])} |")  # fmt: skip
        for name in ("plain", "tls"):
            print(f"\n{name}, req/s per run: {[round(r.rps) for r in runs[name]]}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conns", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    hb.ensure_wrk()
    import ssl

    with tempfile.TemporaryDirectory(prefix="tls-bench-") as tmp:
        work = Path(tmp)
        repo = work / "mnist"
        hb.write_repository(repo, hb.modelport_cli())
        body = repo / "samples" / "request.json"
        cert, key = make_cert(work)
        plain, plain_port = start("plain", repo, work, [])
        tls, tls_port = start("tls", repo, work, ["--ssl_cert_file", str(cert), "--ssl_key_file", str(key)])
        try:
            urls = {"plain": f"http://127.0.0.1:{plain_port}", "tls": f"https://127.0.0.1:{tls_port}"}
            wait_ready(urls["plain"])
            wait_ready(urls["tls"], ssl.create_default_context(cafile=str(cert)))
            pgids = {"plain": os.getpgid(plain.pid), "tls": os.getpgid(tls.pid)}
            results: dict[int, dict[str, list[hb.Run]]] = {}
            for conns in args.conns:
                runs: dict[str, list[hb.Run]] = {"plain": [], "tls": []}
                for name in ("plain", "tls"):  # warm-up, not counted
                    hb.wrk(urls[name] + "/v1/models/mnist:predict", body, conns, 2, 1, pgids[name])
                for _ in range(args.repeats):
                    for name in ("plain", "tls"):  # in turns: the machine's drift hits both
                        url = urls[name] + "/v1/models/mnist:predict"
                        runs[name].append(hb.wrk(url, body, conns, args.seconds, 1, pgids[name]))
                results[conns] = runs
        finally:
            for proc in (plain, tls):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
