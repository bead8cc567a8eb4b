"""Routing strategies, skills, regions and sticky agents of the ACD engine, in virtual time
(SPEC ACD-1, ACD-2, ACD-3; issue 10 "Routing").

Every test drives `Acd` the way call control does: inputs with `now`, then `handle_timer` at
each `get_timer()` deadline; it reads who is offered which call from the `OfferCall`s.
"""

from __future__ import annotations

import pytest
from acdkit import offers, run_timers

from acd import (
    Acd,
    AgentSpec,
    IllegalTransition,
    InvalidSpec,
    QueueEvent,
    QueueSpec,
    QueueTimeout,
    UnknownAgent,
)


def login(acd: Acd, agents: list[str], now: float = 0.0, step: float = 1.0) -> float:
    """Log agents in one by one, `step` seconds apart (so idle order = list order)."""
    for agent_id in agents:
        assert offers(acd.agent_available(agent_id, now)) == []
        now += step
    return now


def serve(acd: Acd, call: str, agent: str, now: float) -> list:
    """The agent answers `call` and hangs up at once (no wrap-up): idle again."""
    acd.agent_answered(call, agent, now)
    return acd.call_ended(call, agent, now)


# -- strategies ---------------------------------------------------------------------------


def test_skills_best_level_first_then_longest_idle() -> None:
    queue = QueueSpec("tax", strategy="skills", skills={"tax": 3})
    agents = [
        AgentSpec("low", skills={"tax": 3}),
        AgentSpec("top1", skills={"tax": 9}),
        AgentSpec("top2", skills={"tax": 9}),
        AgentSpec("none", skills={"social": 8}),
    ]
    acd = Acd([queue], agents)
    now = login(acd, ["low", "top2", "top1", "none"])
    assert offers(acd.enqueue("c1", "tax", now)) == [("c1", "top2")]  # 9, idle longer
    assert offers(acd.enqueue("c2", "tax", now)) == [("c2", "top1")]
    assert offers(acd.enqueue("c3", "tax", now)) == [("c3", "low")]
    assert offers(acd.enqueue("c4", "tax", now)) == []  # 'none' lacks the skill
    # The first agent free takes the waiting call, whatever its level.
    assert offers(serve(acd, "c3", "low", now + 5)) == [("c4", "low")]


def test_several_skills_score_by_the_sum_of_levels() -> None:
    queue = QueueSpec("enterprise", strategy="skills", skills={"tax": 2, "law": 2})
    agents = [
        AgentSpec("even", skills={"tax": 5, "law": 5}),  # 10
        AgentSpec("lopsided", skills={"tax": 10, "law": 2}),  # 12
        AgentSpec("short", skills={"tax": 10, "law": 1}),  # below a minimum
    ]
    acd = Acd([queue], agents)
    now = login(acd, ["even", "lopsided", "short"])
    assert offers(acd.enqueue("c1", "enterprise", now)) == [("c1", "lopsided")]
    assert offers(acd.enqueue("c2", "enterprise", now)) == [("c2", "even")]
    assert offers(acd.enqueue("c3", "enterprise", now)) == []


def test_skill_queue_takes_agents_that_do_not_list_it_and_refuses_listed_ones_lacking() -> None:
    queue = QueueSpec("tax", skills={"tax": 5})
    acd = Acd([queue], [AgentSpec("a", skills={"tax": 6})])
    now = login(acd, ["a"])
    assert offers(acd.enqueue("c1", "tax", now)) == [("c1", "a")]
    with pytest.raises(InvalidSpec, match=r"agents\[0\]\.queues\[0\].*lacks.*tax 5"):
        Acd([queue], [AgentSpec("b", ("tax",), skills={"tax": 4})])
    with pytest.raises(InvalidSpec, match=r"skills\.tax: expected a level 1-10"):
        Acd([queue], [AgentSpec("b", skills={"tax": 11})])
    with pytest.raises(InvalidSpec, match="strategy 'skills' needs"):
        Acd([QueueSpec("q", strategy="skills")], [])


