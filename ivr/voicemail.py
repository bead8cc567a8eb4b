"""Voicemail messages: files under one directory, indexed in SQLite (SPEC DP-8).

`IvrApp` records a message into `VoicemailStore.path_for(mailbox, call_id)` and sets the call
variables `voicemail_mailbox`, `voicemail_path` and `voicemail_seconds`; call control
publishes `VoicemailLeft` from them, and the subscriber that owns this store calls `add`.

The index is the table `voicemail` of the node's database (`<data>/hotline.db`, shared with
the CDR tables, each store creating only its own). WAL mode and autocommit, as the CDR store:
a message added before a crash is listed after it. Adding the same (call, mailbox) again
updates the entry instead of adding a second one, so a replayed event does no harm.

Messages are recorded as WAV; where the node records calls, the recorder then encodes each to
Ogg Opus among the recordings (indexed and kept like them) and `move`s the entry to it.

This module does I/O (files, SQLite); it is not one of the pure IVR modules.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

import msgspec

from softswitch.sqlite_wal import connect_wal

#: Mailbox names and call ids become path components: nothing that can climb out.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS voicemail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    caller TEXT,
    called TEXT,
    at REAL NOT NULL,
    path TEXT NOT NULL,
    seconds REAL NOT NULL,
    heard INTEGER NOT NULL DEFAULT 0,
    UNIQUE (call_id, mailbox)
);
CREATE INDEX IF NOT EXISTS voicemail_mailbox_at ON voicemail (mailbox, at)
"""


class VoicemailEntry(msgspec.Struct, frozen=True):
    """One message; `at` is wall-clock epoch seconds, `heard` whether someone listened."""

    id: int
    call_id: str
    mailbox: str
    caller: str | None
    called: str | None
    at: float
    path: str
    seconds: float
    heard: bool


class VoicemailStore:
    """The voicemail index of one node and the directory its WAV files live in.

    `sqlite3.Error` passes through for storage failures; `ValueError` for a mailbox or call
    id that cannot be a file name."""

    def __init__(self, db_path: str | Path, directory: str | Path) -> None:
        self.db_path = Path(db_path)
        self.directory = Path(directory)
        self._db = connect_wal(self.db_path)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=5000")
        for statement in _SCHEMA.split(";"):
            self._db.execute(statement)

    def path_for(self, mailbox: str, call_id: str) -> str:
        """`<directory>/<mailbox>/<call_id>.wav`, its directory created."""
        for what, name in (("mailbox", mailbox), ("call id", call_id)):
            if not _SAFE_NAME.match(name):
                raise ValueError(f"{what} {name!r} cannot be used as a file name")
        folder = self.directory / mailbox
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"{call_id}.wav")

    def add(
        self,
        *,
        call_id: str,
        mailbox: str,
        at: float,
        path: str,
        seconds: float,
        caller: str | None = None,
        called: str | None = None,
    ) -> int:
        """Index a message (again: update it, unheard); returns its id."""
        row = self._db.execute(
            "INSERT INTO voicemail (call_id, mailbox, caller, called, at, path, seconds, heard)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
            " ON CONFLICT (call_id, mailbox) DO UPDATE SET caller = excluded.caller,"
            " called = excluded.called, at = excluded.at, path = excluded.path,"
            " seconds = excluded.seconds, heard = 0"
            " RETURNING id",
            (call_id, mailbox, caller, called, at, path, seconds),
        ).fetchone()
        return int(row[0])

    def list(self, mailbox: str | None = None, limit: int = 100) -> list[VoicemailEntry]:
        """Messages, newest first; of one `mailbox` when given."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        where, args = ("WHERE mailbox = ?", (mailbox,)) if mailbox is not None else ("", ())
        rows = self._db.execute(
            f"SELECT * FROM voicemail {where} ORDER BY at DESC, id DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [
            VoicemailEntry(
                id=row["id"],
                call_id=row["call_id"],
                mailbox=row["mailbox"],
                caller=row["caller"],
                called=row["called"],
                at=row["at"],
                path=row["path"],
                seconds=row["seconds"],
                heard=bool(row["heard"]),
            )
            for row in rows
        ]

    def move(self, call_id: str, mailbox: str, path: str) -> bool:
        """The message's file is now `path` (the recorder encoded it); False: no such message."""
        cursor = self._db.execute(
            "UPDATE voicemail SET path = ? WHERE call_id = ? AND mailbox = ?",
            (path, call_id, mailbox),
        )
        return cursor.rowcount > 0

    def mark_heard(self, entry_id: int, heard: bool = True) -> bool:
        """Set the heard flag; False when there is no such message."""
        cursor = self._db.execute(
            "UPDATE voicemail SET heard = ? WHERE id = ?", (int(heard), entry_id)
        )
        return cursor.rowcount > 0

    def close(self) -> None:
        self._db.close()


def format_table(entries: list[VoicemailEntry]) -> str:
    """A plain text table for a terminal: one line per message, local time."""
    header = ("id", "time", "mailbox", "caller", "called", "seconds", "heard", "file")
    lines = [header] + [
        (
            str(e.id),
            datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M:%S"),
            e.mailbox,
            e.caller or "-",
            e.called or "-",
            f"{e.seconds:.1f}",
            "yes" if e.heard else "no",
            e.path,
        )
        for e in entries
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def list_command(
    data_dir: str, mailbox: str | None, *, limit: int = 100, out: TextIO | None = None
) -> int:
    """`hotline voicemail list [MAILBOX]`: print the messages of `<data_dir>/hotline.db`.

    Exit status 0, also when there are none (a node that never took a message has no
    database yet: none is created); 1 when the database cannot be read."""
    stream = out if out is not None else sys.stdout
    db_path = Path(data_dir) / "hotline.db"
    if not db_path.exists():
        print("no voicemail", file=stream)
        return 0
    try:
        store = VoicemailStore(db_path, Path(data_dir) / "voicemail")
        try:
            entries = store.list(mailbox, limit=limit)
        finally:
            store.close()
    except sqlite3.Error as exc:
        print(f"hotline: {db_path}: {exc}", file=sys.stderr)
        return 1
    if not entries:
        print("no voicemail" + (f" in mailbox {mailbox}" if mailbox else ""), file=stream)
        return 0
    print(format_table(entries), file=stream)
    return 0


__all__ = ["VoicemailEntry", "VoicemailStore", "format_table", "list_command"]
