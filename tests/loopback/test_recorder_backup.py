"""Recording backup against real servers on 127.0.0.1 (SPEC REC-3): pyftpdlib for FTP, OpenSSH's
sshd (own config, throwaway host and user keys) for SFTP.

Each interruption test cuts a transfer mid-file (FTP: the server drops the client after N bytes;
SFTP: sshd is killed once the remote `.part` holds N bytes), then checks that the next pass
resumes at the partial size rather than starting again and that every file arrives intact.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from recorder.backup import (
    BackupItem,
    BackupReport,
    BackupTarget,
    FtpTarget,
    MemoryStore,
    SftpTarget,
    run_backup,
)

from .harness import LOOPBACK, _kill_process_group, free_port, require_peer

SSHD = os.environ.get("HOTLINE_SSHD", "/usr/sbin/sshd")
RESUMING = re.compile(r"resuming (\S+) at byte (\d+)")


def make_items(directory: Path, sizes: dict[str, int]) -> list[BackupItem]:
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for recording_id, size in sizes.items():
        data = os.urandom(size)
        path = directory / f"{recording_id}.opus"
        path.write_bytes(data)
        name = f"2026/12/07/{recording_id}.opus"
        items.append(BackupItem(recording_id, path, name, hashlib.sha256(data).hexdigest(), size))
    return items


def assert_all_arrived(remote_root: Path, items: list[BackupItem], store: MemoryStore) -> None:
    assert set(store.done) == {i.recording_id for i in items} and not store.failed
    for item in items:
        copy = remote_root / item.name
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == item.sha256, item.name
    assert not list(remote_root.rglob("*.part"))


def resumed_offsets(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    found = (RESUMING.search(r.getMessage()) for r in caplog.records)
    return {m[1]: int(m[2]) for m in found if m}


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def timed(action: Callable[[], BackupReport]) -> tuple[BackupReport, float]:
    start = time.monotonic()
    report = action()
    return report, time.monotonic() - start


# --- FTP: pyftpdlib in a thread ---------------------------------------------------------------
@dataclass
class FtpServer:
    root: Path
    port: int = 0
    cut_after: int | None = None  # drop the client once a STOR has received this many bytes
    stored: list[int] = field(default_factory=list)  # bytes received by each STOR
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _server: Any = None

    def start(self) -> FtpServer:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import DTPHandler, FTPHandler
        from pyftpdlib.servers import FTPServer

        state = self

        class CuttingDtp(DTPHandler):  # type: ignore[misc]
            def handle_read(self) -> None:
                super().handle_read()
                limit = state.cut_after
                if self.receive and limit is not None and self.tot_bytes_received >= limit:
                    state.cut_after = None
                    self.file_obj.flush()
                    self.cmd_channel.close()  # as if the server died: both connections go

            handle_read_event = handle_read  # the base class binds this alias to its own

            def close(self) -> None:
                if not self._closed and self.receive:
                    state.stored.append(self.tot_bytes_received)
                super().close()

        authorizer = DummyAuthorizer()
        authorizer.add_user("backup", "secret", str(self.root), perm="elradfmwMT")
        handler = type(
            "Handler", (FTPHandler,), {"authorizer": authorizer, "dtp_handler": CuttingDtp}
        )
        handler.auth_failed_timeout = 0.1  # pyftpdlib waits 3 s after a failed login
        self._server = FTPServer((LOOPBACK, self.port), handler)
        self.port = self._server.address[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="ftpd", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5.0)
            self._server.close_all()
            self._thread = None

    def target(self, *, password: str = "secret", timeout: float = 5.0) -> FtpTarget:
        return FtpTarget(LOOPBACK, self.port, "backup", password, "/rec", timeout=timeout)


@pytest.fixture
def ftpd(tmp_path: Path) -> Iterator[FtpServer]:
    require_peer("pyftpdlib", find_spec("pyftpdlib") is not None, "pip install -e '.[test]'")
    (tmp_path / "ftp" / "rec").mkdir(parents=True)
    server = FtpServer(tmp_path / "ftp").start()
    yield server
    server.stop()


def test_ftp_cut_mid_transfer_resumes_and_every_file_arrives_whole(
    ftpd: FtpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.backup")
    items = make_items(tmp_path / "local", {"a": 200_000, "b": 3_000_000, "c": 50_000})
    store, target = MemoryStore(items), ftpd.target()
    ftpd.cut_after = 1_000_000  # inside "b"
    first = run_backup(store, target)
    # "a" went; "b" was cut, which stops the pass: "c" waits for the next one.
    assert (first.sent, first.failed) == (1, 1) and set(store.done) == {"a"}
    assert "b" in store.failed and not (ftpd.root / "rec" / items[1].name).exists()
    partial = (ftpd.root / "rec" / (items[1].name + ".part")).stat().st_size
    assert 1_000_000 <= partial < items[1].size

    # The server thread closes the cut data connection on its own time (seen after the
    # client had moved on, on a loaded machine): wait for its count before clearing.
    deadline = time.monotonic() + 5.0
    while len(ftpd.stored) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ftpd.stored) == 2, ftpd.stored  # "a" whole, "b" cut
    ftpd.stored.clear()
    second = run_backup(store, target)
    target.close()
    assert (second.sent, second.failed) == (2, 0)
    assert resumed_offsets(caplog) == {items[1].name: partial}
    assert ftpd.stored == [items[1].size - partial, items[2].size]  # resumed, not restarted
    assert_all_arrived(ftpd.root / "rec", items, store)


def test_ftp_wrong_partial_copy_is_deleted_then_sent_whole(ftpd: FtpServer, tmp_path: Path) -> None:
    [item] = make_items(tmp_path / "local", {"a": 300_000})
    stale = ftpd.root / "rec" / (item.name + ".part")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\xff" * 100_000)  # not the start of the recording
    store, target = MemoryStore([item]), ftpd.target()
    first = run_backup(store, target)
    assert first.failed == 1 and "remote copy has sha256" in store.failed["a"]
    assert not store.done and not stale.exists()
    assert run_backup(store, target).sent == 1
    target.close()
    assert_all_arrived(ftpd.root / "rec", [item], store)


def test_ftp_wrong_password_is_a_clear_error_and_nothing_is_done(
    ftpd: FtpServer, tmp_path: Path
) -> None:
    items = make_items(tmp_path / "local", {"a": 10, "b": 10})
    store = MemoryStore(items)
    report = run_backup(store, ftpd.target(password="wrong"))
    assert (report.sent, report.failed) == (0, 1) and not store.done
    assert "login refused" in report.errors[0] and "530" in report.errors[0]
    assert "wrong" not in report.errors[0]


def test_ftp_missing_local_file_is_failed_and_the_rest_goes(
    ftpd: FtpServer, tmp_path: Path
) -> None:
    items = make_items(tmp_path / "local", {"gone": 10, "a": 10})
    items[0].path.unlink()
    store, target = MemoryStore(items), ftpd.target()
    report = run_backup(store, target)
    target.close()
    assert (report.sent, report.failed) == (1, 1) and "missing" in store.failed["gone"]
    assert not (ftpd.root / "rec" / items[0].name).exists()
    assert (ftpd.root / "rec" / items[1].name).exists()


def test_ftp_dead_server_fails_within_the_timeout(ftpd: FtpServer, tmp_path: Path) -> None:
    items = make_items(tmp_path / "local", {"a": 10, "b": 10})
    store = MemoryStore(items)
    with silent_server() as port:
        target = FtpTarget(LOOPBACK, port, "backup", "secret", "/rec", timeout=1.0)
        report, elapsed = timed(lambda: run_backup(store, target))
    assert (report.sent, report.failed) == (0, 1) and not store.done
    assert "timed out" in report.errors[0] and elapsed < 3.0
    ftpd.stop()  # nothing listens any more: refused at once
    report, elapsed = timed(lambda: run_backup(store, ftpd.target()))
    assert report.failed == 1 and not store.done and "cannot connect" in report.errors[0]
    assert elapsed < 3.0


# --- SFTP: OpenSSH's sshd with its own config ---------------------------------------------------
@dataclass
class Sshd:
    directory: Path
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sshd:
        log = (self.directory / "sshd.log").open("ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.directory / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"sshd exited {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), 0.5):
                return self
            time.sleep(0.05)
        pytest.fail(f"sshd did not listen on {self.port} within 10 s: {self.log()}")

    def kill(self) -> None:
        """SIGKILL sshd and its session processes (which sshd puts in sessions of their own)."""
        if self.process is not None:
            for pid in [*descendants(self.process.pid), self.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=5.0)

    def stop(self) -> None:
        if self.process is not None:
            for pid in descendants(self.process.pid):  # sessions still open
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            _kill_process_group(self.process, grace=2.0)
            self.process = None

    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")[-2000:]

    def target(self, root: Path, **kwargs: Any) -> SftpTarget:
        kwargs.setdefault("key_file", str(self.key_file))
        kwargs.setdefault("known_hosts", str(self.known_hosts))
        kwargs.setdefault("timeout", 5.0)
        return SftpTarget(LOOPBACK, self.port, self.user, root=str(root), **kwargs)


def descendants(pid: int) -> list[int]:
    """The processes below `pid`, children first, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid …; comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        timeout=10,
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    require_peer(
        "sshd",
        os.access(SSHD, os.X_OK) and shutil.which("ssh-keygen") is not None,
        "apt-get install openssh-server, or set HOTLINE_SSHD",
    )
    require_peer("paramiko", find_spec("paramiko") is not None, "pip install -e '.[backup]'")
    directory = tmp_path / "sshd"
    directory.mkdir()
    host_key = keygen(directory / "host_key")
    (directory / "authorized_keys").write_text(keygen(directory / "user_key") + "\n")
    port = free_port("tcp")
    user = getpass.getuser()
    (directory / "known_hosts").write_text(f"[{LOOPBACK}]:{port} {host_key}\n")
    (directory / "sshd_config").write_text(
        f"Port {port}\nListenAddress {LOOPBACK}\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        # Only this throwaway key gets in, and only here: root logins are allowed by key when
        # the tests run as root (as CI does).
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
        "Subsystem sftp internal-sftp\nLogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    server = Sshd(directory, port, user, directory / "user_key", directory / "known_hosts")
    yield server.start()
    server.stop()


def kill_when_file_reaches(server: Sshd, path: Path, size: int) -> threading.Thread:
    """Kill sshd as soon as `path` holds `size` bytes (giving up after 10 s)."""

    def watch() -> None:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size >= size:
                    server.kill()
                    return
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, name="sshd-killer", daemon=True)
    watcher.start()
    return watcher


