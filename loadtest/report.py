"""The report of `hotline loadtest run`: what happened to each call, and the figures of a run.

Pure arithmetic on `CallResult`s (no I/O, no clock), so every figure is tested with made-up
calls. Times in a `CallResult` are seconds on the run's clock (the event loop's monotonic
time); the report turns them into:

- node latencies in milliseconds of real time (setup time: INVITE → first 1xx or 200; IVR
  response: the IVR's 200 → its first RTP packet), never scaled: they are the switch's own;
- caller experience in seconds of *trace time* (run seconds / time scale): queue waits, the
  15 s service level and the 20 s short-abandon exclusion of SPEC RPT-3, so that a trace
  replayed ten times faster is judged by the same thresholds as the real day it stands for;
- BHCA: the attempts of the busiest hour of trace time (a sliding window of 3600 · scale run
  seconds); a run shorter than one trace hour gives its attempt rate per trace hour instead
  (`bhca_extrapolated`). `bhca_run` is the same attempts per hour of real time: the rate the
  switch actually carried.

Outcomes (`Outcome`): answered (an emulated agent answered the call), abandoned (the caller's
patience ran out first: CANCEL or BYE), released (the node ended the call before an agent
answered: a 4xx/6xx final response such as 404 or the queue's 480, or its BYE), failed (no
final response, 5xx, 408, a transport error, an unusable answer) and cut (not answered by an
agent and still up when `--max-seconds` ended the run; an answered call still talking then
stays answered, flagged `cut_short`). The call processing failure rate is failed / attempted.
An answered call the node ends with its BYE before either party hung up (the caller hangs up
first in a replay; emulated agents never do) is flagged `premature`: the tender's premature
release, counted per answered call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

import msgspec

from loadtest.erlang import ErlangA, ErlangC, Verdict, compare, erlang_a_model, erlang_c_model
from loadtest.sample import NodeUsage
from loadtest.trace import Trace, TraceCall

SERVICE_LEVEL_S = 15.0  # SPEC RPT-3: answered within 15 s (three rings)
SHORT_ABANDON_S = 20.0  # SPEC RPT-3: callers gone within 20 s are left out of the answer rate
HOUR_S = 3600.0


class Outcome(Enum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    RELEASED = "released"
    FAILED = "failed"
    CUT = "cut"


class CallResult(msgspec.Struct, kw_only=True):
    """One trace call as the run saw it (run-clock seconds; None: never happened)."""

    call_id: str
    offset_s: float  # the trace's arrival offset
    sip_call_id: str = ""
    invite_at: float | None = None  # None: never attempted
    first_response_at: float | None = None  # first 1xx or 200
    node_answer_at: float | None = None  # the 200 (the IVR's, or the agent's for a queue route)
    first_rtp_at: float | None = None
    waiting_at: float | None = None  # IVR done: the caller waits for an agent from here
    agent_answer_at: float | None = None
    agent: str = ""
    ended_at: float | None = None
    status: int | None = None  # the INVITE's final status
    outcome: Outcome | None = None
    reason: str = ""  # why, for failed and released calls
    keys_sent: int = 0
    keys_skipped: int = 0  # keys of the trace never pressed (no IVR answered)
    bye_failed: bool = False  # our BYE got no 2xx
    cut_short: bool = False  # answered, and still talking when --max-seconds ended the run
    # answered, then ended by the node's BYE before either party hung up (the caller hangs
    # up first in a replay, emulated agents never do): the tender's premature release
    premature: bool = False


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    max: float | None


class Kpis(msgspec.Struct, frozen=True, kw_only=True):
    """SPEC RPT-3 over the calls that reached the queue (waited for an agent)."""

    queued: int
    answered: int
    answered_in_time: int  # within SERVICE_LEVEL_S trace seconds of waiting
    abandoned: int
    abandoned_short: int  # within SHORT_ABANDON_S trace seconds of waiting
    service_level: float | None  # answered_in_time / queued
    human_answer_rate: float | None  # answered / (queued - abandoned_short)
    mean_wait_s: float | None  # over queued calls: until answered, abandoned or released


class Staffing(msgspec.Struct, frozen=True, kw_only=True):
    """The queueing model beside the measurement, or why there is none."""

    applicable: bool
    why: str
    model: ErlangC | ErlangA | None = None
    verdict: Verdict | None = None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    trace: str
    target: str
    time_scale: float
    agents: int
    answer_delay_s: float  # trace seconds
    interrupted: bool  # SIGINT/SIGTERM ended the run early
    run_seconds: float
    offered: int
    attempted: int
    answered: int
    abandoned: int
    released: int
    failed: int
    cut: int  # unanswered calls still up at the end of the run
    cut_short: int  # answered calls still talking at the end of the run (in `answered`)
    failure_rate: float | None
    bhca: float | None
    bhca_extrapolated: bool
    bhca_run: float | None
    setup_ms: Percentiles
    ivr_response_ms: Percentiles
    queue_wait_s: Percentiles
    kpis: Kpis
    staffing: Staffing
    correlation: dict[str, int]  # agent INVITEs: matched, ambiguous, unmatched
    failures: dict[str, int]  # reason → calls
    bye_failures: int
    keys_sent: int
    keys_skipped: int
    node: NodeUsage | None = None  # --node-pid: the node's CPU and memory
    engine: str = "python"  # who played the callers: "python" (the project's) or "sipp"
    generators: int = 1  # caller processes (SIPp engine)
    not_measured: tuple[str, ...] = ()  # figures this engine cannot measure (field names)
    start_lateness_ms: Percentiles | None = None  # INVITE after its trace time (SIPp engine)
    # answered calls the node ended before either party did, and their share of the answered
    # (None in a report saved before they were counted)
    premature_releases: int | None = None
    premature_release_rate: float | None = None


# --- figures ----------------------------------------------------------------------------------
def nearest_rank(sorted_values: Sequence[float], percent: float) -> float | None:
    """The `percent`-th percentile by nearest rank (the smallest value with at least
    `percent` % of the values at or below it); None for no values."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(percent / 100.0 * n))
    return sorted_values[min(rank, n) - 1]


