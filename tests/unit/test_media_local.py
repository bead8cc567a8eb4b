"""The node as a party of the call: per-leg offer/answer against the anchor, playback and
recording of one leg, and the WAV sink a voicemail writes to.

SDP is checked line by line against RFC 3264/4566/4733 expectations written out here; media
runs over real UDP sockets on 127.0.0.1 with the far ends, G.711 twin and helpers of
test_media_rtp.py; recordings are checked with numpy's FFT and the standard `wave` module.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from test_media_rtp import (
    ALAW_TO_ULAW,
    LOCAL,
    ULAW_TO_ALAW,
    Peer,
    ulaw_encode,
    wait_events,
)

from media import MediaEngine, NotAnchoredError, PassThroughMedia
from media.engine import MediaStateError, MediaValueError, Prompt, RtpEngine, Tone, UnknownLegError
from media.events import PlaybackDone, TapData
from media.wavsink import WavSink
from softswitch.sdp import parse_sdp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine() -> Iterator[RtpEngine]:
    # The upper half of test_media_rtp's per-process block: both files may run in one process.
    base = 20050 + (os.getpid() % 120) * 100
    e = RtpEngine(LOCAL, base, base + 49, rtp_timeout=5.0, tap_capacity_ms=3000, tap_block_ms=100)
    yield e
    e.close()


@pytest.fixture
def peers() -> Iterator[Callable[[], Peer]]:
    made: list[Peer] = []

    def make() -> Peer:
        made.append(Peer())
        return made[-1]

    yield make
    for p in made:
        p.close()


def phone_sdp(
    port: int,
    pts: str = "0 8 101",
    direction: str | None = "sendrecv",
    *,
    ip: str = LOCAL,
    te: int = 101,
    ptime: int = 20,
    extra: str = "",
) -> bytes:
    """A far end's SDP, with the transport details a real phone adds (ssrc, tool, rtcp)."""
    lines = [
        "v=0",
        "o=phone-ua 3344556677 9 IN IP4 192.0.2.7",
        "s=Talk",
        f"c=IN IP4 {ip}",
        "t=0 0",
        "a=tool:SomePhone 1.2",
        f"m=audio {port} RTP/AVP {pts}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{te} telephone-event/8000",
        f"a=fmtp:{te} 0-15",
        f"a=ptime:{ptime}",
        f"a=rtcp:{port + 1}",
        "a=ssrc:2864434397 cname:phone@192.0.2.7",
    ]
    if direction is not None:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


def lines_of(body: bytes) -> list[str]:
    assert body.endswith(b"\r\n")
    return body.decode().split("\r\n")[:-1]


def origin(body: bytes) -> tuple[str, int, int]:
    user, session_id, version, *_ = lines_of(body)[1].removeprefix("o=").split()
    return user, int(session_id), int(version)


def port_of(body: bytes) -> int:
    sdp = parse_sdp(body)
    return sdp.media[0].port


def ulaw_bytes(samples: np.ndarray) -> bytes:
    return bytes(ulaw_encode(int(s)) for s in samples)


def tone(freq: float, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000.0
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * 8000 / len(samples))


