"""`modelport prometheus-config`: a Prometheus configuration that scrapes every replica, every
Service's HAProxy and the control plane, found through its API (HTTP service discovery, with the
API's token), so the list follows scale-ups, rollouts and restarts.

`modelport monitoring up|down`: that configuration with the shipped alert and recording rules,
checked by promtool, and a real Prometheus started on loopback to run it."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from modelport.cli.api import client, reporting
from modelport.controlplane.home import default_home, state_dir


@click.command("prometheus-config")
@click.option("--scrape-interval", default="5s", show_default=True)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), default=None, help="Write here instead of stdout."
)
def prometheus_config(scrape_interval: str, out: Path | None) -> None:
    """Print a prometheus.yml that scrapes the replicas (start the control plane with a fixed --port
    so the address in it stays valid across restarts)."""
    from modelport.monitor.prometheus import render_config  # here: `--help` and `get` stay light

    with reporting():
        api = client()
        token = state_dir(default_home()) / "token"
        text = yaml.safe_dump(render_config(api.url, token, scrape_interval, []), sort_keys=False)
        if out is None:
            click.echo(text, nl=False)
        else:
            out.write_text(text)
            click.echo(f"wrote {out}")


@click.group()
def monitoring() -> None:
    """A real Prometheus with modelport's alert rules, beside the control plane."""


@monitoring.command("up")
@click.option("--scrape-interval", default="5s", show_default=True)
@click.option("--port", type=int, default=0, help="Prometheus' port on 127.0.0.1 (0: a free one).")
def monitoring_up(scrape_interval: str, port: int) -> None:
    """Write home/monitoring/prometheus.yml and rules.yml, check them with promtool, start
    Prometheus (or make the running one re-read them) and print its address."""
    from modelport.monitor.prometheus import Monitoring

    with reporting():
        api = client()
        home = default_home()
        watch = Monitoring(home)
        watch.write(api.url, state_dir(home) / "token", scrape_interval)
        running = watch.start(port)
        click.echo(f"prometheus: {running.url} (pid {running.pid}); config {watch.config}")


@monitoring.command("down")
def monitoring_down() -> None:
    """Stop the Prometheus `monitoring up` started."""
    from modelport.monitor.prometheus import Monitoring

    with reporting():
        stopped = Monitoring(default_home()).stop()
        click.echo(f"prometheus (pid {stopped.pid}) stopped" if stopped else "prometheus was not running")
