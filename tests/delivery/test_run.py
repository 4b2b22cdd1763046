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
from support import poll

PIPELINE = {
    "apiVersion": "modelport/v1", "kind": "Pipeline", "metadata": {"name": "digits"},
    "spec": {"model": "digits", "stages": [
        # listed out of order: the order of the run comes from the inputs
        {"name": "publish", "publish": {"labels": ["staging"]},
         "inputs": ["train.model", "evaluate.evaluation", "gate.verdict"]},
        {"name": "train", "train": {"data": "npz:digits.npz", "epochs": 2, "hidden": 32}},
        {"name": "evaluate", "evaluate": {}, "inputs": ["train.model"]},
        {"name": "gate", "gate": {"metrics": {"accuracy": ">= 0.3"}}, "inputs": ["evaluate.evaluation"]},
        {"name": "image", "build": {}, "inputs": ["publish.version"]},  # the context, no builder
        {"name": "promote", "promote": {}, "inputs": ["publish.version"]},
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
    for name in ("CI", "GITHUB_SHA", "CI_COMMIT_SHA"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "modelport", "pipeline", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _latest(workdir: Path) -> dict[str, Any]:
    return RunStore.open(workdir / "home").runs(limit=1)[0].to_json()


def _stage(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A stage of a pipeline document or of a run record, by name."""
    stages = doc["spec"]["stages"] if "spec" in doc else doc["stages"]
    found: dict[str, Any] = next(s for s in stages if s["name"] == name)
    return found


def _statuses(run: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in run["stages"]}


def test_runs_skip_what_did_not_change_and_stop_at_a_failed_gate(workdir: Path) -> None:
    git = ["git", "-C", str(workdir), "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "pipeline.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "the pipeline"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout

    first = _cli(workdir, "run", "-f", "pipeline.yaml")
    assert first.returncode == 0, first.stderr
    assert _latest(workdir)["commit"] == head.strip()  # the commit the pipeline file is at
    assert "[publish] succeeded" in first.stdout and "digits version 1 (staging)" in first.stdout
    stages = {s["name"]: s for s in _latest(workdir)["stages"]}
    image, promote = stages["image"], stages["promote"]  # independent of each other: at once
    assert image["started"] < promote["started"] + promote["seconds"]
    assert promote["started"] < image["started"] + image["seconds"]
    context = Path(image["outputs"]["image"]["path"])
    assert (context / "Dockerfile").exists() and (context / "models" / "digits" / "1").is_dir()

    again = _cli(workdir, "run", "-f", "pipeline.yaml")
    assert again.returncode == 0, again.stderr
    latest = _latest(workdir)  # in-process: the history as `pipeline runs -o json` prints it
    assert _statuses(latest) == {"train": "skipped", "evaluate": "skipped", "gate": "succeeded",
                                 "publish": "skipped", "image": "skipped",
                                 "promote": "succeeded"}  # fmt: skip
    assert _stage(latest, "train")["message"] == "inputs unchanged: outputs of an earlier run reused"

    only = _cli(workdir, "run", "-f", "pipeline.yaml", "--only", "evaluate")
    assert only.returncode == 0, only.stderr
    latest = _latest(workdir)
    assert _statuses(latest) == {"train": "skipped", "evaluate": "succeeded", "gate": "skipped",
                                 "publish": "skipped", "image": "skipped", "promote": "skipped"}  # fmt: skip

    images, labels = load_mnist_5k()  # new data: a bigger sample; the gate now asks too much
    np.savez(workdir / "digits.npz", images=images[::4], labels=labels[::4])
    doc = json.loads(json.dumps(PIPELINE))
    _stage(doc, "gate")["gate"]["metrics"] = {"accuracy": ">= 0.99"}
    (workdir / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    refused = _cli(workdir, "run", "-f", "pipeline.yaml")
    assert refused.returncode == 1
    assert "stage gate failed: refused by the gate: accuracy = 0." in refused.stderr
    assert ", the gate wants >= 0.99" in refused.stderr

    runs = json.loads(_cli(workdir, "runs", "-o", "json").stdout)
    assert [r["status"] for r in runs] == ["failed", "succeeded", "succeeded", "succeeded"]
    assert _statuses(runs[0]) == {"train": "succeeded", "evaluate": "succeeded", "gate": "failed",
                                  "publish": "not run", "image": "not run", "promote": "not run"}  # fmt: skip
    assert runs[0]["data_sha256"] != runs[1]["data_sha256"] and runs[0]["trigger"] == "manual"
    shown = json.loads(_cli(workdir, "show", str(runs[0]["id"]), "-o", "json").stdout)
    model = shown["artifacts"]["train.model"]
    assert Path(model["path"], "model.onnx").exists() and len(model["sha256"]) == 64
    assert shown["seconds"] > 0 and _stage(shown, "gate")["message"].startswith("refused by the gate")
    missing = _cli(workdir, "show", "99")
    assert missing.returncode == 1 and "pipeline run 99 not found" in missing.stderr


def test_watch_runs_once_new_data_is_whole(workdir: Path) -> None:
    """A data set whose _COMPLETE mark lists more than has arrived waits, saying why; once whole,
    a run starts, triggered by the watch."""
    doc = json.loads(json.dumps(PIPELINE))
    doc["spec"]["stages"] = [_stage(doc, "train"), _stage(doc, "evaluate")]
    _stage(doc, "train")["train"]["data"] = "npz:incoming/digits.npz"
    (workdir / "watched.yaml").write_text(yaml.safe_dump(doc))
    incoming = workdir / "incoming"
    incoming.mkdir()
    data = (workdir / "digits.npz").read_bytes()
    (incoming / "digits.npz").write_bytes(data[: len(data) // 2])  # half-copied
    (incoming / "_COMPLETE").write_text(json.dumps({"files": {"digits.npz": {"size": len(data)}}}))
    env = {**os.environ, "MODELPORT_HOME": str(workdir / "home")}
    log = workdir / "watch.log"
    with open(log, "wb") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "modelport", "pipeline", "run", "-f", "watched.yaml",
             "--watch", "incoming", "--settle-seconds", "0.5"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            said = f"not yet: digits.npz is {len(data) // 2} bytes, _COMPLETE says {len(data)}"
            assert poll(lambda: said in log.read_text(), 60, 0.1) is None, log.read_text()
            assert (
                not (workdir / "home" / "pipelines.db").exists()
                or RunStore.open(workdir / "home").runs() == []
            )
            (incoming / "digits.npz").write_bytes(data)  # the rest arrives
            found = poll(
                lambda: [r.status for r in RunStore.open(workdir / "home").runs()] == ["succeeded"], 120, 0.2
            )
            assert found is None, log.read_text()
        finally:
            watcher.terminate()
            watcher.wait(10)
    [run] = RunStore.open(workdir / "home").runs()
    assert run.trigger == "watch:incoming" and run.data_sha256 is not None
