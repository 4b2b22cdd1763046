"""`modelport train`: flags or a train.yaml, a progress bar, a servable version folder."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from modelport.errors import ModelportError


@click.command()
@click.option("-f", "--file", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="train.yaml; flags given too win over it.")  # fmt: skip
@click.option("--data", help="mnist5k (default), idx:DIR, folder:DIR or npz:FILE.")
@click.option("--model", type=click.Choice(["mlp", "cnn"]), help="mlp (fast, scikit-learn) or cnn (PyTorch).")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--hidden", type=int, help="Units of the hidden dense layer.")
@click.option("--seed", type=int)
@click.option("--out", help="The version folder to write (default build/model).")
@click.option("--from", "from_", help="Continue training the model in this version folder (warm start).")
@click.option("--parent-version", type=int, help="The registry version --from is, for the lineage record.")
def train(
    config_file: Path | None,
    data: str | None,
    model: str | None,
    epochs: int | None,
    batch_size: int | None,
    hidden: int | None,
    seed: int | None,
    out: str | None,
    from_: str | None,
    parent_version: int | None,
) -> None:
    """Train a digit classifier and write it as a servable version folder (ONNX + model.yaml)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from modelport.pipeline.train import load_config
    from modelport.pipeline.train import train as run

    overrides = {"data": data, "model": model, "epochs": epochs, "batch_size": batch_size, "hidden": hidden,
                 "seed": seed, "out": out, "from": from_, "parent_version": parent_version}  # fmt: skip
    try:
        config = load_config(config_file, overrides)  # type: ignore[arg-type]
        columns = (TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
                   TextColumn("{task.fields[figures]}"), TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("train", total=config.epochs, figures="")

            def show(epoch: int, total: int, f: dict[str, float]) -> None:
                text = (f"loss {f['train_loss']:.3f}  val acc {f['val_accuracy']:.3f}  "
                        f"{f['images_per_second']:,.0f} img/s")  # fmt: skip
                bar.update(task, completed=epoch, figures=text)

            folder = run(config, show, sys.argv)
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"wrote {folder} (model.onnx, model.yaml, training.json)")
