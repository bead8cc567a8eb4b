"""Call pickup, in virtual time: an agent answers a queue call ringing at others (directed,
`ringing_at`; group, `ringing_for`), every ring is withdrawn without a miss, and the agent talks
on the call as if it had been offered it and answered."""

from __future__ import annotations

import msgspec
import pytest
from acdkit import cancels, changes, events, log, login, offers, run_timers

from acd import (
    Acd,
    AgentBusy,
    AgentSpec,
    AgentState,
    IllegalTransition,
    NotLoggedIn,
    QueueSpec,
    UnknownAgent,
    UnknownCall,
)

A = AgentState


def make_acd(**spec: object) -> Acd:
    """Queue `q` (agents a, b, c) and queue `other` (agents c, x): c shares a queue with
    everyone, x none with a or b."""
    keys: dict = {"ring_timeout": 10.0, "retry": 5.0, "max_wait": 60.0} | spec
    return Acd(
        [QueueSpec("q", **keys), QueueSpec("other")],
        [
            AgentSpec("a", ("q",)),
            AgentSpec("b", ("q",)),
            AgentSpec("c", ("q", "other")),
            AgentSpec("x", ("other",)),
        ],
    )


def test_a_picked_up_call_withdraws_the_ring_and_the_agent_talks_on_it() -> None:
    acd = make_acd(wrap_up=0.0)
    now = login(acd, "a", "b")
    acd.enqueue("c1", "q", now)  # a rings
    assert acd.ringing_at("a") == "c1"
    out = acd.picked_up("c1", "b", now + 3)
    assert log(out) == [("PICKUP", "b"), ("RINGCANCELED", "a")]
    (pickup,) = events(out, "PICKUP")
    assert pickup.data == {"by": "b", "from": ["a"], "waited": 3.0, "ring": 3.0}
    (canceled,) = events(out, "RINGCANCELED")
    assert canceled.data == {"reason": "picked_up", "ring": 3.0, "by": "b"}
    assert cancels(out) == [("c1", "a", "picked_up")]
    assert changes(out, "b") == [("idle", "talking", "pickup")]
    assert changes(out, "a") == [("ringing", "idle", "offer_withdrawn")]
    assert acd.agent_snapshot("a").missed == 0
    assert acd.position("c1") is None  # connected: out of the queue
    kpis = acd.queue_snapshot("q", now + 3).kpis
    assert kpis is not None and (kpis.answered, kpis.answered_in_time) == (1, 1)
    assert run_timers(acd, now + 100) == []  # the withdrawn ring's timer is void
    out = acd.call_ended("c1", "b", now + 20)
    assert log(out) == [("COMPLETE", "b")]
    assert acd.agent_state("b") is A.IDLE


def test_the_agent_whose_ring_was_picked_up_keeps_its_place_and_takes_the_next_call() -> None:
    acd = make_acd()
    now = login(acd, "a", "b")
    acd.agent_not_ready("b", now)
    acd.enqueue("c1", "q", now)  # a
    acd.enqueue("c2", "q", now + 1)  # waits
    out = acd.picked_up("c1", "b", now + 2)
    assert offers(out) == [("c2", "a")]


def test_a_ring_all_call_is_withdrawn_from_every_agent_it_rings() -> None:
    acd = make_acd(strategy="ring_all")
    now = login(acd, "a", "b")
    acd.agent_available("x", now)
    acd.enqueue("c1", "q", now)  # rings a and b
    out = acd.picked_up("c1", "x", now + 2)  # x does not even serve q
    (pickup,) = events(out, "PICKUP")
    assert pickup.data["from"] == ["a", "b"]
    assert sorted(cancels(out)) == [("c1", "a", "picked_up"), ("c1", "b", "picked_up")]
    assert {acd.agent_state(a) for a in "ab"} == {A.IDLE}
    assert acd.agent_state("x") is A.TALKING


@pytest.mark.parametrize(("before", "reason"), [(A.BUSY, "paperwork"), (A.BREAK, "")])
def test_a_busy_or_breaking_agent_that_picks_up_returns_to_it_after_the_call(
    before: AgentState, reason: str
) -> None:
    acd = make_acd(wrap_up=0.0)
    now = login(acd, "a", "b")
    if before is A.BUSY:
        acd.agent_not_ready("b", now, reason)
    else:
        acd.agent_break("b", now)
    acd.enqueue("c1", "q", now)
    acd.picked_up("c1", "b", now + 1)
    acd.call_ended("c1", "b", now + 2)
    assert (acd.agent_state("b"), acd.agent_snapshot("b").reason) == (before, reason)


