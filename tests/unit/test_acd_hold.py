"""An agent holding its queue call, in virtual time: HOLD and back to TALKING, the call may end
while held, the held agent is offered nothing, and the queue's `hold_alert` raises one alert
per hold that lasts too long."""

from __future__ import annotations

import pytest
from acdkit import changes, events, login, offers, run_timers

from acd import (
    Acd,
    AgentSpec,
    AgentState,
    IllegalTransition,
    InvalidSpec,
    NotOffered,
    QueueSpec,
    UnknownCall,
)

A = AgentState


def talking(**spec: object) -> tuple[Acd, float]:
    """Agent a talking on call c1 of queue q (agent b idle), and the time."""
    keys: dict = {"ring_timeout": 10.0, "max_wait": 60.0} | spec
    acd = Acd([QueueSpec("q", **keys)], [AgentSpec("a", ("q",)), AgentSpec("b", ("q",))])
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "a", now + 1)
    return acd, now + 1


def test_hold_and_resume_move_the_agent_between_talking_and_hold() -> None:
    acd, now = talking()
    out = acd.agent_hold("a", "c1", now + 1)
    assert changes(out, "a") == [("talking", "hold", "hold")]
    (change,) = events(out, "AGENT_STATE")
    assert change.call_id == "c1"
    assert acd.queue_snapshot("q", now + 1).agents["hold"] == 1
    out = acd.agent_resume("a", "c1", now + 2)
    assert changes(out, "a") == [("hold", "talking", "resume")]


@pytest.mark.parametrize(("wrap_up", "after"), [(0.0, A.IDLE), (20.0, A.WRAP_UP)])
def test_a_held_call_may_end(wrap_up: float, after: AgentState) -> None:
    acd, now = talking(wrap_up=wrap_up)
    acd.agent_hold("a", "c1", now)
    out = acd.call_ended("c1", "a", now + 5)
    assert changes(out, "a")[0] == (
        "hold",
        after.value,
        "hangup" if wrap_up else "hangup_no_wrap_up",
    )
    assert acd.agent_state("a") is after


def test_a_held_agent_is_offered_nothing() -> None:
    acd, now = talking()
    acd.agent_hold("a", "c1", now)
    assert offers(acd.enqueue("c2", "q", now + 1)) == []
    assert offers(acd.agent_available("b", now + 2)) == [("c2", "b")]


def test_requests_and_an_unregister_while_on_hold_wait_for_the_calls_end() -> None:
    acd, now = talking()
    acd.agent_hold("a", "c1", now)
    acd.agent_not_ready("a", now + 1, "notes")
    with pytest.raises(IllegalTransition):  # as while talking
        acd.agent_lock("a", now + 1)
    assert acd.agent_state("a") is A.HOLD
    acd.call_ended("c1", "a", now + 2)
    assert (acd.agent_state("a"), acd.agent_snapshot("a").reason) == (A.BUSY, "notes")
    acd, now = talking()
    acd.agent_hold("a", "c1", now)
    assert acd.agent_unavailable("a", now + 1) == []
    acd.call_ended("c1", "a", now + 2)
    assert acd.agent_state("a") is A.LOGGED_OUT


def test_a_hold_longer_than_hold_alert_raises_one_alert() -> None:
    acd, now = talking(hold_alert=60.0)
    acd.agent_hold("a", "c1", now)
    assert run_timers(acd, now + 59.9) == []
    (alert,) = run_timers(acd, now + 60.0)
    assert (alert.kind, alert.agent_id, alert.call_id, alert.queue) == (
        "AGENT_ALERT",
        "a",
        "c1",
        "q",
    )
    assert alert.data == {"state": "hold", "seconds": 60.0}
    assert run_timers(acd, now + 500.0) == []  # once per hold
    acd.agent_resume("a", "c1", now + 500.0)
    acd.agent_hold("a", "c1", now + 501.0)  # a new hold: a new alert
    acd.agent_resume("a", "c1", now + 530.0)  # … unless it ends first
    assert run_timers(acd, now + 1000.0) == []
    acd.agent_hold("a", "c1", now + 1000.0)
    assert [e.kind for e in run_timers(acd, now + 1060.0)] == ["AGENT_ALERT"]


def test_no_hold_alert_by_default() -> None:
    acd, now = talking()
    acd.agent_hold("a", "c1", now)
    assert run_timers(acd, now + 10_000.0) == []


def test_the_held_calls_own_queue_sets_the_limit() -> None:
    acd = Acd(
        [QueueSpec("q1", hold_alert=30.0), QueueSpec("q2", hold_alert=300.0)],
        [AgentSpec("a", ("q1", "q2"))],
    )
    now = login(acd, "a")
    acd.enqueue("c1", "q2", now)
    acd.agent_answered("c1", "a", now)
    acd.agent_hold("a", "c1", now)
    assert run_timers(acd, now + 299.0) == []
    assert len(run_timers(acd, now + 300.0)) == 1


def test_hold_and_resume_that_do_not_fit_are_refused() -> None:
    acd, now = talking()
    with pytest.raises(IllegalTransition):
        acd.agent_resume("a", "c1", now)  # not held
    with pytest.raises(NotOffered) as info:
        acd.agent_hold("b", "c1", now)  # not b's call
    assert info.value.offered_to == "a"
    with pytest.raises(UnknownCall):
        acd.agent_hold("a", "c9", now)
    acd.agent_hold("a", "c1", now)
    with pytest.raises(IllegalTransition):
        acd.agent_hold("a", "c1", now)  # held already
    acd.enqueue("c2", "q", now)
    with pytest.raises(NotOffered):  # waiting: no one talks on it
        acd.agent_hold("a", "c2", now)
    assert acd.agent_state("a") is A.HOLD


def test_hold_alert_must_be_seconds() -> None:
    with pytest.raises(InvalidSpec, match=r"queues\[0\]\.hold_alert"):
        Acd([QueueSpec("q", hold_alert=-1.0)], [])
