"""Which TCP connections the node keeps, and how long a started message may take to arrive.

No sockets and no clock here: the asyncio transport (`softswitch.transport`) passes `now`
in, asks `ConnectionAdmission.admit` about each accepted connection and closes it at once
when the answer is a `Refusal`, and closes a connection whose `TimedFramer` holds a message
older than `limits.tcp_header_timeout`. The keys themselves are described in the package
docstring and in docs/admin.md.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable

from softswitch.config import LimitsConfig
from softswitch.sip.framing import StreamFramer

from .descriptors import DescriptorCounter

__all__ = ["ConnectionAdmission", "Refusal", "TimedFramer", "WarningThrottle"]


class Refusal(enum.Enum):
    """Why a TCP connection was refused; the value is the `limits` key it ran into."""

    PER_SOURCE = "max_tcp_connections_per_source"
    TOTAL = "max_tcp_connections"
    DESCRIPTORS = "fd_reserve"


class ConnectionAdmission:
    """Counts TCP connections per remote host and in total, and refuses new inbound ones
    past `limits` (trunk sources are exempt from both counts' caps, not from `fd_reserve`).

    Connections the node opens itself are counted (`opened`) but never refused: they carry
    requests of calls already in progress.
    """

    def __init__(
        self,
        limits: LimitsConfig,
        is_trunk_source: Callable[[str], bool],
        descriptors: DescriptorCounter,
    ) -> None:
        self.limits = limits
        self.is_trunk_source = is_trunk_source
        self.descriptors = descriptors
        self.total = 0
        self._per_source: dict[str, int] = {}
        self.refused: dict[Refusal, int] = dict.fromkeys(Refusal, 0)

    def admit(self, host: str, now: float) -> Refusal | None:
        """A connection from `host` was just accepted (its descriptor is open): None if it
        may stay (it is counted then), else why it must be closed at once."""
        limits = self.limits
        refusal: Refusal | None = None
        if not self.is_trunk_source(host):
            if self._per_source.get(host, 0) >= limits.max_tcp_connections_per_source:
                refusal = Refusal.PER_SOURCE
            elif self.total >= limits.max_tcp_connections:
                refusal = Refusal.TOTAL
        if refusal is None and self.free_descriptors(now) < limits.fd_reserve:
            refusal = Refusal.DESCRIPTORS
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        self.opened(host)
        return None

    def free_descriptors(self, now: float) -> int:
        """Descriptors left below the limit, the just-accepted connection's already taken."""
        return self.descriptors.free(now, self.total + 1)

    def opened(self, host: str) -> None:
        """Count a connection with `host` (accepted by `admit`, or opened by the node)."""
        self.total += 1
        self._per_source[host] = self._per_source.get(host, 0) + 1

    def closed(self, host: str) -> None:
        """A counted connection with `host` is gone."""
        self.total -= 1
        left = self._per_source.get(host, 0) - 1
        if left > 0:
            self._per_source[host] = left
        else:
            self._per_source.pop(host, None)

    def from_source(self, host: str) -> int:
        """Connections counted with `host` now."""
        return self._per_source.get(host, 0)

    def explain(self, refusal: Refusal, host: str, now: float) -> str:
        """What the refused connection ran into, naming the configuration key."""
        limits = self.limits
        if refusal is Refusal.PER_SOURCE:
            return (
                f"{self.from_source(host)} connections already open from {host} "
                f"(limits.max_tcp_connections_per_source: {limits.max_tcp_connections_per_source})"
            )
        if refusal is Refusal.TOTAL:
            return (
                f"{self.total} TCP connections already open "
                f"(limits.max_tcp_connections: {limits.max_tcp_connections})"
            )
        return (
            f"{max(0, self.free_descriptors(now))} of "
            f"{self.descriptors.limit} file descriptors free (limits.fd_reserve: "
            f"{limits.fd_reserve} are kept for media, SQLite and recordings)"
        )


class TimedFramer(StreamFramer):
    """A `StreamFramer` that knows since when its message in progress has been arriving.

    After `feed` the framer's buffer is empty or holds the start of the next message
    (keep-alive CRLFs between messages are consumed), so a non-empty buffer is a message in
    progress: `started_at` is when its first bytes came, None between messages.
    """

    __slots__ = ("started_at",)

    def __init__(self, max_size: int = 65535) -> None:
        super().__init__(max_size)
        self.started_at: float | None = None

    def feed_at(self, data: bytes, now: float) -> list[bytes]:
        """`feed` (raises SipParseError the same way), remembering when a message began."""
        messages = self.feed(data)
        if not self._buffer:
            self.started_at = None
        elif messages or self.started_at is None:
            self.started_at = now  # what is left began in this read
        return messages

    @property
    def pending(self) -> int:
        """Bytes of the message in progress received so far."""
        return len(self._buffer)

    def deadline(self, timeout: float) -> float | None:
        """When the message in progress must be complete; None between messages."""
        return None if self.started_at is None else self.started_at + timeout


class WarningThrottle:
    """At most one log line per kind of event every `interval` seconds; the events in
    between are counted, and the next line that is let through says how many there were."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[Hashable, float] = {}
        self._skipped: dict[Hashable, int] = {}

    def allow(self, kind: Hashable, now: float) -> int | None:
        """None: do not log this one. Otherwise log it, with the returned count of events of
        `kind` left unlogged since the last line."""
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._skipped.pop(kind, 0)
