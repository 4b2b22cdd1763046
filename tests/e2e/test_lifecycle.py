"""The documented lifecycle, run as a user runs it: examples/mnist/lifecycle.sh trains, evaluates,
publishes with a gate and labels production; a server follows registry://mnist@production, and
moving the label to a continued-training version moves what it serves."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.examples import write_mnist_repository
from support import running

ROOT = Path(__file__).parents[2]
CLI = str(Path(sys.executable).parent / "modelport")


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_train_evaluate_publish_label_serve(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MODELPORT": CLI,
        "MODELPORT_HOME": str(tmp_path / "home"),
        "WORK": str(tmp_path / "work"),
        # 20 epochs instead of mlp.yaml's 30: two thirds of the training time. The model (seeded)
        # reaches 0.936 held-out accuracy, still over the script's gate of 0.93 (10 epochs: 0.928,
        # refused), so the gate is passed on merit, as below.
        "EPOCHS": "20",
    }
    out = _run(env, "bash", str(ROOT / "examples/mnist/lifecycle.sh"))
    assert "published mnist version 1" in out and "production -> 1" in out
    evaluation = json.loads((tmp_path / "work" / "evaluation" / "evaluation.json").read_text())
    assert evaluation["metrics"]["accuracy"] >= 0.93
    report = tmp_path / "work" / "evaluation" / "report.html"
    assert report.exists() and report.read_text().count("<svg") == 3
    samples = write_mnist_repository(tmp_path / "samples").parent / "samples"
    server_env = ["--model_name", "mnist", "--model_base_path", "registry://mnist@production",
                  "--file_system_poll_wait_seconds", "0.2"]  # fmt: skip
    os.environ["MODELPORT_HOME"] = env["MODELPORT_HOME"]  # the server process inherits it
    try:
        with running(server_env, tmp_path) as server:
            server.wait_ready()
            right = 0
            for digit in range(10):
                png = (samples / f"digit-{digit}.png").read_bytes()
                body = {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}
                right += (
                    server.post("/v1/models/mnist:predict", body).json()["predictions"][0]["classes"] == digit
                )
            assert right >= 9
            # Continued training from version 1, evaluated, published as version 2, labelled production.
            w = tmp_path / "work"
            _run(env, CLI, "train", "--epochs", "3", "--from", str(w / "candidate"), "--parent-version", "1",
                 "--out", str(w / "v2"))  # fmt: skip
            _run(env, CLI, "evaluate", str(w / "v2"), "--out", str(w / "v2-eval"))
            _run(env, CLI, "registry", "publish", "mnist", str(w / "v2"), "--metrics",
                 str(w / "v2-eval" / "evaluation.json"), "--gate", "accuracy>=0.9")  # fmt: skip
            _run(env, CLI, "registry", "label", "mnist", "production", "2")
            server.wait_until(lambda: server.versions("mnist") == {2: "AVAILABLE"} or
                              set(server.versions("mnist")) == {2}, what="version 2 served")  # fmt: skip
            listed = json.loads(_run(env, CLI, "registry", "list", "-o", "json"))
            assert [(r["version"], r["labels"], r["parent"], r["served"]) for r in listed] == [
                (1, [], None, False),
                (2, ["production"], 1, True),
            ]
            assert all(r["metrics"]["accuracy"] > 0.9 for r in listed)
            # evaluate's reference profile went with version 2 through publish: the server measures
            # drift against it and knows the published accuracy.
            (quality,) = server.get("/v1/models/mnist/quality").json()["versions"]
            assert quality["published_accuracy"] == pytest.approx(listed[1]["metrics"]["accuracy"])
            assert quality["drift"]["thresholds"]["input"] >= 0.2
    finally:
        os.environ.pop("MODELPORT_HOME", None)
