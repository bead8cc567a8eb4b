"""`Sipp`: one bounded SIPp run on loopback with its result parsed (see harness.py)."""

from __future__ import annotations

import csv
import itertools
import math
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .harness import (
    LOOPBACK,
    SIPP_BINARY,
    SIPP_SCENARIO_DIR,
    SippError,
    _kill_process_group,
    free_port,
    read_tail,
)

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
        # Scenarios that pause for `-set ring_ms N` (uas_agent.xml) get 0 when a test sets
        # none: SIPp's <todouble> of an unset variable fails and leaves the pause undefined.
        uses_ring = self.scenario_path is not None and "ring_ms" in self.scenario_path.read_text(
            encoding="utf-8"
        )
        if uses_ring and "-set ring_ms" not in " ".join(args):
            args += ["-set", "ring_ms", "0"]
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
