"""What API keys and a rate limit cost the model server: `:predict` on the MNIST MLP with auth off
and with a key checked on every request and a per-key rate limit on (high enough never to refuse:
its leases are still taken from the shared SQLite store), two `modelport serve` processes of the
same model side by side, driven in turns by wrk; medians of the repeats and their ratio.

    python bench/keys_bench.py                      # 64 connections, 5 repeats of 10 s
    python bench/keys_bench.py --conns 1 64 --repeats 3 --seconds 5
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import ab
import http_bench as hb


def main() -> int:
    parser = ab.arguments(__doc__)
    parser.add_argument("--rate", default="100000/s", help="The key's rate limit (burst: one second of it).")
    args = parser.parse_args()
    with ab.workspace("keys-bench-") as (work, repo):
        env = {**os.environ, "MODELPORT_HOME": str(work)}
        key = subprocess.run(
            [sys.executable, "-m", "modelport", "keys", "create", "bench", "--model", "mnist",
             "--rate", args.rate],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        store = ["--api_key_store", str(work / "registry.db")]
        sides = [ab.Side("off", ["--auth=off"]), ab.Side("keys", ["--auth=on", *store], api_key=key)]
        results = ab.turns(sides, repo, work, args)
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
