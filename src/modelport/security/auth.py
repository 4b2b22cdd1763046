"""Who may call what: a key presented with a request, checked against the keys in the store.

    no key, or one that is not a live key      -> UNAUTHENTICATED (401)
    a live key without the scope or the model  -> PERMISSION_DENIED (403), the same words for a
                                                  model that does not exist: no probing
    a live key over its rate or quota          -> RESOURCE_EXHAUSTED (429, Retry-After)

Cheap per request: the keys are held in memory and re-read from the store when older than
`refresh_seconds` (2 s: a revoked key stops working on every replica within about that), and
when a request shows an id not seen yet (a key created a moment ago). A failed check is
reported to `on_failure` (the audit log's hook) with the key id, never the secret.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelport.clock import Clock
from modelport.errors import Code, ModelportError
from modelport.security.keys import ApiKey, KeyStore, matches, split_token
from modelport.security.limits import UsageLimiter

log = logging.getLogger("modelport.auth")

REALM = 'Bearer realm="modelport"'
_MISSING = "an API key is required: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
_INVALID = "the API key is not valid (unknown, revoked or expired)"
_VERIFIED_MAX = 4096  # tokens remembered as checked; beyond, the memory starts again


@dataclass(frozen=True)
class AuthFailure:
    """What `on_failure` is told: enough for an audit line, never the secret."""

    key_id: str | None  # None: no key, or not shaped like one
    client: str
    action: str  # predict | read | metrics
    model: str | None
    status: int  # 401 | 403 | 429
    reason: str


class Refused(ModelportError):
    """A refusal, with what the transport adds: Retry-After for 429."""

    def __init__(self, code: Code, message: str, key_id: str | None, retry_after: float = 0.0) -> None:
        super().__init__(code, message)
        self.key_id = key_id
        self.retry_after = retry_after


class Authenticator:
    def __init__(
        self,
        store: KeyStore,
        clock: Clock,
        refresh_seconds: float = 2.0,
        on_failure: Callable[[AuthFailure], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._on_failure = on_failure
        self._limiter = UsageLimiter(store)
        self._keys: dict[str, ApiKey] = {}
        self._loaded = float("-inf")
        self._used: dict[str, float] = {}
        self._verified: dict[str, str] = {}  # token -> key id, since the keys were last read
        self._lock = threading.Lock()
        self._refresh(self._clock.monotonic())

    def key_ids(self) -> list[str]:
        """Ids of the keys in the store (the bounded set of metric labels)."""
        return sorted(self._keys)

    def check(self, token: str | None, scope: str, model: str | None, client: str) -> ApiKey:
        """The key, if `token` may use `scope` on `model` (None: a server-wide scope) now;
        else raises `Refused`."""
        now, tick = self._clock.now(), self._clock.monotonic()
        if tick - self._loaded > self._refresh_seconds:
            self._refresh(tick)
        if not token:
            raise self._refuse(Code.UNAUTHENTICATED, _MISSING, None, client, scope, model)
        known = self._verified.get(token)
        key = None if known is None else self._keys.get(known)
        if key is None or not key.active(now):
            key = self._verify(token, now, tick, client, scope, model)
        if scope not in key.scopes or (model is not None and not key.allows_model(model)):
            where = f" on model '{model}'" if model is not None else ""
            message = f"API key {key.id} does not grant '{scope}'{where}"
            raise self._refuse(Code.PERMISSION_DENIED, message, key.id, client, scope, model)
        self._used[key.id] = now
        retry = self._limiter.admit(key, now)
        if retry is not None:
            message = f"API key {key.id} is over its limit ({_describe(key)}): retry in {retry:.3g} s"
            raise self._refuse(Code.RESOURCE_EXHAUSTED, message, key.id, client, scope, model, retry)
        return key

    def _verify(
        self, token: str, now: float, tick: float, client: str, scope: str, model: str | None
    ) -> ApiKey:
        """The live key `token` is, remembered until the keys are next re-read (a hash saved
        on every later request with it); else refused."""
        parts = split_token(token)
        key = None if parts is None else self._key(parts[0], tick)
        if parts is None or key is None or not key.active(now) or not matches(key, parts[1]):
            # Audit sees the id presented; metrics only an id from the store (a bounded set).
            presented = None if parts is None else parts[0]
            refused = self._refuse(Code.UNAUTHENTICATED, _INVALID, presented, client, scope, model)
            refused.key_id = None if key is None else key.id
            raise refused
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = key.id
        return key

    def _key(self, key_id: str, tick: float) -> ApiKey | None:
        key = self._keys.get(key_id)
        if key is None and self._changed():  # a key made since the last read?
            self._refresh(tick, force=True)
            key = self._keys.get(key_id)
        return key

    def _changed(self) -> bool:
        try:
            return self._store.changed()
        except Exception as exc:  # an unreadable store: the keys known are all there is
            log.error("API key store not readable: %s", exc)
            return False

    def _refresh(self, tick: float, force: bool = False) -> None:
        with self._lock:
            if tick - self._loaded <= 0.2 and not force:
                return
            self._loaded = tick
            used, self._used = self._used, {}
        if used:
            try:
                self._store.touch(used)
            except Exception as exc:  # when keys were last used is not worth missing a revocation
                log.error("API keys' last use not recorded: %s", exc)
        try:
            self._keys = {k.id: k for k in self._store.list_keys()}
            self._verified = {}  # a rotated or revoked key's old token must be checked again
        except Exception as exc:  # a locked or moved store: keep the keys we had, say so
            log.error("API keys not re-read from the store (keeping %d known): %s", len(self._keys), exc)

    def _refuse(
        self,
        code: Code,
        message: str,
        key_id: str | None,
        client: str,
        scope: str,
        model: str | None,
        retry_after: float = 0.0,
    ) -> Refused:
        if self._on_failure is not None:
            self._on_failure(AuthFailure(key_id, client, scope, model, code.http_status, message))
        return Refused(code, message, key_id, retry_after)


def _describe(key: ApiKey) -> str:
    parts = []
    rate = key.limits.rate
    if rate is not None:
        parts.append(f"{rate:g}/s" if rate >= 1 else f"{rate * 60:.4g}/min")
    if key.limits.quota is not None:
        parts.append(f"{key.limits.quota}/day")
    return ", ".join(parts)


def token_of(headers: Iterable[tuple[str, str]]) -> str | None:
    """The key in `authorization: Bearer K` or `x-api-key: K` (names in lower case)."""
    for name, value in headers:
        if name == "x-api-key":
            return value.strip()
        if name == "authorization":
            kind, _, token = value.strip().partition(" ")
            if kind.lower() == "bearer":
                return token.strip()
    return None


def retry_after_header(exc: Refused) -> str:
    """Whole seconds, rounded up (HTTP's Retry-After has no fractions)."""
    return str(max(1, math.ceil(exc.retry_after)))
