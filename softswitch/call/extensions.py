"""SIP extensions carriers' IMS cores use on the caller's leg, a part of `CallControl`:
reliable provisional responses (RFC 3262, `100rel`) and session timers (RFC 4028, `timer`).

**100rel, as UAS.** A caller whose INVITE requires `100rel`, or supports it on a trunk with
`reliable_provisional` (the default), gets every 180/183 reliably: `Require: 100rel` and an
`RSeq` (§3), passed again at T1, 2·T1, 4·T1 … until its PRACK arrives; with no PRACK after
64·T1 the call is refused with 500. One reliable provisional is outstanding at a time (the
next waits for the PRACK), and a 2xx waits for the PRACK of one that carried SDP (early
media, §3). A PRACK that matches nothing gets 481.

**100rel, as UAC.** The node's INVITEs to trunks say `Supported: 100rel`; a provisional
response with `Require: 100rel` from any far end is PRACKed once (RAck = its RSeq, the
INVITE's CSeq), retransmissions of it are only absorbed, and the dialog's CSeq numbering
goes on from the PRACK's.

**Who refreshes.** A leg's timer keeps who refreshes as `node_refreshes`, apart from the
`refresher` parameter, whose `uac`/`uas` name the roles in the transaction it is carried in
(§7.4, §9): in the caller's INVITE and refreshes `uac` is the caller, in a refresh the node
sends `uac` is the node. (Keeping the parameter as heard made the node read a carrier's
correct `refresher=uac` answer to the node's own UPDATE as "the carrier refreshes", stop
refreshing, and release the call one interval later.)

**Session timers, as UAS** (§9). A caller's `Session-Expires` below the trunk's `min_se`
gets 422 with `Min-SE`. Otherwise the interval is the caller's (or, when the caller supports
`timer` and proposes none, the trunk's `session_expires`), and the refresher the caller's
choice, else the caller when it supports `timer`, else the node. The 2xx and every refresh's
2xx carry `Session-Expires` (and `Require: timer` for a caller that supports it). When the
node refreshes, it sends UPDATE (re-INVITE with its anchored SDP when the caller does not
allow UPDATE) at half the interval; when the caller refreshes and no re-INVITE or UPDATE
comes by `interval - min(32, interval / 3)` s (§10), or the node's refresh gets 408 or 481,
the call is released on every leg: hung up by `system`, SIP cause 408, call variable
`release` = `session_expired`. A re-INVITE or UPDATE from the caller that changes nothing
(no SDP, or its SDP's o= version unchanged) is answered by the node from its anchor, not
relayed to the agent.

**Session timers, as UAC.** The node's INVITEs to trunks say `Supported: timer` and ask for
the trunk's `session_expires` (with its `min_se` as `Min-SE`). A 2xx with `Session-Expires`
starts the leg's timer with the refresher it names (`uac`: the node, which then refreshes as
above, by UPDATE when the far end allows it); a 2xx without one has no session expiration
(§7.2). The far end's refreshes restart it; a missing one releases the call as above. A 422
to the node's INVITE is answered by sending it again, once, with the far end's `Min-SE` as
its `Session-Expires` (§7.3).

Preconditions (RFC 3312) are not supported: an INVITE that requires `precondition` gets the
generic 420 with `Unsupported: precondition` (softswitch/switch.py), since the node reserves
no network resources to report on; one that merely supports it is served without them.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from media import MediaError
from softswitch.call.base import TIMER_PREFIX, ControlBase
from softswitch.call.leg import Leg, LegState
from softswitch.call.session import Session
from softswitch.call.sipcodec import next_invite_headers
from softswitch.sip.build import make_response
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import DialogError, SipParseError
from softswitch.sip.message import Request, Response
from softswitch.sip.transaction import RequestReceived, ResponseReceived

if TYPE_CHECKING:
    from softswitch.config import Config

T1 = 0.5  # RFC 3261 §17.1.1.1
#: RFC 4028 §4: the smallest Session-Expires anyone may ask for.
MIN_SE_FLOOR = 90


class Reliable:
    """A caller leg's reliable provisional responses (RFC 3262 §3)."""

    __slots__ = ("rseq", "sent", "unacked", "interval", "deadline", "held", "waiting")

    def __init__(self) -> None:
        self.rseq = secrets.randbelow(2**31 - 2) + 1  # §3: the first RSeq is random
        self.sent = False  # `rseq` is that of a provisional sent
        self.unacked: Response | None = None  # sent, its PRACK not in yet
        self.interval = T1
        self.deadline = 0.0  # when the call is refused without its PRACK (64·T1)
        self.held: Response | None = None  # a 2xx waiting for the PRACK of SDP sent early
        self.waiting = False  # a newer provisional waits for the outstanding one's PRACK


