"""Random sequences of ACD inputs (hypothesis state machine): no call is ever lost.

Every enqueued call ends exactly once — connected then ended, abandoned, or timed out — the
commands stay consistent with the agents' states, and no open call (waiting, or a ring-all
call ringing) is left with an idle agent of its queue that is eligible for it (the dispatch
invariant; eligible = not failed by that agent within the queue's `retry` seconds, and the
call's own agent for a call for one named agent). An agent is offered a call inside its
retry window only when it has just become available, and never in the same command list as its
failure. No agent is ever offered two calls; a call answered is answered by exactly one agent,
and every other ring of it is withdrawn in the same list. q1 has `retry` = 0, q2 a window of
4 s. Agents also ask for not ready, breaks, ready, lock and unlock at random moments (a CLI and
a phone at once are two such inputs in some order); q2 locks an agent after 2 misses. Calls
for one named agent (`enqueue(agent=…)`) are offered to that agent only, and never wait for
an agent that is logged out or no longer serves their queue.

Agents also log out and in with their phones registered (a logout outlasts registrations and
waits for the end of a call), start and end direct calls outside the queues, pick up calls
ringing at others (directed, and by group through `ringing_for`), and hold and resume their
queue calls: no agent is ever offered two calls or talks on two, no call is lost, an agent on
a direct call, on hold or logged out by its own choice is never offered a queue call, and a
picked-up call's rings are all withdrawn in the same list. q2 alerts on a hold of 6 s, and only
about a call still held by the agent alerting.

Logins name random subsets of the queues (some refused: none, or a queue the agent does not
serve), from any state: an agent is offered calls of the queues it is logged in to only (its
snapshot's `queues`), a call for one named agent waits only while that agent is logged in to
its queue, and reloads keep the chosen queues the agent may still serve (logging it out when
none is left). With `leave_when_empty` (one more machine) no call waits unrung in a queue no
agent is logged in to.

The model drives the engine like the B2BUA's loop: after each input it runs the timers that are
due at once (`get_timer() <= now`) before time moves on. Between the two, a waiting call may
have an eligible idle agent only if such a timer is due.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acd import (
    Acd,
    AcdError,
    AgentSpec,
    AgentState,
    CancelOffer,
    CannotServe,
    NotInQueue,
    NotOffered,
    OfferCall,
    QueueEvent,
    QueueSpec,
    QueueTimeout,
)

QUEUES = (
    QueueSpec("q1", ring_timeout=5.0, max_wait=40.0, wrap_up=0.0, retry=0.0),
    QueueSpec(
        "q2", ring_timeout=7.0, max_wait=30.0, wrap_up=3.0, retry=4.0, lock_after=2, hold_alert=6.0
    ),
)
RETRY = {spec.name: spec.retry for spec in QUEUES}
# AGENT_STATE events after which an agent has *become available* (may take a call in a window)
BECAME_AVAILABLE = {
    "available", "hangup_no_wrap_up", "wrap_up_end", "ready", "unlock", "login", "direct_end",
}  # fmt: skip
#: Where an agent may start a direct call; a pickup, the same but locked.
OFF_CALL = {AgentState.IDLE, AgentState.WRAP_UP, AgentState.BUSY, AgentState.BREAK}
DIRECT_FROM = OFF_CALL | {AgentState.LOCKED}
AGENT_IDS = ("a1", "a2", "a3", "a4")
MEMBERSHIPS = st.sampled_from([(), ("q1",), ("q2",), ("q1", "q2"), ("q2", "q1")])


class AcdMachine(RuleBasedStateMachine):
    queues = QUEUES  # longest idle; the subclasses below run the other strategies

    def __init__(self) -> None:
        super().__init__()
        self.members = {"a1": ("q1",), "a2": ("q2",), "a3": ("q1", "q2"), "a4": ("q1",)}
        self.acd = Acd(self.queues, [AgentSpec(a, q) for a, q in self.members.items()], seed=3)
        self.now = 0.0
        self.next_id = 0
        self.queue_of: dict[str, str] = {}
        self.status: dict[str, str] = {}  # live calls: waiting | ringing | connected
        self.ringing: dict[str, set[str]] = {}  # call -> agents being offered it
        self.connected: dict[str, str] = {}  # call -> agent talking
        self.tried: dict[str, dict[str, float]] = {}  # call -> agent -> end of retry window
        self.outcomes: dict[str, list[str]] = {}
        self.directed: dict[str, str] = {}  # call for one named agent -> that agent
        self.strategy = {spec.name: spec.strategy for spec in self.queues}
        self.leave_when_empty = {spec.name: spec.leave_when_empty for spec in self.queues}
        self.registered: set[str] = set()  # agents whose phone is registered
        self.signed_out: set[str] = set()  # agents that logged themselves out
        self.direct: dict[str, str] = {}  # agent -> its direct call
        self.held: set[str] = set()  # connected calls on hold
        # agent -> the queues its last login named (None: all it serves)
        self.chosen: dict[str, frozenset[str] | None] = dict.fromkeys(AGENT_IDS)

    def working(self, agent_id: str) -> tuple[str, ...]:
        """The queues the agent is logged in to (or, logged out, would log in to)."""
        chosen = self.chosen[agent_id]
        members = self.members[agent_id]
        return members if chosen is None else tuple(q for q in members if q in chosen)

    def logged_in_to(self, agent_id: str, queue: str) -> bool:
        state = self.acd.agent_state(agent_id)
        return state is not AgentState.LOGGED_OUT and queue in self.working(agent_id)

    def ring_all(self, call_id: str) -> bool:
        return self.strategy[self.queue_of[call_id]] == "ring_all" and (
            call_id not in self.directed
        )

    def ringing_agents(self) -> list[str]:
        return [agent for agents in self.ringing.values() for agent in agents]

    # -- bookkeeping of what the engine returns ----------------------------------------------

    def fail(self, call_id: str, agent_id: str) -> None:
        """The offer of `call_id` to `agent_id` failed now (no answer or reject)."""
        self.tried[call_id][agent_id] = self.now + RETRY[self.queue_of[call_id]]

    def absorb(self, out: list, failed: tuple[str, str] | None = None) -> None:
        """Check and apply one returned command list; `failed` is the offer the input itself
        failed (a reject)."""
        failed_here = set() if failed is None else {failed}
        available_here: set[str] = set()
        for item in out:
            if isinstance(item, OfferCall):
                status = self.status.get(item.call_id)
                # one offer at a time, except a ring-all call ringing several agents
                assert status == "waiting" or (
                    status == "ringing" and self.ring_all(item.call_id)
                ), item
                assert item.agent_id not in self.ringing_agents(), ("offered two calls", item)
                assert item.agent_id not in self.connected.values(), item  # talking or held
                assert item.agent_id not in self.direct, ("offered on a direct call", item)
                assert item.agent_id not in self.signed_out, ("offered while logged out", item)
                assert item.queue == self.queue_of[item.call_id]
                assert item.queue in self.working(item.agent_id), ("not logged in to it", item)
                assert item.call_id not in self.directed or (
                    self.directed[item.call_id] == item.agent_id
                ), ("a call for one agent offered to another", item)
                assert (item.call_id, item.agent_id) not in failed_here, item
                until = self.tried[item.call_id].get(item.agent_id)
                if until is not None and until > self.now:
                    assert item.agent_id in available_here, ("offered inside window", item)
                self.status[item.call_id] = "ringing"
                self.ringing.setdefault(item.call_id, set()).add(item.agent_id)
            elif isinstance(item, CancelOffer):
                agents = self.ringing[item.call_id]
                assert item.agent_id in agents, item
                agents.remove(item.agent_id)
                if item.reason in ("answered_elsewhere", "picked_up"):
                    assert self.status[item.call_id] == "connected", item
                    assert self.connected[item.call_id] != item.agent_id, item
                elif not agents:
                    self.status[item.call_id] = "waiting"
                if not agents:
                    del self.ringing[item.call_id]
                if item.reason == "ring_timeout":
                    self.fail(item.call_id, item.agent_id)
                    failed_here.add((item.call_id, item.agent_id))
            elif isinstance(item, QueueTimeout):
                assert self.status.get(item.call_id) == "waiting", item
                if item.reason == "agent_unavailable":
                    agent_id = self.directed[item.call_id]
                    assert not self.logged_in_to(agent_id, self.queue_of[item.call_id]), item
                elif item.reason == "empty":
                    assert self.leave_when_empty[item.queue], item
                self.finish(item.call_id, "timed_out")
            else:
                assert isinstance(item, QueueEvent)
                if item.kind == "AGENT_STATE":
                    assert item.agent_id is not None
                    if item.data["event"] in BECAME_AVAILABLE:
                        available_here.add(item.agent_id)
                    if item.data["to"] == "logged_out" and item.agent_id in self.signed_out:
                        self.chosen[item.agent_id] = None  # its own logout ends the choice
                elif item.kind == "AGENT_ALERT" and item.data["state"] == "hold":
                    assert item.call_id in self.held, item  # still held, by that agent
                    assert self.connected[item.call_id] == item.agent_id, item
                    assert self.queue_of[item.call_id] == item.queue == "q2", item

    def check_step(self) -> None:
        """After one input: a waiting call may have an eligible idle agent only while a timer
        is due at once (retry = 0 after a failure in this step)."""
        if self.eligible_idle_pairs():
            deadline = self.acd.get_timer()
            assert deadline is not None and deadline <= self.now, self.eligible_idle_pairs()

    def eligible_idle_pairs(self) -> list[tuple[str, str]]:
        """(open call, idle agent of its queue eligible for it now) pairs; open: waiting, or a
        ring-all call ringing."""
        idle = [a for a in AGENT_IDS if self.acd.agent_state(a) is AgentState.IDLE]
        pairs = []
        ringing_all = [c for c in self.calls_in("ringing") if self.ring_all(c)]
        for call_id in self.calls_in("waiting") + ringing_all:
            queue = self.queue_of[call_id]
            for agent_id in idle:
                if self.directed.get(call_id, agent_id) != agent_id:
                    continue
                if queue in self.working(agent_id):
                    if self.tried[call_id].get(agent_id, -1.0) <= self.now:
                        pairs.append((call_id, agent_id))
        return pairs

    def settle(self) -> None:
        """Run the timers due now, as the owner does after every input."""
        self.advance_to(self.now)

    def finish(self, call_id: str, outcome: str) -> None:
        del self.status[call_id]
        self.outcomes[call_id].append(outcome)
        self.directed.pop(call_id, None)

    def advance_to(self, target: float) -> None:
        for _ in range(100_000):
            deadline = self.acd.get_timer()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.absorb(self.acd.handle_timer(self.now))
            self.check_step()
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
        self.tried[call_id] = {}
        self.outcomes[call_id] = []
        self.absorb(self.acd.enqueue(call_id, queue, self.now, priority))
        self.check_step()
        self.settle()

    @rule(queue=st.sampled_from(["q1", "q2"]), agent_id=st.sampled_from(AGENT_IDS))
    def enqueue_for_agent(self, queue: str, agent_id: str) -> None:
        """A transfer or directed call to one agent: refused at once when it is logged out."""
        self.next_id += 1
        call_id = f"c{self.next_id}"
        if queue not in self.members[agent_id]:
            try:
                self.acd.enqueue(call_id, queue, self.now, agent=agent_id)
            except NotInQueue as exc:
                assert (exc.agent_id, exc.queue) == (agent_id, queue)
            else:
                raise AssertionError("a call for an agent not in the queue was accepted")
            assert self.acd.queue_snapshot(queue, self.now).waiting == len(
                [
                    c
                    for c, s in self.status.items()
                    if s != "connected" and self.queue_of[c] == queue
                ]
            )
            return
        logged_out = not self.logged_in_to(agent_id, queue)
        self.queue_of[call_id] = queue
        self.status[call_id] = "waiting"
        self.tried[call_id] = {}
        self.outcomes[call_id] = []
        self.directed[call_id] = agent_id
        out = self.acd.enqueue(call_id, queue, self.now, agent=agent_id)
        refused = [c for c in out if isinstance(c, QueueTimeout)]
        assert bool(refused) == logged_out, out
        if logged_out:
            assert refused[0].reason == "agent_unavailable"
        self.absorb(out)
        self.check_step()
        self.settle()

    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def available(self, agent_id: str) -> None:
        self.registered.add(agent_id)
        self.absorb(self.acd.agent_available(agent_id, self.now))
        self.check_step()
        self.settle()

    @rule()
    def shift_starts(self) -> None:
        """Every agent's phone registers, one input each (several idle agents at once)."""
        for agent_id in AGENT_IDS:
            self.available(agent_id)

    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def unavailable(self, agent_id: str) -> None:
        self.registered.discard(agent_id)
        self.absorb(self.acd.agent_unavailable(agent_id, self.now))
        self.check_step()
        self.settle()

    @rule(
        agent_id=st.sampled_from(AGENT_IDS),
        action=st.sampled_from(["not_ready", "break", "ready", "lock", "unlock"]),
    )
    def agent_request(self, agent_id: str, action: str) -> None:
        """The agent (CLI, API) or a supervisor asks for a state; a refusal changes nothing."""
        before = self.acd.agent_state(agent_id)
        try:
            out = getattr(self.acd, f"agent_{action}")(agent_id, self.now)
        except AcdError:
            assert self.acd.agent_state(agent_id) is before
            return
        self.absorb(out)
        self.check_step()
        self.settle()

    @rule(agent_id=st.sampled_from(AGENT_IDS), action=st.sampled_from(["login", "logout"]))
    def login_or_logout(self, agent_id: str, action: str) -> None:
        """The agent logs in or out with its phone registered (feature code, CLI)."""
        before = self.acd.agent_state(agent_id)
        refused = agent_id not in self.registered or (
            action == "logout" and agent_id in self.signed_out
        )
        try:
            out = getattr(self.acd, f"agent_{action}")(agent_id, self.now)
        except AcdError:
            assert refused, (agent_id, action, before)
            assert self.acd.agent_state(agent_id) is before
            return
        assert not refused, (agent_id, action, before)
        if action == "logout":
            self.signed_out.add(agent_id)
        else:
            self.signed_out.discard(agent_id)
            self.chosen[agent_id] = None
        self.absorb(out)
        self.check_step()
        self.settle()

    @rule(
        agent_id=st.sampled_from(AGENT_IDS),
        queues=st.lists(st.sampled_from(["q1", "q2", "q3"]), max_size=3),
    )
    def login_to_queues(self, agent_id: str, queues: list[str]) -> None:
        """The agent logs in to some queues (`--queues`), from any state; refused when its
        phone is not registered, or the list is empty or names a queue it does not serve
        (q3 exists nowhere)."""
        before = self.acd.agent_state(agent_id)
        snap = self.acd.agent_snapshot(agent_id)
        unregistered = agent_id not in self.registered
        wrong = not queues or not set(queues) <= set(self.members[agent_id])
        try:
            out = self.acd.agent_login(agent_id, self.now, queues=queues)
        except CannotServe as exc:
            assert wrong and not unregistered, (agent_id, queues)
            assert set(exc.queues) == set(queues) - set(self.members[agent_id])
            assert self.acd.agent_state(agent_id) is before
            assert self.acd.agent_snapshot(agent_id) == snap
            return
        except AcdError:
            assert unregistered, (agent_id, queues)
            assert self.acd.agent_state(agent_id) is before
            return
        assert not wrong and not unregistered, (agent_id, queues)
        self.signed_out.discard(agent_id)
        self.chosen[agent_id] = frozenset(queues)
        self.absorb(out)
        self.check_step()
        self.settle()

    def attempt(
        self, agent_id: str, allowed: set[AgentState], call: Callable[[], list]
    ) -> list | None:
        """Run `call`, an input about `agent_id` that the engine takes from the states in
        `allowed` only: its command list, or None when it was refused (nothing changed)."""
        before = self.acd.agent_state(agent_id)
        try:
            out = call()
        except AcdError:
            assert before not in allowed, before
            assert self.acd.agent_state(agent_id) is before
            return None
        assert before in allowed, before
        return out

    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def direct_call_starts(self, agent_id: str) -> None:
        """An internal or outbound call of the agent: refused while it rings or is on one."""
        self.next_id += 1
        call_id = f"d{self.next_id}"
        start = self.acd.direct_call_started
        out = self.attempt(agent_id, DIRECT_FROM, lambda: start(agent_id, call_id, self.now))
        if out is None:
            return
        assert agent_id not in self.direct and agent_id not in self.signed_out, agent_id
        self.direct[agent_id] = call_id
        self.absorb(out)
        self.check_step()
        self.settle()

    @precondition(lambda self: self.direct)
    @rule(data=st.data())
    def direct_call_ends(self, data: st.DataObject) -> None:
        agent_id = data.draw(st.sampled_from(sorted(self.direct)))
        call_id = self.direct.pop(agent_id)
        self.absorb(self.acd.direct_call_ended(agent_id, call_id, self.now))
        assert self.acd.agent_state(agent_id) is not AgentState.DIRECT_CALL
        self.check_step()
        self.settle()

    @precondition(lambda self: self.calls_in("ringing"))
    @rule(data=st.data(), agent_id=st.sampled_from(AGENT_IDS))
    def pickup(self, data: st.DataObject, agent_id: str) -> None:
        """Directed pickup of a call ringing at some agent, by any agent."""
        call_id = data.draw(st.sampled_from(self.calls_in("ringing")))
        self.pick_up(call_id, agent_id)

    @precondition(lambda self: self.calls_in("ringing"))
    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def group_pickup(self, agent_id: str) -> None:
        """Group pickup: the call ringing longest at an agent sharing a queue with this one."""
        call_id = self.acd.ringing_for(agent_id)
        group = {a for a in AGENT_IDS if a != agent_id and self.shares_queue(a, agent_id)}
        rung = {a for c in self.calls_in("ringing") for a in self.ringing[c]} & group
        assert (call_id is None) == (not rung), (call_id, rung)
        if call_id is not None:
            assert self.ringing[call_id] & group, call_id
            self.pick_up(call_id, agent_id)

    def shares_queue(self, a: str, b: str) -> bool:
        return bool(set(self.members[a]) & set(self.members[b]))

    def pick_up(self, call_id: str, agent_id: str) -> None:
        was_ringing = sorted(self.ringing[call_id])
        for ringing_agent in was_ringing:
            assert self.acd.ringing_at(ringing_agent) == call_id
        pick = self.acd.picked_up
        out = self.attempt(agent_id, OFF_CALL, lambda: pick(call_id, agent_id, self.now))
        if out is None:
            return
        assert agent_id not in self.signed_out, agent_id
        self.status[call_id] = "connected"
        self.connected[call_id] = agent_id
        picked = [c for c in out if isinstance(c, CancelOffer) and c.reason == "picked_up"]
        assert sorted(c.agent_id for c in picked) == was_ringing, out
        self.absorb(out)
        assert not self.ringing.get(call_id), self.ringing.get(call_id)
        self.ringing.pop(call_id, None)
        self.check_step()
        self.settle()

    @precondition(lambda self: self.calls_in("connected"))
    @rule(data=st.data())
    def hold_or_resume(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("connected")))
        agent_id = self.connected[call_id]
        if call_id in self.held:
            self.held.remove(call_id)
            out = self.acd.agent_resume(agent_id, call_id, self.now)
        else:
            self.held.add(call_id)
            out = self.acd.agent_hold(agent_id, call_id, self.now)
        self.absorb(out)
        self.check_step()
        self.settle()

    @rule(dt=st.floats(0.0, 20.0))
    def advance(self, dt: float) -> None:
        self.advance_to(self.now + dt)

    @precondition(lambda self: self.calls_in("waiting") or self.calls_in("ringing"))
    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("waiting") + self.calls_in("ringing")))
        was_ringing = sorted(self.ringing.get(call_id, ()))
        out = self.acd.abandon(call_id, self.now)
        cancels = [c for c in out if isinstance(c, CancelOffer) and c.call_id == call_id]
        assert sorted(c.agent_id for c in cancels) == was_ringing
        assert all(c.reason == "abandoned" for c in cancels)
        self.absorb(out)
        self.finish(call_id, "abandoned")
        self.check_step()
        self.settle()

    @precondition(lambda self: self.calls_in("ringing"))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        self.answer_one_of(data, self.calls_in("ringing"))

    @precondition(lambda self: any(len(agents) > 1 for agents in self.ringing.values()))
    @rule(data=st.data())
    def answer_while_others_ring(self, data: st.DataObject) -> None:
        """An agent answers a ring-all call that rings others too (made likelier)."""
        self.answer_one_of(data, sorted(c for c, a in self.ringing.items() if len(a) > 1))

    def answer_one_of(self, data: st.DataObject, calls: list[str]) -> None:
        call_id = data.draw(st.sampled_from(calls))
        agent_id = data.draw(st.sampled_from(sorted(self.ringing[call_id])))
        self.ringing[call_id].remove(agent_id)
        self.status[call_id] = "connected"
        self.connected[call_id] = agent_id
        self.absorb(self.acd.agent_answered(call_id, agent_id, self.now))
        # answered by exactly one agent: every other ring was withdrawn in the same list
        assert not self.ringing.get(call_id), self.ringing.get(call_id)
        self.ringing.pop(call_id, None)
        self.check_step()
        self.settle()

    @precondition(lambda self: self.calls_in("ringing"))
    @rule(data=st.data(), reason=st.sampled_from(["486", "603", "unreachable"]))
    def reject(self, data: st.DataObject, reason: str) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("ringing")))
        agent_id = data.draw(st.sampled_from(sorted(self.ringing[call_id])))
        self.ringing[call_id].remove(agent_id)
        if not self.ringing[call_id]:  # back in the queue only when its last ring failed
            del self.ringing[call_id]
            self.status[call_id] = "waiting"
        self.fail(call_id, agent_id)
        out = self.acd.agent_rejected(call_id, agent_id, self.now, reason)
        self.absorb(out, failed=(call_id, agent_id))
        self.check_step()
        self.settle()

    @precondition(lambda self: self.calls_in("connected"))
    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("connected")))
        agent_id = self.connected.pop(call_id)
        self.held.discard(call_id)  # a held call may end
        self.finish(call_id, "ended")
        self.absorb(self.acd.call_ended(call_id, agent_id, self.now))
        self.check_step()
        self.settle()

    @precondition(lambda self: self.calls_in("ringing") or self.calls_in("waiting"))
    @rule(data=st.data(), agent_id=st.sampled_from(AGENT_IDS))
    def stale_answer(self, data: st.DataObject, agent_id: str) -> None:
        call_id = data.draw(st.sampled_from(self.calls_in("ringing") + self.calls_in("waiting")))
        if agent_id in self.ringing.get(call_id, ()):
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
        for agent_id, chosen in self.chosen.items():
            if chosen is None:
                continue
            kept = chosen & set(self.members[agent_id])
            if kept:
                self.chosen[agent_id] = kept
                continue
            # none left: logged out as by its own logout (now, or when its call is over)
            self.signed_out.add(agent_id)
            logged_out = self.acd.agent_state(agent_id) is AgentState.LOGGED_OUT
            self.chosen[agent_id] = None if logged_out else frozenset()
        self.acd.replace_specs(self.queues, [AgentSpec(a, q) for a, q in self.members.items()])
        # the B2BUA re-arms its timer after a reload: the reload's effects are due now
        assert self.acd.get_timer() is not None
        self.absorb(self.acd.handle_timer(self.now))
        self.check_step()
        self.settle()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def agent_states_match_commands(self) -> None:
        ringing_agents = set(self.ringing_agents())
        assert len(ringing_agents) == len(self.ringing_agents()), self.ringing  # one call each
        talking_agents = set(self.connected.values())
        assert len(talking_agents) == len(self.connected), self.connected  # one call each
        holding = {self.connected[c] for c in self.held}
        for agent_id in AGENT_IDS:
            state = self.acd.agent_state(agent_id)
            on_call = state in (AgentState.TALKING, AgentState.HOLD)
            assert (state is AgentState.RINGING) == (agent_id in ringing_agents), agent_id
            assert on_call == (agent_id in talking_agents), agent_id
            assert (state is AgentState.HOLD) == (agent_id in holding), agent_id
            assert (state is AgentState.DIRECT_CALL) == (agent_id in self.direct), agent_id
            snap = self.acd.agent_snapshot(agent_id)
            assert snap.signed_out == (agent_id in self.signed_out), agent_id
            assert snap.queues == self.working(agent_id), agent_id
            assert snap.may_serve == self.members[agent_id], agent_id
            assert snap.registered == (agent_id in self.registered), agent_id
            if agent_id in self.signed_out and not on_call and state is not AgentState.RINGING:
                assert state in (AgentState.LOGGED_OUT, AgentState.DIRECT_CALL), agent_id

    @invariant()
    def no_open_call_has_an_eligible_idle_agent(self) -> None:
        assert self.eligible_idle_pairs() == []

    @invariant()
    def calls_for_one_agent_wait_only_for_an_agent_that_may_take_them(self) -> None:
        for call_id, agent_id in self.directed.items():
            if self.status[call_id] != "waiting":
                continue  # ringing: a reload that took the agent out lets the ring go on
            assert self.logged_in_to(agent_id, self.queue_of[call_id]), call_id

    @invariant()
    def snapshots_count_the_live_calls(self) -> None:
        for queue in ("q1", "q2"):
            snap = self.acd.queue_snapshot(queue, self.now)
            in_queue = [
                c for c, s in self.status.items() if s != "connected" and self.queue_of[c] == queue
            ]
            assert snap.waiting == len(in_queue)
            assert snap.ringing == sum(1 for c in in_queue if self.ringing.get(c))
            assert sum(snap.agents.values()) == sum(1 for m in self.members.values() if queue in m)
            logged_in = [a for a in AGENT_IDS if self.logged_in_to(a, queue)]
            assert sum(snap.agents.values()) - snap.agents["logged_out"] == len(logged_in)

    @invariant()
    def no_call_waits_unrung_in_an_empty_queue_that_leaves_when_empty(self) -> None:
        for queue, leaves in self.leave_when_empty.items():
            if leaves and not any(self.logged_in_to(a, queue) for a in AGENT_IDS):
                waiting = [c for c in self.calls_in("waiting") if self.queue_of[c] == queue]
                assert waiting == [], (queue, waiting)

    @invariant()
    def no_timer_is_overdue(self) -> None:
        deadline = self.acd.get_timer()
        assert deadline is None or deadline > self.now

    def teardown(self) -> None:
        for agent_id in sorted(self.direct):
            call_id = self.direct.pop(agent_id)
            self.absorb(self.acd.direct_call_ended(agent_id, call_id, self.now))
        for call_id in self.calls_in("connected"):
            agent_id = self.connected.pop(call_id)
            self.finish(call_id, "ended")
            self.absorb(self.acd.call_ended(call_id, agent_id, self.now))
        self.advance_to(self.now + 1000.0)
        assert self.status == {}, "calls still in the ACD after every max wait passed"
        for call_id, outcomes in self.outcomes.items():
            assert len(outcomes) == 1, (call_id, outcomes)


