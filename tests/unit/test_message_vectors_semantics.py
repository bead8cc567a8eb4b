"""RFC 4475 §3.2-§3.4 and RFC 5118 torture messages, fed to the real node.

§3.1 (tests/unit/test_message_vectors.py) is about the parser alone. These messages are
about what an element does with a well-formed (or nearly well-formed) request: the answer
`Switch.receive` sends, as a UAS / registrar / B2BUA, is checked for each. The node's choice
where the RFC leaves one is in `OUTCOMES` and in tests/vectors/rfc4475/README.md.
RFC 5118 checks that IPv6 references are read right and the bad ones refused with 400.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sipflow import Harness, Phone
from test_message_vectors import INVALID, VALID

from softswitch.sip.errors import SipParseError
from softswitch.sip.framing import StreamFramer
from softswitch.sip.message import (
    Request,
    Response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from softswitch.sip.transaction import Target

ROOT = Path(__file__).resolve().parent.parent / "vectors"
RFC4475 = ROOT / "rfc4475"
RFC5118 = ROOT / "rfc5118"

# RFC 4475 section -> file, §3.2 to §3.4.
SEMANTIC = {
    "3.2.1": "badbranch",
    "3.3.1": "insuf",
    "3.3.2": "unkscm",
    "3.3.3": "novelsc",
    "3.3.4": "unksm2",
    "3.3.5": "bext01",
    "3.3.6": "invut",
    "3.3.7": "regaut01",
    "3.3.8": "multi01",
    "3.3.9": "mcl01",
    "3.3.10": "bcast",
    "3.3.11": "zeromf",
    "3.3.12": "cparam01",
    "3.3.13": "cparam02",
    "3.3.14": "regescrt",
    "3.3.15": "sdp01",
    "3.4.1": "inv2543",
}
# RFC 5118 section -> files (§4.5 and §4.10 hold two messages each).
IPV6 = {
    "4.1": ["ipv6-good"],
    "4.2": ["ipv6-bad"],
    "4.3": ["port-ambiguous"],
    "4.4": ["port-unambiguous"],
    "4.5": ["via-received-param-with-delim", "via-received-param-no-delim"],
    "4.6": ["ipv6-in-sdp"],
    "4.7": ["mult-ip-in-header"],
    "4.8": ["mult-ip-in-sdp"],
    "4.9": ["ipv4-mapped-ipv6"],
    "4.10": ["ipv6-bug-abnf-3-colons", "ipv6-correct-abnf-2-colons"],
}
IPV6_FILES = [name for names in IPV6.values() for name in names]

CARRIER = Target("UDP", "127.0.0.1", 5090)  # inside the demo trunk's ACL
STRANGER = Target("UDP", "192.0.2.77", 5060)  # no trunk, no registered phone

# The first answer the node sends to each message from the carrier's address ("-": none).
# INVITEs get a 100 Trying first (stateful); the status here is the final one.
OUTCOMES = {
    "badbranch": 400,  # RFC: may 400 (statelessly) or fall back to RFC 2543 matching
    "insuf": 400,  # RFC: ideally 400; sent with the Via and CSeq it had (no From/To/Call-ID)
    "unkscm": 416,
    "novelsc": 416,  # RFC: 416 when the scheme is never served
    "unksm2": 400,  # registrar: To is not a SIP AOR
    "bext01": 420,  # as a UAS: the Require tags only (Proxy-Require is for proxies)
    "invut": 415,
    "regaut01": 401,  # the unknown scheme is ignored: a Digest challenge
    "multi01": 400,
    "mcl01": 400,
    "bcast": "-",  # a response matching no transaction: dropped, never forwarded
    "zeromf": 200,  # an OPTIONS the node answers itself: Max-Forwards 0 is no hop
    "cparam01": 401,  # every REGISTER is authenticated first (then: see the tests below)
    "cparam02": 401,
    "regescrt": 401,
    "sdp01": 406,  # RFC: "could" 406; the node would answer with SDP the caller refuses
    "inv2543": 404,  # handled as any call: the dialplan has no number "UserB"
}


def load(directory: Path, name: str) -> bytes:
    return (directory / f"{name}.dat").read_bytes()


def answers(h: Harness, data: bytes, source: Target = CARRIER) -> list[bytes]:
    """Raw datagrams the node sends for `data` (raw: a 400 to `insuf` has no From)."""
    h.switch.receive(data, source, h.now)
    sent = [m.data for m in h.switch.outbox]
    h.switch.outbox.clear()
    return sent


def final(h: Harness, data: bytes, source: Target = CARRIER) -> Response | None:
    """The last response sent for `data` (after any 100 Trying), parsed."""
    sent = answers(h, data, source)
    if not sent:
        return None
    response = parse_message(sent[-1])
    assert isinstance(response, Response)
    return response


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


# --- the vector files ------------------------------------------------------------------------


def test_every_rfc4475_message_has_a_vector_file_and_an_outcome() -> None:
    names = set(VALID.values()) | set(INVALID.values()) | set(SEMANTIC.values())
    assert {p.stem for p in RFC4475.glob("*.dat")} == names
    assert set(OUTCOMES) == set(SEMANTIC.values())


def test_every_rfc5118_message_has_a_vector_file() -> None:
    assert {p.stem for p in RFC5118.glob("*.dat")} == set(IPV6_FILES)


@pytest.mark.parametrize(
    "path", sorted(RFC4475.glob("*.dat")) + sorted(RFC5118.glob("*.dat")), ids=lambda p: p.stem
)
def test_vector_lines_end_in_crlf(path: Path) -> None:
    data = path.read_bytes()
    head, sep, _body = data.partition(b"\r\n\r\n")
    assert sep, "no empty line after the headers"
    assert b"\n" not in head.replace(b"\r\n", b""), "a bare LF in the headers"


@pytest.mark.parametrize(
    "directory,name",
    [(RFC4475, n) for n in sorted(set(SEMANTIC.values()) - {"insuf", "multi01", "mcl01"})]
    + [(RFC5118, n) for n in IPV6_FILES if n not in ("ipv6-bad", "ipv6-bug-abnf-3-colons")],
)
def test_valid_vector_content_length_matches_its_body(directory: Path, name: str) -> None:
    message = parse_message(load(directory, name))
    declared = message.headers.get("content-length")
    if name == "inv2543":
        assert declared is None  # RFC 2543 style: the datagram's rest is the body
        assert len(message.body) == 105
    else:
        assert declared is not None and int(declared) == len(message.body)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_node_answers_each_rfc4475_semantic_message_as_documented(h: Harness, name: str) -> None:
    sent = answers(h, load(RFC4475, name))
    expected = OUTCOMES[name]
    if expected == "-":
        assert sent == []
        return
    status = int(sent[-1].split(b" ", 2)[1])
    assert status == expected
    if load(RFC4475, name).startswith(b"INVITE ") and expected != 400:
        assert sent[0].startswith(b"SIP/2.0 100 ")  # a transaction was made for it


# --- §3.2 transaction layer --------------------------------------------------------------------


def test_3_2_1_bare_magic_cookie_branch_gets_a_stateless_400_every_time(h: Harness) -> None:
    data = load(RFC4475, "badbranch")
    m = parse_message(data)
    assert m.top_via.branch == "z9hG4bK"  # the parser accepts it; the node refuses it
    first = final(h, data)
    assert first is not None and first.status == 400 and first.to.tag
    # Another request with the same bare branch is not taken for a retransmission: it gets
    # its own answer, and no transaction is left behind for either.
    again = final(h, data.replace(b"CSeq: 8 OPTIONS", b"CSeq: 9 OPTIONS"))
    assert again is not None and again.status == 400 and again.cseq == (9, "OPTIONS")
    assert h.switch.get_timer() is None
    ack = data.replace(b"OPTIONS sip:", b"ACK sip:").replace(b"8 OPTIONS", b"8 ACK")
    assert answers(h, ack) == []  # an ACK is never answered


def test_3_2_1_a_branch_that_only_starts_with_the_cookie_is_served(h: Harness) -> None:
    data = load(RFC4475, "badbranch").replace(b"branch=z9hG4bK\r\n", b"branch=z9hG4bKx1\r\n")
    ok = final(h, data)
    assert ok is not None and ok.status == 200


# --- §3.3 application layer --------------------------------------------------------------------


def test_3_3_1_missing_call_id_from_to_gets_400_with_what_the_request_had(h: Harness) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(RFC4475, "insuf"))
    assert info.value.status == 400 and info.value.is_request
    (raw,) = answers(h, load(RFC4475, "insuf"))
    assert raw.startswith(b"SIP/2.0 400 Bad Request (missing From header)\r\n")
    # Via and CSeq are copied, so the client transaction can match it (RFC 3261 §17.1.3).
    assert b"Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n" in raw
    assert b"CSeq: 193942 INVITE\r\n" in raw
    assert h.switch.get_timer() is None  # nothing kept


def test_3_3_2_unknown_request_uri_scheme_gets_416(h: Harness) -> None:
    m = parse_message(load(RFC4475, "unkscm"))
    assert isinstance(m, Request) and m.uri == "nobodyKnowsThisScheme:totallyopaquecontent"
    response = final(h, load(RFC4475, "unkscm"), STRANGER)
    assert response is not None and response.status == 416 and response.to.tag


def test_3_3_3_registered_but_unserved_scheme_gets_416(h: Harness) -> None:
    m = parse_message(load(RFC4475, "novelsc"))
    assert isinstance(m, Request) and m.uri == "soap.beep://192.0.2.103:3002"
    response = final(h, load(RFC4475, "novelsc"))
    assert response is not None and response.status == 416


def test_3_3_4_register_whose_to_is_not_a_sip_uri_gets_400_before_any_challenge(
    h: Harness,
) -> None:
    m = parse_message(load(RFC4475, "unksm2"))
    assert m.to.uri == "isbn:2983792873" and m.from_.uri == "http://www.example.com"
    assert parse_name_addr(m.headers.get_all("contact")[0]).uri == "name:John_Smith"
    response = final(h, load(RFC4475, "unksm2"), STRANGER)
    assert response is not None and response.status == 400
    assert response.headers.get("www-authenticate") is None


def test_3_3_5_unknown_require_gets_420_listing_the_require_tags(h: Harness) -> None:
    response = final(h, load(RFC4475, "bext01"))
    assert response is not None and response.status == 420
    assert response.headers.get("unsupported") == "nothingSupportsThis, nothingSupportsThisEither"


def test_3_3_5_unknown_require_on_a_register_gets_420_too(h: Harness) -> None:
    # Regression: Require was read on INVITEs only, so an OPTIONS or REGISTER requiring an
    # extension the node lacks was served as if the client had not asked for it.
    data = load(RFC4475, "cparam01").replace(b"l: 0\r\n", b"Require: gruu\r\nl: 0\r\n")
    response = final(h, data)
    assert response is not None and response.status == 420
    assert response.headers.get("unsupported") == "gruu"


def test_3_3_6_invite_with_an_unknown_body_type_gets_415_with_accept(h: Harness) -> None:
    response = final(h, load(RFC4475, "invut"))
    assert response is not None and response.status == 415
    assert response.headers.get("accept") == "application/sdp, multipart/mixed"
    assert h.cdr._db.execute("SELECT count(*) FROM calls").fetchone()[0] == 0  # no call


def test_3_3_6_unknown_body_type_is_refused_before_the_dialplan_routes(h: Harness) -> None:
    # With a number the dialplan serves (9000: the queue) the answer is still 415.
    data = load(RFC4475, "invut").replace(b"INVITE sip:user@", b"INVITE sip:9000@")
    response = final(h, data)
    assert response is not None and response.status == 415


def test_3_3_7_unknown_authorization_scheme_gets_a_digest_challenge(h: Harness) -> None:
    response = final(h, load(RFC4475, "regaut01"))
    assert response is not None and response.status == 401
    challenges = response.headers.get_all("www-authenticate")
    assert challenges and all(c.startswith("Digest ") for c in challenges)
    assert h.switch.registrar.counters["auth_failures"] == 0  # ignored, not a failure


def test_3_3_8_repeated_single_value_headers_get_400_naming_one_of_each(h: Harness) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(RFC4475, "multi01"))
    assert info.value.status == 400 and "more than one" in str(info.value)
    response = final(h, load(RFC4475, "multi01"))
    assert response is not None and response.status == 400
    for name in ("from", "to", "call-id", "cseq"):
        assert len(response.headers.get_all(name)) == 1  # the answer repeats none of them
    assert response.cseq == (5, "INVITE") and response.call_id == "multi01.98asdh@192.0.2.1"


def test_3_3_9_two_content_lengths_get_400_on_a_datagram(h: Harness) -> None:
    response = final(h, load(RFC4475, "mcl01"))
    assert response is not None and response.status == 400
    assert response.reason == "Bad Request (more than one Content-Length header)"


def test_3_3_9_two_content_lengths_break_stream_framing() -> None:
    with pytest.raises(SipParseError, match="more than one Content-Length"):
        StreamFramer().feed(load(RFC4475, "mcl01"))


def test_3_3_10_response_with_a_broadcast_via_is_dropped(h: Harness) -> None:
    m = parse_message(load(RFC4475, "bcast"))
    assert isinstance(m, Response) and m.status == 200
    assert [parse_via(v).host for v in m.headers.get_all("via")] == [
        "192.0.2.198",
        "255.255.255.255",
    ]
    assert answers(h, load(RFC4475, "bcast")) == []


def test_3_3_11_max_forwards_zero_on_options_is_answered_by_the_node(h: Harness) -> None:
    response = final(h, load(RFC4475, "zeromf"))
    assert response is not None and response.status == 200


def test_3_3_11_max_forwards_zero_on_an_invite_gets_483(h: Harness) -> None:
    # The node's choice for an INVITE: it would start a leg onwards, which is a hop.
    data = load(RFC4475, "invut").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    response = final(h, data)
    assert response is not None and response.status == 483


def registered_contacts(h: Harness, contact_line: bytes) -> list[str]:
    """REGISTER agent 1001 with the vector's Contact line (digest answered) and return the
    Contact values of the 200, then those of a fetch (a REGISTER without Contact)."""
    phone = Phone(h, "1001", 5101)
    contact = contact_line.decode()

    def register(cseq: int, contact: str, auth: str) -> Response:
        text = (
            "REGISTER sip:127.0.0.1 SIP/2.0\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5101;branch=z9hG4bKcp{cseq};rport\n"
            "From: <sip:1001@127.0.0.1>;tag=cp\nTo: <sip:1001@127.0.0.1>\n"
            f"Call-ID: cparam-1001\nCSeq: {cseq} REGISTER\nMax-Forwards: 70\n"
            f"{contact}{auth}Content-Length: 0\n\n"
        )
        response = final(h, text.replace("\n", "\r\n").encode(), phone.source)
        assert response is not None
        return response

    challenge = register(1, contact + "\n", "")
    assert challenge.status == 401
    (value,) = [
        v for v in challenge.headers.get_all("www-authenticate") if "algorithm=MD5," in v + ","
    ]
    auth = f"Authorization: {phone.credentials(value, 'REGISTER', 'sip:127.0.0.1')}\n"
    ok = register(2, contact + "\n", auth)
    assert ok.status == 200, ok
    challenge = register(3, "", "")
    (value,) = [
        v for v in challenge.headers.get_all("www-authenticate") if "algorithm=MD5," in v + ","
    ]
    auth = f"Authorization: {phone.credentials(value, 'REGISTER', 'sip:127.0.0.1')}\n"
    fetched = register(4, "", auth)
    assert fetched.status == 200
    return ok.headers.get_all("contact") + ["--"] + fetched.headers.get_all("contact")


def vector_line(name: str, prefix: bytes) -> bytes:
    (line,) = [x for x in load(RFC4475, name).split(b"\r\n") if x.startswith(prefix)]
    return line


def test_3_3_12_contact_param_outside_brackets_is_a_contact_param_not_a_uri_param(
    h: Harness,
) -> None:
    line = vector_line("cparam01", b"Contact:")
    assert line == b"Contact: sip:+19725552222@gw1.example.net;unknownparam"
    contacts = registered_contacts(h, line)
    bindings = [c for c in contacts if c != "--"]
    assert len(bindings) == 2
    for value in bindings:  # in the 200 and in the fetch
        contact = parse_name_addr(value)
        assert contact.uri == "sip:+19725552222@gw1.example.net"
        assert parse_uri(contact.uri).params == {}


def test_3_3_13_uri_param_inside_brackets_stays_in_the_binding(h: Harness) -> None:
    line = vector_line("cparam02", b"Contact:")
    contacts = [c for c in registered_contacts(h, line) if c != "--"]
    assert len(contacts) == 2
    for value in contacts:
        contact = parse_name_addr(value)
        assert contact.uri == "sip:+19725552222@gw1.example.net;unknownparam"
        assert "unknownparam" not in contact.params


def test_3_3_14_escaped_header_in_a_contact_is_stored_and_returned_as_sent(h: Harness) -> None:
    line = vector_line("regescrt", b"M:")  # compact form of Contact
    contacts = [c for c in registered_contacts(h, line) if c != "--"]
    assert len(contacts) == 2
    for value in contacts:
        uri = parse_name_addr(value).uri
        assert uri == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
        assert parse_uri(uri).uri_headers == "Route=%3Csip:sip.example.com%3E"


def test_3_3_15_invite_accepting_no_sdp_gets_406(h: Harness) -> None:
    response = final(h, load(RFC4475, "sdp01"))
    assert response is not None and (response.status, response.reason) == (406, "Not Acceptable")
    assert response.headers.get("accept") == "application/sdp"


def test_3_3_15_accept_that_admits_sdp_is_served() -> None:
    from softswitch.uas_checks import content_refusal

    base = load(RFC4475, "sdp01")
    for accept in (b"application/sdp", b"text/plain, application/*;q=0.5", b"*/*"):
        m = parse_message(base.replace(b"text/nobodyKnowsThis", accept))
        assert isinstance(m, Request) and content_refusal(m) is None


# --- §3.4 backward compatibility -------------------------------------------------------------


def test_3_4_1_rfc2543_invite_is_handled_and_its_ack_matches(h: Harness) -> None:
    data = load(RFC4475, "inv2543")
    m = parse_message(data)
    assert isinstance(m, Request)
    assert m.top_via.branch is None and m.from_.tag is None
    assert m.headers.get("max-forwards") is None and m.headers.get("content-length") is None
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    sent = answers(h, data)
    assert [int(x.split(b" ", 2)[1]) for x in sent] == [100, 404]
    not_found = parse_message(sent[-1])
    assert isinstance(not_found, Response)
    # §18.2.1: the sent-by is a name, so the source address is added as received.
    assert not_found.headers.get("via") == "SIP/2.0/UDP iftgw.example.com;received=127.0.0.1"
    assert not_found.from_.tag is None and not_found.to.tag
    # A retransmission of the INVITE is matched (RFC 3261 §17.2.3) and gets the 404 again.
    assert answers(h, data) == [sent[-1]]
    # The ACK, built RFC 2543 style as well, ends the transaction: no more 404s.
    ack = (
        b"ACK sip:UserB@example.com SIP/2.0\r\nVia: SIP/2.0/UDP iftgw.example.com\r\n"
        b"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
        b"To: " + not_found.headers.get("to", "").encode() + b"\r\n"
        b"Call-ID: inv2543.1717@ift.client.example.com\r\nCSeq: 56 ACK\r\n\r\n"
    )
    assert answers(h, ack) == []
    h.advance(40)
    assert [m for m in h.switch.outbox] == [] and not [
        s for t, s in h.sent if isinstance(s, Response) and s.status == 404
    ]


# --- RFC 5118 IPv6 ---------------------------------------------------------------------------


def ipv6(name: str) -> Request:
    m = parse_message(load(RFC5118, name))
    assert isinstance(m, Request)
    return m


def test_4_1_ipv6_references_in_request_uri_via_and_contact_parse(h: Harness) -> None:
    m = ipv6("ipv6-good")
    uri = parse_uri(m.uri)
    assert (uri.host, uri.port) == ("[2001:db8::10]", None)
    assert (m.top_via.host, m.top_via.port) == ("[2001:db8::9:1]", None)
    contact = parse_name_addr(m.headers.get_all("contact")[0])
    assert parse_uri(contact.uri).host == "[2001:db8::1]" and contact.display == "Caller"
    response = final(h, load(RFC5118, "ipv6-good"))
    assert response is not None and response.status == 401  # a REGISTER like any other


@pytest.mark.parametrize("name", ["ipv6-bad", "ipv6-bug-abnf-3-colons"])
def test_4_2_and_4_10_malformed_ipv6_references_get_400(h: Harness, name: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(RFC5118, name))
    assert info.value.status == 400 and info.value.is_request
    (raw,) = answers(h, load(RFC5118, name))  # raw: its To copies the bad reference
    assert raw.startswith(b"SIP/2.0 400 Bad Request (bad ")


def test_4_3_colon_inside_the_brackets_belongs_to_the_address() -> None:
    uri = parse_uri(ipv6("port-ambiguous").uri)
    assert (uri.host, uri.port) == ("[2001:db8::10:5070]", None)


def test_4_4_port_after_the_brackets_is_the_port() -> None:
    uri = parse_uri(ipv6("port-unambiguous").uri)
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)


def test_4_5_received_with_and_without_brackets_both_parse(h: Harness) -> None:
    with_delim = ipv6("via-received-param-with-delim").top_via
    no_delim = ipv6("via-received-param-no-delim").top_via
    assert with_delim.params["received"] == "[2001:db8::9:255]"
    assert no_delim.params["received"] == "2001:db8::9:255"
    assert (with_delim.branch, no_delim.branch) == ("z9hG4bKas3-111", "z9hG4bKas3")
    ok = final(h, load(RFC5118, "via-received-param-no-delim"))
    assert ok is not None and ok.status == 200  # the OPTIONS is answered
    gone = final(h, load(RFC5118, "via-received-param-with-delim"))
    assert gone is not None and gone.status == 481  # a BYE for no dialog


def test_4_6_ipv6_addresses_in_the_sdp_body_are_carried_whole() -> None:
    m = ipv6("ipv6-in-sdp")
    assert parse_uri(m.uri).host == "[2001:db8::10]"
    assert b"c=IN IP6 2001:db8::20\r\n" in m.body and len(m.body) == 251


def test_4_7_ipv6_and_ipv4_vias_in_one_request_parse_and_the_answer_uses_the_top(
    h: Harness,
) -> None:
    m = ipv6("mult-ip-in-header")
    vias = [parse_via(v) for v in m.headers.get_all("via")]
    assert [(v.host, v.port) for v in vias] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    assert vias[2].params["received"] == "192.0.2.200"
    h.switch.receive(load(RFC5118, "mult-ip-in-header"), CARRIER, h.now)
    (sent,) = h.switch.outbox
    assert sent.target.port == 6050  # the top Via's port (no rport)
    response = parse_message(sent.data)
    assert isinstance(response, Response) and response.status == 481
    top, *rest = response.headers.get_all("via")
    assert top == m.headers.get_all("via")[0] + ";received=127.0.0.1"  # §18.2.1
    assert rest == m.headers.get_all("via")[1:]


def test_4_8_sdp_with_an_ipv4_and_an_ipv6_stream_is_carried_whole() -> None:
    m = ipv6("mult-ip-in-sdp")
    assert b"c=IN IP4 192.0.2.1\r\n" in m.body and b"c=IN IP6 2001:db8::1\r\n" in m.body


def test_4_9_ipv4_mapped_ipv6_references_parse(h: Harness) -> None:
    m = ipv6("ipv4-mapped-ipv6")
    vias = [parse_via(v) for v in m.headers.get_all("via")]
    assert [(v.host, v.port) for v in vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    contact = parse_name_addr(m.headers.get_all("contact")[0])
    assert parse_uri(contact.uri).host == "[::ffff:192.0.2.2]"
    assert b"c=IN IP6 ::ffff:192.0.2.2\r\n" in m.body


def test_4_10_two_colon_form_of_an_ipv4_suffix_is_served(h: Harness) -> None:
    m = ipv6("ipv6-correct-abnf-2-colons")
    assert parse_uri(m.uri).host == "[2001:db8::192.0.2.1]"
    ok = final(h, load(RFC5118, "ipv6-correct-abnf-2-colons"))
    assert ok is not None and ok.status == 200


def test_rfc5118_vectors_differ_from_the_rfc_text_only_where_the_readme_says() -> None:
    # The three SDP messages carry the body's real length (the RFC prints 268, 181, 236).
    lengths = {
        name: int(re.search(rb"Content-Length: (\d+)", load(RFC5118, name)).group(1))  # type: ignore[union-attr]
        for name in ("ipv6-in-sdp", "mult-ip-in-sdp", "ipv4-mapped-ipv6")
    }
    assert lengths == {"ipv6-in-sdp": 251, "mult-ip-in-sdp": 189, "ipv4-mapped-ipv6": 245}
