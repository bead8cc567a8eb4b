"""Call control's SIP side: answers to the node's own requests (agents' and external legs'
INVITE, BYE, CANCEL), requests from the peers (CANCEL, ACK, BYE, re-INVITE, UPDATE, INFO),
relayed in-dialog requests, and the responses the node sends. A part of `CallControl`
(softswitch/call/control.py)."""

from __future__ import annotations

from media import MediaError
from media.items import DtmfTone
from softswitch.call import events as ev
from softswitch.call.base import TIMER_PREFIX, ControlBase
from softswitch.call.leg import Leg, LegEvent, LegState
from softswitch.call.session import Session, log
from softswitch.call.sipcodec import (
    PENDING,
    dtmf_from_info,
    redirect_agent,
    sdp_direction,
)
from softswitch.sip.build import make_response
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import DialogError, SipParseError, TransactionError
from softswitch.sip.message import Request, Response
from softswitch.sip.transaction import (
    AckReceived,
    AckTimeout,
    RequestReceived,
    ResponseReceived,
    TransactionTimeout,
    TransportError,
    bare_host,
)
from softswitch.sip.transaction import State as TxnState

#: Timer C (RFC 3261 §16.6): how long a relayed re-INVITE may stay at 1xx (> 3 minutes).
TIMER_C = 181.0