def test_round_robin_remembers_where_it_was() -> None:
    queue = QueueSpec("q", strategy="round_robin")
    acd = Acd([queue], [AgentSpec(a, ("q",)) for a in ("a", "b", "c")])
    now = login(acd, ["c", "b", "a"])  # idle order is the reverse: round robin ignores it
    picked = []
    for n in range(6):
        out = acd.enqueue(f"c{n}", "q", now)
        ((call, agent),) = offers(out)
        picked.append(agent)
        serve(acd, call, agent, now)
        now += 1
    assert picked == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_skips_busy_agents_and_keeps_its_place() -> None:
    queue = QueueSpec("q", strategy="round_robin")
    acd = Acd([queue], [AgentSpec(a, ("q",)) for a in ("a", "b", "c")])
    now = login(acd, ["a", "b", "c"])
    assert offers(acd.enqueue("c1", "q", now)) == [("c1", "a")]
    acd.agent_answered("c1", "a", now)  # a talks
    assert offers(acd.enqueue("c2", "q", now)) == [("c2", "b")]
    serve(acd, "c2", "b", now)
    assert offers(acd.enqueue("c3", "q", now)) == [("c3", "c")]
    serve(acd, "c3", "c", now)
    assert offers(acd.enqueue("c4", "q", now)) == [("c4", "b")]  # after c, a busy: b


def test_fewest_calls_then_longest_idle() -> None:
    queue = QueueSpec("q", strategy="fewest_calls")
    acd = Acd([queue], [AgentSpec(a, ("q",)) for a in ("a", "b")])
    now = login(acd, ["a", "b"])
    assert offers(acd.enqueue("c1", "q", now)) == [("c1", "a")]
    serve(acd, "c1", "a", now + 1)  # a: 1 call, and now idle after b
    assert offers(acd.enqueue("c2", "q", now + 2)) == [("c2", "b")]
    serve(acd, "c2", "b", now + 3)
    serve_at = now + 4
    for n in range(3, 6):  # a and b alternate while their counts are equal or one apart
        ((_, agent),) = offers(acd.enqueue(f"c{n}", "q", serve_at))
        serve(acd, f"c{n}", agent, serve_at)
        serve_at += 1
    assert offers(acd.enqueue("c9", "q", serve_at)) == [("c9", "b")]  # a 3 calls, b 2


def test_random_is_spread_and_reproducible_with_its_seed() -> None:
    def picks(seed: int) -> list[str]:
        queue = QueueSpec("q", strategy="random")
        acd = Acd([queue], [AgentSpec(a, ("q",)) for a in "abcd"], seed=seed)
        now = login(acd, list("abcd"))
        chosen = []
        for n in range(200):
            ((call, agent),) = offers(acd.enqueue(f"c{n}", "q", now))
            chosen.append(agent)
            serve(acd, call, agent, now)
        return chosen

    first = picks(7)
    assert first == picks(7)
    assert first != picks(8)
    counts = {agent: first.count(agent) for agent in "abcd"}
    assert all(30 <= count <= 70 for count in counts.values()), counts


def test_every_strategy_honours_the_retry_window() -> None:
    for strategy in ("longest_idle", "round_robin", "fewest_calls", "random"):
        queue = QueueSpec("q", strategy=strategy, ring_timeout=5, retry=30)
        acd = Acd([queue], [AgentSpec(a, ("q",)) for a in ("a", "b")])
        now = login(acd, ["a", "b"])
        ((_, first),) = offers(acd.enqueue("c1", "q", now))
        acd.agent_rejected("c1", first, now + 1, "busy")
        other = {"a": "b", "b": "a"}[first]
        assert acd.agent_state(other).value == "ringing", strategy
        acd.agent_rejected("c1", other, now + 2, "busy")
        # Both failed it: nobody rings it until a window ends (first's, at now + 31).
        assert offers(run_timers(acd, now + 30.9)) == [], strategy
        assert offers(run_timers(acd, now + 31)) == [("c1", first)], strategy


# -- regions ------------------------------------------------------------------------------


def region_acd(region_wait: float = 20.0) -> Acd:
    queue = QueueSpec("q", region_wait=region_wait, max_wait=600)
    agents = [
        AgentSpec("north1", ("q",), region="north"),
        AgentSpec("south1", ("q",), region="south"),
        AgentSpec("south2", ("q",), region="south"),
    ]
    return Acd([queue], agents)


