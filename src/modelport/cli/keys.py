"""`modelport keys`: create, list, revoke and rotate the API keys model servers accept."""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from modelport.errors import ModelportError

if TYPE_CHECKING:
    from modelport.security.keys import ApiKey, SqliteKeyStore


def _store() -> SqliteKeyStore:
    from modelport.security.keys import SqliteKeyStore, default_path

    return SqliteKeyStore(default_path())


def _parsed(parse: Any, value: str | None, flag: str) -> Any:
    if value is None:
        return None
    try:
        return parse(value)
    except ModelportError as exc:
        raise click.BadParameter(exc.message, param_hint=flag) from exc


@click.group()
def keys() -> None:
    """API keys for the model servers (kept hashed in $MODELPORT_HOME/registry.db)."""


@keys.command()
@click.argument("name")
@click.option("--model", "models", multiple=True, help="A model the key may use (repeat for more).")
@click.option("--all-models", is_flag=True, help="The key may use every model.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="predict, read, metrics, manage; comma-separated or repeated. [default: predict]",
)
@click.option("--rate", default=None, help="Requests per second across all replicas: 100/s, 30/min.")
@click.option("--burst", type=click.IntRange(min=1), help="Requests at once [default: 1 s of --rate].")
@click.option("--quota", default=None, help="Requests per UTC day: 1000000/day.")
@click.option("--expires", default=None, help="Lifetime: 30d, 12h, 15m [default: never].")
def create(
    name: str,
    models: tuple[str, ...],
    all_models: bool,
    scopes: tuple[str, ...],
    rate: str | None,
    burst: int | None,
    quota: str | None,
    expires: str | None,
) -> None:
    """Create key NAME and print its secret (shown this once only)."""
    from modelport.security.keys import (
        ALL_MODELS,
        ApiKey,
        new_token,
        parse_duration,
        parse_quota,
        parse_rate,
        parse_scopes,
    )
    from modelport.security.limits import Limits

    if bool(models) == all_models:
        raise click.BadParameter("give --model (one or more) or --all-models", param_hint="--model")
    if burst is not None and rate is None:
        raise click.BadParameter("a burst needs a --rate", param_hint="--burst")
    chosen = _parsed(parse_scopes, ",".join(scopes or ("predict",)), "--scope")
    lifetime = _parsed(parse_duration, expires, "--expires")
    limits = Limits(_parsed(parse_rate, rate, "--rate"), burst, _parsed(parse_quota, quota, "--quota"))
    store = _store()
    now = time.time()
    if any(k.active(now) and k.name == name for k in store.list_keys()):
        raise click.BadParameter(f"a key named {name!r} exists (revoke or rotate it)", param_hint="NAME")
    key_id, token, digest = new_token()
    key = ApiKey(
        id=key_id, name=name, digest=digest, scopes=chosen,
        models=(ALL_MODELS,) if all_models else tuple(dict.fromkeys(models)), limits=limits,
        created=now, expires=None if lifetime is None else now + lifetime,
    )  # fmt: skip
    store.create(key)
    _record(store, "create-key", key)
    click.echo(f"created key {name} (id {key_id}); its secret, shown only now:", err=True)
    click.echo(token)


@keys.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Revoked and expired keys too.")
def list_(output: str, show_all: bool) -> None:
    """Keys: id (the secret's public prefix), scopes, models, limits, created, last used, expires."""
    now = time.time()
    rows = [_public(k, now) for k in _store().list_keys() if show_all or k.active(now)]
    if output == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("No keys (modelport keys create NAME --model MODEL).", err=True)
        return
    from modelport.cli.printers import table

    headers = ["ID", "NAME", "SCOPES", "MODELS", "RATE", "QUOTA", "CREATED", "LAST USED", "EXPIRES", "STATE"]
    cells = [
        [
            r["id"], r["name"], ",".join(r["scopes"]), ",".join(r["models"]),
            "-" if r["rate"] is None else f"{r['rate']:g}/s burst {r['burst']}",
            "-" if r["quota"] is None else f"{r['quota']}/day", _when(r["created"]),
            _when(r["last_used"]), _when(r["expires"]), r["state"],
        ]
        for r in rows
    ]  # fmt: skip
    click.echo(table(headers, cells))


@keys.command()
@click.argument("name_or_id")
def revoke(name_or_id: str) -> None:
    """Revoke a key: every server refuses it within a few seconds."""
    store = _store()
    key = _find(store, name_or_id)
    store.update(replace(key, revoked=time.time()))
    _record(store, "revoke-key", key)
    click.echo(f"revoked key {key.name} (id {key.id})")


@keys.command()
@click.argument("name_or_id")
def rotate(name_or_id: str) -> None:
    """Give a key a new secret (same id, scopes and limits); the old secret stops working."""
    from modelport.security.keys import new_token

    store = _store()
    key = _find(store, name_or_id)
    _, token, digest = new_token(key.id)
    store.update(replace(key, digest=digest))
    _record(store, "rotate-key", key)
    click.echo(f"rotated key {key.name} (id {key.id}); its new secret, shown only now:", err=True)
    click.echo(token)


def _record(store: SqliteKeyStore, action: str, key: ApiKey) -> None:
    """The write in the audit log beside the store (security/audit.py): the key's id, never its secret."""
    from modelport.security.audit import record_local

    record_local(store.path.parent, action, f"keys/{key.id}")


def _find(store: SqliteKeyStore, name_or_id: str) -> ApiKey:
    from modelport.security.keys import find

    try:
        return find(store, name_or_id, time.time())
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc


def _public(key: ApiKey, now: float) -> dict[str, Any]:
    from modelport.security.limits import burst_of

    state = "revoked" if key.revoked is not None else "active" if key.active(now) else "expired"
    rate = key.limits.rate
    return {
        "id": key.id, "name": key.name, "scopes": list(key.scopes), "models": list(key.models),
        "rate": rate, "burst": None if rate is None else int(burst_of(key.limits)),
        "quota": key.limits.quota, "created": key.created, "last_used": key.last_used,
        "expires": key.expires, "state": state,
    }  # fmt: skip


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M")
