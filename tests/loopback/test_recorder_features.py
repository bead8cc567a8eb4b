"""The call recording follows the customer through the agents' phone features (SPEC REC-1,
REC-2): real pjsua2 agents hold, transfer and get barged into while a Python carrier caller
(440 Hz) talks; each phone sends its own tone, so the recording's right channel (what the
caller heard) says who was on the line at every moment, and the index has one segment per
agent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from recorder.opus import read_ogg_opus

from .harness import HotlineNode, PjAgent
from .ivr_peers import RtpCaller, rms_dbm0, tone, tone_fraction
from .test_agent_features import FIRST_TONE, HOLD_TONE, SECOND_TONE, agent, agents_with
from .test_recorder_node import CALLER, CALLER_TONE, recording_rows, wait_recording


def heard(pcm: bytes, start: float, end: float) -> dict[float, float]:
    """The energy share of each tone in the right channel (what the caller heard)."""
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2)
    part = frames[int(start * 8000) : int(end * 8000), 1].astype(np.float64)
    return {hz: tone_fraction(part, hz) for hz in (CALLER_TONE, FIRST_TONE, SECOND_TONE, HOLD_TONE)}


def caller_of(hotline: HotlineNode, rtp_caller: Callable[..., RtpCaller]) -> RtpCaller:
    caller = rtp_caller(hotline, called="9000", caller=CALLER)
    assert caller.call().status == 200
    caller.say(tone(CALLER_TONE, 30.0, level_dbm0=-12.0))
    return caller


def test_hold_and_blind_transfer_are_in_one_recording_with_a_segment_per_agent(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node()
    first = agent(pjagent, hotline, "1001", FIRST_TONE)
    second = agent(pjagent, hotline, "1002", SECOND_TONE)
    caller = caller_of(hotline, rtp_caller)
    answered = caller.answered_at
    assert answered is not None
    caller.wait_tone(FIRST_TONE)
    first.send("hold")
    held = caller.wait_tone(HOLD_TONE, timeout=8)
    time.sleep(2.0)  # between two beeps of the hold tone: nothing but silence
    first.send("unhold")
    resumed = caller.wait_tone(FIRST_TONE, since=held, timeout=8)
    time.sleep(1.0)
    first.send(f"xfer sip:1002@{hotline.address.rsplit(':', 1)[0]}")
    first.wait_for("disconnected", timeout=8)
    reached = caller.wait_tone(SECOND_TONE, since=resumed, timeout=8)
    time.sleep(1.5)
    assert caller.hang_up() == 200
    second.wait_for("disconnected", timeout=5)

    row = wait_recording(hotline, lambda r: r["ended"] is not None and r["kind"] == "call")
    segments = sorted(row["segments"], key=lambda s: s["start"])
    assert [s["agent_id"] for s in segments] == ["1001", "1002"], segments
    assert all(s["end"] is not None for s in segments)
    assert segments[0]["end"] <= segments[1]["start"] + 0.5
    pcm, channels, complete = read_ogg_opus(hotline.data_dir / "recordings" / row["path"])
    assert channels == 2 and complete

    # Times of the caller's ear (monotonic) to seconds of the file, which starts at the
    # answer: within a packet or two.
    def at(moment: float) -> float:
        return moment - answered

    talk = heard(pcm, at(resumed) - 3.0 if at(resumed) > 4.0 else 0.3, at(held) - 0.3)
    assert talk[FIRST_TONE] > 0.5, talk
    beep = heard(pcm, at(held) - 0.1, at(held) + 0.1)
    assert beep[HOLD_TONE] > 0.3, beep
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2)
    between = frames[int((at(held) + 0.4) * 8000) : int((at(resumed) - 0.5) * 8000), 1]
    # Nobody between the beeps: no agent, and none of the caller's own voice either (the
    # channels are coded apart: Opus joint stereo leaked it here 23 dB down).
    assert len(between) > 8000 and rms_dbm0(between.astype(np.float64)) < -60
    after = heard(pcm, at(reached) + 0.2, at(reached) + 1.2)
    assert after[SECOND_TONE] > 0.5 and after[FIRST_TONE] < 0.05, after


def test_a_barge_is_in_the_recording_and_a_whisper_is_not(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    hotline = node(agents={"agents": agents_with("1001", features=["supervise"])["agents"]})
    talker = agent(pjagent, hotline, "1002", FIRST_TONE)
    sup = agent(pjagent, hotline, "1001", SECOND_TONE)
    caller = caller_of(hotline, rtp_caller)
    answered = caller.answered_at
    assert answered is not None
    caller.wait_tone(FIRST_TONE)
    sup.send(f"call sip:*321002@{hotline.address}")  # whisper: the caller must not hear it
    sup.wait_for("media_active", timeout=8)
    time.sleep(2.0)
    whisper = (time.monotonic() - 1.5, time.monotonic() - 0.2)
    sup.send("dtmf 3")  # barge: everyone hears everyone (the caller two tones at once)
    barged = time.monotonic()
    time.sleep(2.5)
    assert caller.hang_up() == 200
    sup.wait_for("disconnected", timeout=5)
    talker.wait_for("disconnected", timeout=5)

    row = wait_recording(hotline, lambda r: r["ended"] is not None and r["kind"] == "call")
    # The supervisor's own call is not recorded: the supervised one holds the barge.
    assert [r["caller"] for r in recording_rows(hotline)] == [CALLER]
    pcm, _channels, _complete = read_ogg_opus(hotline.data_dir / "recordings" / row["path"])
    quiet = heard(pcm, whisper[0] - answered, whisper[1] - answered)
    assert quiet[FIRST_TONE] > 0.5 and quiet[SECOND_TONE] < 0.02, quiet
    loud = heard(pcm, barged - answered + 0.8, barged - answered + 2.3)
    assert loud[FIRST_TONE] > 0.2 and loud[SECOND_TONE] > 0.2, loud
    assert [s["agent_id"] for s in row["segments"]] == ["1002"]


def test_an_attended_transfer_and_a_pickup_each_add_the_new_agents_segment(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """1002 rings without answering and 1001 picks the call up (*8); 1001 consults 1003
    and transfers with Replaces: one recording, segments 1001 then 1003."""
    hotline = node()
    ringing = pjagent(user="1002", registrar=hotline, auto_answer=0)
    assert ringing.wait_for("registered", timeout=10)["code"] == 200
    first = agent(pjagent, hotline, "1001", FIRST_TONE)
    third = agent(pjagent, hotline, "1003", SECOND_TONE)
    caller = rtp_caller(hotline, called="9000", caller=CALLER)
    answer: dict[str, object] = {}
    thread = threading.Thread(target=lambda: answer.update(ok=caller.call(timeout=15)))
    thread.start()
    ringing.wait_for("incoming", timeout=8)
    first.send(f"call sip:*8@{hotline.address}")
    picked = first.wait_for("confirmed", timeout=8)["call_id"]
    thread.join(timeout=15)
    caller.say(tone(CALLER_TONE, 30.0, level_dbm0=-12.0))
    caller.wait_tone(FIRST_TONE, timeout=8)
    time.sleep(1.0)
    first.send(f"call sip:1003@{hotline.address}")
    consult = first.wait_for("calling", uri=f"sip:1003@{hotline.address}")["call_id"]
    third.wait_for("media_active", timeout=8)
    first.wait_for("confirmed", call_id=consult, timeout=8)
    first.send(f"xfer_replaces {picked} {consult}")
    caller.wait_tone(SECOND_TONE, timeout=8)
    time.sleep(1.0)
    assert caller.hang_up() == 200
    third.wait_for("disconnected", timeout=5)
    row = wait_recording(
        hotline, lambda r: r["ended"] is not None and r["kind"] == "call" and r["caller"] == CALLER
    )
    segments = sorted(row["segments"], key=lambda s: s["start"])
    assert [s["agent_id"] for s in segments] == ["1001", "1003"], segments
    assert all(s["end"] is not None for s in segments), segments
    # The internal consultation call is recorded too (a conversation between agents).
    assert sorted(r["caller"] for r in recording_rows(hotline)) == ["1001", CALLER]
