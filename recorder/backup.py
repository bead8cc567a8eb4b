"""Backup of recordings to a directory, FTP(S) or SFTP target (SPEC REC-3).

A pass (`run_backup`) asks a `BackupStore` (the recording index) for recordings not yet copied
to a target, checks each local file against the SHA-256 the index holds, and hands it to the
target's `put`. Every target uploads to `<name>.part`, reads the copy back to compare its
SHA-256, and only then renames it to `<name>`: a file under its final name is always whole. A
`.part` left by an interrupted transfer is resumed from its size on the next pass (FTP REST,
SFTP write at offset, a seek for a directory) instead of being sent again; a resumed copy whose
checksum is wrong is deleted, and the next pass sends the whole file.

Errors: `BackupError` is about one recording (the pass goes on with the next one);
`TargetUnavailableError`, its subclass, means the target as a whole cannot be used right now
(refused or timed-out connection, wrong password, unknown host key, connection cut mid-transfer),
so the pass stops and what is left stays pending for the next one.
"""

from __future__ import annotations

import ftplib
import hashlib
import logging
import os
import posixpath
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "BackupError",
    "BackupItem",
    "BackupReport",
    "BackupStore",
    "BackupTarget",
    "DirectoryTarget",
    "FtpTarget",
    "MemoryStore",
    "SftpTarget",
    "TargetUnavailableError",
    "file_sha256",
    "run_backup",
    "target_from_url",
]

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
CHUNK = 256 * 1024


class BackupItem(NamedTuple):
    """One recording to copy: `name` is its path below the target's root, `/`-separated."""

    recording_id: str
    path: Path
    name: str
    sha256: str
    size: int


class BackupError(Exception):
    """One recording could not be copied; the message names the target and the recording."""


class TargetUnavailableError(BackupError):
    """The target cannot be reached or used at all: a pass stops at the first one."""


class BackupTarget(Protocol):
    """Where copies go. `name` identifies the target in the index and never holds a secret."""

    name: str

    def put(self, item: BackupItem) -> str:
        """Copy `item`, verify the remote SHA-256, return the remote path."""
        ...

    def delete(self, name: str) -> None:
        """Remove the copy of `name` (and any partial one); a missing copy is not an error."""
        ...

    def close(self) -> None: ...


class BackupStore(Protocol):
    """What the backup pass needs from the recording index."""

    def pending_backup(self, target: str, limit: int) -> list[BackupItem]: ...

    def backup_done(self, recording_id: str, target: str, remote: str, at: float) -> None: ...

    def backup_failed(self, recording_id: str, target: str, error: str, at: float) -> None: ...


class MemoryStore:
    """A BackupStore held in memory: for a one-off copy of a list of files, and for tests.
    `done` maps recording id to remote path; `failed` to the last error of one not done."""

    def __init__(self, items: list[BackupItem]) -> None:
        self.items = items
        self.done: dict[str, str] = {}
        self.failed: dict[str, str] = {}

    def pending_backup(self, target: str, limit: int) -> list[BackupItem]:
        return [i for i in self.items if i.recording_id not in self.done][:limit]

    def backup_done(self, recording_id: str, target: str, remote: str, at: float) -> None:
        self.done[recording_id] = remote
        self.failed.pop(recording_id, None)

    def backup_failed(self, recording_id: str, target: str, error: str, at: float) -> None:
        self.failed[recording_id] = error


