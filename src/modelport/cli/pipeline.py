"""`modelport pipeline run|runs|show|ci`: one declarative pipeline from new data to production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from modelport.errors import ModelportError

_FILE = click.option("-f", "--file", "file", required=True, help="pipeline.yaml (kind: Pipeline).",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
_OUTPUT = click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
_STYLE = {"succeeded": "green", "failed": "red", "running": "cyan", "skipped": "dim", "not run": "dim",
          "pending": "dim", "interrupted": "yellow"}  # fmt: skip


def _home() -> Path:
    from modelport.registry.registry import home

    return home()


@click.group()
def pipeline() -> None:
    """Train, evaluate, gate, publish, build, release and promote, as pipeline.yaml declares."""


@pipeline.command()
@_FILE
@click.option("--from", "start_from", metavar="STAGE", help="Run STAGE and what follows; reuse the rest.")
@click.option("--only", metavar="STAGE", help="Run STAGE alone, its inputs from earlier runs.")
@click.option("--watch", type=click.Path(file_okay=False, path_type=Path),
              help="Run each time new, complete data lands in DIR; until stopped.")  # fmt: skip
@click.option("--settle-seconds", type=float, default=2.0, show_default=True,
              help="--watch: a folder with no _COMPLETE mark counts once unchanged this long.")  # fmt: skip
@click.option("--trigger", help="What started the run, for the history (default: manual, or ci under CI).")
def run(file: Path, start_from: str | None, only: str | None, watch: Path | None, settle_seconds: float,
        trigger: str | None) -> None:  # fmt: skip
    """Run the pipeline in FILE: every stage whose inputs changed, in the order their inputs give."""
    from modelport.delivery.definition import load_pipeline
    from modelport.delivery.runner import RunOptions

    if start_from and only:
        raise click.UsageError("give --from or --only, not both")
    try:
        definition = load_pipeline(file)
        options = RunOptions(start_from, only, trigger or ("ci" if os.environ.get("CI") else "manual"),
                             _commit(file.resolve().parent))  # fmt: skip
        if watch is not None:
            _watch(definition, options, watch, settle_seconds)
            return
        record = _run(definition, options)
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    sys.exit(0 if record.status == "succeeded" else 1)


def _run(definition: Any, options: Any) -> Any:
    """One run with live progress: a table per stage on a terminal, a line per change elsewhere (CI logs)."""
    from rich.console import Console
    from rich.live import Live

    from modelport.delivery.runner import Run

    console = Console(stderr=True)
    if console.is_terminal:
        with Live(console=console, refresh_per_second=8, transient=False) as live:

            def show(record: Any, stage: Any, line: str) -> None:
                live.update(_table(record))

            run = Run(definition, _store(), options, show)
            live.update(_table(run.record))
            record = run.execute()
            live.update(_table(record))
    else:

        def echo(record: Any, stage: Any, line: str) -> None:
            took = f" ({stage.seconds:.1f} s)" if stage.seconds is not None else ""
            text = line or stage.message
            click.echo(
                f"[{stage.name}] {(line and 'running') or stage.status}{took}{': ' + text if text else ''}"
            )

        run = Run(definition, _store(), options, echo)
        click.echo(f"pipeline {definition.name}: run {run.record.id}")
        record = run.execute()
    _summary(record)
    return record


def _summary(record: Any) -> None:
    click.echo(f"run {record.id} {record.status} in {record.seconds:.1f} s")
    for stage in record.stages:
        if stage.status == "failed":
            click.echo(f"stage {stage.name} failed: {stage.message}", err=True)


def _table(record: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"pipeline {record.pipeline} · run {record.id}", title_justify="left")
    for column in ("stage", "kind", "status", "seconds", "progress"):
        table.add_column(column)
    for s in record.stages:
        style = _STYLE.get(s.status, "")
        seconds = f"{s.seconds:.1f}" if s.seconds is not None else ""
        table.add_row(s.name, s.kind, f"[{style}]{s.status}[/]", seconds, s.message[:100])
    return table


def _store() -> Any:
    from modelport.delivery.runs import RunStore

    return RunStore.open(_home())


def _commit(where: Path) -> str | None:
    """The commit the pipeline file is at: git's answer, or the CI system's variable."""
    for name in ("GITHUB_SHA", "CI_COMMIT_SHA"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        done = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _watch(definition: Any, options: Any, folder: Path, settle_seconds: float) -> None:
    from dataclasses import replace

    from modelport.delivery.watch import DataWatch

    watcher = DataWatch(folder, settle_seconds)
    click.echo(
        f"watching {folder} for new data (complete: a _COMPLETE mark, or unchanged {settle_seconds:g} s)"
    )

    def waiting(why: str) -> None:
        click.echo(f"not yet: {why}")

    try:
        for checksum in watcher.landings(waiting=waiting):
            click.echo(f"new data in {folder} (sha256 {checksum[:12]}): running pipeline {definition.name}")
            try:
                _run(definition, replace(options, trigger=f"watch:{folder}"))
            except ModelportError as exc:
                click.echo(f"error: {exc.message}", err=True)
    except KeyboardInterrupt:
        click.echo(f"stopped watching {folder}")


@pipeline.command()
@click.argument("name", required=False)
@_OUTPUT
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def runs(name: str | None, output: str, limit: int) -> None:
    """The history of runs (of pipeline NAME), newest first."""
    records = _store().runs(name, limit)
    if output == "json":
        click.echo(json.dumps([r.to_json() for r in records], indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "pipeline", "trigger", "commit", "data", "status", "seconds", "stages", "artifacts",
                  "started")  # fmt: skip
    for r in records:
        stages = " ".join(f"{s.name}:{s.status}" for s in r.stages)
        style = _STYLE.get(r.status, "")
        seconds = f"{r.seconds:.1f}" if r.seconds is not None else ""
        artifacts = str(len(r.artifacts()))
        table.add_row(str(r.id), r.pipeline, r.trigger, (r.commit or "")[:10], (r.data_sha256 or "")[:12],
                      f"[{style}]{r.status}[/]", seconds, stages, artifacts, r.started)  # fmt: skip
    Console(width=200).print(table)


@pipeline.command()
@click.argument("run_id", metavar="RUN", type=int)
@_OUTPUT
def show(run_id: int, output: str) -> None:
    """One run: each stage's result, time, inputs checksum and artifacts."""
    try:
        record = _store().run(run_id)
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    if output == "json":
        click.echo(json.dumps(record.to_json(), indent=1))
        return
    click.echo(f"run {record.id} of pipeline {record.pipeline}: {record.status}"
               + (f" in {record.seconds:.1f} s" if record.seconds is not None else ""))  # fmt: skip
    click.echo(
        f"  trigger {record.trigger}, commit {record.commit or '-'}, data sha256 {record.data_sha256 or '-'}"
    )
    click.echo(f"  started {record.started}")
    for s in record.stages:
        took = f" {s.seconds:.1f} s" if s.seconds is not None else ""
        click.echo(f"  {s.name} ({s.kind}): {s.status}{took}{': ' + s.message if s.message else ''}")
        for out, artifact in s.outputs.items():
            where = artifact.path or json.dumps(artifact.value)
            click.echo(f"    {out}: {where} (sha256 {artifact.sha256[:12]})")


