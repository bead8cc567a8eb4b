"""Bugs found by tests/unit/test_switch_fuzz.py, each cut down to a small fixed conversation.

Every test drives the real `Switch` on the demo config with raw SIP text and virtual time
(tests/unit/sipflow.py) and checks the outcome the SPEC asks for: "bad input gets a clear
error and loses nothing": the caller gets a final response, no transaction or call is left
behind, the CDR row is closed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sipflow import NODE, Harness, Phone, Trunk

from media import MediaError
from softswitch.sip.message import Headers, Request, Response
from softswitch.sip.transaction import Target, TransactionLayer
from softswitch.switch import Switch

HOUR = 3600.0
TRUNK_PORT = 5090


class SdpRefusedError(MediaError, ValueError):
    """What the RTP engine raises for an offer it cannot serve (answered 488)."""


class PickyMedia:
    """A socket-free media engine that, like the RTP engine, refuses SDP without audio and
    keeps the legs it was told about until they are released."""

    def __init__(self) -> None:
        self.legs: set[str] = set()

    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        self.legs |= {from_leg, to_leg}
        if sdp and b"m=audio" not in sdp:
            raise SdpRefusedError("no audio stream")
        return sdp

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        return sdp

    def release(self, leg_id: str) -> None:
        self.legs.discard(leg_id)


def statuses(messages: list) -> list:
    return [m.status if isinstance(m, Response) else m.method for m in messages]


def with_media(h: Harness, media: PickyMedia) -> None:
    h.switch = Switch(h.config, h.cdr, {"UDP": NODE, "TCP": NODE}, media=media, secret=b"k" * 32)


def garbage_invite(h: Harness, call_id: str) -> None:
    """A trunk INVITE whose body claims to be SDP but is not."""
    body = "this is not sdp\r\n"
    h.deliver(
        "INVITE sip:9000@127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{TRUNK_PORT};branch=z9hG4bKinv{call_id};rport\n"
        f"From: <sip:+8613800000009@127.0.0.1:{TRUNK_PORT}>;tag=trk\n"
        f"To: <sip:9000@127.0.0.1>\nCall-ID: {call_id}\nCSeq: 1 INVITE\n"
        f"Contact: <sip:carrier@127.0.0.1:{TRUNK_PORT}>\nMax-Forwards: 70\n"
        f"Content-Type: application/sdp\nContent-Length: {len(body)}\n\n" + body,
        Target("UDP", "127.0.0.1", TRUNK_PORT),
    )


def reply(h: Harness, source: Target, request: Request, status: int, to_tag: str) -> None:
    """`request`'s receiver at `source` answers it (copying Via, From, To, Call-ID, CSeq)."""
    headers = Headers([("via", value) for value in request.headers.get_all("via")])
    for name in ("from", "call-id", "cseq"):
        headers.add(name, request.headers.get(name) or "")
    to = request.headers.get("to") or ""
    headers.add("to", to if ";tag=" in to else f"{to};tag={to_tag}")
    headers.add("contact", f"<sip:peer@127.0.0.1:{source.port}>")
    h.switch.receive(Response(status, "", headers).to_bytes(), source, h.now)
    h._collect()


def requests(h: Harness, port: int) -> list[Request]:
    """What the switch sent to `port` since the last look, all of it requests."""
    messages = h.take(port)
    assert all(isinstance(m, Request) for m in messages), messages
    return [m for m in messages if isinstance(m, Request)]


def assert_nothing_left(h: Harness) -> None:
    """An hour later: no call, no transaction, nobody waiting, every CDR row closed."""
    h.advance(HOUR)
    assert h.switch.control.sessions == {}
    assert len(h.switch.txn) == 0
    assert h.switch.acd.queue_snapshot("general", h.now).waiting == 0
    for row in h.cdr._db.execute('SELECT "end", disposition FROM calls'):
        assert row["end"] is not None and row["disposition"]
    for row in h.cdr._db.execute('SELECT leg_id, "end" FROM legs'):
        assert row["end"] is not None, row["leg_id"]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def early_tag(h: Harness, trunk: Trunk) -> str:
    ringing = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 180]
    tag = ringing[0].to.tag
    assert tag is not None
    return tag