def test_a_call_goes_to_its_region_first_then_to_anyone_after_the_wait() -> None:
    acd = region_acd()
    login(acd, ["north1", "south1", "south2"], now=0.0)
    # north1 is idle longest, but a southern caller gets a southern agent.
    assert offers(acd.enqueue("c1", "q", 10.0, region="south")) == [("c1", "south1")]
    assert offers(acd.enqueue("c2", "q", 10.0, region="south")) == [("c2", "south2")]
    acd.agent_answered("c1", "south1", 10.0)
    acd.agent_answered("c2", "south2", 10.0)
    # No southern agent left idle: the third southern caller waits for one, 20 s at most.
    assert offers(acd.enqueue("c3", "q", 10.0, region="south")) == []
    assert offers(run_timers(acd, 29.9)) == []
    assert offers(run_timers(acd, 30.0)) == [("c3", "north1")]


def test_a_regional_agent_freed_within_the_wait_takes_the_call() -> None:
    acd = region_acd()
    login(acd, ["north1", "south1"], now=0.0)
    assert offers(acd.enqueue("c1", "q", 5.0, region="south")) == [("c1", "south1")]
    assert offers(acd.enqueue("c2", "q", 6.0, region="south")) == []
    assert offers(serve(acd, "c1", "south1", 12.0)) == [("c2", "south1")]


def test_no_wait_when_nobody_of_the_region_is_logged_in() -> None:
    acd = region_acd()
    login(acd, ["north1"], now=0.0)
    assert offers(acd.enqueue("c1", "q", 1.0, region="south")) == [("c1", "north1")]
    assert offers(acd.enqueue("c2", "q", 2.0, region="west")) == []  # north1 is busy
    # The last southern agent logging out releases the calls held for the south.
    acd2 = region_acd()
    login(acd2, ["north1", "south1"], now=0.0)
    assert offers(acd2.enqueue("c1", "q", 2.0, region="south")) == [("c1", "south1")]
    assert offers(acd2.enqueue("c2", "q", 3.0, region="south")) == []  # held for south
    acd2.agent_answered("c1", "south1", 3.0)
    assert offers(acd2.call_ended("c1", "south1", 4.0)) == [("c2", "south1")]
    assert offers(acd2.enqueue("c3", "q", 5.0, region="south")) == []
    acd2.agent_answered("c2", "south1", 5.0)
    acd2.call_ended("c2", "south1", 5.5)  # south1 takes c3 …
    acd2.agent_unavailable("south1", 6.0)  # … and logs out while it rings
    assert acd2.agent_state("north1").value == "ringing"


def test_region_wait_zero_is_plain_longest_idle() -> None:
    acd = region_acd(region_wait=0.0)
    login(acd, ["north1", "south1"], now=0.0)
    assert offers(acd.enqueue("c1", "q", 5.0, region="south")) == [("c1", "north1")]


# -- sticky agent -------------------------------------------------------------------------


def sticky_acd(sticky_wait: float = 30.0, region_wait: float = 0.0) -> Acd:
    queue = QueueSpec("q", sticky_wait=sticky_wait, region_wait=region_wait, max_wait=600)
    agents = [
        AgentSpec("a1", ("q",), region="north"),
        AgentSpec("a2", ("q",), region="south"),
        AgentSpec("a3", ("q",), region="south"),
    ]
    return Acd([queue], agents)


def test_a_returning_caller_is_offered_to_the_agent_who_served_them() -> None:
    acd = sticky_acd()
    login(acd, ["a1", "a2", "a3"])
    assert offers(acd.enqueue("c1", "q", 10.0, preferred="a3")) == [("c1", "a3")]


def test_the_call_waits_for_a_busy_preferred_agent_then_goes_to_anyone() -> None:
    acd = sticky_acd()
    login(acd, ["a1", "a2", "a3"])
    assert offers(acd.enqueue("c0", "q", 5.0)) == [("c0", "a1")]
    acd.agent_answered("c0", "a1", 5.0)
    enter = acd.enqueue("c1", "q", 10.0, preferred="a1")
    assert offers(enter) == []
    (event,) = [e for e in enter if isinstance(e, QueueEvent)]
    assert event.data["preferred"] == "a1"
    assert offers(run_timers(acd, 39.9)) == []
    assert offers(run_timers(acd, 40.0)) == [("c1", "a2")]


def test_the_preferred_agent_freed_in_time_takes_the_call_before_others() -> None:
    acd = sticky_acd()
    login(acd, ["a1", "a2", "a3"])
    assert offers(acd.enqueue("c0", "q", 5.0)) == [("c0", "a1")]
    acd.agent_answered("c0", "a1", 5.0)
    assert offers(acd.enqueue("c1", "q", 10.0, preferred="a1")) == []
    assert offers(acd.enqueue("c2", "q", 11.0)) == [("c2", "a2")]  # others go on
    assert offers(acd.call_ended("c0", "a1", 20.0)) == [("c1", "a1")]


