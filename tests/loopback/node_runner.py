"""`HotlineNode`: a real node on a temporary config, plus raw SIP helpers (see harness.py)."""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .harness import (
    CONFIG_DIR,
    LOOPBACK,
    REPO_ROOT,
    NodeError,
    _kill_process_group,
    _matches,
    free_port,
    read_tail,
)


def deep_merge(base: Any, override: Any) -> Any:
    """`override` merged into `base`: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def options_request(target: str, local_port: int, cseq: int = 1, call_id: str = "") -> bytes:
    """A minimal RFC 3261 §11 OPTIONS request from 127.0.0.1:`local_port` to `target`."""
    branch = "z9hG4bK-harness-" + secrets.token_hex(6)
    call_id = call_id or f"{secrets.token_hex(8)}@{LOOPBACK}"
    return (
        f"OPTIONS sip:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:harness@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{target}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} OPTIONS\r\n"
        f"Contact: <sip:harness@{LOOPBACK}:{local_port}>\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _is_sip_response(data: bytes) -> bool:
    return data.startswith(b"SIP/2.0 ")


def _status_code(data: bytes) -> int:
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


class SipUdpClient:
    """A UDP socket on 127.0.0.1 for raw SIP exchanges with the node (malformed input tests).

    In messages given to `send`, the text `{local_port}` is replaced by this socket's port, so
    a Via can name the right sent-by (RFC 3261 §18.2.2 sends UDP responses there).
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port: int = self.sock.getsockname()[1]

    def send(self, raw: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(raw.replace(b"{local_port}", str(self.port).encode()), to)

    def recv(self, timeout: float) -> bytes | None:
        """The next datagram within `timeout` seconds, or None."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                data, _source = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            except ConnectionRefusedError:
                # An ICMP port unreachable from an earlier send (node not bound yet): keep
                # waiting for the rest of the time rather than spinning.
                continue
            return data
        return None

    def recv_response(self, timeout: float, final: bool = False) -> bytes | None:
        """The next SIP response (the next final one if `final`) within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            data = self.recv(remaining)
            if data is None:
                return None
            if _is_sip_response(data) and (not final or _status_code(data) >= 200):
                return data
        return None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipUdpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class HotlineNode:
    """`python -m softswitch.cli serve` on 127.0.0.1 with a temporary config and data dir.

    `overrides` maps a config file stem to a mapping merged into that YAML file (mappings
    merge key by key, lists and scalars replace): `HotlineNode(tmp, queues={"queues": [...]})`
    replaces the queue list of queues.yaml. A stem without a file in config/ creates one.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        config_source: Path = CONFIG_DIR,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        name: str = "node",
        ipv6: bool = False,
        **overrides: Mapping[str, Any],
    ) -> None:
        self.name = name
        # Also listen on [::1] (same port number): its IPv6 media address derives from it.
        self.ipv6 = ipv6
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir = work_dir / "config"
        self.data_dir = work_dir / "data"
        self.log_path = work_dir / "node.log"
        self.port = port or free_port("both")
        self.ready_timeout = ready_timeout
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._write_config(config_source, overrides)

    def _write_config(self, source: Path, overrides: Mapping[str, Mapping[str, Any]]) -> None:
        if self.config_dir.exists():
            shutil.rmtree(self.config_dir)
        if source.is_dir():
            shutil.copytree(source, self.config_dir)
        else:
            self.config_dir.mkdir(parents=True)
        for stem, override in overrides.items():
            path = self.config_dir / f"{stem}.yaml"
            base: Any = {}
            if path.exists():
                base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            merged = deep_merge(base, override)
            path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
        self._own_rtp_ports()

    def _own_rtp_ports(self) -> None:
        """Under pytest-xdist, each test process's nodes anchor RTP in their own slice of
        the shipped 20000-29999 (a test that set its own range keeps it). Otherwise a node in
        one process could take a port that a node of the other process freed a moment ago
        while that call's peer still sends to it, and the new leg would latch onto that
        stray stream (symmetric RTP) and play its caller's prompt there."""
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        path = self.config_dir / "node.yaml"
        if not worker.startswith("gw") or count < 2 or not path.exists():
            return
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        media = config.get("media")
        if not isinstance(media, dict) or (media.get("port_min"), media.get("port_max")) != (
            20000,
            29999,
        ):
            return
        size = (10000 // count) & ~1
        media["port_min"] = 20000 + int(worker[2:]) * size
        media["port_max"] = media["port_min"] + size - 1
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the node's SIP listen address (UDP and TCP)."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def address6(self) -> str:
        """`[::1]:PORT`, the node's IPv6 SIP address (a node made with `ipv6=True`)."""
        if not self.ipv6:
            raise NodeError(f"{self.name} does not listen on IPv6 (make it with ipv6=True)")
        return f"[::1]:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hotline.db"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "softswitch.cli", "serve",
            "--config", str(self.config_dir),
            "--sip-listen", self.address,
            *(["--sip-listen", self.address6] if self.ipv6 else []),
            "--data", str(self.data_dir),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> HotlineNode:
        """Start the node and wait until it answers SIP OPTIONS over UDP."""
        if self.process is not None:
            raise NodeError("node already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            env=env,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        call_id = f"ready-{secrets.token_hex(6)}@{LOOPBACK}"
        with SipUdpClient() as client:
            for cseq in itertools.count(1):
                if self.process.poll() is not None:
                    raise NodeError(
                        f"node exited with {self.process.returncode} before it was ready\n"
                        f"{self.describe()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                client.send(
                    options_request(self.address, client.port, cseq, call_id), (LOOPBACK, self.port)
                )
                if client.recv_response(min(0.2, remaining)) is not None:
                    return
        self.stop()
        raise NodeError(
            f"node did not answer OPTIONS on {self.address} within {self.ready_timeout} s\n"
            f"{self.describe()}"
        )

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM (the node finishes its CDRs), wait `grace` s, then SIGKILL."""
        if self.process is None:
            return None
        returncode = _kill_process_group(self.process, grace)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return returncode

    def kill(self) -> int | None:
        """SIGKILL at once (crash tests: nothing written before must be lost)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=5.0)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def __enter__(self) -> HotlineNode:
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- observation ------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the node has logged so far (stdout and stderr)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """Wait until `text` appears in the log; return the first line containing it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text().splitlines():
                if text in line:
                    return line
            if time.monotonic() >= deadline:
                raise NodeError(
                    f"{text!r} not in the node log after {timeout} s\n{self.describe()}"
                )
            time.sleep(0.05)

    def tables(self) -> list[str]:
        """Names of the tables in the node's SQLite database."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).fetchall()
        return [row[0] for row in rows]

    def cdr_rows(self, table: str = "calls", **match: Any) -> list[dict[str, Any]]:
        """Rows of `table` (calls, legs, queue_log …) as dicts, filtered by equal columns."""
        known = self.tables()
        if table not in known:
            raise NodeError(f"no table {table!r} in {self.db_path}; tables: {known}")
        with self._connect() as connection:
            connection.row_factory = sqlite3.Row
            # The table name is checked against sqlite_master above, so quoting it is safe.
            rows = connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
        return [dict(row) for row in rows if _matches(dict(row), match)]

    def wait_for_rows(
        self,
        table: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 5.0,
        **match: Any,
    ) -> list[dict[str, Any]]:
        """Poll `cdr_rows(table, **match)` until `predicate(rows)` holds; CDRs are written
        asynchronously to the SIP exchange that causes them."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while True:
            with contextlib.suppress(NodeError, sqlite3.OperationalError):
                rows = self.cdr_rows(table, **match)
                if predicate(rows):
                    return rows
            if time.monotonic() >= deadline:
                raise NodeError(
                    f"rows of {table!r} matching {match!r} did not satisfy the "
                    f"condition within {timeout} s; last rows: {rows}"
                )
            time.sleep(0.05)

    @contextlib.contextmanager
    def _connect(self) -> Any:
        if not self.db_path.exists():
            raise NodeError(f"no database at {self.db_path}\n{self.describe()}")
        connection = sqlite3.connect(str(self.db_path), timeout=5.0)
        try:
            yield connection
        finally:
            connection.close()

    def send_sip(self, raw: bytes, timeout: float = 2.0, final: bool = False) -> bytes:
        """Send one raw SIP message over UDP and return the first (final, if asked) response.

        `{local_port}` in `raw` becomes the sending port. Raises NodeError if none arrives.
        """
        with SipUdpClient() as client:
            client.send(raw, (LOOPBACK, self.port))
            response = client.recv_response(timeout, final=final)
        if response is None:
            raise NodeError(f"no SIP response from {self.address} within {timeout} s")
        return response

    def describe(self) -> str:
        return "\n".join(
            [
                f"node command: {' '.join(self.command)}",
                f"exit code: {self.returncode}",
                f"node log tail ({self.log_path}):\n{read_tail(self.log_path)}",
            ]
        )


def queue_override(**fields: Any) -> dict[str, Any]:
    """queues.yaml as shipped, with the settings of queue `general` changed by `fields` (the
    demo's other queues stay: its agents and IVR flows refer to them)."""
    shipped = yaml.safe_load((CONFIG_DIR / "queues.yaml").read_text(encoding="utf-8"))
    queues = []
    for queue in shipped["queues"]:
        if queue["name"] == "general":
            queue = {**queue, **fields}
        queues.append(queue)
    return {"queues": queues}