MACHINE_SETTINGS = {
    "stateful_step_count": 40,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
}
AcdMachine.TestCase.settings = settings(max_examples=150, **MACHINE_SETTINGS)
test_acd_never_loses_a_call = AcdMachine.TestCase


class OtherStrategiesMachine(AcdMachine):
    """The same rules and invariants with round robin in q1 and fewest calls in q2."""

    queues = (
        msgspec.structs.replace(QUEUES[0], strategy="round_robin"),
        msgspec.structs.replace(QUEUES[1], strategy="fewest_calls"),
    )


class RandomMachine(AcdMachine):
    """… and with the seeded random strategy in both queues."""

    queues = tuple(msgspec.structs.replace(q, strategy="random") for q in QUEUES)


class RingAllMachine(AcdMachine):
    """… and with ring-all in both queues: a call rings every idle agent of its queue."""

    queues = tuple(msgspec.structs.replace(q, strategy="ring_all") for q in QUEUES)


class MixedRingAllMachine(AcdMachine):
    """… and with ring-all in q1 beside longest idle in q2 (agents a3 serves both)."""

    queues = (msgspec.structs.replace(QUEUES[0], strategy="ring_all"), QUEUES[1])


class LeaveWhenEmptyMachine(AcdMachine):
    """… and with `leave_when_empty` in q1 (ring all) and q2: calls leave, or do not join,
    when no agent is logged in to their queue."""

    queues = (
        msgspec.structs.replace(QUEUES[0], strategy="ring_all", leave_when_empty=True),
        msgspec.structs.replace(QUEUES[1], leave_when_empty=True),
    )


for _machine in (OtherStrategiesMachine, RandomMachine, MixedRingAllMachine, LeaveWhenEmptyMachine):
    _machine.TestCase.settings = settings(max_examples=60, **MACHINE_SETTINGS)
RingAllMachine.TestCase.settings = settings(max_examples=150, **MACHINE_SETTINGS)
test_other_strategies_never_lose_a_call = OtherStrategiesMachine.TestCase
test_random_strategy_never_loses_a_call = RandomMachine.TestCase
test_ring_all_never_loses_a_call = RingAllMachine.TestCase
test_ring_all_beside_longest_idle_never_loses_a_call = MixedRingAllMachine.TestCase
test_leave_when_empty_never_loses_a_call = LeaveWhenEmptyMachine.TestCase