def percentiles(values: Sequence[float]) -> Percentiles:
    ordered = sorted(values)
    n = len(ordered)
    return Percentiles(
        count=n,
        p50=nearest_rank(ordered, 50),
        p95=nearest_rank(ordered, 95),
        p99=nearest_rank(ordered, 99),
        mean=sum(ordered) / n if n else None,
        max=ordered[-1] if n else None,
    )


def bhca(attempt_times: Sequence[float], time_scale: float) -> tuple[float | None, bool]:
    """(attempts of the busiest trace hour, extrapolated?) for attempts at these run times.

    The window is one trace hour, 3600 · `time_scale` run seconds, slid over the attempts
    (it starts at an attempt). When the attempts span less than a trace hour the window
    would hold all of them whatever the rate: the figure is then their rate per trace hour
    (attempts / span), flagged as extrapolated; a single attempt gives None."""
    times = sorted(attempt_times)
    if not times:
        return None, False
    window = HOUR_S * time_scale
    span = times[-1] - times[0]
    if span < window:
        if len(times) < 2 or span <= 0:
            return None, True
        return len(times) * window / span, True
    best = 0
    start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return float(best), False


def kpis(calls: Sequence[CallResult], time_scale: float) -> Kpis:
    """RPT-3 over the calls that waited for an agent, thresholds in trace seconds."""
    queued = answered = in_time = abandoned = short = 0
    waits: list[float] = []
    for call in calls:
        if call.waiting_at is None:
            continue
        queued += 1
        if call.outcome is Outcome.ANSWERED and call.agent_answer_at is not None:
            answered += 1
            wait = max(0.0, call.agent_answer_at - call.waiting_at) / time_scale
            in_time += wait <= SERVICE_LEVEL_S
            waits.append(wait)
        elif call.ended_at is not None:
            wait = max(0.0, call.ended_at - call.waiting_at) / time_scale
            waits.append(wait)
            if call.outcome is Outcome.ABANDONED:
                abandoned += 1
                short += wait <= SHORT_ABANDON_S
    counted = queued - short
    return Kpis(
        queued=queued,
        answered=answered,
        answered_in_time=in_time,
        abandoned=abandoned,
        abandoned_short=short,
        service_level=in_time / queued if queued else None,
        human_answer_rate=answered / counted if counted > 0 else None,
        mean_wait_s=sum(waits) / len(waits) if waits else None,
    )


