"""An agent logging in to some of its queues (`hotline agent login 1001 --queues general`,
`Acd.agent_login(queues=…)`), in virtual time: it works in those queues only — offered their
calls, counted as logged in to them, waited for by their sticky, regional and named-agent
calls — until its next login or logout; a login of an agent logged in already changes its
queues at once; a reload keeps the queues it may still serve."""

from __future__ import annotations

import pytest
from acdkit import cancels, changes, events, log, login, offers, run_timers, timeouts

from acd import (
    Acd,
    AgentSpec,
    AgentState,
    CannotServe,
    NotInQueue,
    NotRegistered,
    QueueSpec,
    UnknownQueue,
)

A = AgentState
#: What agent `a` may serve: the queues it lists, and `vip` whose skills it meets.
MAY_SERVE = ("general", "enterprise", "vip")


def queue_specs(**spec: object) -> list[QueueSpec]:
    keys: dict = {"ring_timeout": 10.0, "retry": 5.0, "max_wait": 60.0} | spec
    return [
        QueueSpec("general", **keys),
        QueueSpec("enterprise", **keys),
        QueueSpec("vip", skills={"vip": 3}, **keys),
        QueueSpec("legal", **keys),
    ]


def agent_specs(a_queues: tuple[str, ...] = ("general", "enterprise")) -> list[AgentSpec]:
    return [
        AgentSpec("a", a_queues, skills={"vip": 5}, region="north"),
        AgentSpec("b", ("general", "enterprise"), region="south"),
    ]


def make_acd(**spec: object) -> Acd:
    """Queues general, enterprise, vip (skill vip 3) and legal; agent `a` (north) serves the
    first three, `b` (south) general and enterprise."""
    return Acd(queue_specs(**spec), agent_specs())


def logins(out: list) -> list[dict]:
    return [e.data for e in events(out, "LOGIN")]


def talking_in(queue: str) -> tuple[Acd, float]:
    """Agent `a` logged in to `queue` only and talking on its call `x1` (no wrap-up); the
    time."""
    acd = make_acd(wrap_up=0.0)
    now = login(acd, "a")
    acd.agent_login("a", now, queues=[queue])
    acd.enqueue("x1", queue, now)
    acd.agent_answered("x1", "a", now)
    return acd, now


# -- logging in to some queues -------------------------------------------------------------


def test_a_login_naming_queues_offers_the_calls_of_those_queues_only() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_logout("a", now)
    acd.enqueue("g1", "general", now + 1)  # waits longer, in a queue a leaves out
    acd.enqueue("e1", "enterprise", now + 2)
    out = acd.agent_login("a", now + 3, queues=["enterprise"])
    assert [e.kind for e in out if hasattr(e, "kind")][:2] == ["LOGIN", "AGENT_STATE"]
    assert logins(out) == [{"queues": ["enterprise"], "joined": ["enterprise"], "left": []}]
    assert changes(out, "a") == [("logged_out", "idle", "login"), ("idle", "ringing", "offer")]
    assert offers(out) == [("e1", "a")]
    snap = acd.agent_snapshot("a")
    assert (snap.queues, snap.may_serve, snap.signed_out) == (("enterprise",), MAY_SERVE, False)
    acd.agent_answered("e1", "a", now + 4)
    assert offers(acd.call_ended("e1", "a", now + 5)) == []  # g1 is not for a
    assert acd.position("g1") == 1


def test_the_queues_named_may_be_skill_queues_and_are_listed_in_configuration_order() -> None:
    acd = make_acd()
    login(acd, "a")
    out = acd.agent_login("a", 2.0, queues=["vip", "general", "vip"])
    assert logins(out) == [{"queues": ["general", "vip"], "joined": [], "left": ["enterprise"]}]
    assert acd.agent_snapshot("a").queues == ("general", "vip")


def test_a_login_without_queues_logs_in_to_every_queue_again() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_login("a", now, queues=["general"])
    acd.enqueue("e1", "enterprise", now + 1)
    out = acd.agent_login("a", now + 2)
    assert logins(out) == [{"queues": list(MAY_SERVE), "joined": ["enterprise", "vip"], "left": []}]
    assert offers(out) == [("e1", "a")]
    assert acd.agent_snapshot("a").queues == MAY_SERVE


