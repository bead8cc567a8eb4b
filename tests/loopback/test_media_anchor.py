"""RTP anchored in the node's C engine, checked with real peers (issue 4 through the B2BUA)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .harness import HotlineNode, PjAgent, Sipp

RTP_RANGE = range(20000, 30000)  # media.port_min .. port_max of the shipped node.yaml


def sdp_ports(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"m=audio (\d+) ", text)]


def echoed_queue_call(sipp: Callable[..., Sipp], address: str) -> Sipp:
    """A SIPp carrier's call to queue 9000 that reflects every RTP packet it gets (run to its
    end and checked): what the agent sends comes back to it through the node twice."""
    caller = sipp(
        "uac_call_callee_bye", remote=address, service="9000", timeout=20, extra_args=["-rtp_echo"]
    )
    caller.run()
    caller.check()
    return caller


def test_anchored_call_relays_rfc4733_both_ways_through_the_node(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    agent = pjagent(user="1001", registrar=hotline, dtmf="123", hangup_after=2.5, log_level=5)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    # SIPp reflects every RTP packet it gets: the agent's digits go out through the node to
    # the carrier side and come back through the node again.
    caller = echoed_queue_call(sipp, hotline.address)

    agent.wait_for("dtmf_sent", timeout=5, digits="123")
    digits = [agent.wait_for("dtmf", timeout=5)["digit"] for _ in range(3)]
    assert digits == ["1", "2", "3"]

    # Each side saw only the node's address and a port of its RTP range in SDP.
    agent_side = sdp_ports(agent.pj_log_path.read_text(encoding="utf-8", errors="replace"))
    carrier_side = sdp_ports(caller.message_path.read_text(encoding="utf-8", errors="replace"))
    assert any(port in RTP_RANGE for port in agent_side)
    assert any(port in RTP_RANGE for port in carrier_side)

    # The engine reported the digits on both legs of the call.
    hotline.wait_for_log("DTMF 3 on", timeout=5)
    log = hotline.log_text()
    assert re.search(r"DTMF 1 on \S+-b\d+ \(rfc4733\)", log), log[-2000:]
    assert re.search(r"DTMF 1 on \S+-a \(rfc4733\)", log), log[-2000:]
    (call,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None, timeout=5
    )
    assert call["disposition"] == "answered" and call["hangup_side"] == "agent"


def test_caller_offering_no_g711_is_refused_with_488(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent]
) -> None:
    hotline = node()
    agent = pjagent(user="1002", registrar=hotline)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    invite = (
        "INVITE sip:9000@{node} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKg729;rport\r\n"
        "From: <sip:13800138000@127.0.0.1>;tag=g729\r\nTo: <sip:9000@{node}>\r\n"
        "Call-ID: g729-offer\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:carrier@127.0.0.1:{local_port}>\r\n"
        "Content-Type: application/sdp\r\nContent-Length: {length}\r\n\r\n{sdp}"
    ).format(node=hotline.address, local_port="{local_port}", length=len(sdp), sdp=sdp)
    response = hotline.send_sip(invite.encode(), timeout=5, final=True)
    assert response.startswith(b"SIP/2.0 488")
    (call,) = hotline.wait_for_rows("calls", lambda rows: len(rows) == 1, timeout=5)
    assert call["disposition"] == "failed" and call["sip_cause"] == 488
