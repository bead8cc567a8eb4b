"""What the running node does with bad input and at shutdown, over real sockets.

Malformed requests get 400, unknown methods 501 (RFC 3261 §8.2, §21.5.2), Request-URI schemes
other than sip, sips and tel 416 (§8.2.2.1), INVITEs from outside every trunk ACL get 403,
garbage gets no answer, an unframeable TCP stream is closed (RFC 3261 §18.3), and after each
of these the node still answers OPTIONS. SIGTERM with a call up releases both legs with BYE
and closes the CDR.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable

import pytest

from .harness import LOOPBACK, HotlineNode, PjAgent, Sipp, SipUdpClient, options_request


def request(
    method: str,
    node: HotlineNode,
    *,
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    body: bytes = b"",
    transport: str = "UDP",
    local_port: str = "{local_port}",
) -> bytes:
    """A well-formed request to the node (`{local_port}` is filled in by SipUdpClient), then
    headers named in `drop` removed and those in `replace` given other values (or added)."""
    headers = {
        "Via": f"SIP/2.0/{transport} {LOOPBACK}:{local_port};"
        f"branch=z9hG4bK-robust-{secrets.token_hex(6)};rport",
        "Max-Forwards": "70",
        "From": f"<sip:13800138000@{LOOPBACK}>;tag={secrets.token_hex(4)}",
        "To": f"<sip:9000@{node.address}>",
        "Call-ID": f"robust-{secrets.token_hex(6)}@{LOOPBACK}",
        "CSeq": f"1 {method}",
        "Contact": f"<sip:13800138000@{LOOPBACK}:{local_port}>",
        "Content-Length": str(len(body)),
    }
    for name in drop:
        del headers[name]
    headers.update(replace or {})
    head = f"{method} sip:9000@{node.address} SIP/2.0\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode() + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def header(response: bytes, name: str) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("utf-8", errors="replace")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def assert_still_serving(node: HotlineNode) -> None:
    """The node process lives and answers an OPTIONS over UDP with 200."""
    assert node.returncode is None, node.describe()
    with SipUdpClient() as client:
        client.send(options_request(node.address, client.port), (LOOPBACK, node.port))
        response = client.recv_response(2.0, final=True)
    assert response is not None, f"no answer to OPTIONS\n{node.describe()}"
    assert status_of(response) == 200


MALFORMED = {
    # RFC 3261 §8.1.1: Call-ID is mandatory.
    "missing Call-ID": dict(method="OPTIONS", drop=("Call-ID",)),
    # RFC 3261 §8.1.1.5: CSeq is a number and the request's method.
    "CSeq not a number": dict(method="OPTIONS", replace={"CSeq": "one OPTIONS"}),
    # RFC 4475 §3.1.2.17 (mismatch01): CSeq method differs from the request line.
    "CSeq method mismatch": dict(method="OPTIONS", replace={"CSeq": "1 INVITE"}),
    # RFC 3261 §18.3, RFC 4475 §3.1.2.2 (clerr): a UDP request ending before its
    # Content-Length gets 400.
    "body shorter than Content-Length": dict(
        method="INVITE",
        body=b"v=0\r\n",
        replace={"Content-Length": "400", "Content-Type": "application/sdp"},
    ),
    # RFC 3261 §20.22: Max-Forwards is 1*DIGIT.
    "Max-Forwards not a number": dict(method="INVITE", replace={"Max-Forwards": "many"}),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_400_and_node_keeps_serving(
    node: Callable[..., HotlineNode], case: str
) -> None:
    hotline = node()
    spec = dict(MALFORMED[case])
    raw = request(spec.pop("method"), hotline, **spec)  # type: ignore[arg-type]

    response = hotline.send_sip(raw, final=True)
    assert status_of(response) == 400, response
    reason = response.split(b"\r\n", 1)[0].split(b" ", 2)[2]
    assert reason.startswith(b"Bad Request"), response
    assert hotline.cdr_rows("calls") == []
    assert_still_serving(hotline)


def test_unknown_method_gets_501_with_allow(node: Callable[..., HotlineNode]) -> None:
    hotline = node()
    response = hotline.send_sip(request("FROBNICATE", hotline), final=True)
    assert status_of(response) == 501, response
    allow = header(response, "Allow") or ""
    assert "INVITE" in allow and "FROBNICATE" not in allow
    assert_still_serving(hotline)


def test_request_uri_scheme_the_node_does_not_serve_gets_416(
    node: Callable[..., HotlineNode],
) -> None:
    # RFC 3261 §8.2.2.1: an OPTIONS to `nope:` was answered 200.
    hotline = node()
    raw = request("OPTIONS", hotline).replace(b"OPTIONS sip:", b"OPTIONS nope:", 1)
    response = hotline.send_sip(raw, final=True)
    assert response.startswith(b"SIP/2.0 416 Unsupported URI Scheme\r\n"), response
    assert_still_serving(hotline)


def test_invite_from_outside_trunk_acl_gets_403(node: Callable[..., HotlineNode]) -> None:
    # All of loopback is the demo carrier; narrow its ACL to an address the test never uses.
    hotline = node(
        trunks={
            "trunks": [
                {"name": "carrier", "acl": ["127.0.0.2/32"], "digest": None, "caller_id": "12345"}
            ]
        }
    )
    with SipUdpClient() as client:
        invite = request("INVITE", hotline)
        client.send(invite, (LOOPBACK, hotline.port))
        response = client.recv_response(2.0, final=True)
        assert response is not None, hotline.describe()
        assert status_of(response) == 403, response
        # RFC 3261 §17.1.1.3: the ACK for a non-2xx final response, same branch, To with tag.
        ack = request(
            "ACK",
            hotline,
            replace={
                "Via": header(invite, "Via") or "",
                "From": header(invite, "From") or "",
                "To": header(response, "To") or "",
                "Call-ID": header(invite, "Call-ID") or "",
                "CSeq": "1 ACK",
            },
        )
        client.send(ack, (LOOPBACK, hotline.port))
        # Acknowledged: the 403 is not retransmitted (Timer G would resend it after T1).
        assert client.recv(1.2) is None
    hotline.wait_for_log("INVITE from unknown source 127.0.0.1")
    assert hotline.cdr_rows("calls") == []
    assert_still_serving(hotline)


def test_garbage_datagrams_get_no_answer(node: Callable[..., HotlineNode]) -> None:
    hotline = node()
    garbage = [
        secrets.token_bytes(300),
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello's start
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",  # a response without any header: dropped (§18.1.2)
        b"INVITE\r\n\r\n",
        b"\x00" * 64,
    ]
    with SipUdpClient() as client:
        for datagram in garbage:
            client.send(datagram, (LOOPBACK, hotline.port))
        assert client.recv(1.0) is None
    assert_still_serving(hotline)


def tcp_exchange(node: HotlineNode, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Send `data` on a new TCP connection; everything received and whether the node closed."""
    received = b""
    with socket.create_connection((LOOPBACK, node.port), timeout=timeout) as conn:
        conn.sendall(data.replace(b"{local_port}", str(conn.getsockname()[1]).encode()))
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
            if not data.endswith(b"\r\n\r\n") or b"\r\n\r\n" not in received:
                continue
            if b"Content-Length: 0" in received.split(b"\r\n\r\n", 1)[0]:
                return received, False  # one whole response and the connection stays open
    return received, False


