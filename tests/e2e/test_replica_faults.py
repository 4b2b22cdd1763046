"""The README's fault table and `top pods` through a real control plane: a replica over its
`resources.limits.memory` fails, is restarted with back-off and `describe` says why; a replica
failing its liveness probe is restarted; `top pods` shows a replica's CPU, memory, req/s,
in-flight requests and p99 with their values."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from claims_support import spinning_onnx
from support import Plane, half_plus_two, mark_complete, says_out_of_memory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    half_plus_two(root / "half" / "1")
    spinning_onnx(root / "spin" / "1" / "model.onnx")
    for name in ("half", "spin"):
        mark_complete(root / name / "1")
    return {"half": root / "half", "spin": root / "spin"}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    # A window longer than the module: a replica's rates cover everything since its start.
    plane.up("--metrics-seconds", "0.5", "--metrics-window", "600",
             "--container-log-max-size", "64Ki", "--container-log-max-files", "3")  # fmt: skip
    yield plane
    plane.stop()


def _apply(plane: Plane, tmp: Path, name: str, base: Path, model: str, **template: Any) -> None:
    doc = {
        "apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"model": {"name": model, "basePath": str(base)}, **template}}},
    }  # fmt: skip
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    plane.cli("apply", "-f", str(path))


def _pod(plane: Plane, app: str) -> dict[str, Any]:
    pods = [p for p in plane.json("get", "pods")["items"] if p["metadata"]["labels"].get("app") == app]
    assert len(pods) == 1, pods
    return pods[0]


def _restarts(plane: Plane, app: str) -> int:
    return int(_pod(plane, app).get("status", {}).get("restartCount", 0))


def test_a_replica_over_its_memory_limit_is_restarted_and_described(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    # 64 MiB of address space (RLIMIT_AS): the server's libraries cannot even be mapped.
    _apply(plane, tmp_path, "tight", models["half"], "half", resources={"limits": {"memory": "64Mi"}})
    plane.wait(lambda: _restarts(plane, "tight") >= 1, 60, "the replica to fail and be restarted")
    pod = _pod(plane, "tight")
    assert pod["status"]["lastExitCode"] == 1 and pod["status"]["ready"] is not True
    described = plane.cli("describe", "pod", pod["metadata"]["name"]).stdout
    assert "Restart Count:  " in described and "(last exit code 1)" in described
    assert says_out_of_memory(described), described  # the log's last line
    assert "BackOff" in described and "Back-off restarting failed replica: exited with 1" in described
    plane.cli("delete", "deployment", "tight")


def test_a_replica_failing_its_liveness_probe_is_restarted(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    _apply(plane, tmp_path, "unwell", models["half"], "half",
           livenessProbe={"path": "/v1/models/nope", "periodSeconds": 1, "timeoutSeconds": 10,
                          "failureThreshold": 2})  # fmt: skip
    plane.wait(lambda: _restarts(plane, "unwell") >= 1, 60, "the replica to be restarted")
    pod = _pod(plane, "unwell")
    described = plane.cli("describe", "pod", pod["metadata"]["name"]).stdout
    assert "Liveness probe failed: HTTP probe failed with statuscode: 404" in described
    assert "BackOff" in described
    plane.cli("delete", "deployment", "unwell")


def _ready_pods(plane: Plane, app: str) -> int:
    pods = [p for p in plane.json("get", "pods")["items"] if p["metadata"]["labels"].get("app") == app]
    return sum(1 for p in pods if p.get("status", {}).get("ready"))


def test_a_frozen_replica_stalls_no_other_deployment(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    """One replica stopped with SIGSTOP (its port still accepts connections; nothing answers).
    Its readiness probe may wait 60 s: the other Deployment is scaled and its new replica probed
    and ready meanwhile, in seconds (were probes run one after another in the controllers' loop,
    every round would wait those 60 s first). The frozen one fails its liveness probe twice (2 s
    each) and is restarted, as its probes say."""
    _apply(plane, tmp_path, "frozen", models["half"], "half",
           readinessProbe={"timeoutSeconds": 60},
           livenessProbe={"path": "/healthz", "timeoutSeconds": 2, "failureThreshold": 2})  # fmt: skip
    _apply(plane, tmp_path, "busy", models["half"], "half")
    plane.cli("rollout", "status", "deployment/frozen")
    plane.cli("rollout", "status", "deployment/busy")
    pid = int(_pod(plane, "frozen")["status"]["pid"])
    os.killpg(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        plane.cli("scale", "deployment/busy", "--replicas", "2")
        plane.wait(lambda: _ready_pods(plane, "busy") == 2, 60, "busy's second replica to be ready")
        scaled = time.monotonic() - began
        plane.wait(lambda: _restarts(plane, "frozen") >= 1, 60, "the frozen replica to be restarted")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)  # were it not killed, let it go on (and be stopped)
    assert scaled < 40, f"busy took {scaled:.1f} s to scale while another replica was frozen"
    described = plane.cli("describe", "pod", _pod(plane, "frozen")["metadata"]["name"]).stdout
    assert "Liveness probe failed: Get http://127.0.0.1:" in described
    assert "/healthz: context deadline exceeded (no answer within 2 s)" in described
    plane.wait(lambda: _ready_pods(plane, "frozen") == 1, 60, "the restarted replica to be ready")
    plane.cli("delete", "deployment", "frozen")
    plane.cli("delete", "deployment", "busy")


def test_the_control_planes_own_log_is_rotated_like_a_replicas(plane: Plane) -> None:
    """`up --detach` writes the control plane's output to controlplane.log; a control plane that
    logs a lot (a Pod failing every round logs a traceback every round) keeps it within
    `--container-log-max-size` and `--container-log-max-files` too. 200 KiB are appended as it
    would append them; it rotates them away, 64 KiB a file, 3 files at most."""
    log = plane.home / "controlplane" / "controlplane.log"
    with open(log, "ab") as out:  # appending, as the control plane's own output does
        for i in range(2000):
            out.write(f"line {i:05d} ".encode() + b"x" * 90 + b"\n")
    plane.wait(lambda: log.stat().st_size <= 64 * 2**10, 30, "the control plane's log to be rotated")
    kept = sorted(p.name for p in log.parent.glob("controlplane.log*"))
    assert kept in (["controlplane.log", "controlplane.log.1"],
                    ["controlplane.log", "controlplane.log.1", "controlplane.log.2"]), kept  # fmt: skip
    assert "line 01999" in (log.parent / "controlplane.log.1").read_text()  # the latest part, kept
    assert plane.cli("get", "pods").returncode == 0  # and it goes on


def test_logs_follow_a_replicas_log_across_its_rotation(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    """The plane rotates replica logs at 64 KiB. 100 KiB land in a replica's log (appended, as
    its output is), the last line unfinished; the control plane rotates it; `logs -f` goes on
    with what is written after, by whole lines, and `logs` shows the latest lines."""
    _apply(plane, tmp_path, "talky", models["half"], "half")
    plane.cli("rollout", "status", "deployment/talky")
    pod = _pod(plane, "talky")
    name, log = f"pod/{pod['metadata']['name']}", Path(pod["status"]["logPath"])
    command = [sys.executable, "-m", "modelport", "logs", "-f", "--tail", "1", name]
    with subprocess.Popen(command, env=plane.env, stdout=subprocess.PIPE, text=True) as follow:
        deadline = threading.Timer(60, follow.kill)  # a line that never comes ends the readline
        deadline.start()
        try:
            assert follow.stdout is not None
            follow.stdout.readline()  # the last line so far: it follows from here on
            with open(log, "ab") as out:
                for i in range(1000):
                    out.write(f"filler {i:04d} ".encode() + b"x" * 90 + b"\n")
                out.write(b"a line the rotation cuts, ")  # its end is never written
            plane.wait(lambda: log.with_name(log.name + ".1").exists(), 30, "the replica's log to be rotated")
            with open(log, "ab") as out:
                out.write(b"after the rotation\n")
            followed = [follow.stdout.readline()]
            while "after the rotation" not in followed[-1]:
                followed.append(follow.stdout.readline())
                assert followed[-1], f"logs -f ended: {followed[-3:]}"
            # whole lines only: the cut one is whole in the rotated part, not glued to the next
            assert followed[-1] == "after the rotation\n", followed[-3:]
        finally:
            deadline.cancel()
            follow.kill()
    assert plane.cli("logs", name).stdout.endswith("after the rotation\n")
    assert log.stat().st_size <= 64 * 2**10
    plane.cli("delete", "deployment", "talky")


def _top(plane: Plane, app: str) -> list[str] | None:
    """The replica's `top pods` row (NAME CPU MEMORY REQ/S IN-FLIGHT P99), once it has one."""
    rows = [
        line.split() for line in plane.cli("top", "pods").stdout.splitlines() if line.startswith(f"{app}-")
    ]
    return rows[0] if rows else None


