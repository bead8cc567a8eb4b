"""Calls for one named agent (`Acd.enqueue(agent=…)`: agent-to-agent transfer, directed calls),
in virtual time: offered to that agent only, waiting while it is busy, never holding up the
queue's other calls, and leaving at once when the agent is not logged in."""

from __future__ import annotations

import pytest
from acdkit import cancels, events, log, login, offers, run_timers, timeouts

from acd import (
    Acd,
    AgentSpec,
    DuplicateCall,
    NotInQueue,
    QueueSpec,
    QueueTimeout,
    UnknownAgent,
    UnknownQueue,
)


def make_acd(agents: tuple[str, ...] = ("a", "b", "c"), **spec: object) -> Acd:
    """Queue `q` (ring timeout 10 s, retry 5 s, max wait 60 s unless given) served by
    `agents`, and queue `other` served by agent `x`."""
    keys: dict = {"ring_timeout": 10.0, "retry": 5.0, "max_wait": 60.0} | spec
    return Acd(
        [QueueSpec("q", **keys), QueueSpec("other")],
        [*(AgentSpec(a, ("q",)) for a in agents), AgentSpec("x", ("other",))],
    )


def test_a_call_for_an_idle_agent_rings_that_agent_only() -> None:
    acd = make_acd()
    now = login(acd, "a", "b", "c")  # a is idle the longest
    out = acd.enqueue("t1", "q", now, agent="b")
    assert offers(out) == [("t1", "b")]
    (enter,) = events(out, "ENTER")
    assert enter.data == {"priority": 0, "position": 1, "agent": "b"}
    assert log(out) == [("ENTER", None), ("OFFER", "b")]
    out = acd.agent_answered("t1", "b", now + 1)
    assert log(out) == [("CONNECT", "b")]


def test_a_call_for_a_busy_agent_waits_while_the_queues_other_calls_pass_it() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.enqueue("c0", "q", now)  # a
    acd.agent_answered("c0", "a", now)
    assert offers(acd.enqueue("t1", "q", now + 1, agent="a")) == []  # a talks: t1 waits
    assert acd.position("t1") == 1
    # a later call goes to b: t1 at the head holds nothing up
    assert offers(acd.enqueue("c1", "q", now + 2)) == [("c1", "b")]
    acd.agent_answered("c1", "b", now + 2)
    assert offers(acd.call_ended("c1", "b", now + 3)) == []  # b never gets t1
    assert offers(acd.agent_available("c", now + 4)) == []  # nor does c
    assert offers(acd.call_ended("c0", "a", now + 5)) == [("t1", "a")]


def test_the_agent_takes_the_first_call_in_order_its_own_or_the_queues() -> None:
    acd = make_acd(("a",))
    now = login(acd, "a")
    acd.enqueue("c0", "q", now)
    acd.agent_answered("c0", "a", now)
    acd.enqueue("older", "q", now + 1)  # any agent's
    acd.enqueue("t1", "q", now + 2, agent="a")
    acd.enqueue("urgent", "q", now + 3, agent="a", priority=5)
    assert offers(acd.call_ended("c0", "a", now + 4)) == [("urgent", "a")]
    acd.agent_answered("urgent", "a", now + 4)
    assert offers(acd.call_ended("urgent", "a", now + 5)) == [("older", "a")]
    acd.agent_answered("older", "a", now + 5)
    assert offers(acd.call_ended("older", "a", now + 6)) == [("t1", "a")]


def test_a_call_for_a_logged_out_agent_is_refused_at_once() -> None:
    acd = make_acd()
    login(acd, "a")
    out = acd.enqueue("t1", "q", 5.0, agent="b")
    assert [c for c in out if isinstance(c, QueueTimeout)] == [
        QueueTimeout("t1", "q", 0.0, "agent_unavailable")
    ]
    (event,) = events(out, "UNAVAILABLE")
    assert (event.call_id, event.agent_id, event.queue) == ("t1", None, "q")
    assert event.data == {"waited": 0.0, "agent": "b"}
    assert offers(out) == []  # a, idle, is not offered it
    assert acd.position("t1") is None
    kpis = acd.queue_snapshot("q", 5.0).kpis
    assert (kpis.entered, kpis.overflowed) == (1, 1)
    assert acd.get_timer() is None  # it never joined: no max-wait timer
    acd.agent_available("b", 6.0)
    assert offers(acd.enqueue("t1", "q", 7.0, agent="b")) == [("t1", "b")]  # the id is free


