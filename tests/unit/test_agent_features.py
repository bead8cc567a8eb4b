"""An agent's phone inside a call, answered by the node: hold with music to the caller, and
blind transfer by REFER (RFC 3515) to an agent, a queue, a flow or an external number
(virtual time, the fake anchoring engine of `callkit`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from callkit import IvrHarness, answered_by_node, edited_config, statuses
from sipflow import Phone, Trunk
from test_call_model import MONDAY_10

from acd import AcdError
from softswitch import cli
from softswitch.call import events as ev
from softswitch.config import ConfigError, load_config
from softswitch.sip.message import Request, Response

ROOT = Path(__file__).resolve().parents[2]
CALLS = itertools.count(1)


class FeatureHarness(IvrHarness):
    """The demo config, with changes to `general` and to agent 1001 when given."""

    def __init__(
        self, tmp_path: Path, general: dict | None = None, agent_1001: dict | None = None
    ) -> None:
        changes = {"queues": general or {}, "agents": agent_1001 or {}}
        super().__init__(tmp_path, MONDAY_10, config_dir=edited_config(tmp_path, changes))

    def queue_log(self, call_id: str) -> list[str]:
        """The call's queue-log events, agents' state changes left out."""
        rows = self.cdr.get_queue_log(call_id)
        return [row["event"] for row in rows if row["event"] != "AGENT_STATE"]


def requests(messages: list) -> list[Request]:
    return [m for m in messages if isinstance(m, Request)]


def talking(h: FeatureHarness, *agents: str) -> tuple[Trunk, list[Phone], Request, str]:
    """A caller of 9000 answered by the first of `agents` (all registered, in order)."""
    phones = [Phone(h, agent, 5100 + int(agent) % 100) for agent in agents]
    for phone in phones:
        phone.register()
    trunk = Trunk(h)
    trunk.invite("9000")
    (invite,) = requests(h.take(phones[0].port))
    phones[0].reply(invite, 200, sdp=True)
    h.take(phones[0].port)  # our ACK
    ok = h.take(trunk.port)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    trunk.to_tag = ok.to.tag
    trunk.ack()
    (session,) = h.switch.control.sessions.values()
    return trunk, phones, invite, session.call_id


def test_hold_from_the_phone_is_answered_by_the_node_and_the_caller_hears_music(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, {"hold_music": "menu_main"})
    trunk, (phone,), invite, call_id = talking(h, "1001")
    session = h.switch.control.sessions[call_id]
    caller, agent_leg = session.a.leg_id, session.legs[1].leg_id
    assert frozenset((caller, agent_leg)) in h.media.bridges
    phone.in_dialog(invite, "INVITE", 2, sdp_direction="sendonly")
    ok = h.take(phone.port)[-1]
    assert isinstance(ok, Response) and ok.status == 200 and b"a=recvonly" in ok.body
    assert h.take(trunk.port) == []  # the carrier is not asked: the node holds the caller
    assert h.media.bridges == set()
    assert h.media.last_play(caller)[1][-1] == "menu_main"
    h.finish_play(caller)
    assert h.media.last_play(caller)[1][-2:] == ["menu_main", "menu_main"]  # over and over
    phone.in_dialog(invite, "INVITE", 3, sdp_direction="sendrecv")
    ok = h.take(phone.port)[-1]
    assert isinstance(ok, Response) and ok.status == 200 and b"a=sendrecv" in ok.body
    assert frozenset((caller, agent_leg)) in h.media.bridges
    assert ("stop_play", caller) in h.media.calls
    assert h.queue_log(call_id)[-2:] == ["HOLD", "UNHOLD"]
    trunk.bye()
    assert h.switch.control.sessions == {}


def test_without_hold_music_a_soft_tone_plays_and_hanging_up_on_hold_stops_it(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (phone,), invite, call_id = talking(h, "1001")
    caller = h.switch.control.sessions[call_id].a.leg_id
    phone.in_dialog(invite, "INVITE", 2, sdp_direction="inactive")
    h.take(phone.port)
    assert type(h.media.plays[caller][-1][1]).__name__ == "Tone"
    stops = h.media.calls.count(("stop_play", caller))
    phone.in_dialog(invite, "BYE", 3)
    assert h.media.calls.count(("stop_play", caller)) == stops + 1
    assert statuses(h.take(trunk.port)) == ["BYE"]  # general has no survey


def test_a_codec_re_offer_from_the_phone_is_still_relayed(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (phone,), invite, _ = talking(h, "1001")
    phone.in_dialog(invite, "INVITE", 2, sdp_direction="sendrecv")
    assert statuses(h.take(trunk.port)) == ["INVITE"]  # not a hold: the caller is asked


def refer(phone: Phone, invite: Request, target: str, cseq: int = 5) -> list:
    phone.in_dialog(invite, "REFER", cseq, headers=f"Refer-To: <{target}>\n")
    return h_take(phone)


def h_take(phone: Phone) -> list:
    """What the phone got (100 Trying left out); it answers each NOTIFY with 200."""
    out = [m for m in phone.h.take(phone.port) if not (isinstance(m, Response) and m.status == 100)]
    for message in requests(out):
        if message.method == "NOTIFY":
            phone.reply(message, 200)
    return out


def notify_frags(messages: list) -> list[bytes]:
    return [m.body.strip() for m in requests(messages) if m.method == "NOTIFY"]


def test_blind_transfer_to_another_queue_rings_its_agent_and_hangs_up_the_first(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (first, other), invite, call_id = talking(h, "1001", "1005")
    # 1005 serves `enterprise` too; 1001 sends the caller there.
    before = h.cdr.get_call(call_id)
    h.advance(30)
    out = refer(first, invite, "sip:enterprise@127.0.0.1")
    assert statuses(out)[0] == 202
    assert notify_frags(out) == [b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK"]
    assert statuses(out)[-1] == "BYE"
    (ring,) = requests(h.take(other.port))
    assert ring.method == "INVITE" and ring.headers.get("x-hotline-queue") == "enterprise"
    assert ring.headers.get("x-hotline-var-transferred-by") == "1001"
    assert h.switch.acd.agent_state("1001").value == "idle"  # done with it (no wrap-up)
    other.reply(ring, 200, to_tag="o5", sdp=True)
    session = h.switch.control.sessions[call_id]
    assert frozenset((session.a.leg_id, session.legs[-1].leg_id)) in h.media.bridges
    assert h.take(trunk.port) == []  # the caller's dialog never changed
    assert "TRANSFER" in h.queue_log(call_id)
    answered = [e.agent_id for e in h.bus_events if isinstance(e, ev.CallAnswered)]
    assert answered == ["1001", "1005"]
    trunk.bye()
    assert h.switch.control.sessions == {}
    row = h.cdr.get_call(call_id)
    assert row is not None and before is not None
    assert (row["answer"], row["wait"], row["agent"]) == (
        before["answer"],
        before["wait"],
        "1005",
    )
    first_leg = session.legs[1].leg_id
    (row,) = [leg for leg in h.cdr.get_legs(call_id) if leg["leg_id"] == first_leg]
    assert row["disposition"] == "transferred"


def test_blind_transfer_to_a_dialplan_number_runs_its_flow(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    _trunk, (first,), invite, call_id = talking(h, "1001")
    out = refer(first, invite, "sip:12345@127.0.0.1")
    assert statuses(out)[0] == 202 and statuses(out)[-1] == "BYE"
    session = h.switch.control.sessions[call_id]
    assert session.app is not None and session.app.name == "ivr"
    assert "welcome" in h.media.last_play(session.a.leg_id)[1]


def test_transfers_the_node_refuses_leave_the_call_with_the_agent(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (first,), invite, call_id = talking(h, "1001")
    cases = [
        ("sip:013912345678@127.0.0.1", 403),  # external: 1001 may not
        ("sip:1001@127.0.0.1", 403),  # itself
        ("sip:1002@127.0.0.1", 480),  # not logged in
        ("sip:nobody@127.0.0.1", 404),
        ("sip:1002@127.0.0.1?Replaces=abc%3Bto-tag%3Dx%3Bfrom-tag%3Dy", 481),  # no such call
    ]
    for cseq, (target, status) in enumerate(cases, start=10):
        out = refer(first, invite, target, cseq)
        assert statuses(out) == [status], target
    first.in_dialog(invite, "REFER", 20)  # no Refer-To at all
    assert statuses(h_take(first)) == [400]
    session = h.switch.control.sessions[call_id]
    assert frozenset((session.a.leg_id, session.legs[1].leg_id)) in h.media.bridges
    assert h.take(trunk.port) == []


def test_a_caller_side_refer_is_refused_not_relayed(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (phone,), _invite, _ = talking(h, "1001")
    trunk.cseq += 1
    h.deliver(
        "REFER sip:hotline@127.0.0.1:5060 SIP/2.0\n"
        + trunk.headers("REFER", trunk.cseq, "z9hG4bKtrkrefer", trunk.to_tag)
        + "Refer-To: <sip:1002@127.0.0.1>\nContent-Length: 0\n\n",
        trunk.source,
    )
    assert statuses(h.take(trunk.port)) == [403]
    assert h.take(phone.port) == []


def test_external_transfer_goes_out_as_the_hotline_for_a_permitted_agent(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["transfer_external"]})
    _trunk, (first,), invite, _ = talking(h, "1001")
    out = refer(first, invite, "sip:013912345678@127.0.0.1")
    assert statuses(out)[0] == 202
    (dial,) = requests(h.take(5080))
    assert dial.uri.startswith("sip:013912345678@") and dial.from_.uri.startswith("sip:12345@")


# --- calls from agents' phones: feature codes, supervisors ---------------------------------
def feature_call(h: FeatureHarness, phone: Phone, code: str, password: str = "") -> list:
    """The phone dials `code` (through the digest challenge); what it got back."""
    phone.dial(code, call_id=f"fc-{next(CALLS)}", password=password)
    return h_take(phone)


def test_feature_codes_change_the_agents_state_and_beep_the_outcome(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone = Phone(h, "1001", 5101)
    phone.register()
    assert h.switch.acd.agent_state("1001").value == "idle"
    out = feature_call(h, phone, "*243")  # not ready, reason 3
    assert statuses(out)[-1] == 200  # answered by the node
    (session,) = h.switch.control.sessions.values()
    assert session.caller == "1001" and session.trunk == ""
    assert h.switch.acd.agent_snapshot("1001").reason == "3"
    leg = session.a.leg_id
    assert type(h.media.plays[leg][-1][1]).__name__ == "Tone"
    assert h.media.plays[leg][-1][1].f1 == 1400.0  # done
    h.finish_play(leg)
    assert statuses(h_take(phone)) == ["BYE"]
    assert h.cdr.get_call(session.call_id)["route"] == "phone:feature"
    feature_call(h, phone, "*23")
    assert h.switch.acd.agent_state("1001").value == "idle"
    (session,) = h.switch.control.sessions.values()
    h.finish_play(session.a.leg_id)
    h.switch.agent_command("1001", "lock", h.now)
    feature_call(h, phone, "*23")  # a locked agent: the engine refuses, low beeps
    (session,) = h.switch.control.sessions.values()
    assert h.media.plays[session.a.leg_id][-1][1].f1 == 480.0
    assert h.switch.acd.agent_state("1001").value == "locked"


def test_phone_calls_need_the_agents_password_and_allowed_numbers(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone = Phone(h, "1001", 5101)
    phone.register()
    assert statuses(feature_call(h, phone, "*23", password="wrong")) == [403]
    assert statuses(feature_call(h, phone, "*311002")) == [403]  # not a supervisor
    assert statuses(feature_call(h, phone, "013912345678")) == [403]  # no `outbound`
    assert statuses(feature_call(h, phone, "hello")) == [404]
    assert h.switch.control.sessions == {}
    assert h.cdr.get_queue_log() == [] or all(
        row["event"] == "AGENT_STATE" for row in h.cdr.get_queue_log()
    )


def test_a_phone_not_registered_from_where_it_calls_is_no_agent(tmp_path: Path) -> None:
    """The same agent's From from another port of the host is a trunk call (the host is in
    the demo trunk's ACL): a feature code means nothing there."""
    h = FeatureHarness(tmp_path)
    Phone(h, "1001", 5101).register()
    stranger = Phone(h, "1001", 5199)
    stranger.h.deliver(
        "INVITE sip:*23@127.0.0.1 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5199;branch=z9hG4bKstr;rport\n"
        "From: <sip:1001@127.0.0.1>;tag=s\nTo: <sip:*23@127.0.0.1>\nCall-ID: str\n"
        "CSeq: 1 INVITE\nMax-Forwards: 70\nContact: <sip:1001@127.0.0.1:5199>\n"
        "Content-Length: 0\n\n",
        stranger.source,
    )
    assert statuses(h.take(5199))[-1] == 404  # the dialplan's default for `*23`


