"""The ACD engine's records and the routing machinery every input shares (internal).

`Router` holds the queues, agents, calls and timers of an `acd.Acd` and does what the inputs
have in common: it moves agents through their state table (keeping the queues' idle indexes
and counts in step), picks the agent a queue's strategy prefers for a call, offers calls,
puts a call whose ring failed back at its queue's head, sends calls out of their queue, and
keeps the timer heap. The public inputs are in `acd.agent_inputs` (about agents) and
`acd.engine` (about calls, timers, views and reloads); the routing rules they follow are
described in `acd.engine`'s docstring. Pure logic: no I/O, no clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable

from acd.agent import ON_CALL, AgentEvent, AgentRecord, AgentState, next_agent_state
from acd.errors import NotOffered, UnknownAgent, UnknownCall
from acd.events import CancelOffer, Command, OfferCall, QueueEvent, QueueEventKind, QueueTimeout
from acd.queue import (
    SERVICE_LEVEL_SECONDS,
    CallEvent,
    CallRecord,
    CallState,
    QueueRecord,
    next_call_state,
)
from acd.spec import AgentSpec, QueueSpec, memberships, validate_specs

_K = QueueEventKind

# Timer kinds, in the order they run when due at the same instant.
TIMER_MAX_WAIT = 0
TIMER_RING_TIMEOUT = 1
TIMER_WRAP_UP_END = 2
TIMER_RETRY = 3
TIMER_WIDEN = 4  # a call's sticky or region window ends: any agent of the queue may take it
TIMER_AGENT_ALERT = 5  # an agent has been busy or on a break longer than its queues allow

Timer = tuple[float, int, int, str, int]  # (deadline, kind, seq, call or agent id, serial)

#: States a pending logout waits in (ringing, or on a call), or has nothing to do in.
_NOT_SETTLED = (AgentState.LOGGED_OUT, *ON_CALL)


class Router:
    """The records of one engine and the internals its inputs share (see the module
    docstring). Agents start logged out."""

    def __init__(
        self, queues: Iterable[QueueSpec], agents: Iterable[AgentSpec], seed: int = 0
    ) -> None:
        queue_specs, agent_specs = validate_specs(queues, agents)
        self._rng = random.Random(seed)  # strategy random: same inputs, same choices
        self._queues: dict[str, QueueRecord] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._calls: dict[str, CallRecord] = {}
        self._timers: list[Timer] = []
        self._seq = 0  # enqueue order, global across queues
        self._serial = 0  # call incarnations, offers, wrap-ups, timers
        self._step = 0  # public inputs; one step = one returned command list
        self._last_now = 0.0
        self._reload_pending = False
        for q_spec in queue_specs:
            self._queues[q_spec.name] = QueueRecord(q_spec)
        served = memberships(queue_specs, agent_specs)
        for a_spec in agent_specs:
            agent = AgentRecord(a_spec.agent_id, served[a_spec.agent_id], a_spec.region)
            self._agents[a_spec.agent_id] = agent
            for name in agent.serves:
                q = self._queues[name]
                q.add_member(a_spec.agent_id, a_spec.score(q.spec.skills))

    def _live_agent(self, agent_id: str, now: float) -> AgentRecord:
        """Start a step for an input about a configured agent (`UnknownAgent` otherwise)."""
        self._tick(now)
        agent = self._agents.get(agent_id)
        if agent is None or agent.retired:
            raise UnknownAgent(agent_id)
        return agent

    # ---------------------------------------------------------------------------------------
    # Internals: agents

    def _agent_to(
        self,
        agent: AgentRecord,
        event: AgentEvent,
        now: float,
        out: list[Command],
        *,
        call_id: str | None = None,
        idle_since: float | None = None,
        reason: str = "",
    ) -> None:
        """Apply `event` to the agent through the table, keep the idle indexes in step and emit
        AGENT_STATE when the state changes (with `reason`, if any: the busy reason code, why
        the agent was locked). Entering IDLE sets `idle_since` (default `now`)."""
        old = agent.state
        new = next_agent_state(agent.agent_id, old, event)
        if new in (AgentState.BUSY, AgentState.LOCKED):
            if new is old and reason == agent.reason:
                return
            agent.reason = reason
        elif new is old:
            return
        if new is AgentState.LOGGED_OUT:
            agent.pending = None
        if old is AgentState.IDLE:
            for name in agent.queues:
                self._queues[name].remove_idle(agent.agent_id)
        if AgentState.LOGGED_OUT in (old, new):
            self._count_logged_in(agent, agent.queues, 1 if old is AgentState.LOGGED_OUT else -1)
        agent.state = new
        agent.state_since = now
        agent.state_serial = self._next_serial()
        if new in (AgentState.BUSY, AgentState.BREAK):
            limits = [
                self._queues[name].spec.busy_alert
                for name in agent.queues
                if self._queues[name].spec.busy_alert > 0
            ]
            if limits:
                self._push_timer(
                    now + min(limits), TIMER_AGENT_ALERT, agent.agent_id, agent.state_serial
                )
        elif new is AgentState.HOLD and call_id is not None:
            limit = self._calls[call_id].spec.hold_alert  # the held call's queue decides
            if limit > 0:
                self._push_timer(now + limit, TIMER_AGENT_ALERT, agent.agent_id, agent.state_serial)
        if new is AgentState.IDLE:
            agent.idle_since = now if idle_since is None else idle_since
            for name in agent.queues:
                self._queues[name].add_idle(agent.agent_id, agent.idle_since, agent.answered)
        out.append(
            QueueEvent(
                kind=_K.AGENT_STATE,
                call_id=call_id,
                agent_id=agent.agent_id,
                queue=None,
                at=now,
                data={"from": old.value, "to": new.value, "event": event.value}
                | ({"reason": reason} if reason else {}),
            )
        )

    def _count_logged_in(self, agent: AgentRecord, names: Iterable[str], change: int) -> None:
        """The agent logs in to (`change` 1) or out of (-1) the queues `names`: keep their
        counts of agents logged in, by region too, in step."""
        for name in names:
            q = self._queues[name]
            q.logged_in += change
            if agent.region is not None:
                q.regions[agent.region] = q.regions.get(agent.region, 0) + change

    def _settle(self, agent: AgentRecord, now: float, out: list[Command]) -> bool:
        """Log the agent out if a logout is pending (unregistered during a call, its own
        logout, a reload that left none of the queues its login chose, or removed by a
        reload) and it has just left its call; return True if it did."""
        if not agent.leaving or agent.state in _NOT_SETTLED:
            return False
        phone_gone = agent.logout_pending or agent.retired
        event = AgentEvent.UNAVAILABLE if phone_gone else AgentEvent.LOGOUT
        reason = "a reload left none of its chosen queues" if agent.chosen == frozenset() else ""
        self._agent_to(agent, event, now, out, reason=reason)
        agent.logout_pending = False
        self._logged_out(agent, now, out)
        return True

    def _logged_out(self, agent: AgentRecord, now: float, out: list[Command]) -> None:
        """The agent has just been logged out: the calls of its queues that waited on it
        may go elsewhere or leave (`_widen_for`); its own logout ends the choice of queues
        of its last login; a removed agent is forgotten."""
        self._widen_for(agent, agent.queues, now, out)
        if agent.signed_out:
            agent.chosen = None
            agent.queues = agent.serves
        self._forget_if_retired(agent)

    def _agent_ready(self, agent: AgentRecord, now: float, out: list[Command], fresh: bool) -> None:
        """The agent has just entered IDLE: offer it the best call of its queues. A `fresh`
        agent (it became available) may take a call whose retry window for it is still open;
        otherwise only calls it is eligible for."""
        if self._settle(agent, now, out):
            return
        if agent.pending is not None:  # not ready or a break, asked during the call
            event, reason = agent.pending
            agent.pending = None
            self._agent_to(agent, event, now, out, reason=reason)
            return
        best: CallRecord | None = None
        for name in agent.queues:
            call = self._first_waiting(self._queues[name], agent, now, fresh)
            if call is not None and (best is None or call.key < best.key):
                best = call
        if best is not None:
            self._offer(best, agent, now, out)

    def _first_waiting(
        self, q: QueueRecord, agent: AgentRecord, now: float, fresh: bool
    ) -> CallRecord | None:
        """The first call of `q` in order that `agent` may take: one whose sticky or region
        window does not keep it for others and, unless the agent is `fresh`, whose retry
        window for the agent is closed. The calls skipped are few: those the agent failed in
        the last `retry` seconds, those held for other regions or agents, and those for other
        named agents (`enqueue(agent=…)`)."""
        agent_id = agent.agent_id
        for key in q.open_keys():
            call = q.calls[key[2]]
            if not self._allows(q, call, agent, now):
                continue
            if fresh or call.eligible(agent_id, now, self._step):
                return call
        return None

    def _allows(self, q: QueueRecord, call: CallRecord, agent: AgentRecord, now: float) -> bool:
        """Whether the call's sticky and region windows let `agent` take it at `now`; a call
        for a named agent, only that agent."""
        if call.directed is not None:
            return agent.agent_id == call.directed
        if now >= call.widen_at:
            return True
        waited = now - call.enqueued_at
        preferred = call.preferred
        if preferred is not None and waited < call.spec.sticky_wait and self._serves(q, preferred):
            return agent.agent_id == preferred
        region = call.region
        if region is not None and waited < call.spec.region_wait and q.regions.get(region, 0):
            return agent.region == region
        return True

    def _widen_for(
        self, agent: AgentRecord, queues: Iterable[str], now: float, out: list[Command]
    ) -> None:
        """`agent` left `queues` (it logged out, or a login named other queues): calls of
        theirs held for it (sticky) or for its region, which it may have been the last one
        logged in of, may now go to the others. Offer them. Calls for it alone leave
        (agent_unavailable). In a queue with `leave_when_empty` that it leaves without
        agents logged in, its calls leave; one still ringing an agent (who left the queue
        by a login, its ring going on) leaves if that ring fails (`_dispatch_call`)."""
        agent_id = agent.agent_id
        for name in queues:
            q = self._queues.get(name)
            if q is None:
                continue
            if q.spec.leave_when_empty and not q.logged_in and q.calls:
                for call in sorted(q.calls.values(), key=lambda c: c.key):
                    if call.rings:
                        continue
                    if call.directed is not None:
                        self._time_out(call, now, out, _K.UNAVAILABLE, "agent_unavailable")
                    else:
                        self._time_out(call, now, out, _K.EMPTY, "empty")  # may drop a drained q
                continue
            held = [
                call
                for call in (q.calls[key[2]] for key in q.open_keys())
                if call.widen_at > now or call.directed == agent_id
            ]
            for call in held:
                if call.open:  # a call for this agent leaves here (see _dispatch_call)
                    self._dispatch_call(call, now, out)

    def _forget_if_retired(self, agent: AgentRecord) -> None:
        if agent.retired and agent.state is AgentState.LOGGED_OUT:
            del self._agents[agent.agent_id]

    def _withdraw_offer(
        self, agent: AgentRecord, call_id: str, now: float, out: list[Command]
    ) -> None:
        """The caller left while `agent` was ringing: the agent is idle again with its place in
        line kept, and may take another call it is eligible for."""
        self._agent_to(
            agent,
            AgentEvent.OFFER_WITHDRAWN,
            now,
            out,
            call_id=call_id,
            idle_since=agent.idle_since,
        )
        agent.call_id = None
        self._agent_ready(agent, now, out, fresh=False)

    # ---------------------------------------------------------------------------------------
    # Internals: calls

    def _call(self, call_id: str) -> CallRecord:
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCall(call_id)
        return call

    def _ringing_agents(self, call: CallRecord) -> list[AgentRecord]:
        """The agents being offered the call, in the order they were."""
        return [self._agents[agent_id] for agent_id in call.rings]

    def _named_agent(self, call: CallRecord, data: dict[str, object]) -> str | None:
        """The agent an event about a call leaving the queue names: the one ringing, if any. A
        ring-all call ringing several names none; they are listed in `data` ("ringing")."""
        if len(call.rings) == 1:
            return next(iter(call.rings))
        if call.rings:
            data["ringing"] = list(call.rings)
        return None

    def _offer_pair(
        self, call_id: str, agent_id: str, event: CallEvent
    ) -> tuple[CallRecord, AgentRecord]:
        """Check that `event` from `agent_id` is legal for the call (ringing that agent for
        ANSWER/REJECT, connected with it for END) and return both records, unchanged."""
        call = self._call(call_id)
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        next_call_state(call_id, call.state, event)
        on_call = call.agent_id == agent_id if event is CallEvent.END else agent_id in call.rings
        if not on_call:
            with_agent = call.agent_id or ", ".join(call.rings) or None
            raise NotOffered(call_id, agent_id, call.state.value, event.value, with_agent)
        return call, agent

    def _event(
        self,
        kind: QueueEventKind,
        call: CallRecord,
        now: float,
        data: dict[str, object],
        agent_id: str | None,
    ) -> QueueEvent:
        return QueueEvent(
            kind=kind,
            call_id=call.call_id,
            agent_id=agent_id,
            queue=call.queue,
            at=now,
            data=data,
        )

    def _dispatch_call(self, call: CallRecord, now: float, out: list[Command]) -> None:
        """Offer an open call to the idle agent of its queue that the queue's strategy picks
        among those eligible for it; a ring-all call to every one of them. A call for a named
        agent that can no longer take it (logged out, or no longer logged in to the queue: a
        login naming other queues, a reload) leaves instead (`QueueTimeout`
        "agent_unavailable"); so does a call ringing no one in a `leave_when_empty` queue no
        agent is logged in to ("empty": its last ring failed after the queue's last agent
        left it, or a reload took the queue's last agents)."""
        q = self._queues[call.queue]
        if call.directed is not None and not self._serves(q, call.directed):
            self._time_out(call, now, out, _K.UNAVAILABLE, "agent_unavailable")
            return
        if q.spec.leave_when_empty and not q.logged_in and not call.rings:
            self._time_out(call, now, out, _K.EMPTY, "empty")
            return
        if call.ring_all:
            for agent_id in [key[-1] for key in q.idle if self._may_take(q, call, key[-1], now)]:
                self._offer(call, self._agents[agent_id], now, out)
            return
        agent_id = self._pick(q, call, now)
        if agent_id is not None:
            self._offer(call, self._agents[agent_id], now, out)

    def _serves(self, q: QueueRecord, agent_id: str) -> bool:
        """Whether `agent_id` is logged in to `q` (a call for it, or held for it, may wait)."""
        agent = self._agents.get(agent_id)
        return agent is not None and agent.logged_in_to(q.name)

    def _pick(self, q: QueueRecord, call: CallRecord, now: float) -> str | None:
        idle = q.idle
        if not idle:
            return None
        if call.directed is not None:  # that agent or none, whatever the strategy
            agent_id = call.directed
            if agent_id in q.idle_keys and self._may_take(q, call, agent_id, now):
                return agent_id
            return None
        strategy = q.spec.strategy
        simple = not call.tried and now >= call.widen_at
        if strategy == "round_robin":
            return self._pick_round_robin(q, call, now, simple)
        if strategy == "random":
            if simple:
                return idle[self._rng.randrange(len(idle))][-1]
            choices = [key[-1] for key in idle if self._may_take(q, call, key[-1], now)]
            return self._rng.choice(choices) if choices else None
        if simple:  # sorted strategies: the head of the index
            return idle[0][-1]
        for key in idle:
            if self._may_take(q, call, key[-1], now):
                return key[-1]
        return None

    def _may_take(self, q: QueueRecord, call: CallRecord, agent_id: str, now: float) -> bool:
        return call.eligible(agent_id, now, self._step) and self._allows(
            q, call, self._agents[agent_id], now
        )

    def _pick_round_robin(
        self, q: QueueRecord, call: CallRecord, now: float, simple: bool
    ) -> str | None:
        """The first idle member eligible for `call` after the one last offered a call of
        the queue, in configuration order, wrapping around (a scan of the members)."""
        members, position = q.member_order()
        start = position.get(q.rr_last, -1) + 1 if q.rr_last is not None else 0
        for i in range(len(members)):
            agent_id = members[(start + i) % len(members)]
            if agent_id in q.idle_keys and (simple or self._may_take(q, call, agent_id, now)):
                return agent_id
        return None

    def _offer(self, call: CallRecord, agent: AgentRecord, now: float, out: list[Command]) -> None:
        """Ring `agent` for an open call (its ring timer is keyed by the agent: a ring-all
        call has one per agent)."""
        q = self._queues[call.queue]
        if call.state is CallState.WAITING:
            q.remove_waiting(call)
            if call.ring_all:
                q.add_ringing_all(call)  # still open while it rings
        q.rr_last = agent.agent_id
        call.state = next_call_state(call.call_id, call.state, CallEvent.OFFER)
        serial = self._next_serial()
        call.rings[agent.agent_id] = (now, serial)
        call.attempts += 1
        data: dict[str, object] = {"ring_timeout": call.spec.ring_timeout, "attempt": call.attempts}
        out.append(self._event(_K.OFFER, call, now, data, agent.agent_id))
        self._agent_to(agent, AgentEvent.OFFER, now, out, call_id=call.call_id)
        agent.call_id = call.call_id
        out.append(OfferCall(call.call_id, agent.agent_id, call.queue, call.spec.ring_timeout))
        self._push_timer(now + call.spec.ring_timeout, TIMER_RING_TIMEOUT, agent.agent_id, serial)

    def _connect(
        self, call: CallRecord, agent: AgentRecord, event: CallEvent, now: float
    ) -> list[tuple[AgentRecord, float]]:
        """`agent` takes the call (it answered, or picked it up): the call is connected and
        leaves its queue, counted as answered. Return the agents still ringing for it, with
        when each ring began (their rings are to be withdrawn, `_withdraw_rings`)."""
        q = self._queues[call.queue]
        q.remove_open(call)  # a ring-all call stayed open while it rang
        call.state = next_call_state(call.call_id, call.state, event)
        call.connected_at = now
        others = [(self._agents[other], at) for other, (at, _) in call.rings.items()]
        call.rings.clear()
        call.agent_id = agent.agent_id
        q.recent_waits.append(now - call.enqueued_at)
        q.counts["answered"] += 1
        if now - call.enqueued_at <= SERVICE_LEVEL_SECONDS:
            q.counts["answered_in_time"] += 1
        agent.answered += 1
        agent.missed = 0
        self._leave_queue(call)
        return others

    def _withdraw_rings(
        self,
        call: CallRecord,
        ringing: list[tuple[AgentRecord, float]],
        reason: str,
        by: str,
        now: float,
        out: list[Command],
    ) -> None:
        """Agent `by` took the call: stop the other agents' rings (`CancelOffer` `reason`,
        queue-log RINGCANCELED); they are idle again with their place kept, no miss counted,
        and each is offered its next call."""
        for other, offered_at in ringing:
            data = {"reason": reason, "ring": now - offered_at, "by": by}
            out.append(self._event(_K.RINGCANCELED, call, now, data, other.agent_id))
            out.append(CancelOffer(call.call_id, other.agent_id, reason))
        for other, _ in ringing:
            self._withdraw_offer(other, call.call_id, now, out)

    def _requeue(self, call: CallRecord, event: CallEvent) -> None:
        """Put a call whose last ring failed back in its queue, in its original place (the
        head)."""
        q = self._queues[call.queue]
        if call.ring_all:
            q.remove_ringing_all(call)
        call.state = next_call_state(call.call_id, call.state, event)
        q.add_waiting(call)

    def _offer_failed(
        self,
        call: CallRecord,
        agent: AgentRecord,
        call_event: CallEvent,
        agent_event: AgentEvent,
        now: float,
        out: list[Command],
        fault: str = "",
    ) -> None:
        """No answer or reject: the agent goes idle at the back of the line, the call back to
        its queue head (when no other agent still rings it), and the agent's retry window for
        the call opens (a timer at its end re-dispatches the call if it is still open); the
        call is offered to the next eligible agent first, then the agent may take a call it is
        eligible for. `fault`: the agent's device cannot take calls as it is (its phone
        answered with media the node cannot use): the agent goes busy with that reason even
        with `lock_after` off, until it makes itself ready again (a lock that `lock_after`
        asks for comes first)."""
        self._agent_to(agent, agent_event, now, out, call_id=call.call_id)
        agent.call_id = None
        del call.rings[agent.agent_id]
        agent.missed += 1
        lock_after = call.spec.lock_after
        locked = bool(lock_after) and agent.missed >= lock_after and not agent.leaving
        busy = bool(fault) and not locked and not agent.leaving
        if locked:
            agent.pending = None
            reason = f"missed {agent.missed} calls in a row"
            self._agent_to(agent, AgentEvent.LOCK, now, out, call_id=call.call_id, reason=reason)
        elif busy:
            agent.pending = None
            self._agent_to(
                agent, AgentEvent.NOT_READY, now, out, call_id=call.call_id, reason=fault
            )
        last = not call.rings
        if last:
            self._requeue(call, call_event)
        until = now + call.spec.retry
        call.record_failure(agent.agent_id, until, self._step)
        self._push_timer(until, TIMER_RETRY, call.call_id, call.serial)
        if last:
            self._dispatch_call(call, now, out)
        if not (locked or busy):
            self._agent_ready(agent, now, out, fresh=False)

    def _leave_queue(self, call: CallRecord) -> None:
        """The call is no longer in its queue (connected or gone); drop a drained queue."""
        q = self._queues[call.queue]
        del q.calls[call.call_id]
        if q.draining and not q.calls:
            del self._queues[q.name]
            for agent_id in q.members:
                agent = self._agents[agent_id]
                agent.serves = tuple(name for name in agent.serves if name != q.name)
                agent.queues = tuple(name for name in agent.queues if name != q.name)
                if agent.chosen is not None:
                    agent.chosen = agent.chosen - {q.name}

    def _finish(self, call: CallRecord, event: CallEvent) -> None:
        """Move the call to a final state and forget it."""
        call.state = next_call_state(call.call_id, call.state, event)
        if event is not CallEvent.END:
            self._leave_queue(call)
        del self._calls[call.call_id]

    def _time_out(
        self,
        call: CallRecord,
        now: float,
        out: list[Command],
        kind: QueueEventKind = _K.TIMEOUT,
        reason: str = "max_wait",
    ) -> None:
        """The call leaves its queue without an agent (max wait, the queue's last agent gone
        with `leave_when_empty`, its named agent gone): `CancelOffer` to each agent ringing,
        then `QueueTimeout`."""
        ringing = self._ringing_agents(call)
        for agent in ringing:
            out.append(CancelOffer(call.call_id, agent.agent_id, reason))
        self._queues[call.queue].remove_open(call)
        waited = now - call.enqueued_at
        self._queues[call.queue].counts["overflowed"] += 1
        out.append(QueueTimeout(call.call_id, call.queue, waited, reason))
        data: dict[str, object] = {"waited": waited}
        if kind is _K.UNAVAILABLE:
            data["agent"] = call.directed
        named = self._named_agent(call, data)
        out.append(self._event(kind, call, now, data, named))
        self._finish(call, CallEvent.MAX_WAIT)
        for agent in ringing:
            self._withdraw_offer(agent, call.call_id, now, out)

    def _ring_timeout(self, agent: AgentRecord, now: float, out: list[Command]) -> None:
        call = self._calls.get(agent.call_id) if agent.call_id is not None else None
        if call is None:
            raise RuntimeError(f"ring timer fired for agent {agent.agent_id!r} ringing no call")
        offered_at, _ = call.rings[agent.agent_id]
        data: dict[str, object] = {"ring": now - offered_at}
        out.append(self._event(_K.RINGNOANSWER, call, now, data, agent.agent_id))
        out.append(CancelOffer(call.call_id, agent.agent_id, "ring_timeout"))
        self._offer_failed(call, agent, CallEvent.RING_TIMEOUT, AgentEvent.RING_TIMEOUT, now, out)

    # ---------------------------------------------------------------------------------------
    # Internals: time

    def _tick(self, now: float) -> None:
        """Start a step (one public input)."""
        self._step += 1
        if now > self._last_now:
            self._last_now = now

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _push_timer(self, deadline: float, kind: int, key: str, serial: int) -> None:
        heapq.heappush(self._timers, (deadline, kind, self._next_serial(), key, serial))

    def _timer_valid(self, timer: Timer) -> bool:
        _, kind, _, key, serial = timer
        if kind == TIMER_RING_TIMEOUT:  # keyed by the agent ringing
            agent = self._agents.get(key)
            if agent is None or agent.state is not AgentState.RINGING or agent.call_id is None:
                return False
            ringing = self._calls.get(agent.call_id)
            ring = ringing.rings.get(key) if ringing is not None else None
            return ring is not None and ring[1] == serial
        if kind == TIMER_AGENT_ALERT:
            agent = self._agents.get(key)
            return (
                agent is not None
                and agent.state in (AgentState.BUSY, AgentState.BREAK, AgentState.HOLD)
                and agent.state_serial == serial
            )
        if kind == TIMER_WRAP_UP_END:
            agent = self._agents.get(key)
            return (
                agent is not None
                and agent.state is AgentState.WRAP_UP
                and agent.wrap_up_serial == serial
            )
        call = self._calls.get(key)
        if call is None:
            return False
        # A retry timer stays valid while the call is ringing someone else: that offer may fail
        # before the window ends, and the call must then be offered again at its end.
        return call.serial == serial and call.state in (CallState.WAITING, CallState.RINGING)
