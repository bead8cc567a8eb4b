"""The `ring_all` strategy, in virtual time: a call rings every idle agent of its queue at once,
the first to answer takes it and the other rings are withdrawn; one agent's failure is its own
(issue: "ring-all" in the ACD strategy list)."""

from __future__ import annotations

import msgspec
import pytest
from acdkit import cancels, events, log, login, offers, run_timers, timeouts

from acd import (
    Acd,
    AgentSpec,
    CancelOffer,
    IllegalTransition,
    NotOffered,
    OfferCall,
    QueueSpec,
    QueueTimeout,
)


def ring_all(agents: tuple[str, ...] = ("a", "b", "c"), **spec: object) -> Acd:
    """One ring-all queue `q` (ring timeout 10 s, retry 5 s unless given) served by `agents`."""
    keys: dict = {"ring_timeout": 10.0, "retry": 5.0, "max_wait": 300.0} | spec
    return Acd(
        [QueueSpec("q", strategy="ring_all", **keys)], [AgentSpec(a, ("q",)) for a in agents]
    )


def state(acd: Acd, *agent_ids: str) -> list[str]:
    return [acd.agent_state(agent_id).value for agent_id in agent_ids]


# -- offering -----------------------------------------------------------------------------


def test_a_call_rings_every_idle_agent_at_once_in_idle_order() -> None:
    acd = ring_all()
    now = login(acd, "b", "c", "a")
    out = acd.enqueue("c1", "q", now)
    assert [c for c in out if isinstance(c, OfferCall)] == [
        OfferCall("c1", agent, "q", 10.0) for agent in ("b", "c", "a")
    ]
    assert log(out) == [("ENTER", None), ("OFFER", "b"), ("OFFER", "c"), ("OFFER", "a")]
    assert [e.data["attempt"] for e in events(out, "OFFER")] == [1, 2, 3]
    assert state(acd, "a", "b", "c") == ["ringing"] * 3
    snap = acd.queue_snapshot("q", now)
    assert (snap.waiting, snap.ringing) == (1, 1)
    assert acd.position("c1") == 0


def test_agents_ringing_for_a_call_get_no_other_call() -> None:
    acd = ring_all()
    now = login(acd, "a", "b", "c")
    acd.enqueue("c1", "q", now)
    assert offers(acd.enqueue("c2", "q", now + 1)) == []
    assert acd.position("c2") == 1
    snap = acd.queue_snapshot("q", now + 1)
    assert (snap.waiting, snap.ringing) == (2, 1)


def test_only_idle_agents_ring() -> None:
    acd = ring_all(("a", "b", "c", "d"))
    now = login(acd, "a", "b", "c")  # d is logged out
    acd.agent_not_ready("b", now, "paperwork")
    assert offers(acd.enqueue("c1", "q", now)) == [("c1", "a"), ("c1", "c")]
    assert state(acd, "b", "d") == ["busy", "logged_out"]


# -- answer -------------------------------------------------------------------------------


def test_the_first_to_answer_takes_the_call_and_the_other_rings_are_withdrawn() -> None:
    acd = ring_all()
    now = login(acd, "a", "b", "c")
    acd.enqueue("c1", "q", now)
    out = acd.agent_answered("c1", "b", now + 2)
    assert [c for c in out if isinstance(c, CancelOffer)] == [
        CancelOffer("c1", "a", "answered_elsewhere"),
        CancelOffer("c1", "c", "answered_elsewhere"),
    ]
    assert log(out) == [("CONNECT", "b"), ("RINGCANCELED", "a"), ("RINGCANCELED", "c")]
    (connect,) = events(out, "CONNECT")
    assert connect.data == {"waited": 2.0, "ring": 2.0, "attempt": 3}
    assert [e.data for e in events(out, "RINGCANCELED")] == [
        {"reason": "answered_elsewhere", "ring": 2.0, "by": "b"}
    ] * 2
    assert state(acd, "a", "b", "c") == ["idle", "talking", "idle"]
    snap = acd.queue_snapshot("q", now + 2)
    assert (snap.waiting, snap.ringing, snap.kpis.answered) == (0, 0, 1)
    assert acd.position("c1") is None


