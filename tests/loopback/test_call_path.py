"""The call path end to end with real peers: a SIPp carrier calls 9000, pjsua2 agents answer.

Each test starts its own node on a fresh 127.0.0.1 high port (fixtures in conftest.py), so
CDR rows and queue-log lines belong to the test's calls only. The assertions look at the
three views of one call and require them to agree: the carrier's (SIPp's verdict on its
scenario), the agent's (pjsua2 call events) and the node's (CDR rows and queue log).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .harness import HotlineNode, PjAgent, Sipp, queue_override

# Carrier scenarios are bounded by SIPp's own -timeout; a test waits a little longer.
SIPP_TIMEOUT = 20.0


def register(pjagent: Callable[..., PjAgent], node: HotlineNode, user: str, **kw: Any) -> PjAgent:
    """Start a pjsua2 agent for `user` and wait until the node has accepted its REGISTER."""
    agent = pjagent(user=user, registrar=node, **kw)
    registered = agent.wait_for("registered", timeout=10)
    assert registered["code"] == 200
    return agent


def ended_calls(node: HotlineNode, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The `calls` rows once `count` of them exist and all have an end time."""
    return node.wait_for_rows(
        "calls",
        lambda rows: len(rows) == count and all(row["end"] is not None for row in rows),
        timeout=timeout,
    )


def acd_events(node: HotlineNode, call_id: str) -> list[tuple[str, str | None]]:
    """(event, agent) of one call's queue-log lines, in order, agent state changes left out."""
    return [
        (row["event"], row["agent"])
        for row in node.cdr_rows("queue_log", call_id=call_id)
        if row["event"] != "AGENT_STATE"
    ]


def carrier(sipp: Callable[..., Sipp], node: HotlineNode, scenario: str, **kw: Any) -> Sipp:
    """A SIPp trunk caller running `scenario` against the node's number 9000 (not started)."""
    kw.setdefault("timeout", SIPP_TIMEOUT)
    return sipp(scenario, remote=node.address, service="9000", **kw)


