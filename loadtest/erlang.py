"""Queueing models for the load-test report's staffing check (issue 12).

For a synthetic trace with Poisson arrivals and exponential handling times the report prints
what queueing theory predicts for the emulated agents beside what the run measured:

- Erlang B and Erlang C (the M/M/c queue: callers wait as long as it takes), and
- Erlang A (M/M/c+M: callers hang up after an exponentially distributed patience), which is what
  a trace with caller patience actually offers.

Handle time is everything an agent is busy with per call: talk time plus wrap-up (after-call
work). An agent in wrap-up cannot take the next call, so leaving wrap-up out of the handle time
makes the model promise a service level the switch cannot give.

Everything here is pure arithmetic on floats (no I/O, no clock). Erlang B is computed by its
recurrence B(0) = 1, B(k) = A·B(k-1) / (k + A·B(k-1)) and Erlang C from B, never from
factorials, so thousands of agents neither overflow nor lose precision. Nonsense input (a
negative rate, zero agents, a NaN) raises `ValueError` naming the argument.
"""

from __future__ import annotations

import math
import numbers
import operator

import msgspec
import numpy as np

__all__ = [
    "ErlangA",
    "ErlangC",
    "Tolerance",
    "Verdict",
    "agents_for",
    "compare",
    "erlang_a_model",
    "erlang_b",
    "erlang_c",
    "erlang_c_model",
]

# Erlang A truncates its birth-death chain where the probability left in the longer queues is
# below this share of the whole (see `erlang_a_model`).
TAIL_BOUND = 1e-12
# ...and refuses a chain that would need more queue states than this.
MAX_QUEUE_STATES = 2_000_000


class ErlangC(msgspec.Struct, frozen=True, kw_only=True):
    """Erlang C (M/M/c) prediction for one staffing: Poisson arrivals, exponential handle
    times, `agents` agents serving one FIFO queue, callers who never hang up.

    Waits are measured from the moment a call joins the queue to the moment an agent answers.
    When the offered traffic reaches the number of agents the queue grows without bound:
    `stable` is False, every call waits (`p_wait` 1.0), the mean waits are infinite and the
    service level is 0.0 (msgspec's JSON writes the infinities as null).
    """

    arrivals_per_s: float  # λ
    handle_time_s: float  # mean talk + wrap-up time per call (1/μ)
    agents: int  # c
    traffic_erlangs: float  # A = λ · handle time
    occupancy: float  # share of the agents' time spent on calls: A / c (1.0 when unstable)
    p_wait: float  # probability that a call has to wait: C(A, c)
    mean_wait_s: float  # mean wait over all calls, the ASA: C · handle time / (c - A)
    mean_wait_of_waiting_s: float  # mean wait of the calls that do wait: handle time / (c - A)
    target_s: float  # the answer time the service level is measured against
    service_level: float  # share of calls answered within target_s: 1 - C·e^(-(c-A)·t/AHT)
    stable: bool  # A < c


class ErlangA(msgspec.Struct, frozen=True, kw_only=True):
    """Erlang A (M/M/c+M) prediction: as Erlang C, but each caller hangs up after an
    exponentially distributed patience with mean `patience_s` if no agent has answered by then.

    With abandonment the queue is stable at any load. `mean_wait_s` is the mean time in queue
    over all calls, answered and abandoned alike (by Little's law, E[queue length] / λ).
    `service_level` is the share of all offered calls answered within `target_s`; a call that
    hangs up counts as missing the target whenever it hung up.
    """

    arrivals_per_s: float
    handle_time_s: float
    patience_s: float
    agents: int
    traffic_erlangs: float  # offered: λ · handle time
    occupancy: float  # mean busy agents / c, the carried λ · (1 - p_abandon) · handle time / c
    p_wait: float  # probability that a call finds all agents busy
    p_abandon: float  # probability that a call hangs up before an agent answers
    mean_wait_s: float  # mean time in queue of all calls
    target_s: float
    service_level: float  # share of all calls answered within target_s
    queue_states: int  # queue lengths the truncated chain kept (see `erlang_a_model`)