def test_agents_freed_by_an_answer_elsewhere_take_the_next_call_and_keep_their_place() -> None:
    acd = ring_all(("a", "b", "c", "d"))
    now = login(acd, "a", "b", "c")
    acd.enqueue("c1", "q", now)
    acd.enqueue("c2", "q", now)
    out = acd.agent_answered("c1", "b", now + 1)
    # each withdrawn agent is idle again and at once rings for c2, the next call
    assert cancels(out) == [
        ("c1", "a", "answered_elsewhere"),
        ("c1", "c", "answered_elsewhere"),
    ]
    assert offers(out) == [("c2", "a"), ("c2", "c")]
    assert out.index(CancelOffer("c1", "c", "answered_elsewhere")) < out.index(
        OfferCall("c2", "c", "q", 10.0)
    )
    acd.abandon("c2", now + 2)
    acd.agent_available("d", now + 3)  # idle after a and c, who kept their place
    assert offers(acd.enqueue("c3", "q", now + 4)) == [("c3", "a"), ("c3", "c"), ("c3", "d")]


def test_an_answer_from_an_agent_whose_ring_was_withdrawn_is_refused() -> None:
    acd = ring_all(("a", "b", "c"))
    now = login(acd, "a", "b", "c")
    acd.enqueue("c1", "q", now)
    acd.agent_rejected("c1", "c", now + 0.5, "486")
    with pytest.raises(NotOffered) as info:
        acd.agent_answered("c1", "c", now + 0.6)  # no longer rung
    assert info.value.offered_to == "a, b"
    acd.agent_answered("c1", "a", now + 1)
    with pytest.raises(IllegalTransition):
        acd.agent_answered("c1", "b", now + 1.1)  # its 200 crossed the CANCEL
    with pytest.raises(IllegalTransition):
        acd.agent_rejected("c1", "b", now + 1.1, "487")
    assert state(acd, "a", "b") == ["talking", "idle"]


def test_a_ring_timer_of_a_withdrawn_ring_does_not_cut_the_agents_next_ring() -> None:
    acd = ring_all(("a", "b"))
    acd.agent_available("a", 0.0)
    acd.agent_available("b", 0.0)
    acd.enqueue("c1", "q", 0.0)  # a and b ring until 10
    acd.agent_answered("c1", "b", 2.0)  # a withdrawn
    assert offers(acd.enqueue("c2", "q", 3.0)) == [("c2", "a")]  # rings until 13
    assert run_timers(acd, 12.9) == []
    assert cancels(run_timers(acd, 13.0)) == [("c2", "a", "ring_timeout")]


def test_the_connected_agent_ends_the_call_as_usual() -> None:
    acd = ring_all(("a", "b"), wrap_up=5.0)
    now = login(acd, "a", "b")
    acd.enqueue("c1", "q", now)
    acd.agent_answered("c1", "b", now + 1)
    with pytest.raises(NotOffered):
        acd.call_ended("c1", "a", now + 2)  # a only rang
    out = acd.call_ended("c1", "b", now + 3)
    assert log(out) == [("COMPLETE", "b")]
    assert state(acd, "a", "b") == ["idle", "wrap_up"]


# -- a ringing agent fails ----------------------------------------------------------------


def test_a_reject_while_others_ring_keeps_the_call_ringing_them() -> None:
    acd = ring_all()
    now = login(acd, "a", "b", "c")
    acd.enqueue("c1", "q", now)
    out = acd.agent_rejected("c1", "b", now + 1, "486")
    assert log(out) == [("REJECT", "b")]
    assert events(out, "REJECT")[0].data == {"reason": "486", "ring": 1.0}
    assert offers(out) == [] and cancels(out) == []  # a 486 needs no CANCEL
    assert state(acd, "a", "b", "c") == ["ringing", "idle", "ringing"]
    assert acd.position("c1") == 0  # still ringing, not back in the queue
    assert acd.queue_snapshot("q", now + 1).ringing == 1
    assert acd.agent_snapshot("b").missed == 1
    # b may take another call at once, not this one
    assert offers(acd.enqueue("c2", "q", now + 2)) == [("c2", "b")]


