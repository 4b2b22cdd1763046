"""The shared token bucket and daily quota, as pure arithmetic; and one process's leases."""

from __future__ import annotations

import datetime

import pytest

from modelport.security.keys import ApiKey
from modelport.security.limits import Limits, Usage, UsageLimiter, compute_take, lease_size

NOON = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC).timestamp()
DAY = "2026-12-07"


@pytest.mark.parametrize(
    "usage,limits,want,now,granted,retry,after",
    [
        # a new key starts with a full bucket: burst 20
        (None, Limits(10, 20), 5, NOON, 5, 0.0, Usage(15, NOON, DAY, 5)),
        # empty 0.25 s ago at 10/s: 2.5 tokens; 2 granted, 0.5 left
        (Usage(0, NOON - 0.25, DAY, 7), Limits(10, 20), 2, NOON, 2, 0.0, Usage(0.5, NOON, DAY, 9)),
        # a lease is whole or nothing: 2.5 tokens, want 5 -> none, 5 there in 0.25 s
        (Usage(0, NOON - 0.25, DAY, 7), Limits(10, 20), 5, NOON, 0, 0.25, Usage(2.5, NOON, DAY, 7)),
        # refilled past the burst: capped at the burst
        (Usage(0, NOON - 100, DAY, 0), Limits(10, 20), 20, NOON, 20, 0.0, Usage(0, NOON, DAY, 20)),
        # no burst given: one second of the rate
        (None, Limits(100), 100, NOON, 100, 0.0, Usage(0, NOON, DAY, 100)),
        # quota: 999 of 1000 used, want 5 -> 1
        (Usage(0, NOON, DAY, 999), Limits(quota=1000), 5, NOON, 1, 0.0, Usage(0, NOON, DAY, 1000)),
        # quota spent: retry at UTC midnight, 12 h away
        (Usage(0, NOON, DAY, 1000), Limits(quota=1000), 5, NOON, 0, 43200.0, Usage(0, NOON, DAY, 1000)),
        # a new day: the quota starts again
        (Usage(0, NOON - 86400, "2026-12-06", 1000), Limits(quota=1000), 5, NOON, 5, 0.0,
         Usage(0, NOON, DAY, 5)),
    ],
)  # fmt: skip
def test_compute_take(
    usage: Usage | None, limits: Limits, want: int, now: float, granted: int, retry: float, after: Usage
) -> None:
    got_after, got_granted, got_retry = compute_take(usage, limits, want, now)
    assert (got_granted, got_after) == (granted, after)
    assert got_retry == pytest.approx(retry)


def test_requests_leased_and_not_spent_go_back_to_the_quota() -> None:
    after, granted, _ = compute_take(Usage(0, NOON, DAY, 100), Limits(quota=1000), 10, NOON, returned=4)
    assert (granted, after.used) == (10, 106)


@pytest.mark.parametrize(
    "limits,size", [(Limits(100), 5), (Limits(10), 1), (Limits(1000, 20), 20), (Limits(quota=1_000_000), 100),
                    (Limits(quota=5000), 5), (Limits(2000, quota=3000), 3)],
)  # fmt: skip
def test_a_lease_is_50_ms_of_the_rate_at_most_a_thousandth_of_the_quota(limits: Limits, size: int) -> None:
    assert lease_size(limits) == size


class CountingStore:
    """A store of one key's usage in memory (the SQLite store is tested through the server)."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.takes = 0

    def take(self, key: ApiKey, want: int, now: float, returned: int = 0) -> tuple[int, float]:
        self.takes += 1
        self.usage, granted, retry = compute_take(self.usage, key.limits, want, now, returned)
        return granted, retry


def test_two_replicas_sharing_a_store_accept_the_rate_at_twice_the_rate() -> None:
    """100/s, burst 100, 10 s at 200/s spread over two replicas: about 100 + 1000 accepted."""
    store = CountingStore()
    key = ApiKey("0123abcd", "k", "", ("predict",), ("*",), Limits(100, 100))
    replicas = [UsageLimiter(store), UsageLimiter(store)]  # type: ignore[arg-type]
    accepted = 0
    for i in range(2000):
        now = NOON + i * 0.005
        accepted += replicas[i % 2].admit(key, now) is None
    assert 1000 * 0.9 + 100 <= accepted <= 1000 * 1.1 + 100
    assert store.takes < 2000 / 4  # leases: far fewer store writes than requests


def test_takes_that_reach_the_store_out_of_order_refill_no_interval_twice() -> None:
    """Two replicas whose clock readings reach the store late and out of order (a busy event loop
    reads the time, then waits for the store's lock): 40/s for 10 s is still 40/s."""
    store = CountingStore()
    key = ApiKey("0123abcd", "k", "", ("predict",), ("*",), Limits(40, 4))
    replicas = [UsageLimiter(store), UsageLimiter(store)]  # type: ignore[arg-type]
    accepted = 0
    for i in range(800):  # 80/s, each reading 0-50 ms late, the later replica first
        late = 0.05 if i % 2 else 0.0
        accepted += replicas[i % 2].admit(key, NOON + i / 80 - late) is None
    assert 40 * 10 * 0.9 <= accepted <= 40 * 10 * 1.1 + 4, accepted


class BrokenStore:
    def take(self, key: ApiKey, want: int, now: float, returned: int = 0) -> tuple[int, float]:
        raise OSError("disk full")


def test_a_store_that_fails_lets_the_request_in_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    key = ApiKey("0123abcd", "k", "", ("predict",), ("*",), Limits(100, 100))
    assert UsageLimiter(BrokenStore()).admit(key, NOON) is None  # type: ignore[arg-type]
    assert "usage of key 0123abcd not counted (the request is let in): disk full" in caplog.text


class LockedForWrites:
    """A store whose reads work and whose writes fail (another process holds the write lock)."""

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    def list_keys(self) -> list[ApiKey]:
        return [self.key]

    def changed(self) -> bool:
        raise OSError("unreadable")

    def touch(self, used: dict[str, float]) -> None:
        raise OSError("database is locked")

    def take(self, key: ApiKey, want: int, now: float, returned: int = 0) -> tuple[int, float]:
        raise OSError("database is locked")


def test_a_store_that_cannot_be_written_still_has_its_keys_read_and_checked() -> None:
    from modelport.security.auth import Authenticator, Refused
    from modelport.security.keys import digest
    from modelport.testing.clock import FakeClock

    key = ApiKey("0123abcd", "k", digest("s3cret"), ("predict",), ("*",), Limits(100, 100))
    store = LockedForWrites(key)
    clock = FakeClock()
    auth = Authenticator(store, clock)  # type: ignore[arg-type]
    assert auth.check("mpk_0123abcd_s3cret", "predict", "m", "c").id == "0123abcd"
    clock.advance(3)  # past a re-read: last-used times cannot be written, the keys are read again
    store.key = ApiKey("0123abcd", "k", digest("s3cret"), ("predict",), ("*",), revoked=1.0)
    with pytest.raises(Refused):
        auth.check("mpk_0123abcd_s3cret", "predict", "m", "c")
    with pytest.raises(Refused):  # an id never seen, a store that cannot say whether it changed
        auth.check("mpk_89abcdef_other", "predict", "m", "c")
