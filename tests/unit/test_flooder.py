"""bench/flooder.py's sans-IO core: what it sends is SIP the node parses, its wrong digests
are well formed (the node counts a failure, not a malformed request), answers are matched.

The node's own parser and digest server judge the flood: a flood the node rejects as
malformed would measure the 400 path, not the refusal of strangers and guessers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from softswitch.sip.auth import DigestServer, ha1
from softswitch.sip.build import make_response
from softswitch.sip.message import Request, parse_message

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import flooder  # noqa: E402

TARGET = ("127.0.0.1", 5060)


def new_flood(mix: tuple[float, float, float] = (1.0, 1.0, 1.0), sources: int = 3) -> flooder.Flood:
    addresses = [(host, 40000 + n) for n, host in enumerate(flooder.source_addresses(sources))]
    return flooder.Flood(TARGET, addresses, ["2000", "2001"], seed=5, mix=mix)


def test_sources_skip_the_trunk_and_phone_ranges_and_are_bounded() -> None:
    addresses = flooder.source_addresses(251)
    assert addresses[0] == "127.0.2.1" and addresses[249] == "127.0.2.250"
    assert addresses[250] == "127.0.3.1"
    assert len(set(addresses)) == 251
    with pytest.raises(ValueError):
        flooder.source_addresses(0)
    with pytest.raises(ValueError):
        flooder.source_addresses(flooder.MAX_SOURCES + 1)


def test_user_lists() -> None:
    assert flooder.parse_users("2000-2002") == ["2000", "2001", "2002"]
    assert flooder.parse_users("alice, bob") == ["alice", "bob"]
    for bad in ("", "9-1", " , "):
        with pytest.raises(ValueError):
            flooder.parse_users(bad)


def test_every_request_of_the_mix_parses_and_goes_round_the_sources() -> None:
    flood = new_flood()
    seen_sources, methods = set(), set()
    for n in range(30):
        out = flood.next_request(float(n))
        message = parse_message(out.data)
        assert isinstance(message, Request)
        assert message.call_id == out.key[0] and message.cseq[0] == out.key[1]
        host = flood.sources[out.source][0]
        assert f"UDP {host}:" in (message.headers.get("via") or "")  # its own address
        seen_sources.add(out.source)
        methods.add(message.method)
    assert seen_sources == {0, 1, 2}
    assert methods == {"INVITE", "REGISTER", "OPTIONS"}
    assert sum(flood.sent.values()) == 30


def test_a_challenged_register_is_answered_with_a_wrong_but_well_formed_digest() -> None:
    server = DigestServer(b"k" * 32, "hotline.local", ("MD5",))
    flood = new_flood(mix=(0.0, 1.0, 0.0))
    first = flood.next_request(0.0)
    register = parse_message(first.data)
    assert isinstance(register, Request) and first.kind == "REGISTER"
    challenge = make_response(register, 401)
    challenge.headers.add("www-authenticate", server.challenge(0.0)[0])
    flood.on_datagram(first.source, challenge.to_bytes(), 0.01)
    assert flood.answered["REGISTER"] == 1

    again = flood.next_request(0.02)  # the answer to the 401 goes first
    assert again.kind == flooder.AUTH and again.source == first.source
    retry = parse_message(again.data)
    assert isinstance(retry, Request) and retry.cseq[0] == 2
    user = retry.to.uri.split(":", 1)[1].split("@", 1)[0]
    value = retry.headers.get("authorization")
    assert value is not None
    verdict = server.verify(value, "REGISTER", 0.02, lambda *_: ha1(user, "hotline.local", "x"))
    assert verdict.credentials is not None  # parsed: a failure, not a malformed request
    assert not verdict.ok and verdict.reason == "response mismatch"
    # With the password the flood used, the same digest would pass: it is a real guess.
    guess = f"guess{int(first.key[0].split('-')[1])}"
    right = server.verify(value, "REGISTER", 0.02, lambda *_: ha1(user, "hotline.local", guess))
    assert right.ok


def test_answers_are_matched_once_and_strays_counted() -> None:
    flood = new_flood(mix=(0.0, 0.0, 1.0))
    out = flood.next_request(1.0)
    request = parse_message(out.data)
    assert isinstance(request, Request)
    reply = make_response(request, 200).to_bytes()
    flood.on_datagram(out.source, reply, 1.004)
    flood.on_datagram(out.source, reply, 1.5)  # a repeat matches nothing still waiting
    flood.on_datagram(out.source, b"not sip at all", 1.6)
    result = flood.result(target_rate=10, seconds=1)
    assert result.answered["OPTIONS"] == 1 and result.stray_responses == 2
    assert result.codes == {"200": 1} and result.answered_share == 1.0
    assert result.answer_p50_ms == pytest.approx(4.0)


def test_a_refused_send_does_not_count() -> None:
    flood = new_flood()
    out = flood.next_request(0.0)
    flood.unsent(out)
    result = flood.result(target_rate=10, seconds=1)
    assert result.total_sent == 0 and result.send_errors == 1 and result.answered_share is None


def test_bad_mix_is_refused() -> None:
    with pytest.raises(ValueError):
        new_flood(mix=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError):
        flooder.Flood(TARGET, [], ["2000"])
