"""Retention, legal hold and manual deletion (SPEC REC-3): `recorder.retention`, and the
scheduled passes of `recorder.jobs`.

Recordings are real files under a tmp recordings directory, indexed in a real
`recordings.db`; the call records are a real CDR database (`softswitch.cdr.CdrStore`) holding
the recorded call and one other; backups go to `recorder.backup.DirectoryTarget` on tmp_path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_recorder_index import T0, add

from recorder.backup import BackupError, BackupItem, DirectoryTarget, file_sha256
from recorder.index import AccessDeniedError, RecordingIndex, SearchFilter, Viewer
from recorder.jobs import INDEX_NAME, backup_pass, backup_target, retention_pass
from recorder.retention import delete_recording, remove_audio, run_retention, set_hold
from softswitch.cdr import CdrStore
from softswitch.config import RecordingBackup, RecordingConfig

DAY = 86400.0
NOW = T0 + 400 * DAY
ADMIN = Viewer("admin", "root")


@pytest.fixture
def rec(tmp_path: Path) -> Path:
    (tmp_path / "recordings").mkdir()
    return tmp_path / "recordings"


@pytest.fixture
def index(tmp_path: Path, rec: Path) -> Iterator[RecordingIndex]:
    db = RecordingIndex(tmp_path / INDEX_NAME, rec)
    yield db
    db.close()


def record(
    index: RecordingIndex,
    recording_id: str,
    *,
    day: str = "2026/11/16",
    expires: float | None = T0 + 30 * DAY,
    records_expire: float | None = None,
    policy: str = "default",
    size: int = 5000,
) -> Path:
    """A finished recording whose file is on disk, as the recorder leaves it."""
    rel = f"{day}/{recording_id}.opus"
    path = index.directory / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(hashlib.sha256(recording_id.encode()).digest() * (size // 32))
    sha, size = file_sha256(path)
    add(
        index,
        recording_id,
        path=rel,
        customer_id="K-7",
        sha256=sha,
        size=size,
        policy=policy,
        expires=expires,
        records_expire=records_expire,
    )
    return path


def cdr(path: Path, *call_ids: str) -> None:
    """A CDR database with a call row, two legs and two queue-log rows per call."""
    store = CdrStore(path)
    for call_id in call_ids:
        store.call_started(call_id, start=T0, caller="0301111", called="110")
        store.leg_started(f"{call_id}-a", call_id=call_id, direction="in", start=T0)
        store.leg_started(f"{call_id}-b", call_id=call_id, direction="out", start=T0 + 5)
        store.queue_event(T0 + 1, call_id, "sales", None, "enter")
        store.queue_event(T0 + 5, call_id, "sales", "1001", "connect")
    store.close()


def cdr_counts(path: Path, call_id: str) -> tuple[int, int, int]:
    store = CdrStore(path)
    try:
        return (
            int(store.get_call(call_id) is not None),
            len(store.get_legs(call_id)),
            len(store.get_queue_log(call_id)),
        )
    finally:
        store.close()


class FailingTarget(DirectoryTarget):
    """A target whose every copy fails (a full share, a wrong checksum)."""

    def put(self, item: BackupItem) -> str:
        raise BackupError(f"{self.name}: {item.name}: no space left on device")


class CountingTarget(DirectoryTarget):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[str] = []

    def put(self, item: BackupItem) -> str:
        self.puts.append(item.recording_id)
        return super().put(item)


# --- the retention pass ---------------------------------------------------------------------


def test_expired_audio_and_its_emptied_day_directories_are_removed(
    index: RecordingIndex, rec: Path
) -> None:
    alone = record(index, "alone", day="2026/10/01")
    shared = record(index, "shared", day="2026/11/16")
    kept = record(index, "kept", day="2026/11/16", expires=NOW + DAY)
    report = run_retention(index, now=NOW)
    assert sorted(report.deleted) == ["alone", "shared"]
    assert report.bytes_freed == 2 * 4992
    assert (report.kept, report.errors, report.dry_run) == ([], [], False)
    assert not alone.exists() and not shared.exists() and kept.exists()
    assert not (rec / "2026/10").exists()  # its day and month went with it
    assert (rec / "2026/11/16").is_dir()  # the kept one still lives there
    assert rec.is_dir()
    # The root stays even when the pass empties it.
    run_retention(index, now=NOW + 2 * DAY)
    assert not kept.exists()
    assert rec.is_dir() and list(rec.iterdir()) == []


def test_a_deleted_recording_keeps_its_row_marked_with_time_policy_and_an_audit_row(
    index: RecordingIndex,
) -> None:
    record(index, "c1", policy="complaints")
    index.set_qa("c1", '{"flags": [], "transcript": [{"text": "secret"}]}', [])
    run_retention(index, now=NOW)
    row = index.get("c1")
    assert row is not None
    assert (row.deleted, row.deleted_by, row.deleted_policy) == (NOW, "retention", "complaints")
    assert row.qa == {"flags": []}  # the transcript goes with the audio
    assert (row.caller, row.duration) == ("0301111", 60.0)  # call records have their own time
    (audit,) = index.audit_log("c1")
    assert (audit["user"], audit["action"], audit["at"]) == ("retention", "delete", NOW)
    assert "complaints" in audit["detail"]
    assert index.expired(NOW) == []
    assert run_retention(index, now=NOW).deleted == []  # nothing twice


def test_a_recording_under_legal_hold_is_never_touched(index: RecordingIndex) -> None:
    held = record(index, "held", records_expire=T0 + DAY)
    index.set_hold("held", True, "court order")
    report = run_retention(index, now=NOW)
    assert report.deleted == [] and report.forgotten == []
    assert held.exists()
    row = index.get("held")
    assert row is not None and row.deleted is None and row.caller == "0301111"
    assert index.audit_log() == []


def test_a_dry_run_lists_what_would_go_and_changes_nothing(
    tmp_path: Path, index: RecordingIndex
) -> None:
    path = record(index, "c1", records_expire=T0 + DAY)
    cdr(tmp_path / "hotline.db", "c1")
    target = CountingTarget(tmp_path)
    report = run_retention(
        index, now=NOW, target=target, cdr_path=tmp_path / "hotline.db", dry_run=True
    )
    assert (report.deleted, report.forgotten, report.dry_run) == (["c1"], ["c1"], True)
    assert report.bytes_freed == 4992
    assert path.exists() and target.puts == []
    row = index.get("c1")
    assert row is not None and row.deleted is None and row.caller == "0301111"
    assert index.audit_log() == []
    assert cdr_counts(tmp_path / "hotline.db", "c1") == (1, 2, 2)


def test_with_a_target_the_recording_is_copied_before_it_is_deleted(
    tmp_path: Path, index: RecordingIndex
) -> None:
    (tmp_path / "backup").mkdir()
    target = CountingTarget(tmp_path / "backup")
    path = record(index, "c1")
    data = path.read_bytes()
    record(index, "copied")
    index.backup_done("copied", target.name, "somewhere", T0)  # the backup pass did it
    report = run_retention(index, now=NOW, target=target)
    assert target.puts == ["c1"]  # not copied twice
    assert report.backed_up == ["c1"]
    assert sorted(report.deleted) == ["c1", "copied"]
    assert (tmp_path / "backup/2026/11/16/c1.opus").read_bytes() == data
    assert not path.exists()
    assert index.backed_up("c1", target.name)


def test_a_failed_copy_keeps_the_recording_for_the_next_pass(
    tmp_path: Path, index: RecordingIndex
) -> None:
    (tmp_path / "backup").mkdir()
    path = record(index, "c1")
    report = run_retention(index, now=NOW, target=FailingTarget(tmp_path / "backup"))
    assert (report.deleted, report.kept) == ([], ["c1"])
    assert len(report.errors) == 1 and "no space left" in report.errors[0]
    assert path.exists()
    row = index.get("c1")
    assert row is not None and row.deleted is None
    assert not index.backed_up("c1", f"dir:{tmp_path / 'backup'}")
    assert [r.id for r in index.backup_rows(f"dir:{tmp_path / 'backup'}", 10)] == ["c1"]
    # The next pass, with the target working again, copies and deletes.
    report = run_retention(index, now=NOW + 1, target=DirectoryTarget(tmp_path / "backup"))
    assert report.deleted == ["c1"] and not path.exists()
    assert (tmp_path / "backup/2026/11/16/c1.opus").exists()


def test_a_file_already_gone_is_still_marked_deleted(index: RecordingIndex) -> None:
    record(index, "c1").unlink()
    assert run_retention(index, now=NOW).deleted == ["c1"]
    row = index.get("c1")
    assert row is not None and row.deleted == NOW


def test_call_records_past_their_time_are_deleted_and_the_parties_forgotten(
    tmp_path: Path, index: RecordingIndex
) -> None:
    hotline = tmp_path / "hotline.db"
    cdr(hotline, "c1", "c2", "never-recorded")
    record(index, "c1", expires=NOW + DAY, records_expire=T0 + 365 * DAY)
    record(index, "c2", expires=NOW + DAY, records_expire=NOW + 1)
    report = run_retention(index, now=NOW, cdr_path=hotline)
    assert (report.deleted, report.forgotten) == ([], ["c1"])
    assert cdr_counts(hotline, "c1") == (0, 0, 0)
    assert cdr_counts(hotline, "c2") == (1, 2, 2)
    assert cdr_counts(hotline, "never-recorded") == (1, 2, 2)
    row = index.get("c1")
    assert row is not None
    assert (row.caller, row.called, row.customer_id) == (None, None, None)
    assert row.deleted is None and (index.directory / row.path).exists()  # audio has its time
    (audit,) = index.audit_log("c1")
    assert (audit["action"], audit["detail"]) == (
        "forget",
        "call records past their policy: 5 CDR rows deleted",
    )
    assert run_retention(index, now=NOW, cdr_path=hotline).forgotten == []


def test_without_a_cdr_database_the_parties_are_still_forgotten(
    tmp_path: Path, index: RecordingIndex
) -> None:
    record(index, "c1", records_expire=T0)
    report = run_retention(index, now=NOW, cdr_path=tmp_path / "missing.db")
    assert report.forgotten == ["c1"]
    row = index.get("c1")
    assert row is not None and row.caller is None


def test_an_unreadable_cdr_database_keeps_the_parties_and_reports_it(
    tmp_path: Path, index: RecordingIndex
) -> None:
    (tmp_path / "hotline.db").write_bytes(b"this is not a database" * 100)
    record(index, "c1", records_expire=T0, expires=NOW + DAY)
    report = run_retention(index, now=NOW, cdr_path=tmp_path / "hotline.db")
    assert report.forgotten == []
    assert len(report.errors) == 1 and "call records not deleted" in report.errors[0]
    row = index.get("c1")
    assert row is not None and row.caller == "0301111"


def test_remove_audio_never_climbs_out_of_the_recordings_directory(
    tmp_path: Path, index: RecordingIndex
) -> None:
    outside = tmp_path / "voicemail/200/msg.wav"  # a WAV the recorder could not encode
    outside.parent.mkdir(parents=True)
    outside.write_bytes(b"RIFF")
    index.start("vm", kind="voicemail", call_id="c9", path=str(outside), started=T0)
    row = index.get("vm")
    assert row is not None
    assert remove_audio(index, row) is None
    assert not outside.exists() and outside.parent.is_dir()


# --- by hand -----------------------------------------------------------------------------------


def test_only_an_admin_deletes_a_recording_and_with_a_reason(index: RecordingIndex) -> None:
    path = record(index, "c1", expires=None)
    for who in ("supervisor:sue", "agent:1001"):
        with pytest.raises(AccessDeniedError):
            delete_recording(index, "c1", viewer=Viewer.parse(who), reason="x", now=NOW)
    with pytest.raises(ValueError, match="reason"):
        delete_recording(index, "c1", viewer=ADMIN, reason="  ", now=NOW)
    with pytest.raises(KeyError):
        delete_recording(index, "nope", viewer=ADMIN, reason="x", now=NOW)
    assert path.exists() and index.audit_log() == []

    deleted = delete_recording(index, "c1", viewer=ADMIN, reason="caller asked (GDPR)", now=NOW)
    assert deleted.id == "c1"
    assert not path.exists()
    row = index.get("c1")
    assert row is not None
    assert (row.deleted, row.deleted_by, row.deleted_policy) == (NOW, "admin:root", "manual")
    (audit,) = index.audit_log("c1")
    assert (audit["user"], audit["action"], audit["detail"]) == (
        "admin:root",
        "delete",
        "caller asked (GDPR)",
    )
    with pytest.raises(ValueError, match="already deleted"):
        delete_recording(index, "c1", viewer=ADMIN, reason="again", now=NOW)


def test_a_held_recording_cannot_be_deleted_until_the_hold_is_lifted(
    index: RecordingIndex,
) -> None:
    path = record(index, "c1")
    set_hold(index, "c1", True, viewer=ADMIN, reason="inquiry 4", now=T0 + DAY)
    with pytest.raises(ValueError, match="legal hold"):
        delete_recording(index, "c1", viewer=ADMIN, reason="cleanup", now=NOW)
    assert path.exists()
    assert run_retention(index, now=NOW).deleted == []
    set_hold(index, "c1", False, viewer=ADMIN, reason="inquiry closed", now=NOW)
    assert [a["action"] for a in index.audit_log("c1")] == ["unhold", "hold"]
    assert run_retention(index, now=NOW).deleted == ["c1"]


def test_only_an_admin_sets_a_legal_hold_and_with_a_reason(index: RecordingIndex) -> None:
    record(index, "c1")
    for who in ("supervisor:sue", "agent:1001"):
        with pytest.raises(AccessDeniedError):
            set_hold(index, "c1", True, viewer=Viewer.parse(who), reason="x", now=NOW)
    with pytest.raises(ValueError, match="reason"):
        set_hold(index, "c1", True, viewer=ADMIN, reason="", now=NOW)
    with pytest.raises(KeyError):
        set_hold(index, "nope", True, viewer=ADMIN, reason="x", now=NOW)
    row = index.get("c1")
    assert row is not None and not row.legal_hold
    set_hold(index, "c1", True, viewer=ADMIN, reason="court", now=NOW)
    row = index.get("c1")
    assert row is not None and (row.legal_hold, row.hold_reason) == (True, "court")
    (audit,) = index.audit_log("c1")
    assert (audit["user"], audit["action"], audit["detail"]) == ("admin:root", "hold", "court")


# --- the scheduled passes (recorder.jobs) ----------------------------------------------------


def with_target(root: Path, *, before_delete: bool = True) -> RecordingConfig:
    return RecordingConfig(
        backup=RecordingBackup(target=f"dir:{root}", before_delete=before_delete)
    )


def test_backup_pass_copies_new_recordings_and_the_index_remembers(
    tmp_path: Path, index: RecordingIndex, rec: Path
) -> None:
    (tmp_path / "backup").mkdir()
    settings = with_target(tmp_path / "backup")
    paths = [record(index, f"c{n}", expires=None) for n in range(3)]
    report = backup_pass(settings, tmp_path, rec)
    assert (report.sent, report.failed) == (3, 0)
    for path in paths:
        copy = tmp_path / "backup" / path.relative_to(rec)
        assert copy.read_bytes() == path.read_bytes()
    name = f"dir:{tmp_path / 'backup'}"
    assert all(index.backed_up(f"c{n}", name) for n in range(3))
    assert index.backup_rows(name, 10) == []
    assert backup_pass(settings, tmp_path, rec).sent == 0  # nothing new
    record(index, "c9", expires=None)
    assert backup_pass(settings, tmp_path, rec).sent == 1


def test_backup_pass_without_a_target_does_nothing(tmp_path: Path, rec: Path) -> None:
    report = backup_pass(RecordingConfig(), tmp_path, rec)
    assert (report.sent, report.failed) == (0, 0)
    assert backup_target(RecordingConfig()) is None
    with pytest.raises(ValueError, match="scheme"):
        backup_target(RecordingConfig(backup=RecordingBackup(target="gopher://x/y")))


def test_retention_pass_copies_then_deletes_and_forgets_call_records(
    tmp_path: Path, index: RecordingIndex, rec: Path
) -> None:
    (tmp_path / "backup").mkdir()
    cdr(tmp_path / "hotline.db", "c1")
    path = record(index, "c1", records_expire=T0 + DAY)
    dry = retention_pass(with_target(tmp_path / "backup"), tmp_path, rec, now=NOW, dry_run=True)
    assert (dry.deleted, dry.forgotten, dry.backed_up) == (["c1"], ["c1"], [])
    assert path.exists() and not (tmp_path / "backup/2026").exists()

    report = retention_pass(with_target(tmp_path / "backup"), tmp_path, rec, now=NOW)
    assert (report.deleted, report.backed_up, report.forgotten) == (["c1"], ["c1"], ["c1"])
    assert not path.exists()
    assert (tmp_path / "backup" / path.relative_to(rec)).exists()
    assert cdr_counts(tmp_path / "hotline.db", "c1") == (0, 0, 0)
    row = index.get("c1")
    assert row is not None and row.deleted == NOW and row.caller is None


def test_retention_pass_without_before_delete_does_not_copy(
    tmp_path: Path, index: RecordingIndex, rec: Path
) -> None:
    (tmp_path / "backup").mkdir()
    record(index, "c1")
    settings = with_target(tmp_path / "backup", before_delete=False)
    report = retention_pass(settings, tmp_path, rec, now=NOW)
    assert (report.deleted, report.backed_up) == (["c1"], [])
    assert not (tmp_path / "backup/2026").exists()
    assert index.search(SearchFilter(deleted=True), ADMIN)[0].id == "c1"