@dataclass
class BackupReport:
    sent: int = 0
    failed: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in pieces."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while piece := f.read(CHUNK):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def name_parts(name: str) -> list[str]:
    """The components of a relative backup name; anything that could leave the root is refused."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise BackupError(
            f"bad backup name {name!r}: expected a relative path like 2026/12/07/x.opus"
        )
    return parts


def _local_problem(item: BackupItem) -> str | None:
    """Why the local file must not be sent (missing, or not what the index says), or None."""
    try:
        sha256, size = file_sha256(item.path)
    except FileNotFoundError:
        return f"{item.recording_id}: local file {item.path} is missing"
    except OSError as e:
        return f"{item.recording_id}: cannot read local file {item.path}: {e}"
    if sha256 != item.sha256 or size != item.size:
        return (
            f"{item.recording_id}: local file {item.path} no longer matches the index"
            f" (sha256 {sha256[:16]}…, {size} bytes; index {item.sha256[:16]}…, {item.size} bytes)"
        )
    return None


def run_backup(
    store: BackupStore,
    target: BackupTarget,
    *,
    limit: int = 1000,
    deadline: float | None = None,
    clock: Callable[[], float] = time.time,
) -> BackupReport:
    """One backup pass of up to `limit` recordings; no new file is started once `clock()`
    reaches `deadline`. Stops at the first `TargetUnavailableError`; a local file that is missing or
    whose SHA-256 no longer matches is recorded as failed and never sent."""
    report = BackupReport()
    for item in store.pending_backup(target.name, limit):
        if deadline is not None and clock() >= deadline:
            log.info("backup to %s: deadline reached, %d sent", target.name, report.sent)
            break
        error = _local_problem(item)
        unavailable = False
        if error is None:
            try:
                remote = target.put(item)
            except BackupError as e:
                error, unavailable = str(e), isinstance(e, TargetUnavailableError)
            else:
                store.backup_done(item.recording_id, target.name, remote, clock())
                report.sent += 1
                report.bytes += item.size
                continue
        log.warning("backup to %s failed: %s", target.name, error)
        store.backup_failed(item.recording_id, target.name, error, clock())
        report.failed += 1
        report.errors.append(error)
        if unavailable:
            break
    return report


# --- the copy, the same on every target ------------------------------------------------------
class _Files(Protocol):
    """The file operations a target offers `_copy_verified`, on its own kind of path."""

    def size(self, path: str) -> int | None: ...  # None: no such file

    def sha256(self, path: str) -> str: ...  # by reading the file back

    def make_dirs(self, path: str) -> None: ...

    def write(self, path: str, src: BinaryIO, offset: int) -> None: ...  # from src's position

    def remove(self, path: str) -> None: ...

    def replace(self, part: str, final: str) -> None: ...


def _copy_verified(target: str, files: _Files, item: BackupItem, src: BinaryIO, final: str) -> None:
    """Copy `src` to `final` through `final.part`, resuming a partial `.part`, and rename it
    only once its SHA-256 read back matches; a wrong `.part` is removed (BackupError)."""
    part = final + PART_SUFFIX
    if files.size(final) == item.size and files.sha256(final) == item.sha256:
        return  # copied before, but not marked done (a crash, or a lost reply)
    files.make_dirs(posixpath.dirname(final))
    offset = files.size(part) or 0
    if offset > item.size:
        offset = 0
    if offset:
        log.info("%s: resuming %s at byte %d of %d", target, item.name, offset, item.size)
    if offset < item.size or offset == 0:
        src.seek(offset)
        files.write(part, src, offset)
    sha256 = files.sha256(part)
    if sha256 != item.sha256:
        files.remove(part)
        raise BackupError(
            f"{target}: {item.name}: remote copy has sha256 {sha256[:16]}…, expected"
            f" {item.sha256[:16]}…; remote copy deleted"
        )
    files.replace(part, final)


def _open_local(target: str, item: BackupItem) -> BinaryIO:
    try:
        return item.path.open("rb")
    except OSError as e:
        raise BackupError(f"{target}: {item.name}: cannot read {item.path}: {e}") from e


def _remote_path(root: str, name: str) -> str:
    return posixpath.join(root, *name_parts(name))


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(e, EOFError):
        return "connection closed by the server"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _clean_root(root: str) -> str:
    """`/rec/` -> `/rec`, `/` stays, `` and `.` mean the login directory (`.`)."""
    if root.startswith("/"):
        return root.rstrip("/") or "/"
    return root.rstrip("/") or "."


def _url_name(scheme: str, user: str, host: str, port: int, root: str) -> str:
    """The target's name: its URL without the password (`ftp://backup@127.0.0.1:2121/rec`)."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = root if root.startswith("/") else "" if root == "." else f"/{root}"
    return f"{scheme}://{user}@{netloc}{path}"


