"""Trunk calls under a SIP flood: the same node, the same call rate, calm and flooded.

Per system under test (`hotline`, and `baseline`: the code of `--baseline REV`) the program
starts what bench/bhca.py starts (a SIPp agent UAS, the node with bench agents registered
from 127.0.0.1), but the node's configuration keeps the shipped per-source limits and its
carrier trunk's ACL is 127.0.0.1/32, so everything else on loopback is a stranger. Then:

1. calm: one SIPp trunk caller at `--cps` for `--seconds` (seeded calls, as bhca.py);
2. flooded: the same again while bench/flooder.py sends `--flood-rate` requests per second
   from `--sources` addresses 127.0.2.1 … (out-of-dialog INVITEs, REGISTERs answered with
   wrong digests for the bench agents' own user names, OPTIONS), for as long as the calls
   are offered.

Per phase it reports the trunk calls (completed, failed, p50/p95/max setup), the node's CPU
seconds and RSS; for the flood, how many requests were sent, which share got any answer,
with which codes, and the node CPU per flood request ((flooded CPU - calm CPU) / sent).
The node passes when no trunk call fails and the flooded p95 setup is ≤ 500 ms (bhca.py's
criteria for a carried rate).

    python bench/flood.py                              # 100 cps, 2,000 req/s from 500 hosts
    python bench/flood.py --flood-rate 4000 --systems baseline,hotline --baseline 716c4c2

With two or more CPUs the node runs on CPU 0, SIPp and the flooder on CPU 1. Every process
is bounded in time and stopped at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import yaml
from bhca import (
    MAX_P95_SETUP_MS,
    SIPP,
    Bench,
    BenchError,
    Hold,
    Profile,
    Step,
    StepResult,
    fmt_ms,
    interrupt_on_sigterm,
    machine,
    rss_mb,
    write_hotline_config,
)
from flooder import MAX_SOURCES, FloodResult

FLOODER = Path(__file__).resolve().parent / "flooder.py"
TRUNK_ACL = ["127.0.0.1/32"]


class Phase(msgspec.Struct, frozen=True):
    """One phase on one system: its trunk calls, and the flood when there was one."""

    name: str  # "calm" | "flooded"
    calls: StepResult
    rss_mb: float | None
    flood: FloodResult | None = None


class FloodSystem(msgspec.Struct, frozen=True):
    system: str
    phases: tuple[Phase, ...]
    error: str | None

    def phase(self, name: str) -> Phase | None:
        return next((phase for phase in self.phases if phase.name == name), None)

    @property
    def flood_cpu_us_per_request(self) -> float | None:
        """Node CPU each flood request cost: flooded minus calm CPU, per request sent."""
        calm, flooded = self.phase("calm"), self.phase("flooded")
        if calm is None or flooded is None or flooded.flood is None:
            return None
        sent = flooded.flood.total_sent
        extra = flooded.calls.cpu_s - calm.calls.cpu_s
        return round(extra * 1e6 / sent, 1) if sent else None

    @property
    def passed(self) -> bool:
        flooded = self.phase("flooded")
        return (
            self.error is None
            and flooded is not None
            and flooded.calls.failed == 0
            and flooded.calls.setup_p95_ms is not None
            and flooded.calls.setup_p95_ms <= MAX_P95_SETUP_MS
        )


class FloodBench(Bench):
    """bhca's bench with strangers kept strangers, and a flood during the second step."""

    def write_config(self, source: Path, target: Path, agents: int) -> None:
        write_hotline_config(source, target, agents)
        # bhca lifts the per-source limits for its one trunk source; the trunk is exempt from
        # them anyway, and the flood must meet the limits an operator ships.
        shipped = yaml.safe_load((source / "node.yaml").read_text(encoding="utf-8")) or {}
        node_path = target / "node.yaml"
        node = yaml.safe_load(node_path.read_text(encoding="utf-8")) or {}
        if "limits" in shipped:
            node["limits"] = shipped["limits"]
        else:
            node.pop("limits", None)
        node_path.write_text(
            "# Written by bench/flood.py\n" + yaml.safe_dump(node, sort_keys=False),
            encoding="utf-8",
        )
        trunks_path = target / "trunks.yaml"
        trunks = yaml.safe_load(trunks_path.read_text(encoding="utf-8"))
        for trunk in trunks["trunks"]:
            trunk["acl"] = list(TRUNK_ACL)
        trunks_path.write_text(
            "# Written by bench/flood.py: only 127.0.0.1 is the carrier\n"
            + yaml.safe_dump(trunks, sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )

    def run_flood_system(self, system: str) -> FloodSystem:
        directory = self.work / system
        directory.mkdir(parents=True, exist_ok=True)
        uas_dir = directory / "uas"
        uas_dir.mkdir(exist_ok=True)
        phases: list[Phase] = []
        error: str | None = None
        try:
            uas, uas_port = self.start_uas(uas_dir)
            sut, address, _agents = self.start_sut(system, directory, uas_port)
            for index, name in enumerate(("calm", "flooded")):
                self.check_deadline()
                if sut.poll() is not None:
                    raise BenchError(f"{system} exited with {sut.returncode}, see {directory}")
                flooder = self.start_flooder(directory, address) if name == "flooded" else None
                calls = self.run_step(system, index, sut.pid, address, directory)
                flood = self.finish_flooder(flooder, directory) if flooder else None
                phases.append(Phase(name, calls, rss_mb(sut.pid), flood))
                self.log(
                    f"  {system} {name}: {calls.completed}/{calls.attempted} calls, "
                    f"p95 {fmt_ms(calls.setup_p95_ms)} ms, node CPU {calls.cpu_s:.1f} s"
                    + (f", flood {flood.total_sent} sent" if flood else "")
                )
                time.sleep(self.profile.settle_s)
        except BenchError as failure:
            error = str(failure)
            self.log(f"  {system}: {error}")
        finally:
            self.processes.close()
        return FloodSystem(system, tuple(phases), error)

    def start_flooder(self, directory: Path, address: tuple[str, int]) -> subprocess.Popen[bytes]:
        args = self.args
        out = directory / "flood.json"
        out.unlink(missing_ok=True)
        command = [
            *self.sipp_prefix, sys.executable, str(FLOODER),
            "--target", f"{address[0]}:{address[1]}", "--sources", str(args.sources),
            "--rate", f"{args.flood_rate:g}", "--seconds", f"{args.seconds:g}",
            "--users", args.users, "--mix", args.mix, "--seed", str(args.seed),
            "--out", str(out),
        ]  # fmt: skip
        self.log(f"flood: {args.flood_rate:g} requests/s from {args.sources} sources")
        process = self.processes.start(
            "flooder", command, log_path=directory / "flooder.log", cwd=directory
        )
        time.sleep(0.2)
        if process.poll() is not None:
            raise BenchError(f"flooder exited with {process.returncode}, see {directory}")
        return process

    def finish_flooder(self, process: subprocess.Popen[bytes], directory: Path) -> FloodResult:
        try:
            process.wait(timeout=self.args.seconds + 30)
        except subprocess.TimeoutExpired:
            self.processes.stop(process, first=signal.SIGTERM)
        out = directory / "flood.json"
        if process.returncode != 0 or not out.exists():
            raise BenchError(f"flooder ended with {process.returncode}, see {directory}")
        return msgspec.json.decode(out.read_bytes(), type=FloodResult)


def render(results: Sequence[FloodSystem]) -> str:
    rows = [
        ("system", "phase", "calls", "failed", "p50 ms", "p95 ms", "max ms", "CPU s", "RSS MB",
         "flood sent", "answered", "codes"),
    ]  # fmt: skip
    for result in results:
        for phase in result.phases:
            calls, flood = phase.calls, phase.flood
            codes = ""
            if flood is not None:
                codes = " ".join(f"{code}:{count}" for code, count in flood.codes.items())
            share = flood.answered_share if flood is not None else None
            rows.append((
                result.system, phase.name, str(calls.attempted), str(calls.failed),
                fmt_ms(calls.setup_p50_ms), fmt_ms(calls.setup_p95_ms),
                fmt_ms(calls.setup_max_ms), f"{calls.cpu_s:.1f}",
                "-" if phase.rss_mb is None else f"{phase.rss_mb:.0f}",
                "-" if flood is None else str(flood.total_sent),
                "-" if share is None else f"{share:.1%}", codes or "-",
            ))  # fmt: skip
        if result.error:
            rows.append((result.system, "error", result.error, *[""] * 9))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    for result in results:
        calm, flooded = result.phase("calm"), result.phase("flooded")
        verdict = "carried" if result.passed else "NOT carried (failed calls or p95 > 500 ms)"
        line = f"{result.system}: trunk calls under the flood {verdict}"
        if calm and flooded and calm.calls.setup_p95_ms and flooded.calls.setup_p95_ms:
            ratio = flooded.calls.setup_p95_ms / calm.calls.setup_p95_ms
            line += f"; p95 setup flooded/calm {ratio:.2f}"
        if result.flood_cpu_us_per_request is not None:
            line += f"; node CPU per flood request {result.flood_cpu_us_per_request:g} µs"
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Trunk calls with and without a SIP flood.")
    parser.add_argument("--cps", type=float, default=100.0, help="trunk calls per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--flood-rate", type=float, default=2000.0, help="flood requests/s")
    parser.add_argument("--sources", type=int, default=500, help="flood source addresses")
    parser.add_argument("--users", default="2000-2099", help="user names the flood guesses")
    parser.add_argument("--mix", default="1:1:1", help="flood weights INVITE:REGISTER:OPTIONS")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--systems", default="hotline", help="comma list: hotline, baseline")
    parser.add_argument("--baseline", metavar="REV", default="HEAD~1")
    parser.add_argument("--agents", type=int, help="bench agents (default: from the call rate)")
    parser.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "config"))
    parser.add_argument("--hotline-command", default=f"{sys.executable} -m softswitch.cli")
    parser.add_argument("--hotline-log-level", default="INFO")
    parser.add_argument("--register-rate", type=float, default=200.0)
    parser.add_argument("--pin", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--sut-cpu", type=int, default=0)
    parser.add_argument("--sipp-cpu", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound of the run")
    parser.add_argument("--workdir", help="keep logs here (default: temporary)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    problems = []
    if not systems or set(systems) - {"hotline", "baseline"}:
        problems.append(f"--systems takes hotline and/or baseline, not {args.systems!r}")
    if not 0 < args.cps <= 1000 or not 5 <= args.seconds <= 600:
        problems.append("need 0 < --cps <= 1000 and 5 <= --seconds <= 600")
    if not 0 < args.flood_rate <= 100_000 or not 1 <= args.sources <= MAX_SOURCES:
        problems.append(f"need 0 < --flood-rate <= 100000 and 1 <= --sources <= {MAX_SOURCES}")
    if shutil.which(SIPP) is None:
        problems.append(f"{SIPP} not found (apt-get install sip-tester)")
    if problems:
        print("flood: " + "; ".join(problems), file=sys.stderr)
        return 2
    step = Step(cps=args.cps, duration_s=args.seconds)
    profile = Profile(name="flood", steps=(step, step), seed=args.seed, hold=Hold(), settle_s=5.0)
    bench = FloodBench(args, profile)
    bench.log(f"flood: work dir {bench.work}")
    results: list[FloodSystem] = []
    try:
        with interrupt_on_sigterm():
            for system in systems:
                results.append(bench.run_flood_system(system))
    except KeyboardInterrupt:
        bench.log(f"flood: interrupted; every process stopped; logs in {bench.work}")
        return 130
    finally:
        bench.processes.close()
        bench.remove_worktrees()
    if any(result.error for result in results) or not all(r.passed for r in results):
        bench.log(f"flood: errors or calls not carried: logs kept in {bench.work}")
    elif not args.workdir:
        shutil.rmtree(bench.work, ignore_errors=True)
    print(
        f"trunk calls at {args.cps:g} cps for {args.seconds:g} s per phase; flood "
        f"{args.flood_rate:g} requests/s from {args.sources} loopback sources (mix {args.mix})"
    )
    print(render(results))
    if args.json:
        document = {
            "machine": machine(),
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "systems": [
                {**msgspec.to_builtins(r), "flood_cpu_us_per_request": r.flood_cpu_us_per_request}
                for r in results
            ],
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if all(result.error is None for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
