"""The recorder's scheduled passes, as the node runs them (in a thread) and the CLI by hand:
each opens its own index connection, does one pass and logs what it did."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from recorder.backup import BackupReport, BackupTarget, run_backup, target_from_url
from recorder.index import RecordingIndex
from recorder.retention import RetentionReport, run_retention
from softswitch.config import RecordingConfig

log = logging.getLogger("hotline.recorder")

INDEX_NAME = "recordings.db"


def backup_target(settings: RecordingConfig) -> BackupTarget | None:
    """The configured target (None: no backup). The password comes from the environment
    variable `backup.password_env` names; a bad URL raises ValueError."""
    backup = settings.backup
    if not backup.target:
        return None
    password = os.environ.get(backup.password_env) if backup.password_env else None
    return target_from_url(backup.target, password=password, key_file=backup.key_file or None)


def retention_pass(
    settings: RecordingConfig,
    data_dir: Path,
    directory: Path,
    *,
    now: float | None = None,
    dry_run: bool = False,
) -> RetentionReport:
    """One retention pass; with `backup.before_delete` and a target, copies first."""
    index = RecordingIndex(data_dir / INDEX_NAME, directory)
    target = backup_target(settings) if settings.backup.before_delete and not dry_run else None
    try:
        report = run_retention(
            index,
            now=time.time() if now is None else now,
            target=target,
            cdr_path=data_dir / "hotline.db",
            dry_run=dry_run,
        )
    finally:
        if target is not None:
            target.close()
        index.close()
    if report.deleted or report.forgotten or report.errors:
        log.info(
            "retention%s: %d recordings deleted (%d bytes), %d call records forgotten, "
            "%d kept after a failed copy, %d errors",
            " (dry run)" if dry_run else "",
            len(report.deleted),
            report.bytes_freed,
            len(report.forgotten),
            len(report.kept),
            len(report.errors),
        )
    return report


def backup_pass(
    settings: RecordingConfig, data_dir: Path, directory: Path, *, limit: int = 1000
) -> BackupReport:
    """Copy up to `limit` finished recordings not yet on the target (resuming partial ones)."""
    target = backup_target(settings)
    if target is None:
        return BackupReport()
    index = RecordingIndex(data_dir / INDEX_NAME, directory)
    try:
        deadline = time.time() + max(10.0, settings.backup.every * 0.9)
        report = run_backup(index, target, limit=limit, deadline=deadline)
    finally:
        target.close()
        index.close()
    if report.sent or report.failed:
        log.info(
            "backup to %s: %d sent (%d bytes), %d failed",
            target.name,
            report.sent,
            report.bytes,
            report.failed,
        )
    return report


__all__ = ["INDEX_NAME", "backup_pass", "backup_target", "retention_pass"]