class SessionTimer:
    """A caller leg's session timer (RFC 4028): the interval, who refreshes ("uac": the
    caller, "uas": the node), and whether the caller supports `timer` (then its responses
    say `Require: timer`)."""

    __slots__ = ("interval", "node_refreshes", "supported", "min_se", "peer_allow")

    def __init__(
        self, interval: int, node_refreshes: bool, supported: bool, min_se: int,
        peer_allow: str | None = None,
    ) -> None:  # fmt: skip
        self.interval = interval
        self.node_refreshes = node_refreshes
        self.supported = supported
        self.min_se = min_se
        # The far end's Allow, when the leg's INVITE is ours (a trunk the node called).
        self.peer_allow = peer_allow

    def param(self, node_sends: bool) -> str:
        """The `refresher` parameter in a transaction the node is the UAC of (`node_sends`)
        or the UAS of."""
        return "uac" if self.node_refreshes == node_sends else "uas"

    def headers(self, node_sends: bool = False) -> list[tuple[str, str]]:
        out = [("session-expires", f"{self.interval};refresher={self.param(node_sends)}")]
        if self.supported:
            out.append(("require", "timer"))
        return out


class SessionTooBriefError(Exception):
    """A Session-Expires below what the node accepts: 422 with `Min-SE: min_se`."""

    def __init__(self, min_se: int) -> None:
        super().__init__(f"Session-Expires below {min_se}")
        self.min_se = min_se


def option_tags(request: Request | Response, name: str) -> set[str]:
    """The option tags of `Require`/`Supported` headers (long or compact form)."""
    return {
        tag.strip().lower()
        for value in request.headers.get_all(name)
        for tag in value.split(",")
        if tag.strip()
    }


def parse_session_expires(value: str) -> tuple[int, str | None]:
    """`1800;refresher=uac` -> (1800, "uac"); raises ValueError."""
    delta, *params = (part.strip() for part in value.split(";"))
    if not delta.isdigit():
        raise ValueError(f"Session-Expires {value!r}")
    refresher = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher" and val.strip().lower() in ("uac", "uas"):
            refresher = val.strip().lower()
    return int(delta), refresher


def negotiate_timer(
    request: Request, session_expires: int, min_se: int, current: SessionTimer | None = None
) -> SessionTimer | None:
    """The session timer of a caller's INVITE (or of its refresh, given the `current` one)
    on a trunk asking `session_expires` (0: the node proposes none) and accepting down to
    `min_se`; raises `SessionTooBriefError` (422) or ValueError (400) for a bad header."""
    supported = "timer" in option_tags(request, "supported") | option_tags(request, "require")
    value = request.headers.get("session-expires")
    floor = max(min_se, MIN_SE_FLOOR)
    if value is None:
        if current is not None:  # a refresh without the header keeps the interval
            return SessionTimer(
                current.interval, current.node_refreshes, supported, floor, current.peer_allow
            )
        if supported and session_expires > 0:
            return SessionTimer(max(session_expires, floor), False, True, floor)
        return None
    interval, refresher = parse_session_expires(value)
    if interval < floor:
        raise SessionTooBriefError(floor)
    if refresher is None or not supported:
        refresher = "uac" if supported else "uas"  # §9: a caller without timer cannot
    # The request's sender is its UAC: `uas` names the node.
    peer_allow = current.peer_allow if current is not None else None
    return SessionTimer(interval, refresher == "uas", supported, floor, peer_allow)


def sdp_origin(body: bytes) -> bytes | None:
    """The o= line of an SDP body (its session id and version), or None."""
    for line in body.splitlines():
        if line.startswith(b"o="):
            return line.strip()
    return None


