"""SIP over one UDP socket for `hotline loadtest run`: the asyncio edge of the sans-IO
`softswitch.sip.TransactionLayer` (datagrams and its one timer in, the outbox out), plus
the two dialog helpers the run needs (where in-dialog requests go, what a REGISTER got)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from softswitch.sip import message as sipmsg
from softswitch.sip.build import make_response
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import SipError
from softswitch.sip.transaction import Target, TransactionLayer, hostport


class SipSocket(asyncio.DatagramProtocol):
    """A UDP socket and its transaction layer; messages and events go to `handler`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handler: Callable[..., None]) -> None:
        self.loop = loop
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self.txn: TransactionLayer | None = None
        self.address = ""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.parse_errors = 0

    @classmethod
    async def open(
        cls, loop: asyncio.AbstractEventLoop, ip: str, handler: Callable[..., None]
    ) -> SipSocket:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: cls(loop, handler), local_addr=(ip, 0)
        )
        port = transport.get_extra_info("sockname")[1]
        protocol.address = hostport(ip, port)
        protocol.txn = TransactionLayer({"UDP": protocol.address})
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.txn is not None
        now = self.loop.time()
        try:
            msg = sipmsg.parse_message(data)
        except SipError:
            self.parse_errors += 1
            return
        source = Target("UDP", str(addr[0]), int(addr[1]))
        try:
            if isinstance(msg, sipmsg.Request):
                events = self.txn.receive_request(msg, source, now)
            else:
                events = self.txn.receive_response(msg, now)
        except SipError:
            self.parse_errors += 1
            return
        for event in events:
            self.handler(self, event, now)
        self.flush()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable: the transaction's own timers report the failure

    def flush(self) -> None:
        """Send what the transaction layer produced and re-arm its timer."""
        txn, transport = self.txn, self.transport
        if txn is None or transport is None:
            return
        for out in txn.outbox:
            transport.sendto(out.data, (out.target.host, out.target.port))
        txn.outbox.clear()
        when = txn.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(when, self._fire) if when is not None else None
            self._timer_at = when

    def _fire(self) -> None:
        assert self.txn is not None
        self._timer = self._timer_at = None
        now = self.loop.time()
        for event in self.txn.handle_timer(now):
            self.handler(self, event, now)
        self.flush()

    def respond(self, key: tuple, request: sipmsg.Request, status: int, **kwargs: Any) -> None:
        assert self.txn is not None
        with contextlib.suppress(SipError):
            self.txn.send_response(key, make_response(request, status, **kwargs), self.loop.time())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


def granted_expires(response: sipmsg.Response, asked: int) -> float:
    """The expiry a 200 to REGISTER granted (RFC 3261 §10.2.4: the Contact's ``expires``,
    else the Expires header), at least 10 s; `asked` when it says neither."""
    for contact in response.headers.get_all("contact"):
        with contextlib.suppress(SipError, ValueError, TypeError):
            value = sipmsg.parse_name_addr(contact).params.get("expires")
            if value is not None:
                return max(10.0, float(value))
    with contextlib.suppress(ValueError, TypeError):
        return max(10.0, float(response.headers.get("expires") or asked))
    return float(asked)


def target_of(dialog: Dialog, default: Target) -> Target:
    host, port, transport = dialog.next_hop()
    return Target(transport if transport == "UDP" else default.transport, host, port or 5060)
