"""The `modelport` command: one group, one module per command group; thin (parse, call, print)."""

from __future__ import annotations

import click

from modelport import __version__
from modelport.cli.audit import audit
from modelport.cli.build import build
from modelport.cli.cluster import down, up
from modelport.cli.dashboard import dashboard
from modelport.cli.diagnose import diagnose
from modelport.cli.evaluate import evaluate
from modelport.cli.example import example
from modelport.cli.gateway import gateway
from modelport.cli.keys import keys
from modelport.cli.objects import COMMANDS as OBJECT_COMMANDS
from modelport.cli.pipeline import pipeline
from modelport.cli.plot import plot
from modelport.cli.prometheus import monitoring, prometheus_config
from modelport.cli.registry import registry
from modelport.cli.render import render
from modelport.cli.rollout import rollout
from modelport.cli.serve import serve
from modelport.cli.tokens import tokens
from modelport.cli.train import train
from modelport.cli.troubleshoot import COMMANDS as TROUBLESHOOT_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="modelport")
def cli() -> None:
    """Train, publish, serve, roll out and autoscale ML models."""


cli.add_command(serve)
cli.add_command(example)
cli.add_command(registry)
cli.add_command(keys)
cli.add_command(tokens)
cli.add_command(audit)
cli.add_command(train)
cli.add_command(evaluate)
for command in [
    up,
    down,
    *OBJECT_COMMANDS,
    *TROUBLESHOOT_COMMANDS,
    rollout,
    plot,
    prometheus_config,
    monitoring,
    diagnose,
    dashboard,
    gateway,
    render,
    build,
    pipeline,
]:
    cli.add_command(command)


def main() -> None:
    cli()