def test_caller_bye_in_the_early_dialog_ends_a_queued_call_with_487(h: Harness) -> None:
    # Found: the BYE ended the B2BUA's call but not the INVITE (never answered, its server
    # transaction lived for ever) nor the ACD's (a ghost stayed in the queue).
    trunk = Trunk(h)
    trunk.invite()
    trunk.to_tag = early_tag(h, trunk)
    trunk.bye()  # RFC 3261 §15: a caller may BYE an early dialog
    assert sorted(statuses(h.take(trunk.port))) == [200, 487]
    assert h.switch.acd.queue_snapshot("general", h.now).waiting == 0
    (call,) = h.cdr._db.execute("SELECT * FROM calls").fetchall()
    assert (call["disposition"], call["hangup_side"]) == ("abandoned", "caller")
    assert_nothing_left(h)


def test_caller_bye_in_the_early_dialog_cancels_the_ringing_agent(h: Harness) -> None:
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite()
    trunk.to_tag = early_tag(h, trunk)
    (invite,) = requests(h, phone.port)
    phone.reply(invite, 180)
    h.take(trunk.port)
    trunk.bye()
    assert sorted(statuses(h.take(trunk.port))) == [200, 487]
    (cancel,) = requests(h, phone.port)
    assert cancel.method == "CANCEL" and cancel.call_id == invite.call_id
    phone.reply(cancel, 200)
    phone.reply(invite, 487)
    assert statuses(h.take(phone.port)) == ["ACK"]
    assert_nothing_left(h)


def test_caller_sdp_refused_at_offer_time_gets_488_and_a_closed_cdr(h: Harness) -> None:
    # Found: the refused leg was already in the call's legs without a CDR row, so closing the
    # call raised KeyError out of Switch.receive, leaving the call and its INVITE open.
    media = PickyMedia()
    with_media(h, media)
    Phone(h, "1001", 5101).register()
    garbage_invite(h, "bad-sdp")
    assert statuses(h.take(TRUNK_PORT)) == [100, 180, 488]
    assert h.take(5101) == []  # the agent's phone never rang
    (call,) = h.cdr._db.execute("SELECT * FROM calls").fetchall()
    assert (call["disposition"], call["sip_cause"]) == ("failed", 488)
    assert [row["direction"] for row in h.cdr._db.execute("SELECT * FROM legs")] == ["in"]
    assert media.legs == set()
    assert_nothing_left(h)


def test_ring_timeout_cancels_the_agent_even_after_a_refused_call_reshuffled_offers(
    h: Harness,
) -> None:
    # Found: one ACD command list both re-offered call 2 (inside the 488 of call 3) and then
    # said "stop ringing agent 1002 for call 2"; the B2BUA looked only at call 2's newest
    # leg, ignored the CancelOffer, and phone 1002 rang (and its transaction lived) for ever.
    with_media(h, PickyMedia())
    first, second = Phone(h, "1001", 5101), Phone(h, "1002", 5102)
    first.register()
    second.register()
    Trunk(h, call_id="call-1").invite()
    Trunk(h, call_id="call-2").invite()
    garbage_invite(h, "call-3")
    (invite_1,) = requests(h, first.port)
    (invite_2,) = requests(h, second.port)
    first.reply(invite_1, 100)
    second.reply(invite_2, 100)
    h.advance(15.1)  # the ring timeout of both offers
    cancelled = {
        m.call_id for p in (first, second) for m in requests(h, p.port) if m.method == "CANCEL"
    }
    assert cancelled == {invite_1.call_id, invite_2.call_id}
    assert_nothing_left(h)


def answered(h: Harness) -> tuple[Trunk, Phone, Request]:
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite()
    (invite,) = requests(h, phone.port)
    phone.reply(invite, 200, sdp=True)
    h.take(phone.port)
    ok = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200][0]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    return trunk, phone, invite


def phone_request(h: Harness, phone: Phone, invite: Request, method: str, cseq: int) -> None:
    """The agent's phone sends `method` (re-INVITE, BYE) in its dialog with us."""
    h.deliver(
        f"{method} sip:hotline@127.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bKph{method}{cseq};rport\n"
        f"From: {invite.headers.get('to')};tag=ph\nTo: {invite.headers.get('from')}\n"
        f"Call-ID: {invite.call_id}\nCSeq: {cseq} {method}\nMax-Forwards: 70\n"
        f"Contact: <sip:1001@127.0.0.1:{phone.port}>\nContent-Length: 0\n\n",
        phone.source,
    )