def test_no_wait_for_a_preferred_agent_that_is_logged_out_or_elsewhere() -> None:
    acd = sticky_acd()
    login(acd, ["a2"])
    assert offers(acd.enqueue("c1", "q", 5.0, preferred="a1")) == [("c1", "a2")]
    assert offers(acd.enqueue("c2", "q", 5.0, preferred="nobody")) == []  # a2 busy; waits
    assert offers(acd.agent_available("a3", 6.0)) == [("c2", "a3")]
    # The preferred agent logging out during the wait releases the call at once.
    acd2 = sticky_acd()
    login(acd2, ["a1", "a2"])
    acd2.enqueue("c0", "q", 5.0)
    acd2.agent_answered("c0", "a1", 5.0)
    assert offers(acd2.enqueue("c1", "q", 6.0, preferred="a1")) == []
    acd2.agent_unavailable("a1", 7.0)  # talking: logged out when the call ends
    assert offers(acd2.call_ended("c0", "a1", 8.0)) == [("c1", "a2")]


def test_sticky_then_region_then_anyone() -> None:
    acd = sticky_acd(sticky_wait=10.0, region_wait=30.0)
    login(acd, ["a1", "a2", "a3"])
    for call, agent in (("x1", "a1"), ("x2", "a2"), ("x3", "a3")):
        acd.enqueue(call, "q", 5.0)
        acd.agent_answered(call, agent, 5.0)
    assert offers(acd.enqueue("c1", "q", 10.0, region="south", preferred="a3")) == []
    # At 15 s the sticky window is over: a southern agent may take it (a1 is northern).
    assert offers(acd.call_ended("x1", "a1", 15.0)) == []
    assert offers(run_timers(acd, 20.0)) == []  # sticky ended at 20: still only the south
    assert offers(acd.call_ended("x2", "a2", 25.0)) == [("c1", "a2")]


def test_region_wait_then_anyone_at_the_window_end() -> None:
    acd = sticky_acd(sticky_wait=10.0, region_wait=30.0)
    login(acd, ["a1", "a2"])
    for call, agent in (("x1", "a1"), ("x2", "a2")):
        acd.enqueue(call, "q", 1.0)
        acd.agent_answered(call, agent, 1.0)
    acd.enqueue("c1", "q", 10.0, region="south", preferred="a2")
    acd.call_ended("x1", "a1", 12.0)  # a1 idle, but northern
    assert offers(run_timers(acd, 39.0)) == []
    assert offers(run_timers(acd, 40.0)) == [("c1", "a1")]


def test_reload_keeps_strategy_indexes_consistent() -> None:
    queue = QueueSpec("q", strategy="skills", skills={"tax": 1})
    acd = Acd([queue], [AgentSpec("a", skills={"tax": 2}), AgentSpec("b", skills={"tax": 5})])
    now = login(acd, ["a", "b"])
    acd.replace_specs(
        [queue], [AgentSpec("a", skills={"tax": 9}), AgentSpec("b", skills={"tax": 5})]
    )
    run_timers(acd, now)
    assert offers(acd.enqueue("c1", "q", now)) == [("c1", "a")]  # a's new level counts
    acd.replace_specs([queue], [AgentSpec("b", skills={"tax": 5})])  # a removed while ringing
    run_timers(acd, now)
    acd.agent_rejected("c1", "a", now + 1, "busy")
    assert acd.agent_state("b").value == "ringing"


# -- limits -------------------------------------------------------------------------------


def test_a_full_queue_turns_the_next_caller_away() -> None:
    acd = Acd([QueueSpec("q", max_callers=2)], [AgentSpec("a", ("q",))])
    assert len([c for c in acd.enqueue("c1", "q", 1.0) if isinstance(c, QueueTimeout)]) == 0
    acd.enqueue("c2", "q", 2.0)
    out = acd.enqueue("c3", "q", 3.0)
    (timeout,) = [c for c in out if isinstance(c, QueueTimeout)]
    assert (timeout.call_id, timeout.reason, timeout.waited) == ("c3", "full", 0.0)
    (event,) = [c for c in out if isinstance(c, QueueEvent)]
    assert event.kind == "FULL" and event.data == {"waiting": 2}
    acd.abandon("c1", 4.0)
    assert [c for c in acd.enqueue("c3", "q", 5.0) if isinstance(c, QueueTimeout)] == []


