"""Agents' phone features with real peers: pjsua2 agents put the caller on hold and transfer
it (REFER); a Python carrier caller records what it hears. Each agent's phone sends its own
tone (``--tone``), so the caller's audio says who it is connected to at every moment: the
first agent (1000 Hz), the node's hold tone (400 Hz), the agent the call went to (1500 Hz).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .harness import HotlineNode, PjAgent
from .ivr_peers import RtpCaller

FIRST_TONE, SECOND_TONE, HOLD_TONE = 1000, 1500, 400


def agent(pjagent: Callable[..., PjAgent], node: HotlineNode, user: str, tone: int) -> PjAgent:
    phone = pjagent(user=user, registrar=node, extra_args=["--tone", str(tone)])
    assert phone.wait_for("registered", timeout=10)["code"] == 200
    return phone


def queue_events(node: HotlineNode, call_id: str) -> list[tuple[str, str | None]]:
    return [
        (row["event"], row["agent"])
        for row in node.cdr_rows("queue_log", call_id=call_id)
        if row["event"] != "AGENT_STATE"
    ]


def ended(node: HotlineNode) -> dict[str, Any]:
    (row,) = node.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None, timeout=10
    )
    return row


def test_hold_plays_the_hold_tone_to_the_caller_and_resume_reconnects(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node()
    phone = agent(pjagent, hotline, "1001", FIRST_TONE)
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.wait_tone(FIRST_TONE)
    phone.wait_for("media_active")
    phone.send("hold")
    held = caller.wait_tone(HOLD_TONE, since=caller.answered_at, timeout=8)
    phone.send("unhold")
    caller.wait_tone(FIRST_TONE, since=held, timeout=8)
    assert caller.hang_up() == 200
    phone.wait_for("disconnected", timeout=5)
    row = ended(hotline)
    assert row["agent"] == "1001" and row["disposition"] == "answered"
    events = [event for event, _ in queue_events(hotline, row["call_id"])]
    assert events.index("HOLD") < events.index("UNHOLD")


@pytest.mark.parametrize(("target", "second_agent"), [("enterprise", "1005")])
def test_blind_transfer_connects_the_caller_to_the_target_and_frees_the_first_agent(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
    target: str,
    second_agent: str,
) -> None:
    """1001 (queue general) takes the call and sends it to a queue (enterprise, which 1005
    serves) or straight to an agent."""
    hotline = node()
    first = agent(pjagent, hotline, "1001", FIRST_TONE)
    second = agent(pjagent, hotline, second_agent, SECOND_TONE)
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.wait_tone(FIRST_TONE)
    first.wait_for("media_active")
    host = hotline.address.rsplit(":", 1)[0]
    first.send(f"xfer sip:{target}@{host}")
    status = first.wait_for("xfer_status", timeout=8, final=True)
    assert status["code"] == 200
    first.wait_for("disconnected", timeout=8)
    incoming = second.wait_for("incoming", timeout=8)
    assert incoming["headers"].get("X-Hotline-Var-Transferred-By") == "1001"
    caller.wait_tone(SECOND_TONE, timeout=8)
    assert caller.hang_up() == 200
    second.wait_for("disconnected", timeout=5)
    row = ended(hotline)
    assert row["agent"] == second_agent and row["disposition"] == "answered"
    events = queue_events(hotline, row["call_id"])
    assert ("TRANSFER", "1001") in events
    outbound = [
        leg for leg in hotline.cdr_rows("legs", call_id=row["call_id"]) if leg["direction"] == "out"
    ]
    assert [leg["disposition"] for leg in outbound][0] == "transferred"