class Tolerance(msgspec.Struct, frozen=True, kw_only=True):
    """How far a measurement may lie from the model and still agree with it.

    - `service_level_points`: absolute difference of service level as a fraction; 0.03 means
      a predicted 80 % agrees with a measured 77 % to 83 %.
    - `mean_wait_relative`: difference of mean wait relative to the predicted mean wait; 0.15
      means a predicted 20 s agrees with 17 s to 23 s.
    - `mean_wait_floor_s`: the mean-wait difference that always counts as agreement, because a
      relative error is meaningless when the predicted wait is a fraction of a second.
    """

    service_level_points: float = 0.03
    mean_wait_relative: float = 0.15
    mean_wait_floor_s: float = 1.0

    def __post_init__(self) -> None:
        _share("service_level_points", self.service_level_points)
        _number("mean_wait_relative", self.mean_wait_relative)
        _number("mean_wait_floor_s", self.mean_wait_floor_s)


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """A measured service level and mean wait set against a model's (differences are
    measured minus predicted)."""

    predicted_service_level: float
    measured_service_level: float
    service_level_diff: float
    predicted_mean_wait_s: float
    measured_mean_wait_s: float
    mean_wait_diff_s: float
    mean_wait_relative_diff: float  # diff / predicted; inf when the prediction is 0 or infinite
    tolerance: Tolerance
    service_level_ok: bool
    mean_wait_ok: bool
    within: bool  # both agree


def _number(name: str, value: float, *, positive: bool = False) -> float:
    """`value` as a finite float >= 0 (> 0 when `positive`), or ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    if number < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return number


def _count(name: str, value: int, *, minimum: int) -> int:
    """`value` as an int >= `minimum`, or ValueError naming `name`."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}") from None
    if count < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return count


def _share(name: str, value: float) -> float:
    """`value` as a fraction in [0, 1], or ValueError naming `name`."""
    number = _number(name, value)
    if number > 1:
        raise ValueError(f"{name}: expected a fraction between 0 and 1, got {value!r}")
    return number


def _erlang_b_next(traffic: float, servers: int, previous: float) -> float:
    """B(servers) from B(servers - 1): the recurrence's one step."""
    return traffic * previous / (servers + traffic * previous)


def _erlang_c_from_b(traffic: float, servers: int, blocking: float) -> float:
    """C(A, c) = c·B / (c - A·(1 - B)) for A < c; 1.0 from A >= c (every call waits)."""
    if traffic >= servers:
        return 1.0
    return servers * blocking / (servers - traffic * (1.0 - blocking))


def erlang_b(traffic: float, servers: int) -> float:
    """Erlang B: the probability that a call finds all `servers` busy and is lost, for
    `traffic` erlangs offered to a loss system (no queue)."""
    traffic = _number("traffic", traffic)
    servers = _count("servers", servers, minimum=0)
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = _erlang_b_next(traffic, k, blocking)
    return blocking


def erlang_c(traffic: float, servers: int) -> float:
    """Erlang C: the probability that a call has to wait, for `traffic` erlangs offered to
    `servers` agents with an unlimited queue; 1.0 when traffic >= servers."""
    traffic = _number("traffic", traffic)
    servers = _count("servers", servers, minimum=1)
    return _erlang_c_from_b(traffic, servers, erlang_b(traffic, servers))


def _service_level_c(
    p_wait: float, traffic: float, agents: int, handle_time_s: float, target_s: float
) -> float:
    """P(wait <= t) in M/M/c: 1 - C·exp(-(c - A)·t / handle time)."""
    return 1.0 - p_wait * math.exp(-(agents - traffic) * target_s / handle_time_s)


def erlang_c_model(
    arrivals_per_hour: float, handle_time_s: float, agents: int, target_s: float = 15.0
) -> ErlangC:
    """The Erlang C prediction for `agents` agents taking `arrivals_per_hour` Poisson arrivals
    whose handle time (talk + wrap-up, the time an agent is busy per call) is exponential with
    mean `handle_time_s`; the service level is the share answered within `target_s`."""
    arrivals_per_s = _number("arrivals_per_hour", arrivals_per_hour) / 3600.0
    handle_time_s = _number("handle_time_s", handle_time_s, positive=True)
    agents = _count("agents", agents, minimum=1)
    target_s = _number("target_s", target_s)
    traffic = arrivals_per_s * handle_time_s
    stable = traffic < agents
    p_wait = erlang_c(traffic, agents)
    wait_of_waiting = handle_time_s / (agents - traffic) if stable else math.inf
    return ErlangC(
        arrivals_per_s=arrivals_per_s,
        handle_time_s=handle_time_s,
        agents=agents,
        traffic_erlangs=traffic,
        occupancy=traffic / agents if stable else 1.0,
        p_wait=p_wait,
        mean_wait_s=p_wait * wait_of_waiting,
        mean_wait_of_waiting_s=wait_of_waiting,
        target_s=target_s,
        service_level=(
            _service_level_c(p_wait, traffic, agents, handle_time_s, target_s) if stable else 0.0
        ),
        stable=stable,
    )


