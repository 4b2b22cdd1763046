"""What shadow traffic (a Rollout's setMirror) costs the stable replica: two `modelport serve`
processes of the MNIST example, one stable (with --mirror_file) and one canary; one client posts
the example's request (a PNG digit) to stable, and the mirror file says 0% or 50%, alternating
round by round (A/B interleaved, the same machine state for both). Per setting: the client's
latency (p50, p99) and the stable process's CPU time per request, its copies' work included
(read from /proc after the copies in flight have finished), medians over the rounds.

    python bench/mirror_bench.py [--requests 300] [--rounds 4]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from modelport.examples import write_mnist_repository
from support import Server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    write_mnist_repository(root / "m")
    png = (files("modelport.examples") / "mnist" / "samples" / "digit-3.png").read_bytes()
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}
    for name in ("stable", "canary"):
        (root / name).mkdir()
    mirror = root / "stable" / "mirror.json"
    model = ["--model_name", "mnist", "--model_base_path", str(root / "m")]
    stable = Server([*model, "--mirror_file", str(mirror)], root / "stable")
    canary = Server(model, root / "canary")
    try:
        stable.wait_ready()
        canary.wait_ready()
        run(stable, canary, mirror, body, args.requests, args.rounds)
    finally:
        stable.stop()
        canary.stop()


def run(stable: Server, canary: Server, mirror: Path, body: object, count: int, rounds: int) -> None:
    proc = psutil.Process(stable.proc.pid)
    url = f"{stable.url}/v1/models/mnist:predict"
    latency: dict[int, list[float]] = {0: [], 50: []}
    cpu: dict[int, list[float]] = {0: [], 50: []}
    with requests.Session() as session:
        for _ in range(50):  # warm
            session.post(url, json=body, timeout=10)
        for _ in range(rounds):
            for percent in (0, 50):
                rule = {"model": "mnist", "percent": percent, "targets": [canary.url]}
                mirror.write_text(json.dumps({"rules": [rule]}))
                time.sleep(1.2)  # the replica polls the file every 0.5 s
                before = sum(proc.cpu_times()[:2])
                for _ in range(count):
                    started = time.perf_counter()
                    assert session.post(url, json=body, timeout=10).status_code == 200
                    latency[percent].append(time.perf_counter() - started)
                time.sleep(0.5)  # the copies still in flight finish: their CPU counts
                cpu[percent].append((sum(proc.cpu_times()[:2]) - before) / count)
    for percent in (0, 50):
        ordered = sorted(latency[percent])
        print(f"setMirror {percent:>2}%: client p50 {statistics.median(ordered) * 1000:.2f} ms, "
              f"p99 {ordered[int(len(ordered) * 0.99)] * 1000:.2f} ms; stable CPU per request "
              f"{statistics.median(cpu[percent]) * 1000:.3f} ms")  # fmt: skip
    said = requests.get(f"{stable.url}/metrics", timeout=10).text.splitlines()
    print("\n".join(line for line in said if line.startswith("modelport_mirror_requests_total")))


if __name__ == "__main__":
    main()
