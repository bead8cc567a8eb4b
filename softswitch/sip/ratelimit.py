"""Per-source protection against floods and digest brute force (SPEC SIP-8).

Sans-IO and bounded in memory: both trackers keep at most `max_keys` sources, ordered by last
activity, so pruning idle sources is O(1) amortised from the front of an ordered dict.

- `FailureTracker` bans a source after `max_failures` authentication failures within `window`
  seconds, for `ban_seconds`, doubled for each earlier ban of that source remembered within
  `ban_memory` (up to `max_ban_seconds`): a patient guesser gets 10 tries, then 10 more an
  hour later, not 10 a minute. Failures are also counted per user: `user_max_failures`
  within `window` for one user (from any number of addresses) guard that user, whose
  attempts are then refused, unchecked, from every address except those it last
  authenticated from (the agent's own phone keeps working). Record only real failures: a
  wrong response (``ok`` and ``stale`` both false, credentials present), not the first
  unauthenticated request that merely draws a challenge, nor a stale nonce.
- `RateLimiter` is a token bucket per key (source address, or address and method):
  `rate_per_second` sustained with bursts up to `burst`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

import msgspec

__all__ = ["FailureOutcome", "FailureTracker", "RateLimiter"]

GOOD_HOSTS_PER_USER = 4  # addresses a user last authenticated from, exempt from its guard


class FailureOutcome(msgspec.Struct, frozen=True):
    """What one failure changed: a ban that starts now (`banned_until`), or a user guard
    that starts now (`guarded_until`); `bans` counts the source's bans remembered."""

    banned: bool  # the source is banned (already, or from now)
    banned_until: float | None = None  # set when this failure started the ban
    bans: int = 0
    guarded_until: float | None = None  # set when this failure started the user's guard


