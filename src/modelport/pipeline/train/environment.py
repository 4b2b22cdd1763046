"""What a training run ran on, stored with the model version it produces.

Python and package versions, CPU model and count, memory, accelerator, OS, the git commit of the
project it was run from (and whether the tree had uncommitted changes), seeds, the exact
command and its configuration.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PACKAGES = (
    "modelport", "numpy", "onnx", "onnxruntime", "scikit-learn", "torch", "pillow", "mlxtend",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _accelerator() -> str | None:
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            return f"CUDA {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    return None


def _git(directory: Path) -> dict[str, Any] | None:
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return None
    status = run("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status), "root": run("rev-parse", "--show-toplevel")}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def record(
    seeds: Mapping[str, int],
    config: Mapping[str, Any],
    command: Sequence[str] | None = None,
    project: Path | None = None,
) -> dict[str, Any]:
    """The environment record of a run started now, from `project` (default: the working dir)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(command if command is not None else sys.argv),
        "config": dict(config),
        "seeds": dict(seeds),
        "python": platform.python_version(),
        "packages": package_versions(),
        "cpu": {"model": _cpu_model(), "count": os.cpu_count(), "usable": usable},
        "memory_bytes": _memory_bytes(),
        "accelerator": _accelerator(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "git": _git(project or Path.cwd()),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid()),
        "host": platform.node(),
    }
