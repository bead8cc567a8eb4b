"""bench/front.py, the Call-ID steering front of issue 12's worker prototype: a request goes
to the worker its Call-ID hashes to, with the front's Via on top and the sender's address in
the next Via; a response loses the front's Via and goes where the next Via says."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import front  # noqa: E402

INVITE = (
    b"INVITE sip:12345@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-1;rport\r\n"
    b"From: <sip:1@x>;tag=a\r\nTo: <sip:12345@x>\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_a_call_id_long_or_compact_picks_one_worker_every_time() -> None:
    compact = INVITE.replace(b"Call-ID: abc@x", b"i: abc@x")
    assert front.call_id(INVITE) == front.call_id(compact) == b"abc@x"
    assert front.worker_of(INVITE, 4) == front.worker_of(compact, 4)
    spread = {front.worker_of(INVITE.replace(b"abc", b"c%d" % n), 2) for n in range(50)}
    assert spread == {0, 1}
    assert front.call_id(b"OPTIONS sip:x SIP/2.0\r\n\r\n") is None


def test_a_request_goes_on_with_the_fronts_via_and_its_response_comes_back() -> None:
    stamped = front.stamp_request(INVITE, ("127.0.0.1", 6001), b"127.0.0.1:5060")
    assert stamped is not None
    lines = stamped.split(b"\r\n")
    assert lines[1].startswith(b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfr")
    assert lines[2] == (
        b"Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-1;received=127.0.0.1;rport=6001"
    )
    # A CANCEL of the INVITE gets the same branch from the front (stateless, §16.11).
    cancel = INVITE.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    again = front.stamp_request(cancel, ("127.0.0.1", 6001), b"127.0.0.1:5060")
    assert again is not None and again.split(b"\r\n")[1] == lines[1]

    response = stamped.replace(lines[0], b"SIP/2.0 180 Ringing")
    back = front.unstamp_response(response)
    assert back is not None
    body, address = back
    assert address == ("127.0.0.1", 6001)
    assert body.split(b"\r\n")[1] == lines[2] and b"z9hG4bKfr" not in body


def test_a_response_with_both_vias_in_one_line_and_garbage_are_handled() -> None:
    folded = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfr1;rport=5060, "
        b"SIP/2.0/UDP 10.0.0.9:6000;branch=z9hG4bK-1\r\nCall-ID: abc@x\r\n\r\n"
    )
    back = front.unstamp_response(folded)
    assert back is not None
    assert back[1] == ("10.0.0.9", 6000)
    assert b"Via: SIP/2.0/UDP 10.0.0.9:6000;branch=z9hG4bK-1\r\n" in back[0]
    assert front.stamp_request(b"garbage", ("127.0.0.1", 1), b"x:1") is None
    assert front.unstamp_response(b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n") is None