def send_paced(peer: Peer, port: int, pt: int, payload: bytes, ssrc: int = 0x5EED) -> None:
    """Send `payload` as 20 ms packets in real time, as a phone would."""
    start = time.monotonic()
    for i in range(len(payload) // 160):
        while time.monotonic() < start + 0.02 * i:
            time.sleep(0.002)
        peer.send(port, pt, 1000 + i, 160 * i, ssrc, payload[160 * i : 160 * (i + 1)])


# --- answer_local ---------------------------------------------------------------------------
def test_answer_is_the_nodes_own_sdp_with_the_offered_law_and_event_type(
    engine: RtpEngine,
) -> None:
    offer = phone_sdp(40000, "8 0 96", te=96, ptime=30)
    answer = engine.answer_local("caller", offer)
    user, session_id, version = origin(answer)
    port = engine.stats("caller").port
    assert lines_of(answer) == [
        "v=0",
        f"o=hotline {session_id} {version} IN IP4 {LOCAL}",
        "s=hotline",
        f"c=IN IP4 {LOCAL}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 8 96",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:96 telephone-event/8000",  # the offerer's type, echoed (RFC 3264 §6.1)
        "a=fmtp:96 0-16",
        "a=ptime:30",
        "a=sendrecv",
    ]
    for foreign in (b"ssrc", b"tool", b"rtcp", b"phone-ua", b"Talk", b"192.0.2.7", b"3344556677"):
        assert foreign not in answer
    remote = engine.remote_media("caller")
    assert remote is not None
    assert (remote.ip, remote.port, remote.payload_type, remote.telephone_event_pt) == (
        LOCAL,
        40000,
        8,
        96,
    )
    assert (remote.ptime_ms, remote.direction) == (30, "sendrecv")


def test_answer_without_telephone_event_offers_none(engine: RtpEngine) -> None:
    offer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    answer = engine.answer_local("trunk", offer + b"m=audio 40000 RTP/AVP 0\r\n")
    assert lines_of(answer)[5:] == [
        f"m=audio {port_of(answer)} RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=ptime:20",
        "a=sendrecv",
    ]


@pytest.mark.parametrize(
    ("offer_pts", "prefer", "chosen"),
    [("0 8 101", None, 0), ("8 0 101", None, 8), ("0 8 101", 8, 8), ("0 101", 8, 0)],
)
def test_answer_takes_the_first_law_offered_or_the_preferred_one_when_offered(
    engine: RtpEngine, offer_pts: str, prefer: int | None, chosen: int
) -> None:
    answer = engine.answer_local("caller", phone_sdp(40000, offer_pts), prefer=prefer)
    assert f"RTP/AVP {chosen} 101".encode() in answer
    remote = engine.remote_media("caller")
    assert remote is not None and remote.payload_type == chosen


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        (None, "sendrecv"),  # no attribute: sendrecv (RFC 3264 §5.1)
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_answer_direction_mirrors_the_offer(
    engine: RtpEngine, offered: str | None, answered: str
) -> None:
    answer = engine.answer_local("caller", phone_sdp(40000, direction=offered))
    assert lines_of(answer)[-1] == f"a={answered}"


def test_answer_to_an_old_style_hold_offer_sends_nothing(engine: RtpEngine) -> None:
    # RFC 3264 §8.4: c=0.0.0.0 means "send me no RTP"; what the offerer sends is welcome.
    answer = engine.answer_local("caller", phone_sdp(40000, ip="0.0.0.0"))
    assert lines_of(answer)[-1] == "a=recvonly"
    remote = engine.remote_media("caller")
    assert remote is not None and remote.direction == "sendonly"


def test_reoffer_keeps_session_and_port_and_moves_the_version_only_on_change(
    engine: RtpEngine,
) -> None:
    first = engine.answer_local("caller", phone_sdp(40000))
    user, session_id, version = origin(first)
    assert user == "hotline"
    refresh = engine.answer_local("caller", phone_sdp(40000))  # session refresh: same SDP
    assert refresh == first
    hold = engine.answer_local("caller", phone_sdp(40000, direction="sendonly"))
    assert origin(hold) == ("hotline", session_id, version + 1)  # RFC 3264 §8
    assert port_of(hold) == port_of(first) and lines_of(hold)[-1] == "a=recvonly"
    resume = engine.answer_local("caller", phone_sdp(40000))
    assert origin(resume) == ("hotline", session_id, version + 2)
    other = engine.answer_local("other", phone_sdp(40002))
    assert origin(other)[1] != session_id  # each leg is its own session
    engine.release("caller")
    again = engine.answer_local("caller", phone_sdp(40000))
    assert origin(again)[1] != session_id  # a new leg under an old name: a new session


def test_reoffer_keeps_the_law_in_use_while_it_is_still_offered(engine: RtpEngine) -> None:
    engine.answer_local("caller", phone_sdp(40000, "8 0 101"))
    answer = engine.answer_local("caller", phone_sdp(40000, "0 8 101"))
    assert b"RTP/AVP 8 101" in answer  # no codec switch on a re-INVITE
    answer = engine.answer_local("caller", phone_sdp(40000, "0 101"))
    assert b"RTP/AVP 0 101" in answer


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (phone_sdp(40000, "18 101"), "neither PCMU nor PCMA"),
        (phone_sdp(40000).replace(b"RTP/AVP", b"RTP/SAVP"), "RTP/SAVP"),
        (phone_sdp(40000).replace(b"c=IN IP4 127.0.0.1\r\n", b""), "connection address"),
        (b"not sdp at all", "SDP"),
        # Numbers that are not numbers, or out of range (seen fuzzing: ValueError and
        # OverflowError escaped from the parser and the C engine).
        (phone_sdp(99999), "bad audio port 99999"),
        (phone_sdp(40000).replace(b"m=audio 40000", "m=audio ²".encode()), "bad m= line"),
        (phone_sdp(40000, "18 ²"), "neither PCMU nor PCMA"),
    ],
)
def test_offer_the_engine_cannot_serve_is_refused_and_changes_nothing(
    engine: RtpEngine, body: bytes, message: str
) -> None:
    with pytest.raises(MediaValueError, match=message):
        engine.answer_local("fresh", body)
    with pytest.raises(UnknownLegError):
        engine.stats("fresh")  # no leg was created for a refused initial offer
    good = engine.answer_local("caller", phone_sdp(40000, "8 101"))
    before = engine.remote_media("caller")
    with pytest.raises(MediaValueError, match=message):
        engine.answer_local("caller", body)  # a refused re-offer: 488, old session stays
    assert engine.remote_media("caller") == before
    assert engine.answer_local("caller", phone_sdp(40000, "8 101")) == good


