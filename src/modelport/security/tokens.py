"""The control plane's bearer tokens and what each may do (least privilege).

Two scopes:
- `admin`: everything (the token `modelport up` makes in `controlplane/token`, as before);
- `services:get`: read Services (get, list, watch) in one namespace, nothing else: what a gateway
  replica needs to find the Service it fronts. A replica is given this, never the admin token.

A scoped token as a client sends it is `mpt_<id>_<secret>` (`id`: 8 hex digits, public, shown by
`tokens list` and written in the audit log; `secret`: 32 random bytes). The file keeps
sha256(secret) only; a 256-bit random secret needs no slow hash (see security/keys.py).

    tokens = TokenFile(home / "controlplane" / "tokens.json")
    secret = tokens.create("gateway-default", SERVICES_GET, "default")   # shown once
    who = tokens.authenticate(secret, admin_secret)   # Principal, or None
    who.allows("GET", "Service", "default")           # True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from modelport.errors import Code, ModelportError, invalid

ADMIN, SERVICES_GET = "admin", "services:get"
SCOPES = (ADMIN, SERVICES_GET)
PREFIX = "mpt_"
ADMIN_ID = "admin"
_SECRET = re.compile(r"mpt_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    scope: str
    namespace: str | None  # None: every namespace (admin)
    digest: str  # sha256 hex of the whole token
    created: float


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, as the audit log names them: a token's id and name, never its secret."""

    id: str
    name: str
    scope: str
    namespace: str | None

    def allows(self, method: str, kind: str, namespace: str | None) -> bool:
        """admin: anything. services:get: GET of Services in its own namespace (one, a list, a watch)."""
        if self.scope == ADMIN:
            return True
        return method == "GET" and kind == "Service" and namespace == self.namespace

    def needs(self, method: str, kind: str, namespace: str | None) -> str:
        """The refusal, in words: who this is, what it asked, and what that needs."""
        what = f"{method} {kind + 's' if kind else 'this path'}" + (
            f" in namespace {namespace}" if namespace else ""
        )
        has = f"scope {self.scope}" + (f" in namespace {self.namespace}" if self.namespace else "")
        return f"token {self.name} ({self.id}, {has}) may not {what}: that needs an admin token"


ADMIN_PRINCIPAL = Principal(ADMIN_ID, "admin", ADMIN, None)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenFile:
    """Scoped tokens in one JSON file readable by its user only; re-read when it changes, so a
    revoked token stops working at the next request without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._tokens: dict[str, Token] = {}

    def tokens(self) -> dict[str, Token]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._tokens = None, {}
            return {}
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            raw = json.loads(self.path.read_text() or "[]")
            self._tokens = {t["id"]: Token(**t) for t in raw}
            self._seen = seen
        return dict(self._tokens)

    def authenticate(self, given: str, admin_secret: str) -> Principal | None:
        """The principal a bearer token stands for, or None (unknown, malformed, revoked)."""
        if hmac.compare_digest(given.encode(), admin_secret.encode()):
            return ADMIN_PRINCIPAL
        match = _SECRET.fullmatch(given)
        if match is None:
            return None
        token = self.tokens().get(match[1])
        if token is None or not hmac.compare_digest(token.digest, digest(given)):
            return None
        return Principal(token.id, token.name, token.scope, token.namespace)

    def create(self, name: str, scope: str, namespace: str | None, now: float | None = None) -> str:
        """A new token's secret (only this once; the file keeps its hash)."""
        if not _NAME.fullmatch(name) or len(name) > 63:
            raise invalid(f"token name {name!r}: must be a lowercase DNS label")
        if scope not in SCOPES:
            raise invalid(f"--scope {scope!r}: must be one of {', '.join(SCOPES)}")
        if scope != ADMIN and not namespace:
            raise invalid(f"--scope {scope} needs a --namespace")
        tokens = self.tokens()
        if any(t.name == name for t in tokens.values()):
            raise ModelportError(Code.ALREADY_EXISTS, f'token "{name}" already exists')
        token_id = secrets.token_hex(4)
        while token_id in tokens:
            token_id = secrets.token_hex(4)
        secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        ns = None if scope == ADMIN else namespace
        tokens[token_id] = Token(token_id, name, scope, ns, digest(secret), now or time.time())
        self._write(tokens)
        return secret

    def revoke(self, name: str) -> Token:
        tokens = self.tokens()
        found = next((t for t in tokens.values() if t.name == name or t.id == name), None)
        if found is None:
            raise ModelportError(Code.NOT_FOUND, f'token "{name}" not found')
        del tokens[found.id]
        self._write(tokens)
        return found

    def find(self, name: str) -> Token | None:
        return next((t for t in self.tokens().values() if t.name == name), None)

    def _write(self, tokens: dict[str, Token]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump([asdict(t) for t in sorted(tokens.values(), key=lambda t: t.name)], out, indent=1)
        os.replace(tmp, self.path)
