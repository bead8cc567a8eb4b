"""Micro-benchmarks of the ACD engine (pytest-benchmark, STYLE §7).

Run: ``python -m pytest bench/bench_acd.py`` (add ``--benchmark-json=FILE`` for JSON), or
``python bench/bench_acd.py``.

The workloads are deterministic (no randomness): 10,000 agents in one queue, logged in one
millisecond apart so the longest-idle order is total (queue `retry` at its default, 5 s). `test_reference_linear_scan` measures, in
the same run, what picking the longest-idle agent costs when every idle agent is scanned, the
approach the engine's per-queue sorted index avoids.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from acd import STRATEGIES, Acd, AgentSpec, OfferCall, QueueSpec  # noqa: E402

N = 10_000


def agents_engine(n_agents: int = N, logged_in: bool = True) -> Acd:
    acd = Acd(
        [QueueSpec("general", ring_timeout=15.0, max_wait=300.0)],
        [AgentSpec(f"{1000 + i}", ("general",)) for i in range(n_agents)],
    )
    if logged_in:
        for i in range(n_agents):
            acd.agent_available(f"{1000 + i}", i / 1000)
    return acd


def test_offer_longest_idle_among_10000_idle_agents(benchmark) -> None:
    """Enqueue a call (offered to the longest-idle of 10,000) and abandon it while ringing
    (the agent keeps its place, so every round picks among all 10,000 again)."""
    acd = agents_engine()
    ids = (f"c{i}" for i in itertools.count())
    now = 100.0

    def cycle() -> None:
        call_id = next(ids)
        out = acd.enqueue(call_id, "general", now)
        assert isinstance(out[-1], OfferCall)
        acd.abandon(call_id, now)

    benchmark(cycle)
    assert acd.queue_snapshot("general", now).agents["idle"] == N


def call_cycle(acd: Acd, queue: str) -> Callable[[], None]:
    """One call per run, a second apart: enqueued (offered at once), answered, ended."""
    ids = (f"c{i}" for i in itertools.count())
    clock = itertools.count(100)

    def cycle() -> None:
        call_id = next(ids)
        now = float(next(clock))
        offer = acd.enqueue(call_id, queue, now)[-1]
        assert isinstance(offer, OfferCall)
        acd.agent_answered(call_id, offer.agent_id, now)
        acd.call_ended(call_id, offer.agent_id, now + 0.5)

    return cycle


def test_full_call_cycle_among_10000_agents(benchmark) -> None:
    """Enqueue, answer, end: the agent goes to the back of the line, the next call goes to the
    next longest-idle agent (10,000 idle, wrap-up 0)."""
    benchmark(call_cycle(agents_engine(), "general"))


def test_enqueue_and_abandon_with_10000_waiting_calls(benchmark) -> None:
    """Queue operations alone: no agent logged in, 10,000 calls waiting; a new call joins the
    tail and leaves (abandon)."""
    acd = agents_engine(n_agents=10, logged_in=False)
    for i in range(N):
        acd.enqueue(f"w{i}", "general", i / 1000, priority=i % 3)
    ids = (f"c{i}" for i in itertools.count())

    def cycle() -> None:
        call_id = next(ids)
        acd.enqueue(call_id, "general", 50.0, priority=1)
        acd.abandon(call_id, 50.0)

    benchmark(cycle)
    assert acd.queue_snapshot("general", 50.0).waiting == N


def test_agent_takes_head_call_among_10000_waiting(benchmark) -> None:
    """An agent logs in and is offered the head of 10,000 waiting calls, then logs out while
    ringing (the call goes back to its place at the head)."""
    acd = agents_engine(n_agents=1, logged_in=False)
    for i in range(N):
        acd.enqueue(f"w{i}", "general", i / 1000)

    def cycle() -> None:
        out = acd.agent_available("1000", 20.0)
        assert isinstance(out[-1], OfferCall) and out[-1].call_id == "w0"
        acd.agent_unavailable("1000", 20.0)

    benchmark(cycle)


def test_reject_then_next_offer_among_10000_idle_agents(benchmark) -> None:
    """A call is rejected by the longest-idle of 10,000 agents (which goes to the back of the
    line and into the call's retry window, with a retry timer set) and is offered to the next
    one, then abandoned while ringing: the failure path of `retry`."""
    acd = agents_engine()
    ids = (f"c{i}" for i in itertools.count())
    clock = itertools.count(100)

    def cycle() -> None:
        call_id = next(ids)
        now = float(next(clock))
        first = acd.enqueue(call_id, "general", now)[-1]
        assert isinstance(first, OfferCall)
        second = acd.agent_rejected(call_id, first.agent_id, now, "486")[-1]
        assert isinstance(second, OfferCall) and second.agent_id != first.agent_id
        acd.abandon(call_id, now)

    benchmark(cycle)


def test_group_pickup_among_10000_agents(benchmark) -> None:
    """Group pickup in a queue of 10,000 idle agents: a call rings the longest-idle agent,
    the agent idle the shortest finds it (`ringing_for`, a scan of its queue's members) and
    picks it up (the ring is withdrawn), then ends it and is idle again."""
    acd = agents_engine()
    picker = f"{1000 + N - 1}"
    ids = (f"c{i}" for i in itertools.count())
    clock = itertools.count(100)

    def cycle() -> None:
        call_id = next(ids)
        now = float(next(clock))
        acd.enqueue(call_id, "general", now)
        assert acd.ringing_for(picker) == call_id
        acd.picked_up(call_id, picker, now)
        acd.call_ended(call_id, picker, now + 0.5)

    benchmark(cycle)


def test_reference_linear_scan_of_10000_idle_agents(benchmark) -> None:
    """Reference: pick the longest-idle agent by scanning a dict of 10,000 idle agents."""
    idle_since = {f"{1000 + i}": i / 1000 for i in range(N)}

    def pick() -> str:
        return min(idle_since.items(), key=lambda item: (item[1], item[0]))[0]

    assert benchmark(pick) == "1000"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", *sys.argv[1:]]))


STRATEGY_SKILLS = {"tax": 2}


def strategy_engine(strategy: str, n_agents: int, waiting: int) -> Acd:
    """`n_agents` agents (skill levels 2–10 for `skills`), all idle, and `waiting` calls of
    another queue the agents do not serve (so they sit in the engine while calls are picked)."""
    skills = STRATEGY_SKILLS if strategy == "skills" else {}
    acd = Acd(
        [QueueSpec("q", strategy=strategy, skills=skills), QueueSpec("other")],
        [
            AgentSpec(f"{1000 + i}", ("q",), skills={"tax": 2 + i % 9} if skills else {})
            for i in range(n_agents)
        ],
        seed=1,
    )
    for i in range(n_agents):
        acd.agent_available(f"{1000 + i}", i / 1000)
    for i in range(waiting):
        acd.enqueue(f"w{i}", "other", 50.0)
    return acd


@pytest.mark.parametrize("n_agents", [10, 1_000, 10_000])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_agent_pick_per_strategy(benchmark, strategy: str, n_agents: int) -> None:
    """Agent-pick latency (issue 10): a call is enqueued and offered to the agent the
    strategy picks, answered and ended (the agent is idle again, re-indexed), with 1,000
    other calls waiting in the engine. With `ring_all` the call rings every idle agent and
    the answer withdraws the other rings, so a cycle grows with the agents."""
    benchmark(call_cycle(strategy_engine(strategy, n_agents, waiting=1_000), "q"))
