"""The ACD engine: queues, agents and the longest-idle strategy, sans-IO (STYLE §1).

`Acd` takes inputs with the current time (`now`, monotonic seconds) and returns lists of
commands (`OfferCall`, `CancelOffer`, `QueueTimeout`) and queue-log events (`QueueEvent`) in the
order the caller must act on them. It keeps its own timers (ring timeout, max wait, wrap-up end,
end of a retry window); the owner asks `get_timer()` and calls `handle_timer(now)` when it is
due. No I/O, no clock, no randomness: the same inputs always give the same outputs. Each public
input is one *step*; its returned list is that step's commands.

Routing rules (SPEC ACD-1 longest-idle, ACD-4 subset):

- Longest idle: a call goes to the IDLE agent of its queue that has been idle the longest and is
  *eligible* for it (see Retry window); ties by agent id.
- Idle since: the time an agent became available (login, end of call, end of wrap-up). An agent
  whose phone did not answer or refused goes to the *back* of the line (idle since = the time of
  the failure): it is most likely away from its desk, and keeping it first would make every next
  caller ring it for a whole ring timeout first, which costs service level (SPEC RPT-3: answered
  within 15 s). An agent whose ring was stopped because the caller left (abandon, max wait)
  keeps its place: it did nothing wrong.
- Retry window: after a no-answer or reject, the agent is not eligible for *that* call for the
  queue's `retry` seconds (counted from the failure), while other calls may go to it at once.
  A retry timer at the window's end offers the call again if it still waits (to that agent or
  any other eligible one, longest idle first), so a one-agent queue (night shift, a small
  hotline) rings its agent again after `retry` seconds instead of holding the caller until max
  wait (Asterisk app_queue's `retry` option). An agent that *becomes available* (login, end of
  call, end of wrap-up) takes the longest-waiting call of its queues even inside a window: at
  that point no eligible idle agent exists for that call (otherwise it would be ringing). An
  agent that merely returns to idle after a failed or withdrawn offer only takes calls it is
  eligible for. An unregister while ringing is no failure: the agent is logged out, and its
  next login makes it available anyway.
- `retry` = 0: eligible again at once, but never re-offered the call in the same step as its
  failure (that would CANCEL and re-INVITE the same phone in one command list); the retry
  timer is then due at the same instant and the next `handle_timer` offers it. A phone that
  rejects at once is thus rung again once per owner round trip, not in a zero-time loop.
- Order of waiting calls: higher priority first, then enqueue order; an agent serving several
  queues takes the first call in that order across its queues (the longest waiting). A call put
  back after a failed offer keeps its place, which is the head of its queue (SPEC ACD-4, see
  `acd.queue`): no call that arrived later gets ahead of it.
- Max wait runs from `enqueue` and is not restarted by re-queues. When it hits while the call is
  ringing an agent: `CancelOffer`, then `QueueTimeout`.
- Timers due at the same instant run in the order max wait, ring timeout, wrap-up end, retry
  (an agent that became available at that instant takes the head call before a retry goes back
  to an agent that failed it). `handle_timer` runs only timers set before it was called: one
  that its own actions set for `now` (a retry window of 0) is due at the next call.
- A phone that unregisters while ringing: `CancelOffer`, the agent is logged out, the call goes
  back to the head and is offered to the next agent. While talking: the call goes on and the
  agent is logged out when it ends.
- Ring all (strategy `ring_all`): a call is offered to *every* idle agent of its queue that
  is eligible for it, at once (one `OfferCall` each, one ring timer each), and stays open
  while it rings: an agent that becomes idle and would take it next (the first call in
  order, as above) joins the ringing. The first to answer takes the call; every other ring
  is withdrawn (`CancelOffer` "answered_elsewhere", queue-log RINGCANCELED) and those agents
  are idle again with their place in line kept, each offered its next call. A no-answer,
  reject or unregister of one ringing agent is that agent's failure only (retry window,
  `lock_after`, back of the line); the call goes back to the head of its queue when its
  last ring fails. An agent ringing for a call gets no other call, as with every strategy.
  Whether a call rings all is fixed at enqueue (the queue spec it started with).
- A call for one named agent (`enqueue(agent=…)`: agent-to-agent transfer, a directed call)
  may be offered to that agent only, whatever the queue's strategy, and is skipped by every
  other agent's pick, so it holds up no other call. It waits while the agent is busy (max wait
  as usual); a failed offer puts it back to wait for the same agent (retry window, lock).
  It leaves (`QueueTimeout` "agent_unavailable") when that agent cannot take it: not logged
  in when it arrives (it never joins), logged out, or no longer serving the queue after a
  reload, while it waits.

Invariant after every method returns: no open call (waiting, or ringing all) has an idle agent
in its queue that is eligible for it at `now`. Exceptions, each with a timer due at once
(`get_timer() <= now`): an agent that failed the call in this step with `retry` = 0, and
`replace_specs` until the next `handle_timer` (see there).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable

from acd.agent import AgentEvent, AgentRecord, AgentState, next_agent_state
from acd.errors import (
    DuplicateCall,
    NotInQueue,
    NotOffered,
    UnknownAgent,
    UnknownCall,
    UnknownQueue,
)
from acd.events import (
    AgentSnapshot,
    CancelOffer,
    Command,
    OfferCall,
    QueueEvent,
    QueueEventKind,
    QueueKpis,
    QueueSnapshot,
    QueueTimeout,
)
from acd.queue import (
    SERVICE_LEVEL_SECONDS,
    SHORT_ABANDON_SECONDS,
    CallEvent,
    CallRecord,
    CallState,
    QueueRecord,
    next_call_state,
)
from acd.spec import AgentSpec, QueueSpec, memberships, validate_specs

_K = QueueEventKind

# Timer kinds, in the order they run when due at the same instant.
_MAX_WAIT = 0
_RING_TIMEOUT = 1
_WRAP_UP_END = 2
_RETRY = 3
_WIDEN = 4  # a call's sticky or region window ends: any agent of the queue may take it
_AGENT_ALERT = 5  # an agent has been busy or on a break longer than its queues allow

_Timer = tuple[float, int, int, str, int]  # (deadline, kind, seq, call or agent id, serial)


class Acd:
    """Automatic call distribution over a set of queues and agents (see the module docstring
    for the routing rules). Agents start logged out."""

    def __init__(
        self, queues: Iterable[QueueSpec], agents: Iterable[AgentSpec], seed: int = 0
    ) -> None:
        queue_specs, agent_specs = validate_specs(queues, agents)
        self._rng = random.Random(seed)  # strategy random: same inputs, same choices
        self._queues: dict[str, QueueRecord] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._calls: dict[str, CallRecord] = {}
        self._timers: list[_Timer] = []
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
            for name in agent.queues:
                q = self._queues[name]
                q.add_member(a_spec.agent_id, a_spec.score(q.spec.skills))

    # ---------------------------------------------------------------------------------------
    # Agents

    def agent_available(self, agent_id: str, now: float) -> list[Command]:
        """The agent's phone registered. A logged-out agent becomes idle and may at once be
        offered the longest-waiting call of its queues; in any other state nothing changes (a
        REGISTER refresh), except that a logout pending from an unregister during a call is
        forgotten."""
        agent = self._live_agent(agent_id, now)
        out: list[Command] = []
        before = agent.state
        self._agent_to(agent, AgentEvent.AVAILABLE, now, out)
        if before is AgentState.LOGGED_OUT:
            self._agent_ready(agent, now, out, fresh=True)
        else:
            agent.logout_pending = False
        return out

    def agent_unavailable(self, agent_id: str, now: float) -> list[Command]:
        """The agent's phone unregistered (or its registration expired): the agent is logged
        out. If it was ringing: `CancelOffer`, the call goes back to its queue head and the
        next agent is offered it (unless other agents still ring it: ring-all). If it was
        talking: logged out when the call ends. Calls waiting for this agent alone leave
        (`QueueTimeout` "agent_unavailable")."""
        self._tick(now)
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        out: list[Command] = []
        if agent.state is AgentState.TALKING:
            agent.logout_pending = True
            return out
        call = None
        if agent.state is AgentState.RINGING and agent.call_id is not None:
            call = self._calls[agent.call_id]
        if call is not None:
            next_call_state(call.call_id, call.state, CallEvent.AGENT_GONE)
            offered_at, _ = call.rings.pop(agent.agent_id)
            data = {"reason": "agent_unavailable", "ring": now - offered_at}
            out.append(self._event(_K.RINGCANCELED, call, now, data, agent.agent_id))
            out.append(CancelOffer(call.call_id, agent.agent_id, "agent_unavailable"))
        self._agent_to(agent, AgentEvent.UNAVAILABLE, now, out, call_id=agent.call_id)
        agent.call_id = None
        agent.logout_pending = False
        if call is not None and not call.rings:  # others may still ring a ring-all call
            self._requeue(call, CallEvent.AGENT_GONE)
            self._dispatch_call(call, now, out)
        self._widen_for(agent, now, out)
        self._forget_if_retired(agent)
        return out

    def agent_not_ready(self, agent_id: str, now: float, reason: str = "") -> list[Command]:
        """The agent goes busy (not ready) with `reason` (a reason code): at once from idle,
        wrap-up or a break; asked while ringing or talking, when that call is over."""
        return self._agent_request(agent_id, AgentEvent.NOT_READY, now, reason)

    def agent_break(self, agent_id: str, now: float) -> list[Command]:
        """The agent goes on a break (at once, or when its call is over; see not ready)."""
        return self._agent_request(agent_id, AgentEvent.BREAK, now, "")

    def agent_ready(self, agent_id: str, now: float) -> list[Command]:
        """The agent is ready: from busy, a break or wrap-up (ending it early) it is idle and
        may be offered the longest-waiting call of its queues; while ringing or talking it
        withdraws a not-ready or break asked before. Refused (`IllegalTransition`) when
        locked or logged out."""
        return self._agent_request(agent_id, AgentEvent.READY, now, "")

    def agent_lock(self, agent_id: str, now: float, reason: str = "supervisor") -> list[Command]:
        """A supervisor locks the agent (not while ringing or talking)."""
        return self._agent_request(agent_id, AgentEvent.LOCK, now, reason)

    def agent_unlock(self, agent_id: str, now: float) -> list[Command]:
        """A supervisor unlocks a locked agent: it is idle and may be offered a call."""
        return self._agent_request(agent_id, AgentEvent.UNLOCK, now, "")

    def _agent_request(
        self, agent_id: str, event: AgentEvent, now: float, reason: str
    ) -> list[Command]:
        agent = self._live_agent(agent_id, now)
        out: list[Command] = []
        state = agent.state
        next_agent_state(agent_id, state, event)  # IllegalTransition before any change
        if state in (AgentState.RINGING, AgentState.TALKING):
            agent.pending = None if event is AgentEvent.READY else (event, reason)
            return out
        self._agent_to(agent, event, now, out, reason=reason)
        if agent.state is AgentState.IDLE and state is not AgentState.IDLE:
            self._agent_ready(agent, now, out, fresh=True)
        return out

    def _live_agent(self, agent_id: str, now: float) -> AgentRecord:
        """Start a step for an input about a configured agent (`UnknownAgent` otherwise)."""
        self._tick(now)
        agent = self._agents.get(agent_id)
        if agent is None or agent.retired:
            raise UnknownAgent(agent_id)
        return agent

    def agent_state(self, agent_id: str) -> AgentState:
        """The agent's current state."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent.state

    # ---------------------------------------------------------------------------------------
    # Calls

    def enqueue(
        self,
        call_id: str,
        queue: str,
        now: float,
        priority: int = 0,
        region: str | None = None,
        preferred: str | None = None,
        *,
        agent: str | None = None,
    ) -> list[Command]:
        """A call joins `queue` (higher `priority` waits ahead of lower); the agent the queue's
        strategy picks is offered it at once if one is idle (every idle one, `ring_all`).
        Starts the call's max-wait clock.

        `region` (the caller's region) and `preferred` (the agent who served the caller last)
        matter to queues with `region_wait` and `sticky_wait`: for those seconds only agents of
        that region, or only that agent, may take the call, while such agents are logged in.

        `agent` makes it a call for that agent alone (agent-to-agent transfer, a directed
        call; `region` and `preferred` are then ignored): no other agent is offered it, and
        it holds up none of the queue's other calls. `queue` must be one the agent serves
        (it is the queue the call counts in): `NotInQueue` otherwise, `UnknownAgent` for an
        agent not configured. An agent not logged in refuses the call at once (`QueueTimeout`
        "agent_unavailable", queue-log UNAVAILABLE, counted as overflowed like "full" and
        "empty"); a logged-in agent that is busy (ringing, talking, wrap-up, not ready, a
        break, locked) is waited for until max wait. A no-answer or reject puts the call back
        to wait for the same agent, offered again after the queue's `retry`; the agent
        logging out while the call waits sends it away ("agent_unavailable")."""
        self._tick(now)
        q = self._queues.get(queue)
        if q is None or q.draining:
            raise UnknownQueue(queue)
        if call_id in self._calls:
            raise DuplicateCall(call_id)
        if agent is not None:
            target = self._agents.get(agent)
            if target is None or target.retired:
                raise UnknownAgent(agent)
            if agent not in q.members:
                raise NotInQueue(agent, queue)
            if target.state is AgentState.LOGGED_OUT:
                refused = {"waited": 0.0, "agent": agent}
                return self._refused(call_id, q, _K.UNAVAILABLE, "agent_unavailable", now, refused)
            region = preferred = None
        if q.spec.max_callers and len(q.calls) >= q.spec.max_callers:
            return self._refused(call_id, q, _K.FULL, "full", now, {"waiting": len(q.calls)})
        if q.spec.leave_when_empty and not q.logged_in:
            return self._refused(call_id, q, _K.EMPTY, "empty", now, {"waited": 0.0})
        self._seq += 1
        call = CallRecord(
            call_id, q.spec, priority, now, self._seq, self._next_serial(), region, preferred, agent
        )
        self._calls[call_id] = call
        q.calls[call_id] = call
        q.counts["entered"] += 1
        position = q.add_waiting(call)
        self._push_timer(now + q.spec.max_wait, _MAX_WAIT, call_id, call.serial)
        for window in (
            q.spec.sticky_wait if preferred else 0.0,
            q.spec.region_wait if region else 0.0,
        ):
            if window > 0:  # the end of each window widens who may take the call
                self._push_timer(now + window, _WIDEN, call_id, call.serial)
        data: dict[str, object] = {"priority": priority, "position": position}
        if region is not None:
            data["region"] = region
        if preferred is not None:
            data["preferred"] = preferred
        if agent is not None:
            data["agent"] = agent
        out: list[Command] = [self._event(_K.ENTER, call, now, data, None)]
        self._dispatch_call(call, now, out)
        return out

    def _refused(
        self,
        call_id: str,
        q: QueueRecord,
        kind: QueueEventKind,
        reason: str,
        now: float,
        data: dict[str, object],
    ) -> list[Command]:
        """A call that does not join `q` (full, empty with `leave_when_empty`, or for a named
        agent not logged in)."""
        q.counts["entered"] += 1
        q.counts["overflowed"] += 1
        event = QueueEvent(
            kind=kind, call_id=call_id, agent_id=None, queue=q.name, at=now, data=data
        )
        return [event, QueueTimeout(call_id, q.name, 0.0, reason)]

    def abandon(self, call_id: str, now: float, callback: bool = False) -> list[Command]:
        """The caller hung up (or CANCELled) while queued or ringing: the call leaves the ACD;
        each agent ringing gets `CancelOffer` and may take another call. With
        `callback` the caller left asking to be called back (queue-log CALLBACK, not
        ABANDON)."""
        self._tick(now)
        call = self._call(call_id)
        next_call_state(call_id, call.state, CallEvent.ABANDON)
        ringing = self._ringing_agents(call)
        q = self._queues[call.queue]
        position = q.remove_open(call)
        data: dict[str, object] = {"waited": now - call.enqueued_at}
        if ringing:
            data["ring"] = now - min(offered_at for offered_at, _ in call.rings.values())
        else:
            data["position"] = position
        kind = _K.CALLBACK if callback else _K.ABANDON
        short = now - call.enqueued_at < SHORT_ABANDON_SECONDS
        q.counts["callbacks" if callback else "abandoned"] += 1
        if short:
            q.counts["callbacks_short" if callback else "abandoned_short"] += 1
        named = self._named_agent(call, data)
        out: list[Command] = [self._event(kind, call, now, data, named)]
        reason = "callback" if callback else "abandoned"
        for agent in ringing:
            out.append(CancelOffer(call_id, agent.agent_id, reason))
        self._finish(call, CallEvent.ABANDON)
        for agent in ringing:
            self._withdraw_offer(agent, call_id, now, out)
        return out

    def agent_answered(self, call_id: str, agent_id: str, now: float) -> list[Command]:
        """The ringing agent answered: the call is connected and leaves the queue. Other agents
        still ringing for it (ring-all) get `CancelOffer` "answered_elsewhere" (queue-log
        RINGCANCELED) and are idle again with their place kept, each offered its next call."""
        self._tick(now)
        call, agent = self._offer_pair(call_id, agent_id, CallEvent.ANSWER)
        q = self._queues[call.queue]
        q.remove_open(call)  # a ring-all call stayed open while it rang
        call.state = next_call_state(call_id, call.state, CallEvent.ANSWER)
        call.connected_at = now
        offered_at, _ = call.rings.pop(agent_id)
        others = [(self._agents[other], at) for other, (at, _) in call.rings.items()]
        call.rings.clear()
        call.agent_id = agent_id
        q.recent_waits.append(now - call.enqueued_at)
        q.counts["answered"] += 1
        if now - call.enqueued_at <= SERVICE_LEVEL_SECONDS:
            q.counts["answered_in_time"] += 1
        agent.answered += 1
        agent.missed = 0
        self._leave_queue(call)
        out: list[Command] = [
            self._event(
                _K.CONNECT,
                call,
                now,
                {
                    "waited": now - call.enqueued_at,
                    "ring": now - offered_at,
                    "attempt": call.attempts,
                },
                agent_id,
            )
        ]
        self._agent_to(agent, AgentEvent.ANSWER, now, out, call_id=call_id)
        for other, at in others:
            data = {"reason": "answered_elsewhere", "ring": now - at, "by": agent_id}
            out.append(self._event(_K.RINGCANCELED, call, now, data, other.agent_id))
            out.append(CancelOffer(call_id, other.agent_id, "answered_elsewhere"))
        for other, _ in others:
            self._withdraw_offer(other, call_id, now, out)
        return out

    def agent_rejected(self, call_id: str, agent_id: str, now: float, reason: str) -> list[Command]:
        """The agent's phone refused the call (486, 603, another error, unreachable): the agent
        is idle again at the back of the line and is not offered this call again for the queue's
        `retry` seconds; the call goes back to its queue head and the next eligible agent is
        offered it (unless other agents still ring it: ring-all)."""
        self._tick(now)
        call, agent = self._offer_pair(call_id, agent_id, CallEvent.REJECT)
        data = {"reason": reason, "ring": now - call.rings[agent_id][0]}
        out: list[Command] = [self._event(_K.REJECT, call, now, data, agent_id)]
        self._offer_failed(call, agent, CallEvent.REJECT, AgentEvent.REJECT, now, out)
        return out

    def call_ended(self, call_id: str, agent_id: str, now: float) -> list[Command]:
        """A connected call ended (either side hung up). The agent enters wrap-up if the call's
        queue has `wrap_up` > 0 (a timer ends it), else it is idle at once and may be offered
        the longest-waiting call of its queues, even one it did not answer before."""
        self._tick(now)
        call, agent = self._offer_pair(call_id, agent_id, CallEvent.END)
        out: list[Command] = [
            self._event(_K.COMPLETE, call, now, {"talk": now - call.connected_at}, agent_id)
        ]
        self._finish(call, CallEvent.END)
        agent.call_id = None
        if call.spec.wrap_up > 0:
            self._agent_to(agent, AgentEvent.HANGUP, now, out, call_id=call_id)
            agent.wrap_up_serial = self._next_serial()
            self._push_timer(
                now + call.spec.wrap_up, _WRAP_UP_END, agent.agent_id, agent.wrap_up_serial
            )
            self._settle(agent, now, out)
        else:
            self._agent_to(agent, AgentEvent.HANGUP_NO_WRAP_UP, now, out, call_id=call_id)
            self._agent_ready(agent, now, out, fresh=True)
        return out

    # ---------------------------------------------------------------------------------------
    # Timers

    def get_timer(self) -> float | None:
        """The time `handle_timer` must next be called, or None when no timer runs."""
        if self._reload_pending:
            return self._last_now
        while self._timers:
            if self._timer_valid(self._timers[0]):
                return self._timers[0][0]
            heapq.heappop(self._timers)
        return None

    def handle_timer(self, now: float) -> list[Command]:
        """Run every timer due at `now`, earliest first: max wait (`CancelOffer` if ringing,
        then `QueueTimeout`), ring timeout (`CancelOffer`, call back to the queue head, next
        agent offered), wrap-up end (agent idle, may be offered a call), end of a retry window
        (the call, if still waiting, is offered to an eligible idle agent). Also applies a
        pending `replace_specs`. Timers set by this call itself for `now` (retry = 0) are left
        for the next call."""
        self._tick(now)
        out: list[Command] = []
        first_new = self._serial + 1  # timers set from here on belong to the next step
        if self._reload_pending:
            self._apply_reload(now, out)
        deferred: list[_Timer] = []
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)
            if not self._timer_valid(timer):
                continue
            _, kind, seq, key, _ = timer
            if seq >= first_new:
                deferred.append(timer)
            elif kind == _MAX_WAIT:
                self._time_out(self._calls[key], now, out)
            elif kind == _RING_TIMEOUT:
                self._ring_timeout(self._agents[key], now, out)
            elif kind == _RETRY or kind == _WIDEN:
                call = self._calls[key]
                if call.open:
                    self._dispatch_call(call, now, out)
            elif kind == _AGENT_ALERT:
                agent = self._agents[key]
                since = agent.state_since if agent.state_since is not None else now
                data = {"state": agent.state.value, "seconds": now - since}
                if agent.reason and agent.state is AgentState.BUSY:
                    data["reason"] = agent.reason
                out.append(
                    QueueEvent(
                        kind=_K.AGENT_ALERT,
                        call_id=None,
                        agent_id=key,
                        queue=None,
                        at=now,
                        data=data,
                    )  # fmt: skip
                )
            else:
                agent = self._agents[key]
                self._agent_to(agent, AgentEvent.WRAP_UP_END, now, out)
                self._agent_ready(agent, now, out, fresh=True)
        for timer in deferred:
            heapq.heappush(self._timers, timer)
        return out

    # ---------------------------------------------------------------------------------------
    # Views and configuration

    def queue_snapshot(self, queue: str, now: float) -> QueueSnapshot:
        """Waiting and ringing counts, longest wait and agents by state for one queue."""
        q = self._queues.get(queue)
        if q is None:
            raise UnknownQueue(queue)
        agents = {state.value: 0 for state in AgentState}
        for agent_id in q.members:
            agents[self._agents[agent_id].state.value] += 1
        longest = max((now - c.enqueued_at for c in q.calls.values()), default=0.0)
        return QueueSnapshot(
            queue=queue,
            at=now,
            waiting=len(q.calls),
            ringing=len(q.calls) - len(q.waiting),
            longest_wait=longest,
            agents=agents,
            draining=q.draining,
            kpis=_kpis(q.counts),
        )

    def position(self, call_id: str) -> int | None:
        """Where a waiting call stands in its queue (1: next), 0 while an agent rings for
        it, None for a call the engine does not hold (connected, gone)."""
        call = self._calls.get(call_id)
        if call is None or call.state is CallState.CONNECTED:
            return None
        if call.state is CallState.RINGING:
            return 0
        return self._queues[call.queue].position(call)

    def expected_wait(self, queue: str) -> float | None:
        """Seconds a caller joining `queue` may expect to wait: the mean wait of its last
        answered calls (up to 20); None before the first."""
        q = self._queues.get(queue)
        if q is None or not q.recent_waits:
            return None
        return sum(q.recent_waits) / len(q.recent_waits)

    def agent_snapshot(self, agent_id: str) -> AgentSnapshot:
        """The agent's state, since when, busy reason and counts (`UnknownAgent` if none)."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        reason = agent.reason if agent.state in (AgentState.BUSY, AgentState.LOCKED) else ""
        return AgentSnapshot(
            agent.agent_id,
            agent.state.value,
            agent.state_since,
            reason,
            agent.answered,
            agent.missed,
            agent.queues,
        )

    def agent_ids(self) -> list[str]:
        """Every agent the engine knows, in configuration order."""
        return list(self._agents)

    def replace_specs(self, queues: Iterable[QueueSpec], agents: Iterable[AgentSpec]) -> None:
        """Swap in new queue and agent specs (config reload); calls in progress are untouched.

        Validation happens first: on `InvalidSpec` the old specs stay in force. Then:
        - a call keeps the queue spec it was enqueued with (ring timeout, max wait, wrap-up,
          retry);
        - a removed queue that still holds calls drains: no new calls, its agents keep serving
          it until its last call leaves;
        - a removed agent that is ringing or talking finishes that call and is then logged out
          and forgotten; one that is idle or in wrap-up is logged out at the next
          `handle_timer`; a new agent starts logged out (call `agent_available` for it if its
          phone is registered);
        - changed memberships take effect for routing at once.

        This method returns nothing, so the effects that produce commands (logging out removed
        agents, offering waiting calls to agents that joined their queue) wait for the next
        `handle_timer`: `get_timer()` reports a due timer until then.
        """
        queue_specs, agent_specs = validate_specs(queues, agents)
        served = memberships(queue_specs, agent_specs)
        new_queues = {spec.name: spec for spec in queue_specs}
        for name, q in list(self._queues.items()):
            if name in new_queues:
                q.spec = new_queues[name]
                q.draining = False
            elif q.calls:
                q.draining = True
            else:
                del self._queues[name]
        for name, spec in new_queues.items():
            if name not in self._queues:
                self._queues[name] = QueueRecord(spec)
        new_agents = {spec.agent_id: spec for spec in agent_specs}
        for agent_id, agent in list(self._agents.items()):
            a_spec = new_agents.get(agent_id)
            if a_spec is None:
                agent.retired = True
                agent.queues = ()
                if agent.state is AgentState.LOGGED_OUT:
                    del self._agents[agent_id]
                continue
            agent.retired = False
            agent.region = a_spec.region
            serves = served[agent_id]
            draining = tuple(
                name
                for name in agent.queues
                if name in self._queues and self._queues[name].draining and name not in serves
            )
            agent.queues = serves + draining
        for agent_id, a_spec in new_agents.items():
            if agent_id not in self._agents:
                self._agents[agent_id] = AgentRecord(agent_id, served[agent_id], a_spec.region)
        for q in self._queues.values():
            q.members.clear()
            q.order = None
            q.idle.clear()
            q.idle_keys.clear()
            q.scores.clear()
            q.regions.clear()
            q.logged_in = 0
        for agent in self._agents.values():
            a_spec = new_agents.get(agent.agent_id)
            for name in agent.queues:
                q = self._queues[name]
                q.add_member(agent.agent_id, a_spec.score(q.spec.skills) if a_spec else 0)
                if agent.state is not AgentState.LOGGED_OUT:
                    q.logged_in += 1
                    if agent.region is not None:
                        q.regions[agent.region] = q.regions.get(agent.region, 0) + 1
                if agent.state is AgentState.IDLE:
                    q.add_idle(agent.agent_id, agent.idle_since, agent.answered)
        self._reload_pending = True

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
            change = 1 if old is AgentState.LOGGED_OUT else -1
            for name in agent.queues:
                q = self._queues[name]
                q.logged_in += change
                if agent.region is not None:
                    q.regions[agent.region] = q.regions.get(agent.region, 0) + change
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
                    now + min(limits), _AGENT_ALERT, agent.agent_id, agent.state_serial
                )
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

    def _settle(self, agent: AgentRecord, now: float, out: list[Command]) -> bool:
        """Log the agent out if a logout is pending (unregistered during a call, or removed by a
        reload) and it has just left its call; return True if it did."""
        if not (agent.logout_pending or agent.retired):
            return False
        if agent.state in (AgentState.LOGGED_OUT, AgentState.RINGING, AgentState.TALKING):
            return False
        self._agent_to(agent, AgentEvent.UNAVAILABLE, now, out)
        agent.logout_pending = False
        self._widen_for(agent, now, out)
        self._forget_if_retired(agent)
        return True

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
        if preferred is not None and waited < call.spec.sticky_wait:
            chosen = self._agents.get(preferred)
            if chosen is not None and chosen.state is not AgentState.LOGGED_OUT:
                if preferred in q.members:
                    return agent.agent_id == preferred
        region = call.region
        if region is not None and waited < call.spec.region_wait and q.regions.get(region, 0):
            return agent.region == region
        return True

    def _widen_for(self, agent: AgentRecord, now: float, out: list[Command]) -> None:
        """`agent` logged out: calls held for it (sticky) or for its region, which it may
        have been the last one logged in of, may now go to the others. Offer them. Calls for
        it alone leave (agent_unavailable). In a queue with `leave_when_empty` that it leaves
        without agents, its calls leave."""
        agent_id = agent.agent_id
        for name in agent.queues:
            q = self._queues.get(name)
            if q is None:
                continue
            if q.spec.leave_when_empty and not q.logged_in and q.calls:
                for call in sorted(q.calls.values(), key=lambda c: c.key):
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
        agent that can no longer take it (logged out, or not serving the queue since a
        reload) leaves instead (`QueueTimeout` "agent_unavailable")."""
        q = self._queues[call.queue]
        if call.directed is not None and not self._serves(q, call.directed):
            self._time_out(call, now, out, _K.UNAVAILABLE, "agent_unavailable")
            return
        if call.ring_all:
            for agent_id in [key[-1] for key in q.idle if self._may_take(q, call, key[-1], now)]:
                self._offer(call, self._agents[agent_id], now, out)
            return
        agent_id = self._pick(q, call, now)
        if agent_id is not None:
            self._offer(call, self._agents[agent_id], now, out)

    def _serves(self, q: QueueRecord, agent_id: str) -> bool:
        """Whether `agent_id` is logged in and a member of `q` (a call for it may wait)."""
        agent = self._agents.get(agent_id)
        return (
            agent is not None
            and not agent.retired
            and agent.state is not AgentState.LOGGED_OUT
            and agent_id in q.members
        )

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
        self._push_timer(now + call.spec.ring_timeout, _RING_TIMEOUT, agent.agent_id, serial)

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
    ) -> None:
        """No answer or reject: the agent goes idle at the back of the line, the call back to
        its queue head (when no other agent still rings it), and the agent's retry window for
        the call opens (a timer at its end re-dispatches the call if it is still open); the
        call is offered to the next eligible agent first, then the agent may take a call it is
        eligible for."""
        self._agent_to(agent, agent_event, now, out, call_id=call.call_id)
        agent.call_id = None
        del call.rings[agent.agent_id]
        agent.missed += 1
        lock_after = call.spec.lock_after
        locked = bool(lock_after) and agent.missed >= lock_after and not agent.logout_pending
        if locked:
            agent.pending = None
            reason = f"missed {agent.missed} calls in a row"
            self._agent_to(agent, AgentEvent.LOCK, now, out, call_id=call.call_id, reason=reason)
        last = not call.rings
        if last:
            self._requeue(call, call_event)
        until = now + call.spec.retry
        call.record_failure(agent.agent_id, until, self._step)
        self._push_timer(until, _RETRY, call.call_id, call.serial)
        if last:
            self._dispatch_call(call, now, out)
        if not locked:
            self._agent_ready(agent, now, out, fresh=False)

    def _leave_queue(self, call: CallRecord) -> None:
        """The call is no longer in its queue (connected or gone); drop a drained queue."""
        q = self._queues[call.queue]
        del q.calls[call.call_id]
        if q.draining and not q.calls:
            del self._queues[q.name]
            for agent_id in q.members:
                agent = self._agents[agent_id]
                if agent.state is AgentState.IDLE:
                    q.remove_idle(agent.agent_id)
                agent.queues = tuple(name for name in agent.queues if name != q.name)

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
    # Internals: time and reload

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

    def _timer_valid(self, timer: _Timer) -> bool:
        _, kind, _, key, serial = timer
        if kind == _RING_TIMEOUT:  # keyed by the agent ringing
            agent = self._agents.get(key)
            if agent is None or agent.state is not AgentState.RINGING or agent.call_id is None:
                return False
            ringing = self._calls.get(agent.call_id)
            ring = ringing.rings.get(key) if ringing is not None else None
            return ring is not None and ring[1] == serial
        if kind == _AGENT_ALERT:
            agent = self._agents.get(key)
            return (
                agent is not None
                and agent.state in (AgentState.BUSY, AgentState.BREAK)
                and agent.state_serial == serial
            )
        if kind == _WRAP_UP_END:
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

    def _apply_reload(self, now: float, out: list[Command]) -> None:
        """Finish a `replace_specs`: log out removed agents that are idle or in wrap-up, then
        offer open calls (in queue order) to idle agents that can now take them."""
        self._reload_pending = False
        for agent in list(self._agents.values()):
            self._settle(agent, now, out)
        waiting = sorted(
            (call for call in self._calls.values() if call.open), key=lambda call: call.key
        )
        for call in waiting:  # calls for an agent no longer in their queue leave here
            self._dispatch_call(call, now, out)


def _kpis(counts: dict[str, int]) -> QueueKpis:
    """The queue's RPT-3 rates from its counts (see `QueueKpis`)."""
    left = counts["answered"] + counts["abandoned"] + counts["callbacks"] + counts["overflowed"]
    short = counts["abandoned_short"] + counts["callbacks_short"]
    human = counts["answered"] / (left - short) if left - short > 0 else None
    level = counts["answered_in_time"] / left if left else None
    return QueueKpis(
        entered=counts["entered"],
        answered=counts["answered"],
        answered_in_time=counts["answered_in_time"],
        abandoned=counts["abandoned"],
        abandoned_short=counts["abandoned_short"],
        callbacks=counts["callbacks"],
        overflowed=counts["overflowed"],
        human_answer_rate=human,
        service_level=level,
    )