def test_leave_when_empty_on_arrival_and_when_the_last_agent_logs_out() -> None:
    acd = Acd([QueueSpec("q", leave_when_empty=True)], [AgentSpec(a, ("q",)) for a in "ab"])
    (timeout,) = [c for c in acd.enqueue("c1", "q", 1.0) if isinstance(c, QueueTimeout)]
    assert timeout.reason == "empty"
    login(acd, ["a", "b"], now=2.0)
    assert offers(acd.enqueue("c2", "q", 5.0)) == [("c2", "a")]
    assert offers(acd.enqueue("c3", "q", 5.0)) == [("c3", "b")]
    acd.agent_answered("c2", "a", 5.0)
    acd.agent_answered("c3", "b", 5.0)
    assert offers(acd.enqueue("c4", "q", 6.0)) == []  # agents logged in, busy: it waits
    acd.agent_unavailable("a", 7.0)  # talking: logged out when its call ends
    out = acd.call_ended("c2", "a", 8.0)
    assert [c for c in out if isinstance(c, QueueTimeout)] == []  # b is logged in: c4 waits
    acd.agent_unavailable("b", 9.0)
    out = acd.call_ended("c3", "b", 10.0)  # the last agent leaves: c4 leaves too
    (timeout,) = [c for c in out if isinstance(c, QueueTimeout)]
    assert (timeout.call_id, timeout.reason, timeout.waited) == ("c4", "empty", 4.0)
    assert acd.queue_snapshot("q", 10.0).waiting == 0


# -- agent states: not ready, break, ready, lock ------------------------------------------


def states(out: list) -> list[tuple[str, str, str]]:
    return [
        (e.agent_id, e.data["to"], e.data.get("reason", ""))
        for e in out
        if isinstance(e, QueueEvent) and e.kind == "AGENT_STATE"
    ]


def test_a_busy_agent_gets_no_call_until_ready() -> None:
    acd = Acd([QueueSpec("q")], [AgentSpec(a, ("q",)) for a in "ab"])
    login(acd, ["a", "b"])
    assert states(acd.agent_not_ready("a", 3.0, "paperwork")) == [("a", "busy", "paperwork")]
    assert offers(acd.enqueue("c1", "q", 4.0)) == [("c1", "b")]
    assert offers(acd.enqueue("c2", "q", 4.0)) == []
    out = acd.agent_ready("a", 6.0)
    assert states(out)[0] == ("a", "idle", "") and offers(out) == [("c2", "a")]


def test_not_ready_asked_during_a_call_applies_when_it_ends() -> None:
    acd = Acd([QueueSpec("q", wrap_up=10)], [AgentSpec("a", ("q",))])
    login(acd, ["a"])
    acd.enqueue("c1", "q", 2.0)
    acd.agent_answered("c1", "a", 3.0)
    assert acd.agent_not_ready("a", 4.0, "training") == []
    assert acd.agent_state("a").value == "talking"
    acd.enqueue("c2", "q", 5.0)
    acd.call_ended("c1", "a", 6.0)
    assert acd.agent_state("a").value == "wrap_up"
    out = run_timers(acd, 16.0)  # wrap-up over: busy, not offered c2
    assert offers(out) == [] and acd.agent_state("a").value == "busy"
    assert states(out)[-1] == ("a", "busy", "training")
    # "ready" during a call withdraws a break asked earlier.
    acd.agent_ready("a", 17.0)  # takes c2
    acd.agent_answered("c2", "a", 17.0)
    acd.agent_break("a", 18.0)
    acd.agent_ready("a", 19.0)
    acd.call_ended("c2", "a", 20.0)
    assert acd.agent_ready("a", 21.0) is not None and acd.agent_state("a").value == "idle"


def test_ready_ends_wrap_up_early_and_the_agent_takes_the_next_call() -> None:
    acd = Acd([QueueSpec("q", wrap_up=30)], [AgentSpec("a", ("q",))])
    login(acd, ["a"])
    acd.enqueue("c1", "q", 2.0)
    acd.agent_answered("c1", "a", 3.0)
    acd.enqueue("c2", "q", 4.0)
    acd.call_ended("c1", "a", 5.0)
    assert offers(acd.agent_ready("a", 8.0)) == [("c2", "a")]
    acd.agent_answered("c2", "a", 9.0)
    assert states(run_timers(acd, 40.0)) == []  # the old wrap-up timer (at 35) is void
    assert acd.agent_state("a").value == "talking"


