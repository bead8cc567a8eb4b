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
  in to the call's queue when it arrives (it never joins), or logged out of it while it
  waits (its logout, a login naming other queues, a reload).

- An agent works in the queues its last login named (`agent_login(queues=…)`, e.g. per
  shift) or, without a list, in every queue it may serve. Only those count: its idle place,
  the agents logged in to a queue (`leave_when_empty`, `region_wait`), the agent a sticky
  call waits for, the agent a call for one named agent waits for (one not logged in to the
  call's queue refuses it, agent_unavailable). A login of an agent logged in already
  changes its queues at once; a ring in progress finishes as usual.

- Only an IDLE agent is offered a call: not one ringing, talking, holding its call (HOLD), on
  a direct call outside the queues (DIRECT_CALL: `direct_call_started`), or logged out —
  by its phone unregistering or by its own `agent_logout`, which lasts until `agent_login`.
  A pickup (`picked_up`) takes a ringing call for another agent: its rings are withdrawn
  ("picked_up", no miss for those agents) and it is connected as if answered.

Invariant after every method returns: no open call (waiting, or ringing all) has an idle agent
in its queue that is eligible for it at `now`. Exceptions, each with a timer due at once
(`get_timer() <= now`): an agent that failed the call in this step with `retry` = 0, and
`replace_specs` until the next `handle_timer` (see there).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from acd.agent import ON_CALL, AgentEvent, AgentRecord, AgentState, next_agent_state
from acd.agent_inputs import AgentInputs
from acd.errors import AgentBusy, DuplicateCall, NotInQueue, NotLoggedIn, UnknownAgent, UnknownQueue
from acd.events import (
    AgentSnapshot,
    CancelOffer,
    Command,
    QueueEvent,
    QueueEventKind,
    QueueKpis,
    QueueSnapshot,
    QueueTimeout,
)
from acd.queue import (
    SHORT_ABANDON_SECONDS,
    CallEvent,
    CallRecord,
    CallState,
    QueueRecord,
    next_call_state,
)
from acd.routing import (
    TIMER_AGENT_ALERT,
    TIMER_MAX_WAIT,
    TIMER_RETRY,
    TIMER_RING_TIMEOUT,
    TIMER_WIDEN,
    TIMER_WRAP_UP_END,
    Timer,
)
from acd.spec import AgentSpec, QueueSpec, memberships, validate_specs

_K = QueueEventKind

#: Refusals that say the agent's device cannot take calls as it is, with the busy reason the
#: agent gets: offering it the next call would fail the same way (and ring the agent's phone
#: every `retry` seconds when `lock_after` is off). "sdp": the phone answered with media the
#: node cannot use (no G.711, no SRTP where it must, an address it cannot reach); 488 and
#: 606: the phone refused the node's offer (RFC 3261 §21.4.26, §21.6.4).
DEVICE_FAULTS = {
    "sdp": "phone media unusable",
    "488": "phone refused the node's media",
    "606": "phone refused the node's media",
}


class Acd(AgentInputs):
    """Automatic call distribution over a set of queues and agents (see the module docstring
    for the routing rules): `Acd(queues, agents, seed=0)`. Agents start logged out.

    The inputs about agents are in `acd.agent_inputs`, the records and routing internals in
    `acd.routing`; the inputs about calls, the timers, the views and reloads are here."""

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
        it holds up none of the queue's other calls. `queue` must be one the agent may serve
        (it is the queue the call counts in): `NotInQueue` otherwise, `UnknownAgent` for an
        agent not configured. An agent not logged in to `queue` (logged out, or its login
        named other queues) refuses the call at once (`QueueTimeout` "agent_unavailable",
        queue-log UNAVAILABLE, counted as overflowed like "full" and "empty"; call control
        picks a queue of the agent's snapshot, `AgentSnapshot.queues`). An agent logged in
        to it that is busy (ringing, talking, wrap-up, not ready, a break, locked) is waited
        for until max wait. A no-answer or reject puts the call back to wait for the same
        agent, offered again after the queue's `retry`; the agent logging out, or out of
        `queue`, while the call waits sends it away ("agent_unavailable")."""
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
            if not self._serves(q, agent):
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
        self._push_timer(now + q.spec.max_wait, TIMER_MAX_WAIT, call_id, call.serial)
        for window in (
            q.spec.sticky_wait if preferred else 0.0,
            q.spec.region_wait if region else 0.0,
        ):
            if window > 0:  # the end of each window widens who may take the call
                self._push_timer(now + window, TIMER_WIDEN, call_id, call.serial)
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
        offered_at, _ = call.rings.pop(agent_id)
        data: dict[str, object] = {
            "waited": now - call.enqueued_at,
            "ring": now - offered_at,
            "attempt": call.attempts,
        }
        out: list[Command] = [self._event(_K.CONNECT, call, now, data, agent_id)]
        others = self._connect(call, agent, CallEvent.ANSWER, now)
        self._agent_to(agent, AgentEvent.ANSWER, now, out, call_id=call_id)
        self._withdraw_rings(call, others, "answered_elsewhere", agent_id, now, out)
        return out

    def picked_up(self, call_id: str, agent_id: str, now: float) -> list[Command]:
        """`agent_id` picks up a call ringing at other agents (call pickup: directed, of the
        call ringing at one agent, `ringing_at`; or group, of the one ringing longest in the
        agent's queues, `ringing_for`). Every ring of the call is withdrawn (`CancelOffer`
        "picked_up", queue-log RINGCANCELED; those agents are idle again with their place
        kept and no miss counted, each offered its next call) and the agent talks on the call
        as if it had been offered and answered (queue-log PICKUP; `agent_hold`,
        `call_ended` … follow). The agent may be idle, in wrap-up (which ends), busy or on a
        break (to which it returns when the call is over) and need not serve the call's
        queue. Refused, with nothing changed: `UnknownCall`; `IllegalTransition` when the
        call is not ringing (waiting, or connected already) or the agent is locked;
        `NotLoggedIn`; `AgentBusy` when the agent rings for a call or is on one."""
        agent = self._live_agent(agent_id, now)
        call = self._call(call_id)
        next_call_state(call_id, call.state, CallEvent.PICKUP)
        state = agent.state
        if state in ON_CALL:
            raise AgentBusy(agent_id, state.value, AgentEvent.PICKUP.value)
        if state is AgentState.LOGGED_OUT or agent.signed_out:
            raise NotLoggedIn(agent_id, state.value, AgentEvent.PICKUP.value)
        next_agent_state(agent_id, state, AgentEvent.PICKUP)  # not locked
        self._return_later(agent)
        first_ring = min(offered_at for offered_at, _ in call.rings.values())
        data = {
            "by": agent_id,
            "from": list(call.rings),
            "waited": now - call.enqueued_at,
            "ring": now - first_ring,
        }
        out: list[Command] = [self._event(_K.PICKUP, call, now, data, agent_id)]
        others = self._connect(call, agent, CallEvent.PICKUP, now)
        self._agent_to(agent, AgentEvent.PICKUP, now, out, call_id=call_id)
        agent.call_id = call_id
        self._withdraw_rings(call, others, "picked_up", agent_id, now, out)
        return out

    def ringing_at(self, agent_id: str) -> str | None:
        """The call ringing at `agent_id` (for a directed pickup of it), None if none."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent.call_id if agent.state is AgentState.RINGING else None

    def ringing_for(self, agent_id: str) -> str | None:
        """The call a group pickup by `agent_id` takes: of the calls ringing at other agents
        sharing one of the queues it may serve (its pickup group, whatever queues a login
        chose), the one whose ring there began first (ties: queue order); None if none
        rings."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        best: tuple[float, tuple[int, int, str]] | None = None
        for name in agent.serves:
            for member in self._queues[name].members:
                other = self._agents[member]
                if member == agent_id or other.state is not AgentState.RINGING:
                    continue
                assert other.call_id is not None
                call = self._calls[other.call_id]
                ring = (call.rings[member][0], call.key)
                if best is None or ring < best:
                    best = ring
        return None if best is None else best[1][2]

    def agent_rejected(self, call_id: str, agent_id: str, now: float, reason: str) -> list[Command]:
        """The agent's phone refused the call (486, 603, another error, unreachable): the agent
        is idle again at the back of the line and is not offered this call again for the queue's
        `retry` seconds; the call goes back to its queue head and the next eligible agent is
        offered it (unless other agents still ring it: ring-all). A refusal in `DEVICE_FAULTS`
        makes the agent busy with its reason instead of idle."""
        self._tick(now)
        call, agent = self._offer_pair(call_id, agent_id, CallEvent.REJECT)
        data = {"reason": reason, "ring": now - call.rings[agent_id][0]}
        out: list[Command] = [self._event(_K.REJECT, call, now, data, agent_id)]
        fault = DEVICE_FAULTS.get(reason, "")
        self._offer_failed(call, agent, CallEvent.REJECT, AgentEvent.REJECT, now, out, fault)
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
                now + call.spec.wrap_up, TIMER_WRAP_UP_END, agent.agent_id, agent.wrap_up_serial
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
        deferred: list[Timer] = []
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)
            if not self._timer_valid(timer):
                continue
            _, kind, seq, key, _ = timer
            if seq >= first_new:
                deferred.append(timer)
            elif kind == TIMER_MAX_WAIT:
                self._time_out(self._calls[key], now, out)
            elif kind == TIMER_RING_TIMEOUT:
                self._ring_timeout(self._agents[key], now, out)
            elif kind == TIMER_RETRY or kind == TIMER_WIDEN:
                call = self._calls[key]
                if call.open:
                    self._dispatch_call(call, now, out)
            elif kind == TIMER_AGENT_ALERT:
                out.append(self._agent_alert(self._agents[key], now))
            else:
                agent = self._agents[key]
                self._agent_to(agent, AgentEvent.WRAP_UP_END, now, out)
                self._agent_ready(agent, now, out, fresh=True)
        for timer in deferred:
            heapq.heappush(self._timers, timer)
        return out

    def _agent_alert(self, agent: AgentRecord, now: float) -> QueueEvent:
        """AGENT_ALERT: the agent is busy or on a break longer than its queues' `busy_alert`,
        or holds its call longer than the call's queue's `hold_alert` (the event names that
        call and queue)."""
        since = agent.state_since if agent.state_since is not None else now
        data: dict[str, object] = {"state": agent.state.value, "seconds": now - since}
        if agent.reason and agent.state is AgentState.BUSY:
            data["reason"] = agent.reason
        call_id = queue = None
        if agent.state is AgentState.HOLD and agent.call_id is not None:
            call_id, queue = agent.call_id, self._calls[agent.call_id].queue
        return QueueEvent(
            kind=_K.AGENT_ALERT, call_id=call_id, agent_id=agent.agent_id, queue=queue, at=now,
            data=data,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------------
    # Views and configuration

    def queue_snapshot(self, queue: str, now: float) -> QueueSnapshot:
        """Waiting and ringing counts, longest wait and agents by state for one queue (an
        agent logged in to other queues only counts as logged out here)."""
        q = self._queues.get(queue)
        if q is None:
            raise UnknownQueue(queue)
        agents = {state.value: 0 for state in AgentState}
        for agent_id in q.members:
            agent = self._agents[agent_id]
            state = agent.state if queue in agent.queues else AgentState.LOGGED_OUT
            agents[state.value] += 1
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
        """The agent's state, since when, busy reason, counts, the queues it is logged in to
        and those it may serve, registration and own logout (`UnknownAgent` if none)."""
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
            registered=agent.registered,
            signed_out=agent.signed_out,
            direct_calls=agent.direct_calls,
            may_serve=agent.serves,
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
        - changed memberships take effect for routing at once; an agent whose last login named
          queues keeps those of them it may still serve, and one left with none is logged
          out as by `agent_logout` (at the next `handle_timer`, or when its call is over;
          AGENT_STATE reason "a reload left none of its chosen queues");
        - a `leave_when_empty` queue the reload left without agents logged in sends its
          waiting calls to overflow ("empty") at the next `handle_timer`.

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
                agent.queues = agent.serves = ()
                if agent.state is AgentState.LOGGED_OUT:
                    del self._agents[agent_id]
                continue
            agent.retired = False
            agent.region = a_spec.region
            serves = served[agent_id]
            draining = tuple(
                name
                for name in agent.serves
                if name in self._queues and self._queues[name].draining and name not in serves
            )
            agent.serves = serves + draining
            if agent.chosen is not None:
                self._narrow_choice(agent, agent.chosen, serves, draining)
            agent.queues = agent.working_queues()
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
            for name in agent.serves:
                q = self._queues[name]
                q.add_member(agent.agent_id, a_spec.score(q.spec.skills) if a_spec else 0)
            if agent.state is not AgentState.LOGGED_OUT:
                self._count_logged_in(agent, agent.queues, 1)
            if agent.state is AgentState.IDLE:
                for name in agent.queues:
                    self._queues[name].add_idle(agent.agent_id, agent.idle_since, agent.answered)
        self._reload_pending = True

    def _narrow_choice(
        self,
        agent: AgentRecord,
        chosen: frozenset[str],
        serves: tuple[str, ...],
        draining: tuple[str, ...],
    ) -> None:
        """A reload: the queues the agent's login chose become those of them it may still
        serve (and draining ones it keeps serving until they empty). None left: it logs out
        as by its own logout, at once if it is logged out, else at `_apply_reload` or the
        end of its call (it works in no queue meanwhile)."""
        kept = chosen.intersection(serves)
        if kept:
            agent.chosen = kept | chosen.intersection(draining)
            return
        agent.signed_out = True
        agent.chosen = None if agent.state is AgentState.LOGGED_OUT else frozenset()

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
