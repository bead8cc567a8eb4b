"""TCP admission, the message deadline and descriptor accounting, on virtual time.

The rules of `softswitch.transport.admission` and `.descriptors` without sockets: which
accepted connection is kept (per-source and total caps, trunks exempt, the descriptor
reserve), when a message in progress began, how descriptors are counted between two
measurements, and how the soft open-file limit is raised.
"""

from __future__ import annotations

import os
import resource

import pytest

from softswitch.config import LimitsConfig
from softswitch.sip.errors import SipParseError
from softswitch.transport import descriptors
from softswitch.transport.admission import (
    ConnectionAdmission,
    Refusal,
    TimedFramer,
    WarningThrottle,
)
from softswitch.transport.descriptors import DescriptorCounter, raise_open_file_limit

OPTIONS = (
    b"OPTIONS sip:9000@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-1\r\n"
    b"Call-ID: a@b\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
TRUNK = "10.0.0.1"


def admission(
    *, open_fds: int = 10, limit: int = 1000, **limits: int | float
) -> tuple[ConnectionAdmission, list[int]]:
    """An admission whose process has `open_fds` descriptors besides its TCP connections
    (changed through the returned one-element list)."""
    fds = [open_fds]
    holder: list[ConnectionAdmission] = []

    def measure() -> int:
        return fds[0] + holder[0].total + 1  # + the accepted connection being admitted

    counter = DescriptorCounter(limit, measure, exact=True)
    made = ConnectionAdmission(LimitsConfig(**limits), lambda host: host == TRUNK, counter)
    holder.append(made)
    return made, fds


def test_connections_past_the_per_source_cap_are_refused_and_others_still_kept() -> None:
    gate, _ = admission(max_tcp_connections_per_source=3)
    assert [gate.admit("192.0.2.1", 0.0) for _ in range(5)] == [None] * 3 + [Refusal.PER_SOURCE] * 2
    assert gate.admit("192.0.2.2", 0.0) is None
    assert gate.total == 4 and gate.from_source("192.0.2.1") == 3
    assert gate.refused[Refusal.PER_SOURCE] == 2
    text = gate.explain(Refusal.PER_SOURCE, "192.0.2.1", 0.0)
    assert "3 connections already open from 192.0.2.1" in text
    assert "limits.max_tcp_connections_per_source: 3" in text
    gate.closed("192.0.2.1")
    assert gate.admit("192.0.2.1", 0.0) is None  # a slot came free


def test_total_cap_counts_every_connection_and_trunks_pass_both_caps() -> None:
    gate, _ = admission(max_tcp_connections=4, max_tcp_connections_per_source=2)
    gate.opened("198.51.100.9")  # one the node opened itself counts too
    kept = [gate.admit(f"192.0.2.{n}", 0.0) for n in range(1, 5)]
    assert kept == [None, None, None, Refusal.TOTAL]
    assert "4 TCP connections already open (limits.max_tcp_connections: 4)" in gate.explain(
        Refusal.TOTAL, "192.0.2.4", 0.0
    )
    # The trunk is exempt from the total and from its per-source cap alike.
    assert [gate.admit(TRUNK, 0.0) for _ in range(5)] == [None] * 5
    assert gate.total == 9 and gate.refused == {
        Refusal.PER_SOURCE: 0,
        Refusal.TOTAL: 1,
        Refusal.DESCRIPTORS: 0,
    }


def test_descriptor_reserve_refuses_everyone_including_trunks() -> None:
    # limit 100, 40 open besides TCP, reserve 50: 10 connections fit (100 - 40 - 10 = 50).
    gate, fds = admission(open_fds=40, limit=100, fd_reserve=50)
    results = [gate.admit(f"192.0.2.{n}", 0.0) for n in range(1, 13)]
    assert results == [None] * 10 + [Refusal.DESCRIPTORS] * 2
    assert gate.admit(TRUNK, 0.0) is Refusal.DESCRIPTORS
    text = gate.explain(Refusal.DESCRIPTORS, TRUNK, 0.0)
    assert "49 of 100 file descriptors free" in text and "limits.fd_reserve: 50" in text
    # Media releases descriptors: connections are kept again.
    fds[0] = 30
    assert gate.admit(TRUNK, 0.0) is None


def test_zero_reserve_lets_connections_use_every_descriptor() -> None:
    gate, _ = admission(open_fds=0, limit=5, fd_reserve=0)
    assert [gate.admit("192.0.2.1", 0.0) for _ in range(6)] == [None] * 5 + [Refusal.DESCRIPTORS]


def test_closing_forgets_a_source_with_no_connection_left() -> None:
    gate, _ = admission()
    assert gate.admit("192.0.2.1", 0.0) is None
    gate.closed("192.0.2.1")
    assert gate.total == 0 and gate.from_source("192.0.2.1") == 0
    assert gate._per_source == {}


# -- the message deadline ------------------------------------------------------------------


def test_a_message_in_progress_keeps_the_time_of_its_first_byte() -> None:
    framer = TimedFramer()
    assert framer.feed_at(OPTIONS[:1], 100.0) == []
    assert framer.started_at == 100.0 and framer.deadline(10.0) == 110.0
    assert framer.pending == 1
    for offset, at in ((1, 105.0), (2, 109.0)):  # a byte at a time does not move it
        framer.feed_at(OPTIONS[offset : offset + 1], at)
        assert framer.started_at == 100.0
    assert framer.feed_at(OPTIONS[3:], 109.5) == [OPTIONS]
    assert framer.started_at is None and framer.deadline(10.0) is None


def test_the_next_message_starts_its_own_clock_in_the_read_that_ends_the_last() -> None:
    framer = TimedFramer()
    framer.feed_at(OPTIONS[:20], 1.0)
    assert framer.feed_at(OPTIONS[20:] + OPTIONS[:5], 4.0) == [OPTIONS]
    assert framer.started_at == 4.0
    assert framer.feed_at(OPTIONS[5:] + OPTIONS, 5.0) == [OPTIONS, OPTIONS]
    assert framer.started_at is None


def test_keepalives_between_messages_are_no_message_in_progress() -> None:
    framer = TimedFramer()
    for at in range(5):
        assert framer.feed_at(b"\r\n\r\n", float(at)) == []
        assert framer.started_at is None
    assert framer.keepalives == 5
    framer.feed_at(b"\r\n\r\nOPT", 9.0)
    assert framer.started_at == 9.0 and framer.keepalives == 6


def test_a_body_arriving_slowly_is_still_the_same_message() -> None:
    framer = TimedFramer()
    message = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 4") + b"v=0\n"
    head = message.index(b"\r\n\r\n") + 4
    assert framer.feed_at(message[:head], 0.0) == []
    assert framer.feed_at(message[head : head + 2], 8.0) == []
    assert framer.started_at == 0.0
    assert framer.feed_at(message[head + 2 :], 9.0) == [message]


def test_timed_framer_raises_like_the_framer() -> None:
    with pytest.raises(SipParseError):
        TimedFramer().feed_at(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: x"), 0.0)


# -- log throttling ----------------------------------------------------------------------


def test_warning_throttle_lets_one_line_through_per_interval_and_counts_the_rest() -> None:
    throttle = WarningThrottle(interval=10.0)
    assert throttle.allow("refused", 0.0) == 0
    assert [throttle.allow("refused", t) for t in (1.0, 5.0, 9.9)] == [None] * 3
    assert throttle.allow("timeout", 2.0) == 0  # another kind has its own interval
    assert throttle.allow("refused", 10.0) == 3
    assert throttle.allow("refused", 20.0) == 0


# -- descriptor counting ----------------------------------------------------------------------


def test_estimated_count_adds_connections_since_the_last_measurement() -> None:
    readings = [50, 80]
    counter = DescriptorCounter(200, lambda: readings.pop(0), exact=False, refresh=1.0)
    assert counter.open_count(0.0, tracked=5) == 50
    assert counter.open_count(0.5, tracked=9) == 54  # four more connections, not measured
    assert counter.free(0.9, tracked=3) == 200 - 48
    assert counter.open_count(1.0, tracked=3) == 80  # measured again: media grew meanwhile
    assert readings == []


def test_without_proc_only_tcp_connections_are_counted() -> None:
    counter = DescriptorCounter(300, None, exact=True)
    assert not counter.exact
    assert counter.open_count(0.0, tracked=7) == 7
    assert "only the node's TCP connections" in counter.describe()


def test_counter_for_this_process_matches_the_descriptors_it_opens() -> None:
    counter = DescriptorCounter.for_this_process()
    assert counter.limit == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    before = counter.open_count(0.0, tracked=0)
    pipes = [os.pipe() for _ in range(10)]
    try:
        if counter.exact:
            assert counter.open_count(0.0, tracked=0) - before == 20
        else:  # the estimate sees them at its next measurement
            assert counter.open_count(counter.refresh, tracked=0) - before == 20
    finally:
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)


def test_stat_is_not_trusted_where_the_kernel_reports_no_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(descriptors, "_stat_count", lambda: 0)  # kernels before 6.2
    counter = DescriptorCounter.for_this_process(limit=1000)
    assert not counter.exact and counter.method.startswith("list ")
    assert abs(counter.open_count(0.0, tracked=0) - len(os.listdir("/proc/self/fd"))) <= 2


# -- the open-file limit ----------------------------------------------------------------------


def test_soft_limit_is_raised_to_the_hard_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"now": (1024, 4096)}
    monkeypatch.setattr(resource, "getrlimit", lambda _which: limits["now"])

    def setrlimit(_which: int, value: tuple[int, int]) -> None:
        limits["now"] = value

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    raised = raise_open_file_limit()
    assert (raised.before, raised.soft, raised.hard) == (1024, 4096, 4096)
    assert limits["now"] == (4096, 4096)
    assert raised.describe() == "4096 (raised from 1024; hard limit 4096)"
    again = raise_open_file_limit()
    assert again.describe() == "4096 (hard limit 4096)"


def test_a_refused_raise_keeps_the_soft_limit_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (256, 8192))

    def setrlimit(_which: int, _value: tuple[int, int]) -> None:
        raise ValueError("not allowed to raise maximum limit")

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    raised = raise_open_file_limit()
    assert (raised.soft, raised.hard) == (256, 8192)
    assert "could not raise it to the hard limit 8192: not allowed" in raised.describe()


def test_an_unlimited_hard_limit_raises_to_the_kernel_maximum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, resource.RLIM_INFINITY))
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "setrlimit", lambda _which, value: asked.append(value))
    monkeypatch.setattr(descriptors, "_nr_open", lambda: 65536)
    raised = raise_open_file_limit()
    assert asked == [(65536, resource.RLIM_INFINITY)]
    assert raised.soft == 65536 and raised.hard == descriptors._NR_OPEN_DEFAULT
