"""The call model through the whole `Switch`, with virtual time and a fake anchoring engine:
the leg table, the IVR as the node's own party, the queue behind it, voicemail, the
blacklist, transfers, and calls keeping the configuration they started with."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from callkit import IvrHarness, answered_by_node, statuses
from sipflow import Harness, Phone, Trunk

from media.events import TapData
from softswitch.call import events as ev
from softswitch.call.errors import IllegalLegTransition
from softswitch.call.leg import (
    LEG_TRANSITIONS,
    LegEvent,
    LegState,
    format_leg_table,
    next_leg_state,
)
from softswitch.config import load_config
from softswitch.sip.message import Request, Response

ROOT = Path(__file__).resolve().parents[2]
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = dt.datetime(2026, 12, 7, 10, 0, tzinfo=SHANGHAI).timestamp()
SUNDAY_10 = dt.datetime(2026, 12, 6, 10, 0, tzinfo=SHANGHAI).timestamp()


# --- the leg table ------------------------------------------------------------------------
def test_every_leg_state_and_event_pair_is_a_transition_or_a_named_error() -> None:
    for state in LegState:
        for event in LegEvent:
            if (state, event) in LEG_TRANSITIONS:
                assert next_leg_state("l", state, event) is LEG_TRANSITIONS[(state, event)]
            else:
                with pytest.raises(IllegalLegTransition, match=f"from {state.value} on"):
                    next_leg_state("l", state, event)


def test_release_ends_every_leg_and_final_states_stay() -> None:
    for state in LegState:
        after = next_leg_state("l", state, LegEvent.RELEASE)
        assert after in (LegState.ENDED, LegState.FAILED)
        if state in (LegState.ENDED, LegState.FAILED):
            assert after is state
    assert "answered    --         hold--> held" in format_leg_table()


# --- a fake engine that anchors -------------------------------------------------------------
def test_menu_key_takes_the_caller_to_the_queue_with_its_ivr_path(tmp_path: Path) -> None:
    h = IvrHarness(tmp_path, MONDAY_10)
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    assert h.media.last_play(leg)[1] == ["welcome", "welcome_en", "menu_main"]
    h.press(leg, "1")  # during the prompt: it stops (barge-in)
    assert ("stop_play", leg) in h.media.calls
    assert h.finish_play(leg)[-1] == "please_wait"
    (invite,) = [m for m in h.take(phone.port) if isinstance(m, Request)]
    assert invite.method == "INVITE" and invite.headers.get("x-hotline-queue") == "general"
    assert invite.headers.get("x-hotline-var-ivr-path") == "hours>menu>citizen"
    assert b"o=hotline" in invite.body  # the node's own offer, not the carrier's SDP
    phone.reply(invite, 200, sdp=True)
    assert any(b == frozenset((leg, f"{leg[:-2]}-b1")) for b in h.media.bridges)
    assert [m.method for m in h.take(phone.port)] == ["ACK"]
    assert h.take(trunk.port) == []  # the caller was answered by the node: nothing to relay
    trunk.bye()
    h.advance(1)
    call = h.cdr.get_call(leg[:-2])
    assert call is not None
    assert (call["route"], call["queue"], call["agent"], call["disposition"]) == (
        "hotline", "general", "1001", "answered",
    )  # fmt: skip
    assert call["node_answer"] is not None and call["answer"] >= call["node_answer"]
    assert msgspec.json.decode(call["variables"]) == {"ivr_path": "hours>menu>citizen"}
    assert h.switch.control.sessions == {} and h.media.legs == set()


def test_out_of_hours_caller_leaves_voicemail_that_is_published(tmp_path: Path) -> None:
    h = IvrHarness(tmp_path, SUNDAY_10)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    assert h.finish_play(leg) == ["welcome", "closed_main", "closed_main_en"]
    h.finish_play(leg)  # the beep
    (tap,) = h.media.taps
    for _ in range(30):  # three seconds of the caller's voice
        h.switch.media_event(TapData(tap, 800), h.now)
    h.press(leg, "#")
    assert h.media.taps == {}
    assert h.finish_play(leg)[-1] == "message_thanks"
    assert statuses(h.take(trunk.port))[-1] == "BYE"
    (left,) = [e for e in h.bus_events if isinstance(e, ev.VoicemailLeft)]
    assert left.mailbox == "main" and left.caller == "13800000001"
    assert left.seconds == pytest.approx(3.0, abs=0.2)
    assert left.path.endswith(f"main/{leg[:-2]}.wav")


def test_voicemail_ended_by_hanging_up_is_kept(tmp_path: Path) -> None:
    h = IvrHarness(tmp_path, SUNDAY_10)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    h.finish_play(leg)
    h.finish_play(leg)
    (tap,) = h.media.taps
    for _ in range(20):
        h.switch.media_event(TapData(tap, 800), h.now)
    trunk.bye()
    (left,) = [e for e in h.bus_events if isinstance(e, ev.VoicemailLeft)]
    assert left.seconds > 1.5
    call = h.cdr.get_call(leg[:-2])
    assert call is not None and call["hangup_side"] == "caller"
    assert "voicemail_seconds" in msgspec.json.decode(call["variables"])


def test_reinvite_of_a_caller_in_the_ivr_is_answered_by_the_node(tmp_path: Path) -> None:
    h = IvrHarness(tmp_path, MONDAY_10)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    trunk.reinvite("sendonly")
    (ok,) = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200]
    assert b"a=recvonly" in ok.body and b"o=hotline" in ok.body
    (session,) = h.switch.control.sessions.values()
    assert session.a.state is LegState.HELD
    trunk.ack_cseq()
    trunk.reinvite("sendrecv")
    assert 200 in statuses(h.take(trunk.port))
    assert session.a.state is LegState.ANSWERED and session.a.leg_id == leg


class OneBlocked:
    def blocked(self, number: str, epoch: float) -> str | None:
        return "spam" if number == "13800000001" else None


def test_blocked_caller_hears_the_prompt_and_is_hung_up(tmp_path: Path) -> None:
    h = IvrHarness(tmp_path, MONDAY_10, blacklist=OneBlocked())
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    assert h.finish_play(leg) == ["blocked", "blocked_en"]
    assert statuses(h.take(trunk.port)) == ["BYE"]
    call = h.cdr.get_call(leg[:-2])
    assert call is not None and call["disposition"] == "blocked"
    assert h.switch.counters["blocked"] == 1


def test_blocked_caller_is_refused_when_the_node_cannot_play(tmp_path: Path) -> None:
    h = Harness(tmp_path)  # no anchoring engine: the prompt cannot be played
    h.switch.services.blacklist = OneBlocked()
    trunk = Trunk(h)
    trunk.invite("9000")
    assert statuses(h.take(trunk.port)) == [100, 603]
    assert h.switch.control.sessions == {}


def test_out_of_hours_legal_aid_goes_out_through_the_trunk_as_the_hotline(
    tmp_path: Path,
) -> None:
    h = IvrHarness(tmp_path, SUNDAY_10)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12348")
    h.finish_play(leg)
    (invite,) = h.take(5080)
    assert isinstance(invite, Request) and invite.uri == "sip:95000000@127.0.0.1:5080"
    assert invite.from_.uri.startswith("sip:12345@")
    assert invite.headers.get("p-asserted-identity", "").startswith("<sip:12345@")
    assert not [n for n, _ in invite.headers if n.startswith("x-hotline")]
    assert invite.headers.get("diversion") is None and b"o=hotline" in invite.body


def test_a_far_end_whose_media_cannot_be_joined_fails_the_call_not_half_connected(
    tmp_path: Path,
) -> None:
    """The dial-out's far end answers, but the engine cannot join the legs: the call fails
    (503) and both parties are released, as for an agent (call control, not each app)."""
    from media import MediaError

    h = IvrHarness(tmp_path, SUNDAY_10)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12348")
    h.finish_play(leg)
    (invite,) = h.take(5080)

    def refuse(leg_a: str, leg_b: str) -> None:
        raise MediaError("SDP: no common codec")

    h.media.bridge = refuse  # type: ignore[method-assign]
    far = Phone(h, "far", 5080)
    far.reply(invite, 200, sdp=True)
    (row,) = h.cdr.connection.execute("SELECT disposition, sip_cause FROM calls")
    assert tuple(row) == ("failed", 503)
    assert h.switch.control.sessions == {}
    assert "BYE" in statuses(h.take(trunk.port))  # the answered caller is released


def test_a_call_keeps_the_flow_it_started_with_across_a_reload(tmp_path: Path) -> None:
    import shutil

    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    h = IvrHarness(tmp_path, MONDAY_10)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    dialplan = config_dir / "dialplan.yaml"
    dialplan.write_text(
        dialplan.read_text().replace(
            'keys: {"1": citizen, "2": enterprise}', 'keys: {"1": enterprise}'
        )
    )
    h.switch.reload(load_config(config_dir), h.now)
    h.finish_play(leg)
    h.press(leg, "2")  # the old menu still has key 2
    (session,) = h.switch.control.sessions.values()
    assert session.variables["ivr_path"] == "hours>menu>enterprise"
    assert session.config is not h.switch.config


def test_max_wait_answers_with_the_timeout_response_the_call_started_with(
    tmp_path: Path,
) -> None:
    import shutil

    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    h = Harness(tmp_path)
    trunk = Trunk(h)
    trunk.invite("9000")
    h.take(trunk.port)
    queues = config_dir / "queues.yaml"
    queues.write_text(
        queues.read_text().replace("timeout_response: 480", "timeout_response: 486", 1)
    )
    h.switch.reload(load_config(config_dir), h.now)
    h.advance(301)
    finals = {status for status in statuses(h.take(trunk.port)) if status >= 200}
    assert finals == {480}  # (retransmitted until ACKed; before it, a 180 every 50 s)


# --- mixes: a bridge of any number of legs with who hears whom ------------------------------
class ThreeWay:
    """A test application: the caller, then agents 1001 and 1002, all three in one mix."""

    name = "three-way"

    def __init__(self) -> None:
        self.legs: list[str] = []

    def handle(self, call: Any, event: Any, now: float) -> list:
        from softswitch.call import actions as act

        if isinstance(event, ev.Started):
            self.legs.append(call.new_leg_id())
            return [act.Answer(call.caller_leg), act.CallAgent("1001", "general", self.legs[0])]
        if isinstance(event, ev.LegAnswered) and len(self.legs) == 1:
            self.legs.append(call.new_leg_id())
            return [act.CallAgent("1002", "general", self.legs[1])]
        if isinstance(event, ev.LegAnswered):
            everyone = [call.caller_leg, *self.legs]
            return [
                act.Mix("conf", {leg: tuple(o for o in everyone if o != leg) for leg in everyone})
            ]
        return []


def test_a_mix_joins_three_legs_and_shrinks_when_one_hangs_up(tmp_path: Path) -> None:
    h = IvrHarness(tmp_path, MONDAY_10)
    mixes: list[tuple[str, dict]] = []
    h.media.mix = lambda mix_id, hears: mixes.append((mix_id, dict(hears)))  # type: ignore[method-assign]
    h.media.unmix = lambda mix_id: mixes.append((mix_id, {}))  # type: ignore[method-assign]
    phones = [Phone(h, "1001", 5101), Phone(h, "1002", 5102)]
    for phone in phones:
        phone.register()
    trunk = Trunk(h)
    answered_by_node(h, trunk, "12345")  # in the IVR: no queue, no agent yet
    (session,) = h.switch.control.sessions.values()
    app = ThreeWay()
    session.app = app
    h.switch.control._deliver(session, ev.Started(), h.now)
    h.switch.control._drain()
    h._collect()
    invites = []
    for phone in phones:
        (invite,) = [m for m in h.take(phone.port) if isinstance(m, Request)]
        invites.append(invite)
        phone.reply(invite, 200, sdp=True)
        h.take(phone.port)
    caller = session.a.leg_id
    one, two = app.legs
    assert mixes[-1] == (
        f"{session.call_id}-conf",
        {caller: (one, two), one: (caller, two), two: (caller, one)},
    )
    phones[0].bye(invites[0])
    assert mixes[-1] == (f"{session.call_id}-conf", {caller: (two,), two: (caller,)})
    published = [e for e in h.bus_events if isinstance(e, ev.MixChanged)]
    assert [len(e.hears) for e in published] == [3, 2]
    trunk.bye()
    assert mixes[-1] == (f"{session.call_id}-conf", {})
    assert h.switch.control.sessions == {}


def test_voicemail_ends_after_the_configured_silence(tmp_path: Path) -> None:
    h = IvrHarness(tmp_path, SUNDAY_10)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    h.finish_play(leg)
    h.finish_play(leg)
    (session,) = h.switch.control.sessions.values()
    (tap,) = h.media.taps
    sink = session.a.recording[1]
    blocks = 0
    while h.media.taps and blocks < 200:  # 3 s of voice, then the caller says nothing
        blocks += 1
        sink.silent_for = max(0.0, (blocks - 30) * 0.1)
        h.switch.media_event(TapData(tap, 800), h.now)
    # The demo's voicemail node stops after 5 s of quiet (silence_seconds, its default).
    assert blocks == 80 and sink.closed
    (left,) = [e for e in h.bus_events if isinstance(e, ev.VoicemailLeft)]
    # 80 blocks of 0.1 s, and what the tap still held when it stopped (one more here).
    assert left.seconds == pytest.approx(8.1, abs=0.01)


def test_a_sip_i_invite_is_served_from_the_sdp_part_of_its_multipart_body(
    tmp_path: Path,
) -> None:
    # Found: SDP beside application/isup in multipart/mixed (as SIP-I trunks send) got 488
    # ("bad SDP line '--unique-boundary-1'").
    h = IvrHarness(tmp_path, MONDAY_10)
    Phone(h, "1001", 5101).register()
    trunk = Trunk(h)
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    body = (
        "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n" + sdp + "\r\n"
        "--unique-boundary-1\r\nContent-Type: application/isup;version=itu-t92+\r\n"
        "Content-Disposition: signal;handling=optional\r\n\r\n\x01\x00\x49\x00\r\n"
        "--unique-boundary-1--\r\n"
    )
    head = (
        "INVITE sip:9000@127.0.0.1 SIP/2.0\n"
        + trunk.headers("INVITE", 1, "z9hG4bKsipi")
        + "Contact: <sip:carrier@127.0.0.1:5090>\n"
        + "Content-Type: multipart/mixed;boundary=unique-boundary-1\nMIME-Version: 1.0\n"
        + f"Content-Length: {len(body)}\n\n"
    )
    h.switch.receive((head.replace("\n", "\r\n") + body).encode("latin-1"), trunk.source, h.now)
    h._collect()
    assert statuses(h.take(trunk.port)) == [100, 180]
    (session,) = h.switch.control.sessions.values()
    assert session.a.invite is not None and session.a.invite.body == sdp.encode()
    assert session.a.invite.headers.get("content-type") == "application/sdp"
