"""Agents' phone features with real peers: pjsua2 agents put the caller on hold and transfer
it (REFER); a Python carrier caller records what it hears. Each agent's phone sends its own
tone (``--tone``), so the caller's audio says who it is connected to at every moment: the
first agent (1000 Hz), the node's hold tone (400 Hz), the agent the call went to (1500 Hz).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from .harness import CONFIG_DIR, HotlineNode, PjAgent
from .ivr_peers import RtpCaller, read_wav, tone, tone_fraction
from .ivr_support import trunks_override

FIRST_TONE, SECOND_TONE, HOLD_TONE = 1000, 1500, 400
CALLER_TONE = 700


def agent(
    pjagent: Callable[..., PjAgent],
    node: HotlineNode,
    user: str,
    hz: int,
    record: Path | None = None,
) -> PjAgent:
    extra = ["--tone", str(hz)] + (["--record", str(record)] if record else [])
    phone = pjagent(user=user, registrar=node, extra_args=extra)
    assert phone.wait_for("registered", timeout=10)["code"] == 200
    return phone


def queue_events(node: HotlineNode, call_id: str) -> list[tuple[str, str | None]]:
    return [
        (row["event"], row["agent"])
        for row in node.cdr_rows("queue_log", call_id=call_id)
        if row["event"] != "AGENT_STATE"
    ]


def ended(node: HotlineNode) -> dict[str, Any]:
    (row,) = node.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None, timeout=10
    )
    return row


def test_hold_plays_the_hold_tone_to_the_caller_and_resume_reconnects(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node()
    phone = agent(pjagent, hotline, "1001", FIRST_TONE)
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.wait_tone(FIRST_TONE)
    phone.wait_for("media_active")
    phone.send("hold")
    held = caller.wait_tone(HOLD_TONE, since=caller.answered_at, timeout=8)
    phone.send("unhold")
    caller.wait_tone(FIRST_TONE, since=held, timeout=8)
    assert caller.hang_up() == 200
    phone.wait_for("disconnected", timeout=5)
    row = ended(hotline)
    assert row["agent"] == "1001" and row["disposition"] == "answered"
    events = [event for event, _ in queue_events(hotline, row["call_id"])]
    assert events.index("HOLD") < events.index("UNHOLD")


@pytest.mark.parametrize(("target", "second_agent"), [("enterprise", "1005"), ("1002", "1002")])
def test_blind_transfer_connects_the_caller_to_the_target_and_frees_the_first_agent(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
    target: str,
    second_agent: str,
) -> None:
    """1001 (queue general) takes the call and sends it to a queue (enterprise, which 1005
    serves) or straight to an agent."""
    hotline = node()
    first = agent(pjagent, hotline, "1001", FIRST_TONE)
    second = agent(pjagent, hotline, second_agent, SECOND_TONE)
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.wait_tone(FIRST_TONE)
    first.wait_for("media_active")
    host = hotline.address.rsplit(":", 1)[0]
    first.send(f"xfer sip:{target}@{host}")
    status = first.wait_for("xfer_status", timeout=8, final=True)
    assert status["code"] == 200
    first.wait_for("disconnected", timeout=8)
    incoming = second.wait_for("incoming", timeout=8)
    assert incoming["headers"].get("X-Hotline-Var-Transferred-By") == "1001"
    caller.wait_tone(SECOND_TONE, timeout=8)
    assert caller.hang_up() == 200
    second.wait_for("disconnected", timeout=5)
    row = ended(hotline)
    assert row["agent"] == second_agent and row["disposition"] == "answered"
    events = queue_events(hotline, row["call_id"])
    assert ("TRANSFER", "1001") in events
    outbound = [
        leg for leg in hotline.cdr_rows("legs", call_id=row["call_id"]) if leg["direction"] == "out"
    ]
    assert [leg["disposition"] for leg in outbound][0] == "transferred"


def agents_with(agent_id: str, **fields: Any) -> dict[str, Any]:
    """agents.yaml as shipped, with `fields` set on one agent."""
    shipped = yaml.safe_load((CONFIG_DIR / "agents.yaml").read_text(encoding="utf-8"))
    for entry in shipped["agents"]:
        if entry["id"] == agent_id:
            entry.update(fields)
    return shipped


def shares(samples: np.ndarray, rate: int) -> dict[int, float]:
    """The energy share of each party's tone in a stretch of audio."""
    if rate != 8000:  # pjsua's recorder writes the bridge's rate; take every n-th sample
        samples = samples[:: rate // 8000]
    return {hz: tone_fraction(samples, hz) for hz in (CALLER_TONE, FIRST_TONE, SECOND_TONE)}


def test_a_supervisor_monitors_whispers_and_barges_and_each_party_hears_what_it_should(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
    tmp_path: Path,
) -> None:
    """The caller sends 700 Hz, agent 1002 1000 Hz, supervisor 1001 1500 Hz; the supervisor
    dials *311002 (monitor), then presses 2 (whisper) and 3 (barge)."""
    hotline = node(agents={"agents": agents_with("1001", features=["supervise"])["agents"]})
    talker = agent(pjagent, hotline, "1002", FIRST_TONE, record=tmp_path / "agent.wav")
    sup = agent(pjagent, hotline, "1001", SECOND_TONE, record=tmp_path / "sup.wav")
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.say(tone(CALLER_TONE, 30.0))
    caller.wait_tone(FIRST_TONE)
    sup.send(f"call sip:*311002@{hotline.address}")
    sup.wait_for("media_active", timeout=8)
    phases: dict[str, tuple[float, float]] = {}
    start = time.time()
    for mode, key in (("monitor", None), ("whisper", "2"), ("barge", "3")):
        if key is not None:
            sup.send(f"dtmf {key}")
            start = time.time()
        time.sleep(2.5)
        phases[mode] = (start + 0.8, time.time() - 0.2)  # settled, before the next key
    recorded = {
        who: phone.wait_for("recording")["time"] for who, phone in (("agent", talker), ("sup", sup))
    }
    assert caller.hang_up() == 200
    sup.wait_for("disconnected", timeout=5)  # the node ends the supervision with the call
    talker.wait_for("disconnected", timeout=5)
    talker.stop()
    sup.stop()
    heard = {
        "agent": read_wav(tmp_path / "agent.wav"),
        "sup": read_wav(tmp_path / "sup.wav"),
    }
    wall_to_mono = time.monotonic() - time.time()
    for mode, (begin, end) in phases.items():
        c = shares(caller.audio(begin + wall_to_mono, end + wall_to_mono), 8000)
        views = {"caller": c}
        for who, wav in heard.items():
            first = int((begin - recorded[who]) * wav.rate)
            last = int((end - recorded[who]) * wav.rate)
            views[who] = shares(wav.samples[first:last], wav.rate)
        present, absent = 0.08, 0.01
        assert views["sup"][CALLER_TONE] > present and views["sup"][FIRST_TONE] > present, (
            mode,
            views,
        )
        assert views["agent"][CALLER_TONE] > present, (mode, views)
        assert views["caller"][FIRST_TONE] > present, (mode, views)
        if mode == "monitor":
            assert views["agent"][SECOND_TONE] < absent, (mode, views)
        else:
            assert views["agent"][SECOND_TONE] > present, (mode, views)
        if mode == "barge":
            assert views["caller"][SECOND_TONE] > present, (mode, views)
        else:
            assert views["caller"][SECOND_TONE] < absent, (mode, views)
    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 2 and all(r["end"] is not None for r in rows)
    )
    assert sorted(r["route"] or "" for r in rows) == ["phone:supervise", "test"]
    (supervised,) = [r for r in rows if r["agent"] == "1002"]
    events = [event for event, _ in queue_events(hotline, supervised["call_id"])]
    assert [e for e in events if e in ("MONITOR", "WHISPER", "BARGE")] == [
        "MONITOR",
        "WHISPER",
        "BARGE",
    ]


