"""The four RFC 3261 §17 transaction machines (with RFC 6026), driven by virtual time.

No sockets and no sleeps: a test feeds parsed messages and a `now`, then advances a virtual
clock by calling `handle_timer` at each `get_timer()` deadline, and reads what was sent from
`outbox`. Timer values are RFC 3261's defaults (T1 = 0.5 s, T2 = 4 s, T4 = 5 s) unless a test
says otherwise.
"""

from __future__ import annotations

import pytest

from softswitch.sip.build import make_response
from softswitch.sip.errors import TransactionError
from softswitch.sip.message import Headers, Request, Response, parse_message
from softswitch.sip.transaction import (
    AckReceived,
    AckTimeout,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    State,
    Target,
    Timers,
    TransactionLayer,
    TransactionTimeout,
)

T1, T2, T4 = 0.5, 4.0, 5.0
PEER_UDP = Target("UDP", "127.0.0.1", 5070)
PEER_TCP = Target("TCP", "127.0.0.1", 5070)
SENT_BY = {"UDP": "127.0.0.1:5060", "TCP": "127.0.0.1:5060"}


def new_layer(**kwargs: object) -> TransactionLayer:
    return TransactionLayer(dict(SENT_BY), **kwargs)  # type: ignore[arg-type]


def outgoing(method: str = "INVITE", cseq: int = 1) -> Request:
    headers = Headers()
    for name, value in (
        ("route", "<sip:proxy.example.com;lr>"),
        ("max-forwards", "70"),
        ("from", '"Hotline" <sip:hotline@127.0.0.1>;tag=fromtag1'),
        ("to", "<sip:1001@127.0.0.1>"),
        ("call-id", f"call-{method}-{cseq}@127.0.0.1"),
        ("cseq", f"{cseq} {method}"),
        ("contact", "<sip:hotline@127.0.0.1:5060>"),
    ):
        headers.add(name, value)
    return Request(method, "sip:1001@127.0.0.1:5070", headers)


def incoming(
    method: str = "INVITE",
    branch: str | None = "z9hG4bKclient1",
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    call_id: str = "in-1@127.0.0.1",
    transport: str = "UDP",
) -> Request:
    branch_param = f";branch={branch}" if branch else ""
    to = "<sip:9000@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    data = (
        f"{method} sip:9000@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5070{branch_param};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:13800138000@127.0.0.1>;tag=caller1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:13800138000@127.0.0.1:5070>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def sent(layer: TransactionLayer) -> list[Request | Response]:
    """Parse and clear the outbox."""
    out = [parse_message(m.data) for m in layer.outbox]
    layer.outbox.clear()
    return out


def answer(request: Request, status: int, to_tag: str = "totag1") -> Response:
    """The response a peer would send to `request` as it went on the wire."""
    wire = parse_message(request.to_bytes())
    assert isinstance(wire, Request)
    response = make_response(wire, status, to_tag=to_tag)
    again = parse_message(response.to_bytes())
    assert isinstance(again, Response)
    return again


def run_until(layer: TransactionLayer, until: float) -> list[tuple[float, list, list[SendMessage]]]:
    """Fire every timer due up to `until`; return (time, events, sent) per firing."""
    log = []
    for _ in range(10_000):
        when = layer.get_timer()
        if when is None or when > until:
            return log
        events = layer.handle_timer(when)
        log.append((when, events, list(layer.outbox)))
        layer.outbox.clear()
    raise AssertionError("timers did not settle")


def send_times(log: list[tuple[float, list, list[SendMessage]]]) -> list[float]:
    return [round(when, 6) for when, _, out in log for _ in out]


def events_of(log: list[tuple[float, list, list[SendMessage]]]) -> list[tuple[float, object]]:
    return [(round(when, 6), e) for when, events, _ in log for e in events]


# --- INVITE client (§17.1.1) ---------------------------------------------------------------


def test_invite_client_timer_a_doubles_until_timer_b_times_out() -> None:
    layer = new_layer()
    key = layer.send_request(outgoing(), PEER_UDP, 0.0)
    assert len(sent(layer)) == 1
    log = run_until(layer, 100.0)
    # Timer A: T1, then doubling without cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    ((when, event),) = events_of(log)
    assert when == 64 * T1 and isinstance(event, TransactionTimeout) and event.key == key
    assert len(layer) == 0 and layer.get_timer() is None
    assert layer.counters["retransmissions"] == 6


