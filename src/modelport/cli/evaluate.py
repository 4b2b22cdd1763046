"""`modelport evaluate FOLDER`: metrics, diagnosis, evaluation.json and report.html."""

from __future__ import annotations

from pathlib import Path

import click

from modelport.errors import ModelportError


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", help="The data set (default: the one training.json names).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write evaluation.json and report.html (default FOLDER-evaluation).")  # fmt: skip
def evaluate(folder: Path, data: str | None, out: Path | None) -> None:
    """Evaluate the ONNX model in FOLDER on the held-out test split."""
    from modelport.pipeline.evaluate import evaluate as run
    from modelport.pipeline.reference import describe

    try:
        report = run(folder, data, out)
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    where = out or folder.parent / f"{folder.name}-evaluation"
    m, d = report["metrics"], report["diagnosis"]
    click.echo(
        f"accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  ({report['data']['size']} test images)"
    )
    click.echo(f"diagnosis: {d['verdict']}: {d.get('reason', '')}")
    click.echo(f"model.onnx: {describe(report['export_check'])}")
    click.echo(f"report: {where / 'report.html'}  figures: {where / 'evaluation.json'}")