class Extensions(ControlBase):
    # --- set up when the call starts ---------------------------------------------------
    def _caller_extensions(self, session: Session, request: Request, config: Config) -> None:
        """What the caller's INVITE asks of 100rel and session timers, on its trunk's
        settings (an agent's phone: the defaults); raises `SessionTooBriefError` or ValueError."""
        trunk = next((t for t in config.trunks if t.name == session.trunk), None)
        reliable = trunk.reliable_provisional if trunk is not None else True
        expires = trunk.session_expires if trunk is not None else 1800
        min_se = trunk.min_se if trunk is not None else MIN_SE_FLOOR
        a = session.a
        if "100rel" in option_tags(request, "require") or (
            reliable and "100rel" in option_tags(request, "supported")
        ):
            a.reliable = Reliable()
        a.timer = negotiate_timer(request, expires, min_se)

    # --- 100rel as UAS -----------------------------------------------------------------
    def _send_reliable(self, session: Session, leg: Leg, now: float) -> None:
        """Send `leg.provisional` reliably with the next RSeq, unless one still waits for
        its PRACK (this one then goes when that PRACK comes)."""
        rel = leg.reliable
        assert rel is not None and leg.provisional is not None
        if rel.unacked is not None:
            rel.waiting = True
            return
        base = leg.provisional
        rel.rseq += 1
        rel.sent = True
        rel.unacked = self._a_response(
            session, base.status, base.reason, base.body,
            extra=[("require", "100rel"), ("rseq", str(rel.rseq))],
        )  # fmt: skip
        rel.interval, rel.deadline, rel.waiting = T1, now + 64 * T1, False
        self._respond(leg.invite_key, rel.unacked, now)
        self._start_timer(session, f"{TIMER_PREFIX}prack:{leg.leg_id}", T1, now)

    def _prack_timer(self, session: Session, leg: Leg, now: float) -> None:
        """Retransmit the reliable provisional (T1 doubling); after 64·T1 refuse the call."""
        rel = leg.reliable
        if rel is None or rel.unacked is None or leg.up or leg.over:
            return
        if now >= rel.deadline - 1e-9:
            session.log.warning("no PRACK for the reliable %d: refusing the call",
                                rel.unacked.status)  # fmt: skip
            rel.unacked = None
            self._release(session, now, "failed", "system", 500, phrase="No PRACK")
            return
        rel.interval *= 2
        self._respond(leg.invite_key, rel.unacked, now)
        wait = min(rel.interval, rel.deadline - now)
        self._start_timer(session, f"{TIMER_PREFIX}prack:{leg.leg_id}", wait, now)

    def _on_prack(self, session: Session, leg: Leg, event: RequestReceived, now: float) -> None:
        """A PRACK (RFC 3262 §3): 200 when it acknowledges the latest reliable provisional,
        which lets a held 2xx or the next provisional go; else 481. A PRACK that crossed
        the final response (the provisional had no SDP, so the 2xx did not wait) still
        gets 200: pjsip ends the call on a 481 there."""
        request = event.request
        rel = leg.reliable
        rack = (request.headers.get("rack") or "").split()
        if len(rack) == 3:
            rack[2] = rack[2].upper()
        sent = rel is not None and rel.sent and leg.invite is not None
        if not sent or rack != [str(rel.rseq), str(leg.invite.cseq[0]), "INVITE"]:  # type: ignore[union-attr]
            self._respond(event.key, make_response(request, 481, "No Matching Provisional"), now)
            return
        assert rel is not None
        outstanding, rel.unacked = rel.unacked, None
        self._respond(event.key, make_response(request, 200), now)
        if outstanding is None:
            return
        if rel.held is not None:
            held, rel.held = rel.held, None
            self._respond(leg.invite_key, held, now)
            self._timer_start(session, leg, now)
        elif rel.waiting and not leg.up and not leg.over:
            self._send_reliable(session, leg, now)

    def _final_to_caller(self, session: Session, response: Response, now: float) -> None:
        """Send the caller's final response; a 2xx waits for the PRACK of a reliable
        provisional that carried SDP (RFC 3262 §3). A 2xx starts the session timer."""
        a = session.a
        rel = a.reliable
        if rel is not None:
            unacked = rel.unacked
            if response.status < 300 and unacked is not None and unacked.body:
                rel.held = response
                return
            rel.unacked = None  # a final response ends the retransmissions
        self._respond(a.invite_key, response, now)
        if response.status < 300:
            session.early_body = None  # answered: no more early media
            self._timer_start(session, a, now)

    # --- 100rel as UAC -------------------------------------------------------------------
    def _prack_provisional(
        self, session: Session, leg: Leg, response: Response, now: float
    ) -> bool:
        """A provisional response to the node's INVITE: PRACK it when it is reliable; True
        when it is a retransmission of one already PRACKed (to be ignored)."""
        rseq = response.headers.get("rseq")
        if "100rel" not in option_tags(response, "require") or rseq is None or leg.invite is None:
            return False
        if not rseq.strip().isdigit():
            return False
        number = int(rseq)
        if leg.rack is not None and number <= leg.rack:
            return True
        try:
            early = leg.early if leg.early is not None else Dialog.as_uac(leg.invite, response)
        except (DialogError, SipParseError) as exc:
            session.log.warning("reliable provisional without a usable dialog: %s", exc)
            return False
        leg.early, leg.rack = early, number
        prack = early.new_request(
            "PRACK", extra=[("rack", f"{number} {leg.invite.cseq[0]} INVITE")]
        )
        key = self.txn.send_request(prack, leg.target, now)
        self._clients[key] = (session, leg, "prack", None)
        return False

    # --- session timers ------------------------------------------------------------------
    def _timer_start(self, session: Session, leg: Leg, now: float) -> None:
        """(Re)start the leg's session timer: the node's refresh at half the interval, or
        the deadline for the caller's (§10)."""
        timer = leg.timer
        if timer is None or session.ended:
            return
        if timer.node_refreshes:
            wait = timer.interval / 2
        else:
            wait = timer.interval - min(32.0, timer.interval / 3)
        self._start_timer(session, f"{TIMER_PREFIX}session:{leg.leg_id}", wait, now)

    def _session_timer(self, session: Session, leg: Leg, now: float) -> None:
        timer = leg.timer
        if timer is None or not leg.up or leg.dialog is None:
            return
        if not timer.node_refreshes:
            self._session_expired(session, now, f"no refresh from {leg.leg_id}")
            return
        allow = timer.peer_allow
        if allow is None:  # the caller's leg: its INVITE says what it allows
            allow = (leg.invite.headers.get("allow") or "") if leg.invite is not None else ""
        extra = [
            ("session-expires", f"{timer.interval};refresher={timer.param(True)}"),
            ("supported", "timer"),
            ("contact", self._contact(leg)),
        ]
        body = b""
        method = "UPDATE"
        if "UPDATE" not in allow.upper() and leg.anchored:
            method = "INVITE"  # a caller without UPDATE gets our (unchanged) SDP again
            try:
                body = self.media.offer_local(leg.leg_id)
            except MediaError as exc:
                session.log.warning("session refresh offer refused by media: %s", exc)
                self._session_expired(session, now, "no SDP to refresh with")
                return
            extra.append(("content-type", "application/sdp"))
        request = leg.dialog.new_request(method, body, extra)
        key = self.txn.send_request(request, leg.target, now)
        self._clients[key] = (session, leg, "refresh", None)
        session.log.info("session refresh (%s) sent on %s", method, leg.leg_id)

    def _refresh_answered(
        self, session: Session, leg: Leg, event: ResponseReceived, now: float
    ) -> None:
        """The answer to the node's own session refresh."""
        response = event.response
        status = response.status
        if status < 200:
            return
        if response.cseq[1] == "INVITE" and 200 <= status < 300 and leg.dialog is not None:
            self.txn.send_ack(leg.dialog.ack(response.cseq[0]), leg.target)
            if leg.anchored and response.body:
                try:
                    leg.media.apply_answer(leg.leg_id, response.body)
                except (MediaError, ValueError) as exc:
                    session.log.warning("refresh answer unusable: %s", exc)
        if 200 <= status < 300:
            value = response.headers.get("session-expires")
            if value is not None and leg.timer is not None:
                try:
                    interval, refresher = parse_session_expires(value)
                    leg.timer.interval = max(interval, leg.timer.min_se)
                    if refresher is not None:  # the node sent the refresh: `uac` is the node
                        leg.timer.node_refreshes = refresher == "uac"
                except ValueError:
                    pass
            self._timer_start(session, leg, now)
        elif status in (408, 481):
            self._session_expired(session, now, f"the refresh got {status}")
        else:  # refused (e.g. 491, 405): try again at the next half interval
            session.log.warning("session refresh answered %d; trying again later", status)
            self._timer_start(session, leg, now)

    def _uac_timer(self, session: Session, leg: Leg, response: Response, now: float) -> None:
        """The 2xx to an INVITE the node sent with `Supported: timer`: its `Session-Expires`
        (if any) starts the leg's session timer (§7.2)."""
        invite = leg.invite
        value = response.headers.get("session-expires")
        if invite is None or value is None or "timer" not in option_tags(invite, "supported"):
            return
        try:
            interval, refresher = parse_session_expires(value)
        except ValueError:
            session.log.warning("unreadable Session-Expires %r from %s", value, leg.leg_id)
            return
        floor = MIN_SE_FLOOR
        min_se = invite.headers.get("min-se")
        if min_se is not None and min_se.strip().isdigit():
            floor = max(floor, int(min_se))
        supported = "timer" in option_tags(response, "require")
        leg.timer = SessionTimer(
            max(interval, floor), refresher != "uas", supported, floor,
            response.headers.get("allow") or "",
        )  # fmt: skip
        self._timer_start(session, leg, now)

    def _retry_422(self, session: Session, leg: Leg, response: Response, now: float) -> bool:
        """A 422 to the node's INVITE (§7.3): the same INVITE again, with the far end's
        Min-SE as its Session-Expires; False when that would not be larger (no retry)."""
        invite = leg.invite
        if invite is None or session.ended or leg.state is not LegState.CALLING:
            return False
        asked = invite.headers.get("session-expires")
        wanted = (response.headers.get("min-se") or "").split(";")[0].strip()
        if asked is None or not wanted.isdigit() or not asked.split(";")[0].strip().isdigit():
            return False
        if int(wanted) <= int(asked.split(";")[0]) or int(wanted) > 86400:
            return False
        headers = next_invite_headers(invite)
        headers.set("session-expires", wanted)
        headers.set("min-se", wanted)
        self._invite_again(session, leg, Request("INVITE", invite.uri, headers, invite.body),
                           leg.target, now)  # fmt: skip
        session.log.info("%s asked for Session-Expires >= %s (422): INVITE sent again",
                         leg.leg_id, wanted)  # fmt: skip
        return True

    def _session_expired(self, session: Session, now: float, why: str) -> None:
        session.log.warning("session timer expired (%s): releasing the call", why)
        session.variables["release"] = "session_expired"
        disposition = "answered" if session.answered is not None else "failed"
        self._release(session, now, disposition, "system", 408, leg_reason="session_expired")

    def _caller_refresh(
        self, session: Session, leg: Leg, event: RequestReceived, now: float
    ) -> bool:
        """A re-INVITE/UPDATE from the caller: its Session-Expires is taken (422 when too
        brief); one that changes nothing is answered here from the anchor and restarts the
        timer. False: it changes the session, and is relayed as before."""
        request = event.request
        timer = leg.timer
        if timer is not None:
            try:
                leg.timer = timer = negotiate_timer(request, 0, timer.min_se, timer)
            except SessionTooBriefError as exc:
                self._respond(
                    event.key,
                    make_response(request, 422, extra=[("min-se", str(exc.min_se))]),
                    now,
                )  # fmt: skip
                return True
            except ValueError:
                self._respond(event.key, make_response(request, 400, "Bad Session-Expires"), now)
                return True
        body = request.body
        unchanged = not body or (
            sdp_origin(body) is not None and sdp_origin(body) == sdp_origin(leg.sdp)
        )
        if not unchanged or not leg.anchored or leg.state is LegState.HELD:
            return False
        assert leg.dialog is not None
        leg.dialog.update_target(request)
        answer = b""
        if body:
            try:
                answer = self.media.answer_local(leg.leg_id, body)
            except (MediaError, ValueError) as exc:
                session.log.warning("refresh offer refused by media: %s", exc)
                self._respond(event.key, make_response(request, 488), now)
                return True
        extra = [("contact", self._contact(leg))]
        if answer:
            extra.append(("content-type", "application/sdp"))
        if timer is not None:
            extra += timer.headers()
        self._respond(event.key, make_response(request, 200, body=answer, extra=extra), now)
        self._timer_start(session, leg, now)
        return True
