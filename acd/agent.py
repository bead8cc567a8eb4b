"""Agent states and their transition table (SPEC ACD-4, STYLE §2).

Logged out, idle, ringing, talking, on hold, on a direct call, wrap-up, busy (not ready, with a
reason code), break and locked. Registration drives login: a phone that registers makes its
agent idle, one that unregisters logs it out. The agent may also log out while its phone stays
registered (feature code, CLI): it is then logged out until it logs in again, whatever its
phone does meanwhile (the engine keeps that choice beside the state, as `signed_out`). Not
ready, break and ready come from the agent (phone feature codes, the CLI, the API); lock comes
from missed calls in a row (the queue's `lock_after`) or a supervisor, and only a supervisor's
unlock ends it.

Self-loops are listed on purpose: a REGISTER refresh reports `AVAILABLE` again for an agent that
is already working, an expiry reports `UNAVAILABLE` for one already logged out; both are normal
and change nothing. `UNAVAILABLE` while talking keeps the agent talking; the engine remembers it
and logs the agent out when that call ends (the call in progress is not cut). The same holds
for a logout, a not-ready or a break asked while ringing, talking, on hold or on a direct call.

Hold is a state of an agent talking on a queue call (its phone put the caller on hold); a
direct call is any call of the agent outside the queues (an internal call, its own outbound
call, a callback). On a direct call the agent is offered no queue call; when it ends the agent
returns to the state it had before (idle, busy with its reason, a break, locked; wrap-up ends),
or to the one asked for during the call.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from acd.table import format_table, lookup


class AgentState(enum.Enum):
    """What an agent is doing, as a supervisor reads it."""

    LOGGED_OUT = "logged_out"
    IDLE = "idle"
    RINGING = "ringing"
    TALKING = "talking"
    HOLD = "hold"  # talking on a queue call that its phone put on hold
    DIRECT_CALL = "direct_call"  # on a call outside the queues (internal, outbound, callback)
    WRAP_UP = "wrap_up"
    BUSY = "busy"  # not ready, with a reason code (paperwork, training …)
    BREAK = "break"  # on a break
    LOCKED = "locked"  # missed too many calls in a row; a supervisor unlocks


class AgentEvent(enum.Enum):
    """Inputs of the agent state machine."""

    AVAILABLE = "available"  # phone registered
    UNAVAILABLE = "unavailable"  # phone unregistered / expired, or agent removed by a reload
    OFFER = "offer"  # engine rings the agent for a call
    ANSWER = "answer"  # agent's phone answered (200 OK)
    REJECT = "reject"  # agent's phone refused: 486/603/other error/unreachable
    RING_TIMEOUT = "ring_timeout"  # no answer within the queue's ring_timeout
    OFFER_WITHDRAWN = "offer_withdrawn"  # caller abandoned or hit max wait while ringing
    HANGUP = "hangup"  # connected call ended, queue has wrap_up > 0
    HANGUP_NO_WRAP_UP = "hangup_no_wrap_up"  # connected call ended, queue has wrap_up == 0
    WRAP_UP_END = "wrap_up_end"  # wrap-up timer fired
    NOT_READY = "not_ready"  # the agent (phone, CLI, API) goes busy with a reason
    BREAK = "break"  # the agent goes on a break
    READY = "ready"  # the agent is ready again (also ends wrap-up early)
    LOCK = "lock"  # `lock_after` missed calls in a row, or a supervisor
    UNLOCK = "unlock"  # a supervisor
    LOGIN = "login"  # the agent logs in again (feature code, CLI); its phone is registered
    LOGOUT = "logout"  # the agent logs out; its phone stays registered
    DIRECT_START = "direct_start"  # a call outside the queues begins (internal, outbound …)
    DIRECT_END = "direct_end"  # that call ended
    PICKUP = "pickup"  # the agent picks up a queue call ringing at another agent
    HOLD = "hold"  # the agent's phone holds its queue call
    RESUME = "resume"  # … and takes it back


_S = AgentState
_E = AgentEvent

#: Logged in and on no call: a direct call may start, a logout applies at once.
_FREE = (_S.IDLE, _S.WRAP_UP, _S.BUSY, _S.BREAK, _S.LOCKED)
#: Ringing or on a call: the agent's requests (a logout, a not-ready, a break) wait for its
#: end, and it is offered no other call.
ON_CALL = (_S.RINGING, _S.TALKING, _S.HOLD, _S.DIRECT_CALL)
_LOGGED_IN = _FREE + ON_CALL
#: The agent's requests that wait for the end of the call they are asked during.
_DEFERRED = (_E.NOT_READY, _E.BREAK, _E.READY)

AGENT_TRANSITIONS: Mapping[tuple[AgentState, AgentEvent], AgentState] = MappingProxyType(
    {
        (_S.LOGGED_OUT, _E.AVAILABLE): _S.IDLE,
        (_S.LOGGED_OUT, _E.UNAVAILABLE): _S.LOGGED_OUT,
        (_S.IDLE, _E.AVAILABLE): _S.IDLE,
        (_S.IDLE, _E.UNAVAILABLE): _S.LOGGED_OUT,
        (_S.IDLE, _E.OFFER): _S.RINGING,
        (_S.RINGING, _E.AVAILABLE): _S.RINGING,
        (_S.RINGING, _E.UNAVAILABLE): _S.LOGGED_OUT,
        (_S.RINGING, _E.ANSWER): _S.TALKING,
        (_S.RINGING, _E.REJECT): _S.IDLE,
        (_S.RINGING, _E.RING_TIMEOUT): _S.IDLE,
        (_S.RINGING, _E.OFFER_WITHDRAWN): _S.IDLE,
        (_S.TALKING, _E.AVAILABLE): _S.TALKING,
        (_S.TALKING, _E.UNAVAILABLE): _S.TALKING,
        (_S.TALKING, _E.HANGUP): _S.WRAP_UP,
        (_S.TALKING, _E.HANGUP_NO_WRAP_UP): _S.IDLE,
        (_S.WRAP_UP, _E.AVAILABLE): _S.WRAP_UP,
        (_S.WRAP_UP, _E.UNAVAILABLE): _S.LOGGED_OUT,
        (_S.WRAP_UP, _E.WRAP_UP_END): _S.IDLE,
        # Not ready and breaks: from idle or wrap-up at once; asked while ringing or
        # talking, the engine keeps the request and applies it when the call is over.
        (_S.IDLE, _E.NOT_READY): _S.BUSY,
        (_S.IDLE, _E.BREAK): _S.BREAK,
        (_S.IDLE, _E.READY): _S.IDLE,
        (_S.WRAP_UP, _E.NOT_READY): _S.BUSY,
        (_S.WRAP_UP, _E.BREAK): _S.BREAK,
        (_S.WRAP_UP, _E.READY): _S.IDLE,
        (_S.RINGING, _E.NOT_READY): _S.RINGING,
        (_S.RINGING, _E.BREAK): _S.RINGING,
        (_S.RINGING, _E.READY): _S.RINGING,
        (_S.TALKING, _E.NOT_READY): _S.TALKING,
        (_S.TALKING, _E.BREAK): _S.TALKING,
        (_S.TALKING, _E.READY): _S.TALKING,
        (_S.BUSY, _E.AVAILABLE): _S.BUSY,
        (_S.BUSY, _E.UNAVAILABLE): _S.LOGGED_OUT,
        (_S.BUSY, _E.NOT_READY): _S.BUSY,
        (_S.BUSY, _E.BREAK): _S.BREAK,
        (_S.BUSY, _E.READY): _S.IDLE,
        (_S.BREAK, _E.AVAILABLE): _S.BREAK,
        (_S.BREAK, _E.UNAVAILABLE): _S.LOGGED_OUT,
        (_S.BREAK, _E.NOT_READY): _S.BUSY,
        (_S.BREAK, _E.BREAK): _S.BREAK,
        (_S.BREAK, _E.READY): _S.IDLE,
        # Locked after missed calls: only a supervisor's unlock (or a logout) ends it.
        (_S.IDLE, _E.LOCK): _S.LOCKED,
        (_S.BUSY, _E.LOCK): _S.LOCKED,
        (_S.BREAK, _E.LOCK): _S.LOCKED,
        (_S.WRAP_UP, _E.LOCK): _S.LOCKED,
        (_S.LOCKED, _E.LOCK): _S.LOCKED,
        (_S.LOCKED, _E.UNLOCK): _S.IDLE,
        (_S.LOCKED, _E.AVAILABLE): _S.LOCKED,
        (_S.LOCKED, _E.UNAVAILABLE): _S.LOGGED_OUT,
        # Log in / log out with the phone registered. Login of a logged-in agent changes
        # nothing; a logout asked while ringing or on a call applies when the call is over.
        (_S.LOGGED_OUT, _E.LOGIN): _S.IDLE,
        **{(state, _E.LOGIN): state for state in _LOGGED_IN},
        **{(state, _E.LOGOUT): _S.LOGGED_OUT for state in _FREE},
        **{(state, _E.LOGOUT): state for state in ON_CALL},
        # Direct calls: from any logged-in state off a call; the end returns to idle, and
        # the engine then applies what the agent had before (busy, break, locked) or asked
        # for during the call. Requests during it change that: the engine checks them
        # against the state the agent returns to (lock and unlock included).
        **{(state, _E.DIRECT_START): _S.DIRECT_CALL for state in _FREE},
        (_S.DIRECT_CALL, _E.DIRECT_END): _S.IDLE,
        **{(_S.DIRECT_CALL, event): _S.DIRECT_CALL for event in _DEFERRED},
        (_S.DIRECT_CALL, _E.LOCK): _S.DIRECT_CALL,
        (_S.DIRECT_CALL, _E.UNLOCK): _S.DIRECT_CALL,
        (_S.DIRECT_CALL, _E.AVAILABLE): _S.DIRECT_CALL,
        (_S.DIRECT_CALL, _E.UNAVAILABLE): _S.DIRECT_CALL,
        # Pickup of a queue call ringing elsewhere: talking on it as if it had been answered
        # (not locked: a lock keeps queue calls from the agent until a supervisor unlocks).
        **{(state, _E.PICKUP): _S.TALKING for state in _FREE if state is not _S.LOCKED},
        # Hold: a queue call held by the agent's phone; it may end while held.
        (_S.TALKING, _E.HOLD): _S.HOLD,
        (_S.HOLD, _E.RESUME): _S.TALKING,
        (_S.HOLD, _E.HANGUP): _S.WRAP_UP,
        (_S.HOLD, _E.HANGUP_NO_WRAP_UP): _S.IDLE,
        **{(_S.HOLD, event): _S.HOLD for event in _DEFERRED},
        (_S.HOLD, _E.AVAILABLE): _S.HOLD,
        (_S.HOLD, _E.UNAVAILABLE): _S.HOLD,
    }
)


def next_agent_state(agent_id: str, state: AgentState, event: AgentEvent) -> AgentState:
    """The state `event` leads to; raises `IllegalTransition` if the table has no entry."""
    return lookup(AGENT_TRANSITIONS, "agent", agent_id, state, event)


def format_agent_table() -> str:
    """The agent transition table as text, for supervisors and docs."""
    return format_table(AGENT_TRANSITIONS, AgentState, AgentEvent)


class AgentRecord:
    """The engine's mutable record of one agent (internal).

    `idle_since` is the longest-idle routing key: the time the agent last became available
    (login, end of call or of wrap-up) — or, after a no-answer or reject, the time of that
    failure, which sends the agent to the back of the line. `serves` is the effective
    membership (listed queues, queues whose skills it meets, and queues draining after a
    reload), `chosen` the queues a login named (`Acd.agent_login(queues=…)`; None: all), and
    `queues` the ones it works in: `serves` narrowed to `chosen`, in configuration order —
    the queues it is logged in to, or (logged out) those its next login or registration
    logs it in to. Routing (idle indexes, counts of agents logged in) follows `queues`;
    `logout_pending` is set when the phone unregisters during a call; `retired` when
    a reload removed the agent while it was busy. `registered` follows the phone's
    registration; `signed_out` is the agent's own logout (it is logged out, or will be when
    its call ends, until `agent_login`; registering does not change it). `call_id` is the
    queue call the agent rings for or talks on, `direct_call_id` its direct call.
    """

    __slots__ = (
        "agent_id",
        "region",
        "answered",
        "queues",
        "serves",
        "chosen",
        "state",
        "state_since",
        "idle_since",
        "call_id",
        "logout_pending",
        "pending",
        "reason",
        "missed",
        "retired",
        "wrap_up_serial",
        "state_serial",
        "registered",
        "signed_out",
        "direct_call_id",
        "direct_calls",
    )

    def __init__(self, agent_id: str, queues: tuple[str, ...], region: str | None = None) -> None:
        self.agent_id = agent_id
        self.region = region
        self.answered = 0  # calls answered since the engine started (strategy fewest_calls)
        self.queues = queues
        self.serves = queues
        self.chosen: frozenset[str] | None = None
        self.state = AgentState.LOGGED_OUT
        self.state_since: float | None = None  # None: logged out since the engine started
        self.idle_since = 0.0
        self.call_id: str | None = None
        self.logout_pending = False
        # What the agent is to do when it would next become idle: a NOT_READY or BREAK asked
        # while ringing or on a call, with its reason; on a direct call also the state it had
        # before (NOT_READY, BREAK or LOCK with its reason). None: idle.
        self.pending: tuple[AgentEvent, str] | None = None
        self.reason = ""  # reason code of BUSY
        self.missed = 0  # offers missed in a row (no answer or refused); reset by an answer
        self.retired = False
        self.wrap_up_serial = 0
        self.state_serial = 0  # changes with every state change (alert timers check it)
        self.registered = False
        self.signed_out = False
        self.direct_call_id: str | None = None
        self.direct_calls = 0  # direct calls started since the engine started

    def working_queues(self) -> tuple[str, ...]:
        """`serves` narrowed to `chosen` (what `queues` is to be)."""
        chosen = self.chosen
        if chosen is None:
            return self.serves
        return tuple(name for name in self.serves if name in chosen)

    def logged_in_to(self, queue: str) -> bool:
        """Whether the agent is logged in to `queue` (not logged out, and works in it)."""
        return self.state is not AgentState.LOGGED_OUT and queue in self.queues

    @property
    def leaving(self) -> bool:
        """Whether the agent is to be logged out when its call is over (phone unregistered,
        its own logout, or removed by a reload)."""
        return self.logout_pending or self.signed_out or self.retired