def test_a_supervisor_whispers_then_barges_and_leaves_with_the_call(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["supervise"]})
    sup = Phone(h, "1001", 5101)
    sup.register()
    h.switch.agent_command("1001", "not_ready", h.now)  # 1001 supervises, takes no calls
    trunk, (phone,), _invite, call_id = talking(h, "1002")
    target = h.switch.control.sessions[call_id]
    caller, agent_leg = target.a.leg_id, target.legs[1].leg_id
    out = feature_call(h, sup, "*321002")
    assert statuses(out)[-1] == 200
    (sup_session,) = [s for s in h.switch.control.sessions.values() if s.call_id != call_id]
    s = sup_session.a.leg_id
    mix = f"{call_id}-supervise"
    assert h.media.mixes[mix] == {
        s: (caller, agent_leg),
        caller: (agent_leg,),
        agent_leg: (caller, s),
    }
    assert h.media.bridges == set()
    h.press(s, "3")  # barge: the agent hears a tone, everyone hears everyone
    assert h.media.mixes[mix][caller] == (agent_leg, s)
    assert h.media.plays[agent_leg][-1][1].f1 == 1000.0
    h.press(s, "1")  # back to a silent monitor
    assert h.media.mixes[mix] == {
        s: (caller, agent_leg),
        caller: (agent_leg,),
        agent_leg: (caller,),
    }
    assert [e for e in h.queue_log(call_id) if e in ("WHISPER", "BARGE", "MONITOR")] == [
        "WHISPER", "BARGE", "MONITOR",
    ]  # fmt: skip
    trunk.bye()
    assert mix not in h.media.mixes
    assert statuses(h_take(sup)) == ["BYE"]  # the supervisor's call ends with the call
    assert h.switch.control.sessions == {}


