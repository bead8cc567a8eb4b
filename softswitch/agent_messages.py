"""SIP MESSAGE between agents' phones (RFC 3428), a part of `Switch`: a MESSAGE from a
phone to another agent is checked like the phone's calls and sent on to the other phone's
registered contact from the sender's address of record; the far phone's final answer is
the sender's."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from softswitch.call.sipcodec import binding_route, uri_user
from softswitch.sip.build import make_response, new_request_headers
from softswitch.sip.message import Request

if TYPE_CHECKING:
    from softswitch.config import Config
    from softswitch.sip.location import LocationService
    from softswitch.sip.transaction import RequestReceived, Target, TransactionLayer

log = logging.getLogger("hotline.sip")

#: RFC 3428 §7: a MESSAGE body beyond this needs a congestion-controlled transport (an MSRP
#: session); the node does not relay it.
MAX_MESSAGE_BODY = 1300


class AgentMessages:
    """The switch's relay of agents' MESSAGEs (a mixin of `softswitch.switch.Switch`)."""

    config: Config
    location: LocationService
    txn: TransactionLayer
    _messages: dict[tuple, tuple]  # MESSAGE sent on -> the sender's server transaction

    def _phone_of(self, request: Request, source: Target, now: float) -> str | None:
        raise NotImplementedError  # switch.py

    def _phone_authorized(self, ev: RequestReceived, agent_id: str, now: float) -> bool:
        raise NotImplementedError  # switch.py

    def _respond(self, ev: RequestReceived, response: Any, now: float) -> None:
        raise NotImplementedError  # switch.py

    def _message(self, ev: RequestReceived, now: float) -> None:
        """A SIP MESSAGE (RFC 3428) from an agent's phone to another agent: checked like the
        phone's calls, sent on to the other phone's registered contact from the sender's
        address of record; the far phone's final answer is the sender's."""
        request = ev.request
        sender = self._phone_of(request, ev.source, now)
        if sender is None:
            self._respond(ev, make_response(request, 403, "Messages only between agents"), now)
            return
        if not self._phone_authorized(ev, sender, now):
            return
        if len(request.body) > MAX_MESSAGE_BODY:
            self._respond(ev, make_response(request, 513, "Message Too Large"), now)
            return
        user = uri_user(request.uri)
        if self.config.agent(user) is None:
            self._respond(ev, make_response(request, 404, f"No agent {user}"), now)
            return
        bindings = self.location.lookup(user, now)
        if not bindings:
            self._respond(ev, make_response(request, 480, f"Agent {user} is not registered"), now)
            return
        binding = bindings[0]
        target, route = binding_route(binding)
        realm = self.config.node.realm
        headers = new_request_headers(
            "MESSAGE", f"<sip:{sender}@{realm}>", f"<sip:{user}@{realm}>", realm
        )
        for hop in route:
            headers.add("route", hop)
        for name in ("content-type", "date"):
            value = request.headers.get(name)
            if value is not None:
                headers.add(name, value)
        key = self.txn.send_request(
            Request("MESSAGE", binding.contact, headers, request.body), target, now
        )
        self._messages[key] = ev.key
        log.info("MESSAGE from agent %s to agent %s (%d bytes)", sender, user, len(request.body))

    def _message_answered(self, key: tuple, status: int, reason: str, now: float) -> None:
        if status < 200:
            return
        server = self._messages.pop(key)
        request = self.txn.server_request(server)
        if request is not None:
            self.txn.send_response(server, make_response(request, status, reason), now)