def test_a_three_way_call_with_a_department_and_the_agent_leaving_it(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
    tmp_path: Path,
) -> None:
    """Agent 1001 (1000 Hz) dials *4 + a department's number from a second line; the
    department, a pjsua2 phone behind the trunk (1500 Hz), answers: all three hear each
    other. The agent hangs up: caller (700 Hz) and department go on together."""
    department = pjagent(user="dept", extra_args=["--tone", str(SECOND_TONE), "--record",
                                                  str(tmp_path / "dept.wav")])  # fmt: skip
    hotline = node(
        agents={"agents": agents_with("1001", features=["transfer_external"])["agents"]},
        trunks=trunks_override(outbound=department.address),
    )
    phone = agent(pjagent, hotline, "1001", FIRST_TONE, record=tmp_path / "agent.wav")
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.say(tone(CALLER_TONE, 30.0))
    caller.wait_tone(FIRST_TONE)
    phone.send(f"call sip:*4013912345678@{hotline.address}")
    incoming = department.wait_for("incoming", timeout=8)
    assert "12345" in incoming["from"]  # the hotline's number, not the agent's
    department.wait_for("media_active", timeout=8)
    time.sleep(1.0)
    begin = time.time()
    time.sleep(2.0)
    end = time.time()
    phone.send("hangup " + phone.wait_for("confirmed")["call_id"])  # its queue call
    phone.wait_for("disconnected", timeout=5)
    time.sleep(1.0)
    after = time.time()
    time.sleep(2.0)
    after_end = time.time()
    assert caller.hang_up() == 200
    department.wait_for("disconnected", timeout=5)
    department.stop()
    phone.stop()
    wall_to_mono = time.monotonic() - time.time()
    dept_wav = read_wav(tmp_path / "dept.wav")
    dept_t0 = department.wait_for("recording")["time"]

    def dept(a: float, b: float) -> dict[int, float]:
        first, last = int((a - dept_t0) * dept_wav.rate), int((b - dept_t0) * dept_wav.rate)
        return shares(dept_wav.samples[first:last], dept_wav.rate)

    three = shares(caller.audio(begin + wall_to_mono, end + wall_to_mono), 8000)
    assert three[FIRST_TONE] > 0.08 and three[SECOND_TONE] > 0.08, three
    heard = dept(begin, end)
    assert heard[CALLER_TONE] > 0.08 and heard[FIRST_TONE] > 0.08, heard
    two = shares(caller.audio(after + wall_to_mono, after_end + wall_to_mono), 8000)
    assert two[SECOND_TONE] > 0.5 and two[FIRST_TONE] < 0.01, two
    heard = dept(after, after_end)
    assert heard[CALLER_TONE] > 0.5 and heard[FIRST_TONE] < 0.01, heard


