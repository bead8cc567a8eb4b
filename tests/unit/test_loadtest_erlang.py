"""The staffing model of the load-test report (loadtest/erlang.py, issue 12).

Reference values come from outside the code under test: exact fractions of the closed-form
Erlang formulas with factorials, a log-space closed form for thousands of agents, the linear
algebra of the birth-death generator, hand arithmetic, and a seeded discrete-event simulation
of the queue itself.
"""

from __future__ import annotations

import heapq
import math
from fractions import Fraction

import numpy as np
import pytest

from loadtest.erlang import (
    ErlangC,
    Tolerance,
    agents_for,
    compare,
    erlang_a_model,
    erlang_b,
    erlang_c,
    erlang_c_model,
)

# -- independent references ------------------------------------------------------------------


def closed_form_b(traffic: Fraction, servers: int) -> Fraction:
    """Erlang B as textbooks write it: (A^c / c!) / Σ_{k<=c} A^k / k!, exactly."""
    terms = [traffic**k / math.factorial(k) for k in range(servers + 1)]
    return terms[-1] / sum(terms)


def closed_form_c(traffic: Fraction, servers: int) -> Fraction:
    """Erlang C as textbooks write it, exactly:
    (A^c / c! · c / (c - A)) / (Σ_{k<c} A^k / k! + A^c / c! · c / (c - A))."""
    top = traffic**servers / math.factorial(servers) * servers / (servers - traffic)
    return top / (sum(traffic**k / math.factorial(k) for k in range(servers)) + top)


def log_space_b(traffic: float, servers: int) -> float:
    """Erlang B from the closed form in logarithms (lgamma, log-sum-exp): no factorial
    overflows at thousands of servers, and no recurrence."""
    logs = [k * math.log(traffic) - math.lgamma(k + 1) for k in range(servers + 1)]
    top = max(logs)
    return math.exp(logs[-1] - top) / sum(math.exp(x - top) for x in logs)


def simulate(
    arrivals_per_hour: float,
    handle_time_s: float,
    agents: int,
    target_s: float,
    patience_s: float | None = None,
    calls: int = 200_000,
    warmup: int = 5_000,
    seed: int = 2024,
) -> dict[str, float]:
    """A seeded M/M/c (or M/M/c+M, with `patience_s`) FIFO queue, call by call.

    With FIFO each call takes the agent that frees first (a heap of the agents' free times);
    a call whose wait would exceed its patience hangs up after its patience and leaves the
    agent to the next. The first `warmup` calls, which met an empty system, are dropped.
    """
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(3600.0 / arrivals_per_hour, calls)).tolist()
    handle_times = rng.exponential(handle_time_s, calls).tolist()
    if patience_s is None:
        patiences = [math.inf] * calls
    else:
        patiences = rng.exponential(patience_s, calls).tolist()
    free_at = [0.0] * agents
    waits: list[float] = []
    answered: list[bool] = []
    for arrival, handle_time, patience in zip(arrivals, handle_times, patiences, strict=True):
        wait = max(free_at[0] - arrival, 0.0)
        if wait > patience:
            waits.append(patience)
            answered.append(False)
            continue
        heapq.heapreplace(free_at, arrival + wait + handle_time)
        waits.append(wait)
        answered.append(True)
    wait_array = np.array(waits[warmup:])
    answered_array = np.array(answered[warmup:])
    return {
        "p_wait": float((wait_array > 0).mean()),
        "mean_wait_s": float(wait_array.mean()),
        "service_level": float((answered_array & (wait_array <= target_s)).mean()),
        "p_abandon": float((~answered_array).mean()),
    }


# -- Erlang B and C against the closed forms ----------------------------------------------------


def test_textbook_ten_erlangs_on_twelve_agents_wait_with_probability_0_4494():
    assert erlang_c(10, 12) == pytest.approx(0.4494, abs=5e-5)
    assert erlang_c(10, 12) == pytest.approx(float(closed_form_c(Fraction(10), 12)), rel=1e-12)