def test_invite_client_retransmission_is_the_same_request() -> None:
    layer = new_layer()
    layer.send_request(outgoing(), PEER_UDP, 0.0)
    first = layer.outbox[0].data
    layer.outbox.clear()
    log = run_until(layer, 1.0)
    assert [m.data for _, _, out in log for m in out] == [first]
    assert log[0][2][0].target == PEER_UDP


def test_invite_client_provisional_stops_retransmissions_and_long_ringing_is_no_timeout() -> None:
    layer = new_layer()
    invite = outgoing()
    key = layer.send_request(invite, PEER_UDP, 0.0)
    sent(layer)
    events = layer.receive_response(answer(invite, 180), 0.2)
    assert [type(e) for e in events] == [ResponseReceived] and events[0].key == key
    assert layer.get_timer() is None  # neither Timer A nor Timer B is left
    # RFC 3261 §17.1.1.2: Proceeding has no Timer A and no Timer B: ringing may last.
    assert run_until(layer, 600.0) == []
    events = layer.receive_response(answer(invite, 200), 600.0)
    assert [e.response.status for e in events] == [200]  # type: ignore[attr-defined]


def test_invite_client_cancel_rearms_timer_b_when_no_final_response_comes() -> None:
    layer = new_layer()
    invite = outgoing()
    key = layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive_response(answer(invite, 180), 0.1)
    sent(layer)
    cancel_key = layer.send_cancel(key, 10.0)
    assert cancel_key is not None
    (cancel,) = sent(layer)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    layer.receive_response(answer(cancel, 200), 10.1)  # CANCEL answered, INVITE never is
    log = run_until(layer, 100.0)
    timeouts = [(when, e) for when, e in events_of(log) if isinstance(e, TransactionTimeout)]
    assert [(when, e.key) for when, e in timeouts] == [(10.0 + 64 * T1, key)]  # type: ignore[attr-defined]
    assert len(layer) == 0


def test_cancel_copies_the_invite_via_route_and_cseq_number() -> None:
    layer = new_layer()
    invite = outgoing(cseq=7)
    key = layer.send_request(invite, PEER_UDP, 0.0)
    (wire_invite,) = sent(layer)
    layer.receive_response(answer(invite, 180), 0.1)
    layer.send_cancel(key, 1.0)
    (cancel,) = sent(layer)
    assert isinstance(cancel, Request) and isinstance(wire_invite, Request)
    assert cancel.uri == wire_invite.uri
    assert cancel.headers.get_all("via") == wire_invite.headers.get_all("via")  # §9.1
    assert cancel.headers.get_all("route") == wire_invite.headers.get_all("route")
    assert cancel.cseq == (7, "CANCEL") and cancel.call_id == wire_invite.call_id
    assert cancel.from_.tag == "fromtag1" and cancel.to.tag is None


def test_cancel_is_refused_once_the_invite_has_a_final_response() -> None:
    layer = new_layer()
    invite = outgoing()
    key = layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive_response(answer(invite, 486), 0.1)
    assert layer.send_cancel(key, 0.2) is None
    assert layer.send_cancel(("z9hG4bKunknown", "INVITE"), 0.2) is None


def test_invite_client_non_2xx_generates_ack_with_rfc_3261_17_1_1_3_headers() -> None:
    layer = new_layer()
    invite = outgoing(cseq=5)
    key = layer.send_request(invite, PEER_UDP, 0.0)
    (wire_invite,) = sent(layer)
    busy = answer(invite, 486, to_tag="busytag")
    events = layer.receive_response(busy, 0.3)
    assert [e.response.status for e in events] == [486] and events[0].key == key  # type: ignore[attr-defined]
    (ack,) = sent(layer)
    assert isinstance(ack, Request) and isinstance(wire_invite, Request)
    assert ack.method == "ACK" and ack.uri == wire_invite.uri
    # Via: only the INVITE's top Via, same branch (the ACK is part of the transaction)
    assert ack.headers.get_all("via") == wire_invite.headers.get_all("via")[:1]
    assert ack.headers.get("from") == wire_invite.headers.get("from")
    assert ack.call_id == wire_invite.call_id
    assert ack.headers.get("to") == busy.headers.get("to") and ack.to.tag == "busytag"
    assert ack.cseq == (5, "ACK")
    assert ack.headers.get_all("route") == wire_invite.headers.get_all("route")
    assert ack.headers.get("max-forwards") == "70" and ack.body == b""
    assert layer.outbox == []


