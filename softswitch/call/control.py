"""Call control: SIP dialogs ⇄ sessions, legs, media, applications and the ACD (sans-IO).

`CallControl` owns every live session. Its SIP side is `signalling.Signalling`, what it does
to legs for applications is `leg_actions.LegActions`; this module is the core. It turns SIP transaction events into leg transitions
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

import functools
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from acd import Acd, AcdError, CancelOffer, OfferCall, QueueEvent, QueueTimeout
from ivr.resolver import PromptResolver
from media import MediaEngine, MediaError, PassThroughMedia
from softswitch.call import events as ev
from softswitch.call.actions import (
    Action,
    AddParty,
    AgentCommand,
    Alert,
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
    PickUp,
    Play,
    QueueNote,
    Record,
    Ring,
    RunFlow,
    SetVariable,
    StartTimer,
    StopListen,
    StopPlay,
    StopRecord,
    Supervise,
    Unmix,
)
from softswitch.call.app import Application
from softswitch.call.base import TIMER_PREFIX
from softswitch.call.bus import EventBus
from softswitch.call.dialout import DialOutApp
from softswitch.call.errors import IllegalLegTransition
from softswitch.call.extensions import Extensions, SessionTooBriefError
from softswitch.call.failover import Failover
from softswitch.call.features import Features
from softswitch.call.forking import Forking
from softswitch.call.leg import Leg, LegEvent, LegState
from softswitch.call.leg_actions import LegActions
from softswitch.call.queue_app import QueueApp, survey_flow
from softswitch.call.session import Session, log
from softswitch.call.signalling import Signalling
from softswitch.call.sipcodec import (
    IDENTITY_HEADERS,
    hop_target,
    origin_of,
)
from softswitch.sip.build import make_response, new_call_id, new_tag
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import DialogError, SipParseError, TransactionError
from softswitch.sip.location import LocationService
from softswitch.sip.transaction import (
    RequestReceived,
    Target,
    TransactionLayer,
    hostport,
)

if TYPE_CHECKING:
    from softswitch.config import Config


#: Builds the application for `RunFlow(flow, node)` of a session (the IVR), or None when
#: the flow does not exist in the session's configuration.
FlowFactory = Callable[[Session, str, str | None], Application | None]
#: Opens a recording sink for `Record` (path) -> object with write(pcm)/seconds/silent_for/close.
SinkFactory = Callable[[str], Any]
#: Opens a recogniser for `Listen` (leg id, grammar words) -> object with feed(stereo tap pcm)
#: and close(); its results come back through `CallControl.speech_result` on the event loop.
SpeechFactory = Callable[[str, tuple[str, ...]], Any]


#: What an application may do while its caller is still in early media (trunk
#: `early_media`); anything else answers the call first (`_end_early_media`).
EARLY_MEDIA_ACTIONS = (Play, StopPlay, StartTimer, CancelTimer, SetVariable, Answer, QueueNote)

#: How the log says why a call left its queue without an agent (`QueueTimeout.reason`).
OVERFLOW_WHY = {
    "full": "full",
    "empty": "has no agent logged in",
    "agent_unavailable": "lost the agent it waited for (not logged in)",
}


class CallControl(Signalling, LegActions, Features, Extensions, Failover, Forking):
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
        # The node's commit-then-send of everything so far, for a 200 that must be on the wire
        # before the media that follows it starts (leg_actions._answered_by_node).
        self.send_now: Callable[[], None] | None = None
        self.speech_factory: SpeechFactory | None = None
        # (caller, queue, since epoch) -> the agent who answered the caller's latest call
        # there (sticky agent; the node's CDR store), or None to have no sticky agents.
        self.last_agent: Callable[[str, str, float], str | None] | None = None
        self.prompts: PromptResolver | None = None  # queue music and announcements
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
        self._adopted: dict[str, Session] = {}  # picked-up leg id -> the call it moved to
        self._timer_c: dict[str, tuple] = {}  # Timer C name -> the relayed re-INVITE's txn
        self.port = _AcdPort(self)
        self.counters = {
            "calls": 0, "answered": 0, "abandoned": 0, "timeouts": 0, "overflows": 0, "ivr": 0,
        }  # fmt: skip

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
            if name.startswith(TIMER_PREFIX):
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
        call_id = self.new_call_id(now)
        a = Leg(f"{call_id}-a", "in", event.source, self.media)
        a.invite = request
        a.invite_key = event.key
        session = Session(call_id, a, trunk, caller, called, config, request.call_id)
        session.started = now
        session.origin = origin
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
        a.sdp = request.body
        try:
            self._caller_extensions(session, request, config)
        except SessionTooBriefError as exc:  # RFC 4028 §9: ask for a longer interval
            extra = [("min-se", str(exc.min_se))]
            self._respond(
                event.key, make_response(request, 422, extra=extra, to_tag=a.dialog.local_tag), now
            )
            return None
        except ValueError as exc:
            self._respond(event.key, make_response(request, 400, str(exc)), now)
            return None
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
                hostport(event.source.host, event.source.port),
            )
        )
        session.log.info(
            "incoming from trunk %s caller=%s called=%s -> %s", trunk, caller, called, app.name
        )
        if self.anchors and request.body:
            try:  # parsed once here, answered from this when the call is answered
                a.offer = self.media.read_offer(request.body)
            except MediaError as exc:
                # SDP the anchor cannot serve is refused at once (488), with its CDR row.
                session.log.info("refused: %s", exc)
                self._release(session, now, "failed", "system", 488, tell_app=False)
                return None
        self._set_app(session, app, now)
        self._drain()
        return session

    # --- a call the node places ---------------------------------------------------------
    def new_call_id(self, now: float) -> str:
        """A call id of this node, unique across its runs (node, start second, serial)."""
        return f"{self.node_id}-{int(self.wall(now))}-{next(self._ids)}"

    def originate(
        self,
        call_id: str,
        agent_id: str,
        config: Config,
        app: Application,
        now: float,
        called: str,
        route: str,
        variables: dict[str, str] | None = None,
        reserved: bool = False,
    ) -> Session | None:
        """A call the node places itself (a callback it dials, a supervision started from
        the CLI): a session whose first leg is outbound, to agent `agent_id`'s phone, and
        which `app` runs from the start. The application asks for that leg (`CallAgent`
        naming `caller_leg`); the node's media anchors it. `call_id`: from `new_call_id`
        (the ACD may be told of the call before it starts); `reserved`: the agent is on
        this direct call in the ACD, which ends with the call, however it ends. None when
        the node cannot be a party of calls (`media.anchor` off)."""
        if not self.anchors:
            log.error("a call the node places needs media anchoring (media.anchor is off)")
            return None
        sip_call_id = new_call_id(self.realm)
        a = Leg(f"{call_id}-a", "out", Target("UDP", "0.0.0.0", 0), self.media)
        a.agent_id = agent_id
        session = Session(call_id, a, "", agent_id, called, config, sip_call_id)
        session.started = now
        session.route = route
        session.variables.update(variables or {})
        session.direct_agent = agent_id if reserved else None
        self.sessions[call_id] = session
        self.counters["calls"] += 1
        self.bus.publish(
            ev.CallStarted(self.wall(now), call_id, sip_call_id, "", agent_id, called, route)
        )
        session.log.info("the node calls agent %s for %s (%s)", agent_id, called, route)
        self._set_app(session, app, now)
        self._drain()
        return session

    def _set_app(self, session: Session, app: Application, now: float) -> None:
        session.app = app
        for name in [n for n in session.timers if not n.startswith(TIMER_PREFIX)]:
            del session.timers[name]  # the old application's timers die with it
        if session.transfer is not None:  # the hand-off of an agent's transfer
            self._transfer_done(session, now)
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
                if isinstance(event, ev.TransferRequested) and session.transfer is not None:
                    self._transfer_failed(session, now)  # the application did not hand on
        finally:
            self._draining = False

    def _execute(
        self, session: Session, app: Application, actions: Iterable[Action], now: float
    ) -> None:
        for action in actions:
            if session.ended or session.app is not app:
                return  # the call ended, or another application took over
            if session.early_body is not None and not isinstance(action, EARLY_MEDIA_ACTIONS):
                self._end_early_media(session, now)  # the call goes on: answer it first
            try:
                self._carry_out(session, action, now)
            except (MediaError, IllegalLegTransition, TransactionError) as exc:
                session.log.warning("%s failed: %s", type(action).__name__, exc)
                if isinstance(action, Bridge):
                    # The parties cannot be joined (e.g. an answer with SDP the node cannot
                    # use): whatever the application, the call fails rather than stay half
                    # connected; the application hears the caller's LegEnded and settles.
                    self._release(session, now, "failed", "system", 503, phrase="Media Unusable")
                    return
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
                QueueApp(
                    self.port,
                    action.queue,
                    action.priority,
                    survey_flow(session.config, action.queue),
                    self.prompts,
                    agent=action.agent,
                ),
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
        elif isinstance(action, AgentCommand):
            self._agent_command(session, action, now)
        elif isinstance(action, Supervise):
            self._supervise(session, action, now)
        elif isinstance(action, AddParty):
            self._add_party(session, action, now)
        elif isinstance(action, PickUp):
            self._pickup(session, action, now)
        elif isinstance(action, QueueNote):
            self.bus.publish(
                ev.QueueLogged(
                    self.wall(now),
                    session.call_id,
                    action.queue,
                    None,
                    action.event,
                    action.data,
                )  # fmt: skip
            )
        elif isinstance(action, Alert):
            data = {"what": action.what, "seconds": action.seconds}
            session.log.warning("agent %s alert: %s", action.agent_id, data)
            self.bus.publish(
                ev.QueueLogged(
                    self.wall(now),
                    session.call_id,
                    session.queue,
                    action.agent_id,
                    "AGENT_ALERT",
                    data,
                )  # fmt: skip
            )
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
            self._release(
                session, now, disposition, side, status, tell_app=False, phrase=action.reason
            )

    # --- ACD -----------------------------------------------------------------------------
    def acd_input(self, now: float, method: Callable[..., list[Any]], *args: Any) -> None:
        """Call `method(*args)` on the ACD and carry out what it answers.

        An `AcdError` (e.g. a 200 OK racing a ring-timeout CANCEL) is a state mismatch between
        the network and the queue, not a reason to lose the call: it is logged and ignored.
        """
        try:
            commands = method(*args)
        except AcdError as exc:
            name = getattr(method, "__name__", None) or getattr(method, "func", method).__name__
            log.warning("ACD refused %s%s: %s", name, args, exc)
            return
        self.apply(commands, now)
        self._drain()

    def acd_command(self, now: float, method: Callable[..., list[Any]], *args: Any) -> None:
        """Like `acd_input`, for a request from outside the network (the CLI, the API): an
        `AcdError` reaches the caller, who reports it (the engine changed nothing)."""
        self.apply(method(*args), now)
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
                if cmd.kind == "AGENT_ALERT":
                    log.warning("agent %s alert: %s", cmd.agent_id, cmd.data)
                continue
            session = self.sessions.get(cmd.call_id)
            if session is None or session.ended:
                continue
            if isinstance(cmd, OfferCall):
                self._deliver(session, ev.AgentOffered(cmd.agent_id, cmd.queue), now)
            elif isinstance(cmd, CancelOffer):
                self._deliver(session, ev.OfferWithdrawn(cmd.agent_id, cmd.reason), now)
            elif isinstance(cmd, QueueTimeout):
                if cmd.reason == "max_wait":
                    session.log.info(
                        "max wait reached in queue %s after %.1f s", cmd.queue, cmd.waited
                    )
                    self.counters["timeouts"] += 1
                else:
                    session.log.info(
                        "queue %s %s: overflow after %.1f s",
                        cmd.queue,
                        OVERFLOW_WHY.get(cmd.reason, cmd.reason),
                        cmd.waited,
                    )
                    self.counters["overflows"] += 1
                self._deliver(session, ev.QueueTimedOut(cmd.queue, cmd.waited, cmd.reason), now)

    # --- actions on legs -----------------------------------------------------------------
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
        phrase: str = "",
    ) -> None:
        """End the session: answer or BYE the caller, CANCEL or BYE every other leg, free the
        media, publish `CallEnded`. `phrase`: the reason phrase of the response to a caller
        not answered yet (empty: the standard one).

        `tell_app`: the application did not ask for this (the caller left, media died, the
        node stops), so it hears `LegEnded` of the caller first and settles its own
        bookkeeping (the queue application tells the ACD the call is gone)."""
        if session.ended:
            return
        if session.supervisor is not None:  # the supervisor's call ends with this one
            self._end_supervision(session, now)
        if session.supervising is not None:  # a supervisor leaves: the parties talk alone
            target = self.sessions.get(session.supervising)
            session.supervising = None
            if target is not None and target.supervisor == session.call_id:
                self._end_supervision(target, now, hang_up=False)
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
        if a.direction == "out":  # the node's own call: its first party is cancelled below
            if a.state is LegState.NEW:
                a.to(LegEvent.REJECTED)  # never dialled
        elif not a.up and not a.over:
            self._final_to_caller(session, self._a_response(session, cause or 480, phrase), now)
            a.to(LegEvent.REJECTED)
        for leg in session.legs:
            if leg.pending and (leg is not a or a.direction == "out"):
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
        for leg in session.legs:
            self._adopted.pop(leg.leg_id, None)
        session.log.info("ended: %s, hung up by %s, talk %.1f s", disposition, side, talk)
        self.sessions.pop(session.call_id, None)
        if a.invite_key is not None:
            self._by_invite.pop(a.invite_key, None)
        if self._by_origin.get(session.origin) is session:
            del self._by_origin[session.origin]
        dialog_ids = [leg.dialog.id for leg in session.legs if leg.dialog is not None]
        client_keys = [k for leg in session.legs if (k := leg.invite_key) is not None]
        for leg in session.legs:
            if leg.attempts is not None:
                client_keys += leg.attempts.stale
            client_keys += [fork.key for fork in leg.forks if fork.key is not None]
        self._graveyard.append((now + self.cleanup_delay, client_keys, dialog_ids))
        if session.direct_agent is not None:  # the agent the node called is free again
            agent_id, session.direct_agent = session.direct_agent, None
            try:
                self.apply(self.acd.direct_call_ended(agent_id, session.call_id, now), now)
            except AcdError as exc:  # a reload removed the agent meanwhile
                session.log.warning("agent %s not taken off its direct call: %s", agent_id, exc)
        _bury(session)

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
        elif action.name == "survey_rating" and action.value.isdecimal():
            rated = values.get("survey_agent") or session.agent_id
            self.bus.publish(ev.SurveyRated(wall, session.call_id, int(action.value), rated))

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
        session = self.sessions.get(leg_id.rsplit("-", 1)[0]) or self._adopted.get(leg_id)
        if session is None or session.ended:
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
            if session.early_body is not None and leg is session.a:
                self._end_early_media(session, now)  # a key: the caller is answered
            self.on_dtmf(session, leg_id, event.digit, event.source, now)
            self._dtmf_to_peer(session, leg, event.digit, event.source)
        elif kind == "PlaybackDone":
            if session.early_body is not None and leg is session.a:
                self._end_early_media(session, now)  # its first prompt is over
            tag = leg.plays.pop(event.item_id, None)
            if tag is not None:
                self._deliver(session, ev.PlaybackDone(leg_id, tag, bool(event.stopped)), now)
        self._drain()

    def on_dtmf(self, session: Session, leg_id: str, digit: str, source: str, now: float) -> None:
        """A key pressed on a leg: RFC 4733, in-band or SIP INFO, to the application."""
        session.log.info("DTMF %s on %s (%s)", digit, leg_id, source)
        self.bus.publish(ev.DigitPressed(self.wall(now), session.call_id, leg_id, digit, source))
        self._deliver(session, ev.DigitReceived(leg_id, digit, source), now)

    # --- helpers -------------------------------------------------------------------------


class _AcdPort:
    """The queue application's ACD inputs, carried out on the engine by call control."""

    def __init__(self, control: CallControl) -> None:
        self.control = control

    def enqueue(
        self, call_id: str, queue: str, priority: int, now: float, agent: str | None = None
    ) -> None:
        control = self.control
        control.bus.publish(ev.CallQueued(control.wall(now), call_id, queue))
        if agent is not None:  # a transfer to that agent: no region or sticky preference
            control.acd_input(
                now, functools.partial(control.acd.enqueue, agent=agent), call_id, queue, now,
                priority,
            )  # fmt: skip
            return
        region, preferred = self._preferences(call_id, queue, now)
        control.acd_input(
            now, control.acd.enqueue, call_id, queue, now, priority, region, preferred
        )

    def _preferences(self, call_id: str, queue: str, now: float) -> tuple[str | None, str | None]:
        """The caller's region (for a queue with `region_wait`) and the agent who served the
        caller last (for one with `sticky_wait`, from `CallControl.last_agent`)."""
        control = self.control
        session = control.sessions.get(call_id)
        spec = session.config.queue(queue) if session is not None else None
        if session is None or spec is None or not session.caller:
            return None, None
        region = preferred = None
        if spec.region_wait > 0:
            region = session.config.dialplan.region_of(session.caller)
        if spec.sticky_wait > 0 and control.last_agent is not None:
            since = control.wall(now) - spec.sticky_window
            try:
                preferred = control.last_agent(session.caller, queue, since)
            except Exception as exc:  # a broken CDR database must not stop the call
                log.error("call=%s sticky agent lookup failed: %s", call_id, exc)
        return region, preferred

    def abandon(self, call_id: str, now: float, callback: bool = False) -> None:
        self.control.acd_input(now, self.control.acd.abandon, call_id, now, callback)

    def position(self, call_id: str) -> int | None:
        return self.control.acd.position(call_id)

    def expected_wait(self, queue: str) -> float | None:
        return self.control.acd.expected_wait(queue)

    def answered(self, call_id: str, agent_id: str, now: float) -> None:
        self.control.acd_input(now, self.control.acd.agent_answered, call_id, agent_id, now)

    def rejected(self, call_id: str, agent_id: str, reason: str, now: float) -> None:
        control = self.control
        control.acd_input(now, control.acd.agent_rejected, call_id, agent_id, now, reason)

    def ended(self, call_id: str, agent_id: str, now: float) -> None:
        self.control.acd_input(now, self.control.acd.call_ended, call_id, agent_id, now)

    def direct_started(self, agent_id: str, call_id: str, now: float) -> bool:
        """`agent_id` is on a call between agents: False when the ACD refuses (the agent
        rings, is on a call or logged out)."""
        control = self.control
        try:
            commands = control.acd.direct_call_started(agent_id, call_id, now)
        except AcdError as exc:
            log.info("call=%s agent %s not on a direct call: %s", call_id, agent_id, exc)
            return False
        control.apply(commands, now)
        return True

    def direct_ended(self, agent_id: str, call_id: str, now: float) -> None:
        self.control.acd_input(now, self.control.acd.direct_call_ended, agent_id, call_id, now)

    def held(self, call_id: str, agent_id: str, held: bool, now: float) -> None:
        acd = self.control.acd
        method = acd.agent_hold if held else acd.agent_resume
        self.control.acd_input(now, method, agent_id, call_id, now)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _bury(session: Session) -> None:
    """An ended session stays reachable for `cleanup_delay` s, so that late responses and
    retransmitted requests still find its legs and dialogs (to ACK, BYE or answer them).
    What only a live call uses goes now: its application, queued events, the parsed SDP
    offers, prompt bookkeeping. At hundreds of calls a second these dead sessions are most
    of the node's objects, and every full garbage collection walks them all."""
    session.app = None
    session.inbox.clear()
    session.early_body = None
    for leg in session.legs:
        leg.offer = None
        leg.provisional = None
        leg.plays.clear()
