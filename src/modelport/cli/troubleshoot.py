"""kubectl's troubleshooting verbs against the local control plane: logs, top, events."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

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
@click.option("--previous", "-p", is_flag=True, help="The log of the replica's run before its last restart.")
@namespace_option
def logs(name: str, follow: bool, tail: int, previous: bool, namespace: str) -> None:
    """A replica's log (pod/NAME, or deployment/NAME for its first replica): its current run,
    from the last rotation on (the log is rotated while it runs, like a container's)."""
    with reporting():
        api = client()
        kind, pod_name = split_ref(name, None) if "/" in name else ("Pod", name)
        if kind == "Deployment":
            pod = _first_replica(api, pod_name or "", namespace)
        else:
            pod = api.get("Pod", pod_name or "", namespace)
        path = Path(pod.get("status", {}).get("logPath", ""))
        if previous:
            from modelport.dataplane.logs import previous_log  # only here: `get` and `--help` stay light

            path = previous_log(path)
            if not path.is_file():
                raise ModelportError(
                    Code.FAILED_PRECONDITION,
                    f'previous terminated replica of pod "{pod["metadata"]["name"]}" not found',
                )
        elif not path.is_file():
            raise ModelportError(Code.NOT_FOUND, f'pod "{pod["metadata"]["name"]}" has no log yet')
        with open(path, errors="replace") as log:
            lines = log.readlines()
            sys.stdout.write("".join(lines[max(len(lines) - tail, 0) :] if tail >= 0 else lines))
            sys.stdout.flush()
            if follow and not previous:
                _follow(path, log)


def _follow(path: Path, log: TextIO) -> None:
    """`tail -F`, by whole lines: new lines as they come (one still being written waits for its
    end); from the top again when the file was emptied by a rotation (a line cut by it is whole
    in the rotated part), and in the new file when a restart put a new one in its place."""
    while True:
        where = log.tell()
        line = log.readline()
        if line.endswith("\n"):
            sys.stdout.write(line)
            sys.stdout.flush()
            continue
        log.seek(where)  # nothing, or a line not finished yet: read it again once it is
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None  # between a restart's move and the new run's first write
        if current is not None and current.st_ino != os.fstat(log.fileno()).st_ino:
            rest = log.read()  # the old file's last lines (its writer is gone), then the new one's
            sys.stdout.write(rest if not rest or rest.endswith("\n") else rest + "\n")
            sys.stdout.flush()
            log.close()
            log = open(path, errors="replace")  # noqa: SIM115 - closed when replaced or at exit
            continue
        if current is not None and current.st_size < where:
            log.seek(0)  # emptied by a rotation: the new lines are at the top
            continue
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
