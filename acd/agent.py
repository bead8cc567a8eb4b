"""Agent states and their transition table (SPEC ACD-4, STYLE §2).

Logged out, idle, ringing, talking, wrap-up, busy (not ready, with a reason code), break and
locked. Registration drives login: a phone that registers makes its agent idle, one that
unregisters logs it out. Not ready, break and ready come from the agent (phone feature
codes, the CLI, the API); lock comes from missed calls in a row (the queue's `lock_after`)
or a supervisor, and only a supervisor's unlock ends it.

Self-loops are listed on purpose: a REGISTER refresh reports `AVAILABLE` again for an agent that
is already working, an expiry reports `UNAVAILABLE` for one already logged out; both are normal
and change nothing. `UNAVAILABLE` while talking keeps the agent talking; the engine remembers it
and logs the agent out when that call ends (the call in progress is not cut).
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


_S = AgentState
_E = AgentEvent

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
    failure, which sends the agent to the back of the line. `queues` is the effective membership
    (listed queues, queues whose skills it meets, and queues draining after a reload). `logout_pending` is set when the
    phone unregisters during a call; `retired` when a reload removed the agent while it was busy.
    """

    __slots__ = (
        "agent_id",
        "region",
        "answered",
        "queues",
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
    )

    def __init__(self, agent_id: str, queues: tuple[str, ...], region: str | None = None) -> None:
        self.agent_id = agent_id
        self.region = region
        self.answered = 0  # calls answered since the engine started (strategy fewest_calls)
        self.queues = queues
        self.state = AgentState.LOGGED_OUT
        self.state_since: float | None = None  # None: logged out since the engine started
        self.idle_since = 0.0
        self.call_id: str | None = None
        self.logout_pending = False
        # NOT_READY or BREAK asked while ringing or talking, with its reason: applied when the
        # agent would next become idle.
        self.pending: tuple[AgentEvent, str] | None = None
        self.reason = ""  # reason code of BUSY
        self.missed = 0  # offers missed in a row (no answer or refused); reset by an answer
        self.retired = False
        self.wrap_up_serial = 0
        self.state_serial = 0  # changes with every state change (alert timers check it)