def test_each_agent_has_its_own_ring_timeout() -> None:
    acd = ring_all(("a", "b"))
    acd.agent_available("a", 0.0)
    acd.enqueue("c0", "q", 0.0)  # a rings for c0 …
    acd.agent_available("b", 1.0)  # … b joins at 1: rings until 11
    assert acd.get_timer() == 10.0
    out = acd.handle_timer(10.0)
    assert cancels(out) == [("c0", "a", "ring_timeout")]
    assert log(out) == [("RINGNOANSWER", "a")]
    assert events(out, "RINGNOANSWER")[0].data == {"ring": 10.0}
    assert state(acd, "a", "b") == ["idle", "ringing"]
    assert acd.position("c0") == 0
    out = acd.handle_timer(11.0)
    assert cancels(out) == [("c0", "b", "ring_timeout")]
    assert acd.position("c0") == 1  # its last ring failed: back at the head


def test_the_last_failed_ring_puts_the_call_back_and_each_window_end_rings_again() -> None:
    acd = ring_all(("a", "b"), retry=5.0)
    now = login(acd, "a", "b")  # 2.0
    acd.enqueue("c1", "q", now)
    acd.agent_rejected("c1", "a", 3.0, "486")  # a's window until 8
    assert acd.position("c1") == 0
    out = acd.agent_rejected("c1", "b", 4.0, "603")  # b's until 9
    assert offers(out) == [] and acd.position("c1") == 1
    assert acd.get_timer() == 8.0
    assert offers(acd.handle_timer(8.0)) == [("c1", "a")]
    assert offers(acd.handle_timer(9.0)) == [("c1", "b")]  # joins the ringing at its end
    assert state(acd, "a", "b") == ["ringing", "ringing"]


def test_rings_failing_at_the_same_instant_with_retry_zero_ring_again_at_the_next_timer() -> None:
    acd = ring_all(("a", "b"), retry=0.0)
    acd.agent_available("a", 0.0)
    acd.agent_available("b", 0.0)
    acd.enqueue("c1", "q", 0.0)
    out = acd.handle_timer(10.0)  # both ring timeouts: neither is rung again in this list
    assert cancels(out) == [("c1", "a", "ring_timeout"), ("c1", "b", "ring_timeout")]
    assert offers(out) == []
    assert acd.get_timer() == 10.0
    assert offers(acd.handle_timer(10.0)) == [("c1", "a"), ("c1", "b")]


def test_an_unregister_of_one_ringing_agent_leaves_the_others_ringing() -> None:
    acd = ring_all(("a", "b"))
    now = login(acd, "a", "b")
    acd.enqueue("c1", "q", now)
    out = acd.agent_unavailable("a", now + 1)
    assert cancels(out) == [("c1", "a", "agent_unavailable")]
    assert [(e.agent_id, e.data) for e in events(out, "RINGCANCELED")] == [
        ("a", {"reason": "agent_unavailable", "ring": 1.0})
    ]
    assert state(acd, "a", "b") == ["logged_out", "ringing"]
    assert acd.position("c1") == 0
    acd.agent_unavailable("b", now + 2)  # the last ring: back in the queue
    assert acd.position("c1") == 1
    assert offers(acd.agent_available("a", now + 3)) == [("c1", "a")]


def test_lock_after_counts_each_ringing_agents_miss() -> None:
    acd = ring_all(("a", "b"), lock_after=1)
    acd.agent_available("a", 0.0)
    acd.agent_available("b", 0.0)
    acd.enqueue("c1", "q", 0.0)
    run_timers(acd, 10.0)  # neither answers
    assert state(acd, "a", "b") == ["locked", "locked"]
    assert acd.position("c1") == 1
    assert offers(acd.agent_unlock("b", 11.0)) == [("c1", "b")]


# -- agents joining the ringing -----------------------------------------------------------