class FailureTracker:
    """Ban a source after repeated authentication failures within a sliding window.

    Per source at most `max_failures` timestamps are kept. At `max_sources` tracked sources
    the one with the oldest last failure is forgotten (its count restarts); at `max_bans`
    bans the ban that ends first is dropped early. A flood of spoofed addresses can thus
    shorten other bans but never grow memory.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        ban_seconds: float,
        max_sources: int = 65536,
        max_bans: int = 65536,
        *,
        max_ban_seconds: float | None = None,
        ban_memory: float = 86400.0,
        user_max_failures: int = 0,
    ) -> None:
        """Raises ValueError on non-positive limits. `user_max_failures` 0: no per-user
        counting; `max_ban_seconds` None: bans do not grow."""
        if max_failures < 1 or window <= 0 or ban_seconds <= 0:
            raise ValueError("max_failures, window and ban_seconds must be positive")
        if max_sources < 1 or max_bans < 1:
            raise ValueError("max_sources and max_bans must be positive")
        if ban_memory < 0 or user_max_failures < 0:
            raise ValueError("ban_memory and user_max_failures must not be negative")
        self.max_failures = max_failures
        self.window = float(window)
        self.ban_seconds = float(ban_seconds)
        self.max_ban_seconds = float(max_ban_seconds or ban_seconds)
        self.ban_memory = float(ban_memory)
        self.user_max_failures = user_max_failures
        self.max_sources = max_sources
        self.max_bans = max_bans
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # by last failure
        self._bans: dict[str, float] = {}  # source -> banned until
        # source -> (bans so far, when the last one ended); forgotten `ban_memory` later
        self._strikes: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._user_failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._guards: dict[str, float] = {}  # user -> guarded until
        self._good: OrderedDict[str, tuple[str, ...]] = OrderedDict()  # user -> its hosts

    def record_failure(self, source_ip: str, now: float) -> bool:
        """Count one failure; returns True if the source is (now) banned."""
        return self.failure(source_ip, None, now).banned

    def failure(self, source_ip: str, user: str | None, now: float) -> FailureOutcome:
        """Count one failed authentication of `user` (None: no user to count) from
        `source_ip`; says whether a ban or a guard started."""
        guarded_until = self._count_user(user, now) if user is not None else None
        if self.is_banned(source_ip, now):
            return FailureOutcome(True, guarded_until=guarded_until)
        self._prune_failures(now)
        times = self._failures.pop(source_ip, None)
        if times is None:
            if len(self._failures) >= self.max_sources:
                self._failures.popitem(last=False)
            times = deque(maxlen=self.max_failures)
        times.append(now)
        if len(times) == self.max_failures and now - times[0] <= self.window:
            until, bans = self._ban(source_ip, now)
            return FailureOutcome(True, until, bans, guarded_until)
        self._failures[source_ip] = times
        return FailureOutcome(False, guarded_until=guarded_until)

    def record_success(self, user: str, source_ip: str) -> None:
        """`user` authenticated from `source_ip`: that address stays open to it when the
        user is guarded."""
        hosts = self._good.pop(user, ())
        self._good[user] = (source_ip, *(h for h in hosts if h != source_ip))[:GOOD_HOSTS_PER_USER]
        if len(self._good) > self.max_sources:
            self._good.popitem(last=False)

    def user_refused(self, user: str, source_ip: str, now: float) -> bool:
        """Whether an attempt for `user` from `source_ip` is refused unchecked: the user is
        guarded and the address is not one it authenticated from."""
        until = self._guards.get(user)
        if until is None:
            return False
        if until <= now:
            del self._guards[user]
            return False
        return source_ip not in self._good.get(user, ())

    def guard_ends(self, user: str) -> float | None:
        return self._guards.get(user)

    def _count_user(self, user: str, now: float) -> float | None:
        if not self.user_max_failures:
            return None
        failures = self._user_failures
        horizon = now - self.window
        while failures and next(iter(failures.values()))[-1] < horizon:
            failures.popitem(last=False)
        times = failures.pop(user, None)
        if times is None:
            if len(failures) >= self.max_sources:
                failures.popitem(last=False)
            times = deque(maxlen=self.user_max_failures)
        times.append(now)
        failures[user] = times
        already = self._guards.get(user, 0.0) > now
        if already or len(times) < self.user_max_failures or now - times[0] > self.window:
            return None
        if len(self._guards) >= self.max_bans:
            self._guards = {u: t for u, t in self._guards.items() if t > now}
            if len(self._guards) >= self.max_bans:
                del self._guards[min(self._guards, key=self._guards.__getitem__)]
        until = now + max(self.ban_seconds, self.window)
        self._guards[user] = until
        return until

    def is_banned(self, source_ip: str, now: float) -> bool:
        """Whether requests from `source_ip` should be dropped or refused now."""
        until = self._bans.get(source_ip)
        if until is None:
            return False
        if until > now:
            return True
        del self._bans[source_ip]
        return False

    def ban_ends(self, source_ip: str) -> float | None:
        """When the ban of `source_ip` ends (None if not banned), for logs and the API."""
        return self._bans.get(source_ip)

    def _ban(self, source_ip: str, now: float) -> tuple[float, int]:
        if len(self._bans) >= self.max_bans:
            self._bans = {ip: until for ip, until in self._bans.items() if until > now}
            if len(self._bans) >= self.max_bans:
                del self._bans[min(self._bans, key=self._bans.__getitem__)]
        strikes = self._strikes
        while strikes and next(iter(strikes.values()))[1] + self.ban_memory < now:
            strikes.popitem(last=False)  # bans older than the memory are forgiven
        earlier, _ = strikes.pop(source_ip, (0, 0.0))
        seconds = min(self.max_ban_seconds, self.ban_seconds * 2.0 ** min(earlier, 60))
        until = now + max(seconds, self.ban_seconds)
        self._bans[source_ip] = until
        strikes[source_ip] = (earlier + 1, until)
        if len(strikes) > self.max_bans:
            strikes.popitem(last=False)
        return until, earlier + 1

    def _prune_failures(self, now: float) -> None:
        """Drop sources whose last failure left the window (they could not ban any more)."""
        failures = self._failures
        horizon = now - self.window
        while failures:
            times = next(iter(failures.values()))
            if times[-1] >= horizon:
                break
            failures.popitem(last=False)

    @property
    def tracked_sources(self) -> int:
        """Sources with failures in memory (for metrics and tests)."""
        return len(self._failures)

    @property
    def banned_sources(self) -> int:
        """Bans in memory, some possibly already over (for metrics)."""
        return len(self._bans)


class RateLimiter:
    """Token bucket per key: `rate_per_second` sustained, bursts up to `burst`.

    A key idle long enough to have refilled its bucket (``burst / rate_per_second`` seconds)
    is equivalent to an unknown key, so it is dropped without changing any answer. When
    `max_keys` keys are all active, the least recently seen one is dropped (it gets a full
    bucket if it comes back): memory stays bounded under a flood of spoofed sources.
    """

    def __init__(self, rate_per_second: float, burst: float, max_keys: int = 65536) -> None:
        """Raises ValueError on non-positive rate or a burst below one request."""
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be positive and burst at least 1")
        if max_keys < 1:
            raise ValueError("max_keys must be positive")
        self.rate = float(rate_per_second)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._refill_time = self.burst / self.rate
        # key -> (tokens, last update); ordered by last update
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> bool:
        """Take one token for `key`; False if its bucket is empty (refuse or drop)."""
        buckets = self._buckets
        state = buckets.pop(key, None)
        self._evict_idle(now)
        if state is None:
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            tokens = self.burst
        else:
            tokens, last = state
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        buckets[key] = (tokens, now)
        return allowed

    def _evict_idle(self, now: float) -> None:
        buckets = self._buckets
        horizon = now - self._refill_time
        while buckets:
            _tokens, last = next(iter(buckets.values()))
            if last > horizon:
                break
            buckets.popitem(last=False)

    @property
    def tracked_keys(self) -> int:
        """Keys in memory (for metrics and tests)."""
        return len(self._buckets)