def test_tokens_that_are_not_numbers_are_ignored_and_the_rest_is_served(
    engine: RtpEngine,
) -> None:
    # '²'.isdigit() is True and int('²') raises: such tokens are unknown formats, a clock
    # rate that is not a number leaves the static type's own, and a bad ptime the default.
    odd = phone_sdp(40000, "0 ² 101").replace(b"PCMU/8000", b"PCMU/abc")
    odd = odd.replace(b"a=ptime:20", "a=ptime:²".encode())
    answer = engine.answer_local("caller", odd)
    assert b"m=audio" in answer and b"RTP/AVP 0 101" in answer
    media = engine.remote_media("caller")
    assert media is not None and (media.payload_types, media.ptime_ms) == ((0,), 20)


def test_an_offer_read_once_is_answered_as_its_body_would_be(engine: RtpEngine) -> None:
    body = phone_sdp(40000, "8 0 101")
    offer = engine.read_offer(body)  # what call control keeps from the caller's INVITE
    answer = engine.answer_local("caller", offer, prefer=0)
    assert b"RTP/AVP 0 101" in answer
    again = engine.answer_local("again", body, prefer=0)
    assert lines_of(again)[6:] == lines_of(answer)[6:]  # all but o=, c= and m= (its port)
    with pytest.raises(MediaValueError, match="neither PCMU nor PCMA"):
        engine.read_offer(phone_sdp(40000, "18 101"))


def test_offer_without_usable_audio_is_answered_with_rejected_streams(
    engine: RtpEngine, peers
) -> None:
    video = "m=video 5000 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n"
    answer = engine.answer_local("caller", phone_sdp(40000, extra=video))
    assert lines_of(answer)[-1] == "m=video 0 RTP/AVP 31"  # one answer line per offer line
    assert b"m=audio 0" not in answer
    # An active leg whose peer disables audio in a re-offer stops sending.
    phone = peers()
    engine.answer_local("ivr", phone_sdp(phone.port))
    disabled = engine.answer_local("ivr", phone_sdp(0))
    assert lines_of(disabled)[5:] == ["m=audio 0 RTP/AVP 0 8 101"]
    assert engine.remote_media("ivr") is None
    engine.play("ivr", [Tone(400.0, on_ms=200)])
    with pytest.raises(TimeoutError):
        phone.recv(0.4)
    no_media = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    assert b"m=" not in engine.answer_local("silent", no_media)
    assert engine.remote_media("silent") is None


