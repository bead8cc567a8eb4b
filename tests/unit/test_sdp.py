"""SDP reading and rewriting for media anchoring."""

import pytest

from softswitch.sdp import SdpError, parse_sdp

OFFER = (
    b"v=0\r\no=carrier 123 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    b"m=video 0 RTP/AVP 96\r\n"
)


def test_audio_stream_fields_are_read() -> None:
    sdp = parse_sdp(OFFER)
    audio = sdp.audio()
    assert audio is not None
    assert sdp.address_of(audio) == "10.0.0.1"
    assert audio.port == 40000
    assert audio.rtpmap()[8] == ("PCMA", 8000)
    assert audio.telephone_event() == 101
    assert audio.ptime == 20
    assert audio.direction == "sendrecv"


def test_hold_direction_is_read_and_set() -> None:
    sdp = parse_sdp(OFFER.replace(b"a=sendrecv", b"a=sendonly"))
    audio = sdp.audio()
    assert audio is not None and audio.direction == "sendonly"
    audio.set_direction("inactive")
    assert b"a=inactive" in sdp.to_bytes() and b"a=sendonly" not in sdp.to_bytes()


def test_rewrite_points_media_at_the_node_and_round_trips() -> None:
    sdp = parse_sdp(OFFER)
    sdp.set_connection("127.0.0.1")
    audio = sdp.audio()
    assert audio is not None
    audio.port = 30000
    again = parse_sdp(sdp.to_bytes())
    assert again.address_of(again.audio()) == "127.0.0.1"  # type: ignore[arg-type]
    assert again.audio().port == 30000  # type: ignore[union-attr]
    assert b"o=carrier 123 1 IN IP4 127.0.0.1" in sdp.to_bytes()
    assert again.media[1].port == 0  # the refused video stream stays refused


def test_ipv6_connection() -> None:
    sdp = parse_sdp(OFFER)
    sdp.set_connection("::1")
    assert b"c=IN IP6 ::1" in sdp.to_bytes()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"hello",
        b"v=0\r\nm=audio x RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 host.example\r\nm=audio 4000 RTP/AVP 0\r\n",
        b"\xff\xfe",
    ],
)
def test_garbage_is_refused_with_sdp_error(body: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body)
