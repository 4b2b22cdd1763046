"""A Service in front of 2 replicas against the same 2 replicas called directly, and how long a
rollout of 2 replicas takes; side by side in one run, medians of repeats.

    bash bench/run.sh service                         # 5 repeats x 10 s at 8 and 64 connections
    python bench/service_bench.py --repeats 3 --seconds 5 --rollouts 5

A real control plane (`modelport up --detach`, a temporary MODELPORT_HOME) runs a Deployment of
the MNIST example with 2 replicas and a Service (HAProxy). Each repeat measures, in alternating
order:
  service  wrk (2 threads, N connections) against the Service's port;
  direct   two wrk (1 thread, N/2 connections each) at the same time, one per replica's own
           port: the best a client can do by spreading requests over the replicas by hand.
Throughput is the sum of both wrk for `direct`; its p99 is the mean of the two wrk's p99s.
CPU per request, in every run: the replicas' (both processes), HAProxy's and wrk's (the load
generator's own, from its rusage), from /proc and the requests wrk counted. On a shared machine
each process gets what share of a core the others leave it, and one process more (HAProxy) gets
one share more: the req/s ratio can then exceed 1 and says little. The CPU figures hold: "CPU
ratio" is direct's CPU per request over the Service's (replicas + HAProxy + wrk each time), the
req/s ratio a machine whose cores all of them keep busy would see.
The rollout figure is the time from `modelport set model` (a new template) to `modelport rollout
status` exiting 0, alternating between two copies of the same model, so both revisions load in
the same time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import http_bench as hb

DEPLOY = """apiVersion: modelport/v1
kind: Deployment
metadata: {{name: mnist}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: mnist}}}}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: mnist}}}}
    spec:
      model: {{name: mnist, basePath: {base}}}
---
apiVersion: modelport/v1
kind: Service
metadata: {{name: mnist}}
spec:
  selector: {{app: mnist}}
  ports: [{{port: 0}}]