def test_invite_client_absorbs_non_2xx_retransmissions_and_reacks_until_timer_d() -> None:
    layer = new_layer()
    invite = outgoing()
    layer.send_request(invite, PEER_UDP, 0.0)
    sent(layer)
    busy = answer(invite, 486)
    layer.receive_response(busy, 0.3)
    (ack,) = sent(layer)
    assert layer.receive_response(busy, 1.0) == []  # not passed to the TU again
    (ack_again,) = sent(layer)
    assert ack_again.to_bytes() == ack.to_bytes()
    log = run_until(layer, 100.0)
    assert [round(w, 6) for w, _, _ in log] == [0.3 + 32.0]  # Timer D, 32 s on UDP
    assert len(layer) == 0
    assert layer.receive_response(busy, 40.0) == []
    assert layer.counters["stray_responses"] == 1


def test_invite_client_over_tcp_has_no_timer_a_and_zero_timer_d() -> None:
    layer = new_layer()
    invite = outgoing()
    layer.send_request(invite, PEER_TCP, 0.0)
    sent(layer)
    assert layer.get_timer() == 64 * T1  # only Timer B
    layer.receive_response(answer(invite, 603), 1.0)
    assert [m.method for m in sent(layer)] == ["ACK"]  # type: ignore[union-attr]
    assert len(layer) == 0 and layer.get_timer() is None  # Timer D = 0 on TCP


def test_invite_client_over_tcp_still_times_out_with_timer_b() -> None:
    layer = new_layer()
    key = layer.send_request(outgoing(), PEER_TCP, 0.0)
    sent(layer)
    log = run_until(layer, 100.0)
    assert send_times(log) == []
    assert [(w, type(e), e.key) for w, e in events_of(log)] == [  # type: ignore[attr-defined]
        (64 * T1, TransactionTimeout, key)
    ]


def test_invite_client_2xx_enters_accepted_and_timer_m_ends_it() -> None:
    layer = new_layer()
    invite = outgoing()
    key = layer.send_request(invite, PEER_UDP, 0.0)
    sent(layer)
    ok = answer(invite, 200)
    (event,) = layer.receive_response(ok, 1.0)
    assert isinstance(event, ResponseReceived) and not event.retransmission
    assert sent(layer) == []  # the ACK for a 2xx is the TU's (§13.2.2.4)
    (again,) = layer.receive_response(ok, 1.5)
    assert isinstance(again, ResponseReceived) and again.retransmission and again.key == key
    log = run_until(layer, 100.0)
    assert [round(w, 6) for w, _, _ in log] == [1.0 + 64 * T1]  # Timer M
    assert len(layer) == 0
    assert layer.receive_response(ok, 50.0) == []


def test_forked_2xx_with_different_to_tags_are_both_delivered_as_new() -> None:
    layer = new_layer()
    invite = outgoing()
    key = layer.send_request(invite, PEER_UDP, 0.0)
    first = layer.receive_response(answer(invite, 200, to_tag="fork-a"), 1.0)
    second = layer.receive_response(answer(invite, 200, to_tag="fork-b"), 1.1)
    repeat = layer.receive_response(answer(invite, 200, to_tag="fork-b"), 1.2)
    got = [(e.response.to.tag, e.retransmission, e.key) for e in first + second + repeat]  # type: ignore[attr-defined]
    assert got == [("fork-a", False, key), ("fork-b", False, key), ("fork-b", True, key)]


def test_invite_client_ignores_non_2xx_after_a_2xx() -> None:
    layer = new_layer()
    invite = outgoing()
    layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive_response(answer(invite, 200), 1.0)
    assert layer.receive_response(answer(invite, 500), 1.1) == []
    assert layer.receive_response(answer(invite, 180), 1.2) == []
    assert sent(layer)[1:] == []


def test_ack_cannot_start_a_client_transaction() -> None:
    layer = new_layer()
    with pytest.raises(TransactionError):
        layer.send_request(outgoing("ACK"), PEER_UDP, 0.0)
    assert layer.outbox == [] and len(layer) == 0


def test_send_ack_for_2xx_uses_a_new_branch_and_no_transaction() -> None:
    layer = new_layer()
    invite = outgoing()
    layer.send_request(invite, PEER_UDP, 0.0)
    (wire_invite,) = sent(layer)
    ack = outgoing("ACK")
    layer.send_ack(ack, PEER_UDP)
    (wire_ack,) = sent(layer)
    assert wire_ack.top_via.branch != wire_invite.top_via.branch
    assert wire_ack.top_via.branch.startswith("z9hG4bK")  # type: ignore[union-attr]
    assert len(layer) == 1  # only the INVITE


