"""A carrier's IMS core on the trunk (issue 9), with SIPp as the IMS side and a pjsua2 agent:
tel: Request-URI, P-Asserted-Identity and P-Charging-Vector, `Require: 100rel` answered with
reliable ringing and PRACK, and a session timer the carrier refreshes with UPDATE
(tests/sipp/uac_ims_trunk.xml)."""

from __future__ import annotations

import time
from collections.abc import Callable

from .harness import HotlineNode, PjAgent, Sipp
from .ivr_peers import RtpCaller

SIPP_TIMEOUT = 30.0


def test_an_ims_trunk_call_with_100rel_and_session_timer_reaches_an_agent(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    agent = pjagent(user="1001", registrar=hotline, answer_delay=1.0)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    carrier = sipp(
        "uac_ims_trunk", remote=hotline.address, service="9000", duration_ms=1000,
        timeout=SIPP_TIMEOUT,
    )  # fmt: skip
    carrier.run()
    carrier.check()
    assert carrier.result["successful"] == 1
    agent.wait_for("disconnected", timeout=5)
    (call,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None
    )
    assert (call["called"], call["caller"], call["agent"]) == ("9000", "13800138000", "1001")
    assert (call["disposition"], call["hangup_side"]) == ("answered", "caller")
    assert "P-Charging-Vector" not in str(agent.wait_for("incoming")["headers"])


def test_a_key_a_pjsua2_agent_sends_by_info_reaches_the_carrier_as_rfc4733(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """DTMF interworking: the agent's phone sends SIP INFO; the carrier negotiated
    telephone-event, so it gets RFC 4733 events in the RTP, and no INFO."""
    hotline = node()
    agent = pjagent(user="1001", registrar=hotline, dtmf_method="info")
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    agent.wait_for("media_active", timeout=8)
    sent = time.monotonic()
    agent.send("dtmf 7")
    deadline = time.monotonic() + 5
    events: list = []
    while time.monotonic() < deadline and not events:
        time.sleep(0.1)
        with caller._condition:
            packets = list(caller.packets)
        events = [
            p for p in packets
            if p.at >= sent and p.payload_type == caller.remote_event_pt and p.payload[:1] == b"\x07"
        ]  # fmt: skip
    assert events, caller.describe()
    assert not [m for m in caller.messages if not m.is_response and m.method == "INFO"]
    assert caller.hang_up() == 200


def test_an_agent_on_two_pjsua2_devices_rings_on_both_and_the_first_answer_wins(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """Agent 1001 registered from a desk phone (answers after 3 s) and a softphone (after
    0.5 s): both ring, the softphone takes the call, the desk phone's ringing is cancelled."""
    hotline = node()
    desk = pjagent(user="1001", registrar=hotline, answer_delay=3.0)
    soft = pjagent(user="1001", registrar=hotline, answer_delay=0.5)
    for phone in (desk, soft):
        assert phone.wait_for("registered", timeout=10)["code"] == 200
    caller = rtp_caller(hotline, called="9000")
    assert caller.call().status == 200
    soft.wait_for("confirmed", timeout=8)
    desk.wait_for("incoming", timeout=2)
    gone = desk.wait_for("disconnected", timeout=5)
    assert gone["code"] == 487, gone
    assert caller.hang_up() == 200
    soft.wait_for("disconnected", timeout=5)