def _ancestors(path: str) -> Iterator[str]:
    """`/a/b/c` -> `/a`, `/a/b`, `/a/b/c` (relative paths likewise, without the slash)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    prefix = "/" if path.startswith("/") else ""
    for i in range(1, len(parts) + 1):
        yield prefix + "/".join(parts[:i])


# --- directory ---------------------------------------------------------------------------------
class _LocalFiles:
    def size(self, path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    def sha256(self, path: str) -> str:
        return file_sha256(Path(path))[0]

    def make_dirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def write(self, path: str, src: BinaryIO, offset: int) -> None:
        with open(path, "r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())

    def remove(self, path: str) -> None:
        os.unlink(path)

    def replace(self, part: str, final: str) -> None:
        os.replace(part, final)
        fd = os.open(os.path.dirname(final), os.O_RDONLY)  # make the rename durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DirectoryTarget:
    """A local or mounted directory. The root must exist: a share that is not mounted is
    `TargetUnavailableError`, not a copy written to the local disk beneath the mount point."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"dir:{self.root}"

    def put(self, item: BackupItem) -> str:
        final = _remote_path(str(self.root), item.name)
        if not self.root.is_dir():
            raise TargetUnavailableError(f"{self.name}: root {self.root} is not a directory")
        with _open_local(self.name, item) as src:
            try:
                _copy_verified(self.name, _LocalFiles(), item, src, final)
            except OSError as e:
                raise BackupError(f"{self.name}: {item.name}: {e}") from e
        return final

    def delete(self, name: str) -> None:
        final = _remote_path(str(self.root), name)
        try:
            for path in (final, final + PART_SUFFIX):
                Path(path).unlink(missing_ok=True)
        except OSError as e:
            raise BackupError(f"{self.name}: delete {name}: {e}") from e

    def close(self) -> None:
        pass


# --- FTP / FTPS --------------------------------------------------------------------------------
class _FtpFiles:
    def __init__(self, ftp: ftplib.FTP) -> None:
        self.ftp = ftp

    def size(self, path: str) -> int | None:
        try:
            return self.ftp.size(path)  # RFC 3659 §4
        except ftplib.error_perm:
            return None

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        self.ftp.retrbinary(f"RETR {path}", digest.update, CHUNK)
        return digest.hexdigest()

    def make_dirs(self, path: str) -> None:
        for directory in _ancestors(path):
            try:
                self.ftp.mkd(directory)
            except ftplib.error_perm:
                pass  # exists already (550); a real permission problem shows at STOR

    def write(self, path: str, src: BinaryIO, offset: int) -> None:
        # RFC 3659 §5: REST <offset> before STOR writes from that byte on.
        self.ftp.storbinary(f"STOR {path}", src, CHUNK, rest=offset or None)

    def remove(self, path: str) -> None:
        self.ftp.delete(path)

    def replace(self, part: str, final: str) -> None:
        if self.size(final) is not None:
            self.ftp.delete(final)  # RNTO onto an existing file fails on some servers
        self.ftp.rename(part, final)


class _RemoteTarget:
    """`put` and `delete` of the targets reached over a connection (FTP, SFTP): `_files`
    gives that connection's file operations (connecting if needed), `_run` turns its errors
    into BackupError or TargetUnavailableError."""

    name: str
    root: str

    def _files(self) -> _Files:
        raise NotImplementedError

    def _run(self, what: str, action: Callable[[], None]) -> None:
        raise NotImplementedError

    def put(self, item: BackupItem) -> str:
        final = _remote_path(self.root, item.name)
        files = self._files()
        with _open_local(self.name, item) as src:
            self._run(item.name, lambda: _copy_verified(self.name, files, item, src, final))
        return final

    def delete(self, name: str) -> None:
        final = _remote_path(self.root, name)
        files = self._files()

        def remove_both() -> None:
            for path in (final, final + PART_SUFFIX):
                if files.size(path) is not None:
                    files.remove(path)

        self._run(f"delete {name}", remove_both)


