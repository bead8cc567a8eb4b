"""One emulated caller of `hotline loadtest run`, sans-IO: events and `now` in, commands out.

The caller replays one trace row on the run's clock (trace seconds × time scale):

    new ──start──► calling ──1xx──► early ──200──► ivr ──last key──► waiting ──agent──► talking
                      │               │  (queue route: 200 after the agent)   │ patience  │ talk
                      └────final≥300──┴──► ended          cancelling ◄─patience (early)  ▼ over
                                                          ending ◄────────────────────────BYE

- INVITE at the row's offset; the first provisional or 200 ends the setup time.
- The IVR's 200: ACK, media starts (the driver plays silence so the node's RTP timeout never
  fires), the row's keys are pressed at their think times after the answer (RFC 4733, by
  the driver). After the last key (or at the 200 when there are none) the caller *waits*.
- A call the node does not answer before an agent does (a queue route such as 9000) waits
  from its first provisional; its keys cannot be pressed (`keys_skipped`).
- Waiting: patience (`patience_s`, None: forever) runs from the moment waiting began; when
  it runs out the caller CANCELs an unanswered INVITE or BYEs an answered one (abandoned).
- The emulated agent who answered this call tells the caller (`agent_answered`); the caller
  then talks `talk_s` and hangs up with BYE. The caller always hangs up first: emulated
  agents never send BYE (the rule docs/loadtest.md states).
- A BYE from the node ends the call: answered when an agent had answered, else released.

States are an Enum, legal moves a table (`TRANSITIONS`); an event the table does not allow
in a state is ignored and counted in `ignored` (a late retransmission, a race with the
node), never an exception: the run must go on whatever the node does.
"""

from __future__ import annotations

from enum import Enum

import msgspec

from loadtest.report import CallResult, Outcome
from loadtest.trace import TraceCall


class State(Enum):
    NEW = "new"
    CALLING = "calling"  # INVITE sent, nothing back
    EARLY = "early"  # a provisional came; waiting if no IVR answers first
    IVR = "ivr"  # answered by the IVR, keys being pressed
    WAITING = "waiting"  # answered by the IVR, keys done, waiting for an agent
    TALKING = "talking"  # an agent answered; the call is up
    CANCELLING = "cancelling"  # CANCEL sent, the INVITE's final response awaited
    ENDING = "ending"  # BYE sent, its response awaited
    ENDED = "ended"


class Event(Enum):
    START = "start"
    PROVISIONAL = "provisional"
    ANSWERED = "answered"  # 200 to the INVITE
    REJECTED = "rejected"  # final >= 300 to the INVITE
    TIMEOUT = "timeout"  # the INVITE (or its CANCEL) never got a final response
    KEY_DUE = "key_due"
    PATIENCE_OVER = "patience_over"
    AGENT_ANSWERED = "agent_answered"
    TALK_OVER = "talk_over"
    REMOTE_BYE = "remote_bye"
    BYE_DONE = "bye_done"  # the response to our BYE, or its timeout
    CUT = "cut"  # --max-seconds: end now


