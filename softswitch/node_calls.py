"""Calls the node places itself (SPEC ACD-7, ACD-8), a part of `Switch`: `dial_callback`
— a callback task dialled for an agent, when an operator asks or by the queue's own
dialler (`callback_dial` in queues.yaml, `dial_due_callbacks`) — and `supervise` — a
supervisor's monitor, whisper or barge started from the CLI or the API rather than by a
feature code. Each rings the agent's (supervisor's) phone first; see
`softswitch/call/node_calls.py` for the call itself.

Everything that can be known before the call is checked here and refused with a clear
`ValueError` (or the ACD's `AcdError`), so `hotline callbacks dial` and `hotline agent
monitor` say at once why nothing happens; what changes while the phone rings (the
supervised call ends) is heard on the phone (three low beeps).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from acd import AcdError, NotLoggedIn
from softswitch.call import events as ev
from softswitch.call.node_calls import RING_TIMEOUT, NodeCallApp
from softswitch.call.phone_apps import SUPERVISE_FEATURES, CallbackApp, SuperviseApp

if TYPE_CHECKING:
    from acd import Acd
    from softswitch.call.control import CallControl
    from softswitch.cdr import CdrStore
    from softswitch.config import Agent, Config
    from softswitch.sip.location import LocationService

log = logging.getLogger("hotline.switch")

#: How far back the callback list is read for a callback task (seconds).
CALLBACK_DAYS = 7 * 86400
#: Seconds between two looks of the dialler for callback tasks due.
CALLBACK_CHECK = 5.0
#: Routes of the calls that are callback attempts.
CALLBACK_ROUTES = ("phone:callback", "node:callback")


class NodeCalls:
    """The switch's calls on an operator's request (a mixin of `softswitch.switch.Switch`)."""

    config: Config
    control: CallControl
    acd: Acd
    location: LocationService
    _cdr: CdrStore | None
    _now: float
    _callbacks_at: float = 0.0  # when the dialler looks next
    _dial_config: Config | None = None  # the configuration `_dials` was read from
    _dials = False  # some queue of it has `callback_dial`

    def callback_task(self, number: str) -> dict[str, Any] | None:
        """The open callback task of `number` in the last week (the CDR store's list), or
        None (no task, no store, or the store failed: logged)."""
        if self._cdr is None:
            return None
        since = self.control.wall(self._now) - CALLBACK_DAYS
        try:
            return next((t for t in self._cdr.callback_list(since) if t["caller"] == number), None)
        except Exception as exc:  # a broken CDR database must not stop the phone
            log.error("callback list lookup failed: %s", exc)
            return None

    def _callback_open(self, number: str) -> bool:
        """Whether `number` is on the callback list of the last week (`*5` on a phone)."""
        return self.callback_task(number) is not None

    def dial_callback(self, number: str, agent_id: str, now: float) -> str:
        """The node dials callback task `number` for agent `agent_id`: it rings the agent's
        phone (auto-answered as a queue call of the task's queue when the agent is), then
        the caller through the first outbound trunk as the hotline. The attempt and its
        outcome join the task like a `*5` from the phone. Returns the call's id."""
        task = self.callback_task(number)
        if task is None:
            self._reachable(agent_id, now)  # an unknown agent is the first thing to say
            raise ValueError(f"no open callback task for {number}")
        return self._dial_task(task, agent_id, now, by="operator")

    def _dial_task(self, task: dict[str, Any], agent_id: str, now: float, by: str) -> str:
        config = self.config
        agent = self._reachable(agent_id, now)
        trunk = config.outbound_trunk()
        if trunk is None:
            raise ValueError("no trunk places outbound calls (`outbound` and `caller_id`)")
        number = task["caller"]
        app = CallbackApp(number, trunk.name)
        queue = task["queue"] or ""
        spec = config.queue(queue) if queue else None
        ring = float(spec.ring_timeout) if spec is not None else RING_TIMEOUT
        variables = {"callback_call": task["call_id"]}
        call_id = self._node_call(
            agent, NodeCallApp(agent.id, app, queue, ring), number, "node:callback", variables,
            now,
        )  # fmt: skip
        data = {"number": number, "task": task["call_id"], "by": by}
        self.control.bus.publish(
            ev.QueueLogged(
                self.control.wall(now), call_id, queue or None, agent.id, "CALLBACK_DIAL", data
            )  # fmt: skip
        )
        log.info("call=%s the node dials callback %s for agent %s (%s)", call_id, number,
                 agent.id, by)  # fmt: skip
        return call_id

    # --- the queues' own dialler (`callback_dial`) -----------------------------------------
    def callback_timer(self) -> float | None:
        """When the dialler looks for tasks due next; None when no queue has one (asked
        after every input: the configuration is looked at once)."""
        config = self.config
        if config is not self._dial_config:
            self._dial_config = config
            self._dials = any(q.callback_dial for q in config.queues)
        if not self._dials or self._cdr is None:
            return None
        return self._callbacks_at

    def dial_due_callbacks(self, now: float) -> None:
        """Every `CALLBACK_CHECK` s: for each queue with `callback_dial` that has an idle
        agent and no caller waiting, its oldest tasks due (fewer attempts than allowed, the
        last one `retry` s ago, none under way) are dialled, one per idle agent, longest
        idle first."""
        if self.callback_timer() is None or now < self._callbacks_at:
            return
        self._callbacks_at = now + CALLBACK_CHECK
        wall = self.control.wall(now)
        tasks: list[dict[str, Any]] | None = None
        busy = {s.called for s in self.control.sessions.values() if s.route in CALLBACK_ROUTES}
        for queue in self.config.queues:
            rule = queue.callback_dial
            if rule is None:
                continue
            try:
                snap = self.acd.queue_snapshot(queue.name, now)
            except AcdError:
                continue  # not in the engine (a reload in progress)
            if snap.waiting or not snap.agents.get("idle"):
                continue
            if tasks is None:
                assert self._cdr is not None
                oldest = max(q.callback_dial.hours for q in self.config.queues if q.callback_dial)
                try:
                    tasks = self._cdr.callback_list(wall - oldest * 3600)
                except Exception as exc:  # a broken CDR database must not stop the node
                    log.error("callback dialler: the callback list failed: %s", exc)
                    return
            due = [
                t
                for t in tasks
                if t["queue"] == queue.name
                and t["caller"] not in busy
                and t["at"] >= wall - rule.hours * 3600
                and t["attempts"] < rule.attempts
                and (t["last_attempt"] is None or t["last_attempt"]["at"] <= wall - rule.retry)
            ]
            for task, agent_id in zip(due, self._idle_agents(queue.name), strict=False):
                try:
                    self._dial_task(task, agent_id, now, by="dialler")
                except (AcdError, ValueError) as exc:
                    log.warning("callback dialler: %s for agent %s not dialled: %s",
                                task["caller"], agent_id, exc)  # fmt: skip
                busy.add(task["caller"])

    def _idle_agents(self, queue: str) -> list[str]:
        """The queue's idle agents with a phone to ring, longest idle first."""
        idle = []
        for agent_id in self.acd.agent_ids():
            snap = self.acd.agent_snapshot(agent_id)
            if snap.state != "idle" or queue not in snap.queues:
                continue
            agent = self.config.agent(agent_id)
            if agent is None or (agent.mobile is None and not snap.registered):
                continue
            idle.append((snap.since or 0.0, agent_id))
        return [agent_id for _, agent_id in sorted(idle)]

    def supervise(self, supervisor: str, agent_id: str, mode: str, now: float) -> str:
        """Ring supervisor `supervisor`'s phone and, once answered, `mode` (monitor,
        whisper, barge) agent `agent_id`'s call, as `*31`/`*32`/`*33` would; keys 1-3 change
        the mode. Returns the supervisor's call id."""
        if mode not in SUPERVISE_FEATURES:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(SUPERVISE_FEATURES)})")
        sup = self._reachable(supervisor, now)
        if "supervise" not in sup.features:
            raise ValueError(f"agent {supervisor} is not a supervisor (features: [supervise])")
        if self.config.agent(agent_id) is None:
            raise ValueError(f"no agent {agent_id}")
        if agent_id == supervisor:
            raise ValueError("a supervisor cannot supervise itself")
        if self.control._talking(agent_id) is None:
            raise ValueError(f"agent {agent_id} is on no call the node can mix")
        app = NodeCallApp(sup.id, SuperviseApp(agent_id, mode))
        call_id = self._node_call(sup, app, agent_id, f"node:{mode}", {}, now)
        log.info("call=%s supervisor %s: %s agent %s", call_id, supervisor, mode, agent_id)
        return call_id

    def _reachable(self, agent_id: str, now: float) -> Agent:
        agent = self.config.agent(agent_id)
        if agent is None:
            raise ValueError(f"no agent {agent_id}")
        if agent.mobile is None and not self.location.lookup(agent_id, now):
            raise ValueError(f"agent {agent_id} has no registered phone")
        return agent

    def _node_call(
        self,
        agent: Agent,
        app: NodeCallApp,
        called: str,
        route: str,
        variables: dict[str, str],
        now: float,
    ) -> str:
        """Reserve a logged-in agent for the call in the ACD (a direct call: `AgentBusy`
        while it rings or talks), then place it."""
        control = self.control
        call_id = control.new_call_id(now)
        try:
            control.acd_command(now, self.acd.direct_call_started, agent.id, call_id, now)
            reserved = True
        except NotLoggedIn:
            reserved = False  # a logged-out agent may still call back: nothing to reserve
        session = control.originate(
            call_id, agent.id, self.config, app, now, called, route, variables, reserved
        )
        if session is None:
            if reserved:
                control.acd_input(now, self.acd.direct_call_ended, agent.id, call_id, now)
            raise ValueError("the node places calls only with media anchoring (media.anchor)")
        return call_id
