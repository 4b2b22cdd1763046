"""API keys: what a key may do, and where keys live (hashed, never the secret).

A key as a client sends it is `mpk_<id>_<secret>`: `id` is 8 hex digits, public, shown by
`keys list`, used in logs and metrics; `secret` is 32 random bytes (43 url-safe characters). The
store keeps only sha256(secret). A slow hash (scrypt, bcrypt) protects *guessable* secrets such as
passwords from a stolen database; a 256-bit random secret cannot be guessed at any speed, so one
sha256 (about a microsecond) is as safe here and keeps a check cheap on every request.

Keys live in the registry's SQLite file (`$MODELPORT_HOME/registry.db`, tables `api_keys` and
`api_key_usage`): the same file every replica of a Service on this machine already reads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from modelport.errors import Code, ModelportError, invalid
from modelport.security.limits import Limits, Usage, compute_take
from modelport.sqlite import Database

PREDICT, READ, METRICS, MANAGE = "predict", "read", "metrics", "manage"
SCOPES = (PREDICT, READ, METRICS, MANAGE)
ALL_MODELS = "*"
TOKEN_PREFIX = "mpk_"
_ID = re.compile(r"[0-9a-f]{8}")
_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_QUOTA = re.compile(r"\s*([0-9]+)\s*/\s*(day|d)\s*")
_DURATION = re.compile(r"\s*([0-9]+)\s*(s|m|h|d)\s*")
_PER_SECOND = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    digest: str  # sha256 hex of the secret
    scopes: tuple[str, ...]
    models: tuple[str, ...]  # ("*",): every model
    limits: Limits = field(default_factory=Limits)
    created: float = 0.0
    expires: float | None = None
    last_used: float | None = None
    revoked: float | None = None

    def active(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)

    def allows_model(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(key_id: str | None = None) -> tuple[str, str, str]:
    """(key id, the token a client sends, its digest)."""
    key_id = key_id or secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{TOKEN_PREFIX}{key_id}_{secret}", digest(secret)


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a token shaped like one, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not secret or _ID.fullmatch(key_id) is None:
        return None
    return key_id, secret


def matches(key: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(key.digest, digest(secret))


# -- parsing what a person types --


def parse_rate(text: str) -> float:
    """'100/s' -> 100.0, '30/min' -> 0.5."""
    match = _RATE.fullmatch(text)
    if match is None or float(match[1]) <= 0:
        raise invalid(f"{text!r} is not a rate like 100/s, 30/min or 1000/h")
    return float(match[1]) / _PER_SECOND[match[2]]


def parse_quota(text: str) -> int:
    match = _QUOTA.fullmatch(text)
    if match is None or int(match[1]) <= 0:
        raise invalid(f"{text!r} is not a quota like 1000000/day")
    return int(match[1])


def parse_duration(text: str) -> float:
    """'30d' -> 2592000.0 seconds; s, m, h, d."""
    match = _DURATION.fullmatch(text)
    if match is None or int(match[1]) <= 0:
        raise invalid(f"{text!r} is not a duration like 30d, 12h, 15m")
    return float(int(match[1]) * _SECONDS[match[2]])


def parse_scopes(text: str) -> tuple[str, ...]:
    """'predict,read' -> ("predict", "read")."""
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise invalid(f"unknown scope {unknown[0]!r}" if unknown else "give at least one scope")
    return tuple(s for s in SCOPES if s in scopes)


# -- the store --


class KeyStore(Protocol):
    """Keys and their shared usage counters. Every method is one transaction; `take` is atomic
    across processes (every replica of a Service calls it on the same store)."""

    def create(self, key: ApiKey) -> None: ...
    def list_keys(self) -> list[ApiKey]: ...
    def update(self, key: ApiKey) -> None: ...
    def touch(self, used: dict[str, float]) -> None:
        """Record when keys were last used (id -> time); called now and then, not per request."""
        ...

    def changed(self) -> bool:
        """Whether anything was written to the store (by another process or connection) since
        this thread last asked; True the first time. Cheap: no table is read."""
        ...

    def take(self, key: ApiKey, want: int, now: float, returned: int = 0) -> tuple[int, float]:
        """Take up to `want` requests from `key`'s bucket and quota: (granted, retry_after
        seconds when nothing was granted). `returned`: requests taken before and not spent."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, digest TEXT NOT NULL, scopes TEXT NOT NULL,
    models TEXT NOT NULL, rate REAL, burst INTEGER, quota INTEGER, created REAL NOT NULL,
    expires REAL, last_used REAL, revoked REAL
);
CREATE TABLE IF NOT EXISTS api_key_usage (
    id TEXT PRIMARY KEY, tokens REAL NOT NULL, refilled REAL NOT NULL, day TEXT NOT NULL,
    used INTEGER NOT NULL
);
"""


def default_path() -> Path:
    """The registry's file under $MODELPORT_HOME (default ~/.modelport)."""
    return Path(os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport").expanduser() / "registry.db"


class SqliteKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        # NORMAL: usage counters are written often; WAL keeps them safe against a process crash
        # (a power cut may lose the last moments of counting, never the file).
        self._database = Database(path, _SCHEMA, synchronous="NORMAL")
        self._seen = threading.local()

    def create(self, key: ApiKey) -> None:
        with self._database.write() as db:
            db.execute(
                "INSERT INTO api_keys (id, name, digest, scopes, models, rate, burst, quota, created, "
                "expires, last_used, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(key),
            )

    def list_keys(self) -> list[ApiKey]:
        rows = self._database.connection().execute("SELECT * FROM api_keys ORDER BY created, id")
        return [_key(r) for r in rows]

    def update(self, key: ApiKey) -> None:
        with self._database.write() as db:
            found = db.execute(
                "UPDATE api_keys SET name = ?, digest = ?, scopes = ?, models = ?, rate = ?, burst = ?, "
                "quota = ?, created = ?, expires = ?, last_used = ?, revoked = ? WHERE id = ?",
                (*_row(key)[1:], key.id),
            ).rowcount
        if not found:
            raise ModelportError(Code.NOT_FOUND, f"no key with id {key.id}")

    def touch(self, used: dict[str, float]) -> None:
        with self._database.write() as db:
            db.executemany(
                "UPDATE api_keys SET last_used = max(coalesce(last_used, 0), ?) WHERE id = ?",
                [(t, i) for i, t in used.items()],
            )

    def changed(self) -> bool:
        # SQLite's data_version moves when another connection commits; it is per connection, and
        # connections are per thread, so the last value seen is kept per thread too.
        version = int(self._database.connection().execute("PRAGMA data_version").fetchone()[0])
        seen = getattr(self._seen, "version", None)
        self._seen.version = version
        return seen != version

    def take(self, key: ApiKey, want: int, now: float, returned: int = 0) -> tuple[int, float]:
        with self._database.write() as db:
            row = db.execute("SELECT * FROM api_key_usage WHERE id = ?", (key.id,)).fetchone()
            usage = None if row is None else Usage(row["tokens"], row["refilled"], row["day"], row["used"])
            after, granted, retry = compute_take(usage, key.limits, want, now, returned)
            db.execute(
                "INSERT INTO api_key_usage (id, tokens, refilled, day, used) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET tokens = excluded.tokens, refilled = excluded.refilled, "
                "day = excluded.day, used = excluded.used",
                (key.id, after.tokens, after.refilled, after.day, after.used),
            )
        return granted, retry


def find(store: KeyStore, name_or_id: str, now: float) -> ApiKey:
    """The active key named so (or with that id)."""
    for key in store.list_keys():
        if key.active(now) and name_or_id in (key.name, key.id):
            return key
    raise ModelportError(Code.NOT_FOUND, f"no active key named or with id {name_or_id!r}")


def revoke(key: ApiKey, now: float) -> ApiKey:
    return replace(key, revoked=now)


def _row(key: ApiKey) -> tuple[object, ...]:
    limits = key.limits
    return (
        key.id, key.name, key.digest, json.dumps(list(key.scopes)), json.dumps(list(key.models)),
        limits.rate, limits.burst, limits.quota, key.created, key.expires, key.last_used, key.revoked,
    )  # fmt: skip


def _key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"], name=row["name"], digest=row["digest"], scopes=tuple(json.loads(row["scopes"])),
        models=tuple(json.loads(row["models"])),
        limits=Limits(row["rate"], row["burst"], row["quota"]), created=row["created"],
        expires=row["expires"], last_used=row["last_used"], revoked=row["revoked"],
    )  # fmt: skip
