"""`modelport --help` and `modelport get` start fast because they load only what they use: not
numpy, onnxruntime, pydantic, aiohttp, nor the control plane's controllers; `modelport serve`
(every replica) loads no other command and nothing of the control plane. Checked by the modules
a real `modelport` process has loaded when it exits (deterministic, unlike a time limit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.controlplane.meta import kind_of
from modelport.spec import ALIASES

# Run the command as the `modelport` script does, then print the loaded modules as the last line.
_PROBE = """
import json, sys
from modelport.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="modelport")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""
HEAVY = (
    "numpy", "onnxruntime", "pydantic", "aiohttp", "uvicorn", "PIL", "sklearn",
    "modelport.spec", "modelport.server", "modelport.gateway", "modelport.dataplane",
    "modelport.controlplane.main", "modelport.controlplane.api", "modelport.controlplane.apiserver",
    "modelport.controlplane.autoscaler",
    "modelport.controlplane.deployments", "modelport.controlplane.kubelet",
    "modelport.controlplane.services", "modelport.controlplane.metrics",
)  # fmt: skip


def _loaded(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True, timeout=60
    )
    modules = done.stderr.splitlines()[-1]
    return done, json.loads(modules)


@pytest.mark.parametrize("args", [("--help",), ("get", "pods"), ("get", "deploy", "-o", "wide")])
def test_the_everyday_commands_load_no_heavy_module(tmp_path: Path, args: tuple[str, ...]) -> None:
    done, modules = _loaded(tmp_path, *args)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == []
    if args == ("--help",):
        assert "Train, publish, serve, roll out and autoscale ML models." in done.stdout
    else:  # no control plane in this home: the command got as far as asking for one
        assert "Error from server (Unavailable): the control plane is not running" in done.stderr


def test_the_control_plane_knows_every_name_spec_accepts_for_a_kind() -> None:
    # meta writes the short names out (importing spec would load pydantic); they must not drift.
    assert {word: kind_of(word) for word in ALIASES} == ALIASES


# `modelport serve` as a replica runs it, stopped where the server would start: its modules then.
_SERVE_PROBE = """
import json, sys
import modelport.server.main

def started(config):
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)

modelport.server.main.serve = started
from modelport.cli import cli
cli.main(sys.argv[1:], prog_name="modelport")
"""
NOT_FOR_SERVE = (
    "modelport.controlplane", "modelport.dataplane", "modelport.gateway", "modelport.pipeline",
    "modelport.kube", "modelport.monitor", "modelport.charts", "sklearn", "torch", "matplotlib",
)  # fmt: skip


def test_modelport_serve_loads_no_other_command_nor_the_control_plane(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    argv = [sys.executable, "-c", _SERVE_PROBE, "serve", "--model_name", "m", "--model_base_path", str(model)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ})
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stderr.splitlines()[-1])
    assert "modelport.server.main" in modules and "modelport.cli.serve" in modules
    commands = sorted(m for m in modules if m.startswith("modelport.cli."))
    assert commands == ["modelport.cli.serve"]
    assert sorted(m for m in modules if m.split(".")[0] in NOT_FOR_SERVE or m.startswith(NOT_FOR_SERVE)) == []
