"""CI templates: `modelport pipeline ci --github | --gitlab`. Each installs modelport, runs the
pipeline on every push to the default branch (and by hand), and keeps the evaluation report
(evaluation.json and report.html) as the job's artifact, even when a gate stopped the run.

The registry and the run history live in MODELPORT_HOME: on a hosted runner that is a fresh
folder per job; point it at lasting storage (a self-hosted runner's disk) so that "no worse
than production" compares with the real production version and unchanged stages are skipped.
"""

from __future__ import annotations

PYTHON = "3.11"
INSTALL = 'pip install "modelport[train]"'


RELEASES = (
    "# Its release stages talk to the control plane of MODELPORT_HOME: run it where that lives\n"
    "# (runs-on: self-hosted), or add a step that starts one (modelport up --detach).\n"
)


def github_workflow(pipeline_file: str, reports: list[str], releases: bool = False) -> str:
    paths = "\n".join(f"            {p}" for p in reports)
    return f"""# Written by `modelport pipeline ci --github`: runs {pipeline_file} on every push to main.
{RELEASES if releases else ""}name: model pipeline

on:
  push:
    branches: [main]
  workflow_dispatch:

concurrency:
  group: model-pipeline-${{{{ github.ref }}}}
  cancel-in-progress: false

jobs:
  pipeline:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    env:
      MODELPORT_HOME: ${{{{ github.workspace }}}}/.modelport-home
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "{PYTHON}"
          cache: pip
      - name: Install modelport
        run: {INSTALL}
      - name: Run the pipeline
        run: modelport pipeline run -f {pipeline_file} --trigger "ci:${{{{ github.event_name }}}}"
      - name: Record the run
        if: always()
        run: modelport pipeline runs --limit 1 -o json > pipeline-run.json
      - name: Upload the evaluation report
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: evaluation-report
          path: |
            pipeline-run.json
{paths}
          if-no-files-found: warn
"""


def gitlab_ci(pipeline_file: str, reports: list[str], releases: bool = False) -> str:
    paths = "\n".join(f"      - {p}" for p in reports)
    return f"""# Written by `modelport pipeline ci --gitlab`: runs {pipeline_file} on the default branch.
{RELEASES.replace("runs-on: self-hosted", "a runner tagged for it") if releases else ""}stages:
  - pipeline

model-pipeline:
  stage: pipeline
  image: python:{PYTHON}-slim
  variables:
    MODELPORT_HOME: "$CI_PROJECT_DIR/.modelport-home"
    PIP_CACHE_DIR: "$CI_PROJECT_DIR/.cache/pip"
  cache:
    paths:
      - .cache/pip
  rules:
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
    - if: $CI_PIPELINE_SOURCE == "web"
  script:
    - {INSTALL}
    - modelport pipeline run -f {pipeline_file} --trigger "ci:$CI_PIPELINE_SOURCE"
  after_script:
    - modelport pipeline runs --limit 1 -o json > pipeline-run.json || true
  artifacts:
    when: always
    name: evaluation-report
    paths:
      - pipeline-run.json
{paths}
"""
