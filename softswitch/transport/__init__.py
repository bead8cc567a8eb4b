"""SIP transports on the asyncio event loop: UDP and TCP, IPv4 and IPv6 (RFC 3261 §18).

This is the edge between sockets and the sans-IO core: datagrams and framed stream messages
go up as `(bytes, Target)`, `SendMessage` commands come down. TCP connections are reused in
both directions (a response goes back on the connection its request came in on; requests to
a peer reuse an open connection to it), closed after `idle_timeout` seconds without traffic,
and answer RFC 5626 double-CRLF keep-alives with a single CRLF.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from softswitch.sip.errors import SipParseError
from softswitch.sip.message import StreamFramer
from softswitch.sip.transaction import SendMessage, Target, bare_host, hostport

log = logging.getLogger("hotline.transport")

Receiver = Callable[[bytes, Target], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, receive: Receiver) -> None:
        self.receive = receive
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if data in (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00"):
            return  # NAT keep-alive datagrams carry no message
        self.receive(data, Target("UDP", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction timers handle the loss.
        log.debug("udp error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, manager: TransportManager) -> None:
        self.manager = manager
        self.framer = StreamFramer(manager.max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Target | None = None
        self.last_activity = 0.0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = Target("TCP", peer[0], peer[1])
        self.manager._connections[(peer[0], peer[1])] = self
        self.last_activity = self.manager.loop.time()
        if not self.ready.done():
            self.ready.set_result(True)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.manager.loop.time()
        before = self.framer.keepalives
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            # A stream we cannot frame cannot be resynchronised: close it (§18.3).
            log.warning("closing TCP connection from %s: %s", self.peer, exc)
            assert self.transport is not None
            self.transport.close()
            return
        if self.framer.keepalives != before and self.transport is not None:
            self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        assert self.peer is not None
        for message in messages:
            self.manager.receive(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            key = (self.peer.host, self.peer.port)
            if self.manager._connections.get(key) is self:
                del self.manager._connections[key]
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before it was made"))


class TransportManager:
    """Owns every SIP socket of the node."""

    def __init__(
        self,
        receive: Receiver,
        max_size: int = 65535,
        idle_timeout: float = 300.0,
        failed: Callable[[Target], None] | None = None,
    ) -> None:
        self.receive = receive
        self.failed = failed
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self._udp: dict[int, _Udp] = {}  # address family -> the first UDP socket of it
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: dict[tuple[str, int], _TcpConnection] = {}
        self._pending: dict[tuple[str, int], asyncio.Task] = {}
        self._reaper: asyncio.Task | None = None
        self.bound: list[tuple[str, str, int]] = []  # (transport, host, port)

    async def listen(self, host: str, port: int) -> None:
        """Bind UDP and TCP on host:port."""
        import socket

        host = bare_host(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, protocol = await self.loop.create_datagram_endpoint(
            lambda: _Udp(self.receive), local_addr=(host, port), family=family
        )
        actual_port = transport.get_extra_info("sockname")[1]
        self._udp.setdefault(family, protocol)
        server = await self.loop.create_server(
            lambda: _TcpConnection(self), host, actual_port, family=family, reuse_address=True
        )
        self._servers.append(server)
        self.bound.append(("UDP", host, actual_port))
        self.bound.append(("TCP", host, actual_port))
        if self._reaper is None:
            self._reaper = self.loop.create_task(self._reap_idle())

    def send(self, message: SendMessage) -> None:
        target = message.target
        host = bare_host(target.host)
        if target.transport == "UDP":
            import socket

            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            udp = self._udp.get(family)
            if udp is None or udp.transport is None:
                log.warning("no UDP socket for %s; dropping message", host)
                return
            udp.transport.sendto(message.data, (host, target.port))
            return
        if target.transport != "TCP":
            log.warning(
                "transport %s not supported; dropping message to %s", target.transport, host
            )
            return
        conn = self._connections.get((host, target.port))
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.last_activity = self.loop.time()
            conn.transport.write(message.data)
            return
        self._connect_and_send(host, target.port, message.data)

    def _connect_and_send(self, host: str, port: int, data: bytes) -> None:
        key = (host, port)
        pending = self._pending.get(key)
        if pending is not None:
            pending.add_done_callback(lambda _t: self._write_after_connect(key, data))
            return

        async def connect() -> None:
            try:
                await self.loop.create_connection(lambda: _TcpConnection(self), host, port)
            except OSError as exc:
                log.warning("TCP connect to %s:%d failed: %s", host, port, exc)
                if self.failed is not None:
                    self.failed(Target("TCP", host, port))
            finally:
                self._pending.pop(key, None)

        task = self.loop.create_task(connect())
        self._pending[key] = task
        task.add_done_callback(lambda _t: self._write_after_connect(key, data))

    def _write_after_connect(self, key: tuple[str, int], data: bytes) -> None:
        conn = self._connections.get(key)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
        # otherwise the transaction's timers report the failure to the TU

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, min(30.0, self.idle_timeout / 4)))
            cutoff = self.loop.time() - self.idle_timeout
            for conn in list(self._connections.values()):
                if conn.last_activity < cutoff and conn.transport is not None:
                    conn.transport.close()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for udp in self._udp.values():
            if udp.transport is not None:
                udp.transport.close()
        for server in self._servers:
            await server.wait_closed()


__all__ = ["TransportManager", "bare_host", "hostport"]