def test_a_call_for_an_agent_outside_the_queue_or_unknown_raises() -> None:
    acd = make_acd()
    login(acd, "a", "x")
    with pytest.raises(NotInQueue) as info:
        acd.enqueue("t1", "q", 5.0, agent="x")
    assert (info.value.agent_id, info.value.queue) == ("x", "q")
    assert "does not serve queue 'q'" in str(info.value)
    with pytest.raises(UnknownAgent):
        acd.enqueue("t1", "q", 5.0, agent="nobody")
    with pytest.raises(UnknownQueue):
        acd.enqueue("t1", "nowhere", 5.0, agent="a")
    snap = acd.queue_snapshot("q", 5.0)
    assert (snap.waiting, snap.kpis.entered) == (0, 0)  # nothing changed
    acd.enqueue("t1", "q", 5.0, agent="a")
    with pytest.raises(DuplicateCall):
        acd.enqueue("t1", "q", 5.0, agent="a")


def test_an_agent_serving_a_queue_by_its_skills_may_be_named() -> None:
    acd = Acd([QueueSpec("tax", skills={"tax": 3})], [AgentSpec("a", skills={"tax": 5})])
    login(acd, "a")
    assert offers(acd.enqueue("t1", "tax", 2.0, agent="a")) == [("t1", "a")]


def test_no_answer_waits_for_the_same_agent_and_rings_it_again_after_retry() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")  # 2.0
    acd.enqueue("t1", "q", now, agent="a")
    out = run_timers(acd, now + 10)  # rings until 12
    assert cancels(out) == [("t1", "a", "ring_timeout")]
    assert offers(out) == []  # b is idle: not offered
    assert acd.position("t1") == 1
    assert offers(acd.enqueue("c1", "q", now + 11)) == [("c1", "b")]
    assert offers(run_timers(acd, now + 14.9)) == []
    out = run_timers(acd, now + 15)  # a's retry window ended
    assert offers(out) == [("t1", "a")]
    assert events(out, "OFFER")[0].data["attempt"] == 2


def test_a_missed_agent_takes_the_queues_other_calls_inside_its_window() -> None:
    acd = make_acd(("a",))
    now = login(acd, "a")
    acd.enqueue("t1", "q", now, agent="a")
    acd.enqueue("c1", "q", now + 1)
    out = acd.agent_rejected("t1", "a", now + 2, "486")
    assert offers(out) == [("c1", "a")]


def test_misses_count_toward_lock_after_and_the_call_waits_for_the_unlock() -> None:
    acd = make_acd(lock_after=1)
    now = login(acd, "a", "b")
    acd.enqueue("t1", "q", now, agent="a")
    out = acd.agent_rejected("t1", "a", now + 1, "603")
    assert acd.agent_state("a").value == "locked"
    later = run_timers(acd, now + 30)
    assert offers(out) == offers(later) == timeouts(later) == []  # locked, logged in: it waits
    assert offers(acd.agent_unlock("a", now + 31)) == [("t1", "a")]


def test_the_call_leaves_at_max_wait_when_its_agent_stays_busy() -> None:
    acd = make_acd(max_wait=30.0)
    now = login(acd, "a", "b")
    acd.agent_break("a", now)
    acd.enqueue("t1", "q", now, agent="a")
    out = run_timers(acd, now + 30)
    assert [(t.reason, t.waited) for t in timeouts(out)] == [("max_wait", 30.0)]
    assert log(out) == [("TIMEOUT", None)]


def test_the_call_leaves_when_its_agent_logs_out_while_it_waits() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_not_ready("a", now, "meeting")
    acd.enqueue("t1", "q", now, agent="a")
    acd.enqueue("t2", "q", now, agent="b")  # b's, untouched
    acd.agent_answered("t2", "b", now)
    out = acd.agent_unavailable("a", now + 4)
    assert timeouts(out) == [QueueTimeout("t1", "q", 4.0, "agent_unavailable")]
    (event,) = events(out, "UNAVAILABLE")
    assert event.data == {"waited": 4.0, "agent": "a"}
    assert acd.queue_snapshot("q", now + 4).waiting == 0
    assert acd.get_timer() is None