# --- offer_local / apply_answer -------------------------------------------------------------
def test_offer_is_the_nodes_own_with_both_laws_and_telephone_event(engine: RtpEngine) -> None:
    offer = engine.offer_local("agent")
    _, session_id, version = origin(offer)
    port = engine.stats("agent").port
    assert lines_of(offer) == [
        "v=0",
        f"o=hotline {session_id} {version} IN IP4 {LOCAL}",
        "s=hotline",
        f"c=IN IP4 {LOCAL}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    assert b"RTP/AVP 8 0 101" in engine.offer_local("agent-2", prefer=8)
    with pytest.raises(MediaValueError):
        engine.offer_local("agent", direction="sideways")
    with pytest.raises(MediaValueError):
        engine.offer_local("agent", prefer=18)


def test_hold_reoffer_keeps_the_port_and_bumps_the_version(engine: RtpEngine) -> None:
    first = engine.offer_local("agent")
    engine.apply_answer("agent", phone_sdp(40000, "8 101"))
    _, session_id, version = origin(first)
    hold = engine.offer_local("agent", direction="sendonly")
    assert origin(hold) == ("hotline", session_id, version + 1)
    assert port_of(hold) == port_of(first)
    assert b"RTP/AVP 8 0 101" in hold  # the law in use stays first
    assert lines_of(hold)[-1] == "a=sendonly"
    engine.apply_answer("agent", phone_sdp(40000, "8 101", direction="recvonly"))
    remote = engine.remote_media("agent")
    assert remote is not None and remote.direction == "recvonly"


def test_apply_answer_takes_the_answerers_law_and_event_type(engine: RtpEngine) -> None:
    engine.offer_local("agent")
    engine.apply_answer("agent", phone_sdp(40000, "8 0 96", te=96))
    remote = engine.remote_media("agent")
    assert remote is not None
    assert (remote.payload_type, remote.telephone_event_pt, remote.direction) == (8, 96, "sendrecv")


def test_apply_answer_limits_the_direction_to_what_we_offered(engine: RtpEngine) -> None:
    engine.offer_local("agent", direction="sendonly")
    engine.apply_answer("agent", phone_sdp(40000))  # improper sendrecv answer to sendonly
    remote = engine.remote_media("agent")
    assert remote is not None and remote.direction == "recvonly"  # it may not send to us


def test_apply_answer_refuses_what_does_not_answer_our_offer(engine: RtpEngine) -> None:
    with pytest.raises(UnknownLegError):
        engine.apply_answer("nobody", phone_sdp(40000))
    engine.create_leg("agent")
    with pytest.raises(MediaStateError):
        engine.apply_answer("agent", phone_sdp(40000))  # no offer outstanding
    engine.offer_local("agent")
    with pytest.raises(MediaValueError, match="neither PCMU nor PCMA"):
        engine.apply_answer("agent", phone_sdp(40000, "18 101"))
    with pytest.raises(MediaValueError, match="RTP/SAVP"):
        engine.apply_answer("agent", phone_sdp(40000).replace(b"RTP/AVP", b"RTP/SAVP"))
    assert engine.remote_media("agent") is None  # nothing applied, the offer still waits
    engine.apply_answer("agent", phone_sdp(40000, "0 101"))
    with pytest.raises(MediaStateError):
        engine.apply_answer("agent", phone_sdp(40000, "0 101"))  # answered already
    engine.offer_local("agent")
    with pytest.raises(MediaValueError, match="rejected the audio stream"):
        engine.apply_answer("agent", phone_sdp(0))
    assert engine.remote_media("agent") is None


def test_pass_through_media_cannot_be_a_party() -> None:
    media: MediaEngine = PassThroughMedia()
    assert media.anchors is False and RtpEngine.anchors is True
    with pytest.raises(NotAnchoredError):
        media.answer_local("caller", phone_sdp(40000))
    with pytest.raises(NotAnchoredError):
        media.offer_local("agent")
    with pytest.raises(NotAnchoredError):
        media.apply_answer("agent", phone_sdp(40000))


# --- media on legs negotiated per leg -------------------------------------------------------
def test_legs_negotiated_per_leg_relay_and_transcode_only_while_bridged(
    engine: RtpEngine, peers
) -> None:
    caller, agent = peers(), peers()
    caller_port = port_of(engine.answer_local("caller", phone_sdp(caller.port, "0 101")))
    agent_port = port_of(engine.offer_local("agent"))
    engine.apply_answer("agent", phone_sdp(agent.port, "8 96", te=96))  # the agent takes PCMA
    # Not bridged yet: nothing crosses.
    caller.send(caller_port, 0, 1, 0, 0xCA11, b"\x10" * 160)
    with pytest.raises(TimeoutError):
        agent.recv(0.2)
    engine.bridge("caller", "agent")
    codes = bytes(range(256))
    for i in range(4):
        chunk = codes[64 * i : 64 * (i + 1)] * 2 + codes[:32]
        caller.send(caller_port, 0, 2 + i, 160 * (i + 1), 0xCA11, chunk)
        got = agent.recv()
        assert (got.pt, got.payload) == (8, chunk.translate(ULAW_TO_ALAW))
        agent.send(agent_port, 8, 10 + i, 160 * i, 0xA9E7, chunk)
        back = caller.recv()
        assert (back.pt, back.payload) == (0, chunk.translate(ALAW_TO_ULAW))
    # RFC 4733 crosses with each side's own telephone-event type.
    caller.send(caller_port, 101, 9, 800, 0xCA11, bytes([5, 0x0A, 0, 160]), marker=True)
    event = agent.recv()
    assert (event.pt, event.payload) == (96, bytes([5, 0x0A, 0, 160]))
    engine.unbridge("caller")
    caller.send(caller_port, 0, 20, 3200, 0xCA11, b"\x10" * 160)
    agent.send(agent_port, 8, 30, 3200, 0xA9E7, b"\x10" * 160)
    with pytest.raises(TimeoutError):
        agent.recv(0.2)
    with pytest.raises(TimeoutError):
        caller.recv(0.2)


def test_playback_to_a_leg_never_bridged_uses_its_negotiated_type(engine: RtpEngine, peers) -> None:
    caller = peers()
    engine.answer_local("ivr", phone_sdp(caller.port, "8 0 101"))  # PCMA first
    (item,) = engine.play("ivr", [Tone(440.0, on_ms=200)])
    packets = caller.recv_all(0.5)
    assert len(packets) == 10 and {p.pt for p in packets} == {8}
    assert {len(p.payload) for p in packets} == {160}
    events = wait_events(engine, lambda ev: PlaybackDone("ivr", item, False) in ev, 1.0)
    assert PlaybackDone("ivr", item, False) in events


# --- recording one leg ----------------------------------------------------------------------
def test_one_leg_recording_keeps_what_the_party_says_while_a_prompt_plays(
    engine: RtpEngine, peers, tmp_path: Path
) -> None:
    caller = peers()
    port = port_of(engine.answer_local("caller", phone_sdp(caller.port, "0 101")))
    prompt = tmp_path / "beep.wav"
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(400.0, 1.5).astype("<i2").tobytes())
    engine.tap_start("vm-1", "caller", None)
    engine.play("caller", [Prompt(str(prompt))])
    send_paced(caller, port, 0, ulaw_bytes(tone(1020.0, 0.8)))
    heard = caller.recv_all(0.3)
    assert heard and {p.pt for p in heard} == {0}  # the prompt went on meanwhile
    wait_events(engine, lambda ev: any(isinstance(e, TapData) for e in ev), 1.0)
    path = tmp_path / "vm.wav"
    with WavSink(path) as sink:
        raw = b""
        deadline = time.monotonic() + 1.0
        while sink.seconds < 0.9 and time.monotonic() < deadline:
            block = engine.tap_read("vm-1")
            raw += block.pcm
            sink.write(block.pcm)
            time.sleep(0.05)
        assert block.overflow == 0
    engine.tap_stop("vm-1")
    stereo = np.frombuffer(raw, dtype=np.int16).reshape(-1, 2)
    assert not stereo[:, 1].any()  # no second leg: channel 1 is silence
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        recorded = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.array_equal(recorded, stereo[:, 0])
    nonzero = np.nonzero(recorded)[0]
    voiced = recorded[nonzero[0] : nonzero[-1] + 1]
    assert 8000 * 0.75 <= len(voiced) <= 8000 * 0.85  # the 0.8 s the caller sent
    assert abs(peak_hz(voiced[:4096]) - 1020.0) < 5.0  # the caller, not the 400 Hz prompt
    spectrum = np.abs(np.fft.rfft(voiced[:4096].astype(np.float64) * np.hanning(4096)))
    assert spectrum[round(400 * 4096 / 8000)] < spectrum.max() / 1000


