"""SDES (RFC 4568) in offer/answer: a=crypto lines read and written, a fresh key per leg
and direction, the `media_encryption` setting, re-offers keeping or renewing keys, and the
keys never leaving the leg (relay, logs, reprs). Media runs over 127.0.0.1 where the keys
negotiated must also work on the wire (the engine's leg against an independent SRTP sender).
"""

# ruff: noqa: F811 (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import base64
import logging
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st
from srtp_twin import Context
from test_media_rtp import LOCAL, rtp_packet
from test_media_srtp import engine, peers  # noqa: F401 (the fixtures)

from media.engine import MediaValueError, RtpEngine
from media.offer import anchor_sdp
from media.sdes import Crypto, LegKeys, leg_encryption, parse_crypto, usable

KEY = base64.b64encode(bytes(range(30))).decode()  # 40 characters


def phone_sdp(port: int, proto: str = "RTP/SAVP", crypto: tuple[str, ...] = ()) -> bytes:
    lines = [
        "v=0", "o=phone 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        f"m=audio {port} {proto} 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
        *(f"a=crypto:{c}" for c in crypto), "a=sendrecv",
    ]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n").encode()


def cryptos(body: bytes) -> list[Crypto]:
    return [
        c for c in usable(v[9:] for v in body.decode().split("\r\n") if v.startswith("a=crypto:"))
    ]


def m_line(body: bytes) -> str:
    return next(line for line in body.decode().split("\r\n") if line.startswith("m=audio"))


# --- a=crypto lines -------------------------------------------------------------------------
def test_crypto_lines_we_can_key_and_those_we_skip() -> None:
    found = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")
    assert found is not None and (found.tag, found.suite, found.key) == (
        1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30)),
    )  # fmt: skip
    assert parse_crypto(f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^31") is not None
    assert parse_crypto(f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|1048576") is not None
    skipped = [
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4",  # MKI
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}",  # several keys
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP",  # session parameter
        f"1 AEAD_AES_128_GCM inline:{KEY}",  # a suite we do not key
        f"1 F8_128_HMAC_SHA1_80 inline:{KEY}",
        "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",  # 5 bytes, not 30
        "1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64!!",
        f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY}",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^64",  # a lifetime beyond libsrtp's
        "",
    ]
    assert [parse_crypto(v) for v in skipped] == [None] * len(skipped)


@given(
    st.one_of(
        st.text(max_size=120),
        st.builds(
            lambda tag, suite, key, tail: f"{tag} {suite} inline:{key}{tail}",
            st.text("0123456789x", max_size=4),
            st.sampled_from(["AES_CM_128_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_80", "NOPE"]),
            st.text("ABCDEFabcdef0123456789+/=", max_size=70),
            st.text("|^:;0123456789 ", max_size=12),
        ),
    )
)
def test_any_crypto_value_is_keyed_or_skipped_never_raises(value: str) -> None:
    found = parse_crypto(value)
    assert found is None or len(found.key) in (30, 46)


def test_a_key_never_shows_in_a_repr() -> None:
    crypto = Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30)))
    keys = LegKeys("srtp")
    keys.use("RTP/SAVP", crypto, crypto)
    for text in (repr(crypto), repr(keys), str(crypto)):
        assert KEY[:8] not in text and "\\x00\\x01" not in text


def test_auto_is_srtp_for_a_phone_on_tls_only() -> None:
    assert leg_encryption("auto", "TLS") == "srtp"
    assert [leg_encryption("auto", t) for t in ("UDP", "TCP")] == ["none", "none"]
    assert leg_encryption("optional", "UDP") == "optional"
    assert leg_encryption("none", "TLS") == "none"


# --- answering an offer ---------------------------------------------------------------------
def test_an_srtp_offer_is_answered_with_srtp_and_the_keys_work_on_the_wire(
    engine: RtpEngine, peers
) -> None:
    phone, carrier = peers(), peers()
    theirs = f"AES_CM_128_HMAC_SHA1_80 inline:{KEY}"
    answer = engine.answer_local("agent", phone_sdp(phone.port, crypto=(f"5 {theirs}",)))
    assert m_line(answer).split()[2] == "RTP/SAVP"
    (ours,) = cryptos(answer)
    assert (ours.tag, ours.suite) == (5, "AES_CM_128_HMAC_SHA1_80")  # its tag, its suite
    assert ours.key != bytes(range(30))  # our own fresh key for what we send
    engine.create_leg("carrier")
    engine.set_remote("carrier", LOCAL, carrier.port, 0)
    engine.bridge("agent", "carrier")
    port = int(m_line(answer).split()[1])
    phone.sock.sendto(
        Context(bytes(range(30))).protect(rtp_packet(0, 1, 0, 7, b"\x42" * 160)), (LOCAL, port)
    )
    assert carrier.recv().payload == b"\x42" * 160
    carrier.send(engine.stats("carrier").port, 0, 1, 0, 8, b"\x24" * 160)
    phone.sock.settimeout(1.0)
    assert Context(ours.key).unprotect(phone.sock.recv(2048))[12:] == b"\x24" * 160