def test_when_the_supervisor_hangs_up_the_parties_are_bridged_again(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["supervise"]})
    sup = Phone(h, "1001", 5101)
    sup.register()
    h.switch.agent_command("1001", "not_ready", h.now)
    trunk, _phones, _invite, call_id = talking(h, "1002")
    target = h.switch.control.sessions[call_id]
    invite = sup.dial("*311002", call_id="sup-1")
    h_take(sup)
    assert f"{call_id}-supervise" in h.media.mixes
    (sup_session,) = [s for s in h.switch.control.sessions.values() if s.call_id != call_id]
    assert sup_session.a.dialog is not None
    sup.hang_up(invite, sup_session.a.dialog.local_tag)
    assert h.media.mixes == {}
    assert frozenset((target.a.leg_id, target.legs[1].leg_id)) in h.media.bridges
    assert len(h.switch.control.sessions) == 1
    trunk.bye()


def test_supervising_an_agent_not_on_a_call_beeps_and_ends(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["supervise"]})
    sup = Phone(h, "1001", 5101)
    sup.register()
    Phone(h, "1002", 5102).register()
    feature_call(h, sup, "*331002")
    (session,) = h.switch.control.sessions.values()
    assert h.media.plays[session.a.leg_id][-1][1].f1 == 480.0
    h.finish_play(session.a.leg_id)
    assert statuses(h_take(sup)) == ["BYE"]


