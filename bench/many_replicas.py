"""Many real replicas on one machine: a Deployment of N replicas of the MNIST example (default
20) comes up, then rolls out a new template, through a real control plane; each step must finish
within `modelport rollout status`'s timeout.

    python bench/many_replicas.py                  # 20 replicas, 600 s per step
    python bench/many_replicas.py --replicas 10 --timeout 300

Prints the wall time of each step (apply to every replica available; `modelport set model` to
another copy of the model to the rollout complete), the control plane's own CPU time meanwhile
(/proc/PID/stat), the replicas' restarts (none expected) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEPLOY = """apiVersion: modelport/v1
kind: Deployment
metadata: {{name: mnist}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: mnist}}}}
  template:
    metadata: {{labels: {{app: mnist}}}}
    spec:
      model: {{name: mnist, basePath: {base}}}
"""
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelport-many-"))
    env = {**os.environ, "MODELPORT_HOME": str(work / "home")}
    mp = [sys.executable, "-m", "modelport"]

    def run(*cmd: str) -> str:
        done = subprocess.run([*mp, *cmd], env=env, capture_output=True, text=True, timeout=args.timeout + 60)
        if done.returncode != 0:
            raise RuntimeError(f"modelport {' '.join(cmd)}: {done.stdout}{done.stderr}")
        return done.stdout

    try:
        run("example", "mnist", str(work / "a"))
        shutil.copytree(work / "a", work / "b")
        (work / "deploy.yaml").write_text(DEPLOY.format(replicas=args.replicas, base=work / "a"))
        run("up", "--detach")
        pid = json.loads((work / "home" / "controlplane" / "api.json").read_text())["pid"]
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        for step, cmd in (
            ("apply", ("apply", "-f", str(work / "deploy.yaml"))),
            ("rollout", ("set", "model", "deployment/mnist", str(work / "b"))),
        ):
            cpu, began = cpu_of(pid), time.monotonic()
            run(*cmd)
            run("rollout", "status", "deployment/mnist", "--timeout", str(args.timeout))
            took, spent = time.monotonic() - began, cpu_of(pid) - cpu
            print(
                f"{step}: {args.replicas} replicas available in {took:.1f} s "
                f"(control plane CPU {spent:.1f} s)"
            )
        pods = json.loads(run("get", "pods", "-o", "json"))["items"]
        restarts = sum(int(p.get("status", {}).get("restartCount", 0)) for p in pods)
        print(f"{len(pods)} Pods, {restarts} restarts; load average {os.getloadavg()[0]:.1f}")
    finally:
        subprocess.run([*mp, "down"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