def test_a_pickup_ends_wrap_up_and_counts_as_an_answer() -> None:
    acd = make_acd(wrap_up=30.0)
    now = login(acd, "a", "b")
    acd.enqueue("c0", "q", now)  # a
    acd.agent_answered("c0", "a", now)
    acd.call_ended("c0", "a", now + 1)  # a in wrap-up
    acd.enqueue("c1", "q", now + 2)  # b
    acd.picked_up("c1", "a", now + 3)
    assert acd.agent_snapshot("a").answered == 2
    assert run_timers(acd, now + 32) == []  # no wrap-up end for the earlier call
    assert acd.agent_state("a") is A.TALKING


def test_group_pickup_takes_the_call_ringing_longest_in_the_agents_queues() -> None:
    acd = make_acd()
    now = login(acd, "a", "b", "x", "c")
    acd.enqueue("o1", "other", now)  # x
    acd.enqueue("c1", "q", now + 1)  # a
    acd.enqueue("c2", "q", now + 2)  # b
    assert acd.ringing_for("c") == "o1"  # c serves both queues: x's ring is the oldest
    assert acd.ringing_for("a") == "c2"  # not its own ring, not x's (no shared queue)
    assert acd.ringing_for("b") == "c1"
    acd.picked_up("c1", "c", now + 3)
    assert acd.ringing_for("b") is None
    assert acd.ringing_at("a") is None
    with pytest.raises(UnknownAgent):
        acd.ringing_for("nobody")
    with pytest.raises(UnknownAgent):
        acd.ringing_at("nobody")


def test_a_ring_all_call_counts_from_its_first_ring_in_the_group() -> None:
    acd = Acd(
        [QueueSpec("q", strategy="ring_all"), QueueSpec("p")],
        [AgentSpec("a", ("q",)), AgentSpec("b", ("q", "p")), AgentSpec("c", ("p",))],
    )
    now = login(acd, "a")
    acd.enqueue("c1", "q", now)  # rings a
    acd.agent_available("c", now + 1)
    acd.enqueue("p1", "p", now + 2)  # c
    acd.agent_available("b", now + 3)  # c1 rings b too (ring-all); p1 rings c
    assert acd.ringing_at("b") == "c1"
    assert acd.ringing_for("c") == "c1"  # through b, though b's ring of it is the newest


def test_pickups_that_cannot_be_are_refused_and_change_nothing() -> None:
    acd = make_acd()
    now = login(acd, "a", "b", "c")
    acd.agent_lock("c", now)
    acd.enqueue("c1", "q", now)  # a
    acd.enqueue("c2", "q", now)  # b
    acd.enqueue("c3", "q", now)  # waits
    before = msgspec.to_builtins([acd.agent_snapshot(a) for a in acd.agent_ids()])
    with pytest.raises(UnknownCall):
        acd.picked_up("nope", "c", now)
    with pytest.raises(IllegalTransition) as info:  # waiting: ringing nowhere
        acd.picked_up("c3", "x", now)
    assert (info.value.entity, info.value.state) == ("call", "waiting")
    with pytest.raises(IllegalTransition):  # locked
        acd.picked_up("c1", "c", now)
    with pytest.raises(AgentBusy):  # b rings for c2
        acd.picked_up("c1", "b", now)
    with pytest.raises(AgentBusy):  # a rings for c1 itself: it answers instead
        acd.picked_up("c1", "a", now)
    with pytest.raises(NotLoggedIn):
        acd.picked_up("c1", "x", now)
    with pytest.raises(UnknownAgent):
        acd.picked_up("c1", "nobody", now)
    assert msgspec.to_builtins([acd.agent_snapshot(a) for a in acd.agent_ids()]) == before
    acd.agent_answered("c1", "a", now + 1)
    acd.agent_unlock("c", now + 1)
    acd.agent_not_ready("c", now + 1)
    with pytest.raises(IllegalTransition) as info:  # answered already
        acd.picked_up("c1", "c", now + 2)
    assert info.value.state == "connected"
