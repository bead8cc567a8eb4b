"""Call control: SIP dialogs ⇄ sessions, legs, media, applications and the ACD (sans-IO).

`CallControl` owns every live session. It turns SIP transaction events into leg transitions
and application events, carries out the actions applications return, routes the ACD's
commands to the calls they concern, and publishes every call, leg and queue event on the
event bus (the CDR writer is its first subscriber). Signalling goes through the sans-IO
`TransactionLayer`; media through a `MediaEngine` (the C RTP engine, or pass-through).

Application events are not handled re-entrantly: `_deliver` appends to a queue that
`_drain` empties after each input, so an action that makes the ACD offer a call elsewhere
never runs another application's code in the middle of this one's.

Times: `now` is monotonic, as for the transaction layer; bus events carry wall-clock
`now + wall_offset`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from acd import Acd, AcdError, CancelOffer, OfferCall, QueueEvent, QueueTimeout
from media import MediaEngine, MediaError, NotAnchoredError, PassThroughMedia
from softswitch.call import events as ev
from softswitch.call.actions import (
    Action,
    Answer,
    Bridge,
    CallAgent,
    CallNumber,
    CancelTimer,
    DialOut,
    DropLeg,
    Enqueue,
    Hangup,
    Listen,
    Mix,
    Play,
    Record,
    Ring,
    RunFlow,
    SetVariable,
    StartTimer,
    StopListen,
    StopPlay,
    StopRecord,
    Unmix,
)
from softswitch.call.app import Application
from softswitch.call.bus import EventBus
from softswitch.call.dialout import DialOutApp
from softswitch.call.errors import IllegalLegTransition
from softswitch.call.leg import Leg, LegEvent, LegState
from softswitch.call.queue_app import QueueApp
from softswitch.call.session import Session, log
from softswitch.call.sipcodec import (
    ALLOW,
    IDENTITY_HEADERS,
    PENDING,
    chosen_codec,
    dtmf_from_info,
    hop_target,
    offer_problem,
    origin_of,
    phone_target,
    sdp_direction,
)
from softswitch.sip.build import make_response, new_call_id, new_tag
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import DialogError, SipParseError, TransactionError
from softswitch.sip.location import LocationService
from softswitch.sip.message import Headers, Request, Response
from softswitch.sip.transaction import (
    AckReceived,
    AckTimeout,
    RequestReceived,
    ResponseReceived,
    Target,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
    hostport,
)
from softswitch.sip.transaction import State as TxnState

if TYPE_CHECKING:
    from softswitch.config import Config


def parse_host_port(text: str) -> tuple[str, int]:
    from softswitch.config import parse_host_port as parse

    return parse(text)


#: Builds the application for `RunFlow(flow, node)` of a session (the IVR), or None when
#: the flow does not exist in the session's configuration.
FlowFactory = Callable[[Session, str, str | None], Application | None]
#: Opens a recording sink for `Record` (path) -> object with write(pcm)/seconds/silent_for/close.
SinkFactory = Callable[[str], Any]
#: Opens a recogniser for `Listen` (leg id, grammar words) -> object with feed(stereo tap pcm)
#: and close(); its results come back through `CallControl.speech_result` on the event loop.
SpeechFactory = Callable[[str, tuple[str, ...]], Any]

_TIMER_PREFIX = "\x00"  # control's own per-session timers (recording limits)


class CallControl:
    """Every live call of a node (see the module docstring)."""

    def __init__(
        self,
        txn: TransactionLayer,
        acd: Acd,
        location: LocationService,
        bus: EventBus,
        media: MediaEngine,
        contact_for: Callable[[Target], str],
        realm: str,
        wall_offset: float = 0.0,
        cleanup_delay: float = 40.0,
        direct_media: Callable[[str, str], bool] | None = None,
        node_id: str = "hl",
    ) -> None:
        self.txn = txn
        self.acd = acd
        self.location = location
        self.bus = bus
        self.media = media
        self.passthrough = PassThroughMedia()
        # (trunk, agent) -> keep RTP off the node for this pair (direct_media in the config)
        self.direct_media = direct_media or (lambda trunk, agent: False)
        self.contact_for = contact_for
        self.realm = realm
        self.wall_offset = wall_offset
        self.cleanup_delay = cleanup_delay
        self.node_id = node_id
        self.flow_factory: FlowFactory | None = None
        self.sink_factory: SinkFactory | None = None
        self.speech_factory: SpeechFactory | None = None
        self._listening: dict[str, tuple[Session, Leg, Any]] = {}  # tap id -> recogniser
        self.sessions: dict[str, Session] = {}
        self._by_invite: dict[tuple, Session] = {}  # caller's INVITE server txn -> session
        self._by_origin: dict[tuple, Session] = {}  # caller's (Call-ID, From tag, CSeq)
        self._clients: dict[tuple, tuple] = {}  # client txn -> (session, leg, purpose, extra)
        self._dialogs: dict[tuple, tuple[Session, Leg]] = {}
        self._graveyard: deque[tuple[float, list[tuple], list[tuple]]] = deque()
        self._timers: list[tuple[float, int, str, str]] = []  # (deadline, serial, call, name)
        self._serials = itertools.count(1)
        self._ids = itertools.count(1)
        self._pending: deque[tuple[Session, ev.AppEvent, float]] = deque()
        self._draining = False
        self._recordings: dict[str, tuple[Session, Leg]] = {}  # tap id -> its session and leg
        self.port = _AcdPort(self)
        self.counters = {"calls": 0, "answered": 0, "abandoned": 0, "timeouts": 0, "ivr": 0}

    @property
    def anchors(self) -> bool:
        """Whether the node can be a party of calls (IVR, prompts): media is anchored."""
        return bool(getattr(self.media, "anchors", False))

    def wall(self, now: float) -> float:
        return now + self.wall_offset

    # --- timers --------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        when = self.acd.get_timer()  # asked after every input: no lists built here
        if self._graveyard:
            grave = self._graveyard[0][0]
            when = grave if when is None or grave < when else when
        if self._timers:
            timer = self._timers[0][0]
            when = timer if when is None or timer < when else when
        return when

    def handle_timer(self, now: float) -> None:
        self.apply(self.acd.handle_timer(now), now)
        while self._timers and self._timers[0][0] <= now:
            _, serial, call_id, name = heapq.heappop(self._timers)
            session = self.sessions.get(call_id)
            if session is None or session.timers.get(name) != serial:
                continue
            del session.timers[name]
            if name.startswith(_TIMER_PREFIX):
                self._control_timer(session, name[1:], now)
            else:
                self._deliver(session, ev.TimerFired(name), now)
        while self._graveyard and self._graveyard[0][0] <= now:
            _, client_keys, dialog_ids = self._graveyard.popleft()
            for key in client_keys:
                self._clients.pop(key, None)
            for dialog_id in dialog_ids:
                self._dialogs.pop(dialog_id, None)
        self._drain()

    def _start_timer(self, session: Session, name: str, seconds: float, now: float) -> None:
        serial = next(self._serials)
        session.timers[name] = serial
        heapq.heappush(self._timers, (now + max(0.0, seconds), serial, session.call_id, name))

    # --- a new call from a trunk ---------------------------------------------------------
    def start_call(
        self,
        event: RequestReceived,
        trunk: str,
        caller: str,
        called: str,
        config: Config,
        app: Application,
        now: float,
        route: str | None = None,
        variables: dict[str, str] | None = None,
        needs_anchor: bool = False,
    ) -> Session | None:
        """Take a trunk INVITE into a new session run by `app` (None: refused, answered)."""
        request = event.request
        origin = origin_of(request)
        if origin in self._by_origin:
            # RFC 3261 §8.2.2.2: the caller's INVITE again under another branch (it came by a
            # second path) is a merged request: 482, not a second call in the queue.
            self._respond(event.key, make_response(request, 482, to_tag=new_tag()), now)
            return None
        if needs_anchor and not self.anchors:
            # An IVR needs the node in the media path; with `media.anchor: false` it is not.
            log.error("call to %s needs media anchoring (media.anchor is off): 503", called)
            self._respond(event.key, make_response(request, 503, to_tag=new_tag()), now)
            return None
        call_id = f"{self.node_id}-{int(self.wall(now))}-{next(self._ids)}"
        a = Leg(f"{call_id}-a", "in", event.source, self.media)
        a.invite = request
        a.invite_key = event.key
        session = Session(call_id, a, trunk, caller, called, config, request.call_id)
        session.started = now
        session.route = route
        session.variables.update(variables or {})
        session.identity = [(n, v) for n, v in request.headers if n in IDENTITY_HEADERS]
        try:
            a.dialog = Dialog.as_uas(request, new_tag())
        except (DialogError, SipParseError) as exc:
            self._respond(event.key, make_response(request, 400, str(exc)), now)
            return None
        if a.dialog.route_set:
            a.target = hop_target(a.dialog, event.source.transport)
        self.sessions[call_id] = session
        self._by_invite[event.key] = session
        self._by_origin[origin] = session
        self._dialogs[a.dialog.id] = (session, a)
        self.counters["calls"] += 1
        wall = self.wall(now)
        self.bus.publish(
            ev.CallStarted(
                wall,
                call_id,
                request.call_id,
                trunk,
                caller,
                called,
                route,
                request.headers.get("p-asserted-identity"),
                request.headers.get("diversion"),
            )
        )
        self.bus.publish(
            ev.LegStarted(
                wall,
                call_id,
                a.leg_id,
                "in",
                request.call_id,
                f"{event.source.host}:{event.source.port}",
            )
        )
        session.log.info(
            "incoming from trunk %s caller=%s called=%s -> %s", trunk, caller, called, app.name
        )
        problem = offer_problem(request.body) if self.anchors and request.body else None
        if problem is not None:
            # SDP the anchor cannot serve is refused at once (488), with its CDR row.
            session.log.info("refused: %s", problem)
            self._release(session, now, "failed", "system", 488, tell_app=False)
            return None
        self._set_app(session, app, now)
        self._drain()
        return session

    def _set_app(self, session: Session, app: Application, now: float) -> None:
        session.app = app
        for name in [n for n in session.timers if not n.startswith(_TIMER_PREFIX)]:
            del session.timers[name]  # the old application's timers die with it
        if isinstance(app, QueueApp):
            session.queue = app.queue
        self._deliver(session, ev.Started(), now)

    # --- delivering events to applications -----------------------------------------------
    def _deliver(self, session: Session, event: ev.AppEvent, now: float) -> None:
        self._pending.append((session, event, now))

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending:
                session, event, now = self._pending.popleft()
                if session.ended or session.app is None:
                    continue
                app = session.app
                try:
                    actions = app.handle(session, event, now)
                except Exception:
                    # A broken application must not take other calls with it: end this one.
                    session.log.exception("application %s failed on %r", app.name, event)
                    self._release(session, now, "failed", "system", 500)
                    continue
                self._execute(session, app, actions, now)
        finally:
            self._draining = False

    def _execute(
        self, session: Session, app: Application, actions: Iterable[Action], now: float
    ) -> None:
        for action in actions:
            if session.ended or session.app is not app:
                return  # the call ended, or another application took over
            try:
                self._carry_out(session, action, now)
            except (MediaError, IllegalLegTransition, TransactionError) as exc:
                session.log.warning("%s failed: %s", type(action).__name__, exc)
                self._deliver(session, ev.ActionFailed(type(action).__name__, str(exc)), now)

    def _carry_out(self, session: Session, action: Action, now: float) -> None:
        if isinstance(action, Play):
            self._play(session, action, now)
        elif isinstance(action, StopPlay):
            leg = session.leg(action.leg_id)
            if leg is not None and leg.anchored and not leg.over:
                leg.plays.clear()
                leg.media.stop_play(leg.leg_id)
        elif isinstance(action, StartTimer):
            self._start_timer(session, action.name, action.seconds, now)
        elif isinstance(action, CancelTimer):
            session.timers.pop(action.name, None)
        elif isinstance(action, SetVariable):
            self._set_variable(session, action, now)
        elif isinstance(action, Answer):
            self._answer(session, now)
        elif isinstance(action, Ring):
            self._ring(session, action, now)
        elif isinstance(action, CallAgent):
            self._call_agent(session, action, now)
        elif isinstance(action, CallNumber):
            self._call_number(session, action, now)
        elif isinstance(action, Bridge):
            self._bridge(session, action, now)
        elif isinstance(action, Mix):
            self._mix(session, action.mix_id, action.hears, now)
        elif isinstance(action, Unmix):
            self._unmix(session, action.mix_id, now)
        elif isinstance(action, DropLeg):
            leg = session.leg(action.leg_id)
            if leg is not None:
                self._drop_leg(session, leg, now, action.reason)
        elif isinstance(action, Record):
            self._record(session, action, now)
        elif isinstance(action, StopRecord):
            leg = session.leg(action.leg_id)
            if leg is not None:
                self._stop_record(session, leg, "stopped", now)
        elif isinstance(action, Listen):
            self._listen(session, action, now)
        elif isinstance(action, StopListen):
            self._stop_listen(f"{action.leg_id}-asr")
        elif isinstance(action, Enqueue):
            self._set_app(
                session,
                QueueApp(self.port, action.queue, action.priority, _survey_of(session, action)),
                now,
            )
        elif isinstance(action, RunFlow):
            app = (
                self.flow_factory(session, action.flow, action.node) if self.flow_factory else None
            )
            if app is None:
                session.log.error("flow %s is not configured: ending the call", action.flow)
                self._release(session, now, "failed", "system", 500)
                return
            self._set_app(session, app, now)
        elif isinstance(action, DialOut):
            self._set_app(session, DialOutApp(action.number, action.trunk), now)
        elif isinstance(action, Hangup):
            # A call some party (an agent) talked to counts as answered, whatever the
            # application ending it says (a survey after the agent hung up).
            disposition = action.disposition
            if session.answered is not None:
                disposition = "answered"
            elif disposition == "answered":
                disposition = "completed"
            side = session.hangup_side or "system"
            # The status answers a caller not answered yet; an answered one just gets BYE.
            status = None if session.a.up else action.status
            self._release(session, now, disposition, side, status, tell_app=False)

    # --- ACD -----------------------------------------------------------------------------
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
        self._drain()

    def apply(self, commands: Iterable[Any], now: float) -> None:
        for cmd in commands:
            if isinstance(cmd, QueueEvent):
                self.bus.publish(
                    ev.QueueLogged(
                        self.wall(cmd.at),
                        cmd.call_id,
                        cmd.queue,
                        cmd.agent_id,
                        str(cmd.kind),
                        cmd.data,
                    )  # fmt: skip
                )
                continue
            session = self.sessions.get(cmd.call_id)
            if session is None or session.ended:
                continue
            if isinstance(cmd, OfferCall):
                self._deliver(session, ev.AgentOffered(cmd.agent_id, cmd.queue), now)
            elif isinstance(cmd, CancelOffer):
                self._deliver(session, ev.OfferWithdrawn(cmd.agent_id, cmd.reason), now)
            elif isinstance(cmd, QueueTimeout):
                session.log.info("max wait reached in queue %s after %.1f s", cmd.queue, cmd.waited)
                self.counters["timeouts"] += 1
                self._deliver(session, ev.QueueTimedOut(cmd.queue, cmd.waited), now)

    # --- actions on legs -----------------------------------------------------------------
    def _a_response(
        self, session: Session, status: int, reason: str = "", body: bytes = b""
    ) -> Response:
        a = session.a
        assert a.invite is not None and a.dialog is not None
        extra = [("contact", f"<{self.contact_for(a.target)}>")]
        if body:
            extra.append(("content-type", "application/sdp"))
        return make_response(
            a.invite, status, reason, to_tag=a.dialog.local_tag, body=body, extra=extra
        )

    def _answer(
        self, session: Session, now: float, prefer: int | None = None, by_node: bool = True
    ) -> None:
        """Answer the caller with the node's own SDP: for the node itself (IVR, voicemail,
        waiting tone), or as the anchor of a party just bridged to it (`by_node=False`)."""
        a = session.a
        if a.up:
            return
        if a.over:
            raise IllegalLegTransition(a.leg_id, a.state.value, "answer")
        assert a.invite is not None
        media = self.media
        if a.invite.body:
            body = media.answer_local(a.leg_id, a.invite.body, prefer=prefer)
        else:  # a delayed offer: ours goes in the 200, the answer comes in the ACK
            body = media.offer_local(a.leg_id)
        a.anchored = True
        a.to(LegEvent.ANSWER)
        self._respond(a.invite_key, self._a_response(session, 200, body=body), now)
        if by_node and session.node_answered is None:
            session.node_answered = now
            self.counters["ivr"] += 1
            self.bus.publish(ev.CallAnsweredByNode(self.wall(now), session.call_id, a.leg_id))
            session.log.info("answered by the node")

    def _ring(self, session: Session, action: Ring, now: float) -> None:
        a = session.a
        if a.up or a.over:
            return
        body = b""
        source = session.leg(action.from_leg) if action.from_leg else None
        if source is not None and source.sdp and a.invite is not None:
            try:  # early media from the ringing party (183 with SDP)
                if source.anchored and a.invite.body:
                    body = self.media.answer_local(a.leg_id, a.invite.body, prefer=source.codec)
                    a.anchored = True
                    self.media.bridge(a.leg_id, source.leg_id)
                elif not source.anchored:
                    body = source.media.answer(source.leg_id, a.leg_id, source.sdp)
            except MediaError as exc:
                session.log.warning("early media SDP from agent unusable: %s", exc)
                body = b""
        if a.state is LegState.NEW:
            a.to(LegEvent.PROVISIONAL)
        self._respond(a.invite_key, self._a_response(session, action.status, body=body), now)

    def _call_agent(self, session: Session, action: CallAgent, now: float) -> None:
        """A leg to the agent's registered phone, offering the call of `action.queue`."""
        agent_id = action.agent_id
        bindings = self.location.lookup(agent_id, now)
        if not bindings:
            # The registration vanished between the ACD's choice and now: log the agent out,
            # which puts the call back at the head of the queue.
            session.log.warning("agent %s has no registered contact", agent_id)
            self.acd_input(now, self.acd.agent_unavailable, agent_id, now)
            return
        binding = bindings[0]
        target = phone_target(binding.contact, binding.source, binding.transport)
        direct = self.direct_media(session.trunk, agent_id)
        leg = self._originate(
            session, action.leg_id, binding.contact, target, f"sip:{agent_id}@{self.realm}",
            session.caller or "anonymous", direct, now,
            internal=[("x-hotline-queue", action.queue)], agent_id=agent_id,
        )  # fmt: skip
        if leg is not None:
            self.bus.publish(ev.CallRinging(self.wall(now), session.call_id, agent_id))
            session.log.info("offering to agent %s at %s", agent_id, binding.contact)

    def _call_number(self, session: Session, action: CallNumber, now: float) -> None:
        """A leg to an external number through a trunk, presenting the hotline number."""
        trunk_name = action.trunk or session.trunk
        trunk = next((t for t in session.config.trunks if t.name == trunk_name), None)
        if trunk is None or trunk.outbound is None or trunk.caller_id is None:
            why = "unknown trunk" if trunk is None else "no `outbound` address or `caller_id`"
            session.log.error("cannot dial %s through trunk %s: %s", action.number, trunk_name, why)
            self._deliver(session, ev.LegFailed(action.leg_id, 503, why), now)
            return
        host, port = parse_host_port(trunk.outbound)
        target = Target("UDP", host, port)
        uri = f"sip:{action.number}@{hostport(host, port)}"
        leg = self._originate(
            session, action.leg_id, uri, target, uri, trunk.caller_id, trunk.direct_media, now
        )
        if leg is not None:
            session.log.info("dialling %s through trunk %s", action.number, trunk_name)

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
    ) -> Leg | None:
        """The one request builder for every leg the node originates (agents, external
        numbers). `internal`: headers for the node's own phones (associated data, the
        caller's identity); an external party gets none of them (SPEC OUT-5)."""
        a = session.a
        assert a.invite is not None
        # Pass SDP from leg to leg only for a two-party call the node does not touch: the
        # caller's media must not be anchored already (an IVR caller always is).
        anchors = self.anchors
        passthrough = not anchors or (direct and not a.anchored)
        media = self.passthrough if anchors and passthrough else self.media
        leg = Leg(leg_id, "out", target, media)
        leg.agent_id = agent_id
        leg.anchored = not passthrough
        host = self.contact_for(target).split("@", 1)[1].split(";")[0]
        headers = Headers()
        headers.add("max-forwards", "70")
        headers.add("from", f'"{from_user}" <sip:{from_user}@{host}>;tag={new_tag()}')
        headers.add("to", f"<{to_uri}>")
        headers.add("call-id", new_call_id(host))
        headers.add("cseq", "1 INVITE")
        headers.add("contact", f"<{self.contact_for(target)}>")
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
            headers.add("p-asserted-identity", f"<sip:{from_user}@{host}>")
        try:
            if leg.anchored:
                body = self.media.offer_local(leg.leg_id) or b""
            else:
                body = leg.media.offer(a.leg_id, leg.leg_id, a.invite.body or None) or b""
        except MediaError as exc:
            # The caller's SDP cannot be served or no RTP ports are left. The leg was never
            # offered: it joins no CDR (it has no row) and only its media goes.
            status = 488 if isinstance(exc, ValueError) else 503
            session.log.warning("media refused the call to %s: %s", to_uri, exc)
            leg.media.release(leg.leg_id)
            self._release(session, now, "failed", "system", status)
            return None
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
                f"{leg.target.host}:{leg.target.port}",
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
        if not caller.up:
            if other.anchored:
                self._answer(session, now, prefer=other.codec, by_node=False)
            else:
                body = other.media.answer(other.leg_id, caller.leg_id, other.sdp or b"")
                caller.to(LegEvent.ANSWER)
                self._respond(caller.invite_key, self._a_response(session, 200, body=body), now)
        if caller.anchored and other.anchored:
            self.media.bridge(caller.leg_id, other.leg_id)
        caller.peer, other.peer = other, caller
        if other.agent_id is not None:
            session.agent_id = other.agent_id
        first = session.answered is None
        if first:
            session.answered = now
            self.counters["answered"] += 1
        wall = self.wall(now)
        self.bus.publish(
            ev.CallAnswered(
                wall, session.call_id, other.agent_id, now - session.started, caller.leg_id
            )
        )
        session.log.info("answered by agent %s", other.agent_id)

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

    def _cancel_leg(self, session: Session, leg: Leg, now: float, reason: str) -> None:
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

    def _play(self, session: Session, action: Play, now: float) -> None:
        leg = session.leg(action.leg_id)
        if leg is None or not leg.up or not leg.anchored:
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
        self._start_timer(session, f"{_TIMER_PREFIX}record:{leg.leg_id}", action.max_seconds, now)

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

    def _stop_record(self, session: Session, leg: Leg, reason: str, now: float) -> None:
        if leg.recording is None:
            return
        tap_id, sink, action = leg.recording
        leg.recording = None
        self._recordings.pop(tap_id, None)
        session.timers.pop(f"{_TIMER_PREFIX}record:{leg.leg_id}", None)
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

    # --- responses on our client transactions -------------------------------------------
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
            leg.to(LegEvent.PROVISIONAL)
            if response.body:
                try:
                    if leg.anchored:
                        self.media.apply_answer(leg.leg_id, response.body)
                        leg.codec = chosen_codec(response.body)
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
        leg.media.release(leg.leg_id)
        cancelled = leg.state is LegState.CANCELLING
        if leg.state not in (LegState.FAILED, LegState.ENDED):
            leg.to(LegEvent.REJECTED)
        if cancelled or session.ended:
            return
        self._leg_stopped(session, leg, now, "rejected", status)
        session.log.info("agent %s answered %d; trying the next agent", leg.agent_id, status)
        self._deliver(session, ev.LegFailed(leg.leg_id, status, str(status)), now)

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
        ack = dialog.ack(leg.invite.cseq[0])
        self.txn.send_ack(ack, leg.target)
        if leg.dialog is not None or not leg.pending or session.ended:
            # A forked second 2xx, or an answer after we gave up on this phone: hang it up.
            if leg.state is LegState.CANCELLING:
                leg.to(LegEvent.ANSWER)  # -> ending
            self._bye(session, leg, now, dialog)
            return
        try:
            if leg.anchored:
                self.media.apply_answer(leg.leg_id, response.body)
                leg.codec = chosen_codec(response.body)
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
        leg.sdp = response.body
        leg.dialog = dialog
        leg.ack = ack
        leg.to(LegEvent.ANSWER)
        self._dialogs[dialog.id] = (session, leg)
        self.bus.publish(
            ev.LegProgress(self.wall(now), session.call_id, leg.leg_id, "answer", response.status)
        )
        self._deliver(session, ev.LegAnswered(leg.leg_id), now)

    def on_timeout(self, event: TransactionTimeout | TransportError, now: float) -> None:
        entry = self._clients.pop(event.key, None)
        if entry is None:
            return
        session, leg, purpose, extra = entry
        if purpose == "invite" and leg.pending:
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

    # --- requests from the peers ---------------------------------------------------------
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
        self._respond(session.a.invite_key, self._a_response(session, 487), now)
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
            self._respond(event.key, make_response(request, 481), now)
            return True
        method = request.method
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
                    problem = offer_problem(body) if body else None
                    if problem is not None:
                        raise ValueError(problem)
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
            relayed.headers.add("contact", f"<{self.contact_for(other.target)}>")
        key = self.txn.send_request(relayed, other.target, now)
        self._clients[key] = (session, other, "relay", (event.key, leg, offer))
        session.relays.append(key)
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
                ("contact", f"<{self.contact_for(leg.target)}>"),
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
            extra_headers.append(("contact", f"<{self.contact_for(origin.target)}>"))
        reply = make_response(request, status, response.reason, body=body, extra=extra_headers)
        self._respond(server_key, reply, now)

    def _remote_bye(self, session: Session, leg: Leg, now: float) -> None:
        """BYE from an answered leg's party: the application is told; the caller's BYE
        ends the call."""
        side = "caller" if leg is session.a else "agent"
        leg.to(LegEvent.REMOTE_BYE)
        self._stop_record(session, leg, "hangup", now)
        if session.hangup_side is None:
            session.hangup_side = side
        if leg.peer is not None:
            if leg.anchored and leg.peer.anchored:
                leg.media.unbridge(leg.leg_id)
            leg.peer.peer = None
            leg.peer = None
        self._leg_stopped(session, leg, now)
        if leg is not session.a:
            self._leave_mixes(session, leg, now)
        if leg is session.a:
            disposition = "answered" if session.answered else "abandoned"
            self._release(session, now, disposition, side, None)
        else:
            self._deliver(session, ev.LegEnded(leg.leg_id, side), now)

    # --- tear-down -----------------------------------------------------------------------
    def _leg_stopped(
        self,
        session: Session,
        leg: Leg,
        now: float,
        disposition: str | None = None,
        cause: int | None = None,
    ) -> None:
        """Publish the end of a leg once (with why, when it did not simply hang up)."""
        if not leg.stopped:
            leg.stopped = True
            self.bus.publish(
                ev.LegStopped(self.wall(now), session.call_id, leg.leg_id, disposition, cause)
            )

    def _release(
        self,
        session: Session,
        now: float,
        disposition: str,
        side: str,
        cause: int | None,
        leg_reason: str = "call_ended",
        tell_app: bool = True,
    ) -> None:
        """End the session: answer or BYE the caller, CANCEL or BYE every other leg, free the
        media, publish `CallEnded`.

        `tell_app`: the application did not ask for this (the caller left, media died, the
        node stops), so it hears `LegEnded` of the caller first and settles its own
        bookkeeping (the queue application tells the ACD the call is gone)."""
        if session.ended:
            return
        a = session.a
        app = session.app
        for leg in session.legs:
            if leg.recording is not None:  # its RecordDone reaches the app below
                self._stop_record(session, leg, "hangup", now)
            self._stop_listen(f"{leg.leg_id}-asr")
        for mix_id in list(session.mixes):
            self._unmix(session, mix_id, now)
        session.ended = True  # from here on, nothing is delivered to it
        if tell_app and app is not None:
            self._last_words(session, app, ev.LegEnded(a.leg_id, side, cause), now)
        if not a.up and not a.over:
            self._respond(a.invite_key, self._a_response(session, cause or 480), now)
            a.to(LegEvent.REJECTED)
        for leg in session.legs:
            if leg.pending and leg is not a:
                self._cancel_leg(session, leg, now, leg_reason)
            elif leg.up and leg.dialog is not None:
                self._bye(session, leg, now)
        wall = self.wall(now)
        talk = (now - session.answered) if session.answered is not None else 0.0
        wait = (session.answered if session.answered is not None else now) - session.started
        for leg in session.legs:
            leg.media.release(leg.leg_id)
            self._leg_stopped(session, leg, now)
            if leg.state is not LegState.CANCELLING:
                leg.to(LegEvent.RELEASE)
        self.bus.publish(
            ev.CallEnded(
                wall,
                session.call_id,
                disposition,
                side,
                cause,
                talk,
                wait,
                dict(session.variables),
            )  # fmt: skip
        )
        self._end_relays(session, now)
        session.log.info("ended: %s, hung up by %s, talk %.1f s", disposition, side, talk)
        self.sessions.pop(session.call_id, None)
        if a.invite_key is not None:
            self._by_invite.pop(a.invite_key, None)
        if a.invite is not None and self._by_origin.get(origin_of(a.invite)) is session:
            del self._by_origin[origin_of(a.invite)]
        dialog_ids = [leg.dialog.id for leg in session.legs if leg.dialog is not None]
        client_keys = [k for leg in session.legs if (k := leg.invite_key) is not None]
        self._graveyard.append((now + self.cleanup_delay, client_keys, dialog_ids))

    def _last_words(
        self, session: Session, app: Application, last: ev.AppEvent, now: float
    ) -> None:
        """The application hears what is still queued for it (a recording that ended with
        the call) and then `last`; of what it answers only call variables count now (a
        voicemail left by hanging up is still kept)."""
        mine = [event for s, event, _ in self._pending if s is session]
        if mine:
            self._pending = deque(p for p in self._pending if p[0] is not session)
        held, self._draining = self._draining, True  # others' events wait for the end
        try:
            for event in (*mine, last):
                try:
                    actions = app.handle(session, event, now)
                except Exception:
                    session.log.exception("application %s failed on %r", app.name, event)
                    continue
                for action in actions:
                    if isinstance(action, SetVariable):
                        self._set_variable(session, action, now)
        finally:
            self._draining = held

    def _set_variable(self, session: Session, action: SetVariable, now: float) -> None:
        session.variables[action.name] = action.value
        wall = self.wall(now)
        self.bus.publish(ev.VariableChanged(wall, session.call_id, action.name, action.value))
        values = session.variables
        if action.name == "ivr_path":
            flow = str(getattr(session.app, "flow_name", ""))
            node = action.value.rsplit(">", 1)[-1]
            self.bus.publish(ev.IvrStep(wall, session.call_id, flow, node, dict(values)))
        elif action.name == "voicemail_seconds":
            self.bus.publish(
                ev.VoicemailLeft(
                    wall,
                    session.call_id,
                    values.get("voicemail_mailbox", ""),
                    session.caller,
                    values.get("voicemail_path", ""),
                    _float(action.value),
                )  # fmt: skip
            )
        elif action.name == "survey_rating" and action.value.isdigit():
            rated = values.get("survey_agent") or session.agent_id
            self.bus.publish(ev.SurveyRated(wall, session.call_id, int(action.value), rated))

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
        session.relays.clear()

    def shutdown(self, now: float) -> None:
        """Node stopping: release every call cleanly so no CDR is left open."""
        for session in list(self.sessions.values()):
            if session.a.up:
                self._release(
                    session, now, "answered" if session.answered else "shutdown", "system", 503
                )
            else:
                self._release(session, now, "shutdown", "system", 503, leg_reason="shutdown")
        self._pending.clear()

    # --- media events --------------------------------------------------------------------
    def on_media_event(self, event: Any, now: float) -> None:
        """Events of the RTP engine: keys, prompts done, recordings, dead media (MED-3)."""
        kind = type(event).__name__
        if kind == "TapData":
            found = self._recordings.get(event.call_id)
            if found is not None:
                self._tap_data(found[0], found[1], now)
                self._drain()
            listening = self._listening.get(event.call_id)
            if listening is not None:
                _session, tapped, recogniser = listening
                try:
                    block = tapped.media.tap_read(event.call_id)
                except MediaError:
                    return
                if block.frames:
                    recogniser.feed(block.pcm)
            return
        leg_id = getattr(event, "leg_id", None)
        if leg_id is None:
            return
        session = self.sessions.get(leg_id.rsplit("-", 1)[0])
        if session is None:
            return
        leg = session.leg(leg_id)
        if leg is None:
            return
        if kind == "RtpTimeout":
            if leg.over or not leg.up:
                return
            session.log.warning(
                "no RTP on %s for %d ms: releasing the call", leg_id, event.silent_ms
            )
            self._release(session, now, "answered" if session.answered else "failed", "system", 408)
        elif kind == "DtmfDigit":
            self.on_dtmf(session, leg_id, event.digit, event.source, now)
        elif kind == "PlaybackDone":
            tag = leg.plays.pop(event.item_id, None)
            if tag is not None:
                self._deliver(session, ev.PlaybackDone(leg_id, tag, bool(event.stopped)), now)
        self._drain()

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

    def on_dtmf(self, session: Session, leg_id: str, digit: str, source: str, now: float) -> None:
        """A key pressed on a leg: RFC 4733, in-band or SIP INFO, to the application."""
        session.log.info("DTMF %s on %s (%s)", digit, leg_id, source)
        self.bus.publish(ev.DigitPressed(self.wall(now), session.call_id, leg_id, digit, source))
        self._deliver(session, ev.DigitReceived(leg_id, digit, source), now)

    # --- helpers -------------------------------------------------------------------------
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


class _AcdPort:
    """The queue application's ACD inputs, carried out on the engine by call control."""

    def __init__(self, control: CallControl) -> None:
        self.control = control

    def enqueue(self, call_id: str, queue: str, priority: int, now: float) -> None:
        control = self.control
        control.bus.publish(ev.CallQueued(control.wall(now), call_id, queue))
        control.acd_input(now, control.acd.enqueue, call_id, queue, now, priority)

    def abandon(self, call_id: str, now: float) -> None:
        self.control.acd_input(now, self.control.acd.abandon, call_id, now)

    def answered(self, call_id: str, agent_id: str, now: float) -> None:
        self.control.acd_input(now, self.control.acd.agent_answered, call_id, agent_id, now)

    def rejected(self, call_id: str, agent_id: str, reason: str, now: float) -> None:
        control = self.control
        control.acd_input(now, control.acd.agent_rejected, call_id, agent_id, now, reason)

    def ended(self, call_id: str, agent_id: str, now: float) -> None:
        self.control.acd_input(now, self.control.acd.call_ended, call_id, agent_id, now)


def _survey_of(session: Session, action: Enqueue) -> str | None:
    queue = session.config.queue(action.queue)
    return queue.survey if queue is not None else None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
