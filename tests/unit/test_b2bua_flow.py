"""The whole call path through `Switch` with virtual time and no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from sipflow import Harness, Phone, Trunk

from softswitch.call.events import AuthAlert
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


def offered_call(h: Harness) -> tuple[Trunk, Phone, Request]:
    """A trunk call to 9000 and the INVITE it makes to agent 1001's phone."""
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite()
    return trunk, phone, invite_to(phone.port, h)


def answered_call(h: Harness) -> tuple[Trunk, Phone, Request]:
    trunk, phone, invite = offered_call(h)
    phone.reply(invite, 200, sdp=True)
    h.take(phone.port)
    ok = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200][0]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    return trunk, phone, invite


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
    trunk, phone, invite = answered_call(h)
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
    trunk, phone, invite = offered_call(h)
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


def test_a_queued_caller_gets_its_180_again_every_50_s_until_it_cancels(h: Harness) -> None:
    # RFC 3261 §13.3.1.1: a provisional at least once a minute. The caller's one 180 let a
    # Kamailio in front end the call with 408 after 120 s (its fr_inv_timer).
    trunk = Trunk(h)
    trunk.invite()  # 9000: straight into the queue, no agent registered
    first = h.take(trunk.port)
    assert statuses(first) == [100, 180]
    ringing = first[1]
    h.advance(130)
    again = h.take(trunk.port)
    assert statuses(again) == [180, 180]  # at 50 s and 100 s
    assert all(m.to_bytes() == ringing.to_bytes() for m in again)  # same To tag, same body
    assert ringing.to.tag
    trunk.cancel()
    assert sorted(statuses(h.take(trunk.port))) == [200, 487]
    h.advance(130)
    assert 180 not in statuses(h.take(trunk.port))


def test_a_caller_gets_no_more_180s_once_an_agent_answered(h: Harness) -> None:
    trunk, phone, invite = offered_call(h)
    phone.reply(invite, 180)  # passed to the caller: its 180 again is due in 50 s
    h.advance(10)
    phone.reply(invite, 200, sdp=True)
    h.take(phone.port)
    assert statuses(h.take(trunk.port)) == [100, 180, 180, 200]
    h.advance(130)
    assert 180 not in statuses(h.take(trunk.port))


def test_unknown_number_gets_404_and_unknown_source_403(h: Harness) -> None:
    trunk = Trunk(h)
    trunk.invite("5555")
    assert statuses(h.take(trunk.port)) == [100, 404]
    stranger = Trunk(h, port=5091, call_id="x2")
    stranger.source = stranger.source.__class__("UDP", "10.1.2.3", 5091)
    stranger.invite()
    assert [m.status for t, m in h.sent if t.host == "10.1.2.3"] == [403]


def test_a_request_uri_scheme_the_node_does_not_serve_gets_416(h: Harness) -> None:
    # RFC 3261 §8.2.2.1: an OPTIONS to `nope:127.0.0.1` was answered 200.
    trunk = Trunk(h, call_id="scheme")

    def send(method: str, uri: str, n: int) -> None:
        h.deliver(
            f"{method} {uri} SIP/2.0\n"
            + trunk.headers(method, n, f"z9hG4bKscheme{n}")
            + "Content-Length: 0\n\n",
            trunk.source,
        )

    send("OPTIONS", "nope:127.0.0.1", 1)
    send("OPTIONS", "NOPE:someone@127.0.0.1", 2)
    send("REGISTER", "mailto:1001@127.0.0.1", 3)
    send("INVITE", "nope:9000@127.0.0.1", 4)
    refused = h.take(trunk.port)
    assert statuses(refused) == [416, 416, 416, 100, 416]
    finals = [m for m in refused if isinstance(m, Response) and m.status == 416]
    assert all(m.reason == "Unsupported URI Scheme" and m.to.tag for m in finals)
    assert h.switch.control.sessions == {}
    send("ACK", "nope:9000@127.0.0.1", 4)  # the 416's ACK: absorbed, never answered
    send("ACK", "nope:9000@127.0.0.1", 5)  # a stray one too
    assert h.take(trunk.port) == []
    # The schemes the node serves are answered as before.
    send("OPTIONS", "sip:127.0.0.1", 6)
    send("OPTIONS", "tel:+861012345", 7)
    assert statuses(h.take(trunk.port)) == [200, 200]


def test_a_stranger_gets_one_403_per_invite_and_nothing_is_kept(h: Harness) -> None:
    # SIP-8: a 403 kept in a transaction went out ~10 times per INVITE (a flood amplifier,
    # a reflection vector with spoofed sources); stateless, it is one packet per packet.
    stranger = Trunk(h, port=5091, call_id="x3")
    stranger.source = stranger.source.__class__("UDP", "10.1.2.3", 5091)
    for _ in range(3):  # the INVITE and two retransmissions
        stranger.invite()
    h.advance(40)
    refusals = [m for t, m in h.sent if t.host == "10.1.2.3"]
    assert [m.status for m in refusals] == [403, 403, 403]
    assert all(m.to.tag for m in refusals)  # a final response carries a To tag (§8.2.6.2)
    assert h.switch.txn.server_transactions == 0
    assert h.switch.counters["forbidden"] == 3