"""


def wrk_many(urls: list[str], body: Path, conns: int, seconds: int, threads: int) -> list[hb.Run]:
    """Several wrk at once (one per URL); each run's figures."""
    env = {**os.environ, "BENCH_BODY": str(body)}
    procs = [
        subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(hb.LUA), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for url in urls
    ]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed: {out}\n{err}")
        rps, p50, p99, non2xx, sock, requests = hb.parse_wrk(out)
        runs.append(hb.Run(rps, p50, p99, non2xx, sock, requests, 0.0, 0.0))
    return runs


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (all their threads); NaN once one is gone (a
    replica replaced by the control plane mid-run, seen on a loaded machine: that run's CPU is
    not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return math.nan
        total += int(fields[11]) + int(fields[12])
    return total / tick


def children_cpu_seconds() -> float:
    """CPU of the finished child processes (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pids_of(text: str) -> list[int]:
    """The processes whose command line holds `text`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--conns", default="1,8,64")
    parser.add_argument("--rollouts", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    hb.ensure_wrk()
    cli = hb.modelport_cli()
    if cli is None:
        raise SystemExit("the modelport CLI is needed: pip install -e .")
    work = Path(tempfile.mkdtemp(prefix="modelport-service-bench-"))
    env = {**os.environ, "MODELPORT_HOME": str(work / "home")}

    def mp(*cmd: str) -> str:
        done = subprocess.run([cli, *cmd], env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"modelport {' '.join(cmd)}: {done.stdout}{done.stderr}")
        return done.stdout

    try:
        return run(args, cli, work, mp)
    finally:
        subprocess.run([cli, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, cli: str, work: Path, mp: Any) -> int:
    hb.write_repository(work / "mnist-a", cli)
    shutil.copytree(work / "mnist-a", work / "mnist-b")
    body = work / "body.json"
    body.write_text((work / "mnist-a" / "samples" / "request.json").read_text())
    (work / "deploy.yaml").write_text(DEPLOY.format(base=work / "mnist-a"))
    mp("up", "--detach")
    mp("apply", "-f", str(work / "deploy.yaml"))
    mp("rollout", "status", "deployment/mnist", "--timeout", "120")
    service = json.loads(mp("get", "service", "mnist", "-o", "json"))
    pods = json.loads(mp("get", "pods", "-o", "json"))["items"]
    ports = [p["status"]["port"] for p in pods if "deletionTimestamp" not in p["metadata"]]
    path = "/v1/models/mnist:predict"
    service_url = f"http://127.0.0.1:{service['spec']['ports'][0]['port']}{path}"
    direct_urls = [f"http://127.0.0.1:{port}{path}" for port in ports]
    assert len(direct_urls) == 2, pods
    for url in [service_url, *direct_urls]:
        out = subprocess.run(
            ["curl", "-sf", "-d", f"@{body}", url], capture_output=True, text=True, timeout=10
        )
        assert '"classes":7' in out.stdout.replace(" ", ""), out.stdout
    balancer = [
        pid for pid in pids_of(str(work / "home")) if "haproxy" in Path(f"/proc/{pid}/comm").read_text()
    ]
    assert len(balancer) == 1, balancer
    conns = [int(c) for c in args.conns.split(",")]
    results: dict[str, dict[int, list[dict[str, float]]]] = {"service": {}, "direct": {}}
    for c in conns:
        wrk_many([service_url], body, c, 2, 2 if c > 1 else 1)  # warm-up
        for repeat in range(args.repeats):
            order = ["service", "direct"] if repeat % 2 == 0 else ["direct", "service"]
            for case in order:
                replicas = pids_of(f"--model_base_path {work / 'mnist-a'}")
                before = (cpu_seconds(replicas), cpu_seconds(balancer), children_cpu_seconds())
                if case == "service":
                    (r,) = wrk_many([service_url], body, c, args.seconds, 2 if c > 1 else 1)
                    figure = {"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors}
                    done = r.requests
                elif c == 1:  # one connection: to one replica (the Service's hop at 1 is what is asked)
                    (r,) = wrk_many(direct_urls[:1], body, 1, args.seconds, 1)
                    figure = {"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors}
                    done = r.requests
                else:
                    a, b = wrk_many(direct_urls, body, c // 2, args.seconds, 1)
                    figure = {
                        "rps": a.rps + b.rps,
                        "p50_ms": (a.p50_ms + b.p50_ms) / 2,
                        "p99_ms": (a.p99_ms + b.p99_ms) / 2,
                        "errors": a.errors + b.errors,
                    }
                    done = a.requests + b.requests
                after = (cpu_seconds(replicas), cpu_seconds(balancer), children_cpu_seconds())
                for key, was, now in zip(("replicas_us", "haproxy_us", "wrk_us"), before, after, strict=True):
                    figure[key] = (now - was) / max(done, 1) * 1e6
                results[case].setdefault(c, []).append(figure)
                print(
                    f"{c:>3} conns  {case:<8} {figure['rps']:>9,.0f} req/s  p50 {figure['p50_ms']:.2f} ms  "
                    f"p99 {figure['p99_ms']:.2f} ms  errors {figure['errors']}  CPU µs/req: replicas "
                    f"{figure['replicas_us']:.0f}, HAProxy {figure['haproxy_us']:.0f}, "
                    f"wrk {figure['wrk_us']:.0f}  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    rollouts = []
    for i in range(args.rollouts):
        target = work / ("mnist-b" if i % 2 == 0 else "mnist-a")
        began = time.monotonic()
        mp("set", "model", "deployment/mnist", str(target))
        mp("rollout", "status", "deployment/mnist", "--timeout", "120")
        rollouts.append(time.monotonic() - began)
        print(f"rollout {i + 1}: {rollouts[-1]:.2f} s", flush=True)
    report(args, conns, results, rollouts)
    return 0


def report(
    args: argparse.Namespace,
    conns: list[int],
    results: dict[str, dict[int, list[dict[str, float]]]],
    rollouts: list[float],
) -> None:
    def med(case: str, c: int, key: str) -> float:
        return statistics.median([f[key] for f in results[case][c] if not math.isnan(f[key])] or [math.nan])

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {now} — `bash bench/run.sh service --repeats {args.repeats} --seconds {args.seconds}`",
        "",
        f"Medians of {args.repeats} x {args.seconds} s per case, cases alternating; 2 replicas of the MNIST "
        "example; the Service is HAProxy; wrk threads: 2 for the Service, 1 per replica direct.",
        "",
        "| conns | Service req/s | p50 ms | p99 ms | direct req/s | p50 ms | p99 ms "
        "| req/s ratio | p50 added ms | p99 ratio | CPU µs/req Service: replicas + HAProxy + wrk "
        "| direct: replicas + wrk | CPU ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    keys = ("rps", "p50_ms", "p99_ms", "replicas_us", "haproxy_us", "wrk_us")
    for c in conns:
        s = {k: med("service", c, k) for k in keys}
        d = {k: med("direct", c, k) for k in keys}
        service_cpu = s["replicas_us"] + s["haproxy_us"] + s["wrk_us"]
        direct_cpu = d["replicas_us"] + d["haproxy_us"] + d["wrk_us"]
        lines.append(
            f"| {c} | {s['rps']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {d['rps']:,.0f} "
            f"| {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | **{s['rps'] / d['rps']:.2f}** "
            f"| **{s['p50_ms'] - d['p50_ms']:+.2f}** | {s['p99_ms'] / d['p99_ms']:.2f} "
            f"| {s['replicas_us']:.0f} + {s['haproxy_us']:.0f} + {s['wrk_us']:.0f} "
            f"| {d['replicas_us']:.0f} + {d['wrk_us']:.0f} | **{direct_cpu / service_cpu:.2f}** |"
        )
    errors = sum(f["errors"] for case in results.values() for runs in case.values() for f in runs)
    lines += [
        "",
        f"Errors over all runs: {errors:.0f}.",
        "",
        f"Rollout of 2 replicas (`set model` to `rollout status` exit 0), {len(rollouts)} runs: median "
        f"**{statistics.median(rollouts):.2f} s**, min {min(rollouts):.2f} s, max {max(rollouts):.2f} s.",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "rollouts": rollouts, "machine": hb.machine()}, indent=2)
        )


if __name__ == "__main__":
    sys.exit(main())
