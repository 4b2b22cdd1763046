"""`modelport plot hpa NAME`: the autoscaler's replicas and metrics over time, as an HTML page
with inline SVG charts (no network needed to open it)."""

from __future__ import annotations

from html import escape
from pathlib import Path

import click

from modelport.charts import line_chart
from modelport.cli.api import client, namespace_option, reporting, split_ref
from modelport.cli.printers import hpa_targets
from modelport.errors import Code, ModelportError


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="HTML file [NAME-hpa.html].")
@namespace_option
def plot(kind: str, name: str | None, out: Path | None, namespace: str) -> None:
    """Chart an HPA's replicas and metrics over time (hpa/NAME)."""
    with reporting():
        kind, name = split_ref(kind, name)
        if kind != "HorizontalPodAutoscaler" or not name:
            raise ModelportError(Code.INVALID_ARGUMENT, "plot works on hpa/NAME")
        api = client()
        hpa = api.get(kind, name, namespace)
        points = api.request("GET", f"/api/history/{namespace}/{name}")["items"]
        if not points:
            raise ModelportError(Code.FAILED_PRECONDITION, f'hpa "{name}" has not decided anything yet')
        start = points[0]["time"]
        replicas = {
            "current replicas": [(p["time"] - start, p["currentReplicas"]) for p in points],
            "desired replicas": [(p["time"] - start, p["desiredReplicas"]) for p in points],
        }
        charts = [line_chart(replicas, "replicas", "seconds", width=720, step=True, floor=0)]
        names = sorted({m for p in points for m in p["metrics"]})
        for metric in names:
            series = {
                metric: [(p["time"] - start, p["metrics"][metric]) for p in points if metric in p["metrics"]]
            }
            charts.append(line_chart(series, metric, "seconds", width=720, floor=0))
        out = out or Path(f"{name}-hpa.html")
        out.write_text(
            "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>hpa/{escape(name)}</title>"
            "<body style='font-family:sans-serif;max-width:760px;margin:auto'>"
            f"<h1>hpa/{escape(name)}</h1><p>targets (current/target): {escape(hpa_targets(hpa))}; "
            f"min {hpa['spec']['minReplicas']}, max {hpa['spec']['maxReplicas']}; "
            f"{len(points)} decisions over {points[-1]['time'] - start:.0f} s</p>" + "".join(charts)
        )
        click.echo(f"wrote {out}")
