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
import functools
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

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


def take_event(
    condition: threading.Condition,
    events: list[dict[str, Any]],
    consumed: set[int],
    kind: Callable[[dict[str, Any]], bool],
    match: Mapping[str, Any],
    timeout: float,
    ended: Callable[[], bool],
) -> dict[str, Any] | None:
    """The first event of a phone runner's `events` (appended under `condition`, which is
    notified on each) not yet in `consumed`, of the `kind` asked and matching `match` (values
    or predicates, `_matches`); it is marked consumed and a copy returned, so two waits never
    get the same event. None after `timeout` s, or at once when `ended()` (the peer exited or
    its control connection closed) and nothing matched."""
    deadline = time.monotonic() + timeout
    with condition:
        while True:
            for index, candidate in enumerate(events):
                if index in consumed or not kind(candidate):
                    continue
                if _matches(candidate, match):
                    consumed.add(index)
                    return dict(candidate)
            remaining = deadline - time.monotonic()
            if ended() or remaining <= 0:
                return None
            condition.wait(timeout=min(remaining, 0.5))


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
        transport: Literal["udp", "tcp", "tls"] = "udp",
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

    def signal_stop(self) -> None:
        """Ask the agent to end (SIGTERM) without waiting: `stop()` then waits. Several agents
        asked first end side by side instead of one after the other."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

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
        found = take_event(
            self._condition, self._events, self._consumed, lambda e: e["event"] == event,
            match, timeout, lambda: self._eof,
        )  # fmt: skip
        if found is not None:
            return found
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


# The runners live in their own modules; tests import everything from here.
from .node_runner import (  # noqa: E402, F401
    HotlineNode,
    SipUdpClient,
    deep_merge,
    options_request,
    queue_override,
)
from .sipp_runner import SIPP_EXIT_CODES, Sipp  # noqa: E402, F401
