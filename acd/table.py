"""Helpers shared by the agent and call state tables (STYLE §2).

A table is a mapping ``{(state, event): new_state}`` of two `Enum`s; anything missing is an
illegal transition. These helpers look a pair up (raising `IllegalTransition`) and print a table
as text for a supervisor or a docs page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import TypeVar

from acd.errors import IllegalTransition

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


def lookup(table: Mapping[tuple[S, E], S], entity: str, entity_id: str, state: S, event: E) -> S:
    """Return the state that `event` leads to from `state`, or raise `IllegalTransition`."""
    try:
        return table[(state, event)]
    except KeyError:
        raise IllegalTransition(entity, entity_id, str(state.value), str(event.value)) from None


def format_table(table: Mapping[tuple[S, E], S], states: Iterable[S], events: Iterable[E]) -> str:
    """Render a transition table as fixed-width text: one row per state, one column per event,
    ``-`` where the event is illegal."""
    state_list = list(states)
    event_list = list(events)
    header = ["state \\ event", *(str(e.value) for e in event_list)]
    rows = [header]
    for state in state_list:
        row = [str(state.value)]
        for event in event_list:
            target = table.get((state, event))
            row.append("-" if target is None else str(target.value))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
