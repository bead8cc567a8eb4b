"""``hotline loadtest run --engine sipp``, the pure parts: what each SIPp process gets and what
its log says about every call.

- `split_calls`: the trace's calls dealt round-robin to N generators (SIPp processes), in
  arrival order, so each offers 1/N of the rate at every moment.
- `injection_file`: one generator's SIPp injection file (``-inf``, ``SEQUENTIAL``: SIPp call
  number k takes line k), fields as `loadtest.sipp_scenario` reads them, every time in real
  milliseconds (trace seconds × time scale).
- `creation_rate`: SIPp starts calls at a constant rate (``-r``); each call then pauses until
  its own time. The rate is the lowest that creates every call before it is due (call i,
  0-based, is created about i / rate seconds after SIPp starts), with a margin.
- `parse_log` and `call_result`: the scenario's ``<log>`` lines (``call_id;event;time``) back
  into `loadtest.report.CallResult`s, on the run's clock (seconds from the run's t0).
- `call_id_of`: the SIP Call-ID SIPp gives a call (``-cid_str``), which the run's emulated
  agents need to tell a caller that an agent answered it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import msgspec

from loadtest.report import CallResult, Outcome
from loadtest.trace import TraceCall

CID_FORMAT = "lt-%u-%p@%s"  # SIPp -cid_str: call number, SIPp's pid, local address
RATE_MARGIN = 2.0  # SIPp spreads its calls over each second; paused calls cost little
MIN_RATE = 10.0


class SippLogError(Exception):
    """A SIPp log line that is not one of the scenario's: one line."""


def split_calls(calls: Sequence[TraceCall], generators: int) -> list[list[TraceCall]]:
    """The calls of each of `generators` SIPp processes: call i goes to generator i mod N."""
    if generators < 1:
        raise ValueError("generators must be >= 1")
    parts: list[list[TraceCall]] = [[] for _ in range(generators)]
    for index, call in enumerate(calls):
        parts[index % generators].append(call)
    return parts


def _ms(seconds: float) -> str:
    return str(max(0, round(seconds * 1000.0)))


def injection_line(call: TraceCall, time_scale: float, forever_ms: int) -> str:
    """``call_id;due_ms;caller;called;keys;patience_ms;talk_ms`` for one call. ``keys`` is
    ``K@THINK_MS,…,.``; a caller without patience waits `forever_ms`."""
    keys = "".join(f"{k.key}@{_ms(k.think_s * time_scale)}," for k in call.keys) + "."
    patience = str(forever_ms) if call.patience_s is None else _ms(call.patience_s * time_scale)
    fields = (
        call.call_id,
        _ms(call.offset_s * time_scale),
        call.caller,
        call.called,
        keys,
        patience,
        _ms(call.talk_s * time_scale),
    )
    for field in fields:
        if ";" in field or "\n" in field:
            raise ValueError(f"call {call.call_id}: a field holds ';' or a line break")
    return ";".join(fields)


def injection_file(calls: Sequence[TraceCall], time_scale: float, forever_ms: int) -> str:
    """The ``-inf`` file of one generator."""
    lines = ["SEQUENTIAL"] + [injection_line(c, time_scale, forever_ms) for c in calls]
    return "\n".join(lines) + "\n"


def creation_rate(due_s: Sequence[float], lead_s: float) -> float:
    """Calls per second for SIPp's ``-r`` so that call i (created i / rate s after SIPp
    starts) exists before it is due at ``lead_s + due_s[i]``; `RATE_MARGIN` above that."""
    need = MIN_RATE
    for index, due in enumerate(due_s):
        if index:
            need = max(need, index / max(due + lead_s, 1e-3))
    return math.ceil(need * RATE_MARGIN * 10) / 10


def call_id_of(call_number: int, pid: int, local_ip: str) -> str:
    """The Call-ID SIPp gives its call `call_number` with ``-cid_str`` `CID_FORMAT`."""
    return (
        CID_FORMAT.replace("%u", str(call_number)).replace("%p", str(pid)).replace("%s", local_ip)
    )


class Event(msgspec.Struct, frozen=True, array_like=True):
    name: str  # invite, provisional, answered, key:K, status:N, …
    at: float  # epoch seconds


