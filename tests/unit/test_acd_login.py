"""Agents logging out and in while their phones stay registered (feature codes *21/*22,
`hotline agent login|logout`), in virtual time: a logged-out agent is offered nothing, stays
logged out across registrations until it logs in, and a logout asked during a call waits for
its end."""

from __future__ import annotations

import pytest
from acdkit import cancels, changes, events, login, offers, run_timers, timeouts

from acd import Acd, AgentSpec, AgentState, NotLoggedIn, NotRegistered, QueueSpec, UnknownAgent

A = AgentState


def make_acd(agents: tuple[str, ...] = ("a", "b"), **spec: object) -> Acd:
    keys: dict = {"ring_timeout": 10.0, "retry": 5.0, "max_wait": 60.0} | spec
    return Acd([QueueSpec("q", **keys)], [AgentSpec(a, ("q",)) for a in agents])


def test_a_logged_out_agent_is_offered_nothing_and_shows_it_chose_so() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    out = acd.agent_logout("a", now)
    assert changes(out, "a") == [("idle", "logged_out", "logout")]
    snap = acd.agent_snapshot("a")
    assert (snap.state, snap.registered, snap.signed_out) == ("logged_out", True, True)
    assert offers(acd.enqueue("c1", "q", now + 1)) == [("c1", "b")]
    assert offers(acd.enqueue("c2", "q", now + 2)) == []  # a is not offered c2
    assert acd.queue_snapshot("q", now + 2).agents["logged_out"] == 1


def test_the_logout_outlasts_unregistering_and_registering_again() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_logout("a", now)
    assert acd.agent_unavailable("a", now + 1) == []
    assert acd.agent_snapshot("a").registered is False
    acd.enqueue("c1", "q", now + 2)
    assert acd.agent_available("a", now + 3) == []  # registered, still logged out
    assert acd.agent_state("a") is A.LOGGED_OUT
    snap = acd.agent_snapshot("a")
    assert (snap.registered, snap.signed_out) == (True, True)
    out = acd.agent_login("a", now + 4)  # back, and offered the waiting call at once
    assert changes(out, "a") == [("logged_out", "idle", "login"), ("idle", "ringing", "offer")]
    assert offers(out) == [("c1", "a")]
    assert acd.agent_snapshot("a").signed_out is False


def test_a_logout_while_talking_applies_when_the_call_ends() -> None:
    acd = make_acd(wrap_up=30.0)
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "a", now + 1)
    assert acd.agent_logout("a", now + 2) == []
    assert acd.agent_state("a") is A.TALKING
    assert acd.agent_snapshot("a").signed_out is True
    acd.enqueue("c2", "q", now + 3)
    out = acd.call_ended("c1", "a", now + 4)  # no wrap-up for an agent logging out
    assert changes(out, "a") == [
        ("talking", "wrap_up", "hangup"),
        ("wrap_up", "logged_out", "logout"),
    ]
    assert offers(out) == []  # c2 waits: a is gone
    assert acd.agent_state("a") is A.LOGGED_OUT


def test_a_logout_while_ringing_applies_when_the_ring_is_over_and_locks_no_one() -> None:
    acd = make_acd(lock_after=1)
    now = login(acd, "a", "b")
    acd.agent_not_ready("b", now)
    acd.enqueue("c1", "q", now)
    assert acd.agent_logout("a", now + 1) == []
    assert acd.agent_state("a") is A.RINGING  # the ring goes on
    out = run_timers(acd, now + 10)  # no answer: a leaves instead of being locked
    assert cancels(out) == [("c1", "a", "ring_timeout")]
    assert changes(out, "a") == [
        ("ringing", "idle", "ring_timeout"),
        ("idle", "logged_out", "logout"),
    ]
    assert acd.agent_snapshot("a").signed_out is True


def test_a_logout_while_ringing_lets_the_agent_answer_first() -> None:
    acd = make_acd(wrap_up=0.0)
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)
    acd.agent_logout("a", now + 1)
    acd.agent_answered("c1", "a", now + 2)
    out = acd.call_ended("c1", "a", now + 3)
    assert changes(out, "a")[-1] == ("idle", "logged_out", "logout")


def test_a_login_during_the_call_withdraws_the_logout() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "a", now)
    acd.agent_logout("a", now + 1)
    assert acd.agent_login("a", now + 2) == []
    assert acd.agent_snapshot("a").signed_out is False
    acd.enqueue("c2", "q", now + 3)
    assert offers(acd.call_ended("c1", "a", now + 4)) == [("c2", "a")]


def test_the_last_agent_logging_out_of_a_leave_when_empty_queue_sends_its_calls_away() -> None:
    acd = make_acd(("a",), leave_when_empty=True)
    now = login(acd, "a")
    acd.agent_not_ready("a", now)
    acd.enqueue("c1", "q", now + 1)
    out = acd.agent_logout("a", now + 2)
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("c1", "empty")]
    assert [e.call_id for e in events(out, "EMPTY")] == ["c1"]
    (refused,) = timeouts(acd.enqueue("c2", "q", now + 3))  # no agent logged in: refused
    assert refused.reason == "empty"


def test_a_call_for_an_agent_that_logs_out_leaves() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_not_ready("a", now)
    acd.enqueue("t1", "q", now + 1, agent="a")
    out = acd.agent_logout("a", now + 2)
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("t1", "agent_unavailable")]
    (refused,) = timeouts(acd.enqueue("t2", "q", now + 3, agent="a"))
    assert refused.reason == "agent_unavailable"


def test_a_locked_agent_that_logs_out_and_in_is_idle() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_lock("a", now)
    acd.agent_logout("a", now + 1)
    acd.agent_login("a", now + 2)
    assert acd.agent_state("a") is A.IDLE


def test_a_login_of_a_logged_in_agent_changes_nothing() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_not_ready("a", now, "paperwork")
    assert acd.agent_login("a", now + 1) == []
    assert acd.agent_snapshot("a").reason == "paperwork"


def test_login_and_logout_without_a_registered_phone_are_refused() -> None:
    acd = make_acd()
    with pytest.raises(NotRegistered) as info:
        acd.agent_login("a", 1.0)
    assert (info.value.agent_id, info.value.event) == ("a", "login")
    with pytest.raises(NotRegistered):
        acd.agent_logout("a", 1.0)
    now = login(acd, "a", start=2.0)
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "a", now)
    acd.agent_unavailable("a", now + 1)  # unregistered during the call
    with pytest.raises(NotRegistered):
        acd.agent_logout("a", now + 2)
    with pytest.raises(UnknownAgent):
        acd.agent_logout("nobody", now + 2)


def test_a_second_logout_is_refused() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_logout("a", now)
    with pytest.raises(NotLoggedIn) as info:
        acd.agent_logout("a", now + 1)
    assert info.value.state == "logged_out"
    acd.enqueue("c1", "q", now + 2)  # b
    acd.agent_answered("c1", "b", now + 2)
    acd.agent_logout("b", now + 3)
    with pytest.raises(NotLoggedIn):  # b logs out when its call ends already
        acd.agent_logout("b", now + 4)


def test_an_unregister_during_the_call_and_the_agents_logout_both_hold() -> None:
    acd = make_acd(wrap_up=0.0)
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "a", now)
    acd.agent_logout("a", now + 1)
    acd.agent_unavailable("a", now + 2)
    acd.agent_available("a", now + 3)  # registered again: the logout still holds
    out = acd.call_ended("c1", "a", now + 4)
    assert changes(out, "a")[-1] == ("idle", "logged_out", "logout")
    assert acd.agent_snapshot("a").signed_out is True
