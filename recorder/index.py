"""The recording index: one SQLite row per recording, its agent segments, backups and audit.

The index lives in `<data>/recordings.db` (WAL, autocommit), apart from the CDR database: the
recorder's worker thread writes it, so no write of the index ever waits on, or holds up, the
CDR transaction the event loop commits before it sends (SPEC REC-1, REC-2, REC-3).

A row is inserted when recording starts (`incomplete` = 1) and completed when the file is
closed: end, duration, size, SHA-256, retention policy and expiry, `incomplete` = 0. A node
killed mid-call leaves rows without an end; `recover` finishes them from what the file holds
and keeps them marked incomplete. A deleted recording keeps its row (time, by whom, which
policy): that row is the record that the audio existed and was removed.

Search (`search`) takes a `Viewer`: an agent sees only recordings with a segment of its own
(the tenders' "agents replay only their own calls"); supervisors and admins see all; only an
admin deletes or sets a legal hold. Every export, play and deletion writes an audit row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from recorder.backup import BackupItem
from softswitch.sqlite_wal import connect_wal

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('call', 'voicemail')),
    call_id TEXT NOT NULL,
    legs TEXT NOT NULL DEFAULT '[]',
    path TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    duration REAL,
    caller TEXT,
    called TEXT,
    queue TEXT,
    service_type TEXT,
    customer_id TEXT,
    mailbox TEXT,
    incomplete INTEGER NOT NULL DEFAULT 1,
    bytes INTEGER,
    sha256 TEXT,
    lost_seconds REAL NOT NULL DEFAULT 0,
    error TEXT,
    policy TEXT,
    expires REAL,
    records_expire REAL,
    legal_hold INTEGER NOT NULL DEFAULT 0,
    hold_reason TEXT,
    deleted REAL,
    deleted_by TEXT,
    deleted_policy TEXT,
    qa TEXT,
    qa_flags TEXT
);
CREATE INDEX IF NOT EXISTS recordings_started ON recordings (started);
CREATE INDEX IF NOT EXISTS recordings_caller ON recordings (caller, started);
CREATE INDEX IF NOT EXISTS recordings_customer ON recordings (customer_id, started);
CREATE INDEX IF NOT EXISTS recordings_expires ON recordings (expires) WHERE deleted IS NULL;
CREATE TABLE IF NOT EXISTS segments (
    recording_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    leg_id TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL,
    PRIMARY KEY (recording_id, leg_id)
);
CREATE INDEX IF NOT EXISTS segments_agent ON segments (agent_id, recording_id);
CREATE TABLE IF NOT EXISTS backups (
    recording_id TEXT NOT NULL,
    target TEXT NOT NULL,
    remote TEXT,
    at REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (recording_id, target)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    recording_id TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)
"""

Role = Literal["agent", "supervisor", "admin"]


class Viewer(msgspec.Struct, frozen=True):
    """Who asks: `agent` (with `agent_id`: only recordings it took part in), `supervisor`
    (everything, read only) or `admin` (also deletes and legal holds)."""

    role: Role
    name: str
    agent_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> Viewer:
        """`agent:1001`, `supervisor:NAME` or `admin:NAME` (the CLI's `--as`)."""
        role, sep, name = text.partition(":")
        if not sep or not name or role not in ("agent", "supervisor", "admin"):
            raise ValueError(f"expected agent:ID, supervisor:NAME or admin:NAME, got {text!r}")
        return cls(role, name, name if role == "agent" else None)  # type: ignore[arg-type]


class AccessDeniedError(PermissionError):
    """The viewer may not see or change this recording."""


class Segment(msgspec.Struct, frozen=True):
    """An agent's part of a recording, in seconds from its start (`end` None: still on)."""

    agent_id: str
    leg_id: str
    start: float
    end: float | None


class Recording(msgspec.Struct, frozen=True):
    id: str
    kind: str
    call_id: str
    legs: tuple[str, ...]
    path: str
    started: float
    ended: float | None
    duration: float | None
    caller: str | None
    called: str | None
    queue: str | None
    service_type: str | None
    customer_id: str | None
    mailbox: str | None
    incomplete: bool
    bytes: int | None
    sha256: str | None
    lost_seconds: float
    error: str | None
    policy: str | None
    expires: float | None
    legal_hold: bool
    hold_reason: str | None
    deleted: float | None
    deleted_by: str | None
    deleted_policy: str | None
    qa: dict[str, Any] | None
    qa_flags: tuple[str, ...]
    segments: tuple[Segment, ...] = ()

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.agent_id for s in self.segments))