def test_sftp_server_killed_mid_transfer_resumes_and_every_file_arrives_whole(
    sshd: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.backup")
    remote = tmp_path / "remote"
    remote.mkdir()
    items = make_items(tmp_path / "local", {"a": 100_000, "b": 16_000_000, "c": 100_000})
    store, target = MemoryStore(items), sshd.target(remote)
    part = remote / (items[1].name + ".part")
    watcher = kill_when_file_reaches(sshd, part, 1_000_000)
    first = run_backup(store, target)
    watcher.join(timeout=10.0)
    assert (first.sent, first.failed) == (1, 1) and set(store.done) == {"a"}, first.errors
    partial = part.stat().st_size
    assert 1_000_000 <= partial < items[1].size

    sshd.start()
    second = run_backup(store, target)
    target.close()
    assert (second.sent, second.failed) == (2, 0), second.errors
    assert resumed_offsets(caplog) == {items[1].name: partial}  # resumed, not restarted
    assert_all_arrived(remote, items, store)


def test_sftp_wrong_partial_copy_is_deleted_then_sent_whole(sshd: Sshd, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    [item] = make_items(tmp_path / "local", {"a": 300_000})
    stale = remote / (item.name + ".part")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\xff" * 100_000)
    store, target = MemoryStore([item]), sshd.target(remote)
    first = run_backup(store, target)
    assert first.failed == 1 and "remote copy has sha256" in store.failed["a"]
    assert not store.done and not stale.exists()
    assert run_backup(store, target).sent == 1
    target.close()
    assert_all_arrived(remote, [item], store)


def test_sftp_refused_credentials_and_unknown_host_key_are_clear_errors(
    sshd: Sshd, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    items = make_items(tmp_path / "local", {"a": 10})
    other_key = tmp_path / "other_key"
    keygen(other_key)
    other_hosts = tmp_path / "other_known_hosts"
    other_hosts.write_text(f"[{LOOPBACK}]:{sshd.port} {keygen(tmp_path / 'other_host')}\n")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key_file": str(other_key)}, "authentication refused"),
        ({"key_file": None, "password": "wrong"}, "authentication refused"),
        ({"known_hosts": str(other_hosts)}, "host key changed"),
        ({"known_hosts": str(tmp_path / "empty_known_hosts")}, "not found in known_hosts"),
    ]
    for kwargs, expected in cases:
        store = MemoryStore(items)
        report = run_backup(store, sshd.target(remote, **kwargs))
        assert report.failed == 1 and not store.done, kwargs
        assert expected in report.errors[0], (kwargs, report.errors)
    assert not list(remote.iterdir())


def test_sftp_missing_local_file_is_failed_and_the_rest_goes(sshd: Sshd, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    items = make_items(tmp_path / "local", {"gone": 10, "a": 10})
    items[0].path.unlink()
    store, target = MemoryStore(items), sshd.target(remote)
    report = run_backup(store, target)
    target.close()
    assert (report.sent, report.failed) == (1, 1) and "missing" in store.failed["gone"]
    assert [p.name for p in remote.rglob("*") if p.is_file()] == ["a.opus"]


def test_sftp_dead_server_fails_within_the_timeout(sshd: Sshd, tmp_path: Path) -> None:
    items = make_items(tmp_path / "local", {"a": 10, "b": 10})
    store = MemoryStore(items)
    with silent_server() as port:
        target: BackupTarget = SftpTarget(LOOPBACK, port, "u", root="/", timeout=1.0)
        report, elapsed = timed(lambda: run_backup(store, target))
    assert (report.sent, report.failed) == (0, 1) and not store.done
    assert "cannot connect" in report.errors[0] and elapsed < 3.0
    sshd.stop()
    report, elapsed = timed(lambda: run_backup(store, sshd.target(tmp_path / "remote")))
    assert report.failed == 1 and not store.done and elapsed < 3.0
