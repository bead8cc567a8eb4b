"""What applications do to legs, carried out by call control: answer and ring the caller,
originate legs (the one request builder), bridge and mix, play, record, listen. A part of
`CallControl` (softswitch/call/control.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from media import MediaError, NotAnchoredError
from media.sdes import leg_encryption
from softswitch.call import events as ev
from softswitch.call.actions import (
    Bridge,
    CallAgent,
    CallNumber,
    Listen,
    Play,
    Record,
    Ring,
)
from softswitch.call.base import TIMER_PREFIX, ControlBase
from softswitch.call.errors import IllegalLegTransition
from softswitch.call.extensions import MIN_SE_FLOOR
from softswitch.call.failover import Attempts, identity_headers, trunk_uri
from softswitch.call.leg import Leg, LegEvent, LegState
from softswitch.call.session import Session
from softswitch.call.sipcodec import (
    ALLOW,
    binding_route,
    is_sips,
)
from softswitch.sdp import address_family
from softswitch.sip.build import new_request_headers
from softswitch.sip.message import Request
from softswitch.sip.transaction import (
    Target,
    hostport,
)

#: Seconds between provisionals to a caller the node keeps waiting unanswered (a queue's
#: ringback, an external number ringing). RFC 3261 §13.3.1.1: such a UAS sends one at least
#: every minute, since a proxy may end the transaction after a gap (Kamailio's fr_inv_timer,
#: 120 s by default, answers the caller 408); 50 s leaves a lost datagram's worth of slack.
PROVISIONAL_REFRESH = 50.0


if TYPE_CHECKING:
    from softswitch.config import Trunk


class LegActions(ControlBase):
    def _answer(
        self, session: Session, now: float, prefer: int | None = None, by_node: bool = True
    ) -> None:
        """Answer the caller with the node's own SDP: for the node itself (IVR, voicemail,
        waiting tone), or as the anchor of a party just bridged to it (`by_node=False`)."""
        a = session.a
        if a.up or (by_node and session.early_body is not None):
            return  # answered, or the node's prompts already play in early media
        if a.over:
            raise IllegalLegTransition(a.leg_id, a.state.value, "answer")
        assert a.invite is not None
        media = self.media
        if a.invite.body:
            body = media.answer_local(a.leg_id, a.offer or a.invite.body, prefer=prefer)
        else:  # a delayed offer: ours goes in the 200, the answer comes in the ACK
            body = media.offer_local(a.leg_id, family=address_family(a.target.host))
        a.anchored = True
        if by_node and a.invite.body and self._early_media_trunk(session):
            # The trunk's `early_media`: 183 with our SDP, and the prompts play before the
            # call is answered (billed); `_end_early_media` sends the 200 later.
            session.early_body = body
            if a.state is LegState.NEW:
                a.to(LegEvent.PROVISIONAL)
            a.provisional = self._a_response(session, 183, body=body)
            self._send_provisional(session, a, now)
            session.log.info("the node's prompts play in early media (183)")
            if self.send_now is not None:
                self.send_now()  # the 183 before the prompt's first packet, as the 200 below
            return
        a.to(LegEvent.ANSWER)
        self._final_to_caller(session, self._a_response(session, 200, body=body), now)
        self._answered_by_node(session, now, by_node)

    def _early_media_trunk(self, session: Session) -> bool:
        trunk = next((t for t in session.config.trunks if t.name == session.trunk), None)
        return trunk is not None and trunk.early_media

    def _end_early_media(self, session: Session, now: float) -> None:
        """The caller in early media is answered now (its first prompt ended, it pressed a
        key, or the call goes on to a queue, an agent, a recording …): 200 with the SDP of
        the 183. Billing starts here, and so does the CDR's `node_answer`."""
        body, session.early_body = session.early_body, None
        a = session.a
        if body is None or a.up or a.over:
            return
        a.to(LegEvent.ANSWER)
        self._final_to_caller(session, self._a_response(session, 200, body=body), now)
        self._answered_by_node(session, now, True)

    def _answered_by_node(self, session: Session, now: float, by_node: bool) -> None:
        a = session.a
        if by_node and session.node_answered is None:
            session.node_answered = now
            self.counters["ivr"] += 1
            self.bus.publish(ev.CallAnsweredByNode(self.wall(now), session.call_id, a.leg_id))
            session.log.info("answered by the node")
            # The application's next action is usually a prompt, which the engine's thread
            # starts at once: commit and send now, so that the 200 is on the wire before the
            # prompt's first packet (RFC 3264 §6: media after the answer) instead of after
            # this input's CDR commit.
            if self.send_now is not None:
                self.send_now()

    def _ring(self, session: Session, action: Ring, now: float) -> None:
        a = session.a
        if a.up or a.over:
            return
        body = b""
        source = session.leg(action.from_leg) if action.from_leg else None
        if source is not None and source.sdp and a.invite is not None:
            try:  # early media from the ringing party (183 with SDP)
                if source.anchored and a.invite.body:
                    body = self.media.answer_local(
                        a.leg_id, a.offer or a.invite.body, prefer=source.codec
                    )
                    a.anchored = True
                    self.media.bridge(a.leg_id, source.leg_id)
                elif not source.anchored:
                    body = source.media.answer(source.leg_id, a.leg_id, source.sdp)
            except MediaError as exc:
                session.log.warning("early media SDP from agent unusable: %s", exc)
                body = b""
        if a.state is LegState.NEW:
            a.to(LegEvent.PROVISIONAL)
        a.provisional = self._a_response(session, action.status, body=body)
        self._send_provisional(session, a, now)

    def _send_provisional(self, session: Session, leg: Leg, now: float) -> None:
        """Send the caller's last provisional, and again every `PROVISIONAL_REFRESH` s, the
        same bytes (To tag, body) each time, while its INVITE is unanswered (RFC 3261
        §13.3.1.1); once the caller is answered or gone, nothing more."""
        if leg.provisional is None or leg.up or leg.over:
            return
        if leg.reliable is not None:  # RFC 3262: each one reliably, with its own RSeq
            self._send_reliable(session, leg, now)
        else:
            self._respond(leg.invite_key, leg.provisional, now)
        self._start_timer(
            session, f"{TIMER_PREFIX}provisional:{leg.leg_id}", PROVISIONAL_REFRESH, now
        )

    def _call_agent(self, session: Session, action: CallAgent, now: float) -> None:
        """A leg to the agent's registered phone, offering the call of `action.queue`."""
        agent_id = action.agent_id
        agent = session.config.agent(agent_id)
        if agent is not None and agent.mobile is not None:
            self._call_mobile(session, action, agent.mobile, now)
            return
        bindings = self.location.lookup(agent_id, now)
        if not bindings:
            session.log.warning("agent %s has no registered contact", agent_id)
            if not action.queue or action.leg_id == session.a.leg_id:
                # A call between agents (the caller hears why), or one the node places
                self._deliver(session, ev.LegFailed(action.leg_id, 480, "not registered"), now)
                return
            # The registration vanished between the ACD's choice and now: log the agent out,
            # which puts the call back at the head of the queue.
            self.acd_input(now, self.acd.agent_unavailable, agent_id, now)
            return
        binding = bindings[0]
        target, route = binding_route(binding)
        direct = self.direct_media(session.trunk, agent_id)
        internal = [("x-hotline-queue", action.queue)] if action.queue else []
        if agent is not None and agent.auto_answer and action.queue:
            after = agent.auto_answer_after
            internal += [
                ("call-info", f"<sip:{self.realm}>;answer-after={after}"),
                ("alert-info", f"<sip:{self.realm}>;info=alert-autoanswer;delay={after}"),
                ("answer-mode", "Auto"),
            ]
        # The phone shows who the call is with: the caller, or, for a call the node places
        # to the agent first, whom it is for (the number called back, the agent supervised).
        shown = session.called if action.leg_id == session.a.leg_id else session.caller
        # SRTP towards the phone (media_encryption): `auto` follows its binding's transport
        setting = agent.media_encryption if agent is not None else None
        encryption = leg_encryption(
            setting or session.config.media.agent_encryption, target.transport
        )
        leg = self._originate(
            session, action.leg_id, binding.contact, target, f"sip:{agent_id}@{self.realm}",
            shown or "anonymous", direct, now, internal=internal, agent_id=agent_id,
            encryption=encryption, route=route,
        )  # fmt: skip
        if leg is not None:
            if len(bindings) > 1:  # every registered device rings (forking.py)
                others = [(b.contact, *binding_route(b)) for b in bindings[1:]]
                self._fork(session, leg, others, now)
            self.bus.publish(ev.CallRinging(self.wall(now), session.call_id, agent_id))
            session.log.info("offering to agent %s at %s", agent_id, binding.contact)

    def _call_mobile(self, session: Session, action: CallAgent, number: str, now: float) -> None:
        """A mobile agent (SPEC ACD-5): the queue call rings the agent's own number through
        the first trunk that places outbound calls, presenting the hotline number; as for
        any outside party, no associated data goes with it."""
        trunk = session.config.outbound_trunk()
        leg = self._dial(session, action.leg_id, number, trunk, now, agent_id=action.agent_id)
        if leg is not None:
            self.bus.publish(ev.CallRinging(self.wall(now), session.call_id, action.agent_id))

    def _call_number(self, session: Session, action: CallNumber, now: float) -> None:
        """A leg to an external number through a trunk, presenting the hotline number."""
        trunk_name = action.trunk or session.trunk
        trunk = next((t for t in session.config.trunks if t.name == trunk_name), None)
        self._dial(session, action.leg_id, action.number, trunk, now, trunk_name=trunk_name)

    def _dial(
        self,
        session: Session,
        leg_id: str,
        number: str,
        trunk: Trunk | None,
        now: float,
        agent_id: str | None = None,
        trunk_name: str | None = None,
    ) -> Leg | None:
        """`number` through `trunk`, as the trunk's hotline number; a trunk that cannot
        place calls fails the leg (503) at once."""
        if trunk is None or not trunk.dials_out:
            why = "unknown trunk" if trunk is None else "no `outbound` address or `caller_id`"
            name = trunk.name if trunk is not None else trunk_name or "(none)"
            session.log.error("cannot dial %s through trunk %s: %s", number, name, why)
            self._deliver(session, ev.LegFailed(leg_id, 503, why), now)
            return None
        attempts = Attempts(number, self._outbound_routes(session, trunk))
        first = attempts.trunk
        assert first.caller_id is not None
        uri, target = trunk_uri(first, number, attempts.address)
        leg = self._originate(
            session, leg_id, uri, target, uri, first.caller_id, first.direct_media, now,
            agent_id=agent_id, trunk=first,
        )  # fmt: skip
        if leg is not None:
            leg.attempts = attempts
            self._start_attempt_timer(session, leg, now)
            who = f"mobile agent {agent_id} at " if agent_id else ""
            session.log.info("dialling %s%s through trunk %s", who, number, first.name)
        return leg

    def _originate(
        self,
        session: Session,
        leg_id: str,
        request_uri: str,
        target: Target,
        to_uri: str,
        from_user: str,
        direct: bool,
        now: float,
        internal: list[tuple[str, str]] | None = None,
        agent_id: str | None = None,
        trunk: Trunk | None = None,
        encryption: str = "none",
        route: list[str] | None = None,
    ) -> Leg | None:
        """The one request builder for every leg the node originates (agents, external
        numbers). `internal`: headers for the node's own phones (associated data, the
        caller's identity); an external party gets none of them (SPEC OUT-5).
        `encryption`: whether the anchored offer asks for SRTP (media/sdes.py). `route`:
        preloaded Route headers (a phone's Path, RFC 3327 §5.4), `target` being the first.

        `leg_id` naming the session's own first leg: a call the node places (`originate`),
        whose first party is dialled here, always through the anchor."""
        a = session.a
        first = leg_id == a.leg_id
        if first:
            leg = a
            leg.target = target
            leg.anchored = True
        else:
            assert a.invite is not None
            # Pass SDP from leg to leg only for a two-party call the node does not touch:
            # the caller's media must not be anchored already (an IVR caller always is).
            anchors = self.anchors
            passthrough = not anchors or (direct and not a.anchored)
            media = self.passthrough if anchors and passthrough else self.media
            leg = Leg(leg_id, "out", target, media)
            leg.anchored = not passthrough
        leg.agent_id = agent_id
        host = self.contact_for(target).split("@", 1)[1].split(";")[0]
        headers = new_request_headers(
            "INVITE", f'"{from_user}" <sip:{from_user}@{host}>', f"<{to_uri}>", host
        )
        if first:
            headers.set("call-id", session.origin[0])
        for value in route or ():
            headers.add("route", value)
        # A SIPS dialog only when the request or its first Route is sips: (§12.1.2).
        sips = is_sips(request_uri) or bool(route and is_sips(route[0]))
        headers.add("contact", f"<{self.contact_for(target, sips)}>")
        headers.add("allow", ALLOW)
        if internal is not None:
            for name, value in session.identity:
                headers.add(name, value)
            # Associated data for the agent's desktop (screen pop, INT-1).
            headers.add("x-hotline-call-id", session.call_id)
            for name, value in internal:
                headers.add(name, value)
            headers.add("x-hotline-called", session.called)
            for name, value in session.variables.items():
                if not name.replace("_", "").isalnum():
                    continue
                text = "".join(c for c in value if c.isprintable())[:200]
                headers.add(f"x-hotline-var-{name.replace('_', '-')}", text)
        else:
            if trunk is not None:  # the trunk's form of the hotline's identity
                for name, value in identity_headers(trunk, host):
                    headers.add(name, value)
            else:
                headers.add("p-asserted-identity", f"<sip:{from_user}@{host}>")
            headers.add("supported", "100rel, timer")  # PRACKed, refreshed (extensions.py)
            if trunk is not None and trunk.session_expires > 0:
                floor = max(trunk.min_se, MIN_SE_FLOOR)
                headers.add("session-expires", str(max(trunk.session_expires, floor)))
                headers.add("min-se", str(floor))
        try:
            if leg.anchored:
                # The family the party is reached over (its registered contact or source):
                # a phone on ::1 gets `c=IN IP6`, which is all it can use.
                family = address_family(leg.target.host)
                body = (
                    self.media.offer_local(leg.leg_id, encryption=encryption, family=family) or b""
                )
            else:
                assert a.invite is not None
                body = leg.media.offer(a.leg_id, leg.leg_id, a.invite.body or None) or b""
        except MediaError as exc:
            # The caller's SDP cannot be served or no RTP ports are left. The leg was never
            # offered: it joins no CDR (it has no row) and only its media goes.
            status = 488 if isinstance(exc, ValueError) else 503
            session.log.warning("media refused the call to %s: %s", to_uri, exc)
            leg.media.release(leg.leg_id)
            self._release(session, now, "failed", "system", status)
            return None
        if not first:
            session.legs.append(leg)
        if body:
            headers.add("content-type", "application/sdp")
        invite = Request("INVITE", request_uri, headers, body)
        leg.invite = invite
        leg.to(LegEvent.INVITE_SENT)
        leg.invite_key = self.txn.send_request(invite, leg.target, now)
        self._clients[leg.invite_key] = (session, leg, "invite", None)
        self.bus.publish(
            ev.LegStarted(
                self.wall(now),
                session.call_id,
                leg.leg_id,
                "out",
                invite.call_id,
                hostport(leg.target.host, leg.target.port),  # [::1]:5060 for IPv6
                agent_id,
            )  # fmt: skip
        )
        return leg

    def _bridge(self, session: Session, action: Bridge, now: float) -> None:
        a, b = session.leg(action.leg_a), session.leg(action.leg_b)
        if a is None or b is None or a.over or b.over:
            raise IllegalLegTransition(action.leg_a, "gone", "bridge")
        caller = a if a is session.a else b
        other = b if caller is a else a
        if action.rejoin:
            if caller.anchored and other.anchored:
                self.media.bridge(caller.leg_id, other.leg_id)
            caller.peer, other.peer = other, caller
            session.log.info("%s and %s talk alone again", caller.leg_id, other.leg_id)
            return
        if not caller.up:
            if other.anchored:
                self._answer(session, now, prefer=other.codec, by_node=False)
            else:
                body = other.media.answer(other.leg_id, caller.leg_id, other.sdp or b"")
                caller.to(LegEvent.ANSWER)
                self._final_to_caller(session, self._a_response(session, 200, body=body), now)
        if caller.anchored and other.anchored:
            self.media.bridge(caller.leg_id, other.leg_id)
        caller.peer, other.peer = other, caller
        # The agent of the call: the party bridged to the caller, or the caller itself when
        # the node placed the call to an agent first (a callback it dials).
        agent_id = other.agent_id if other.agent_id is not None else caller.agent_id
        if agent_id is not None:
            session.agent_id = agent_id
        first = session.answered is None
        if first:
            session.answered = now
            self.counters["answered"] += 1
        wall = self.wall(now)
        self.bus.publish(
            ev.CallAnswered(
                wall,
                session.call_id,
                agent_id,
                now - session.started,
                caller.leg_id,
                first,
            )  # fmt: skip
        )
        session.log.info("answered by agent %s", agent_id)

    def _mix(
        self, session: Session, mix_id: str, hears: dict[str, tuple[str, ...]], now: float
    ) -> None:
        for leg_id in {*hears, *(h for heard in hears.values() for h in heard)}:
            leg = session.leg(leg_id)
            if leg is None or not leg.up or not leg.anchored:
                raise IllegalLegTransition(leg_id, leg.state.value if leg else "gone", "mix")
        for leg_id in hears:
            leg = session.leg(leg_id)
            if leg is not None and leg.peer is not None:
                leg.peer.peer = None  # the engine takes it out of its two-party bridge
                leg.peer = None
        key = f"{session.call_id}-{mix_id}"
        self.media.mix(key, hears)
        session.mixes[mix_id] = dict(hears)
        self.bus.publish(ev.MixChanged(self.wall(now), session.call_id, mix_id, dict(hears)))

    def _unmix(self, session: Session, mix_id: str, now: float) -> None:
        if session.mixes.pop(mix_id, None) is None:
            return
        self.media.unmix(f"{session.call_id}-{mix_id}")
        self.bus.publish(ev.MixChanged(self.wall(now), session.call_id, mix_id, {}))

    def _leave_mixes(self, session: Session, leg: Leg, now: float) -> None:
        """A leg that ended leaves every mix; a mix with fewer than two legs is gone."""
        for mix_id, hears in list(session.mixes.items()):
            if leg.leg_id not in hears and not any(leg.leg_id in h for h in hears.values()):
                continue
            rest = {
                member: tuple(h for h in heard if h != leg.leg_id)
                for member, heard in hears.items()
                if member != leg.leg_id
            }
            if len(rest) < 2:
                self._unmix(session, mix_id, now)
            else:
                self._mix(session, mix_id, rest, now)

    def _drop_leg(self, session: Session, leg: Leg, now: float, reason: str) -> None:
        if leg.pending:
            session.log.info("stop ringing agent %s (%s)", leg.agent_id, reason)
            self._cancel_leg(session, leg, now, reason)
        elif leg.up and leg.dialog is not None:
            self._bye(session, leg, now)
            self._leave_mixes(session, leg, now)

    def _play(self, session: Session, action: Play, now: float) -> None:
        leg = session.leg(action.leg_id)
        early = leg is session.a and session.early_body is not None  # prompts in early media
        if leg is None or not (leg.up or early) or not leg.anchored:
            raise IllegalLegTransition(action.leg_id, leg.state.value if leg else "gone", "play")
        if not action.items:
            self._deliver(session, ev.PlaybackDone(leg.leg_id, action.tag, False), now)
            return
        ids = leg.media.play(leg.leg_id, action.items, barge_in=action.barge_in)
        leg.plays[ids[-1]] = action.tag

    def _record(self, session: Session, action: Record, now: float) -> None:
        leg = session.leg(action.leg_id)
        if leg is None or not leg.up or not leg.anchored or self.sink_factory is None:
            raise IllegalLegTransition(action.leg_id, "not recordable", "record")
        tap_id = f"{leg.leg_id}-rec"
        sink = self.sink_factory(action.path)
        try:
            leg.media.tap_start(tap_id, leg.leg_id, None)
        except MediaError:
            sink.close()
            raise
        leg.recording = (tap_id, sink, action)
        self._recordings[tap_id] = (session, leg)
        self._start_timer(session, f"{TIMER_PREFIX}record:{leg.leg_id}", action.max_seconds, now)

    def _listen(self, session: Session, action: Listen, now: float) -> None:
        leg = session.leg(action.leg_id)
        if self.speech_factory is None:
            raise NotAnchoredError("no speech model is configured on this node")
        if leg is None or not leg.up or not leg.anchored:
            raise IllegalLegTransition(action.leg_id, "not listenable", "listen")
        tap_id = f"{leg.leg_id}-asr"
        self._stop_listen(tap_id)
        recogniser = self.speech_factory(leg.leg_id, action.words)
        try:
            leg.media.tap_start(tap_id, leg.leg_id, None)
        except MediaError:
            recogniser.close()
            raise
        self._listening[tap_id] = (session, leg, recogniser)

    def _stop_listen(self, tap_id: str) -> None:
        found = self._listening.pop(tap_id, None)
        if found is None:
            return
        _session, leg, recogniser = found
        recogniser.close()
        try:
            leg.media.tap_stop(tap_id)
        except MediaError:
            pass  # the leg (and its tap) is already gone

    def speech_result(self, leg_id: str, text: str, confidence: float, now: float) -> None:
        """A phrase the recogniser of `leg_id` heard (called on the event loop)."""
        found = self._listening.get(f"{leg_id}-asr")
        if found is None:
            return  # listening stopped meanwhile
        session = found[0]
        session.log.info("speech on %s: %r (%.2f)", leg_id, text, confidence)
        self._deliver(session, ev.SpeechRecognized(leg_id, text, confidence), now)
        self._drain()

    def _control_timer(self, session: Session, name: str, now: float) -> None:
        kind, _, leg_id = name.partition(":")
        leg = session.leg(leg_id)
        if kind == "record" and leg is not None:
            self._stop_record(session, leg, "max", now)
        elif kind == "provisional" and leg is not None:
            self._send_provisional(session, leg, now)
        elif kind == "prack" and leg is not None:
            self._prack_timer(session, leg, now)
        elif kind == "session" and leg is not None:
            self._session_timer(session, leg, now)
        elif kind == "failover" and leg is not None:
            self._failover_timer(session, leg, now)
        elif kind == "timerc":
            self._timer_c_fired(session, name, now)

    def _stop_record(self, session: Session, leg: Leg, reason: str, now: float) -> None:
        if leg.recording is None:
            return
        tap_id, sink, action = leg.recording
        leg.recording = None
        self._recordings.pop(tap_id, None)
        session.timers.pop(f"{TIMER_PREFIX}record:{leg.leg_id}", None)
        try:
            self._read_tap(leg, tap_id, sink)
            leg.media.tap_stop(tap_id)
        except MediaError as exc:
            session.log.warning("recording of %s: %s", leg.leg_id, exc)
        seconds = float(sink.seconds)
        sink.close()
        self._deliver(session, ev.RecordDone(leg.leg_id, action.path, seconds, reason), now)

    @staticmethod
    def _read_tap(leg: Leg, tap_id: str, sink: Any) -> None:
        """What the tap holds now, into the recording."""
        block = leg.media.tap_read(tap_id)
        if block.frames:
            sink.write(block.pcm)

    def _tap_data(self, session: Session, leg: Leg, now: float) -> None:
        if leg.recording is None:
            return
        tap_id, sink, action = leg.recording
        try:
            self._read_tap(leg, tap_id, sink)
        except (MediaError, OSError) as exc:
            session.log.warning("recording of %s failed: %s", leg.leg_id, exc)
            self._stop_record(session, leg, "error", now)
            return
        if action.silence_seconds > 0 and sink.silent_for >= action.silence_seconds:
            self._stop_record(session, leg, "silence", now)
