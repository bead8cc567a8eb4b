"""The node's file descriptors: the limit it runs with and how many it has open.

Every TCP connection, RTP socket (two per anchored leg), SQLite file and recording is one
descriptor, and all of them come out of one per-process limit (RLIMIT_NOFILE). At start the
node raises the soft limit to the hard one (`raise_open_file_limit`); while it runs, the TCP
transport asks `DescriptorCounter` before it keeps an accepted connection, so that a flood
of connections cannot take the descriptors a call's media needs (`limits.fd_reserve`).

Counting. On Linux 6.2 and later `stat("/proc/self/fd").st_size` is the number of open
descriptors, read in about 2 µs whatever their number, so every accepted connection is
counted exactly. Older kernels report 0 there; listing the directory instead costs about
0.3 ms at 1,000 descriptors and 2.7 ms at 5,000 (measured on the 2-core test machine), too
much for every connection of a flood, so it is done at most once per `refresh` seconds and
the TCP connections opened or closed since then are added to that count. Without /proc
only the node's own TCP connections are counted (and the start-up log says so).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

import msgspec

__all__ = ["DescriptorCounter", "OpenFileLimit", "raise_open_file_limit"]

PROC_FD = "/proc/self/fd"
# Linux's default fs.nr_open: the most a soft limit can be raised to when the hard limit
# is "unlimited" (setrlimit refuses more than fs.nr_open).
_NR_OPEN_DEFAULT = 1048576


class OpenFileLimit(msgspec.Struct, frozen=True):
    """RLIMIT_NOFILE before and after `raise_open_file_limit`."""

    before: int  # the soft limit the node was started with
    soft: int  # the soft limit it runs with
    hard: int
    error: str = ""  # why raising failed, if it did

    def describe(self) -> str:
        """One log line's worth: the limit and how it came about."""
        if self.error:
            return f"{self.soft} (could not raise it to the hard limit {self.hard}: {self.error})"
        if self.soft != self.before:
            return f"{self.soft} (raised from {self.before}; hard limit {self.hard})"
        return f"{self.soft} (hard limit {self.hard})"


def _as_int(value: int) -> int:
    return _NR_OPEN_DEFAULT if value == resource.RLIM_INFINITY else int(value)


def raise_open_file_limit() -> OpenFileLimit:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit where the system allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        target = _nr_open()
    else:
        target = hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            return OpenFileLimit(_as_int(soft), _as_int(soft), _as_int(hard), str(exc))
        return OpenFileLimit(_as_int(soft), target, _as_int(hard))
    return OpenFileLimit(_as_int(soft), _as_int(soft), _as_int(hard))


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return _NR_OPEN_DEFAULT


def _stat_count() -> int:
    return os.stat(PROC_FD).st_size


def _listdir_count() -> int:
    return len(os.listdir(PROC_FD)) - 1  # the listing's own descriptor of the directory


class DescriptorCounter:
    """Open descriptors of the process, exact or estimated (see the module docstring).

    `measure()` returns the process's open descriptors; `exact` says it is cheap enough to
    call for every connection. Otherwise a measurement is reused for `refresh` seconds, with
    `tracked` (the TCP connections open now) minus `tracked` at the measurement added to it.
    Without `measure`, only `tracked` is counted.
    """

    def __init__(
        self,
        limit: int,
        measure: Callable[[], int] | None,
        *,
        exact: bool,
        refresh: float = 1.0,
        method: str = "",
    ) -> None:
        self.limit = limit
        self.measure = measure
        self.exact = exact and measure is not None
        self.refresh = refresh
        self.method = method or ("exact" if self.exact else "estimate")
        self._measured = 0
        self._tracked_then = 0
        self._measured_at: float | None = None

    @classmethod
    def for_this_process(cls, limit: int | None = None) -> DescriptorCounter:
        """The cheapest counting method that works here; `limit` defaults to the soft limit."""
        if limit is None:
            limit = _as_int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        try:
            listed = _listdir_count()
        except OSError:
            return cls(limit, None, exact=False, method="none")
        try:
            counted = _stat_count()
        except OSError:
            counted = 0
        # Another thread may open or close a descriptor between the two readings.
        if counted > 0 and abs(counted - listed) <= 2:
            return cls(limit, _stat_count, exact=True, method=f"stat {PROC_FD}")
        return cls(limit, _listdir_count, exact=False, method=f"list {PROC_FD}")

    def open_count(self, now: float, tracked: int) -> int:
        """Descriptors open now; `tracked` is the number of TCP connections open now."""
        if self.measure is None:
            return tracked
        if self.exact:
            return self.measure()
        if self._measured_at is None or now - self._measured_at >= self.refresh:
            self._measured = self.measure()
            self._tracked_then = tracked
            self._measured_at = now
        return self._measured + tracked - self._tracked_then

    def free(self, now: float, tracked: int) -> int:
        """Descriptors that can still be opened before the limit."""
        return self.limit - self.open_count(now, tracked)

    def describe(self) -> str:
        """How descriptors are counted, for the start-up log."""
        if self.measure is None:
            return "no /proc/self/fd: only the node's TCP connections are counted"
        if self.exact:
            return f"counted exactly ({self.method})"
        return f"counted every {self.refresh:g} s ({self.method}) plus TCP connections since"
