"""`modelport audit`: read the audit log ($MODELPORT_HOME/audit.log and its rotated parts)."""

from __future__ import annotations

import datetime
import json
import re

import click

_SINCE = re.compile(r"([0-9]+)\s*(s|m|h|d)")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str | None) -> datetime.datetime | None:
    if value is None:
        return None
    match = _SINCE.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r}: give a duration like 30m, 1h or 7d", param_hint="--since")
    seconds = int(match[1]) * _SECONDS[match[2]]
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)


@click.command()
@click.option("--since", default=None, help="Only events this recent: 30m, 1h, 7d [default: all].")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def audit(since: str | None, output: str) -> None:
    """Writes to the control plane and the registry, and refused credentials, oldest first."""
    from modelport.controlplane.home import default_home
    from modelport.security.audit import audit_path, read_events

    events = list(read_events(audit_path(default_home()), _since(since)))
    if output == "json":
        click.echo(json.dumps(events, indent=2))
        return
    columns = ("time", "source", "actor", "client", "action", "object", "result")
    rows = [[str(e.get(c, "")) for c in columns] for e in events]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in [[c.upper() for c in columns], *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
