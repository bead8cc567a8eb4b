"""The running node records calls (SPEC REC-1, REC-4): real RTP from a carrier caller (the
Python `RtpCaller`, 440 Hz) and from a SIPp agent phone (a 1,000 Hz capture played with
play_pcap_audio), through the demo configuration's permanent test route 9000 to the queue.

(a) A whole call: one Ogg Opus file, caller's tone on the left, the agent's on the right, and
an index row with caller, called number, queue, the agent's segment and the file's SHA-256.
(b) `kill -9` of the node mid-call: the file plays up to about the last second before the
kill, and after the restart the index marks the recording incomplete with that duration.
(c) A recordings directory that cannot exist (under a regular file): the node starts, the
call goes through and ends normally, and the alert is logged.
(d) The IVR's prompts are in the recording as the caller heard them.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recorder.opus import read_ogg_opus

from .harness import HotlineNode, Sipp
from .ivr_peers import (
    FRAME,
    RtpCaller,
    correlation_peak,
    dominant_frequency,
    tone,
    ulaw_encode,
    wait_udp_bound,
    write_rtp_pcap,
)
from .ivr_support import ivr_node, prompt_samples
from .test_restart import SIPP_TIMEOUT, kill_and_restart, register_sipp_phone

CALLER = "13800138000"
AGENT_TONE = 1000.0
CALLER_TONE = 440.0


def agent_scenario(directory: Path, seconds: float) -> Path:
    """uas_agent.xml that plays `seconds` of a 1,000 Hz PCMU tone once the call is up."""
    directory.mkdir(parents=True, exist_ok=True)
    pcm = tone(AGENT_TONE, seconds, level_dbm0=-12.0)
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME)])
    codes = ulaw_encode(pcm)
    capture = directory / "agent_tone.pcap"
    write_rtp_pcap(capture, [codes[i : i + FRAME] for i in range(0, len(codes), FRAME)], 0)
    text = Sipp.find_scenario("uas_agent").read_text(encoding="utf-8")
    play = (
        '<recv request="ACK" crlf="true"/>\n\n'
        f'  <nop><action><exec play_pcap_audio="{capture}"/></action></nop>'
    )
    text = text.replace('<recv request="ACK" optional="true" crlf="true"/>', play, 1)
    scenario = directory / "uas_agent_tone.xml"
    scenario.write_text(text, encoding="utf-8")
    return scenario


def recording_rows(node: HotlineNode) -> list[dict[str, Any]]:
    path = node.data_dir / "recordings.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5.0)
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute("SELECT * FROM recordings")]
        for row in rows:
            row["segments"] = [
                dict(s)
                for s in db.execute("SELECT * FROM segments WHERE recording_id = ?", (row["id"],))
            ]
        return rows
    finally:
        db.close()


def wait_recording(
    node: HotlineNode, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in recording_rows(node) if done(r)]
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(
        f"no finished recording in {timeout} s: {recording_rows(node)}\n{node.describe()}"
    )


def call_agent(
    node: Callable[..., HotlineNode],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
    talk: float,
    overrides: dict[str, Any] | None = None,
) -> tuple[HotlineNode, Sipp, RtpCaller]:
    """A node, agent 1001 on a SIPp phone playing its tone, and a caller to 9000 saying its
    own tone for `talk` seconds once answered."""
    hotline = node(**(overrides or {}))
    port = register_sipp_phone(sipp, hotline, "1001")
    phone = sipp(
        agent_scenario(tmp_path / "agent", talk + 2.0),
        local_port=port,
        timeout=SIPP_TIMEOUT,
    ).start()
    wait_udp_bound(port)  # the phone listens before the call reaches it
    caller = RtpCaller(hotline.address, called="9000", caller=CALLER)
    final = caller.call()
    assert final.status == 200, final.text()
    caller.say(tone(CALLER_TONE, talk, level_dbm0=-12.0))
    return hotline, phone, caller


def channel_frequencies(pcm: bytes, start: float, end: float) -> tuple[float, float]:
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2)
    part = frames[int(start * 8000) : int(end * 8000)].astype(np.float64)
    return dominant_frequency(part[:, 0]), dominant_frequency(part[:, 1])


def test_whole_call_is_recorded_as_two_channel_opus_and_indexed(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp], tmp_path: Path
) -> None:
    hotline, phone, caller = call_agent(node, sipp, tmp_path, talk=4.0)
    try:
        time.sleep(4.5)  # the tones flow both ways
        assert caller.hang_up() == 200
    finally:
        caller.close()
    phone.wait()

    row = wait_recording(hotline, lambda r: r["ended"] is not None and r["kind"] == "call")
    assert row["incomplete"] == 0, row
    assert (row["caller"], row["called"], row["queue"]) == (CALLER, "9000", "general")
    (segment,) = row["segments"]
    assert segment["agent_id"] == "1001" and segment["end"] is not None
    path = hotline.data_dir / "recordings" / row["path"]
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["bytes"]

    pcm, channels, complete = read_ogg_opus(path)
    assert channels == 2 and complete
    seconds = len(pcm) / 4 / 8000
    assert abs(seconds - row["duration"]) < 0.1
    assert row["duration"] >= 3.5
    # 16 kbit/s a channel: far below 8 kHz 16-bit stereo PCM (256 kbit/s).
    assert len(data) * 8 / seconds < 256_000 / 8
    # While both talk: the caller's tone on the left, the agent's on the right.
    start = segment["start"] + 0.5
    left, right = channel_frequencies(pcm, start, min(start + 2.0, seconds - 0.5))
    assert abs(left - CALLER_TONE) < 15, left
    assert abs(right - AGENT_TONE) < 15, right


def test_kill_9_mid_call_leaves_a_playable_file_marked_incomplete(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp], tmp_path: Path
) -> None:
    hotline, phone, caller = call_agent(node, sipp, tmp_path, talk=20.0)
    try:
        row = wait_recording(hotline, lambda r: bool(r["segments"]))
        answered_at = time.time()
        time.sleep(4.0)
        killed_at = kill_and_restart(hotline)
    finally:
        caller.close()
        phone.stop()
    path = hotline.data_dir / "recordings" / row["path"]
    pcm, channels, complete = read_ogg_opus(path)
    kept = len(pcm) / 4 / 8000
    recorded_for = killed_at - row["started"]
    assert channels == 2 and not complete
    # A page a second: at most about the last second (plus scheduling slack) is lost.
    assert recorded_for - 2.0 <= kept <= recorded_for + 0.5, (kept, recorded_for)
    tail_start = max(0.0, answered_at - row["started"] + 0.5)
    left, _right = channel_frequencies(pcm, tail_start, kept)
    assert abs(left - CALLER_TONE) < 15, left

    recovered = wait_recording(hotline, lambda r: r["ended"] is not None)
    assert recovered["incomplete"] == 1
    assert abs(recovered["duration"] - kept) < 0.1
    assert "stopped" in (recovered["error"] or "")


def test_unusable_recordings_directory_raises_an_alert_and_the_call_goes_on(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the recordings directory should be\n")
    settings = {"recording": {"directory": str(blocker / "recordings")}}
    hotline, phone, caller = call_agent(
        node, sipp, tmp_path, talk=2.0, overrides={"node": settings}
    )
    try:
        time.sleep(2.0)
        assert caller.hang_up() == 200
    finally:
        caller.close()
    phone.wait()
    (call,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None
    )
    assert (call["disposition"], call["agent"]) == ("answered", "1001")
    assert call["talk"] >= 1.5
    hotline.wait_for_log("recording alert not_recorded")
    assert blocker.read_text().startswith("a file where")  # nothing was written over it


def test_prompts_the_caller_hears_are_in_the_recording_as_heard(
    node: Callable[..., HotlineNode], rtp_caller: Callable[..., RtpCaller], tmp_path: Path
) -> None:
    """`start: answer`: the IVR is recorded too; its prompts on the right (what the caller
    heard, at the time they were played), the caller's voice alone on the left."""
    hotline = ivr_node(node)
    welcome = prompt_samples(hotline, tmp_path / "render", "welcome")
    caller = rtp_caller(hotline)
    assert caller.call().status == 200
    caller.say(tone(CALLER_TONE, 1.0, level_dbm0=-12.0))
    caller.wait_audio(len(welcome) / 8000 + 1.0)
    assert caller.hang_up() == 200

    row = wait_recording(hotline, lambda r: r["ended"] is not None)
    assert row["caller"] == CALLER and row["called"] == "12345" and not row["segments"]
    pcm, channels, complete = read_ogg_opus(hotline.data_dir / "recordings" / row["path"])
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2).astype(np.float64)
    heard_score, offset = correlation_peak(frames[:, 1], welcome)
    said_score, _ = correlation_peak(frames[:, 0], welcome)
    assert heard_score > 0.7, heard_score  # Opus at 14 kbit/s keeps the prompt's waveform
    assert said_score < 0.3, said_score
    assert offset < 4000, offset  # played from the answer, as the caller heard it
    left, _right = channel_frequencies(pcm, 0.2, 0.9)
    assert abs(left - CALLER_TONE) < 15, left
