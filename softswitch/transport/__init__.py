"""SIP transports on the asyncio event loop: UDP and TCP, IPv4 and IPv6 (RFC 3261 §18).

This is the edge between sockets and the sans-IO core: datagrams and framed stream messages
go up as `(bytes, Target)`, `SendMessage` commands come down. TCP connections are reused in
both directions (a response goes back on the connection its request came in on; requests to
a peer reuse an open connection to it), closed after `idle_timeout` seconds without traffic,
and answer RFC 5626 double-CRLF keep-alives with a single CRLF.

TCP limits (the `limits` section of node.yaml; rules in `admission.py`, counting in
`descriptors.py`):

- `max_tcp_connections_per_source`: connections kept with one remote address. A connection
  accepted beyond it is closed at once (before anything is read from it). Sources inside a
  trunk's `acl` are exempt, as from `max_transactions_per_source`: a carrier may open many.
- `max_tcp_connections`: connections kept in all, those the node opened itself included; a
  new one from a non-trunk source is closed at once beyond it.
- `tcp_header_timeout`: seconds a message may take from its first byte to its last (headers
  and body). A connection whose message in progress is older is closed, so a sender that
  trickles a byte every few seconds cannot hold it: that traffic never lets it go idle.
  Between messages (keep-alive CRLFs included) `node.tcp_idle_timeout` applies as before.
- `fd_reserve`: file descriptors kept free below the open-file limit for what calls need
  (two RTP sockets per anchored leg, SQLite files, recordings). An accepted connection,
  trunks' included, is closed at once when keeping it would leave fewer free. The node
  raises the soft limit to the hard one at start and logs both.

Connections the node opens itself (to a phone or trunk over TCP) are counted but never
refused. A refusal or a deadline closing is logged with the key that caused it, at most one
line per reason every 10 s (with the number since the last line); `stats()` counts them.
Limits changed by a reload apply to new connections and to the next deadline; open
connections above a lowered cap stay.

UDP sockets are read in batches: when a socket is readable, every datagram waiting on it (up
to `UDP_BATCH`) is handed up before one `flush` call, so under load the node commits its
records and sends its answers once per batch instead of once per datagram, and the event
loop polls once for many datagrams. The receive buffer is enlarged (`UDP_RCVBUF`) so that a
burst waits in the kernel instead of being dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from softswitch.config import LimitsConfig
from softswitch.sip.errors import SipParseError
from softswitch.sip.transaction import SendMessage, Target, bare_host, hostport

from .admission import ConnectionAdmission, Refusal, TimedFramer, WarningThrottle
from .descriptors import DescriptorCounter

if TYPE_CHECKING:
    from .tls import TlsTransport

log = logging.getLogger("hotline.transport")

Receiver = Callable[[bytes, Target], None]

UDP_BATCH = 64  # datagrams handled per readable event before one flush
UDP_RCVBUF = 4 * 1024 * 1024  # bytes: about 4,000 typical SIP datagrams of burst
# Connections the kernel queues before the loop accepts them (asyncio's default is 100:
# seen, about 1 % of 2,000 back-to-back connects waited a second for the SYN retry).
TCP_BACKLOG = 1024
KEEPALIVES = (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00")  # NAT keep-alives, no message


class _Udp:
    """One non-blocking UDP socket on the event loop, read in batches."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, receive: Receiver,
        flush: Callable[[], None],
    ) -> None:  # fmt: skip
        self.loop = loop
        self.sock = sock
        self.receive = receive
        self.flush = flush
        self.dropped_sends = 0
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        got = False
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP port unreachable and the like: the transaction timers see the loss.
                log.debug("udp error: %s", exc)
                continue
            if data in KEEPALIVES:
                continue
            got = True
            self.receive(data, Target("UDP", addr[0], addr[1]))
        if got:
            self.flush()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            # The send buffer is full: drop it as the network might; SIP retransmits.
            self.dropped_sends += 1
        except OSError as exc:
            log.debug("udp send to %s:%d failed: %s", addr[0], addr[1], exc)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:  # FORCE passes net.core.rmem_max where the process may (CAP_NET_ADMIN)
                sock.setsockopt(socket.SOL_SOCKET, option, UDP_RCVBUF)
                break
            except OSError:
                continue
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _TcpConnection(asyncio.Protocol):
    """A SIP connection: framed by Content-Length (§18.3), counted by the admission."""

    TRANSPORT = "TCP"  # the Target/Via name of messages on it (tls.py: "TLS")

    def __init__(self, manager: TransportManager, inbound: bool = False) -> None:
        self.manager = manager
        self.inbound = inbound  # accepted by a listening socket (not opened by the node)
        self.counted = False  # counted by the manager's admission
        self.framer = TimedFramer(manager.max_size)
        self._deadline: asyncio.TimerHandle | None = None  # tcp_header_timeout's timer
        self._deadline_of: float | None = None  # started_at of the message it watches
        self.transport: asyncio.Transport | None = None
        self.peer: Target | None = None
        self.last_activity = 0.0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if self.inbound and not self.manager._admit(peer[0], peer[1]):
            transport.close()  # at once: nothing was read from it or written to it
            self.ready.set_result(False)
            return
        if not self.inbound:
            self.manager.admission.opened(peer[0])
        self.counted = True
        self._established(transport, peer)

    def _established(self, transport: asyncio.BaseTransport, peer: tuple) -> None:
        """The connection carries SIP from now on: messages to the peer reuse it."""
        self.transport = transport  # type: ignore[assignment]
        self.peer = Target(self.TRANSPORT, peer[0], peer[1])
        self.manager._streams[self.TRANSPORT][(peer[0], peer[1])] = self
        self.last_activity = self.manager.loop.time()
        if not self.ready.done():
            self.ready.set_result(True)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.manager.loop.time()
        try:
            self._frame(data)
        finally:
            self.manager.flush()

    def _frame(self, data: bytes) -> None:
        before = self.framer.keepalives
        try:
            messages = self.framer.feed_at(data, self.last_activity)
        except SipParseError as exc:
            # A stream we cannot frame cannot be resynchronised: close it (§18.3).
            log.warning("closing %s connection from %s: %s", self.TRANSPORT, self.peer, exc)
            assert self.transport is not None
            self.transport.close()
            return
        if self.framer.keepalives != before and self.transport is not None:
            self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        self._watch_deadline()
        assert self.peer is not None
        for message in messages:
            self.manager.receive(message, self.peer)

    def _watch_deadline(self) -> None:
        """One timer per connection, on its message in progress: `tcp_header_timeout` after
        the message's first byte. Bytes trickling in do not move it."""
        started = self.framer.started_at
        if started == self._deadline_of:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_of = started
        if started is not None:
            timeout = self.manager.admission.limits.tcp_header_timeout
            self._deadline = self.manager.loop.call_at(started + timeout, self._overdue)

    def _overdue(self) -> None:
        self._deadline = None
        self._deadline_of = None
        started = self.framer.started_at
        if started is None or self.transport is None or self.transport.is_closing():
            return
        now = self.manager.loop.time()
        if now < started + self.manager.admission.limits.tcp_header_timeout:
            self._watch_deadline()  # a reload lengthened the timeout meanwhile
            return
        self.manager._message_overdue(self, now - started)
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._uncount()
        if self.peer is not None:
            key = (self.peer.host, self.peer.port)
            streams = self.manager._streams[self.TRANSPORT]
            if streams.get(key) is self:
                del streams[key]
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before it was made"))

    def _uncount(self) -> None:
        """The admission forgets this connection (once, however it ended)."""
        if self.counted and self.peer is not None:
            self.counted = False
            self.manager.admission.closed(self.peer.host)


