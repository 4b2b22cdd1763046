"""`modelport build`: an OCI image of a model server (the model baked in, or --no-model), built
with Docker, Podman or Buildah, or only its Dockerfile and context written."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from modelport.errors import ModelportError


@click.command()
@click.argument("source", required=False)
@click.option("--tag", "-t", help="The image name and tag, e.g. registry.example.com/team/mnist:1.")
@click.option("--builder", type=click.Choice(["docker", "podman", "buildah"]),
              help="Default: the first of docker, podman, buildah installed.")  # fmt: skip
@click.option(
    "--dockerfile-only", is_flag=True, help="Write the Dockerfile and context (-o DIR), build nothing."
)
@click.option("--output", "-o", "out", type=click.Path(path_type=Path, file_okay=False),
              help="Where to write the context (a new or empty folder); kept after the build.")  # fmt: skip
@click.option("--base-image", default="python:3.11-slim", show_default=True,
              help="Any image with Python 3.11+ (python3 -m venv) and useradd.")  # fmt: skip
@click.option("--no-model", is_flag=True,
              help="Copy no model: the image serves what is mounted at /models/MODEL/VERSION/.")  # fmt: skip
@click.option("--model-name", help="The model's name in the image (default: the registry's or the folder's).")
@click.option(
    "--offline", is_flag=True,
    help="Put the wheels of every dependency, from this environment, into the context: the build "
    "needs no package index (the base image's Python must match this one's version).",
)  # fmt: skip
@click.option("--wheels", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A folder of wheels (pip download -d DIR) to install from, no package index.")  # fmt: skip
@click.option("--network", help="The builder's --network for RUN steps (e.g. none).")
@click.option("--source-commit", help="The org.opencontainers.image.revision label (default: the model's).")
def build(
    source: str | None, tag: str | None, builder: str | None, dockerfile_only: bool, out: Path | None,
    base_image: str, no_model: bool, model_name: str | None, offline: bool, wheels: Path | None,
    network: str | None, source_commit: str | None,
) -> None:  # fmt: skip
    """Build an image that serves SOURCE: registry://NAME@LABEL (or @VERSION), a model folder, or a
    model config file with several models.

    \b
    modelport build registry://mnist@production -t registry.example.com/team/mnist:1
    modelport build models/mnist --dockerfile-only -o build/mnist-image/
    modelport build --no-model -t registry.example.com/team/modelport:0.1.0
    """
    # The builder, the registry and the wheels: only when building (`modelport --help` stays fast).
    from modelport.kube.builder import build_command, find_builder, run_build
    from modelport.kube.context import BuildOptions, resolve_source, write_context

    if source is None and not no_model:
        raise click.UsageError(
            "give a SOURCE (registry://NAME@LABEL, a model folder or a config), or --no-model"
        )
    if dockerfile_only and out is None:
        raise click.UsageError("--dockerfile-only writes the context to -o DIR: give it")
    if not dockerfile_only and not tag:
        raise click.UsageError("give the image's name with -t (or --dockerfile-only -o DIR)")
    options = BuildOptions(base_image, not no_model, offline, wheels, source_commit)
    mismatch = _python_mismatch(base_image) if offline else None
    if mismatch:
        click.echo(f"warning: {mismatch}", err=True)
    try:
        executable = None if dockerfile_only else find_builder(builder)
        models = resolve_source(source, model_name) if source else ()
        with tempfile.TemporaryDirectory(prefix="modelport-build-") as scratch:
            context = out if out is not None else Path(scratch) / "context"
            spec = write_context(models, options, context)
            held = ", ".join(f"{m.name} {' '.join(map(str, m.versions))}".strip() for m in spec.models)
            click.echo(
                f"context {context}/: {held or 'no model'}; modelport {spec.modelport_version}", err=True
            )
            if executable is None:
                click.echo(f"wrote {context}/Dockerfile; build it with: docker build -t IMAGE {context}")
                return
            assert tag is not None
            run_build(build_command(executable, tag, context, network))
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"built {tag}")


def _python_mismatch(base_image: str) -> str | None:
    """--offline packs this interpreter's wheels: an official python:X.Y image of another
    version cannot install them (pip would say only "no matching distribution")."""
    import re
    import sys

    match = re.match(r"(?:.*/)?python:(\d+)\.(\d+)", base_image)
    here = sys.version_info[:2]
    if match is None or (int(match[1]), int(match[2])) == here:
        return None
    return (
        f"--offline packs the wheels of this Python ({here[0]}.{here[1]}), but {base_image} has "
        f"Python {match[1]}.{match[2]}: its build will not find wheels it can install; use "
        f"--base-image python:{here[0]}.{here[1]}-slim, or build without --offline"
    )