# --- non-INVITE client (§17.1.2) ------------------------------------------------------------


def test_non_invite_client_timer_e_doubles_capped_at_t2_until_timer_f() -> None:
    layer = new_layer()
    key = layer.send_request(outgoing("OPTIONS"), PEER_UDP, 0.0)
    sent(layer)
    log = run_until(layer, 100.0)
    expected, t, interval = [], T1, T1
    while t < 64 * T1:
        expected.append(round(t, 6))
        interval = min(2 * interval, T2)
        t += interval
    assert send_times(log) == expected  # 0.5 1.5 3.5 7.5 11.5 ... 31.5
    assert expected[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert [(w, type(e), e.key) for w, e in events_of(log)] == [  # type: ignore[attr-defined]
        (64 * T1, TransactionTimeout, key)
    ]
    assert len(layer) == 0


def test_non_invite_client_retransmits_every_t2_after_a_provisional() -> None:
    layer = new_layer()
    request = outgoing("REGISTER")
    layer.send_request(request, PEER_UDP, 0.0)
    sent(layer)
    layer.receive_response(answer(request, 100), 0.1)
    log = run_until(layer, 20.0)
    times = send_times(log)
    assert times[0] == 0.5
    assert [round(b - a, 6) for a, b in zip(times[1:], times[2:], strict=False)] == [T2] * (
        len(times) - 2
    )


def test_non_invite_client_final_response_starts_timer_k_absorbing_retransmissions() -> None:
    layer = new_layer()
    request = outgoing("BYE")
    key = layer.send_request(request, PEER_UDP, 0.0)
    sent(layer)
    ok = answer(request, 200)
    assert [type(e) for e in layer.receive_response(ok, 0.7)] == [ResponseReceived]
    assert layer.receive_response(ok, 1.0) == []  # Completed absorbs retransmissions
    log = run_until(layer, 100.0)
    assert [round(w, 6) for w, _, _ in log] == [0.7 + T4]  # Timer K
    assert send_times(log) == [] and len(layer) == 0
    assert key not in [e.key for _, e in events_of(log)]  # type: ignore[attr-defined]


def test_non_invite_client_over_tcp_has_no_timer_e_and_zero_timer_k() -> None:
    layer = new_layer()
    request = outgoing("OPTIONS")
    layer.send_request(request, PEER_TCP, 0.0)
    sent(layer)
    assert layer.get_timer() == 64 * T1  # only Timer F
    layer.receive_response(answer(request, 200), 0.2)
    assert len(layer) == 0 and layer.get_timer() is None


def test_timer_values_are_configurable() -> None:
    layer = new_layer(timers=Timers(T1=0.1, T2=0.4, T4=1.0))
    layer.send_request(outgoing("OPTIONS"), PEER_UDP, 0.0)
    sent(layer)
    log = run_until(layer, 100.0)
    assert send_times(log)[:4] == [0.1, 0.3, 0.7, 1.1]
    assert events_of(log)[-1][0] == pytest.approx(6.4)  # Timer F = 64*T1


# --- INVITE server (§17.2.1) ----------------------------------------------------------------


def test_invite_server_sends_100_trying_at_once() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    assert isinstance(event, RequestReceived) and event.cancelled is None
    (trying,) = sent(layer)
    assert isinstance(trying, Response) and trying.status == 100
    assert trying.to.tag is None and trying.call_id == "in-1@127.0.0.1"
    via = trying.top_via
    assert via.branch == "z9hG4bKclient1" and via.params["received"] == "127.0.0.1"
    assert via.params["rport"] == "5070"  # RFC 3581
    assert layer.server_state(event.key) == State.PROCEEDING


def test_invite_server_absorbs_request_retransmissions_resending_the_last_response() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    sent(layer)
    assert layer.receive_request(incoming(), PEER_UDP, 0.3) == []
    assert [r.status for r in sent(layer)] == [100]  # type: ignore[union-attr]
    layer.send_response(event.key, make_response(event.request, 180, to_tag="t"), 0.4)
    sent(layer)
    assert layer.receive_request(incoming(), PEER_UDP, 0.9) == []
    (again,) = sent(layer)
    assert isinstance(again, Response) and again.status == 180 and again.to.tag == "t"


def test_invite_server_non_2xx_timer_g_retransmits_until_timer_h() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    sent(layer)
    layer.send_response(event.key, make_response(event.request, 486, to_tag="t"), 1.0)
    assert [r.status for r in sent(layer)] == [486]  # type: ignore[union-attr]
    assert layer.server_state(event.key) == State.COMPLETED
    log = run_until(layer, 100.0)
    expected, t, interval = [], 1.0 + T1, T1
    while t < 1.0 + 64 * T1:
        expected.append(round(t, 6))
        interval = min(2 * interval, T2)
        t += interval
    assert send_times(log) == expected  # Timer G: 1.5 2.5 4.5 8.5 12.5 ...
    assert round(log[-1][0], 6) == 1.0 + 64 * T1  # Timer H
    assert layer.server_state(event.key) is None and len(layer) == 0


def test_invite_server_ack_stops_timer_g_and_timer_i_absorbs_ack_retransmissions() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    layer.send_response(event.key, make_response(event.request, 404, to_tag="t"), 0.1)
    sent(layer)
    run_until(layer, 0.7)  # one Timer G retransmission at 0.6
    ack = incoming("ACK", cseq_method="ACK", to_tag="t")
    assert layer.receive_request(ack, PEER_UDP, 0.8) == []  # absorbed, §17.2.1
    assert layer.server_state(event.key) == State.CONFIRMED
    assert layer.receive_request(ack, PEER_UDP, 1.0) == []
    log = run_until(layer, 100.0)
    assert send_times(log) == []  # no more Timer G
    assert [round(w, 6) for w, _, _ in log] == [0.8 + T4]  # Timer I
    assert len(layer) == 0


def test_invite_server_over_tcp_has_no_timer_g_and_zero_timer_i() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(transport="TCP"), PEER_TCP, 0.0)
    layer.send_response(event.key, make_response(event.request, 486, to_tag="t"), 0.1)
    sent(layer)
    assert layer.get_timer() == pytest.approx(0.1 + 64 * T1)  # only Timer H
    ack = incoming("ACK", cseq_method="ACK", to_tag="t", transport="TCP")
    assert layer.receive_request(ack, PEER_TCP, 0.2) == []
    assert len(layer) == 0


