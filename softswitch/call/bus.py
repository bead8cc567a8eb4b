"""The event bus: every bus event, in order, to every subscriber (SPEC INT-1, RPT-1).

Publishing is synchronous: a subscriber runs inside `publish`, so the CDR writer has put its
rows into the open transaction before the node sends anything (the node commits once per
input, then sends; `kill -9` loses nothing a peer has seen). A subscriber that raises is
logged and unsubscribed only for that event; the others still get it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from softswitch.call.events import BusEvent

log = logging.getLogger("hotline.bus")

Subscriber = Callable[[BusEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.published = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.remove(subscriber)

    def publish(self, event: BusEvent) -> None:
        self.published += 1
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # one broken subscriber must not stop the call or the others
                log.exception("bus subscriber %r failed on %s", subscriber, type(event).__name__)
