"""SRTP with SDES keys on the agent's leg only, with real peers: a pjsua2 phone whose SRTP is
mandatory takes a queue call from a SIPp carrier on plain RTP (issue 9)."""

from __future__ import annotations

import re
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from .harness import HotlineNode, PjAgent, Sipp
from .ivr_peers import RtpCaller, dominant_frequency
from .node_runner import CONFIG_DIR
from .test_agent_features import HOLD_TONE

TONE = 1000  # Hz, the phone's microphone


def agents_with(agent_id: str, **settings: object) -> dict:
    """agents.yaml of the demo with `settings` added to one agent."""
    doc = yaml.safe_load((CONFIG_DIR / "agents.yaml").read_text(encoding="utf-8"))
    for agent in doc["agents"]:
        if str(agent["id"]) == agent_id:
            agent.update(settings)
    return doc


def test_an_agent_forced_to_srtp_talks_both_ways_with_a_plain_rtp_carrier(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
) -> None:
    hotline = node(agents=agents_with("1001", media_encryption="srtp"))
    record = tmp_path / "agent.wav"
    agent = pjagent(
        user="1001", registrar=hotline, dtmf="123", hangup_after=2.5, log_level=5,
        extra_args=["--srtp", "mandatory", "--tone", str(TONE), "--record", str(record)],
    )  # fmt: skip
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    # SIPp reflects every RTP packet it gets: what the phone sends goes out through the node
    # to the carrier side and comes back; the phone hears its own tone and keys again.
    caller = sipp(
        "uac_call_callee_bye", remote=hotline.address, service="9000", timeout=20,
        extra_args=["-rtp_echo"],
    )  # fmt: skip
    caller.run()
    caller.check()
    digits = [agent.wait_for("dtmf", timeout=5)["digit"] for _ in range(3)]
    assert digits == ["1", "2", "3"]
    agent.wait_for("disconnected", timeout=5)

    # The phone's side is RTP/SAVP with one crypto line each way; the carrier's is plain.
    phone_log = agent.pj_log_path.read_text(encoding="utf-8", errors="replace")
    carrier_log = caller.message_path.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"m=audio \d+ RTP/SAVP", phone_log)
    assert re.search(r"m=audio \d+ RTP/AVP", carrier_log) and "a=crypto" not in carrier_log
    keys = set(re.findall(r"a=crypto:\d+ \S+ inline:([A-Za-z0-9+/=]{40})", phone_log))
    assert len(keys) >= 2  # the node's and the phone's

    # The engine unprotected and protected every packet of the agent's leg: nothing plain
    # was accepted there (pjsua would drop it too), nothing failed authentication.
    hotline.wait_for_log("SRTP on leg", timeout=5)
    log = hotline.log_text()
    found = re.search(
        r"SRTP on leg \S+-b\d+: (\d+) packets in, (\d+) out; dropped (\d+) failing "
        r"authentication, (\d+) replayed",
        log,
    )
    assert found, log[-2000:]
    packets_in, packets_out, failed, replayed = map(int, found.groups())
    assert packets_in > 50 and packets_out > 50 and failed == 0 and replayed == 0
    assert log.count("SRTP on leg") == 1  # the carrier's leg stayed plain RTP

    # The tone came back through both SRTP directions of the leg.
    with wave.open(str(record), "rb") as w:
        rate = w.getframerate()
        heard = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    loud = np.flatnonzero(np.abs(heard) > 300)
    assert len(loud) > rate * 0.5, "the phone heard almost nothing"
    second = heard[loud[0] : loud[0] + rate]  # one second from the first sound heard
    assert abs(dominant_frequency(second, rate) - TONE) < 30

    # Keys are in no log of the node and in no CDR.
    stored = b"".join(p.read_bytes() for p in hotline.data_dir.rglob("*") if p.is_file())
    for key in keys:
        assert key not in log and key.encode() not in stored


def test_hold_and_resume_from_an_srtp_phone_keep_the_media_encrypted(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    # Best effort on both ends: the node offers RTP/AVP with crypto lines, and a phone whose
    # SRTP is optional takes one. (A phone whose SRTP is mandatory refuses such an offer with
    # 488: pjsua does; it needs `srtp`.)
    hotline = node(agents=agents_with("1001", media_encryption="optional"))
    phone = pjagent(
        user="1001", registrar=hotline, extra_args=["--srtp", "optional", "--tone", str(TONE)]
    )
    assert phone.wait_for("registered", timeout=10)["code"] == 200
    caller = rtp_caller(hotline, called="9000")
    caller.call()
    caller.wait_tone(TONE)  # the phone's SRTP, decrypted by the node, reaches the carrier
    phone.wait_for("media_active")
    # Each re-INVITE of the phone (with its crypto line) is answered from the anchor with
    # the node's key in use; the music and then the phone's tone follow in turn.
    phone.send("hold")
    held = caller.wait_tone(HOLD_TONE, since=caller.answered_at, timeout=8)
    phone.send("unhold")
    caller.wait_tone(TONE, since=held, timeout=8)
    assert caller.hang_up() == 200
    phone.wait_for("disconnected", timeout=5)
    hotline.wait_for_log("SRTP on leg", timeout=5)
    found = re.search(
        r"SRTP on leg \S+: (\d+) packets in, (\d+) out; dropped (\d+) failing", hotline.log_text()
    )
    assert found, hotline.log_text()[-2000:]
    packets_in, packets_out, failed = map(int, found.groups())
    assert packets_in > 10 and packets_out > 5 and failed == 0