def test_one_leg_tap_refuses_unknown_legs_and_names_in_use(engine: RtpEngine) -> None:
    with pytest.raises(UnknownLegError):
        engine.tap_start("vm", "nobody", None)
    engine.answer_local("caller", phone_sdp(40000))
    engine.tap_start("vm", "caller", None)
    with pytest.raises(MediaStateError):
        engine.tap_start("vm", "caller", None)  # the name is taken
    engine.tap_stop("vm")
    engine.tap_start("vm-2", "caller", None)
    engine.release("caller")  # the tap outlives its leg and records silence
    time.sleep(0.1)
    block = engine.tap_read("vm-2")
    assert block.frames > 0 and not any(block.pcm)
    engine.tap_stop("vm-2")


# --- WavSink --------------------------------------------------------------------------------
def stereo_block(left: np.ndarray, right: np.ndarray | None = None) -> bytes:
    right = np.zeros_like(left) if right is None else right
    return np.column_stack((left, right)).astype(np.int16).tobytes()


def test_wav_sink_file_is_whole_after_every_block_without_close(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    sink = WavSink(path)
    written = np.zeros(0, dtype=np.int16)
    rng = np.random.default_rng(7)
    for frames in (160, 1600, 37, 800):
        left = rng.integers(-20000, 20000, frames, dtype=np.int16)
        sink.write(stereo_block(left, -left))
        written = np.concatenate((written, left))
        with wave.open(str(path), "rb") as w:  # the sink is still open
            assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, 8000, len(written))
            assert np.array_equal(np.frombuffer(w.readframes(len(written)), "<i2"), written)
    assert sink.seconds == pytest.approx(len(written) / 8000)
    sink.close()
    sink.close()
    with pytest.raises(ValueError):
        sink.write(stereo_block(written[:160]))