class TransportManager:
    """Owns every SIP socket of the node."""

    def __init__(
        self,
        receive: Receiver,
        max_size: int = 65535,
        idle_timeout: float = 300.0,
        failed: Callable[[Target], None] | None = None,
        limits: LimitsConfig | None = None,
        is_trunk_source: Callable[[str], bool] | None = None,
        descriptors: DescriptorCounter | None = None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        """`receive(data, source)` gets each message; `flush()` is called after each batch
        of them (every datagram waiting on a socket, or one stream read): the node commits
        and sends there."""
        self.receive = receive
        self.flush = flush or (lambda: None)
        self.failed = failed
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self._udp: dict[int, _Udp] = {}  # address family -> the first UDP socket of it
        self._udp_sockets: list[_Udp] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: dict[tuple[str, int], _TcpConnection] = {}
        # Stream connections by transport, then remote address: TCP, and TLS (tls.py).
        self._streams: dict[str, dict[tuple[str, int], _TcpConnection]] = {
            "TCP": self._connections,
            "TLS": {},
        }
        self._pending: dict[tuple[str, str, int], asyncio.Task] = {}
        self.tls: TlsTransport | None = None  # set by tls.TlsTransport when configured
        self._reaper: asyncio.Task | None = None
        self.bound: list[tuple[str, str, int]] = []  # (transport, host, port)
        self.admission = ConnectionAdmission(
            limits or LimitsConfig(),
            is_trunk_source or (lambda _host: False),
            descriptors or DescriptorCounter.for_this_process(),
        )
        self.header_timeouts = 0
        self._warnings = WarningThrottle(interval=10.0)
        self._log_capacity()

    def configure(self, limits: LimitsConfig) -> None:
        """Limits of a reloaded configuration: for new connections and the next deadline."""
        self.admission.limits = limits

    def stats(self) -> dict[str, int]:
        """TCP connections open, refused by each limit, closed by the message deadline."""
        out = {"tcp.open": self.admission.total, "tcp.header_timeouts": self.header_timeouts}
        for refusal, count in self.admission.refused.items():
            out[f"tcp.refused.{refusal.value}"] = count
        if self.tls is not None:
            out.update(self.tls.stats())
        return out

    def _log_capacity(self) -> None:
        admission = self.admission
        limits = admission.limits
        descriptors = admission.descriptors
        room = admission.free_descriptors(self.loop.time()) - limits.fd_reserve
        log.info(
            "TCP: up to %d connections, %d per source (trunks exempt), messages within %g s; "
            "file descriptors %s, %d kept free: room for about %d connections now",
            limits.max_tcp_connections,
            limits.max_tcp_connections_per_source,
            limits.tcp_header_timeout,
            descriptors.describe(),
            limits.fd_reserve,
            max(0, room),
        )
        if room <= 0:
            log.warning(
                "limits.fd_reserve %d leaves no file descriptor for TCP under the open-file "
                "limit %d: every TCP connection will be refused",
                limits.fd_reserve,
                descriptors.limit,
            )

    def _admit(self, host: str, port: int, transport: str = "TCP") -> bool:
        """Whether a just-accepted connection from host:port may stay (logs a refusal)."""
        now = self.loop.time()
        refusal = self.admission.admit(host, now)
        if refusal is None:
            return True
        self._warn(
            refusal,
            now,
            "refused %s connection from %s: %s",
            transport,
            hostport(host, port),
            self.admission.explain(refusal, host, now),
        )
        return False

    def _message_overdue(self, conn: _TcpConnection, age: float) -> None:
        self.header_timeouts += 1
        self._warn(
            "header_timeout",
            self.loop.time(),
            "closing TCP connection from %s: its message is incomplete after %.1f s "
            "(%d bytes; limits.tcp_header_timeout: %g s)",
            conn.peer,
            age,
            conn.framer.pending,
            self.admission.limits.tcp_header_timeout,
        )

    def _warn(self, kind: Refusal | str, now: float, message: str, *args: object) -> None:
        skipped = self._warnings.allow(kind, now)
        if skipped is None:
            return
        if skipped:
            message += "; %d more since the last such line"
            args = (*args, skipped)
        log.warning(message, *args)

    async def listen(self, host: str, port: int) -> None:
        """Bind UDP and TCP on host:port."""
        host = bare_host(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = _udp_socket(host, port)
        actual_port = sock.getsockname()[1]
        udp = _Udp(self.loop, sock, self.receive, self.flush)
        self._udp_sockets.append(udp)
        self._udp.setdefault(family, udp)
        server = await self.loop.create_server(
            lambda: _TcpConnection(self, inbound=True),
            host,
            actual_port,
            family=family,
            reuse_address=True,
            backlog=TCP_BACKLOG,
        )
        self._servers.append(server)
        self.bound.append(("UDP", host, actual_port))
        self.bound.append(("TCP", host, actual_port))
        self._start_reaper()

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = self.loop.create_task(self._reap_idle())

    def send(self, message: SendMessage) -> None:
        target = message.target
        host = bare_host(target.host)
        if target.transport == "UDP":
            udp = self._udp.get(socket.AF_INET6 if ":" in host else socket.AF_INET)
            if udp is None:
                log.warning("no UDP socket for %s; dropping message", host)
                return
            udp.sendto(message.data, (host, target.port))
            return
        streams = self._streams.get(target.transport)
        if streams is None:
            log.warning(
                "transport %s not supported; dropping message to %s", target.transport, host
            )
            return
        conn = streams.get((host, target.port))
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.last_activity = self.loop.time()
            conn.transport.write(message.data)
            return
        self._connect_and_send(target.transport, host, target.port, message.data)

    def _connect_and_send(self, transport: str, host: str, port: int, data: bytes) -> None:
        key = (transport, host, port)
        pending = self._pending.get(key)
        if pending is not None:
            pending.add_done_callback(lambda _t: self._write_after_connect(key, data))
            return

        async def connect() -> None:
            try:
                if transport == "TLS":
                    if self.tls is None:
                        raise OSError("TLS is not configured on this node")
                    await self.tls.connect(host, port)
                else:
                    await self.loop.create_connection(lambda: _TcpConnection(self), host, port)
            except OSError as exc:  # ssl.SSLError and handshake timeouts are OSErrors
                log.warning("%s connect to %s failed: %s", transport, hostport(host, port), exc)
                if self.failed is not None:
                    self.failed(Target(transport, host, port))
            finally:
                self._pending.pop(key, None)

        task = self.loop.create_task(connect())
        self._pending[key] = task
        task.add_done_callback(lambda _t: self._write_after_connect(key, data))

    def _write_after_connect(self, key: tuple[str, str, int], data: bytes) -> None:
        conn = self._streams[key[0]].get(key[1:])
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
        # otherwise the transaction's timers report the failure to the TU

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, min(30.0, self.idle_timeout / 4)))
            cutoff = self.loop.time() - self.idle_timeout
            for conn in self._stream_connections():
                if conn.last_activity < cutoff and conn.transport is not None:
                    conn.transport.close()

    def _stream_connections(self) -> list[_TcpConnection]:
        return [conn for streams in self._streams.values() for conn in streams.values()]

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for server in self._servers:
            server.close()
        if self.tls is not None:
            self.tls.close()
        for conn in self._stream_connections():
            if conn.transport is not None:
                conn.transport.close()
        for udp in self._udp_sockets:
            udp.close()
        for server in self._servers:
            await server.wait_closed()


__all__ = ["TransportManager", "bare_host", "hostport"]
