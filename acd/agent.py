"""Agent states and their transition table (SPEC ACD-4 subset, STYLE §2).

This issue implements logged out, idle, ringing, talking and wrap-up. Registration drives login:
a phone that registers makes its agent idle, one that unregisters logs it out.

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
        "retired",
        "wrap_up_serial",
    )

    def __init__(self, agent_id: str, queues: tuple[str, ...], region: str | None = None) -> None:
        self.agent_id = agent_id
        self.region = region
        self.answered = 0  # calls answered since the engine started (strategy fewest_calls)
        self.queues = queues
        self.state = AgentState.LOGGED_OUT
        self.state_since = 0.0
        self.idle_since = 0.0
        self.call_id: str | None = None
        self.logout_pending = False
        self.retired = False
        self.wrap_up_serial = 0
