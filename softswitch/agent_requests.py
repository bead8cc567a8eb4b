"""Agent requests from outside the network (the CLI's control socket, the API), a part of
`Switch`: state changes (`agent_command`), live status (`live_status`), and mobile agents'
logins, which are kept across restarts like phones' registrations (softswitch/bindings.py).

A mobile agent has no phone to register: `hotline agent login 1009` is what makes it
reachable. The login (with the queues it named) is written on the node's database in the
same commit as the request's other changes, and restored when the node starts, so a
restart does not quietly take every mobile agent out of the queues.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from acd import AcdError
from softswitch.control_api import AGENT_ACTIONS

if TYPE_CHECKING:
    from acd import Acd
    from softswitch.bindings import BindingStore
    from softswitch.call.control import CallControl
    from softswitch.config import Config
    from softswitch.trunk_monitor import TrunkMonitor

log = logging.getLogger("hotline.switch")


class AgentRequests:
    """The switch's agent requests (a mixin of `softswitch.switch.Switch`)."""

    config: Config
    control: CallControl
    acd: Acd
    trunks: TrunkMonitor
    #: Where mobile logins are kept (the node sets it; None: they end with the process).
    mobile_store: BindingStore | None = None

    def agent_command(
        self,
        agent_id: str,
        action: str,
        now: float,
        reason: str = "",
        queues: list[str] | None = None,
    ) -> str:
        """A state request for an agent from the CLI or the API (`AGENT_ACTIONS`); returns
        the agent's state after it. Raises `AcdError` (`UnknownAgent`, `IllegalTransition`:
        nothing changed) or `ValueError` for an action that does not exist."""
        name = AGENT_ACTIONS.get(action)
        if name is None:
            raise ValueError(f"unknown agent action {action!r} (one of {', '.join(AGENT_ACTIONS)})")
        if action == "release":
            if not self.control.release_agent_call(agent_id, now):
                raise ValueError(f"agent {agent_id} is on no call")
            return self.acd.agent_state(agent_id).value
        agent = self.config.agent(agent_id)
        acd = self.acd
        if agent is not None and agent.mobile is not None and action in ("login", "logout"):
            # A mobile agent has no registration: logging in makes it reachable (with the
            # queues named, or all), logging out unreachable, its choice of queues gone.
            if action == "login":
                self.control.acd_command(now, acd.agent_available, agent_id, now)
                self.control.acd_command(now, acd.agent_login, agent_id, now, queues)
                if self.mobile_store is not None:
                    self.mobile_store.save_mobile(agent_id, queues, self.control.wall(now))
            else:
                snap = acd.agent_snapshot(agent_id)
                if snap.state != "logged_out" and not snap.signed_out:
                    self.control.acd_command(now, acd.agent_logout, agent_id, now)
                self.control.acd_command(now, acd.agent_unavailable, agent_id, now)
                if self.mobile_store is not None:
                    self.mobile_store.remove_mobile(agent_id)
            return acd.agent_state(agent_id).value
        if action == "login":
            self.control.acd_command(now, acd.agent_login, agent_id, now, queues)
            return acd.agent_state(agent_id).value
        method = getattr(self.acd, name)
        if action in ("not_ready", "lock"):
            self.control.acd_command(now, method, agent_id, now, reason or action)
        else:
            self.control.acd_command(now, method, agent_id, now)
        return self.acd.agent_state(agent_id).value

    def live_status(self, now: float) -> dict[str, Any]:
        """Queues (waiting, ringing, longest wait, agents by state) and agents (state, seconds
        in it, reason, calls), for `hotline status` and the API."""
        queues = []
        for queue in self.config.queues:
            try:
                queues.append(msgspec.to_builtins(self.acd.queue_snapshot(queue.name, now)))
            except AcdError:
                continue  # not in the engine (a reload in progress)
        agents = []
        for agent_id in self.acd.agent_ids():
            snap = self.acd.agent_snapshot(agent_id)
            view = msgspec.to_builtins(snap)
            since = snap.since
            view["seconds"] = None if since is None else round(max(0.0, now - since), 1)
            del view["since"]
            agents.append(view)
        return {
            "queues": queues,
            "agents": agents,
            "calls": len(self.control.sessions),
            "trunks": self.trunks.snapshot(now),
        }

    def restore_mobile_logins(self, now: float) -> int:
        """At start: log the mobile agents in again that were logged in when the node
        stopped (with the queues they named). A saved login whose agent is gone or is no
        longer mobile, or whose queues it may no longer serve, is dropped and said."""
        store = self.mobile_store
        if store is None:
            return 0
        restored = 0
        for agent_id, queues in store.load_mobile():
            agent = self.config.agent(agent_id)
            if agent is None or agent.mobile is None:
                log.warning("saved mobile login of %s dropped: not a mobile agent now", agent_id)
                store.remove_mobile(agent_id)
                continue
            try:
                self.agent_command(agent_id, "login", now, queues=queues)
            except AcdError as exc:
                log.warning("saved mobile login of %s dropped: %s", agent_id, exc)
                store.remove_mobile(agent_id)
                continue
            restored += 1
        return restored