def test_hand_computed_two_erlangs_on_three_servers():
    # Σ_{k<3} 2^k/k! = 5, 2^3/3! = 4/3, c/(c-A) = 3: B = (4/3)/(19/3), C = 4/(5+4)
    assert erlang_b(2, 3) == pytest.approx(4 / 19, rel=1e-14)
    assert erlang_c(2, 3) == pytest.approx(4 / 9, rel=1e-14)


def test_erlang_b_table_value_ten_erlangs_ten_circuits():
    assert erlang_b(10, 10) == pytest.approx(0.2146, abs=5e-5)


@pytest.mark.parametrize("traffic", [Fraction(1, 10), Fraction(1, 2), Fraction(3), Fraction(47, 7)])
@pytest.mark.parametrize("servers", [1, 2, 3, 5, 8, 13, 21])
def test_recurrence_equals_closed_form_with_factorials(traffic: Fraction, servers: int):
    assert erlang_b(float(traffic), servers) == pytest.approx(
        float(closed_form_b(traffic, servers)), rel=1e-12
    )
    if traffic < servers:
        assert erlang_c(float(traffic), servers) == pytest.approx(
            float(closed_form_c(traffic, servers)), rel=1e-12
        )
    else:
        assert erlang_c(float(traffic), servers) == 1.0


def test_erlang_b_of_zero_servers_is_one_and_of_zero_traffic_is_zero():
    assert erlang_b(3.0, 0) == 1.0
    assert erlang_b(0.0, 4) == 0.0
    assert erlang_c(0.0, 4) == 0.0


@pytest.mark.parametrize("servers", [4_990, 5_000, 5_100, 6_000])
def test_five_thousand_agents_neither_overflow_nor_lose_precision(servers: int):
    traffic = 4_950.0
    blocking = erlang_b(traffic, servers)
    assert math.isfinite(blocking)
    assert blocking == pytest.approx(log_space_b(traffic, servers), rel=1e-9)
    p_wait = erlang_c(traffic, servers)
    assert 0.0 < p_wait < 1.0
    model = erlang_c_model(traffic / 180.0 * 3600.0, 180.0, servers, target_s=20.0)
    assert model.stable
    assert 0.0 < model.service_level <= 1.0  # 6,000 agents: 1 - 1e-46 rounds to 1
    assert math.isfinite(model.mean_wait_s)


def test_traffic_at_or_above_the_agents_means_every_call_waits_for_ever():
    assert erlang_c(12.0, 12) == 1.0
    assert erlang_c(12.5, 12) == 1.0
    model = erlang_c_model(144.0, 300.0, 12)  # 144/h · 300 s = 12 erlangs
    assert not model.stable
    assert model.p_wait == 1.0
    assert model.mean_wait_s == math.inf
    assert model.service_level == 0.0
    assert model.occupancy == 1.0


def test_mm1_model_matches_the_single_server_formulas():
    # λ = 0.5/s, handle time 1 s: ρ = 0.5, W = ρ / (μ - λ) = 1 s, P(W <= t) = 1 - ρ e^(-(μ-λ)t)
    model = erlang_c_model(1800.0, 1.0, 1, target_s=2.0)
    assert model.traffic_erlangs == pytest.approx(0.5)
    assert model.occupancy == pytest.approx(0.5)
    assert model.p_wait == pytest.approx(0.5)
    assert model.mean_wait_s == pytest.approx(1.0)
    assert model.mean_wait_of_waiting_s == pytest.approx(2.0)
    assert model.service_level == pytest.approx(1 - 0.5 * math.exp(-1.0))


