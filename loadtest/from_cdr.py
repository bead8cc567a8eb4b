"""A trace from the node's own records (``DATA/hotline.db``: `softswitch.cdr`'s ``calls`` and
``queue_log``), so a real day can be replayed against a new configuration or release.

What each column is made of, per call that started in the window (ordered by start):

- ``call_id``, ``caller``, ``called``: the CDR's. A caller or called number that is not
  digits (anonymous, a SIP user name) cannot be replayed as it was: such calls are left out
  and counted (`CdrTrace.skipped`).
- ``offset_s``: ``start`` minus the first call's start.
- ``talk_s``: ``talk`` (0 for a call no agent answered).
- ``patience_s``: for a call that left a queue unanswered by hanging up (an ``ABANDON`` queue
  event, else disposition ``abandoned`` after it was queued), the seconds it waited — the
  caller's real patience. An answered call's caller would have waited longer than it did;
  how much longer is not recorded, so its patience is empty (waits forever), or, with
  `answered_margin`, its wait plus that margin. Every other call: empty.
- ``wrap_s``: the agent's wrap-up after the call, from the queue log (``AGENT_STATE`` to
  ``wrap_up`` carrying the call's id, until that agent's next ``AGENT_STATE``); without one,
  the queue's ``wrap_up`` when a configuration is given, else `default_wrap`.
- ``keys`` (only with a configuration, whose flows say which key leads where): the CDR keeps
  the IVR nodes a call went through (the ``ivr_path`` variable, ``menu>citizen``), not the
  keys. For each step from a ``menu`` node the key that leads to the next node is put back
  (its ``repeat_key`` for the same menu again, its ``back_key`` for the menu before);
  a ``collect`` node's digits are in the variable it stored them in, and its terminator is
  added when fewer than ``max_length`` digits were given. Think times are not recorded:
  every key gets `think_s`. Not reconstructed: invalid keys and timeouts (retries leave no
  trace in the path), spoken answers, survey keys.
- ``region``: the configuration's ``localities`` applied to the caller (empty without one).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec

from ivr import nodes
from loadtest.trace import KeyPress, Trace, TraceCall, format_seconds

DB_NAME = "hotline.db"


class CdrTraceError(Exception):
    """The database cannot be read as a CDR (missing, not SQLite, no ``calls`` table)."""


class CdrTrace(msgspec.Struct, frozen=True):
    """The trace, and how many calls of the window were left out (numbers not digits)."""

    trace: Trace
    skipped: int


class KeyMap:
    """Puts IVR keys back from an ``ivr_path`` and the call's variables, by the flows."""

    def __init__(self, flows: Mapping[str, nodes.Flow]) -> None:
        self._nodes: dict[str, Any] = {}
        for flow in flows.values():
            for name, node in flow.nodes.items():
                self._nodes.setdefault(name, node)

    def keys(self, variables: Mapping[str, str], think_s: float) -> tuple[KeyPress, ...]:
        path = [p for p in variables.get("ivr_path", "").split(">") if p]
        pressed: list[str] = []
        menus: list[str] = []  # the menus entered, for back_key
        for here, there in zip(path, path[1:], strict=False):
            node = self._nodes.get(here)
            if isinstance(node, nodes.Menu):
                key = next((k for k, target in node.keys.items() if target == there), None)
                if key is None and there == here:
                    key = node.repeat_key
                if key is None and menus and there == menus[-1]:
                    key = node.back_key
                if key is not None:
                    pressed.append(key)
                if not menus or menus[-1] != here:
                    menus.append(here)
            elif isinstance(node, nodes.Collect):
                digits = variables.get(node.variable, "")
                pressed.extend(digits)
                if digits and node.terminator and len(digits) < node.max_length:
                    pressed.append(node.terminator)
        return tuple(KeyPress(k, think_s) for k in pressed if k in "0123456789*#" and k)


