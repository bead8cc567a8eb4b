"""A node killed with SIGKILL and started again on the same data directory and port.

A phone registered before the kill gets the next call without registering again: its
binding comes back from DATA/hotline.db before the node handles any message.

The phones are SIPp: register.xml registers from a port and exits (so nothing can register
again), then uas_agent.xml answers on that same port.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .harness import LOOPBACK, HotlineNode, Sipp, free_port

SIPP_TIMEOUT = 20.0


def register_sipp_phone(sipp: Callable[..., Sipp], node: HotlineNode, agent: str) -> int:
    """Register `agent` with digest from a fresh UDP port (SIPp exits then); the port."""
    port = free_port("udp")
    registering = sipp(
        "register",
        remote=node.address,
        service=agent,
        local_port=port,
        timeout=SIPP_TIMEOUT,
        extra_args=["-au", agent, "-ap", f"pw{agent}"],
    )
    registering.run()
    registering.check()
    node.wait_for_log(f"agent {agent} registered from {LOOPBACK}:{port}")
    return port


def kill_and_restart(node: HotlineNode) -> float:
    """SIGKILL the node, start it again (same data, port, config); the time of the kill."""
    killed_at = time.time()
    assert node.kill() == -9
    node.stop()  # closes the log file the killed run wrote to
    node.process = None
    node.start()
    return killed_at


def test_agent_registered_before_kill_9_is_offered_the_next_call(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    port = register_sipp_phone(sipp, hotline, "1001")
    kill_and_restart(hotline)
    hotline.wait_for_log("agent 1001 registered (restored")

    # A lost first INVITE (the phone still binding its port) is retransmitted at T1.
    phone = sipp("uas_agent", local_port=port, timeout=SIPP_TIMEOUT).start()
    caller = sipp(
        "uac_call", remote=hotline.address, service="9000", duration_ms=500, timeout=SIPP_TIMEOUT
    )
    caller.run()
    caller.check()
    assert phone.wait() == 0, phone.describe()

    (call,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None
    )
    assert (call["agent"], call["disposition"]) == ("1001", "answered")
    out_leg = hotline.cdr_rows("legs", call_id=call["call_id"], direction="out")[0]
    assert out_leg["peer"] == f"{LOOPBACK}:{port}"
    assert "agent 1001 registered from" not in hotline.log_text().rsplit("listening on", 1)[1]
