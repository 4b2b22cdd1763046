"""The `modelport` command: one group, one module per command group; thin (parse, call, print).

A command's module is imported when that command runs (or when `--help` lists them all), not
before: every replica is a `modelport serve` process, and importing the twenty-odd other command
modules first (the control plane's client, YAML, charts, asyncio, ...) cost each one about 0.1 s
of CPU before it could load its model (bench/cold_start.py). `COMMANDS` names, for each command,
the module and the attribute that hold it.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from modelport import __version__

COMMANDS = {
    "apply": "objects:apply",
    "audit": "audit:audit",
    "build": "build:build",
    "dashboard": "dashboard:dashboard",
    "delete": "objects:delete",
    "describe": "objects:describe_",
    "diagnose": "diagnose:diagnose",
    "down": "cluster:down",
    "evaluate": "evaluate:evaluate",
    "events": "troubleshoot:events",
    "example": "example:example",
    "gateway": "gateway:gateway",
    "get": "objects:get",
    "keys": "keys:keys",
    "logs": "troubleshoot:logs",
    "monitoring": "prometheus:monitoring",
    "pipeline": "pipeline:pipeline",
    "plot": "plot:plot",
    "prometheus-config": "prometheus:prometheus_config",
    "registry": "registry:registry",
    "render": "render:render",
    "rollout": "rollout:rollout",
    "scale": "objects:scale",
    "serve": "serve:serve",
    "set": "objects:set_",
    "tokens": "tokens:tokens",
    "top": "troubleshoot:top",
    "train": "train:train",
    "up": "cluster:up",
}


class LazyGroup(click.Group):
    """A group whose commands in `COMMANDS` are imported on first use; any added the usual way
    (`add_command`) are there from the start."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, attribute = COMMANDS[name].split(":")
            command: Any = getattr(importlib.import_module(f"modelport.cli.{module}"), attribute)
            self.add_command(command, name)
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="modelport")
def cli() -> None:
    """Train, publish, serve, roll out and autoscale ML models."""


def main() -> None:
    cli()