def test_invite_server_retransmits_2xx_until_the_ack_arrives() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    sent(layer)
    layer.send_response(event.key, make_response(event.request, 200, to_tag="t"), 1.0)
    (ok,) = sent(layer)
    assert layer.server_state(event.key) == State.ACCEPTED
    log = run_until(layer, 8.0)
    assert send_times(log) == [1.5, 2.5, 4.5]  # T1 doubling (to T2), §13.3.1.4
    assert all(m.data == ok.to_bytes() for _, _, out in log for m in out)
    ack = incoming("ACK", branch="z9hG4bKack1", cseq_method="ACK", to_tag="t")
    (acked,) = layer.receive_request(ack, PEER_UDP, 8.2)
    assert isinstance(acked, AckReceived) and acked.request.call_id == "in-1@127.0.0.1"
    log = run_until(layer, 100.0)
    assert send_times(log) == [] and events_of(log) == []  # no AckTimeout after the ACK
    assert len(layer) == 0  # Timer L ended the Accepted state


def test_invite_server_2xx_without_ack_raises_ack_timeout_and_timer_l_ends_it() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    layer.send_response(event.key, make_response(event.request, 200, to_tag="t"), 1.0)
    sent(layer)
    log = run_until(layer, 100.0)
    times = send_times(log)
    assert times[:4] == [1.5, 2.5, 4.5, 8.5] and times[-1] < 1.0 + 64 * T1
    assert all(round(b - a, 6) == T2 for a, b in zip(times[3:], times[4:], strict=False))
    timeouts = [(w, e) for w, e in events_of(log)]
    assert [(w, type(e), e.key) for w, e in timeouts] == [  # type: ignore[attr-defined]
        (1.0 + 64 * T1, AckTimeout, event.key)
    ]
    assert len(layer) == 0  # Timer L fired at the same instant


def test_invite_server_2xx_over_tcp_is_not_retransmitted_but_still_awaits_the_ack() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(transport="TCP"), PEER_TCP, 0.0)
    layer.send_response(event.key, make_response(event.request, 200, to_tag="t"), 1.0)
    sent(layer)
    log = run_until(layer, 100.0)
    assert send_times(log) == []
    assert [type(e) for _, e in events_of(log)] == [AckTimeout]


