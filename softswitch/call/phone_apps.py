"""Calls an agent's own phone places (SPEC ACD-4, ACD-6, ACD-7): feature codes for the
agent's state and for a three-way call, a supervisor's monitor / whisper / barge, and
outbound calls through a trunk.
`phone_app` picks the application for what the phone dialled, on the configuration of the
moment; the phone was authenticated by the switch (digest, as for its REGISTER).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from media.items import Tone
from softswitch.call.actions import (
    Action,
    AddParty,
    AgentCommand,
    Answer,
    Bridge,
    CallAgent,
    Hangup,
    PickUp,
    Play,
    Ring,
    SetVariable,
    Supervise,
)
from softswitch.call.dialout import DialOutApp
from softswitch.call.events import (
    AppEvent,
    CommandResult,
    DigitReceived,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegRinging,
    PlaybackDone,
    Started,
)
from softswitch.call.queue_app import REFUSED_TONE

if TYPE_CHECKING:
    from softswitch.call.app import CallView
    from softswitch.config import Config

#: Heard after a feature code that worked (two short high beeps); one refused gets the
#: three low beeps of `REFUSED_TONE`.
DONE_TONE = Tone(1400.0, level_dbm0=-12.0, on_ms=120, off_ms=120, repeats=2)

#: Feature codes that change the dialling agent's own state.
STATE_FEATURES = ("login", "logout", "ready", "not_ready", "wrap_up_end")
SUPERVISE_FEATURES = ("monitor", "whisper", "barge")
#: Keys a supervisor presses during a supervised call to change mode (as ChanSpy's).
SUPERVISE_KEYS = {"1": "monitor", "2": "whisper", "3": "barge"}


class PhoneCallError(Exception):
    """A call the phone may not make: the final response to its INVITE."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PhoneApp:
    """An application of a phone's call; `needs_anchor`: the node must be in the media
    path (it answers and plays, or mixes)."""

    name = "phone"
    needs_anchor = True

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        raise NotImplementedError


def phone_app(
    config: Config,
    agent_id: str,
    dialled: str,
    callback_open: Callable[[str], bool] | None = None,
    port: DirectCallPort | None = None,
) -> PhoneApp | OutboundApp:
    """The application for a call from `agent_id`'s phone to `dialled` (raises
    `PhoneCallError` with the answer when it may not be made). `callback_open(number)`:
    whether the callback list holds that caller (the node's CDR store); `port`: the ACD's
    bookkeeping of calls between agents."""
    agent = config.agent(agent_id)
    assert agent is not None
    feature = config.dialplan.feature_codes.match(dialled)
    if feature is not None:
        name, rest = feature
        if name in STATE_FEATURES:
            if rest and not rest.isdigit():
                raise PhoneCallError(484, "Reason code must be digits")
            return FeatureApp(AgentCommand(agent_id, name, rest))
        if name == "callback":
            if callback_open is None or not rest or not callback_open(rest):
                raise PhoneCallError(404, f"No callback task for {rest or '(no number)'}")
            return CallbackApp(rest, _outbound_trunk(config))
        if name == "conference":
            if not rest.lstrip("+").isdigit():
                raise PhoneCallError(484, "Dial the number to add after the code")
            return FeatureApp(AddParty(agent_id, rest))
        if name in SUPERVISE_FEATURES:
            if "supervise" not in agent.features:
                raise PhoneCallError(403, "Not a supervisor")
            if config.agent(rest) is None:
                raise PhoneCallError(404, f"No agent {rest or '(none dialled)'}")
            if rest == agent_id:
                raise PhoneCallError(403, "Cannot supervise yourself")
            return SuperviseApp(rest, name)
        if name in ("pickup", "directed_pickup"):
            if name == "directed_pickup" and config.agent(rest) is None:
                raise PhoneCallError(404, f"No agent {rest or '(none dialled)'}")
            return PickupApp(agent_id, rest or None)
        raise PhoneCallError(501, f"Feature {name} is not available yet")
    if config.agent(dialled) is not None:
        if dialled == agent_id:
            raise PhoneCallError(403, "Cannot call yourself")
        if port is None:
            raise PhoneCallError(501, "Calls between agents need the ACD")
        return InternalCallApp(port, agent_id, dialled)
    if dialled.lstrip("+").isdigit():
        if "outbound" not in agent.features:
            raise PhoneCallError(403, "Outbound calls not allowed for this agent")
        return OutboundApp(dialled, _outbound_trunk(config))
    raise PhoneCallError(404, f"Nothing to call at {dialled or '(empty)'}")


def _outbound_trunk(config: Config) -> str:
    """The first trunk that places outbound calls (an `outbound` address and a `caller_id`)."""
    trunk = config.outbound_trunk()
    if trunk is None:
        raise PhoneCallError(503, "No trunk places outbound calls")
    return trunk.name


class OutboundApp(DialOutApp):
    """An agent's call to an external number through a trunk, which presents the hotline
    number (SPEC SIP-4); the far end's ringback and answer reach the phone as for any
    dial-out."""

    name = "outbound"
    needs_anchor = False


class CallbackApp(OutboundApp):
    """An agent takes a callback task: the caller's number is dialled through the trunk as
    the hotline (any agent may; no `outbound` permission needed). The call's variable
    `callback` names the number, so the attempt and its outcome (the CDR row) belong to the
    task: answered, it leaves the callback list."""

    name = "callback"

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        out = super().handle(call, event, now)
        if isinstance(event, Started):
            return [SetVariable("callback", self.number), *out]
        return out


