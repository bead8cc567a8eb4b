"""Behaviour of the ACD engine driven with virtual time (SPEC ACD-1 longest-idle, ACD-4 subset,
the queue's `retry` window after a failed offer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from acdkit import cancels, login, offers, run_timers

from acd import (
    Acd,
    AcdError,
    AgentSpec,
    AgentState,
    CancelOffer,
    DuplicateCall,
    IllegalTransition,
    InvalidSpec,
    NotOffered,
    OfferCall,
    QueueEvent,
    QueueSpec,
    QueueTimeout,
    UnknownAgent,
    UnknownCall,
    UnknownQueue,
)

ROOT = Path(__file__).resolve().parents[2]


def make_acd(
    agents: tuple[str, ...] = ("a1", "a2", "a3"),
    *,
    ring_timeout: float = 15.0,
    max_wait: float = 300.0,
    wrap_up: float = 0.0,
    retry: float = 5.0,
) -> Acd:
    return Acd(
        [
            QueueSpec(
                "general",
                ring_timeout=ring_timeout,
                max_wait=max_wait,
                wrap_up=wrap_up,
                retry=retry,
            )
        ],
        [AgentSpec(agent_id, ("general",)) for agent_id in agents],
    )


def kinds(out: list) -> list[str]:
    return [c.kind for c in out if isinstance(c, QueueEvent) and c.kind != "AGENT_STATE"]


def commands(out: list) -> list:
    return [c for c in out if not isinstance(c, QueueEvent)]


# -- longest idle --------------------------------------------------------------------------


def test_longest_idle_agent_is_offered_the_call() -> None:
    acd = make_acd()
    login(acd, "a2", "a3", "a1")
    out = acd.enqueue("c1", "general", 10.0)
    assert offers(out) == [("c1", "a2")]
    assert acd.agent_state("a2") is AgentState.RINGING
    assert commands(out) == [OfferCall("c1", "a2", "general", 15.0)]


def test_agents_idle_since_the_same_time_are_ordered_by_agent_id() -> None:
    acd = make_acd()
    for agent_id in ("a3", "a1", "a2"):
        acd.agent_available(agent_id, 5.0)
    assert offers(acd.enqueue("c1", "general", 6.0)) == [("c1", "a1")]
    assert offers(acd.enqueue("c2", "general", 6.0)) == [("c2", "a2")]
    assert offers(acd.enqueue("c3", "general", 6.0)) == [("c3", "a3")]


def test_agent_that_finished_a_call_goes_to_back_of_idle_line() -> None:
    acd = make_acd()
    login(acd, "a1", "a2", "a3")
    acd.enqueue("c1", "general", 10.0)
    acd.agent_answered("c1", "a1", 11.0)
    acd.call_ended("c1", "a1", 20.0)
    assert offers(acd.enqueue("c2", "general", 21.0)) == [("c2", "a2")]
    assert offers(acd.enqueue("c3", "general", 21.0)) == [("c3", "a3")]
    assert offers(acd.enqueue("c4", "general", 21.0)) == [("c4", "a1")]


# -- ring timeout --------------------------------------------------------------------------


def test_ring_timeout_cancels_and_offers_next_agent_in_same_list() -> None:
    acd = make_acd()
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)
    assert acd.get_timer() == 25.0
    out = acd.handle_timer(25.0)
    assert commands(out) == [
        CancelOffer("c1", "a1", "ring_timeout"),
        OfferCall("c1", "a2", "general", 15.0),
    ]
    assert kinds(out) == ["RINGNOANSWER", "OFFER"]
    assert acd.agent_state("a1") is AgentState.IDLE
    assert acd.agent_state("a2") is AgentState.RINGING


def test_no_answer_returns_call_to_queue_head() -> None:
    acd = make_acd(("a1", "a2"))
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)  # -> a1
    acd.enqueue("c2", "general", 11.0)  # -> a2
    acd.enqueue("c3", "general", 12.0)  # waits
    acd.agent_answered("c2", "a2", 13.0)
    out = acd.handle_timer(25.0)  # a1 did not answer c1
    # c1 is back at the head; nobody untried is idle, so a1 gets c3 (it never tried c3)
    assert cancels(out) == [("c1", "a1", "ring_timeout")]
    assert offers(out) == [("c3", "a1")]
    acd.enqueue("c4", "general", 26.0)
    out = acd.call_ended("c2", "a2", 30.0)
    # a2 is free: the re-queued c1 is ahead of c4 even though c4 waited less
    assert offers(out) == [("c1", "a2")]


def test_no_answer_agent_is_not_offered_the_same_call_within_the_retry_window() -> None:
    acd = make_acd(("a1",), retry=10.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    out = acd.handle_timer(25.0)
    assert cancels(out) == [("c1", "a1", "ring_timeout")]
    assert offers(out) == []
    assert acd.agent_state("a1") is AgentState.IDLE
    assert acd.agent_available("a1", 30.0) == []  # a REGISTER refresh changes nothing
    assert acd.queue_snapshot("general", 30.0).waiting == 1
    assert acd.get_timer() == 35.0  # the window ends 10 s after the failure


def test_no_answer_agent_may_take_other_calls_at_once() -> None:
    acd = make_acd(("a1",))
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.enqueue("c2", "general", 11.0)
    out = acd.handle_timer(25.0)
    assert offers(out) == [("c2", "a1")]


def test_tried_agent_gets_the_call_again_once_it_becomes_available() -> None:
    acd = make_acd(("a1",))
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.handle_timer(25.0)  # a1 tried c1, c1 waits
    assert offers(acd.enqueue("c2", "general", 26.0)) == [("c2", "a1")]
    acd.agent_answered("c2", "a1", 27.0)
    out = acd.call_ended("c2", "a1", 40.0)
    # a1 became available and no untried idle agent exists for c1: offer it again
    assert offers(out) == [("c1", "a1")]


def test_tried_agent_gets_the_call_again_after_logging_in_again() -> None:
    acd = make_acd(("a1",))
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.handle_timer(25.0)
    acd.agent_unavailable("a1", 30.0)
    assert offers(acd.agent_available("a1", 31.0)) == [("c1", "a1")]


def test_no_answer_agent_goes_to_back_of_idle_line() -> None:
    acd = make_acd()
    login(acd, "a1", "a2", "a3")
    acd.enqueue("c1", "general", 10.0)  # a1
    out = acd.handle_timer(25.0)  # a1 no answer -> a2
    assert offers(out) == [("c1", "a2")]
    acd.agent_answered("c1", "a2", 26.0)
    # a3 has been idle since 2.0, a1 only since its no-answer at 25.0
    assert offers(acd.enqueue("c2", "general", 27.0)) == [("c2", "a3")]
    assert offers(acd.enqueue("c3", "general", 28.0)) == [("c3", "a1")]


def test_answer_after_ring_timeout_raises_not_offered() -> None:
    acd = make_acd(("a1", "a2"))
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)
    acd.handle_timer(25.0)  # now ringing a2
    with pytest.raises(NotOffered) as info:
        acd.agent_answered("c1", "a1", 25.1)
    assert info.value.offered_to == "a2"
    assert isinstance(info.value, IllegalTransition)
    assert acd.agent_state("a2") is AgentState.RINGING


# -- reject --------------------------------------------------------------------------------


def test_reject_offers_next_agent_and_not_the_rejecting_one_within_its_window() -> None:
    acd = make_acd(("a1", "a2"))
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)
    out = acd.agent_rejected("c1", "a1", 11.0, "486")
    assert offers(out) == [("c1", "a2")]
    assert [e.data["reason"] for e in out if isinstance(e, QueueEvent) and e.kind == "REJECT"] == [
        "486"
    ]
    assert cancels(out) == []
    out = acd.agent_rejected("c1", "a2", 12.0, "603")
    assert offers(out) == []
    assert acd.agent_state("a1") is AgentState.IDLE
    assert acd.agent_state("a2") is AgentState.IDLE
    snap = acd.queue_snapshot("general", 12.0)
    assert (snap.waiting, snap.ringing) == (1, 0)


@pytest.mark.parametrize("reason", ["sdp", "488", "606"])
def test_a_phone_that_cannot_take_the_media_makes_its_agent_busy_not_rung_again(
    reason: str,
) -> None:
    acd = make_acd(("a1", "a2"), retry=5.0)  # lock_after off, as in the demo
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)
    out = acd.agent_rejected("c1", "a1", 11.0, reason)
    assert offers(out) == [("c1", "a2")]
    assert acd.agent_state("a1") is AgentState.BUSY
    states = [e for e in out if isinstance(e, QueueEvent) and e.kind == "AGENT_STATE"]
    assert any(e.agent_id == "a1" and "media" in str(e.data) for e in states), states
    # Past its retry window the call is not offered to a1 again: a1 waits for its agent.
    acd.agent_rejected("c1", "a2", 12.0, "486")
    out = acd.handle_timer(20.0)
    assert offers(out) == [("c1", "a2")]
    assert acd.agent_state("a1") is AgentState.BUSY
    acd.agent_ready("a1", 21.0)  # the phone fixed, the agent makes itself ready
    assert acd.agent_state("a1") is AgentState.IDLE


def test_reject_from_an_agent_not_ringing_raises() -> None:
    acd = make_acd(("a1", "a2"))
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)
    with pytest.raises(NotOffered):
        acd.agent_rejected("c1", "a2", 11.0, "486")
    assert acd.agent_state("a1") is AgentState.RINGING


# -- retry window --------------------------------------------------------------------------


def test_one_agent_queue_rings_the_same_agent_again_after_retry_seconds() -> None:
    acd = make_acd(("a1",), retry=5.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    out = acd.handle_timer(25.0)  # no answer; the only agent is in its window until 30
    assert commands(out) == [CancelOffer("c1", "a1", "ring_timeout")]
    assert acd.get_timer() == 30.0
    assert acd.handle_timer(29.9) == []
    out = acd.handle_timer(30.0)
    assert commands(out) == [OfferCall("c1", "a1", "general", 15.0)]
    attempts = [e.data["attempt"] for e in out if isinstance(e, QueueEvent) and e.kind == "OFFER"]
    assert attempts == [2]
    out = acd.agent_answered("c1", "a1", 33.0)
    (connect,) = [e for e in out if isinstance(e, QueueEvent) and e.kind == "CONNECT"]
    assert connect.data == {"waited": 23.0, "ring": 3.0, "attempt": 2}


def test_one_agent_that_never_answers_is_rung_every_retry_until_max_wait() -> None:
    acd = make_acd(("a1",), ring_timeout=15.0, max_wait=60.0, retry=5.0)
    login(acd, "a1")
    out = acd.enqueue("c1", "general", 10.0)
    out += run_timers(acd, 1000.0)
    # rings 10-25, window 25-30, rings 30-45, window 45-50, rings 50-65, window ends at 70
    # together with max wait, which runs first: the caller leaves, no fourth ring
    offer_times = [e.at for e in out if isinstance(e, QueueEvent) and e.kind == "OFFER"]
    assert offer_times == [10.0, 30.0, 50.0]
    assert commands(out)[-1] == QueueTimeout("c1", "general", 60.0)
    assert acd.get_timer() is None


def test_failed_agents_are_skipped_within_their_windows_and_eligible_after() -> None:
    acd = make_acd(("a1", "a2"), retry=5.0)
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)  # a1
    assert offers(acd.agent_rejected("c1", "a1", 11.0, "486")) == [("c1", "a2")]
    assert offers(acd.agent_rejected("c1", "a2", 13.0, "486")) == []  # both in windows
    assert acd.get_timer() == 16.0
    assert acd.handle_timer(15.9) == []
    # a1's window ended; a2's runs until 18, so a2 is skipped
    assert offers(acd.handle_timer(16.0)) == [("c1", "a1")]
    assert offers(acd.agent_rejected("c1", "a1", 16.5, "603")) == []  # a1 again until 21.5
    assert offers(acd.handle_timer(18.0)) == [("c1", "a2")]


def test_failed_agent_is_offered_the_call_when_another_offer_fails_after_its_window() -> None:
    acd = make_acd(("a1", "a2"), ring_timeout=15.0, retry=5.0)
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)
    assert offers(acd.agent_rejected("c1", "a1", 11.0, "486")) == [("c1", "a2")]
    assert offers(acd.handle_timer(16.0)) == []  # a1's window ends while c1 rings a2
    out = acd.handle_timer(26.0)  # a2 does not answer; a1 is eligible again
    assert commands(out) == [
        CancelOffer("c1", "a2", "ring_timeout"),
        OfferCall("c1", "a1", "general", 15.0),
    ]


def test_retry_timer_outlives_an_offer_to_another_agent_that_then_fails() -> None:
    acd = make_acd(("a1", "a2"), retry=5.0)
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)
    acd.agent_rejected("c1", "a1", 11.0, "486")  # a1's window until 16; c1 rings a2
    assert acd.get_timer() == 16.0  # asked while c1 rings: the retry timer must not be lost
    acd.agent_rejected("c1", "a2", 14.0, "486")  # a2's window until 19; a1 still in its own
    assert acd.get_timer() == 16.0
    assert offers(acd.handle_timer(16.0)) == [("c1", "a1")]


def test_retry_window_belongs_to_one_call_only() -> None:
    acd = make_acd(("a1",), retry=30.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.enqueue("c2", "general", 11.0)
    assert offers(acd.agent_rejected("c1", "a1", 12.0, "486")) == [("c2", "a1")]
    assert offers(acd.agent_rejected("c2", "a1", 13.0, "486")) == []
    assert offers(acd.enqueue("c3", "general", 14.0)) == [("c3", "a1")]


def test_agent_that_becomes_available_takes_head_call_inside_its_window() -> None:
    acd = make_acd(("a1",), ring_timeout=15.0, retry=60.0, wrap_up=5.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.handle_timer(25.0)  # a1 in c1's window until 85
    acd.enqueue("c2", "general", 26.0)  # a1 takes it
    acd.agent_answered("c2", "a1", 27.0)
    acd.call_ended("c2", "a1", 40.0)
    assert offers(acd.handle_timer(45.0)) == [("c1", "a1")]  # end of wrap-up


def test_wrap_up_end_goes_before_a_retry_due_at_the_same_instant() -> None:
    acd = make_acd(("a1", "a2"), ring_timeout=15.0, retry=5.0, wrap_up=5.0)
    login(acd, "a2", "a1")
    acd.enqueue("c0", "general", 10.0)  # a2
    acd.agent_answered("c0", "a2", 11.0)
    acd.enqueue("c1", "general", 12.0)  # a1
    acd.handle_timer(27.0)  # a1 does not answer: window until 32
    acd.call_ended("c0", "a2", 27.0)  # a2 in wrap-up until 32
    # the agent just back from wrap-up takes c1, not the one that failed it
    assert offers(acd.handle_timer(32.0)) == [("c1", "a2")]
    assert acd.agent_state("a1") is AgentState.IDLE


def test_retry_zero_offers_the_same_agent_at_the_next_timer_not_in_the_same_list() -> None:
    acd = make_acd(("a1",), retry=0.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    out = acd.handle_timer(25.0)
    assert commands(out) == [CancelOffer("c1", "a1", "ring_timeout")]
    assert acd.get_timer() == 25.0  # due at once
    assert commands(acd.handle_timer(25.0)) == [OfferCall("c1", "a1", "general", 15.0)]
    out = acd.agent_rejected("c1", "a1", 26.0, "486")
    assert offers(out) == []
    assert acd.get_timer() == 26.0
    assert offers(acd.handle_timer(26.0)) == [("c1", "a1")]


def test_retry_zero_agent_that_failed_in_an_earlier_step_is_eligible_at_once() -> None:
    acd = make_acd(("a1", "a2"), retry=0.0)
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)  # a1
    assert offers(acd.agent_rejected("c1", "a1", 11.0, "486")) == [("c1", "a2")]
    # a2 fails: a1 (failed one step earlier) is eligible again; a2 is not re-offered now
    assert offers(acd.agent_rejected("c1", "a2", 11.0, "486")) == [("c1", "a1")]


def test_retry_zero_failed_agent_does_not_take_the_call_back_in_the_same_step() -> None:
    acd = Acd(
        [
            QueueSpec("q1", ring_timeout=10.0, retry=0.0),
            QueueSpec("q2", max_wait=5.0, retry=0.0),
        ],
        [AgentSpec("a1", ("q1", "q2"))],
    )
    acd.agent_available("a1", 0.0)
    acd.enqueue("c1", "q1", 0.0)  # rings a1 until 10
    acd.enqueue("c2", "q2", 6.0)  # waits; max wait at 11
    # called late: a1 fails c1 (ring timeout due at 10) and takes c2, whose max wait (due at
    # 11) then withdraws that offer; a1 must not get c1 back in this list
    out = acd.handle_timer(12.0)
    assert cancels(out) == [("c1", "a1", "ring_timeout"), ("c2", "a1", "max_wait")]
    assert offers(out) == [("c2", "a1")]
    assert acd.get_timer() == 12.0
    assert commands(acd.handle_timer(12.0)) == [OfferCall("c1", "a1", "q1", 10.0)]


# -- abandon -------------------------------------------------------------------------------


def test_abandon_while_queued_leaves_queue_without_cancel() -> None:
    acd = make_acd(("a1",))
    acd.enqueue("c1", "general", 10.0)
    acd.enqueue("c2", "general", 11.0)
    out = acd.abandon("c1", 15.0)
    assert commands(out) == []
    (event,) = out
    assert (event.kind, event.call_id, event.data) == (
        "ABANDON",
        "c1",
        {"waited": 5.0, "position": 1},
    )
    assert acd.queue_snapshot("general", 15.0).waiting == 1
    with pytest.raises(UnknownCall):
        acd.abandon("c1", 16.0)
    # the max-wait timer of c1 no longer fires
    assert acd.get_timer() == 311.0


def test_abandon_while_ringing_cancels_offer_and_agent_keeps_its_place() -> None:
    acd = make_acd()
    login(acd, "a1", "a2", "a3")
    acd.enqueue("c1", "general", 10.0)  # a1
    out = acd.abandon("c1", 12.0)
    assert commands(out) == [CancelOffer("c1", "a1", "abandoned")]
    assert kinds(out) == ["ABANDON"]
    assert acd.agent_state("a1") is AgentState.IDLE
    assert offers(acd.enqueue("c2", "general", 13.0)) == [("c2", "a1")]
    assert acd.get_timer() == 28.0  # c1's ring timer is gone, c2's runs


def test_abandon_while_ringing_lets_agent_take_next_waiting_call() -> None:
    acd = make_acd(("a1",))
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.enqueue("c2", "general", 11.0)
    out = acd.abandon("c1", 12.0)
    assert commands(out) == [
        CancelOffer("c1", "a1", "abandoned"),
        OfferCall("c2", "a1", "general", 15.0),
    ]


def test_abandon_after_connect_is_illegal() -> None:
    acd = make_acd(("a1",))
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.agent_answered("c1", "a1", 11.0)
    with pytest.raises(IllegalTransition):
        acd.abandon("c1", 12.0)


# -- max wait ------------------------------------------------------------------------------


def test_max_wait_while_queued_times_out_the_call() -> None:
    acd = make_acd(("a1",), max_wait=60.0)
    out = acd.enqueue("c1", "general", 10.0)
    assert acd.get_timer() == 70.0
    assert acd.handle_timer(69.9) == []
    out = acd.handle_timer(70.0)
    assert commands(out) == [QueueTimeout("c1", "general", 60.0)]
    assert kinds(out) == ["TIMEOUT"]
    assert acd.get_timer() is None
    assert acd.queue_snapshot("general", 70.0).waiting == 0


def test_max_wait_while_ringing_cancels_then_times_out() -> None:
    acd = make_acd(("a1",), max_wait=20.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)  # rings a1 until 25, max wait at 30
    acd.handle_timer(25.0)  # no answer; a1 is not re-offered c1
    acd.enqueue("c2", "general", 26.0)  # rings a1
    acd.agent_rejected("c2", "a1", 27.0, "486")
    acd.agent_unavailable("a1", 28.0)
    acd.agent_available("a1", 29.0)  # became available: takes c1 (the head) again
    assert acd.agent_state("a1") is AgentState.RINGING
    out = acd.handle_timer(30.0)
    assert commands(out) == [
        CancelOffer("c1", "a1", "max_wait"),
        QueueTimeout("c1", "general", 20.0),
    ]
    assert kinds(out) == ["TIMEOUT"]
    # a1 is idle again with its place kept; it rejected c2, so c2 is not offered to it
    assert acd.agent_state("a1") is AgentState.IDLE
    assert acd.queue_snapshot("general", 30.0).waiting == 1


def test_max_wait_clock_is_not_reset_by_requeues() -> None:
    acd = make_acd(("a1", "a2", "a3"), ring_timeout=10.0, max_wait=25.0)
    login(acd, "a1", "a2", "a3")
    acd.enqueue("c1", "general", 100.0)
    out = run_timers(acd, 1000.0)
    # 110: a1 no answer -> a2; 120: a2 no answer -> a3; 125: max wait while ringing a3
    assert cancels(out) == [
        ("c1", "a1", "ring_timeout"),
        ("c1", "a2", "ring_timeout"),
        ("c1", "a3", "max_wait"),
    ]
    (timeout,) = [c for c in out if isinstance(c, QueueTimeout)]
    assert timeout.waited == 25.0


def test_max_wait_and_ring_timeout_at_same_instant_time_out_without_ringing_next() -> None:
    acd = make_acd(("a1", "a2"), ring_timeout=10.0, max_wait=10.0)
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 5.0)
    out = acd.handle_timer(15.0)
    assert commands(out) == [
        CancelOffer("c1", "a1", "max_wait"),
        QueueTimeout("c1", "general", 10.0),
    ]


# -- wrap-up -------------------------------------------------------------------------------


def test_wrap_up_timer_then_automatic_next_offer() -> None:
    acd = make_acd(("a1",), wrap_up=30.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.agent_answered("c1", "a1", 12.0)
    acd.enqueue("c2", "general", 13.0)
    out = acd.call_ended("c1", "a1", 100.0)
    assert offers(out) == []
    assert kinds(out) == ["COMPLETE"]
    assert acd.agent_state("a1") is AgentState.WRAP_UP
    assert acd.get_timer() == 130.0
    out = acd.handle_timer(130.0)
    assert offers(out) == [("c2", "a1")]
    states = [e.data["to"] for e in out if isinstance(e, QueueEvent) and e.kind == "AGENT_STATE"]
    assert states == ["idle", "ringing"]


def test_wrap_up_from_spec_of_the_calls_queue() -> None:
    acd = Acd(
        [QueueSpec("fast", wrap_up=0.0), QueueSpec("slow", wrap_up=20.0)],
        [AgentSpec("a1", ("fast", "slow"))],
    )
    acd.agent_available("a1", 0.0)
    acd.enqueue("c1", "fast", 1.0)
    acd.agent_answered("c1", "a1", 2.0)
    acd.call_ended("c1", "a1", 3.0)
    assert acd.agent_state("a1") is AgentState.IDLE
    acd.enqueue("c2", "slow", 4.0)
    acd.agent_answered("c2", "a1", 5.0)
    acd.call_ended("c2", "a1", 6.0)
    assert acd.agent_state("a1") is AgentState.WRAP_UP


# -- several queues and priority -----------------------------------------------------------


def test_multi_queue_agent_takes_longest_waiting_call_across_its_queues() -> None:
    acd = Acd(
        [QueueSpec("q1"), QueueSpec("q2"), QueueSpec("q3")],
        [AgentSpec("a1", ("q1", "q2")), AgentSpec("a3", ("q3",))],
    )
    acd.enqueue("c-q1", "q1", 10.0)
    acd.enqueue("c-q3", "q3", 11.0)
    acd.enqueue("c-q2", "q2", 12.0)
    acd.enqueue("c-q1-late", "q1", 13.0)
    assert offers(acd.agent_available("a1", 20.0)) == [("c-q1", "a1")]
    acd.agent_answered("c-q1", "a1", 21.0)
    assert offers(acd.call_ended("c-q1", "a1", 30.0)) == [("c-q2", "a1")]


def test_multi_queue_agent_prefers_higher_priority_across_queues() -> None:
    acd = Acd([QueueSpec("q1"), QueueSpec("q2")], [AgentSpec("a1", ("q1", "q2"))])
    acd.enqueue("old", "q1", 10.0)
    acd.enqueue("vip", "q2", 20.0, priority=5)
    assert offers(acd.agent_available("a1", 30.0)) == [("vip", "a1")]


def test_multi_queue_agent_is_offered_calls_from_either_queue() -> None:
    acd = Acd(
        [QueueSpec("q1"), QueueSpec("q2")],
        [AgentSpec("a1", ("q1",)), AgentSpec("a12", ("q1", "q2"))],
    )
    login(acd, "a12", "a1")
    assert offers(acd.enqueue("c1", "q2", 10.0)) == [("c1", "a12")]
    assert offers(acd.enqueue("c2", "q1", 11.0)) == [("c2", "a1")]
    assert offers(acd.enqueue("c3", "q2", 12.0)) == []


def test_requeued_call_does_not_jump_over_a_longer_waiting_call_of_another_queue() -> None:
    acd = Acd(
        [QueueSpec("q1"), QueueSpec("q2")],
        [AgentSpec("a2", ("q2",)), AgentSpec("a12", ("q1", "q2"))],
    )
    acd.enqueue("old-q1", "q1", 10.0)  # nobody in q1 is logged in
    acd.agent_available("a2", 11.0)
    acd.enqueue("new-q2", "q2", 12.0)  # rings a2
    acd.handle_timer(27.0)  # a2 did not answer: new-q2 is back at the head of q2
    assert offers(acd.agent_available("a12", 28.0)) == [("old-q1", "a12")]


def test_higher_priority_waits_ahead_and_fifo_within_a_priority() -> None:
    acd = make_acd(("a1",))
    acd.enqueue("low1", "general", 1.0)
    acd.enqueue("high1", "general", 2.0, priority=1)
    acd.enqueue("low2", "general", 3.0)
    out = acd.enqueue("high2", "general", 4.0, priority=1)
    assert [e.data["position"] for e in out if isinstance(e, QueueEvent) and e.kind == "ENTER"] == [
        2
    ]
    order = []
    for i in range(4):
        now = 10.0 + 10 * i
        if i == 0:
            out = acd.agent_available("a1", now)
        else:
            out = acd.call_ended(order[-1], "a1", now)
        ((call_id, _),) = offers(out)
        acd.agent_answered(call_id, "a1", now + 1)
        order.append(call_id)
    assert order == ["high1", "high2", "low1", "low2"]


def test_requeued_call_stays_behind_higher_priority_calls() -> None:
    acd = make_acd(("a1", "a2"))
    login(acd, "a1")
    acd.enqueue("low", "general", 10.0)  # rings a1
    acd.enqueue("vip", "general", 11.0, priority=9)  # waits
    acd.agent_rejected("low", "a1", 12.0, "486")  # a1 takes vip (untried)
    acd.agent_answered("vip", "a1", 13.0)
    acd.enqueue("later-vip", "general", 14.0, priority=9)
    # a2 logs in: later-vip (priority 9) goes before the re-queued low (priority 0)
    assert offers(acd.agent_available("a2", 15.0)) == [("later-vip", "a2")]


# -- unavailable ---------------------------------------------------------------------------


def test_unavailable_while_ringing_cancels_and_requeues_at_head() -> None:
    acd = make_acd(("a1", "a2"))
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)  # a1
    acd.enqueue("c2", "general", 11.0)  # waits
    out = acd.agent_unavailable("a1", 12.0)
    assert commands(out) == [CancelOffer("c1", "a1", "agent_unavailable")]
    assert kinds(out) == ["RINGCANCELED"]
    assert acd.agent_state("a1") is AgentState.LOGGED_OUT
    assert offers(acd.agent_available("a2", 13.0)) == [("c1", "a2")]
    assert acd.get_timer() == 28.0


def test_unavailable_while_talking_logs_out_when_the_call_ends() -> None:
    acd = make_acd(("a1",))
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.agent_answered("c1", "a1", 11.0)
    assert acd.agent_unavailable("a1", 12.0) == []
    assert acd.agent_state("a1") is AgentState.TALKING
    acd.enqueue("c2", "general", 13.0)
    out = acd.call_ended("c1", "a1", 20.0)
    assert offers(out) == []
    assert acd.agent_state("a1") is AgentState.LOGGED_OUT


def test_reregister_during_call_cancels_pending_logout() -> None:
    acd = make_acd(("a1",), wrap_up=5.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.agent_answered("c1", "a1", 11.0)
    acd.agent_unavailable("a1", 12.0)
    assert acd.agent_available("a1", 13.0) == []
    acd.call_ended("c1", "a1", 20.0)
    assert acd.agent_state("a1") is AgentState.WRAP_UP


def test_unavailable_in_wrap_up_logs_out_and_cancels_wrap_up_timer() -> None:
    acd = make_acd(("a1",), wrap_up=5.0)
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    acd.agent_answered("c1", "a1", 11.0)
    acd.call_ended("c1", "a1", 20.0)
    acd.agent_unavailable("a1", 21.0)
    assert acd.agent_state("a1") is AgentState.LOGGED_OUT
    assert acd.get_timer() is None


# -- events, timers, errors ----------------------------------------------------------------


def test_full_call_emits_queue_log_for_every_state_change() -> None:
    acd = make_acd(("a1",))
    out = acd.agent_available("a1", 0.0)
    out += acd.enqueue("c1", "general", 10.0)
    out += acd.agent_answered("c1", "a1", 13.0)
    out += acd.call_ended("c1", "a1", 73.0)
    log = [(e.kind, e.call_id, e.agent_id, e.at) for e in out if isinstance(e, QueueEvent)]
    assert log == [
        ("AGENT_STATE", None, "a1", 0.0),
        ("ENTER", "c1", None, 10.0),
        ("OFFER", "c1", "a1", 10.0),
        ("AGENT_STATE", "c1", "a1", 10.0),
        ("CONNECT", "c1", "a1", 13.0),
        ("AGENT_STATE", "c1", "a1", 13.0),
        ("COMPLETE", "c1", "a1", 73.0),
        ("AGENT_STATE", "c1", "a1", 73.0),
    ]
    connect = next(e for e in out if isinstance(e, QueueEvent) and e.kind == "CONNECT")
    assert connect.data == {"waited": 3.0, "ring": 3.0, "attempt": 1}
    transitions = [
        (e.data["from"], e.data["to"])
        for e in out
        if isinstance(e, QueueEvent) and e.kind == "AGENT_STATE"
    ]
    assert transitions == [
        ("logged_out", "idle"),
        ("idle", "ringing"),
        ("ringing", "talking"),
        ("talking", "idle"),
    ]
    with pytest.raises(UnknownCall):
        acd.call_ended("c1", "a1", 74.0)


def test_get_timer_is_none_without_calls_and_stale_timers_are_skipped() -> None:
    acd = make_acd(("a1",))
    assert acd.get_timer() is None
    login(acd, "a1")
    acd.enqueue("c1", "general", 10.0)
    assert acd.get_timer() == 25.0
    acd.agent_answered("c1", "a1", 11.0)
    assert acd.get_timer() is None  # ring and max-wait timers no longer apply
    assert acd.handle_timer(1000.0) == []


def test_call_id_can_be_reused_after_the_call_left() -> None:
    acd = make_acd(("a1",), max_wait=50.0)
    acd.enqueue("c1", "general", 0.0)
    acd.abandon("c1", 1.0)
    acd.enqueue("c1", "general", 40.0)
    assert acd.handle_timer(50.0) == []  # the first incarnation's max wait is stale
    assert commands(acd.handle_timer(90.0)) == [QueueTimeout("c1", "general", 50.0)]


def test_unknown_names_and_duplicates_raise_acd_errors() -> None:
    acd = make_acd(("a1",))
    with pytest.raises(UnknownQueue):
        acd.enqueue("c1", "nope", 0.0)
    with pytest.raises(UnknownAgent):
        acd.agent_available("nobody", 0.0)
    with pytest.raises(UnknownAgent):
        acd.agent_state("nobody")
    with pytest.raises(UnknownQueue):
        acd.queue_snapshot("nope", 0.0)
    acd.enqueue("c1", "general", 0.0)
    with pytest.raises(DuplicateCall):
        acd.enqueue("c1", "general", 1.0)
    with pytest.raises(UnknownCall):
        acd.agent_answered("c9", "a1", 1.0)
    with pytest.raises(UnknownAgent):
        acd.agent_answered("c1", "nobody", 1.0)
    with pytest.raises(IllegalTransition):
        acd.agent_answered("c1", "a1", 1.0)  # waiting, not offered
    for error in (UnknownQueue, UnknownAgent, UnknownCall, DuplicateCall, IllegalTransition):
        assert issubclass(error, AcdError)


@pytest.mark.parametrize(
    "queue",
    [
        QueueSpec("q", strategy="leastrecent"),  # Asterisk's, not ours
        QueueSpec("q", ring_timeout=0.0),
        QueueSpec("q", max_wait=-1.0),
        QueueSpec("q", wrap_up=float("nan")),
        QueueSpec("q", retry=-0.5),
        QueueSpec("q", retry=float("inf")),
        QueueSpec(""),
    ],
)
def test_invalid_queue_spec_is_refused(queue: QueueSpec) -> None:
    with pytest.raises(InvalidSpec):
        Acd([queue], [])


def test_agent_naming_unknown_queue_or_duplicates_are_refused() -> None:
    with pytest.raises(InvalidSpec, match=r"agents\[0\]\.queues\[1\]"):
        Acd([QueueSpec("q")], [AgentSpec("a1", ("q", "x"))])
    with pytest.raises(InvalidSpec, match="duplicate"):
        Acd([QueueSpec("q"), QueueSpec("q")], [])
    with pytest.raises(InvalidSpec, match="duplicate"):
        Acd([QueueSpec("q")], [AgentSpec("a1"), AgentSpec("a1")])


def test_queue_snapshot_counts_calls_and_agents_by_state() -> None:
    acd = make_acd(("a1", "a2", "a3"))
    login(acd, "a1", "a2")
    acd.enqueue("c1", "general", 10.0)  # a1
    acd.agent_answered("c1", "a1", 11.0)
    acd.enqueue("c2", "general", 12.0)  # a2
    acd.enqueue("c3", "general", 13.0)  # waits
    snap = acd.queue_snapshot("general", 20.0)
    assert (snap.waiting, snap.ringing, snap.longest_wait) == (2, 1, 8.0)
    assert snap.agents == {
        "logged_out": 1,
        "idle": 0,
        "ringing": 1,
        "talking": 1,
        "hold": 0,
        "direct_call": 0,
        "wrap_up": 0,
        "busy": 0,
        "break": 0,
        "locked": 0,
    }


def test_same_inputs_give_same_outputs() -> None:
    def run() -> list:
        acd = make_acd(tuple(f"a{i}" for i in range(6)), ring_timeout=7.0, max_wait=40.0)
        out: list = []
        for i in range(6):
            out += acd.agent_available(f"a{i}", float(i % 2))
        for i in range(20):
            out += acd.enqueue(f"c{i}", "general", 10.0 + i, priority=i % 3)
        out += run_timers(acd, 100.0)
        return out

    assert run() == run()


def test_acd_package_imports_no_io_modules() -> None:
    forbidden = {"asyncio", "socket", "time", "uvloop", "selectors", "threading"}
    for path in sorted((ROOT / "acd").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
