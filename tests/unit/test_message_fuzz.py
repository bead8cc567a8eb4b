"""Fuzz the parser and the stream framer (STYLE §6, SPEC SIP-1 "never a crash").

Invariant: `parse_message` returns a `Request` or `Response` or raises `SipParseError`, and
`StreamFramer.feed` returns a list of bytes or raises `SipParseError`; nothing else escapes.
A message that parses must also serialise and parse again to the same headers and body.
Inputs are random bytes and mutations (flips, insertions, deletions, line shuffles, splices
with SIP-looking fragments) of the RFC 4475 vectors and of a typical INVITE. A fixed
`max_examples` keeps the whole file to a few seconds.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.errors import SipParseError
from softswitch.sip.framing import StreamFramer
from softswitch.sip.headers import _SIP_URI_FAST_RE, _parse_uri_general
from softswitch.sip.message import (
    Request,
    Response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "rfc4475"

INVITE = (
    b"INVITE sip:9000@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bK-1-0;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Citizen" <sip:13800138000@127.0.0.1:15060>;tag=1\r\n'
    b"To: <sip:9000@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-4711@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:13800138000@127.0.0.1:15060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 31\r\n"
    b"\r\n"
    b"v=0\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n"
)
SEEDS = [INVITE] + [p.read_bytes() for p in sorted(VECTORS.glob("*.dat"))]

# Fragments that steer mutations towards the parser's interesting corners.
FRAGMENTS = [
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b'"',
    b"\\",
    b"<",
    b">",
    b"@",
    b"[",
    b"]",
    b"%",
    b"%00",
    b"\x00",
    b"\xff",
    b"\xc2\xb2",
    b"=",
    b"?",
    b"SIP/2.0",
    b"SIP/2.0/UDP ",
    b"sip:",
    b"[::1]",
    b"Via: ",
    b"v: ",
    b"Content-Length: ",
    b"l: ",
    b"CSeq: ",
    b"99999999999999999999",
    b"-1",
    b";tag=",
    b";branch=z9hG4bK",
    b"\r\n ",
]

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "lines", "splice"]))
        pos = draw(st.integers(0, max(0, len(data))))
        if op == "flip" and data:
            i = min(pos, len(data) - 1)
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(FRAGMENTS) | st.binary(max_size=8))
        elif op == "delete":
            data[pos : pos + draw(st.integers(1, 16))] = b""
        elif op == "truncate":
            del data[pos:]
        elif op == "lines":
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                i = draw(st.integers(1, len(lines) - 1))
                j = draw(st.integers(1, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
                if draw(st.booleans()):
                    lines.insert(i, lines[j])  # a repeated header line
            data = bytearray(b"\r\n".join(lines))
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            cut = draw(st.integers(0, len(other)))
            data[pos:] = other[cut:]
    return bytes(data)


def check_parse(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert exc.status in (400, 501, 505, 513)
        if exc.partial is not None:
            assert exc.is_request and isinstance(exc.partial, Request)
        return
    assert isinstance(message, (Request, Response))
    # Whatever parses serialises and parses again to the same message.
    again = parse_message(message.to_bytes(), max_size=1 << 20)
    assert type(again) is type(message)
    assert again.start_line() == message.start_line()
    assert [h for h in again.headers if h[0] != "content-length"] == [
        h for h in message.headers if h[0] != "content-length"
    ]
    assert again.body == message.body
    # The structured views used by the transaction layer and the TU work on it.
    message.top_via  # noqa: B018
    message.cseq  # noqa: B018
    message.from_  # noqa: B018
    message.to  # noqa: B018


def check_framer(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer(max_size=4096)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    try:
        for start, end in zip(bounds, bounds[1:], strict=False):
            frames = framer.feed(data[start:end])
            assert isinstance(frames, list)
            for frame in frames:
                assert isinstance(frame, bytes) and len(frame) <= 4096
                check_parse(frame)
    except SipParseError:
        return


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(mutated())
def test_mutated_messages_parse_or_raise_sip_parse_error(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(st.binary(max_size=2048), st.lists(st.integers(0, 2048), max_size=6))
def test_random_bytes_on_a_stream_frame_or_raise_sip_parse_error(
    data: bytes, cuts: list[int]
) -> None:
    check_framer(data, cuts)


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=4), st.lists(st.integers(0, 8000), max_size=8))
def test_mutated_message_streams_frame_or_raise_sip_parse_error(
    messages: list[bytes], cuts: list[int]
) -> None:
    check_framer(b"\r\n\r\n".join(messages), cuts)


URI_ALPHABET = st.sampled_from(list("sipSIPabcz019:@;?=&%[]<>\" .-_~+$,/!*'()\t") + ["\x00"])


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.text(URI_ALPHABET, max_size=40),
        st.builds(
            lambda s, rest: s + rest,
            st.sampled_from(["sip:", "sips:", "SIP:", "tel:"]),
            st.text(URI_ALPHABET, max_size=40),
        ),
    )
)
def test_uri_fast_path_agrees_with_the_general_parser(text: str) -> None:
    def outcome(parse, value: str):  # type: ignore[no-untyped-def]
        try:
            uri = parse(value)
        except SipParseError:
            return "error"
        return (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params,
                uri.uri_headers, uri.opaque)  # fmt: skip

    text = text.strip()
    fast = outcome(parse_uri, text)
    assert fast == outcome(_parse_uri_general, text)
    if fast != "error":
        # and what parses prints as a URI that parses to the same thing
        assert outcome(parse_uri, str(parse_uri(text))) == fast


def test_uri_fast_path_covers_the_common_forms() -> None:
    for text in ("sip:9000@127.0.0.1:5060", "sips:a:b@example.com;lr?x=y", "sip:example.com"):
        assert _SIP_URI_FAST_RE.fullmatch(text)
    for text in ("sip:a@[::1]", "tel:+861234", "sip:a@b@c"):
        assert not _SIP_URI_FAST_RE.fullmatch(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_header_value_parsers_raise_only_sip_parse_error(text: str) -> None:
    for parse in (parse_uri, parse_name_addr, parse_via):
        with contextlib.suppress(SipParseError):  # the invariant: no other exception
            parse(text)
