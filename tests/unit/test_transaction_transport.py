"""Transport choices made by the transaction layer (RFC 3261 §18.1.1, §8.1.3.1)."""

from softswitch.sip.message import Headers, Request
from softswitch.sip.transaction import Target, TransactionLayer, TransportError


def invite(body_size: int) -> Request:
    headers = Headers()
    for name, value in (
        ("from", "<sip:a@127.0.0.1>;tag=1"),
        ("to", "<sip:b@127.0.0.1>"),
        ("call-id", "big@x"),
        ("cseq", "1 INVITE"),
        ("max-forwards", "70"),
    ):
        headers.add(name, value)
    return Request("INVITE", "sip:b@127.0.0.1:5070", headers, b"x" * body_size)


def test_request_over_1300_bytes_switches_from_udp_to_tcp() -> None:
    layer = TransactionLayer({"UDP": "127.0.0.1:5060", "TCP": "127.0.0.1:5060"})
    layer.send_request(invite(100), Target("UDP", "127.0.0.1", 5070), 0.0)
    layer.send_request(invite(1400), Target("UDP", "127.0.0.1", 5070), 0.0)
    small, big = layer.outbox
    assert small.target.transport == "UDP" and b"SIP/2.0/UDP" in small.data
    assert big.target.transport == "TCP" and b"SIP/2.0/TCP" in big.data
    assert big.data.count(b"Via:") == 1


def test_transport_failure_ends_pending_client_transactions_at_once() -> None:
    layer = TransactionLayer({"UDP": "127.0.0.1:5060", "TCP": "127.0.0.1:5060"})
    target = Target("TCP", "127.0.0.1", 5070)
    key = layer.send_request(invite(10), target, 0.0)
    other = layer.send_request(invite(10), Target("TCP", "127.0.0.1", 5071), 0.0)
    events = layer.transport_failed(target, 0.1)
    assert [type(e) for e in events] == [TransportError] and events[0].key == key
    assert len(layer) == 1 and layer.transport_failed(target, 0.2) == []
    assert other != key
