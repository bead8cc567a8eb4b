"""Per-source protection against floods and digest brute force (SPEC SIP-8).

Sans-IO and bounded in memory: both trackers keep at most `max_keys` sources, ordered by last
activity, so pruning idle sources is O(1) amortised from the front of an ordered dict.

- `FailureTracker` bans a source after `max_failures` authentication failures within `window`
  seconds, for `ban_seconds`. Record only real failures: a wrong response (``ok`` and
  ``stale`` both false, credentials present), not the first unauthenticated request that
  merely draws a challenge, nor a stale nonce.
- `RateLimiter` is a token bucket per key (source address, or address and method):
  `rate_per_second` sustained with bursts up to `burst`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

__all__ = ["FailureTracker", "RateLimiter"]


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
    ) -> None:
        """Raises ValueError on non-positive limits."""
        if max_failures < 1 or window <= 0 or ban_seconds <= 0:
            raise ValueError("max_failures, window and ban_seconds must be positive")
        if max_sources < 1 or max_bans < 1:
            raise ValueError("max_sources and max_bans must be positive")
        self.max_failures = max_failures
        self.window = float(window)
        self.ban_seconds = float(ban_seconds)
        self.max_sources = max_sources
        self.max_bans = max_bans
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # by last failure
        self._bans: dict[str, float] = {}  # source -> banned until

    def record_failure(self, source_ip: str, now: float) -> bool:
        """Count one failure; returns True if the source is (now) banned."""
        if self.is_banned(source_ip, now):
            return True
        self._prune_failures(now)
        times = self._failures.pop(source_ip, None)
        if times is None:
            if len(self._failures) >= self.max_sources:
                self._failures.popitem(last=False)
            times = deque(maxlen=self.max_failures)
        times.append(now)
        if len(times) == self.max_failures and now - times[0] <= self.window:
            self._ban(source_ip, now)
            return True
        self._failures[source_ip] = times
        return False

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

    def _ban(self, source_ip: str, now: float) -> None:
        if len(self._bans) >= self.max_bans:
            self._bans = {ip: until for ip, until in self._bans.items() if until > now}
            if len(self._bans) >= self.max_bans:
                del self._bans[min(self._bans, key=self._bans.__getitem__)]
        self._bans[source_ip] = now + self.ban_seconds

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
