"""The event bus: every bus event, in order, to every subscriber (SPEC INT-1, RPT-1).

Publishing is synchronous: a subscriber runs inside `publish`, so the CDR writer has put its
rows into the open transaction before the node sends anything (the node commits once per
input, then sends; `kill -9` loses nothing a peer has seen). A subscriber that raises is
logged for that event; the others still get it. A subscriber may name the event types it
wants (`kinds`): the bus then passes it only those (a call publishes a dozen events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from softswitch.call.events import BusEvent

log = logging.getLogger("hotline.bus")

Subscriber = Callable[[BusEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, frozenset[type] | None]] = []
        # Event type -> its subscribers in subscription order, built on first use.
        self._routes: dict[type, list[Subscriber]] = {}
        self.published = 0

    def subscribe(self, subscriber: Subscriber, kinds: Iterable[type] | None = None) -> None:
        """`subscriber` gets every event, or only those of the types in `kinds`."""
        self._subscribers.append((subscriber, frozenset(kinds) if kinds is not None else None))
        self._routes.clear()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = [(s, k) for s, k in self._subscribers if s is not subscriber]
        self._routes.clear()

    def publish(self, event: BusEvent) -> None:
        self.published += 1
        kind = type(event)
        route = self._routes.get(kind)
        if route is None:
            route = [s for s, kinds in self._subscribers if kinds is None or kind in kinds]
            self._routes[kind] = route
        for subscriber in route:
            try:
                subscriber(event)
            except Exception:  # one broken subscriber must not stop the call or the others
                log.exception("bus subscriber %r failed on %s", subscriber, kind.__name__)
