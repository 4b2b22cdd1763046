"""`modelport dashboard`: the address of the control plane's dashboard pages, with the token a
browser needs once (the pages then keep it in a cookie)."""

from __future__ import annotations

import click

from modelport.cli.api import client, reporting
from modelport.controlplane.home import default_home, read_token


@click.command()
def dashboard() -> None:
    """Print the dashboard's URL (open it in a browser on this machine)."""
    with reporting():
        api = client()
        click.echo(f"{api.url}/dashboard?token={read_token(default_home())}")
