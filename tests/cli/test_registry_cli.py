"""`modelport registry` as a user types it: publish with a gate, label, list as JSON, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelport.examples import write_mnist_repository


def _modelport(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_publish_label_list_and_refusals(tmp_path: Path) -> None:
    folder = write_mnist_repository(tmp_path / "example")
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.96, "macro_f1": 0.959}))
    home = tmp_path / "home"
    metrics = str(tmp_path / "metrics.json")
    ok = _modelport(
        home, "registry", "publish", "mnist", str(folder), "--metrics", metrics, "--gate", "accuracy>=0.95"
    )
    assert ok.returncode == 0, ok.stderr
    assert "published mnist version 1" in ok.stdout
    refused = _modelport(home, "registry", "publish", "mnist", str(folder), "--metrics",
                         str(tmp_path / "metrics.json"), "--gate", "accuracy>=0.99")  # fmt: skip
    assert refused.returncode == 1
    assert "refused by the gate: accuracy = 0.96, the gate wants >= 0.99" in refused.stderr
    assert _modelport(home, "registry", "label", "mnist", "production", "1").returncode == 0
    listed = json.loads(_modelport(home, "registry", "list", "-o", "json").stdout)
    assert [(r["version"], r["labels"], r["metrics"]["accuracy"], r["served"]) for r in listed] == [
        (1, ["production"], 0.96, True)
    ]
    kept = _modelport(home, "registry", "delete", "mnist", "1")
    assert kept.returncode == 1 and "it is being served" in kept.stderr
    missing = _modelport(home, "registry", "show", "mnist", "7")
    assert missing.returncode == 1 and "model 'mnist' has no version 7" in missing.stderr
    for follow in ("newest", "pin:²"):  # "²" passed str.isdigit(), then int() raised a traceback
        bad = _modelport(home, "registry", "policy", "mnist", follow)
        assert bad.returncode == 2 and "give latest, label:<name> or pin:<version>" in bad.stderr