def test_invite_server_passes_further_2xx_from_the_tu_in_accepted_state() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    ok = make_response(event.request, 200, to_tag="t")
    layer.send_response(event.key, ok, 1.0)
    sent(layer)
    layer.send_response(event.key, ok, 1.1)  # RFC 6026 §7.1
    assert [r.status for r in sent(layer)] == [200]  # type: ignore[union-attr]
    with pytest.raises(TransactionError):
        layer.send_response(event.key, make_response(event.request, 486), 1.2)


def test_responding_on_an_ended_transaction_raises() -> None:
    layer = new_layer()
    with pytest.raises(TransactionError):
        layer.send_response(("z9hG4bKnone", "h:1", "INVITE"), Response(200), 0.0)


def test_ack_without_a_matching_transaction_goes_to_the_tu() -> None:
    layer = new_layer()
    ack = incoming("ACK", branch="z9hG4bKstray", cseq_method="ACK", to_tag="x")
    (event,) = layer.receive_request(ack, PEER_UDP, 0.0)
    assert isinstance(event, AckReceived)
    assert layer.outbox == []


# --- CANCEL matching (§9.2) ----------------------------------------------------------------


def test_cancel_names_the_invite_server_transaction_it_matches() -> None:
    layer = new_layer()
    (invite_event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    (event,) = layer.receive_request(incoming("CANCEL"), PEER_UDP, 1.0)
    assert isinstance(event, RequestReceived)
    assert event.cancelled == invite_event.key and event.key != invite_event.key
    layer.send_response(event.key, make_response(event.request, 200, to_tag="t"), 1.0)
    layer.send_response(invite_event.key, make_response(invite_event.request, 487, to_tag="t"), 1.0)
    statuses = [(r.status, r.cseq[1]) for r in sent(layer)]  # type: ignore[union-attr]
    assert statuses == [(100, "INVITE"), (200, "CANCEL"), (487, "INVITE")]


def test_cancel_without_a_matching_invite_has_no_cancelled_key() -> None:
    layer = new_layer()
    layer.receive_request(incoming(branch="z9hG4bKother"), PEER_UDP, 0.0)
    (event,) = layer.receive_request(incoming("CANCEL", branch="z9hG4bKnone"), PEER_UDP, 1.0)
    assert isinstance(event, RequestReceived) and event.cancelled is None


def test_cancel_after_the_final_response_still_matches_its_invite() -> None:
    # RFC 3261 §9.2: the INVITE transaction is found (then the CANCEL has no effect, 200).
    layer = new_layer()
    (invite_event,) = layer.receive_request(incoming(), PEER_UDP, 0.0)
    layer.send_response(invite_event.key, make_response(invite_event.request, 200, to_tag="t"), 0.5)
    (event,) = layer.receive_request(incoming("CANCEL"), PEER_UDP, 1.0)
    assert isinstance(event, RequestReceived) and event.cancelled == invite_event.key


# --- non-INVITE server (§17.2.2) ------------------------------------------------------------


def test_non_invite_server_is_silent_in_trying_and_repeats_the_provisional() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming("REGISTER"), PEER_UDP, 0.0)
    assert layer.server_state(event.key) == State.TRYING and layer.outbox == []
    assert layer.receive_request(incoming("REGISTER"), PEER_UDP, 0.5) == []
    assert layer.outbox == []  # nothing to resend yet
    layer.send_response(event.key, make_response(event.request, 100), 0.6)
    sent(layer)
    assert layer.receive_request(incoming("REGISTER"), PEER_UDP, 1.5) == []
    assert [r.status for r in sent(layer)] == [100]  # type: ignore[union-attr]


def test_non_invite_server_final_response_is_resent_until_timer_j() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming("OPTIONS"), PEER_UDP, 0.0)
    layer.send_response(event.key, make_response(event.request, 200, to_tag="t"), 0.1)
    (ok,) = sent(layer)
    assert layer.server_state(event.key) == State.COMPLETED
    assert layer.receive_request(incoming("OPTIONS"), PEER_UDP, 2.0) == []
    (again,) = sent(layer)
    assert again.to_bytes() == ok.to_bytes()
    log = run_until(layer, 100.0)
    assert [round(w, 6) for w, _, _ in log] == [0.1 + 64 * T1]  # Timer J
    assert send_times(log) == [] and len(layer) == 0
    assert layer.counters["retransmissions"] == 1


