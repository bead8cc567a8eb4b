"""Calls the node places on an operator's request, with real peers and the real CLI: it
dials a callback task for a pjsua2 agent (`hotline callbacks dial`), and rings a pjsua2
supervisor into an agent's call (`hotline agent monitor … --supervisor …`). Each party
sends its own tone, so what each records says whom it hears."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .harness import HotlineNode, PjAgent, Sipp
from .ivr_peers import RtpCaller, read_wav, tone
from .ivr_support import hotline_cli, trunks_override
from .test_agent_features import (
    CALLER_TONE,
    FIRST_TONE,
    SECOND_TONE,
    agent,
    agents_with,
    shares,
)

SIPP_TIMEOUT = 30.0


def heard(t0: float, wav_path: Path, begin: float, end: float) -> dict[int, float]:
    """The tone shares in what a phone recorded (from wall time `t0`) between wall times
    `begin` and `end`."""
    wav = read_wav(wav_path)
    first, last = int((begin - t0) * wav.rate), int((end - t0) * wav.rate)
    return shares(wav.samples[first:last], wav.rate)


def test_the_node_dials_a_callback_task_for_an_agent(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
) -> None:
    """A caller gives up waiting (SIPp CANCEL); the operator has the node call it back for
    agent 1001 (1000 Hz): the agent's phone rings first, then the citizen, a pjsua2 phone
    behind the carrier trunk (1500 Hz), sees the hotline's number and talks to the agent."""
    citizen = pjagent(user="citizen", extra_args=["--tone", str(SECOND_TONE), "--record",
                                                  str(tmp_path / "citizen.wav")])  # fmt: skip
    hotline = node(trunks=trunks_override(outbound=citizen.address))
    data = str(hotline.data_dir)
    phone = agent(pjagent, hotline, "1001", FIRST_TONE, record=tmp_path / "agent.wav")
    assert hotline_cli("agent", "not-ready", "1001", "--data", data).returncode == 0
    gave_up = sipp(
        "uac_cancel_queued", remote=hotline.address, service="9000", duration_ms=1000,
        timeout=SIPP_TIMEOUT,
    )  # fmt: skip
    gave_up.run()
    gave_up.check()
    assert hotline_cli("agent", "ready", "1001", "--data", data).returncode == 0
    listed = hotline_cli("callbacks", "--data", data)
    assert "13800138000" in listed.stdout, listed.stdout
    refused = hotline_cli("callbacks", "dial", "013999999999", "--agent", "1001", "--data", data)
    assert refused.returncode == 2 and "no open callback task" in refused.stderr

    dialled = hotline_cli("callbacks", "dial", "13800138000", "--agent", "1001", "--data", data)
    assert dialled.returncode == 0, dialled.stderr
    assert "13800138000" in phone.wait_for("incoming", timeout=8)["from"]
    incoming = citizen.wait_for("incoming", timeout=8)
    assert "12345" in incoming["from"]  # the hotline's number
    citizen.wait_for("media_active", timeout=8)
    time.sleep(1.0)
    begin = time.time()
    time.sleep(2.0)
    end = time.time()
    phone.send("hangup " + phone.wait_for("confirmed")["call_id"])
    citizen.wait_for("disconnected", timeout=5)
    phone.wait_for("disconnected", timeout=5)
    starts = [p.wait_for("recording")["time"] for p in (citizen, phone)]
    citizen.stop()
    phone.stop()
    at_citizen = heard(starts[0], tmp_path / "citizen.wav", begin, end)
    at_agent = heard(starts[1], tmp_path / "agent.wav", begin, end)
    assert at_citizen[FIRST_TONE] > 0.5, at_citizen
    assert at_agent[SECOND_TONE] > 0.5, at_agent
    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 2 and all(r["end"] is not None for r in rows)
    )
    (back,) = [r for r in rows if r["route"] == "node:callback"]
    assert (back["caller"], back["called"], back["agent"], back["disposition"]) == (
        "1001", "13800138000", "1001", "answered",
    )  # fmt: skip
    assert "13800138000" not in hotline_cli("callbacks", "--data", data).stdout


def test_the_cli_rings_a_supervisor_into_an_agents_call(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
    tmp_path: Path,
) -> None:
    """Caller 700 Hz, agent 1002 1000 Hz, supervisor 1001 1500 Hz. `hotline agent monitor
    1002 --supervisor 1001` rings the supervisor, who hears both parties and is heard by
    neither; key 3 barges in, and the caller hears the supervisor too."""
    hotline = node(agents={"agents": agents_with("1001", features=["supervise"])["agents"]})
    data = str(hotline.data_dir)
    talker = agent(pjagent, hotline, "1002", FIRST_TONE, record=tmp_path / "agent.wav")
    sup = agent(pjagent, hotline, "1001", SECOND_TONE, record=tmp_path / "sup.wav")
    assert hotline_cli("agent", "not-ready", "1001", "--data", data).returncode == 0
    refused = hotline_cli("agent", "monitor", "1002", "--supervisor", "1001", "--data", data)
    assert refused.returncode == 2 and "on no call" in refused.stderr
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.say(tone(CALLER_TONE, 30.0))
    caller.wait_tone(FIRST_TONE)
    started = hotline_cli("agent", "monitor", "1002", "--supervisor", "1001", "--data", data)
    assert started.returncode == 0, started.stderr
    sup.wait_for("media_active", timeout=8)
    phases: dict[str, tuple[float, float]] = {}
    start = time.time()
    for mode, key in (("monitor", None), ("barge", "3")):
        if key is not None:
            sup.send(f"dtmf {key}")
            start = time.time()
        time.sleep(2.5)
        phases[mode] = (start + 0.8, time.time() - 0.2)
    assert caller.hang_up() == 200
    sup.wait_for("disconnected", timeout=5)  # the supervision ends with the call
    talker.wait_for("disconnected", timeout=5)
    starts = [p.wait_for("recording")["time"] for p in (sup, talker)]
    talker.stop()
    sup.stop()
    wall_to_mono = time.monotonic() - time.time()
    present, absent = 0.08, 0.01
    for mode, (begin, end) in phases.items():
        at_caller = shares(caller.audio(begin + wall_to_mono, end + wall_to_mono), 8000)
        at_sup = heard(starts[0], tmp_path / "sup.wav", begin, end)
        at_agent = heard(starts[1], tmp_path / "agent.wav", begin, end)
        assert at_sup[CALLER_TONE] > present and at_sup[FIRST_TONE] > present, (mode, at_sup)
        assert at_caller[FIRST_TONE] > present, (mode, at_caller)
        if mode == "monitor":
            assert at_caller[SECOND_TONE] < absent, (mode, at_caller)
            assert at_agent[SECOND_TONE] < absent, (mode, at_agent)
        else:
            assert at_caller[SECOND_TONE] > present, (mode, at_caller)
            assert at_agent[SECOND_TONE] > present, (mode, at_agent)
    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 2 and all(r["end"] is not None for r in rows)
    )
    assert sorted(r["route"] or "" for r in rows) == ["node:monitor", "test"]