def test_reinvite_relayed_to_the_caller_is_cancelled_when_the_agent_hangs_up(
    h: Harness,
) -> None:
    # Found: a relayed re-INVITE still pending when the call ended was never answered on one
    # side nor ended on the other: after a 1xx its client transaction has no Timer B.
    trunk, phone, invite = answered(h)
    phone_request(h, phone, invite, "INVITE", 2)
    assert statuses(h.take(phone.port)) == [100]
    (relayed,) = requests(h, trunk.port)
    assert relayed.method == "INVITE"
    phone_request(h, phone, invite, "BYE", 3)
    assert sorted(statuses(h.take(phone.port))) == [200, 487]  # BYE done, re-INVITE 487
    h.take(trunk.port)  # our BYE to the caller
    reply(h, trunk.source, relayed, 100, "carrier")  # the 1xx comes only now
    (cancel,) = requests(h, trunk.port)
    assert cancel.method == "CANCEL" and cancel.cseq == (relayed.cseq[0], "CANCEL")
    assert_nothing_left(h)


def test_reinvite_relayed_to_the_agent_is_answered_487_when_the_caller_hangs_up(
    h: Harness,
) -> None:
    trunk, phone, _ = answered(h)
    trunk.reinvite("sendonly")
    h.take(trunk.port)
    (relayed,) = requests(h, phone.port)
    phone.reply(relayed, 180)  # ringing on a re-INVITE: no final answer soon
    assert statuses(h.take(trunk.port)) == [180]
    trunk.bye()
    assert sorted(statuses(h.take(trunk.port))) == [200, 487]  # RFC 3261 §15.1.2
    cancel = [m for m in requests(h, phone.port) if m.method == "CANCEL"]
    assert [m.cseq for m in cancel] == [(relayed.cseq[0], "CANCEL")]
    assert_nothing_left(h)


def test_ack_before_the_2xx_does_not_confirm_the_dialog(h: Harness) -> None:
    # Found: any ACK matching the caller's early dialog marked it confirmed, also one that
    # came before our 200 (and so acknowledged nothing).
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite()
    trunk.to_tag = early_tag(h, trunk)
    trunk.ack()
    (call,) = h.switch.control.sessions.values()
    assert call.a.dialog is not None and not call.a.dialog.confirmed
    (invite,) = requests(h, phone.port)
    phone.reply(invite, 200, sdp=True)
    assert call.answered is not None and call.a.up and not call.a.dialog.confirmed
    trunk.ack()
    assert call.a.dialog.confirmed


def test_the_same_invite_by_a_second_path_is_a_merged_request_answered_482(h: Harness) -> None:
    # Found: the copy (same Call-ID, From tag and CSeq, another branch) queued a second call
    # for the one caller; an agent would have been rung for a call the caller drops at once.
    trunk = Trunk(h)
    trunk.invite()
    assert statuses(h.take(trunk.port)) == [100, 180]
    second_path = trunk.headers
    trunk.headers = lambda method, cseq, branch, to_tag=None: second_path(  # type: ignore
        method, cseq, branch + "x", to_tag
    )
    trunk.invite()
    answers = h.take(trunk.port)
    assert statuses(answers) == [100, 482]
    assert answers[1].to.tag  # a final response gets a To tag (RFC 3261 §8.2.6.2)
    assert len(h.switch.control.sessions) == 1
    assert h.switch.acd.queue_snapshot("general", h.now).waiting == 1
    assert_nothing_left(h)


def test_a_second_cancel_for_the_same_invite_sends_nothing() -> None:
    # Found with the relay fix: a second send_cancel replaced the first CANCEL's transaction.
    layer = TransactionLayer({"UDP": NODE})
    headers = Headers()
    for name, value in (
        ("from", "<sip:a@127.0.0.1>;tag=1"),
        ("to", "<sip:b@127.0.0.1>"),
        ("call-id", "twice"),
        ("cseq", "1 INVITE"),
    ):
        headers.add(name, value)
    peer = Target("UDP", "127.0.0.1", 5070)
    key = layer.send_request(Request("INVITE", "sip:b@127.0.0.1", headers), peer, 0.0)
    via = layer._client[key].request.headers.get_all("via")
    ringing = Headers([("via", v) for v in via] + [(n, v) for n, v in headers if n != "to"])
    ringing.add("to", "<sip:b@127.0.0.1>;tag=x")
    layer.receive_response(Response(180, "", ringing), 0.1)
    layer.outbox.clear()
    assert layer.send_cancel(key, 0.2) == (key[0], "CANCEL")
    assert layer.send_cancel(key, 0.3) is None
    assert len(layer.outbox) == 1