def test_a_registered_phone_is_trusted_until_its_registration_ends(h: Harness) -> None:
    phone = Phone(h, "1001", 5101)
    phone.source = phone.source.__class__("UDP", "10.9.9.9", 5101)
    assert not h.switch.is_trusted_source("10.9.9.9")
    phone.register(expires=600)
    assert h.switch.is_trusted_source("10.9.9.9")  # first served when the node is loaded
    h.advance(601)
    h.switch.receive(b"\r\n", phone.source, h.now)  # any input moves the switch's clock
    assert not h.switch.is_trusted_source("10.9.9.9")


def test_guessing_raises_alerts_and_guards_the_user_but_not_its_own_phone(h: Harness) -> None:
    alerts: list = []
    h.switch.bus.subscribe(alerts.append, [AuthAlert])
    own = Phone(h, "1001", 5101)
    own.source = own.source.__class__("UDP", "10.9.9.9", 5101)
    assert own.register().status == 200
    for i in range(20):  # a guesser spread over 20 addresses: one wrong password each
        guess = Phone(h, "1001", 5200 + i, password=f"guess{i}")
        guess.source = guess.source.__class__("UDP", f"198.51.100.{i}", 5200 + i)
        assert guess.register().status == 403
    assert [(a.kind, a.user) for a in alerts] == [("user_guarded", "1001")]
    right = Phone(h, "1001", 5300)  # the right password, from an address it never used
    right.source = right.source.__class__("UDP", "198.51.100.77", 5300)
    assert right._register(3600, None).status == 403  # refused before any challenge
    assert own.register().status == 200  # the agent's phone is not locked out
    # One address guessing ten times is banned, and the operator hears of that too.
    guesser = Phone(h, "1002", 5400)
    guesser.source = guesser.source.__class__("UDP", "203.0.113.5", 5400)
    for i in range(10):
        guesser.password = f"guess{i}"
        guesser.register()
    banned = [a for a in alerts if a.kind == "source_banned"]
    assert [(a.source, a.bans) for a in banned] == [("203.0.113.5", 1)]
    assert banned[0].until == pytest.approx(banned[0].at + 60.0)


def test_wrong_password_and_unknown_user_get_the_same_answer(h: Harness) -> None:
    wrong = Phone(h, "1001", 5101, password="nope")
    ghost = Phone(h, "7777", 5102, password="nope")
    a, b = wrong.register(), ghost.register()
    assert (a.status, a.reason) == (b.status, b.reason) == (403, "Forbidden")


def test_the_first_challenge_is_the_same_for_every_user_however_agents_are_set_up(
    tmp_path: Path,
) -> None:
    # SIP-8: the 401 followed the To user's `algorithms` (1002 MD5 only, 1003 SHA-256 only,
    # others both), so a scanner learnt who is an agent and how each is configured.
    import re
    import shutil

    from sipflow import ROOT

    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    agents = config_dir / "agents.yaml"
    text = agents.read_text()
    for agent, algorithms in (("1002", "[MD5]"), ("1003", "[SHA-256]")):
        line = f"    password: pw{agent}   # demo only\n"
        assert line in text
        text = text.replace(line, f"{line}    algorithms: {algorithms}\n")
    agents.write_text(text)
    h = Harness(tmp_path, config_dir)
    restricted = {a.id: a.algorithms for a in h.config.agents if a.algorithms is not None}
    assert restricted == {"1002": ("MD5",), "1003": ("SHA-256",)}

    def challenges(user: str, port: int) -> list[str]:
        first = Phone(h, user, port)._register(3600, None)
        assert first.status == 401
        return [
            re.sub(r'nonce="[^"]*"', 'nonce=""', value)
            for value in first.headers.get_all("www-authenticate")
        ]

    seen = [challenges(user, 5500 + i) for i, user in enumerate(("1001", "1002", "1003", "7777"))]
    assert all(offered == seen[0] for offered in seen)
    # The realm's set (node.yaml auth.algorithms), in its order.
    assert re.findall(r"algorithm=([\w-]+)", " ".join(seen[0])) == ["MD5", "SHA-256"]
    # Each restricted agent still registers with its own algorithm, and only with it.
    assert Phone(h, "1002", 5601, algorithm="MD5").register().status == 200
    assert Phone(h, "1002", 5602, algorithm="SHA-256").register().status == 403
    assert Phone(h, "1003", 5603, algorithm="SHA-256").register().status == 200
    assert Phone(h, "1003", 5604, algorithm="MD5").register().status == 403
    assert Phone(h, "1001", 5605, algorithm="SHA-256").register().status == 200
    ghost = Phone(h, "7777", 5606, algorithm="SHA-256").register()
    assert (ghost.status, ghost.reason) == (403, "Forbidden")


