"""Direct calls outside the queues (internal calls between agents, an agent's own outbound
call, a callback), in virtual time: the agent is offered no queue call while on one, returns to
what it was afterwards, and requests during it change what that is."""

from __future__ import annotations

import pytest
from acdkit import changes, events, login, offers, run_timers

from acd import (
    Acd,
    AgentBusy,
    AgentSpec,
    AgentState,
    IllegalTransition,
    NotLoggedIn,
    NotOnDirectCall,
    QueueSpec,
    UnknownAgent,
)

A = AgentState


def make_acd(agents: tuple[str, ...] = ("a", "b"), **spec: object) -> Acd:
    keys: dict = {"ring_timeout": 10.0, "retry": 5.0, "max_wait": 60.0} | spec
    return Acd([QueueSpec("q", **keys)], [AgentSpec(a, ("q",)) for a in agents])


def test_an_agent_on_a_direct_call_is_offered_no_queue_call_until_it_ends() -> None:
    acd = make_acd(("a",))
    now = login(acd, "a")
    out = acd.direct_call_started("a", "d1", now)
    assert changes(out, "a") == [("idle", "direct_call", "direct_start")]
    (change,) = events(out, "AGENT_STATE")
    assert change.call_id == "d1"
    assert offers(acd.enqueue("c1", "q", now + 1)) == []
    assert acd.queue_snapshot("q", now + 1).agents["direct_call"] == 1
    out = acd.direct_call_ended("a", "d1", now + 30)  # idle, and the waiting call at once
    assert changes(out, "a") == [
        ("direct_call", "idle", "direct_end"),
        ("idle", "ringing", "offer"),
    ]
    assert offers(out) == [("c1", "a")]
    assert acd.agent_snapshot("a").direct_calls == 1


@pytest.mark.parametrize(
    ("before", "reason"), [(A.BUSY, "paperwork"), (A.BREAK, ""), (A.LOCKED, "supervisor")]
)
def test_the_agent_returns_to_busy_break_or_locked_with_its_reason(
    before: AgentState, reason: str
) -> None:
    acd = make_acd(("a",))
    now = login(acd, "a")
    if before is A.BUSY:
        acd.agent_not_ready("a", now, reason)
    elif before is A.BREAK:
        acd.agent_break("a", now)
    else:
        acd.agent_lock("a", now, reason)
    acd.enqueue("c1", "q", now + 1)
    acd.direct_call_started("a", "d1", now + 2)
    out = acd.direct_call_ended("a", "d1", now + 3)
    assert acd.agent_state("a") is before
    assert acd.agent_snapshot("a").reason == reason
    assert offers(out) == []  # c1 still waits


def test_a_direct_call_ends_wrap_up() -> None:
    acd = make_acd(("a",), wrap_up=30.0)
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "a", now)
    acd.call_ended("c1", "a", now + 5)
    acd.direct_call_started("a", "d1", now + 6)
    assert run_timers(acd, now + 40) == []  # the wrap-up timer is void
    acd.direct_call_ended("a", "d1", now + 50)
    assert acd.agent_state("a") is A.IDLE


def test_a_not_ready_asked_during_the_queue_call_outlasts_the_direct_call_in_wrap_up() -> None:
    acd = make_acd(("a",), wrap_up=30.0)
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "a", now)
    acd.agent_not_ready("a", now + 1, "meeting")
    acd.call_ended("c1", "a", now + 5)
    acd.direct_call_started("a", "d1", now + 6)
    acd.direct_call_ended("a", "d1", now + 7)
    assert (acd.agent_state("a"), acd.agent_snapshot("a").reason) == (A.BUSY, "meeting")


def test_requests_during_a_direct_call_change_what_the_agent_returns_to() -> None:
    acd = make_acd(("a",))
    now = login(acd, "a")
    acd.agent_not_ready("a", now, "paperwork")
    acd.direct_call_started("a", "d1", now + 1)
    assert acd.agent_ready("a", now + 2) == []  # no change yet
    assert acd.agent_state("a") is A.DIRECT_CALL
    acd.enqueue("c1", "q", now + 3)
    assert offers(acd.direct_call_ended("a", "d1", now + 4)) == [("c1", "a")]
    acd.agent_answered("c1", "a", now + 4)
    acd.call_ended("c1", "a", now + 5)
    acd.direct_call_started("a", "d2", now + 6)
    acd.agent_break("a", now + 7)
    acd.direct_call_ended("a", "d2", now + 8)
    assert acd.agent_state("a") is A.BREAK