def test_call_centre_model_ten_erlangs_twelve_agents():
    model = erlang_c_model(120.0, 300.0, 12, target_s=20.0)  # 120/h · 300 s = 10 erlangs
    p_wait = float(closed_form_c(Fraction(10), 12))
    assert model.arrivals_per_s == pytest.approx(1 / 30)
    assert model.traffic_erlangs == pytest.approx(10.0)
    assert model.p_wait == pytest.approx(p_wait, rel=1e-12)
    assert model.mean_wait_s == pytest.approx(p_wait * 300 / 2, rel=1e-12)
    assert model.mean_wait_of_waiting_s == pytest.approx(150.0)
    assert model.service_level == pytest.approx(1 - p_wait * math.exp(-2 * 20 / 300), rel=1e-12)


def test_more_agents_mean_less_waiting():
    models = [erlang_c_model(120.0, 300.0, agents, target_s=20.0) for agents in range(11, 40)]
    for fewer, more in zip(models, models[1:], strict=False):
        assert more.p_wait < fewer.p_wait
        assert more.mean_wait_s < fewer.mean_wait_s
        assert more.service_level > fewer.service_level
        assert more.occupancy < fewer.occupancy
    blocking = [erlang_b(10.0, servers) for servers in range(1, 40)]
    assert all(b > a for a, b in zip(blocking[1:], blocking, strict=False))


def test_more_traffic_means_more_waiting():
    p_waits = [erlang_c(traffic / 4, 12) for traffic in range(1, 48)]
    assert all(b > a for a, b in zip(p_waits, p_waits[1:], strict=False))


# -- agents_for ---------------------------------------------------------------------------------


def test_agents_for_returns_the_first_staffing_that_reaches_the_service_level():
    agents = agents_for(120.0, 300.0, 0.8, 20.0)
    assert agents == 14
    assert erlang_c_model(120.0, 300.0, agents - 1, 20.0).service_level < 0.8
    assert erlang_c_model(120.0, 300.0, agents, 20.0).service_level >= 0.8


def test_agents_for_counts_a_service_level_met_exactly_as_met():
    reached = erlang_c_model(120.0, 300.0, 14, 20.0).service_level
    assert agents_for(120.0, 300.0, reached, 20.0) == 14
    assert agents_for(120.0, 300.0, math.nextafter(reached, 1.0), 20.0) == 15


def test_agents_for_needs_more_than_the_traffic_even_for_a_low_target():
    assert agents_for(120.0, 300.0, 0.01, 20.0) == 11  # 10 erlangs: 10 agents are unstable
    assert agents_for(0.0, 300.0, 0.99, 20.0) == 1


def test_agents_for_scales_to_thousands_of_agents():
    agents = agents_for(3600.0 * 25.0, 180.0, 0.9, 15.0)  # 4,500 erlangs
    assert 4_500 < agents < 4_700
    assert erlang_c_model(3600.0 * 25.0, 180.0, agents - 1, 15.0).service_level < 0.9
    assert erlang_c_model(3600.0 * 25.0, 180.0, agents, 15.0).service_level >= 0.9


# -- Erlang A -------------------------------------------------------------------------------------


def generator_distribution(
    arrivals_per_s: float, handle_s: float, agents: int, patience_s: float
) -> np.ndarray:
    """The M/M/c+M stationary distribution by linear algebra (π·Q = 0, Σπ = 1)."""
    states = agents + 400
    q = np.zeros((states, states))
    for n in range(states):
        if n + 1 < states:
            q[n, n + 1] = arrivals_per_s
        if n > 0:
            q[n, n - 1] = min(n, agents) / handle_s + max(n - agents, 0) / patience_s
        q[n, n] = -q[n].sum()
    system = np.vstack([q.T, np.ones(states)])
    rhs = np.zeros(states + 1)
    rhs[-1] = 1.0
    return np.linalg.lstsq(system, rhs, rcond=None)[0]


def generator_p_wait(
    arrivals_per_s: float, handle_s: float, agents: int, patience_s: float
) -> tuple[float, float]:
    """P(all agents busy) and the mean queue length, from `generator_distribution`."""
    waiting = generator_distribution(arrivals_per_s, handle_s, agents, patience_s)[agents:]
    return float(waiting.sum()), float(np.dot(np.arange(waiting.size), waiting))