def _rows(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise CdrTraceError(f"{exc}") from None


def _wrap_ups(db: sqlite3.Connection, since: float) -> dict[str, float]:
    """Seconds of wrap-up after each call, from the agents' state changes in the queue log."""
    events = _rows(
        db,
        "SELECT at, call_id, agent, data FROM queue_log WHERE event = 'AGENT_STATE' AND at >= ? "
        "ORDER BY at, id",
        (since,),
    )
    started: dict[str, tuple[str, float]] = {}  # agent -> (call, wrap-up start)
    wraps: dict[str, float] = {}
    for row in events:
        try:
            data = msgspec.json.decode(row["data"] or "{}")
        except msgspec.DecodeError:
            continue
        agent = row["agent"]
        if agent in started and data.get("from") == "wrap_up":
            call_id, at = started.pop(agent)
            wraps[call_id] = round(row["at"] - at, 3)
        if data.get("to") == "wrap_up" and row["call_id"]:
            started[agent] = (row["call_id"], row["at"])
    return wraps


def _abandon_waits(db: sqlite3.Connection, since: float) -> dict[str, float]:
    waits: dict[str, float] = {}
    for row in _rows(
        db,
        "SELECT call_id, data FROM queue_log WHERE event = 'ABANDON' AND at >= ? ORDER BY id",
        (since,),
    ):
        try:
            waited = msgspec.json.decode(row["data"] or "{}").get("waited")
        except msgspec.DecodeError:
            continue
        if isinstance(waited, int | float) and row["call_id"]:
            waits[row["call_id"]] = float(waited)
    return waits


def _number(text: str | None, plus: bool) -> str | None:
    text = text or ""
    digits = text[1:] if plus and text.startswith("+") else text
    return text if digits.isdigit() else None


def trace_from_cdr(
    db_path: str | Path,
    start: float | None = None,
    end: float | None = None,
    *,
    flows: Mapping[str, nodes.Flow] | None = None,
    region_of: Callable[[str], str | None] | None = None,
    queue_wrap_up: Mapping[str, float] | None = None,
    default_wrap: float = 0.0,
    think_s: float = 2.0,
    answered_margin: float | None = None,
) -> CdrTrace:
    """The trace of the calls that started in [`start`, `end`) (epoch seconds; None: no bound)
    in the CDR database `db_path`. `flows`, `region_of` and `queue_wrap_up` (queue → seconds)
    come from a configuration, when one is given; see the module's docstring for each column."""
    path = Path(db_path)
    if not path.is_file():
        raise CdrTraceError(f"{path}: no such database")
    low = float("-inf") if start is None else start
    high = float("inf") if end is None else end
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        calls = _rows(
            db,
            "SELECT call_id, caller, called, queue, start, queued, answer, wait, talk, "
            "disposition, variables FROM calls WHERE start >= ? AND start < ? "
            "ORDER BY start, call_id",
            (low, high),
        )
        first = calls[0]["start"] if calls else 0.0
        wraps = _wrap_ups(db, first) if calls else {}
        abandons = _abandon_waits(db, first) if calls else {}
    key_map = KeyMap(flows) if flows is not None else None
    out: list[TraceCall] = []
    skipped = 0
    for row in calls:
        caller = _number(row["caller"], plus=True)
        called = _number(row["called"], plus=False)
        if caller is None or called is None:
            skipped += 1
            continue
        call_id = row["call_id"]
        patience: float | None = None
        if call_id in abandons:
            patience = abandons[call_id]
        elif row["disposition"] == "abandoned" and row["queued"] is not None:
            patience = float(row["wait"] or 0.0)
        elif row["answer"] is not None and answered_margin is not None:
            patience = float(row["wait"] or 0.0) + answered_margin
        wrap = wraps.get(call_id)
        if wrap is None:
            wrap = (queue_wrap_up or {}).get(row["queue"] or "", default_wrap)
        keys: tuple[KeyPress, ...] = ()
        if key_map is not None and row["variables"]:
            try:
                variables = msgspec.json.decode(row["variables"], type=dict[str, str])
            except (msgspec.DecodeError, msgspec.ValidationError):
                variables = {}
            keys = key_map.keys(variables, think_s)
        out.append(
            TraceCall(
                call_id=call_id,
                offset_s=round(row["start"] - first, 3),
                caller=caller,
                called=called,
                region=(region_of(caller) if region_of else None) or "",
                keys=keys,
                patience_s=None if patience is None else round(max(patience, 0.0), 3),
                talk_s=round(max(float(row["talk"] or 0.0), 0.0), 3),
                wrap_s=round(max(wrap, 0.0), 3),
            )
        )
    meta = {
        "generator": "hotline loadtest from-cdr",
        "source": str(path),
        "first_start": format_seconds(first),
        "think": format_seconds(think_s),
        "keys": "from ivr_path and the flows" if flows is not None else "none (no --config)",
    }
    return CdrTrace(Trace(tuple(out), meta), skipped)
