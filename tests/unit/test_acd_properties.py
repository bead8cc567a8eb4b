"""Random sequences of ACD inputs (hypothesis state machine): no call is ever lost.

Every enqueued call ends exactly once — connected then ended, abandoned, or timed out — the
commands stay consistent with the agents' states, and no waiting call is left with an idle
agent of its queue that has not been offered it (the longest-idle dispatch invariant).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acd import (
    Acd,
    AcdError,
    AgentSpec,
    AgentState,
    CancelOffer,
    NotOffered,
    OfferCall,
    QueueEvent,
    QueueSpec,
    QueueTimeout,
)

QUEUES = (
    QueueSpec("q1", ring_timeout=5.0, max_wait=40.0, wrap_up=0.0),
    QueueSpec("q2", ring_timeout=7.0, max_wait=30.0, wrap_up=3.0),
)
AGENT_IDS = ("a1", "a2", "a3", "a4")
MEMBERSHIPS = st.sampled_from([(), ("q1",), ("q2",), ("q1", "q2"), ("q2", "q1")])


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.members = {"a1": ("q1",), "a2": ("q2",), "a3": ("q1", "q2"), "a4": ("q1",)}
        self.acd = Acd(QUEUES, [AgentSpec(a, q) for a, q in self.members.items()])
        self.now = 0.0
        self.next_id = 0
        self.queue_of: dict[str, str] = {}
        self.status: dict[str, str] = {}  # live calls: waiting | ringing | connected
        self.ringing: dict[str, str] = {}  # call -> agent being offered it
        self.connected: dict[str, str] = {}  # call -> agent talking
        self.tried: dict[str, set[str]] = {}
        self.outcomes: dict[str, list[str]] = {}

    # -- bookkeeping of what the engine returns ----------------------------------------------

    def absorb(self, out: list) -> None:
        for item in out:
            if isinstance(item, OfferCall):
                assert self.status.get(item.call_id) == "waiting", item
                assert item.agent_id not in self.ringing.values(), item
                assert item.agent_id not in self.connected.values(), item
                assert item.queue == self.queue_of[item.call_id]
                self.status[item.call_id] = "ringing"
                self.ringing[item.call_id] = item.agent_id
                self.tried[item.call_id].add(item.agent_id)
            elif isinstance(item, CancelOffer):
                assert self.ringing.pop(item.call_id) == item.agent_id, item
                self.status[item.call_id] = "waiting"
            elif isinstance(item, QueueTimeout):
                assert self.status.get(item.call_id) == "waiting", item
                self.finish(item.call_id, "timed_out")
            else:
                assert isinstance(item, QueueEvent)

    def finish(self, call_id: str, outcome: str) -> None:
        del self.status[call_id]
        self.outcomes[call_id].append(outcome)

    def advance_to(self, target: float) -> None:
        for _ in range(100_000):
            deadline = self.acd.get_timer()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.absorb(self.acd.handle_timer(self.now))
        else:
            raise AssertionError("timers never settle")
        self.now = max(self.now, target)

    def calls_in(self, status: str) -> list[str]:
        return sorted(c for c, s in self.status.items() if s == status)

    # -- rules -------------------------------------------------------------------------------

    @rule(queue=st.sampled_from(["q1", "q2"]), priority=st.integers(0, 2))
    def enqueue(self, queue: str, priority: int) -> None:
        self.next_id += 1
        call_id = f"c{self.next_id}"
        self.queue_of[call_id] = queue
        self.status[call_id] = "waiting"
        self.tried[call_id] = set()
        self.outcomes[call_id] = []
        self.absorb(self.acd.enqueue(call_id, queue, self.now, priority))

    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def available(self, agent_id: str) -> None:
        self.absorb(self.acd.agent_available(agent_id, self.now))

    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def unavailable(self, agent_id: str) -> None:
        self.absorb(self.acd.agent_unavailable(agent_id, self.now))

    @rule(dt=st.floats(0.0, 20.0))
    def advance(self, dt: float) -> None:
        self.advance_to(self.now + dt)

    @precondition(lambda self: self.calls_in("waiting") or self.calls_in("ringing"))
    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("waiting") + self.calls_in("ringing")))
        was_ringing = self.ringing.get(call_id)
        out = self.acd.abandon(call_id, self.now)
        if was_ringing is not None:
            assert CancelOffer(call_id, was_ringing, "abandoned") in out
        self.absorb(out)
        self.finish(call_id, "abandoned")

    @precondition(lambda self: self.calls_in("ringing"))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("ringing")))
        agent_id = self.ringing.pop(call_id)
        self.absorb(self.acd.agent_answered(call_id, agent_id, self.now))
        self.status[call_id] = "connected"
        self.connected[call_id] = agent_id

    @precondition(lambda self: self.calls_in("ringing"))
    @rule(data=st.data(), reason=st.sampled_from(["486", "603", "unreachable"]))
    def reject(self, data: st.DataObject, reason: str) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("ringing")))
        agent_id = self.ringing.pop(call_id)
        self.status[call_id] = "waiting"
        self.absorb(self.acd.agent_rejected(call_id, agent_id, self.now, reason))

    @precondition(lambda self: self.calls_in("connected"))
    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("connected")))
        agent_id = self.connected.pop(call_id)
        self.finish(call_id, "ended")
        self.absorb(self.acd.call_ended(call_id, agent_id, self.now))

    @precondition(lambda self: self.calls_in("ringing") or self.calls_in("waiting"))
    @rule(data=st.data(), agent_id=st.sampled_from(AGENT_IDS))
    def stale_answer(self, data: st.DataObject, agent_id: str) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("ringing") + self.calls_in("waiting")))
        if self.ringing.get(call_id) == agent_id:
            return
        try:
            self.acd.agent_answered(call_id, agent_id, self.now)
        except NotOffered:
            assert call_id in self.ringing
        except AcdError:
            assert self.status[call_id] == "waiting"
        else:
            raise AssertionError("a stale answer was accepted")

    @rule(a1=MEMBERSHIPS, a2=MEMBERSHIPS, a3=MEMBERSHIPS, a4=MEMBERSHIPS)
    def reload(self, a1: tuple, a2: tuple, a3: tuple, a4: tuple) -> None:
        self.members = {"a1": a1, "a2": a2, "a3": a3, "a4": a4}
        self.acd.replace_specs(QUEUES, [AgentSpec(a, q) for a, q in self.members.items()])
        # the B2BUA re-arms its timer after a reload: the reload's effects are due now
        assert self.acd.get_timer() is not None
        self.absorb(self.acd.handle_timer(self.now))

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def agent_states_match_commands(self) -> None:
        ringing_agents = set(self.ringing.values())
        talking_agents = set(self.connected.values())
        for agent_id in AGENT_IDS:
            state = self.acd.agent_state(agent_id)
            assert (state is AgentState.RINGING) == (agent_id in ringing_agents), agent_id
            assert (state is AgentState.TALKING) == (agent_id in talking_agents), agent_id

    @invariant()
    def no_waiting_call_has_an_untried_idle_agent(self) -> None:
        idle = [a for a in AGENT_IDS if self.acd.agent_state(a) is AgentState.IDLE]
        for call_id in self.calls_in("waiting"):
            queue = self.queue_of[call_id]
            for agent_id in idle:
                if queue in self.members[agent_id]:
                    assert agent_id in self.tried[call_id], (call_id, agent_id)

    @invariant()
    def snapshots_count_the_live_calls(self) -> None:
        for queue in ("q1", "q2"):
            snap = self.acd.queue_snapshot(queue, self.now)
            in_queue = [
                c for c, s in self.status.items() if s != "connected" and self.queue_of[c] == queue
            ]
            assert snap.waiting == len(in_queue)
            assert snap.ringing == sum(1 for c in in_queue if c in self.ringing)
            assert sum(snap.agents.values()) == sum(1 for m in self.members.values() if queue in m)

    @invariant()
    def no_timer_is_overdue(self) -> None:
        deadline = self.acd.get_timer()
        assert deadline is None or deadline > self.now

    def teardown(self) -> None:
        for call_id in self.calls_in("connected"):
            agent_id = self.connected.pop(call_id)
            self.finish(call_id, "ended")
            self.absorb(self.acd.call_ended(call_id, agent_id, self.now))
        self.advance_to(self.now + 1000.0)
        assert self.status == {}, "calls still in the ACD after every max wait passed"
        for call_id, outcomes in self.outcomes.items():
            assert len(outcomes) == 1, (call_id, outcomes)


AcdMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_acd_never_loses_a_call = AcdMachine.TestCase
