"""The IVR and dialplan of the call model with real peers (12345 main menu, prompts heard).

The node runs the test dialplan of ivr_support.py (shipped flows, short prompts) with
`--clock` in office hours. Callers are SIPp (keys from
RFC 4733 and in-band captures) or `ivr_peers.RtpCaller` (a Python caller that records the
RTP it hears); agents are pjsua2 (PjAgent). Each test starts its own node, so CDR rows
belong to the test's calls only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from .harness import HotlineNode, PjAgent, Sipp
from .ivr_peers import (
    RtpCaller,
    alaw_decode,
    alaw_encode,
    correlation_peak,
    dominant_frequency,
    dtmf_samples,
    read_wav,
    tone,
    tone_fraction,
    ulaw_decode,
    ulaw_encode,
)
from .ivr_support import (
    CALLER,
    ended_calls,
    ivr_caller,
    ivr_node,
    key_scenario,
    log_seconds,
    lower_keys,
    register,
    rendered_prompt,
    trunks_override,
    variables,
)

pytestmark = pytest.mark.timeout(45)


# -- self-checks of the test's own tools -----------------------------------------------------


def test_g711_coders_agree_with_reference_codes_and_round_trip() -> None:
    samples = np.array([0, -1, 32767, -32768, 8031, -8032])
    assert list(ulaw_encode(samples)) == [0xFF, 0x7F, 0x80, 0x00, 0xA0, 0x20]
    # G.711 A-law: 0 -> 0xD5, the extremes -> 0xAA / 0x2A.
    assert list(alaw_encode(np.array([0, 32767, -32768]))) == [0xD5, 0xAA, 0x2A]
    ramp = np.linspace(-30000, 30000, 4001)
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        decoded = decode(encode(ramp))
        assert np.all(np.abs(decoded - ramp) <= np.maximum(16, np.abs(ramp) / 16 + 8))
        # Every code decodes to a value that codes back to it (μ-law's "negative zero" 0x7F
        # decodes to 0, which codes as 0xFF).
        codes = bytes(c for c in range(256) if (encode, c) != (ulaw_encode, 0x7F))
        assert encode(decode(codes)) == codes


def test_correlation_finds_a_template_in_noise() -> None:
    rng = np.random.default_rng(7)
    template = rng.normal(0, 3000, 4000)
    signal = np.concatenate([np.zeros(1234), 0.3 * template, rng.normal(0, 30, 2000)])
    score, offset = correlation_peak(signal, template)
    assert score > 0.99 and offset == 1234
    assert correlation_peak(rng.normal(0, 3000, 9000), template)[0] < 0.2


def test_tone_measures_tell_a_tone_from_its_neighbours() -> None:
    for frequency in (450, 700, 1000):
        frame = ulaw_decode(ulaw_encode(tone(frequency, 0.02)))  # one 20 ms packet
        assert tone_fraction(frame, frequency) > 0.95
        assert tone_fraction(frame, frequency + 200) < 0.01
        assert abs(dominant_frequency(tone(frequency, 1.0)) - frequency) < 2
    assert tone_fraction(dtmf_samples("1", 20), 1209) < 0.6  # a key is two tones


# -- keys in the main menu -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "queue", "node_name", "agent_id"),
    [("1", "general", "citizen", "1001"), ("2", "enterprise", "enterprise", "1005")],
)
def test_rfc4733_key_in_main_menu_reaches_its_queue_and_agent(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
    key: str,
    queue: str,
    node_name: str,
    agent_id: str,
) -> None:
    hotline = ivr_node(node)
    agent = register(pjagent, hotline, agent_id, hangup_after=1.0)
    caller = ivr_caller(sipp, hotline, key_scenario(tmp_path / "keys", key)).start()

    incoming = agent.wait_for("incoming", timeout=10)
    headers = lower_keys(incoming["headers"])
    assert headers["x-hotline-queue"] == queue
    assert headers["x-hotline-var-ivr-path"] == f"hours>menu>{node_name}"
    assert headers["x-hotline-called"] == "12345"
    assert CALLER in incoming["from"]
    agent.wait_for("answered", timeout=5, call_id=incoming["call_id"])
    ended = agent.wait_for("disconnected", timeout=5, call_id=incoming["call_id"])
    assert ended["by"] == "local"
    caller.wait()
    caller.check()

    # The key was pressed into the prompt (press_ms 800 after the node answered).
    pressed = log_seconds(hotline.wait_for_log(f"DTMF {key} on", timeout=2))
    assert pressed - log_seconds(hotline.wait_for_log("answered by the node")) >= 0.7
    (call,) = ended_calls(hotline)
    assert call["route"] == "hotline"
    assert call["called"] == "12345" and call["caller"] == CALLER
    assert call["queue"] == queue
    assert call["agent"] == agent_id
    assert call["node_answer"] is not None
    assert call["answer"] is not None and call["node_answer"] <= call["answer"]
    assert call["hangup_side"] == "agent"
    assert variables(call)["ivr_path"].startswith(f"hours>menu>{node_name}")
    if queue == "enterprise":
        # The agent hung up first: the caller went on to the queue's survey (not rated
        # here; the node hangs up after its timeout).
        assert variables(call)["ivr_path"] == "hours>menu>enterprise>rate"
        assert call["survey_rating"] is None
    assert call["disposition"] == "answered"


def test_inband_key_in_main_menu_reaches_the_general_queue(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
) -> None:
    hotline = ivr_node(node)
    agent = register(pjagent, hotline, "1002", hangup_after=0.5)
    scenario = key_scenario(tmp_path / "inband", "1", inband=True)
    caller = ivr_caller(sipp, hotline, scenario).start()

    incoming = agent.wait_for("incoming", timeout=10)
    headers = lower_keys(incoming["headers"])
    assert headers["x-hotline-queue"] == "general"
    assert headers["x-hotline-var-ivr-path"] == "hours>menu>citizen"
    agent.wait_for("disconnected", timeout=8, call_id=incoming["call_id"])
    caller.wait()
    caller.check()

    # The carrier offered no telephone-event: the key came from the tones in its audio.
    trace = caller.message_path.read_text(encoding="utf-8", errors="replace")
    assert "telephone-event" not in trace
    assert "(inband)" in hotline.wait_for_log("DTMF 1 on", timeout=2)
    (call,) = ended_calls(hotline)
    assert (call["route"], call["queue"], call["agent"]) == ("hotline", "general", "1002")
    assert call["disposition"] == "answered"


# -- prompts are heard -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", [0, 8], ids=["pcmu", "pcma"])
def test_caller_hears_the_welcome_prompt_as_rendered(
    node: Callable[..., HotlineNode],
    rtp_caller: Callable[..., RtpCaller],
    tmp_path: Path,
    codec: int,
) -> None:
    hotline = ivr_node(node)
    welcome = read_wav(rendered_prompt(hotline, tmp_path / "render", "welcome"))
    assert (welcome.rate, welcome.channels, welcome.width) == (8000, 1, 2)
    assert 0.8 < welcome.seconds < 4

    caller = rtp_caller(hotline, offer=(codec,))
    answer = caller.call()
    assert answer.status == 200
    assert caller.codec == codec
    caller.wait_audio(welcome.seconds + 0.5)
    heard = caller.audio(since=caller.answered_at)
    # No early media on this trunk: the prompt follows the 200. The node commits and sends
    # the 200 before the engine starts the prompt (leg_actions._answered_by_node), and the
    # caller reads its SIP socket before its RTP one, so not one packet comes before it.
    answered = caller.answered_at
    assert answered is not None
    early = [p for p in caller.audio_packets() if p.at < answered]
    assert not early, early

    score, offset = correlation_peak(heard, welcome.samples)
    assert score > 0.8, f"welcome prompt not found in what the caller heard (peak {score:.2f})"
    # It is the first thing played: it starts within the first half second of audio.
    assert offset < 4000, offset
    assert caller.hang_up() == 200
    (call,) = ended_calls(hotline)
    assert call["route"] == "hotline" and call["node_answer"] is not None
    assert call["hangup_side"] == "caller"
    assert variables(call)["ivr_path"] == "hours>menu"


def test_with_early_media_the_welcome_plays_before_the_answer(
    node: Callable[..., HotlineNode],
    rtp_caller: Callable[..., RtpCaller],
    tmp_path: Path,
) -> None:
    """A trunk with `early_media`: the welcome prompt reaches the caller after a 183 with SDP
    and before the 200, which comes when the prompt ends (issue 9: billing starts there)."""
    hotline = ivr_node(node, trunks=trunks_override(early_media=True))
    welcome = read_wav(rendered_prompt(hotline, tmp_path / "render", "welcome"))
    caller = rtp_caller(hotline)
    answer = caller.call(timeout=welcome.seconds + 6)
    assert answer.status == 200
    assert caller.answered_at is not None
    early = [m for m in caller.messages if m.is_response and m.status == 183]
    assert early and b"m=audio" in early[0].body
    before = caller.audio(until=caller.answered_at)
    assert len(before) >= 8000 * (welcome.seconds - 0.5)  # the prompt came in early media
    score, _offset = correlation_peak(before, welcome.samples)
    assert score > 0.8, f"welcome prompt not found before the answer (peak {score:.2f})"
    assert caller.hang_up() == 200
    (call,) = ended_calls(hotline)
    assert call["node_answer"] is not None and call["node_answer"] - call["start"] >= 0.8


@pytest.mark.parametrize("method", ["rfc4733", "info"])
def test_pjsua2_caller_navigates_the_menu_and_reaches_the_agent(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], method: str
) -> None:
    """pjsip as the caller, keys by RFC 4733 or SIP INFO (which the node answers itself: the
    caller in the IVR is bridged to nobody)."""
    hotline = ivr_node(node)
    agent = register(pjagent, hotline, "1001", hangup_after=1.0)
    caller = pjagent(user="13900000001", dtmf_method=method, null_audio=True)
    caller.send(f"call sip:12345@{hotline.address}")
    confirmed = caller.wait_for("confirmed", timeout=10)
    caller.wait_for("media_active", timeout=5)
    hotline.wait_for_log("answered by the node", timeout=5)
    caller.send(f"dtmf 1 {confirmed['call_id']}")
    source = "info" if method == "info" else "rfc4733"
    hotline.wait_for_log(f"({source})", timeout=5)
    incoming = agent.wait_for("incoming", timeout=10)
    headers = lower_keys(incoming["headers"])
    assert headers["x-hotline-queue"] == "general"
    assert headers["x-hotline-var-ivr-path"] == "hours>menu>citizen"
    agent.wait_for("answered", timeout=5)
    assert agent.wait_for("disconnected", timeout=5)["by"] == "local"
    assert caller.wait_for("disconnected", timeout=5)["by"] == "remote"
    (call,) = ended_calls(hotline)
    assert (call["queue"], call["agent"], call["disposition"]) == ("general", "1001", "answered")
