"""SRTP/SRTCP per leg in the C engine (libsrtp2), checked against two other implementations.

libsrtp checks its own AES-CM and key derivation against RFC 3711 Appendix B at start-up;
what matters here is that the engine's packets interoperate: a pure-Python twin written from
RFC 3711 (tests/unit/srtp_twin.py, itself checked against the RFC's vectors and against
pylibsrtp's separately built libsrtp) protects packets the engine must decrypt, and
unprotects what the engine sends. Far ends are plain UDP sockets on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import time
from collections.abc import Callable, Iterator

import numpy as np
import pylibsrtp
import pytest
from srtp_twin import Context, derive
from test_media_rtp import (
    LOCAL,
    Peer,
    dtmf_pcm,
    event_payload,
    rtp_packet,
    ulaw_decode,
    ulaw_encode,
    wait_events,
)

from media.engine import MediaValueError, RtpEngine, Tone
from media.events import DtmfDigit, FirstPacket
from media.sdes import Crypto

SUITE_80 = "AES_CM_128_HMAC_SHA1_80"
SUITE_32 = "AES_CM_128_HMAC_SHA1_32"
SUITE_256 = "AES_256_CM_HMAC_SHA1_80"


@pytest.fixture
def engine() -> Iterator[RtpEngine]:
    # The upper half of test_media_rtp's per-process port block, as test_media_local uses.
    base = 20050 + (os.getpid() % 120) * 100
    e = RtpEngine(LOCAL, base, base + 49, rtp_timeout=5.0, tap_capacity_ms=3000, tap_block_ms=20)
    yield e
    e.close()


@pytest.fixture
def peers() -> Iterator[Callable[[], Peer]]:
    with contextlib.ExitStack() as stack:

        def make() -> Peer:
            peer = Peer()
            stack.callback(peer.close)
            return peer

        yield make


def key30() -> bytes:
    return secrets.token_bytes(30)


def lib_session(key: bytes, outbound: bool, profile: int | None = None) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        if outbound
        else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=profile or pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    return pylibsrtp.Session(policy)


# --- the twin itself ------------------------------------------------------------------------
def test_twin_derives_the_session_keys_of_rfc3711_appendix_b3() -> None:
    master = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE41390EC675AD498AFEEBB6960B3AABE6")
    assert derive(master, 0, 16).hex().upper() == "C61E7A93744F39EE10734AFE3FF7A087"
    assert derive(master, 2, 14).hex().upper() == "30CBBC08863D8C85D49DB34A9AE1"
    assert derive(master, 1, 16).hex().upper() == "CEBE321F6FF7716B6FD4AB49AF256A15"


def test_twin_protects_byte_for_byte_as_pylibsrtp_does() -> None:
    key = key30()
    twin, lib = Context(key), lib_session(key, outbound=True)
    for seq in (65534, 65535, 0, 1):  # across a sequence wrap: the ROC goes to 1
        packet = rtp_packet(0, seq, 160 * seq, 0x1234ABCD, bytes(range(160)))
        assert twin.protect(packet) == lib.protect(packet)
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0x1234ABCD)
    assert Context(key).unprotect_rtcp(lib.protect_rtcp(rr)) == rr


# --- engine legs ----------------------------------------------------------------------------
def srtp_pair(
    engine: RtpEngine, peers: Callable[[], Peer], suite: str = SUITE_80, key_len: int = 30
) -> tuple[Peer, int, Peer, int, bytes, bytes]:
    """Leg a (SRTP, its party at pa) bridged to leg b (plain RTP, at pb); returns the keys
    pa encrypts with (a's inbound) and the node encrypts a's stream with (a's outbound)."""
    pa, pb = peers(), peers()
    _, port_a = engine.create_leg("a")
    _, port_b = engine.create_leg("b")
    engine.set_remote("a", LOCAL, pa.port, 0, 20, 101)
    engine.set_remote("b", LOCAL, pb.port, 0, 20, 96)
    engine.bridge("a", "b")
    theirs, ours = secrets.token_bytes(key_len), secrets.token_bytes(key_len)
    engine.set_srtp("a", Crypto(1, suite, theirs), Crypto(1, suite, ours))
    return pa, port_a, pb, port_b, theirs, ours


def recv_raw(peer: Peer, timeout: float = 1.0) -> bytes:
    """One datagram as it came off the wire (SRTP, not parsed)."""
    peer.sock.settimeout(timeout)
    return peer.sock.recv(2048)


def test_engine_decrypts_an_independent_senders_srtp_and_relays_it_plain(
    engine: RtpEngine, peers
) -> None:
    pa, port_a, pb, _, theirs, _ = srtp_pair(engine, peers)
    sender = lib_session(theirs, outbound=True)
    for i in range(5):
        packet = rtp_packet(0, 7000 + i, 160 * i, 0xA1A1A1A1, bytes([i + 1]) * 160)
        pa.sock.sendto(sender.protect(packet), (LOCAL, port_a))
    got = [pb.recv() for _ in range(5)]
    assert [p.payload for p in got] == [bytes([i + 1]) * 160 for i in range(5)]
    stats = engine.stats("a")
    assert (stats.srtp_in_suite, stats.srtp_out_suite) == (SUITE_80, SUITE_80)
    assert (stats.srtp_in, stats.packets_in, stats.srtp_auth_failed) == (5, 5, 0)
    assert engine.stats("b").srtp_in_suite is None  # the plain leg stays plain


def test_engine_encrypts_what_it_sends_for_an_independent_receiver(
    engine: RtpEngine, peers
) -> None:
    pa, _, pb, port_b, _, ours = srtp_pair(engine, peers)
    for i in range(5):
        pb.send(port_b, 0, 300 + i, 160 * i, 0xB2B2B2B2, bytes([0x40 + i]) * 160)
    wire = [recv_raw(pa) for _ in range(5)]
    # Not the plain packet: 12 + 160 + a 10-byte tag, the payload unlike the one sent.
    assert all(len(w) == 182 and w[12:172] != bytes([0x40 + i]) * 160 for i, w in enumerate(wire))
    receiver, twin = lib_session(ours, outbound=False), Context(ours)
    plain = [receiver.unprotect(w) for w in wire]
    assert [p[12:] for p in plain] == [bytes([0x40 + i]) * 160 for i in range(5)]
    assert [twin.unprotect(w) for w in wire] == plain
    assert engine.stats("a").srtp_out == 5


def test_tampered_forged_and_plain_packets_are_dropped_counted_and_never_latch(
    engine: RtpEngine, peers
) -> None:
    pa, port_a, pb, _, theirs, _ = srtp_pair(engine, peers)
    stranger = peers()
    sender = Context(theirs)
    good = sender.protect(rtp_packet(0, 1, 160, 0x55, b"\x11" * 160))
    tampered = bytearray(sender.protect(rtp_packet(0, 2, 320, 0x55, b"\x22" * 160)))
    tampered[40] ^= 0x01
    pa.sock.sendto(good, (LOCAL, port_a))
    assert pb.recv().payload == b"\x11" * 160
    pa.sock.sendto(bytes(tampered), (LOCAL, port_a))
    stranger.send(port_a, 0, 3, 480, 0x55, b"\x33" * 160)  # plain RTP from elsewhere
    forged = Context(key30()).protect(rtp_packet(0, 4, 640, 0x55, b"\x44" * 160))
    stranger.sock.sendto(forged, (LOCAL, port_a))
    stranger.sock.sendto(b"\x80\x00", (LOCAL, port_a))  # too short to be anything
    with pytest.raises(TimeoutError):
        pb.recv(0.3)
    stats = engine.stats("a")
    assert (stats.srtp_in, stats.srtp_auth_failed, stats.srtp_failed) == (1, 3, 1)
    assert stats.dropped == 4 and stats.packets_in == 1
    assert stats.latched == (LOCAL, pa.port)
    latches = [e for e in engine.events() if isinstance(e, FirstPacket)]
    assert [(e.ip, e.port) for e in latches] == [(LOCAL, pa.port)]


def test_a_replayed_packet_is_dropped_and_counted(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, _, theirs, _ = srtp_pair(engine, peers)
    sender = Context(theirs)
    first = sender.protect(rtp_packet(0, 10, 160, 0x66, b"\x01" * 160))
    second = sender.protect(rtp_packet(0, 11, 320, 0x66, b"\x02" * 160))
    for packet in (first, second, first, second):
        pa.sock.sendto(packet, (LOCAL, port_a))
    assert [pb.recv().payload for _ in range(2)] == [b"\x01" * 160, b"\x02" * 160]
    with pytest.raises(TimeoutError):
        pb.recv(0.2)
    stats = engine.stats("a")
    assert (stats.srtp_in, stats.srtp_replayed, stats.srtp_auth_failed) == (2, 2, 0)


def test_rekeying_with_the_same_key_keeps_the_context_and_a_new_key_starts_one(
    engine: RtpEngine, peers
) -> None:
    pa, port_a, pb, _, theirs, ours = srtp_pair(engine, peers)
    sender = Context(theirs)
    old = sender.protect(rtp_packet(0, 20, 160, 0x77, b"\x05" * 160))
    pa.sock.sendto(old, (LOCAL, port_a))
    pb.recv()
    # A re-INVITE that keeps the key (RFC 4568 §7.1.4): the replay window goes on.
    engine.set_srtp("a", Crypto(1, SUITE_80, theirs), Crypto(1, SUITE_80, ours))
    pa.sock.sendto(old, (LOCAL, port_a))
    with pytest.raises(TimeoutError):
        pb.recv(0.2)
    assert engine.stats("a").srtp_replayed == 1
    # A new key is a new context: the old key's packets no longer authenticate.
    fresh = key30()
    engine.set_srtp("a", Crypto(1, SUITE_80, fresh), Crypto(1, SUITE_80, ours))
    pa.sock.sendto(sender.protect(rtp_packet(0, 21, 320, 0x77, b"\x06" * 160)), (LOCAL, port_a))
    pa.sock.sendto(
        Context(fresh).protect(rtp_packet(0, 22, 480, 0x77, b"\x07" * 160)), (LOCAL, port_a)
    )
    assert pb.recv().payload == b"\x07" * 160
    stats = engine.stats("a")
    assert (stats.srtp_replayed, stats.srtp_auth_failed, stats.srtp_in) == (1, 1, 2)


@pytest.mark.parametrize(("suite", "key_len", "tag_len"), [(SUITE_32, 30, 4), (SUITE_256, 46, 10)])
def test_other_suites_interoperate_with_the_twin(
    engine: RtpEngine, peers, suite: str, key_len: int, tag_len: int
) -> None:
    pa, port_a, pb, port_b, theirs, ours = srtp_pair(engine, peers, suite, key_len)
    pa.sock.sendto(
        Context(theirs, tag_len).protect(rtp_packet(0, 1, 0, 9, b"\x09" * 160)), (LOCAL, port_a)
    )
    assert pb.recv().payload == b"\x09" * 160
    pb.send(port_b, 0, 1, 0, 8, b"\x08" * 160)
    wire = recv_raw(pa)
    assert len(wire) == 172 + tag_len
    assert Context(ours, tag_len).unprotect(wire)[12:] == b"\x08" * 160


def test_srtcp_both_ways(engine: RtpEngine, peers) -> None:
    pa, port_a, pb, port_b, theirs, ours = srtp_pair(engine, peers)
    pb.send(port_b, 0, 1, 0, 0xBB, b"\xff" * 160)
    recv_raw(pa)  # one SRTP packet: a's next report is an SR
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0xAA)
    sender = Context(theirs)
    pa.rtcp.sendto(sender.protect_rtcp(rr), (LOCAL, port_a + 1))
    bad = bytearray(sender.protect_rtcp(rr))
    bad[-1] ^= 0x80
    pa.rtcp.sendto(bytes(bad), (LOCAL, port_a + 1))
    pa.rtcp.settimeout(2.5)
    report = pa.rtcp.recv(512)  # the first report comes 1..2 s after the remote is known
    plain = lib_session(ours, outbound=False).unprotect_rtcp(report)
    assert report[8:] != plain[8:]
    v_rc, pt, _, ssrc = struct.unpack("!BBHI", plain[:8])
    assert pt == 200 and ssrc == engine.stats("a").ssrc_out  # SR, encrypted as SRTCP
    assert b"hotline@127.0.0.1" in plain and b"hotline@" not in report
    stats = engine.stats("a")
    assert (stats.rtcp_in, stats.srtp_auth_failed) == (1, 1)


def test_dtmf_in_band_and_rfc4733_is_detected_on_an_srtp_leg(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _, theirs, _ = srtp_pair(engine, peers)
    engine.enable_inband_dtmf("a")
    sender = Context(theirs)
    pcm = np.concatenate([np.zeros(800, np.int16), dtmf_pcm("5", 100), np.zeros(1600, np.int16)])
    audio = bytes(ulaw_encode(int(s)) for s in pcm)
    frames = [rtp_packet(0, i, 160 * i, 0x99, audio[160 * i : 160 * (i + 1)]) for i in range(25)]
    frames += [
        rtp_packet(101, 25 + n, 99999, 0x99, event_payload(9, end, 10, 800))
        for n, end in enumerate((False, True, True, True))
    ]
    for frame in frames:
        pa.sock.sendto(sender.protect(frame), (LOCAL, port_a))
    events = wait_events(engine, lambda ev: sum(isinstance(e, DtmfDigit) for e in ev) >= 2, 2.0)
    digits = [(e.digit, e.source) for e in events if isinstance(e, DtmfDigit)]
    assert digits == [("5", "inband"), ("9", "rfc4733")]
    assert engine.stats("a").srtp_in == 29


def send_srtp_paced(peer: Peer, port: int, sender: Context, code: int, packets: int) -> None:
    start = time.monotonic()
    for i in range(packets):
        while time.monotonic() < start + 0.02 * i:
            time.sleep(0.002)
        frame = rtp_packet(0, 500 + i, 160 * i, 0x99, bytes([code]) * 160)
        peer.sock.sendto(sender.protect(frame), (LOCAL, port))


def test_record_tap_playback_and_mixing_work_on_an_srtp_leg(engine: RtpEngine, peers) -> None:
    pa, port_a, _pb, _, theirs, ours = srtp_pair(engine, peers)
    sender, receiver = Context(theirs), Context(ours)
    # The call recording hears the party decrypted (channel 0).
    engine.tap_start("call", "a", None, heard=True)
    send_srtp_paced(pa, port_a, sender, 0x90, 4)
    time.sleep(0.08)
    frames = np.frombuffer(engine.tap_read("call").pcm, np.int16).reshape(-1, 2)
    assert ulaw_decode(0x90) in frames[:, 0]
    # Playback to the SRTP leg goes out encrypted and decrypts to the tone.
    pa.drain()
    engine.play("a", [Tone(1000, 0, -10, on_ms=200, off_ms=0, repeats=1)])
    played = [receiver.unprotect(recv_raw(pa)) for _ in range(5)]
    assert max(abs(ulaw_decode(c)) for p in played for c in p[12:]) > 1000
    # A three-way mix: what a says reaches c, and what reaches a is SRTP.
    engine.stop_play("a")
    pc = peers()
    _, port_c = engine.create_leg("c")
    engine.set_remote("c", LOCAL, pc.port, 0, 20)
    engine.mix("conf", {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]})
    pa.drain()
    pc.send(port_c, 0, 1, 0, 0xCC, b"\xff" * 160)  # c latches and is heard as silence
    send_srtp_paced(pa, port_a, sender, 0xA0, 10)
    heard_by_c = {c for p in pc.recv_all(0.3) for c in p.payload}
    assert 0xA0 in heard_by_c
    to_a = receiver.unprotect(recv_raw(pa))
    assert to_a[1] & 0x7F == 0 and engine.stats("a").srtp_auth_failed == 0


def test_bad_keys_and_suites_are_refused(engine: RtpEngine) -> None:
    engine.create_leg("a")
    with pytest.raises(MediaValueError):
        engine.set_srtp("a", Crypto(1, SUITE_80, b"short"), None)
    with pytest.raises(MediaValueError):
        engine._rtp.set_srtp(engine._legs["a"].handle, 99, bytes(30), 0, b"")
    with pytest.raises(MediaValueError):
        engine._rtp.set_srtp(engine._legs["a"].handle, 0, bytes(30), 0, b"")
    assert engine.stats("a").srtp_in_suite is None