@pytest.mark.parametrize(
    "content_length", ["abc", "-5", "99999999"], ids=["letters", "negative", "huge"]
)
def test_tcp_stream_with_bad_content_length_is_closed(
    node: Callable[..., HotlineNode], content_length: str
) -> None:
    hotline = node()
    bad = request("OPTIONS", hotline, transport="TCP", replace={"Content-Length": content_length})
    received, closed = tcp_exchange(hotline, bad)
    # RFC 3261 §18.3, RFC 4475 §3.1.2.3 (ncl): without a usable Content-Length the stream
    # cannot be framed any more.
    assert closed, f"connection left open; received {received!r}"
    assert b"SIP/2.0 200" not in received

    # A new connection is served, and so is UDP.
    good = request("OPTIONS", hotline, transport="TCP")
    received, closed = tcp_exchange(hotline, good)
    assert received.startswith(b"SIP/2.0 200 "), received
    assert not closed
    assert_still_serving(hotline)


def test_sigterm_with_a_call_up_byes_both_legs_and_closes_the_cdr(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    agent = pjagent(user="1001", registrar=hotline)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    # The caller waits for a BYE (it never hangs up itself).
    caller = sipp("uac_call_callee_bye", remote=hotline.address, service="9000", timeout=20)
    caller.start()
    agent.wait_for("confirmed", timeout=10)
    hotline.wait_for_rows("calls", lambda rows: len(rows) == 1 and rows[0]["answer"] is not None)

    assert hotline.stop() == 0, hotline.describe()

    ended = agent.wait_for("disconnected", timeout=5)
    assert ended["by"] == "remote" and ended["code"] == 200
    assert caller.wait(timeout=15) == 0, caller.describe()
    caller.check()
    (call,) = hotline.cdr_rows("calls")
    assert call["end"] is not None
    assert call["disposition"] == "answered"
    assert call["hangup_side"] == "system"
    assert call["talk"] > 0
    legs = hotline.cdr_rows("legs", call_id=call["call_id"])
    assert len(legs) == 2 and all(leg["end"] is not None for leg in legs)
    assert "stopped" in hotline.log_text()