class Signalling(ControlBase):
    def on_response(self, event: ResponseReceived, now: float) -> None:
        entry = self._clients.get(event.key)
        if entry is None:
            return
        session, leg, purpose, extra = entry
        status = event.response.status
        if purpose == "invite":
            self._invite_response(session, leg, event, now)
        elif purpose == "relay":
            if status < 200 and session.ended and event.key[1] == "INVITE":
                self.txn.send_cancel(event.key, now)  # see _end_relays (RFC 3261 §9.1)
            self._relay_response(session, leg, event.response, extra, now)
        elif purpose == "bye" and status >= 200 and leg.state is LegState.ENDING:
            leg.to(LegEvent.BYE_DONE)
        elif purpose == "refresh" and not session.ended:
            self._refresh_answered(session, leg, event, now)
        elif purpose == "stale":
            self._stale_response(session, leg, event.key, event.response, extra, now)
            return
        elif purpose == "fork":
            self._fork_response(session, leg, extra, event, now)
            self._drain()
            return
        if status >= 200 and purpose != "invite":
            self._clients.pop(event.key, None)
        self._drain()

    def _invite_response(
        self, session: Session, leg: Leg, event: ResponseReceived, now: float
    ) -> None:
        response = event.response
        status = response.status
        if status < 200:
            leg.got_provisional = True  # any 1xx, 100 included, allows a CANCEL (§9.1)
            if leg.state is LegState.CANCELLING:
                self._send_cancel(session, leg, now)
                return
            if status == 100 or not leg.pending or session.ended:
                return
            if self._prack_provisional(session, leg, response, now):
                return  # a reliable provisional again: PRACKed already
            leg.to(LegEvent.PROVISIONAL)
            if response.body:
                try:
                    if leg.anchored:
                        leg.codec = self.media.apply_answer(leg.leg_id, response.body)
                    leg.sdp = response.body
                except (MediaError, ValueError) as exc:
                    session.log.warning("early media SDP from agent unusable: %s", exc)
            self.bus.publish(ev.LegProgress(self.wall(now), session.call_id, leg.leg_id, "ringing"))
            self._deliver(session, ev.LegRinging(leg.leg_id, status), now)
            return
        if status < 300:
            self._agent_2xx(session, leg, event, now)
            return
        # A final failure: the phone refused, is busy, or the CANCEL took effect (487).
        self._clients.pop(event.key, None)
        if status == 422 and self._retry_422(session, leg, response, now):
            return  # RFC 4028 §7.3: again with the far end's Min-SE
        if status in (408, 503) and self._redial(session, leg, str(status), now):
            return  # an external number: its next trunk address (failover.py)
        if (
            leg.forks
            and not session.ended
            and leg.pending
            and self._next_attempt(session, leg, status)
        ):
            return  # the agent's other devices still ring (forking.py)
        if leg.forks or leg.refusal is not None:
            status = self._leg_refusal(leg, status)
        leg.media.release(leg.leg_id)
        cancelled = leg.state is LegState.CANCELLING
        if leg.state not in (LegState.FAILED, LegState.ENDED):
            leg.to(LegEvent.REJECTED)
        if cancelled or session.ended:
            return
        self._leg_stopped(session, leg, now, "rejected", status)
        redirect = None
        if 300 <= status < 400:
            redirect, why = redirect_agent(
                event.response, self._own_hosts(session), {a.id for a in session.config.agents}
            )
            if redirect is None:
                session.log.info("redirect (%d) from %s not followed: %s", status, leg.leg_id, why)
        session.log.info("agent %s answered %d; trying the next agent", leg.agent_id, status)
        self._deliver(session, ev.LegFailed(leg.leg_id, status, str(status), redirect), now)

    def _own_hosts(self, session: Session) -> set[str]:
        """The names the node answers to: its SIP addresses and its digest realm."""
        hosts = {
            bare_host(hostport.rsplit(":", 1)[0]).lower() for hostport in self.txn.sent_by.values()
        }
        hosts.add(session.config.node.realm.lower())
        return hosts

    def _agent_2xx(self, session: Session, leg: Leg, event: ResponseReceived, now: float) -> None:
        response = event.response
        assert leg.invite is not None
        to_tag = response.to.tag
        if leg.dialog is not None and event.retransmission and leg.dialog.remote_tag == to_tag:
            if leg.ack is not None:
                self.txn.send_ack(leg.ack, leg.target)  # our ACK was lost: resend (§13.2.2.4)
            return
        try:
            dialog = Dialog.as_uac(leg.invite, response)
        except (DialogError, SipParseError) as exc:
            session.log.warning("unusable 2xx from agent: %s", exc)
            return
        if leg.early is not None and leg.early.remote_tag == dialog.remote_tag:
            dialog.local_cseq = leg.early.local_cseq  # numbering goes on after the PRACKs
        ack = dialog.ack(leg.invite.cseq[0])
        self.txn.send_ack(ack, leg.target)
        if leg.dialog is not None or not leg.pending or session.ended:
            # A forked second 2xx, or an answer after we gave up on this phone: hang it up.
            if leg.state is LegState.CANCELLING:
                leg.to(LegEvent.ANSWER)  # -> ending
            self._bye(session, leg, now, dialog)
            return
        # An answer already taken from a 183 (RFC 3261 §13.2.1: the 2xx repeats it, or has no
        # SDP at all) is not applied again: the engine holds no offer for it any more.
        early = leg.sdp if leg.got_provisional else b""
        try:
            if leg.anchored and not (early and response.body in (b"", early)):
                leg.codec = self.media.apply_answer(leg.leg_id, response.body)
        except (MediaError, ValueError) as exc:
            # The phone answered with SDP we cannot bridge: hang it up, try the next agent.
            session.log.warning("agent %s answered with unusable SDP: %s", leg.agent_id, exc)
            leg.dialog = dialog
            leg.to(LegEvent.ANSWER)
            self._bye(session, leg, now)
            leg.media.release(leg.leg_id)
            self._leg_stopped(session, leg, now, "bad_sdp")
            self._deliver(session, ev.LegFailed(leg.leg_id, 488, "sdp"), now)
            return
        leg.sdp = response.body or early
        leg.dialog = dialog
        leg.ack = ack
        self._uac_timer(session, leg, response, now)
        leg.to(LegEvent.ANSWER)
        self._dialogs[dialog.id] = (session, leg)
        if leg.forks:  # the agent's other devices stop ringing
            self._cancel_forks(leg, now)
        self.bus.publish(
            ev.LegProgress(self.wall(now), session.call_id, leg.leg_id, "answer", response.status)
        )
        self._deliver(session, ev.LegAnswered(leg.leg_id), now)

    def on_timeout(self, event: TransactionTimeout | TransportError, now: float) -> None:
        entry = self._clients.pop(event.key, None)
        if entry is None:
            return
        session, leg, purpose, extra = entry
        if purpose == "fork":
            self._fork_timeout(leg, extra)
        elif purpose == "invite" and leg.pending:
            why = "transport error" if isinstance(event, TransportError) else "408"
            if self._redial(session, leg, why, now) or (
                leg.forks and not session.ended and self._next_attempt(session, leg, 408)
            ):
                self._drain()
                return
            leg.to(LegEvent.REJECTED)
            leg.media.release(leg.leg_id)
            if not session.ended:
                self._leg_stopped(session, leg, now, "no_response", 408)
                session.log.info("agent %s phone did not respond", leg.agent_id)
                self._deliver(session, ev.LegFailed(leg.leg_id, 408, "408"), now)
        elif purpose == "relay":
            server_key, _origin, _offer = extra
            request = self.txn.server_request(server_key)
            if request is not None:
                self._respond(server_key, make_response(request, 408), now)
        elif purpose == "bye" and leg.state is LegState.ENDING:
            leg.to(LegEvent.BYE_DONE)
        self._drain()

    def on_cancel(self, event: RequestReceived, now: float) -> None:
        """CANCEL from the trunk (§9.2): 200 to the CANCEL, 487 to the INVITE."""
        if event.cancelled is None:
            self._respond(event.key, make_response(event.request, 481), now)
            return
        session = self._by_invite.get(event.cancelled)
        self._respond(event.key, make_response(event.request, 200), now)
        if session is None or session.ended or session.a.up:
            # The INVITE already got its final answer: the CANCEL has no effect (§9.2).
            return
        self._caller_gone(session, now)
        self._drain()

    def _caller_gone(self, session: Session, now: float) -> None:
        """The caller left a call not yet answered (CANCEL, or BYE in the early dialog):
        487 to its INVITE, the application is told, ringing agents are cancelled."""
        self._final_to_caller(session, self._a_response(session, 487), now)
        session.a.to(LegEvent.REMOTE_CANCEL)
        ringing = any(leg.pending for leg in session.legs[1:])
        session.log.info("caller left while %s", "ringing" if ringing else "waiting")
        self.counters["abandoned"] += 1
        session.hangup_side = "caller"
        self._release(session, now, "abandoned", "caller", 487, leg_reason="caller_cancelled")

    def on_ack(self, event: AckReceived, now: float) -> None:
        found = self._find_dialog(event.request)
        if found is not None:
            session, leg = found
            # RFC 3261 §13.2.2.4: the ACK of our 2xx carries the INVITE's CSeq number; an ACK
            # that comes before the 2xx (or belongs to a re-INVITE) confirms nothing.
            if (
                leg.dialog is not None
                and leg.invite is not None
                and leg.up
                and event.request.cseq[0] == leg.invite.cseq[0]
            ):
                leg.dialog.confirmed = True
                if leg.anchored and leg.invite.body == b"" and event.request.body:
                    try:  # the answer to the offer we sent in our 200 (delayed offer)
                        leg.media.apply_answer(leg.leg_id, event.request.body)
                    except (MediaError, ValueError) as exc:
                        session.log.warning("SDP in the caller's ACK unusable: %s", exc)

    def on_ack_timeout(self, event: AckTimeout, now: float) -> None:
        session = self._by_invite.get(event.key)
        if session is None or session.ended:
            return
        session.log.warning("caller never acknowledged our 200 OK; releasing the call")
        self._release(session, now, "answered" if session.answered else "failed", "system", 408)
        self._drain()

    def in_dialog(self, event: RequestReceived, now: float) -> bool:
        """Handle a request carrying a To tag. False when no dialog matches (caller sends 481)."""
        found = self._find_dialog(event.request)
        if found is None:
            return False
        session, leg = found
        request = event.request
        assert leg.dialog is not None
        try:
            leg.dialog.check_remote_cseq(request)
        except DialogError as exc:
            self._respond(event.key, make_response(request, 500, str(exc)), now)
            return True
        if session.ended or leg.over:
            if request.method == "BYE" and leg.state in (LegState.ENDING, LegState.ENDED):
                # Our BYE and the party's crossed (a phone hanging up after its transfer's
                # NOTIFY, RFC 5589 §6): the dialog is known and ends either way (§15.1.2).
                self._respond(event.key, make_response(request, 200), now)
                if leg.state is LegState.ENDING:
                    leg.to(LegEvent.REMOTE_BYE)
                return True
            self._respond(event.key, make_response(request, 481), now)
            return True
        method = request.method
        if method == "PRACK":
            self._on_prack(session, leg, event, now)
            self._drain()
            return True
        caller = leg is session.a and leg.direction == "in"
        if method in ("INVITE", "UPDATE") and (caller or leg.timer is not None):
            if self._caller_refresh(session, leg, event, now):
                self._drain()
                return True
            leg.sdp = request.body or leg.sdp
        if method == "BYE":
            self._respond(event.key, make_response(request, 200), now)
            if leg is session.a and not leg.up:
                # RFC 3261 §15: the caller may BYE an early dialog; §15.1.2: the INVITE still
                # pending in it gets 487, as for a CANCEL. Else it would wait in the queue.
                self._caller_gone(session, now)
            else:
                self._remote_bye(session, leg, now)
            self._drain()
            return True
        if method == "INFO":
            digit = dtmf_from_info(request)
            if digit is not None:
                self.on_dtmf(session, leg.leg_id, digit, "info", now)
                if self._dtmf_to_peer(session, leg, digit, "info"):
                    self._respond(event.key, make_response(request, 200), now)
                    self._drain()
                    return True
        if method == "REFER":  # the node carries out transfers itself (features.py)
            self._refer(session, leg, event, now)
            self._drain()
            return True
        if method in ("INVITE", "UPDATE") and self._agent_hold(session, leg, event, now):
            self._drain()
            return True
        other = leg.peer
        if other is None or other.dialog is None or other.over:
            self._answer_alone(session, leg, event, now)
            self._drain()
            return True
        if method in ("INVITE", "UPDATE"):
            leg.dialog.update_target(request)
        body = request.body
        offer = b""
        if method in ("INVITE", "UPDATE"):
            try:
                if leg.anchored and other.anchored:
                    if body:
                        self.media.read_offer(body)  # refused (488) before anything changes
                    offer = body
                    direction = sdp_direction(body) if body else "sendrecv"
                    body = self.media.offer_local(other.leg_id, direction)
                else:
                    body = leg.media.offer(leg.leg_id, other.leg_id, body or None) or b""
            except (MediaError, ValueError) as exc:
                session.log.warning("re-offer refused by media: %s", exc)
                self._respond(event.key, make_response(request, 488), now)
                return True
        extra = [
            (n, v)
            for n, v in request.headers
            if n in ("content-type", "event", "subscription-state", "info-package")
        ]
        if (
            method in ("INVITE", "UPDATE")
            and body
            and not any(n == "content-type" for n, _ in extra)
        ):
            extra.append(("content-type", "application/sdp"))
        relayed = other.dialog.new_request(method, body, extra)
        if method in ("INVITE", "UPDATE"):
            relayed.headers.add("contact", self._contact(other))
        key = self.txn.send_request(relayed, other.target, now)
        self._clients[key] = (session, other, "relay", (event.key, leg, offer))
        session.relays.append(key)
        if method == "INVITE":  # Timer C (RFC 3261 §16.6 step 11): a 1xx is not an answer
            name = f"timerc:{other.leg_id}:{relayed.cseq[0]}"
            self._timer_c[name] = key
            self._start_timer(session, f"{TIMER_PREFIX}{name}", TIMER_C, now)
        session.log.info(
            "relayed %s from the %s", method, "caller" if leg is session.a else "agent"
        )
        return True

    def _answer_alone(self, session: Session, leg: Leg, event: RequestReceived, now: float) -> None:
        """An in-dialog request on a leg bridged to nobody (a caller in the IVR or waiting):
        the node answers a re-INVITE/UPDATE from its own anchor; INFO gets 200 (a key was
        reported above); anything else 480 (no party to pass it to)."""
        request = event.request
        method = request.method
        if method in ("INVITE", "UPDATE") and leg.anchored:
            leg.dialog.update_target(request)  # type: ignore[union-attr]
            try:
                body = (
                    self.media.answer_local(leg.leg_id, request.body)
                    if request.body
                    else self.media.offer_local(leg.leg_id)
                )
            except (MediaError, ValueError) as exc:
                session.log.warning("re-offer refused by media: %s", exc)
                self._respond(event.key, make_response(request, 488), now)
                return
            self._hold_state(leg, request.body)
            extra = [
                ("contact", self._contact(leg)),
                ("content-type", "application/sdp"),
            ]
            self._respond(event.key, make_response(request, 200, body=body, extra=extra), now)
            return
        if method == "INFO":
            self._respond(event.key, make_response(request, 200), now)
            return
        self._respond(event.key, make_response(request, 480, "Peer not connected"), now)

    @staticmethod
    def _hold_state(leg: Leg, body: bytes) -> None:
        if not body or not leg.up:
            return
        direction = sdp_direction(body)
        held = direction in ("sendonly", "inactive")
        if held:
            leg.to(LegEvent.HOLD)
        elif leg.state is LegState.HELD:
            leg.to(LegEvent.RESUME)

    def _relay_response(
        self, session: Session, leg: Leg, response: Response, extra: tuple, now: float
    ) -> None:
        server_key, origin, offer = extra
        request = self.txn.server_request(server_key)
        status = response.status
        if status == 100:
            return
        method = response.cseq[1]
        if 200 <= status < 300 and method == "INVITE" and leg.dialog is not None:
            # We terminate the re-INVITE on this side and answer the other side ourselves.
            self.txn.send_ack(leg.dialog.ack(response.cseq[0]), leg.target)
            leg.dialog.update_target(response)
        if request is None:
            return
        body = response.body
        if method in ("INVITE", "UPDATE") and 180 <= status < 300:
            try:
                if leg.anchored and origin.anchored:
                    if body and status >= 200:
                        self.media.apply_answer(leg.leg_id, body)
                    if status >= 200:
                        body = (
                            self.media.answer_local(origin.leg_id, offer)
                            if offer
                            else self.media.offer_local(origin.leg_id)
                        )
                        self._hold_state(origin, offer)
                    else:
                        body = b""
                else:
                    body = leg.media.answer(leg.leg_id, origin.leg_id, body)
            except (MediaError, ValueError) as exc:
                session.log.warning("re-answer refused by media: %s", exc)
                status, body = 488, b""
        extra_headers = [(n, v) for n, v in response.headers if n == "content-type"] if body else []
        if body and not extra_headers:
            extra_headers.append(("content-type", "application/sdp"))
        if method in ("INVITE", "UPDATE") and status < 300:
            extra_headers.append(("contact", self._contact(origin)))
            if status >= 200 and origin is session.a and origin.timer is not None:
                extra_headers += origin.timer.headers()  # the caller's refresh is answered
                self._timer_start(session, origin, now)
        reply = make_response(request, status, response.reason, body=body, extra=extra_headers)
        self._respond(server_key, reply, now)

    def _remote_bye(self, session: Session, leg: Leg, now: float) -> None:
        """BYE from an answered leg's party: the application is told; the caller's BYE
        ends the call."""
        side = "caller" if leg is session.a else "agent"
        if session.supervisor is not None and leg is not session.a:
            self._end_supervision(session, now)
        leg.to(LegEvent.REMOTE_BYE)
        self._stop_record(session, leg, "hangup", now)
        if session.hangup_side is None:
            session.hangup_side = side
        self._unpeer(leg)
        self._leg_stopped(session, leg, now)
        if leg is not session.a:
            self._leave_mixes(session, leg, now)
        if leg is session.a:
            # A caller who hangs up before talking to anyone abandons; the agent the node
            # called first (a callback it dials) gives the attempt up.
            unanswered = "abandoned" if leg.direction == "in" else "cancelled"
            disposition = "answered" if session.answered else unanswered
            self._release(session, now, disposition, side, None)
        else:
            self._deliver(session, ev.LegEnded(leg.leg_id, side), now)

    def _timer_c_fired(self, session: Session, name: str, now: float) -> None:
        """A relayed re-INVITE answered only with 1xx for `TIMER_C` s: CANCEL it and tell
        the party that sent it 408, so neither side waits for ever."""
        key = self._timer_c.pop(name, None)
        entry = self._clients.get(key) if key is not None else None
        if key is None or entry is None or session.ended:
            return
        if self.txn.client_state(key) is not TxnState.PROCEEDING:
            return  # answered meanwhile (or Timer B, without a 1xx, ends it)
        self.txn.send_cancel(key, now)
        server_key = entry[3][0]
        request = self.txn.server_request(server_key)
        if request is not None and self.txn.server_state(server_key) in PENDING:
            self._respond(server_key, make_response(request, 408, "No Final Answer"), now)
        session.log.warning("relayed re-INVITE got no final answer in %.0f s: cancelled", TIMER_C)

    def _dtmf_to_peer(self, session: Session, leg: Leg, digit: str, source: str) -> bool:
        """A key a party sent reaches the party it talks to (both legs anchored and bridged)
        in the form that party negotiated: an RFC 4733 event when its leg has
        telephone-event, else an in-band tone. A key by SIP INFO (`source` "info") is always
        converted; one in the media only where the engine cannot carry it as it came: RFC
        4733 toward a leg without telephone-event, in-band toward one with it (the tone
        itself is relayed in the audio as well). False: nothing sent (an INFO is then
        relayed as before)."""
        other = leg.peer
        if other is None or not (leg.anchored and other.anchored) or other.over:
            return False
        remote_media = getattr(self.media, "remote_media", None)
        remote = remote_media(other.leg_id) if remote_media is not None else None
        events = remote is not None and remote.telephone_event_pt is not None
        if (source == "rfc4733" and events) or (source == "inband" and not events):
            return False  # the engine relays it as it came
        try:
            if events:
                self.media.send_dtmf(other.leg_id, digit)  # type: ignore[attr-defined]
                how = "RFC 4733"
            else:
                self.media.play(other.leg_id, [DtmfTone(digit)])
                how = "in-band"
        except (MediaError, AttributeError) as exc:
            session.log.warning("key %s from %s not converted: %s", digit, leg.leg_id, exc)
            return False
        came = "SIP INFO" if source == "info" else source
        session.log.info("key %s by %s from %s sent to %s %s", digit, came, leg.leg_id,
                         other.leg_id, how)  # fmt: skip
        return True

    def _unpeer(self, leg: Leg) -> None:
        """Take `leg` out of its two-party bridge: the engine stops relaying, neither leg
        names the other as its peer."""
        peer = leg.peer
        if peer is None:
            return
        if leg.anchored and peer.anchored:
            leg.media.unbridge(leg.leg_id)
        peer.peer = None
        leg.peer = None

    def _find_dialog(self, request: Request) -> tuple[Session, Leg] | None:
        try:
            local = request.to.tag
            remote = request.from_.tag
        except SipParseError:
            return None
        if local is None or remote is None:
            return None
        return self._dialogs.get((request.call_id, local, remote))

    def _respond(self, key: tuple | None, response: Response, now: float) -> None:
        if key is None:
            return
        try:
            self.txn.send_response(key, response, now)
        except TransactionError as exc:
            log.debug("response %d not sent: %s", response.status, exc)

    def _a_response(
        self,
        session: Session,
        status: int,
        reason: str = "",
        body: bytes = b"",
        extra: list[tuple[str, str]] | None = None,
    ) -> Response:
        """A response to the caller's INVITE; a 2xx carries its session timer."""
        a = session.a
        assert a.invite is not None and a.dialog is not None
        headers = [
            ("contact", self._contact(a)),
            *(extra or ()),
        ]
        if body:
            headers.append(("content-type", "application/sdp"))
        if 200 <= status < 300 and a.timer is not None:
            headers += a.timer.headers()
        return make_response(
            a.invite, status, reason, to_tag=a.dialog.local_tag, body=body, extra=headers
        )

    def _cancel_leg(self, session: Session, leg: Leg, now: float, reason: str) -> None:
        self._cancel_forks(leg, now)
        leg.to(LegEvent.CANCEL)
        self._leg_stopped(session, leg, now, reason)
        if leg.got_provisional:
            self._send_cancel(session, leg, now)
        # else: RFC 3261 §9.1 — CANCEL only once a provisional response has arrived

    def _send_cancel(self, session: Session, leg: Leg, now: float) -> None:
        if leg.cancel_sent or leg.invite_key is None:
            return
        leg.cancel_sent = True
        key = self.txn.send_cancel(leg.invite_key, now)
        if key is not None:
            self._clients[key] = (session, leg, "cancel", None)

    def _bye(self, session: Session, leg: Leg, now: float, dialog: Dialog | None = None) -> None:
        dialog = dialog or leg.dialog
        assert dialog is not None
        key = self.txn.send_request(dialog.new_request("BYE"), leg.target, now)
        self._clients[key] = (session, leg, "bye", None)
        if leg.up:
            leg.to(LegEvent.BYE_SENT)

    def _end_relays(self, session: Session, now: float) -> None:
        """In-dialog requests still pending when the call ends: RFC 3261 §15.1.2 answers the
        one we received with 487, and §9.1 CANCELs a relayed re-INVITE that got only a 1xx
        (its Timer B is off after a provisional, so it would wait for ever otherwise); one
        without a provisional yet is CANCELled when its first 1xx comes, or ends by Timer B."""
        for key in session.relays:
            entry = self._clients.get(key)
            if entry is None:
                continue  # already answered or timed out
            server_key = entry[3][0]
            request = self.txn.server_request(server_key)
            if request is not None and self.txn.server_state(server_key) in PENDING:
                self._respond(server_key, make_response(request, 487), now)
            if key[1] == "INVITE" and self.txn.client_state(key) is TxnState.PROCEEDING:
                self.txn.send_cancel(key, now)  # else on_response does at the first 1xx
        if self._timer_c:
            relays = set(session.relays)
            for name in [n for n, key in self._timer_c.items() if key in relays]:
                del self._timer_c[name]
        session.relays.clear()
