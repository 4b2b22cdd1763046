"""`modelport pipeline run` without a control plane (train → evaluate → gate → publish), as a
user runs it: unchanged inputs skip their stages, new data retrains, --only runs one stage,
a failed gate stops the run with its numbers, and every run is in the history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelport.delivery.runs import RunStore
from modelport.examples.mnist_data import load_mnist_5k

PIPELINE = {
    "apiVersion": "modelport/v1", "kind": "Pipeline", "metadata": {"name": "digits"},
    "spec": {"model": "digits", "stages": [
        {"name": "train", "train": {"data": "npz:digits.npz", "epochs": 2, "hidden": 32}},
        {"name": "evaluate", "evaluate": {}, "inputs": ["train.model"]},
        {"name": "gate", "gate": {"metrics": {"accuracy": ">= 0.3"}}, "inputs": ["evaluate.evaluation"]},
        {"name": "publish", "publish": {"labels": ["staging"]},
         "inputs": ["train.model", "evaluate.evaluation", "gate.verdict"]},
    ]},
}  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    images, labels = load_mnist_5k()
    np.savez(tmp_path / "digits.npz", images=images[::5], labels=labels[::5])
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(PIPELINE))
    return tmp_path


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOME": str(workdir / "home")}
    env.pop("CI", None)
    return subprocess.run([sys.executable, "-m", "modelport", "pipeline", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _latest(workdir: Path) -> dict[str, Any]:
    return RunStore.open(workdir / "home").runs(limit=1)[0].to_json()


def _statuses(run: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in run["stages"]}


def test_runs_skip_what_did_not_change_and_stop_at_a_failed_gate(workdir: Path) -> None:
    first = _cli(workdir, "run", "-f", "pipeline.yaml")
    assert first.returncode == 0, first.stderr
    assert "[publish] succeeded" in first.stdout and "digits version 1 (staging)" in first.stdout

    again = _cli(workdir, "run", "-f", "pipeline.yaml")
    assert again.returncode == 0, again.stderr
    latest = _latest(workdir)  # in-process: the history as `pipeline runs -o json` prints it
    assert _statuses(latest) == {"train": "skipped", "evaluate": "skipped", "gate": "succeeded",
                                 "publish": "skipped"}  # fmt: skip
    assert latest["stages"][0]["message"] == "inputs unchanged: outputs of an earlier run reused"

    only = _cli(workdir, "run", "-f", "pipeline.yaml", "--only", "evaluate")
    assert only.returncode == 0, only.stderr
    latest = _latest(workdir)
    assert _statuses(latest) == {"train": "skipped", "evaluate": "succeeded", "gate": "skipped",
                                 "publish": "skipped"}  # fmt: skip

    images, labels = load_mnist_5k()  # new data: a bigger sample; the gate now asks too much
    np.savez(workdir / "digits.npz", images=images[::4], labels=labels[::4])
    doc = json.loads(json.dumps(PIPELINE))
    doc["spec"]["stages"][2]["gate"]["metrics"] = {"accuracy": ">= 0.99"}
    (workdir / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    refused = _cli(workdir, "run", "-f", "pipeline.yaml")
    assert refused.returncode == 1
    assert "stage gate failed: refused by the gate: accuracy = 0." in refused.stderr
    assert ", the gate wants >= 0.99" in refused.stderr

    runs = json.loads(_cli(workdir, "runs", "-o", "json").stdout)
    assert [r["status"] for r in runs] == ["failed", "succeeded", "succeeded", "succeeded"]
    assert _statuses(runs[0]) == {"train": "succeeded", "evaluate": "succeeded", "gate": "failed",
                                  "publish": "not run"}  # fmt: skip
    assert runs[0]["data_sha256"] != runs[1]["data_sha256"] and runs[0]["trigger"] == "manual"
    shown = json.loads(_cli(workdir, "show", str(runs[0]["id"]), "-o", "json").stdout)
    model = shown["artifacts"]["train.model"]
    assert Path(model["path"], "model.onnx").exists() and len(model["sha256"]) == 64
    assert shown["seconds"] > 0 and shown["stages"][2]["message"].startswith("refused by the gate")
    missing = _cli(workdir, "show", "99")
    assert missing.returncode == 1 and "pipeline run 99 not found" in missing.stderr
