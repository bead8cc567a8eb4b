"""The RTP engine (media._rtp via media.engine) on real UDP sockets over 127.0.0.1.

Each test plays the far ends with plain Python sockets (a tiny RTP sender/receiver below) and
checks what comes out of the engine against independent twins: G.711 written here from the
ITU-T G.711 segment tables, RFC 4733 §2.3 packet layout, numpy for mixing. Waits are bounded
by socket timeouts; only the timeout, pacing and tap tests need real seconds.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from media import _rtp
from media.engine import MediaStateError, MediaValueError, Prompt, RtpEngine, Tone, UnknownLegError
from media.events import (
    DtmfDigit,
    DtmfSent,
    FirstPacket,
    MediaEvent,
    PlaybackDone,
    RtpTimeout,
    TapData,
)

LOCAL = "127.0.0.1"


# --- G.711 twin (ITU-T G.711 tables, Sun reference arithmetic) ------------------------------
def ulaw_decode(code: int) -> int:
    c = ~code & 0xFF
    magnitude = ((((c & 0x0F) << 3) + 0x84) << ((c >> 4) & 7)) - 0x84
    return -magnitude if c & 0x80 else magnitude


def alaw_decode(code: int) -> int:
    c = code ^ 0x55
    exponent, mantissa = (c >> 4) & 7, c & 0x0F
    magnitude = (
        (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    )
    return magnitude if c & 0x80 else -magnitude


def ulaw_encode(pcm: int) -> int:
    # 14-bit magnitude; negatives by one's complement (-1..-4 behave like 0..3)
    mask, value = (0x7F, (~pcm) >> 2) if pcm < 0 else (0xFF, pcm >> 2)
    value = min(value, 8158) + 0x21
    segment = next(
        (
            s
            for s, end in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
            if value <= end
        ),
        8,
    )
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def alaw_encode(pcm: int) -> int:
    value = pcm >> 3
    mask, value = (0xD5, value) if value >= 0 else (0x55, -value - 1)
    segment = next(
        (
            s
            for s, end in enumerate((0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
            if value <= end
        ),
        8,
    )
    if segment >= 8:
        return 0x7F ^ mask
    mantissa = (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return ((segment << 4) | mantissa) ^ mask


ULAW_TO_ALAW = bytes(alaw_encode(ulaw_decode(c)) for c in range(256))
ALAW_TO_ULAW = bytes(ulaw_encode(alaw_decode(c)) for c in range(256))


def test_g711_twin_round_trips_its_own_codes() -> None:
    # The twin itself: decoding then encoding a code gives the code back (both laws, except
    # μ-law's negative zero 0x7F, which is the same value as positive zero 0xFF).
    assert [ulaw_encode(ulaw_decode(c)) for c in range(256) if c != 0x7F] == [
        c for c in range(256) if c != 0x7F
    ]
    assert [alaw_encode(alaw_decode(c)) for c in range(256)] == list(range(256))
    assert ulaw_decode(0x80) == 32124 and alaw_decode(0xAA) == 32256


# --- a far end: RTP over a plain UDP socket -------------------------------------------------
class Rtp(NamedTuple):
    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int
    payload: bytes
    raw: bytes
    arrival: float


def rtp_packet(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    return (
        struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
        )
        + payload
    )


class Peer:
    """One far end on `host` (127.0.0.1, or ::1 for an IPv6 party): sends RTP to an engine
    port on the same host, receives what the engine sends it."""

    def __init__(self, host: str = LOCAL) -> None:
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # RTP on port p, RTCP on p + 1: the engine sends its reports there (RFC 3550 §11),
        # so the pair must be ours rather than some other program's socket.
        for _ in range(100):
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.bind((host, 0))
            self.port = self.sock.getsockname()[1]
            self.rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                self.rtcp.bind((host, self.port + 1))
                return
            except OSError:
                self.sock.close()
                self.rtcp.close()
        raise RuntimeError("no free port pair for a test peer")

    def send(
        self, port: int, pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False
    ) -> None:
        self.sock.sendto(rtp_packet(pt, seq, ts, ssrc, payload, marker), (self.host, port))

    def recv(self, timeout: float = 1.0) -> Rtp:
        self.sock.settimeout(timeout)
        raw = self.sock.recv(2048)
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", raw[:12])
        assert b0 == 0x80, f"V=2, no padding/extension/CSRC expected, got {b0:#x}"
        return Rtp(bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, raw[12:], raw, time.monotonic())

    def recv_all(self, seconds: float) -> list[Rtp]:
        """Everything that arrives within `seconds`."""
        out: list[Rtp] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                out.append(self.recv(left))
            except TimeoutError:
                break
        return out

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(2048)
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.sock.close()
        self.rtcp.close()


@pytest.fixture
def engine() -> Iterator[RtpEngine]:
    # Below the ephemeral range (32768+), spread so that parallel runs rarely meet; a taken
    # pair is skipped by the engine anyway.
    base = 20000 + (os.getpid() % 120) * 100
    e = RtpEngine(LOCAL, base, base + 99, rtp_timeout=1.0, tap_capacity_ms=100, tap_block_ms=20)
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


def wait_events(
    engine: RtpEngine, want: Callable[[list[MediaEvent]], bool], timeout: float
) -> list[MediaEvent]:
    """Collect events until `want(events)` holds or `timeout` passes (select on the eventfd)."""
    got: list[MediaEvent] = []
    end = time.monotonic() + timeout
    while not want(got) and (left := end - time.monotonic()) > 0:
        select.select([engine.fileno()], [], [], left)
        got.extend(engine.events())
    return got


def two_legs(
    engine: RtpEngine, peers: Callable[[], Peer], pt_a: int = 0, pt_b: int = 0
) -> tuple[Peer, int, Peer, int]:
    pa, pb = peers(), peers()
    _, port_a = engine.create_leg("a")
    _, port_b = engine.create_leg("b")
    engine.set_remote("a", LOCAL, pa.port, pt_a, 20, 101)
    engine.set_remote("b", LOCAL, pb.port, pt_b, 20, 96)
    engine.bridge("a", "b")
    return pa, port_a, pb, port_b


def bridged(engine: RtpEngine, sdp_port_a: int, pb: Peer) -> tuple[int, int]:
    """Legs a (its SDP naming LOCAL:`sdp_port_a`) and b (at `pb`), PCMU, bridged: their ports."""
    _, port_a = engine.create_leg("a")
    _, port_b = engine.create_leg("b")
    engine.set_remote("a", LOCAL, sdp_port_a, 0)
    engine.set_remote("b", LOCAL, pb.port, 0)
    engine.bridge("a", "b")
    return port_a, port_b


# --- relay ----------------------------------------------------------------------------------
def test_relay_both_ways_with_each_legs_own_ssrc(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, port_b = two_legs(engine, peers)
    for i in range(5):
        pa.send(port_a, 0, 100 + i, 8000 + 160 * i, 0xA1A1A1A1, bytes([i]) * 160)
        pb.send(port_b, 0, 900 + i, 4000 + 160 * i, 0xB2B2B2B2, bytes([0x40 + i]) * 160)
    to_b = [pb.recv() for _ in range(5)]
    to_a = [pa.recv() for _ in range(5)]
    assert [p.payload for p in to_b] == [bytes([i]) * 160 for i in range(5)]
    assert [p.payload for p in to_a] == [bytes([0x40 + i]) * 160 for i in range(5)]
    assert {p.ssrc for p in to_b} == {engine.stats("b").ssrc_out}
    assert {p.ssrc for p in to_a} == {engine.stats("a").ssrc_out}
    assert engine.stats("a").ssrc_out != 0xA1A1A1A1
    assert [(p.seq - to_b[0].seq) & 0xFFFF for p in to_b] == [0, 1, 2, 3, 4]
    assert [(p.ts - to_b[0].ts) & 0xFFFFFFFF for p in to_b] == [0, 160, 320, 480, 640]
    stats_a = engine.stats("a")
    assert (stats_a.packets_in, stats_a.packets_out, stats_a.lost) == (5, 5, 0)


def test_latching_answers_the_packet_source_not_the_sdp_address(engine: RtpEngine, peers) -> None:
    nat, pb, stranger = peers(), peers(), peers()
    port_a, port_b = bridged(engine, 9, pb)  # the SDP names a port nobody listens on (NAT)
    nat.send(port_a, 0, 1, 160, 0x11, b"\xff" * 160)
    pb.recv()
    events = wait_events(engine, lambda ev: any(isinstance(e, FirstPacket) for e in ev), 1.0)
    assert FirstPacket("a", LOCAL, nat.port, False) in events
    pb.send(port_b, 0, 7, 160, 0x22, b"\x55" * 160)
    assert nat.recv().payload == b"\x55" * 160
    # Another source within the latch hold time is not relayed (no media injection).
    stranger.send(port_a, 0, 2, 320, 0x33, b"\x01" * 160)
    with pytest.raises(TimeoutError):
        pb.recv(0.2)
    assert engine.stats("a").dropped == 1
    assert engine.stats("a").latched == (LOCAL, nat.port)


def test_the_sdp_address_takes_the_latch_back_from_a_stray_stream_at_once(
    engine: RtpEngine, peers
) -> None:
    party, pb, stray = peers(), peers(), peers()
    port_a, port_b = bridged(engine, party.port, pb)  # where the party's SDP says it is
    # A stream left over from the port's previous call arrives first and is latched onto...
    stray.send(port_a, 0, 1, 160, 0x77, b"\x01" * 160)
    pb.recv()
    assert wait_events(engine, lambda ev: any(isinstance(e, FirstPacket) for e in ev), 1.0)
    assert engine.stats("a").latched == (LOCAL, stray.port)
    # ...until the party itself sends, from its SDP address: at once, not a second later.
    party.send(port_a, 0, 500, 80000, 0x11, b"\x55" * 160)
    assert pb.recv().payload == b"\x55" * 160
    assert engine.stats("a").latched == (LOCAL, party.port)
    pb.send(port_b, 0, 7, 160, 0x22, b"\x66" * 160)
    assert party.recv().payload == b"\x66" * 160
    # The stray stream is now the stranger: dropped, not relayed.
    stray.send(port_a, 0, 2, 320, 0x77, b"\x01" * 160)
    with pytest.raises(TimeoutError):
        pb.recv(0.2)
    assert engine.stats("a").dropped == 1


def test_source_change_keeps_sequence_and_timestamp_continuous(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, _ = two_legs(engine, peers)
    received: list[Rtp] = []
    start = time.monotonic()
    # 8 packets from one SSRC, then (hold/transfer) 8 from another with unrelated numbering.
    for i, (ssrc, seq, ts) in enumerate(
        [(0x1111, 100 + i, 1000 + 160 * i) for i in range(8)]
        + [(0x2222, 60000 + i, 7_000_000 + 160 * i) for i in range(8)]
    ):
        while time.monotonic() < start + 0.02 * i:
            time.sleep(0.001)
        pa.send(port_a, 0, seq, ts, ssrc, b"\xff" * 160)
        received.append(pb.recv())
    assert len({p.ssrc for p in received}) == 1
    seq_steps = [(b.seq - a.seq) & 0xFFFF for a, b in zip(received, received[1:], strict=False)]
    assert seq_steps == [1] * 15
    ts_steps = [(b.ts - a.ts) & 0xFFFFFFFF for a, b in zip(received, received[1:], strict=False)]
    assert ts_steps[:7] == [160] * 7 and ts_steps[8:] == [160] * 7
    # Across the change the timestamp advances with wall-clock time (~20 ms = 160 samples).
    assert 40 <= ts_steps[7] <= 480
    assert received[8].marker and not any(p.marker for p in received[1:8])
    assert engine.stats("a").lost == 0


def test_sequence_gaps_count_as_loss_and_jitter_follows_rfc3550(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, _ = two_legs(engine, peers)
    for seq in (10, 11, 12, 16, 17):  # 13, 14, 15 lost
        pa.send(port_a, 0, seq, 160 * seq, 0x5, b"\xff" * 160)
        pb.recv()
    stats = engine.stats("a")
    assert stats.lost == 3 and stats.packets_in == 5
    # Sent back to back but stamped 20 ms apart: A.8 jitter grows from 0 towards 20 ms.
    assert 0.5 < stats.jitter_ms < 20


# --- transcoding ----------------------------------------------------------------------------
def test_transcoding_matches_the_g711_twin_for_all_256_codes(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, port_b = two_legs(engine, peers, pt_a=0, pt_b=8)
    every_code = bytes(range(256))
    pa.send(port_a, 0, 1, 0, 0x1, every_code)
    to_b = pb.recv()
    pb.send(port_b, 8, 1, 0, 0x2, every_code)
    to_a = pa.recv()
    assert (to_b.pt, to_a.pt) == (8, 0)
    assert to_b.payload == ULAW_TO_ALAW
    assert to_a.payload == ALAW_TO_ULAW


# --- RFC 4733 -------------------------------------------------------------------------------
def event_payload(event: int, end: bool, volume: int, duration: int) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def test_rfc4733_digit_reported_once_and_relayed_with_mapped_payload_type(
    engine: RtpEngine, peers
) -> None:
    pa, port_a, pb, _ = two_legs(engine, peers)  # a: telephone-event 101, b: 96
    ts = 48000
    packets = [(True, False, 160), (False, False, 320), (False, False, 480)] + [
        (False, True, 640)
    ] * 3
    for i, (marker, end, duration) in enumerate(packets):
        pa.send(port_a, 101, 500 + i, ts, 0x77, event_payload(5, end, 10, duration), marker)
    relayed = [pb.recv() for _ in packets]
    events = wait_events(engine, lambda ev: False, 0.3)
    assert [e for e in events if isinstance(e, DtmfDigit)] == [DtmfDigit("a", "5", 80, "rfc4733")]
    assert {p.pt for p in relayed} == {96}
    assert len({p.ts for p in relayed}) == 1  # one event: one timestamp (§2.5.1.2)
    assert relayed[0].marker
    assert [p.payload for p in relayed] == [event_payload(5, e, 10, d) for _, e, d in packets]


def test_rfc4733_new_event_reports_one_whose_end_was_lost(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _ = two_legs(engine, peers)
    pa.send(port_a, 101, 1, 1000, 0x9, event_payload(1, False, 10, 400), True)
    pa.send(port_a, 101, 2, 5000, 0x9, event_payload(11, True, 10, 800), True)
    pa.send(port_a, 101, 3, 5000, 0x9, event_payload(11, True, 10, 800))
    events = wait_events(engine, lambda ev: sum(isinstance(e, DtmfDigit) for e in ev) >= 2, 1.0)
    digits = [e for e in events if isinstance(e, DtmfDigit)]
    assert digits == [DtmfDigit("a", "1", 50, "rfc4733"), DtmfDigit("a", "#", 100, "rfc4733")]


def test_rfc4733_send_packets_match_the_rfc_layout_byte_for_byte(engine: RtpEngine, peers) -> None:
    pa, _, _pb, _ = two_legs(engine, peers)
    engine.send_dtmf("a", "7", ms=100, volume=10)
    packets = [pa.recv() for _ in range(7)]
    ssrc = engine.stats("a").ssrc_out
    first = packets[0]
    # 20 ms updates: 160 … 800 samples, then the end packet twice more (§2.5.1.4).
    durations = [160, 320, 480, 640, 800, 800, 800]
    for i, (p, duration) in enumerate(zip(packets, durations, strict=True)):
        end = duration == 800
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if i == 0 else 0) | 101, (first.seq + i) & 0xFFFF, first.ts, ssrc
        )
        assert p.raw == header + bytes(
            [7, (0x80 if end else 0) | 10, duration >> 8, duration & 0xFF]
        )
    gaps = [b.arrival - a.arrival for a, b in zip(packets, packets[1:], strict=False)]
    assert 0.010 < sum(gaps) / len(gaps) < 0.030
    events = wait_events(engine, lambda ev: any(isinstance(e, DtmfSent) for e in ev), 1.0)
    assert DtmfSent("a", "7", 100) in events


def test_send_dtmf_refused_without_telephone_event(engine: RtpEngine, peers) -> None:
    engine.create_leg("x")
    engine.set_remote("x", LOCAL, peers().port, 0, 20, None)
    with pytest.raises(_rtp.MediaStateError):
        engine.send_dtmf("x", "1")
    with pytest.raises(UnknownLegError):
        engine.send_dtmf("nobody", "1")


# --- in-band DTMF ---------------------------------------------------------------------------
def dtmf_pcm(digit: str, ms: int, level_dbm0: float = -7.0) -> np.ndarray:
    rows = {
        "1": 697,
        "2": 697,
        "3": 697,
        "4": 770,
        "5": 770,
        "6": 770,
        "7": 852,
        "8": 852,
        "9": 852,
        "*": 941,
        "0": 941,
        "#": 941,
    }
    cols = {
        "1": 1209,
        "4": 1209,
        "7": 1209,
        "*": 1209,
        "2": 1336,
        "5": 1336,
        "8": 1336,
        "0": 1336,
        "3": 1477,
        "6": 1477,
        "9": 1477,
        "#": 1477,
    }
    t = np.arange(ms * 8) / 8000.0
    amplitude = 22827.06 * 10 ** (level_dbm0 / 20)
    tone = amplitude * (np.sin(2 * np.pi * rows[digit] * t) + np.sin(2 * np.pi * cols[digit] * t))
    return np.round(tone).astype(np.int16)


def test_inband_dtmf_detected_from_a_generated_tone(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _ = two_legs(engine, peers)
    engine.enable_inband_dtmf("a")
    pcm = np.concatenate([np.zeros(800, np.int16), dtmf_pcm("8", 100), np.zeros(1600, np.int16)])
    payload = bytes(ulaw_encode(int(s)) for s in pcm)
    for i in range(len(payload) // 160):
        pa.send(port_a, 0, i, 160 * i, 0x42, payload[160 * i : 160 * (i + 1)])
    events = wait_events(engine, lambda ev: any(isinstance(e, DtmfDigit) for e in ev), 1.0)
    digits = [e for e in events if isinstance(e, DtmfDigit)]
    assert [(d.digit, d.source) for d in digits] == [("8", "inband")]
    assert 80 <= digits[0].duration_ms <= 120


# --- RTP timeout (MED-3) --------------------------------------------------------------------
def test_rtp_timeout_reported_once_but_not_while_on_hold(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _ = two_legs(engine, peers)  # rtp_timeout=1.0
    engine.set_direction("b", "inactive")  # b's phone put the call on hold
    pa.send(port_a, 0, 1, 160, 0x1, b"\xff" * 160)
    events = wait_events(engine, lambda ev: False, 2.6)
    timeouts = [e for e in events if isinstance(e, RtpTimeout)]
    assert [t.leg_id for t in timeouts] == ["a"]
    assert timeouts[0].silent_ms >= 1000


def test_rtcp_is_terminated_and_each_leg_reports_its_own_stream(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, _ = two_legs(engine, peers)
    pa.send(port_a, 0, 1, 160, 0xABC, b"\xff" * 160)
    pb.recv()
    # The caller's RR goes to a's RTCP port: counted, never relayed to b.
    pa.rtcp.sendto(struct.pack("!BBHI", 0x80, 201, 1, 0xABC), (LOCAL, port_a + 1))
    pa.rtcp.settimeout(2.5)
    report = pa.rtcp.recv(512)  # the first report comes 1..2 s after the remote is known
    stats = engine.stats("a")
    # Compound packet (RFC 3550 §6.1): RR (a has not sent media yet) with one report block
    # about the caller's stream, then SDES with a CNAME.
    v_rc, pt, words, ssrc = struct.unpack("!BBHI", report[:8])
    assert (v_rc, pt, words) == (0x81, 201, 7) and ssrc == stats.ssrc_out
    source, lost_word, highest = struct.unpack("!III", report[8:20])
    assert source == 0xABC and lost_word == 0 and highest == 1
    sdes = report[32:]
    assert sdes[0] == 0x81 and sdes[1] == 202 and struct.unpack("!I", sdes[4:8])[0] == ssrc
    assert sdes[8] == 1 and sdes[10 : 10 + sdes[9]] == b"hotline@127.0.0.1"
    assert len(report) % 4 == 0 and stats.rtcp_in == 1
    with pytest.raises(TimeoutError):
        pb.recv(0.05)  # nothing of it reached the agent


# --- playback -------------------------------------------------------------------------------
def test_playback_keeps_exact_20ms_pacing_for_one_second(engine: RtpEngine, peers) -> None:
    pa, _, _pb, _ = two_legs(engine, peers)
    (item,) = engine.play("a", [Tone(1000.0, 0.0, -10.0, on_ms=1000, off_ms=0, repeats=1)])
    packets = pa.recv_all(1.3)
    assert len(packets) == 50
    assert all(
        (b.ts - a.ts) & 0xFFFFFFFF == 160 for a, b in zip(packets, packets[1:], strict=False)
    )
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(packets, packets[1:], strict=False))
    span = packets[-1].arrival - packets[0].arrival
    assert 0.96 < span < 1.02  # 49 intervals of 20 ms
    events = wait_events(engine, lambda ev: any(isinstance(e, PlaybackDone) for e in ev), 0.5)
    assert PlaybackDone("a", item, False) in events


def test_prompt_file_played_as_its_samples(engine: RtpEngine, peers, tmp_path: Path) -> None:
    pa, _, _pb, _ = two_legs(engine, peers)
    samples = (np.sin(np.arange(1600) * 0.05) * 12000).astype(np.int16)
    path = tmp_path / "prompt.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.astype("<i2").tobytes())
    engine.play("a", [Prompt(str(path))])
    packets = pa.recv_all(0.5)
    assert b"".join(p.payload for p in packets) == bytes(ulaw_encode(int(s)) for s in samples)
    assert engine.load_prompt(path) == engine.load_prompt(path)  # loaded once


def test_prompt_with_wrong_format_is_refused(engine: RtpEngine, tmp_path: Path) -> None:
    engine.create_leg("a")
    path = tmp_path / "cd.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\0" * 400)
    with pytest.raises(MediaValueError):
        engine.play("a", [Prompt(str(path))])


def test_barge_in_stops_playback_on_a_key_press(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _ = two_legs(engine, peers)
    first, second = engine.play(
        "a", [Tone(425.0, on_ms=5000), Tone(425.0, on_ms=5000)], barge_in=True
    )
    pa.recv()
    pa.send(port_a, 101, 1, 0, 0x3, event_payload(2, False, 10, 160), True)
    events = wait_events(engine, lambda ev: sum(isinstance(e, PlaybackDone) for e in ev) >= 2, 1.0)
    assert PlaybackDone("a", first, True) in events and PlaybackDone("a", second, True) in events
    pa.drain()
    with pytest.raises(TimeoutError):
        pa.recv(0.1)


# --- record taps ----------------------------------------------------------------------------
def test_tap_delivers_aligned_stereo_and_counts_overflow(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, port_b = two_legs(engine, peers)
    engine.tap_start("call-1", "a", "b")  # ring of 100 ms (fixture)
    start = time.monotonic()
    for i in range(25):  # 0.5 s of constant audio from each side
        while time.monotonic() < start + 0.02 * i:
            time.sleep(0.002)
        pa.send(port_a, 0, i, 160 * i, 0xA, bytes([0x90]) * 160)
        pb.send(port_b, 0, i, 160 * i, 0xB, bytes([0x20]) * 160)
    time.sleep(0.1)
    events = engine.events()
    assert any(isinstance(e, TapData) and e.call_id == "call-1" for e in events)
    block = engine.tap_read("call-1")
    assert block.frames == 800  # the ring holds exactly 100 ms
    assert block.overflow >= 8000 * 0.3  # the rest of the ~0.6 s was counted, not kept
    frames = np.frombuffer(block.pcm, dtype=np.int16).reshape(-1, 2)
    assert set(frames[:, 0]) <= {0, ulaw_decode(0x90)} and ulaw_decode(0x90) in frames[:, 0]
    assert set(frames[:, 1]) <= {0, ulaw_decode(0x20)} and ulaw_decode(0x20) in frames[:, 1]
    assert engine.tap_read("call-1").frames == 0
    engine.tap_stop("call-1")
    with pytest.raises(UnknownLegError):
        engine.tap_read("call-1")


def send_paced(peer: Peer, port: int, code: int, packets: int, ssrc: int) -> None:
    start = time.monotonic()
    for i in range(packets):
        while time.monotonic() < start + 0.02 * i:
            time.sleep(0.002)
        peer.send(port, 0, i, 160 * i, ssrc, bytes([code]) * 160)


def test_heard_tap_records_the_party_and_what_the_node_sends_it(engine: RtpEngine, peers) -> None:
    """The call recording's tap: channel 0 = what the caller says, channel 1 = what the
    caller is sent (here the bridged agent, transcoded from A-law to the caller's μ-law)."""
    pa, port_a, pb, port_b = two_legs(engine, peers, pt_a=0, pt_b=8)
    engine.tap_start("rec", "a", None, heard=True)
    with pytest.raises(MediaValueError):
        engine.tap_start("rec-2", "a", "b", heard=True)
    # Caller and agent talk in turn: 4 packets from a, then 4 from b (which a is sent).
    send_paced(pa, port_a, 0x90, 4, 0xA)
    send_paced(pb, port_b, 0xD5 ^ 0x40, 4, 0xB)
    time.sleep(0.08)
    frames = np.frombuffer(engine.tap_read("rec").pcm, dtype=np.int16).reshape(-1, 2)
    heard = ulaw_decode(pa.recv().payload[0])  # what the caller really got, as decoded
    assert ulaw_decode(0x90) in frames[:, 0]
    assert heard != 0 and heard in frames[:, 1]
    # Channel 1 is never the caller's own voice, channel 0 never the agent's.
    assert ulaw_decode(0x90) not in frames[:, 1] and heard not in frames[:, 0]
    engine.tap_stop("rec")


def test_heard_tap_records_prompts_played_to_the_leg(engine: RtpEngine, peers) -> None:
    pa = peers()
    _, _port_a = engine.create_leg("a")
    engine.set_remote("a", LOCAL, pa.port, 8, 20, 101)  # A-law caller
    engine.tap_start("rec", "a", None, heard=True)
    engine.play("a", [Tone(1000.0, level_dbm0=-10.0, on_ms=200)])
    wait_events(engine, lambda got: any(isinstance(e, PlaybackDone) for e in got), 2.0)
    time.sleep(0.08)
    frames = np.frombuffer(engine.tap_read("rec").pcm, dtype=np.int16).reshape(-1, 2)
    sent = [alaw_decode(c) for p in pa.recv_all(0.1) for c in p.payload]
    assert np.all(frames[:, 0] == 0)  # the caller said nothing
    loud = frames[np.abs(frames[:, 1]) > 1000, 1]
    assert len(loud) > 0.5 * 8000 * 0.2 * 0.6  # most of the 200 ms tone
    assert set(loud.tolist()) <= set(sent)  # the samples are the ones the caller was sent


def test_a_leg_feeds_several_taps_and_a_fifth_is_refused(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _port_b = two_legs(engine, peers)
    engine.tap_start("call", "a", None, heard=True)
    engine.tap_start("voicemail", "a", None)
    engine.tap_start("asr", "a", None)
    engine.tap_start("two", "b", "a")  # a on channel 1 of this one
    with pytest.raises(MediaStateError):
        engine.tap_start("fifth", "a", None)
    send_paced(pa, port_a, 0x90, 5, 0xA)
    time.sleep(0.08)
    for name, channel in (("call", 0), ("voicemail", 0), ("asr", 0), ("two", 1)):
        frames = np.frombuffer(engine.tap_read(name).pcm, dtype=np.int16).reshape(-1, 2)
        assert np.count_nonzero(frames[:, channel] == ulaw_decode(0x90)) >= 4 * 160, name
    engine.tap_stop("voicemail")  # a slot is free again
    engine.tap_start("fifth", "a", None)
    engine.release("a")  # the taps stay readable; a's sides are silent from now on
    engine.tap_read("call")
    for name in ("call", "asr", "two", "fifth"):
        engine.tap_stop(name)


# --- mixing ---------------------------------------------------------------------------------
def saturated_sum(frames: list[np.ndarray], mask: int) -> np.ndarray:
    acc = np.zeros(len(frames[0]), dtype=np.int64)
    for i, frame in enumerate(frames):
        if mask >> i & 1:
            acc += frame
    return np.clip(acc, -32768, 32767).astype(np.int16)


def test_mix_sum_matches_numpy_with_saturation() -> None:
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 16):
        frames = [rng.integers(-32768, 32768, 160, dtype=np.int16) for _ in range(n)]
        frames[0][:4] = [32767, -32768, 32767, -32768]
        for mask in (0, 1, (1 << n) - 1, 0b101 & ((1 << n) - 1), int(rng.integers(0, 1 << n))):
            got = np.frombuffer(_rtp.mix_sum([f.tobytes() for f in frames], mask), dtype=np.int16)
            assert np.array_equal(got, saturated_sum(frames, mask))


def test_monitor_mix_each_leg_hears_its_set_saturated(engine: RtpEngine, peers) -> None:
    caller, agent, supervisor = peers(), peers(), peers()
    codes = {"caller": 0x85, "agent": 0x82, "supervisor": 0xA0}  # loud, loud, soft (μ-law)
    ports = {}
    for name, peer in (("caller", caller), ("agent", agent), ("supervisor", supervisor)):
        _, ports[name] = engine.create_leg(name)
        engine.set_remote(name, LOCAL, peer.port, 0)
    # Whisper: the agent hears caller + supervisor, the caller only the agent, the
    # supervisor both; nobody else hears the supervisor.
    engine.mix(
        "m1",
        {"caller": ["agent"], "agent": ["caller", "supervisor"], "supervisor": ["caller", "agent"]},
    )
    start = time.monotonic()
    for i in range(20):
        while time.monotonic() < start + 0.02 * i:
            time.sleep(0.002)
        for name, peer in (("caller", caller), ("agent", agent), ("supervisor", supervisor)):
            peer.send(ports[name], 0, i, 160 * i, 0x100 + i, bytes([codes[name]]) * 160)
    level = {name: np.full(160, ulaw_decode(code), np.int16) for name, code in codes.items()}

    def expected(*names: str) -> bytes:
        total = saturated_sum([level[n] for n in names], (1 << len(names)) - 1)
        return bytes(ulaw_encode(int(s)) for s in total)

    for peer, heard in (
        (caller, ("agent",)),
        (agent, ("caller", "supervisor")),
        (supervisor, ("caller", "agent")),
    ):
        payloads = [p.payload for p in peer.recv_all(0.15)] or [peer.recv().payload]
        assert expected(*heard) in payloads, heard
    assert ulaw_decode(codes["caller"]) + ulaw_decode(codes["agent"]) > 32767  # saturation hit


# --- SDP offer/answer through the MediaEngine protocol --------------------------------------
def sdp(port: int, pts: str = "0 8 101", direction: str = "sendrecv") -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pts}\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a=ptime:20\r\na={direction}\r\n"
    ).encode()