def _mean_of(distribution: str) -> tuple[str, float] | None:
    """("exp", mean) of a generator distribution text such as ``exp:180`` or ``fixed:15``."""
    kind, _, rest = distribution.partition(":")
    try:
        return kind, float(rest.split(":")[0])
    except ValueError:
        return None


def staffing(
    trace: Trace,
    agents: int,
    wrap_up_s: float,
    measured: Kpis,
    queues: int = 1,
    answer_delay_s: float = 0.0,
    replayed: Sequence[TraceCall] = (),
) -> Staffing:
    """Erlang C (callers who wait forever) or Erlang A (exponential patience) for a trace
    made by `hotline loadtest generate` with the flat profile (homogeneous Poisson arrivals)
    and exponential talk times. Anything else: not applicable, and why.

    The agents' ring (`answer_delay_s`, trace seconds) is part of both sides: an agent is
    busy from the INVITE, so handle time = ring + mean talk + `wrap_up_s` (the node's queue
    wrap-up: emulated agents do none of their own); and the measured wait ends at the
    answer, so it is the model's queue wait plus the ring: the model's service level is
    taken at 15 s − ring, and the measured mean wait less the ring is set against the
    model's.

    With `replayed` (the trace calls the run attempted, two or more) the model takes their
    own arrival rate ((n − 1) / the span of their offsets), mean talk and mean patience
    rather than the generator's parameters: the comparison is then with the sample the
    agents really got, not with the population it was drawn from."""
    meta = trace.metadata
    if meta.get("generator") != "hotline loadtest generate":
        return Staffing(applicable=False, why="not a generated trace (no Poisson arrivals)")
    if meta.get("profile") != "flat":
        return Staffing(
            applicable=False,
            why=f"profile {meta.get('profile')!r}: arrival rate varies by hour (use flat)",
        )
    talk = _mean_of(meta.get("talk", ""))
    if talk is None or talk[0] != "exp":
        return Staffing(applicable=False, why=f"talk {meta.get('talk')!r} is not exponential")
    if agents < 1:
        return Staffing(applicable=False, why="no emulated agents")
    if queues > 1:
        return Staffing(applicable=False, why=f"calls went to {queues} queues, not one")
    try:
        rate = float(meta.get("bhca", ""))
    except ValueError:
        return Staffing(applicable=False, why="no bhca in the trace's metadata")
    patience = meta.get("patience", "none")
    mean_talk = talk[1]
    span = replayed[-1].offset_s - replayed[0].offset_s if len(replayed) > 1 else 0.0
    if span > 0:
        rate = (len(replayed) - 1) / span * HOUR_S
        mean_talk = sum(c.talk_s for c in replayed) / len(replayed)
        waits = [c.patience_s for c in replayed if c.patience_s is not None]
        if patience != "none" and waits:
            patience = str(sum(waits) / len(waits))
    ring = answer_delay_s
    handle = ring + mean_talk + wrap_up_s
    target = max(0.0, SERVICE_LEVEL_S - ring)
    model: ErlangC | ErlangA
    if patience == "none":
        model = erlang_c_model(rate, handle, agents, target)
        why = "Erlang C (M/M/c): Poisson arrivals, exponential handle time, no abandons"
    else:
        model = erlang_a_model(rate, handle, agents, float(patience), target)
        why = "Erlang A (M/M/c+M): as Erlang C, with exponential patience"
    verdict = None
    if measured.service_level is not None and measured.mean_wait_s is not None:
        wait = max(0.0, measured.mean_wait_s - ring)
        verdict = compare(model, measured.service_level, wait)
    return Staffing(applicable=True, why=why, model=model, verdict=verdict)


