"""Trunk peers kept alive and watched (SPEC §10 reliability): an OPTIONS to every outbound
address of every trunk every `keepalive` seconds, each address up or down, with events and
counters, and the order outbound calls try them in (sans-IO; the switch feeds it the
transaction layer's answers and its timers).

An address is **up** while it answers: any final response to the OPTIONS (a 404 or 405 too:
the peer is there) but 503, which says it is overloaded. It goes **down** after
`DOWN_AFTER` keep-alives in a row get no response, a transport error or 503, or at once
when an outbound call to it got 408 or a transport error (the call then tries the next
address). It comes back up with the first answer. Before its first answer an address is
`unknown` and is tried like an up one.

Each change is published on the bus (`TrunkStateChanged`) and logged (down as a warning);
`snapshot` gives the live view for `hotline status`, `counters` the totals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from softswitch.call.events import TrunkStateChanged
from softswitch.config import parse_host_port
from softswitch.sip.build import new_request_headers
from softswitch.sip.message import Request, Response
from softswitch.sip.transaction import Target, TransactionLayer

if TYPE_CHECKING:
    from softswitch.call.bus import EventBus
    from softswitch.config import Config, Trunk

log = logging.getLogger("hotline.trunks")

#: Keep-alives in a row without an answer before an address is down.
DOWN_AFTER = 2


class Peer:
    """One outbound address of one trunk."""

    __slots__ = ("trunk", "address", "target", "state", "since", "misses", "next_at", "key")

    def __init__(self, trunk: str, address: str, now: float, transport: str = "UDP") -> None:
        self.trunk = trunk
        self.address = address
        host, port = parse_host_port(address)
        self.target = Target(transport, host, port)  # the trunk's `transport`
        self.state = "unknown"
        self.since = now
        self.misses = 0
        self.next_at = now  # the first keep-alive goes at once
        self.key: tuple | None = None  # the OPTIONS in flight


class TrunkMonitor:
    def __init__(
        self,
        txn: TransactionLayer,
        bus: EventBus,
        contact_for: Callable[[Target], str],
        wall: Callable[[float], float],
    ) -> None:
        self.txn = txn
        self.bus = bus
        self.contact_for = contact_for
        self.wall = wall
        self.peers: dict[tuple[str, str], Peer] = {}
        self.keepalive: dict[str, float] = {}  # trunk -> seconds (0: not kept alive)
        self._by_key: dict[tuple, Peer] = {}
        self.counters = {"options": 0, "answered": 0, "failed": 0, "down": 0, "up": 0}

    # --- configuration -------------------------------------------------------------------
    def configure(self, config: Config, now: float) -> None:
        """Watch the outbound addresses of `config`'s trunks (a reload keeps the state of
        addresses it keeps)."""
        wanted: dict[tuple[str, str], str] = {}  # (trunk, address) -> transport
        self.keepalive = {}
        for trunk in config.trunks:
            self.keepalive[trunk.name] = float(trunk.keepalive)
            for address in trunk.outbound_addresses:
                wanted[(trunk.name, address)] = trunk.sip_transport
        for key in [
            k for k, p in self.peers.items() if wanted.get(k) != p.target.transport
        ]:  # gone, or now reached over another transport: a new peer
            peer = self.peers.pop(key)
            if peer.key is not None:
                self._by_key.pop(peer.key, None)
        for (trunk_name, address), transport in wanted.items():
            if (trunk_name, address) not in self.peers:
                self.peers[(trunk_name, address)] = Peer(trunk_name, address, now, transport)

    # --- what calls use ------------------------------------------------------------------
    def order(self, trunk: Trunk) -> list[str]:
        """`trunk`'s outbound addresses in the order a call tries them: those not down in
        the configured order, then the down ones (tried last rather than never)."""
        addresses = list(trunk.outbound_addresses)
        down = [a for a in addresses if self._state(trunk.name, a) == "down"]
        return [a for a in addresses if a not in down] + down

    def call_failed(self, trunk: str, address: str, why: str, now: float) -> None:
        """An outbound call to `address` got 408 or a transport error: down at once."""
        peer = self.peers.get((trunk, address))
        if peer is not None:
            self._set(peer, "down", why, now)

    def _state(self, trunk: str, address: str) -> str:
        peer = self.peers.get((trunk, address))
        return peer.state if peer is not None else "unknown"

    # --- keep-alives ---------------------------------------------------------------------
    def get_timer(self) -> float | None:
        due = [
            p.next_at
            for p in self.peers.values()
            if p.key is None and self.keepalive.get(p.trunk, 0.0) > 0
        ]
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        for peer in self.peers.values():
            every = self.keepalive.get(peer.trunk, 0.0)
            if every <= 0 or peer.key is not None or peer.next_at > now:
                continue
            peer.next_at = now + every
            self._send_options(peer, now)

    def _send_options(self, peer: Peer, now: float) -> None:
        contact = self.contact_for(peer.target)
        host = contact.split("@", 1)[1].split(";")[0]
        uri = f"sip:{peer.address}"
        headers = new_request_headers("OPTIONS", f"<sip:keepalive@{host}>", f"<{uri}>", host)
        headers.add("contact", f"<{contact}>")
        headers.add("accept", "application/sdp")
        key = self.txn.send_request(Request("OPTIONS", uri, headers), peer.target, now)
        peer.key = key
        self._by_key[key] = peer
        self.counters["options"] += 1

    def owns(self, key: tuple) -> bool:
        return key in self._by_key

    def on_response(self, key: tuple, response: Response, now: float) -> None:
        if response.status < 200:
            return
        peer = self._by_key.pop(key, None)
        if peer is None:
            return
        peer.key = None
        if response.status == 503:
            self._missed(peer, "503 to OPTIONS", now)
            return
        self.counters["answered"] += 1
        peer.misses = 0
        self._set(peer, "up", f"{response.status} to OPTIONS", now)

    def on_failure(self, key: tuple, why: str, now: float) -> None:
        """The OPTIONS got no answer (Timer F) or could not be sent."""
        peer = self._by_key.pop(key, None)
        if peer is None:
            return
        peer.key = None
        self._missed(peer, why, now)

    def _missed(self, peer: Peer, why: str, now: float) -> None:
        self.counters["failed"] += 1
        peer.misses += 1
        if peer.misses >= DOWN_AFTER or peer.state == "unknown":
            self._set(peer, "down", why, now)

    def _set(self, peer: Peer, state: str, why: str, now: float) -> None:
        if peer.state == state:
            return
        peer.state, peer.since = state, now
        self.counters[state] += 1
        if state == "down":
            log.warning("trunk %s peer %s is down: %s", peer.trunk, peer.address, why)
        else:
            log.info("trunk %s peer %s is up: %s", peer.trunk, peer.address, why)
        self.bus.publish(TrunkStateChanged(self.wall(now), peer.trunk, peer.address, state, why))

    def snapshot(self, now: float) -> list[dict[str, object]]:
        """Every watched address: trunk, address, state, seconds in it."""
        return [
            {
                "trunk": p.trunk,
                "address": p.address,
                "state": p.state,
                "seconds": round(max(0.0, now - p.since), 1),
                "keepalive": self.keepalive.get(p.trunk, 0.0),
            }
            for p in self.peers.values()
        ]
