"""SIP extensions of carriers' IMS cores on the caller's leg (softswitch/call/extensions.py):
reliable provisional responses (RFC 3262) and session timers (RFC 4028), and the 100rel
the node's own INVITEs get from a far end (virtual time, the fake anchoring engine)."""

from __future__ import annotations

from pathlib import Path

from callkit import statuses
from sipflow import Phone, Trunk
from test_agent_features import FeatureHarness, requests

from softswitch.sip.message import Request, Response

IMS = "Supported: 100rel, timer\nAllow: INVITE, ACK, BYE, CANCEL, PRACK, UPDATE\n"


def responses(messages: list) -> list[Response]:
    """The responses among `messages`, 100 Trying left out."""
    return [m for m in messages if isinstance(m, Response) and m.status != 100]


def in_dialog(trunk: Trunk, method: str, extra: str = "", sdp_version: int | None = None) -> None:
    """`method` from the carrier in its dialog (early or confirmed), with the next CSeq."""
    trunk.cseq += 1
    body = ""
    if sdp_version is not None:
        body = (
            f"v=0\no=- 1 {sdp_version} IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
            "m=audio 6000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n"
        ).replace("\n", "\r\n")
    ctype = "Content-Type: application/sdp\n" if body else ""
    trunk.h.deliver(
        f"{method} sip:hotline@127.0.0.1:5060 SIP/2.0\n"
        + trunk.headers(method, trunk.cseq, f"z9hG4bK{method}{trunk.cseq}", trunk.to_tag)
        + f"Contact: <sip:carrier@127.0.0.1:{trunk.port}>\n{extra}{ctype}"
        + f"Content-Length: {len(body)}\n\n"
        + body.replace("\r\n", "\n"),
        trunk.source,
    )


def prack(trunk: Trunk, provisional: Response) -> None:
    trunk.to_tag = provisional.to.tag
    in_dialog(trunk, "PRACK", f"RAck: {provisional.headers.get('rseq')} 1 INVITE\n")


def ringing(h: FeatureHarness, extra: str = IMS) -> tuple[Trunk, Phone, Request]:
    """A carrier's call to 9000 with `extra` headers, ringing agent 1001."""
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite("9000", extra)
    (invite,) = requests(h.take(phone.port))
    return trunk, phone, invite


# --- 100rel -------------------------------------------------------------------------------
def test_a_carrier_that_supports_100rel_gets_reliable_ringing_and_its_prack_answered(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path)
    trunk, phone, invite = ringing(h)  # the queue rings the caller at once
    (ring,) = [r for r in responses(h.take(trunk.port)) if r.status == 180]
    assert ring.headers.get("require") == "100rel" and ring.headers.get("rseq", "").isdigit()
    phone.reply(invite, 180)  # the phone's ringing waits for the PRACK of the first
    h.advance(0.6)  # T1: passed again, the same RSeq
    (again,) = [r for r in responses(h.take(trunk.port)) if r.status == 180]
    assert again.headers.get("rseq") == ring.headers.get("rseq")
    prack(trunk, ring)
    got = responses(h.take(trunk.port))
    assert [r.status for r in got] == [200, 180]  # the PRACK's 200, then the next 180
    assert int(got[1].headers.get("rseq") or 0) == int(ring.headers.get("rseq") or 0) + 1
    prack(trunk, got[1])
    assert [r.status for r in responses(h.take(trunk.port))] == [200]
    h.advance(5)
    assert h.take(trunk.port) == []  # no more retransmissions
    phone.reply(invite, 200, sdp=True)
    (ok,) = [r for r in responses(h.take(trunk.port)) if r.status == 200]
    assert ok.cseq[1] == "INVITE" and ok.headers.get("rseq") is None


