"""An agent on baresip, a second SIP stack beside pjsua2: it registers, answers a queue call,
holds and resumes it, sends an RFC 4733 key and transfers it (REFER) to a pjsua2 agent,
against the real node; a Python carrier caller records what it hears. Each phone sends its
own tone, so the caller's audio says whom it is connected to: baresip (1000 Hz), the node's
hold tone (400 Hz), the pjsua2 agent the call went to (1500 Hz).

baresip 1.0.0 (libre 1.1) gives up on a 401 as soon as one of its challenges names an
algorithm other than MD5 (ENOSYS: "Function not implemented"), and the node offers the
realm's algorithms to every user alike (SIP-8), so an agent's own `algorithms: [MD5]` does
not change what the phone is offered (the first test pins that). The other nodes offer MD5
only (node.yaml `auth.algorithms`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .baresip_agent import BaresipAgent
from .harness import HotlineNode, PjAgent
from .ivr_peers import RtpCaller, tone_fraction

# The agent-feature tests' helpers, so both read the CDR the same way.
from .test_agent_features import agents_with, ended, queue_events

BARESIP_TONE, SECOND_TONE, HOLD_TONE = 1000, 1500, 400
MD5_ONLY = {"auth": {"algorithms": ["MD5"]}}


def registered_baresip(baresip: Callable[..., BaresipAgent], node: HotlineNode) -> BaresipAgent:
    phone = baresip(registrar=node, user="1001", tone_hz=BARESIP_TONE)
    assert phone.wait_for("REGISTER_OK", timeout=5)["param"].startswith("200"), phone.describe()
    return phone


def answered_call(phone: BaresipAgent, caller: RtpCaller) -> dict[str, Any]:
    """The caller dials the queue; baresip answers by itself and the caller hears its tone."""
    response = caller.call()
    assert response.status == 200, caller.describe()
    established = phone.wait_for("CALL_ESTABLISHED", timeout=5, direction="incoming")
    caller.wait_tone(BARESIP_TONE, timeout=5)
    return established


def test_an_agents_md5_only_setting_leaves_the_challenge_alone_so_baresip_cannot_register(
    node: Callable[..., HotlineNode],
    baresip: Callable[..., BaresipAgent],
) -> None:
    """Why these nodes offer MD5 only: with the shipped MD5 + SHA-256, baresip 1.0.0 gives up
    on the 401 even for an agent restricted to MD5, and the node keeps no binding."""
    hotline = node(agents={"agents": agents_with("1001", algorithms=["MD5"])["agents"]})
    phone = baresip(registrar=hotline, user="1001", tone_hz=BARESIP_TONE)
    failed = phone.wait_for("REGISTER_FAIL", timeout=5)
    assert failed.get("param") == "Function not implemented", phone.describe()
    assert not phone.events("REGISTER_OK"), phone.describe()
    assert hotline.cdr_rows("bindings") == []


def test_baresip_registers_with_md5_and_answers_a_queue_call(
    node: Callable[..., HotlineNode],
    baresip: Callable[..., BaresipAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node(node=MD5_ONLY)
    phone = registered_baresip(baresip, hotline)
    (binding,) = hotline.wait_for_rows("bindings", lambda rows: len(rows) == 1, timeout=5)
    assert binding["aor"] == "1001", binding
    assert binding["user_agent"].startswith("baresip "), binding
    assert binding["source_port"] == phone.sip_port, binding
    caller = rtp_caller(hotline, called="9000")
    call = answered_call(phone, caller)
    assert caller.hang_up() == 200
    closed = phone.wait_for("CALL_CLOSED", timeout=5, id=call["id"])
    assert closed["direction"] == "incoming", closed
    row = ended(hotline)
    assert row["agent"] == "1001" and row["disposition"] == "answered", row


def test_hold_from_baresip_plays_the_hold_tone_and_resume_reconnects_then_a_key_reaches_the_node(
    node: Callable[..., HotlineNode],
    baresip: Callable[..., BaresipAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node(node=MD5_ONLY)
    phone = registered_baresip(baresip, hotline)
    caller = rtp_caller(hotline, called="9000")
    call = answered_call(phone, caller)
    phone.command("hold")
    held = caller.wait_tone(HOLD_TONE, since=caller.answered_at, timeout=8)
    time.sleep(0.5)
    on_hold = caller.audio(held)
    assert tone_fraction(on_hold, BARESIP_TONE) < 0.05, "baresip still heard while held"
    phone.command("resume")
    caller.wait_tone(BARESIP_TONE, since=held, timeout=8)
    phone.command("sndcode", "2")  # an RFC 4733 key (telephone-event) from the phone
    assert hotline.wait_for_log("DTMF 2 on", timeout=5).rstrip().endswith("(rfc4733)")
    assert caller.hang_up() == 200
    phone.wait_for("CALL_CLOSED", timeout=5, id=call["id"])
    row = ended(hotline)
    assert row["agent"] == "1001" and row["disposition"] == "answered", row
    events = [event for event, _ in queue_events(hotline, row["call_id"])]
    assert "HOLD" in events and "UNHOLD" in events, events
    assert events.index("HOLD") < events.index("UNHOLD"), events


def test_blind_transfer_from_baresip_connects_the_caller_to_a_pjsua2_agent(
    node: Callable[..., HotlineNode],
    baresip: Callable[..., BaresipAgent],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """The node answers baresip's REFER itself (202, NOTIFY 100 then 200 sipfrag): baresip
    ends its call as "Call transfered", never CALL_TRANSFER_FAILED (which makes it drop the
    caller), and the caller hears the second agent."""
    hotline = node(node=MD5_ONLY)
    phone = registered_baresip(baresip, hotline)
    caller = rtp_caller(hotline, called="9000")
    call = answered_call(phone, caller)
    # Registered only now, so the queue call cannot have gone to it.
    second = pjagent(user="1002", registrar=hotline, extra_args=["--tone", str(SECOND_TONE)])
    assert second.wait_for("registered", timeout=10)["code"] == 200
    host = hotline.address.rsplit(":", 1)[0]
    phone.command("transfer", f"sip:1002@{host}")
    closed = phone.wait_for("CALL_CLOSED", timeout=8, id=call["id"])
    assert closed.get("param") == "Call transfered", phone.describe()
    assert not phone.events("CALL_TRANSFER_FAILED"), phone.describe()
    incoming = second.wait_for("incoming", timeout=8)
    assert incoming["headers"].get("X-Hotline-Var-Transferred-By") == "1001", incoming
    caller.wait_tone(SECOND_TONE, timeout=8)
    assert caller.bye_at is None, caller.describe()
    assert caller.hang_up() == 200
    second.wait_for("disconnected", timeout=5)
    row = ended(hotline)
    assert row["agent"] == "1002" and row["disposition"] == "answered", row
    assert ("TRANSFER", "1001") in queue_events(hotline, row["call_id"])
    legs = hotline.cdr_rows("legs", call_id=row["call_id"])
    (baresip_leg,) = [leg for leg in legs if leg["sip_call_id"] == call["id"]]
    assert (baresip_leg["direction"], baresip_leg["disposition"]) == ("out", "transferred"), legs
