"""Busy-hour ACD replay: 18 agents and ~35 calls in the system through the real node, with the
RPT-3 KPIs computed from its queue log, the node's own live KPIs, and Erlang A/C beside them.

What runs, on 127.0.0.1 high ports (bench/bhca.py's machinery: `bhca.Bench`):

- one SIPp agent UAS (tests/sipp/uas_acd_agent.xml) answering for every agent contact; each
  ring takes the next line of a seeded injection file: answer after a delay drawn uniformly
  from `--answer-after`, or (a `--no-answer` share of rings) ring until the node's ring
  timeout CANCELs it, which returns the call to the queue head (SPEC ACD-4);
- `hotline serve` on a temporary copy of config/ (recording off unless `--record`) with
  `--agents` bench agents in queue `general`, registered by SIPp, the queue's strategy,
  ring timeout, max wait, wrap-up and retry set from the options, and RTP timeout lifted
  (SIPp sends no RTP);
- one SIPp trunk caller (tests/sipp/uac_acd_caller.xml) replaying a seeded trace from
  `loadtest.generate` (Poisson arrivals, exponential patience, log-normal talk times), one
  line per call: arrival time, patience (the caller CANCELs when it runs out), talk time
  (the caller hangs up after it).

Offered load: unless `--rate` is given, λ is the rate at which Erlang A (M/M/c+M, the model
with caller patience) puts `--concurrent` calls in the system on average, by Little's law
L = λ · (mean wait + P(answered) · (ring + talk)). With 18 agents and 35 calls in the system
about 17 callers wait at any time: the offered traffic exceeds the agents and the queue is
held in check only by callers giving up, so Erlang C (callers never give up) has no steady
state there and Erlang A is the model to compare with. `--rate` sets λ directly (e.g. a load
below the agents', where Erlang C applies).

Time scaling: every duration of the busy hour (arrivals, patience, talk, ring delays, ring
timeout, max wait, wrap-up, retry) is multiplied by `--time-scale` on the wall clock, so an
hour runs in minutes. The figures are converted back to busy-hour seconds, and the RPT-3
thresholds (answered within 15 s, abandoned within 20 s) are applied in busy-hour seconds.
The node's live KPIs count with its own thresholds of 15 s and 20 s of *wall-clock* time;
to show that they agree with the queue log the same counts are recomputed from the queue
log with those wall-clock thresholds, over every call (the node counts since it started).

Calls arriving during the first `--warmup` minutes fill the queue and are left out of the
busy-hour figures (the busy hour does not start with an empty queue either).

    python bench/acd_busy_hour.py                         # ~4 minutes
    python bench/acd_busy_hour.py --minutes 30 --time-scale 0.1 --seed 7 --json out.json
    python bench/acd_busy_hour.py --rate 300 --patience 600   # below capacity: Erlang C

Every process runs in its own session and is ended at exit, on error and on Ctrl-C; every
wait is bounded. The queue log is read by bench/acd_kpis.py. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Run as a script, bench/ comes first on sys.path, where bench/recorder.py would shadow the
# `recorder` package: the repository first, bench/ (bhca, acd_kpis) last, as recorder.py does.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(BENCH))

import bhca  # noqa: E402
from acd_kpis import Log, busy_seconds, concurrency, counts, rates, read_log  # noqa: E402

from acd.queue import SERVICE_LEVEL_SECONDS, SHORT_ABANDON_SECONDS  # noqa: E402
from loadtest import erlang  # noqa: E402
from loadtest import generate as gen  # noqa: E402
from softswitch import control_api  # noqa: E402

QUEUE = "general"
#: SPEC RPT-3 (answered within 15 s, abandoned within 20 s), in busy-hour seconds here; the
#: node counts with the same numbers in seconds of its own (wall) clock.
SERVICE_LEVEL_S = SERVICE_LEVEL_SECONDS
SHORT_ABANDON_S = SHORT_ABANDON_SECONDS
#: Seconds between the bench's looks at the node's live status during the run.
SAMPLE_EVERY_S = 1.0


# --- the busy hour ------------------------------------------------------------------------


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    """The replayed busy hour, in busy-hour seconds (the wall clock runs `time_scale` × it)."""

    agents: int
    concurrent: float
    minutes: float
    warmup_minutes: float
    time_scale: float
    seed: int
    aht_s: float  # mean handle time: talk + wrap-up
    wrap_up_s: float
    talk_sigma: float  # standard deviation of log(talk time)
    patience_s: float  # mean, exponential
    answer_after_s: tuple[float, float]  # an answering agent's ring, uniform between
    no_answer: float  # share of rings never answered
    ring_timeout_s: float
    max_wait_s: float
    retry_s: float
    strategy: str
    rate_per_hour: float | None  # None: sized for `concurrent`

    @property
    def talk_s(self) -> float:
        return self.aht_s - self.wrap_up_s

    @property
    def ring_s(self) -> float:
        """Mean ring of an answered offer."""
        return sum(self.answer_after_s) / 2

    @property
    def agent_time_s(self) -> float:
        """What the queueing models take as handle time: the time an agent is taken per
        answered call — ring, talk, wrap-up, and the ring timeouts of missed offers
        (no_answer / (1 - no_answer) of them per answer)."""
        missed = self.no_answer / (1 - self.no_answer) * self.ring_timeout_s
        return self.ring_s + self.aht_s + missed

    @property
    def target_s(self) -> float:
        """The models' service-level target: the agent is taken `ring_s` before the answer."""
        return max(0.0, SERVICE_LEVEL_S - self.ring_s)

    @property
    def offered_minutes(self) -> float:
        return self.warmup_minutes + self.minutes