@pytest.mark.parametrize("how", ["login", "call_ended", "ready", "wrap_up_end"])
def test_an_agent_that_becomes_idle_while_the_call_rings_joins_the_ringing(how: str) -> None:
    acd = ring_all(("a", "b"), wrap_up=3.0 if how == "wrap_up_end" else 0.0)
    acd.agent_available("a", 0.0)
    if how != "login":
        acd.agent_available("b", 0.0)
    if how == "ready":
        acd.agent_not_ready("b", 0.5, "paperwork")
    if how in ("call_ended", "wrap_up_end"):
        acd.enqueue("c0", "q", 0.5)  # rings a and b; b takes it
        acd.agent_answered("c0", "b", 1.0)
    if how == "wrap_up_end":
        acd.call_ended("c0", "b", 1.5)  # wrap-up until 4.5
    acd.enqueue("c1", "q", 2.0)  # rings a alone
    assert state(acd, "a") == ["ringing"] and state(acd, "b") != ["idle"]
    if how == "login":
        out = acd.agent_available("b", 4.0)
    elif how == "ready":
        out = acd.agent_ready("b", 4.0)
    elif how == "call_ended":
        out = acd.call_ended("c0", "b", 4.0)
    else:
        out = run_timers(acd, 4.5)
    assert offers(out) == [("c1", "b")]
    assert state(acd, "a", "b") == ["ringing", "ringing"]
    assert cancels(acd.agent_answered("c1", "b", 5.0)) == [("c1", "a", "answered_elsewhere")]


def test_a_higher_priority_call_waiting_comes_before_joining_a_ringing_one() -> None:
    acd = ring_all()
    now = login(acd, "a", "b")
    acd.enqueue("c1", "q", now)  # rings a and b
    acd.enqueue("vip", "q", now + 1, priority=5)  # nobody idle: waits
    assert offers(acd.agent_available("c", now + 2)) == [("vip", "c")]
    # once vip rings (c alone), the next agent free joins vip, first in order
    out = acd.agent_rejected("c1", "a", now + 3, "486")
    assert offers(out) == [("vip", "a")]


def test_an_agent_of_two_queues_joins_the_call_that_waited_longest() -> None:
    acd = Acd(
        [QueueSpec("q1", strategy="ring_all"), QueueSpec("q2", strategy="ring_all")],
        [AgentSpec("a", ("q1",)), AgentSpec("b", ("q2",)), AgentSpec("ab", ("q1", "q2"))],
    )
    login(acd, "a", "b")
    acd.enqueue("old", "q2", 5.0)  # rings b
    acd.enqueue("new", "q1", 6.0)  # rings a
    assert offers(acd.agent_available("ab", 7.0)) == [("old", "ab")]


# -- the caller leaves --------------------------------------------------------------------


def test_abandon_cancels_every_ring() -> None:
    acd = ring_all()
    now = login(acd, "a", "b", "c")
    acd.enqueue("c1", "q", now)
    acd.agent_rejected("c1", "c", now + 1, "486")
    out = acd.abandon("c1", now + 4)
    assert cancels(out) == [("c1", "a", "abandoned"), ("c1", "b", "abandoned")]
    (abandon,) = events(out, "ABANDON")
    assert abandon.agent_id is None  # several rang
    assert abandon.data == {"waited": 4.0, "ring": 4.0, "ringing": ["a", "b"]}
    assert state(acd, "a", "b", "c") == ["idle"] * 3
    assert acd.queue_snapshot("q", now + 4).waiting == 0
    assert acd.get_timer() is None  # its ring, retry and max-wait timers died with it


def test_abandon_of_a_call_ringing_one_agent_names_it() -> None:
    acd = ring_all(("a", "b"))
    now = login(acd, "a", "b")
    acd.enqueue("c1", "q", now)
    acd.agent_rejected("c1", "a", now + 1, "486")
    out = acd.abandon("c1", now + 2, callback=True)
    assert cancels(out) == [("c1", "b", "callback")]
    (callback,) = events(out, "CALLBACK")
    assert (callback.agent_id, callback.data) == ("b", {"waited": 2.0, "ring": 2.0})


def test_a_ringing_call_is_not_ahead_of_the_waiting_ones() -> None:
    """Positions (announcements, ENTER, ABANDON) count the waiting calls, as with one ring."""
    acd = ring_all(("a", "b"))
    now = login(acd, "a", "b")
    acd.enqueue("c1", "q", now)  # rings a and b
    assert events(acd.enqueue("c2", "q", now + 1), "ENTER")[0].data["position"] == 1
    acd.enqueue("c3", "q", now + 2)
    assert [acd.position(c) for c in ("c1", "c2", "c3")] == [0, 1, 2]
    (abandon,) = events(acd.abandon("c2", now + 3), "ABANDON")
    assert abandon.data == {"waited": 2.0, "position": 1}
    assert acd.position("c3") == 1