def setup_ms(call: CallResult) -> float | None:
    """INVITE → first 1xx or 200 in real milliseconds; None without a response."""
    if call.first_response_at is None or call.invite_at is None:
        return None
    return (call.first_response_at - call.invite_at) * 1000.0


def queue_wait_s(call: CallResult, time_scale: float) -> float | None:
    """IVR done → the agent's 200 in trace seconds, for a call an agent answered."""
    if call.outcome is not Outcome.ANSWERED or call.agent_answer_at is None:
        return None
    if call.waiting_at is None:
        return None
    return max(0.0, call.agent_answer_at - call.waiting_at) / time_scale


def _replayed(trace: Trace, calls: Sequence[CallResult]) -> list[TraceCall]:
    """The trace calls the run attempted, in arrival order."""
    attempted = {c.call_id for c in calls if c.invite_at is not None}
    return [c for c in trace.calls if c.call_id in attempted]


def build_report(
    calls: Sequence[CallResult],
    *,
    trace: Trace,
    trace_name: str,
    target: str,
    time_scale: float,
    agents: int,
    run_seconds: float,
    wrap_up_s: float = 0.0,
    answer_delay_s: float = 0.0,
    correlation: dict[str, int] | None = None,
    queues: int = 1,
    interrupted: bool = False,
    node: NodeUsage | None = None,
    engine: str = "python",
    generators: int = 1,
    not_measured: tuple[str, ...] = (),
    start_lateness_ms: Percentiles | None = None,
) -> Report:
    """Every figure of the run from its calls (see the module docstring)."""
    counts = {o: 0 for o in Outcome}
    failures: dict[str, int] = {}
    for call in calls:
        if call.outcome is not None:
            counts[call.outcome] += 1
        if call.outcome is Outcome.FAILED:
            failures[call.reason or "failed"] = failures.get(call.reason or "failed", 0) + 1
    premature = sum(1 for c in calls if c.premature and c.outcome is Outcome.ANSWERED)
    attempts = [c.invite_at for c in calls if c.invite_at is not None]
    attempted = len(attempts)
    hour, extrapolated = bhca(attempts, time_scale)
    setup = [ms for ms in map(setup_ms, calls) if ms is not None]
    ivr = [  # 0 when the first packet was read before the 200 (same loop turn, or early audio)
        max(0.0, c.first_rtp_at - c.node_answer_at) * 1000.0
        for c in calls
        if c.first_rtp_at is not None and c.node_answer_at is not None
    ]
    waits = [w for w in (queue_wait_s(c, time_scale) for c in calls) if w is not None]
    measured = kpis(calls, time_scale)
    return Report(
        trace=trace_name,
        target=target,
        time_scale=time_scale,
        agents=agents,
        run_seconds=run_seconds,
        offered=len(calls),
        attempted=attempted,
        answered=counts[Outcome.ANSWERED],
        abandoned=counts[Outcome.ABANDONED],
        released=counts[Outcome.RELEASED],
        failed=counts[Outcome.FAILED],
        cut=counts[Outcome.CUT],
        cut_short=sum(1 for c in calls if c.cut_short),
        failure_rate=counts[Outcome.FAILED] / attempted if attempted else None,
        bhca=hour,
        bhca_extrapolated=extrapolated,
        bhca_run=hour / time_scale if hour is not None else None,
        setup_ms=percentiles(setup),
        ivr_response_ms=percentiles(ivr),
        queue_wait_s=percentiles(waits),
        kpis=measured,
        staffing=staffing(
            trace, agents, wrap_up_s, measured, queues, answer_delay_s, _replayed(trace, calls)
        ),
        answer_delay_s=answer_delay_s,
        interrupted=interrupted,
        node=node,
        engine=engine,
        generators=generators,
        not_measured=not_measured,
        start_lateness_ms=start_lateness_ms,
        correlation=dict(correlation or {}),
        failures=failures,
        bye_failures=sum(1 for c in calls if c.bye_failed),
        premature_releases=premature,
        premature_release_rate=premature / counts[Outcome.ANSWERED]
        if counts[Outcome.ANSWERED]
        else None,
        keys_sent=sum(c.keys_sent for c in calls),
        keys_skipped=sum(c.keys_skipped for c in calls),
    )