def parse_log(lines: Iterable[str]) -> dict[str, list[Event]]:
    """Each call's events in log order from the lines ``call_id;event;[timestamp]`` (SIPp's
    timestamp is ``date<TAB>time<TAB>epoch.micro``). Other lines (SIPp's own) are skipped;
    a line of the scenario's shape whose time cannot be read raises `SippLogError`."""
    events: dict[str, list[Event]] = {}
    for line in lines:
        parts = line.rstrip("\n").split(";")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            continue
        stamp = parts[2].split()
        try:
            at = float(stamp[-1])
        except (IndexError, ValueError):
            raise SippLogError(f"SIPp log: unreadable time in {line.strip()!r}") from None
        events.setdefault(parts[0], []).append(Event(parts[1], at))
    return events


class AgentAnswer(msgspec.Struct, frozen=True):
    """What the emulated agents saw of a call: who answered it, when (run seconds)."""

    agent: str
    at: float


def call_result(
    call: TraceCall,
    events: Sequence[Event],
    t0: float,
    *,
    agent: AgentAnswer | None = None,
    cut: bool = False,
    sip_call_id: str = "",
) -> CallResult:
    """The `CallResult` of one trace call from its SIPp events (epoch seconds, `t0` the run's
    start as epoch seconds: results are in seconds from it). `agent`: the emulated agent that
    answered it, if any; `cut`: the run was ended early (``--max-seconds``, a signal, or SIPp
    stopped by the run), so a call without an end was cut rather than failed."""
    r = CallResult(call_id=call.call_id, offset_s=call.offset_s, sip_call_id=sip_call_id)
    first: dict[str, float] = {}
    keys = 0
    statuses: list[int] = []
    for event in events:
        first.setdefault(event.name, event.at - t0)
        if event.name.startswith("key:"):
            keys += 1
        elif event.name.startswith("status:"):
            try:
                statuses.append(int(event.name.partition(":")[2]))
            except ValueError:
                raise SippLogError(f"SIPp log: {call.call_id}: bad {event.name!r}") from None
    r.keys_sent = keys
    r.invite_at = first.get("invite")
    if r.invite_at is None:
        return r  # never attempted
    r.keys_skipped = max(0, len(call.keys) - keys)
    responses = [first[n] for n in ("provisional", "answered") if n in first]
    if statuses:
        responses.append(min(first[n] for n in first if n.startswith("status:")))
    r.first_response_at = min(responses, default=None)
    r.node_answer_at = first.get("answered")
    talked = "agent" in first
    if "waiting" in first:
        r.waiting_at = first["waiting"]
    elif talked or "abandon" in first or "remote_bye" in first or statuses:
        # no IVR answered first: a queue route waits from its first response (as the
        # project's own caller does)
        r.waiting_at = first.get("provisional", r.first_response_at)
        if r.node_answer_at is not None and not talked:
            r.waiting_at = None  # answered but ended before waiting: not queued
    if talked:
        r.agent_answer_at = agent.at if agent is not None else first["agent"]
        r.agent = agent.agent if agent is not None else ""
    r.ended_at = first.get("end")
    # no 2xx to our BYE: its own timeout, or SIPp gave up retransmitting it (or was stopped)
    r.bye_failed = "bye_failed" in first or ("bye" in first and "bye_ok" not in first)
    r.status = statuses[0] if statuses else None
    cut = cut or "cut" in first
    if talked:
        r.outcome = Outcome.ANSWERED
        r.cut_short = cut and ("cut" in first or r.ended_at is None)
        r.premature = "remote_bye" in first and "bye" not in first  # the node hung up first
    elif "abandon" in first:
        r.outcome = Outcome.ABANDONED
    elif "cut" in first:
        r.outcome = Outcome.CUT
    elif statuses:
        status = statuses[0]
        failed = status >= 500 or status == 408
        r.outcome = Outcome.FAILED if failed else Outcome.RELEASED
        r.reason = f"{status}"
    elif "remote_bye" in first:
        r.outcome = Outcome.RELEASED
        r.reason = "BYE from the node"
    elif r.ended_at is None and cut:
        r.outcome = Outcome.CUT
    else:
        r.outcome = Outcome.FAILED
        r.reason = "SIPp aborted the call (no response, or a message the scenario does not take)"
    if r.outcome is not Outcome.ANSWERED and r.outcome is not Outcome.CUT and r.ended_at is None:
        r.ended_at = max(e.at for e in events) - t0
    return r


def start_lateness_ms(results: Sequence[CallResult], time_scale: float) -> list[float]:
    """How late each attempted call's INVITE was against its trace time, real ms (≥ 0:
    a call a little early counts as on time)."""
    return [
        max(0.0, (r.invite_at - r.offset_s * time_scale) * 1000.0)
        for r in results
        if r.invite_at is not None
    ]
