"""Loopback test harness: real peers (pjsua2 agents, SIPp) and a real hotline node.

Everything here runs on 127.0.0.1 high ports, every wait is bounded, and every process is
started as a child in its own session so a test can always end it. Failures raise
`HarnessError` (an `AssertionError`, because a peer that does not behave is a failed test)
with a message that carries what is needed to debug it: the events an agent saw, the tail of
SIPp's error log, the tail of the node's log.

- `PjAgent`: one `pjagent.py` subprocess (pjsua2 softphone), events read as JSON lines.
- `Sipp`: one `sipp` run with a scenario from tests/sipp/ (or a built-in one), parsed result.
- `HotlineNode`: `python -m softswitch.cli serve` on a temporary copy of config/, with
  per-file overrides, readiness by SIP OPTIONS, CDR rows from its SQLite file.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import itertools
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SIPP_SCENARIO_DIR = REPO_ROOT / "tests" / "sipp"
CONFIG_DIR = REPO_ROOT / "config"
PJAGENT_SCRIPT = Path(__file__).resolve().parent / "pjagent.py"
LOOPBACK = "127.0.0.1"

# Set HOTLINE_REQUIRE_PEERS=1 (CI does, after installing the peers) to turn "peer missing"
# skips into failures, so a broken CI image cannot pass by skipping every loopback test.
REQUIRE_PEERS_ENV = "HOTLINE_REQUIRE_PEERS"
# Path or name of the SIPp binary (Debian package sip-tester installs /usr/bin/sipp).
SIPP_BINARY = os.environ.get("HOTLINE_SIPP", "sipp")

_TAIL_LINES = 40


class HarnessError(AssertionError):
    """A peer or the node did not behave as the test expected, or could not be run."""


class AgentError(HarnessError):
    """A pjsua2 agent failed, exited, or did not report the awaited event in time."""


class SippError(HarnessError):
    """A SIPp run failed or did not end in time."""


class NodeError(HarnessError):
    """The hotline node did not start, did not answer, or its data could not be read."""


# -- small helpers ----------------------------------------------------------------------------


def tail(text: str, lines: int = _TAIL_LINES) -> str:
    """The last `lines` lines of `text`."""
    return "\n".join(text.splitlines()[-lines:])


def read_tail(path: Path | None, lines: int = _TAIL_LINES) -> str:
    """The last `lines` lines of a file, or a note that it does not exist."""
    if path is None or not path.exists():
        return f"(no file {path})"
    with path.open("rb") as handle:
        # Logs of bulk runs can be large: only the last 64 KiB can hold the tail we show.
        handle.seek(max(0, path.stat().st_size - 65536))
        text = handle.read().decode("utf-8", errors="replace")
    return tail(text, lines)


def require_peer(name: str, available: bool, how_to_install: str) -> None:
    """Skip the current test when a peer is missing, or fail if HOTLINE_REQUIRE_PEERS=1."""
    if available:
        return
    message = f"{name} is not available ({how_to_install})"
    if os.environ.get(REQUIRE_PEERS_ENV) == "1":
        pytest.fail(f"{message}; {REQUIRE_PEERS_ENV}=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@functools.cache
def sipp_available() -> bool:
    return shutil.which(SIPP_BINARY) is not None


@functools.cache
def pjsua2_available() -> bool:
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        return False
    return True


def require_sipp() -> None:
    require_peer("sipp", sipp_available(), "apt-get install sip-tester, or set HOTLINE_SIPP")


def require_pjsua2() -> None:
    require_peer("pjsua2", pjsua2_available(), "pip install pjsua2-python")


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def _port_is_free(port: int, kinds: Iterable[int]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port(kind: Literal["udp", "tcp", "both"] = "both", span: int = 1) -> int:
    """A port on 127.0.0.1 that is free now for `kind`, together with the `span - 1` after it.

    The kernel picks a candidate (bind to port 0), so ports come from the ephemeral range and
    are high; a port is never handed out twice by this process. `span` > 1 serves peers that
    bind consecutive ports (SIPp's RTP echo uses -mp and -mp + 2).
    """
    kinds = {
        "udp": (socket.SOCK_DGRAM,),
        "tcp": (socket.SOCK_STREAM,),
        "both": (socket.SOCK_DGRAM, socket.SOCK_STREAM),
    }[kind]
    for _attempt in range(200):
        with socket.socket(socket.AF_INET, kinds[0]) as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        candidates = range(port, port + span)
        if port + span > 65535:
            continue
        with _handed_out_lock:
            if any(candidate in _handed_out for candidate in candidates):
                continue
            if all(_port_is_free(candidate, kinds) for candidate in candidates):
                _handed_out.update(candidates)
                return port
    raise HarnessError(f"no free {kind} port block of {span} on {LOOPBACK} after 200 attempts")


def _kill_process_group(process: subprocess.Popen[Any], grace: float) -> int | None:
    """SIGTERM the child's session, wait `grace` seconds, then SIGKILL; return the exit code."""
    if process.poll() is not None:
        return process.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=5.0)


