"""Outbound calls through trunks with failover (SPEC §10), a part of `CallControl`.

A call to an external number tries, in order, the addresses of its trunk (those the trunk
monitor has down go last, `softswitch/trunk_monitor.py`), then those of the other trunks
that dial out, in the configuration's order; each presents its own trunk's hotline number.
It moves on when an attempt gets 503 or 408, a transport error, or no response at all
within the trunk's `failover_timeout` (Timer B's 32 s would be too long for a waiting
caller); the monitor hears of a 408 or a transport error and marks the address down. An
attempt given up for no response is kept: a late 1xx is CANCELled, a late 2xx ACKed and
hung up, so no far end keeps a call the node forgot. Only an attempt that got no 1xx moves
on: once the far end rings, its answer stands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from media import MediaError
from softswitch.call.base import TIMER_PREFIX, ControlBase
from softswitch.call.leg import Leg, LegState
from softswitch.call.session import Session
from softswitch.call.sipcodec import next_invite_headers
from softswitch.sdp import address_family
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import DialogError, SipParseError
from softswitch.sip.message import Request, Response
from softswitch.sip.transaction import Target, hostport

if TYPE_CHECKING:
    from softswitch.config import Trunk


class Attempts:
    """An outbound leg's dialling: the number, the route in use, those left, and the
    transactions given up for no response (cleaned up with the call)."""

    __slots__ = ("number", "trunk", "address", "remaining", "stale")

    def __init__(self, number: str, routes: list[tuple[Trunk, str]]) -> None:
        self.number = number
        self.trunk, self.address = routes[0]
        self.remaining = routes[1:]
        self.stale: list[tuple] = []


def parse_host_port(text: str) -> tuple[str, int]:
    from softswitch.config import parse_host_port as parse  # config imports call modules

    return parse(text)


def trunk_uri(trunk: Trunk, number: str, address: str) -> tuple[str, Target]:
    """The Request-URI of `number` dialled through `trunk` at `address` (its `dial_rules`
    and `uri_scheme`), and where the request goes."""
    host, port = parse_host_port(address)
    dialled = trunk.normalize_dialled(number)
    target = Target(trunk.sip_transport, host, port)  # `transport`: UDP, TCP or TLS
    if trunk.uri_scheme == "tel":
        return f"tel:{dialled}", target
    return f"{trunk.uri_scheme}:{dialled}@{hostport(host, port)}", target


def identity_headers(trunk: Trunk, host: str) -> list[tuple[str, str]]:
    """What presents the hotline on a call out through `trunk` (SPEC SIP-4): its
    P-Asserted-Identity (RFC 3325) as the trunk's scheme, and Privacy when configured."""
    cid = trunk.caller_id
    pai = f"<tel:{cid}>" if trunk.uri_scheme == "tel" else f"<{trunk.uri_scheme}:{cid}@{host}>"
    out = [("p-asserted-identity", pai)]
    if trunk.privacy == "id":
        out.append(("privacy", "id"))
    return out


