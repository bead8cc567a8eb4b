"""The blacklist of calling numbers (SPEC DP-2), kept in the node's SQLite database.

Entries block one number, or every number starting with it (``prefix``), optionally only
from ``start`` and/or until ``end`` (epoch seconds; ``end`` excluded). They live in the
table ``blacklist`` of ``<data>/blacklist.db`` (WAL mode), so that the running node, the
``hotline blacklist`` command and the API change one list at run time without a reload. It is
a file of its own: ``PRAGMA data_version`` then changes only when the list does, not with
every CDR commit of the node, which would re-read the list for every call. Every change is appended to ``blacklist_log`` (who, when, add or
remove, the entry as it was); triggers refuse updates and deletes of the log.

`BlacklistStore.blocked` runs once per incoming call: the entries are kept in memory, in
dicts by number and by prefix, and re-read only when ``PRAGMA data_version`` says another
connection has committed a change (the store's own writes refresh it directly).
What a blocked caller gets is configured in ``dialplan.yaml`` (``blacklist:``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from softswitch.sqlite_wal import connect_wal

__all__ = ["BlacklistError", "BlacklistStore", "Entry", "LogEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blacklist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL,
    prefix INTEGER NOT NULL DEFAULT 0 CHECK (prefix IN (0, 1)),
    start_at REAL,
    end_at REAL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS blacklist_number ON blacklist (number);
CREATE TABLE IF NOT EXISTS blacklist_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    change TEXT NOT NULL CHECK (change IN ('add', 'remove')),
    entry_id INTEGER NOT NULL,
    number TEXT NOT NULL,
    prefix INTEGER NOT NULL,
    start_at REAL,
    end_at REAL,
    reason TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS blacklist_log_no_update BEFORE UPDATE ON blacklist_log
BEGIN SELECT RAISE(ABORT, 'blacklist_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS blacklist_log_no_delete BEFORE DELETE ON blacklist_log
BEGIN SELECT RAISE(ABORT, 'blacklist_log is append-only'); END
"""

_ENTRY_COLUMNS = "id, number, prefix, start_at, end_at, reason, created_by, created_at"


class BlacklistError(Exception):
    """A blacklist change that cannot be made: an unknown entry, an invalid number or
    window. The CLI prints it and exits with status 2; the API answers 4xx."""


class Entry(msgspec.Struct, frozen=True):
    """One blacklist entry."""

    id: int
    number: str
    prefix: bool
    start: float | None  # epoch seconds; None: from the start of time
    end: float | None  # epoch seconds, excluded; None: for ever
    reason: str
    created_by: str
    created_at: float

    def active(self, epoch: float) -> bool:
        """True if the entry blocks at ``epoch``."""
        return (self.start is None or self.start <= epoch) and (
            self.end is None or epoch < self.end
        )

    def matches(self, number: str) -> bool:
        """True if the entry covers ``number`` (its window aside)."""
        return number.startswith(self.number) if self.prefix else number == self.number


class LogEntry(msgspec.Struct, frozen=True):
    """One change of the blacklist: who made it, when, and the entry as it was."""

    id: int
    at: float
    who: str
    change: Literal["add", "remove"]
    entry_id: int
    number: str
    prefix: bool
    start: float | None
    end: float | None
    reason: str


class _Index(msgspec.Struct, frozen=True):
    exact: dict[str, tuple[Entry, ...]]
    prefixes: dict[str, tuple[Entry, ...]]
    lengths: tuple[int, ...]  # prefix lengths, longest first


def _index(entries: tuple[Entry, ...]) -> _Index:
    exact: dict[str, list[Entry]] = {}
    prefixes: dict[str, list[Entry]] = {}
    for entry in entries:
        (prefixes if entry.prefix else exact).setdefault(entry.number, []).append(entry)
    return _Index(
        exact={k: tuple(v) for k, v in exact.items()},
        prefixes={k: tuple(v) for k, v in prefixes.items()},
        lengths=tuple(sorted({len(p) for p in prefixes}, reverse=True)),
    )


def _entry(row: tuple[Any, ...]) -> Entry:
    id_, number, prefix, start, end, reason, created_by, created_at = row
    return Entry(
        id=int(id_),
        number=str(number),
        prefix=bool(prefix),
        start=None if start is None else float(start),
        end=None if end is None else float(end),
        reason=str(reason),
        created_by=str(created_by),
        created_at=float(created_at),
    )


