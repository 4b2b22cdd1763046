"""`modelport prometheus-config`: a Prometheus configuration that scrapes every replica the
control plane runs, found through its API (HTTP service discovery, with the API's token), so the
list follows scale-ups, rollouts and restarts."""

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
    with reporting():
        api = client()
        token = state_dir(default_home()) / "token"
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{
                "job_name": "modelport-replicas",
                "http_sd_configs": [{
                    "url": f"{api.url}/api/prometheus/targets",
                    "refresh_interval": scrape_interval,
                    "authorization": {"type": "Bearer", "credentials_file": str(token)},
                }],
                "relabel_configs": [{
                    "regex": "__meta_modelport_label_(.+)", "action": "labelmap", "replacement": "$1",
                }],
            }],
        }  # fmt: skip
        text = yaml.safe_dump(config, sort_keys=False)
        if out is None:
            click.echo(text, nl=False)
        else:
            out.write_text(text)
            click.echo(f"wrote {out}")