def test_the_choice_outlasts_the_phone_unregistering_and_ends_with_a_logout() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_login("a", now, queues=["general"])
    acd.agent_unavailable("a", now + 1)
    assert acd.agent_snapshot("a").queues == ("general",)  # what its registration logs it in to
    acd.enqueue("e1", "enterprise", now + 2)
    assert offers(acd.agent_available("a", now + 3)) == []  # back in general only
    assert acd.agent_snapshot("a").queues == ("general",)
    acd.agent_logout("a", now + 4)
    assert acd.agent_snapshot("a").queues == MAY_SERVE  # the logout ended the choice
    assert offers(acd.agent_login("a", now + 5)) == [("e1", "a")]


def test_a_logout_during_the_call_ends_the_choice_when_it_applies() -> None:
    acd, now = talking_in("general")
    acd.agent_logout("a", now + 1)
    assert acd.agent_snapshot("a").queues == ("general",)  # still on its general call
    acd.call_ended("x1", "a", now + 2)
    assert acd.agent_snapshot("a").queues == MAY_SERVE


# -- refusals ------------------------------------------------------------------------------


def test_queues_the_agent_may_not_serve_are_refused_by_name_and_nothing_changes() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_login("a", now, queues=["general"])
    with pytest.raises(CannotServe) as info:
        acd.agent_login("a", now + 1, queues=["legal", "enterprise", "sales"])
    assert (info.value.agent_id, info.value.queues) == ("a", ("legal", "sales"))
    assert info.value.may_serve == MAY_SERVE
    assert str(info.value) == (
        "agent 'a' may not serve queues 'legal', 'sales' (it may serve: general, enterprise, vip)"
    )
    with pytest.raises(CannotServe) as info:
        acd.agent_login("a", now + 1, queues=[])
    assert info.value.queues == ()
    assert "at least one queue" in str(info.value)
    with pytest.raises(TypeError):
        acd.agent_login("a", now + 1, queues="general")
    assert acd.agent_snapshot("a").queues == ("general",)
    assert acd.agent_state("a") is A.IDLE


def test_an_unregistered_phone_is_refused_before_the_queues_are_looked_at() -> None:
    acd = make_acd()
    with pytest.raises(NotRegistered):
        acd.agent_login("a", 1.0, queues=["legal"])


def test_a_queue_draining_after_a_reload_cannot_be_chosen() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_not_ready("a", now)
    acd.agent_not_ready("b", now)
    acd.enqueue("e1", "enterprise", now)
    specs = [q for q in queue_specs() if q.name != "enterprise"]
    acd.replace_specs(specs, [AgentSpec("a", ("general",), {"vip": 5}), AgentSpec("b")])
    acd.handle_timer(now + 1)
    assert acd.agent_snapshot("a").queues == ("general", "vip", "enterprise")  # drains e1
    with pytest.raises(CannotServe) as info:
        acd.agent_login("a", now + 2, queues=["enterprise"])
    assert info.value.may_serve == ("general", "vip")
    with pytest.raises(UnknownQueue):
        acd.enqueue("e2", "enterprise", now + 2)


# -- a logged-in agent changes its queues ----------------------------------------------------


def test_an_idle_agent_leaves_a_queue_and_joins_another_at_once() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_not_ready("b", now)
    out = acd.agent_login("a", now, queues=["general"])
    assert logins(out) == [{"queues": ["general"], "joined": [], "left": ["enterprise", "vip"]}]
    assert changes(out, "a") == []  # still idle
    assert offers(acd.enqueue("e1", "enterprise", now + 1)) == []  # no longer for a
    out = acd.agent_login("a", now + 2, queues=["enterprise"])  # the waiting call at once
    assert logins(out)[0]["joined"] == ["enterprise"]
    assert offers(out) == [("e1", "a")]


def test_calls_of_a_queue_left_during_a_call_are_not_offered_after_it() -> None:
    acd = make_acd(wrap_up=0.0)
    now = login(acd, "a", "b")
    acd.agent_not_ready("b", now)
    acd.enqueue("g1", "general", now)
    acd.agent_answered("g1", "a", now)
    acd.enqueue("e1", "enterprise", now + 1)
    out = acd.agent_login("a", now + 2, queues=["general"])
    assert [e.kind for e in out] == ["LOGIN"]
    assert offers(acd.call_ended("g1", "a", now + 3)) == []
    assert offers(acd.enqueue("g2", "general", now + 4)) == [("g2", "a")]


def ringing_as_it_leaves() -> tuple[Acd, float]:
    """Agent `a` rings for call e1 of enterprise (b is busy) and logs in to general only;
    the time."""
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_not_ready("b", now)
    acd.enqueue("e1", "enterprise", now)  # rings a
    out = acd.agent_login("a", now + 1, queues=["general"])
    assert cancels(out) == [] and acd.agent_state("a") is A.RINGING  # the ring goes on
    return acd, now + 1


