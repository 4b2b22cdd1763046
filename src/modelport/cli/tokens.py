"""`modelport tokens`: the control plane's scoped tokens (least privilege; security/tokens.py).
The admin token is the one `modelport up` keeps in $MODELPORT_HOME/controlplane/token."""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING

import click

from modelport.errors import ModelportError

if TYPE_CHECKING:
    from modelport.security.tokens import TokenFile


def _record(action: str, name: str, result: str) -> None:
    from modelport.controlplane.home import default_home
    from modelport.security.audit import record_local

    record_local(default_home(), action, f"tokens/{name}", result)


def _tokens() -> TokenFile:
    from modelport.controlplane.home import default_home, tokens_path
    from modelport.security.tokens import TokenFile

    return TokenFile(tokens_path(default_home()))


@click.group()
def tokens() -> None:
    """Control-plane tokens: `admin`, or `services:get` (read Services of one namespace)."""


@tokens.command()
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["services:get", "admin"]),
    default="services:get",
    show_default=True,
    help="services:get: get, list and watch Services in --namespace, nothing else.",
)
@click.option("--namespace", "-n", default="default", show_default=True)
def create(name: str, scope: str, namespace: str) -> None:
    """Make a token and print it once (only its hash is kept)."""
    try:
        secret = _tokens().create(name, scope, namespace)
    except ModelportError as exc:
        _record("create-token", name, exc.code.reason)
        raise click.UsageError(exc.message) from exc
    _record("create-token", name, "ok")
    click.echo(secret)
    click.echo(f"token {name} created ({scope}); it is shown only now", err=True)


@tokens.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def list_tokens(output: str) -> None:
    """Every scoped token: id, name, scope, namespace, created (never the secret)."""
    found = sorted(_tokens().tokens().values(), key=lambda t: t.name)
    rows = [
        {"id": t.id, "name": t.name, "scope": t.scope, "namespace": t.namespace or "*",
         "created": datetime.datetime.fromtimestamp(t.created, datetime.UTC).isoformat(timespec="seconds")}
        for t in found
    ]  # fmt: skip
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':<10}{'NAME':<24}{'SCOPE':<14}{'NAMESPACE':<12}CREATED")
    for row in rows:
        click.echo(
            f"{row['id']:<10}{row['name']:<24}{row['scope']:<14}{row['namespace']:<12}{row['created']}"
        )


@tokens.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Remove a token (by name or id): refused from the next request on."""
    try:
        gone = _tokens().revoke(name)
    except ModelportError as exc:
        _record("revoke-token", name, exc.code.reason)
        raise click.UsageError(exc.message) from exc
    _record("revoke-token", name, "ok")
    click.echo(f"token {gone.name} ({gone.id}) revoked")