class BlacklistStore:
    """The blacklist tables of one SQLite database file (created if missing).

    `sqlite3.Error` passes through for storage failures; `BlacklistError` is a change that
    cannot be made.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # isolation_level=None: autocommit; changes use explicit BEGIN IMMEDIATE.
        self._db = connect_wal(self.path)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._version: int | None = None
        self._entries: tuple[Entry, ...] = ()
        self._lookup = _index(())
        self._refresh()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> BlacklistStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _refresh(self) -> None:
        """Re-read the entries if another connection committed since the last read."""
        version = self._data_version()
        if version == self._version:
            return
        rows = self._db.execute(f"SELECT {_ENTRY_COLUMNS} FROM blacklist ORDER BY id").fetchall()
        self._entries = tuple(_entry(row) for row in rows)
        self._lookup = _index(self._entries)
        self._version = version

    def entries(self) -> tuple[Entry, ...]:
        """Every entry (also those not in force yet or any more), by id."""
        self._refresh()
        return self._entries

    def blocked(self, number: str, epoch: float) -> Entry | None:
        """The entry that blocks a call from ``number`` at ``epoch``, or None.

        An exact entry is preferred to a prefix entry, a longer prefix to a shorter one.
        Costs one ``PRAGMA data_version`` and a few dict lookups unless the list changed.
        """
        self._refresh()
        lookup = self._lookup
        for entry in lookup.exact.get(number, ()):
            if entry.active(epoch):
                return entry
        for length in lookup.lengths:
            if length > len(number):
                continue
            for entry in lookup.prefixes.get(number[:length], ()):
                if entry.active(epoch):
                    return entry
        return None

    def log(self) -> list[LogEntry]:
        """Every change, oldest first."""
        rows = self._db.execute(
            "SELECT id, at, who, change, entry_id, number, prefix, start_at, end_at, reason "
            "FROM blacklist_log ORDER BY id"
        ).fetchall()
        return [
            LogEntry(
                id=id_,
                at=at,
                who=who,
                change=change,
                entry_id=entry_id,
                number=number,
                prefix=bool(prefix),
                start=start,
                end=end,
                reason=reason,
            )
            for id_, at, who, change, entry_id, number, prefix, start, end, reason in rows
        ]

    # ------------------------------------------------------------------ changes

    def add(
        self,
        number: str,
        *,
        reason: str,
        by: str,
        prefix: bool = False,
        start: float | None = None,
        end: float | None = None,
        now: float | None = None,
    ) -> Entry:
        """Add an entry and log it; returns it with its id."""
        if not number or not all(c.isdigit() or c in "+*#" for c in number):
            raise BlacklistError(f"invalid number {number!r} (digits, + * # only)")
        if not reason.strip():
            raise BlacklistError("a reason is required")
        if start is not None and end is not None and end <= start:
            raise BlacklistError("the end must be after the start")
        at = time.time() if now is None else now
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "INSERT INTO blacklist (number, prefix, start_at, end_at, reason, created_by, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (number, int(prefix), start, end, reason, by, at),
            )
            entry = Entry(
                id=int(cursor.lastrowid or 0),
                number=number,
                prefix=prefix,
                start=start,
                end=end,
                reason=reason,
                created_by=by,
                created_at=at,
            )
            self._append_log(at, by, "add", entry)
        self._version = None  # our own commit does not change data_version
        return entry

    def remove(self, entry_id: int, *, by: str, now: float | None = None) -> Entry:
        """Remove the entry ``entry_id`` and log it; `BlacklistError` if there is none."""
        at = time.time() if now is None else now
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM blacklist WHERE id = ?", (entry_id,)
            ).fetchone()
            if row is None:
                raise BlacklistError(f"no blacklist entry with id {entry_id}")
            entry = _entry(row)
            self._db.execute("DELETE FROM blacklist WHERE id = ?", (entry_id,))
            self._append_log(at, by, "remove", entry)
        self._version = None
        return entry

    def remove_number(self, number: str, *, by: str, now: float | None = None) -> list[Entry]:
        """Remove every entry written for ``number`` (exact or prefix); `BlacklistError` if
        there is none."""
        ids = [e.id for e in self.entries() if e.number == number]
        if not ids:
            raise BlacklistError(f"no blacklist entry for {number}")
        return [self.remove(entry_id, by=by, now=now) for entry_id in ids]

    def _append_log(self, at: float, who: str, change: str, entry: Entry) -> None:
        self._db.execute(
            "INSERT INTO blacklist_log (at, who, change, entry_id, number, prefix, start_at, "
            "end_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at,
                who,
                change,
                entry.id,
                entry.number,
                int(entry.prefix),
                entry.start,
                entry.end,
                entry.reason,
            ),
        )
