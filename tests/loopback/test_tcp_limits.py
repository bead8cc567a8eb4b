"""TCP limits of a running node (issue 8): the message deadline, connection caps, and the
descriptors kept for media, over real sockets on loopback.

A sender that trickles a request a byte at a time is cut off `tcp_header_timeout` after its
first byte, while an idle connection stays. Under a low open-file limit the node refuses
connections past the per-source cap, the total cap (trunks exempt from both) and the
descriptor reserve (trunks included), stays up, and a trunk call still completes.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import LOOPBACK, HotlineNode, Sipp
from .ivr_support import OFFICE_HOURS, TEST_DIALPLAN
from .test_sip_robustness import assert_still_serving, request

# Only 127.0.0.1 is the carrier here (the shipped trunk takes all of loopback).
TRUNK_ONLY_LOCALHOST = {
    "trunks": [{"name": "carrier", "acl": ["127.0.0.1/32"], "digest": None, "caller_id": "12345"}]
}


class LimitedNode(HotlineNode):
    """A HotlineNode started under `prlimit --nofile=SOFT:HARD`."""

    def __init__(self, work_dir: Path, *, nofile: str, **kwargs: Any) -> None:
        self.nofile = nofile
        super().__init__(work_dir, **kwargs)

    @property
    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={self.nofile}", "--", *super().command]

    def open_descriptors(self) -> int:
        assert self.process is not None
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


@pytest.fixture
def limited_node(tmp_path: Path) -> Iterator[Callable[..., LimitedNode]]:
    """Factory: `limited_node(nofile="128:256", limits={...}, ...)` -> a started node."""
    started: list[LimitedNode] = []

    def make(nofile: str, **kwargs: Any) -> LimitedNode:
        hotline = LimitedNode(tmp_path / f"limited{len(started) + 1}", nofile=nofile, **kwargs)
        started.append(hotline)
        return hotline.start()

    yield make
    for hotline in reversed(started):
        hotline.stop()


def connect_from(source: str, node: HotlineNode) -> socket.socket:
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.bind((source, 0))  # any 127.0.0.x is local on Linux
    conn.settimeout(2.0)
    conn.connect((LOOPBACK, node.port))
    return conn


def closed_by_peer(conn: socket.socket) -> bool:
    """Whether the node has closed `conn` (EOF or reset is waiting on it)."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return conn.recv(4096, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def settle(conns: list[socket.socket], quiet: float = 0.6, timeout: float = 5.0) -> int:
    """Wait until no more of `conns` get closed for `quiet` seconds (bounded by `timeout`);
    close and drop the closed ones from the list, return how many that were."""
    closed: set[socket.socket] = set()
    deadline = time.monotonic() + timeout
    last_change = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last_change < quiet:
        newly = {c for c in conns if c not in closed and closed_by_peer(c)}
        if newly:
            closed |= newly
            last_change = time.monotonic()
        time.sleep(0.05)
    for conn in closed:
        conns.remove(conn)
        conn.close()
    return len(closed)


def open_batch(source: str, count: int, node: HotlineNode, kept: list[socket.socket]) -> int:
    """Open `count` connections from `source`; keep the ones the node keeps; return how
    many it refused."""
    batch = [connect_from(source, node) for _ in range(count)]
    refused = settle(batch)
    kept.extend(batch)
    return refused


