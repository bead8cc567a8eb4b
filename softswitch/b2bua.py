"""B2BUA call control: a trunk call is queued, rung to an agent, bridged and torn down.

Each call has an inbound leg (`a`, the carrier's dialog, where we are UAS) and at most one
current outbound leg (`b`, towards the agent's phone, where we are UAC). The ACD engine picks
agents and keeps time for ring timeouts and maximum waits; this module turns its commands into
SIP and SIP events back into ACD inputs, and writes the CDR and queue log as things happen.

All signalling goes through the sans-IO `TransactionLayer`; the only I/O here is the CDR
store. Times: `now` is monotonic (as for the transaction layer), CDR rows get wall-clock
`now + wall_offset`.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from acd import Acd, AcdError, CancelOffer, OfferCall, QueueEvent, QueueTimeout
from media import MediaEngine, MediaError, PassThroughMedia
from softswitch.sip.build import make_response, new_call_id, new_tag
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import DialogError, SipParseError, TransactionError
from softswitch.sip.location import LocationService
from softswitch.sip.message import Headers, Request, Response, parse_uri
from softswitch.sip.transaction import (
    AckReceived,
    AckTimeout,
    RequestReceived,
    ResponseReceived,
    Target,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.transaction import State as TxnState
from softswitch.transport import bare_host

log = logging.getLogger("hotline.call")

# Headers describing the caller that travel from the trunk leg to the agent leg (SIP-4).
IDENTITY_HEADERS = ("p-asserted-identity", "privacy", "diversion", "history-info")
# Server transaction states in which a final response is still owed (RFC 3261 §17.2).
PENDING = (TxnState.TRYING, TxnState.PROCEEDING)
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE, REGISTER"


class CallState(Enum):
    QUEUED = "queued"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class Leg:
    """One side of a call: its dialog (once known) and where to send to."""

    __slots__ = (
        "leg_id",
        "direction",
        "target",
        "dialog",
        "invite",
        "invite_key",
        "agent_id",
        "got_provisional",
        "cancelled",
        "cancel_sent",
        "ack",
        "ended",
        "media",
    )

    def __init__(self, leg_id: str, direction: str, target: Target) -> None:
        self.leg_id = leg_id
        self.direction = direction
        self.target = target
        self.dialog: Dialog | None = None
        self.invite: Request | None = None
        self.invite_key: tuple | None = None
        self.agent_id: str | None = None
        self.got_provisional = False
        self.cancelled = False
        self.cancel_sent = False
        self.ack: Request | None = None
        self.ended = False
        self.media: MediaEngine = PassThroughMedia()


class Call:
    __slots__ = (
        "call_id",
        "state",
        "a",
        "b",
        "trunk",
        "caller",
        "called",
        "queue",
        "agent_id",
        "identity",
        "started",
        "answered",
        "log",
        "legs",
        "relays",
    )

    def __init__(self, call_id: str, a: Leg, trunk: str, caller: str, called: str) -> None:
        self.call_id = call_id
        self.state = CallState.QUEUED
        self.a = a
        self.b: Leg | None = None
        self.trunk = trunk
        self.caller = caller
        self.called = called
        self.queue: str | None = None
        self.agent_id: str | None = None
        self.identity: list[tuple[str, str]] = []
        self.started = 0.0
        self.answered: float | None = None
        self.log: logging.LoggerAdapter = logging.LoggerAdapter(log, {})
        self.legs: list[Leg] = [a]
        self.relays: list[tuple] = []  # client transactions of in-dialog requests we relayed


class _CallLog(logging.LoggerAdapter):
    """Prefixes every line with the call id and the inbound Call-ID (STYLE §3)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"call={extra['call']} sip={extra['sip']} {msg}", kwargs