def test_a_ring_for_a_queue_left_goes_on_and_may_be_answered() -> None:
    acd, now = ringing_as_it_leaves()
    assert log(acd.agent_answered("e1", "a", now + 1)) == [("CONNECT", "a")]


def test_a_ring_for_a_queue_left_that_fails_returns_the_call_to_the_others() -> None:
    acd, now = ringing_as_it_leaves()
    out = run_timers(acd, now + 9)  # no answer
    assert cancels(out) == [("e1", "a", "ring_timeout")]
    assert offers(run_timers(acd, now + 40)) == []  # not a's again, whatever its retry
    assert offers(acd.agent_ready("b", now + 41)) == [("e1", "b")]


def test_the_queue_snapshot_counts_an_agent_logged_in_elsewhere_as_logged_out() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_login("a", now, queues=["general"])
    enterprise = acd.queue_snapshot("enterprise", now).agents
    assert (enterprise["idle"], enterprise["logged_out"]) == (1, 1)
    assert acd.queue_snapshot("general", now).agents["idle"] == 2


# -- leave_when_empty, named agents, sticky and regional calls, ring all ---------------------


def test_the_last_agent_leaving_a_leave_when_empty_queue_sends_its_calls_away() -> None:
    acd = make_acd(leave_when_empty=True)
    now = login(acd, "a", "b")
    acd.agent_login("b", now, queues=["general"])
    acd.agent_not_ready("a", now)
    acd.enqueue("e1", "enterprise", now + 1)  # waits for a
    out = acd.agent_login("a", now + 2, queues=["general"])
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("e1", "empty")]
    assert [e.call_id for e in events(out, "EMPTY")] == ["e1"]
    (refused,) = timeouts(acd.enqueue("e2", "enterprise", now + 3))
    assert refused.reason == "empty"
    assert timeouts(acd.enqueue("g1", "general", now + 3)) == []


def test_a_call_ringing_when_its_queue_empties_leaves_only_if_the_ring_fails() -> None:
    acd = make_acd(leave_when_empty=True)
    now = login(acd, "a", "b")
    acd.agent_login("b", now, queues=["general"])
    acd.enqueue("e1", "enterprise", now)  # rings a
    acd.enqueue("e2", "enterprise", now)  # waits
    out = acd.agent_login("a", now + 1, queues=["general"])
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("e2", "empty")]
    assert acd.agent_state("a") is A.RINGING
    out = run_timers(acd, now + 10)
    assert cancels(out) == [("e1", "a", "ring_timeout")]
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("e1", "empty")]


def test_a_call_for_an_agent_not_logged_in_to_its_queue_is_refused_at_once() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_login("a", now, queues=["general"])
    out = acd.enqueue("t1", "enterprise", now + 1, agent="a")
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("t1", "agent_unavailable")]
    assert [e.data for e in events(out, "UNAVAILABLE")] == [{"waited": 0.0, "agent": "a"}]
    assert offers(acd.enqueue("t2", "general", now + 2, agent="a")) == [("t2", "a")]
    with pytest.raises(NotInQueue):
        acd.enqueue("t3", "legal", now + 3, agent="a")


def test_a_call_waiting_for_an_agent_leaves_when_the_agent_leaves_its_queue() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_not_ready("a", now)
    acd.enqueue("t1", "enterprise", now, agent="a")
    acd.enqueue("t2", "general", now, agent="a")
    out = acd.agent_login("a", now + 1, queues=["general"])
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("t1", "agent_unavailable")]
    assert acd.position("t2") == 1  # still waits for a, busy


#: A call held for agent `a` (north) for 20 s: sticky (it served the caller last), regional.
HOLDS = {
    "sticky": ({"sticky_wait": 20.0}, {"preferred": "a"}),
    "region": ({"region_wait": 20.0}, {"region": "north"}),
}


@pytest.mark.parametrize("hold", sorted(HOLDS))
def test_a_call_is_held_only_for_agents_logged_in_to_its_queue(hold: str) -> None:
    spec, held_for = HOLDS[hold]
    acd = make_acd(**spec)
    now = login(acd, "a", "b")
    acd.agent_login("a", now, queues=["general"])
    acd.agent_not_ready("a", now)
    # a is not logged in to enterprise: b at once
    assert offers(acd.enqueue("e1", "enterprise", now + 1, **held_for)) == [("e1", "b")]