def agents_for(
    arrivals_per_hour: float, handle_time_s: float, service_level: float, target_s: float
) -> int:
    """The fewest agents for which Erlang C answers at least `service_level` (a fraction,
    0 < level < 1) of the calls within `target_s`; handle time as in `erlang_c_model`."""
    arrivals_per_s = _number("arrivals_per_hour", arrivals_per_hour) / 3600.0
    handle_time_s = _number("handle_time_s", handle_time_s, positive=True)
    level = _share("service_level", service_level)
    if not 0 < level < 1:
        raise ValueError(
            f"service_level: expected a fraction strictly between 0 and 1, got {service_level!r}"
        )
    target_s = _number("target_s", target_s)
    traffic = arrivals_per_s * handle_time_s
    blocking = 1.0
    agents = 0
    while True:  # ends: past A, C falls towards 0 and the service level rises to 1
        agents += 1
        blocking = _erlang_b_next(traffic, agents, blocking)
        if traffic >= agents:
            continue
        p_wait = _erlang_c_from_b(traffic, agents, blocking)
        if _service_level_c(p_wait, traffic, agents, handle_time_s, target_s) >= level:
            return agents


def _queue_distribution(
    arrivals_per_s: float, service_rate: float, abandon_rate: float, agents: int
) -> np.ndarray:
    """Stationary probabilities of 0, 1, 2 … calls in the M/M/c+M system, truncated.

    Birth rate λ in every state; death rate n·μ below c agents busy, c·μ + (n - c)·θ above.
    The chain stops at the first queue length q where the next step's ratio
    r = λ / (c·μ + (q + 1)·θ) is below 1 and π(c + q)·r / (1 - r) — a bound on all the
    probability beyond, since every further ratio is smaller still — is below TAIL_BOUND of
    the probability kept.
    """
    traffic = arrivals_per_s / service_rate
    # log π(n) up to n = c, relative to π(0): n·log A - log n!
    log_pi = [n * math.log(traffic) - math.lgamma(n + 1) for n in range(agents + 1)]
    top = max(log_pi)
    kept = sum(math.exp(x - top) for x in log_pi)
    queued = 0
    while True:
        ratio = arrivals_per_s / (agents * service_rate + (queued + 1) * abandon_rate)
        last = math.exp(log_pi[-1] - top)
        if ratio < 1 and last * ratio / (1 - ratio) < TAIL_BOUND * kept:
            break
        if queued >= MAX_QUEUE_STATES:
            raise ValueError(
                f"patience_s: the queue would need more than {MAX_QUEUE_STATES} states "
                "(arrival rate times patience is too large for this model)"
            )
        queued += 1
        log_pi.append(log_pi[-1] + math.log(ratio))
        if log_pi[-1] > top:  # keep the largest term at 1 so nothing overflows
            kept *= math.exp(top - log_pi[-1])
            top = log_pi[-1]
        kept += math.exp(log_pi[-1] - top)
    pi = np.exp(np.asarray(log_pi) - top)
    return pi / pi.sum()


def _answered_within(
    start: np.ndarray, service: float, abandon_rate: float, target_s: float
) -> float:
    """P(answered within target_s) for a call that joins the queue at position j with
    probability start[j - 1].

    At position j the call moves up at rate c·μ + (j - 1)·θ (an agent frees, or one of the
    j - 1 callers ahead hangs up) and hangs up itself at rate θ; from position 1 moving up is
    being answered. This absorbing chain is solved by uniformization: with Λ the largest total
    rate, P(answered by t) = Σ_n Poisson(n; Λt) · P(answered within n steps of the jump chain).
    """
    positions = start.size
    rate = service + positions * abandon_rate  # Λ: total rate out of the last position
    move_up = (service + np.arange(positions) * abandon_rate) / rate  # from position j = 1…
    stay = 1.0 - move_up - abandon_rate / rate
    mean_steps = rate * target_s
    last_step = int(mean_steps + 12 * math.sqrt(mean_steps) + 30)
    log_mean = math.log(mean_steps) if mean_steps > 0 else -math.inf
    distribution = start.astype(float)
    answered = 0.0  # P(answered within n steps)
    total = 0.0
    for step in range(last_step + 1):
        if step == 0:
            weight = math.exp(-mean_steps)
        else:
            weight = math.exp(-mean_steps + step * log_mean - math.lgamma(step + 1))
        total += weight * answered
        if step == last_step or mean_steps == 0:
            break
        answered += distribution[0] * move_up[0]
        moved = distribution * move_up
        distribution = distribution * stay
        distribution[:-1] += moved[1:]
    return float(total)


