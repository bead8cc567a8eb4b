"""What the ACD engine tests read out of a returned command list, and how they drive its time
(virtual: inputs carry `now`, timers run at their `get_timer()` deadlines)."""

from __future__ import annotations

from acd import Acd, CancelOffer, OfferCall, QueueEvent, QueueTimeout


def offers(out: list) -> list[tuple[str, str]]:
    """(call, agent) of each `OfferCall`, in order."""
    return [(c.call_id, c.agent_id) for c in out if isinstance(c, OfferCall)]


def cancels(out: list) -> list[tuple[str, str, str]]:
    """(call, agent, reason) of each `CancelOffer`, in order."""
    return [(c.call_id, c.agent_id, c.reason) for c in out if isinstance(c, CancelOffer)]


def timeouts(out: list) -> list[QueueTimeout]:
    return [c for c in out if isinstance(c, QueueTimeout)]


def events(out: list, kind: str) -> list[QueueEvent]:
    """The queue-log events of `kind`, in order."""
    return [e for e in out if isinstance(e, QueueEvent) and e.kind == kind]


def changes(out: list, agent_id: str) -> list[tuple[str, str, str]]:
    """(from, to, event) of each AGENT_STATE change of `agent_id`, in order."""
    return [
        (e.data["from"], e.data["to"], e.data["event"])
        for e in events(out, "AGENT_STATE")
        if e.agent_id == agent_id
    ]


def log(out: list) -> list[tuple[str, str | None]]:
    """(kind, agent) of each queue-log event about a call, agent state changes left out."""
    return [
        (e.kind, e.agent_id)
        for e in out
        if isinstance(e, QueueEvent) and e.call_id and e.kind != "AGENT_STATE"
    ]


def login(acd: Acd, *agent_ids: str, start: float = 0.0) -> float:
    """Log agents in one second apart (the first is idle the longest); the time after."""
    now = start
    for agent_id in agent_ids:
        assert offers(acd.agent_available(agent_id, now)) == []
        now += 1.0
    return now


def run_timers(acd: Acd, until: float) -> list:
    """Run timers in deadline order up to `until`, as the node's loop does."""
    out: list = []
    for _ in range(10_000):
        due = acd.get_timer()
        if due is None or due > until:
            return out
        out += acd.handle_timer(due)
    raise AssertionError("timers did not settle")
