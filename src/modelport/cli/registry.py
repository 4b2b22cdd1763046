"""`modelport registry`: publish, list, show, label, deprecate, delete, policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from modelport.errors import ModelportError

F = TypeVar("F", bound=Callable[..., Any])


def _errors(command: F) -> F:
    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ModelportError as exc:
            raise click.ClickException(exc.message) from exc

    return run  # type: ignore[return-value]


def _open() -> Any:
    from modelport.registry import Registry

    return Registry.open()


@click.group()
def registry() -> None:
    """The model registry (under $MODELPORT_HOME, default ~/.modelport)."""


@registry.command()
@click.argument("name")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--metrics", "metrics_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Evaluation JSON (its `metrics`, `sha256` and reference profile are used), "
                   "or {name: value}.")  # fmt: skip
@click.option("--gate", "gates", multiple=True, help="A metric rule the version must pass: 'accuracy>=0.98'.")
@click.option("--parent", type=int, help="The version this one was trained from.")
@click.option("--allow-breaking", is_flag=True, help="Publish even if the signature changed.")
@click.option("--repository", type=click.Path(file_okay=False, path_type=Path),
              help="The model repository a server watches (first publish only).")  # fmt: skip
@click.option("--description", default="")
@click.option("--convert", "convert_to", type=click.Choice(["onnx"]),
              help="Convert a TensorFlow SavedModel (tf2onnx), serve the ONNX, keep the original; "
              "refused if the two answer --eval-data differently.")  # fmt: skip
@click.option("--signature", default="serving_default", show_default=True,
              help="With --convert: the SavedModel signature to convert.")  # fmt: skip
@click.option("--model-yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --convert: the ONNX model's model.yaml (how its images are decoded).")  # fmt: skip
@click.option("--eval-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --convert: a TF Serving request body both models must answer alike.")  # fmt: skip
@click.option("--atol", type=float, help="With --convert: absolute tolerance on float outputs [1e-4].")
@click.option("--rtol", type=float, help="With --convert: relative tolerance on float outputs [1e-3].")
@_errors
def publish(
    name: str,
    folder: Path,
    metrics_file: Path | None,
    gates: tuple[str, ...],
    parent: int | None,
    allow_breaking: bool,
    repository: Path | None,
    description: str,
    convert_to: str | None,
    signature: str,
    model_yaml: Path | None,
    eval_data: Path | None,
    atol: float | None,
    rtol: float | None,
) -> None:
    """Publish FOLDER (a model version: model file, model.yaml, ...) as the next version of NAME."""
    metrics: dict[str, float] = {}
    expected = None
    environment: dict[str, Any] = {}
    profile = None
    if metrics_file is not None:
        doc = json.loads(metrics_file.read_text())
        if "metrics" in doc:
            metrics, expected = doc["metrics"], doc.get("sha256")
            environment = doc.get("environment", {})
            profile = doc.get("reference_profile")
            parent = parent if parent is not None else doc.get("parent")
        else:
            metrics = doc
    parsed = {}
    for gate in gates:
        metric, sep, rule = gate.partition(">") if ">" in gate else gate.partition("<")
        if not sep:
            raise click.BadParameter(f"{gate!r}: write it like 'accuracy>=0.98'", param_hint="--gate")
        parsed[metric.strip()] = sep + rule
    common: dict[str, Any] = dict(
        metrics=metrics, environment=environment, parent=parent, gates=parsed,
        allow_breaking=allow_breaking, expected_sha256=expected,
        repository=repository.resolve() if repository else None, description=description,
        profile=profile,
    )  # fmt: skip
    if convert_to is None:
        record = _open().publish(name, folder, **common)
    else:
        record = _open().publish_converted(
            name, folder, to=convert_to, signature=signature, model_yaml=model_yaml,
            eval_data=eval_data, atol=atol, rtol=rtol, **common,
        )  # fmt: skip
        check = record.environment["conversion"]
        differences = ", ".join(
            f"{k} {v.get('max_abs_diff', v.get('values_different'))}" for k, v in check["outputs"].items()
        )
        click.echo(f"converted to ONNX and checked on {check['rows']} rows: {differences}")
    click.echo(f"published {name} version {record.version} (sha256 {record.sha256[:12]})")


@registry.command("list")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_errors
def list_(name: str | None, output: str) -> None:
    """Every version of every model (or of NAME), with metrics and labels."""
    reg = _open()
    models = [reg.model(name)] if name else reg.store.models()
    rows = []
    for model in models:
        served = reg.served(model.name)
        for v in reg.store.versions(model.name):
            rows.append({
                "model": model.name, "version": v.version, "state": v.state, "labels": list(v.labels),
                "served": v.version in served, "metrics": v.metrics, "parent": v.parent,
                "created": v.created, "publisher": v.publisher, "sha256": v.sha256,
            })  # fmt: skip
    if output == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "version", "state", "labels", "served", "metrics", "created")
    for r in rows:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items())
        table.add_row(r["model"], str(r["version"]), r["state"], ", ".join(r["labels"]),
                      "yes" if r["served"] else "", metrics, r["created"])  # fmt: skip
    Console().print(table)


@registry.command()
@click.argument("name")
@click.argument("version", type=int)
@_errors
def show(name: str, version: int) -> None:
    """Everything recorded about one version, as JSON."""
    click.echo(json.dumps(asdict(_open().version(name, version)), indent=1))


@registry.command()
@click.argument("name")
@click.argument("label")
@click.argument("version", type=int, required=False)
@click.option("--remove", is_flag=True, help="Take the label off.")
@_errors
def label(name: str, label: str, version: int | None, remove: bool) -> None:
    """Point LABEL (production, staging, ...) of NAME at VERSION."""
    if version is None and not remove:
        raise click.UsageError("give the VERSION the label points at, or --remove")
    _open().label(name, label, None if remove else version)
    click.echo(f"{name}: {label} -> {'(none)' if remove else version}")


@registry.command()
@click.argument("name")
@click.argument("version", type=int)
@_errors
def deprecate(name: str, version: int) -> None:
    """Mark VERSION deprecated: it no longer counts as the latest."""
    _open().deprecate(name, version)
    click.echo(f"{name} version {version} deprecated")


@registry.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--force", is_flag=True, help="Delete even a served or labelled version.")
@_errors
def delete(name: str, version: int, force: bool) -> None:
    """Delete VERSION (refused while it is served or labelled, unless --force)."""
    _open().delete(name, version, force)
    click.echo(f"{name} version {version} deleted")


@registry.command()
@click.argument("name")
@click.argument("follow", metavar="latest|label:NAME|pin:VERSION")
@_errors
def policy(name: str, follow: str) -> None:
    """Which versions NAME's serving repository holds."""
    kind, _, value = follow.partition(":")
    if kind == "latest" and not value:
        chosen: dict[str, Any] = {"follow": "latest"}
    elif kind == "label" and value:
        chosen = {"follow": "label", "label": value}
    elif kind == "pin" and value.isascii() and value.isdigit():  # not "²", which int() refuses
        chosen = {"pin": int(value)}
    else:
        raise click.BadParameter(f"{follow!r}: give latest, label:<name> or pin:<version>")
    reg = _open()
    reg.set_policy(name, chosen)
    held = sorted(reg.served(name))
    click.echo(f"{name}: serving {follow}; repository {reg.model(name).repository} holds {held}")