def erlang_a_model(
    arrivals_per_hour: float,
    handle_time_s: float,
    agents: int,
    patience_s: float,
    target_s: float = 15.0,
) -> ErlangA:
    """The Erlang A (M/M/c+M) prediction: as `erlang_c_model`, with callers whose patience is
    exponential with mean `patience_s`.

    Computed from the system's birth-death chain, truncated at a queue length beyond which
    less than TAIL_BOUND (1e-12) of the probability lies (see `_queue_distribution`).
    """
    arrivals_per_s = _number("arrivals_per_hour", arrivals_per_hour) / 3600.0
    handle_time_s = _number("handle_time_s", handle_time_s, positive=True)
    agents = _count("agents", agents, minimum=1)
    patience_s = _number("patience_s", patience_s, positive=True)
    target_s = _number("target_s", target_s)
    traffic = arrivals_per_s * handle_time_s
    if arrivals_per_s == 0:
        return ErlangA(
            arrivals_per_s=0.0,
            handle_time_s=handle_time_s,
            patience_s=patience_s,
            agents=agents,
            traffic_erlangs=0.0,
            occupancy=0.0,
            p_wait=0.0,
            p_abandon=0.0,
            mean_wait_s=0.0,
            target_s=target_s,
            service_level=1.0,
            queue_states=0,
        )
    service_rate = 1.0 / handle_time_s
    abandon_rate = 1.0 / patience_s
    pi = _queue_distribution(arrivals_per_s, service_rate, abandon_rate, agents)
    waiting = pi[agents:]  # the call finds all agents busy: it joins at position 1, 2, …
    p_wait = float(waiting.sum())
    mean_queue = float(np.dot(np.arange(waiting.size), waiting))
    busy = float(np.dot(np.minimum(np.arange(pi.size), agents), pi))
    p_abandon = abandon_rate * mean_queue / arrivals_per_s
    answered_late = (
        _answered_within(waiting, agents * service_rate, abandon_rate, target_s)
        if p_wait > 0
        else 0.0
    )
    return ErlangA(
        arrivals_per_s=arrivals_per_s,
        handle_time_s=handle_time_s,
        patience_s=patience_s,
        agents=agents,
        traffic_erlangs=traffic,
        occupancy=min(1.0, busy / agents),  # min: rounding past 1 at full load
        p_wait=p_wait,
        p_abandon=p_abandon,
        mean_wait_s=mean_queue / arrivals_per_s,
        target_s=target_s,
        service_level=min(1.0, float((1.0 - p_wait) + answered_late)),
        queue_states=waiting.size,
    )


def compare(
    model: ErlangC | ErlangA,
    measured_service_level: float,
    measured_mean_wait: float,
    tolerance: Tolerance | None = None,
) -> Verdict:
    """Set a run's measured service level (a fraction) and mean wait (s, over all calls, the
    same calls the model's `mean_wait_s` covers) against `model`'s, within `tolerance`.

    The service level agrees when |measured - predicted| <= tolerance.service_level_points
    (absolute); the mean wait when |measured - predicted| <= max(mean_wait_relative ·
    predicted, mean_wait_floor_s). An unstable Erlang C model agrees with nothing.
    """
    tolerance = Tolerance() if tolerance is None else tolerance
    measured_level = _share("measured_service_level", measured_service_level)
    measured_wait = _number("measured_mean_wait", measured_mean_wait)
    predicted_wait = model.mean_wait_s
    level_diff = measured_level - model.service_level
    wait_diff = measured_wait - predicted_wait
    if 0 < predicted_wait < math.inf:
        relative = wait_diff / predicted_wait
    else:
        relative = 0.0 if wait_diff == 0 else math.inf
    stable = not isinstance(model, ErlangC) or model.stable
    level_ok = stable and abs(level_diff) <= tolerance.service_level_points
    wait_ok = stable and abs(wait_diff) <= max(
        tolerance.mean_wait_relative * predicted_wait, tolerance.mean_wait_floor_s
    )
    return Verdict(
        predicted_service_level=model.service_level,
        measured_service_level=measured_level,
        service_level_diff=level_diff,
        predicted_mean_wait_s=predicted_wait,
        measured_mean_wait_s=measured_wait,
        mean_wait_diff_s=wait_diff,
        mean_wait_relative_diff=relative,
        tolerance=tolerance,
        service_level_ok=level_ok,
        mean_wait_ok=wait_ok,
        within=level_ok and wait_ok,
    )
