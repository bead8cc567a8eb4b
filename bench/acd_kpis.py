"""RPT-3 figures of one queue from a node's database (DATA/hotline.db), read-only.

The queue log (softswitch/cdr.py, table ``queue_log``) gives each call's stay in the queue:
ENTER, then one event that ends it (CONNECT, ABANDON, CALLBACK, TIMEOUT, FULL, EMPTY,
UNAVAILABLE) with the engine's own `waited`, OFFER / RINGNOANSWER per ring, COMPLETE with the
talk time; AGENT_STATE events give every agent's state over time. The CDR (table ``calls``)
gives each call's start and end. `counts` and `rates` count as the engine's `QueueKpis` do
(acd/events.py), with the thresholds as parameters, so that the same log can be read with the
node's thresholds and with a time-scaled bench's. Used by bench/acd_busy_hour.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from acd import QueueEventKind

_K = QueueEventKind
#: Queue-log events that end a call's stay in the queue, and what they count as.
OUTCOMES = {
    _K.CONNECT: "answered", _K.ABANDON: "abandoned", _K.CALLBACK: "callbacks",
    _K.TIMEOUT: "overflowed", _K.FULL: "overflowed", _K.EMPTY: "overflowed",
    _K.UNAVAILABLE: "overflowed",
}  # fmt: skip
#: Agent states (acd.AgentState values) that are not staffed; every other state but idle
#: (ringing, talking, hold, wrap-up, …) is work on calls, for the occupancy.
NOT_STAFFED = {"logged_out", "busy", "break", "locked"}
IDLE = "idle"


class CallRecord(msgspec.Struct):
    """One call's stay in the queue, from the queue log (wall-clock epoch seconds)."""

    call_id: str
    entered: float
    outcome: str | None = None  # a value of OUTCOMES; None: never left the queue
    waited: float | None = None  # ENTER → outcome, the engine's own measure
    talk: float | None = None  # from COMPLETE
    rings: int = 0
    no_answers: int = 0


class Log(msgspec.Struct):
    """What the node's database holds about the run."""

    calls: dict[str, CallRecord]
    agent_states: list[tuple[float, str, str, str]]  # (at, agent, from, to)
    cdr: list[tuple[float, float | None]]  # (start, end) of every call


def read_log(db_path: Path, queue: str) -> Log:
    """The calls of `queue`, every agent's states and the CDR's calls, read-only."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT at, call_id, queue, agent, event, data FROM queue_log ORDER BY id"
        ).fetchall()
        cdr = db.execute('SELECT start, "end" FROM calls ORDER BY start').fetchall()
    finally:
        db.close()
    calls: dict[str, CallRecord] = {}
    states: list[tuple[float, str, str, str]] = []
    for at, call_id, row_queue, agent, event, raw in rows:
        data = json.loads(raw) if raw else {}
        if event == _K.AGENT_STATE:
            states.append((at, agent, data.get("from", ""), data.get("to", "")))
            continue
        if row_queue != queue or call_id is None:
            continue
        if event == _K.ENTER:
            calls.setdefault(call_id, CallRecord(call_id, at))
            continue
        record = calls.get(call_id)
        if record is None:
            continue
        if event == _K.OFFER:
            record.rings += 1
        elif event == _K.RINGNOANSWER:
            record.no_answers += 1
        elif event == _K.COMPLETE:
            record.talk = data.get("talk")
        elif event in OUTCOMES and record.outcome is None:
            record.outcome = OUTCOMES[event]
            waited = data.get("waited")
            record.waited = float(waited) if waited is not None else at - record.entered
    return Log(calls, states, [(start, end) for start, end in cdr])


def counts(
    records: Iterable[CallRecord], service_level_s: float, short_abandon_s: float
) -> dict[str, int]:
    """RPT-3 counts of calls as the engine keeps them (acd `QueueKpis`), with the thresholds
    given (in the same unit as the records' `waited`)."""
    result = dict.fromkeys(
        ("entered", "answered", "answered_in_time", "abandoned", "abandoned_short",
         "callbacks", "callbacks_short", "overflowed", "open"),
        0,
    )  # fmt: skip
    for record in records:
        result["entered"] += 1
        if record.outcome is None:
            result["open"] += 1
            continue
        result[record.outcome] += 1
        waited = record.waited or 0.0
        if record.outcome == "answered" and waited <= service_level_s:
            result["answered_in_time"] += 1
        if record.outcome in ("abandoned", "callbacks") and waited < short_abandon_s:
            result[f"{record.outcome}_short"] += 1
    return result


def rates(count: dict[str, int]) -> dict[str, float | None]:
    """Service level and human answer rate from `counts` (SPEC RPT-3, as the engine)."""
    left = count["entered"] - count["open"]
    short = count["abandoned_short"] + count["callbacks_short"]
    return {
        "service_level": count["answered_in_time"] / left if left else None,
        "human_answer_rate": count["answered"] / (left - short) if left > short else None,
    }


def busy_seconds(
    states: Sequence[tuple[float, str, str, str]], start: float, end: float
) -> tuple[float, float]:
    """(working, staffed) agent-seconds in [start, end) from AGENT_STATE events: staffed is
    logged in and not busy, on a break or locked; working is staffed and not idle."""
    current: dict[str, tuple[float, str]] = {}
    working = staffed = 0.0

    def close(agent: str, until: float) -> None:
        nonlocal working, staffed
        since, state = current[agent]
        span = max(0.0, min(until, end) - max(since, start))
        if state not in NOT_STAFFED:
            staffed += span
            if state != IDLE:
                working += span

    for at, agent, _old, new in states:
        if agent in current:
            close(agent, at)
        current[agent] = (at, new)
    for agent in current:
        close(agent, end)
    return working, staffed


def concurrency(
    intervals: Sequence[tuple[float, float | None]], start: float, end: float
) -> tuple[float, int]:
    """(time-average over [start, end), maximum at any time) of the number of intervals
    open at once; an interval without an end lasts to `end`."""
    events = []
    for begin, finish in intervals:
        events.append((begin, 1))
        events.append((finish if finish is not None else end, -1))
    events.sort()  # at the same instant an end comes before a start
    level = peak = 0
    area = 0.0
    previous: float | None = None
    for at, change in events:
        if previous is not None:
            low, high = max(previous, start), min(at, end)
            if high > low:
                area += level * (high - low)
        level += change
        peak = max(peak, level)
        previous = at
    return (area / (end - start) if end > start else 0.0), peak
