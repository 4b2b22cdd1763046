"""Cold start: `modelport apply` to Ready for one replica of the MNIST example, broken down.

    python bench/cold_start.py                   # 5 applies, 5 replicas alone, 5 import runs
    python bench/cold_start.py --repeats 3

Three measurements, medians (and minimums) of --repeats runs each:

1. apply to Ready, through a real control plane (`modelport up --detach`, a temporary
   MODELPORT_HOME): the wall time from sending the Deployment (`Client.create`, what `modelport
   apply` does) to the Pod's `ready: true`, and on the way, from a watch of the Pod opened before
   the apply: when the Pod appeared, when its replica was started (the process's own start time,
   /proc/PID/stat), when its port was known (the port file read) and when it was Ready. Then the
   Deployment is deleted and the next run waits for the Pod to be gone.
2. The replica alone: the command the kubelet runs (`python -m modelport serve --model_name mnist
   --model_base_path ... --port_file ...`), polled every 5 ms: wall and CPU time (the process's,
   every thread, from /proc/PID/stat) until the port file is written (imports done, sockets bound)
   and until /readyz answers 200 (the model loaded); the model's own load time from its log.
3. Imports: CPU time (time.process_time, in a fresh process) of `import modelport.cli` (what
   `python -m modelport` loads before it dispatches) and of what `serve` imports after it.

CPU time is the figure to compare on a shared machine (noise adds waiting, not CPU); the wall
times are what a user waits, on this machine as loaded as it is: the load average is printed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from modelport.controlplane.client import Client

TICK = os.sysconf("SC_CLK_TCK")
DEPLOY = {
    "apiVersion": "modelport/v1",
    "kind": "Deployment",
    "metadata": {"name": "mnist", "namespace": "default"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "mnist"}},
        "template": {"metadata": {"labels": {"app": "mnist"}}, "spec": {"model": {"name": "mnist"}}},
    },
}
IMPORTS = """
import time
t = time.process_time()
import modelport.cli
cli = time.process_time()
from modelport.cli.serve import serve  # noqa
import modelport.server.main, modelport.runtimes.onnx, onnxruntime  # what serve() loads
print(cli - t, time.process_time() - cli)
"""


def started_at(pid: int) -> float:
    """A process's start, in seconds since the epoch (to 1/CLK_TCK: 10 ms): its age by the
    uptime clock, /proc/uptime's (to 10 ms too) against its start in /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - int(fields[19]) / TICK)


def cpu_of(pid: int) -> float:
    """A live process's CPU seconds so far (user + system, every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f})"


def apply_to_ready(client: Client, base: Path) -> dict[str, float]:
    since = client.list("Pod")["metadata"]["resourceVersion"]
    seen: dict[str, float] = {}
    pid: list[int] = []

    def watch() -> None:
        for change in client.watch("Pod", "default", since, timeout=60):
            status, now = change["object"].get("status") or {}, time.time()
            seen.setdefault("pod", now)
            if status.get("pid") and not pid:
                pid.append(int(status["pid"]))
            if status.get("port"):
                seen.setdefault("port", now)
            if status.get("ready"):
                seen.setdefault("ready", now)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.2)  # the watch is open
    began = time.time()
    body = json.loads(json.dumps(DEPLOY))
    body["spec"]["template"]["spec"]["model"]["basePath"] = str(base)
    client.create(body)
    watcher.join(90)
    if "ready" not in seen:
        raise RuntimeError(f"not Ready within 90 s: {seen}")
    out = {k: v - began for k, v in seen.items()}
    out["process"] = started_at(pid[0]) - began
    client.delete("Deployment", "mnist")
    deadline = time.time() + 60
    while client.list("Pod")["items"] and time.time() < deadline:
        time.sleep(0.1)
    return out


def replica_alone(base: Path, work: Path) -> dict[str, float]:
    port_file = work / "alone.ports.json"
    port_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "modelport", "serve", "--model_name", "mnist",
            "--model_base_path", str(base), "--rest_api_port", "0", "--port", "0",
            "--port_file", str(port_file)]  # fmt: skip
    began = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: dict[str, float] = {}
    port = 0
    while "ready" not in out:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {proc.communicate()[0]}")
        if "port" not in out and port_file.exists():
            out["port"], out["port_cpu"] = time.time() - began, cpu_of(proc.pid)
            port = json.loads(port_file.read_text())["rest_api_port"]
        if port:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/readyz")
                answer = conn.getresponse()
                answer.read()
                if answer.status == 200:
                    out["ready"], out["ready_cpu"] = time.time() - began, cpu_of(proc.pid)
            except OSError:
                pass
        time.sleep(0.005)
    proc.terminate()
    log = proc.communicate(timeout=30)[0]
    loaded = re.search(r"AVAILABLE \(loaded in ([0-9.]+) s\)", log)
    out["model_load"] = float(loaded.group(1)) if loaded else float("nan")
    return out


def imports() -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True)
    cli, rest = done.stdout.split()
    return float(cli), float(rest)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelport-cold-"))
    env = {**os.environ, "MODELPORT_HOME": str(work / "home")}
    mp = [sys.executable, "-m", "modelport"]
    try:
        subprocess.run([*mp, "example", "mnist", str(work / "mnist")], check=True, capture_output=True)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        runs = [imports() for _ in range(args.repeats)]
        cli, rest = med([r[0] for r in runs]), med([r[1] for r in runs])
        print(f"imports (CPU): modelport.cli {cli}, then serve's {rest}")
        alone = [replica_alone(work / "mnist", work) for _ in range(args.repeats)]
        for key, what in (("port", "port file (wall)"), ("port_cpu", "port file (CPU)"),
                          ("ready", "Ready (wall)"), ("ready_cpu", "Ready (CPU)"),
                          ("model_load", "model load (its log)")):  # fmt: skip
            print(f"replica alone: {what}: {med([a[key] for a in alone])}")
        subprocess.run([*mp, "up", "--detach"], env=env, check=True, capture_output=True, timeout=120)
        client = Client.from_home(work / "home")
        applied = [apply_to_ready(client, work / "mnist") for _ in range(args.repeats)]
        for key in ("pod", "process", "port", "ready"):
            print(f"apply -> {key}: {med([a[key] for a in applied])}")
        print(f"load average {os.getloadavg()[0]:.1f}")
    finally:
        subprocess.run([*mp, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
