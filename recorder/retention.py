"""Retention (SPEC REC-3): expired audio deleted without residue, call records forgotten, and
the manual deletion and legal hold of an authorised user — every one of them logged.

`run_retention` is one pass: the node runs it every `recording.retention_every` seconds off the
event loop, `hotline recordings retention` runs it by hand (`--dry-run` lists what would go).
For each recording past its policy's `audio_days` and not under legal hold:

1. with a backup target and `before_delete`, the file is copied there first (verified by
   SHA-256) unless it already is; a failed copy keeps the recording for the next pass;
2. the file is removed, and the day directories it leaves empty;
3. the index row is marked deleted (time, by whom, which policy), its transcript dropped, and
   an audit row and a log line say so.

Past `records_days`, the CDR rows of the call (calls, legs, queue log) are deleted and the
index row forgets the parties (caller, called, customer id): what stays is that a recording
existed and when. Calls that were never recorded are not touched by this pass.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from recorder.backup import BackupError, BackupItem, BackupTarget
from recorder.index import AccessDeniedError, Recording, RecordingIndex, Viewer

log = logging.getLogger("hotline.recorder.retention")


@dataclass
class RetentionReport:
    deleted: list[str] = field(default_factory=list)  # ids (dry run: would be deleted)
    backed_up: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)  # call records removed
    kept: list[str] = field(default_factory=list)  # expired but kept: the copy failed
    errors: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    dry_run: bool = False


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def run_retention(
    index: RecordingIndex,
    *,
    now: float,
    target: BackupTarget | None = None,
    cdr_path: Path | None = None,
    dry_run: bool = False,
    limit: int = 1000,
    by: str = "retention",
) -> RetentionReport:
    """One pass over up to `limit` expired recordings (and as many expired call records)."""
    report = RetentionReport(dry_run=dry_run)
    for recording in index.expired(now, limit):
        if dry_run:
            report.deleted.append(recording.id)
            report.bytes_freed += recording.bytes or 0
            continue
        if target is not None and not index.backed_up(recording.id, target.name):
            problem = _copy(index, target, recording, now)
            if problem is not None:
                report.kept.append(recording.id)
                report.errors.append(problem)
                log.error("retention keeps %s: %s", recording.id, problem)
                continue
            report.backed_up.append(recording.id)
        problem = remove_audio(index, recording)
        if problem is not None:
            report.errors.append(problem)
            log.error("retention: %s", problem)
            continue
        detail = (
            f"policy {recording.policy or 'default'} expired {_stamp(recording.expires or now)}"
        )
        index.mark_deleted(recording.id, at=now, by=by, policy=recording.policy)
        index.audit(at=now, user=by, action="delete", recording_id=recording.id, detail=detail)
        log.info("recording %s deleted (%s)", recording.id, detail)
        report.deleted.append(recording.id)
        report.bytes_freed += recording.bytes or 0
    for recording_id, call_id in index.records_expired(now, limit):
        if dry_run:
            report.forgotten.append(recording_id)
            continue
        try:
            removed = _delete_call_records(cdr_path, call_id) if cdr_path is not None else 0
        except sqlite3.Error as exc:
            report.errors.append(f"{recording_id}: call records not deleted: {exc}")
            continue
        index.forget_parties(recording_id)
        index.audit(
            at=now,
            user=by,
            action="forget",
            recording_id=recording_id,
            detail=f"call records past their policy: {removed} CDR rows deleted",
        )
        log.info("call records of %s deleted (%d CDR rows)", recording_id, removed)
        report.forgotten.append(recording_id)
    return report


def _copy(
    index: RecordingIndex, target: BackupTarget, recording: Recording, now: float
) -> str | None:
    item = BackupItem(
        recording.id,
        index.directory / recording.path,
        recording.path,
        recording.sha256 or "",
        recording.bytes or 0,
    )
    if not item.path.exists():
        return None  # nothing left to copy: removing the row's audio is all there is to do
    try:
        remote = target.put(item)
    except BackupError as exc:
        index.backup_failed(recording.id, target.name, str(exc), now)
        return f"copy to {target.name} before deletion failed: {exc}"
    index.backup_done(recording.id, target.name, remote, now)
    return None


def remove_audio(index: RecordingIndex, recording: Recording) -> str | None:
    """Unlink the file and the day directories it leaves empty; an error message or None."""
    path = index.directory / recording.path
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        return f"{recording.id}: cannot delete {path}: {exc}"
    root = index.directory.resolve()
    parent = path.parent
    while parent.resolve() != root and root in parent.resolve().parents:
        try:
            parent.rmdir()
        except OSError:
            break  # not empty (or gone): stop climbing
        parent = parent.parent
    return None


def _delete_call_records(cdr_path: Path, call_id: str) -> int:
    if not cdr_path.exists():
        return 0
    db = sqlite3.connect(cdr_path, timeout=10.0, isolation_level=None)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        removed = 0
        db.execute("BEGIN IMMEDIATE")
        for table in ("calls", "legs", "queue_log"):
            if table in tables:
                removed += db.execute(f"DELETE FROM {table} WHERE call_id = ?", (call_id,)).rowcount
        db.execute("COMMIT")
        return removed
    finally:
        db.close()


def delete_recording(
    index: RecordingIndex, recording_id: str, *, viewer: Viewer, reason: str, now: float
) -> Recording:
    """An admin deletes a recording by hand: logged like retention, refused under legal hold.
    Raises AccessDeniedError (not an admin), KeyError (no such recording), ValueError (held,
    already deleted, no reason) and OSError (the file cannot be removed)."""
    if viewer.role != "admin":
        raise AccessDeniedError(f"{viewer.role} {viewer.name} may not delete recordings")
    if not reason.strip():
        raise ValueError("a deletion needs a reason (it is logged)")
    recording = index.get(recording_id)
    if recording is None:
        raise KeyError(recording_id)
    if recording.deleted is not None:
        raise ValueError(f"{recording_id} was already deleted on {_stamp(recording.deleted)}")
    if recording.legal_hold:
        raise ValueError(
            f"{recording_id} is under legal hold ({recording.hold_reason}); lift the hold first"
        )
    problem = remove_audio(index, recording)
    if problem is not None:
        raise OSError(problem)
    by = f"admin:{viewer.name}"
    index.mark_deleted(recording_id, at=now, by=by, policy="manual")
    index.audit(at=now, user=by, action="delete", recording_id=recording_id, detail=reason)
    log.warning("recording %s deleted by %s: %s", recording_id, by, reason)
    return recording


def set_hold(
    index: RecordingIndex, recording_id: str, on: bool, *, viewer: Viewer, reason: str, now: float
) -> None:
    """Put a recording under legal hold (kept whatever its policy says) or lift it; admins
    only, logged."""
    if viewer.role != "admin":
        raise AccessDeniedError(f"{viewer.role} {viewer.name} may not set legal holds")
    if on and not reason.strip():
        raise ValueError("a legal hold needs a reason (it is logged)")
    if not index.set_hold(recording_id, on, reason if on else None):
        raise KeyError(recording_id)
    index.audit(
        at=now,
        user=f"admin:{viewer.name}",
        action="hold" if on else "unhold",
        recording_id=recording_id,
        detail=reason,
    )


__all__ = ["RetentionReport", "delete_recording", "remove_audio", "run_retention", "set_hold"]
