"""The control plane at scale: the CPU of one control-loop round and the API's `get` latency, at
10, 100 and 1,000 Deployments of 3 replicas each, each with a Service and an HPA.

    bash bench/run.sh controlplane                       # sizes 10, 100, 1000
    python bench/controlplane_bench.py --sizes 10,100 --rounds 75 --gets 2000 --repeats 3

Method. The controllers are the control plane's own (HPA, Deployment, AnalysisRun, Rollout,
ReplicaSet, kubelet, Service: `ControlPlane.reconcile_once`'s order; no Rollouts here)
against the real SQLite store in a temporary folder, wired to the fakes that ship in
`modelport.testing`: a FakeClock, a FakeLauncher (no processes; the port files written), an
InlineProber that answers ready at once, FakeBalancers;
and a metrics source that gives every replica exactly the HPA's targets (60% of a 500m CPU
request, 1500 requests per second), so no HPA moves. The objects are created through the API's
logic (validation, defaults), then rounds run, the fake clock advancing `--sync` seconds (the
control plane's sync_seconds, 0.2) a round, until every Deployment is available and 15 s (an
HPA period) have passed without a write: steady state.

Round: `--rounds` more rounds (75 x 0.2 s = 15 s of fake time: every HPA decides once, each
replica is probed 15 times), each timed in CPU time (time.process_time; the machine is shared,
and noise only adds CPU time to a process by way of cache misses, not by waiting), per
controller and in total. Printed: the median and mean round, the heaviest one (the round in
which the HPAs decide), and the cost per object (median / Deployments).

API: the control plane's HTTP server (`apiserver.make_server`, threads, on 127.0.0.1) in this
process, and a client process of its own (`controlplane.client.Client`, what `modelport get`
uses: one connection per request) doing `--gets` GETs of random Deployments, each timed (wall,
perf_counter) in the client: p50 and p99. Three times: with the controllers idle, running a
round then waiting --sync seconds (the control plane's loop when nothing changes), and running
rounds back to back (the worst case: they share the server's process and its GIL), with the
control plane's switch interval (0.5 ms) and with CPython's default (5 ms);
`--repeats` times each, interleaved, medians printed.

What it leaves out: the metrics collector (a real HTTP scrape of each replica every 5 s), real
probes and processes, HAProxy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from modelport.controlplane.analysis import AnalysisController
from modelport.controlplane.api import Api
from modelport.controlplane.apiserver import make_server
from modelport.controlplane.autoscaler import Autoscaler
from modelport.controlplane.client import Client
from modelport.controlplane.deployments import DeploymentController, ReplicaSetController
from modelport.controlplane.kubelet import Kubelet
from modelport.controlplane.main import SWITCH_INTERVAL_SECONDS
from modelport.controlplane.meta import Recorder
from modelport.controlplane.rollouts import RolloutController
from modelport.controlplane.services import ServiceController
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.supervisor import BackOffPolicy
from modelport.testing import FakeBalancers, FakeClock, FakeLauncher, InlineProber

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
MODES = {  # what the controllers do in the server's process meanwhile
    "idle": "controllers idle",
    "paced": "a round every 0.2 s (the control plane's loop)",
    "busy": "rounds back to back",
    "busy-5ms": "rounds back to back, CPython's default switch interval (5 ms)",
}
REPLICAS = 3


class Targets:
    """Every replica at exactly its HPA's targets: 300m of a 500m request (60%), 1500 req/s,
    sampled now (by the fake clock: an older sample than the replica's readiness is not used)."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def pod(self, key: str) -> dict[str, Any] | None:
        now = self._clock.now()
        return {"cpu": 0.3, "requests_per_second": 1500.0, "timestamp": now, "window": 15.0}

    def query(self, promql: str) -> float:
        raise AssertionError("no Object/External metric in this benchmark")


def objects(i: int) -> list[dict[str, Any]]:
    """Deployment, Service and HPA number i: the MNIST example's shapes."""
    name = f"m{i:04d}"
    labels = {"app": name}
    deployment = {
        "apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS, "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "model": {"name": "mnist", "basePath": "/models/mnist"},
                "resources": {"requests": {"cpu": "500m"}},
            }},
        },
    }  # fmt: skip
    service = {
        "apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"port": 20000 + i}]},
    }  # fmt: skip
    hpa = {
        "apiVersion": "modelport/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": name}, "minReplicas": 1, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                {"type": "Pods", "pods": {
                    "metric": {"name": "requests_per_second"},
                    "target": {"type": "AverageValue", "averageValue": "1500"}}},
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}},
        },
    }  # fmt: skip
    return [deployment, service, hpa]


