"""What the ACD engine returns: commands for the B2BUA and events for the queue log.

The engine never calls out (STYLE §1); every public method returns a list of these frozen
Structs in the order the caller must act on them (e.g. `CancelOffer` to the agent that did not
answer comes before the `OfferCall` to the next one).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class OfferCall(msgspec.Struct, frozen=True):
    """Ring `agent_id` for `call_id`; report the outcome with `agent_answered` or
    `agent_rejected`. The engine itself ends the ring after `ring_timeout` seconds. A call of
    a `ring_all` queue is offered to several agents at once (one `OfferCall` each); the first
    to answer takes it and the others get `CancelOffer` (``"answered_elsewhere"``)."""

    call_id: str
    agent_id: str
    queue: str
    ring_timeout: float


class CancelOffer(msgspec.Struct, frozen=True):
    """Stop ringing `agent_id` for `call_id` (send CANCEL on that agent leg).

    `reason`: ``"ring_timeout"``, ``"abandoned"`` (caller gone), ``"callback"`` (caller gone
    asking to be called back), ``"max_wait"`` (caller leaves with `QueueTimeout`),
    ``"agent_unavailable"`` (the agent's phone unregistered), ``"answered_elsewhere"``
    (another agent answered this ring-all call first), ``"picked_up"`` (another agent
    picked the call up, `Acd.picked_up`)."""

    call_id: str
    agent_id: str
    reason: str


class QueueTimeout(msgspec.Struct, frozen=True):
    """The call left the queue without an agent; call control sends the caller to the
    queue's overflow (SPEC ACD-2). `reason`: ``"max_wait"`` (it waited `max_wait`),
    ``"full"`` (the queue held `max_callers` calls when it arrived; it never joined),
    ``"empty"`` (`leave_when_empty` and no agent of the queue logged in, when it arrived or
    when the last one logged out) or ``"agent_unavailable"`` (a call for one named agent,
    `Acd.enqueue(agent=…)`, whose agent was not logged in when it arrived — it never joined
    — or logged out, or stopped serving the queue in a reload, while the call waited)."""

    call_id: str
    queue: str
    waited: float
    reason: str = "max_wait"


class QueueEventKind(enum.StrEnum):
    """Kinds of `QueueEvent`, one per state change (SPEC RPT-1 queue log).

    - ENTER: call joined a queue (data: priority, position; region, preferred, agent when
      given).
    - OFFER: call offered to an agent (data: ring_timeout, attempt); a ring-all call has one
      per agent it rings.
    - RINGNOANSWER: the agent did not answer within ring_timeout (data: ring); call back at
      the queue head, unless other agents still ring it (ring-all).
    - REJECT: the agent's phone refused (486/603/error/unreachable; data: reason, ring); call
      back at the head unless other agents still ring it.
    - RINGCANCELED: the agent's ring ended by no fault of its own (data: reason, ring):
      ``"agent_unavailable"``, its phone unregistered (call back at the head unless others
      still ring it); ``"answered_elsewhere"``, another agent answered this ring-all call
      (data also: by, that agent); ``"picked_up"``, another agent picked the call up (data
      also: by).
    - CONNECT: the agent answered (data: waited, ring, attempt).
    - ABANDON: the caller left while queued or ringing (data: waited, position or ring). The
      event names the ringing agent; a ring-all call ringing several names none and lists
      them (data: ringing). The same holds for TIMEOUT and CALLBACK.
    - TIMEOUT: max wait reached; the call left the queue (data: waited).
    - CALLBACK: the caller left asking to be called back (data: waited, position or ring).
    - FULL: the queue held `max_callers` calls; the call did not join (data: waiting).
    - EMPTY: no agent of the queue logged in and `leave_when_empty`: the call did not join
      or left (data: waited).
    - UNAVAILABLE: a call for one named agent that cannot take it (not logged in, or no
      longer serving the queue): the call did not join or left (data: waited, agent).
    - PICKUP: an agent picked up the call ringing at others and talks on it (the event
      names it; data: by, from — the agents it rang at —, waited, ring since its first ring).
      It stands for the CONNECT of that call.
    - COMPLETE: a connected call ended (data: talk).
    - AGENT_STATE: an agent changed state (data: from, to, event, reason if any); the call
      is named for a state change about one: a queue call, or a direct call (events
      ``direct_start``, ``direct_end``).
    - LOGIN: `Acd.agent_login` logged an agent in, or named or changed the queues it is
      logged in to (data: queues — those it is logged in to now, in configuration order —,
      joined, left); the AGENT_STATE of a login from logged out follows it.
    - AGENT_ALERT: an agent has been busy or on a break longer than its queues'
      `busy_alert` (data: state, seconds, reason), or has held its call longer than the
      call's queue's `hold_alert` (data: state ``"hold"``, seconds; the event names the
      call and its queue).
    """

    ENTER = "ENTER"
    OFFER = "OFFER"
    RINGNOANSWER = "RINGNOANSWER"
    REJECT = "REJECT"
    RINGCANCELED = "RINGCANCELED"
    CONNECT = "CONNECT"
    PICKUP = "PICKUP"
    ABANDON = "ABANDON"
    TIMEOUT = "TIMEOUT"
    CALLBACK = "CALLBACK"
    FULL = "FULL"
    EMPTY = "EMPTY"
    UNAVAILABLE = "UNAVAILABLE"
    COMPLETE = "COMPLETE"
    AGENT_STATE = "AGENT_STATE"
    LOGIN = "LOGIN"
    AGENT_ALERT = "AGENT_ALERT"


class QueueEvent(msgspec.Struct, frozen=True):
    """One queue-log line. `kind` is a `QueueEventKind` (a `str`); `at` the engine time."""

    kind: str
    call_id: str | None
    agent_id: str | None
    queue: str | None
    at: float
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class QueueSnapshot(msgspec.Struct, frozen=True):
    """Real-time view of one queue (SPEC ACD-9).

    `waiting` counts every call in the queue not yet answered, `ringing` the part of them being
    offered to an agent right now; `longest_wait` is the age of the oldest of them (0.0 when
    none). `agents` counts the queue's agents by state value (``"idle"`` …), every state
    present; an agent that may serve the queue but logged in to other queues only
    (`Acd.agent_login(queues=…)`) counts as ``"logged_out"`` here. `draining` is true for a
    queue removed by a reload that still holds calls."""

    queue: str
    at: float
    waiting: int
    ringing: int
    longest_wait: float
    agents: dict[str, int]
    draining: bool = False
    kpis: QueueKpis | None = None


class QueueKpis(msgspec.Struct, frozen=True):
    """A queue's calls since the engine started (SPEC RPT-3), counted when they leave the
    queue: `entered`; `answered` (`answered_in_time`: within the queue's service-level
    seconds, default 15); `abandoned` (`abandoned_short`: within 20 s of entering, left out
    of the human answer rate); `callbacks` (left asking for one); `overflowed` (max wait,
    full, empty, and calls for one named agent that could not take them: agent_unavailable).
    Rates are None before any call left the queue.

    - human answer rate = answered / (left the queue − abandoned_short − callbacks within 20 s)
    - service level = answered_in_time / left the queue
    """

    entered: int
    answered: int
    answered_in_time: int
    abandoned: int
    abandoned_short: int
    callbacks: int
    overflowed: int
    human_answer_rate: float | None
    service_level: float | None


Command = OfferCall | CancelOffer | QueueTimeout | QueueEvent


class AgentSnapshot(msgspec.Struct, frozen=True):
    """One agent as a supervisor sees it: state, since when (engine time), busy reason,
    calls answered since the engine started, offers missed in a row; `queues`, those it is
    logged in to (logged out: those its next login or registration logs it in to), which
    are all of `may_serve` — every queue it may serve (listed, skills, draining) — unless
    its last login named some (`Acd.agent_login(queues=…)`); whether its phone is
    registered, whether the agent logged itself out (`signed_out`: logged out with its phone
    registered, or logging out when its call ends, until it logs in again), and the direct
    calls (outside the queues) it started since the engine started."""

    agent_id: str
    state: str
    since: float | None  # None: logged out since the engine started
    reason: str
    answered: int
    missed: int
    queues: tuple[str, ...]
    registered: bool = False
    signed_out: bool = False
    direct_calls: int = 0
    may_serve: tuple[str, ...] = ()