class B2bua:
    """Call control for queued trunk calls."""

    def __init__(
        self,
        txn: TransactionLayer,
        acd: Acd,
        location: LocationService,
        cdr: Any,
        media: MediaEngine,
        contact_for: Callable[[Target], str],
        realm: str,
        timeout_response: Callable[[str], int],
        wall_offset: float = 0.0,
        cleanup_delay: float = 40.0,
        direct_media: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.txn = txn
        self.acd = acd
        self.location = location
        self.cdr = cdr
        self.media = media
        self.passthrough = PassThroughMedia()
        # (trunk, agent) -> keep RTP off the node for this pair (direct_media in the config)
        self.direct_media = direct_media or (lambda trunk, agent: False)
        self.contact_for = contact_for
        self.realm = realm
        self.timeout_response = timeout_response
        self.wall_offset = wall_offset
        self.cleanup_delay = cleanup_delay
        self.calls: dict[str, Call] = {}
        self._by_invite: dict[tuple, Call] = {}  # a-leg INVITE server txn -> call
        self._by_origin: dict[tuple, Call] = {}  # caller's (Call-ID, From tag, CSeq) -> call
        self._clients: dict[tuple, tuple] = {}  # client txn -> (call, leg, purpose, extra)
        self._dialogs: dict[tuple, tuple[Call, Leg]] = {}
        self._graveyard: deque[tuple[float, list[tuple], list[tuple]]] = deque()
        self._ids = itertools.count(1)
        self.counters = {"calls": 0, "answered": 0, "abandoned": 0, "timeouts": 0}

    # --- timers --------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        acd_timer = self.acd.get_timer()
        grave = self._graveyard[0][0] if self._graveyard else None
        if acd_timer is None:
            return grave
        return acd_timer if grave is None else min(acd_timer, grave)

    def handle_timer(self, now: float) -> None:
        self.apply(self.acd.handle_timer(now), now)
        while self._graveyard and self._graveyard[0][0] <= now:
            _, client_keys, dialog_ids = self._graveyard.popleft()
            for key in client_keys:
                self._clients.pop(key, None)
            for dialog_id in dialog_ids:
                self._dialogs.pop(dialog_id, None)

    def wall(self, now: float) -> float:
        return now + self.wall_offset

    # --- a new call from a trunk ---------------------------------------------------------
    def start_call(
        self,
        ev: RequestReceived,
        trunk: str,
        caller: str,
        called: str,
        queue: str,
        now: float,
    ) -> None:
        request = ev.request
        origin = _origin(request)
        if origin in self._by_origin:
            # RFC 3261 §8.2.2.2: the caller's INVITE again under another branch (it came by a
            # second path) is a merged request: 482, not a second call in the queue.
            self._respond(ev.key, make_response(request, 482, to_tag=new_tag()), now)
            return
        call_id = f"{int(self.wall(now))}-{next(self._ids)}"
        a = Leg(f"{call_id}-a", "in", ev.source)
        a.media = self.media
        a.invite = request
        a.invite_key = ev.key
        call = Call(call_id, a, trunk, caller, called)
        call.log = _CallLog(log, {"call": call_id, "sip": request.call_id})
        call.started = now
        call.queue = queue
        call.identity = [
            (name, value) for name, value in request.headers if name in IDENTITY_HEADERS
        ]
        try:
            a.dialog = Dialog.as_uas(request, new_tag())
        except (DialogError, SipParseError) as exc:
            self._respond(ev.key, make_response(request, 400, str(exc)), now)
            return
        if a.dialog.route_set:
            a.target = self._hop_target(a.dialog, ev.source.transport)
        self.calls[call_id] = call
        self._by_invite[ev.key] = call
        self._by_origin[origin] = call
        self._dialogs[a.dialog.id] = (call, a)
        self.counters["calls"] += 1
        wall = self.wall(now)
        self.cdr.call_started(
            call_id=call_id,
            sip_call_id=request.call_id,
            trunk=trunk,
            caller=caller,
            called=called,
            start=wall,
            pai=request.headers.get("p-asserted-identity"),
            diversion=request.headers.get("diversion"),
        )
        self.cdr.leg_started(
            leg_id=a.leg_id,
            call_id=call_id,
            direction="in",
            sip_call_id=request.call_id,
            peer=f"{ev.source.host}:{ev.source.port}",
            start=wall,
        )
        call.log.info(
            "incoming from trunk %s caller=%s called=%s -> queue %s", trunk, caller, called, queue
        )
        # The caller waits with ringback (no music on hold until the media engine exists).
        self._respond(ev.key, self._a_response(call, 180), now)
        self.cdr.call_update(call_id, queue=queue, queued=wall)
        self.acd_input(now, self.acd.enqueue, call_id, queue, now)

    def _a_response(self, call: Call, status: int, reason: str = "", body: bytes = b"") -> Response:
        a = call.a
        assert a.invite is not None and a.dialog is not None
        extra = [("contact", f"<{self.contact_for(a.target)}>")]
        if body:
            extra.append(("content-type", "application/sdp"))
        return make_response(
            a.invite, status, reason, to_tag=a.dialog.local_tag, body=body, extra=extra
        )

    # --- ACD commands -------------------------------------------------------------------
    def acd_input(self, now: float, method: Callable[..., list[Any]], *args: Any) -> None:
        """Call `method(*args)` on the ACD and carry out what it answers.

        An `AcdError` (e.g. a 200 OK racing a ring-timeout CANCEL) is a state mismatch between
        the network and the queue, not a reason to lose the call: it is logged and ignored.
        """
        try:
            commands = method(*args)
        except AcdError as exc:
            log.warning("ACD refused %s%s: %s", method.__name__, args, exc)
            return
        self.apply(commands, now)

    def apply(self, commands: Iterable[Any], now: float) -> None:
        for cmd in commands:
            if isinstance(cmd, QueueEvent):
                self.cdr.queue_event(
                    self.wall(cmd.at), cmd.call_id, cmd.queue, cmd.agent_id, str(cmd.kind), cmd.data
                )
            elif isinstance(cmd, OfferCall):
                self._offer(cmd, now)
            elif isinstance(cmd, CancelOffer):
                self._cancel_offer(cmd, now)
            elif isinstance(cmd, QueueTimeout):
                self._queue_timeout(cmd, now)

    def _offer(self, cmd: OfferCall, now: float) -> None:
        call = self.calls.get(cmd.call_id)
        if call is None or call.state == CallState.ENDED:
            return
        bindings = self.location.lookup(cmd.agent_id, now)
        if not bindings:
            # The registration vanished between the ACD's choice and now: log the agent out,
            # which puts the call back at the head of the queue.
            call.log.warning("agent %s has no registered contact", cmd.agent_id)
            self.acd_input(now, self.acd.agent_unavailable, cmd.agent_id, now)
            return
        binding = bindings[0]
        a = call.a
        assert a.invite is not None
        leg = Leg(
            f"{call.call_id}-b{len(call.legs)}",
            "out",
            phone_target(binding.contact, binding.source, binding.transport),
        )
        leg.agent_id = cmd.agent_id
        host = self.contact_for(leg.target).split("@", 1)[1].split(";")[0]
        headers = Headers()
        headers.add("max-forwards", "70")
        caller = call.caller or "anonymous"
        headers.add("from", f'"{caller}" <sip:{caller}@{host}>;tag={new_tag()}')
        headers.add("to", f"<sip:{cmd.agent_id}@{self.realm}>")
        headers.add("call-id", new_call_id(host))
        headers.add("cseq", "1 INVITE")
        headers.add("contact", f"<{self.contact_for(leg.target)}>")
        headers.add("allow", ALLOW)
        for name, value in call.identity:
            headers.add(name, value)
        # Associated data for the agent's desktop (screen pop, INT-1).
        headers.add("x-hotline-call-id", call.call_id)
        headers.add("x-hotline-queue", cmd.queue)
        headers.add("x-hotline-called", call.called)
        leg.media = self.passthrough if self.direct_media(call.trunk, cmd.agent_id) else self.media
        try:
            body = leg.media.offer(a.leg_id, leg.leg_id, a.invite.body or None) or b""
        except MediaError as exc:
            # The caller's SDP cannot be served (no G.711) or no RTP ports are left. The leg
            # was never offered: it joins no CDR (it has no row) and only its media goes.
            status = 488 if isinstance(exc, ValueError) else 503
            call.log.warning("media refused the caller's offer: %s", exc)
            leg.media.release(leg.leg_id)
            self._fail_call(call, status, now)
            return
        call.legs.append(leg)
        call.b = leg
        call.state = CallState.RINGING
        if body:
            headers.add("content-type", a.invite.headers.get("content-type") or "application/sdp")
        invite = Request("INVITE", binding.contact, headers, body)
        leg.invite = invite
        leg.invite_key = self.txn.send_request(invite, leg.target, now)
        self._clients[leg.invite_key] = (call, leg, "invite", None)
        wall = self.wall(now)
        self.cdr.leg_started(
            leg_id=leg.leg_id,
            call_id=call.call_id,
            direction="out",
            sip_call_id=invite.call_id,
            peer=f"{leg.target.host}:{leg.target.port}",
            start=wall,
        )
        self.cdr.call_update(call.call_id, agent=cmd.agent_id, ringing=wall)
        call.log.info("offering to agent %s at %s", cmd.agent_id, binding.contact)

    def _cancel_offer(self, cmd: CancelOffer, now: float) -> None:
        call = self.calls.get(cmd.call_id)
        if call is None:
            return
        # The ringing leg of that agent, which need not be `call.b` any more: when carrying
        # out one ACD command list fails a call (488 for its SDP), the ACD's nested answer may
        # already have offered this call to the next agent before this CancelOffer is read.
        leg = next(
            (
                x
                for x in reversed(call.legs)
                if x.agent_id == cmd.agent_id and not (x.cancelled or x.ended) and x.dialog is None
            ),
            None,
        )
        if leg is None:
            return
        call.log.info("stop ringing agent %s (%s)", cmd.agent_id, cmd.reason)
        if call.b is leg:
            call.b = None
            if call.state == CallState.RINGING:
                call.state = CallState.QUEUED
        self._cancel_leg(call, leg, now, cmd.reason)

    def _cancel_leg(self, call: Call, leg: Leg, now: float, reason: str) -> None:
        leg.cancelled = True
        self.cdr.leg_update(leg.leg_id, disposition=reason, end=self.wall(now))
        if leg.got_provisional:
            self._send_cancel(call, leg, now)
        # else: RFC 3261 §9.1 — CANCEL only once a provisional response has arrived

    def _send_cancel(self, call: Call, leg: Leg, now: float) -> None:
        if leg.cancel_sent or leg.invite_key is None:
            return
        leg.cancel_sent = True
        key = self.txn.send_cancel(leg.invite_key, now)
        if key is not None:
            self._clients[key] = (call, leg, "cancel", None)

    def _queue_timeout(self, cmd: QueueTimeout, now: float) -> None:
        call = self.calls.get(cmd.call_id)
        if call is None or call.state == CallState.ENDED:
            return
        status = self.timeout_response(cmd.queue)
        call.log.info("max wait reached in queue %s after %.1f s", cmd.queue, cmd.waited)
        self.counters["timeouts"] += 1
        self._respond(call.a.invite_key, self._a_response(call, status), now)
        self._end(call, now, "timeout", "system", status)

    # --- responses on our client transactions -------------------------------------------
    def on_response(self, ev: ResponseReceived, now: float) -> None:
        entry = self._clients.get(ev.key)
        if entry is None:
            return
        call, leg, purpose, extra = entry
        status = ev.response.status
        if purpose == "invite":
            self._invite_response(call, leg, ev, now)
        elif purpose == "relay":
            if status < 200 and call.state == CallState.ENDED and ev.key[1] == "INVITE":
                self.txn.send_cancel(ev.key, now)  # see _end_relays (RFC 3261 §9.1)
            self._relay_response(call, leg, ev.response, extra, now)
        if status >= 200 and purpose != "invite":
            self._clients.pop(ev.key, None)

    def _invite_response(self, call: Call, leg: Leg, ev: ResponseReceived, now: float) -> None:
        response = ev.response
        status = response.status
        if status < 200:
            leg.got_provisional = True  # any 1xx, 100 included, allows a CANCEL (§9.1)
            if leg.cancelled:
                self._send_cancel(call, leg, now)
                return
            if status == 100:
                return
            if call.b is leg and call.state == CallState.RINGING:
                try:
                    body = leg.media.answer(leg.leg_id, call.a.leg_id, response.body)
                except MediaError as exc:
                    call.log.warning("early media SDP from agent unusable: %s", exc)
                    body = b""
                self._respond(call.a.invite_key, self._a_response(call, status, body=body), now)
                self.cdr.leg_update(leg.leg_id, ringing=self.wall(now))
            return
        if status < 300:
            self._agent_2xx(call, leg, ev, now)
            return
        # A final failure: the phone refused, is busy, or the CANCEL took effect (487).
        self._clients.pop(ev.key, None)
        leg.media.release(leg.leg_id)
        leg.ended = True
        if leg.cancelled:
            return
        self.cdr.leg_update(
            leg.leg_id, end=self.wall(now), sip_cause=status, disposition="rejected"
        )
        if call.b is leg:
            call.b = None
            if call.state == CallState.RINGING:
                call.state = CallState.QUEUED
            call.log.info("agent %s answered %d; trying the next agent", leg.agent_id, status)
            assert leg.agent_id is not None
            self.acd_input(
                now, self.acd.agent_rejected, call.call_id, leg.agent_id, now, str(status)
            )

    def _agent_2xx(self, call: Call, leg: Leg, ev: ResponseReceived, now: float) -> None:
        response = ev.response
        assert leg.invite is not None
        to_tag = response.to.tag
        if leg.dialog is not None and ev.retransmission and leg.dialog.remote_tag == to_tag:
            if leg.ack is not None:
                self.txn.send_ack(leg.ack, leg.target)  # our ACK was lost: resend (§13.2.2.4)
            return
        try:
            dialog = Dialog.as_uac(leg.invite, response)
        except (DialogError, SipParseError) as exc:
            call.log.warning("unusable 2xx from agent: %s", exc)
            return
        ack = dialog.ack(leg.invite.cseq[0])
        self.txn.send_ack(ack, leg.target)
        if (
            leg.dialog is not None
            or leg.cancelled
            or call.b is not leg
            or call.state
            in (
                CallState.ENDED,
                CallState.ANSWERED,
            )
        ):
            # A forked second 2xx, or an answer after we gave up on this phone: hang it up.
            self._bye_dialog(call, leg, dialog, now)
            return
        try:
            body = leg.media.answer(leg.leg_id, call.a.leg_id, response.body)
        except MediaError as exc:
            # The phone answered with SDP we cannot bridge: hang it up, try the next agent.
            call.log.warning("agent %s answered with unusable SDP: %s", leg.agent_id, exc)
            self._bye_dialog(call, leg, dialog, now)
            call.b = None
            call.state = CallState.QUEUED
            leg.media.release(leg.leg_id)
            self.cdr.leg_update(leg.leg_id, end=self.wall(now), disposition="bad_sdp")
            self.acd_input(now, self.acd.agent_rejected, call.call_id, leg.agent_id, now, "sdp")
            return
        leg.dialog = dialog
        leg.ack = ack
        self._dialogs[dialog.id] = (call, leg)
        call.state = CallState.ANSWERED
        call.agent_id = leg.agent_id
        call.answered = now
        self.counters["answered"] += 1
        self._respond(call.a.invite_key, self._a_response(call, 200, body=body), now)
        wall = self.wall(now)
        self.cdr.leg_update(leg.leg_id, answer=wall, sip_cause=response.status)
        self.cdr.call_update(call.call_id, answer=wall, agent=leg.agent_id, wait=now - call.started)
        self.cdr.leg_update(call.a.leg_id, answer=wall)
        call.log.info("answered by agent %s", leg.agent_id)
        assert leg.agent_id is not None
        self.acd_input(now, self.acd.agent_answered, call.call_id, leg.agent_id, now)

    def on_timeout(self, ev: TransactionTimeout | TransportError, now: float) -> None:
        entry = self._clients.pop(ev.key, None)
        if entry is None:
            return
        call, leg, purpose, extra = entry
        if purpose == "invite" and not leg.cancelled and call.b is leg:
            call.b = None
            if call.state == CallState.RINGING:
                call.state = CallState.QUEUED
            leg.ended = True
            leg.media.release(leg.leg_id)
            self.cdr.leg_update(
                leg.leg_id, end=self.wall(now), sip_cause=408, disposition="no_response"
            )
            call.log.info("agent %s phone did not respond", leg.agent_id)
            assert leg.agent_id is not None
            self.acd_input(now, self.acd.agent_rejected, call.call_id, leg.agent_id, now, "408")
        elif purpose == "relay":
            server_key, origin = extra
            request = self.txn.server_request(server_key)
            if request is not None:
                self._respond(server_key, make_response(request, 408), now)

    # --- requests from the peers ---------------------------------------------------------
    def on_cancel(self, ev: RequestReceived, now: float) -> None:
        """CANCEL from the trunk (§9.2): 200 to the CANCEL, 487 to the INVITE."""
        if ev.cancelled is None:
            self._respond(ev.key, make_response(ev.request, 481), now)
            return
        call = self._by_invite.get(ev.cancelled)
        if call is None:
            # The INVITE already got its final answer: the CANCEL has no effect (§9.2).
            self._respond(ev.key, make_response(ev.request, 200), now)
            return
        self._respond(ev.key, make_response(ev.request, 200), now)
        if call.state in (CallState.ANSWERED, CallState.ENDED):
            return
        self._caller_gone(call, now)

    def _caller_gone(self, call: Call, now: float) -> None:
        """The caller left a call not yet answered (CANCEL, or BYE in the early dialog):
        487 to its INVITE, the call leaves the queue, a ringing agent is cancelled."""
        self._respond(call.a.invite_key, self._a_response(call, 487), now)
        call.log.info("caller left while %s", call.state.value)
        self.counters["abandoned"] += 1
        leg = call.b
        call.b = None
        self._end(call, now, "abandoned", "caller", 487)
        self.acd_input(now, self.acd.abandon, call.call_id, now)
        if leg is not None and not leg.cancelled:
            self._cancel_leg(call, leg, now, "caller_cancelled")

    def on_ack(self, ev: AckReceived, now: float) -> None:
        found = self._find_dialog(ev.request)
        if found is not None:
            call, leg = found
            # RFC 3261 §13.2.2.4: the ACK of our 2xx carries the INVITE's CSeq number; an ACK
            # that comes before the 2xx (or belongs to a re-INVITE) confirms nothing.
            if (
                leg.dialog is not None
                and leg.invite is not None
                and call.state == CallState.ANSWERED
                and ev.request.cseq[0] == leg.invite.cseq[0]
            ):
                leg.dialog.confirmed = True

    def on_ack_timeout(self, ev: AckTimeout, now: float) -> None:
        call = self._by_invite.get(ev.key)
        if call is None or call.state == CallState.ENDED:
            return
        call.log.warning("caller never acknowledged our 200 OK; releasing the call")
        self._hangup(call, call.a, now, "system", 408)

    def in_dialog(self, ev: RequestReceived, now: float) -> bool:
        """Handle a request carrying a To tag. False when no dialog matches (caller sends 481)."""
        found = self._find_dialog(ev.request)
        if found is None:
            return False
        call, leg = found
        request = ev.request
        assert leg.dialog is not None
        try:
            leg.dialog.check_remote_cseq(request)
        except DialogError as exc:
            self._respond(ev.key, make_response(request, 500, str(exc)), now)
            return True
        if request.method == "BYE":
            self._respond(ev.key, make_response(request, 200), now)
            if leg is call.a and call.state in (CallState.QUEUED, CallState.RINGING):
                # RFC 3261 §15: the caller may BYE an early dialog; §15.1.2: the INVITE still
                # pending in it gets 487, as for a CANCEL. Else it would wait in the queue.
                self._caller_gone(call, now)
                return True
            side = "caller" if leg is call.a else "agent"
            self._hangup(call, leg, now, side, None)
            return True
        other = self._other(call, leg)
        if other is None or other.dialog is None or other.ended:
            self._respond(ev.key, make_response(request, 480, "Peer not connected"), now)
            return True
        if request.method in ("INVITE", "UPDATE"):
            leg.dialog.update_target(request)
        if request.method == "INFO":
            digit = dtmf_from_info(request)
            if digit is not None:
                self.on_dtmf(call, leg.leg_id, digit, "info")
        body = request.body
        if request.method in ("INVITE", "UPDATE"):
            try:
                body = self._call_media(call).offer(leg.leg_id, other.leg_id, body or None) or b""
            except MediaError as exc:
                call.log.warning("re-offer refused by media: %s", exc)
                self._respond(ev.key, make_response(request, 488), now)
                return True
        extra = [
            (n, v)
            for n, v in request.headers
            if n in ("content-type", "event", "subscription-state", "info-package")
        ]
        relayed = other.dialog.new_request(request.method, body, extra)
        if request.method in ("INVITE", "UPDATE"):
            relayed.headers.add("contact", f"<{self.contact_for(other.target)}>")
        key = self.txn.send_request(relayed, other.target, now)
        self._clients[key] = (call, other, "relay", (ev.key, leg))
        call.relays.append(key)
        call.log.info(
            "relayed %s from the %s", request.method, "caller" if leg is call.a else "agent"
        )
        return True

    def _relay_response(
        self, call: Call, leg: Leg, response: Response, extra: tuple, now: float
    ) -> None:
        server_key, origin = extra
        request = self.txn.server_request(server_key)
        status = response.status
        if status == 100:
            return
        if 200 <= status < 300 and response.cseq[1] == "INVITE" and leg.dialog is not None:
            # We terminate the re-INVITE on this side and answer the other side ourselves.
            self.txn.send_ack(leg.dialog.ack(response.cseq[0]), leg.target)
            leg.dialog.update_target(response)
        if request is None:
            return
        body = response.body
        if response.cseq[1] in ("INVITE", "UPDATE") and 180 <= status < 300:
            try:
                body = self._call_media(call).answer(leg.leg_id, origin.leg_id, body)
            except MediaError as exc:
                call.log.warning("re-answer refused by media: %s", exc)
                status, body = 488, b""
        extra_headers = [(n, v) for n, v in response.headers if n == "content-type"] if body else []
        if response.cseq[1] in ("INVITE", "UPDATE") and status < 300:
            extra_headers.append(("contact", f"<{self.contact_for(origin.target)}>"))
        reply = make_response(request, status, response.reason, body=body, extra=extra_headers)
        self._respond(server_key, reply, now)

    # --- tear-down -----------------------------------------------------------------------
    def _hangup(self, call: Call, from_leg: Leg, now: float, side: str, cause: int | None) -> None:
        """One side hung up (or we release): BYE the other confirmed leg(s), end the call."""
        for leg in (call.a, call.b):
            if leg is None or leg is from_leg or leg.ended or leg.dialog is None:
                continue
            if leg is call.a and call.state != CallState.ANSWERED:
                continue
            self._bye_dialog(call, leg, leg.dialog, now)
        if from_leg is not None and side == "system" and from_leg.dialog is not None:
            self._bye_dialog(call, from_leg, from_leg.dialog, now)
        agent = call.agent_id
        was_answered = call.state == CallState.ANSWERED
        self._end(call, now, "answered" if was_answered else "failed", side, cause)
        if was_answered and agent is not None:
            self.acd_input(now, self.acd.call_ended, call.call_id, agent, now)

    def _bye_dialog(self, call: Call, leg: Leg, dialog: Dialog, now: float) -> None:
        bye = dialog.new_request("BYE")
        key = self.txn.send_request(bye, leg.target, now)
        self._clients[key] = (call, leg, "bye", None)
        leg.ended = True

    def _end(self, call: Call, now: float, disposition: str, side: str, cause: int | None) -> None:
        if call.state == CallState.ENDED:
            return
        wall = self.wall(now)
        talk = (now - call.answered) if call.answered is not None else 0.0
        wait = (call.answered if call.answered is not None else now) - call.started
        call.state = CallState.ENDED
        fields: dict[str, Any] = {
            "end": wall,
            "talk": talk,
            "wait": wait,
            "disposition": disposition,
            "hangup_side": side,
        }
        if cause is not None:
            fields["sip_cause"] = cause
        self.cdr.call_update(call.call_id, **fields)
        for leg in call.legs:
            leg.media.release(leg.leg_id)
            if not leg.cancelled:
                self.cdr.leg_update(leg.leg_id, end=wall)
            leg.ended = True
        self._end_relays(call, now)
        call.log.info("ended: %s, hung up by %s, talk %.1f s", disposition, side, talk)
        self.calls.pop(call.call_id, None)
        if call.a.invite_key is not None:
            self._by_invite.pop(call.a.invite_key, None)
        if call.a.invite is not None and self._by_origin.get(_origin(call.a.invite)) is call:
            del self._by_origin[_origin(call.a.invite)]
        dialog_ids = [leg.dialog.id for leg in call.legs if leg.dialog is not None]
        client_keys = [k for leg in call.legs if (k := leg.invite_key) is not None]
        self._graveyard.append((now + self.cleanup_delay, client_keys, dialog_ids))

    def _end_relays(self, call: Call, now: float) -> None:
        """In-dialog requests still pending when the call ends: RFC 3261 §15.1.2 answers the
        one we received with 487, and §9.1 CANCELs a relayed re-INVITE that got only a 1xx
        (its Timer B is off after a provisional, so it would wait for ever otherwise); one
        without a provisional yet is CANCELled when its first 1xx comes, or ends by Timer B."""
        for key in call.relays:
            entry = self._clients.get(key)
            if entry is None:
                continue  # already answered or timed out
            server_key, _origin = entry[3]
            request = self.txn.server_request(server_key)
            if request is not None and self.txn.server_state(server_key) in PENDING:
                self._respond(server_key, make_response(request, 487), now)
            if key[1] == "INVITE" and self.txn.client_state(key) is TxnState.PROCEEDING:
                self.txn.send_cancel(key, now)  # else on_response does at the first 1xx
        call.relays.clear()

    def shutdown(self, now: float) -> None:
        """Node stopping: release every call cleanly so no CDR is left open."""
        for call in list(self.calls.values()):
            if call.state == CallState.ANSWERED:
                self._hangup(call, call.a, now, "system", 503)
                continue
            leg = call.b
            self._respond(call.a.invite_key, self._a_response(call, 503), now)
            self._end(call, now, "shutdown", "system", 503)
            if leg is not None:
                self._cancel_leg(call, leg, now, "shutdown")

    # --- helpers -------------------------------------------------------------------------
    def _call_media(self, call: Call) -> MediaEngine:
        """The engine serving the call's connected legs (the answered agent leg's choice)."""
        return call.b.media if call.b is not None else call.a.media

    def _fail_call(self, call: Call, status: int, now: float) -> None:
        """Refuse a not yet answered call (e.g. 488 for SDP we cannot serve)."""
        self._respond(call.a.invite_key, self._a_response(call, status), now)
        self._end(call, now, "failed", "system", status)
        self.acd_input(now, self.acd.abandon, call.call_id, now)

    def on_media_event(self, event: Any, now: float) -> None:
        """Events of the RTP engine: a dead media path releases its call (MED-3)."""
        leg_id = getattr(event, "leg_id", None)
        if leg_id is None:
            return
        call = self.calls.get(leg_id.rsplit("-", 1)[0])
        if call is None:
            return
        kind = type(event).__name__
        if kind == "RtpTimeout":
            leg = next((x for x in call.legs if x.leg_id == leg_id), None)
            if leg is None or leg.ended or call.state != CallState.ANSWERED:
                return
            call.log.warning("no RTP on %s for %d ms: releasing the call", leg_id, event.silent_ms)
            self._hangup(call, leg, now, "system", 408)  # BYE to both sides
        elif kind == "DtmfDigit":
            self.on_dtmf(call, leg_id, event.digit, event.source)

    def on_dtmf(self, call: Call, leg_id: str, digit: str, source: str) -> None:
        """A key pressed on a leg: RFC 4733, in-band or SIP INFO (the IVR will listen here)."""
        call.log.info("DTMF %s on %s (%s)", digit, leg_id, source)

    def _find_dialog(self, request: Request) -> tuple[Call, Leg] | None:
        try:
            local = request.to.tag
            remote = request.from_.tag
        except SipParseError:
            return None
        if local is None or remote is None:
            return None
        return self._dialogs.get((request.call_id, local, remote))

    @staticmethod
    def _other(call: Call, leg: Leg) -> Leg | None:
        return call.b if leg is call.a else call.a

    def _respond(self, key: tuple | None, response: Response, now: float) -> None:
        if key is None:
            return
        try:
            self.txn.send_response(key, response, now)
        except TransactionError as exc:
            log.debug("response %d not sent: %s", response.status, exc)

    @staticmethod
    def _hop_target(dialog: Dialog, transport: str) -> Target:
        host, port, hop_transport = dialog.next_hop()
        return Target(hop_transport or transport, bare_host(host), port or 5060)


def _origin(invite: Request) -> tuple[str, str | None, int]:
    """What identifies a caller's INVITE across paths: Call-ID, From tag, CSeq number."""
    return (invite.call_id, invite.from_.tag, invite.cseq[0])


def dtmf_from_info(request: Request) -> str | None:
    """The key of a SIP INFO carrying DTMF (application/dtmf-relay `Signal=5`, or
    application/dtmf `5`), as desk phones and pjsip send it; None for other INFO bodies."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                value = value.strip()
                return value if value in DTMF_KEYS else None
        return None
    if content_type == "application/dtmf":
        return text if text in DTMF_KEYS else None
    return None


DTMF_KEYS = frozenset("0123456789*#ABCD")


def phone_target(contact: str, source: tuple[str, int], transport: str) -> Target:
    """Where to send requests for a registered phone.

    Over TCP the phone's own connection is reused (its listening port may be closed to us).
    Over UDP the Contact is used when its host is the address the REGISTER came from; when
    the two differ the phone sits behind NAT and its private Contact is unreachable, so the
    request goes to the source address of the registration (the NAT binding it keeps open).
    """
    source_host = bare_host(source[0])
    if transport != "UDP":
        return Target(transport, source_host, source[1])
    try:
        uri = parse_uri(contact)
    except SipParseError:
        return Target(transport, source_host, source[1])
    host = bare_host(uri.host)
    if uri.is_sip and host == source_host:
        return Target(transport, host, uri.port or 5060)
    return Target(transport, source_host, source[1])


def uri_user(uri: str) -> str:
    """The user part of a sip: URI, or '' (tel: URIs give their number)."""
    parsed = parse_uri(uri)
    if parsed.is_sip:
        return parsed.user or ""
    if parsed.scheme == "tel":
        return parsed.opaque.split(";")[0]
    return ""