def test_a_supervisor_may_lock_or_unlock_an_agent_on_a_direct_call_for_its_end() -> None:
    acd = make_acd(("a",))
    now = login(acd, "a")
    acd.direct_call_started("a", "d1", now)
    with pytest.raises(IllegalTransition):  # it will be idle: nothing to unlock
        acd.agent_unlock("a", now + 1)
    acd.agent_lock("a", now + 1, "review")
    acd.direct_call_ended("a", "d1", now + 2)
    assert (acd.agent_state("a"), acd.agent_snapshot("a").reason) == (A.LOCKED, "review")
    acd.direct_call_started("a", "d2", now + 3)  # a locked agent may still phone
    with pytest.raises(IllegalTransition):  # it returns locked: only an unlock frees it
        acd.agent_ready("a", now + 4)
    with pytest.raises(IllegalTransition):
        acd.agent_not_ready("a", now + 4, "x")
    acd.agent_unlock("a", now + 5)
    acd.direct_call_ended("a", "d2", now + 6)
    assert acd.agent_state("a") is A.IDLE


def test_an_unregister_or_a_logout_during_a_direct_call_applies_at_its_end() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.direct_call_started("a", "d1", now)
    acd.direct_call_started("b", "d2", now)
    assert acd.agent_unavailable("a", now + 1) == []
    assert acd.agent_logout("b", now + 1) == []
    assert acd.agent_state("a") is A.DIRECT_CALL
    out = acd.direct_call_ended("a", "d1", now + 2)
    assert changes(out, "a")[-1] == ("idle", "logged_out", "unavailable")
    out = acd.direct_call_ended("b", "d2", now + 2)
    assert changes(out, "b")[-1] == ("idle", "logged_out", "logout")


def test_a_direct_call_is_refused_to_an_agent_ringing_or_on_a_call() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.enqueue("c1", "q", now)  # a rings
    with pytest.raises(AgentBusy) as info:
        acd.direct_call_started("a", "d1", now)
    assert (info.value.agent_id, info.value.state) == ("a", "ringing")
    acd.agent_answered("c1", "a", now)
    with pytest.raises(AgentBusy):
        acd.direct_call_started("a", "d1", now)
    acd.direct_call_started("b", "d2", now)
    with pytest.raises(AgentBusy):
        acd.direct_call_started("b", "d3", now)
    assert acd.agent_snapshot("b").direct_calls == 1


def test_a_direct_call_is_refused_to_a_logged_out_agent() -> None:
    acd = make_acd()
    with pytest.raises(NotLoggedIn):
        acd.direct_call_started("a", "d1", 1.0)
    login(acd, "b", start=1.0)
    acd.agent_logout("b", 2.0)
    with pytest.raises(NotLoggedIn):
        acd.direct_call_started("b", "d1", 3.0)
    with pytest.raises(UnknownAgent):
        acd.direct_call_started("nobody", "d1", 3.0)


def test_the_end_of_another_call_than_the_agents_direct_call_is_refused() -> None:
    acd = make_acd()
    now = login(acd, "a")
    with pytest.raises(NotOnDirectCall) as info:
        acd.direct_call_ended("a", "d1", now)
    assert info.value.on_call is None
    acd.direct_call_started("a", "d1", now)
    with pytest.raises(NotOnDirectCall) as info:
        acd.direct_call_ended("a", "d9", now + 1)
    assert (info.value.call_id, info.value.on_call) == ("d9", "d1")
    assert acd.agent_state("a") is A.DIRECT_CALL


def test_an_agent_removed_by_a_reload_finishes_its_direct_call_then_is_forgotten() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.direct_call_started("a", "d1", now)
    acd.replace_specs([QueueSpec("q")], [AgentSpec("b", ("q",))])
    acd.handle_timer(now + 1)
    assert acd.agent_state("a") is A.DIRECT_CALL
    with pytest.raises(UnknownAgent):  # no new direct call for it
        acd.direct_call_started("a", "d2", now + 1)
    out = acd.direct_call_ended("a", "d1", now + 2)
    assert changes(out, "a")[-1] == ("idle", "logged_out", "unavailable")
    assert "a" not in acd.agent_ids()
