"""The whole call path through `Switch` with virtual time and no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from sipflow import Harness, Phone, Trunk

from softswitch.sip.message import Request, Response


def statuses(messages: list) -> list:
    return [m.status if isinstance(m, Response) else m.method for m in messages]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def invite_to(phone_port: int, h: Harness) -> Request:
    (invite,) = h.take(phone_port)
    assert isinstance(invite, Request) and invite.method == "INVITE"
    return invite


def test_registered_agent_answers_and_caller_hangs_up(h: Harness) -> None:
    phone = Phone(h, "1001", 5101)
    assert phone.register().status == 200
    trunk = Trunk(h)
    trunk.invite()
    assert statuses(h.take(trunk.port)) == [100, 180]
    invite = invite_to(phone.port, h)
    assert invite.uri == "sip:1001@127.0.0.1:5101"
    assert invite.headers.get("x-hotline-queue") == "general"
    assert b"m=audio 6000" in invite.body  # SDP passed through
    phone.reply(invite, 180)
    phone.reply(invite, 200, sdp=True)
    (ack,) = h.take(phone.port)
    assert ack.method == "ACK"
    (ok,) = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200]
    assert b"m=audio 7000" in ok.body
    trunk.to_tag = ok.to.tag
    trunk.ack()
    h.advance(5)
    trunk.bye()
    assert statuses(h.take(trunk.port)) == [200]
    (bye,) = h.take(phone.port)
    assert bye.method == "BYE"
    phone.reply(bye, 200)
    (call,) = h.cdr._db.execute("SELECT * FROM calls").fetchall()
    assert call["agent"] == "1001"
    assert call["disposition"] == "answered"
    assert call["hangup_side"] == "caller"
    assert call["talk"] == pytest.approx(5.0)
    assert call["caller"] == "13800000001"  # +86 stripped by the trunk rules


def test_agent_hangs_up(h: Harness) -> None:
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite()
    invite = invite_to(phone.port, h)
    phone.reply(invite, 200, sdp=True)
    h.take(phone.port)
    ok = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200][0]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    phone.bye(invite)
    assert statuses(h.take(phone.port)) == [200]
    (bye,) = h.take(trunk.port)
    assert bye.method == "BYE" and bye.uri == "sip:carrier@127.0.0.1:5090"
    (call,) = h.cdr._db.execute("SELECT * FROM calls").fetchall()
    assert call["hangup_side"] == "agent"


def test_no_answer_rings_the_next_agent(h: Harness) -> None:
    first, second = Phone(h, "1001", 5101), Phone(h, "1002", 5102)
    first.register()
    h.advance(1)
    second.register()
    trunk = Trunk(h)
    trunk.invite()
    invite = invite_to(first.port, h)  # longest idle first
    first.reply(invite, 180)
    h.advance(15.1)  # ring timeout of queue general
    (cancel,) = [m for m in h.take(first.port) if isinstance(m, Request)]
    assert cancel.method == "CANCEL"
    invite2 = invite_to(second.port, h)
    assert invite2.headers.get("x-hotline-call-id") == invite.headers.get("x-hotline-call-id")
    log = [r["event"] for r in h.cdr._db.execute("SELECT event FROM queue_log ORDER BY id")]
    assert "RINGNOANSWER" in [e.upper() for e in log] or any("noanswer" in e.lower() for e in log)


def test_busy_agent_is_skipped(h: Harness) -> None:
    first, second = Phone(h, "1001", 5101), Phone(h, "1002", 5102)
    first.register()
    h.advance(1)
    second.register()
    trunk = Trunk(h)
    trunk.invite()
    invite = invite_to(first.port, h)
    first.reply(invite, 486)
    assert statuses(h.take(first.port)) == ["ACK"]
    invite_to(second.port, h)


def test_caller_cancel_while_ringing_cancels_agent(h: Harness) -> None:
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite()
    invite = invite_to(phone.port, h)
    phone.reply(invite, 180)
    h.take(trunk.port)
    trunk.cancel()
    assert sorted(statuses(h.take(trunk.port))) == [200, 487]
    (cancel,) = h.take(phone.port)
    assert cancel.method == "CANCEL"
    (call,) = h.cdr._db.execute("SELECT * FROM calls").fetchall()
    assert call["disposition"] == "abandoned"


def test_caller_waits_max_wait_then_gets_failure_response(h: Harness) -> None:
    trunk = Trunk(h)
    trunk.invite()
    assert statuses(h.take(trunk.port)) == [100, 180]
    h.advance(301)
    final = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status >= 200]
    assert final and final[0].status == 480
    (call,) = h.cdr._db.execute("SELECT * FROM calls").fetchall()
    assert call["disposition"] == "timeout"


def test_unknown_number_gets_404_and_unknown_source_403(h: Harness) -> None:
    trunk = Trunk(h)
    trunk.invite("5555")
    assert statuses(h.take(trunk.port)) == [100, 404]
    stranger = Trunk(h, port=5091, call_id="x2")
    stranger.source = stranger.source.__class__("UDP", "10.1.2.3", 5091)
    stranger.invite()
    assert [m.status for t, m in h.sent if t.host == "10.1.2.3"] == [100, 403]


def test_wrong_password_and_unknown_user_get_the_same_answer(h: Harness) -> None:
    wrong = Phone(h, "1001", 5101, password="nope")
    ghost = Phone(h, "7777", 5102, password="nope")
    a, b = wrong.register(), ghost.register()
    assert (a.status, a.reason) == (b.status, b.reason) == (403, "Forbidden")
