"""The highest call rate each `hotline loadtest run` engine offers with no failed call.

For each engine (the project's own callers, ``--engine python``; SIPp, ``--engine sipp`` with
1 or more ``--generators``) and each rate of its list, a trace of ``rate × seconds`` calls
evenly spaced (1 / rate apart), each holding ``--hold`` seconds (the caller's patience: the
target answers, nobody "agent-answers", the caller hangs up with BYE after the hold), is
replayed by ``hotline loadtest run`` against a SIPp UAS (``sipp -sn uas -aa``: it answers
INVITE, BYE and the run's OPTIONS at once). The target is not the limit (a SIPp UAS carries
thousands of calls per second), so the table measures the load generator.

A step is ``ok`` when no call failed, every BYE got its 200, and the engine offered the rate: the INVITEs of the
step spread over no more than 5 % longer than the trace (``offered cps`` ≥ 95 % of the
rate). The generator's CPU (the run's process and its SIPp children) is per call.

    python bench/loadtest_engines.py                       # both engines, default rates
    python bench/loadtest_engines.py --engines sipp --generators 2 --rates 400,800,1200
    python bench/loadtest_engines.py --seconds 10 --json result.json

The UAS is pinned to the last CPU when there are two or more and taskset exists; the
generator runs where the kernel puts it. Exit status 0, 1 when a step could not be run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtest.trace import Trace, TraceCall, write_trace  # noqa: E402

DEFAULT_RATES = {"python": "200,400,600,800,1000,1200", "sipp": "400,800,1200,1600,2000,2500"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def even_trace(rate: float, seconds: float, hold: float) -> Trace:
    calls = int(rate * seconds)
    return Trace(
        tuple(
            TraceCall(f"b{i:06d}", round(i / rate, 6), f"0{10_000_000_000 + i}", "12345",
                      patience_s=hold, talk_s=0.0)
            for i in range(calls)
        ),
        {"generator": "bench/loadtest_engines.py", "rate": str(rate)},
    )  # fmt: skip


class Uas:
    """``sipp -sn uas -aa`` on a free port, bounded by its own -timeout."""

    def __init__(self, work: Path, timeout: float) -> None:
        self.port = free_port()
        cpus = os.cpu_count() or 1
        prefix = ["taskset", "-c", str(cpus - 1)] if cpus >= 2 and shutil.which("taskset") else []
        self.log = (work / f"uas-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [*prefix, "sipp", "-sn", "uas", "-aa", "-i", "127.0.0.1", "-p", str(self.port),
             "-mp", str(free_port()), "-cp", str(free_port()), "-nostdin",
             "-timeout", f"{int(timeout)}s", "-max_recv_loops", "10000"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self, within: float = 10.0) -> None:
        """Until the UAS answers an OPTIONS (SIPp takes a moment to start on a busy box)."""
        deadline = time.monotonic() + within
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.2)
            port = s.getsockname()[1]
            for n in range(1, 1000):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    break
                probe = (
                    f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-ready{n}\r\n"
                    f"From: <sip:bench@127.0.0.1>;tag=b{n}\r\nTo: <sip:127.0.0.1>\r\n"
                    f"Call-ID: ready-{n}-{port}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\n"
                    "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                )
                s.sendto(probe.encode(), ("127.0.0.1", self.port))
                try:
                    s.recvfrom(4096)
                    return
                except TimeoutError:
                    continue
        raise RuntimeError(f"SIPp UAS on port {self.port} did not answer OPTIONS in {within} s")

    def cpu_s(self) -> float:
        """The UAS's CPU so far (user + system), to take out of the generator's."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return 0.0
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def step(engine: str, generators: int, rate: float, args: argparse.Namespace, work: Path) -> dict:
    trace_path = work / f"{engine}-{generators}-{rate:g}.csv"
    write_trace(str(trace_path), even_trace(rate, args.seconds, args.hold))
    report_path = trace_path.with_suffix(".json")
    uas = Uas(work, args.seconds + args.hold + 120)
    command = [
        sys.executable, "-m", "softswitch.cli", "loadtest", "run", str(trace_path),
        "--target", f"127.0.0.1:{uas.port}", "--max-seconds", str(args.seconds + 30),
        "--json", str(report_path), "--no-progress", "--engine", engine,
    ]  # fmt: skip
    if engine == "sipp":
        command += ["--generators", str(generators), "--sipp-dir", str(trace_path.with_suffix(""))]
        command += ["--sipp-rtp", args.sipp_rtp]
    before = children_cpu()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=str(ROOT),
            timeout=args.seconds + 90, check=False,
        )  # fmt: skip
    finally:
        uas_cpu = uas.cpu_s()
        uas.stop()
    cpu = children_cpu() - before - uas_cpu  # the run and its SIPp children, not the UAS
    row: dict = {"engine": engine, "generators": generators, "cps": rate}
    if not report_path.exists():
        row["error"] = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return row
    report = json.loads(report_path.read_text(encoding="utf-8"))
    invites = sorted(c["invite_at"] for c in report["calls"] if c["invite_at"] is not None)
    span = invites[-1] - invites[0] if len(invites) > 1 else 0.0
    offered = (len(invites) - 1) / span if span > 0 else 0.0
    setup = report["setup_ms"]
    row.update(
        attempted=report["attempted"], failed=report["failed"], cut=report["cut"],
        offered_cps=round(offered, 1), setup_p50_ms=setup["p50"], setup_p95_ms=setup["p95"],
        setup_p99_ms=setup["p99"], cpu_s=round(cpu, 2),
        lateness_p95_ms=(report.get("start_lateness_ms") or {}).get("p95"),
        failures=report["failures"],
    )  # fmt: skip
    row["bye_failures"] = report["bye_failures"]
    row["ok"] = (
        report["failed"] == 0 and report["cut"] == 0 and report["bye_failures"] == 0
        and offered >= 0.95 * rate
    )  # fmt: skip
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="python,sipp")
    parser.add_argument("--generators", default="1,2", help="SIPp processes to try (1,2)")
    parser.add_argument("--rates", help="calls per second, for every engine (default per engine)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step (10)")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each call holds (1)")
    parser.add_argument("--sipp-rtp", choices=("silence", "none"), default="silence")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        print("bench: sipp not found (apt-get install sip-tester)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    rows = []
    status = 0
    for engine in args.engines.split(","):
        counts = [int(g) for g in args.generators.split(",")] if engine == "sipp" else [1]
        for generators in counts:
            for rate in (float(r) for r in (args.rates or DEFAULT_RATES[engine]).split(",")):
                row = step(engine, generators, rate, args, work)
                rows.append(row)
                if "error" in row:
                    status = 1
                print(json.dumps(row), flush=True)
    print(f"\n{'engine':>8} {'gen':>3} {'cps':>6} {'offered':>8} {'calls':>6} {'failed':>6} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'BYE fail':>8} {'CPU ms/call':>11}  ok")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"{r['engine']:>8} {r['generators']:>3} {r['cps']:>6g}  error: {r['error']}")
            continue
        per_call = 1000 * r["cpu_s"] / r["attempted"] if r["attempted"] else 0.0
        print(
            f"{r['engine']:>8} {r['generators']:>3} {r['cps']:>6g} {r['offered_cps']:>8} "
            f"{r['attempted']:>6} {r['failed']:>6} {r['setup_p50_ms'] or 0:>7.1f} "
            f"{r['setup_p95_ms'] or 0:>7.1f} {r['bye_failures']:>8} {per_call:>11.2f}  "
            f"{'yes' if r['ok'] else 'no'}"
        )
    for engine in args.engines.split(","):
        for generators in sorted({r["generators"] for r in rows if r["engine"] == engine}):
            good = [r["cps"] for r in rows if r["engine"] == engine
                    and r["generators"] == generators and r.get("ok")]  # fmt: skip
            label = engine + (f" x{generators}" if engine == "sipp" else "")
            print(f"highest rate with no failed call, {label}: {max(good, default=0):g} cps")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"work directory: {work}")
    return status


if __name__ == "__main__":
    sys.exit(main())