def test_feature_codes_and_messages_from_pjsua2_phones(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
) -> None:
    """*2407 from a real phone (through the node's 407) makes 1001 busy with reason 07, *23
    ready again; a MESSAGE from 1001 reaches 1002's phone and its 200 comes back."""
    hotline = node()
    first = agent(pjagent, hotline, "1001", FIRST_TONE)
    second = agent(pjagent, hotline, "1002", SECOND_TONE)
    first.send(f"call sip:*2407@{hotline.address}")
    first.wait_for("disconnected", timeout=8)  # the node beeps and hangs up
    states = hotline.wait_for_rows(
        "queue_log", lambda rows: any(r["event"] == "AGENT_STATE" and r["agent"] == "1001"
                                      and "07" in (r["data"] or "") for r in rows)
    )  # fmt: skip
    assert states
    first.send(f"message sip:1002@{hotline.address} caller 13800138000 needs a callback")
    message = second.wait_for("message", timeout=8)
    assert message["body"] == "caller 13800138000 needs a callback"
    assert "1001" in message["from"]
    assert first.wait_for("message_status", timeout=8)["code"] == 200
    first.send(f"call sip:*23@{hotline.address}")
    first.wait_for("disconnected", timeout=8)
    rows = hotline.cdr_rows("calls")
    assert sorted(r["route"] for r in rows) == ["phone:feature", "phone:feature"]
    assert all(r["trunk"] == "" and r["caller"] == "1001" for r in rows)


