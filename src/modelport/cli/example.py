"""`modelport example mnist DIR`: a model to serve in one line, as half_plus_two is to TF Serving."""

from __future__ import annotations

from pathlib import Path

import click

from modelport.errors import ModelportError


@click.group()
def example() -> None:
    """Write a ready-to-serve example model repository."""


@example.command("mnist")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--version",
    "version",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Version folder to write.",
)
def mnist(directory: Path, version: int) -> None:
    """Write the MNIST digit classifier into DIRECTORY/<version>/ (and samples into DIRECTORY/samples/)."""
    from modelport.examples import write_mnist_repository

    try:
        written = write_mnist_repository(directory, version)
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    base = directory.resolve()
    click.echo(f"wrote {written}")
    click.echo("serve it with:")
    click.echo(f"  modelport serve --rest_api_port=8501 --model_name=mnist --model_base_path={base}")
    click.echo("then ask it about a digit:")
    click.echo(
        f"  curl -s -H 'content-type: application/json' -d @{base}/samples/request.json "
        "http://localhost:8501/v1/models/mnist:predict"
    )
