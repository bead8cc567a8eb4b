"""Calls between the address families through the whole switch and the real RTP engine
(virtual time for SIP, the engine's sockets on 127.0.0.1 and ::1).

The bug of issue 9: an agent's phone registered from ::1 was offered `c=IN IP4`; baresip
answered 488, linphone answered with `IN IP6 ::1`, and the node hung up at once and rang
again. The node now offers each leg the family its party is reached over, so an IPv4
carrier is bridged to an IPv6 agent (and an IPv6 carrier to an IPv4 agent) in the engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sipflow import NODE, Harness, Phone, Trunk
from test_media_ipv6 import ipv6_loopback

from media.engine import RtpEngine
from softswitch.sdp import parse_sdp
from softswitch.sip.message import Request, Response
from softswitch.switch import Switch

pytestmark = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")

NODE6 = "[::1]:5060"


@pytest.fixture
def engine() -> Iterator[RtpEngine]:
    base = 20000 + (os.getpid() % 120) * 100
    e = RtpEngine("127.0.0.1", base, base + 99, local_ip6="::1")
    yield e
    e.close()


def harness(tmp_path: Path, engine: RtpEngine) -> Harness:
    h = Harness(tmp_path)
    sent_by = {"UDP": NODE, "TCP": NODE, "UDP6": NODE6, "TCP6": NODE6}
    h.switch = Switch(h.config, h.cdr, sent_by, media=engine, secret=b"k" * 32)
    return h


def connection(message: Request | Response) -> str:
    """The `c=` of a message's SDP, e.g. "IN IP6 ::1"."""
    sdp = parse_sdp(message.body)
    audio = sdp.audio()
    assert audio is not None, message.body
    return audio.connection or sdp.connection or ""


def ring(h: Harness, trunk: Trunk, phone: Phone) -> Request:
    trunk.invite()
    (invite,) = [m for m in h.take(phone.port) if isinstance(m, Request)]
    assert invite.method == "INVITE"
    return invite


def answer(h: Harness, trunk: Trunk, phone: Phone, invite: Request) -> Response:
    phone.reply(invite, 200, sdp=True)
    acks = [m for m in h.take(phone.port) if isinstance(m, Request)]
    assert [m.method for m in acks] == ["ACK"], "the node hung up on the phone's answer"
    (ok,) = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200]
    return ok


def test_an_agent_registered_over_ipv6_is_offered_ipv6_and_bridged_to_an_ipv4_carrier(
    tmp_path: Path, engine: RtpEngine
) -> None:
    h = harness(tmp_path, engine)
    phone = Phone(h, "1001", 5101, host="::1")
    assert phone.register().status == 200
    trunk = Trunk(h)
    invite = ring(h, trunk, phone)
    assert connection(invite) == "IN IP6 ::1"
    assert invite.headers.get("via", "").startswith("SIP/2.0/UDP [::1]:5060;")
    assert "@[::1]:5060" in (invite.headers.get("contact") or "")
    ok = answer(h, trunk, phone, invite)
    assert connection(ok) == "IN IP4 127.0.0.1"  # the carrier's leg stays IPv4
    carrier, agent = sorted(engine._legs.values(), key=lambda leg: engine.stats(leg.leg_id).family)
    assert (engine.stats(carrier.leg_id).family, engine.stats(agent.leg_id).family) == (4, 6)
    assert (carrier.partner, agent.partner) == (agent.leg_id, carrier.leg_id)  # bridged


def test_an_ipv6_carrier_is_answered_in_ipv6_and_bridged_to_an_ipv4_agent(
    tmp_path: Path, engine: RtpEngine
) -> None:
    h = harness(tmp_path, engine)
    phone = Phone(h, "1001", 5101)
    assert phone.register().status == 200
    trunk = Trunk(h, host="::1")  # the demo trunk's ACL holds ::1
    invite = ring(h, trunk, phone)
    assert connection(invite) == "IN IP4 127.0.0.1"
    ok = answer(h, trunk, phone, invite)
    assert connection(ok) == "IN IP6 ::1"
    assert "@[::1]:5060" in (ok.headers.get("contact") or "")


def test_without_an_ipv6_media_address_an_ipv6_caller_gets_488(tmp_path: Path) -> None:
    base = 20000 + (os.getpid() % 120) * 100
    engine = RtpEngine("127.0.0.1", base, base + 99)
    try:
        h = harness(tmp_path, engine)
        trunk = Trunk(h, host="::1")
        trunk.invite()
        finals = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status >= 200]
        assert [m.status for m in finals] == [488]
        (row,) = h.cdr._db.execute("SELECT disposition FROM calls").fetchall()
        assert row["disposition"] == "failed"
    finally:
        engine.close()


def test_in_dialog_requests_follow_an_ipv6_record_route(tmp_path: Path, engine: RtpEngine) -> None:
    """An SBC on [::1] in front of the carrier record-routes: the node's BYE goes to it,
    to the bare address for the socket, with the route in brackets in the Route header."""
    h = harness(tmp_path, engine)
    phone = Phone(h, "1001", 5101)
    assert phone.register().status == 200
    trunk = Trunk(h, host="::1")
    trunk.invite(extra="Record-Route: <sip:[::1]:5070;lr>\n")
    (invite,) = [m for m in h.take(phone.port) if isinstance(m, Request)]
    ok = answer(h, trunk, phone, invite)
    assert ok.headers.get_all("record-route") == ["<sip:[::1]:5070;lr>"]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    phone.bye(invite)
    byes = [(t, m) for t, m in h.sent if isinstance(m, Request) and m.method == "BYE"]
    assert [(t.host, t.port) for t, _ in byes] == [("::1", 5070)]
    assert byes[0][1].headers.get("route") == "<sip:[::1]:5070;lr>"
    assert byes[0][1].headers.get("via", "").startswith("SIP/2.0/UDP [::1]:5060;")