def test_offer_answer_anchors_media_and_relays_between_the_phones(engine: RtpEngine, peers) -> None:
    carrier, phone = peers(), peers()
    offer = engine.offer("A", "B", sdp(carrier.port))
    assert offer is not None and b"c=IN IP4 127.0.0.1" in offer
    answer = engine.answer("B", "A", sdp(phone.port, "8 101"))
    port_a = int(answer.split(b"m=audio ")[1].split()[0])
    port_b = int(offer.split(b"m=audio ")[1].split()[0])
    assert port_a != port_b and carrier.port not in (port_a, port_b)
    carrier.send(port_a, 8, 1, 0, 0x1, b"\x2a" * 160)
    assert phone.recv().payload == b"\x2a" * 160  # both use PCMA: no transcoding
    phone.send(port_b, 8, 1, 0, 0x2, b"\x3b" * 160)
    got = carrier.recv()
    assert (got.pt, got.payload) == (8, b"\x3b" * 160)
    engine.release("A")
    engine.release("B")
    with pytest.raises(UnknownLegError):
        engine.stats("A")


def test_events_reach_an_asyncio_callback(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _ = two_legs(engine, peers)

    async def main() -> list[MediaEvent]:
        loop = asyncio.get_running_loop()
        got: list[MediaEvent] = []
        arrived = asyncio.Event()

        def on_event(event: MediaEvent) -> None:
            got.append(event)
            arrived.set()

        engine.attach(loop, on_event)
        pa.send(port_a, 0, 1, 0, 0x1, b"\xff" * 160)
        await asyncio.wait_for(arrived.wait(), 1.0)
        engine.detach()
        return got

    assert asyncio.run(main())[0] == FirstPacket("a", LOCAL, pa.port, False)


def test_rtcp_from_a_silent_party_keeps_its_leg_alive(engine: RtpEngine, peers) -> None:
    """A muted phone (or one without a sound device) sends no RTP but its RTCP goes on: no
    RtpTimeout while it does; once it stops too, the timeout comes."""
    pa, port_a, pb, port_b = two_legs(engine, peers)  # rtp_timeout=1.0
    pb.send(port_b, 0, 1, 160, 0x2, b"\xff" * 160)  # the agent's side streams
    deadline = time.monotonic() + 2.4
    events: list = []
    while time.monotonic() < deadline:  # the caller's side: RTCP only, every 0.4 s
        pa.rtcp.sendto(struct.pack("!BBHI", 0x80, 201, 1, 0xABC), (LOCAL, port_a + 1))
        pb.send(port_b, 0, 2, 320, 0x2, b"\xff" * 160)
        events += wait_events(engine, lambda ev: False, 0.4)
    assert [e.leg_id for e in events if isinstance(e, RtpTimeout)] == []
    events = wait_events(engine, lambda ev: any(isinstance(e, RtpTimeout) for e in ev), 2.5)
    assert "a" in [e.leg_id for e in events if isinstance(e, RtpTimeout)]


def test_rtcp_alone_both_ways_is_dead_media(engine: RtpEngine, peers) -> None:
    """RTCP keeps a silent party's leg alive only while RTP flows toward it: when neither
    side of a bridge sends RTP, both report and the call is still dead (issue 9)."""
    pa, port_a, pb, port_b = two_legs(engine, peers)  # rtp_timeout=1.0
    pa.send(port_a, 0, 1, 0, 0x1, b"\xff" * 160)
    pb.send(port_b, 0, 1, 0, 0x2, b"\xff" * 160)
    deadline = time.monotonic() + 2.6
    events: list = []
    while time.monotonic() < deadline:  # both parties muted: RTCP only, every 0.4 s
        pa.rtcp.sendto(struct.pack("!BBHI", 0x80, 201, 1, 0xABC), (LOCAL, port_a + 1))
        pb.rtcp.sendto(struct.pack("!BBHI", 0x80, 201, 1, 0xDEF), (LOCAL, port_b + 1))
        events += wait_events(engine, lambda ev: False, 0.4)
    assert sorted(e.leg_id for e in events if isinstance(e, RtpTimeout)) == ["a", "b"]