def test_the_call_leaves_when_its_agent_logs_out_while_it_rings() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.enqueue("t1", "q", now, agent="a")
    out = acd.agent_unavailable("a", now + 3)
    assert cancels(out) == [("t1", "a", "agent_unavailable")]
    assert timeouts(out) == [QueueTimeout("t1", "q", 3.0, "agent_unavailable")]
    assert log(out) == [("RINGCANCELED", "a"), ("UNAVAILABLE", None)]
    assert offers(out) == []  # b stays idle


def test_the_call_leaves_when_its_agent_logs_out_after_a_call() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.enqueue("c0", "q", now)
    acd.agent_answered("c0", "a", now)
    acd.enqueue("t1", "q", now, agent="a")
    assert acd.agent_unavailable("a", now + 1) == []  # talking: logged out at its end
    out = acd.call_ended("c0", "a", now + 2)
    assert timeouts(out) == [QueueTimeout("t1", "q", 2.0, "agent_unavailable")]


def test_the_last_agent_leaving_a_queue_that_empties_sends_its_call_away_as_unavailable() -> None:
    acd = make_acd(leave_when_empty=True)
    now = login(acd, "a")
    acd.agent_break("a", now)
    acd.enqueue("t1", "q", now, agent="a")
    acd.enqueue("c1", "q", now)
    out = acd.agent_unavailable("a", now + 1)
    assert [(t.call_id, t.reason) for t in timeouts(out)] == [
        ("t1", "agent_unavailable"),
        ("c1", "empty"),
    ]


def test_a_reload_that_takes_the_agent_out_of_the_queue_sends_the_call_away() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.agent_not_ready("a", now)
    acd.enqueue("t1", "q", now, agent="a")
    acd.replace_specs(
        [QueueSpec("q"), QueueSpec("other")], [AgentSpec("a", ("other",)), AgentSpec("x")]
    )
    out = run_timers(acd, now)  # the reload's effects
    assert timeouts(out) == [QueueTimeout("t1", "q", 0.0, "agent_unavailable")]


def test_a_reload_that_keeps_the_agent_keeps_the_call_waiting_for_it() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_not_ready("a", now)
    acd.enqueue("t1", "q", now, agent="a")
    acd.replace_specs(
        [QueueSpec("q"), QueueSpec("other")], [AgentSpec(a, ("q",)) for a in ("a", "b", "c")]
    )
    out = run_timers(acd, now)  # the reload's effects
    assert offers(out) == timeouts(out) == []
    assert offers(acd.agent_ready("a", now + 1)) == [("t1", "a")]


def test_region_and_preferred_agent_do_not_apply_to_a_call_for_one_agent() -> None:
    acd = Acd(
        [QueueSpec("q", region_wait=30.0, sticky_wait=30.0)],
        [AgentSpec("n", ("q",), region="north"), AgentSpec("s", ("q",), region="south")],
    )
    now = login(acd, "n", "s")
    out = acd.enqueue("t1", "q", now, region="south", preferred="s", agent="n")
    assert offers(out) == [("t1", "n")]
    assert events(out, "ENTER")[0].data == {"priority": 0, "position": 1, "agent": "n"}


def test_in_a_ring_all_queue_a_call_for_one_agent_rings_that_agent_only() -> None:
    acd = make_acd(strategy="ring_all")
    now = login(acd, "a", "b", "c")
    assert offers(acd.enqueue("t1", "q", now, agent="c")) == [("t1", "c")]
    assert offers(acd.enqueue("c1", "q", now)) == [("c1", "a"), ("c1", "b")]
    acd.agent_rejected("t1", "c", now + 1, "486")
    # c is idle again and joins c1; t1 waits for c's retry window to end
    assert [a for a in ("a", "b", "c") if acd.agent_state(a).value == "ringing"] == [
        "a",
        "b",
        "c",
    ]
    out = acd.agent_answered("c1", "a", now + 2)
    assert cancels(out) == [("c1", "b", "answered_elsewhere"), ("c1", "c", "answered_elsewhere")]
    assert offers(out) == []  # c's window for t1 runs until now + 6
    assert offers(run_timers(acd, now + 6)) == [("t1", "c")]


def test_abandon_of_a_call_for_one_agent() -> None:
    acd = make_acd()
    now = login(acd, "a")
    acd.enqueue("t1", "q", now, agent="a")
    out = acd.abandon("t1", now + 1)
    assert cancels(out) == [("t1", "a", "abandoned")]
    assert acd.agent_state("a").value == "idle"
    acd.enqueue("t2", "q", now + 2, agent="b")  # b logged out: refused, nothing to abandon
    assert acd.position("t2") is None
