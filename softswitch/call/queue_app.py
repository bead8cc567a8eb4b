"""The queue application: a call waits in an ACD queue and is offered to agents (SPEC ACD-1,
ACD-4), on top of the pure engine in `acd/`.

The ACD picks agents and keeps queue time; this application turns its decisions (routed to
it by call control as `AgentOffered`, `OfferWithdrawn`, `QueueTimedOut`) into actions on legs,
and leg outcomes back into ACD inputs through an `AcdPort`. Behaviour is that of the two-leg
B2BUA it replaces: the caller hears ringback (180) until an agent answers — or, when the node
has already answered the caller (after the IVR), a ringback tone from the media engine; a
no-answer or refusal returns the call to the head of its queue; max wait answers the
caller with the queue's `timeout_response` (from the configuration the call started with).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Protocol

from ivr.nodes import PromptRef
from ivr.resolver import PromptError, PromptResolver
from media.items import PlayItem, Tone
from softswitch.call.actions import (
    Action,
    Alert,
    Bridge,
    CallAgent,
    CallNumber,
    CancelTimer,
    DialOut,
    DropLeg,
    Enqueue,
    Hangup,
    Mix,
    Play,
    Ring,
    RunFlow,
    SetVariable,
    StartTimer,
    StopPlay,
    Unmix,
    transfer_actions,
)
from softswitch.call.app import CallView
from softswitch.call.events import (
    AgentOffered,
    AppEvent,
    ConferenceRequested,
    DigitReceived,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegHeld,
    LegReplaced,
    LegRinging,
    OfferWithdrawn,
    PickedUp,
    PlaybackDone,
    QueueTimedOut,
    Started,
    TimerFired,
    TransferRequested,
)

if TYPE_CHECKING:
    from softswitch.config import Config

log = logging.getLogger("hotline.call")

#: What a caller already answered by the node hears while waiting when the queue has no
#: `music` (China's ringback: 450 Hz, 1 s on, 4 s off).
WAITING_TONE = Tone(450.0, level_dbm0=-13.0, on_ms=1000, off_ms=4000, repeats=0)

#: The mix of a three-way call, and what the agent hears when its third party cannot be
#: reached (three low beeps).
CONFERENCE_MIX = "conference"
#: The queue application's timer of a three-way call's `conference_alert`.
CONFERENCE_TIMER = "conference-alert"
REFUSED_TONE = Tone(480.0, level_dbm0=-12.0, on_ms=300, off_ms=200, repeats=3)

#: What a caller on hold hears when the queue has neither `hold_music` nor `music`.
HOLD_TONE = Tone(400.0, level_dbm0=-18.0, on_ms=300, off_ms=3700, repeats=0)


#: The queue application's timer of periodic announcements.
ANNOUNCE_TIMER = "queue-announce"

#: CDR disposition of a caller hung up by a queue's overflow, by why it left the queue.
OVERFLOW_DISPOSITIONS = {
    "max_wait": "timeout",
    "full": "queue_full",
    "empty": "queue_empty",
    "agent_unavailable": "agent_unavailable",
}


def survey_flow(config: Config, queue: str) -> str | None:
    """The flow a caller of `queue` goes to after the agent hangs up (its `survey`)."""
    found = config.queue(queue)
    return found.survey if found is not None else None


class AcdPort(Protocol):
    """The ACD inputs the queue application makes (call control carries them out and routes
    the engine's answers back to the calls they concern)."""

    def enqueue(
        self, call_id: str, queue: str, priority: int, now: float, agent: str | None = None
    ) -> None: ...
    def abandon(self, call_id: str, now: float, callback: bool = False) -> None: ...
    def answered(self, call_id: str, agent_id: str, now: float) -> None: ...
    def rejected(self, call_id: str, agent_id: str, reason: str, now: float) -> None: ...
    def ended(self, call_id: str, agent_id: str, now: float) -> None: ...
    def direct_ended(self, agent_id: str, call_id: str, now: float) -> None: ...
    def position(self, call_id: str) -> int | None: ...
    def expected_wait(self, queue: str) -> float | None: ...


class QueueApp:
    name = "queue"

    def __init__(
        self,
        acd: AcdPort,
        queue: str,
        priority: int = 0,
        survey_flow: str | None = None,
        prompts: PromptResolver | None = None,
        agent: str | None = None,
    ) -> None:
        self.acd = acd
        self.queue = queue
        self.agent = agent  # offered to this agent only (a transfer to an agent)
        self.priority = priority
        self.survey_flow = survey_flow
        self.prompts = prompts  # music and announcements (None: the waiting tone only)
        self.offers: dict[str, str] = {}  # agent id -> leg id of its ringing leg
        self.agent_of: dict[str, str] = {}  # leg id -> agent id, every leg we asked for
        self.talking: str | None = None  # the agent leg bridged to the caller
        self.waiting = False
        self.tone = False
        self.called_back = False  # the caller pressed the callback key
        self.holding = False  # the talking agent holds the caller: hold music plays
        self.third: str | None = None  # a three-way call's third party: ringing, then mixed
        self.mixed = False  # the three parties are in the conference mix
        self.direct: dict[str, str] = {}  # leg of an agent on a direct call -> its call id
        self.done: set[str] = set()  # agent legs whose end the ACD has been told

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if self.third is not None and getattr(event, "leg_id", None) == self.third:
            if isinstance(event, LegAnswered | LegFailed | LegEnded):
                return self._third_party(call, event, now)
            return []
        if isinstance(event, Started):
            return self._start(call, now)
        if isinstance(event, AgentOffered):
            if not self.waiting:
                return []
            leg_id = call.new_leg_id()
            self.offers[event.agent_id] = leg_id
            self.agent_of[leg_id] = event.agent_id
            return [CallAgent(event.agent_id, event.queue, leg_id)]
        if isinstance(event, OfferWithdrawn):
            dropped = self.offers.pop(event.agent_id, None)
            return [DropLeg(dropped, event.reason)] if dropped is not None else []
        if isinstance(event, LegRinging):
            if event.leg_id in self.offers.values() and not call.caller_answered:
                return [Ring(call.caller_leg, event.status, from_leg=event.leg_id)]
            return []
        if isinstance(event, LegAnswered):
            return self._answered(call, event.leg_id, now)
        if isinstance(event, LegFailed):
            agent = self.agent_of.get(event.leg_id)
            if agent is not None and self.offers.get(agent) == event.leg_id:
                del self.offers[agent]
                self.acd.rejected(call.call_id, agent, event.reason, now)
            return []
        if isinstance(event, LegEnded):
            return self._leg_ended(call, event, now)
        if isinstance(event, QueueTimedOut):
            self.waiting = False
            return self._overflow(call, event)
        if isinstance(event, TimerFired) and event.name == CONFERENCE_TIMER:
            queue = call.config.queue(self.queue)
            if self.mixed and self.talking is not None and queue is not None:
                agent = self.agent_of.get(self.talking, "")
                return [Alert(agent, "conference", queue.conference_alert)]
            return []
        if isinstance(event, TimerFired) and event.name == ANNOUNCE_TIMER and self.waiting:
            return self._announce(call)
        if isinstance(event, PlaybackDone) and self.waiting and self.tone:
            if event.tag in ("announce", "music") and not event.stopped:
                return self._music(call)  # after an announcement, and over and over
        if isinstance(event, PlaybackDone) and event.tag == "callback" and self.called_back:
            return [Hangup(disposition="callback")]
        if isinstance(event, DigitReceived) and event.leg_id == call.caller_leg:
            return self._digit(call, event.digit, now)
        if isinstance(event, LegHeld) and event.leg_id == self.talking:
            self.holding = event.held
            return self._hold_music(call) if event.held else [StopPlay(call.caller_leg)]
        if isinstance(event, PlaybackDone) and event.tag == "hold" and self.holding:
            return [] if event.stopped else self._hold_music(call)
        if isinstance(event, TransferRequested) and event.leg_id == self.talking:
            return self._transferred(call, event, now)
        if isinstance(event, LegReplaced) and event.old_leg == self.talking:
            return self._replaced(call, event, now)
        if isinstance(event, PickedUp) and self.waiting and self.talking is None:
            # The ACD has the picker talking on the call already (and withdrew the rings).
            self.talking = event.leg_id
            self.agent_of[event.leg_id] = event.agent_id
            self.waiting = False
            out: list[Action] = []
            if self.tone:
                out += [StopPlay(call.caller_leg), CancelTimer(ANNOUNCE_TIMER)]
                self.tone = False
            return [*out, Bridge(call.caller_leg, event.leg_id)]
        if isinstance(event, ConferenceRequested) and self.talking and self.third is None:
            self.third = call.new_leg_id()
            target = event.target
            if target.kind == "agent":  # on a direct call in the ACD (call control did it)
                self.agent_of[self.third] = target.value
                self.direct[self.third] = call.call_id
                return [CallAgent(target.value, "", self.third)]
            return [CallNumber(target.value, self.third, target.trunk)]
        return []

    def _third_party(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        """The third party of a three-way call rang, answered, failed or hung up."""
        caller, third = call.caller_leg, self.third
        assert third is not None
        if isinstance(event, LegAnswered) and self.talking is not None:
            self.mixed = True
            agent = self.talking
            out: list[Action] = []
            if self.holding:  # the agent held the caller to dial: everyone talks now
                self.holding = False
                out.append(StopPlay(caller))
            hears: dict[str, tuple[str, ...]] = {
                caller: (agent, third), agent: (caller, third), third: (caller, agent),
            }  # fmt: skip
            queue = call.config.queue(self.queue)
            if queue is not None and queue.conference_alert > 0:
                out.append(StartTimer(CONFERENCE_TIMER, queue.conference_alert))
            return [*out, Mix(CONFERENCE_MIX, hears)]
        if isinstance(event, LegAnswered):  # the agent left while it rang
            self.mixed = False
            self._third_takes_over()
            return [Bridge(caller, third, rejoin=True)]
        if isinstance(event, LegFailed):
            self._agent_done(call, third, now)
            self.third = None
            if self.talking is None:  # the agent left for it, and it cannot be reached
                return [Hangup(status=480, disposition="answered")]
            return [Play(self.talking, (REFUSED_TONE,))]
        if isinstance(event, LegEnded):
            self._agent_done(call, third, now)
            self.third = None
            if self.mixed and self.talking is not None:
                self.mixed = False
                return [Unmix(CONFERENCE_MIX), Bridge(caller, self.talking, rejoin=True)]
            return [Hangup(status=480, disposition="answered")]
        return []

    def _third_takes_over(self) -> None:
        """The agent left a three-way call: a third party that is an agent becomes the
        call's talking agent (it may hold, transfer …); an outside party stays the third."""
        if self.third is not None and self.third in self.agent_of:
            self.talking, self.third = self.third, None

    def _hold_music(self, call: CallView) -> list[Action]:
        """What a caller on hold hears: the queue's `hold_music`, else its `music`, else a
        soft tone; played again each time it ends, until the agent takes the caller back."""
        queue = call.config.queue(self.queue)
        ref = queue.hold_music or queue.music if queue is not None else None
        items = self._resolve(call, ref, {}) if ref is not None else ()
        return [Play(call.caller_leg, items or (HOLD_TONE,), tag="hold")]

    def _replaced(self, call: CallView, event: LegReplaced, now: float) -> list[Action]:
        """An attended transfer: the old agent is done with the call (wrap-up), the
        consulted party takes over; the caller, held to consult, hears it now."""
        self._agent_done(call, event.old_leg, now)
        self.talking = event.new_leg
        if event.agent_id is not None:
            self.agent_of[event.new_leg] = event.agent_id
            self.direct[event.new_leg] = event.consultation
        out: list[Action] = []
        if self.holding:
            self.holding = False
            out.append(StopPlay(call.caller_leg))
        return [*out, Bridge(call.caller_leg, event.new_leg)]

    def _agent_done(self, call: CallView, leg_id: str, now: float) -> None:
        """The agent of `leg_id` is done with the call: the ACD hears the call ended for it
        (or, for one an attended transfer brought, that its direct call ended)."""
        agent = self.agent_of.get(leg_id)
        if agent is None or leg_id in self.done:
            return  # an outside party (an attended transfer to a number), or told already
        self.done.add(leg_id)
        consultation = self.direct.pop(leg_id, None)
        if consultation is not None:
            self.acd.direct_ended(agent, consultation, now)
        else:
            self.acd.ended(call.call_id, agent, now)

    def _transferred(self, call: CallView, event: TransferRequested, now: float) -> list[Action]:
        """The talking agent transferred the caller: the agent is done with the call (its
        wrap-up starts) and the caller goes where the transfer says."""
        agent = self.agent_of.get(event.leg_id, "")
        self.talking = None
        self._agent_done(call, event.leg_id, now)
        out: list[Action] = []
        if self.holding:
            self.holding = False
            out.append(StopPlay(call.caller_leg))
        return [*out, SetVariable("transferred_by", agent), *transfer_actions(event.target)]

    def _digit(self, call: CallView, digit: str, now: float) -> list[Action]:
        """The queue's `callback_key` while waiting: the caller leaves a callback request
        (queue-log CALLBACK, listed by `hotline callbacks`), hears `callback_prompt`, and
        the call ends."""
        queue = call.config.queue(self.queue)
        if not self.waiting or queue is None or digit != queue.callback_key:
            return []
        self.waiting = False
        self.called_back = True
        self.acd.abandon(call.call_id, now, callback=True)
        out: list[Action] = [
            StopPlay(call.caller_leg),
            CancelTimer(ANNOUNCE_TIMER),
            SetVariable("callback", "requested"),
        ]
        self.tone = False
        items = self._resolve(call, queue.callback_prompt, {}) if queue.callback_prompt else ()
        if not items:
            return [*out, Hangup(disposition="callback")]
        return [*out, Play(call.caller_leg, items, tag="callback")]

    # -- while waiting: music and announcements ------------------------------------------

    def _music(self, call: CallView) -> list[Action]:
        queue = call.config.queue(self.queue)
        ref = queue.music if queue is not None else None
        items = self._resolve(call, ref, {}) if ref is not None else ()
        if not items:
            return [Play(call.caller_leg, (WAITING_TONE,), tag="waiting")]
        return [Play(call.caller_leg, items, tag="music")]

    def _announce(self, call: CallView) -> list[Action]:
        """Position (and expected wait) now, then the music again; the next in `every`."""
        queue = call.config.queue(self.queue)
        announce = queue.announce if queue is not None else None
        if announce is None:
            return []
        items: tuple[PlayItem, ...] = ()
        position = self.acd.position(call.call_id)
        if announce.position is not None and position:
            variables = {"queue_position": str(position), "queue_ahead": str(position - 1)}
            items += self._resolve(call, announce.position, variables)
        wait = self.acd.expected_wait(self.queue)
        if announce.wait is not None and wait is not None:
            minutes = str(max(1, math.ceil(wait / 60)))
            items += self._resolve(call, announce.wait, {"queue_wait_minutes": minutes})
        out: list[Action] = [StartTimer(ANNOUNCE_TIMER, announce.every)]
        if items:
            out += [StopPlay(call.caller_leg), Play(call.caller_leg, items, tag="announce")]
        return out

    def _resolve(
        self, call: CallView, ref: PromptRef, variables: dict[str, str]
    ) -> tuple[PlayItem, ...]:
        if self.prompts is None:
            return ()
        try:
            return self.prompts.items(ref, {**call.variables, **variables})
        except PromptError as exc:
            log.warning("call=%s queue %s: prompt not played: %s", call.call_id, self.queue, exc)
            return ()

    def _overflow(self, call: CallView, event: QueueTimedOut) -> list[Action]:
        """The caller left the queue without an agent: to the queue's `overflow` (another
        queue, a flow, an external number, a response), else `timeout_response`."""
        queue = call.config.queue(event.queue)
        target = queue.overflow if queue is not None else None
        out: list[Action] = []
        if self.tone:
            out += [StopPlay(call.caller_leg), CancelTimer(ANNOUNCE_TIMER)]
            self.tone = False
        if self.agent is not None and event.reason == "agent_unavailable":
            # Transferred to an agent who has just logged out: any agent of the queue.
            return [*out, Enqueue(event.queue, self.priority)]
        if target is not None and target.queue is not None:
            return [*out, Enqueue(target.queue, self.priority)]
        if target is not None and target.flow is not None:
            return [*out, RunFlow(target.flow)]
        if target is not None and target.transfer is not None:
            return [*out, DialOut(target.transfer, target.trunk)]
        status = queue.timeout_response if queue is not None else 480
        reason = ""
        if target is not None and target.respond is not None:
            status, reason = target.respond, target.reason or ""
        disposition = OVERFLOW_DISPOSITIONS.get(event.reason, "timeout")
        return [*out, Hangup(status=status, reason=reason, disposition=disposition)]

    def _start(self, call: CallView, now: float) -> list[Action]:
        self.waiting = True
        out: list[Action] = []
        if call.caller_answered:
            self.tone = True
        else:
            out.append(Ring(call.caller_leg))
        if self.agent is None:
            self.acd.enqueue(call.call_id, self.queue, self._priority(call), now)
        else:
            self.acd.enqueue(call.call_id, self.queue, self._priority(call), now, self.agent)
        if self.tone and self.waiting:  # not sent straight to the overflow
            announced = self._announce(call)
            if not any(isinstance(a, Play) for a in announced):
                out += self._music(call)
            out += announced
        return out

    def _priority(self, call: CallView) -> int:
        """The highest of: the one asked for (`Enqueue.priority`), the call variable
        `priority` (a whole number a flow set), the queue's `vip_priority` for a `vip`."""
        priority = self.priority
        value = call.variables.get("priority", "").strip()
        if value.isascii() and value.lstrip("-").isdigit() and len(value) <= 4:
            priority = max(priority, int(value))
        queue = call.config.queue(self.queue)
        if queue is not None and any(rule.matches(call.caller) for rule in queue.vip):
            priority = max(priority, queue.vip_priority)
        return priority

    def _answered(self, call: CallView, leg_id: str, now: float) -> list[Action]:
        agent = self.agent_of.get(leg_id)
        if agent is None or self.offers.get(agent) != leg_id or self.talking is not None:
            # An answer after we gave up on this phone, or a second agent: hang it up.
            return [DropLeg(leg_id, "late_answer")]
        del self.offers[agent]
        self.talking = leg_id
        self.waiting = False
        self.acd.answered(call.call_id, agent, now)
        out: list[Action] = []
        if self.tone:
            out += [StopPlay(call.caller_leg), CancelTimer(ANNOUNCE_TIMER)]
            self.tone = False
        out.append(Bridge(call.caller_leg, leg_id))
        return out

    def _leg_ended(self, call: CallView, event: LegEnded, now: float) -> list[Action]:
        if event.leg_id == call.caller_leg:
            if self.talking is not None:
                self._agent_done(call, self.talking, now)
                self.talking = None
            elif self.waiting:
                self.waiting = False
                self.acd.abandon(call.call_id, now)
            return []
        if event.leg_id == self.talking:
            self._agent_done(call, event.leg_id, now)
            self.talking = None
            if self.third is not None:
                # The agent left a three-way call (or while the third party rang): the
                # caller goes on with the third party.
                if not self.mixed:
                    return [StopPlay(call.caller_leg)] if self.holding else []
                self.mixed = False
                third = self.third
                self._third_takes_over()
                return [Unmix(CONFERENCE_MIX), Bridge(call.caller_leg, third, rejoin=True)]
            out: list[Action] = []
            if self.holding:  # the agent hung up a caller on hold: the music stops
                self.holding = False
                out.append(StopPlay(call.caller_leg))
            if self.survey_flow is not None:
                return [*out, RunFlow(self.survey_flow)]
            return [*out, Hangup(status=480, disposition="answered")]
        return []