# --- text -------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _row(name: str, p: Percentiles, unit: str, digits: int) -> str:
    return (
        f"  {name:<28} {p.count:>6}  p50 {_num(p.p50, digits):>9}  p95 {_num(p.p95, digits):>9}"
        f"  p99 {_num(p.p99, digits):>9}  max {_num(p.max, digits):>9} {unit}"
    )


def format_report(report: Report) -> list[str]:
    """The report as printed: counts, rates, latencies, KPIs, the staffing model."""
    r = report
    k = r.kpis
    bhca_note = " (rate over a run shorter than one trace hour)" if r.bhca_extrapolated else ""
    engine = (
        f", callers: {r.generators} SIPp process{'es' if r.generators > 1 else ''}"
        if r.engine == "sipp"
        else ""
    )
    lines = [
        f"trace {r.trace} → {r.target}, time scale {r.time_scale:g}, {r.agents} emulated "
        f"agents, {r.run_seconds:.1f} s{engine}",
        f"  calls offered {r.offered}, attempted {r.attempted}, answered {r.answered}, "
        f"abandoned {r.abandoned}, released by the node {r.released}, failed {r.failed}, "
        f"cut {r.cut}" + (f" (and {r.cut_short} answered calls cut short)" if r.cut_short else ""),
        f"  call processing failure rate {_num(r.failure_rate, 6)}"
        + (
            f"  ({', '.join(f'{n} {why}' for why, n in sorted(r.failures.items()))})"
            if r.failures
            else ""
        ),  # fmt: skip
        f"  BHCA {_num(r.bhca, 0)} per trace hour{bhca_note}; {_num(r.bhca_run, 0)} per real hour",
        _row("setup (INVITE → 1xx/200)", r.setup_ms, "ms", 1),
        _row("IVR response (200 → RTP)", r.ivr_response_ms, "ms", 1)
        if "ivr_response_ms" not in r.not_measured
        else f"  {'IVR response (200 → RTP)':<28} not measured ({r.engine} engine)",
        _row("queue wait (IVR done → agent)", r.queue_wait_s, "s (trace)", 1),
        f"  queued {k.queued}: answered {k.answered} ({k.answered_in_time} within "
        f"{SERVICE_LEVEL_S:g} s), abandoned {k.abandoned} ({k.abandoned_short} within "
        f"{SHORT_ABANDON_S:g} s)",
        f"  service level ({SERVICE_LEVEL_S:g} s) {_share(k.service_level)}, human answer rate "
        f"{_share(k.human_answer_rate)}, mean wait {_num(k.mean_wait_s)} s",
        f"  premature releases {'-' if r.premature_releases is None else r.premature_releases}"
        f" of {r.answered} answered calls ({_num(r.premature_release_rate, 6)}): ended by the "
        "node before either party hung up",
        f"  keys pressed {r.keys_sent}, not pressed {r.keys_skipped}; BYEs unanswered "
        f"{r.bye_failures}; agent INVITEs "
        + ", ".join(f"{n} {what}" for what, n in sorted(r.correlation.items())),
    ]
    if r.start_lateness_ms is not None:
        lines.append(_row("INVITE after its trace time", r.start_lateness_ms, "ms", 1))
    if r.node is not None:
        n = r.node
        lines.append(
            f"  node pid {n.pid}: CPU {n.cpu_s:.2f} s ({_num(n.cpu_ms_per_call, 2)} ms per call, "
            f"{n.cpu_share:.0%} of one core), resident memory up to {n.rss_mb_max:.0f} MB"
            + (f", UDP receive drops {n.udp_drops}" if n.udp_drops is not None else "")
        )
    s = r.staffing
    if not s.applicable or s.model is None:
        lines.append(f"  staffing model: not printed, {s.why}")
        return lines
    m = s.model
    ring = f" + ring {r.answer_delay_s:g} s" if r.answer_delay_s else ""
    lines.append(
        f"  staffing model: {s.why}; {m.arrivals_per_s * HOUR_S:,.0f} calls/h, handle time "
        f"{m.handle_time_s:.1f} s (talk{ring} + wrap-up), {m.traffic_erlangs:.2f} erlangs on "
        f"{m.agents} agents"
    )
    lines.append(
        f"    predicted service level {_share(m.service_level)}, mean wait in queue "
        f"{_num(m.mean_wait_s)} s"
        + (f", abandons {_share(m.p_abandon)}" if isinstance(m, ErlangA) else "")
    )
    if s.verdict is not None:
        v = s.verdict
        less = " less the ring" if ring else ""
        lines.append(
            f"    measured  service level {_share(v.measured_service_level)}, mean wait in queue "
            f"{_num(v.measured_mean_wait_s)} s (the wait{less}) → "
            + ("agrees" if v.within else "differs")
            + " within the default tolerance (meaningful for long runs only; waits include"
            " what the node plays before queueing)"
        )
    return lines