def options_over(conn: socket.socket, node: HotlineNode, timeout: float = 3.0) -> bytes:
    """An OPTIONS over an open connection and the first response line's bytes."""
    port = str(conn.getsockname()[1])
    conn.sendall(request("OPTIONS", node, transport="TCP", local_port=port))
    conn.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in received and time.monotonic() < deadline:
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_a_request_trickling_in_is_cut_off_at_the_header_deadline_idle_ones_stay(
    node: Callable[..., HotlineNode],
) -> None:
    hotline = node(node={"node": {"tcp_idle_timeout": 60}, "limits": {"tcp_header_timeout": 2.0}})
    idle = socket.create_connection((LOOPBACK, hotline.port), timeout=2.0)
    trickle = socket.create_connection((LOOPBACK, hotline.port), timeout=2.0)
    data = request("OPTIONS", hotline, transport="TCP", local_port="5999")
    first_byte = time.monotonic()
    closed_after = None
    with idle, trickle:
        # One byte every 0.3 s: the request would take about 90 s to arrive.
        for index in range(30):  # 9 s at most
            try:
                trickle.sendall(data[index : index + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - first_byte
                break
            if closed_by_peer(trickle):
                closed_after = time.monotonic() - first_byte
                break
            time.sleep(0.3)
        assert closed_after is not None, f"trickling connection left open\n{hotline.describe()}"
        assert 1.8 <= closed_after <= 3.5, closed_after
        line = hotline.wait_for_log("limits.tcp_header_timeout")
        assert "its message is incomplete after" in line, line

        # The idle connection outlived the deadline (no message in progress) and is served.
        assert not closed_by_peer(idle)
        response = options_over(idle, hotline)
        assert response.startswith(b"SIP/2.0 200 "), response

        # A request whose parts arrive within the deadline is answered.
        slow = socket.create_connection((LOOPBACK, hotline.port), timeout=2.0)
        with slow:
            port = str(slow.getsockname()[1])
            whole = request("OPTIONS", hotline, transport="TCP", local_port=port)
            for part in (whole[:40], whole[40:90], whole[90:]):
                slow.sendall(part)
                time.sleep(0.4)
            slow.settimeout(3.0)
            assert slow.recv(65536).startswith(b"SIP/2.0 200 ")
    assert_still_serving(hotline)


def test_under_a_low_descriptor_limit_excess_connections_are_refused_and_calls_go_on(
    limited_node: Callable[..., LimitedNode], sipp: Callable[..., Sipp]
) -> None:
    reserve = 160
    # The IVR's test dialplan (short prompts) in office hours answers 12345.
    hotline = limited_node(
        "128:256",
        extra_args=["--clock", OFFICE_HOURS],
        dialplan=TEST_DIALPLAN,
        trunks=TRUNK_ONLY_LOCALHOST,
        node={
            "limits": {
                "max_tcp_connections": 40,
                "max_tcp_connections_per_source": 8,
                "fd_reserve": reserve,
            }
        },
    )
    # The node raised its soft limit to the hard one and said so.
    hotline.wait_for_log("open file limit: 256 (raised from 128; hard limit 256)")
    kept: list[socket.socket] = []
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [conn.close() for conn in kept])

        # Per source: 8 of 12 stay.
        assert open_batch("127.0.0.2", 12, hotline, kept) == 4
        hotline.wait_for_log("limits.max_tcp_connections_per_source: 8")
        # In total: 40 stay, wherever they come from.
        refused = sum(open_batch(f"127.0.0.{n}", 8, hotline, kept) for n in range(3, 9))
        assert (len(kept), refused) == (40, 16), hotline.describe()
        hotline.wait_for_log("limits.max_tcp_connections: 40")

        # The trunk passes both caps, up to the descriptors kept for media.
        before = len(kept)
        trunk_refused = open_batch(LOOPBACK, 80, hotline, kept)
        trunk_kept = len(kept) - before
        assert trunk_kept > 8 and trunk_refused > 0, (trunk_kept, trunk_refused)
        hotline.wait_for_log(f"limits.fd_reserve: {reserve} are kept")
        # Whatever the node had open before, the reserve is still free (one descriptor of
        # slack: the refused connection is open while it is judged).
        assert 256 - hotline.open_descriptors() >= reserve - 1, hotline.open_descriptors()

        # The connections kept are served; a trunk call (UDP) is answered and completes.
        assert options_over(kept[0], hotline).startswith(b"SIP/2.0 200 ")
        caller = sipp(
            "uac_call", remote=hotline.address, service="12345", duration_ms=1000, timeout=20
        )
        caller.run()
        caller.check()
        assert caller.result["successful"] == 1
        (call,) = hotline.wait_for_rows(
            "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None, timeout=5
        )
        assert call["trunk"] == "carrier" and call["node_answer"] is not None

        # Connections closed make room again: the next trunk connection stays.
        for conn in kept[before:]:
            conn.close()
        del kept[before:]
        time.sleep(0.3)
        assert open_batch(LOOPBACK, 1, hotline, kept) == 0
        assert_still_serving(hotline)
    assert hotline.stop() == 0
    assert "transport counters:" in hotline.log_text()
    counters = hotline.wait_for_log("transport counters:")
    assert "'tcp.refused.max_tcp_connections_per_source': 4" in counters, counters
    assert "'tcp.refused.max_tcp_connections': 16" in counters, counters
    assert f"'tcp.refused.fd_reserve': {trunk_refused}" in counters, counters
