"""``hotline loadtest run --engine sipp``: the trace's callers are SIPp processes, the agents
the run's own UAs (`loadtest.run.Replay`, unchanged).

- The calls are split across ``--generators N`` SIPp processes (`loadtest.sipp.split_calls`),
  each with its own injection file, SIP, media and control port, all on ``--local-ip``, all
  running the scenario `loadtest.sipp_scenario` writes into a work directory beside the RFC
  4733 captures SIPp ships (/usr/share/sip-tester/dtmf_2833_*.pcap).
- Pacing: every process gets the same start time (``-set t0_ms``, wall clock, `LEAD_S`
  after the agents registered); SIPp creates calls at a rate that keeps each ahead of its
  time, and each call pauses until ``t0 + offset × time scale`` (`loadtest.sipp`).
- Which agent took which call: as in the project's engine (`loadtest.agents.Correlator` on
  the node's INVITE to the agent). When an emulated agent answers, the run sends that
  caller's SIPp process an INFO with the caller's Call-ID (SIPp names calls
  ``lt-<call number>-<pid>@<ip>``): the caller stops waiting and talks. The node sends the
  caller nothing when an agent answers a call its IVR answered, so this is how the SIPp
  caller "hears" the agent, as the project's caller does in-process.
- Results come from the scenario's log lines (``-trace_logs``, also read during the run for
  the progress display), one `CallResult` per call
  (`loadtest.sipp.call_result`); SIPp's own error log (``-trace_err``) stays in the work
  directory. The IVR response time (the IVR's 200 → its first RTP packet) is not measured:
  SIPp does not report received RTP per call.
- Bounds: each SIPp has ``-timeout`` (the run's ``--max-seconds`` plus a margin); at
  ``--max-seconds``, on SIGINT/SIGTERM, or when the run ends any other way, every SIPp still
  running is sent SIGTERM, then SIGKILL after `STOP_GRACE_S`. A SIPp that exits with a
  fatal status (or is killed) before its calls are done is reported (`SippReplay.errors`);
  the report then holds what was measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from loadtest import report as rep
from loadtest import sipp
from loadtest.progress import Progress
from loadtest.run import END_GRACE_S, AgentCall, Replay, RunError, RunOptions, report_of
from loadtest.sipp_scenario import KEY_NAMES, SILENCE_FILE, caller_scenario
from loadtest.trace import Trace, TraceCall
from softswitch.sip import message as sipmsg
from softswitch.sip.build import new_request_headers
from softswitch.sip.transaction import Target, hostport

LEAD_S = 2.0  # from launching SIPp to the trace's t0
STARTUP_S = 1.0  # of which SIPp may take this long to load its captures and start
STOP_GRACE_S = 3.0
LINGER_S = 2.0  # an ended SIPp call stays this long for retransmissions
POLL_S = 0.2
PCAP_DIR = Path("/usr/share/sip-tester")
SIPP_EXIT = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    255: "fatal error",
    254: "fatal error binding a socket",
}


def free_udp_port(ip: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


class SippParty:
    """A SIPp caller as the correlator sees it: waiting from its trace time until an
    emulated agent answered it."""

    def __init__(self, call: TraceCall, due: float, generator: int, number: int) -> None:
        self.call = call
        self.due = due  # loop time
        self.generator = generator
        self.number = number  # SIPp's call number (its line in the injection file)
        self.answer: sipp.AgentAnswer | None = None
        self.loop = asyncio.get_running_loop()

    @property
    def waiting_for_agent(self) -> bool:
        return self.answer is None and self.loop.time() >= self.due


class Generator:
    """One SIPp process and its files."""

    def __init__(self, index: int, calls: list[TraceCall], work: Path, ip: str) -> None:
        self.index = index
        self.calls = calls
        self.dir = work / f"generator-{index + 1}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.inf = self.dir / "calls.csv"
        self.log = self.dir / "calls.log"
        self.errors = self.dir / "errors.log"
        self.screen = self.dir / "screen.log"
        self.port = free_udp_port(ip)
        self.media_port = free_udp_port(ip)
        self.control_port = free_udp_port(ip)
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout: IO[bytes] | None = None
        self.stopped_by_run = False
        self.read_to = 0  # how far the progress display has read calls.log
        self.partial = ""
        self.seen: dict[str, list[sipp.Event]] = {}

    def new_lines(self) -> list[str]:
        """The whole lines SIPp appended to calls.log since the last call."""
        try:
            with self.log.open("rb") as f:
                f.seek(self.read_to)
                data = f.read()
        except OSError:
            return []
        self.read_to += len(data)
        text = self.partial + data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self.partial = lines.pop()
        return lines

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0


class SippReplay(Replay):
    """The agents of `Replay`; SIPp processes instead of its callers."""

    def __init__(self, trace: Trace, options: RunOptions, progress: Progress) -> None:
        super().__init__(Trace((), trace.metadata), options, progress)
        self.trace = trace
        self.binary = shutil.which(options.sipp_binary) or ""
        self.work = Path(options.sipp_dir or tempfile.mkdtemp(prefix="hotline-sipp-"))
        self.generators: list[Generator] = []
        self.generators_by_index: dict[int, Generator] = {}
        self.parties: dict[str, SippParty] = {}
        self.errors: list[str] = []
        self.cut = False
        self.t0_epoch = 0.0

    # --- set-up ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check SIPp and the captures, write the scenario and the injection files."""
        o = self.options
        if not self.binary:
            raise RunError(
                f"{o.sipp_binary} not found: install SIPp (Debian/Ubuntu: apt-get install "
                "sip-tester) or give --sipp-binary"
            )
        missing = [
            n for n in KEY_NAMES.values() if not (PCAP_DIR / f"dtmf_2833_{n}.pcap").is_file()
        ]
        if missing:
            raise RunError(f"{PCAP_DIR}: no RFC 4733 capture for {', '.join(missing)}")
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            scenario = caller_scenario(linger_ms=int(LINGER_S * 1000), rtp=o.sipp_rtp)
            (self.work / "caller.xml").write_text(scenario, encoding="utf-8")
            (self.work / SILENCE_FILE).write_bytes(b"\xff" * 8000)  # 1 s, looped
            for name in KEY_NAMES.values():
                link = self.work / f"dtmf_2833_{name}.pcap"
                if not link.exists():
                    link.symlink_to(PCAP_DIR / link.name)
            forever = int((o.max_seconds + 60) * 1000)
            parts = sipp.split_calls(self.trace.calls, o.generators)
            for index, calls in enumerate(parts):
                if not calls:
                    continue
                g = Generator(index, calls, self.work, o.local_ip)
                g.inf.write_text(
                    sipp.injection_file(calls, o.time_scale, forever), encoding="utf-8"
                )
                self.generators.append(g)
                self.generators_by_index[index] = g
        except OSError as exc:
            raise RunError(f"SIPp work directory {self.work}: {exc}") from None
        except ValueError as exc:  # a trace field SIPp's injection file cannot hold
            raise RunError(str(exc)) from None

    def _command(self, g: Generator, t0_ms: float) -> list[str]:
        o = self.options
        due = [c.offset_s * o.time_scale for c in g.calls]
        rate = sipp.creation_rate(due, LEAD_S - STARTUP_S)
        timeout = int(o.max_seconds + LEAD_S + 40)
        return [
            self.binary, "-sf", str(self.work / "caller.xml"),
            "-inf", str(g.inf), "-set", "t0_ms", f"{t0_ms:.3f}",
            "-m", str(len(g.calls)), "-r", f"{rate:g}", "-rp", "1000",
            "-l", str(len(g.calls) + 1),
            "-i", o.local_ip, "-mi", o.local_ip, "-p", str(g.port),
            "-mp", str(g.media_port), "-cp", str(g.control_port),
            "-cid_str", sipp.CID_FORMAT, "-timer_resol", "1", "-nostdin",
            "-timeout", f"{timeout}s", "-max_recv_loops", "10000",
            "-max_sched_loops", "10000",
            "-trace_logs", "-log_file", str(g.log),
            "-trace_err", "-error_file", str(g.errors),
            "-trace_screen", "-screen_file", str(g.screen),
            hostport(*o.target),
        ]  # fmt: skip

    def _launch(self) -> None:
        self.t0_epoch = time.time() + LEAD_S
        offset = time.time() - self.loop.time()
        self.started_at = self.t0_epoch - offset
        for g in self.generators:
            for number, call in enumerate(g.calls, start=1):
                party = SippParty(
                    call, self.started_at + call.offset_s * self.options.time_scale,
                    g.index, number,
                )  # fmt: skip
                self.parties[call.call_id] = party
        for call in self.trace.calls:
            party = self.parties[call.call_id]
            self.correlator.add(call.caller, call.called, party)
        for g in self.generators:
            g.stdout = (g.dir / "stdout.log").open("wb")
            try:
                g.process = subprocess.Popen(
                    self._command(g, self.t0_epoch * 1000.0),
                    cwd=str(self.work), stdin=subprocess.DEVNULL, stdout=g.stdout,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                self.errors.append(f"SIPp generator {g.index + 1}: cannot start: {exc}")

    # --- the agents tell the callers ---------------------------------------------------
    def _agent_answered(self, call: AgentCall) -> None:
        party = call.party
        if not isinstance(party, SippParty) or not party.waiting_for_agent:
            return
        party.answer = sipp.AgentAnswer(call.agent_id, self.loop.time() - self.started_at)
        self._tell(party, "agent-answered", call.agent_id)

    def _tell(self, party: SippParty, what: str, sender: str = "loadtest") -> None:
        """An INFO with ``X-Loadtest: what`` to the SIPp call of `party` (by its Call-ID)."""
        g = self.generators_by_index[party.generator]
        assert self.phones is not None and self.phones.txn is not None
        o = self.options
        host = self.phones.address
        sipp_at = hostport(o.local_ip, g.port)
        caller = party.call.caller
        headers = new_request_headers(
            "INFO", f"<sip:{sender}@{host}>", f"<sip:{caller}@{sipp_at}>", host
        )
        headers.set("call-id", sipp.call_id_of(party.number, g.pid, o.local_ip))
        headers.add("x-loadtest", what)
        request = sipmsg.Request("INFO", f"sip:{caller}@{sipp_at}", headers)
        self.phones.txn.send_request(request, Target("UDP", o.local_ip, g.port), self.loop.time())

    # --- the run -----------------------------------------------------------------------
    async def run(self) -> float:
        """Start the SIPp processes and wait for them (bounded); the run's seconds."""
        self._launch()
        start = self.started_at
        deadline = start + self.options.max_seconds
        refresh = self.loop.create_task(self._refresh_registrations(deadline))
        sampling = self.loop.create_task(self._sample_node(deadline + END_GRACE_S))
        if self.sampler is not None:
            self.sampler.mark_drops()
        signals = self._catch_signals()
        try:
            while any(g.process is not None and g.process.poll() is None for g in self.generators):
                if self.interrupted or self.loop.time() >= deadline:
                    self.cut = True
                    await self._hang_up()
                    break
                await asyncio.sleep(POLL_S)
                self._progress()
        finally:
            await self._stop_all()
            await self._wind_down(signals, (refresh, sampling))
        self._check_exits()
        return self.loop.time() - start

    def _progress(self) -> None:
        """Count the calls SIPp has finished (its log), for the progress display."""
        if not self.progress.enabled:
            return
        for g in self.generators:
            try:
                fresh = sipp.parse_log(g.new_lines())
            except sipp.SippLogError:
                continue
            for call_id, events in fresh.items():
                seen = g.seen.setdefault(call_id, [])
                seen += events
                if any(e.name == "end" for e in events):
                    call = self.parties[call_id].call
                    result = sipp.call_result(call, seen, self.t0_epoch)
                    if result.invite_at is not None:
                        self.progress.call_ended(result.outcome)

    async def _hang_up(self) -> None:
        """The run is cut: no more new calls (SIGUSR1, SIPp's soft exit), every call SIPp
        may hold is told to end (CANCEL, BYE, or not start), then up to END_GRACE_S and the
        scenario's linger for the processes to finish."""
        running = [g for g in self.generators if g.process is not None and g.process.poll() is None]
        for g in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(g.pid, signal.SIGUSR1)
        now = self.loop.time()
        for g in running:
            try:
                with g.log.open(encoding="utf-8", errors="replace") as lines:
                    seen = sipp.parse_log(lines)
            except (OSError, sipp.SippLogError):
                seen = {}
            for call in g.calls:
                events = {e.name for e in seen.get(call.call_id, ())}
                party = self.parties[call.call_id]
                if "end" not in events and ("created" in events or party.due <= now):
                    self._tell(party, "hangup")
        if self.phones is not None:
            self.phones.flush()
        until = now + END_GRACE_S + LINGER_S
        while self.loop.time() < until and any(g.process.poll() is None for g in running):  # type: ignore[union-attr]
            await asyncio.sleep(0.05)

    async def _stop_all(self) -> None:
        """SIGTERM every SIPp still running, SIGKILL after STOP_GRACE_S."""
        running = [g for g in self.generators if g.process is not None and g.process.poll() is None]
        for g in running:
            g.stopped_by_run = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(g.pid, signal.SIGTERM)
        until = self.loop.time() + STOP_GRACE_S
        while self.loop.time() < until and any(g.process.poll() is None for g in running):  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        for g in running:
            assert g.process is not None
            if g.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(g.pid, signal.SIGKILL)
                g.process.wait(timeout=5)
        for g in self.generators:
            if g.stdout is not None:
                g.stdout.close()
                g.stdout = None

    def _check_exits(self) -> None:
        for g in self.generators:
            if g.process is None or g.stopped_by_run:
                continue
            code = g.process.returncode
            if code in (0, 1):
                continue
            why = SIPP_EXIT.get(code % 256, f"killed by signal {-code}" if code < 0 else "")
            last = _last_error(g)
            self.errors.append(
                f"SIPp generator {g.index + 1} (pid {g.pid}) exited with status {code}"
                + (f" ({why})" if why else "")
                + (f": {last}" if last else "")
                + f"; its files are in {g.dir}"
            )

    # --- results -----------------------------------------------------------------------
    def results(self) -> list[rep.CallResult]:
        """Every trace call's result, in trace order."""
        out: dict[str, rep.CallResult] = {}
        for g in self.generators:
            try:
                with g.log.open(encoding="utf-8", errors="replace") as lines:
                    events = sipp.parse_log(lines)
            except FileNotFoundError:
                events = {}
            except sipp.SippLogError as exc:
                self.errors.append(f"generator {g.index + 1}: {exc}")
                events = {}
            cut = self.cut or self.interrupted or g.stopped_by_run
            died = g.process is not None and g.process.returncode not in (0, 1, None)
            for number, call in enumerate(g.calls, start=1):
                party = self.parties.get(call.call_id)
                result = sipp.call_result(
                    call, events.get(call.call_id, []), self.t0_epoch,
                    agent=party.answer if party is not None else None,
                    cut=cut and not died,
                    sip_call_id=sipp.call_id_of(number, g.pid, self.options.local_ip),
                )  # fmt: skip
                ended = any(e.name == "end" for e in events.get(call.call_id, ()))
                if died and result.outcome is rep.Outcome.FAILED and not ended:
                    result.reason = f"SIPp generator {g.index + 1} exited during the call"
                out[call.call_id] = result
        return [out[c.call_id] for c in self.trace.calls if c.call_id in out]


def _last_error(g: Generator) -> str:
    """The last complaint in SIPp's error log (``date time epoch: message`` lines)."""
    with contextlib.suppress(OSError):
        text = g.errors.read_text(encoding="utf-8", errors="replace")
        found = re.findall(r"^\S+\t\S+\t[0-9.]+: (.+)$", text, flags=re.MULTILINE)
        if found:
            return found[-1].strip()[:200]
    return ""


async def replay_sipp(
    trace: Trace, options: RunOptions
) -> tuple[list[rep.CallResult], SippReplay, float]:
    run = SippReplay(trace, options, Progress(len(trace.calls), options.progress))
    run.prepare()
    seconds = await run.drive()
    return run.results(), run, seconds


def run_sipp_trace(
    trace: Trace, trace_name: str, options: RunOptions
) -> tuple[rep.Report, list[rep.CallResult], list[str]]:
    """Replay `trace` with SIPp callers: the report, every call's result, and the problems
    of SIPp processes that ended badly (each one line); `RunError` if it cannot be done."""
    results, run, seconds = asyncio.run(replay_sipp(trace, options))
    if run.interrupted:
        print("hotline: interrupted: SIPp stopped, agents unregistered", file=sys.stderr)
    lateness = sipp.start_lateness_ms(results, options.time_scale)
    report = report_of(
        run, results, seconds, trace, trace_name,
        engine="sipp", generators=len(run.generators), not_measured=("ivr_response_ms",),
        start_lateness_ms=rep.percentiles(lateness),
    )  # fmt: skip
    return report, results, run.errors