def test_max_wait_while_ringing_all_cancels_every_ring_then_times_out() -> None:
    acd = ring_all(("a", "b"), ring_timeout=30.0, max_wait=20.0)
    acd.agent_available("a", 0.0)
    acd.agent_available("b", 0.0)
    acd.enqueue("c1", "q", 0.0)
    acd.enqueue("c2", "q", 1.0)
    out = acd.handle_timer(20.0)
    assert out.index(CancelOffer("c1", "b", "max_wait")) < out.index(QueueTimeout("c1", "q", 20.0))
    assert cancels(out) == [("c1", "a", "max_wait"), ("c1", "b", "max_wait")]
    (timeout,) = events(out, "TIMEOUT")
    assert (timeout.agent_id, timeout.data) == (None, {"waited": 20.0, "ringing": ["a", "b"]})
    assert offers(out) == [("c2", "a"), ("c2", "b")]  # both keep their place, take c2
    assert acd.queue_snapshot("q", 20.0).kpis.overflowed == 1


# -- windows and reload -------------------------------------------------------------------


def test_a_region_window_rings_the_region_first_then_everyone() -> None:
    acd = Acd(
        [QueueSpec("q", strategy="ring_all", region_wait=10.0, ring_timeout=60.0)],
        [
            AgentSpec("n", ("q",), region="north"),
            *(AgentSpec(s, ("q",), region="south") for s in ("s1", "s2")),
        ],
    )
    now = login(acd, "n", "s1", "s2")
    assert offers(acd.enqueue("c1", "q", now, region="south")) == [("c1", "s1"), ("c1", "s2")]
    assert offers(run_timers(acd, now + 10)) == [("c1", "n")]  # the window ends: n joins


def test_a_reload_keeps_ringing_all_for_calls_that_started_so() -> None:
    spec = QueueSpec("q", strategy="ring_all")
    agents = [AgentSpec(a, ("q",)) for a in ("a", "b", "c")]
    acd = Acd([spec], agents)
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)  # rings a
    acd.replace_specs([msgspec.structs.replace(spec, strategy="longest_idle")], agents)
    run_timers(acd, now)
    acd.agent_available("b", now + 1)  # joins c1: it started as a ring-all call
    acd.agent_available("c", now + 2)
    assert state(acd, "a", "b", "c") == ["ringing"] * 3
    acd.agent_answered("c1", "c", now + 3)  # a and b withdrawn
    assert offers(acd.enqueue("c2", "q", now + 4)) == [("c2", "a")]  # one agent now


def test_a_reload_to_ring_all_offers_waiting_calls_to_one_agent_as_they_started() -> None:
    spec = QueueSpec("q")
    agents = [AgentSpec(a, ("q",)) for a in ("a", "b", "c")]
    acd = Acd([spec], agents)
    acd.enqueue("c1", "q", 0.0)  # nobody logged in
    acd.replace_specs([msgspec.structs.replace(spec, strategy="ring_all")], agents)
    run_timers(acd, 0.0)
    assert offers(acd.agent_available("a", 1.0)) == [("c1", "a")]
    assert offers(acd.agent_available("b", 2.0)) == []  # c1 rings one agent, as it started
    assert offers(acd.enqueue("c2", "q", 3.0)) == [("c2", "b")]  # a new call rings all
    assert offers(acd.agent_available("c", 4.0)) == [("c2", "c")]
    assert offers(acd.agent_rejected("c1", "a", 5.0, "486")) == [("c2", "a")]
    assert state(acd, "a", "b", "c") == ["ringing", "ringing", "ringing"]


def test_a_timeout_names_the_only_ringing_agent() -> None:
    acd = ring_all(("a",), ring_timeout=30.0, max_wait=10.0)
    login(acd, "a")
    acd.enqueue("c1", "q", 1.0)
    out = run_timers(acd, 11.0)
    assert [t.reason for t in timeouts(out)] == ["max_wait"]
    assert cancels(out) == [("c1", "a", "max_wait")]
    (timeout,) = events(out, "TIMEOUT")
    assert (timeout.agent_id, timeout.data) == ("a", {"waited": 10.0})
