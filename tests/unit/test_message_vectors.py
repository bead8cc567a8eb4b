"""RFC 4475 §3.1.1 and §3.1.2 torture messages (tests/vectors/rfc4475/*.dat).

Valid messages (§3.1.1) must parse to what the RFC describes. For invalid ones (§3.1.2) the RFC
often allows either a rejection or a liberal reading; the choice made here, and why, is stated
on each test and summarised in `CHOICES`. Rejections are checked for the status the transport
will answer with (`SipParseError.status`), for whether the message counts as a request (a
malformed response is dropped, never answered) and for a `partial` request that carries the
headers a 400/501/505 needs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.framing import StreamFramer
from softswitch.sip.message import (
    Request,
    Response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    unescape,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "rfc4475"

# RFC 4475 section -> file, for every message of §3.1.1 and §3.1.2.
VALID = {
    "3.1.1.1": "wsinv",
    "3.1.1.2": "intmeth",
    "3.1.1.3": "esc01",
    "3.1.1.4": "escnull",
    "3.1.1.5": "esc02",
    "3.1.1.6": "lwsdisp",
    "3.1.1.7": "longreq",
    "3.1.1.8": "dblreq",
    "3.1.1.9": "semiuri",
    "3.1.1.10": "transports",
    "3.1.1.11": "mpart01",
    "3.1.1.12": "unreason",
    "3.1.1.13": "noreason",
}
INVALID = {
    "3.1.2.1": "badinv01",
    "3.1.2.2": "clerr",
    "3.1.2.3": "ncl",
    "3.1.2.4": "scalar02",
    "3.1.2.5": "scalarlg",
    "3.1.2.6": "quotbal",
    "3.1.2.7": "ltgtruri",
    "3.1.2.8": "lwsruri",
    "3.1.2.9": "lwsstart",
    "3.1.2.10": "trws",
    "3.1.2.11": "escruri",
    "3.1.2.12": "baddate",
    "3.1.2.13": "regbadct",
    "3.1.2.14": "badaspec",
    "3.1.2.15": "baddn",
    "3.1.2.16": "badvers",
    "3.1.2.17": "mismatch01",
    "3.1.2.18": "mismatch02",
    "3.1.2.19": "bigcode",
}

# What this parser does with each §3.1.2 message. "accept" marks the cases where the RFC
# lets a tolerant element go on; each has a test below that pins down the liberal reading.
CHOICES = {
    "badinv01": "reject 400",  # RFC: should respond 400
    "clerr": "reject 400",  # RFC: 400 over UDP; on a stream the framer waits for more bytes
    "ncl": "reject 400",  # RFC: respond with an error; on a stream the framing is lost
    "scalar02": "reject 400",  # RFC: 400 because of the CSeq
    "scalarlg": "drop",  # a response: RFC says discard it
    "quotbal": "reject 400",  # RFC: should return 400 (inferring the quote is allowed)
    "ltgtruri": "reject 400",  # RFC: reasonable always to reject
    "lwsruri": "reject 400",  # RFC: should respond 400
    "lwsstart": "accept",  # RFC: may ignore the extra SP; we store the elements apart
    "trws": "accept",  # RFC: may ignore trailing SP; re-serialised without it
    "escruri": "reject 400",  # RFC: acceptable to reject; safer than carrying the headers
    "baddate": "accept",  # RFC: could ignore the time zone; Date is never interpreted here
    "regbadct": "reject 400",  # RFC: reasonable to reject; inferring <> is not general
    "badaspec": "accept",  # RFC: may ignore the spaces inside < >
    "baddn": "accept",  # RFC: may infer the quotes; str(NameAddr) re-quotes on output
    "badvers": "reject 505",  # RFC: should respond 505
    "mismatch01": "reject 400",  # RFC: will respond 400
    "mismatch02": "reject 501",  # RFC: should respond 501 (400 also acceptable)
    "bigcode": "drop",  # a response: RFC says drop it
}


def load(name: str) -> bytes:
    return (VECTORS / f"{name}.dat").read_bytes()


def parse(name: str) -> Request | Response:
    return parse_message(load(name))


def parse_request(name: str) -> Request:
    message = parse(name)
    assert isinstance(message, Request)
    return message


def rejection(name: str) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    return info.value


# --- the set of vectors itself ----------------------------------------------------------------


def test_every_section_3_1_1_and_3_1_2_message_has_a_vector_file() -> None:
    # §3.2-§3.4 share the directory: tests/unit/test_message_vectors_semantics.py
    names = set(VALID.values()) | set(INVALID.values())
    on_disk = {p.stem for p in VECTORS.glob("*.dat")}
    assert names <= on_disk
    assert set(CHOICES) == set(INVALID.values())


@pytest.mark.parametrize("name", sorted(VALID.values()))
def test_valid_vector_has_a_content_length_matching_its_body(name: str) -> None:
    # Guards the vector files themselves: a stray edit would change the body length.
    data = load(name)
    message = parse_message(data)
    declared = message.headers.get("content-length")
    assert declared is not None and int(declared) == len(message.body)


@pytest.mark.parametrize("name", sorted(VALID.values()))
def test_valid_vector_survives_serialise_and_parse_again(name: str) -> None:
    message = parse(name)
    again = parse_message(message.to_bytes())
    assert type(again) is type(message)

    # to_bytes writes Content-Length last, computed from the body; all else keeps its order
    def without_length(m: Request | Response) -> list[tuple[str, str]]:
        return [item for item in m.headers if item[0] != "content-length"]

    assert without_length(again) == without_length(message)
    assert again.headers.get("content-length") == str(len(message.body))
    assert again.body == message.body
    assert again.start_line() == message.start_line()


@pytest.mark.parametrize("name", sorted(VALID.values()))
def test_valid_vector_is_framed_whole_from_a_stream(name: str) -> None:
    data = load(name)
    framer = StreamFramer()
    if name == "dblreq":
        # §3.1.1.8 is a datagram with trailing noise. On a stream the noise would be the next
        # messages: an INVITE whose body is shorter than the octets that follow it, so the
        # stream cannot be framed past it and the connection must be closed.
        register_end = data.index(b"\r\n\r\n") + 4
        assert framer.feed(data[:register_end]) == [data[:register_end]]
        with pytest.raises(SipParseError):
            framer.feed(data[register_end:])
    else:
        assert framer.feed(data) == [data]


# --- §3.1.1 valid messages ------------------------------------------------------------------


def test_3_1_1_1_short_tortuous_invite_parses_with_folding_compact_forms_and_lws() -> None:
    m = parse_request("wsinv")
    assert m.method == "INVITE"
    uri = parse_uri(m.uri)
    assert (uri.user, uri.host, uri.params) == (
        "vivekg",
        "chair-dnrc.example.com",
        {"unknownparam": None},
    )
    assert m.to.uri == "sip:vivekg@chair-dnrc.example.com" and m.to.tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\"' and m.from_.tag == "98asjd8"
    assert m.from_.uri == "sip:jdrosen@example.com"
    assert int(m.headers.get("max-forwards") or "") == 68  # leading zeros
    assert m.cseq == (9, "INVITE")  # leading zeros, folded before the method
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    vias = [parse_via(v) for v in m.headers.get_all("via")]  # "Via" and compact "v", joined
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("subject") == ""  # "s :" with an empty value
    assert m.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    # Unknown header: kept as an opaque value even though it is not generic-param syntax.
    assert m.headers.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    route = parse_name_addr(m.headers.get_all("route")[0])
    assert parse_uri(route.uri).params == {
        "lr": None,
        "unknownwith": "value",
        "unknown-no-value": None,
    }
    contact = parse_name_addr(m.headers.get_all("contact")[0])
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.headers.get("content-type") == "application/sdp"
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")


def test_3_1_1_2_wide_range_of_valid_characters_parses_as_an_unknown_method() -> None:
    m = parse_request("intmeth")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method and m.cseq == (139122385, method)
    uri = parse_uri(m.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com" and uri.uri_headers == ""
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"  # quoted-pairs, incl. a quoted NUL
    assert parse_uri(m.to.uri).user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_.params == {
        "fromparam''~+*_!.-%": '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"',
        "tag": "_token~1'+`*%!-.",
    }
    # In a Call-ID '%' is no escape and '"', '<', '>' are ordinary characters.
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_3_1_1_3_percent_escapes_are_kept_and_expand_once() -> None:
    m = parse_request("esc01")
    uri = parse_uri(m.uri)
    assert uri.host == "example.net" and unescape(uri.user or "") == "sips:user@example.com"
    assert unescape(parse_uri(m.to.uri).user or "") == "user"
    assert unescape(parse_uri(m.from_.uri).user or "") == "I have spaces"
    contact = parse_uri(parse_name_addr(m.headers.get_all("contact")[0]).uri)
    assert unescape(contact.user or "") == "caller"
    params = {unescape(k): v if v is None else unescape(v) for k, v in contact.params.items()}
    assert params == {"lr": None, "name": "value%41"}  # never unescaped twice
    assert m.headers.get("content-type") == "application/sdp"  # compact "C"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact "i"


def test_3_1_1_4_escaped_nulls_do_not_shorten_the_user_part() -> None:
    m = parse_request("escnull")
    aor = unescape(parse_uri(m.to.uri).user or "")
    assert aor == "null-\x00-null" and len(aor) == 11
    assert unescape(parse_uri(m.from_.uri).user or "") == aor
    users = [
        unescape(parse_uri(parse_name_addr(c).uri).user or "") for c in m.headers.get_all("contact")
    ]
    assert users == ["\x00", "\x00\x00"]  # two distinct contacts
    assert m.body == b""


def test_3_1_1_5_percent_outside_uris_is_not_an_escape() -> None:
    m = parse_request("esc02")
    assert m.method == "RE%47IST%45R" and m.method != "REGISTER"
    assert m.to.display == "%Z%45" and m.from_.display == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    assert len(m.headers.get_all("contact")) == 2  # "C%6Fntact" is another header
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_3_1_1_6_display_name_directly_before_angle_bracket_parses() -> None:
    m = parse_request("lwsdisp")
    assert m.from_.display == "caller"
    assert m.from_.uri == "sip:caller@example.com" and m.from_.tag == "323"


def test_3_1_1_7_long_values_and_many_repeated_headers_parse() -> None:
    m = parse_request("longreq")
    assert len(m.headers.get_all("via")) == 34  # every spelling of Via and v, with LWS
    assert m.top_via.host == "sip33.example.com"
    assert parse_via(m.headers.get_all("via")[-1]).branch.startswith("verylonglong")  # type: ignore[union-attr]
    assert m.to.display == ("I have a user name of " + "extreme" * 10 + " proportion")
    assert parse_uri(m.to.uri).port == 6000
    assert len(m.from_.tag or "") == 155
    assert m.call_id.startswith("longreq.one") and len(m.call_id) == 141
    assert len(m.body) == 150


def test_3_1_1_8_trailing_octets_in_a_datagram_are_ignored() -> None:
    m = parse_request("dblreq")
    assert m.method == "REGISTER" and m.body == b""
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"  # compact "I"
    assert parse_name_addr(m.headers.get_all("contact")[0]).uri == "sip:j.user@host.example.com"


def test_3_1_1_9_semicolon_in_the_user_part_stays_in_the_user_part() -> None:
    m = parse_request("semiuri")
    uri = parse_uri(m.uri)
    assert unescape(uri.user or "") == "user;par=u@example.net"
    assert uri.host == "example.com" and uri.params == {}
    assert m.headers.get_all("accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_3_1_1_10_known_and_unknown_transports_in_via_parse() -> None:
    m = parse_request("transports")
    vias = [parse_via(v) for v in m.headers.get_all("via")]
    assert [v.transport for v in vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert [v.host for v in vias] == [f"t{i}.example.com" for i in range(1, 6)]


def test_3_1_1_11_multipart_body_with_nul_octets_is_framed_by_content_length() -> None:
    m = parse_request("mpart01")
    assert m.method == "MESSAGE"
    assert len(m.body) == 553 and b"\x00" in m.body
    assert m.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert m.headers.get("content-type") == "multipart/mixed;boundary=7a9cbec02ceef655"


def test_3_1_1_12_utf8_reason_phrase_is_kept_as_sent() -> None:
    m = parse("unreason")
    assert isinstance(m, Response) and m.status == 200
    assert m.reason == (
        "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e"
        "\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441"
        "\u0442\u043e\u0435"
    )
    assert len(m.body) == 154


def test_3_1_1_13_empty_reason_phrase_stays_empty() -> None:
    m = parse("noreason")
    assert isinstance(m, Response) and m.status == 100 and m.reason == ""
    assert m.to_bytes().startswith(b"SIP/2.0 100 \r\n")  # the SP before CRLF is required


# --- §3.1.2 invalid messages ----------------------------------------------------------------


def assert_answerable_rejection(name: str, status: int) -> SipParseError:
    """Rejected as a request that can still be answered with `status`."""
    err = rejection(name)
    assert err.status == status
    assert err.is_request
    assert isinstance(err.partial, Request)
    assert err.partial.call_id  # the headers a response needs are there
    return err


def test_3_1_2_1_extraneous_separators_in_via_get_400() -> None:
    assert_answerable_rejection("badinv01", 400)


def test_3_1_2_2_content_length_larger_than_the_datagram_gets_400() -> None:
    assert_answerable_rejection("clerr", 400)


def test_3_1_2_2_content_length_larger_than_the_data_makes_a_stream_wait() -> None:
    framer = StreamFramer()
    assert framer.feed(load("clerr")) == []  # nothing to do but wait for more bytes


def test_3_1_2_3_negative_content_length_gets_400() -> None:
    assert_answerable_rejection("ncl", 400)


def test_3_1_2_3_negative_content_length_breaks_stream_framing() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(load("ncl"))


def test_3_1_2_4_overlarge_cseq_in_a_request_gets_400() -> None:
    err = assert_answerable_rejection("scalar02", 400)
    assert "CSeq" in str(err)


def test_3_1_2_5_overlarge_scalars_in_a_response_are_dropped() -> None:
    err = rejection("scalarlg")
    assert not err.is_request and err.partial is None


def test_3_1_2_6_unterminated_quote_in_display_name_gets_400() -> None:
    # Choice: reject (RFC: "should return 400"); inferring the quote is not attempted.
    assert_answerable_rejection("quotbal", 400)


def test_3_1_2_7_request_uri_in_angle_brackets_gets_400() -> None:
    assert_answerable_rejection("ltgtruri", 400)


def test_3_1_2_8_lws_inside_the_request_uri_gets_400() -> None:
    assert_answerable_rejection("lwsruri", 400)


def test_3_1_2_9_multiple_sp_in_request_line_are_tolerated_and_not_forwarded() -> None:
    # Choice: accept (RFC: a liberal element may ignore them, but must not forward them).
    m = parse_request("lwsstart")
    assert (m.method, m.uri) == ("INVITE", "sip:user@example.com")
    assert m.to_bytes().startswith(b"INVITE sip:user@example.com SIP/2.0\r\n")


def test_3_1_2_10_trailing_sp_on_request_line_is_tolerated_and_not_forwarded() -> None:
    # Choice: accept, like §3.1.2.9.
    m = parse_request("trws")
    assert (m.method, m.uri) == ("OPTIONS", "sip:remote-target@example.com")
    assert m.to_bytes().startswith(b"OPTIONS sip:remote-target@example.com SIP/2.0\r\n")


def test_3_1_2_11_headers_escaped_into_the_request_uri_get_400() -> None:
    # Choice: reject. Ignoring them is allowed, but refusing is simpler and leaks nothing.
    err = assert_answerable_rejection("escruri", 400)
    assert "Request-URI" in str(err)


def test_3_1_2_12_non_gmt_date_is_accepted_and_kept_verbatim() -> None:
    # Choice: accept; the Date header is never interpreted by this switch.
    m = parse_request("baddate")
    assert m.headers.get("date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_3_1_2_13_contact_uri_with_headers_outside_angle_brackets_gets_400() -> None:
    # Choice: reject; inferring <> works here but not in general (RFC 4475).
    assert_answerable_rejection("regbadct", 400)


def test_3_1_2_14_spaces_inside_angle_brackets_are_ignored() -> None:
    # Choice: accept, reading the addr-spec without the spaces.
    m = parse_request("badaspec")
    assert m.to.uri == "sip:t.watson@example.org" and m.to.display == "Watson, Thomas"
    assert parse_uri(m.to.uri).host == "example.org"


def test_3_1_2_15_unquoted_non_token_display_name_is_read_and_requoted() -> None:
    # Choice: accept (deployed phones send unquoted UTF-8 names); the error is never
    # propagated because NameAddr serialises a quoted display name.
    m = parse_request("baddn")
    assert m.from_.display == "Bell, Alexander" and m.from_.tag == "43"
    assert m.to.display == "Watson, Thomas"
    assert str(m.from_) == '"Bell, Alexander" <sip:a.g.bell@example.com>;tag=43'


def test_3_1_2_16_unknown_sip_version_gets_505() -> None:
    err = assert_answerable_rejection("badvers", 505)
    top = err.partial.top_via  # type: ignore[union-attr]
    assert (top.version, top.host) == ("7.0", "c.example.com")  # the 505 can be routed


def test_3_1_2_17_cseq_method_differing_from_start_line_gets_400() -> None:
    assert_answerable_rejection("mismatch01", 400)


def test_3_1_2_18_unknown_method_with_cseq_mismatch_gets_501() -> None:
    err = assert_answerable_rejection("mismatch02", 501)
    assert err.partial.method == "NEWMETHOD"  # type: ignore[union-attr]


def test_3_1_2_19_response_code_above_699_is_dropped() -> None:
    err = rejection("bigcode")
    assert not err.is_request and err.partial is None


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_invalid_vector_outcome_matches_the_documented_choice(name: str) -> None:
    choice = CHOICES[name]
    if choice == "accept":
        assert isinstance(parse(name), Request)
        return
    err = rejection(name)
    if choice == "drop":
        assert not err.is_request
    else:
        assert err.is_request and err.status == int(choice.split()[1])