@pytest.mark.parametrize("hold", sorted(HOLDS))
def test_a_call_held_for_an_agent_goes_to_the_others_when_it_leaves_the_queue(hold: str) -> None:
    spec, held_for = HOLDS[hold]
    acd = make_acd(**spec)
    now = login(acd, "a", "b")
    acd.agent_not_ready("a", now)
    assert offers(acd.enqueue("e1", "enterprise", now + 1, **held_for)) == []  # held for a
    assert offers(acd.agent_login("a", now + 2, queues=["general"])) == [("e1", "b")]


def test_ring_all_rings_the_agents_logged_in_to_the_queue_and_one_joining_it() -> None:
    acd = make_acd(strategy="ring_all")
    now = login(acd, "a", "b")
    acd.agent_login("a", now, queues=["general"])
    assert offers(acd.enqueue("e1", "enterprise", now + 1)) == [("e1", "b")]
    out = acd.agent_login("a", now + 2, queues=["general", "enterprise"])
    assert offers(out) == [("e1", "a")]  # joins the ringing
    acd.agent_login("a", now + 3, queues=["general"])  # leaves: its ring goes on
    out = acd.agent_answered("e1", "b", now + 4)
    assert cancels(out) == [("e1", "a", "answered_elsewhere")]


def test_group_pickup_stays_among_the_queues_the_agent_may_serve() -> None:
    acd = Acd(
        queue_specs(), [AgentSpec("a", ("general", "enterprise")), AgentSpec("c", ("enterprise",))]
    )
    now = login(acd, "a", "c")
    acd.agent_login("a", now, queues=["general"])
    acd.enqueue("e1", "enterprise", now + 1)  # rings c
    assert acd.ringing_for("a") == "e1"


# -- reloads ---------------------------------------------------------------------------------


def test_a_reload_keeps_the_chosen_queues_the_agent_may_still_serve() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_login("a", now, queues=["general", "enterprise"])
    acd.replace_specs(queue_specs(), agent_specs(("general", "legal")))
    assert acd.handle_timer(now + 1) == []
    snap = acd.agent_snapshot("a")
    assert (snap.state, snap.queues) == ("idle", ("general",))  # legal is not chosen
    assert snap.may_serve == ("general", "legal", "vip")
    assert offers(acd.enqueue("l1", "legal", now + 2)) == []


def test_a_reload_leaving_none_of_the_chosen_queues_logs_the_agent_out() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_login("a", now, queues=["enterprise"])
    acd.replace_specs(queue_specs(), agent_specs(("general",)))
    out = acd.handle_timer(now + 1)
    (logout,) = events(out, "AGENT_STATE")
    assert logout.data == {
        "from": "idle",
        "to": "logged_out",
        "event": "logout",
        "reason": "a reload left none of its chosen queues",
    }
    snap = acd.agent_snapshot("a")
    assert (snap.signed_out, snap.queues) == (True, ("general", "vip"))
    acd.enqueue("g1", "general", now + 2)
    assert offers(acd.agent_available("a", now + 3)) == []  # stays out until it logs in
    assert offers(acd.agent_login("a", now + 4)) == [("g1", "a")]


def test_an_agent_on_a_call_whose_chosen_queues_go_logs_out_when_it_ends() -> None:
    acd, now = talking_in("enterprise")
    acd.replace_specs(queue_specs(), agent_specs(("general",)))
    assert acd.handle_timer(now + 1) == []
    assert acd.agent_state("a") is A.TALKING
    acd.enqueue("g1", "general", now + 2)
    out = acd.call_ended("x1", "a", now + 3)
    assert changes(out, "a")[-1] == ("idle", "logged_out", "logout")
    assert offers(out) == []


def test_a_logged_out_agent_whose_chosen_queues_go_waits_for_its_login() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_login("a", now, queues=["enterprise"])
    acd.agent_unavailable("a", now + 1)
    acd.replace_specs(queue_specs(), agent_specs(("general",)))
    acd.handle_timer(now + 2)
    snap = acd.agent_snapshot("a")
    assert (snap.signed_out, snap.queues) == (True, ("general", "vip"))
    assert acd.agent_available("a", now + 3) == []
    assert acd.agent_state("a") is A.LOGGED_OUT


def test_a_reload_sends_the_calls_of_a_leave_when_empty_queue_it_emptied_away() -> None:
    acd = make_acd(leave_when_empty=True)
    now = login(acd, "a")
    acd.agent_not_ready("a", now)
    acd.enqueue("e1", "enterprise", now)
    acd.replace_specs(queue_specs(leave_when_empty=True), agent_specs(("general",)))
    out = acd.handle_timer(now + 1)
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [("e1", "empty")]