def _matches(event: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    for key, want in expected.items():
        if key not in event:
            return False
        have = event[key]
        if callable(want):
            if not want(have):
                return False
        elif have != want:
            return False
    return True


# -- pjsua2 agent ---------------------------------------------------------------------------


class PjAgent:
    """A pjsua2 softphone agent in its own process (see pjagent.py), driven by its events.

    `wait_for` hands out each event once: two waits for "incoming" return two different calls,
    and waiting for "confirmed" after "disconnected" still finds the earlier "confirmed".
    """

    _counter = itertools.count(1)

    def __init__(
        self,
        *,
        user: str = "1001",
        password: str | None = None,
        registrar: str | None = None,
        realm: str = "*",
        domain: str | None = None,
        transport: Literal["udp", "tcp"] = "udp",
        local_port: int = 0,
        auto_answer: int = 200,
        answer_delay: float = 0.0,
        hangup_after: float | None = None,
        dtmf: str = "",
        dtmf_method: Literal["rfc4733", "info"] = "rfc4733",
        null_audio: bool = True,
        max_seconds: float = 60.0,
        expires: int = 300,
        log_dir: Path | None = None,
        log_level: int = 4,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 10.0,
    ) -> None:
        self.user = user
        self.password = password if password is not None else f"pw{user}"
        self.registrar = registrar
        self.transport = transport
        self.ready_timeout = ready_timeout
        number = next(self._counter)
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="pjagent-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.name = f"pjagent-{user}-{number}"
        self.pj_log_path = self.log_dir / f"{self.name}.pjsip.log"
        self.stderr_path = self.log_dir / f"{self.name}.stderr.log"
        self.args = [
            "--user", user,
            "--realm", realm,
            "--transport", transport,
            "--local-port", str(local_port),
            "--auto-answer", str(auto_answer),
            "--answer-delay", str(answer_delay),
            "--max-seconds", str(max_seconds),
            "--expires", str(expires),
            "--log-file", str(self.pj_log_path),
            "--log-level", str(log_level),
        ]  # fmt: skip
        if registrar:
            self.args += ["--registrar", registrar, "--password", self.password]
        if domain:
            self.args += ["--domain", domain]
        if hangup_after is not None:
            self.args += ["--hangup-after", str(hangup_after)]
        if dtmf:
            self.args += ["--dtmf", dtmf]
        if dtmf_method != "rfc4733":
            self.args += ["--dtmf-method", dtmf_method]
        if null_audio:
            self.args.append("--null-audio")
        self.args += list(extra_args)
        self.process: subprocess.Popen[str] | None = None
        self._events: list[dict[str, Any]] = []
        self._consumed: set[int] = set()
        self._noise: list[str] = []
        self._eof = False
        self._condition = threading.Condition()
        self._reader: threading.Thread | None = None
        self._stderr_file: Any = None
        self.ready: dict[str, Any] = {}

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> PjAgent:
        """Start the process and wait for its "ready" event (its SIP port is known then)."""
        if self.process is not None:
            raise AgentError(f"{self.name} already started")
        self._stderr_file = self.stderr_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, str(PJAGENT_SCRIPT), *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            bufsize=1,
            start_new_session=True,
            cwd=str(self.log_dir),
        )
        self._reader = threading.Thread(target=self._read_events, name=self.name, daemon=True)
        self._reader.start()
        self.ready = self.wait_for("ready", timeout=self.ready_timeout)
        return self

    def _read_events(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            with self._condition:
                if isinstance(event, dict) and "event" in event:
                    self._events.append(event)
                else:
                    self._noise.append(line)
                self._condition.notify_all()
        with self._condition:
            self._eof = True
            self._condition.notify_all()

    def stop(self, grace: float = 3.0) -> int | None:
        """Terminate the agent (it hangs up and unregisters on SIGTERM), kill after `grace` s."""
        if self.process is None:
            return None
        returncode = _kill_process_group(self.process, grace)
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        return returncode

    def __enter__(self) -> PjAgent:
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- properties -------------------------------------------------------------------------

    @property
    def sip_port(self) -> int:
        """The agent's local SIP port (known once started)."""
        return int(self.ready["sip_port"])

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT` where the agent listens for SIP."""
        return f"{LOOPBACK}:{self.sip_port}"

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """All events seen so far (consumed or not), optionally only those named `name`."""
        with self._condition:
            return [dict(e) for e in self._events if name is None or e["event"] == name]

    # -- interaction ------------------------------------------------------------------------

    def wait_for(self, event: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first not yet returned event named `event` whose fields match `match`.

        A match value may be a callable taking the field's value (`code=lambda c: c >= 400`).
        Raises AgentError after `timeout` seconds, or at once if the agent has exited.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for index, candidate in enumerate(self._events):
                    if index in self._consumed or candidate["event"] != event:
                        continue
                    if _matches(candidate, match):
                        self._consumed.add(index)
                        return dict(candidate)
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._condition.wait(timeout=min(remaining, 0.5))
        why = "exited" if self._eof else f"timed out after {timeout:.1f} s"
        raise AgentError(
            f"{self.name}: {why} waiting for {event!r} matching {match!r}\n{self.describe()}"
        )

    def expect_no(self, event: str, within: float, **match: Any) -> None:
        """Assert that no (unconsumed) matching `event` arrives within `within` seconds."""
        try:
            found = self.wait_for(event, timeout=within, **match)
        except AgentError:
            return
        raise AgentError(f"{self.name}: unexpected {event!r}: {found}\n{self.describe()}")

    def send(self, command: str) -> None:
        """Send one command line (hangup, answer CODE, dtmf DIGITS, unregister, quit …)."""
        if self.process is None or self.process.stdin is None or self.process.poll() is not None:
            raise AgentError(f"{self.name}: not running, cannot send {command!r}")
        try:
            self.process.stdin.write(command.strip() + "\n")
            self.process.stdin.flush()
        except OSError as error:
            raise AgentError(f"{self.name}: cannot send {command!r}: {error}") from error

    def describe(self) -> str:
        """Events, stray output and log tails, for failure messages."""
        with self._condition:
            events = "\n".join(json.dumps(e) for e in self._events) or "(none)"
            noise = "\n".join(self._noise[-10:])
        parts = [
            f"{self.name} args: {' '.join(self.args)}",
            f"exit code: {self.returncode}",
            f"events:\n{events}",
        ]
        if noise:
            parts.append(f"non-JSON stdout:\n{noise}")
        parts.append(f"stderr tail:\n{read_tail(self.stderr_path, 15)}")
        parts.append(f"pjsip log tail ({self.pj_log_path}):\n{read_tail(self.pj_log_path, 30)}")
        return "\n".join(parts)


# -- SIPp -----------------------------------------------------------------------------------

SIPP_EXIT_CODES = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command (calls may have been processed)",
    99: "normal exit without calls processed",
    255: "fatal error",
    254: "fatal error binding a socket",
}


class Sipp:
    """One SIPp run as a child process, bounded by SIPp's own -timeout and by `wait`.

    `scenario` is a file name under tests/sipp/ (".xml" optional) or a path; `builtin` names a
    built-in scenario (`uac`, `uas` …) instead. `remote` is HOST:PORT for a UAC, None for a
    UAS. Local SIP, media and control ports are fresh free ports on 127.0.0.1; the statistics
    CSV, error log, message log and final screen land in `work_dir`.
    """

    _counter = itertools.count(1)

    def __init__(
        self,
        scenario: str | Path | None = None,
        *,
        builtin: str | None = None,
        remote: str | None = None,
        transport: str = "u1",
        calls: int | None = 1,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        limit: int | None = None,
        duration_ms: int | None = None,
        service: str | None = None,
        keys: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        local_port: int | None = None,
        trace_msg: bool = True,
        work_dir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if (scenario is None) == (builtin is None):
            raise SippError("give exactly one of scenario and builtin")
        self.scenario_path = None if scenario is None else self.find_scenario(scenario)
        self.builtin = builtin
        self.remote = remote
        self.transport = transport
        self.timeout = timeout
        number = next(self._counter)
        label = builtin or self.scenario_path.stem  # type: ignore[union-attr]
        self.name = f"sipp-{label}-{number}"
        self.work_dir = (work_dir or Path(tempfile.mkdtemp(prefix="sipp-"))) / self.name
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tcp = transport.startswith("t")
        self.port = local_port or free_port("both" if tcp else "udp")
        self.media_port = free_port("udp", span=4)
        self.control_port = free_port("udp")
        self.stat_path = self.work_dir / "stat.csv"
        self.error_path = self.work_dir / "errors.log"
        self.message_path = self.work_dir / "messages.log"
        self.screen_path = self.work_dir / "screen.log"
        self.stdout_path = self.work_dir / "stdout.log"
        self.log_path = self.work_dir / "actions.log"

        args: list[str] = [SIPP_BINARY]
        if self.scenario_path is not None:
            args += ["-sf", str(self.scenario_path)]
        else:
            args += ["-sn", str(builtin)]
        if remote:
            args.append(remote)
        args += [
            "-t", transport,
            "-i", LOOPBACK,
            "-mi", LOOPBACK,
            "-p", str(self.port),
            "-mp", str(self.media_port),
            "-cp", str(self.control_port),
            "-nostdin",
            # SIPp's own global timeout; -timeout_error makes reaching it a failure.
            "-timeout", f"{max(1, math.ceil(timeout))}s",
            "-timeout_error",
            "-trace_err", "-error_file", str(self.error_path),
            "-trace_stat", "-stf", str(self.stat_path), "-fd", "1",
            "-trace_screen", "-screen_file", str(self.screen_path),
            "-trace_logs", "-log_file", str(self.log_path),
        ]  # fmt: skip
        if trace_msg:
            args += ["-trace_msg", "-message_file", str(self.message_path)]
        if calls is not None:
            args += ["-m", str(calls)]
        if rate is not None:
            args += ["-r", str(rate)]
        if rate_period_ms is not None:
            args += ["-rp", str(rate_period_ms)]
        if limit is not None:
            args += ["-l", str(limit)]
        if duration_ms is not None:
            args += ["-d", str(duration_ms)]
        if service is not None:
            args += ["-s", service]
        for key, value in (keys or {}).items():
            args += ["-key", key, str(value)]
        args += list(extra_args)
        self.command = args
        self.process: subprocess.Popen[bytes] | None = None
        self._stdout_file: Any = None
        self.result: dict[str, Any] = {}

    @staticmethod
    def find_scenario(scenario: str | Path) -> Path:
        """Resolve a scenario name under tests/sipp/ or a path; fail clearly if missing."""
        path = Path(scenario)
        if not path.is_absolute() and not path.exists():
            path = SIPP_SCENARIO_DIR / path
            if path.suffix != ".xml":
                path = path.with_name(path.name + ".xml")
        if not path.is_file():
            raise SippError(f"SIPp scenario not found: {scenario} (looked at {path})")
        return path.resolve()

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT` where this SIPp instance sends from and listens."""
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> Sipp:
        """Start SIPp as a child process (not -bg: the test owns and ends it)."""
        if self.process is not None:
            raise SippError(f"{self.name} already started")
        self._stdout_file = self.stdout_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout_file,
            stderr=subprocess.STDOUT,
            cwd=str(self.work_dir),
            start_new_session=True,
        )
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Wait for SIPp to end (default: its -timeout plus 5 s), parse and return the result.

        If it is still running at the deadline it is killed and SippError is raised.
        """
        if self.process is None:
            raise SippError(f"{self.name} was not started")
        limit = self.timeout + 5.0 if timeout is None else timeout
        try:
            returncode = self.process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.stop()
            self._parse_result()
            raise SippError(
                f"{self.name} still running after {limit:.1f} s; killed\n{self.describe()}"
            ) from None
        self._close_stdout()
        self._parse_result()
        return returncode

    def run(self, timeout: float | None = None) -> dict[str, Any]:
        """Start, wait, and return the result dict."""
        self.start()
        self.wait(timeout)
        return self.result

    def check(self) -> dict[str, Any]:
        """Raise SippError with a helpful message unless SIPp exited 0; return the result."""
        if not self.result:
            raise SippError(f"{self.name}: no result yet (call wait() first)")
        if self.result["returncode"] != 0:
            raise SippError(self.describe())
        return self.result

    def stop(self, grace: float = 3.0) -> int | None:
        """End SIPp if it still runs (SIGTERM, then SIGKILL after `grace` s)."""
        if self.process is None:
            return None
        returncode = _kill_process_group(self.process, grace)
        self._close_stdout()
        return returncode

    def _close_stdout(self) -> None:
        if self._stdout_file is not None:
            self._stdout_file.close()
            self._stdout_file = None

    def _parse_result(self) -> None:
        assert self.process is not None
        returncode = self.process.returncode
        counters = self.read_counters()

        def counter(name: str) -> int | None:
            value = counters.get(name)
            return int(value) if value is not None and value.isdigit() else None

        self.result = {
            "returncode": returncode,
            "meaning": SIPP_EXIT_CODES.get(returncode, "unknown exit code")
            if returncode is not None
            else "still running",
            "successful": counter("SuccessfulCall(C)"),
            "failed": counter("FailedCall(C)"),
            "outgoing": counter("OutgoingCall(C)"),
            "incoming": counter("IncomingCall(C)"),
            "retransmissions": counter("Retransmissions(C)"),
            "counters": counters,
        }

    def read_counters(self) -> dict[str, str]:
        """Cumulative counters ("...(C)" columns) of the last row of the statistics CSV."""
        if not self.stat_path.exists():
            return {}
        with self.stat_path.open(encoding="utf-8", errors="replace", newline="") as handle:
            rows = [row for row in csv.reader(handle, delimiter=";") if row]
        if len(rows) < 2:
            return {}
        header, last = rows[0], rows[-1]
        return {
            name: value for name, value in zip(header, last, strict=False) if name.endswith("(C)")
        }

    def describe(self) -> str:
        """Command, exit status, counters and log tails, for failure messages."""
        result = self.result
        summary = (
            f"exit {result.get('returncode')} ({result.get('meaning')}), "
            f"successful={result.get('successful')} failed={result.get('failed')}"
            if result
            else f"running={self.process is not None and self.process.poll() is None}"
        )
        return "\n".join(
            [
                f"{self.name}: {summary}",
                f"command: {' '.join(self.command)}",
                f"error log tail ({self.error_path}):\n{read_tail(self.error_path)}",
                f"stdout tail:\n{read_tail(self.stdout_path, 15)}",
                f"screen tail:\n{read_tail(self.screen_path, 30)}",
                f"message log tail ({self.message_path}):\n{read_tail(self.message_path, 60)}",
            ]
        )


# -- hotline node ---------------------------------------------------------------------------


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
        **overrides: Mapping[str, Any],
    ) -> None:
        self.name = name
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

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the node's SIP listen address (UDP and TCP)."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hotline.db"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "softswitch.cli", "serve",
            "--config", str(self.config_dir),
            "--sip-listen", self.address,
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
    """queues.yaml with one queue `general`: the shipped settings changed by `fields`."""
    general = {
        "name": "general",
        "strategy": "longest_idle",
        "ring_timeout": 15,
        "max_wait": 300,
        "wrap_up": 0,
        "timeout_response": 480,
    }
    general.update(fields)
    return {"queues": [general]}
