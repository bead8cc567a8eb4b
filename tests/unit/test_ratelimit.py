"""Per-source rate limiting and auth-failure bans (SPEC SIP-8), virtual time."""

from __future__ import annotations

import pytest

from softswitch.sip.ratelimit import FailureTracker, RateLimiter


def test_source_is_banned_after_max_failures_within_window() -> None:
    tracker = FailureTracker(max_failures=3, window=60.0, ban_seconds=600.0)
    assert not tracker.record_failure("192.0.2.1", now=0.0)
    assert not tracker.record_failure("192.0.2.1", now=10.0)
    assert not tracker.is_banned("192.0.2.1", now=10.0)
    assert tracker.record_failure("192.0.2.1", now=20.0)
    assert tracker.is_banned("192.0.2.1", now=20.0)
    assert tracker.is_banned("192.0.2.1", now=619.9)
    assert tracker.ban_ends("192.0.2.1") == 620.0
    assert not tracker.is_banned("192.0.2.1", now=620.0)
    assert not tracker.is_banned("192.0.2.2", now=20.0)


def test_failures_spread_beyond_the_window_do_not_ban() -> None:
    tracker = FailureTracker(max_failures=3, window=60.0, ban_seconds=600.0)
    for now in (0.0, 40.0, 80.0, 120.0, 160.0):
        assert not tracker.record_failure("192.0.2.1", now=now)
    assert not tracker.is_banned("192.0.2.1", now=160.0)


def test_ban_expires_and_counting_restarts() -> None:
    tracker = FailureTracker(max_failures=2, window=10.0, ban_seconds=100.0)
    tracker.record_failure("192.0.2.1", now=0.0)
    assert tracker.record_failure("192.0.2.1", now=1.0)
    assert tracker.record_failure("192.0.2.1", now=50.0)  # still banned
    assert not tracker.is_banned("192.0.2.1", now=101.0)
    assert not tracker.record_failure("192.0.2.1", now=102.0)
    assert tracker.record_failure("192.0.2.1", now=103.0)


def test_failure_tracker_memory_is_bounded() -> None:
    tracker = FailureTracker(max_failures=5, window=60.0, ban_seconds=60.0, max_sources=100)
    for i in range(10_000):
        tracker.record_failure(f"10.0.{i // 256}.{i % 256}", now=i * 0.001)
    assert tracker.tracked_sources <= 100
    # idle sources are pruned once their failures leave the window
    tracker.record_failure("192.0.2.1", now=1000.0)
    assert tracker.tracked_sources == 1


def test_ban_table_memory_is_bounded() -> None:
    tracker = FailureTracker(max_failures=1, window=60.0, ban_seconds=3600.0, max_bans=50)
    for i in range(500):
        assert tracker.record_failure(f"10.1.{i // 256}.{i % 256}", now=float(i))
    assert tracker.banned_sources <= 50
    assert tracker.is_banned("10.1.1.243", now=500.0)  # the most recent ban survives


def test_token_bucket_allows_burst_then_sustained_rate() -> None:
    limiter = RateLimiter(rate_per_second=2.0, burst=4)
    assert [limiter.allow("a", now=0.0) for _ in range(5)] == [True] * 4 + [False]
    assert not limiter.allow("a", now=0.25)  # half a token
    assert limiter.allow("a", now=0.5)
    assert not limiter.allow("a", now=0.5)
    # an independent key has its own bucket
    assert limiter.allow("b", now=0.5)
    # after refilling, a full burst again but never more than burst
    assert [limiter.allow("a", now=100.0) for _ in range(5)] == [True] * 4 + [False]


def test_rate_limiter_evicts_idle_keys_without_changing_answers() -> None:
    limiter = RateLimiter(rate_per_second=10.0, burst=5)
    for i in range(1000):
        limiter.allow(("10.0.0.1", i), now=0.0)
    assert limiter.tracked_keys == 1000
    assert limiter.allow("fresh", now=0.5)  # 0.5 s = full refill: all idle keys dropped
    assert limiter.tracked_keys == 1


def test_rate_limiter_memory_is_bounded_under_spoofed_flood() -> None:
    limiter = RateLimiter(rate_per_second=1.0, burst=2, max_keys=64)
    for i in range(10_000):
        limiter.allow(i, now=0.0)
    assert limiter.tracked_keys == 64


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate_per_second=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate_per_second=1, burst=0.5)
    with pytest.raises(ValueError):
        FailureTracker(max_failures=0, window=1, ban_seconds=1)
