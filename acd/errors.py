"""Exceptions of the `acd` package.

Errors are part of the interface (STYLE §8): the B2BUA catches `AcdError` at the one place where
it talks to the engine and turns it into a SIP action (e.g. BYE a late-answering agent leg) or a
log line; the API turns it into a problem+json. Every error leaves the engine unchanged: inputs
are checked before anything is mutated.
"""

from __future__ import annotations


class AcdError(Exception):
    """Base class of every error the ACD engine raises on purpose."""


class InvalidSpec(AcdError):  # noqa: N818 (names fixed by the B2BUA contract)
    """A queue or agent specification cannot be used (bad value, duplicate name)."""


class UnknownQueue(AcdError):  # noqa: N818 (names fixed by the B2BUA contract)
    """The queue name is not configured (or is only draining after a reload)."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"unknown queue {queue!r}")


class UnknownAgent(AcdError):  # noqa: N818 (names fixed by the B2BUA contract)
    """The agent id is not configured."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        super().__init__(f"unknown agent {agent_id!r}")


class NotInQueue(AcdError):  # noqa: N818 (named like the errors above)
    """A call for one named agent (`Acd.enqueue(agent=…)`) names a queue that agent does not
    serve (neither listed in its `queues` nor required skills it meets)."""

    def __init__(self, agent_id: str, queue: str) -> None:
        self.agent_id = agent_id
        self.queue = queue
        super().__init__(f"agent {agent_id!r} does not serve queue {queue!r}")


class UnknownCall(AcdError):  # noqa: N818 (names fixed by the B2BUA contract)
    """The call id is not (or no longer) known: never enqueued, or already ended/abandoned/
    timed out."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        super().__init__(f"unknown call {call_id!r}")


class DuplicateCall(AcdError):  # noqa: N818 (names fixed by the B2BUA contract)
    """`enqueue` was given a call id that is still queued, ringing or connected."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        super().__init__(f"call {call_id!r} is already in the ACD")


class IllegalTransition(AcdError):  # noqa: N818 (names fixed by the B2BUA contract)
    """An event is not allowed in the current state of an agent or a call.

    `entity` is ``"agent"`` or ``"call"``, `entity_id` its id, `state` and `event` the values
    of the state and event enums (e.g. ``"idle"``, ``"answer"``).
    """

    def __init__(
        self, entity: str, entity_id: str, state: str, event: str, detail: str = ""
    ) -> None:
        self.entity = entity
        self.entity_id = entity_id
        self.state = state
        self.event = event
        message = f"{entity} {entity_id!r}: event {event!r} not allowed in state {state!r}"
        super().__init__(f"{message} ({detail})" if detail else message)


class NotOffered(IllegalTransition):
    """An agent answered, rejected or ended a call that is not offered to / connected with it.

    Typical cause: a 200 OK crossing the CANCEL the engine asked for after a ring timeout; the
    B2BUA then releases that agent leg. `offered_to` is the agent the call is with now, if any.
    """

    def __init__(
        self, call_id: str, agent_id: str, state: str, event: str, offered_to: str | None
    ) -> None:
        self.agent_id = agent_id
        self.offered_to = offered_to
        super().__init__(
            "call",
            call_id,
            state,
            event,
            f"agent {agent_id!r} is not on this call; it is with {offered_to!r}",
        )
