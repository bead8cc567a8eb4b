"""A session: one call, its legs, its variables, the configuration it started with, and the
application in control of it (see docs/architecture.md)."""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from softswitch.call.leg import Leg

if TYPE_CHECKING:
    from softswitch.call.app import Application
    from softswitch.call.events import AppEvent
    from softswitch.config import Config

log = logging.getLogger("hotline.call")


class CallLog(logging.LoggerAdapter):
    """Prefixes every line with the call id and the inbound Call-ID (STYLE §3)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"call={extra['call']} sip={extra['sip']} {msg}", kwargs


class Session:
    """One call (implements `softswitch.call.app.CallView` for its application)."""

    __slots__ = (
        "call_id",
        "a",
        "legs",
        "trunk",
        "caller",
        "called",
        "route",
        "config",
        "variables",
        "identity",
        "app",
        "inbox",
        "started",
        "origin",
        "answered",
        "node_answered",
        "queue",
        "agent_id",
        "ended",
        "hangup_side",
        "log",
        "relays",
        "timers",
        "mixes",
        "transfer",
        "supervisor",
        "supervising",
        "direct_agent",
        "early_body",
        "_leg_seq",
    )

    def __init__(
        self,
        call_id: str,
        a: Leg,
        trunk: str,
        caller: str,
        called: str,
        config: Config,
        sip_call_id: str,
    ) -> None:
        self.call_id = call_id
        self.a = a
        self.legs: list[Leg] = [a]
        self.trunk = trunk
        self.caller = caller
        self.called = called
        self.route: str | None = None
        self.config = config
        self.variables: dict[str, str] = {}
        self.identity: list[tuple[str, str]] = []
        self.app: Application | None = None
        self.inbox: deque[AppEvent] = deque()
        self.started = 0.0
        # What identifies the caller's INVITE across paths (`sipcodec.origin_of`).
        self.origin: tuple[str, str | None, int] = (sip_call_id, None, 0)
        self.answered: float | None = None  # when the caller first talked to a party
        self.node_answered: float | None = None  # when the node answered the caller itself
        self.queue: str | None = None
        self.agent_id: str | None = None
        self.ended = False
        self.hangup_side: str | None = None  # who hung up first, once someone did
        self.log: logging.LoggerAdapter = CallLog(log, {"call": call_id, "sip": sip_call_id})
        self.relays: list[tuple] = []  # client transactions of in-dialog requests we relayed
        self.timers: dict[str, int] = {}  # application timer name -> serial
        self.mixes: dict[str, dict[str, tuple[str, ...]]] = {}  # mix id -> who hears whom
        self.transfer: str | None = None  # the agent leg whose REFER is being carried out
        self.supervisor: str | None = None  # the session of a supervisor mixed into this one
        self.supervising: str | None = None  # this is a supervisor's call: the supervised one
        # A call the node placed to an agent reserved in the ACD (a direct call) until it ends
        self.direct_agent: str | None = None
        # The SDP of the 183 while the node's prompts play in early media (trunk early_media)
        self.early_body: bytes | None = None
        self._leg_seq = 0

    # --- CallView -------------------------------------------------------------------------
    @property
    def caller_leg(self) -> str:
        return self.a.leg_id

    @property
    def caller_answered(self) -> bool:
        return self.a.up

    def new_leg_id(self) -> str:
        self._leg_seq += 1
        return f"{self.call_id}-b{self._leg_seq}"

    def leg(self, leg_id: str) -> Leg | None:
        for leg in self.legs:
            if leg.leg_id == leg_id:
                return leg
        return None