def test_a_supervisor_force_releases_an_agents_call(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (phone,), _invite, call_id = talking(h, "1001")
    with pytest.raises(ValueError, match="on no call"):
        h.switch.agent_command("1002", "release", h.now)
    assert h.switch.agent_command("1001", "release", h.now) == "idle"
    h._collect()
    assert statuses(h.take(trunk.port)) == ["BYE"]
    assert "BYE" in statuses(h.take(phone.port))
    call = h.cdr.get_call(call_id)
    assert call is not None and call["hangup_side"] == "supervisor"
    assert "RELEASED" in h.queue_log(call_id)


def test_an_agent_allowed_outbound_calls_out_as_the_hotline(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["outbound"]})
    phone = Phone(h, "1001", 5101)
    phone.register()
    phone.dial("013912345678", call_id="out-1")
    (dial,) = requests(h.take(5080))
    assert dial.uri.startswith("sip:013912345678@") and dial.from_.uri.startswith("sip:12345@")
    assert dial.headers.get("p-asserted-identity", "").startswith("<sip:12345@")
    assert not any(name.startswith("x-hotline") for name, _ in dial.headers)
    (session,) = h.switch.control.sessions.values()
    assert session.caller == "1001" and session.app is not None and session.app.name == "outbound"


def test_agents_send_each_other_sip_messages(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    sender, receiver = Phone(h, "1001", 5101), Phone(h, "1002", 5102)
    sender.register()
    receiver.register()
    sender.message("1002", "caller 138... needs a callback")
    (relayed,) = requests(h.take(receiver.port))
    assert relayed.method == "MESSAGE" and relayed.body == b"caller 138... needs a callback"
    assert (
        relayed.from_.uri.startswith("sip:1001@")
        and relayed.headers.get("content-type") == "text/plain"
    )
    receiver.reply(relayed, 200)
    assert statuses(h_take(sender))[-1] == 200
    sender.message("1003", "are you there?", call_id="m2")  # not registered
    assert statuses(h_take(sender))[-1] == 480
    sender.message("1002", "no answer", call_id="m3")
    h.take(receiver.port)
    h.advance(40)  # the far phone never answers: the sender hears 408
    assert statuses(h_take(sender))[-1] == 408


def test_blind_transfer_to_a_busy_agent_waits_for_that_agent_only(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (first, second, third), invite, call_id = talking(h, "1001", "1002", "1003")
    h.switch.agent_command("1002", "not_ready", h.now)
    out = refer(first, invite, "sip:1002@127.0.0.1")
    assert statuses(out)[0] == 202 and statuses(out)[-1] == "BYE"
    session = h.switch.control.sessions[call_id]
    assert type(h.media.plays[session.a.leg_id][-1][1]).__name__ == "Tone"  # waiting tone
    h.advance(10)
    assert requests(h.take(third.port)) == []  # 1003 is idle, but the call is for 1002
    h.switch.agent_command("1002", "ready", h.now)
    h._collect()
    (ring,) = requests(h.take(second.port))
    assert ring.headers.get("x-hotline-queue") == "general"
    second.reply(ring, 200, to_tag="o2", sdp=True)
    assert frozenset((session.a.leg_id, session.legs[-1].leg_id)) in h.media.bridges
    trunk.bye()
    assert h.cdr.get_call(call_id)["agent"] == "1002"


def test_a_transfer_to_an_agent_who_logs_out_meanwhile_goes_to_the_queue(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    _trunk, (first, second, third), invite, call_id = talking(h, "1001", "1002", "1003")
    h.switch.agent_command("1002", "not_ready", h.now)
    refer(first, invite, "sip:1002@127.0.0.1")
    second.register(expires=0)  # 1002 logs out while the caller waits for it
    h._collect()
    rings = requests(h.take(first.port) + h.take(third.port))
    assert [r.method for r in rings] == ["INVITE"]  # anyone of general now
    assert "UNAVAILABLE" in h.queue_log(call_id)


def three_way(h: FeatureHarness) -> tuple[Trunk, Phone, Request, Phone, Request, str]:
    """1001 talks to a caller and dials *4 + a department's number from a second line; the
    department (a far end behind the trunk) answers."""
    trunk, (phone,), invite, call_id = talking(h, "1001")
    out = feature_call(h, phone, "*4013912345678")
    assert statuses(out)[-1] == 200
    (feature,) = [s for s in h.switch.control.sessions.values() if s.call_id != call_id]
    h.finish_play(feature.a.leg_id)  # two beeps, the feature call ends
    (dial,) = requests(h.take(5080))
    assert dial.uri.startswith("sip:013912345678@") and dial.from_.uri.startswith("sip:12345@")
    department = Phone(h, "dept", 5080)
    department.reply(dial, 200, to_tag="dp", sdp=True)
    h.take(5080)
    return trunk, phone, invite, department, dial, call_id


def test_a_three_way_call_mixes_the_department_in_and_ends_back_in_two(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["transfer_external"]})
    trunk, _phone, _invite, department, dial, call_id = three_way(h)
    session = h.switch.control.sessions[call_id]
    caller, agent, third = (leg.leg_id for leg in session.legs if leg.up)
    assert h.media.mixes[f"{call_id}-conference"] == {
        caller: (agent, third), agent: (caller, third), third: (caller, agent),
    }  # fmt: skip
    assert "CONFERENCE" in h.queue_log(call_id)
    department.bye(dial, to_tag="dp")  # the department hangs up: caller and agent go on
    assert h.media.mixes == {}
    assert frozenset((caller, agent)) in h.media.bridges
    trunk.bye()
    assert h.switch.control.sessions == {}


def test_the_agent_leaves_a_three_way_call_and_the_caller_stays_with_the_department(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["transfer_external"]})
    trunk, phone, invite, department, dial, call_id = three_way(h)
    session = h.switch.control.sessions[call_id]
    caller, _agent, third = (leg.leg_id for leg in session.legs if leg.up)
    phone.in_dialog(invite, "BYE", 9)
    assert h.media.mixes == {}
    assert frozenset((caller, third)) in h.media.bridges
    assert h.switch.acd.agent_state("1001").value == "idle"
    assert h.take(trunk.port) == []  # the caller is still connected
    department.bye(dial, to_tag="dp")
    assert statuses(h.take(trunk.port)) == ["BYE"]
    assert h.switch.control.sessions == {}


def test_a_three_way_call_needs_permission_and_a_call(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone = Phone(h, "1001", 5101)
    phone.register()
    feature_call(h, phone, "*4013912345678")  # on no call
    (session,) = h.switch.control.sessions.values()
    assert h.media.plays[session.a.leg_id][-1][1].f1 == 480.0
    h.finish_play(session.a.leg_id)
    h_take(phone)
    h.switch.agent_command("1001", "not_ready", h.now)
    _trunk, _phones, _invite, call_id = talking(h, "1002")
    phone2 = Phone(h, "1002", 5102)
    feature_call(h, phone2, "*4013912345678")  # 1002 may not call outside numbers
    (feature,) = [s for s in h.switch.control.sessions.values() if s.call_id != call_id]
    assert h.media.plays[feature.a.leg_id][-1][1].f1 == 480.0
    assert requests(h.take(5080)) == []


def test_an_agent_takes_a_callback_task_from_the_phone(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone = Phone(h, "1001", 5101)
    phone.register()
    h.switch.agent_command("1001", "not_ready", h.now)
    trunk = Trunk(h)
    trunk.invite("9000")  # nobody ready: the caller waits, then gives up
    h.advance(5)
    trunk.cancel()
    h.take(trunk.port)
    h.switch.agent_command("1001", "ready", h.now)
    (task,) = h.cdr.callback_list(0.0)
    number = task["caller"]
    assert (task["kind"], task["attempts"]) == ("abandoned", 0)
    assert statuses(feature_call(h, phone, "*5013999999999")) == [404]  # no such task
    phone.dial(f"*5{number}", call_id="cb-1")
    (dial,) = requests(h.take(5080))
    assert dial.uri.startswith(f"sip:{number}@") and dial.from_.uri.startswith("sip:12345@")
    far = Phone(h, "far", 5080)
    far.reply(dial, 486)  # busy: the attempt is kept with the task
    h.take(5080)
    (task,) = h.cdr.callback_list(0.0)
    assert task["attempts"] == 1
    assert task["last_attempt"] == {
        "agent": "1001",
        "disposition": "dialout_failed",
        "sip_cause": 486,
        "at": pytest.approx(h.switch.control.wall(h.now), abs=1.0),
    }
    phone.dial(f"*5{number}", call_id="cb-2")
    (dial,) = requests(h.take(5080))
    far.reply(dial, 200, to_tag="far", sdp=True)
    h.take(5080)
    assert h.cdr.callback_list(0.0) == []  # reached: off the list


# --- calls between agents, pickup, log in and out -----------------------------------------
def test_an_agent_calls_another_agent_and_neither_gets_queue_calls_meanwhile(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path)
    one, two = Phone(h, "1001", 5101), Phone(h, "1002", 5102)
    one.register()
    two.register()
    one.dial("1002", call_id="int-1")
    (ring,) = requests(h.take(two.port))
    assert ring.from_.uri.startswith("sip:1001@") and ring.headers.get("x-hotline-queue") is None
    assert h.switch.acd.agent_state("1001").value == "direct_call"
    assert h.switch.acd.agent_state("1002").value == "direct_call"
    two.reply(ring, 200, to_tag="t2", sdp=True)
    h.take(two.port)  # our ACK
    (session,) = h.switch.control.sessions.values()
    assert frozenset((session.a.leg_id, session.legs[1].leg_id)) in h.media.bridges
    trunk = Trunk(h)
    trunk.invite("9000")  # a queue call waits: both agents are on the phone
    assert requests(h.take(one.port)) == [] and requests(h.take(two.port)) == []
    two.bye(ring, to_tag="t2")
    h.take(one.port)
    # Both are free again; the waiting caller rings one of them.
    rings = requests(h.take(one.port) + h.take(two.port))
    assert [r.headers.get("x-hotline-queue") for r in rings] == ["general"]


def test_calling_a_busy_agent_gets_486(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    _trunk, (talker,), _invite, _ = talking(h, "1002")
    other = Phone(h, "1001", 5101)
    other.register()
    other.dial("1002", call_id="int-2")
    assert statuses(h_take(other))[-1] == 486


def test_group_and_directed_pickup_take_a_ringing_call(tmp_path: Path) -> None:
    for code in ("*8", "**1002"):
        h = FeatureHarness(tmp_path / code.replace("*", "s"))
        ringing, picker = Phone(h, "1002", 5102), Phone(h, "1001", 5101)
        ringing.register()
        picker.register()
        h.switch.agent_command("1001", "not_ready", h.now)  # the call rings 1002 only
        trunk = Trunk(h)
        trunk.invite("9000")
        (ring,) = requests(h.take(ringing.port))
        ringing.reply(ring, 180)
        picker.dial(code, call_id=f"pick-{code}")
        assert statuses(h_take(picker))[-1] == 200  # answered by the node for the call
        assert "CANCEL" in statuses(h.take(ringing.port))
        (session,) = h.switch.control.sessions.values()
        legs = [leg for leg in session.legs if leg.up]
        assert [leg.agent_id for leg in legs[1:]] == ["1001"]
        assert frozenset((session.a.leg_id, legs[1].leg_id)) in h.media.bridges
        assert h.switch.acd.agent_state("1001").value == "talking"
        assert "PICKUP" in h.queue_log(session.call_id)
        ok = h.take(trunk.port)[-1]
        assert isinstance(ok, Response) and ok.status == 200  # the caller is answered
        trunk.to_tag = ok.to.tag
        trunk.ack()
        trunk.bye()
        assert h.switch.control.sessions == {}
        assert h.cdr.get_call(session.call_id)["agent"] == "1001"


def test_pickup_with_nothing_ringing_is_480(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    picker = Phone(h, "1001", 5101)
    picker.register()
    picker.dial("*8", call_id="pick-none")
    assert statuses(h_take(picker))[-1] == 480
    assert h.switch.control.sessions == {}


def test_log_out_and_in_from_the_phone(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone = Phone(h, "1001", 5101)
    phone.register()
    feature_call(h, phone, "*22")
    assert h.switch.acd.agent_state("1001").value == "logged_out"
    (session,) = h.switch.control.sessions.values()
    h.finish_play(session.a.leg_id)
    h_take(phone)
    trunk = Trunk(h)
    trunk.invite("9000")
    assert requests(h.take(phone.port)) == []  # logged out: no calls
    out = feature_call(h, phone, "*21")
    rings = [r for r in requests(out) if r.headers.get("x-hotline-queue") == "general"]
    assert len(rings) == 1  # logged in: the waiting caller rings it at once
    assert h.switch.acd.agent_state("1001").value == "ringing"
    with pytest.raises(AcdError):
        h.switch.agent_command("1008", "login", h.now)  # its phone is not registered


def test_attended_transfer_hands_the_caller_to_the_consulted_agent(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (first, second), invite, call_id = talking(h, "1001", "1002")
    first.in_dialog(invite, "INVITE", 2, sdp_direction="sendonly")  # hold to consult
    h.take(first.port)
    first.dial("1002", call_id="consult-1")
    (ring,) = requests(h.take(second.port))
    second.reply(ring, 200, to_tag="c2", sdp=True)
    h.take(second.port)
    ok = [m for m in h.take(first.port) if isinstance(m, Response) and m.status == 200][-1]
    node_tag = ok.to.tag
    (consultation,) = [
        s.call_id for s in h.switch.control.sessions.values() if s.call_id != call_id
    ]
    replaces = f"consult-1%3Bto-tag%3D{node_tag}%3Bfrom-tag%3Dd1001"
    out = refer(first, invite, f"sip:1002@127.0.0.1?Replaces={replaces}", cseq=6)
    assert statuses(out)[0] == 202
    assert notify_frags(out) == [b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK"]
    # 1001's legs in both calls are hung up; 1002's phone notices nothing.
    assert statuses(out).count("BYE") == 2
    assert requests(h.take(second.port)) == []
    session = h.switch.control.sessions[call_id]
    assert list(h.switch.control.sessions) == [call_id]  # the consultation call is over
    b = session.legs[-1]
    assert b.agent_id == "1002" and frozenset((session.a.leg_id, b.leg_id)) in h.media.bridges
    assert ("stop_play", session.a.leg_id) in h.media.calls  # the hold music stops
    assert h.switch.acd.agent_state("1001").value == "idle"
    assert h.switch.acd.agent_state("1002").value == "direct_call"
    assert h.take(trunk.port) == []
    trunk.bye()
    assert "BYE" in statuses(h.take(second.port))
    assert h.switch.acd.agent_state("1002").value == "idle"
    assert h.cdr.get_call(call_id)["agent"] == "1002"
    row = h.cdr.get_call(consultation)
    assert row is not None and row["disposition"] == "transferred" and row["end"] is not None


def test_attended_transfer_refusals_leave_both_calls(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    _trunk, (first, _second), invite, call_id = talking(h, "1001", "1002")
    cases = [
        ("unknown%3Bto-tag%3Dx%3Bfrom-tag%3Dy", 481),
        ("consult-x", 400),
    ]
    for cseq, (replaces, status) in enumerate(cases, start=30):
        out = refer(first, invite, f"sip:1002@127.0.0.1?Replaces={replaces}", cseq=cseq)
        assert statuses(out) == [status]
    session = h.switch.control.sessions[call_id]
    assert frozenset((session.a.leg_id, session.legs[1].leg_id)) in h.media.bridges


def test_a_three_way_call_with_another_agent_who_then_keeps_the_caller(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    trunk, (first, second), invite, call_id = talking(h, "1001", "1002")
    feature_call(h, first, "*41002")
    (feature,) = [s for s in h.switch.control.sessions.values() if s.call_id != call_id]
    h.finish_play(feature.a.leg_id)
    h_take(first)
    (ring,) = requests(h.take(second.port))
    assert ring.headers.get("x-hotline-queue") is None
    assert h.switch.acd.agent_state("1002").value == "direct_call"
    second.reply(ring, 200, to_tag="c3", sdp=True)
    h.take(second.port)
    session = h.switch.control.sessions[call_id]
    assert len(h.media.mixes[f"{call_id}-conference"]) == 3
    first.in_dialog(invite, "BYE", 9)
    third = session.legs[-1].leg_id
    assert frozenset((session.a.leg_id, third)) in h.media.bridges
    assert h.switch.acd.agent_state("1001").value == "idle"
    trunk.bye()
    assert h.switch.acd.agent_state("1002").value == "idle"
    assert h.switch.control.sessions == {}


def test_a_mobile_agent_logs_in_from_the_cli_and_is_rung_through_the_trunk(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"mobile": "013700000001"})
    assert h.switch.acd.agent_state("1001").value == "logged_out"
    assert h.switch.agent_command("1001", "login", h.now) == "idle"
    trunk = Trunk(h)
    trunk.invite("9000")
    (ring,) = requests(h.take(5080))
    assert ring.uri.startswith("sip:013700000001@") and ring.from_.uri.startswith("sip:12345@")
    assert not any(name.startswith("x-hotline") for name, _ in ring.headers)
    mobile = Phone(h, "mobile", 5080)
    mobile.reply(ring, 200, to_tag="m1", sdp=True)
    h.take(5080)
    (session,) = h.switch.control.sessions.values()
    assert frozenset((session.a.leg_id, session.legs[1].leg_id)) in h.media.bridges
    mobile.bye(ring, to_tag="m1")
    assert h.cdr.get_call(session.call_id)["agent"] == "1001"
    assert h.switch.agent_command("1001", "logout", h.now) == "logged_out"
    Trunk(h, call_id="second").invite("9000")
    assert requests(h.take(5080)) == []


def test_a_mobile_agent_needs_a_trunk_that_dials_out(tmp_path: Path) -> None:
    config = edited_config(tmp_path, {"agents": {"mobile": "013700000001"}})
    trunks = config / "trunks.yaml"
    trunks.write_text(trunks.read_text().replace('outbound: "127.0.0.1:5080"', ""))
    with pytest.raises(ConfigError, match="mobile agent needs a trunk"):
        load_config(config)


def test_the_phones_bye_after_its_transfer_crossing_ours_gets_200(tmp_path: Path) -> None:
    """RFC 5589 §6: the transferor hangs up after the final NOTIFY, as the node does."""
    h = FeatureHarness(tmp_path)
    _trunk, (first, _other), invite, call_id = talking(h, "1001", "1005")
    out = refer(first, invite, "sip:enterprise@127.0.0.1")
    assert statuses(out)[-1] == "BYE"  # ours
    first.in_dialog(invite, "BYE", 7)  # the phone's, crossing it
    assert statuses(h_take(first)) == [200]


def test_a_three_way_call_past_the_queues_limit_raises_one_alert(tmp_path: Path) -> None:
    h = FeatureHarness(
        tmp_path, {"conference_alert": 60}, agent_1001={"features": ["transfer_external"]}
    )
    trunk, _phone, _invite, _department, _dial, call_id = three_way(h)
    h.advance(59)
    assert "AGENT_ALERT" not in h.queue_log(call_id)
    h.advance(2)
    (alert,) = [r for r in h.cdr.get_queue_log(call_id) if r["event"] == "AGENT_ALERT"]
    assert alert["agent"] == "1001" and alert["data"] == {"what": "conference", "seconds": 60.0}
    trunk.bye()


def test_a_hold_longer_than_the_queues_hold_alert_raises_an_alert(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, {"hold_alert": 30})
    trunk, (phone,), invite, call_id = talking(h, "1001")
    phone.in_dialog(invite, "INVITE", 2, sdp_direction="sendonly")
    assert h.switch.acd.agent_state("1001").value == "hold"
    h.advance(31)
    (alert,) = [r for r in h.cdr.get_queue_log(call_id) if r["event"] == "AGENT_ALERT"]
    assert alert["agent"] == "1001" and alert["data"]["state"] == "hold"
    phone.in_dialog(invite, "INVITE", 3, sdp_direction="sendrecv")
    assert h.switch.acd.agent_state("1001").value == "talking"
    trunk.bye()


def test_hotline_status_shows_direct_calls_and_agents_logged_out_by_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    h = FeatureHarness(tmp_path)
    one, two = Phone(h, "1001", 5101), Phone(h, "1002", 5102)
    one.register()
    two.register()
    one.dial("1002", call_id="int-status")
    reply = {"ok": True, **h.switch.live_status(h.now)}
    monkeypatch.setattr(cli, "_ask_node", lambda data, message: reply)
    assert cli.main(["status", "--data", str(tmp_path)]) == 0
    lines = {line.split("\t")[0]: line.split("\t") for line in capsys.readouterr().out.splitlines()}
    assert lines["1001"][1] == "direct_call" and lines["1001"][6:] == ["1", "registered"]
    h.switch.agent_command("1002", "logout", h.now)  # on its call: applies at the end
    reply = {"ok": True, **h.switch.live_status(h.now)}
    assert cli.main(["status", "--data", str(tmp_path)]) == 0
    lines = {line.split("\t")[0]: line.split("\t") for line in capsys.readouterr().out.splitlines()}
    assert lines["1002"][1] == "direct_call (logging out)"
    assert lines["1002"][7] == "registered, logged out by the agent"


def test_login_to_some_queues_through_the_control_socket(tmp_path: Path) -> None:
    from softswitch.control_api import handle_request

    h = FeatureHarness(tmp_path)
    phone = Phone(h, "1005", 5105)  # serves general and enterprise
    phone.register()

    def ask(**request: object) -> dict:
        return handle_request(h.switch, {"op": "agent", "agent": "1005", **request}, h.now)

    assert ask(action="login", queues=["enterprise"]) == {
        "ok": True, "agent": "1005", "state": "idle",
    }  # fmt: skip
    assert h.switch.acd.agent_snapshot("1005").queues == ("enterprise",)
    Trunk(h).invite("9000")  # general: 1005 is not logged in to it
    assert requests(h.take(phone.port)) == []
    refused = ask(action="login", queues=["legal"])
    assert not refused["ok"] and "may not serve" in refused["error"]
    assert ask(action="not_ready", queues=["general"])["ok"] is False
    assert ask(action="login", queues="general")["ok"] is False  # a string, not a list
    assert ask(action="login")["ok"]  # all its queues again: the waiting call rings it
    h._collect()
    assert [r.method for r in requests(h.take(phone.port))] == ["INVITE"]


def test_a_mobile_agents_logout_forgets_its_chosen_queues(tmp_path: Path) -> None:
    h = FeatureHarness(
        tmp_path, agent_1001={"mobile": "013700000001", "queues": ["general", "legal"]}
    )
    h.switch.agent_command("1001", "login", h.now, queues=["legal"])
    assert h.switch.acd.agent_snapshot("1001").queues == ("legal",)
    assert h.switch.agent_command("1001", "logout", h.now) == "logged_out"
    assert h.switch.agent_command("1001", "login", h.now) == "idle"
    assert h.switch.acd.agent_snapshot("1001").queues == ("general", "legal")


def test_a_queue_overflows_to_a_callback_offer_that_puts_the_caller_on_the_list(
    tmp_path: Path,
) -> None:
    import yaml

    config = edited_config(
        tmp_path, {"queues": {"max_wait": 30, "overflow": {"flow": "offer_callback"}}}
    )
    dialplan = config / "dialplan.yaml"
    doc = yaml.safe_load(dialplan.read_text(encoding="utf-8"))
    doc["flows"]["offer_callback"] = {
        "start": "offer",
        "nodes": {
            "offer": {"type": "menu", "prompt": "welcome", "keys": {"1": "cb", "2": "bye"}},
            "cb": {"type": "callback", "queue": "general", "prompt": "please_wait"},
            "bye": {"type": "hangup"},
        },
    }
    dialplan.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    h = IvrHarness(tmp_path, MONDAY_10, config_dir=config)
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    h.press(leg, "1")
    h.finish_play(leg)  # in general now; nobody is logged in
    h.advance(31)  # max wait: the overflow flow offers a callback
    h.finish_play(leg)
    h.press(leg, "1")
    assert h.finish_play(leg)[-1] == "please_wait"
    assert statuses(h.take(trunk.port))[-1] == "BYE"
    call = h.cdr.get_call(leg[:-2])
    assert call is not None and call["disposition"] == "callback"
    (task,) = h.cdr.callback_list(0.0)
    assert (task["kind"], task["queue"], task["caller"]) == ("callback", "general", "13800000001")


def test_a_callback_node_must_name_a_queue(tmp_path: Path) -> None:
    import yaml

    config = edited_config(tmp_path, {})
    dialplan = config / "dialplan.yaml"
    doc = yaml.safe_load(dialplan.read_text(encoding="utf-8"))
    doc["flows"]["offer_callback"] = {
        "start": "cb", "nodes": {"cb": {"type": "callback", "queue": "nosuch"}},
    }  # fmt: skip
    dialplan.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown queue `nosuch`"):
        load_config(config)


def test_a_phone_restored_after_a_restart_may_dial_feature_codes(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    Phone(h, "1001", 5101).register()
    saved = h.switch.location.bindings(h.now)
    again = FeatureHarness(tmp_path / "restarted")
    again.switch.restore_bindings(saved, again.now)
    phone = Phone(again, "1001", 5101)  # it did not register again
    assert statuses(feature_call(again, phone, "*243"))[-1] == 200
    assert again.switch.acd.agent_snapshot("1001").reason == "3"
