"""Running the image build with whichever builder is installed: Docker, Podman or Buildah."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from modelport.errors import Code, ModelportError

BUILDERS = ("docker", "podman", "buildah")


def find_builder(name: str | None) -> str:
    """The builder's executable: the one named, or the first of BUILDERS installed."""
    for candidate in [name] if name else BUILDERS:
        found = shutil.which(candidate)
        if found:
            return found
    wanted = name or " or ".join(BUILDERS)
    raise ModelportError(
        Code.FAILED_PRECONDITION,
        f"no {wanted} found on PATH: install one, or write the Dockerfile and context only "
        "(--dockerfile-only -o DIR) and build them elsewhere",
    )


def build_command(executable: str, tag: str, context: Path, network: str | None = None) -> list[str]:
    """Pure: the command line. Podman and Buildah write the Docker image format, which keeps the
    HEALTHCHECK (the OCI format has no place for it)."""
    kind = Path(executable).name
    net = ["--network", network] if network else []
    if kind == "buildah":
        # --layers: keep each step's layer as a cache, as Docker and Podman do by default
        return [executable, "bud", "--format", "docker", "--layers", *net, "-t", tag, str(context)]
    if kind == "podman":
        return [executable, "build", "--format", "docker", *net, "-t", tag, str(context)]
    return [executable, "build", *net, "-t", tag, str(context)]


def run_build(command: list[str]) -> None:
    """Run it, its output on ours; a failure says the builder's exit code."""
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"{Path(command[0]).name} build failed (exit {done.returncode}); its output is above",
        )