def test_non_invite_server_over_tcp_ends_at_once_timer_j_zero() -> None:
    layer = new_layer()
    (event,) = layer.receive_request(incoming("OPTIONS", transport="TCP"), PEER_TCP, 0.0)
    layer.send_response(event.key, make_response(event.request, 200, to_tag="t"), 0.1)
    assert len(layer) == 0 and layer.get_timer() is None


# --- matching, limits, strays ---------------------------------------------------------------


def test_stray_responses_are_counted_and_dropped() -> None:
    layer = new_layer()
    other = new_layer()
    request = outgoing("OPTIONS")
    other.send_request(request, PEER_UDP, 0.0)  # sent by someone else: unknown branch here
    stray = answer(request, 200)
    assert layer.receive_response(stray, 0.0) == []
    assert layer.receive_response(stray, 0.1) == []
    assert layer.counters["stray_responses"] == 2


def test_response_for_another_method_with_the_same_branch_does_not_match() -> None:
    layer = new_layer()
    request = outgoing("INVITE")
    layer.send_request(request, PEER_UDP, 0.0)
    wrong = answer(request, 200)
    wrong.headers.set("cseq", "1 BYE")
    assert layer.receive_response(wrong, 0.1) == []
    assert layer.counters["stray_responses"] == 1


def test_per_source_transaction_cap_answers_503_and_spares_other_sources() -> None:
    layer = new_layer(max_server_per_source=2)
    for i in range(2):
        events = layer.receive_request(incoming("OPTIONS", branch=f"z9hG4bKa{i}"), PEER_UDP, 0.0)
        assert len(events) == 1
    sent(layer)
    assert layer.receive_request(incoming("OPTIONS", branch="z9hG4bKa9"), PEER_UDP, 0.0) == []
    (busy,) = sent(layer)
    assert isinstance(busy, Response) and busy.status == 503
    assert busy.headers.get("retry-after") == "5" and busy.to.tag  # a final response: To tag
    assert layer.counters["rejected_overload"] == 1
    other = Target("UDP", "127.0.0.2", 5070)
    assert len(layer.receive_request(incoming("OPTIONS", branch="z9hG4bKb"), other, 0.0)) == 1


def test_global_cap_keeps_half_for_trunks_and_registered_phones() -> None:
    # SIP-8: 2,000 INVITE/s from 500 addresses, each under its own limits, held 47,000
    # transactions; strangers may now fill only half of `max_server_total`.
    trunk = Target("UDP", "127.0.0.9", 5060)
    layer = new_layer(max_server_total=10, trusted=lambda host: host == trunk.host)
    strangers = [Target("UDP", f"10.0.0.{i}", 5070) for i in range(8)]
    admitted = [
        bool(layer.receive_request(incoming("OPTIONS", branch=f"z9hG4bKs{i}"), src, 0.0))
        for i, src in enumerate(strangers)
    ]
    assert admitted == [True] * 5 + [False] * 3
    assert {m.status for m in sent(layer) if isinstance(m, Response)} == {503}
    for i in range(5):  # the trusted source still gets the other half
        assert layer.receive_request(incoming("OPTIONS", branch=f"z9hG4bKt{i}"), trunk, 0.0)
    assert layer.server_transactions == 10
    assert layer.receive_request(incoming("OPTIONS", branch="z9hG4bKt9"), trunk, 0.0) == []
    assert layer.counters["rejected_overload"] == 4


def test_per_source_cap_frees_a_slot_when_a_transaction_ends() -> None:
    layer = new_layer(max_server_per_source=1)
    (event,) = layer.receive_request(incoming("OPTIONS", branch="z9hG4bK1"), PEER_UDP, 0.0)
    layer.send_response(event.key, make_response(event.request, 200, to_tag="t"), 0.0)
    run_until(layer, 100.0)  # Timer J
    assert len(layer.receive_request(incoming("OPTIONS", branch="z9hG4bK2"), PEER_UDP, 100.0)) == 1


def test_per_source_cap_does_not_apply_to_exempt_sources() -> None:
    layer = new_layer(max_server_per_source=1, limit_exempt=lambda host: host == "127.0.0.1")
    for i in range(3):
        assert (
            len(layer.receive_request(incoming("OPTIONS", branch=f"z9hG4bK{i}"), PEER_UDP, 0.0))
            == 1
        )


