"""Calls the node places on an operator's request (SPEC ACD-7, ACD-8): a callback task it
dials for an agent (`hotline callbacks dial`), and a supervisor's monitor, whisper or barge
started from the CLI (`hotline agent monitor … --supervisor …`). The agent's phone rings
first, as the call's own first leg (virtual time, the fake anchoring engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from callkit import edited_config, statuses
from sipflow import Phone, Trunk
from test_agent_features import FeatureHarness, h_take, requests, talking

from acd import AcdError
from softswitch import cli
from softswitch.call.dialout import RINGING_TONE
from softswitch.config import ConfigError, load_config
from softswitch.control_api import handle_request
from softswitch.sip.message import Request


def abandoned_task(h: FeatureHarness) -> str:
    """A caller of 9000 gives up while 1001 is not ready: the number on the callback list."""
    h.switch.agent_command("1001", "not_ready", h.now)
    trunk = Trunk(h)
    trunk.invite("9000")
    h.advance(5)
    trunk.cancel()
    h.take(trunk.port)
    h.switch.agent_command("1001", "ready", h.now)
    (task,) = h.cdr.callback_list(0.0)
    return str(task["caller"])


def callback_ringing(h: FeatureHarness) -> tuple[Phone, str, str, Request]:
    """Agent 1001's phone, a task's number, the call the node placed for it to 1001, and
    the INVITE ringing the phone."""
    phone = Phone(h, "1001", 5101)
    phone.register()
    number = abandoned_task(h)
    call_id = h.switch.dial_callback(number, "1001", h.now)
    h._collect()
    (ring,) = requests(h.take(phone.port))
    return phone, number, call_id, ring


def test_the_node_rings_the_agent_then_calls_the_caller_back(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone, number, call_id, ring = callback_ringing(h)
    assert ring.method == "INVITE" and ring.uri.startswith("sip:1001@")
    assert ring.from_.display == number  # the phone shows whom it calls back
    assert ring.headers.get("x-hotline-queue") == "general"
    assert ring.headers.get("x-hotline-var-callback-call")
    assert requests(h.take(5080)) == []  # the caller is not dialled before the agent answers
    assert h.switch.acd.agent_state("1001").value == "direct_call"
    Trunk(h, call_id="meanwhile").invite("9000")  # no queue call for the agent meanwhile
    assert requests(h.take(phone.port)) == []
    phone.reply(ring, 200, sdp=True)
    assert [m.method for m in requests(h.take(phone.port))] == ["ACK"]
    (dial,) = requests(h.take(5080))
    assert dial.uri.startswith(f"sip:{number}@") and dial.from_.uri.startswith("sip:12345@")
    assert dial.headers.get("p-asserted-identity", "").startswith("<sip:12345@")
    session = h.switch.control.sessions[call_id]
    agent_leg, far_leg = session.a.leg_id, session.legs[1].leg_id
    far = Phone(h, "far", 5080)
    far.reply(dial, 180)
    assert h.media.plays[agent_leg][-1][1] == RINGING_TONE  # the agent hears it ringing
    far.reply(dial, 200, to_tag="far", sdp=True)
    h.take(5080)
    assert ("stop_play", agent_leg) in h.media.calls
    assert frozenset((agent_leg, far_leg)) in h.media.bridges
    assert h.cdr.callback_list(0.0) == []  # reached: off the list
    phone.in_dialog(ring, "BYE", 2)  # the agent hangs up
    assert statuses(h.take(5080)) == ["BYE"]
    row = h.cdr.get_call(call_id)
    assert row is not None
    assert (row["route"], row["caller"], row["called"], row["agent"], row["disposition"]) == (
        "node:callback", "1001", number, "1001", "answered",
    )  # fmt: skip
    assert row["answer"] is not None
    # The agent is back: the call that waited meanwhile rings it now.
    assert [r.method for r in requests(h.take(phone.port))] == ["INVITE"]


def test_a_callback_the_agent_does_not_answer_stays_on_the_list(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone, _number, call_id, ring = callback_ringing(h)
    phone.reply(ring, 486)
    assert requests(h.take(5080)) == []
    assert h.switch.control.sessions == {}
    assert h.switch.acd.agent_state("1001").value == "idle"
    (task,) = h.cdr.callback_list(0.0)
    assert task["attempts"] == 1
    last = task["last_attempt"]
    assert (last["agent"], last["disposition"], last["sip_cause"]) == ("1001", "no_answer", 486)
    assert h.cdr.get_call(call_id)["disposition"] == "no_answer"


def test_a_callback_the_caller_does_not_answer_hangs_up_the_agent(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone, _number, _call_id, ring = callback_ringing(h)
    phone.reply(ring, 200, sdp=True)
    h.take(phone.port)
    (dial,) = requests(h.take(5080))
    Phone(h, "far", 5080).reply(dial, 480)
    assert statuses(h.take(phone.port)) == ["BYE"]
    assert h.switch.acd.agent_state("1001").value == "idle"
    (task,) = h.cdr.callback_list(0.0)
    assert task["last_attempt"]["disposition"] == "dialout_failed"


def test_the_node_refuses_callbacks_it_cannot_make(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    with pytest.raises(ValueError, match="no registered phone"):
        h.switch.dial_callback("013900000000", "1001", h.now)
    phone = Phone(h, "1001", 5101)
    phone.register()
    with pytest.raises(ValueError, match="no open callback task"):
        h.switch.dial_callback("013900000000", "1001", h.now)
    with pytest.raises(ValueError, match="no agent 4242"):
        h.switch.dial_callback("013900000000", "4242", h.now)
    number = abandoned_task(h)
    Trunk(h, call_id="busy").invite("9000")  # 1001 rings for a queue call
    with pytest.raises(AcdError):
        h.switch.dial_callback(number, "1001", h.now)

    def ask(**request: object) -> dict:
        return handle_request(h.switch, {"op": "callback", **request}, h.now)

    assert ask(number=number, agent=1001) == {
        "ok": False, "error": "callback requests need `number` and `agent` strings",
    }  # fmt: skip
    refused = ask(number=number, agent="1001")
    assert refused["ok"] is False and "ringing" in refused["error"]
    assert len(h.switch.control.sessions) == 1  # only the queue call


def test_a_logged_out_agent_may_still_be_given_a_callback(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    phone = Phone(h, "1001", 5101)
    phone.register()
    number = abandoned_task(h)
    h.switch.agent_command("1001", "logout", h.now)
    reply = handle_request(h.switch, {"op": "callback", "number": number, "agent": "1001"}, h.now)
    h._collect()
    assert reply["ok"] is True
    (ring,) = requests(h.take(phone.port))
    phone.reply(ring, 603)
    assert h.switch.acd.agent_state("1001").value == "logged_out"


# --- supervision from the CLI -------------------------------------------------------------
def test_the_cli_rings_the_supervisor_into_the_agents_call(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["supervise"]})
    sup = Phone(h, "1001", 5101)
    sup.register()
    h.switch.agent_command("1001", "not_ready", h.now)
    trunk, _phones, _invite, call_id = talking(h, "1002")
    target = h.switch.control.sessions[call_id]
    caller, agent_leg = target.a.leg_id, target.legs[1].leg_id
    reply = handle_request(
        h.switch, {"op": "supervise", "supervisor": "1001", "agent": "1002", "mode": "whisper"},
        h.now,
    )  # fmt: skip
    h._collect()
    assert reply["ok"] is True
    (ring,) = requests(h.take(sup.port))
    assert ring.from_.display == "1002"
    assert f"{call_id}-supervise" not in h.media.mixes  # not before someone picks it up
    sup.reply(ring, 200, sdp=True)
    h.take(sup.port)
    s = h.switch.control.sessions[reply["call_id"]].a.leg_id
    assert h.media.mixes[f"{call_id}-supervise"] == {
        s: (caller, agent_leg),
        caller: (agent_leg,),
        agent_leg: (caller, s),
    }
    h.press(s, "3")  # the keys change the mode as on a feature-code call
    assert h.media.mixes[f"{call_id}-supervise"][caller] == (agent_leg, s)
    trunk.bye()
    assert statuses(h_take(sup)) == ["BYE"]
    assert h.switch.control.sessions == {}
    assert h.switch.acd.agent_state("1001").value == "busy"  # back to not ready
    row = h.cdr.get_call(reply["call_id"])
    assert row is not None and row["route"] == "node:whisper"


def test_supervision_the_node_cannot_start_is_refused_at_once(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["supervise"]})
    Phone(h, "1001", 5101).register()
    Phone(h, "1003", 5103).register()
    with pytest.raises(ValueError, match="on no call"):
        h.switch.supervise("1001", "1002", "monitor", h.now)
    with pytest.raises(ValueError, match="not a supervisor"):
        h.switch.supervise("1003", "1002", "monitor", h.now)
    with pytest.raises(ValueError, match="unknown mode"):
        h.switch.supervise("1001", "1002", "listen", h.now)
    with pytest.raises(ValueError, match="itself"):
        h.switch.supervise("1001", "1001", "barge", h.now)
    assert h.switch.control.sessions == {}


def test_the_supervised_call_ending_while_the_supervisor_rings_beeps(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["supervise"]})
    sup = Phone(h, "1001", 5101)
    sup.register()
    h.switch.agent_command("1001", "not_ready", h.now)
    trunk, _phones, _invite, _call_id = talking(h, "1002")
    sup_call = h.switch.supervise("1001", "1002", "monitor", h.now)
    h._collect()
    (ring,) = requests(h.take(sup.port))
    trunk.bye()
    sup.reply(ring, 200, sdp=True)
    s = h.switch.control.sessions[sup_call].a.leg_id
    assert h.media.plays[s][-1][1].f1 == 480.0  # three low beeps, then the call ends
    h.finish_play(s)
    assert "BYE" in statuses(h.take(sup.port))
    assert h.switch.control.sessions == {}


def test_the_supervisor_hangs_up_while_its_phone_still_rings_on_shutdown(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, agent_1001={"features": ["supervise"]})
    sup = Phone(h, "1001", 5101)
    sup.register()
    h.switch.agent_command("1001", "not_ready", h.now)
    talking(h, "1002")
    sup_call = h.switch.supervise("1001", "1002", "monitor", h.now)
    h._collect()
    (ring,) = requests(h.take(sup.port))
    sup.reply(ring, 180)
    h.switch.shutdown(h.now)
    h._collect()
    assert "CANCEL" in statuses(h.take(sup.port))  # the ringing phone is cancelled
    row = h.cdr.get_call(sup_call)
    assert row is not None and row["disposition"] == "shutdown"


def test_the_cli_commands_for_calls_the_node_places(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["agent", "monitor", "1002", "--data", str(tmp_path)]) == 2
    assert "--supervisor" in capsys.readouterr().err
    assert cli.main(["agent", "ready", "1002", "--supervisor", "1001"]) == 2
    # No node runs there: said so, exit 1.
    assert cli.main(["callbacks", "dial", "0139", "--agent", "1001", "--data", str(tmp_path)]) == 1
    assert "no running node" in capsys.readouterr().err
    args = ["agent", "barge", "1002", "--supervisor", "1001", "--data", str(tmp_path)]
    assert cli.main(args) == 1


# --- the queue's own dialler (`callback_dial`) --------------------------------------------
def new_requests(h: FeatureHarness, port: int) -> list:
    """Requests sent to `port` since the last take, ACKs and retransmissions left out."""
    seen, out = set(), []
    for request in requests(h.take(port)):
        if request.method == "ACK":
            continue
        key = (request.call_id, request.cseq, request.method)
        if key not in seen:
            seen.add(key)
            out.append(request)
    return out


def test_the_queues_dialler_calls_a_task_back_retrying_until_reached(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path, {"callback_dial": {"attempts": 3, "retry": 60}})
    phone = Phone(h, "1001", 5101)
    phone.register()
    number = abandoned_task(h)
    h.advance(6)  # the dialler looks every 5 s: 1001 is idle and nobody waits
    (ring,) = new_requests(h, phone.port)
    assert ring.headers.get("x-hotline-queue") == "general" and ring.from_.display == number
    phone.reply(ring, 180)
    h.advance(16)  # general's ring_timeout (15 s): given up
    (cancel,) = new_requests(h, phone.port)
    assert cancel.method == "CANCEL"
    phone.reply(cancel, 200)
    phone.reply(ring, 487)
    (task,) = h.cdr.callback_list(0.0)
    assert (task["attempts"], task["last_attempt"]["disposition"]) == (1, "no_answer")
    h.advance(30)
    assert new_requests(h, phone.port) == []  # not before `retry`
    h.advance(20)  # the second attempt, 60 s after the first
    (again,) = new_requests(h, phone.port)
    phone.reply(again, 200, to_tag="ph2", sdp=True)
    h.take(phone.port)
    (dial,) = requests(h.take(5080))
    Phone(h, "far", 5080).reply(dial, 200, to_tag="far", sdp=True)
    assert h.cdr.callback_list(0.0) == []
    dials = [
        (row["agent"], row["data"]["by"])
        for row in h.cdr.get_queue_log()
        if row["event"] == "CALLBACK_DIAL"
    ]
    assert dials == [("1001", "dialler"), ("1001", "dialler")]


def test_the_dialler_waits_while_callers_wait_and_stops_after_its_attempts(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path, {"callback_dial": {"attempts": 1, "retry": 30}})
    phone = Phone(h, "1001", 5101)
    phone.register()
    abandoned_task(h)
    h.switch.agent_command("1001", "not_ready", h.now)
    waiting = Trunk(h, call_id="waiting")
    waiting.invite("9000")
    h.switch.agent_command("1001", "ready", h.now)
    h._collect()
    (offer,) = new_requests(h, phone.port)  # the waiting caller comes first
    assert offer.headers.get("x-hotline-call-id") != ""
    phone.reply(offer, 486)
    h.advance(6)
    (ring,) = new_requests(h, phone.port)
    assert ring.headers.get("x-hotline-var-callback-call") is None  # the queue call again
    phone.reply(ring, 180)
    waiting.cancel()
    h.take(waiting.port)
    (cancel,) = new_requests(h, phone.port)
    phone.reply(cancel, 200)
    phone.reply(ring, 487)
    h.advance(10)
    (callback,) = [r for r in new_requests(h, phone.port) if r.method == "INVITE"]
    assert callback.headers.get("x-hotline-var-callback-call")
    phone.reply(callback, 603)
    h.advance(120)  # one attempt allowed: the node leaves the task to the agents
    assert [r for r in new_requests(h, phone.port) if r.method == "INVITE"] == []
    (task,) = h.cdr.callback_list(0.0)  # still on the list, once (the same caller twice)
    assert task["attempts"] == 1


def test_a_queue_that_calls_back_needs_a_trunk_that_dials_out(tmp_path: Path) -> None:
    config = edited_config(tmp_path, {"queues": {"callback_dial": {"attempts": 2}}})
    trunks = config / "trunks.yaml"
    trunks.write_text(trunks.read_text().replace('outbound: "127.0.0.1:5080"', ""))
    with pytest.raises(ConfigError, match="callback_dial.*needs a trunk|needs a trunk"):
        load_config(config)


def test_a_callback_the_node_dialled_can_be_supervised_and_released(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    config = tmp_path / "config" / "agents.yaml"  # 1002 supervises
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    next(a for a in doc["agents"] if a["id"] == "1002")["features"] = ["supervise"]
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    h.switch.reload(load_config(tmp_path / "config"), h.now)
    phone, _number, call_id, ring = callback_ringing(h)
    phone.reply(ring, 200, sdp=True)
    h.take(phone.port)
    (dial,) = requests(h.take(5080))
    Phone(h, "far", 5080).reply(dial, 200, to_tag="far", sdp=True)
    h.take(5080)
    session = h.switch.control.sessions[call_id]
    agent_leg, far_leg = session.a.leg_id, session.legs[1].leg_id
    sup = Phone(h, "1002", 5102)
    sup.register()
    h.switch.agent_command("1002", "not_ready", h.now)
    sup_call = h.switch.supervise("1002", "1001", "monitor", h.now)
    h._collect()
    (sup_ring,) = requests(h.take(sup.port))
    sup.reply(sup_ring, 200, sdp=True)
    s = h.switch.control.sessions[sup_call].a.leg_id
    assert h.media.mixes[f"{call_id}-supervise"] == {
        s: (far_leg, agent_leg),
        far_leg: (agent_leg,),
        agent_leg: (far_leg,),
    }
    assert h.switch.agent_command("1001", "release", h.now) == "idle"
    h._collect()
    assert "BYE" in statuses(h.take(5080)) and "BYE" in statuses(h.take(phone.port))
    assert h.switch.control.sessions == {}