def test_the_first_usable_crypto_line_is_taken(engine: RtpEngine) -> None:
    offer = phone_sdp(
        4000,
        crypto=(
            f"1 AEAD_AES_256_GCM inline:{base64.b64encode(bytes(44)).decode()}",
            f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}",
            f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",
        ),
    )
    (ours,) = cryptos(engine.answer_local("a", offer))
    assert (ours.tag, ours.suite) == (2, "AES_CM_128_HMAC_SHA1_32")
    assert engine.stats("a").srtp_in_suite == "AES_CM_128_HMAC_SHA1_32"


def test_srtp_offers_we_cannot_key_are_refused_before_anything_changes(engine: RtpEngine) -> None:
    for crypto in (
        (),
        (f"1 AEAD_AES_128_GCM inline:{KEY}",),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4",),
    ):
        with pytest.raises(MediaValueError, match="crypto suite"):
            engine.read_offer(phone_sdp(4000, crypto=crypto))
    engine.answer_local("a", phone_sdp(4000, "RTP/AVP"))
    with pytest.raises(MediaValueError):
        engine.answer_local("a", phone_sdp(4002, crypto=()))
    assert engine.remote_media("a").port == 4000  # type: ignore[union-attr]


def test_a_plain_offer_is_refused_where_srtp_is_required(engine: RtpEngine) -> None:
    engine.offer_local("agent", encryption="srtp")
    with pytest.raises(MediaValueError, match="SRTP is required"):
        engine.answer_local("agent", phone_sdp(4000, "RTP/AVP"))
    # A best-effort offer (RTP/AVP carrying crypto) is SRTP, so it is accepted.
    answer = engine.answer_local(
        "agent", phone_sdp(4000, "RTP/AVP", (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    )
    assert m_line(answer).split()[2] == "RTP/AVP" and len(cryptos(answer)) == 1


def test_a_plain_offer_gets_a_plain_answer_on_a_leg_without_a_setting(engine: RtpEngine) -> None:
    answer = engine.answer_local("carrier", phone_sdp(4000, "RTP/AVP"))
    assert m_line(answer).split()[2] == "RTP/AVP" and b"a=crypto" not in answer
    assert engine.stats("carrier").srtp_in_suite is None


# --- our offers -----------------------------------------------------------------------------
def test_an_srtp_offer_has_a_fresh_key_per_suite_and_per_leg(engine: RtpEngine) -> None:
    first = engine.offer_local("agent-1", encryption="srtp")
    second = engine.offer_local("agent-2", encryption="srtp")
    assert m_line(first).split()[2] == "RTP/SAVP"
    lines = cryptos(first)
    assert [(c.tag, c.suite) for c in lines] == [
        (1, "AES_CM_128_HMAC_SHA1_80"), (2, "AES_CM_128_HMAC_SHA1_32"),
    ]  # fmt: skip
    keys = {c.key for c in lines + cryptos(second)}
    assert len(keys) == 4
    assert b"a=crypto" not in engine.offer_local("carrier")  # the default: plain RTP


def test_the_answer_picks_one_of_our_lines_and_keys_both_directions(
    engine: RtpEngine, peers
) -> None:
    phone, other = peers(), peers()
    offer = engine.offer_local("agent", encryption="srtp")
    ours = {c.tag: c for c in cryptos(offer)}
    phone_key = secrets.token_bytes(30)
    answer = phone_sdp(
        phone.port,
        crypto=(f"2 AES_CM_128_HMAC_SHA1_32 inline:{base64.b64encode(phone_key).decode()}",),
    )
    assert engine.apply_answer("agent", answer) == 0
    stats = engine.stats("agent")
    assert (stats.srtp_in_suite, stats.srtp_out_suite) == ("AES_CM_128_HMAC_SHA1_32",) * 2
    engine.create_leg("other")
    engine.set_remote("other", LOCAL, other.port, 0)
    engine.bridge("agent", "other")
    other.send(engine.stats("other").port, 0, 1, 0, 8, b"\x33" * 160)
    phone.sock.settimeout(1.0)
    wire = phone.sock.recv(2048)
    assert Context(ours[2].key, tag_len=4).unprotect(wire)[12:] == b"\x33" * 160
    sender = Context(phone_key, tag_len=4)
    phone.sock.sendto(sender.protect(rtp_packet(0, 9, 0, 5, b"\x44" * 160)), (LOCAL, stats.port))
    assert other.recv().payload == b"\x44" * 160


def test_an_answer_without_our_crypto_is_refused_where_srtp_is_required(
    engine: RtpEngine,
) -> None:
    engine.offer_local("agent", encryption="srtp")
    with pytest.raises(MediaValueError, match="none of our crypto suites"):
        engine.apply_answer("agent", phone_sdp(4000, "RTP/SAVP"))
    engine.offer_local("agent")
    wrong_tag = phone_sdp(4000, crypto=(f"7 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    with pytest.raises(MediaValueError):
        engine.apply_answer("agent", wrong_tag)
    assert engine.stats("agent").srtp_in_suite is None


def test_optional_offers_crypto_in_rtp_avp_and_takes_a_plain_answer(engine: RtpEngine) -> None:
    offer = engine.offer_local("agent", encryption="optional")
    assert m_line(offer).split()[2] == "RTP/AVP" and len(cryptos(offer)) == 2
    engine.apply_answer("agent", phone_sdp(4000, "RTP/AVP"))
    assert engine.stats("agent").srtp_in_suite is None
    engine.offer_local("agent")
    engine.apply_answer(
        "agent", phone_sdp(4000, "RTP/AVP", (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    )
    assert engine.stats("agent").srtp_in_suite == "AES_CM_128_HMAC_SHA1_80"


def test_a_bad_setting_is_refused(engine: RtpEngine) -> None:
    with pytest.raises(MediaValueError, match="media_encryption"):
        engine.offer_local("agent", encryption="maybe")


# --- re-INVITEs and hold --------------------------------------------------------------------
def test_hold_and_refresh_re_offers_keep_the_key_and_the_context(engine: RtpEngine) -> None:
    offer = engine.offer_local("agent", encryption="srtp")
    engine.apply_answer(
        "agent", phone_sdp(4000, crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    )
    (in_use,) = [c for c in cryptos(offer) if c.tag == 1]
    hold = engine.offer_local("agent", "sendonly")
    assert cryptos(hold) == [in_use] and m_line(hold).split()[2] == "RTP/SAVP"
    engine.apply_answer(
        "agent", phone_sdp(4000, crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    )
    refresh = engine.offer_local("agent", "sendonly")
    assert refresh == hold  # RFC 3264 §8: the same SDP, the same o= version
    # The phone re-offers with the same key: our answer keeps ours too.
    again = engine.answer_local(
        "agent", phone_sdp(4000, crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    )
    assert cryptos(again) == [in_use]


def test_a_changed_key_or_suite_is_a_new_context(engine: RtpEngine, peers) -> None:
    phone, other = peers(), peers()
    first_key, second_key = secrets.token_bytes(30), secrets.token_bytes(30)

    def offer(key: bytes, suite: str = "AES_CM_128_HMAC_SHA1_80") -> bytes:
        return phone_sdp(phone.port, crypto=(f"1 {suite} inline:{base64.b64encode(key).decode()}",))

    (ours,) = cryptos(engine.answer_local("agent", offer(first_key)))
    engine.create_leg("other")
    engine.set_remote("other", LOCAL, other.port, 0)
    engine.bridge("agent", "other")
    port = engine.stats("agent").port
    old = Context(first_key)
    phone.sock.sendto(old.protect(rtp_packet(0, 1, 0, 5, b"\x01" * 160)), (LOCAL, port))
    assert other.recv().payload == b"\x01" * 160
    # RFC 4568 §7.1.4: the party's new key is a new context; the old key no longer works.
    assert cryptos(engine.answer_local("agent", offer(second_key))) == [ours]
    phone.sock.sendto(old.protect(rtp_packet(0, 2, 160, 5, b"\x02" * 160)), (LOCAL, port))
    phone.sock.sendto(
        Context(second_key).protect(rtp_packet(0, 3, 320, 5, b"\x03" * 160)), (LOCAL, port)
    )
    assert other.recv().payload == b"\x03" * 160
    assert engine.stats("agent").srtp_auth_failed == 1
    # Another suite: our key is renewed as well.
    (renewed,) = cryptos(engine.answer_local("agent", offer(second_key, "AES_CM_128_HMAC_SHA1_32")))
    assert renewed.suite == "AES_CM_128_HMAC_SHA1_32" and renewed.key != ours.key
    # A re-offer back to plain RTP (allowed: the leg has no `srtp` setting) is plain again.
    assert b"a=crypto" not in engine.answer_local("agent", phone_sdp(phone.port, "RTP/AVP"))
    assert engine.stats("agent").srtp_in_suite is None


# --- keys stay with their leg ---------------------------------------------------------------
def test_relayed_sdp_carries_no_keys_and_relayed_srtp_is_refused(engine: RtpEngine) -> None:
    best_effort = phone_sdp(4000, "RTP/AVP", (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    assert b"a=crypto" not in anchor_sdp(best_effort, LOCAL, 5000)
    with pytest.raises(MediaValueError, match="cannot relay RTP/SAVP"):
        engine.offer("a", "b", phone_sdp(4000, crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",)))


def test_the_release_log_counts_srtp_packets_and_names_no_key(
    engine: RtpEngine, caplog: pytest.LogCaptureFixture
) -> None:
    offer = engine.offer_local("agent", encryption="srtp")
    engine.apply_answer(
        "agent", phone_sdp(4000, crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",))
    )
    with caplog.at_level(logging.DEBUG):
        engine.release("agent")
    text = caplog.text
    assert "SRTP on leg agent: 0 packets in, 0 out" in text
    for c in cryptos(offer):
        assert base64.b64encode(c.key).decode()[:12] not in text
    assert KEY[:12] not in text