S, E = State, Event
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.NEW, E.START): S.CALLING,
    (S.NEW, E.CUT): S.ENDED,
    (S.CALLING, E.PROVISIONAL): S.EARLY,
    (S.EARLY, E.PROVISIONAL): S.EARLY,
    (S.CALLING, E.ANSWERED): S.IVR,  # or TALKING / WAITING, decided by the handler
    (S.EARLY, E.ANSWERED): S.IVR,
    (S.CALLING, E.REJECTED): S.ENDED,
    (S.EARLY, E.REJECTED): S.ENDED,
    (S.CALLING, E.TIMEOUT): S.ENDED,
    (S.EARLY, E.TIMEOUT): S.ENDED,
    (S.CALLING, E.AGENT_ANSWERED): S.CALLING,  # the 200 is on its way
    (S.EARLY, E.AGENT_ANSWERED): S.EARLY,
    (S.EARLY, E.PATIENCE_OVER): S.CANCELLING,
    (S.CALLING, E.CUT): S.CANCELLING,
    (S.EARLY, E.CUT): S.CANCELLING,
    (S.IVR, E.KEY_DUE): S.IVR,  # or WAITING after the last key
    (S.IVR, E.AGENT_ANSWERED): S.TALKING,
    (S.IVR, E.REMOTE_BYE): S.ENDED,
    (S.IVR, E.CUT): S.ENDING,
    (S.WAITING, E.AGENT_ANSWERED): S.TALKING,
    (S.WAITING, E.PATIENCE_OVER): S.ENDING,
    (S.WAITING, E.REMOTE_BYE): S.ENDED,
    (S.WAITING, E.CUT): S.ENDING,
    (S.TALKING, E.TALK_OVER): S.ENDING,
    (S.TALKING, E.REMOTE_BYE): S.ENDED,
    (S.TALKING, E.CUT): S.ENDING,
    (S.CANCELLING, E.REJECTED): S.ENDED,
    (S.CANCELLING, E.TIMEOUT): S.ENDED,
    (S.CANCELLING, E.ANSWERED): S.ENDING,  # the 200 crossed our CANCEL: ACK, then BYE
    (S.CANCELLING, E.CUT): S.CANCELLING,
    (S.ENDING, E.BYE_DONE): S.ENDED,
    (S.ENDING, E.REMOTE_BYE): S.ENDED,
    (S.ENDING, E.CUT): S.ENDING,
}
UP = frozenset({S.IVR, S.WAITING, S.TALKING})


class Command(msgspec.Struct, frozen=True):
    """What the driver does for the caller: ``invite``, ``ack``, ``cancel``, ``bye``,
    ``media`` (start sending RTP), ``key`` (press `key`, RFC 4733), ``done``."""

    kind: str
    key: str = ""


