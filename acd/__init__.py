"""hotline ACD: queues, agents and routing as pure logic (SPEC §5, STYLE §1).

The engine (`Acd`) is sans-IO: inputs carry `now`, outputs are frozen msgspec Structs — commands
for the B2BUA (`OfferCall`, `CancelOffer`, `QueueTimeout`) and queue-log events (`QueueEvent`).
This package imports no asyncio, socket, time or uvloop.

Exports: the engine, its specs, its commands/events/snapshot, the agent and call state enums and
transition tables, and the exception hierarchy rooted at `AcdError`.
"""

from acd.agent import (
    AGENT_TRANSITIONS,
    AgentEvent,
    AgentState,
    format_agent_table,
    next_agent_state,
)
from acd.engine import Acd
from acd.errors import (
    AcdError,
    AgentBusy,
    CannotServe,
    DuplicateCall,
    IllegalTransition,
    InvalidSpec,
    NotInQueue,
    NotLoggedIn,
    NotOffered,
    NotOnDirectCall,
    NotRegistered,
    UnknownAgent,
    UnknownCall,
    UnknownQueue,
)
from acd.events import (
    AgentSnapshot,
    CancelOffer,
    Command,
    OfferCall,
    QueueEvent,
    QueueEventKind,
    QueueSnapshot,
    QueueTimeout,
)
from acd.queue import (
    CALL_TRANSITIONS,
    CallEvent,
    CallState,
    format_call_table,
    next_call_state,
)
from acd.spec import STRATEGIES, AgentSpec, QueueSpec, validate_specs

__all__ = [
    "AGENT_TRANSITIONS",
    "CALL_TRANSITIONS",
    "STRATEGIES",
    "Acd",
    "AcdError",
    "AgentBusy",
    "AgentEvent",
    "AgentSnapshot",
    "AgentSpec",
    "AgentState",
    "CallEvent",
    "CallState",
    "CancelOffer",
    "CannotServe",
    "Command",
    "DuplicateCall",
    "IllegalTransition",
    "InvalidSpec",
    "NotInQueue",
    "NotLoggedIn",
    "NotOffered",
    "NotOnDirectCall",
    "NotRegistered",
    "OfferCall",
    "QueueEvent",
    "QueueEventKind",
    "QueueSnapshot",
    "QueueSpec",
    "QueueTimeout",
    "UnknownAgent",
    "UnknownCall",
    "UnknownQueue",
    "format_agent_table",
    "format_call_table",
    "next_agent_state",
    "next_call_state",
    "validate_specs",
]