class FtpTarget(_RemoteTarget):
    """An FTP server (`tls=True`: explicit FTPS, AUTH TLS with a protected data channel).

    One control connection is kept across `put`s and opened again after an error. A 5xx reply
    is about one file (BackupError); a 4xx reply, a socket error or a closed connection make
    the target unavailable.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        root: str,
        *,
        tls: bool = False,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.user, self._password = host, port, user, password
        self.root = _clean_root(root)
        self.tls, self.timeout, self._tls_context = tls, timeout, tls_context
        self.name = _url_name("ftps" if tls else "ftp", user, host, port, self.root)
        self._ftp: ftplib.FTP | None = None

    def _connect(self) -> ftplib.FTP:
        if self._ftp is not None:
            return self._ftp
        ftp: ftplib.FTP
        if self.tls:
            context = self._tls_context or ssl.create_default_context()
            ftp = ftplib.FTP_TLS(context=context, timeout=self.timeout)
        else:
            ftp = ftplib.FTP(timeout=self.timeout)
        try:
            ftp.connect(self.host, self.port, timeout=self.timeout)
            try:
                ftp.login(self.user, self._password)
            except ftplib.error_perm as e:
                raise TargetUnavailableError(f"{self.name}: login refused: {e}") from e
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.voidcmd("TYPE I")
        except TargetUnavailableError:
            ftp.close()
            raise
        except ftplib.all_errors as e:
            ftp.close()
            raise TargetUnavailableError(f"{self.name}: cannot connect: {_describe(e)}") from e
        self._ftp = ftp
        return ftp

    def _drop(self) -> None:
        if self._ftp is not None:
            self._ftp.close()
            self._ftp = None

    def _files(self) -> _Files:
        return _FtpFiles(self._connect())

    def _run(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except ftplib.error_perm as e:  # a 5xx reply: the connection is still usable
            raise BackupError(f"{self.name}: {what}: {e}") from e
        except ftplib.all_errors as e:
            self._drop()
            raise TargetUnavailableError(f"{self.name}: {what}: {_describe(e)}") from e

    def close(self) -> None:
        if self._ftp is not None:
            try:
                self._ftp.quit()
            except ftplib.all_errors:
                pass  # closing anyway
            self._drop()


# --- SFTP --------------------------------------------------------------------------------------
class _SftpFiles:
    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp

    def size(self, path: str) -> int | None:
        try:
            return self.sftp.stat(path).st_size
        except FileNotFoundError:
            return None

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.sftp.open(path, "r") as f:
            f.prefetch()
            while piece := f.read(CHUNK):
                digest.update(piece)
        return digest.hexdigest()

    def make_dirs(self, path: str) -> None:
        for directory in _ancestors(path):
            if self.size(directory) is None:
                self.sftp.mkdir(directory)

    def write(self, path: str, src: BinaryIO, offset: int) -> None:
        with self.sftp.open(path, "r+" if offset else "w") as out:
            out.set_pipelined(True)  # do not wait for each write's status
            out.seek(offset)
            while piece := src.read(CHUNK):
                out.write(piece)

    def remove(self, path: str) -> None:
        self.sftp.remove(path)

    def replace(self, part: str, final: str) -> None:
        try:
            self.sftp.posix_rename(part, final)  # OpenSSH extension: replaces atomically
        except OSError:
            if self.size(final) is not None:
                self.sftp.remove(final)
            self.sftp.rename(part, final)


class SftpTarget(_RemoteTarget):
    """An SSH server's SFTP subsystem, through paramiko.

    The server's host key must be in `known_hosts` (default `~/.ssh/known_hosts`): an unknown
    or changed key is `TargetUnavailableError`, never trusted on first use. Authentication is by
    `key_file` and/or `password`; no agent and no keys from `~/.ssh` are tried.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        *,
        password: str | None = None,
        key_file: str | None = None,
        root: str,
        known_hosts: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self._password, self._key_file = password, key_file
        self.root = _clean_root(root)
        self.known_hosts = known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        self.timeout = timeout
        self.name = _url_name("sftp", user, host, port, self.root)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        import paramiko

        client = paramiko.SSHClient()
        try:
            if os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                self.host,
                self.port,
                username=self.user,
                password=self._password,
                key_filename=self._key_file,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.timeout)
        except paramiko.AuthenticationException as e:
            client.close()
            raise TargetUnavailableError(f"{self.name}: authentication refused: {e}") from e
        except paramiko.BadHostKeyException as e:
            client.close()
            raise TargetUnavailableError(f"{self.name}: host key changed: {e}") from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            client.close()
            raise TargetUnavailableError(f"{self.name}: cannot connect: {_describe(e)}") from e
        self._client, self._sftp = client, sftp
        return sftp

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None

    def _files(self) -> _Files:
        return _SftpFiles(self._connect())

    def _run(self, what: str, action: Callable[[], None]) -> None:
        import paramiko

        try:
            action()
        except (paramiko.SSHException, OSError, EOFError) as e:
            # An SFTP status (no such file, permission denied) on a live connection is about
            # this file; anything else means the connection is gone.
            transport = self._client.get_transport() if self._client is not None else None
            alive = transport is not None and transport.is_active()
            if isinstance(e, OSError) and e.errno is not None and alive:
                raise BackupError(f"{self.name}: {what}: {e}") from e
            self._drop()
            raise TargetUnavailableError(f"{self.name}: {what}: {_describe(e)}") from e

    def close(self) -> None:
        self._drop()