def test_a_pjsua2_agent_picks_up_a_call_ringing_at_another(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """1002's phone rings and does not answer; 1001 dials *8 and has the caller."""
    hotline = node()
    ringing = pjagent(user="1002", registrar=hotline, auto_answer=0)  # rings, never answers
    assert ringing.wait_for("registered", timeout=10)["code"] == 200
    picker = agent(pjagent, hotline, "1001", FIRST_TONE)
    caller = rtp_caller(hotline, called="9000")
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(ok=caller.call(timeout=15)))
    thread.start()
    ringing.wait_for("incoming", timeout=8)
    picker.send(f"call sip:*8@{hotline.address}")
    picker.wait_for("media_active", timeout=8)
    ringing.wait_for("disconnected", timeout=8)  # its ring was cancelled
    thread.join(timeout=15)
    assert answer.get("ok") is not None
    caller.wait_tone(FIRST_TONE, timeout=8)
    assert caller.hang_up() == 200
    picker.wait_for("disconnected", timeout=5)
    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 2 and all(r["end"] is not None for r in rows)
    )
    (call,) = [r for r in rows if r["route"] == "test"]
    assert call["agent"] == "1001" and call["disposition"] == "answered"
    assert ("PICKUP", "1001") in queue_events(hotline, call["call_id"])
    (pickup,) = [r for r in rows if r["route"] == "phone:pickup"]
    assert pickup["disposition"] == "picked_up"


def test_pjsua2_agents_call_each_other_by_extension(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    tmp_path: Path,
) -> None:
    hotline = node()
    callee = agent(pjagent, hotline, "1002", SECOND_TONE, record=tmp_path / "callee.wav")
    caller = agent(pjagent, hotline, "1001", FIRST_TONE)
    caller.send(f"call sip:1002@{hotline.address}")
    incoming = callee.wait_for("incoming", timeout=8)
    assert "1001" in incoming["from"]
    callee.wait_for("media_active", timeout=8)
    started = callee.wait_for("recording")["time"]
    time.sleep(2.0)
    caller.send("hangup")
    callee.wait_for("disconnected", timeout=5)
    callee.stop()
    wav = read_wav(tmp_path / "callee.wav")
    heard = shares(
        wav.samples[int(0.5 * wav.rate) : int((time.time() - started - 0.5) * wav.rate)], wav.rate
    )
    assert heard[FIRST_TONE] > 0.5, heard
    (row,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None
    )
    assert (row["route"], row["caller"], row["called"]) == ("phone:internal", "1001", "1002")


def test_attended_transfer_from_pjsua2_after_a_consultation_call(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """1001 holds the caller (who hears the hold tone), consults 1002 on its second line,
    then transfers with Replaces: the caller hears 1002; both of 1001's calls end."""
    hotline = node()
    first = agent(pjagent, hotline, "1001", FIRST_TONE)
    second = agent(pjagent, hotline, "1002", SECOND_TONE)
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.wait_tone(FIRST_TONE)
    queue_call = first.wait_for("confirmed")["call_id"]
    first.send("hold")
    held = caller.wait_tone(HOLD_TONE, timeout=8)
    first.send(f"call sip:1002@{hotline.address}")
    consult = first.wait_for("calling")["call_id"]
    second.wait_for("media_active", timeout=8)
    first.wait_for("confirmed", call_id=consult, timeout=8)
    first.send(f"xfer_replaces {queue_call} {consult}")
    assert first.wait_for("xfer_status", timeout=8, final=True)["code"] == 200
    caller.wait_tone(SECOND_TONE, since=held, timeout=8)
    first.wait_for("disconnected", call_id=queue_call, timeout=8)
    first.wait_for("disconnected", call_id=consult, timeout=8)
    assert caller.hang_up() == 200
    second.wait_for("disconnected", timeout=5)
    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 2 and all(r["end"] is not None for r in rows)
    )
    (call,) = [r for r in rows if r["route"] == "test"]
    (consultation,) = [r for r in rows if r["route"] == "phone:internal"]
    assert call["agent"] == "1002" and call["disposition"] == "answered"
    assert consultation["disposition"] == "transferred"
    assert ("TRANSFER", "1001") in queue_events(hotline, call["call_id"])


def test_auto_answer_requests_reach_a_real_phone(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """What a headset agent's phone reads to answer by itself (RFC 5373 and the common
    Call-Info / Alert-Info forms) arrives intact at pjsip; whether a phone honours them is
    the phone's setting (baresip 1.0.0 does not, see baresip_agent.py)."""
    agents = agents_with("1001", auto_answer=True, auto_answer_after=2)["agents"]
    hotline = node(agents={"agents": agents})
    phone = agent(pjagent, hotline, "1001", FIRST_TONE)
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    headers = phone.wait_for("incoming")["headers"]
    assert "answer-after=2" in headers["Call-Info"]
    assert "info=alert-autoanswer" in headers["Alert-Info"] and "delay=2" in headers["Alert-Info"]
    assert caller.hang_up() == 200