class Caller:
    """The caller of one trace row (see the module docstring). Times are run-clock seconds;
    `time_scale` turns the row's trace seconds into run seconds."""

    def __init__(self, call: TraceCall, time_scale: float) -> None:
        self.call = call
        self.scale = time_scale
        self.state = State.NEW
        self.result = CallResult(call_id=call.call_id, offset_s=call.offset_s)
        self.timers: dict[Event, float] = {}  # event → run time it is due
        self._keys = list(call.keys)
        self.ignored = 0
        self._answer_pending = False  # the agent answered before the INVITE's 200 arrived

    @property
    def start_at(self) -> float:
        return self.call.offset_s * self.scale

    @property
    def waiting_for_agent(self) -> bool:
        """Whether an agent's INVITE may be this caller's: not answered by one yet, not over."""
        return self.result.agent_answer_at is None and self.state not in (
            S.NEW,
            S.CANCELLING,
            S.ENDING,
            S.ENDED,
        )

    def next_timer(self) -> float | None:
        return min(self.timers.values(), default=None)

    def handle_timer(self, now: float) -> list[Command]:
        """Fire every timer due at `now`."""
        out: list[Command] = []
        for event, when in sorted(self.timers.items(), key=lambda item: item[1]):
            if when <= now and self.timers.get(event) == when:
                del self.timers[event]
                out += self.handle(event, now)
        return out

    def handle(self, event: Event, now: float, status: int = 0, reason: str = "") -> list[Command]:
        """Apply `event` (see `TRANSITIONS`); `status`/`reason` for REJECTED and TIMEOUT."""
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            self.ignored += 1
            return []
        old, self.state = self.state, new
        r = self.result
        out: list[Command] = []
        if event is E.START:
            r.invite_at = now
            out.append(Command("invite"))
        elif event is E.PROVISIONAL:
            if r.first_response_at is None:
                r.first_response_at = now
            if old is S.CALLING:
                self._begin_waiting(now)  # a queue route's caller waits from here
        elif event is E.ANSWERED:
            out += self._answered(old, now)
        elif event in (E.REJECTED, E.TIMEOUT):
            r.status = status or None
            if old is S.CANCELLING:
                self._end(now, Outcome.ABANDONED if r.outcome is None else r.outcome)
            elif event is E.TIMEOUT:
                self._end(now, Outcome.FAILED, reason or "no final response")
            elif status >= 500 or status == 408:
                self._end(now, Outcome.FAILED, f"{status} {reason}".strip())
            else:
                self._end(now, Outcome.RELEASED, f"{status} {reason}".strip())
            out.append(Command("done"))
        elif event is E.KEY_DUE:
            key = self._keys.pop(0)
            r.keys_sent += 1
            out.append(Command("key", key.key))
            if self._keys:
                self.timers[E.KEY_DUE] = now + self._keys[0].think_s * self.scale
            else:
                self.state = S.WAITING
                self._begin_waiting(now, again=True)
        elif event is E.AGENT_ANSWERED:
            r.agent_answer_at = now
            self.timers.pop(E.PATIENCE_OVER, None)
            if new is S.TALKING:
                self._keys_left_unpressed()
                self.timers[E.TALK_OVER] = now + self.call.talk_s * self.scale
            else:
                self._answer_pending = True
        elif event is E.PATIENCE_OVER:
            r.outcome = Outcome.ABANDONED
            out.append(Command("cancel" if new is S.CANCELLING else "bye"))
        elif event is E.TALK_OVER:
            r.outcome = Outcome.ANSWERED
            out.append(Command("bye"))
        elif event is E.REMOTE_BYE:
            if r.outcome is None:
                answered = r.agent_answer_at is not None
                r.premature = answered  # talking, and neither the caller nor an agent hung up
                self._end(
                    now,
                    Outcome.ANSWERED if answered else Outcome.RELEASED,
                    "" if answered else "BYE from the node",
                )
            else:
                self._end(now, r.outcome)
            out.append(Command("done"))
        elif event is E.BYE_DONE:
            self._end(now, r.outcome or Outcome.ANSWERED)
            out.append(Command("done"))
        elif event is E.CUT:
            out += self._cut(old, now)
        return out

    # --- handlers ---------------------------------------------------------------------------
    def _begin_waiting(self, now: float, again: bool = False) -> None:
        if self.result.waiting_at is not None and not again:
            return
        self.result.waiting_at = now
        patience = self.call.patience_s
        self.timers.pop(E.PATIENCE_OVER, None)
        if patience is not None and self.result.agent_answer_at is None:
            self.timers[E.PATIENCE_OVER] = now + patience * self.scale

    def _keys_left_unpressed(self) -> None:
        self.result.keys_skipped += len(self._keys)
        self._keys = []
        self.timers.pop(E.KEY_DUE, None)

    def _answered(self, old: State, now: float) -> list[Command]:
        r = self.result
        if r.first_response_at is None:
            r.first_response_at = now
        r.node_answer_at = now
        out = [Command("ack")]
        if old is S.CANCELLING:  # RFC 3261 §9.1: a 2xx crossing the CANCEL is ended by BYE
            self.state = S.ENDING
            return [*out, Command("bye")]
        out.append(Command("media"))
        if self._answer_pending or r.agent_answer_at is not None:
            # A queue route: the node answered the caller when the agent answered.
            self.state = S.TALKING
            self._keys_left_unpressed()
            assert r.agent_answer_at is not None
            self.timers[E.TALK_OVER] = r.agent_answer_at + self.call.talk_s * self.scale
            return out
        if self._keys:
            self.state = S.IVR
            r.waiting_at = None  # the IVR answered: not waiting for an agent yet
            self.timers.pop(E.PATIENCE_OVER, None)
            self.timers[E.KEY_DUE] = now + self._keys[0].think_s * self.scale
        else:
            self.state = S.WAITING
            self._begin_waiting(now, again=True)
        return out

    def _cut(self, old: State, now: float) -> list[Command]:
        self.timers.clear()
        r = self.result
        if old is S.NEW:
            return []
        if r.outcome is None:
            # An agent answered: the call was answered, only its talk was cut short.
            answered = r.agent_answer_at is not None
            r.outcome = Outcome.ANSWERED if answered else Outcome.CUT
            r.cut_short = answered
        if old in (S.CALLING, S.EARLY):
            return [Command("cancel")]
        if old in UP:
            return [Command("bye")]
        return []

    def _end(self, now: float, outcome: Outcome, reason: str = "") -> None:
        self.state = S.ENDED
        self._keys_left_unpressed()
        self.timers.clear()
        r = self.result
        r.ended_at = now
        r.outcome = outcome
        if reason and not r.reason:
            r.reason = reason