# --- URLs --------------------------------------------------------------------------------------
_DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}


def target_from_url(
    url: str,
    *,
    password: str | None = None,
    key_file: str | None = None,
    known_hosts: str | None = None,
    timeout: float = 10.0,
) -> BackupTarget:
    """A target from `dir:/path`, `/path`, `ftp://user@host[:port]/path`, `ftps://…` or
    `sftp://user@host[:port]/path`. The URL path is the root as the server names it (`/rec`
    is absolute; no path means the login directory). A password in the URL is used when
    `password` is not given; the target's `name` never shows it. A bad URL is a ValueError
    that names the part at fault."""
    if url.startswith("dir:"):
        path = url[len("dir:") :]
        if not path:
            raise ValueError(f"backup target {url!r}: directory path missing")
        return DirectoryTarget(Path(path))
    if url.startswith("/"):
        return DirectoryTarget(Path(url))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"backup target {url!r}: scheme {parts.scheme or '(none)'!r} is not one of"
            " dir:, ftp://, ftps://, sftp:// (or an absolute path)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"backup target {url!r}: query or fragment not allowed")
    if not parts.hostname:
        raise ValueError(f"backup target {url!r}: host missing")
    if not parts.username:
        raise ValueError(f"backup target {url!r}: user missing (scheme://user@host/path)")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise ValueError(f"backup target {url!r}: bad port: {e}") from None
    user = unquote(parts.username)
    secret = password if password is not None else unquote(parts.password or "") or None
    root = unquote(parts.path) or "."
    if scheme == "sftp":
        return SftpTarget(
            parts.hostname,
            port,
            user,
            password=secret,
            key_file=key_file,
            root=root,
            known_hosts=known_hosts,
            timeout=timeout,
        )
    if secret is None:
        raise ValueError(f"backup target {url!r}: password missing for {scheme}")
    return FtpTarget(
        parts.hostname, port, user, secret, root, tls=scheme == "ftps", timeout=timeout
    )
