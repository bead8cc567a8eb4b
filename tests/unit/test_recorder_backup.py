"""The backup pass against a fake store, and the directory target (SPEC REC-3)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from recorder.backup import (
    BackupError,
    BackupItem,
    BackupTarget,
    DirectoryTarget,
    FtpTarget,
    MemoryStore,
    SftpTarget,
    TargetUnavailableError,
    run_backup,
    target_from_url,
)


def make_item(directory: Path, recording_id: str, size: int) -> BackupItem:
    data = os.urandom(size)
    path = directory / f"{recording_id}.opus"
    path.write_bytes(data)
    name = f"2026/12/07/{recording_id}.opus"
    return BackupItem(recording_id, path, name, hashlib.sha256(data).hexdigest(), size)


@pytest.fixture
def local(tmp_path: Path) -> Path:
    (tmp_path / "local").mkdir()
    return tmp_path / "local"


@pytest.fixture
def target(tmp_path: Path) -> DirectoryTarget:
    (tmp_path / "backup").mkdir()
    return DirectoryTarget(tmp_path / "backup")


def test_every_pending_recording_arrives_whole_under_its_name(
    local: Path, target: DirectoryTarget
) -> None:
    items = [make_item(local, f"r{n}", size) for n, size in enumerate((0, 1, 300_000, 1 << 20))]
    store = MemoryStore(items)
    report = run_backup(store, target)
    assert (report.sent, report.failed, report.bytes) == (4, 0, sum(i.size for i in items))
    for item in items:
        copy = target.root / item.name
        assert store.done[item.recording_id] == str(copy)
        assert copy.read_bytes() == item.path.read_bytes()
    assert not list(target.root.rglob("*.part"))
    assert run_backup(store, target).sent == 0  # nothing left pending


class CrashingDirectory(DirectoryTarget):
    """Writes only the first `keep` bytes of the next file into its .part, then 'crashes'."""

    def __init__(self, root: Path, keep: int) -> None:
        super().__init__(root)
        self.keep = keep

    def put(self, item: BackupItem) -> str:
        part = self.root / (item.name + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(item.path.read_bytes()[: self.keep])
        raise TargetUnavailableError("crashed")


def test_interrupted_copy_resumes_from_the_partial_file(
    local: Path, target: DirectoryTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = make_item(local, "big", 1 << 20)
    store = MemoryStore([item, make_item(local, "next", 10)])
    report = run_backup(store, CrashingDirectory(target.root, keep=700_000))
    # The pass stops at an unavailable target: the second recording is not tried.
    assert (report.sent, report.failed) == (0, 1) and set(store.failed) == {"big"}
    assert not (target.root / item.name).exists()  # never a half file under the final name

    written: list[int] = []
    real_copy = shutil.copyfileobj

    def counting_copy(src, dst, length=0):  # type: ignore[no-untyped-def]
        start = src.tell()
        real_copy(src, dst, length)
        written.append(src.tell() - start)

    monkeypatch.setattr("recorder.backup.shutil.copyfileobj", counting_copy)
    report = run_backup(store, target)
    assert (report.sent, report.failed) == (2, 0) and not store.failed
    assert written[0] == item.size - 700_000  # resumed, not restarted
    assert (target.root / item.name).read_bytes() == item.path.read_bytes()


def test_wrong_partial_copy_is_deleted_and_sent_whole_next_time(
    local: Path, target: DirectoryTarget
) -> None:
    item = make_item(local, "r1", 100_000)
    part = target.root / (item.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 50_000)  # a stale partial copy with the wrong bytes
    store = MemoryStore([item])
    report = run_backup(store, target)
    assert report.failed == 1 and "remote copy has sha256" in store.failed["r1"]
    assert not part.exists() and not (target.root / item.name).exists()
    assert run_backup(store, target).sent == 1
    assert (target.root / item.name).read_bytes() == item.path.read_bytes()


def test_missing_or_changed_local_file_is_failed_and_never_sent(
    local: Path, target: DirectoryTarget
) -> None:
    gone = make_item(local, "gone", 10)
    gone.path.unlink()
    changed = make_item(local, "changed", 10)
    changed.path.write_bytes(b"0123456789")
    fine = make_item(local, "fine", 10)
    store = MemoryStore([gone, changed, fine])
    report = run_backup(store, target)
    assert (report.sent, report.failed) == (1, 2)
    assert "missing" in store.failed["gone"] and "no longer matches" in store.failed["changed"]
    assert list(store.done) == ["fine"]
    assert [p.name for p in target.root.rglob("*") if p.is_file()] == ["fine.opus"]


def test_whole_copy_left_by_a_crash_before_marking_done_is_not_sent_again(
    local: Path, target: DirectoryTarget
) -> None:
    item = make_item(local, "r1", 1000)
    copy = target.root / item.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(item.path.read_bytes())
    os.utime(copy, (1, 1))
    report = run_backup(MemoryStore([item]), target)
    assert report.sent == 1 and copy.stat().st_mtime == 1


def test_pass_stops_at_the_deadline(local: Path, target: DirectoryTarget) -> None:
    items = [make_item(local, f"r{n}", 10) for n in range(5)]
    now = [100.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    # Each sent item reads the clock twice (deadline check, done time).
    report = run_backup(MemoryStore(items), target, deadline=105.5, clock=clock)
    assert report.sent == 3


def test_unmounted_root_is_unavailable_and_nothing_is_written(local: Path, tmp_path: Path) -> None:
    store = MemoryStore([make_item(local, "r1", 10), make_item(local, "r2", 10)])
    report = run_backup(store, DirectoryTarget(tmp_path / "not-mounted"))
    assert (report.sent, report.failed) == (0, 1) and not store.done
    assert not (tmp_path / "not-mounted").exists()


@pytest.mark.parametrize("name", ["/abs/x.opus", "../x.opus", "a//b.opus", "a/./b", ""])
def test_names_that_would_leave_the_root_are_refused(target: DirectoryTarget, name: str) -> None:
    item = BackupItem("r", Path("/dev/null"), name, "", 0)
    with pytest.raises(BackupError, match="bad backup name"):
        target.put(item)


def test_delete_removes_copy_and_partial_and_ignores_missing(
    local: Path, target: DirectoryTarget
) -> None:
    item = make_item(local, "r1", 10)
    target.put(item)
    (target.root / (item.name + ".part")).write_bytes(b"x")
    target.delete(item.name)
    target.delete(item.name)
    assert not list(target.root.rglob("*.opus*"))


def test_urls_name_their_target_without_the_password(tmp_path: Path) -> None:
    cases: dict[str, tuple[type[BackupTarget], str]] = {
        f"dir:{tmp_path}": (DirectoryTarget, f"dir:{tmp_path}"),
        str(tmp_path): (DirectoryTarget, f"dir:{tmp_path}"),
        "ftp://backup:s3cret@127.0.0.1:2121/rec": (FtpTarget, "ftp://backup@127.0.0.1:2121/rec"),
        "ftps://backup@example.org/rec/": (FtpTarget, "ftps://backup@example.org:21/rec"),
        "sftp://rec@[::1]/srv/rec": (SftpTarget, "sftp://rec@[::1]:22/srv/rec"),
        "sftp://rec@host:2222": (SftpTarget, "sftp://rec@host:2222"),
    }
    for url, (kind, name) in cases.items():
        made = target_from_url(url, password=None if "s3cret" in url else "pw")
        assert isinstance(made, kind) and made.name == name, url
    ftp = target_from_url("ftp://backup:s3cret@127.0.0.1:2121/rec")
    assert isinstance(ftp, FtpTarget) and ftp.root == "/rec" and "s3cret" not in ftp.name


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("http://u@h/x", "scheme 'http'"),
        ("ftp.example.org/rec", "scheme '(none)'"),
        ("ftp://h/rec", "user missing"),
        ("ftp://u@/rec", "host missing"),
        ("sftp://u@h:99999/rec", "bad port"),
        ("sftp://u@h:abc/rec", "bad port"),
        ("ftp://u@h/rec", "password missing"),
        ("sftp://u@h/rec?x=1", "query"),
        ("dir:", "directory path missing"),
    ],
)
def test_bad_url_names_the_part_at_fault(url: str, part: str) -> None:
    with pytest.raises(ValueError, match=part.replace("(", r"\(").replace(")", r"\)")):
        target_from_url(url)
