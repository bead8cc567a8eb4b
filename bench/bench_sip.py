"""Micro-benchmarks of the sans-IO SIP core: parse, serialise, one INVITE server transaction.

Run under pytest-benchmark::

    python -m pytest bench/bench_sip.py --benchmark-only

or as a plain program that prints a table (``--json`` for machine-readable output)::

    python bench/bench_sip.py [--json] [--rounds N]

The workload is fixed (no randomness): a carrier-style INVITE with an SDP offer, as SIPp and
IMS cores send it. Project target: hundreds of calls/s in one process, each call about 15
messages, so one parse + one serialise should stay well under 100 µs.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from softswitch.sip.build import make_response
from softswitch.sip.message import Request, parse_message
from softswitch.sip.transaction import AckReceived, RequestReceived, Target, TransactionLayer

SDP = (
    b"v=0\r\n"
    b"o=- 3912384756 3912384756 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 16384 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:9000@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bK-4711-1-0;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Citizen" <sip:13800138000@127.0.0.1:15060>;tag=4711SIPpTag001\r\n'
    b"To: <sip:9000@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-4711@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:13800138000@127.0.0.1:15060;transport=udp>\r\n"
    b"P-Asserted-Identity: <sip:+8613800138000@ims.example.net;user=phone>\r\n"
    b"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\r\n"
    b"Supported: 100rel, timer, replaces\r\n"
    b"Session-Expires: 1800;refresher=uac\r\n"
    b"User-Agent: SIPp/3.6.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

ACK_TEMPLATE = (
    "ACK sip:agent@127.0.0.1:5062 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bK-4711-1-ack;rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Citizen" <sip:13800138000@127.0.0.1:15060>;tag=4711SIPpTag001\r\n'
    "To: <sip:9000@127.0.0.1:5060>;tag={to_tag}\r\n"
    "Call-ID: {call_id}\r\n"
    "CSeq: 1 ACK\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)

SOURCE = Target("UDP", "127.0.0.1", 15060)
_PARSED: Request = parse_message(INVITE)  # type: ignore[assignment]


def parse_invite() -> object:
    return parse_message(INVITE)


# 5000 INVITEs from distinct callers to distinct numbers: more than the parser's cache of
# validated addresses holds, so cycling through them measures the cold path.
_DISTINCT = [
    INVITE.replace(b"13800138000", b"139%08d" % i).replace(b"9000@", b"9%03d@" % (i % 1000))
    for i in range(5000)
]
_distinct_index = 0


def parse_invite_distinct_addresses() -> object:
    global _distinct_index
    _distinct_index = (_distinct_index + 1) % len(_DISTINCT)
    return parse_message(_DISTINCT[_distinct_index])


def serialise_invite() -> bytes:
    return _PARSED.to_bytes()


class _Cycle:
    """One INVITE server transaction per call: INVITE in, 100/180/200 out, ACK in."""

    def __init__(self) -> None:
        self.layer = TransactionLayer({"UDP": "127.0.0.1:5060", "TCP": "127.0.0.1:5060"})
        self.n = 0
        self.now = 0.0

    def run(self) -> int:
        self.n += 1
        self.now += 0.001
        now = self.now
        call_id = f"{self.n}-4711@127.0.0.1"
        data = INVITE.replace(b"1-4711@127.0.0.1", call_id.encode()).replace(
            b"z9hG4bK-4711-1-0", f"z9hG4bK-{self.n}".encode()
        )
        layer = self.layer
        events = layer.receive_request(parse_message(data), SOURCE, now)  # type: ignore[arg-type]
        received = events[0]
        assert isinstance(received, RequestReceived)
        request = received.request
        layer.send_response(received.key, make_response(request, 180, to_tag="a1b2"), now)
        layer.send_response(received.key, make_response(request, 200, to_tag="a1b2"), now)
        ack = parse_message(ACK_TEMPLATE.format(to_tag="a1b2", call_id=call_id).encode())
        acked = layer.receive_request(ack, SOURCE, now)  # type: ignore[arg-type]
        assert isinstance(acked[0], AckReceived)
        sent = len(layer.outbox)
        layer.outbox.clear()
        # let Timer L run out now and then so the table of live transactions stays bounded
        if self.n % 1000 == 0:
            layer.handle_timer(now + 64 * layer.timers.T1 + 1)
        return sent


# --- pytest-benchmark ------------------------------------------------------------------------


def test_bench_parse_invite_with_sdp(benchmark) -> None:
    message = benchmark(parse_invite)
    assert message.method == "INVITE" and message.body == SDP  # type: ignore[attr-defined]


def test_bench_parse_invite_with_sdp_distinct_addresses(benchmark) -> None:
    message = benchmark(parse_invite_distinct_addresses)
    assert message.method == "INVITE"  # type: ignore[attr-defined]


def test_bench_serialise_invite_with_sdp(benchmark) -> None:
    data = benchmark(serialise_invite)
    assert parse_message(data).call_id == "1-4711@127.0.0.1"


def test_bench_invite_server_transaction_cycle(benchmark) -> None:
    cycle = _Cycle()
    sent = benchmark(cycle.run)
    assert sent == 3  # 100 Trying, 180, 200


# --- stand-alone ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args(argv)
    cycle = _Cycle()
    cases = {
        "parse INVITE+SDP": parse_invite,
        "parse INVITE+SDP, distinct addresses": parse_invite_distinct_addresses,
        "serialise INVITE+SDP": serialise_invite,
        "INVITE server txn 100/180/200/ACK": cycle.run,
    }
    results = {}
    for name, func in cases.items():
        best = min(timeit.repeat(func, number=args.rounds, repeat=5)) / args.rounds
        results[name] = best * 1e6
    if args.json:
        print(json.dumps({"unit": "us", "results": results}, indent=2))
    else:
        print(f"{'case':<40} {'µs/op':>8} {'ops/s':>10}")
        for name, us in results.items():
            print(f"{name:<40} {us:8.2f} {1e6 / us:10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
