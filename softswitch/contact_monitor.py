"""Keep-alives of agents' registered phones (SPEC SIP-5; issue 9): an OPTIONS to every
registered contact every `registrar.keepalive` seconds. A phone that leaves `DOWN_AFTER` in
a row unanswered (no response within Timer F, or a transport error) died without
unregistering: its binding is dropped as if it had expired, so the agent's calls stop
ringing it (and an agent without another device becomes unavailable) until it registers
again. Any response counts as an answer: the phone is there (sans-IO; the switch feeds it
the transaction layer's answers and its timers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from softswitch.call.sipcodec import binding_route
from softswitch.sip.build import new_request_headers
from softswitch.sip.location import BindingExpired, LocationService
from softswitch.sip.message import Request
from softswitch.sip.transaction import Target, TransactionLayer

log = logging.getLogger("hotline.registrar")

#: Keep-alives in a row a phone may leave unanswered before its binding goes.
DOWN_AFTER = 2


class _Watch:
    __slots__ = ("next_at", "misses", "key")

    def __init__(self, next_at: float) -> None:
        self.next_at = next_at
        self.misses = 0
        self.key: tuple | None = None


class ContactMonitor:
    def __init__(
        self,
        txn: TransactionLayer,
        location: LocationService,
        contact_for: Callable[[Target], str],
    ) -> None:
        self.txn = txn
        self.location = location
        self.contact_for = contact_for
        self.every = 0.0
        self._watch: dict[tuple[str, str], _Watch] = {}
        self._by_key: dict[tuple, tuple[str, str]] = {}
        self._next_sync = 0.0
        self.counters = {"options": 0, "dropped": 0}

    def configure(self, every: float) -> None:
        self.every = float(every)
        if self.every <= 0:
            self._watch.clear()
            self._by_key.clear()

    def get_timer(self) -> float | None:
        if self.every <= 0:
            return None
        due = [w.next_at for w in self._watch.values() if w.key is None]
        return min([self._next_sync, *due])

    def handle_timer(self, now: float) -> None:
        if self.every <= 0:
            return
        if now >= self._next_sync:  # new and gone bindings, once a second at most
            self._next_sync = now + 1.0
            current = {(b.aor, b.contact): b for b in self.location.bindings(now)}
            for key in [k for k in self._watch if k not in current]:
                del self._watch[key]
            for key in current:
                if key not in self._watch:
                    self._watch[key] = _Watch(now + self.every)
        else:
            current = None
        for (aor, contact), watch in self._watch.items():
            if watch.key is not None or watch.next_at > now:
                continue
            watch.next_at = now + self.every
            binding = None
            if current is not None:
                binding = current.get((aor, contact))
            else:
                binding = next(
                    (b for b in self.location.lookup(aor, now) if b.contact == contact), None
                )
            if binding is None:
                continue
            target, route = binding_route(binding)  # through its Path, if any (RFC 3327)
            local = self.contact_for(target)
            host = local.split("@", 1)[1].split(";")[0]
            headers = new_request_headers(
                "OPTIONS", f"<sip:keepalive@{host}>", f"<sip:{aor}@{host}>", host
            )
            for value in route:
                headers.add("route", value)
            headers.add("contact", f"<{local}>")
            watch.key = self.txn.send_request(Request("OPTIONS", contact, headers), target, now)
            self._by_key[watch.key] = (aor, contact)
            self.counters["options"] += 1

    def owns(self, key: tuple) -> bool:
        return key in self._by_key

    def answered(self, key: tuple, status: int) -> None:
        if status < 200:
            return
        who = self._by_key.pop(key, None)
        watch = self._watch.get(who) if who is not None else None
        if watch is not None:
            watch.key, watch.misses = None, 0

    def failed(self, key: tuple, why: str) -> BindingExpired | None:
        """No answer: the binding's event when this was the last chance (the switch tells
        the registrar and the ACD), else None."""
        who = self._by_key.pop(key, None)
        watch = self._watch.get(who) if who is not None else None
        if who is None or watch is None:
            return None
        watch.key = None
        watch.misses += 1
        if watch.misses < DOWN_AFTER:
            return None
        del self._watch[who]
        event = self.location.drop(*who)
        if event is not None:
            self.counters["dropped"] += 1
            log.warning("agent %s's phone at %s stopped answering keep-alives (%s): "
                        "its registration is dropped", who[0], who[1], why)  # fmt: skip
        return event
