"""SIP over TLS (RFC 3261 §26.2, §18 on a TLS stream): the node's TLS listener and the
connections it opens to TLS peers, on asyncio's ssl.

A TLS connection is a TCP connection of the package's `_TcpConnection` with "TLS" as its
transport name: the same Content-Length framing, message size and `tcp_header_timeout`,
RFC 5626 CRLF keep-alives, idle closing and reuse in both directions. A phone registered
over TLS has "TLS" in its binding (`Binding.transport`, from the `Target` its REGISTER came
from) and every request to it goes back over the connection it opened (its flow), never a
new one, as for TCP.

Limits: an accepted connection is admitted by the same `ConnectionAdmission` as TCP, and
counted with the TCP ones (`limits.max_tcp_connections`, `max_tcp_connections_per_source`,
`fd_reserve`), *before* its handshake: a flood of TLS handshakes costs the node no more than
a flood of TCP connections. The handshake must end within `limits.tcp_header_timeout`
(a slow or silent client is closed then). A handshake that fails (TLS 1.0/1.1, a client
certificate missing or not verifying when `tls.client_certificates` asks for one, plain SIP
sent to the TLS port) closes the connection; it is logged (at most one line per reason every
10 s, with the number since) and counted in `tls.handshake_failed`.

Connections out (`TlsTransport.connect`) verify the server: a trunk with `transport: tls`
uses its own context (its client certificate, `tls_server_name` or the IP address checked
in the certificate); any other TLS destination (a phone whose connection is gone, a
`sips:` next hop) gets the node's default client context: the certificate must verify
against `tls.ca_bundle` (or the system's CAs), its name is not checked.

The SSL contexts are built from the configuration (`softswitch.config_tls`); a reload
builds new ones (`configure`): renewed certificates serve the next handshake, connections
already up keep theirs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from softswitch.config_tls import client_context, server_context
from softswitch.sip.transaction import Target, bare_host, hostport

from . import TCP_BACKLOG, TransportManager, _TcpConnection

if TYPE_CHECKING:
    from softswitch.config import Config

__all__ = ["TlsContexts", "TlsTransport"]

log = logging.getLogger("hotline.transport")

ACCEPT_BATCH = 64  # connections accepted per readable event of the listening socket


class TlsContexts:
    """The SSL contexts of one configuration: the listener's (None without `tls.listen`),
    one per `transport: tls` trunk address, and the default for other destinations."""

    def __init__(
        self,
        server: ssl.SSLContext | None,
        default_client: ssl.SSLContext,
        trunks: dict[tuple[str, int], tuple[ssl.SSLContext, str]] | None = None,
    ) -> None:
        self.server = server
        self.default_client = default_client
        self.trunks = trunks or {}

    @classmethod
    def from_config(cls, config: Config) -> TlsContexts:
        """Build them (the files were checked at load; a file changed since raises
        `TlsFileError`)."""
        from softswitch.config import parse_host_port

        tls = config.tls
        base = Path(config.directory or ".")
        server = server_context(tls, base) if tls.enabled else None
        default = client_context(tls, base, check_hostname=False)
        trunks: dict[tuple[str, int], tuple[ssl.SSLContext, str]] = {}
        for trunk in config.trunks:
            if trunk.transport != "tls":
                continue
            context = client_context(
                tls, base, trunk.tls_certificate or "", trunk.tls_private_key or ""
            )
            for address in trunk.outbound_addresses:
                host, port = parse_host_port(address)
                trunks.setdefault((host, port), (context, trunk.tls_server_name or host))
        return cls(server, default, trunks)

    def for_peer(self, host: str, port: int) -> tuple[ssl.SSLContext, str | None]:
        """The context and server name to check for a connection out to host:port."""
        found = self.trunks.get((host, port))
        if found is not None:
            return found
        return self.default_client, None


class _TlsConnection(_TcpConnection):
    """A `_TcpConnection` on TLS. `connection_made` comes after the handshake, for
    accepted connections (admitted and counted at accept, `peer` given) as for those the
    node opens."""

    TRANSPORT = "TLS"

    def __init__(
        self, manager: TransportManager, inbound: bool = False, peer: tuple | None = None
    ) -> None:
        super().__init__(manager, inbound)
        if peer is not None:
            self.counted = True  # by the admission, at accept
            self.peer = Target(self.TRANSPORT, peer[0], peer[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.inbound:
            self._established(transport, transport.get_extra_info("peername"))
            return
        super().connection_made(transport)


class TlsTransport:
    """The TLS side of a `TransportManager` (it sets itself as `manager.tls`)."""

    def __init__(self, manager: TransportManager, contexts: TlsContexts) -> None:
        self.manager = manager
        self.contexts = contexts
        self.handshakes: set[asyncio.Task[None]] = set()
        self._listening: list[socket.socket] = []
        self.handshakes_done = 0
        self.handshake_failures = 0
        manager.tls = self

    def configure(self, contexts: TlsContexts) -> None:
        """Contexts of a reloaded configuration, for the next handshakes."""
        self.contexts = contexts

    async def listen(self, host: str, port: int) -> None:
        """Listen for TLS on host:port. The node accepts each connection itself, so that
        the admission decides before any handshake work is done (asyncio's and uvloop's
        servers only hand a TLS connection over after its handshake)."""
        manager = self.manager
        host = bare_host(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(TCP_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        manager.loop.add_reader(sock.fileno(), self._accept, sock)
        self._listening.append(sock)
        manager.bound.append(("TLS", host, sock.getsockname()[1]))
        manager._start_reaper()

    def _accept(self, listener: socket.socket) -> None:
        manager = self.manager
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: fd_reserve should prevent it
                manager._warn("tls_accept", manager.loop.time(), "TLS accept failed: %s", exc)
                return
            if not manager._admit(address[0], address[1], "TLS"):
                sock.close()  # at once: nothing read from it, no handshake
                continue
            sock.setblocking(False)
            task = manager.loop.create_task(self._handshake(sock, address))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, sock: socket.socket, address: tuple) -> None:
        """The server side of one accepted connection's handshake, within
        `limits.tcp_header_timeout`; the connection is SIP's once it is done."""
        manager = self.manager
        protocol = _TlsConnection(manager, inbound=True, peer=address)
        context = self.contexts.server
        if context is None:  # a reload turned TLS off; the listener stays till restart
            protocol._uncount()
            sock.close()
            return
        try:
            await manager.loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=context,
                ssl_handshake_timeout=manager.admission.limits.tcp_header_timeout,
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            # The loop closed the socket; the connection was never SIP's.
            self.handshake_failed(address, exc)
            protocol._uncount()
            if not protocol.ready.done():
                protocol.ready.set_result(False)
            return
        self.handshakes_done += 1
        if log.isEnabledFor(logging.DEBUG) and protocol.transport is not None:
            ssl_object = protocol.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                subject = (ssl_object.getpeercert() or {}).get("subject")
                log.debug(
                    "TLS from %s: %s %s, client certificate %s",
                    hostport(address[0], address[1]),
                    ssl_object.version(),
                    ssl_object.cipher()[0],
                    subject or "none",
                )

    async def connect(self, host: str, port: int) -> None:
        """Open a TLS connection to host:port (raises OSError, ssl.SSLError on failure);
        it is registered with the manager once the handshake is done."""
        context, server_name = self.contexts.for_peer(host, port)
        await self.manager.loop.create_connection(
            lambda: _TlsConnection(self.manager),
            host,
            port,
            ssl=context,
            server_hostname=server_name or host,
            ssl_handshake_timeout=self.manager.admission.limits.tcp_header_timeout,
        )

    def handshake_failed(self, peer: tuple, exc: BaseException) -> None:
        self.handshake_failures += 1
        reason = _reason(exc)
        manager = self.manager
        manager._warn(
            f"tls_handshake:{reason}",
            manager.loop.time(),
            "TLS handshake from %s failed: %s",
            hostport(peer[0], peer[1]),
            reason,
        )

    def stats(self) -> dict[str, int]:
        return {
            "tls.open": len(self.manager._streams["TLS"]),
            "tls.handshakes": self.handshakes_done,
            "tls.handshake_failed": self.handshake_failures,
        }

    def close(self) -> None:
        for sock in self._listening:
            self.manager.loop.remove_reader(sock.fileno())
            sock.close()
        self._listening.clear()
        for task in list(self.handshakes):
            task.cancel()


def _reason(exc: BaseException) -> str:
    """A handshake failure in one short phrase (OpenSSL's reason where it has one)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "no handshake within limits.tcp_header_timeout"
    return str(exc) or type(exc).__name__