class SearchFilter(msgspec.Struct, frozen=True):
    """Every field optional; all given ones must hold. Times are epoch seconds."""

    start_from: float | None = None
    start_to: float | None = None
    agent: str | None = None
    caller: str | None = None
    called: str | None = None
    queue: str | None = None
    service_type: str | None = None
    customer_id: str | None = None
    kind: str | None = None
    flag: str | None = None
    incomplete: bool | None = None
    deleted: bool | None = False  # False: only kept audio; None: both; True: only deleted
    limit: int = 100


class RecordingIndex:
    """The index database. One connection per thread: open one in each (SQLite WAL lets
    readers and the writer work at once; `busy_timeout` covers writer meeting writer)."""

    def __init__(self, path: str | Path, directory: str | Path | None = None) -> None:
        """`directory`: where the recordings' relative paths start (the backup needs it)."""
        self.path = Path(path)
        self.directory = Path(directory) if directory is not None else self.path.parent
        # Several connections may open a new index at once (the worker, QA, a pass, the
        # CLI): the switch to WAL is retried for up to 10 s.
        self._db = connect_wal(
            self.path, check_same_thread=False, busy_timeout_ms=10000, wal_retry_s=10.0
        )
        self._db.row_factory = sqlite3.Row
        # WAL with NORMAL: a commit survives the process being killed (REC-4) without an
        # fsync each; a power cut may lose the last commits, never the database.
        self._db.execute("PRAGMA synchronous=NORMAL")
        # One write transaction, taken before anything is read: connections opening a new
        # file at once (the worker, QA, a pass, the CLI) wait for each other instead of each
        # seeing an empty schema_version and inserting a version row of its own.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            if self._db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # --- writing (the recorder's worker) ----------------------------------------------------
    def start(
        self,
        recording_id: str,
        *,
        kind: str,
        call_id: str,
        path: str,
        started: float,
        legs: Sequence[str] = (),
        caller: str | None = None,
        called: str | None = None,
        queue: str | None = None,
        service_type: str | None = None,
        customer_id: str | None = None,
        mailbox: str | None = None,
    ) -> None:
        """A recording begins (again, after a replayed event: the row is left as it is)."""
        self._db.execute(
            "INSERT INTO recordings (id, kind, call_id, legs, path, started, caller, called,"
            " queue, service_type, customer_id, mailbox) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (id) DO NOTHING",
            (
                recording_id,
                kind,
                call_id,
                json.dumps(list(legs)),
                path,
                started,
                caller,
                called,
                queue,
                service_type,
                customer_id,
                mailbox,
            ),
        )

    def update(self, recording_id: str, **fields: Any) -> None:
        """Set call data learnt during the call (queue, service type, customer id, legs …)."""
        allowed = {"legs", "caller", "called", "queue", "service_type", "customer_id", "error"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"not an updatable recording field: {', '.join(sorted(bad))}")
        if not fields:
            return
        values = [json.dumps(list(v)) if k == "legs" else v for k, v in fields.items()]
        sets = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE recordings SET {sets} WHERE id = ?", (*values, recording_id))

    def segment_start(self, recording_id: str, agent_id: str, leg_id: str, start: float) -> None:
        self._db.execute(
            "INSERT INTO segments (recording_id, agent_id, leg_id, start) VALUES (?,?,?,?)"
            " ON CONFLICT DO NOTHING",
            (recording_id, agent_id, leg_id, start),
        )

    def segment_end(self, recording_id: str, leg_id: str, end: float) -> None:
        self._db.execute(
            'UPDATE segments SET "end" = ? WHERE recording_id = ? AND leg_id = ? AND "end" IS NULL',
            (end, recording_id, leg_id),
        )

    def finish(
        self,
        recording_id: str,
        *,
        ended: float,
        duration: float,
        size: int,
        sha256: str,
        incomplete: bool,
        lost_seconds: float = 0.0,
        error: str | None = None,
        policy: str | None = None,
        expires: float | None = None,
        records_expire: float | None = None,
    ) -> None:
        """The file is closed (or recovered): its figures, and when policy lets it go."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE recordings SET ended = ?, duration = ?, bytes = ?, sha256 = ?,"
                " incomplete = ?, lost_seconds = ?, error = coalesce(?, error), policy = ?,"
                " expires = ?, records_expire = ? WHERE id = ?",
                (
                    ended,
                    duration,
                    size,
                    sha256,
                    int(incomplete),
                    lost_seconds,
                    error,
                    policy,
                    expires,
                    records_expire,
                    recording_id,
                ),
            )
            self._db.execute(
                'UPDATE segments SET "end" = ? WHERE recording_id = ? AND "end" IS NULL',
                (duration, recording_id),
            )

    def set_qa(self, recording_id: str, qa_json: str, flags: Iterable[str]) -> None:
        joined = "".join(f",{f}" for f in flags)
        self._db.execute(
            "UPDATE recordings SET qa = ?, qa_flags = ? WHERE id = ?",
            (qa_json, joined + "," if joined else "", recording_id),
        )

    def unfinished(self) -> list[Recording]:
        """Rows without an end: recordings a crash interrupted (or still running)."""
        rows = self._db.execute("SELECT * FROM recordings WHERE ended IS NULL").fetchall()
        return self._recordings(rows)

    # --- reading ------------------------------------------------------------------------------
    def get(self, recording_id: str, viewer: Viewer | None = None) -> Recording | None:
        """The recording, or None when there is none (or the viewer may not see it)."""
        row = self._db.execute("SELECT * FROM recordings WHERE id = ?", (recording_id,)).fetchone()
        if row is None:
            return None
        (recording,) = self._recordings([row])
        if viewer is not None and not self.may_see(viewer, recording):
            return None
        return recording

    @staticmethod
    def may_see(viewer: Viewer, recording: Recording) -> bool:
        if viewer.role != "agent":
            return True
        return viewer.agent_id in recording.agents

    def search(self, query: SearchFilter, viewer: Viewer) -> list[Recording]:
        """Recordings matching `query`, newest first, that `viewer` may see."""
        if not 1 <= query.limit <= 100_000:
            raise ValueError(f"limit must be 1-100000, not {query.limit}")
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("caller", query.caller),
            ("called", query.called),
            ("queue", query.queue),
            ("service_type", query.service_type),
            ("customer_id", query.customer_id),
            ("kind", query.kind),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.start_from is not None:
            where.append("started >= ?")
            args.append(query.start_from)
        if query.start_to is not None:
            where.append("started < ?")
            args.append(query.start_to)
        if query.flag is not None:
            where.append("qa_flags LIKE ?")
            args.append(f"%,{query.flag},%")
        if query.incomplete is not None:
            where.append("incomplete = ?")
            args.append(int(query.incomplete))
        if query.deleted is not None:
            where.append("deleted IS NOT NULL" if query.deleted else "deleted IS NULL")
        for agent in (query.agent, viewer.agent_id if viewer.role == "agent" else None):
            if agent is not None:
                where.append("id IN (SELECT recording_id FROM segments WHERE agent_id = ?)")
                args.append(agent)
        sql = "SELECT * FROM recordings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started DESC, id DESC LIMIT ?"
        rows = self._db.execute(sql, (*args, query.limit)).fetchall()
        return self._recordings(rows)

    # --- retention, holds, deletion -----------------------------------------------------------
    def expired(self, now: float, limit: int = 1000) -> list[Recording]:
        """Kept, finished recordings past their expiry and not under legal hold."""
        rows = self._db.execute(
            "SELECT * FROM recordings WHERE deleted IS NULL AND ended IS NOT NULL"
            " AND expires IS NOT NULL AND expires <= ? AND legal_hold = 0"
            " ORDER BY expires LIMIT ?",
            (now, limit),
        ).fetchall()
        return self._recordings(rows)

    def records_expired(self, now: float, limit: int = 1000) -> list[tuple[str, str]]:
        """(recording id, call id) whose call records are past their policy's time."""
        rows = self._db.execute(
            "SELECT id, call_id FROM recordings WHERE records_expire IS NOT NULL"
            " AND records_expire <= ? AND legal_hold = 0 AND caller IS NOT NULL LIMIT ?",
            (now, limit),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def forget_parties(self, recording_id: str) -> None:
        """The call records expired: the row keeps only that a recording existed."""
        self._db.execute(
            "UPDATE recordings SET caller = NULL, called = NULL, customer_id = NULL, qa = NULL"
            " WHERE id = ?",
            (recording_id,),
        )

    def mark_deleted(self, recording_id: str, *, at: float, by: str, policy: str | None) -> None:
        """The audio is gone: keep the row, drop what it said (the transcript)."""
        self._db.execute(
            "UPDATE recordings SET deleted = ?, deleted_by = ?, deleted_policy = ?,"
            " qa = json_remove(qa, '$.transcript') WHERE id = ?",
            (at, by, policy, recording_id),
        )

    def set_hold(self, recording_id: str, on: bool, reason: str | None) -> bool:
        cursor = self._db.execute(
            "UPDATE recordings SET legal_hold = ?, hold_reason = ? WHERE id = ?",
            (int(on), reason if on else None, recording_id),
        )
        return cursor.rowcount > 0

    def audit(
        self, *, at: float, user: str, action: str, recording_id: str | None, detail: str = ""
    ) -> None:
        self._db.execute(
            "INSERT INTO audit (at, user, action, recording_id, detail) VALUES (?,?,?,?,?)",
            (at, user, action, recording_id, detail),
        )

    def audit_log(self, recording_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ("WHERE recording_id = ?", (recording_id,)) if recording_id else ("", ())
        rows = self._db.execute(
            f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [dict(row) for row in rows]

    # --- backups (recorder.backup.BackupStore) ---------------------------------------------
    def backup_rows(self, target: str, limit: int) -> list[Recording]:
        """Finished, kept recordings not yet copied to `target`, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM recordings WHERE ended IS NOT NULL AND deleted IS NULL"
            " AND sha256 IS NOT NULL AND sha256 != '' AND id NOT IN"
            " (SELECT recording_id FROM backups WHERE target = ? AND error IS NULL)"
            " ORDER BY started LIMIT ?",
            (target, limit),
        ).fetchall()
        return self._recordings(rows)

    def pending_backup(self, target: str, limit: int) -> list[BackupItem]:
        """`recorder.backup.BackupStore`: what `run_backup` copies next."""
        return [
            BackupItem(r.id, self.directory / r.path, r.path, r.sha256 or "", r.bytes or 0)
            for r in self.backup_rows(target, limit)
        ]

    def backup_done(self, recording_id: str, target: str, remote: str, at: float) -> None:
        self._db.execute(
            "INSERT INTO backups (recording_id, target, remote, at, error) VALUES (?,?,?,?,NULL)"
            " ON CONFLICT (recording_id, target) DO UPDATE SET remote = excluded.remote,"
            " at = excluded.at, error = NULL",
            (recording_id, target, remote, at),
        )

    def backup_failed(self, recording_id: str, target: str, error: str, at: float) -> None:
        self._db.execute(
            "INSERT INTO backups (recording_id, target, remote, at, error) VALUES (?,?,NULL,?,?)"
            " ON CONFLICT (recording_id, target) DO UPDATE SET at = excluded.at,"
            " error = excluded.error WHERE backups.error IS NOT NULL",
            (recording_id, target, at, error),
        )

    def backups(self, recording_id: str) -> list[dict[str, Any]]:
        """Every target the recording was copied to (or failed to be): target, remote, at,
        error (None: the copy is there)."""
        rows = self._db.execute(
            "SELECT target, remote, at, error FROM backups WHERE recording_id = ? ORDER BY at",
            (recording_id,),
        ).fetchall()
        return [dict(row) for row in rows]

    def backed_up(self, recording_id: str, target: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM backups WHERE recording_id = ? AND target = ? AND error IS NULL",
            (recording_id, target),
        ).fetchone()
        return row is not None

    # --- rows ---------------------------------------------------------------------------------
    def _recordings(self, rows: Sequence[sqlite3.Row]) -> list[Recording]:
        """Rows as Recordings, with their segments fetched in a few queries, not one a row."""
        segments: dict[str, list[Segment]] = {}
        ids = [row["id"] for row in rows]
        for at in range(0, len(ids), 500):
            chunk = ids[at : at + 500]
            for r in self._db.execute(
                'SELECT recording_id, agent_id, leg_id, start, "end" FROM segments'
                f" WHERE recording_id IN ({','.join('?' * len(chunk))})"
                " ORDER BY recording_id, start, leg_id",
                chunk,
            ):
                segments.setdefault(r[0], []).append(Segment(r[1], r[2], r[3], r[4]))
        return [self._recording(row, tuple(segments.get(row["id"], ()))) for row in rows]

    @staticmethod
    def _recording(row: sqlite3.Row, segments: tuple[Segment, ...]) -> Recording:
        qa = json.loads(row["qa"]) if row["qa"] else None
        return Recording(
            id=row["id"],
            kind=row["kind"],
            call_id=row["call_id"],
            legs=tuple(json.loads(row["legs"] or "[]")),
            path=row["path"],
            started=row["started"],
            ended=row["ended"],
            duration=row["duration"],
            caller=row["caller"],
            called=row["called"],
            queue=row["queue"],
            service_type=row["service_type"],
            customer_id=row["customer_id"],
            mailbox=row["mailbox"],
            incomplete=bool(row["incomplete"]),
            bytes=row["bytes"],
            sha256=row["sha256"],
            lost_seconds=row["lost_seconds"],
            error=row["error"],
            policy=row["policy"],
            expires=row["expires"],
            legal_hold=bool(row["legal_hold"]),
            hold_reason=row["hold_reason"],
            deleted=row["deleted"],
            deleted_by=row["deleted_by"],
            deleted_policy=row["deleted_policy"],
            qa=qa,
            qa_flags=tuple(f for f in (row["qa_flags"] or "").split(",") if f),
            segments=segments,
        )


__all__ = [
    "AccessDeniedError",
    "Recording",
    "RecordingIndex",
    "SearchFilter",
    "Segment",
    "Viewer",
]
