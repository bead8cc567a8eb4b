"""Parser and serialiser behaviour beyond the RFC 4475 vectors (RFC 3261 §7, §18.3, §20, §25)."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.framing import StreamFramer
from softswitch.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    parse_cseq,
    parse_hostport,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_list,
    unescape,
)

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def request_bytes(
    *extra: str,
    method: str = "INVITE",
    body: bytes = b"",
    content_length: str | None = None,
    call_id: str = "a84b4c76e66710@pc33.example.com",
) -> bytes:
    lines = [
        f"{method} sip:9000@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bK776asdhds;rport",
        "Max-Forwards: 70",
        "To: <sip:9000@127.0.0.1>",
        'From: "Alice" <sip:alice@127.0.0.1>;tag=1928301774',
        f"Call-ID: {call_id}",
        f"CSeq: 314159 {method}",
        "Contact: <sip:alice@127.0.0.1:15060>",
        *extra,
        f"Content-Length: {len(body) if content_length is None else content_length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_bytes(*extra: str, status_line: str = "SIP/2.0 200 OK") -> bytes:
    lines = [
        status_line,
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnashds8",
        "To: <sip:9000@127.0.0.1>;tag=8321234356",
        'From: "Alice" <sip:alice@127.0.0.1>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.example.com",
        "CSeq: 314159 INVITE",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_req(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


# --- header names, compact forms, folding, lists -------------------------------------------


def test_compact_header_forms_read_as_their_long_names() -> None:
    data = (
        b"OPTIONS sip:9000@127.0.0.1 SIP/2.0\r\n"
        b"v: SIP/2.0/TCP 127.0.0.1:15060;branch=z9hG4bK1\r\n"
        b"f: <sip:alice@127.0.0.1>;tag=1\r\n"
        b"t: <sip:9000@127.0.0.1>\r\n"
        b"i: compact@127.0.0.1\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"m: <sip:alice@127.0.0.1>\r\n"
        b"k: 100rel\r\n"
        b"c: application/sdp\r\n"
        b"s: hello\r\n"
        b"x: 1800\r\n"
        b"L: 0\r\n\r\n"
    )
    m = parse_req(data)
    assert m.call_id == "compact@127.0.0.1"
    assert m.top_via.transport == "TCP"
    assert m.from_.tag == "1" and m.to.uri == "sip:9000@127.0.0.1"
    assert m.headers.get("Contact") == "<sip:alice@127.0.0.1>"
    assert m.headers.get("supported") == "100rel"
    assert m.headers.get("Content-Type") == "application/sdp"
    assert m.headers.get("subject") == "hello" and m.headers.get("session-expires") == "1800"
    assert m.headers.get("content-length") == "0"
    assert "CONTENT-LENGTH" in m.headers and "l" in m.headers


def test_header_names_are_case_insensitive_and_serialised_canonically() -> None:
    m = parse_req(request_bytes("cALL-iNFO: <http://example.com/x>", "x-Custom-HEADER: 1"))
    assert m.headers.get("call-info") == "<http://example.com/x>"
    out = m.to_bytes()
    assert b"\r\nCall-ID: " in out and b"\r\nCSeq: " in out and b"\r\nCall-Info: " in out
    assert b"\r\nX-Custom-Header: 1\r\n" in out


def test_folded_header_lines_join_with_a_single_space() -> None:
    m = parse_req(request_bytes("Subject: first part\r\n   second part\r\n\tthird part"))
    assert m.headers.get("subject") == "first part second part third part"


def test_folded_value_starting_on_the_next_line_has_no_leading_space() -> None:
    m = parse_req(request_bytes("Subject:\r\n  folded only"))
    assert m.headers.get("subject") == "folded only"


def test_continuation_line_before_any_header_is_rejected() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\n  folded\r\n" + request_bytes().split(b"\r\n", 1)[1]
    with pytest.raises(SipParseError):
        parse_message(data)


def test_comma_joined_and_repeated_list_headers_give_the_same_elements() -> None:
    joined = parse_req(
        request_bytes(
            "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            "Allow: INVITE, ACK,BYE",
        )
    )
    repeated = parse_req(
        request_bytes(
            "Route: <sip:p1.example.com;lr>",
            "Route: <sip:p2.example.com;lr>",
            "Allow: INVITE",
            "Allow: ACK",
            "Allow: BYE",
        )
    )
    for m in (joined, repeated):
        assert m.headers.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        assert m.headers.get_all("allow") == ["INVITE", "ACK", "BYE"]


def test_comma_inside_quotes_or_angle_brackets_does_not_split_a_list() -> None:
    value = '"Doe, John" <sip:j@example.com;x="a,b">;q=0.5, <sip:k@example.com?h=1,2>'
    assert split_list(value) == [
        '"Doe, John" <sip:j@example.com;x="a,b">;q=0.5',
        "<sip:k@example.com?h=1,2>",
    ]


def test_comma_in_a_non_list_header_is_kept() -> None:
    m = parse_req(request_bytes("Date: Sat, 13 Nov 2010 23:29:00 GMT"))
    assert m.headers.get_all("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_top_via_of_comma_joined_vias_is_the_first_element() -> None:
    data = request_bytes().replace(
        b"Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bK776asdhds;rport",
        b"Via: SIP/2.0/UDP first.example.com;branch=z9hG4bKa, SIP/2.0/TCP second.example.com",
    )
    m = parse_req(data)
    assert m.top_via.host == "first.example.com"
    assert m.headers.pop_first("via") == "SIP/2.0/UDP first.example.com;branch=z9hG4bKa"
    assert m.top_via.host == "second.example.com"


def test_headers_set_prepend_remove_keep_order() -> None:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP a")
    h.add("To", "<sip:x@y>")
    h.add("v", "SIP/2.0/UDP b")
    h.prepend("via", "SIP/2.0/UDP top")
    assert h.get_all("via") == ["SIP/2.0/UDP top", "SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    h.set("via", "SIP/2.0/UDP only")
    assert list(h) == [("via", "SIP/2.0/UDP only"), ("to", "<sip:x@y>")]
    h.remove("t")
    assert "to" not in h and len(h) == 1


def test_pop_first_skips_an_empty_header_line() -> None:
    h = Headers([("route", ""), ("route", "<sip:p1;lr>, <sip:p2;lr>")])
    assert h.pop_first("route") == "<sip:p1;lr>"
    assert h.get_all("route") == ["<sip:p2;lr>"]


# --- addresses, URIs, Via ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("[2001:db8::1]", "[2001:db8::1]", None),
        ("[2001:db8::1]:5061", "[2001:db8::1]", 5061),
        ("[::1]:5060", "[::1]", 5060),
        ("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", None),
        ("192.0.2.1:5060", "192.0.2.1", 5060),
        ("sip.example.com", "sip.example.com", None),
    ],
)
def test_hostport_accepts_ipv6_references_ipv4_and_names(
    text: str, host: str, port: int | None
) -> None:
    assert parse_hostport(text) == (host, port)


@pytest.mark.parametrize(
    "text",
    [
        "[2001:db8::1",
        "2001:db8::1",
        "[zz::1]",
        "[::1]x",
        "host:0",
        "host:65536",
        "host:",
        "a b",
        "",
    ],
)
def test_hostport_rejects_malformed_hosts_and_ports(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_hostport(text)


def test_ipv6_request_uri_via_and_contact_parse() -> None:
    data = (
        b"INVITE sip:9000@[2001:db8::10]:5060;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::9]:15060;branch=z9hG4bK6a;rport\r\n"
        b"To: <sip:9000@[2001:db8::10]>\r\n"
        b"From: <sip:alice@[2001:db8::9]>;tag=7\r\n"
        b"Call-ID: v6@[2001:db8::9]\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@[2001:db8::9]:15060>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    m = parse_req(data)
    uri = parse_uri(m.uri)
    assert (uri.user, uri.host, uri.port, uri.params) == (
        "9000",
        "[2001:db8::10]",
        5060,
        {"transport": "udp"},
    )
    via = m.top_via
    assert (via.host, via.port, via.branch) == ("[2001:db8::9]", 15060, "z9hG4bK6a")
    assert str(via) == "SIP/2.0/UDP [2001:db8::9]:15060;branch=z9hG4bK6a;rport"
    contact = parse_uri(parse_name_addr(m.headers.get_all("contact")[0]).uri)
    assert (contact.host, contact.port) == ("[2001:db8::9]", 15060)


def test_quoted_display_name_with_escapes_is_unescaped_and_requoted() -> None:
    na = parse_name_addr(r'"Zhang \"Hotline\" \\ San" <sip:zs@example.com>;tag=9')
    assert na.display == 'Zhang "Hotline" \\ San'
    assert na.tag == "9"
    assert str(na) == r'"Zhang \"Hotline\" \\ San" <sip:zs@example.com>;tag=9'
    assert parse_name_addr(str(na)).display == na.display


def test_utf8_display_name_survives_parse_and_serialise() -> None:
    m = parse_req(request_bytes().replace(b'"Alice"', '"市民 张三"'.encode()))
    assert m.from_.display == "市民 张三"
    assert parse_message(m.to_bytes()).from_.display == "市民 张三"


def test_display_name_cannot_inject_a_header_when_serialised() -> None:
    na = NameAddr("Eve\r\nVia: SIP/2.0/UDP evil", "sip:eve@example.com", {})
    text = str(na)
    assert "\r" not in text and "\n" not in text
    assert parse_name_addr(text).uri == "sip:eve@example.com"


@pytest.mark.parametrize(
    ("text", "display", "uri", "params"),
    [
        ("<sip:a@b>", None, "sip:a@b", {}),
        ("sip:a@b;tag=1", None, "sip:a@b", {"tag": "1"}),
        ("Bob <sip:b@c;lr>;tag=x;expires=60", "Bob", "sip:b@c;lr", {"tag": "x", "expires": "60"}),
        ('"" <sip:a@b>', "", "sip:a@b", {}),
        (
            "<tel:+8612345;phone-context=example.com>",
            None,
            "tel:+8612345;phone-context=example.com",
            {},
        ),
        ("*", None, "*", {}),
    ],
)
def test_name_addr_forms(
    text: str, display: str | None, uri: str, params: dict[str, str | None]
) -> None:
    na = parse_name_addr(text)
    assert (na.display, na.uri, na.params) == (display, uri, params)


@pytest.mark.parametrize(
    "text",
    ['"unterminated <sip:a@b>', "<sip:a@b", "<sip:a@b> junk", "sip:a@b?Route=x", "", '"x" sip:a@b'],
)
def test_malformed_name_addr_is_rejected(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_escaped_uri_parts_are_kept_and_unescaped_once_on_request() -> None:
    uri = parse_uri("sip:%61lice%40home@example.com;x=%2541?Subject=hi%20there")
    assert uri.user == "%61lice%40home" and unescape(uri.user) == "alice@home"
    assert uri.params == {"x": "%2541"} and unescape("%2541") == "%41"
    assert uri.uri_headers == "Subject=hi%20there"
    assert str(uri) == "sip:%61lice%40home@example.com;x=%2541?Subject=hi%20there"


def test_unescape_rejects_escapes_that_are_not_utf8() -> None:
    with pytest.raises(SipParseError):
        unescape("%ff%fe")


@pytest.mark.parametrize(
    ("text", "scheme", "user", "password", "host", "port", "params"),
    [
        ("sip:alice@example.com", "sip", "alice", None, "example.com", None, {}),
        ("SIPS:Alice:secret@Example.COM:5061", "sips", "Alice", "secret", "example.com", 5061, {}),
        ("sip:example.com;lr", "sip", None, None, "example.com", None, {"lr": None}),
        ("sip:+8612345@gw;user=phone", "sip", "+8612345", None, "gw", None, {"user": "phone"}),
        ("sip:a?b;c@host", "sip", "a?b;c", None, "host", None, {}),
    ],
)
def test_sip_uri_components(
    text: str,
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: dict[str, str | None],
) -> None:
    uri = parse_uri(text)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params) == (
        scheme,
        user,
        password,
        host,
        port,
        params,
    )


def test_non_sip_uri_stays_opaque() -> None:
    uri = parse_uri("tel:+86-10-12345;phone-context=+86")
    assert uri.scheme == "tel" and not uri.is_sip
    assert uri.opaque == "+86-10-12345;phone-context=+86"
    assert str(uri) == "tel:+86-10-12345;phone-context=+86"


@pytest.mark.parametrize(
    "text",
    [
        "<sip:a@b>",
        "sip:a b@c",
        "sip:",
        "sip:@host",
        "1sip:a@b",
        "sip:a@b:99999",
        'sip:"x"@b',
        "noscheme",
    ],
)
def test_malformed_uri_is_rejected(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_via_with_lws_comment_and_received_parses() -> None:
    via = parse_via("SIP / 2.0 / udp  host.example.com:5060 (a comment) ;received=192.0.2.1;rport")
    assert (via.transport, via.host, via.port) == ("UDP", "host.example.com", 5060)
    assert via.params == {"received": "192.0.2.1", "rport": None}


@pytest.mark.parametrize(
    "text", ["SIP/2.0/UDP", "SIP/2.0 host", "HTTP/1.1/TCP host", "SIP/2.0/UDP ;x"]
)
def test_malformed_via_is_rejected(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


@pytest.mark.parametrize(
    "text", ["² INVITE", "1" * 5000 + " INVITE", "2147483648 INVITE", "1", "1 IN VITE"]
)
def test_cseq_rejects_non_ascii_digits_huge_and_malformed_values(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_cseq(text)


# --- start lines and essentials ------------------------------------------------------------


def test_response_reason_phrase_is_kept_even_when_empty_or_missing() -> None:
    m = parse_message(response_bytes(status_line="SIP/2.0 183 Session Progress"))
    assert isinstance(m, Response) and (m.status, m.reason) == (183, "Session Progress")
    m = parse_message(response_bytes(status_line="SIP/2.0 486 "))
    assert isinstance(m, Response) and (m.status, m.reason) == (486, "")
    m = parse_message(response_bytes(status_line="SIP/2.0 486"))
    assert isinstance(m, Response) and (m.status, m.reason) == (486, "")


@pytest.mark.parametrize(
    "status_line",
    ["SIP/2.0 1000 Big", "SIP/2.0 099 Low", "SIP/2.0 20 OK", "SIP/3.0 200 OK", "SIP/2.0 2OO OK"],
)
def test_bad_status_line_is_a_dropped_response(status_line: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(response_bytes(status_line=status_line))
    assert not info.value.is_request and info.value.partial is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Call-ID: a84b4c76e66710@pc33.example.com", b"Call-ID: "),
        (b"Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bK776asdhds;rport", b"Via: "),
        (b"Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bK776asdhds;rport", b"Via: ,"),
        (b"CSeq: 314159 INVITE", b"CSeq: \xc2\xb2 INVITE"),
        (b"Max-Forwards: 70", b"Max-Forwards: 256"),
        (b"Max-Forwards: 70", b"Max-Forwards: " + b"9" * 5000),
        (b"Content-Length: 0", b"Content-Length: " + b"9" * 5000),
        (b"Content-Length: 0", b"Content-Length: \xd9\xa1"),
        (b"Content-Length: 0", b"Content-Length: five"),
        (b"To: <sip:9000@127.0.0.1>", b"To: <sip:9000@127.0.0.1>\r\nBad Header: x"),
        (b"To: <sip:9000@127.0.0.1>", b"To: <sip:9000@127.0.0.1>\r\nNoColonHere"),
        (b"To: <sip:9000@127.0.0.1>", b"To: <sip:9000@127.0.0.1>\rX-Smuggled: 1"),
    ],
)
def test_malformed_essential_header_gets_an_answerable_400(old: bytes, new: bytes) -> None:
    data = request_bytes()
    assert old in data
    with pytest.raises(SipParseError) as info:
        parse_message(data.replace(old, new))
    err = info.value
    assert err.is_request and err.status == 400
    assert isinstance(err.partial, Request) and err.partial.headers.get("cseq")


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_essential_header_is_rejected(name: str) -> None:
    lines = [
        line for line in request_bytes().split(b"\r\n") if not line.startswith(name.encode() + b":")
    ]
    with pytest.raises(SipParseError):
        parse_message(b"\r\n".join(lines))


def test_leading_crlfs_before_the_start_line_are_ignored() -> None:
    m = parse_req(b"\r\n\r\n" + request_bytes())
    assert m.method == "INVITE"


def test_bare_lf_line_ends_are_tolerated() -> None:
    m = parse_req(
        request_bytes(body=SDP).replace(b"\r\n", b"\n").replace(SDP.replace(b"\r\n", b"\n"), SDP)
    )
    assert m.method == "INVITE" and m.body == SDP


def test_datagram_without_blank_line_after_headers_parses_without_body() -> None:
    data = request_bytes()[:-2]  # ends right after "Content-Length: 0\r\n"
    assert parse_req(data).body == b""


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    data = request_bytes(body=SDP).replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_req(data).body == SDP


def test_datagram_body_longer_than_content_length_is_truncated() -> None:
    assert parse_req(request_bytes(body=SDP, content_length="10")).body == SDP[:10]


def test_lowercase_status_line_is_a_dropped_response_not_a_bad_request() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(response_bytes(status_line="sip/2.0 200 OK"))
    assert not info.value.is_request


def test_non_utf8_headers_are_rejected_not_crashed() -> None:
    with pytest.raises(SipParseError):
        parse_message(request_bytes().replace(b"Alice", b"\xd5\xc5\xc8\xfd"))  # GBK


@pytest.mark.parametrize(
    "data", [b"", b"\r\n\r\n", b"garbage", b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"]
)
def test_junk_is_rejected(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(data)


def test_message_over_the_maximum_size_gets_513_with_a_partial_request() -> None:
    data = request_bytes(body=b"x" * 2000)
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=1000)
    err = info.value
    assert err.status == 513 and err.is_request and isinstance(err.partial, Request)
    assert parse_req(data).body == b"x" * 2000  # the default maximum is 65535


def test_oversized_response_is_dropped() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(response_bytes(), max_size=100)
    assert info.value.status == 513 and not info.value.is_request


# --- serialise -----------------------------------------------------------------------------


def test_serialise_then_parse_gives_the_same_message() -> None:
    original = parse_req(request_bytes("Route: <sip:p1.example.com;lr>", "Subject: x", body=SDP))
    again = parse_req(original.to_bytes())
    assert (again.method, again.uri, again.body) == (original.method, original.uri, SDP)
    assert [h for h in again.headers if h[0] != "content-length"] == [
        h for h in original.headers if h[0] != "content-length"
    ]


def test_serialise_writes_a_content_length_matching_the_body() -> None:
    m = parse_req(request_bytes(body=SDP))
    m.body = b"changed"
    data = m.to_bytes()
    assert data.endswith(b"\r\nContent-Length: 7\r\n\r\nchanged")
    assert data.count(b"Content-Length") == 1


def test_built_response_serialises_with_standard_reason() -> None:
    r = Response(404, headers=Headers([("via", "SIP/2.0/UDP h;branch=z9hG4bK1")]))
    assert r.to_bytes() == (
        b"SIP/2.0 404 Not Found\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
    )


# --- stream framing (RFC 3261 §18.3, RFC 5626 §3.5.1) -------------------------------------


def test_framer_returns_one_message_per_complete_frame() -> None:
    data = request_bytes(body=SDP)
    assert StreamFramer().feed(data) == [data]


def test_framer_reassembles_a_message_split_across_reads() -> None:
    data = request_bytes(body=SDP)
    for cut in (1, 10, data.index(b"\r\n\r\n") + 1, data.index(b"\r\n\r\n") + 3, len(data) - 1):
        framer = StreamFramer()
        assert framer.feed(data[:cut]) == []
        assert framer.feed(data[cut:]) == [data]


def test_framer_reassembles_a_message_fed_one_octet_at_a_time() -> None:
    data = request_bytes(body=SDP)
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [data]


def test_framer_splits_several_messages_in_one_read() -> None:
    first = request_bytes(body=SDP)
    second = request_bytes(method="BYE", call_id="other@x")
    third = response_bytes()
    framer = StreamFramer()
    assert framer.feed(first + second + third[:20]) == [first, second]
    assert framer.feed(third[20:]) == [third]


def test_framer_uses_the_compact_content_length() -> None:
    data = request_bytes(body=SDP).replace(b"Content-Length:", b"l:")
    assert StreamFramer().feed(data + data) == [data, data]


def test_framer_counts_double_crlf_keepalives_between_messages() -> None:
    data = request_bytes()
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.keepalives == 1
    assert framer.feed(b"\r\n\r\n" + data + b"\r\n\r\n\r\n\r\n") == [data]
    assert framer.keepalives == 4


def test_framer_counts_a_keepalive_split_across_reads() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [] and framer.keepalives == 0
    assert framer.feed(b"\r") == [] and framer.keepalives == 0
    assert framer.feed(b"\n") == [] and framer.keepalives == 1


def test_framer_does_not_count_a_single_crlf_pong_as_a_ping() -> None:
    data = request_bytes()
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + data + b"\r\n") == [data]
    assert framer.feed(data) == [data]
    assert framer.keepalives == 0


def test_framer_rejects_a_message_without_content_length() -> None:
    data = request_bytes().replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


@pytest.mark.parametrize("value", [b"-1", b"abc", b"9" * 5000, b""])
def test_framer_rejects_a_bad_content_length(value: bytes) -> None:
    data = request_bytes().replace(b"Content-Length: 0", b"Content-Length: " + value)
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


def test_framer_refuses_a_message_larger_than_the_maximum_with_513() -> None:
    data = request_bytes(body=b"x" * 5000)
    head = data[: data.index(b"\r\n\r\n") + 4]
    with pytest.raises(SipParseError) as info:
        StreamFramer(max_size=4000).feed(head)  # Content-Length alone says it is too big
    assert info.value.status == 513
    framer = StreamFramer(max_size=4000)
    with pytest.raises(SipParseError) as info:
        framer.feed(data)
    assert info.value.status == 513


def test_framer_refuses_endless_headers_with_513() -> None:
    framer = StreamFramer(max_size=1000)
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError) as info:
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"y" * 50 + b"\r\n")
    assert info.value.status == 513


def test_framed_messages_parse() -> None:
    first = request_bytes(body=SDP)
    second = response_bytes()
    frames = StreamFramer().feed(first + second)
    parsed = [parse_message(f) for f in frames]
    assert isinstance(parsed[0], Request) and parsed[0].body == SDP
    assert isinstance(parsed[1], Response) and parsed[1].status == 200
