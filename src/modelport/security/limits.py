"""Rate limits and quotas per key, held across every replica that shares the key store.

Where: in the replicas, on a counter in the shared SQLite store, not in the Service's HAProxy.
HAProxy's stick tables would need the secret (or a map from it) in its config, cannot give each
key its own rate, forget everything on a reload or restart (a daily quota must survive both), and
a plain `modelport serve` with no Service in front needs the same limits anyway.

Cost: one SQLite write transaction per request would cap a replica near 10,000 req/s and make
every replica wait on one lock. So each replica leases a few requests at a time from the shared
bucket: 50 ms worth of the rate (100/s -> 5 requests), spent locally without touching the store.
Two replicas at 2x a key's rate accept the rate within a lease or two per second; a lease
unspent after a second goes back to the key's quota (not to its bucket: the time it held the
tokens has passed). A refused replica does not ask again before the bucket could refill.
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelport.security.keys import ApiKey, KeyStore


@dataclass(frozen=True)
class Limits:
    """Per key, shared by every replica: a token bucket (`rate` per second, up to `burst` at once)
    and a `quota` of requests per UTC day. None: no such limit."""

    rate: float | None = None
    burst: int | None = None
    quota: int | None = None


def utc_day(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d")


log = logging.getLogger("modelport.auth")

LEASE_SECONDS = 0.05  # of the rate, taken at once
LEASE_TTL = 1.0  # an unspent lease goes back after this long


@dataclass(frozen=True)
class Usage:
    tokens: float  # in the bucket, as of `refilled`
    refilled: float
    day: str  # UTC day `used` counts
    used: int


def burst_of(limits: Limits) -> float:
    """A rate with no burst given may send one second's worth at once (100/s -> 100)."""
    if limits.burst is not None:
        return float(limits.burst)
    return float(max(1, math.ceil(limits.rate or 1)))


def compute_take(
    usage: Usage | None, limits: Limits, want: int, now: float, returned: int = 0
) -> tuple[Usage, int, float]:
    """The bucket and quota after taking up to `want` requests: (usage, granted, retry_after).

    Rate 10/s, burst 20, bucket empty 0.25 s ago: 2.5 tokens now, want 2 -> granted 2, 0.5 left;
    want 5 -> none, retry in 0.25 s (when 5 are there: a lease is taken whole or not at all).
    Quota 1000/day with 999 used: want 5 -> granted 1; then 0 and retry at the next UTC midnight.
    `returned`: requests leased earlier and not spent; they no longer count against the quota.
    """
    day = utc_day(now)
    burst = burst_of(limits)
    if usage is None:
        usage = Usage(tokens=burst, refilled=now, day=day, used=0)
    used = usage.used if usage.day == day else 0
    used = max(0, used - returned)
    tokens = usage.tokens
    if limits.rate is not None:
        tokens = min(burst, tokens + max(0.0, now - usage.refilled) * limits.rate)
    granted = want
    if limits.quota is not None:
        granted = max(0, min(granted, limits.quota - used))
    if limits.rate is not None and tokens < granted:
        granted = 0  # a whole lease or none: a replica waits for one rather than ask per token
    retry = 0.0
    if granted == 0:
        if limits.quota is not None and used >= limits.quota:
            retry = _seconds_to_midnight(now)
        elif limits.rate is not None:
            retry = (min(want, burst) - tokens) / limits.rate
    if limits.rate is not None:
        tokens -= granted
    # Replicas read their clocks before they wait for the store's lock, so a take can arrive
    # with an earlier `now` than the last one: the bucket's time never goes back (it would refill
    # the same interval twice and let more than the rate through).
    return Usage(tokens, max(now, usage.refilled), day, used + granted), granted, max(0.0, retry)


def lease_size(limits: Limits) -> int:
    """Requests a replica takes at once: 50 ms of the rate, at most a thousandth of the quota."""
    size = 100
    if limits.rate is not None:
        size = min(max(1, int(limits.rate * LEASE_SECONDS)), int(burst_of(limits)))
    if limits.quota is not None:
        size = min(size, max(1, limits.quota // 1000))
    return size


@dataclass
class _Lease:
    left: int = 0
    until: float = 0.0
    refused_until: float = 0.0
    retry_at: float = 0.0


class UsageLimiter:
    """This process's side of the shared limits. `admit` is called once per request."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()  # REST and gRPC run on two event loops

    def admit(self, key: ApiKey, now: float) -> float | None:
        """None: go ahead. Else the seconds to wait before asking again (Retry-After)."""
        limits = key.limits
        if limits.rate is None and limits.quota is None:
            return None
        with self._lock:
            lease = self._leases.setdefault(key.id, _Lease())
            if lease.left > 0 and now < lease.until:
                lease.left -= 1
                return None
            if now < lease.refused_until:
                return max(lease.retry_at - now, 0.001)
            returned, lease.left = lease.left, 0
            try:
                granted, retry = self._store.take(key, lease_size(limits), now, returned)
            except Exception as exc:  # a store locked past its timeout, a full disk: serve, say so
                log.error("usage of key %s not counted (the request is let in): %s", key.id, exc)
                return None
            if granted:
                lease.left, lease.until = granted - 1, now + LEASE_TTL
                return None
            # Do not ask the store again before a lease could be there (capped: a quota's
            # retry is hours, and a key's new limits should be seen within a second).
            lease.refused_until = now + min(max(retry, 0.005), 1.0)
            lease.retry_at = now + retry
            return max(retry, 0.001)


def _seconds_to_midnight(now: float) -> float:
    today = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
    midnight = datetime.datetime.combine(today + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    return midnight.timestamp() - now