class Failover(ControlBase):
    #: The order a trunk's addresses are tried in (the switch's trunk monitor).
    peer_order: Callable[[Trunk], list[str]] | None = None
    #: (trunk, address, why, now): an outbound call found the address dead.
    peer_failed: Callable[[str, str, str, float], None] | None = None

    def _outbound_routes(self, session: Session, trunk: Trunk) -> list[tuple[Trunk, str]]:
        """Every (trunk, address) a call through `trunk` may try, in order."""
        routes: list[tuple[Trunk, str]] = []
        for t in (trunk, *(t for t in session.config.trunks if t is not trunk and t.dials_out)):
            if t.caller_id is None:
                continue
            order = self.peer_order(t) if self.peer_order else list(t.outbound_addresses)
            routes += [(t, address) for address in order]
        return routes

    def _start_attempt_timer(self, session: Session, leg: Leg, now: float) -> None:
        assert leg.attempts is not None
        wait = leg.attempts.trunk.failover_timeout
        self._start_timer(session, f"{TIMER_PREFIX}failover:{leg.leg_id}", wait, now)

    def _invite_again(
        self, session: Session, leg: Leg, invite: Request, target: Target, now: float
    ) -> None:
        """Send `invite` (from `next_invite_headers`) as the leg's INVITE, in a new client
        transaction whose answers reach the leg as its first INVITE's did."""
        leg.invite, leg.target, leg.got_provisional = invite, target, False
        leg.invite_key = self.txn.send_request(invite, target, now)
        self._clients[leg.invite_key] = (session, leg, "invite", None)

    def _redial(self, session: Session, leg: Leg, why: str, now: float) -> bool:
        """Send the leg's INVITE to its next route; False when none is left (or the leg
        is past trying: it rang, or the call ended)."""
        attempts = leg.attempts
        if (
            attempts is None
            or not attempts.remaining
            or session.ended
            or leg.state is not LegState.CALLING
            or leg.invite is None
        ):
            return False
        if why in ("408", "transport error", "no response") and self.peer_failed is not None:
            self.peer_failed(attempts.trunk.name, attempts.address, why, now)
        old_trunk, old_address = attempts.trunk, attempts.address
        attempts.trunk, attempts.address = attempts.remaining.pop(0)
        trunk = attempts.trunk
        uri, target = trunk_uri(trunk, attempts.number, attempts.address)
        headers = next_invite_headers(leg.invite)
        headers.set("to", f"<{uri}>")
        if trunk is not old_trunk and trunk.caller_id is not None:
            host = self.contact_for(target).split("@", 1)[1].split(";")[0]
            tag = leg.invite.from_.tag
            cid = trunk.caller_id
            headers.set("from", f'"{cid}" <sip:{cid}@{host}>;tag={tag}')
            headers.remove("privacy")
            for name, value in identity_headers(trunk, host):
                headers.set(name, value)
        body = leg.invite.body
        family = address_family(target.host)
        if leg.anchored and family != address_family(leg.target.host):
            # The next address is of the other family (an SBC pair of IPv4 and IPv6): the
            # offer moves with it, or the SBC would get an address it cannot reach.
            try:
                body = self.media.offer_local(leg.leg_id, family=family)
            except MediaError as exc:
                session.log.warning("no %s offer for %s: %s", family, attempts.address, exc)
                return False
        self._invite_again(session, leg, Request("INVITE", uri, headers, body), target, now)
        self._start_attempt_timer(session, leg, now)
        session.log.warning(
            "trunk %s %s: %s; trying trunk %s %s",
            old_trunk.name, old_address, why, trunk.name, attempts.address,
        )  # fmt: skip
        return True

    def _failover_timer(self, session: Session, leg: Leg, now: float) -> None:
        """No response at all from the attempt within `failover_timeout`: the next route,
        keeping the silent attempt to clean up after."""
        if leg.got_provisional or leg.state is not LegState.CALLING or leg.attempts is None:
            return
        old_key, old_invite, old_target = leg.invite_key, leg.invite, leg.target
        if self._redial(session, leg, "no response", now) and old_key is not None:
            self._clients[old_key] = (session, leg, "stale", (old_invite, old_target, False))
            leg.attempts.stale.append(old_key)

    def _stale_response(
        self, session: Session, leg: Leg, key: tuple, response: Response, extra: tuple,
        now: float,
    ) -> None:  # fmt: skip
        """A late answer to an attempt given up: CANCEL it at its first 1xx, ACK and hang
        up a 2xx (one that crossed the CANCEL too)."""
        invite, target, cancelled = extra
        status = response.status
        if status < 200:
            if not cancelled:
                self.txn.send_cancel(key, now)
                self._clients[key] = (session, leg, "stale", (invite, target, True))
            return
        self._clients.pop(key, None)
        if status >= 300:
            return
        try:
            dialog = Dialog.as_uac(invite, response)
        except (DialogError, SipParseError):
            return
        self.txn.send_ack(dialog.ack(invite.cseq[0]), target)
        self.txn.send_request(dialog.new_request("BYE"), target, now)
        session.log.info("a late answer to a given-up attempt was hung up")