def test_an_agent_missing_calls_in_a_row_is_locked_until_unlocked() -> None:
    acd = Acd(
        [QueueSpec("q", ring_timeout=10, retry=0, lock_after=3)],
        [AgentSpec(a, ("q",)) for a in "ab"],
    )
    login(acd, ["a", "b"])
    acd.agent_not_ready("b", 2.0)  # only a takes calls
    acd.enqueue("c1", "q", 3.0)
    run_timers(acd, 13.0)  # miss 1, then c1 rings a again at once (retry 0)
    acd.agent_rejected("c1", "a", 14.0, "486")  # miss 2
    out = run_timers(acd, 24.1)  # miss 3: locked
    assert ("a", "locked", "missed 3 calls in a row") in states(out)
    assert acd.agent_state("a").value == "locked"
    with pytest.raises(IllegalTransition):
        acd.agent_ready("a", 25.0)  # only a supervisor unlocks
    assert offers(acd.agent_unlock("a", 26.0)) == [("c1", "a")]
    acd.agent_answered("c1", "a", 27.0)  # an answer resets the count
    acd.call_ended("c1", "a", 28.0)
    acd.enqueue("c2", "q", 29.0)
    run_timers(acd, 39.0)
    assert acd.agent_state("a").value == "ringing"  # one miss: not locked


def test_wrong_agent_requests_are_refused_with_a_clear_error() -> None:
    acd = Acd([QueueSpec("q")], [AgentSpec("a", ("q",))])
    with pytest.raises(IllegalTransition, match="logged_out"):
        acd.agent_not_ready("a", 1.0)  # not logged in
    with pytest.raises(UnknownAgent):
        acd.agent_break("zz", 1.0)
    login(acd, ["a"])
    with pytest.raises(IllegalTransition):
        acd.agent_unlock("a", 2.0)  # not locked


# -- live KPIs (SPEC RPT-3) -----------------------------------------------------------------


def test_queue_kpis_count_service_level_and_human_answer_rate() -> None:
    acd = Acd([QueueSpec("q", max_wait=100)], [AgentSpec("a", ("q",))])
    assert acd.queue_snapshot("q", 0.0).kpis.service_level is None  # nothing yet
    login(acd, ["a"])
    acd.enqueue("fast", "q", 10.0)  # rings a at once
    acd.agent_answered("fast", "a", 14.0)  # 4 s: in time
    acd.enqueue("slow", "q", 15.0)
    acd.enqueue("short", "q", 16.0)
    acd.enqueue("long", "q", 17.0)
    acd.abandon("short", 26.0)  # after 10 s: left out of the human answer rate
    acd.abandon("long", 47.0)  # after 30 s: counts as lost
    acd.call_ended("fast", "a", 40.0)  # slow rings a …
    acd.agent_answered("slow", "a", 41.0)  # … answered after 26 s: not in time
    acd.enqueue("late", "q", 50.0)
    run_timers(acd, 150.1)  # max wait: overflowed
    kpis = acd.queue_snapshot("q", 160.0).kpis
    assert (kpis.entered, kpis.answered, kpis.answered_in_time) == (5, 2, 1)
    assert (kpis.abandoned, kpis.abandoned_short, kpis.overflowed) == (2, 1, 1)
    assert kpis.service_level == pytest.approx(1 / 5)  # in time / left the queue
    assert kpis.human_answer_rate == pytest.approx(2 / 4)  # answered / (left - short)


def test_an_agent_busy_too_long_raises_one_alert() -> None:
    acd = Acd(
        [QueueSpec("q1", busy_alert=600), QueueSpec("q2", busy_alert=300)],
        [AgentSpec("a", ("q1", "q2"))],
    )
    login(acd, ["a"])
    acd.agent_not_ready("a", 10.0, "meeting")
    assert run_timers(acd, 309.9) == []
    (alert,) = run_timers(acd, 310.0)  # q2's limit, the smaller one
    assert alert.kind == "AGENT_ALERT" and alert.agent_id == "a"
    assert alert.data == {"state": "busy", "seconds": 300.0, "reason": "meeting"}
    assert run_timers(acd, 2000.0) == []  # once per stretch
    acd.agent_break("a", 2000.0)  # a new stretch in another state
    acd.agent_ready("a", 2100.0)  # ready before the limit: no alert
    assert run_timers(acd, 3000.0) == []
