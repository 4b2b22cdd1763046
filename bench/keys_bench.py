"""What API keys and a rate limit cost the model server: `:predict` on the MNIST MLP with auth off
and with a key checked on every request and a per-key rate limit on (high enough never to refuse:
its leases are still taken from the shared SQLite store), two `modelport serve` processes of the
same model side by side, driven in turns by wrk; medians of the repeats and their ratio.

    python bench/keys_bench.py                      # 64 connections, 5 repeats of 10 s
    python bench/keys_bench.py --conns 1 64 --repeats 3 --seconds 5
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import http_bench as hb
from tls_bench import start, wait_ready


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conns", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", default="100000/s", help="The key's rate limit (burst: one second of it).")
    args = parser.parse_args()
    hb.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="keys-bench-") as tmp:
        work = Path(tmp)
        repo = work / "mnist"
        hb.write_repository(repo, hb.modelport_cli())
        body = repo / "samples" / "request.json"
        env = {**os.environ, "MODELPORT_HOME": str(work)}
        key = subprocess.run(
            [sys.executable, "-m", "modelport", "keys", "create", "bench", "--model", "mnist",
             "--rate", args.rate],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        store = ["--api_key_store", str(work / "registry.db")]
        off, off_port = start("off", repo, work, ["--auth=off"])
        on, on_port = start("keys", repo, work, ["--auth=on", *store])
        try:
            urls = {"off": f"http://127.0.0.1:{off_port}", "keys": f"http://127.0.0.1:{on_port}"}
            for url in urls.values():
                wait_ready(url)
            pgids = {"off": os.getpgid(off.pid), "keys": os.getpgid(on.pid)}
            keys = {"off": "", "keys": key}
            results: dict[int, dict[str, list[hb.Run]]] = {}
            for conns in args.conns:
                runs: dict[str, list[hb.Run]] = {"off": [], "keys": []}
                for name in runs:  # warm-up, not counted
                    hb.wrk(
                        urls[name] + "/v1/models/mnist:predict", body, conns, 2, 1, pgids[name], keys[name]
                    )
                for _ in range(args.repeats):
                    for name in runs:  # in turns: the machine's drift hits both
                        url = urls[name] + "/v1/models/mnist:predict"
                        runs[name].append(hb.wrk(url, body, conns, args.seconds, 1, pgids[name], keys[name]))
                results[conns] = runs
        finally:
            for proc in (off, on):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"### {when} — `python bench/keys_bench.py --conns {' '.join(map(str, args.conns))} "
          f"--repeats {args.repeats} --seconds {args.seconds} --rate {args.rate}`\n")  # fmt: skip
    print("| conns | off req/s | p50 ms | p99 ms | key+limit req/s | p50 ms | p99 ms | keys/off | errors |")
    print("|------:|----------:|-------:|-------:|----------------:|-------:|-------:|---------:|-------:|")
    for conns, runs in results.items():
        o, k = hb.median_run(runs["off"]), hb.median_run(runs["keys"])
        print(f"| {conns} | {o['rps']:,.0f} | {o['p50_ms']:.2f} | {o['p99_ms']:.2f} | {k['rps']:,.0f} | "
              f"{k['p50_ms']:.2f} | {k['p99_ms']:.2f} | **{k['rps'] / o['rps']:.3f}** | "
              f"{int(o['errors'] + k['errors'])} |")  # fmt: skip
        each = {name: [round(r.rps) for r in runs[name]] for name in runs}
        print(f"\nper run, off: {each['off']}; keys: {each['keys']}")
        # Each keys run is taken right after an off run: their ratio cancels the machine's slow
        # drift, and the sums weigh every turn alike.
        pairs = sorted(k.rps / o.rps for o, k in zip(runs["off"], runs["keys"], strict=True))
        total = sum(r.rps for r in runs["keys"]) / sum(r.rps for r in runs["off"])
        print(f"median of the per-turn ratios {pairs[len(pairs) // 2]:.3f}; ratio of the sums {total:.3f}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
