"""A node killed with SIGKILL and started again on the same data directory and port.

(a) A phone registered before the kill gets the next call without registering again: its
binding comes back from DATA/hotline.db before the node handles any message.
(b) A call up at the kill is closed in the CDR (`node_restart`, ended no later than the
kill) and both its parties get a BYE from the restarted node.

The phones are SIPp: register.xml registers from a port and exits (so nothing can register
again), then uas_agent.xml answers on that same port.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from softswitch.call.restart import RESTART_DISPOSITION

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


def test_call_up_at_kill_9_is_closed_and_both_parties_get_a_bye(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    port = register_sipp_phone(sipp, hotline, "1002")
    phone = sipp("uas_agent", local_port=port, timeout=SIPP_TIMEOUT).start()
    caller = sipp(
        "uac_call_callee_bye", remote=hotline.address, service="9000", timeout=SIPP_TIMEOUT
    ).start()
    (answered,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["answer"] is not None
    )
    assert len(hotline.cdr_rows("live_dialogs", call_id=answered["call_id"])) == 2
    time.sleep(2.0)  # talk a while: heartbeats after the answer move the recorded end

    killed_at = kill_and_restart(hotline)
    assert caller.wait() == 0, caller.describe()  # it got the BYE and answered 200
    assert phone.wait() == 0, phone.describe()
    hotline.wait_for_log("BYE after restart answered 200")

    (call,) = hotline.cdr_rows("calls")
    assert call["disposition"] == RESTART_DISPOSITION and call["hangup_side"] == "system"
    assert call["answer"] + 0.5 <= call["end"] <= killed_at
    assert abs(call["talk"] - (call["end"] - call["answer"])) < 1e-6
    legs = hotline.cdr_rows("legs", call_id=call["call_id"])
    assert len(legs) == 2
    assert all(leg["disposition"] == RESTART_DISPOSITION for leg in legs)
    assert all(leg["end"] is not None and leg["end"] <= killed_at for leg in legs)
    assert hotline.cdr_rows("live_dialogs") == []
    log = hotline.log_text()
    assert log.count("BYE after restart answered 200") == 2, log
