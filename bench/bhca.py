"""Busy-hour call attempts (BHCA): hotline against the sippy B2BUA, same seeded calls.

For each system under test (SUT) the program starts, on 127.0.0.1 high ports:

- one SIPp agent UAS (tests/sipp/uas_agent.xml) that answers every INVITE it gets;
- the SUT: `hotline serve` on a temporary copy of config/ with N bench agents (ids 2000…),
  all registered by SIPp (tests/sipp/register_agents.xml) with their contact on the agent
  UAS; or `b2bua_simple` from the PyPI `sippy` package, which forwards every call to the
  agent UAS (its `-n` next hop);
- per profile step, one SIPp trunk caller (tests/sipp/uac_bench.xml) at the step's calls per
  second, replaying the step's seeded calls (caller number, hold time) from an injection file.

Per step it reports attempted/completed/failed calls, the achieved rate and BHCA, p50/p95
call setup time (INVITE sent → 200 received, SIPp's per-call response times), the SUT's
CPU time per call (utime + stime of its process from /proc, all threads) and the load
generator's (both SIPps), the datagrams the kernel dropped on the SUT's full UDP receive
buffers, and its RSS. `--rounds N` runs the
steps N times with `--idle` seconds after each round and prints the RSS after every pause
(memory that a round leaves behind shows as growth against the first). The rated rate of
a system is its highest step with failure rate ≤ 1e-5 and p95 setup ≤ 500 ms: a zero failure
count alone hides overload, since a B2BUA can complete every call with seconds of delay.

    python bench/bhca.py                       # bench/profiles/default.yaml, both systems
    python bench/bhca.py --profile quick --systems sippy --json out.json

With two or more CPUs the SUT is pinned to CPU 0 and every SIPp to CPU 1 (`taskset`).
Every process is started in its own session and ended at the end, on error and on Ctrl-C;
every wait is bounded. See bench/README.md and docs/loadtest.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Annotated, Literal

import msgspec
import msgspec.yaml
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from loadtest.sample import SampleError, parse_rss, parse_stat, udp_drops  # noqa: E402

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
SCENARIO_DIR = REPO_ROOT / "tests" / "sipp"
LOOPBACK = "127.0.0.1"
CALLED_NUMBER = "9000"
FIRST_AGENT_ID = 2000
SIPP = os.environ.get("HOTLINE_SIPP", "sipp")
# Rated rate criteria (issue 3, SPEC §10: failure rate ≤ 1e-5).
MAX_FAILURE_RATE = 1e-5
MAX_P95_SETUP_MS = 500.0
# A call that waits longer than this for any response fails (SIPp -recv_timeout).
RECV_TIMEOUT_MS = 16_000
# SIPp's limit of open calls; above it SIPp would slow the offered rate and hide overload.
SIPP_CALL_LIMIT = 15_000
# SIPp exit statuses that mean it did not run the scenario (a bench error, not failed calls).
SIPP_FATAL = {255: "fatal error", 254: "fatal error binding a socket"}


class BenchError(Exception):
    """The bench could not run a system or a step (a process did not start, exited, …)."""


# --- profile -------------------------------------------------------------------------------


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Offer `cps` new calls per second for `duration_s` seconds."""

    cps: Annotated[float, msgspec.Meta(gt=0, le=5000)]
    duration_s: Annotated[float, msgspec.Meta(gt=0, le=3600)]