class World:
    """The controllers of one control plane on the fakes, in `reconcile_once`'s order."""

    def __init__(self, folder: Path) -> None:
        self.clock = FakeClock()
        self.store = ObjectStore(folder / "state.db", self.clock)
        self.recorder = Recorder(self.store, self.clock, "modelport-controlplane")
        self.api = Api(self.store, self.recorder, lambda: {"items": []}, lambda keep: None)

        def probe(port: int, path: str, timeout: float) -> tuple[bool, str]:
            return True, "HTTP 200"

        self.controllers: list[tuple[str, Any]] = [
            ("hpa", Autoscaler(self.store, self.clock, self.recorder, Targets(self.clock), 15.0, None)),
            ("deployments", DeploymentController(self.store, self.clock, self.recorder)),
            ("analysis", AnalysisController(self.store, self.clock, self.recorder)),
            ("rollouts", RolloutController(self.store, self.clock, self.recorder)),
            ("replicasets", ReplicaSetController(self.store, self.clock, self.recorder)),
            ("kubelet", Kubelet(
                self.store, self.clock, self.recorder, folder / "pods", BackOffPolicy(),
                launcher=FakeLauncher(), prober=InlineProber(probe),
            )),
            ("services", ServiceController(
                self.store, self.clock, self.recorder, folder / "services", balancers=FakeBalancers()
            )),
        ]  # fmt: skip

    def create(self, count: int) -> None:
        for i in range(count):
            for obj in objects(i):
                self.api.create(obj["kind"], "default", obj)

    def round(self, seconds: float) -> dict[str, float]:
        """One round, as `ControlPlane.reconcile_once`: each controller's CPU seconds."""
        self.clock.advance(seconds)
        spent = {}
        for name, controller in self.controllers:
            began = time.process_time()
            controller.sync_all()
            spent[name] = time.process_time() - began
        return spent

    def available(self) -> int:
        deployments, _ = self.store.list_kind("Deployment")
        return sum(1 for d in deployments if d.get("status", {}).get("availableReplicas") == REPLICAS)

    def settle(self, count: int, seconds: float, limit: int = 1000) -> int:
        """Rounds until every Deployment is available and a whole HPA period (15 s: every HPA
        decided once with its replicas running) has passed without a write; how many it took."""
        quiet_needed, quiet = int(15.0 / seconds) + 1, 0
        for n in range(1, limit + 1):
            before = self.store.resource_version()
            self.round(seconds)
            quiet = quiet + 1 if self.store.resource_version() == before else 0
            if quiet >= quiet_needed and self.available() == count:
                return n
        raise RuntimeError(f"no steady state after {limit} rounds ({self.available()}/{count} available)")


def measure_rounds(world: World, rounds: int, seconds: float) -> dict[str, Any]:
    before = world.store.resource_version()
    runs = [world.round(seconds) for _ in range(rounds)]
    totals = [sum(r.values()) for r in runs]
    return {
        "median_ms": statistics.median(totals) * 1e3,
        "mean_ms": statistics.fmean(totals) * 1e3,
        "min_ms": min(totals) * 1e3,
        "max_ms": max(totals) * 1e3,
        "per_controller_median_ms": {
            name: statistics.median(r[name] for r in runs) * 1e3 for name in runs[0]
        },
        "per_controller_mean_ms": {name: statistics.fmean(r[name] for r in runs) * 1e3 for name in runs[0]},
        "writes": world.store.resource_version() - before,  # at steady state: none
    }