class FeatureApp(PhoneApp):
    """A feature code that asks one thing of the node (an agent state, a third party for
    the agent's call): the node answers, asks, beeps the outcome (two high beeps: done;
    three low: refused, e.g. ready while locked) and hangs up."""

    name = "feature"

    def __init__(self, command: AgentCommand | AddParty) -> None:
        self.command = command

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if isinstance(event, Started):
            return [Answer(call.caller_leg), self.command]
        if isinstance(event, CommandResult):
            tone = DONE_TONE if event.ok else REFUSED_TONE
            what = getattr(self.command, "action", "conference")
            return [
                SetVariable("feature", f"{what}:{'ok' if event.ok else 'refused'}"),
                Play(call.caller_leg, (tone,), tag="result"),
            ]
        if isinstance(event, PlaybackDone) and event.tag == "result":
            return [Hangup(disposition="completed")]
        return []


class DirectCallPort(Protocol):
    """The ACD inputs of a call between agents (call control carries them out)."""

    def direct_started(self, agent_id: str, call_id: str, now: float) -> bool: ...
    def direct_ended(self, agent_id: str, call_id: str, now: float) -> None: ...


class InternalCallApp(PhoneApp):
    """An agent calls another agent's extension (a consultation, a question): the other
    phone rings with the caller's identity; while the call lasts the ACD offers neither
    agent a queue call (a direct call). An agent already on a call, e.g. one holding a
    caller to consult, stays on that call in the ACD. The callee on a call, ringing or
    logged out: 486 Busy Here. A 3xx from the callee's phone to another agent of the node
    (its call forwarding) is followed once; one to an outside address is a refusal."""

    name = "internal"

    def __init__(self, port: DirectCallPort, caller: str, callee: str) -> None:
        self.port = port
        self.caller = caller
        self.callee = callee
        self.leg_id: str | None = None
        self.marked: list[str] = []  # agents on this direct call in the ACD
        self.redirected = False  # a 3xx from the callee's phone was followed (once only)

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if isinstance(event, Started):
            if not self.port.direct_started(self.callee, call.call_id, now):
                return [Hangup(status=486, reason="Busy Here", disposition="busy")]
            self.marked.append(self.callee)
            if self.port.direct_started(self.caller, call.call_id, now):
                self.marked.append(self.caller)
            self.leg_id = call.new_leg_id()
            return [CallAgent(self.callee, "", self.leg_id)]
        if getattr(event, "leg_id", None) == self.leg_id:
            if isinstance(event, LegRinging) and not call.caller_answered:
                return [Ring(call.caller_leg, event.status, from_leg=self.leg_id)]
            if isinstance(event, LegAnswered):
                assert self.leg_id is not None
                return [Bridge(call.caller_leg, self.leg_id)]
            if isinstance(event, LegFailed):
                redirect = event.redirect
                if redirect is not None and redirect != self.callee and not self.redirected:
                    return self._follow(call, redirect, now)
                self._done(call, now)
                status = event.status if 400 <= event.status < 700 else 480
                return [Hangup(status=status, disposition="no_answer")]
            if isinstance(event, LegEnded):
                self._done(call, now)
                return [Hangup(status=480, disposition="answered")]
        if isinstance(event, LegEnded) and event.leg_id == call.caller_leg:
            self._done(call, now)
        return []

    def _follow(self, call: CallView, agent_id: str, now: float) -> list[Action]:
        """The callee's phone redirected the call (3xx) to another agent of the node: ring
        that one instead, once (a second redirect is a refusal)."""
        self.redirected = True
        if self.callee in self.marked:
            self.marked.remove(self.callee)
            self.port.direct_ended(self.callee, call.call_id, now)
        if agent_id == self.caller or not self.port.direct_started(agent_id, call.call_id, now):
            self._done(call, now)
            return [Hangup(status=486, reason="Busy Here", disposition="busy")]
        self.marked.append(agent_id)
        self.callee = agent_id
        self.leg_id = call.new_leg_id()
        return [CallAgent(agent_id, "", self.leg_id)]

    def _done(self, call: CallView, now: float) -> None:
        for agent_id in self.marked:
            self.port.direct_ended(agent_id, call.call_id, now)
        self.marked.clear()


class PickupApp(PhoneApp):
    """Call pickup: `*8` answers the call ringing longest at an agent sharing a queue
    with the picker, `**NNNN` the one ringing at agent NNNN. Nothing to pick up: 480."""

    name = "pickup"

    def __init__(self, agent_id: str, ringing_agent: str | None) -> None:
        self.agent_id = agent_id
        self.ringing_agent = ringing_agent

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if isinstance(event, Started):
            return [PickUp(self.agent_id, self.ringing_agent)]
        if isinstance(event, CommandResult) and not event.ok:
            return [Hangup(status=480, reason=event.detail, disposition="no_pickup")]
        return []


class SuperviseApp(PhoneApp):
    """A supervisor's monitor, whisper or barge of the agent `agent_id`'s call; keys 1, 2
    and 3 switch between them. Refused (the agent is not on a call): three low beeps and
    the call ends. The supervisor's call ends with the supervised call."""

    name = "supervise"

    def __init__(self, agent_id: str, mode: str) -> None:
        self.agent_id = agent_id
        self.mode = mode

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if isinstance(event, Started):
            return [Answer(call.caller_leg), Supervise(self.agent_id, self.mode)]
        if isinstance(event, CommandResult) and not event.ok:
            return [
                SetVariable("supervise", f"refused:{event.detail}"),
                Play(call.caller_leg, (REFUSED_TONE,), tag="refused"),
            ]
        if isinstance(event, PlaybackDone) and event.tag == "refused":
            return [Hangup(disposition="completed")]
        if isinstance(event, DigitReceived) and event.digit in SUPERVISE_KEYS:
            mode = SUPERVISE_KEYS[event.digit]
            if mode != self.mode:
                self.mode = mode
                return [Supervise(self.agent_id, mode)]
        return []
