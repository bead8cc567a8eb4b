"""The ACD engine's inputs about agents: registration, not ready, breaks, ready, lock and
unlock (SPEC ACD-4). `AgentInputs` is the agent half of `acd.Acd`'s public interface; the
routing they lead to (an agent made idle is offered the longest-waiting call of its queues)
is `acd.routing`'s."""

from __future__ import annotations

from acd.agent import AgentEvent, AgentState, next_agent_state
from acd.errors import UnknownAgent
from acd.events import CancelOffer, Command, QueueEventKind
from acd.queue import CallEvent, next_call_state
from acd.routing import Router

_K = QueueEventKind


class AgentInputs(Router):
    """Public inputs about agents (see `acd.engine` for the rules they follow)."""

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

    def agent_state(self, agent_id: str) -> AgentState:
        """The agent's current state."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent.state