def test_agent_answers_trunk_call_and_caller_hangs_up(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    # Level 5 puts every SIP message into the pjsip log, to see which challenge pjsip took.
    agent = register(pjagent, hotline, "1001", log_level=5)

    caller = carrier(sipp, hotline, "uac_call", duration_ms=1000)
    caller.run()
    caller.check()
    assert caller.result["successful"] == 1

    incoming = agent.wait_for("incoming", timeout=5)
    assert incoming["headers"]["X-Hotline-Queue"] == "general"
    assert incoming["headers"]["X-Hotline-Called"] == "9000"
    assert incoming["request_uri"].startswith("sip:1001@127.0.0.1:")
    assert "13800138000" in incoming["from"]
    leg_call_id = incoming["call_id"]
    agent.wait_for("answered", timeout=5, call_id=leg_call_id)
    agent.wait_for("confirmed", timeout=5, call_id=leg_call_id)
    ended = agent.wait_for("disconnected", timeout=5, call_id=leg_call_id)
    assert ended["by"] == "remote"
    assert ended["duration"] >= 0.8

    # The demo realm offers MD5 first (RFC 8760 order); pjsip answered with it.
    pj_log = agent.pj_log_path.read_text(encoding="utf-8", errors="replace")
    assert "Authorization: Digest" in pj_log
    assert "algorithm=MD5" in pj_log

    (call,) = ended_calls(hotline)
    assert call["agent"] == "1001"
    assert call["queue"] == "general"
    assert call["called"] == "9000"
    assert call["caller"] == "13800138000"
    assert call["trunk"] == "carrier"
    assert call["disposition"] == "answered"
    assert call["hangup_side"] == "caller"
    assert call["talk"] > 0.8
    assert call["start"] <= call["queued"] <= call["ringing"] <= call["answer"] <= call["end"]
    assert call["wait"] >= 0

    legs = hotline.cdr_rows("legs", call_id=call["call_id"])
    assert sorted(leg["direction"] for leg in legs) == ["in", "out"]
    out_leg = next(leg for leg in legs if leg["direction"] == "out")
    assert out_leg["sip_call_id"] == leg_call_id
    assert out_leg["peer"] == agent.address
    assert out_leg["answer"] is not None and out_leg["end"] is not None
    in_leg = next(leg for leg in legs if leg["direction"] == "in")
    assert in_leg["sip_call_id"] == call["sip_call_id"]
    assert in_leg["peer"] == caller.address

    assert acd_events(hotline, call["call_id"]) == [
        ("ENTER", None),
        ("OFFER", "1001"),
        ("CONNECT", "1001"),
        ("COMPLETE", "1001"),
    ]


def test_agent_hangs_up_and_the_caller_gets_the_bye(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    agent = register(pjagent, hotline, "1002", hangup_after=1.0)

    caller = carrier(sipp, hotline, "uac_call_callee_bye")
    caller.run()
    caller.check()
    assert caller.result["successful"] == 1

    answered = agent.wait_for("answered", timeout=5)
    ended = agent.wait_for("disconnected", timeout=5, call_id=answered["call_id"])
    assert ended["by"] == "local"
    assert ended["code"] == 200

    (call,) = ended_calls(hotline)
    assert call["agent"] == "1002"
    assert call["disposition"] == "answered"
    assert call["hangup_side"] == "agent"
    assert call["talk"] >= 0.8
    legs = hotline.cdr_rows("legs", call_id=call["call_id"])
    assert len(legs) == 2 and all(leg["end"] is not None for leg in legs)
    assert acd_events(hotline, call["call_id"])[-1] == ("COMPLETE", "1002")


def test_caller_cancels_while_queued_without_agents(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()

    # RFC 3261 §9.2: 200 to the CANCEL, then 487 to the INVITE; the scenario requires both.
    caller = carrier(sipp, hotline, "uac_cancel_queued", duration_ms=1000)
    caller.run()
    caller.check()
    assert caller.result["successful"] == 1

    (call,) = ended_calls(hotline)
    assert call["disposition"] == "abandoned"
    assert call["hangup_side"] == "caller"
    assert call["sip_cause"] == 487
    assert call["agent"] is None
    assert call["answer"] is None
    assert call["talk"] == 0
    assert call["wait"] >= 0.9
    (leg,) = hotline.cdr_rows("legs", call_id=call["call_id"])
    assert leg["direction"] == "in" and leg["end"] is not None
    assert acd_events(hotline, call["call_id"]) == [("ENTER", None), ("ABANDON", None)]


def test_caller_cancels_while_agent_rings(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    agent = register(pjagent, hotline, "1003", auto_answer=0)  # rings, never answers

    caller = carrier(sipp, hotline, "uac_cancel", duration_ms=1500)
    caller.run()
    caller.check()
    assert caller.result["successful"] == 1

    incoming = agent.wait_for("incoming", timeout=5)
    ended = agent.wait_for("disconnected", timeout=5, call_id=incoming["call_id"])
    assert ended["by"] == "remote"
    assert ended["code"] == 487  # the node CANCELled the agent leg (RFC 3261 §9.1)
    assert agent.events("answered") == []

    (call,) = ended_calls(hotline)
    assert call["disposition"] == "abandoned"
    assert call["hangup_side"] == "caller"
    assert call["agent"] == "1003"
    assert call["answer"] is None
    assert call["ringing"] is not None
    out_legs = hotline.cdr_rows("legs", call_id=call["call_id"], direction="out")
    assert len(out_legs) == 1
    assert out_legs[0]["answer"] is None and out_legs[0]["end"] is not None
    events = acd_events(hotline, call["call_id"])
    assert events[:2] == [("ENTER", None), ("OFFER", "1003")]
    assert events[-1][0] == "ABANDON"
    assert "CONNECT" not in [event for event, _agent in events]


def test_ring_timeout_returns_call_to_queue_and_next_agent_answers(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node(queues=queue_override(ring_timeout=2))
    # Registered first, so idle longest: the ACD offers it the call first.
    silent = register(pjagent, hotline, "1004", auto_answer=0)
    answering = register(pjagent, hotline, "1005")

    caller = carrier(sipp, hotline, "uac_call", duration_ms=500)
    caller.run()
    caller.check()
    assert caller.result["successful"] == 1

    first = silent.wait_for("incoming", timeout=5)
    missed = silent.wait_for("disconnected", timeout=5, call_id=first["call_id"])
    assert missed["code"] == 487 and missed["by"] == "remote"
    assert silent.events("answered") == []
    second = answering.wait_for("incoming", timeout=5)
    answered = answering.wait_for("answered", timeout=5, call_id=second["call_id"])
    # The next agent rings only once the ring timeout (2 s) has passed on the first.
    assert answered["time"] - first["time"] >= 1.9
    answering.wait_for("disconnected", timeout=5, by="remote")

    (call,) = ended_calls(hotline)
    assert call["agent"] == "1005"
    assert call["disposition"] == "answered"
    assert call["hangup_side"] == "caller"
    assert call["wait"] >= 1.9
    out_legs = hotline.cdr_rows("legs", call_id=call["call_id"], direction="out")
    assert [leg["sip_call_id"] for leg in out_legs] == [first["call_id"], second["call_id"]]
    assert out_legs[0]["answer"] is None and out_legs[1]["answer"] is not None
    assert acd_events(hotline, call["call_id"]) == [
        ("ENTER", None),
        ("OFFER", "1004"),
        ("RINGNOANSWER", "1004"),
        ("OFFER", "1005"),
        ("CONNECT", "1005"),
        ("COMPLETE", "1005"),
    ]


def test_busy_agent_is_skipped_and_next_agent_answers(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    busy = register(pjagent, hotline, "1006", auto_answer=486)
    answering = register(pjagent, hotline, "1007")

    caller = carrier(sipp, hotline, "uac_call", duration_ms=500)
    caller.run()
    caller.check()
    assert caller.result["successful"] == 1

    refused = busy.wait_for("disconnected", timeout=5)
    assert refused["code"] == 486 and refused["by"] == "local"
    answering.wait_for("answered", timeout=5)
    answering.wait_for("disconnected", timeout=5, by="remote")

    (call,) = ended_calls(hotline)
    assert call["agent"] == "1007"
    assert call["disposition"] == "answered"
    out_legs = hotline.cdr_rows("legs", call_id=call["call_id"], direction="out")
    assert [(leg["sip_cause"], leg["disposition"]) for leg in out_legs][0] == (486, "rejected")
    assert out_legs[1]["answer"] is not None
    assert acd_events(hotline, call["call_id"]) == [
        ("ENTER", None),
        ("OFFER", "1006"),
        ("REJECT", "1006"),
        ("OFFER", "1007"),
        ("CONNECT", "1007"),
        ("COMPLETE", "1007"),
    ]