def test_requests_without_magic_cookie_branch_get_their_own_transactions() -> None:
    # RFC 2543 clients: matching falls back to Request-URI, tags, Call-ID, CSeq, Via (§17.2.3).
    layer = new_layer()
    first = layer.receive_request(incoming(branch=None, call_id="a@x"), PEER_UDP, 0.0)
    second = layer.receive_request(incoming(branch=None, call_id="b@x"), PEER_UDP, 0.1)
    assert len(first) == 1 and len(second) == 1 and first[0].key != second[0].key
    sent(layer)
    assert layer.receive_request(incoming(branch=None, call_id="a@x"), PEER_UDP, 0.2) == []
    assert [r.status for r in sent(layer)] == [100]  # type: ignore[union-attr]
    layer.send_response(first[0].key, make_response(first[0].request, 486, to_tag="t"), 0.3)
    ack = incoming("ACK", branch=None, cseq_method="ACK", to_tag="t", call_id="a@x")
    assert layer.receive_request(ack, PEER_UDP, 0.4) == []
    assert layer.server_state(first[0].key) == State.CONFIRMED
    (cancel,) = layer.receive_request(incoming("CANCEL", branch=None, call_id="b@x"), PEER_UDP, 0.5)
    assert cancel.cancelled == second[0].key  # type: ignore[attr-defined]


def test_get_timer_is_the_earliest_deadline_and_none_when_idle() -> None:
    layer = new_layer()
    assert layer.get_timer() is None
    layer.send_request(outgoing("OPTIONS"), PEER_UDP, 10.0)
    assert layer.get_timer() == 10.0 + T1
    layer.send_request(outgoing("INVITE"), PEER_TCP, 10.2)
    assert layer.get_timer() == 10.0 + T1
    assert layer.handle_timer(10.0) == [] and len(layer.outbox) == 2  # nothing due yet


def test_every_response_but_100_is_tagged_even_when_no_tag_is_given() -> None:
    """RFC 3261 §8.2.6.2: a UAS adds a To tag to its responses (100 Trying excepted); the
    node's stateless refusals (400, 403, 503) are its own answers, so they carry one too."""
    request = incoming()
    assert make_response(request, 100).to.tag is None
    refused = make_response(request, 403)
    busy = make_response(request, 503)
    assert refused.to.tag and busy.to.tag and refused.to.tag != busy.to.tag
    assert make_response(request, 486, to_tag="mine").to.tag == "mine"
    in_dialog = incoming(to_tag="theirs")
    assert make_response(in_dialog, 481).to.tag == "theirs"


def test_waiting_transactions_keep_only_the_bytes_they_resend() -> None:
    """At hundreds of calls a second most transactions wait out Timers J, L, M, D or K: they
    keep what they may resend, not the parsed request (which every garbage collection would
    walk), and answer retransmissions exactly as before."""
    layer = new_layer()
    (bye,) = layer.receive_request(incoming("BYE", cseq=2, to_tag="t"), PEER_UDP, 0.0)
    layer.send_response(bye.key, make_response(bye.request, 200), 0.1)
    (ok,) = sent(layer)
    assert layer.server_request(bye.key) is None  # settled: nothing reads it any more
    assert layer.receive_request(incoming("BYE", cseq=2, to_tag="t"), PEER_UDP, 1.0) == []
    assert [m.to_bytes() for m in sent(layer)] == [ok.to_bytes()]

    (invite,) = layer.receive_request(incoming(call_id="in-2@x"), PEER_UDP, 0.0)
    sent(layer)
    layer.send_response(invite.key, make_response(invite.request, 200, to_tag="t"), 0.2)
    (answered,) = sent(layer)
    assert layer.server_request(invite.key) is not None  # an AckTimeout would carry it
    ack = incoming("ACK", branch="z9hG4bKack2", cseq_method="ACK", to_tag="t", call_id="in-2@x")
    layer.receive_request(ack, PEER_UDP, 0.3)
    assert layer.server_request(invite.key) is None
    assert layer.receive_request(incoming(call_id="in-2@x"), PEER_UDP, 0.4) == []
    assert [m.to_bytes() for m in sent(layer)] == [answered.to_bytes()]

    key = layer.send_request(outgoing("BYE", cseq=3), PEER_UDP, 0.0)
    (request,) = sent(layer)
    assert isinstance(request, Request)
    (got,) = layer.receive_response(answer(request, 200), 0.1)
    assert isinstance(got, ResponseReceived) and layer.client_state(key) == State.COMPLETED
    assert layer.receive_response(answer(request, 200), 0.2) == []  # Timer K absorbs it
    assert len(run_until(layer, 100.0)) >= 1 and len(layer) == 0
