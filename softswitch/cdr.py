"""Call detail records and the queue log in SQLite (SPEC RPT-1).

One row per call (``calls``), one per call leg (``legs``) and one per ACD event
(``queue_log``). Every write is its own committed transaction, so what was written before a
crash is in the database after it.

What a restart needs to close what a crash left open (softswitch/call/restart.py): the
node's heartbeat (``node_alive``: one row, when the last run started and the last time it
was known to run) and the dialog of every answered leg still up (``live_dialogs``: one row
per answered leg, written when it is answered, deleted when it ends, in the same
transaction as the CDR rows). Every start closes all rows left open, so the next one looks
only at calls that started since (by the ``calls_start`` index), not at the whole history.

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` by default. A commit
then writes the WAL frames to the file (into the OS page cache) without ``fsync``; a killed
process (``kill -9``, a crash) loses nothing that was committed, because the kernel still
writes those pages. Only an OS crash or power loss can lose the most recent commits (the
database stays consistent). ``synchronous="FULL"`` makes each commit fsync the WAL and
survive power loss too, at the price of one fsync per write.

Times are wall-clock epoch seconds (floats), passed in by the caller; this module reads no
clock. ``wait`` and ``talk`` are derived when ``answer``/``end`` are written, unless given.

This store is blocking and meant to be called from the event loop thread: a commit in WAL
mode without fsync takes a few microseconds (see the figure in the project notes).
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

import msgspec

from softswitch.sqlite_wal import connect_wal

SCHEMA_VERSION = 3

#: Columns of each table, in order; the first is the key. Updates may name only these.
CALL_COLUMNS = (
    "call_id", "sip_call_id", "trunk", "caller", "called", "queue", "agent",
    "start", "queued", "ringing", "answer", "end", "wait", "talk",
    "disposition", "hangup_side", "sip_cause", "pai", "diversion",
    "route", "node_answer", "variables", "survey_rating",
)  # fmt: skip
#: Columns added after schema version 1, with their SQL types (added to older databases).
_ADDED_CALL_COLUMNS = (
    ("route", "TEXT"), ("node_answer", "REAL"), ("variables", "TEXT"),
    ("survey_rating", "INTEGER"),
)  # fmt: skip
LEG_COLUMNS = (
    "leg_id", "call_id", "direction", "sip_call_id", "peer",
    "start", "ringing", "answer", "end", "sip_cause", "disposition",
)  # fmt: skip
QUEUE_LOG_COLUMNS = ("id", "at", "call_id", "queue", "agent", "event", "data")

TABLES: dict[str, tuple[str, ...]] = {
    "calls": CALL_COLUMNS,
    "legs": LEG_COLUMNS,
    "queue_log": QUEUE_LOG_COLUMNS,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, sip_call_id TEXT, trunk TEXT, caller TEXT, called TEXT,
    queue TEXT, agent TEXT, start REAL NOT NULL, queued REAL, ringing REAL, answer REAL,
    "end" REAL, wait REAL, talk REAL, disposition TEXT, hangup_side TEXT,
    sip_cause INTEGER, pai TEXT, diversion TEXT, route TEXT, node_answer REAL,
    variables TEXT, survey_rating INTEGER
);
CREATE INDEX IF NOT EXISTS calls_start ON calls (start);
CREATE INDEX IF NOT EXISTS calls_caller ON calls (caller, start);
CREATE TABLE IF NOT EXISTS legs (
    leg_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, direction TEXT NOT NULL
        CHECK (direction IN ('in', 'out')),
    sip_call_id TEXT, peer TEXT, start REAL NOT NULL, ringing REAL, answer REAL, "end" REAL,
    sip_cause INTEGER, disposition TEXT
);
CREATE INDEX IF NOT EXISTS legs_call_id ON legs (call_id);
CREATE TABLE IF NOT EXISTS queue_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, call_id TEXT, queue TEXT,
    agent TEXT, event TEXT NOT NULL, data TEXT
);
CREATE INDEX IF NOT EXISTS queue_log_call_id ON queue_log (call_id);
CREATE INDEX IF NOT EXISTS queue_log_at ON queue_log (at);
CREATE TABLE IF NOT EXISTS node_alive (
    id INTEGER PRIMARY KEY CHECK (id = 1), started REAL NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS live_dialogs (
    leg_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, dialog TEXT NOT NULL
);
"""


def _quote(column: str) -> str:
    # Identifiers come only from the whitelists above; quoting also covers "end".
    return f'"{column}"'