def test_wav_sink_keeps_both_channels_when_asked(tmp_path: Path) -> None:
    left, right = tone(300.0, 0.1), tone(700.0, 0.1)
    with WavSink(tmp_path / "both.wav", channels=2) as sink:
        sink.write(stereo_block(left, right))
    with wave.open(str(tmp_path / "both.wav"), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert w.getnchannels() == 2
    assert np.array_equal(frames[:, 0], left) and np.array_equal(frames[:, 1], right)
    with pytest.raises(ValueError):
        WavSink(tmp_path / "x.wav", channels=3)


KILLED_WRITER = """
import os, signal, sys
import numpy as np
from media.wavsink import WavSink
sink = WavSink(sys.argv[1])
for i in range(3):
    left = np.full(800, 1000 * (i + 1), dtype=np.int16)
    sink.write(np.column_stack((left, left)).tobytes())
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_wav_sink_file_survives_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    run = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(path)], cwd=ROOT, timeout=30, check=False
    )
    assert run.returncode == -signal.SIGKILL
    with wave.open(str(path), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.array_equal(samples, np.repeat(np.array([1000, 2000, 3000], np.int16), 800))


def test_wav_sink_tracks_trailing_silence_per_20ms(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "vm.wav", silence_dbfs=-45.0)
    assert sink.silent_for == 0.0 and sink.level_dbfs == -math.inf
    speech = tone(500.0, 1.0, amplitude=3000.0)  # about -24 dBFS RMS
    sink.write(stereo_block(speech))
    assert sink.silent_for == 0.0
    assert sink.level_dbfs == pytest.approx(20 * math.log10(3000 / math.sqrt(2) / 32768), abs=0.1)
    rng = np.random.default_rng(3)
    hiss = rng.normal(0, 30, 8000 * 2).astype(np.int16)  # about -61 dBFS: background noise
    sink.write(stereo_block(hiss[:4000], tone(500.0, 0.5)))  # channel 1 does not count
    assert sink.silent_for == pytest.approx(0.5)
    for start in range(4000, 16000, 333):  # blocks that do not end on a 20 ms boundary
        sink.write(stereo_block(hiss[start : start + 333]))
    assert sink.silent_for == pytest.approx(2.0, abs=0.02)
    assert sink.level_dbfs < -55.0
    sink.write(stereo_block(np.concatenate((hiss[:80], speech[:400]))))  # speaks again
    assert sink.silent_for < 0.03
    sink.close()