def test_no_prack_after_64_t1_refuses_the_call_with_500(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, phone, invite = ringing(h, "Require: 100rel\n")
    h.advance(31.9)
    assert [r.status for r in responses(h.take(trunk.port)) if r.status >= 200] == []
    h.advance(0.2)
    finals = [r for r in responses(h.take(trunk.port)) if r.status >= 200]
    assert [(r.status, r.reason) for r in finals] == [(500, "No PRACK")]
    assert h.switch.control.sessions == {}


def test_a_prack_for_no_provisional_gets_481_and_the_call_goes_on(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, phone, invite = ringing(h)
    (ring,) = [r for r in responses(h.take(trunk.port)) if r.status == 180]
    trunk.to_tag = ring.to.tag
    in_dialog(trunk, "PRACK", "RAck: 1 1 INVITE\n")
    assert [r.status for r in responses(h.take(trunk.port))] == [481]
    prack(trunk, ring)
    assert [r.status for r in responses(h.take(trunk.port))] == [200]


def test_a_2xx_waits_for_the_prack_of_early_media(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, phone, invite = ringing(h)
    (ring,) = [r for r in responses(h.take(trunk.port)) if r.status == 180]
    phone.reply(invite, 183, sdp=True)  # the agent's phone sends early media
    prack(trunk, ring)
    (early,) = [r for r in responses(h.take(trunk.port)) if r.status == 183]
    assert early.body and early.headers.get("require") == "100rel"
    phone.reply(invite, 200, sdp=True)
    assert [r.status for r in responses(h.take(trunk.port)) if r.status >= 200] == []
    prack(trunk, early)
    got = [r.status for r in responses(h.take(trunk.port))]
    assert got[0] == 200 and got[-1] == 200 and len(got) == 2  # the PRACK's, then INVITE's


def test_a_trunk_may_send_ringing_reliably_only_when_required(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunks = tmp_path / "config" / "trunks.yaml"
    trunks.write_text(
        trunks.read_text().replace(
            "name: carrier", "name: carrier\n    reliable_provisional: false"
        )
    )
    from softswitch.config import load_config

    h.switch.reload(load_config(tmp_path / "config"), h.now)
    trunk, phone, invite = ringing(h)
    phone.reply(invite, 180)
    rings = [r for r in responses(h.take(trunk.port)) if r.status == 180]
    assert len(rings) == 2  # the queue's and the phone's, neither waiting for a PRACK
    ring = rings[-1]
    assert ring.headers.get("require") is None and ring.headers.get("rseq") is None


def test_an_invite_requiring_preconditions_gets_420(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    Trunk(h).invite("9000", "Require: precondition, 100rel\n")
    (refused,) = [r for r in responses(h.take(5090)) if r.status >= 200]
    assert refused.status == 420 and refused.headers.get("unsupported") == "precondition"


# --- session timers -----------------------------------------------------------------------
def answered(h: FeatureHarness, extra: str) -> tuple[Trunk, Phone, Request, Response]:
    trunk, phone, invite = ringing(h, extra)
    phone.reply(invite, 200, sdp=True)
    h.take(phone.port)
    (ok,) = [r for r in responses(h.take(trunk.port)) if r.status == 200]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    return trunk, phone, invite, ok


def test_a_session_expires_below_min_se_gets_422(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    Trunk(h).invite("9000", "Supported: timer\nSession-Expires: 60\n")
    (refused,) = [r for r in responses(h.take(5090)) if r.status >= 200]
    assert (refused.status, refused.headers.get("min-se")) == (422, "90")
    assert h.switch.control.sessions == {}


def test_a_call_whose_carrier_stops_refreshing_is_released_on_both_legs(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, phone, _invite, ok = answered(
        h, "Supported: timer\nSession-Expires: 120;refresher=uac\n"
    )
    assert ok.headers.get("session-expires") == "120;refresher=uac"
    assert ok.headers.get("require") == "timer"
    (session,) = h.switch.control.sessions.values()
    h.advance(60)
    in_dialog(trunk, "UPDATE", "Session-Expires: 120;refresher=uac\nSupported: timer\n")
    (refreshed,) = responses(h.take(trunk.port))
    assert (
        refreshed.status == 200 and refreshed.headers.get("session-expires") == "120;refresher=uac"
    )
    assert requests(h.take(phone.port)) == []  # answered by the node, not relayed to the agent
    h.advance(80)  # 140 s: still up, the refresh restarted the timer
    assert h.switch.control.sessions
    h.advance(10)  # 60 + 88 s: no refresh since: released
    assert "BYE" in statuses(h.take(trunk.port)) and "BYE" in statuses(h.take(phone.port))
    row = h.cdr.get_call(session.call_id)
    assert row is not None
    assert (row["hangup_side"], row["sip_cause"], row["disposition"]) == ("system", 408, "answered")
    assert '"release":"session_expired"' in row["variables"].replace(" ", "")


def test_the_node_refreshes_when_the_carrier_cannot(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    extra = "Allow: INVITE, ACK, BYE, UPDATE\nSession-Expires: 200\n"  # no Supported: timer
    trunk, _phone, _invite, ok = answered(h, extra)
    assert ok.headers.get("session-expires") == "200;refresher=uas"
    assert ok.headers.get("require") is None
    h.advance(100.1)
    (update,) = requests(h.take(trunk.port))
    # RFC 4028 §7.4: in a refresh the node sends, `uac` (the sender) names the refresher
    assert (
        update.method == "UPDATE" and update.headers.get("session-expires") == "200;refresher=uac"
    )
    Phone(h, "carrier", trunk.port).reply(update, 200)
    h.advance(100)
    (update,) = requests(h.take(trunk.port))  # the next half interval
    Phone(h, "carrier", trunk.port).reply(update, 481)
    assert "BYE" in statuses(h.take(5101))
    assert h.switch.control.sessions == {}


def test_a_re_invite_that_changes_the_media_is_still_relayed(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, phone, _invite, _ok = answered(h, IMS)
    in_dialog(trunk, "INVITE", "", sdp_version=1)  # the same o= version: a refresh
    assert [r.status for r in responses(h.take(trunk.port))] == [200]
    assert requests(h.take(phone.port)) == []
    in_dialog(trunk, "INVITE", "", sdp_version=2)  # a new version: the agent is asked
    assert [r.method for r in requests(h.take(phone.port))] == ["INVITE"]


# --- 100rel from a far end the node calls -------------------------------------------------
def test_the_node_pracks_a_reliable_provisional_from_the_trunk(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["outbound"]})
    phone = Phone(h, "1001", 5101)
    phone.register()
    phone.dial("013912345678", call_id="out-1")
    (dial,) = requests(h.take(5080))
    assert "100rel" in (dial.headers.get("supported") or "")
    far = Phone(h, "far", 5080)
    lines = dial.headers
    raw = (
        "SIP/2.0 180 Ringing\r\n"
        + "".join(f"Via: {v}\r\n" for v in lines.get_all("via"))
        + f"From: {lines.get('from')}\r\nTo: {lines.get('to')};tag=far\r\n"
        + f"Call-ID: {dial.call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:far@127.0.0.1:5080>\r\n"
        + "Require: 100rel\r\nRSeq: 7\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    h.switch.receive(raw, far.source, h.now)
    h._collect()
    (pr,) = requests(h.take(5080))
    assert pr.method == "PRACK" and pr.headers.get("rack") == "7 1 INVITE" and pr.cseq[0] == 2
    h.switch.receive(raw, far.source, h.now)  # the 180 again: absorbed
    h._collect()
    assert requests(h.take(5080)) == []
    far.reply(pr, 200)
    far.reply(dial, 200, to_tag="far", sdp=True)
    assert [r.method for r in requests(h.take(5080))] == ["ACK"]
    (session,) = h.switch.control.sessions.values()
    assert session.legs[1].dialog is not None and session.legs[1].dialog.local_cseq == 2


def test_a_prack_that_crosses_the_2xx_still_gets_200(tmp_path: Path) -> None:
    """The 180 had no SDP, so the 200 did not wait for its PRACK; pjsip ends a call whose
    PRACK gets 481 there."""
    h = FeatureHarness(tmp_path)
    trunk, phone, invite = ringing(h)
    (ring,) = [r for r in responses(h.take(trunk.port)) if r.status == 180]
    phone.reply(invite, 200, sdp=True)
    assert [r.status for r in responses(h.take(trunk.port))] == [200]
    prack(trunk, ring)
    assert [r.status for r in responses(h.take(trunk.port))] == [200]


# --- DTMF interworking ---------------------------------------------------------------------
def test_a_key_the_agent_sends_by_sip_info_reaches_the_carrier_in_its_media(
    tmp_path: Path,
) -> None:
    """The carrier negotiated telephone-event (or nothing): the agent's INFO is answered by
    the node and the key goes to the caller's leg in the media, not as an INFO."""
    h = FeatureHarness(tmp_path)
    trunk, phone, invite, _ok = answered(h, "")
    body = "Signal=5\r\nDuration=160\r\n"
    frm = invite.headers.get("from") or ""
    h.deliver(
        "INFO sip:hotline@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5101;branch=z9hG4bKinfo1;rport\n"
        f"From: {invite.headers.get('to')};tag=ph\nTo: {frm}\nCall-ID: {invite.call_id}\n"
        "CSeq: 5 INFO\nContent-Type: application/dtmf-relay\nMax-Forwards: 70\n"
        f"Content-Length: {len(body)}\n\n" + body.replace("\r\n", "\n"),
        phone.source,
    )
    assert [r.status for r in responses(h.take(phone.port))] == [200]
    assert requests(h.take(trunk.port)) == []  # no INFO to the carrier
    (session,) = h.switch.control.sessions.values()
    played = h.media.plays[session.a.leg_id][-1][1]
    assert type(played).__name__ == "DtmfTone" and played.digit == "5"


def test_a_relayed_re_invite_answered_only_with_1xx_is_cancelled_by_timer_c(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path)
    trunk, phone, _invite, _ok = answered(h, "")
    in_dialog(trunk, "INVITE", "", sdp_version=5)  # a new offer: the agent is asked
    (relayed,) = [r for r in requests(h.take(phone.port)) if r.method == "INVITE"]
    phone.reply(relayed, 180)  # and never answers
    h.advance(170)
    assert [r.status for r in responses(h.take(trunk.port)) if r.status >= 200] == []
    h.advance(15)  # Timer C, 181 s
    assert "CANCEL" in statuses(h.take(phone.port))
    finals = {r.status for r in responses(h.take(trunk.port)) if r.status >= 200}
    assert finals == {408}  # (passed again until the carrier ACKs it)
    assert h.switch.control.sessions  # the call itself goes on


# --- early media ---------------------------------------------------------------------------
def early_media_harness(tmp_path: Path) -> FeatureHarness:
    h = FeatureHarness(tmp_path)
    path = tmp_path / "config" / "trunks.yaml"
    path.write_text(
        path.read_text().replace("name: carrier", "name: carrier\n    early_media: true")
    )
    from softswitch.config import load_config

    h.switch.reload(load_config(tmp_path / "config"), h.now)
    return h


def test_with_early_media_the_ivr_greets_before_the_call_is_answered(tmp_path: Path) -> None:
    h = early_media_harness(tmp_path)
    trunk = Trunk(h)
    trunk.invite("12345")
    got = responses(h.take(trunk.port))
    assert [r.status for r in got] == [183] and got[0].body  # prompts in early media
    (session,) = h.switch.control.sessions.values()
    caller = session.a.leg_id
    assert h.media.plays[caller]  # the greeting plays already
    assert h.cdr.get_call(session.call_id)["node_answer"] is None  # not billed yet
    h.advance(3)
    h.finish_play(caller)  # the first prompt is over: answered
    ok = [r for r in responses(h.take(trunk.port)) if r.status == 200]
    assert ok and ok[0].body == got[0].body
    assert h.cdr.get_call(session.call_id)["node_answer"] is not None


def test_a_key_in_early_media_answers_the_call(tmp_path: Path) -> None:
    h = early_media_harness(tmp_path)
    trunk = Trunk(h)
    trunk.invite("12345")
    h.take(trunk.port)
    (session,) = h.switch.control.sessions.values()
    h.press(session.a.leg_id, "1")
    assert [r.status for r in responses(h.take(trunk.port))] == [200]


def test_an_agent_phone_answering_after_183_with_sdp_is_bridged_not_hung_up(
    tmp_path: Path,
) -> None:
    """A desk phone that sends its answer in a 183 and repeats it in the 200 (or leaves the
    200 without SDP) answered an offer the engine no longer holds: applying it twice got the
    phone hung up as "unusable SDP" and the next agent rung."""
    for repeat in (True, False):
        h = FeatureHarness(tmp_path / str(repeat))
        trunk, phone, invite = ringing(h, extra="")  # a carrier without 100rel
        phone.reply(invite, 183, sdp=True)
        phone.reply(invite, 200, sdp=repeat)
        assert 200 in [r.status for r in responses(h.take(trunk.port))]
        session = next(iter(h.switch.control.sessions.values()))
        agent = session.legs[1]
        assert (
            agent.up
            and agent.sdp
            and frozenset((session.a.leg_id, agent.leg_id)) in (h.media.bridges)
        )
        assert not any(isinstance(r, Request) and r.method == "BYE" for r in h.take(phone.port))


def test_keys_in_the_media_reach_the_other_party_in_the_form_its_leg_negotiated(
    tmp_path: Path,
) -> None:
    """RFC 4733 toward a leg without telephone-event becomes an in-band tone, an in-band key
    toward a leg with telephone-event also goes as an RFC 4733 event; where both sides
    share the form, the engine's relay carries it and call control sends nothing more."""
    from types import SimpleNamespace

    from media.events import DtmfDigit

    h = FeatureHarness(tmp_path)
    trunk, _phone, _invite, _ok = answered(h, "")
    (session,) = h.switch.control.sessions.values()
    caller, agent = session.a.leg_id, session.legs[1].leg_id
    events: dict[str, int | None] = {caller: None, agent: 101}  # only the agent has RFC 4733
    sent: list[tuple[str, str]] = []
    h.media.remote_media = lambda leg_id: SimpleNamespace(telephone_event_pt=events[leg_id])
    h.media.send_dtmf = lambda leg_id, digit: sent.append((leg_id, digit))

    def key(leg_id: str, digit: str, source: str) -> None:
        h.switch.media_event(DtmfDigit(leg_id, digit, 120, source), h.now)

    def tones(leg_id: str) -> list[str]:
        return [i.digit for _, i in h.media.plays.get(leg_id, []) if type(i).__name__ == "DtmfTone"]

    key(agent, "4", "rfc4733")  # the agent's event, toward a carrier without telephone-event
    assert tones(caller) == ["4"] and sent == []
    key(caller, "8", "inband")  # the carrier's tone, toward an agent with RFC 4733
    assert sent == [(agent, "8")] and tones(agent) == []
    events[caller] = 101  # now both negotiated telephone-event: the engine relays
    key(agent, "2", "rfc4733")
    assert tones(caller) == ["4"] and sent == [(agent, "8")]
    trunk.bye()


def test_the_node_keeps_refreshing_when_the_carrier_answers_its_refresh_per_rfc(
    tmp_path: Path,
) -> None:
    """The carrier supports timer and lets the node refresh. Its answer to the node's UPDATE
    says `refresher=uac`, which in that transaction names the node (RFC 4028 §7.4): the
    node goes on refreshing instead of waiting for the carrier and releasing the call."""
    h = FeatureHarness(tmp_path)
    extra = (
        "Supported: timer\nAllow: INVITE, ACK, BYE, UPDATE\nSession-Expires: 120;refresher=uas\n"
    )
    trunk, _phone, _invite, ok = answered(h, extra)
    assert ok.headers.get("session-expires") == "120;refresher=uas"
    carrier = Phone(h, "carrier", trunk.port)
    for _round in range(3):
        h.advance(60.1)
        (update,) = requests(h.take(trunk.port))
        assert update.headers.get("session-expires") == "120;refresher=uac"
        carrier.reply(update, 200, extra=("Session-Expires: 120;refresher=uac", "Require: timer"))
    assert h.switch.control.sessions  # three intervals later, still up


def _dialled(h: FeatureHarness) -> Request:
    phone = Phone(h, "1001", 5101)
    phone.register()
    phone.dial("013912345678", call_id="out-st")
    (dial,) = requests(h.take(5080))
    return dial


def _answer(h: FeatureHarness, dial: Request, *extra: str) -> None:
    """The far end answers the node's INVITE with `extra` headers; the agent's phone ACKs
    the node's 200 (so that only the session timer can end the call)."""
    Phone(h, "far", 5080).reply(dial, 200, to_tag="far", sdp=True, extra=extra)
    (ok,) = [r for r in responses(h.take(5101)) if r.status == 200 and r.cseq[1] == "INVITE"]
    h.deliver(
        f"ACK sip:hotline@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5101;branch=z9hG4bKphack1;rport\n"
        f"From: {ok.headers.get('from')}\nTo: {ok.headers.get('to')}\nCall-ID: {ok.call_id}\n"
        f"CSeq: {ok.cseq[0]} ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
        Phone(h, "1001", 5101).source,
    )


def test_the_nodes_call_through_a_trunk_asks_for_a_session_timer_and_refreshes_it(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["outbound"]})
    dial = _dialled(h)
    assert "timer" in (dial.headers.get("supported") or "")
    assert dial.headers.get("session-expires") == "1800" and dial.headers.get("min-se") == "90"
    far = Phone(h, "far", 5080)
    _answer(h, dial, "Session-Expires: 100;refresher=uac", "Require: timer",
            "Allow: INVITE, ACK, BYE, UPDATE")  # fmt: skip
    assert [r.method for r in requests(h.take(5080))] == ["ACK"]
    h.advance(50.1)  # the far end named the node (the UAC of its INVITE): half the interval
    (update,) = requests(h.take(5080))
    assert update.method == "UPDATE"
    assert update.headers.get("session-expires") == "100;refresher=uac"
    far.reply(update, 200, to_tag="far", extra=("Session-Expires: 100;refresher=uac",))
    h.advance(50.1)
    assert [r.method for r in requests(h.take(5080))] == ["UPDATE"]


def test_a_trunk_that_stops_refreshing_the_nodes_call_is_released(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["outbound"]})
    dial = _dialled(h)
    far = Phone(h, "far", 5080)
    _answer(h, dial, "Session-Expires: 90;refresher=uas", "Require: timer")
    h.take(5080)
    (session,) = h.switch.control.sessions.values()
    assert session.legs[1].timer is not None and not session.legs[1].timer.node_refreshes
    h.advance(50)  # the far end refreshes: the timer starts again
    frm, to = dial.headers.get("to"), dial.headers.get("from")
    h.deliver(
        "UPDATE sip:hotline@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfarupd1;rport\n"
        f"From: {frm};tag=far\nTo: {to}\nCall-ID: {dial.call_id}\nCSeq: 7 UPDATE\n"
        "Contact: <sip:far@127.0.0.1:5080>\nSupported: timer\n"
        "Session-Expires: 90;refresher=uac\nMax-Forwards: 70\nContent-Length: 0\n\n",
        far.source,
    )
    (refreshed,) = responses(h.take(5080))
    assert refreshed.status == 200
    assert refreshed.headers.get("session-expires") == "90;refresher=uac"
    h.advance(55)  # 105 s: within 90 - 30 s of the refresh
    assert h.switch.control.sessions
    h.advance(10)  # no refresh for 65 s: released on both legs
    assert "BYE" in statuses(h.take(5080)) and "BYE" in statuses(h.take(5101))
    row = h.cdr.get_call(session.call_id)
    assert row is not None and '"release":"session_expired"' in row["variables"].replace(" ", "")


def test_a_trunk_answer_without_session_expires_has_no_session_expiration(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["outbound"]})
    dial = _dialled(h)
    _answer(h, dial)
    h.take(5080)
    (session,) = h.switch.control.sessions.values()
    assert session.legs[1].timer is None
    h.advance(4000)
    assert requests(h.take(5080)) == [] and h.switch.control.sessions


def test_a_422_to_the_nodes_trunk_call_is_retried_once_with_the_far_ends_min_se(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["outbound"]})
    dial = _dialled(h)
    far = Phone(h, "far", 5080)
    far.reply(dial, 422, to_tag="far", extra=("Min-SE: 3600",))
    again = [r for r in requests(h.take(5080)) if r.method == "INVITE"]
    assert len(again) == 1 and again[0].cseq[0] == dial.cseq[0] + 1
    assert again[0].headers.get("session-expires") == "3600"
    assert again[0].call_id == dial.call_id and again[0].from_.tag == dial.from_.tag
    far.reply(again[0], 422, to_tag="far2", extra=("Min-SE: 3600",))  # no second retry
    assert [r for r in requests(h.take(5080)) if r.method == "INVITE"] == []
