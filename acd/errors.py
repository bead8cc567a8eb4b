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


class CannotServe(AcdError):  # noqa: N818 (named like the errors above)
    """`Acd.agent_login(queues=…)` names queues the agent may not serve (`queues`: those
    names, in the order given: not configured, removed by a reload, or neither listed in its
    `queues` nor requiring skills it meets), or no queue at all (`queues` empty).
    `may_serve` lists the queues it may choose from. Nothing changed."""

    def __init__(self, agent_id: str, queues: tuple[str, ...], may_serve: tuple[str, ...]) -> None:
        self.agent_id = agent_id
        self.queues = queues
        self.may_serve = may_serve
        choices = ", ".join(may_serve) or "none"
        if queues:
            names = ", ".join(repr(name) for name in queues)
            plural = "s" if len(queues) > 1 else ""
            problem = f"agent {agent_id!r} may not serve queue{plural} {names}"
        else:
            problem = f"agent {agent_id!r}: a login names at least one queue"
        super().__init__(f"{problem} (it may serve: {choices})")


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
    """An agent answered, rejected, ended, held or resumed a call that is not offered to /
    connected with it.

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


class _AgentRefusal(IllegalTransition):
    """An input about an agent that its situation does not allow; `agent_id` names it."""

    def __init__(self, agent_id: str, state: str, event: str, detail: str) -> None:
        self.agent_id = agent_id
        super().__init__("agent", agent_id, state, event, detail)


class NotRegistered(_AgentRefusal):
    """`agent_login` or `agent_logout` of an agent whose phone is not registered: its
    registration is what logs it in, so there is nothing to log in or out."""

    def __init__(self, agent_id: str, state: str, event: str) -> None:
        super().__init__(agent_id, state, event, "its phone is not registered")


class NotLoggedIn(_AgentRefusal):
    """The agent is logged out, or logs out when its call ends (`agent_logout` during a
    call): a second logout, a direct call or a pickup is refused."""

    def __init__(self, agent_id: str, state: str, event: str) -> None:
        super().__init__(agent_id, state, event, "the agent is not logged in")


class AgentBusy(_AgentRefusal):
    """The agent rings for a call or is on one (talking, on hold, a direct call): a direct
    call or a pickup is refused. Call control answers a call to that agent 486 Busy Here."""

    def __init__(self, agent_id: str, state: str, event: str) -> None:
        super().__init__(agent_id, state, event, "the agent is ringing or on a call")


class NotOnDirectCall(_AgentRefusal):
    """`direct_call_ended` names a call that is not the agent's direct call; `on_call` is
    the direct call it is on, if any."""

    def __init__(self, agent_id: str, call_id: str, state: str, on_call: str | None) -> None:
        self.call_id = call_id
        self.on_call = on_call
        super().__init__(
            agent_id, state, "direct_end", f"its direct call is {on_call!r}, not {call_id!r}"
        )