def test_top_pods_shows_each_column_with_its_value(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    _apply(plane, tmp_path, "spin", models["spin"], "spin")
    plane.cli("rollout", "status", "deployment/spin")
    port = _pod(plane, "spin")["status"]["port"]
    url = f"http://127.0.0.1:{port}/v1/models/spin:predict"
    # The endless request first, while the replica runs unknown models in its thread pool.
    stuck = threading.Thread(target=_post_forever, args=(url,), daemon=True)
    stuck.start()
    plane.wait(lambda: _in_flight(port) == 1.0, 30, "the endless request to be in flight")
    # The window must begin before the 20 answers: on a busy machine the control plane's first
    # sample can come after them, and then the window rightly holds no answer and no p99.
    plane.wait(lambda: _usage(plane, "spin") is not None, 30, "the control plane's first two samples")
    for _ in range(20):
        assert requests.post(url, json={"instances": [[1.0]]}, timeout=10).json() == {"predictions": [[2.0]]}

    def settled() -> bool:
        row = _top(plane, "spin")
        return row is not None and row[4] == "1" and row[5] != "-"

    plane.wait(settled, 60, "top to show the request in flight and a p99")
    row = _top(plane, "spin")
    usage = _usage(plane, "spin")
    assert row is not None and usage is not None
    _name, cpu, memory, rate, in_flight, p99 = row
    # What the control plane measured: 20 answers over the time between its first and last sample
    assert usage["requests_per_second"] * usage["window"] == pytest.approx(20.0)
    assert usage["requests_in_flight"] == 1.0 and in_flight == "1"
    assert 0.0 < float(rate) <= 40.0  # 20 answers over at least two samples 0.5 s apart
    assert cpu.endswith("m") and int(cpu[:-1]) >= 1  # the endless request spins
    assert memory.endswith("Mi") and 30 <= int(memory[:-2]) <= 4096
    lower, upper = _p99_bucket(port)  # the replica's own histogram: where the 19.8th answer lies
    assert lower * 1000 - 0.05 <= float(p99) <= upper * 1000 + 0.05
    assert lower <= usage["request_latency_p99_seconds"] <= upper
    plane.cli("delete", "deployment", "spin")


def _usage(plane: Plane, app: str) -> dict[str, Any] | None:
    """The control plane's measured usage of the app's replica; None until it has two samples."""
    items = [i for i in plane.client().request("GET", "/api/top")["items"] if i["pod"].startswith(f"{app}-")]
    return items[0] if items else None


def _p99_bucket(port: int) -> tuple[float, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("modelport_request_duration_seconds_bucket{") and 'api="predict"' in line:
            bound = float(line.split('le="')[1].split('"')[0])
            buckets[bound] = buckets.get(bound, 0.0) + float(line.split()[-1])
    assert buckets[float("inf")] == 20.0, buckets
    lower = 0.0
    for bound in sorted(buckets):
        if buckets[bound] >= 0.99 * 20:
            return lower, bound
        lower = bound
    raise AssertionError(buckets)


def _in_flight(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    lines = [x for x in text.splitlines() if x.startswith('modelport_requests_in_flight{model="spin"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


def _post_forever(url: str) -> None:
    with contextlib.suppress(requests.RequestException):  # the replica is stopped under it
        requests.post(url, json={"instances": [[1e12]]}, timeout=600)