def erlang_a(scn: Scenario, rate_per_hour: float) -> erlang.ErlangA:
    return erlang.erlang_a_model(
        rate_per_hour, scn.agent_time_s, scn.agents, scn.patience_s, scn.target_s
    )


def in_system(scn: Scenario, model: erlang.ErlangA) -> float:
    """Little's law: the mean number of calls in the system Erlang A predicts (waiting, and
    ringing or talking once taken by an agent; wrap-up is the agent's, not the caller's)."""
    served = 1 - model.p_abandon
    return model.arrivals_per_s * (model.mean_wait_s + served * (scn.ring_s + scn.talk_s))


def size_rate(scn: Scenario) -> float:
    """Calls per hour for which Erlang A puts `scn.concurrent` calls in the system."""
    low, high = 1.0, 3600.0 * scn.concurrent / min(scn.patience_s, scn.talk_s) * 4
    if in_system(scn, erlang_a(scn, high)) < scn.concurrent:
        raise bhca.BenchError(f"no arrival rate puts {scn.concurrent:g} calls in the system")
    for _ in range(60):
        middle = (low + high) / 2
        if in_system(scn, erlang_a(scn, middle)) < scn.concurrent:
            low = middle
        else:
            high = middle
    return round((low + high) / 2, 1)


#: One offered call: arrival, caller, patience, talk (busy-hour seconds).
Call = tuple[float, str, float, float]


def draw_calls(scn: Scenario, rate_per_hour: float) -> list[Call]:
    """The seeded offered calls, from `loadtest.generate` (a flat profile: Poisson arrivals
    at `rate_per_hour`, exponential patience, log-normal talk times)."""
    hours = max(1, math.ceil(scn.offered_minutes / 60))
    if hours > 24:
        raise bhca.BenchError("--minutes plus --warmup: at most 24 hours")
    spec = gen.GeneratorSpec(
        seed=scn.seed,
        hours=(0, hours),
        profile=gen.FLAT,
        profile_name="flat",
        bhca=rate_per_hour,
        called=bhca.CALLED_NUMBER,
        menu=gen.KeyMenu((gen.KeySequence("", 1.0),)),
        patience_s=scn.patience_s,
        talk=gen.Distribution("lognormal", scn.talk_s, scn.talk_sigma),
        wrap=gen.Distribution("fixed", 0.0),
    )
    end = scn.offered_minutes * 60
    calls = []
    for index, call in enumerate(c for c in gen.generate(spec).calls if c.offset_s < end):
        # Unique calling numbers, so each CDR row names its offered call.
        caller = f"138{index:08d}"
        calls.append((call.offset_s, caller, call.patience_s or math.inf, call.talk_s))
    return calls


def draw_rings(scn: Scenario, count: int) -> list[tuple[int, int]]:
    """The agent UAS's seeded rings: (ring ms on the wall clock, answer 1 / 0)."""
    rng = np.random.default_rng([scn.seed, 1])
    low, high = scn.answer_after_s
    rings = rng.uniform(low, high, count) * scn.time_scale * 1000
    answers = rng.random(count) >= scn.no_answer
    return [(round(ms), int(yes)) for ms, yes in zip(rings, answers, strict=True)]


# --- the node, the agents, the callers ------------------------------------------------------


