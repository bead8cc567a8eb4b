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


def fail_until_banned(tracker: FailureTracker, source: str, now: float) -> float:
    """Fail from `source` until it is banned; returns when its ban ends."""
    for _ in range(tracker.max_failures):
        outcome = tracker.failure(source, None, now)
    assert outcome.banned and outcome.banned_until is not None
    return outcome.banned_until


def test_repeated_bans_double_up_to_the_maximum() -> None:
    # Found: the ban reset when it ended, so a guesser got 10 tries a minute (svcrack found
    # pw1001 in 241 s). Each ban within `ban_memory` of the last now lasts twice as long.
    tracker = FailureTracker(10, 60.0, 60.0, max_ban_seconds=600.0, ban_memory=3600.0)
    now, lengths = 0.0, []
    for _ in range(6):
        until = fail_until_banned(tracker, "192.0.2.1", now)
        lengths.append(until - now)
        assert tracker.is_banned("192.0.2.1", until - 1) and not tracker.is_banned(
            "192.0.2.1", until
        )
        now = until
    assert lengths == [60.0, 120.0, 240.0, 480.0, 600.0, 600.0]
    # Quiet for longer than the memory: forgiven, back to the first length.
    now += 3601.0
    assert fail_until_banned(tracker, "192.0.2.1", now) - now == 60.0
    # Another source starts at the first length whatever the first one did.
    assert fail_until_banned(tracker, "192.0.2.2", now) - now == 60.0


def test_a_guessed_user_is_guarded_but_its_own_phone_still_gets_in() -> None:
    tracker = FailureTracker(10, 60.0, 300.0, user_max_failures=20)
    tracker.record_success("1001", "10.0.0.5")  # the agent's phone
    started = []
    for i in range(20):  # 20 addresses, one guess each: no address reaches its own limit
        outcome = tracker.failure(f"198.51.100.{i}", "1001", float(i))
        assert not outcome.banned
        started.append(outcome.guarded_until)
    assert started[:19] == [None] * 19 and started[19] == 19.0 + 300.0
    assert tracker.user_refused("1001", "198.51.100.99", 20.0)  # any other address
    assert not tracker.user_refused("1001", "10.0.0.5", 20.0)  # not the agent's own phone
    assert not tracker.user_refused("1002", "198.51.100.99", 20.0)  # other users unaffected
    assert not tracker.user_refused("1001", "198.51.100.99", 319.0)  # the guard ends
    assert tracker.guard_ends("1001") is None


def test_user_counting_is_off_at_zero_and_bounded() -> None:
    off = FailureTracker(10, 60.0, 60.0)
    assert all(off.failure("10.0.0.1", "1001", t).guarded_until is None for t in range(50))
    small = FailureTracker(1000, 60.0, 60.0, max_sources=8, user_max_failures=3)
    for i in range(100):
        small.failure("10.0.0.1", f"user{i}", 0.0)
        small.record_success(f"user{i}", "10.0.0.2")
    assert len(small._user_failures) <= 8 and len(small._good) <= 8