def client_main(url: str, count: int, gets: int, seed: int) -> None:
    """The client process: `gets` GETs of random Deployments; their latencies (s), as JSON."""
    client = Client(url, TOKEN)
    pick = random.Random(seed)
    client.get("Deployment", "m0000")  # warm up
    times = []
    for _ in range(gets):
        name = f"m{pick.randrange(count):04d}"
        began = time.perf_counter()
        client.get("Deployment", name)
        times.append(time.perf_counter() - began)
    print(json.dumps(times))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_gets(
    world: World, count: int, gets: int, mode: str, seconds: float, seed: int
) -> dict[str, float]:
    # The control plane's switch interval (ControlPlane.run sets it), or CPython's default.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.005 if mode == "busy-5ms" else SWITCH_INTERVAL_SECONDS)
    server = make_server(world.api, TOKEN, 0)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    stop = threading.Event()
    rounds = [0]

    def loop() -> None:
        while not stop.is_set():
            world.round(seconds)
            rounds[0] += 1
            if mode == "paced":  # as the control plane's loop: a round, then sync_seconds idle
                stop.wait(seconds)

    looping = threading.Thread(target=loop, daemon=True)
    busy = mode != "idle"
    if busy:
        looping.start()
    cpu = time.process_time()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        argv = [sys.executable, __file__, "--client", url, str(count), str(gets), str(seed)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True, env=os.environ).stdout
    finally:
        stop.set()
        if busy:
            looping.join()
        server.shutdown()
        server.server_close()
        sys.setswitchinterval(previous)
    cpu = time.process_time() - cpu
    times = json.loads(out)
    return {
        "p50_ms": quantile(times, 0.5) * 1e3,
        "p99_ms": quantile(times, 0.99) * 1e3,
        "max_ms": max(times) * 1e3,
        "rounds_meanwhile": rounds[0],
        # idle: the server's CPU per request (with the accept loop's polls); busy: includes the rounds
        "server_cpu_ms_per_get": cpu / (gets + 1) * 1e3,
    }


def run_size(count: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as folder:
        world = World(Path(folder))
        began = time.process_time()
        world.create(count)
        created = time.process_time() - began
        began = time.process_time()
        settled = world.settle(count, args.sync)
        settling = time.process_time() - began
        rounds = measure_rounds(world, args.rounds, args.sync)
        gets: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for repeat in range(args.repeats):
            for mode in MODES:
                gets[mode].append(measure_gets(world, count, args.gets, mode, args.sync, repeat))
        api = {
            mode: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            for mode, runs in gets.items()
        }
        return {
            "deployments": count,
            "objects": {kind: len(world.store.list_kind(kind)[0]) for kind in (
                "Deployment", "ReplicaSet", "Pod", "Service", "HorizontalPodAutoscaler", "Event")},
            "create_cpu_s": created,
            "settle_rounds": settled,
            "settle_cpu_s": settling,
            "round": rounds,
            "api_get": api,
            "api_get_runs": gets,
        }  # fmt: skip


def report(result: dict[str, Any]) -> None:
    count, r, api = result["deployments"], result["round"], result["api_get"]
    parts = ", ".join(f"{k} {v:.1f}" for k, v in r["per_controller_median_ms"].items())
    print(
        f"{count:>5} Deployments: round CPU median {r['median_ms']:.1f} ms, mean {r['mean_ms']:.1f}, "
        f"max {r['max_ms']:.1f} ({r['median_ms'] / count * 1e3:.0f} µs per Deployment; {parts}; "
        f"{r['writes']} writes at steady state)"
    )
    for mode, what in MODES.items():
        a = api[mode]
        print(f"       API get, {what}: p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms")
    created, rounds, settled = result["create_cpu_s"], result["settle_rounds"], result["settle_cpu_s"]
    print(
        f"       (created in {created:.1f} s CPU; steady after {rounds} rounds, {settled:.1f} s CPU)",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,1000", help="Deployments, comma-separated")
    parser.add_argument("--rounds", type=int, default=75, help="rounds measured at steady state")
    parser.add_argument("--sync", type=float, default=0.2, help="fake seconds between rounds")
    parser.add_argument("--gets", type=int, default=2000, help="API GETs per run")
    parser.add_argument("--repeats", type=int, default=3, help="API runs per mode")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "controlplane.json")
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp} on {platform.node()} ({os.cpu_count()} CPUs), Python {platform.python_version()}")
    results = []
    for count in (int(s) for s in args.sizes.split(",")):
        results.append(run_size(count, args))
        report(results[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    saved = {"time": stamp, "args": {**vars(args), "out": str(args.out)}, "results": results}
    args.out.write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