def report_json(report: Report, calls: Sequence[CallResult] = ()) -> bytes:
    """The report as JSON (infinite model waits as null), with every call's `CallResult`
    under ``calls`` (run-clock seconds) when given."""
    data = msgspec.to_builtins(report)
    if calls:
        data["calls"] = msgspec.to_builtins(list(calls))
    return msgspec.json.format(msgspec.json.encode(data), indent=2) + b"\n"


class ReportFileError(Exception):
    """A saved report that cannot be read back: one line naming the file."""


# Fields the JSON writes as null when they are infinite (an unstable Erlang C queue): read
# back as +inf, except the measured − predicted difference, which is then −inf.
_INFINITE_WHEN_NULL = {
    "model": ("mean_wait_s", "mean_wait_of_waiting_s"),
    "verdict": ("predicted_mean_wait_s", "mean_wait_relative_diff"),
}


def _revive_infinities(staffing: Any) -> None:
    if not isinstance(staffing, dict):
        return
    for part, names in _INFINITE_WHEN_NULL.items():
        values = staffing.get(part)
        if isinstance(values, dict):
            for name in names:
                if name in values and values[name] is None:
                    values[name] = math.inf
            if part == "verdict" and values.get("mean_wait_diff_s", 0.0) is None:
                values["mean_wait_diff_s"] = -math.inf


def _convert_staffing(raw: Any) -> Staffing:
    """`Staffing` from its JSON: the model is ErlangC or ErlangA, untagged there (msgspec
    cannot decode such a union), so the one with a patience is Erlang A."""
    if not isinstance(raw, dict):
        raise msgspec.ValidationError("Expected `object` - at `$.staffing`")
    raw = dict(raw)
    model = raw.pop("model", None)
    erlang: ErlangC | ErlangA | None = None
    if isinstance(model, dict) and "patience_s" in model:
        erlang = msgspec.convert(model, ErlangA)
    elif model is not None:
        erlang = msgspec.convert(model, ErlangC)
    verdict = raw.pop("verdict", None)
    return Staffing(
        applicable=msgspec.convert(raw.get("applicable"), bool),
        why=msgspec.convert(raw.get("why"), str),
        model=erlang,
        verdict=None if verdict is None else msgspec.convert(verdict, Verdict),
    )


def read_report_json(data: bytes, name: str) -> tuple[Report, list[CallResult]]:
    """A report written by `report_json` (``--json``), and its calls; `ReportFileError`."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ReportFileError(f"{name}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ReportFileError(f"{name}: not a loadtest report (expected a JSON object)")
    _revive_infinities(raw.get("staffing"))
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(Report):
        if field.name not in raw:
            if field.required:
                raise ReportFileError(f"{name}: not a loadtest report: no {field.name!r}")
            continue
        try:
            if field.name == "staffing":
                values[field.name] = _convert_staffing(raw[field.name])
            else:
                values[field.name] = msgspec.convert(raw[field.name], field.type)
        except msgspec.ValidationError as exc:
            raise ReportFileError(f"{name}: {field.name}: {exc}") from None
    try:
        calls = msgspec.convert(raw.get("calls", []), list[CallResult])
    except msgspec.ValidationError as exc:
        raise ReportFileError(f"{name}: calls: {exc}") from None
    return Report(**values), calls