def integrated_service_level(
    arrivals_per_s: float, handle_s: float, agents: int, patience_s: float, target_s: float
) -> float:
    """P(answered within target) by integrating the waiting call's equations with RK4.

    A call at queue position j moves up at rate c·μ + (j - 1)·θ and hangs up at rate θ:
    dp_j/dt = -(cμ + jθ)·p_j + (cμ + jθ)·p_(j+1), and d(answered)/dt = cμ·p_1.
    """
    pi = generator_distribution(arrivals_per_s, handle_s, agents, patience_s)
    service, abandon = agents / handle_s, 1.0 / patience_s
    rates = service + np.arange(1, pi.size - agents + 1) * abandon

    def derivative(y: np.ndarray) -> np.ndarray:  # y: positions 1…K, then answered
        p = y[:-1]
        change = np.empty_like(y)
        change[:-1] = -rates * p
        change[:-2] += rates[:-1] * p[1:]
        change[-1] = service * p[0]
        return change

    y, dt = np.append(pi[agents:], 0.0), target_s / 4000
    for _ in range(4000):
        k1 = derivative(y)
        k2 = derivative(y + dt / 2 * k1)
        k3 = derivative(y + dt / 2 * k2)
        k4 = derivative(y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    answered = float(y[-1])
    return float(pi[:agents].sum()) + answered


@pytest.mark.parametrize(
    ("per_hour", "handle_s", "agents", "patience_s"),
    [(120.0, 300.0, 12, 120.0), (180.0, 300.0, 12, 60.0), (50.0, 60.0, 1, 30.0)],
)
def test_erlang_a_chain_matches_the_generator_solved_by_linear_algebra(
    per_hour: float, handle_s: float, agents: int, patience_s: float
):
    model = erlang_a_model(per_hour, handle_s, agents, patience_s)
    p_wait, mean_queue = generator_p_wait(per_hour / 3600.0, handle_s, agents, patience_s)
    assert model.p_wait == pytest.approx(p_wait, rel=1e-7)  # lstsq's own precision
    assert model.mean_wait_s == pytest.approx(mean_queue / (per_hour / 3600.0), rel=1e-7)
    assert model.p_abandon == pytest.approx(mean_queue / patience_s / (per_hour / 3600.0))


@pytest.mark.parametrize(
    ("per_hour", "handle_s", "agents", "patience_s"),
    [(120.0, 300.0, 12, 120.0), (180.0, 300.0, 12, 60.0), (50.0, 60.0, 1, 30.0)],
)
def test_erlang_a_service_level_matches_the_integrated_waiting_equations(
    per_hour: float, handle_s: float, agents: int, patience_s: float
):
    model = erlang_a_model(per_hour, handle_s, agents, patience_s, target_s=20.0)
    expected = integrated_service_level(per_hour / 3600.0, handle_s, agents, patience_s, 20.0)
    assert model.service_level == pytest.approx(expected, abs=1e-7)


def test_erlang_a_with_endless_patience_is_erlang_c():
    erlang_a = erlang_a_model(120.0, 300.0, 12, patience_s=1e9, target_s=20.0)
    erlang_c_ = erlang_c_model(120.0, 300.0, 12, target_s=20.0)
    assert erlang_a.p_wait == pytest.approx(erlang_c_.p_wait, rel=1e-5)
    assert erlang_a.mean_wait_s == pytest.approx(erlang_c_.mean_wait_s, rel=1e-5)
    assert erlang_a.service_level == pytest.approx(erlang_c_.service_level, rel=1e-5)
    assert erlang_a.p_abandon < 1e-6


def test_erlang_a_at_target_zero_answers_only_the_calls_that_do_not_wait():
    model = erlang_a_model(180.0, 300.0, 12, 60.0, target_s=0.0)
    assert model.service_level == pytest.approx(1.0 - model.p_wait, rel=1e-12)


def test_erlang_a_stays_finite_far_beyond_the_agents():
    model = erlang_a_model(3600.0 * 33.0, 300.0, 5_000, patience_s=60.0, target_s=20.0)
    # 9,900 erlangs on 5,000 agents: about half the callers must hang up
    assert model.p_wait == pytest.approx(1.0)
    assert model.p_abandon == pytest.approx(1 - 5_000 / 9_900, rel=1e-3)
    assert 0.0 <= model.occupancy <= 1.0
    assert model.queue_states < 5_000


def test_erlang_a_of_no_calls_waits_nothing():
    model = erlang_a_model(0.0, 300.0, 3, 60.0)
    assert (model.p_wait, model.p_abandon, model.mean_wait_s, model.service_level) == (
        0.0,
        0.0,
        0.0,
        1.0,
    )


# -- the model against a simulated queue ----------------------------------------------------------


def test_simulated_mmc_queue_agrees_with_erlang_c():
    # 200k calls: standard deviations over seeds are about 0.0075 for P(wait) and service
    # level and 3.6 % for the mean wait, so the default tolerance (0.03, 15 %) is four of them.
    measured = simulate(120.0, 300.0, 12, target_s=20.0)
    model = erlang_c_model(120.0, 300.0, 12, target_s=20.0)
    assert measured["p_wait"] == pytest.approx(model.p_wait, abs=0.03)
    verdict = compare(model, measured["service_level"], measured["mean_wait_s"])
    assert verdict.within, verdict
    # ...and the tolerance is tight enough to tell one agent more or less
    for agents in (11, 13):
        other = erlang_c_model(120.0, 300.0, agents, target_s=20.0)
        assert not compare(other, measured["service_level"], measured["mean_wait_s"]).within
        assert abs(measured["p_wait"] - other.p_wait) > 0.03


@pytest.mark.parametrize(
    ("per_hour", "patience_s"),
    [(120.0, 120.0), (180.0, 60.0)],  # 10 erlangs on 12 agents, and 15 erlangs: overloaded
)
def test_simulated_queue_with_impatient_callers_agrees_with_erlang_a(
    per_hour: float, patience_s: float
):
    # Over seeds the standard deviations are below 0.0035 for P(wait) and service level,
    # 0.0015 for P(abandon) and 1.7 % for the mean wait; the bounds are four of them.
    tolerance = Tolerance(service_level_points=0.015, mean_wait_relative=0.07, mean_wait_floor_s=0)
    measured = simulate(per_hour, 300.0, 12, target_s=20.0, patience_s=patience_s)
    model = erlang_a_model(per_hour, 300.0, 12, patience_s, target_s=20.0)
    assert measured["p_wait"] == pytest.approx(model.p_wait, abs=0.015)
    assert measured["p_abandon"] == pytest.approx(model.p_abandon, abs=0.006)
    verdict = compare(model, measured["service_level"], measured["mean_wait_s"], tolerance)
    assert verdict.within, verdict
    # Erlang C, which ignores the callers who hang up, or half or double the patience, miss
    wrong = [
        erlang_a_model(per_hour, 300.0, 12, patience_s / 2, target_s=20.0),
        erlang_a_model(per_hour, 300.0, 12, patience_s * 2, target_s=20.0),
        erlang_c_model(per_hour, 300.0, 12, target_s=20.0),
    ]
    for other in wrong:
        assert not compare(
            other, measured["service_level"], measured["mean_wait_s"], tolerance
        ).within


# -- compare --------------------------------------------------------------------------------------


def test_compare_reads_service_level_in_absolute_points_and_mean_wait_relatively():
    model = erlang_c_model(120.0, 300.0, 12, target_s=20.0)  # SL 0.6067, mean wait 67.4 s
    tolerance = Tolerance(service_level_points=0.05, mean_wait_relative=0.10)
    inside = compare(model, model.service_level - 0.049, model.mean_wait_s * 1.099, tolerance)
    assert inside.within and inside.service_level_ok and inside.mean_wait_ok
    assert inside.service_level_diff == pytest.approx(-0.049)
    assert inside.mean_wait_diff_s == pytest.approx(model.mean_wait_s * 0.099)
    assert inside.mean_wait_relative_diff == pytest.approx(0.099)
    low_level = compare(model, model.service_level - 0.051, model.mean_wait_s, tolerance)
    assert not low_level.service_level_ok and low_level.mean_wait_ok and not low_level.within
    long_wait = compare(model, model.service_level, model.mean_wait_s * 1.101, tolerance)
    assert long_wait.service_level_ok and not long_wait.mean_wait_ok and not long_wait.within


def test_compare_allows_the_floor_when_the_predicted_wait_is_tiny():
    model = erlang_c_model(120.0, 300.0, 20, target_s=20.0)  # mean wait well under a second
    assert model.mean_wait_s < 0.5
    tolerance = Tolerance(mean_wait_floor_s=1.0)
    assert compare(model, model.service_level, model.mean_wait_s + 0.9, tolerance).mean_wait_ok
    assert not compare(model, model.service_level, model.mean_wait_s + 1.1, tolerance).mean_wait_ok


def test_an_unstable_model_agrees_with_no_measurement():
    model = erlang_c_model(150.0, 300.0, 12)
    verdict = compare(model, 0.0, 1e6)
    assert not verdict.within
    assert verdict.mean_wait_relative_diff == math.inf


def test_verdict_is_frozen_and_encodes_as_json():
    import msgspec

    verdict = compare(erlang_c_model(120.0, 300.0, 12), 0.6, 60.0)
    with pytest.raises(AttributeError):
        verdict.within = False  # type: ignore[misc]
    decoded = msgspec.json.decode(msgspec.json.encode(verdict))
    assert decoded["measured_mean_wait_s"] == 60.0
    assert isinstance(erlang_c_model(120.0, 300.0, 12), ErlangC)


# -- nonsense input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: erlang_b(-1.0, 3), "traffic: expected a number >= 0"),
        (lambda: erlang_b(math.nan, 3), "traffic: expected a finite number"),
        (lambda: erlang_b(2.0, -1), "servers: expected an integer >= 0"),
        (lambda: erlang_c(2.0, 0), "servers: expected an integer >= 1"),
        (lambda: erlang_c(2.0, 2.5), "servers: expected an integer >= 1"),
        (lambda: erlang_c(True, 3), "traffic: expected a number"),
        (lambda: erlang_c("2", 3), "traffic: expected a number"),
        (lambda: erlang_c_model(-120.0, 300.0, 12), "arrivals_per_hour: expected a number >= 0"),
        (lambda: erlang_c_model(120.0, 0.0, 12), "handle_time_s: expected a number > 0"),
        (lambda: erlang_c_model(120.0, math.inf, 12), "handle_time_s: expected a finite"),
        (lambda: erlang_c_model(120.0, 300.0, 0), "agents: expected an integer >= 1"),
        (lambda: erlang_c_model(120.0, 300.0, 12, -1.0), "target_s: expected a number >= 0"),
        (lambda: agents_for(120.0, 300.0, 1.0, 20.0), "service_level: expected a fraction"),
        (lambda: agents_for(120.0, 300.0, 0.0, 20.0), "service_level: expected a fraction"),
        (lambda: agents_for(120.0, 300.0, 80.0, 20.0), "service_level: expected a fraction"),
        (lambda: erlang_a_model(120.0, 300.0, 12, 0.0), "patience_s: expected a number > 0"),
        (lambda: erlang_a_model(120.0, 300.0, 12, math.nan), "patience_s: expected a finite"),
        (lambda: compare(erlang_c_model(1.0, 1.0, 1), 1.5, 0.0), "measured_service_level"),
        (lambda: compare(erlang_c_model(1.0, 1.0, 1), 0.5, -1.0), "measured_mean_wait"),
        (lambda: Tolerance(service_level_points=-0.1), "service_level_points"),
    ],
)
def test_nonsense_input_raises_value_error_naming_the_argument(call, message: str):
    with pytest.raises(ValueError, match=message):
        call()