def test_trunk_with_digest_must_authenticate(tmp_path: Path) -> None:
    import hashlib
    import re
    import shutil

    from sipflow import ROOT

    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    (config_dir / "trunks.yaml").write_text(
        "trunks:\n  - name: carrier\n    acl: [127.0.0.0/8]\n"
        "    digest: {username: ims, password: s3cret}\n"
    )
    h = Harness(tmp_path, config_dir)
    trunk = Trunk(h)
    trunk.invite()
    first = h.take(trunk.port)
    assert statuses(first) == [
        100,
        407,
    ]
    challenge = first[1].headers.get("proxy-authenticate") or ""
    nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
    realm = re.search(r'realm="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]

    def credentials(password: str) -> str:
        ha1 = hashlib.md5(f"ims:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(b"INVITE:sip:9000@127.0.0.1").hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        return (
            f'Proxy-Authorization: Digest username="ims", realm="{realm}", nonce="{nonce}", '
            f'uri="sip:9000@127.0.0.1", response="{response}", algorithm=MD5\n'
        )

    wrong = Trunk(h, call_id="t-wrong")
    wrong.invite(extra=credentials("guess"))
    assert statuses(h.take(trunk.port)) == [100, 403]
    right = Trunk(h, call_id="t-right")
    right.invite(extra=credentials("s3cret"))
    assert statuses(h.take(trunk.port)) == [100, 180]


def test_phone_target_uses_contact_unless_behind_nat() -> None:
    from softswitch.call.sipcodec import phone_target

    # same host, other port: a registration on behalf of the phone -> the Contact
    assert phone_target("sip:1001@127.0.0.1:5300", ("127.0.0.1", 40000), "UDP").port == 5300
    # private Contact, public source: NAT -> the registration's source
    behind = phone_target("sip:1001@192.168.1.20:5060", ("203.0.113.9", 61000), "UDP")
    assert (behind.host, behind.port) == ("203.0.113.9", 61000)
    # TCP: reuse the phone's connection
    assert (
        phone_target("sip:1001@127.0.0.1:5300;transport=tcp", ("127.0.0.1", 40001), "TCP").port
        == 40001
    )


def test_dtmf_keys_are_read_from_sip_info_bodies() -> None:
    from softswitch.call.sipcodec import dtmf_from_info
    from softswitch.sip.message import Headers

    def info(content_type: str, body: str) -> Request:
        headers = Headers()
        headers.add("content-type", content_type)
        return Request("INFO", "sip:x@127.0.0.1", headers, body.encode())

    assert dtmf_from_info(info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")) == "5"
    assert dtmf_from_info(info("application/dtmf-relay", "Signal= #\r\n")) == "#"
    assert dtmf_from_info(info("application/dtmf", "*")) == "*"
    assert dtmf_from_info(info("application/dtmf-relay", "Signal=X")) is None
    assert dtmf_from_info(info("application/media_control+xml", "<x/>")) is None


def test_hold_reinvite_from_the_caller_is_relayed_to_the_agent(h: Harness) -> None:
    trunk, phone, _ = answered_call(h)
    trunk.reinvite("sendonly")
    assert statuses(h.take(trunk.port)) == [100]
    (relayed,) = h.take(phone.port)
    assert relayed.method == "INVITE" and relayed.to.tag == "ph"
    assert b"a=sendonly" in relayed.body
    phone.reply(relayed, 200, sdp=True)
    assert statuses(h.take(phone.port)) == ["ACK"]  # we terminate the re-INVITE on this side
    (ok,) = h.take(trunk.port)
    assert ok.status == 200 and ok.cseq == (2, "INVITE") and ok.body
    trunk.ack_cseq()
    assert h.take(phone.port) == []  # the caller's ACK is absorbed, not relayed
    trunk.bye()
    assert statuses(h.take(trunk.port)) == [200]
    (bye,) = h.take(phone.port)
    assert bye.method == "BYE" and bye.cseq[0] == 3  # after the relayed re-INVITE's CSeq 2


def test_reinvite_the_agent_refuses_gets_the_agents_answer(h: Harness) -> None:
    trunk, phone, _ = answered_call(h)
    trunk.reinvite("sendonly")
    h.take(trunk.port)
    (relayed,) = h.take(phone.port)
    phone.reply(relayed, 488)
    assert statuses(h.take(phone.port)) == ["ACK"]  # non-2xx ACKed by the transaction
    (answer,) = h.take(trunk.port)
    assert answer.status == 488