@pipeline.command()
@click.option("--github", "system", flag_value="github", help="A GitHub Actions workflow.")
@click.option("--gitlab", "system", flag_value="gitlab", help="A .gitlab-ci.yml.")
@click.option("-f", "--file", "file", default="pipeline.yaml", show_default=True,
              help="The pipeline file, as the repository names it.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (default: print).")  # fmt: skip
def ci(system: str | None, file: str, out: Path | None) -> None:
    """A CI workflow that installs modelport, runs the pipeline on push and keeps the evaluation report."""
    from modelport.delivery.ci import github_workflow, gitlab_ci

    if system is None:
        raise click.UsageError("give --github or --gitlab")
    reports, releases = _reports(Path(file))
    write = github_workflow if system == "github" else gitlab_ci
    text = write(file, reports, releases)
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(f"wrote {out}", err=True)


def _reports(file: Path) -> tuple[list[str], bool]:
    """Where the evaluate stages write their reports, relative to here (the repository's root),
    and whether the pipeline releases (then it needs a control plane)."""
    from modelport.delivery.definition import load_pipeline

    if not file.exists():
        return [".modelport/*/*/evaluation/"], False
    try:
        definition = load_pipeline(file)
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    here = Path.cwd().resolve()
    found = []
    for stage in definition.pipeline.spec.stages:
        if stage.kind == "evaluate":
            folder = (definition.work_dir / stage.name / "evaluation").resolve()
            found.append(f"{os.path.relpath(folder, here)}/")
    releases = any(s.kind in ("release", "rollback") for s in definition.pipeline.spec.stages)
    return found, releases