#: The routes of callback attempts: an agent's `*5`, and one the node dialled for an agent.
CALLBACK_ROUTES = "('phone:callback', 'node:callback')"


class CdrStore:
    """The CDR and queue-log database of one node (one connection, autocommit, WAL).

    Raises `ValueError` for a column or table name outside the schema (field names never
    reach SQL unchecked) and `KeyError` for an update of a call or leg that was never started;
    `sqlite3.Error` passes through for storage failures (disk full, database locked).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        commit_on_flush: bool = False,
    ) -> None:
        """`commit_on_flush`: writes gather in one transaction until `flush()` instead of
        committing one by one. The node flushes after handling each incoming message and
        before sending anything, so whatever a peer can have seen is on disk; one commit per
        message instead of per row takes most of the CDR cost off the event loop."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        # isolation_level=None: autocommit, each statement is its own transaction.
        self._db = connect_wal(self.path)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        if commit_on_flush:
            # Python's sqlite3 opens a transaction before the first write; flush() commits.
            self._db.isolation_level = "DEFERRED"

    def _migrate(self) -> None:
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0]
            if version is None:
                self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                # Version 1 → 2: call columns of the call model (route, IVR, variables).
                # Version 2 → 3: the tables node_alive and live_dialogs (made just above).
                have = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
                for column, sql_type in _ADDED_CALL_COLUMNS:
                    if column not in have:
                        self._db.execute(f"ALTER TABLE calls ADD COLUMN {column} {sql_type}")
                self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path} has schema version {version}, newer than this program's "
                    f"{SCHEMA_VERSION}"
                )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # ------------------------------------------------------------------ writes

    def call_started(
        self,
        call_id: str,
        *,
        start: float,
        sip_call_id: str | None = None,
        trunk: str | None = None,
        caller: str | None = None,
        called: str | None = None,
        pai: str | None = None,
        diversion: str | None = None,
        route: str | None = None,
    ) -> None:
        """Insert the row of a new call (inbound INVITE accepted)."""
        self._insert(
            "calls",
            {
                "call_id": call_id, "start": start, "sip_call_id": sip_call_id,
                "trunk": trunk, "caller": caller, "called": called, "pai": pai,
                "diversion": diversion, "route": route,
            },
        )  # fmt: skip

    def call_update(self, call_id: str, **fields: Any) -> None:
        """Set columns of a call, e.g. ``queued=t``, ``answer=t, agent="1001"``.

        Writing ``answer`` also sets ``wait`` (answer - queued) and writing ``end`` sets
        ``talk`` (end - answer, 0 if never answered) and, for an unanswered queued call,
        ``wait`` (end - queued), unless those are given explicitly.
        """

        def value(column: str) -> str:
            # The new value if this update sets it (SET sees the old row), else the column.
            return f":{column}" if column in fields else _quote(column)

        answer, queued, wait = value("answer"), value("queued"), value("wait")
        extra: dict[str, str] = {}
        if "answer" in fields and "wait" not in fields:
            extra["wait"] = f"CASE WHEN {queued} IS NULL THEN wait ELSE {answer} - {queued} END"
        if "end" in fields:
            if "talk" not in fields:
                extra["talk"] = f"CASE WHEN {answer} IS NULL THEN 0 ELSE :end - {answer} END"
            if "wait" not in fields and "answer" not in fields:
                extra["wait"] = (
                    f"CASE WHEN {queued} IS NOT NULL AND {answer} IS NULL AND {wait} IS NULL "
                    f"THEN :end - {queued} ELSE {wait} END"
                )
        self._update("calls", "call_id", call_id, fields, extra)

    def leg_started(
        self,
        leg_id: str,
        *,
        call_id: str,
        direction: Literal["in", "out"],
        start: float,
        sip_call_id: str | None = None,
        peer: str | None = None,
    ) -> None:
        """Insert the row of a new call leg (``in``: from the caller, ``out``: to an agent)."""
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        self._insert(
            "legs",
            {
                "leg_id": leg_id, "call_id": call_id, "direction": direction,
                "start": start, "sip_call_id": sip_call_id, "peer": peer,
            },
        )  # fmt: skip

    def leg_update(self, leg_id: str, **fields: Any) -> None:
        """Set columns of a leg, e.g. ``ringing=t`` or ``end=t, sip_cause=487``."""
        self._update("legs", "leg_id", leg_id, fields, {})

    def queue_event(
        self,
        at: float,
        call_id: str | None,
        queue: str | None,
        agent: str | None,
        event: str,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an ACD event (``enter``, ``ring``, ``no_answer``, ``connect``, ``abandon``…).

        ``data`` is stored as JSON. Returns the event's id.
        """
        encoded = msgspec.json.encode(data).decode() if data is not None else None
        cursor = self._db.execute(
            "INSERT INTO queue_log (at, call_id, queue, agent, event, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at, call_id, queue, agent, event, encoded),
        )
        return int(cursor.lastrowid or 0)

    def _insert(self, table: str, values: dict[str, Any]) -> None:
        columns = ", ".join(_quote(c) for c in values)
        marks = ", ".join(f":{c}" for c in values)
        self._db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)

    def _update(
        self, table: str, key: str, key_value: str, fields: dict[str, Any], extra: dict[str, str]
    ) -> None:
        allowed = TABLES[table]
        for name in fields:
            if name not in allowed or name == key:
                raise ValueError(f"{table} has no updatable column {name!r}")
        if not fields:
            raise ValueError("nothing to update")
        assignments = [f"{_quote(c)} = :{c}" for c in fields]
        assignments += [f"{_quote(c)} = {expr}" for c, expr in extra.items()]
        params = dict(fields)
        params["_key"] = key_value
        cursor = self._db.execute(
            f"UPDATE {table} SET {', '.join(assignments)} WHERE {_quote(key)} = :_key", params
        )
        if cursor.rowcount == 0:
            raise KeyError(f"no {table} row {key_value!r}")

    # ------------------------------------------------------------------ reads

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The row of one call as a dict, or None."""
        row = self._db.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        return dict(row) if row is not None else None

    def get_legs(self, call_id: str) -> list[dict[str, Any]]:
        """The legs of one call, in start order."""
        rows = self._db.execute(
            "SELECT * FROM legs WHERE call_id = ? ORDER BY start, rowid", (call_id,)
        )
        return [dict(r) for r in rows]

    def get_queue_log(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Queue-log events (of one call, or all), in order; ``data`` decoded from JSON."""
        if call_id is None:
            rows = self._db.execute("SELECT * FROM queue_log ORDER BY id")
        else:
            rows = self._db.execute(
                "SELECT * FROM queue_log WHERE call_id = ? ORDER BY id", (call_id,)
            )
        out = []
        for row in rows:
            item = dict(row)
            if item["data"] is not None:
                item["data"] = msgspec.json.decode(item["data"])
            out.append(item)
        return out

    def export_csv(self, table: str, fileobj: IO[str]) -> int:
        """Write ``table`` as CSV with a header row to a text file; return the row count.

        Open the file with ``newline=""`` as the csv module requires.
        """
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")
        columns = TABLES[table]
        writer = csv.writer(fileobj)
        writer.writerow(columns)
        count = 0
        select = ", ".join(_quote(c) for c in columns)
        for row in self._db.execute(f"SELECT {select} FROM {table} ORDER BY rowid"):
            writer.writerow(tuple(row))
            count += 1
        return count

    def last_agent(self, caller: str, queue: str, since: float) -> str | None:
        """The agent who answered `caller`'s latest call in `queue` that started at or after
        `since` (epoch seconds), for the queue's sticky agent; None when there is none."""
        row = self._db.execute(
            "SELECT agent FROM calls WHERE caller = ? AND start >= ? AND queue = ? "
            "AND answer IS NOT NULL AND agent IS NOT NULL ORDER BY start DESC LIMIT 1",
            (caller, since, queue),
        ).fetchone()
        return row[0] if row is not None else None

    def callback_list(self, since: float) -> list[dict[str, Any]]:
        """Callers to call back (ACD-8): callback requests (queue-log CALLBACK) and abandoned
        calls (ABANDON) since `since` (epoch seconds), oldest first, each once per caller
        and queue, leaving out callers whose later call was answered and those a callback
        reached: an agent's (`*5`, route `phone:callback`) or one the node dialled for an
        agent (route `node:callback`). Each task lists the callback attempts made since
        (`attempts`; `last_attempt`: agent, disposition, SIP cause, start)."""
        rows = self._db.execute(
            "SELECT q.at, q.event, q.queue, c.caller, c.call_id, q.data FROM queue_log AS q "
            "JOIN calls AS c ON c.call_id = q.call_id "
            "WHERE q.event IN ('CALLBACK', 'ABANDON') AND q.at >= ? AND c.caller != '' "
            "AND NOT EXISTS (SELECT 1 FROM calls AS later WHERE later.caller = c.caller "
            "AND later.call_id != c.call_id AND later.start >= q.at "
            "AND later.answer IS NOT NULL AND later.agent IS NOT NULL) "
            f"AND NOT EXISTS (SELECT 1 FROM calls AS back WHERE back.called = c.caller "
            f"AND back.route IN {CALLBACK_ROUTES} AND back.start >= q.at "
            "AND back.answer IS NOT NULL) "
            "ORDER BY q.at, q.id",
            (since,),
        ).fetchall()
        # Every callback attempt since, in one query (not one per task), by number called.
        tried: dict[str, list[Any]] = {}
        for attempt in self._db.execute(
            "SELECT called, caller, disposition, sip_cause, start FROM calls "
            f"WHERE route IN {CALLBACK_ROUTES} AND start >= ? ORDER BY start",
            (since,),
        ):
            tried.setdefault(attempt["called"], []).append(attempt)
        seen: set[tuple[str, str]] = set()
        out: list[dict[str, Any]] = []
        for row in rows:
            key = (row["caller"], row["queue"] or "")
            if key in seen:
                continue
            seen.add(key)
            data = msgspec.json.decode(row["data"]) if row["data"] else {}
            attempts = [a for a in tried.get(row["caller"], ()) if a["start"] >= row["at"]]
            last = attempts[-1] if attempts else None
            out.append({
                "at": row["at"], "kind": "callback" if row["event"] == "CALLBACK" else "abandoned",
                "queue": row["queue"], "caller": row["caller"], "call_id": row["call_id"],
                "waited": data.get("waited"), "position": data.get("position"),
                "attempts": len(attempts),
                "last_attempt": None if last is None else {
                    "agent": last["caller"], "disposition": last["disposition"],
                    "sip_cause": last["sip_cause"], "at": last["start"],
                },
            })  # fmt: skip
        return out

    # ------------------------------------------------------------------ restarts

    @property
    def connection(self) -> sqlite3.Connection:
        """The store's connection, for other stores of the node's state in this database
        (softswitch/bindings.py): their writes join the transaction `flush` commits."""
        return self._db

    def run_started(self, at: float) -> None:
        """A run of the node starts at `at` (epoch seconds), after `unfinished` rows were
        closed and before its first call: the next start looks only at calls since."""
        self._db.execute(
            "INSERT OR REPLACE INTO node_alive (id, started, at) VALUES (1, ?, ?)", (at, at)
        )

    def alive(self, at: float) -> None:
        """The node's heartbeat: it was running at `at` (wall-clock epoch seconds)."""
        self._db.execute("UPDATE node_alive SET at = ? WHERE id = 1", (at,))

    def last_alive(self) -> float | None:
        """The latest moment the node is known to have run: its heartbeat or its last queue
        event, whichever is later; None when neither exists."""
        row = self._db.execute(
            "SELECT (SELECT at FROM node_alive WHERE id = 1), (SELECT max(at) FROM queue_log)"
        ).fetchone()
        times = [t for t in row if t is not None]
        return max(times) if times else None

    def unfinished(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The calls and the legs whose row has no end (a crash left them open), among the
        calls since the last run started (all calls when no run was recorded yet)."""
        row = self._db.execute("SELECT started FROM node_alive WHERE id = 1").fetchone()
        # No run recorded (a database of an older version): look at every call, once.
        since = row[0] if row is not None else float("-inf")
        calls = self._db.execute(
            'SELECT * FROM calls WHERE start >= ? AND "end" IS NULL ORDER BY start, rowid', (since,)
        )
        legs = self._db.execute(
            "SELECT l.* FROM legs AS l JOIN calls AS c ON c.call_id = l.call_id "
            'WHERE c.start >= ? AND l."end" IS NULL ORDER BY c.start, l.rowid',
            (since,),
        )
        return [dict(r) for r in calls], [dict(r) for r in legs]

    def save_dialog(self, leg_id: str, call_id: str, dialog: str) -> None:
        """Keep what hanging up an answered leg takes (`dialog`: its encoded state)."""
        self._db.execute(
            "INSERT OR REPLACE INTO live_dialogs (leg_id, call_id, dialog) VALUES (?, ?, ?)",
            (leg_id, call_id, dialog),
        )

    def drop_dialog(self, leg_id: str) -> None:
        """The leg ended: nothing to hang up after a restart."""
        self._db.execute("DELETE FROM live_dialogs WHERE leg_id = ?", (leg_id,))

    def saved_dialogs(self) -> list[tuple[str, str, str]]:
        """(leg id, call id, encoded dialog) of every saved dialog whose leg has no end."""
        rows = self._db.execute(
            "SELECT d.leg_id, d.call_id, d.dialog FROM live_dialogs AS d "
            'JOIN legs AS l ON l.leg_id = d.leg_id WHERE l."end" IS NULL ORDER BY d.rowid'
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def clear_dialogs(self) -> None:
        """Forget every saved dialog (at start, once their BYEs are decided)."""
        self._db.execute("DELETE FROM live_dialogs")

    def flush(self) -> None:
        """Commit the writes gathered since the last flush (no-op in autocommit mode)."""
        if self._db.in_transaction:
            self._db.commit()

    def close(self) -> None:
        """Commit, checkpoint the WAL into the database file and close."""
        try:
            self.flush()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()

    def __enter__(self) -> CdrStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT/ROLLBACK on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class CdrWriter:
    """The CDR and queue log as the event bus's first subscriber (`EventBus.subscribe`).

    Each bus event becomes the rows it concerns, in the store's open transaction (the node
    commits once per input, before it sends anything). One method per event type, found by
    the event's type (this runs for every event of every call)."""

    def __init__(self, store: CdrStore) -> None:
        from softswitch.call import events as ev

        self.store = store
        self.handlers: dict[type, Any] = {
            ev.CallStarted: self._call_started,
            ev.LegStarted: self._leg_started,
            ev.CallQueued: self._call_queued,
            ev.CallRinging: self._call_ringing,
            ev.LegProgress: self._leg_progress,
            ev.CallAnswered: self._call_answered,
            ev.CallAnsweredByNode: self._answered_by_node,
            ev.LegStopped: self._leg_stopped,
            ev.CallEnded: self._call_ended,
            ev.QueueLogged: self._queue_logged,
        }

    @property
    def kinds(self) -> tuple[type, ...]:
        """The event types that write rows (the bus passes it only these)."""
        return tuple(self.handlers)

    def __call__(self, event: Any) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _call_started(self, event: Any) -> None:
        self.store.call_started(
            event.call_id, start=event.at, sip_call_id=event.sip_call_id, trunk=event.trunk,
            caller=event.caller, called=event.called, pai=event.pai, diversion=event.diversion,
            route=event.route,
        )  # fmt: skip

    def _leg_started(self, event: Any) -> None:
        self.store.leg_started(
            event.leg_id, call_id=event.call_id, direction=event.direction, start=event.at,
            sip_call_id=event.sip_call_id, peer=event.peer,
        )  # fmt: skip

    def _call_queued(self, event: Any) -> None:
        self.store.call_update(event.call_id, queue=event.queue, queued=event.at)

    def _call_ringing(self, event: Any) -> None:
        self.store.call_update(event.call_id, agent=event.agent_id, ringing=event.at)

    def _leg_progress(self, event: Any) -> None:
        if event.what == "ringing":
            self.store.leg_update(event.leg_id, ringing=event.at)
        else:
            self.store.leg_update(event.leg_id, answer=event.at, sip_cause=event.sip_cause)

    def _call_answered(self, event: Any) -> None:
        store = self.store
        if not event.first:  # a transfer's next agent: the call's answer and wait stand
            store.call_update(event.call_id, agent=event.agent_id)
            return
        store.call_update(event.call_id, answer=event.at, agent=event.agent_id, wait=event.wait)
        store.leg_update(event.caller_leg, answer=event.at)

    def _answered_by_node(self, event: Any) -> None:
        self.store.call_update(event.call_id, node_answer=event.at)
        self.store.leg_update(event.leg_id, answer=event.at)

    def _leg_stopped(self, event: Any) -> None:
        fields: dict[str, Any] = {"end": event.at}
        if event.disposition is not None:
            fields["disposition"] = event.disposition
        if event.sip_cause is not None:
            fields["sip_cause"] = event.sip_cause
        self.store.leg_update(event.leg_id, **fields)

    def _call_ended(self, event: Any) -> None:
        fields: dict[str, Any] = {
            "end": event.at, "talk": event.talk, "wait": event.wait,
            "disposition": event.disposition, "hangup_side": event.hangup_side,
        }  # fmt: skip
        if event.sip_cause is not None:
            fields["sip_cause"] = event.sip_cause
        if event.variables:
            fields["variables"] = msgspec.json.encode(event.variables).decode()
            rating = event.variables.get("survey_rating", "")
            if rating.isdigit():
                fields["survey_rating"] = int(rating)
        self.store.call_update(event.call_id, **fields)

    def _queue_logged(self, event: Any) -> None:
        self.store.queue_event(
            event.at, event.call_id, event.queue, event.agent_id, event.event, event.data
        )
