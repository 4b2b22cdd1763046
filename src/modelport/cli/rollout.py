"""`modelport rollout status|history|undo|pause|resume|restart`, as kubectl's; on a Rollout,
`status` and `promote [--full]|abort|retry`, as kubectl argo rollouts'."""

from __future__ import annotations

import sys
import time

import click

from modelport.cli.api import client, namespace_option, reporting, split_ref, update_with_retry
from modelport.cli.printers import table
from modelport.controlplane.meta import CHANGE_CAUSE, RESTARTED_AT, ROLLOUT_COMMAND, iso, revision, workload
from modelport.controlplane.rollout_status import canary_state, rollout_state
from modelport.errors import Code, ModelportError


def _deployment(ref: str, name: str | None) -> str:
    kind, found = split_ref(ref, name)
    if kind != "Deployment" or not found:
        raise ModelportError(Code.INVALID_ARGUMENT, "rollout works on deployment/NAME")
    return found


@click.group()
def rollout() -> None:
    """Watch, pause, resume, restart and undo a Deployment's rollouts; promote, abort and retry a
    Rollout's canary."""


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@click.option(
    "--timeout",
    type=float,
    default=0,
    help="Give up (exit 1) after this many seconds; 0: wait for the deadline.",
)
@click.option("--watch/--no-watch", "-w", default=True, show_default=True)
@namespace_option
def status(ref: str, name: str | None, timeout: float, watch: bool, namespace: str) -> None:
    """Wait for the rollout to finish: exit 0 when complete, 1 when failed (a Rollout aborted) or
    past its deadline."""
    with reporting():
        kind, found = split_ref(ref, name)
        if kind not in ("Deployment", "Rollout") or not found:
            raise ModelportError(
                Code.INVALID_ARGUMENT, "rollout status works on deployment/NAME or rollout/NAME"
            )
        name, state = found, (canary_state if kind == "Rollout" else rollout_state)
        api = client()
        deadline = time.monotonic() + timeout if timeout else None
        last = ""
        while True:
            message, done = state(api.get(kind, name, namespace))
            if message != last:
                click.echo(message, err=done is False)
                last = message
            if done is not None or not watch:
                sys.exit(0 if done else 1)
            if deadline is not None and time.monotonic() > deadline:
                click.echo(f"error: timed out waiting for the condition (after {timeout:g} s)", err=True)
                sys.exit(1)
            time.sleep(0.2)


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@click.option("--revision", "number", type=int, default=0, help="Show this revision's template.")
@namespace_option
def history(ref: str, name: str | None, number: int, namespace: str) -> None:
    """The Deployment's revisions, oldest first, with their change causes."""
    with reporting():
        name = _deployment(ref, name)
        api = client()
        d = api.get("Deployment", name, namespace)
        owned = [
            rs
            for rs in api.list("ReplicaSet", namespace)["items"]
            if any(r["uid"] == d["metadata"]["uid"] for r in rs["metadata"].get("ownerReferences", []))
        ]
        owned.sort(key=revision)
        if number:
            found = [rs for rs in owned if revision(rs) == number]
            if not found:
                raise ModelportError(Code.NOT_FOUND, f"unable to find the specified revision {number}")
            runs, source = workload(found[0]["spec"]["template"]["spec"])
            click.echo(
                f'deployment "{name}" revision {number}\n  Model: {runs} from {source}\n'
                f"  Args:  {' '.join(found[0]['spec']['template']['spec']['args']) or '<none>'}"
            )
            return
        click.echo(f'deployment "{name}"')
        rows = []
        for rs in owned:
            cause = rs["metadata"].get("annotations", {}).get(CHANGE_CAUSE, "<none>")
            rows.append(
                [
                    str(revision(rs)),
                    rs["metadata"]["name"],
                    workload(rs["spec"]["template"]["spec"])[1],
                    cause,
                ]
            )
        click.echo(table(["REVISION", "REPLICASET", "MODEL", "CHANGE-CAUSE"], rows))


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@click.option("--to-revision", type=click.IntRange(min=0), default=0, help="0: the previous revision.")
@namespace_option
def undo(ref: str, name: str | None, to_revision: int, namespace: str) -> None:
    """Roll back to the previous revision (or --to-revision N): a new revision with its template."""
    with reporting():
        name = _deployment(ref, name)
        answer = client().rollback(name, to_revision, namespace)
        if answer["skipped"]:
            click.echo(
                f"deployment/{name} skipped rollback (current template already matches revision "
                f"{answer['revision']})"
            )
        else:
            click.echo(f"deployment/{name} rolled back")


def _set(ref: str, name: str | None, namespace: str, verb: str, change: dict) -> None:  # type: ignore[type-arg]
    with reporting():
        name = _deployment(ref, name)

        def apply(d: dict) -> None:  # type: ignore[type-arg]
            for key, value in change.items():
                if key == "restart":
                    meta = d["spec"]["template"].setdefault("metadata", {})
                    meta.setdefault("annotations", {})[RESTARTED_AT] = iso(time.time())
                else:
                    d["spec"][key] = value

        update_with_retry(client(), "Deployment", name, namespace, apply)
        click.echo(f"deployment/{name} {verb}")


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@namespace_option
def pause(ref: str, name: str | None, namespace: str) -> None:
    """Stop rolling out template changes until resumed."""
    _set(ref, name, namespace, "paused", {"paused": True})


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@namespace_option
def resume(ref: str, name: str | None, namespace: str) -> None:
    """Roll out what changed while paused."""
    _set(ref, name, namespace, "resumed", {"paused": False})


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@namespace_option
def restart(ref: str, name: str | None, namespace: str) -> None:
    """Replace every replica with a fresh one, as a rolling update."""
    _set(ref, name, namespace, "restarted", {"restart": True})


def _command(ref: str, name: str | None, namespace: str, verb: str, said: str) -> None:
    """Give a Rollout's controller a command (it acts on each once): promote, abort, retry."""
    with reporting():
        kind, found = split_ref(ref, name)
        if kind != "Rollout" or not found:
            raise ModelportError(Code.INVALID_ARGUMENT, f"rollout {verb.split('-')[0]} works on rollout/NAME")

        def apply(r: dict) -> None:  # type: ignore[type-arg]
            r["metadata"].setdefault("annotations", {})[ROLLOUT_COMMAND] = f"{verb} {time.time_ns()}"

        update_with_retry(client(), "Rollout", found, namespace, apply)
        click.echo(f"rollout/{found} {said}")


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@click.option("--full", is_flag=True, help="Skip the remaining steps, analyses and pauses: promote now.")
@namespace_option
def promote(ref: str, name: str | None, full: bool, namespace: str) -> None:
    """Go past a pause (or an inconclusive analysis) to the next step; --full: to the end."""
    _command(ref, name, namespace, "promote-full" if full else "promote", "promoted")


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@namespace_option
def abort(ref: str, name: str | None, namespace: str) -> None:
    """All traffic back to stable now; the canary is scaled down after abortScaleDownDelaySeconds."""
    _command(ref, name, namespace, "abort", "aborted")


@rollout.command()
@click.argument("ref")
@click.argument("name", required=False)
@namespace_option
def retry(ref: str, name: str | None, namespace: str) -> None:
    """Start an aborted canary again from its first step."""
    _command(ref, name, namespace, "retry", "retried")