class Hold(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Holding time of the calls (answer → caller's BYE), seconds."""

    distribution: Literal["constant", "exponential"] = "exponential"
    mean_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    min_s: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    max_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 8.0


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A busy-hour profile: steps of offered load, hold times, a seed (bench/profiles/)."""

    name: str
    steps: Annotated[tuple[Step, ...], msgspec.Meta(min_length=1)]
    seed: int = 1
    hold: Hold = Hold()
    agent_ring_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0
    settle_s: Annotated[float, msgspec.Meta(ge=0, le=120)] = 3.0


def load_profile(name_or_path: str) -> Profile:
    """Read a profile from a YAML/JSON file, or by name from bench/profiles/."""
    path = Path(name_or_path)
    if not path.exists():
        for suffix in (".yaml", ".yml", ".json"):
            candidate = PROFILE_DIR / f"{name_or_path}{suffix}"
            if candidate.exists():
                path = candidate
                break
        else:
            raise BenchError(f"profile not found: {name_or_path} (nor in {PROFILE_DIR})")
    data = path.read_bytes()
    try:
        if path.suffix == ".json":
            return msgspec.json.decode(data, type=Profile)
        return msgspec.yaml.decode(data, type=Profile)
    except msgspec.ValidationError as error:
        raise BenchError(f"{path}: {error}") from error


def parse_steps(text: str) -> tuple[Step, ...]:
    """`"50:20,100:20"` → steps of 50 cps for 20 s, then 100 cps for 20 s."""
    steps = []
    for item in text.split(","):
        cps, _, duration = item.strip().partition(":")
        try:
            steps.append({"cps": float(cps), "duration_s": float(duration or 20)})
        except ValueError as error:
            raise BenchError(f"--steps: cannot read {item!r} as CPS:SECONDS") from error
    try:
        return msgspec.convert(steps, tuple[Step, ...])
    except msgspec.ValidationError as error:
        raise BenchError(f"--steps: {error}") from error


class Call(msgspec.Struct, frozen=True):
    """One offered call: the calling number and how long the caller holds after the answer."""

    caller: str
    hold_ms: int


def step_calls(profile: Profile, index: int) -> list[Call]:
    """The seeded calls of step `index`: the same for every system and every run."""
    step = profile.steps[index]
    rng = random.Random(f"{profile.seed}/{index}")
    count = max(1, round(step.cps * step.duration_s))
    hold = profile.hold
    calls = []
    for _ in range(count):
        if hold.distribution == "constant":
            seconds = hold.mean_s
        else:
            seconds = min(hold.max_s, max(hold.min_s, rng.expovariate(1.0 / hold.mean_s)))
        calls.append(Call(caller=f"13{rng.randrange(10**9):09d}", hold_ms=round(seconds * 1000)))
    return calls


def agents_needed(profile: Profile) -> int:
    """Agents so that the queue never waits: 1.5 × the peak concurrent calls, plus slack."""
    peak = 0.0
    for index, step in enumerate(profile.steps):
        calls = step_calls(profile, index)
        mean_hold_s = sum(call.hold_ms for call in calls) / len(calls) / 1000
        peak = max(peak, step.cps * (mean_hold_s + 1.0))
    return math.ceil(peak * 1.5) + 10


# --- results -------------------------------------------------------------------------------


class StepResult(msgspec.Struct, frozen=True):
    """What one step measured on one system."""

    system: str
    step: int
    target_cps: float
    duration_s: float
    round: int
    attempted: int
    completed: int
    failed: int
    failure_rate: float
    achieved_cps: float
    bhca: int
    setup_p50_ms: float | None
    setup_p95_ms: float | None
    setup_max_ms: float | None
    cpu_s: float
    cpu_ms_per_call: float
    # CPU of the load generator (SIPp trunk caller + agent UAS) per call: what a machine
    # running both sides must also find room for.
    sipp_cpu_ms_per_call: float | None
    rss_mb: float | None
    # Datagrams dropped on the SUT's full UDP receive buffers during the step (None: unknown).
    udp_drops: int | None
    retransmissions: int
    sipp_failures: dict[str, int]

    @property
    def rated_ok(self) -> bool:
        """Meets the rated-rate criteria (failure rate and p95 setup)."""
        return (
            self.failure_rate <= MAX_FAILURE_RATE
            and self.setup_p95_ms is not None
            and self.setup_p95_ms <= MAX_P95_SETUP_MS
        )


class SystemResult(msgspec.Struct, frozen=True):
    """All steps of one system, its rated step, or the error that stopped it."""

    system: str
    steps: tuple[StepResult, ...]
    rated_cps: float | None
    rated_bhca: int | None
    agents: int | None
    error: str | None
    uas_failed_calls: int | None
    # RSS of the SUT after each round's idle pause (--rounds), MiB.
    idle_rss_mb: tuple[float, ...] = ()


def rated_step(steps: Sequence[StepResult]) -> StepResult | None:
    """The highest-rate step meeting failure rate ≤ 1e-5 and p95 setup ≤ 500 ms."""
    passing = [step for step in steps if step.rated_ok]
    return max(passing, key=lambda step: step.target_cps, default=None)


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[rank - 1])


# --- processes, ports, /proc ---------------------------------------------------------------


class Processes:
    """Children started in their own sessions; `close()` ends every one of them."""

    def __init__(self) -> None:
        self._children: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = log_path.open("ab")
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(cwd),
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            log.close()
            raise BenchError(f"cannot start {name}: {command[0]}: {error}") from error
        self._children.append((name, process, log))
        return process

    def stop(self, process: subprocess.Popen[bytes], grace: float = 5.0, first: int = 0) -> None:
        """End one child: `first` signal (SIGTERM by default), SIGKILL after `grace` s."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, first or signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5.0)
        for entry in list(self._children):
            if entry[1] is process:
                entry[2].close()
                self._children.remove(entry)

    def close(self) -> None:
        for _name, process, _log in reversed(list(self._children)):
            self.stop(process, grace=3.0)


def free_udp_port(span: int = 1) -> int:
    """A UDP port on 127.0.0.1 such that port … port+span-1 are all free now."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        if port + span > 65535:
            continue
        held = []
        try:
            for offset in range(span):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((LOOPBACK, port + offset))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((LOOPBACK, port))
            return port
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise BenchError("no free UDP port range found on 127.0.0.1")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds, from /proc/PID/stat."""
    return parse_stat(Path(f"/proc/{pid}/stat").read_text())


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process, MiB, or None when /proc does not say."""
    with contextlib.suppress(OSError):
        return parse_rss(Path(f"/proc/{pid}/status").read_text()) or None
    return None


def receive_drops(pid: int) -> int | None:
    """Datagrams the kernel dropped so far on the process's full UDP receive buffers."""
    with contextlib.suppress(SampleError):
        return udp_drops(pid)
    return None


def sip_ping(address: tuple[str, int], timeout: float) -> bool:
    """Send OPTIONS over UDP until any SIP response arrives or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    call_id = f"bhca-ready-{secrets.token_hex(6)}@{LOOPBACK}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
        cseq = 0
        while time.monotonic() < deadline:
            cseq += 1
            request = (
                f"OPTIONS sip:{address[0]}:{address[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
                f"From: <sip:bhca@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
                f"To: <sip:{address[0]}:{address[1]}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {cseq} OPTIONS\r\nMax-Forwards: 70\r\n"
                f"Content-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), address)
            sock.settimeout(max(0.01, min(0.25, deadline - time.monotonic())))
            with contextlib.suppress(TimeoutError):
                data = sock.recv(65535)
                if data.startswith(b"SIP/2.0 "):
                    return True
    return False


# --- SIPp ----------------------------------------------------------------------------------


def read_last_stat(path: Path) -> dict[str, str]:
    """The last row of a SIPp -trace_stat CSV (cumulative counters) as a dict."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    # The last complete row: a SIPp that was killed may have left a partial one.
    complete = [row for row in rows[1:] if rows and len(row) == len(rows[0])]
    if not complete:
        return {}
    return dict(zip(rows[0], complete[-1], strict=True))


def stat_int(stats: dict[str, str], name: str) -> int:
    value = stats.get(name, "").strip()
    return int(value) if value.isdigit() else 0


def read_rtt(directory: Path) -> tuple[list[float], list[float]]:
    """SIPp -trace_rtt files in `directory`: (setup times ms, their timestamps ms)."""
    times, stamps = [], []
    for path in directory.glob("*_rtt.csv"):
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for row in csv.reader(handle, delimiter=";"):
                if len(row) >= 3 and row[2] == "setup":
                    with contextlib.suppress(ValueError):
                        stamps.append(float(row[0]))
                        times.append(float(row[1]))
    return times, stamps


class Bench:
    """Runs the profile against each system; owns the work directory and all children."""

    def __init__(self, args: argparse.Namespace, profile: Profile) -> None:
        self.uas_pid = 0  # the agent UAS of the system being run
        self.args = args
        self.profile = profile
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="bhca-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.processes = Processes()
        self._worktrees: list[Path] = []
        cpus = os.cpu_count() or 1
        pin = args.pin == "yes" or (args.pin == "auto" and cpus >= 2 and shutil.which("taskset"))
        self.sut_prefix = ["taskset", "-c", str(args.sut_cpu)] if pin else []
        self.sipp_prefix = ["taskset", "-c", str(args.sipp_cpu)] if pin else []
        self.deadline = time.monotonic() + args.max_seconds

    def log(self, text: str) -> None:
        if not self.args.quiet:
            print(text, file=sys.stderr, flush=True)

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise BenchError(f"--max-seconds {self.args.max_seconds} exceeded")

    def sipp_command(self, scenario: str, port: int, extra: Sequence[str]) -> list[str]:
        return [
            *self.sipp_prefix, SIPP, "-sf", str(SCENARIO_DIR / scenario),
            "-i", LOOPBACK, "-mi", LOOPBACK, "-p", str(port),
            "-mp", str(free_udp_port(span=4)), "-cp", str(free_udp_port()),
            "-nostdin", "-trace_err", "-error_file", "errors.log",
            "-trace_stat", "-stf", "stat.csv", "-fd", "1",
            *extra,
        ]  # fmt: skip

    # -- one system --

    def run_system(self, system: str) -> SystemResult:
        directory = self.work / system
        directory.mkdir(parents=True, exist_ok=True)
        steps: list[StepResult] = []
        agents: int | None = None
        error: str | None = None
        uas_failed: int | None = None
        idle_rss: list[float] = []
        uas_dir = directory / "uas"
        uas_dir.mkdir(exist_ok=True)
        uas = None
        try:
            uas, uas_port = self.start_uas(uas_dir)
            self.uas_pid = uas.pid
            sut, sut_address, agents = self.start_sut(system, directory, uas_port)
            for round_ in range(1, self.args.rounds + 1):
                for index in range(len(self.profile.steps)):
                    self.check_deadline()
                    if sut.poll() is not None:
                        raise BenchError(f"{system} exited with {sut.returncode}, see {directory}")
                    result = self.run_step(system, index, round_, sut.pid, sut_address, directory)
                    steps.append(result)
                    self.log(
                        f"  {system} round {round_} step {index + 1}: {result.target_cps:g} cps, "
                        f"{result.completed}/{result.attempted} completed, "
                        f"p95 {fmt_ms(result.setup_p95_ms)} ms, "
                        f"{result.cpu_ms_per_call:.2f} CPU ms/call, "
                        f"{result.udp_drops if result.udp_drops is not None else '?'} UDP drops"
                    )
                    time.sleep(self.profile.settle_s)
                if self.args.rounds > 1:
                    # Idle: every call and transaction of the round ends (Timer K/J at most
                    # 32 s), then the memory that stays is what the next round starts from.
                    time.sleep(self.args.idle)
                    rss = rss_mb(sut.pid)
                    if rss is not None:
                        idle_rss.append(round(rss, 1))
                        self.log(
                            f"  {system} after round {round_} and {self.args.idle:g} s idle: RSS {rss:.1f} MiB"
                        )
        except BenchError as failure:
            error = str(failure)
            self.log(f"  {system}: {error}")
        finally:
            if uas is not None:
                # SIGUSR1: SIPp's graceful quit, which writes the final statistics row.
                self.processes.stop(uas, grace=3.0, first=signal.SIGUSR1)
                uas_failed = stat_int(read_last_stat(uas_dir / "stat.csv"), "FailedCall(C)")
            self.processes.close()
        rated = rated_step(steps)
        return SystemResult(
            system=system,
            steps=tuple(steps),
            rated_cps=rated.target_cps if rated else None,
            rated_bhca=round(rated.target_cps * 3600) if rated else None,
            agents=agents,
            error=error,
            uas_failed_calls=uas_failed,
            idle_rss_mb=tuple(idle_rss),
        )

    def generator_cpu(self) -> float:
        """CPU seconds used so far by the agent UAS and by every SIPp already waited for."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        uas = 0.0
        with contextlib.suppress(OSError, AttributeError):
            uas = cpu_seconds(self.uas_pid)
        return children.ru_utime + children.ru_stime + uas

    def start_uas(self, uas_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
        """The SIPp agent UAS that answers every call, and its port."""
        uas_port = free_udp_port()
        uas_options = [
            "-set", "ring_ms", str(self.profile.agent_ring_ms),
            "-timeout", f"{math.ceil(self.args.max_seconds)}s",
        ]  # fmt: skip
        uas = self.processes.start(
            "agent UAS",
            self.sipp_command("uas_agent.xml", uas_port, uas_options),
            log_path=uas_dir / "stdout.log",
            cwd=uas_dir,
        )
        time.sleep(0.3)
        if uas.poll() is not None:
            raise BenchError(f"SIPp agent UAS exited at once, see {uas_dir}")
        return uas, uas_port

    def start_sut(
        self, system: str, directory: Path, uas_port: int
    ) -> tuple[subprocess.Popen[bytes], tuple[str, int], int | None]:
        """Start `system` (hotline, baseline or sippy): its process, address, bench agents."""
        if system == "hotline":
            return self.start_hotline(directory, uas_port, REPO_ROOT)
        if system == "baseline":
            return self.start_hotline(directory, uas_port, self.baseline_tree())
        sut, address = self.start_sippy(directory, uas_port)
        return sut, address, None

    def write_config(self, source: Path, target: Path, agents: int) -> None:
        """The hotline configuration of a run (bench/flood.py changes it)."""
        write_hotline_config(source, target, agents, recording=self.args.record)

    def baseline_tree(self) -> Path:
        """A checkout of `--baseline REV` with its media extension built (the same
        workload on the code before a change, in the same run: the before/after figures of
        a change that touches the call path)."""
        tree = self.work / "baseline-tree"
        if not tree.exists():
            rev = self.args.baseline
            self.log(f"baseline: checking out {rev} into {tree}")
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), rev],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            self._worktrees.append(tree)
            subprocess.run(
                [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                cwd=tree, check=True, capture_output=True, timeout=600,
            )  # fmt: skip
        return tree

    def remove_worktrees(self) -> None:
        for tree in self._worktrees:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        self._worktrees.clear()

    def start_hotline(
        self, directory: Path, uas_port: int, root: Path
    ) -> tuple[subprocess.Popen[bytes], tuple[str, int], int]:
        agents = self.args.agents or agents_needed(self.profile)
        config = directory / "config"
        source = Path(self.args.config) if root == REPO_ROOT else root / "config"
        self.write_config(source, config, agents)
        port = free_udp_port()
        data = directory / "data"
        data.mkdir(exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
        command = [
            *self.sut_prefix, *self.args.hotline_command.split(), "serve",
            "--config", str(config), "--sip-listen", f"{LOOPBACK}:{port}",
            "--data", str(data), "--log-level", self.args.hotline_log_level,
        ]  # fmt: skip
        self.log(f"hotline: {' '.join(command)}")
        process = self.processes.start(
            "hotline", command, log_path=directory / "node.log", cwd=root, env=env
        )
        if not sip_ping((LOOPBACK, port), timeout=15.0):
            raise BenchError(f"hotline did not answer OPTIONS within 15 s, see {directory}")
        self.register_agents(directory, port, uas_port, config)
        return process, (LOOPBACK, port), agents

    def register_agents(self, directory: Path, port: int, uas_port: int, config: Path) -> None:
        """Register every bench agent with contact sip:ID@127.0.0.1:UAS_PORT, via SIPp."""
        agents = yaml.safe_load((config / "agents.yaml").read_text(encoding="utf-8"))["agents"]
        reg_dir = directory / "register"
        reg_dir.mkdir(exist_ok=True)
        csv_path = reg_dir / "agents.csv"
        with csv_path.open("w", encoding="utf-8") as handle:
            handle.write("SEQUENTIAL\n")
            for agent in agents:
                handle.write(
                    f"{agent['id']};[authentication username={agent['id']} "
                    f"password={agent['password']}];{LOOPBACK}:{uas_port}\n"
                )
        count = len(agents)
        limit = math.ceil(count / self.args.register_rate) + 30
        self.log(f"hotline: registering {count} agents at {self.args.register_rate:g}/s")
        options = [
            "-inf", str(csv_path), "-r", f"{self.args.register_rate:g}", "-m", str(count),
            "-timeout", f"{limit}s", "-timeout_error", f"{LOOPBACK}:{port}",
        ]  # fmt: skip
        command = self.sipp_command("register_agents.xml", free_udp_port(), options)
        process = self.processes.start(
            "register", command, log_path=reg_dir / "stdout.log", cwd=reg_dir
        )
        try:
            process.wait(timeout=limit + 10)
        except subprocess.TimeoutExpired:
            pass
        self.processes.stop(process)
        stats = read_last_stat(reg_dir / "stat.csv")
        registered = stat_int(stats, "SuccessfulCall(C)")
        if registered != count:
            raise BenchError(f"only {registered} of {count} agents registered, see {reg_dir}")

    def start_sippy(
        self, directory: Path, uas_port: int
    ) -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
        port = free_udp_port()
        env = dict(os.environ)
        # SipLogger: "none" measures sippy without its per-message log (its strongest case).
        env["SIPLOG_BEND"] = self.args.sippy_log
        if self.args.sippy_log != "none":
            env["SIPLOG_LOGFILE_FILE"] = str(directory / "sippy-sip.log")
        # b2bua_simple has no control socket (the full `b2bua` needs -c for one); -f keeps
        # it in the foreground so that this program owns and ends it.
        command = [
            *self.sut_prefix, sys.executable, "-m", "sippy.b2bua_simple", "-f",
            "-l", LOOPBACK, "-p", str(port), "-n", f"{LOOPBACK}:{uas_port}",
        ]  # fmt: skip
        self.log(f"sippy: {' '.join(command)}")
        process = self.processes.start(
            "sippy", command, log_path=directory / "sippy.log", cwd=directory, env=env
        )
        if not sip_ping((LOOPBACK, port), timeout=15.0):
            raise BenchError(f"sippy did not answer OPTIONS within 15 s, see {directory}")
        return process, (LOOPBACK, port)

    # -- one step --

    def run_step(
        self, system: str, index: int, round_: int, pid: int, address: tuple[str, int],
        directory: Path,
    ) -> StepResult:  # fmt: skip
        step = self.profile.steps[index]
        calls = step_calls(self.profile, index)
        step_dir = directory / (f"step{index + 1}" if round_ == 1 else f"r{round_}step{index + 1}")
        step_dir.mkdir(exist_ok=True)
        csv_path = step_dir / "calls.csv"
        with csv_path.open("w", encoding="utf-8") as handle:
            handle.write("SEQUENTIAL\n")
            handle.writelines(f"{call.caller};{call.hold_ms}\n" for call in calls)
        longest_hold_s = max(call.hold_ms for call in calls) / 1000
        limit = math.ceil(step.duration_s + longest_hold_s + RECV_TIMEOUT_MS / 1000 + 40)
        options = [
            "-inf", str(csv_path), "-s", CALLED_NUMBER,
            "-r", f"{step.cps:g}", "-rp", "1000", "-m", str(len(calls)),
            "-l", str(SIPP_CALL_LIMIT), "-recv_timeout", str(RECV_TIMEOUT_MS),
            "-trace_rtt", "-rtt_freq", "1", "-timeout", f"{limit}s",
            f"{address[0]}:{address[1]}",
        ]  # fmt: skip
        command = self.sipp_command("uac_bench.xml", free_udp_port(), options)
        cpu_before = cpu_seconds(pid)
        generator_before = self.generator_cpu()
        drops_before = receive_drops(pid)
        process = self.processes.start(
            "trunk UAC", command, log_path=step_dir / "stdout.log", cwd=step_dir
        )
        try:
            process.wait(timeout=limit + 10)
        except subprocess.TimeoutExpired:
            self.log(f"  {system} step {index + 1}: SIPp still running after {limit + 10} s")
        self.processes.stop(process)
        if process.returncode in SIPP_FATAL:
            raise BenchError(
                f"step {index + 1}: SIPp trunk caller ended with {process.returncode} "
                f"({SIPP_FATAL[process.returncode]}), see {step_dir / 'stdout.log'}"
            )
        drops_after = receive_drops(pid)
        generator_used = self.generator_cpu() - generator_before
        try:
            cpu_used = cpu_seconds(pid) - cpu_before
        except OSError as error:
            raise BenchError(f"{system} is gone after step {index + 1}: {error}") from error
        stats = read_last_stat(step_dir / "stat.csv")
        setup, stamps = read_rtt(step_dir)
        setup.sort()
        attempted = len(calls)
        completed = min(stat_int(stats, "SuccessfulCall(C)"), attempted)
        failed = attempted - completed
        # Calls answered per second over the span in which their 200s arrived (at least the
        # step's duration): an overloaded switch answers the same calls over a longer time.
        span = step.duration_s
        if len(stamps) >= 2:
            span = max(span, (max(stamps) - min(stamps)) / 1000 + 1 / step.cps)
        achieved = completed / span
        failures = {
            name.removeprefix("Failed").removesuffix("(C)"): stat_int(stats, name)
            for name in stats
            if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
        }
        return StepResult(
            system=system,
            step=index + 1,
            target_cps=step.cps,
            duration_s=step.duration_s,
            round=round_,
            attempted=attempted,
            completed=completed,
            failed=failed,
            failure_rate=failed / attempted,
            achieved_cps=round(achieved, 2),
            bhca=round(achieved * 3600),
            setup_p50_ms=percentile(setup, 0.50),
            setup_p95_ms=percentile(setup, 0.95),
            setup_max_ms=setup[-1] if setup else None,
            cpu_s=round(cpu_used, 3),
            cpu_ms_per_call=round(cpu_used * 1000 / attempted, 3),
            sipp_cpu_ms_per_call=round(generator_used * 1000 / attempted, 3),
            rss_mb=rss_mb(pid),
            udp_drops=(
                drops_after - drops_before
                if drops_before is not None and drops_after is not None
                else None
            ),
            retransmissions=stat_int(stats, "Retransmissions(C)"),
            sipp_failures={name: count for name, count in failures.items() if count},
        )


def write_hotline_config(
    source: Path, target: Path, agents: int, *, recording: bool | None = False
) -> None:
    """Copy config/ and replace its agents by `agents` bench agents in queue `general`.

    `recording`: False (the default) turns call recording off, as sippy records nothing and
    this bench compares signalling; True on; None leaves the configuration's setting. With
    recording on, the recorder shares the node's core (see bench/recorder.py --bhca).

    Per-source limits are lifted: a carrier trunk is one source address that carries every
    call, and at 300 cps the RFC 6026 Accepted state alone keeps ~10,000 INVITE server
    transactions of that source alive for 32 s.
    """
    if not (source / "agents.yaml").exists():
        raise BenchError(f"{source} has no agents.yaml: give --config the hotline config dir")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    bench_agents = [
        {
            "id": str(FIRST_AGENT_ID + number),
            "name": f"Bench agent {FIRST_AGENT_ID + number}",
            "password": secrets.token_hex(8),
            "queues": ["general"],
        }
        for number in range(agents)
    ]
    (target / "agents.yaml").write_text(
        "# Written by bench/bhca.py\n" + yaml.safe_dump({"agents": bench_agents}, sort_keys=False),
        encoding="utf-8",
    )
    node_path = target / "node.yaml"
    node = yaml.safe_load(node_path.read_text(encoding="utf-8")) if node_path.exists() else {}
    node = node or {}
    limits = dict(node.get("limits") or {})
    limits["max_transactions_per_source"] = 1_000_000
    limits["requests_per_second_per_source"] = 1_000_000
    node["limits"] = limits
    # A baseline from before recording has no `recording` section and would refuse one.
    if recording is not None and (recording or "recording" in node):
        node["recording"] = {**(node.get("recording") or {}), "enabled": recording}
    node_path.write_text(
        "# Written by bench/bhca.py\n" + yaml.safe_dump(node, sort_keys=False), encoding="utf-8"
    )


# --- output --------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


COLUMNS = (
    ("system", 8), ("step", 4), ("cps", 6), ("achieved", 8), ("BHCA", 9), ("attempted", 9),
    ("completed", 9), ("failed", 6), ("fail rate", 9), ("p50 ms", 6), ("p95 ms", 6),
    ("CPU ms/call", 11), ("ratio", 5), ("SIPp ms", 7), ("drops", 5), ("RSS MiB", 7),
    ("ok", 3),
)  # fmt: skip


def render_table(results: Sequence[SystemResult]) -> str:
    """The per-step table of every system, the CPU ratio hotline/sippy, the rated rates."""
    sippy_cpu = {
        (step.round, step.step): step.cpu_ms_per_call
        for result in results
        if result.system == "sippy"
        for step in result.steps
    }
    lines = ["  ".join(name.rjust(width) for name, width in COLUMNS)]
    for result in results:
        for step in result.steps:
            reference = sippy_cpu.get((step.round, step.step))
            ratio = (
                f"{step.cpu_ms_per_call / reference:.2f}"
                if result.system in ("hotline", "baseline") and reference
                else "-"
            )
            cells = (
                result.system,
                str(step.step) if step.round == 1 else f"{step.round}.{step.step}",
                f"{step.target_cps:g}", f"{step.achieved_cps:.1f}",
                f"{step.bhca:,}", str(step.attempted), str(step.completed), str(step.failed),
                f"{step.failure_rate:.1e}" if step.failed else "0", fmt_ms(step.setup_p50_ms),
                fmt_ms(step.setup_p95_ms), f"{step.cpu_ms_per_call:.2f}", ratio,
                "?" if step.sipp_cpu_ms_per_call is None else f"{step.sipp_cpu_ms_per_call:.2f}",
                "?" if step.udp_drops is None else str(step.udp_drops),
                "?" if step.rss_mb is None else f"{step.rss_mb:.0f}",
                "yes" if step.rated_ok else "no",
            )  # fmt: skip
            lines.append(
                "  ".join(
                    cell.rjust(width) for cell, (_n, width) in zip(cells, COLUMNS, strict=True)
                )
            )
    lines.append("")
    rated = {result.system: result for result in results}
    for result in results:
        if result.rated_cps is not None:
            text = f"{result.rated_cps:g} cps = {result.rated_bhca:,} BHCA"
        else:
            text = "no step met the criteria"
        if result.error:
            text += f" (stopped: {result.error})"
        lines.append(
            f"rated {result.system}: {text}  "
            f"[failure rate <= {MAX_FAILURE_RATE:g} and p95 setup <= {MAX_P95_SETUP_MS:g} ms]"
        )
    for result in results:
        for step in result.steps:
            if step.failed:
                kinds = ", ".join(f"{name} {count}" for name, count in step.sipp_failures.items())
                lines.append(
                    f"{result.system} step {step.step}: {step.failed} failed"
                    + (f" (SIPp: {kinds})" if kinds else " (not completed by SIPp)")
                )
    hotline, sippy = rated.get("hotline"), rated.get("sippy")
    if hotline and sippy and hotline.rated_cps and sippy.rated_cps:
        lines.append(f"rated ratio hotline/sippy: {hotline.rated_cps / sippy.rated_cps:.2f}")
    baseline = rated.get("baseline")
    if hotline and baseline:
        before = {(step.round, step.step): step.cpu_ms_per_call for step in baseline.steps}
        ratios = [
            step.cpu_ms_per_call / before[step.round, step.step]
            for step in hotline.steps
            if before.get((step.round, step.step))
        ]
        if ratios:
            ratios.sort()
            lines.append(
                f"hotline/baseline CPU ms/call: median {ratios[len(ratios) // 2]:.2f} "
                f"over {len(ratios)} steps; rated {hotline.rated_cps or 0:g} vs "
                f"{baseline.rated_cps or 0:g} cps"
            )
    for result in results:
        if len(result.idle_rss_mb) >= 2:
            first = result.idle_rss_mb[0]
            growth = ", ".join(
                f"{rss:.1f} ({(rss - first) / first:+.1%})" for rss in result.idle_rss_mb[1:]
            )
            lines.append(
                f"{result.system} RSS after each idle pause: {first:.1f} MiB, then {growth}"
            )
    return "\n".join(lines)


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="BHCA benchmark: hotline and the sippy B2BUA under the same seeded calls."
    )
    parser.add_argument("--profile", default="default", help="profile name or YAML/JSON path")
    parser.add_argument("--steps", help='override the steps, e.g. "50:20,100:20" (cps:seconds)')
    parser.add_argument("--seed", type=int, help="override the profile's seed")
    parser.add_argument(
        "--systems",
        default="hotline,sippy",
        help="comma list of hotline, sippy, baseline (in run order)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default="HEAD~1",
        help="git revision that system `baseline` runs (hotline before a change; default "
        "HEAD~1), checked out into the work dir and built",
    )
    parser.add_argument(
        "--agents", type=int, help="bench agents for hotline (default: 1.5 x peak concurrency)"
    )
    parser.add_argument("--config", default=str(REPO_ROOT / "config"), help="hotline config dir")
    parser.add_argument(
        "--hotline-command",
        default=f"{sys.executable} -m softswitch.cli",
        help="command that runs the hotline CLI (default: this Python, -m softswitch.cli)",
    )
    parser.add_argument("--hotline-log-level", default="INFO", help="hotline --log-level")
    parser.add_argument(
        "--sippy-log",
        default="none",
        choices=("none", "stderr", "file"),
        help="sippy SIPLOG_BEND: none (default, sippy at its fastest) or its message log",
    )
    parser.add_argument("--register-rate", type=float, default=200.0, help="REGISTERs per s")
    parser.add_argument("--pin", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--sut-cpu", type=int, default=0, help="CPU of the system under test")
    parser.add_argument("--sipp-cpu", type=int, default=1, help="CPU of every SIPp")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the steps this many times (memory check)"
    )
    parser.add_argument(
        "--idle", type=float, default=40.0, help="idle seconds after each round (--rounds > 1)"
    )
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="bound of the run")
    parser.add_argument("--workdir", help="keep logs and SIPp files here (default: temporary)")
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON (- : stdout)"
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="record every call as the shipped config does (default: recording off, as "
        "sippy records nothing)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        profile = load_profile(args.profile)
        if args.steps:
            profile = msgspec.structs.replace(
                profile, name=f"{profile.name} (--steps)", steps=parse_steps(args.steps)
            )
        if args.seed is not None:
            profile = msgspec.structs.replace(profile, seed=args.seed)
    except BenchError as error:
        print(f"bhca: {error}", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.idle < 0:
        print("bhca: --rounds must be at least 1 and --idle not negative", file=sys.stderr)
        return 2
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = set(systems) - {"hotline", "sippy", "baseline"}
    if unknown or not systems:
        print(f"bhca: unknown system(s): {', '.join(sorted(unknown)) or '(none)'}", file=sys.stderr)
        return 2
    if shutil.which(SIPP) is None:
        print(f"bhca: {SIPP} not found (apt-get install sip-tester)", file=sys.stderr)
        return 2
    bench = Bench(args, profile)
    bench.log(f"bhca: profile {profile.name}, seed {profile.seed}, work dir {bench.work}")
    results: list[SystemResult] = []
    try:
        with interrupt_on_sigterm():
            for system in systems:
                results.append(bench.run_system(system))
    except KeyboardInterrupt:
        bench.processes.close()
        bench.log(f"bhca: interrupted; every process stopped; logs in {bench.work}")
        return 130
    finally:
        bench.processes.close()
        bench.remove_worktrees()
    failed = any(result.error is not None for result in results)
    if failed or any(step.failed for result in results for step in result.steps):
        bench.log(f"bhca: errors or failed calls: logs kept in {bench.work}")
    elif not args.workdir:
        shutil.rmtree(bench.work, ignore_errors=True)
    print(
        f"profile {profile.name} (seed {profile.seed}), hotline recording "
        f"{'on' if args.record else 'off'}, CPU ms/call of the system under test;"
    )
    print("ratio = hotline CPU ms/call / sippy CPU ms/call at the same step")
    print(render_table(results))
    if args.json:
        document = {
            "profile": msgspec.to_builtins(profile),
            "machine": machine(),
            "criteria": {
                "max_failure_rate": MAX_FAILURE_RATE,
                "max_p95_setup_ms": MAX_P95_SETUP_MS,
            },
            "systems": msgspec.to_builtins(results),
        }
        encoded = msgspec.json.format(msgspec.json.encode(document), indent=2)
        if args.json == "-":
            sys.stdout.write(encoded.decode() + "\n")
        else:
            Path(args.json).write_bytes(encoded + b"\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
