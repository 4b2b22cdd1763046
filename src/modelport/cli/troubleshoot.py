"""kubectl's troubleshooting verbs against the local control plane: logs, top, events."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from modelport.cli.api import client, namespace_option, reporting, split_ref
from modelport.cli.printers import as_list, dump, get_table, top_table
from modelport.controlplane.client import Client
from modelport.controlplane.meta import kind_of, owned_by
from modelport.errors import Code, ModelportError

Obj = dict[str, Any]


@click.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True)
@click.option("--tail", type=int, default=-1, help="Lines from the end (-1: all).")
@namespace_option
def logs(name: str, follow: bool, tail: int, namespace: str) -> None:
    """A replica's log (pod/NAME, or deployment/NAME for its first replica)."""
    with reporting():
        api = client()
        kind, pod_name = split_ref(name, None) if "/" in name else ("Pod", name)
        if kind == "Deployment":
            pod = _first_replica(api, pod_name or "", namespace)
        else:
            pod = api.get("Pod", pod_name or "", namespace)
        path = Path(pod.get("status", {}).get("logPath", ""))
        if not path.is_file():
            raise ModelportError(Code.NOT_FOUND, f'pod "{pod["metadata"]["name"]}" has no log yet')
        with open(path, errors="replace") as log:
            lines = log.readlines()
            sys.stdout.write("".join(lines[max(len(lines) - tail, 0) :] if tail >= 0 else lines))
            sys.stdout.flush()
            while follow:
                line = log.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)  # a follower polls, as `tail -f` does


def _first_replica(api: Client, deployment: str, namespace: str) -> Obj:
    d = api.get("Deployment", deployment, namespace)
    pods = api.list("Pod", namespace)["items"]
    replicas = [
        p
        for rs in api.list("ReplicaSet", namespace)["items"]
        if owned_by(rs, d)
        for p in pods
        if owned_by(p, rs)
    ]
    if not replicas:
        raise ModelportError(Code.NOT_FOUND, f'deployment "{deployment}" has no replicas')
    return dict(replicas[0])


@click.command()
@click.argument("kind", default="pods")
@namespace_option
def top(kind: str, namespace: str) -> None:
    """CPU, memory, request rate, requests in flight and p99 latency of each replica."""
    with reporting():
        if kind_of(kind) != "Pod":
            raise ModelportError(Code.INVALID_ARGUMENT, "top shows pods")
        items = [i for i in client().request("GET", "/api/top")["items"] if i["namespace"] == namespace]
        if not items:
            click.echo("No metrics yet (each replica needs two samples; see --metrics-seconds).", err=True)
            return
        click.echo(top_table(items))


@click.command()
@namespace_option
@click.option("--for", "for_", default=None, help="Only events of this object: KIND/NAME.")
@click.option("--output", "-o", type=click.Choice(["json", "yaml"]), default=None)
def events(namespace: str, for_: str | None, output: str | None) -> None:
    """Events, oldest first."""
    with reporting():
        items = sorted(client().list("Event", namespace)["items"], key=lambda e: e["lastTimestamp"])
        if for_:
            kind, name = split_ref(for_, None)
            items = [
                e
                for e in items
                if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name
            ]
        if output:
            click.echo(dump(as_list(items), output))
        elif items:
            click.echo(get_table("Event", items, time.time()))
        else:
            click.echo(f"No events found in {namespace} namespace.", err=True)


COMMANDS = [logs, top, events]
