"""The ACD engine's inputs about agents: registration, log in and out, not ready, breaks,
ready, lock and unlock (SPEC ACD-4), direct calls outside the queues, and hold.
`AgentInputs` is the agent half of `acd.Acd`'s public interface; the routing they lead to (an
agent made idle is offered the longest-waiting call of its queues) is `acd.routing`'s.

Requests asked while the agent rings or is on a call (not ready, break, ready, logout; on a
direct call also lock and unlock) wait for the end of that call: each is checked against the
state the agent returns to, and changes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from acd.agent import ON_CALL, AgentEvent, AgentRecord, AgentState, next_agent_state
from acd.errors import (
    AgentBusy,
    CannotServe,
    IllegalTransition,
    NotLoggedIn,
    NotOffered,
    NotOnDirectCall,
    NotRegistered,
    UnknownAgent,
)
from acd.events import CancelOffer, Command, QueueEvent, QueueEventKind
from acd.queue import CallEvent, CallState, next_call_state
from acd.routing import Router

_K = QueueEventKind
_S = AgentState

#: What a deferred request (`AgentRecord.pending`) makes of an agent that becomes idle.
_PENDING_STATE = {
    AgentEvent.NOT_READY: _S.BUSY,
    AgentEvent.BREAK: _S.BREAK,
    AgentEvent.LOCK: _S.LOCKED,
}
_PENDING_EVENT = {state: event for event, state in _PENDING_STATE.items()}


class AgentInputs(Router):
    """Public inputs about agents (see `acd.engine` for the rules they follow)."""

    def agent_available(self, agent_id: str, now: float) -> list[Command]:
        """The agent's phone registered. A logged-out agent becomes idle and may at once be
        offered the longest-waiting call of its queues; in any other state nothing changes (a
        REGISTER refresh), except that a logout pending from an unregister during a call is
        forgotten. An agent that logged itself out (`agent_logout`) stays logged out until
        `agent_login`."""
        agent = self._live_agent(agent_id, now)
        agent.registered = True
        out: list[Command] = []
        if agent.signed_out:  # logged out by the agent's choice: registering is no login
            agent.logout_pending = False
            return out
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
        on a call (talking, on hold, a direct call): logged out when the call ends. Calls
        waiting for this agent alone leave (`QueueTimeout` "agent_unavailable"). An agent's
        own logout (`agent_logout`) outlasts this: registering again does not log it in."""
        self._tick(now)
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        agent.registered = False
        out: list[Command] = []
        if agent.state in (AgentState.TALKING, AgentState.HOLD, AgentState.DIRECT_CALL):
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
        self._logged_out(agent, now, out)
        return out

    def agent_logout(self, agent_id: str, now: float) -> list[Command]:
        """The agent logs out while its phone stays registered (feature code, CLI): it is
        logged out and offered nothing, as if its phone had unregistered (calls waiting for it
        alone leave; a queue with `leave_when_empty` it was the last agent of sends its calls
        to overflow), and stays so, across unregistering and registering again, until
        `agent_login`. Asked while ringing or on a call, it applies when that is over (like
        not ready). Refused: `NotRegistered` when the phone is not registered, `NotLoggedIn`
        when the agent is logged out already or logs out at the end of its call."""
        agent = self._live_agent(agent_id, now)
        state = agent.state
        if not agent.registered:
            raise NotRegistered(agent_id, state.value, AgentEvent.LOGOUT.value)
        if agent.signed_out or state is AgentState.LOGGED_OUT:
            raise NotLoggedIn(agent_id, state.value, AgentEvent.LOGOUT.value)
        next_agent_state(agent_id, state, AgentEvent.LOGOUT)
        agent.signed_out = True
        out: list[Command] = []
        if state not in ON_CALL:
            self._settle(agent, now, out)
        return out

    def agent_login(
        self, agent_id: str, now: float, queues: Sequence[str] | None = None
    ) -> list[Command]:
        """The agent logs in (again, after `agent_logout`), to `queues` or, None, to every
        queue it may serve (those it lists, those whose skills it meets): idle, and offered
        the longest-waiting call of those queues at once. A logout still waiting for the end
        of a call is withdrawn.

        The choice holds until its next login (without `queues`: all again) or logout, across
        its phone unregistering and registering, and through reloads that leave it one of
        them (a reload leaving none logs it out, as `agent_logout` would). For an agent
        logged in already it applies at once, whatever its state: its idle place leaves the
        queues it is no longer logged in to, and their waiting calls are no longer offered
        to it (those held for it, sticky, go to the others; those for it alone leave,
        agent_unavailable; a `leave_when_empty` queue it was the last agent logged in to
        sends its calls to overflow, empty); a ring in progress goes on, and its call is
        answered, fails or leaves as any other; an idle agent is offered the first call of a
        queue it joined at once. Queue-log LOGIN (data: queues, joined, left) for each login
        that logs the agent in, names queues or changes them; a login of an agent logged in
        already to all its queues, naming none, changes nothing.

        Refused, with nothing changed: `NotRegistered` when its phone is not registered,
        `CannotServe` when `queues` is empty or names a queue it may not serve (or one
        draining after a reload)."""
        agent = self._live_agent(agent_id, now)
        state = agent.state
        if not agent.registered:
            raise NotRegistered(agent_id, state.value, AgentEvent.LOGIN.value)
        chosen = None if queues is None else self._chosen(agent, queues)
        next_agent_state(agent_id, state, AgentEvent.LOGIN)
        agent.signed_out = False
        agent.chosen = chosen
        out: list[Command] = []
        if state is AgentState.LOGGED_OUT:
            agent.queues = agent.working_queues()  # logged out: counted nowhere yet
            out.append(self._login_event(agent, (), agent.queues, now))
            self._agent_to(agent, AgentEvent.LOGIN, now, out)
            self._agent_ready(agent, now, out, fresh=True)
            return out
        before, after = agent.queues, agent.working_queues()
        if chosen is not None or after != before:
            out.append(self._login_event(agent, before, after, now))
            self._move_queues(agent, after, now, out)
        return out

    def _chosen(self, agent: AgentRecord, queues: Sequence[str]) -> frozenset[str]:
        """The queues a login names, checked against those the agent may serve."""
        if isinstance(queues, str):
            raise TypeError("queues: a sequence of queue names, not one string")
        names = tuple(dict.fromkeys(queues))
        may_serve = self._may_serve(agent)
        wrong = tuple(name for name in names if name not in may_serve)
        if wrong or not names:
            raise CannotServe(agent.agent_id, wrong, may_serve)
        return frozenset(names)

    def _may_serve(self, agent: AgentRecord) -> tuple[str, ...]:
        """The queues a login of the agent may name: those it serves, draining ones left out."""
        return tuple(name for name in agent.serves if not self._queues[name].draining)

    def _login_event(
        self, agent: AgentRecord, before: tuple[str, ...], after: tuple[str, ...], now: float
    ) -> QueueEvent:
        data: dict[str, object] = {
            "queues": list(after),
            "joined": [name for name in after if name not in before],
            "left": [name for name in before if name not in after],
        }
        return QueueEvent(
            kind=_K.LOGIN, call_id=None, agent_id=agent.agent_id, queue=None, at=now, data=data
        )

    def _move_queues(
        self, agent: AgentRecord, after: tuple[str, ...], now: float, out: list[Command]
    ) -> None:
        """A logged-in agent works in `after` from now on (see `agent_login`)."""
        before = agent.queues
        left = tuple(name for name in before if name not in after)
        joined = tuple(name for name in after if name not in before)
        idle = agent.state is AgentState.IDLE
        if idle:
            for name in left:
                self._queues[name].remove_idle(agent.agent_id)
            for name in joined:
                self._queues[name].add_idle(agent.agent_id, agent.idle_since, agent.answered)
        self._count_logged_in(agent, left, -1)
        self._count_logged_in(agent, joined, 1)
        agent.queues = after
        self._widen_for(agent, left, now, out)
        if agent.state is AgentState.IDLE:  # not fresh: its retry windows hold
            self._agent_ready(agent, now, out, fresh=False)

    def agent_not_ready(self, agent_id: str, now: float, reason: str = "") -> list[Command]:
        """The agent goes busy (not ready) with `reason` (a reason code): at once from idle,
        wrap-up or a break; asked while ringing or on a call, when that call is over."""
        return self._agent_request(agent_id, AgentEvent.NOT_READY, now, reason)

    def agent_break(self, agent_id: str, now: float) -> list[Command]:
        """The agent goes on a break (at once, or when its call is over; see not ready)."""
        return self._agent_request(agent_id, AgentEvent.BREAK, now, "")

    def agent_ready(self, agent_id: str, now: float) -> list[Command]:
        """The agent is ready: from busy, a break or wrap-up (ending it early) it is idle and
        may be offered the longest-waiting call of its queues; while ringing or on a call it
        withdraws a not-ready or break asked before (on a direct call: the busy or break it
        had before it). Refused (`IllegalTransition`) when locked or logged out."""
        return self._agent_request(agent_id, AgentEvent.READY, now, "")

    def agent_lock(self, agent_id: str, now: float, reason: str = "supervisor") -> list[Command]:
        """A supervisor locks the agent (not while ringing, talking or on hold; on a direct
        call, when that call ends)."""
        return self._agent_request(agent_id, AgentEvent.LOCK, now, reason)

    def agent_unlock(self, agent_id: str, now: float) -> list[Command]:
        """A supervisor unlocks a locked agent: it is idle and may be offered a call (on a
        direct call it began locked: when that call ends)."""
        return self._agent_request(agent_id, AgentEvent.UNLOCK, now, "")

    def _agent_request(
        self, agent_id: str, event: AgentEvent, now: float, reason: str
    ) -> list[Command]:
        agent = self._live_agent(agent_id, now)
        out: list[Command] = []
        state = agent.state
        next_agent_state(agent_id, state, event)  # IllegalTransition before any change
        if state in ON_CALL:  # for the end of the call, judged by the state it returns to
            back = self._returns_to(agent)
            try:
                returns_to = next_agent_state(agent_id, back, event)
            except IllegalTransition:
                detail = f"it returns to {back.value} when its call is over"
                raise IllegalTransition(
                    "agent", agent_id, state.value, event.value, detail
                ) from None
            agent.pending = None if returns_to is AgentState.IDLE else (event, reason)
            return out
        self._agent_to(agent, event, now, out, reason=reason)
        if agent.state is AgentState.IDLE and state is not AgentState.IDLE:
            self._agent_ready(agent, now, out, fresh=True)
        return out

    def _returns_to(self, agent: AgentRecord) -> AgentState:
        """The state an agent ringing or on a call takes when it is over (before wrap-up)."""
        if agent.pending is None:
            return AgentState.IDLE
        return _PENDING_STATE[agent.pending[0]]

    def _return_later(self, agent: AgentRecord) -> None:
        """The agent takes a call while busy, on a break or locked: it is to return to that
        state (with its reason) when the call is over. Idle and wrap-up leave nothing; a
        request still pending from the call before wrap-up stays."""
        event = _PENDING_EVENT.get(agent.state)
        if event is not None:
            agent.pending = (event, "" if event is AgentEvent.BREAK else agent.reason)

    # -- direct calls and hold --------------------------------------------------------------

    def direct_call_started(self, agent_id: str, call_id: str, now: float) -> list[Command]:
        """The agent is on a call outside the queues (an internal call between agents, its
        own outbound call, a callback), `call_id` being call control's id of it: it shows
        DIRECT_CALL and is offered no queue call until `direct_call_ended`. Allowed from
        idle, wrap-up (which ends), busy, a break and locked; the agent returns to that state
        afterwards. Refused: `NotLoggedIn` for a logged-out agent (or one logging out at the
        end of its call), `AgentBusy` while it rings for a call or is on one (answer such a
        call 486 Busy Here)."""
        agent = self._live_agent(agent_id, now)
        state = agent.state
        event = AgentEvent.DIRECT_START
        if state in ON_CALL:
            raise AgentBusy(agent_id, state.value, event.value)
        if state is AgentState.LOGGED_OUT or agent.signed_out:
            raise NotLoggedIn(agent_id, state.value, event.value)
        next_agent_state(agent_id, state, event)
        self._return_later(agent)
        out: list[Command] = []
        self._agent_to(agent, event, now, out, call_id=call_id)
        agent.direct_call_id = call_id
        agent.direct_calls += 1
        return out

    def direct_call_ended(self, agent_id: str, call_id: str, now: float) -> list[Command]:
        """The agent's direct call ended: it returns to what it was before (idle, offered the
        longest-waiting call of its queues at once; busy with its reason; a break; locked;
        idle after a wrap-up) or to what it asked for during the call (not ready, a break,
        ready, a logout; lock and unlock by a supervisor); logged out if its phone
        unregistered meanwhile. Refused (`NotOnDirectCall`) when `call_id` is not its direct
        call."""
        self._tick(now)
        agent = self._agents.get(agent_id)  # a reload may have removed it during the call
        if agent is None:
            raise UnknownAgent(agent_id)
        if agent.state is not AgentState.DIRECT_CALL or agent.direct_call_id != call_id:
            raise NotOnDirectCall(agent_id, call_id, agent.state.value, agent.direct_call_id)
        out: list[Command] = []
        self._agent_to(agent, AgentEvent.DIRECT_END, now, out, call_id=call_id)
        agent.direct_call_id = None
        self._agent_ready(agent, now, out, fresh=True)
        return out

    def agent_hold(self, agent_id: str, call_id: str, now: float) -> list[Command]:
        """The agent's phone put its queue call on hold: HOLD until `agent_resume` (or the
        call's end, `call_ended`). Held longer than the call's queue's `hold_alert`, the
        agent raises one AGENT_ALERT. Refused: `NotOffered` when the agent is not talking on
        that call, `IllegalTransition` when it holds it already."""
        return self._hold_input(agent_id, call_id, AgentEvent.HOLD, now)

    def agent_resume(self, agent_id: str, call_id: str, now: float) -> list[Command]:
        """The agent takes its held call back: TALKING again. Refused like `agent_hold`
        (`IllegalTransition` when the call is not on hold)."""
        return self._hold_input(agent_id, call_id, AgentEvent.RESUME, now)

    def _hold_input(
        self, agent_id: str, call_id: str, event: AgentEvent, now: float
    ) -> list[Command]:
        self._tick(now)
        call = self._call(call_id)
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        if call.state is not CallState.CONNECTED or call.agent_id != agent_id:
            with_agent = call.agent_id or ", ".join(call.rings) or None
            raise NotOffered(call_id, agent_id, call.state.value, event.value, with_agent)
        next_agent_state(agent_id, agent.state, event)
        out: list[Command] = []
        self._agent_to(agent, event, now, out, call_id=call_id)
        return out

    def agent_state(self, agent_id: str) -> AgentState:
        """The agent's current state."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent.state