class AcdBench(bhca.Bench):
    """bhca.py's bench with the busy-hour queue, the agent UAS of uas_acd_agent.xml and the
    caller of uac_acd_caller.xml."""

    def __init__(self, args: argparse.Namespace, scn: Scenario) -> None:
        options = [
            "--agents", str(scn.agents), "--pin", args.pin, "--max-seconds",
            str(args.max_seconds), "--hotline-log-level", args.hotline_log_level,
        ]  # fmt: skip
        # bhca's own default work dir would be named bhca-…
        options += ["--workdir", args.workdir or tempfile.mkdtemp(prefix="acd-busy-hour-")]
        if args.quiet:
            options.append("--quiet")
        profile = bhca.Profile(name="acd", steps=(bhca.Step(cps=1, duration_s=1),))
        super().__init__(bhca.parse_args(options), profile)
        self.options = args
        self.scn = scn
        self.rings: list[tuple[int, int]] = []

    def write_config(self, source: Path, target: Path, agents: int) -> None:
        bhca.write_hotline_config(source, target, agents, recording=self.options.record)
        scn, scale = self.scn, self.scn.time_scale
        queues_path = target / "queues.yaml"
        queues = yaml.safe_load(queues_path.read_text(encoding="utf-8"))
        general = {
            "name": QUEUE, "strategy": scn.strategy,
            "ring_timeout": round(scn.ring_timeout_s * scale, 3),
            "max_wait": round(scn.max_wait_s * scale, 3),
            "wrap_up": round(scn.wrap_up_s * scale, 3),
            "retry": round(scn.retry_s * scale, 3),
            "timeout_response": 480,
        }  # fmt: skip
        queues["queues"] = [general] + [q for q in queues["queues"] if q["name"] != QUEUE]
        queues_path.write_text(
            "# Written by bench/acd_busy_hour.py\n" + yaml.safe_dump(queues, sort_keys=False),
            encoding="utf-8",
        )
        node_path = target / "node.yaml"
        node = yaml.safe_load(node_path.read_text(encoding="utf-8")) or {}
        # SIPp sends no RTP: the RTP timeout (MED-3) would end every longer call.
        node["media"] = {**(node.get("media") or {}), "rtp_timeout": 86400}
        node_path.write_text(
            "# Written by bench/acd_busy_hour.py\n" + yaml.safe_dump(node, sort_keys=False),
            encoding="utf-8",
        )

    def start_uas(self, uas_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
        """The agent UAS with its injection file of rings."""
        csv_path = uas_dir / "rings.csv"
        with csv_path.open("w", encoding="utf-8") as handle:
            handle.write("SEQUENTIAL\n")
            handle.writelines(f"{ms};{answer}\n" for ms, answer in self.rings)
        port = bhca.free_udp_port()
        options = ["-inf", str(csv_path), "-timeout", f"{math.ceil(self.args.max_seconds)}s"]
        uas = self.processes.start(
            "agent UAS",
            self.sipp_command("uas_acd_agent.xml", port, options),
            log_path=uas_dir / "stdout.log",
            cwd=uas_dir,
        )
        time.sleep(0.3)
        if uas.poll() is not None:
            raise bhca.BenchError(f"SIPp agent UAS exited at once, see {uas_dir}")
        return uas, port

    def start_callers(
        self, directory: Path, address: tuple[str, int], lines: Sequence[str], limit_s: int
    ) -> subprocess.Popen[bytes]:
        """The SIPp trunk caller; `lines` are its injection file's rows."""
        caller_dir = directory / "callers"
        caller_dir.mkdir(exist_ok=True)
        csv_path = caller_dir / "calls.csv"
        csv_path.write_text("SEQUENTIAL\n" + "".join(lines), encoding="utf-8")
        count = len(lines)
        options = [
            "-inf", str(csv_path), "-s", bhca.CALLED_NUMBER, "-r", "200", "-rp", "1000",
            "-m", str(count), "-l", str(count + 10), "-timeout", f"{limit_s}s",
            f"{address[0]}:{address[1]}",
        ]  # fmt: skip
        command = self.sipp_command("uac_acd_caller.xml", bhca.free_udp_port(), options)
        return self.processes.start(
            "callers", command, log_path=caller_dir / "stdout.log", cwd=caller_dir
        )


def node_status(data: Path) -> dict[str, Any] | None:
    """The node's live status over its control socket (None when it does not answer)."""
    try:
        reply = control_api.request(data, {"op": "status"}, timeout=2.0)
    except (OSError, ValueError):
        return None
    return reply if reply.get("ok") else None


def queue_view(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """The bench queue's entry of a status reply."""
    for queue in (status or {}).get("queues", []):
        if queue.get("queue") == QUEUE:
            return queue if isinstance(queue, dict) else None
    return None


def hotline_status_json(args: argparse.Namespace, data: Path) -> dict[str, Any] | None:
    """`hotline status --json --data DATA`, as an operator would read it."""
    command = [*args.hotline_command.split(), "status", "--json", "--data", str(data)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    reply = json.loads(done.stdout)
    return reply if isinstance(reply, dict) else None


def idle_agents(data: Path) -> int:
    status = node_status(data)
    return sum(1 for agent in status["agents"] if agent["state"] == "idle") if status else 0


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def percentile(values: Sequence[float], fraction: float) -> float | None:
    return bhca.percentile(sorted(values), fraction)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --- the run --------------------------------------------------------------------------------


class Result(msgspec.Struct, kw_only=True):
    scenario: Scenario
    rate_per_hour: float
    sized: bool
    window: tuple[float, float]  # wall-clock epoch seconds of the busy hour
    placed: int
    entered: int  # over the whole run, warm-up and drain included
    sipp: dict[str, int]
    uas_failed_calls: int | None
    busy_hour: dict[str, Any]
    erlang_a: dict[str, Any]
    erlang_c: dict[str, Any]
    node_check: list[dict[str, Any]]
    node_agrees: bool
    node_samples: dict[str, Any]
    wall_s: float
    machine: dict[str, object]
    error: str | None = None


class Replayed(msgspec.Struct, kw_only=True):
    """What one replay saw besides the node's database."""

    t0: float  # wall-clock epoch seconds of the trace's time 0
    live: dict[str, Any] | None  # `hotline status --json` after the last call
    caller_stats: dict[str, str]  # the SIPp caller's last -trace_stat row
    uas_failed: int | None
    calls: list[int]  # the node's calls in progress, once a second
    waiting: list[int]  # callers waiting in the queue, once a second


def replay(bench: AcdBench, args: argparse.Namespace, calls: Sequence[Call]) -> Replayed:
    """Start the agent UAS and the node, register the agents, replay `calls`, read the node's
    status, stop everything. Raises BenchError."""
    scn, scale = bench.scn, bench.scn.time_scale
    directory = bench.work / "hotline"
    uas_dir = directory / "uas"
    uas_dir.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    uas, uas_port = bench.start_uas(uas_dir)
    node, address, _ = bench.start_hotline(directory, uas_port, ROOT)
    if not wait_for(lambda: idle_agents(data) >= scn.agents, 15.0):
        raise bhca.BenchError(f"the {scn.agents} agents are not idle after 15 s")
    t0 = time.time() + 2.0
    lines = [
        f"{caller};{round((t0 + offset * scale) * 1000)};"
        f"{round(min(patience, 10 * scn.max_wait_s) * scale * 1000)};{round(talk * scale * 1000)}\n"
        for offset, caller, patience, talk in calls
    ]
    longest = min(scn.max_wait_s, max(c[2] for c in calls)) + max(c[3] for c in calls)
    limit = math.ceil(2 + (calls[-1][0] + longest) * scale + 30)
    callers = bench.start_callers(directory, address, lines, limit)
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit + 15
    while callers.poll() is None and time.monotonic() < deadline:
        if node.poll() is not None:
            raise bhca.BenchError(f"hotline exited with {node.returncode}")
        bench.check_deadline()
        samples.append(node_status(data) or {})
        time.sleep(SAMPLE_EVERY_S)
    bench.processes.stop(callers, first=signal.SIGUSR1)
    if callers.returncode in bhca.SIPP_FATAL:
        raise bhca.BenchError(f"SIPp caller ended with {callers.returncode}")
    # Wrap-up ends and the agents are idle again; then the node's KPIs, as an operator reads them.
    time.sleep(max(1.0, scn.wrap_up_s * scale + 0.5))
    live = hotline_status_json(args, data)
    bench.processes.stop(uas, grace=3.0, first=signal.SIGUSR1)
    bench.processes.stop(node, grace=10.0)
    return Replayed(
        t0=t0,
        live=live,
        caller_stats=bhca.read_last_stat(directory / "callers" / "stat.csv"),
        uas_failed=bhca.stat_int(bhca.read_last_stat(uas_dir / "stat.csv"), "FailedCall(C)"),
        calls=[int(status["calls"]) for status in samples if "calls" in status],
        waiting=[int(q["waiting"]) for q in map(queue_view, samples) if q is not None],
    )


def run(args: argparse.Namespace, scn: Scenario) -> Result:
    """Size, draw, replay and analyse one busy hour."""
    started = time.monotonic()
    rate = size_rate(scn) if scn.rate_per_hour is None else scn.rate_per_hour
    calls = draw_calls(scn, rate)
    if not calls:
        raise bhca.BenchError("the trace has no calls (--rate, --minutes)")
    bench = AcdBench(args, scn)
    bench.rings = draw_rings(scn, 3 * len(calls) + 100)
    scale = scn.time_scale
    bench.log(
        f"acd_busy_hour: {len(calls)} calls at {rate:g}/h over {scn.offered_minutes:g} min "
        f"x {scale:g} = {scn.offered_minutes * 60 * scale:.0f} s, {scn.agents} agents, "
        f"seed {scn.seed}, work dir {bench.work}"
    )
    try:
        with bhca.interrupt_on_sigterm():
            seen = replay(bench, args, calls)
    except bhca.BenchError as error:
        raise bhca.BenchError(f"{error} (logs in {bench.work})") from error
    except KeyboardInterrupt:
        bench.log(f"acd_busy_hour: interrupted; logs in {bench.work}")
        raise
    finally:
        bench.processes.close()
    log = read_log(bench.work / "hotline" / "data" / "hotline.db", QUEUE)
    t0 = seen.t0
    window = (t0 + scn.warmup_minutes * 60 * scale, t0 + scn.offered_minutes * 60 * scale)
    result = analyse(scn, rate, calls, log, window, seen)
    result.wall_s = round(time.monotonic() - started, 1)
    if result.node_agrees and not result.sipp["FailedCall(C)"] and not args.workdir:
        shutil.rmtree(bench.work, ignore_errors=True)
    else:
        bench.log(f"acd_busy_hour: logs kept in {bench.work}")
    return result


def analyse(
    scn: Scenario,
    rate: float,
    calls: Sequence[Call],
    log: Log,
    window: tuple[float, float],
    seen: Replayed,
) -> Result:
    """The busy-hour figures, the models and the node's live KPIs set against the log."""
    scale = scn.time_scale
    start, end = window
    hour = [r for r in log.calls.values() if start <= r.entered < end]
    count = counts(hour, SERVICE_LEVEL_S * scale, SHORT_ABANDON_S * scale)
    rate_of = rates(count)
    left = [r for r in hour if r.outcome is not None]
    waits = [(r.waited or 0.0) / scale for r in left]
    answered = [(r.waited or 0.0) / scale for r in left if r.outcome == "answered"]
    talks = [r.talk / scale for r in hour if r.talk is not None]
    working, staffed = busy_seconds(log.agent_states, start, end)
    mean_in_system, peak = concurrency(log.cdr, start, end)
    offered = count["entered"]
    abandoned_long = count["abandoned"] - count["abandoned_short"]
    busy_hour = {
        "offered": offered,
        "answered": count["answered"],
        "answered_in_time": count["answered_in_time"],
        "abandoned": count["abandoned"],
        "abandoned_short": count["abandoned_short"],
        "abandoned_long": abandoned_long,
        "overflowed": count["overflowed"],
        "open": count["open"],
        "service_level": rate_of["service_level"],
        "human_answer_rate": rate_of["human_answer_rate"],
        "abandon_rate": count["abandoned"] / offered if offered else None,
        "abandon_rate_long": (
            abandoned_long / (offered - count["abandoned_short"])
            if offered > count["abandoned_short"]
            else None
        ),
        "asa_s": mean(answered),
        "wait_mean_s": mean(waits),
        "wait_p95_s": percentile(waits, 0.95),
        "answered_wait_p95_s": percentile(answered, 0.95),
        "talk_mean_s": mean(talks),
        "aht_s": (mean(talks) or 0.0) + scn.wrap_up_s if talks else None,
        "occupancy": working / staffed if staffed else None,
        "in_system_mean": mean_in_system,
        "in_system_max": peak,
        "offers": sum(r.rings for r in hour),
        "no_answers": sum(r.no_answers for r in hour),
        "calls_in_cdr": len(log.cdr),
    }
    model_a = erlang_a(scn, rate)
    model_c = erlang.erlang_c_model(rate, scn.agent_time_s, scn.agents, scn.target_s)
    # The models wait until an agent is taken; the node's wait of an answered call runs on
    # through its ring to the answer.
    erlang_a_view = {
        **msgspec.to_builtins(model_a),
        "in_system_mean": in_system(scn, model_a),
        "wait_to_answer_s": model_a.mean_wait_s + (1 - model_a.p_abandon) * scn.ring_s,
    }
    erlang_c_view = msgspec.to_builtins(model_c)
    if model_c.stable:
        erlang_c_view["wait_to_answer_s"] = model_c.mean_wait_s + scn.ring_s
    node_check, agrees = check_node(log, seen.live)
    samples = {
        "count": len(seen.calls),
        "calls_max": max(seen.calls, default=None),
        "calls_mean": mean([float(n) for n in seen.calls]),
        "waiting_max": max(seen.waiting, default=None),
        "waiting_mean": mean([float(n) for n in seen.waiting]),
    }
    return Result(
        scenario=scn,
        rate_per_hour=rate,
        sized=scn.rate_per_hour is None,
        window=window,
        placed=len(calls),
        entered=len(log.calls),
        sipp={
            name: bhca.stat_int(seen.caller_stats, name)
            for name in ("TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)")
        },
        uas_failed_calls=seen.uas_failed,
        busy_hour=busy_hour,
        erlang_a=erlang_a_view,
        erlang_c=erlang_c_view,
        node_check=node_check,
        node_agrees=agrees,
        node_samples=samples,
        wall_s=0.0,
        machine=bhca.machine(),
    )


#: The node's KPI fields compared with the queue log, in table order.
NODE_FIELDS = (
    "entered", "answered", "answered_in_time", "abandoned", "abandoned_short", "callbacks",
    "overflowed", "service_level", "human_answer_rate",
)  # fmt: skip


def check_node(log: Log, live: dict[str, Any] | None) -> tuple[list[dict[str, Any]], bool]:
    """The node's live KPIs beside the same figures from its queue log (every call, the
    node's wall-clock thresholds). Counts must be equal, rates equal to 1e-9."""
    count = counts(log.calls.values(), SERVICE_LEVEL_SECONDS, SHORT_ABANDON_SECONDS)
    figures: dict[str, Any] = {**count, **rates(count)}
    node = (queue_view(live) or {}).get("kpis") or {}
    rows = []
    agrees = bool(node)
    for name in NODE_FIELDS:
        ours, theirs = figures.get(name), node.get(name)
        if isinstance(ours, float) or isinstance(theirs, float):
            same = ours is not None and theirs is not None and abs(ours - theirs) < 1e-9
        else:
            same = ours == theirs
        agrees = agrees and same
        rows.append({"figure": name, "node": theirs, "queue_log": ours, "agree": same})
    if count["open"]:
        agrees = False
    return rows, agrees


# --- output ---------------------------------------------------------------------------------


def fmt(value: Any, kind: str = "") -> str:
    """A table cell: `kind` "%" a share, "s" seconds, "n" a count (a model's: rounded)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if kind == "%":
        return f"{value:.1%}"
    if kind == "s":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.0f}" if kind == "n" else f"{value:.2f}"
    return str(value)


def render(result: Result) -> str:
    scn, hour = result.scenario, result.busy_hour
    a, c = result.erlang_a, result.erlang_c
    stable = bool(c.get("stable"))
    unstable = "unstable"
    sized = (
        f"sized for {scn.concurrent:g} calls in the system (Erlang A, Little's law)"
        if result.sized
        else "--rate"
    )
    lines = [
        f"busy hour: {scn.minutes:g} min after {scn.warmup_minutes:g} min of warm-up, time "
        f"scale {scn.time_scale:g} ({scn.offered_minutes * 60 * scn.time_scale:.0f} s of "
        f"calls), {scn.agents} agents, {scn.strategy}, seed {scn.seed}",
        f"offered {result.rate_per_hour:g} calls/h ({sized}); talk log-normal mean "
        f"{scn.talk_s:g} s sigma {scn.talk_sigma:g}, wrap-up {scn.wrap_up_s:g} s, patience "
        f"exponential mean {scn.patience_s:g} s, rings answered after "
        f"{scn.answer_after_s[0]:g}-{scn.answer_after_s[1]:g} s, {scn.no_answer:.0%} not "
        f"answered (ring timeout {scn.ring_timeout_s:g} s), max wait {scn.max_wait_s:g} s",
        f"models: handle time {scn.agent_time_s:.1f} s (ring + talk + wrap-up + missed "
        f"rings), target {scn.target_s:g} s (15 s less the ring); traffic "
        f"{a['traffic_erlangs']:.1f} erlangs on {scn.agents} agents",
        "times in busy-hour seconds (wall clock / time scale)",
        "",
    ]
    expected = result.rate_per_hour * scn.minutes / 60  # Poisson mean of the calls offered
    rows = [
        ("calls offered (entered the queue)", hour["offered"], expected, expected, "n"),
        ("answered", hour["answered"], expected * (1 - a["p_abandon"]),
         expected if stable else unstable, "n"),
        ("  within 15 s", hour["answered_in_time"], expected * a["service_level"],
         expected * c["service_level"] if stable else unstable, "n"),
        ("abandoned", hour["abandoned"], expected * a["p_abandon"],
         0.0 if stable else unstable, "n"),
        ("  within 20 s of entering", hour["abandoned_short"], None, None, ""),
        ("  after 20 s or more", hour["abandoned_long"], None, None, ""),
        ("left at max wait", hour["overflowed"], None, None, ""),
        ("still in the queue at the end", hour["open"], None, None, ""),
        ("service level (answered <= 15 s / offered)", hour["service_level"],
         a["service_level"], c["service_level"] if stable else unstable, "%"),
        ("human answer rate (RPT-3, 20 s exclusion)", hour["human_answer_rate"], None,
         None, "%"),
        ("abandon rate (abandoned / offered)", hour["abandon_rate"], a["p_abandon"],
         0.0 if stable else unstable, "%"),
        ("abandon rate >= 20 s (of offered - short)", hour["abandon_rate_long"], None,
         None, "%"),
        ("average speed of answer, s", hour["asa_s"], None,
         c.get("wait_to_answer_s") if stable else unstable, "s"),
        ("average wait, all calls, s", hour["wait_mean_s"], a["wait_to_answer_s"],
         c.get("wait_to_answer_s") if stable else unstable, "s"),
        ("95th percentile wait, all calls, s", hour["wait_p95_s"], None, None, "s"),
        ("95th percentile wait, answered, s", hour["answered_wait_p95_s"], None, None, "s"),
        ("average talk time, s", hour["talk_mean_s"], scn.talk_s, scn.talk_s, "s"),
        ("average handle time (talk + wrap-up), s", hour["aht_s"], scn.aht_s, scn.aht_s, "s"),
        ("agent occupancy (ring, talk, wrap-up)", hour["occupancy"], a["occupancy"],
         c["occupancy"] if stable else unstable, "%"),
        ("calls in the system, mean", hour["in_system_mean"], a["in_system_mean"], None, ""),
        ("calls in the system, max (whole run)", hour["in_system_max"], None, None, ""),
        ("agent rings (offers) / not answered",
         f"{hour['offers']} / {hour['no_answers']}", None, None, ""),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    lines.append(f"{'figure':<{width}}  {'measured':>10}  {'Erlang A':>10}  {'Erlang C':>10}")
    for name, measured, model_a, model_c, kind in rows:
        cells = [fmt(value, kind) for value in (measured, model_a, model_c)]
        lines.append(f"{name:<{width}}  {cells[0]:>10}  {cells[1]:>10}  {cells[2]:>10}")
    if not stable:
        lines.append(
            f"Erlang C: {a['traffic_erlangs']:.1f} erlangs offered to {scn.agents} agents "
            "has no steady state without callers giving up"
        )
    lines += [
        "",
        f"the node's live KPIs (hotline status --json) and the queue log, all "
        f"{result.node_check[0]['queue_log'] if result.node_check else 0} calls, "
        "with the node's wall-clock thresholds (15 s, 20 s):",
        f"{'figure':<20}  {'node':>10}  {'queue log':>10}  agree",
    ]
    for row in result.node_check:
        kind = "%" if row["figure"] in ("service_level", "human_answer_rate") else ""
        lines.append(
            f"{row['figure']:<20}  {fmt(row['node'], kind):>10}  "
            f"{fmt(row['queue_log'], kind):>10}  {'yes' if row['agree'] else 'NO'}"
        )
    samples = result.node_samples
    sipp = result.sipp
    lost = result.placed - result.entered
    lines += [
        "",
        f"calls placed {result.placed}, SIPp completed {sipp.get('SuccessfulCall(C)', 0)} "
        f"failed {sipp.get('FailedCall(C)', 0)}; agent UAS failed calls "
        f"{fmt(result.uas_failed_calls)}; calls in the CDR {hour['calls_in_cdr']}, "
        f"lost before the queue {lost}",
        f"node status every {SAMPLE_EVERY_S:g} s: calls in progress max "
        f"{fmt(samples['calls_max'])} mean {fmt(samples['calls_mean'])}, waiting max "
        f"{fmt(samples['waiting_max'])} mean {fmt(samples['waiting_mean'])} "
        f"({samples['count']} samples)",
        f"node KPIs agree with the queue log: {'yes' if result.node_agrees else 'NO'}; "
        f"wall time {result.wall_s:.0f} s",
    ]
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------


def parse_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        values = float(low), float(high or low)
    except ValueError:
        raise bhca.BenchError(f"--answer-after {text!r}: expected LOW-HIGH seconds") from None
    if not 0 <= values[0] <= values[1]:
        raise bhca.BenchError(f"--answer-after {text!r}: expected 0 <= LOW <= HIGH")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Busy-hour ACD replay through the real node: RPT-3 KPIs from the queue "
        "log, the node's live KPIs, Erlang A and C."
    )
    add = parser.add_argument
    add("--agents", type=int, default=18, help="agents (18)")
    add("--concurrent", type=float, default=35.0, help="calls in the system to size for (35)")
    add("--rate", type=float, help="calls per hour instead of sizing for --concurrent")
    add("--minutes", type=float, default=60.0, help="busy-hour minutes measured (60)")
    add("--warmup", type=float, default=5.0, help="minutes of calls before them (5)")
    add("--time-scale", type=float, default=0.05, help="wall seconds per busy-hour second")
    add("--seed", type=int, default=1, help="seed of calls and rings (1)")
    add("--aht", type=float, default=180.0, help="mean handle time, talk + wrap-up, s (180)")
    add("--wrap-up", type=float, default=0.0, help="wrap-up after each call, s (0)")
    add("--talk-sigma", type=float, default=0.6, help="sigma of log(talk time) (0.6)")
    add("--patience", type=float, default=120.0, help="mean caller patience, s (120)")
    add("--answer-after", default="2-6", help="an agent answers after LOW-HIGH s (2-6)")
    add("--no-answer", type=float, default=0.03, help="share of rings not answered (0.03)")
    add("--ring-timeout", type=float, default=20.0, help="queue ring timeout, s (20)")
    add("--max-wait", type=float, default=300.0, help="queue max wait, s (300)")
    add("--retry", type=float, default=5.0, help="queue retry after a missed ring, s (5)")
    add("--strategy", default="longest_idle", help="queue strategy (longest_idle)")
    add("--record", action="store_true", help="record calls (default: recording off)")
    add("--hotline-command", default=f"{sys.executable} -m softswitch.cli")
    add("--hotline-log-level", default="WARNING", help="hotline --log-level (WARNING)")
    add("--pin", choices=("auto", "yes", "no"), default="auto", help="node CPU 0, SIPp CPU 1")
    add("--max-seconds", type=float, default=1200.0, help="bound of the run (1200)")
    add("--workdir", help="keep logs, SIPp files and the node's data here")
    add("--json", metavar="PATH", help="also write the figures as JSON (- : stdout)")
    add("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


#: `Scenario` fields and the options (argparse dests) they come from, --answer-after aside.
SCENARIO_OPTIONS = {
    "agents": "agents", "concurrent": "concurrent", "minutes": "minutes",
    "warmup_minutes": "warmup", "time_scale": "time_scale", "seed": "seed", "aht_s": "aht",
    "wrap_up_s": "wrap_up", "talk_sigma": "talk_sigma", "patience_s": "patience",
    "no_answer": "no_answer", "ring_timeout_s": "ring_timeout", "max_wait_s": "max_wait",
    "retry_s": "retry", "strategy": "strategy", "rate_per_hour": "rate",
}  # fmt: skip


def scenario(args: argparse.Namespace) -> Scenario:
    """The options as a checked `Scenario` (BenchError naming the option otherwise)."""
    scale = args.time_scale
    checks = [
        (args.agents >= 1, "--agents: at least 1"),
        (args.concurrent > 0, "--concurrent: > 0"),
        (args.rate is None or args.rate > 0, "--rate: > 0"),
        (args.minutes > 0 and args.warmup >= 0, "--minutes > 0, --warmup >= 0"),
        (0 < scale <= 1, "--time-scale: in (0, 1]"),
        (0 <= args.wrap_up < args.aht, "--wrap-up: 0 <= wrap-up < --aht"),
        (args.talk_sigma >= 0 and args.patience > 0, "--talk-sigma >= 0, --patience > 0"),
        (0 <= args.no_answer < 1, "--no-answer: a share in [0, 1)"),
        (args.ring_timeout * scale >= 1, "--ring-timeout x --time-scale: >= 1 s (node minimum)"),
        (args.max_wait * scale >= 1, "--max-wait x --time-scale: >= 1 s (the node's minimum)"),
        (args.retry >= 0, "--retry: >= 0"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise bhca.BenchError(message)
    answer_after = parse_range(args.answer_after)
    if answer_after[1] >= args.ring_timeout:
        raise bhca.BenchError("--answer-after: must end before --ring-timeout")
    fields = {field: getattr(args, option) for field, option in SCENARIO_OPTIONS.items()}
    return Scenario(answer_after_s=answer_after, **fields)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scn = scenario(args)
    except bhca.BenchError as error:
        print(f"acd_busy_hour: {error}", file=sys.stderr)
        return 2
    if shutil.which(bhca.SIPP) is None:
        print(f"acd_busy_hour: {bhca.SIPP} not found (apt-get install sip-tester)", file=sys.stderr)
        return 2
    try:
        result = run(args, scn)
    except bhca.BenchError as error:
        print(f"acd_busy_hour: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("acd_busy_hour: interrupted; every process stopped", file=sys.stderr)
        return 130
    print(render(result))
    if args.json:
        encoded = msgspec.json.format(msgspec.json.encode(result), indent=2)
        if args.json == "-":
            sys.stdout.write(encoded.decode() + "\n")
        else:
            Path(args.json).write_bytes(encoded + b"\n")
    failed = result.sipp.get("FailedCall(C)", 0) or not result.node_agrees
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
