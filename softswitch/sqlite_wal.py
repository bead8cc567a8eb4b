"""One way to open the node's SQLite files: a connection in WAL journal mode, or an error.

Every store (CDR, blacklist, voicemail, recording index) needs WAL: readers and the one
writer work at once, and a commit survives the process being killed. A file system that
cannot do WAL (some network mounts) is refused instead of silently running without it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect_wal(
    path: str | Path,
    *,
    check_same_thread: bool = True,
    busy_timeout_ms: int | None = None,
    wal_retry_s: float = 0.0,
) -> sqlite3.Connection:
    """An autocommit connection (`isolation_level=None`).

    `busy_timeout_ms`, when given, is set before the switch to WAL. `wal_retry_s`: on a new
    file, connections opening at once contend for the switch and SQLite answers "database is
    locked" at once rather than through the busy handler; the switch is tried again until
    that many seconds have passed (0: not retried)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    try:
        if busy_timeout_ms is not None:
            db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        deadline = time.monotonic() + wal_retry_s
        while True:
            try:
                mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL journal mode on {path}: {mode}")
    except BaseException:
        db.close()
        raise
    return db


__all__ = ["connect_wal"]
