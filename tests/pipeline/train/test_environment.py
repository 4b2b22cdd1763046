"""The training environment record says what a run ran on."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from modelport.pipeline.train.environment import record


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_record_of_a_run_in_a_git_project(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.yaml").write_text("epochs: 3\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout
    env = record(
        {"split": 0, "init": 42}, {"epochs": 3}, ["modelport", "train", "-f", "train.yaml"], tmp_path
    )
    assert env["git"]["commit"] == head.strip() and env["git"]["dirty"] is False
    assert env["command"] == "modelport train -f train.yaml"
    assert env["seeds"] == {"split": 0, "init": 42} and env["config"] == {"epochs": 3}
    assert env["cpu"]["count"] >= 1 and env["cpu"]["model"]
    assert env["memory_bytes"] > 0
    assert {"numpy", "onnxruntime"} <= set(env["packages"])
    assert env["os"]["system"] == platform.system() and env["os"]["release"] == platform.release()
    assert env["python"] == platform.python_version()
    assert "accelerator" in env  # recorded even when there is none (None), else "CUDA <device> (xN)"
    assert env["accelerator"] is None or env["accelerator"].startswith("CUDA ")
    (tmp_path / "train.yaml").write_text("epochs: 4\n")
    assert record({}, {}, [], tmp_path)["git"]["dirty"] is True


def test_record_outside_a_git_project(tmp_path: Path) -> None:
    assert record({}, {}, [], tmp_path)["git"] is None
