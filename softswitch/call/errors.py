"""Errors of the call model (STYLE §8): caught in call control, logged, never a lost call."""

from __future__ import annotations


class CallError(Exception):
    """Base of call-model errors."""


class IllegalLegTransition(CallError):  # noqa: N818 (the table's own word, as acd's)
    def __init__(self, leg_id: str, state: str, event: str) -> None:
        super().__init__(f"leg {leg_id}: no transition from {state} on {event}")
        self.leg_id = leg_id
        self.state = state
        self.event = event
