"""Agents' phones on IPv6 against the real node, the carrier on plain IPv4 (issue 9).

The bug: a phone registered from ::1 was offered `c=IN IP4`; baresip answered 488, and the
node rang it again and again. Now the node offers a phone the family it registered over, and
its media engine bridges the carrier's IPv4 leg to the phone's IPv6 leg. The caller is the
Python carrier of ivr_peers.py on 127.0.0.1 (real RTP both ways; it records what it hears).
Each side sends its own tone and records what it hears (baresip's sndfile module), so each
direction of the audio is checked by what arrived, not by counters alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .baresip_agent import BaresipAgent
from .harness import HotlineNode
from .ivr_peers import RtpCaller, read_wav, tone, tone_fraction
from .test_agent_features import CALLER_TONE, ended
from .test_registrar_peers import ipv6_loopback_available

BARESIP_TONE = 1000
MD5_ONLY = {"auth": {"algorithms": ["MD5"]}}  # baresip 1.0 (test_baresip_agent.py)


@pytest.fixture(autouse=True)
def _ipv6() -> None:
    if not ipv6_loopback_available():
        pytest.skip("IPv6 loopback ::1 is not available on this machine")


def talk(hotline: HotlineNode, phone: BaresipAgent, caller: RtpCaller) -> dict[str, Any]:
    """The caller dials the queue and baresip answers; audio is checked both ways (each
    side's tone in what the other heard; baresip's RTCP statistics when the node's first
    report reaches it, 1..2 s after the answer); returns the call's CDR row."""
    assert phone.wait_for("REGISTER_OK", timeout=5)["param"].startswith("200"), phone.describe()
    assert caller.call().status == 200, caller.describe()
    call = phone.wait_for("CALL_ESTABLISHED", timeout=5, direction="incoming")
    caller.wait_tone(BARESIP_TONE, timeout=5)  # agent -> carrier
    caller.say(tone(CALLER_TONE, 1.0))  # carrier -> agent
    rtcp = phone.wait_for("CALL_RTCP", timeout=5, id=call["id"])["rtcp_stats"]
    assert rtcp["rx"]["sent"] >= 25 and rtcp["rx"]["lost"] == 0, rtcp
    assert caller.hang_up() == 200
    phone.wait_for("CALL_CLOSED", timeout=5, id=call["id"])
    (heard,) = phone.heard_wavs()
    wav = read_wav(heard)
    share = {hz: tone_fraction(wav.samples, hz) for hz in (CALLER_TONE, BARESIP_TONE)}
    assert share[CALLER_TONE] > 0.5 and share[BARESIP_TONE] < 0.05, share
    row = ended(hotline)
    assert row["agent"] == "1001" and row["disposition"] == "answered", row
    legs = hotline.cdr_rows("legs", call_id=row["call_id"])
    # One INVITE to the phone, answered: not the hang-up-and-ring-again of the bug.
    assert [leg["direction"] for leg in legs] == ["in", "out"], legs
    assert legs[1]["sip_cause"] == 200 and legs[1]["peer"].endswith(f":{phone.sip_port}"), legs
    return row


def test_baresip_on_ipv6_answers_a_queue_call_from_an_ipv4_carrier(
    node: Callable[..., HotlineNode],
    baresip: Callable[..., BaresipAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node(node=MD5_ONLY, ipv6=True)
    phone = baresip(
        registrar=hotline.address6, user="1001", tone_hz=BARESIP_TONE, host="::1", record=True
    )
    row = talk(hotline, phone, rtp_caller(hotline, called="9000"))
    (binding,) = hotline.cdr_rows("bindings")
    assert binding["source_host"] == "::1", binding
    agent_leg = hotline.cdr_rows("legs", call_id=row["call_id"])[1]
    assert agent_leg["peer"] == f"[::1]:{phone.sip_port}", agent_leg


def test_an_ipv6_carrier_reaches_an_ipv4_agent_through_the_engine(
    node: Callable[..., HotlineNode],
    baresip: Callable[..., BaresipAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node(node=MD5_ONLY, ipv6=True)  # the demo trunk's ACL holds ::1
    phone = baresip(registrar=hotline, user="1001", tone_hz=BARESIP_TONE, record=True)
    caller = rtp_caller(hotline.address6, called="9000", host="::1")
    row = talk(hotline, phone, caller)
    assert caller.remote_rtp is not None and caller.remote_rtp[0] == "::1", caller.describe()
    caller_leg = hotline.cdr_rows("legs", call_id=row["call_id"])[0]
    assert caller_leg["peer"] == caller.address, caller_leg
