"""`modelport serve --workers 2` against a 2-worker floor and against `--workers 1` (issue 20).

    bash bench/run.sh workers [--conns 64] [--repeats 5] [--seconds 10]

Sides, each started once and driven by wrk in turns (A, B, C, A, B, C, ...), each after a 2 s
warm-up, with the MNIST example's :predict request (a PNG, b64):
- workers2: `modelport serve --workers 2` (each worker its own SO_REUSEPORT socket);
- workers1: `modelport serve` (one process);
- floor2: `uvicorn --workers 2` on bench/floor.py's app (the supervisor binds, its workers share
  the listening socket), the same ONNX session settings;
Prints the machine, the load average before and after, per side the median req/s, p50, p99 and
the server's CPU, the ratios of medians, and each side's memory once loaded (RSS and PSS of
every process: supervisor and workers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

import ab
import http_bench as hb

HERE = Path(__file__).resolve().parent


def _floor(repo: Path, work: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "floor:from_env", "--workers", "2",
        "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning", "--backlog", "2048",
    ]  # fmt: skip
    env = {**os.environ, "FLOOR_MODEL": str(repo / "1" / "model.onnx")}
    log = open(work / "floor2.log", "wb")  # noqa: SIM115 - the server's for its life
    return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0)


def _memory(pid: int) -> list[tuple[int, float, float]]:
    """(pid, RSS MiB, PSS MiB) of `pid` and each of its children."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                pids.append(int(entry.name))
    found = []
    for p in pids:
        fields = {}
        for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) / 1024
        found.append((p, fields["Rss"], fields["Pss"]))
    return found


def _answered_by_worker(url: str) -> dict[str, int]:
    """:predict answers by worker, from the server's one /metrics (how evenly the port spread them)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelport_requests_total" and sample.labels.get("api") == "predict":
                worker = sample.labels["worker"]
                found[worker] = found.get(worker, 0) + int(sample.value)
    return dict(sorted(found.items()))


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    args = ab.arguments(__doc__).parse_args()
    with ab.workspace("workers-bench-") as (work, repo):
        procs: dict[str, subprocess.Popen[bytes]] = {}
        urls: dict[str, str] = {}
        try:
            for name, extra in [("workers2", ["--workers", "2"]), ("workers1", [])]:
                procs[name], port = ab.start(name, repo, work, [*extra, "--log_level", "warning"])
                urls[name] = f"http://127.0.0.1:{port}"
            port = hb.free_port()
            procs["floor2"] = _floor(repo, work, port)
            urls["floor2"] = f"http://127.0.0.1:{port}"
            for url in urls.values():
                for _ in range(10):  # a connection each: every worker ready, not just one
                    ab.wait_ready(url)
            return _measure(args, repo, urls, procs)
        finally:
            for proc in procs.values():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)


def _measure(
    args: argparse.Namespace, repo: Path, urls: dict[str, str], procs: dict[str, subprocess.Popen[bytes]]
) -> int:
    body = repo / "samples" / "request.json"
    print(json.dumps(hb.machine()), flush=True)
    print(f"load average before: {_loadavg()}", flush=True)
    for conns in args.conns:
        runs: dict[str, list[hb.Run]] = {name: [] for name in urls}
        for name, url in urls.items():
            hb.wrk(url + "/v1/models/mnist:predict", body, conns, 2, 1, os.getpgid(procs[name].pid))
        for turn in range(args.repeats):
            for name, url in urls.items():
                run = hb.wrk(url + "/v1/models/mnist:predict", body, conns, args.seconds, 1, procs[name].pid)
                runs[name].append(run)
                print(f"  c={conns} turn {turn + 1} {name}: {run.rps:.0f} req/s, p50 {run.p50_ms:.2f} ms, "
                      f"p99 {run.p99_ms:.2f} ms, server CPU {run.server_cpu_pct:.0f}%, errors {run.errors}",
                      flush=True)  # fmt: skip
        medians = {name: statistics.median(r.rps for r in rs) for name, rs in runs.items()}
        print(f"\n{conns} connections, medians of {args.repeats} turns of {args.seconds} s:")
        for name, rs in runs.items():
            m = hb.median_run(rs)
            cpu_ms = statistics.median(10 * r.server_cpu_pct / r.rps for r in rs)  # ms of CPU a request
            print(
                f"  {name:18} {m['rps']:8.0f} req/s  p50 {m['p50_ms']:6.2f} ms  p99 {m['p99_ms']:6.2f} ms  "
                f"server CPU {m['server_cpu_pct']:4.0f}% ({cpu_ms:.3f} ms a request)  errors {m['errors']}"
            )
        for other, target in (("floor2", 0.8), ("workers1", 1.6)):
            turns = [a.rps / b.rps for a, b in zip(runs["workers2"], runs[other], strict=True)]
            print(
                f"  workers2 / {other:8} {medians['workers2'] / medians[other]:.3f} (ratio of medians), "
                f"{statistics.median(turns):.3f} (median of the turns' ratios)   target >= {target}"
            )
    print(f"  workers2: requests answered by worker {_answered_by_worker(urls['workers2'])}")
    print(f"load average after: {_loadavg()}\n\nmemory once loaded (MiB):")
    for name, proc in procs.items():
        rows = _memory(proc.pid)
        detail = ", ".join(f"pid {p}: RSS {rss:.0f} PSS {pss:.0f}" for p, rss, pss in rows)
        total = sum(pss for _, _, pss in rows)
        print(f"  {name:18} PSS total {total:6.0f}  ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
