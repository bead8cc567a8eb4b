"""Every (state, event) pair of the agent and call state tables (STYLE §2), both in the tables
themselves and through the engine's public methods."""

from __future__ import annotations

import itertools

import pytest

from acd import (
    AGENT_TRANSITIONS,
    CALL_TRANSITIONS,
    Acd,
    AcdError,
    AgentEvent,
    AgentSpec,
    AgentState,
    CallEvent,
    CallState,
    IllegalTransition,
    QueueSpec,
    format_agent_table,
    format_call_table,
    next_agent_state,
    next_call_state,
)

A = AgentState
E = AgentEvent

# Written out independently of acd/agent.py: the behaviour this issue asks for.
EXPECTED_AGENT = {
    (A.LOGGED_OUT, E.AVAILABLE): A.IDLE,
    (A.LOGGED_OUT, E.UNAVAILABLE): A.LOGGED_OUT,
    (A.IDLE, E.AVAILABLE): A.IDLE,
    (A.IDLE, E.UNAVAILABLE): A.LOGGED_OUT,
    (A.IDLE, E.OFFER): A.RINGING,
    (A.RINGING, E.AVAILABLE): A.RINGING,
    (A.RINGING, E.UNAVAILABLE): A.LOGGED_OUT,
    (A.RINGING, E.ANSWER): A.TALKING,
    (A.RINGING, E.REJECT): A.IDLE,
    (A.RINGING, E.RING_TIMEOUT): A.IDLE,
    (A.RINGING, E.OFFER_WITHDRAWN): A.IDLE,
    (A.TALKING, E.AVAILABLE): A.TALKING,
    (A.TALKING, E.UNAVAILABLE): A.TALKING,
    (A.TALKING, E.HANGUP): A.WRAP_UP,
    (A.TALKING, E.HANGUP_NO_WRAP_UP): A.IDLE,
    (A.WRAP_UP, E.AVAILABLE): A.WRAP_UP,
    (A.WRAP_UP, E.UNAVAILABLE): A.LOGGED_OUT,
    (A.WRAP_UP, E.WRAP_UP_END): A.IDLE,
    # not ready (busy), breaks and ready; during a call they wait for its end
    (A.IDLE, E.NOT_READY): A.BUSY,
    (A.IDLE, E.BREAK): A.BREAK,
    (A.IDLE, E.READY): A.IDLE,
    (A.WRAP_UP, E.NOT_READY): A.BUSY,
    (A.WRAP_UP, E.BREAK): A.BREAK,
    (A.WRAP_UP, E.READY): A.IDLE,
    (A.RINGING, E.NOT_READY): A.RINGING,
    (A.RINGING, E.BREAK): A.RINGING,
    (A.RINGING, E.READY): A.RINGING,
    (A.TALKING, E.NOT_READY): A.TALKING,
    (A.TALKING, E.BREAK): A.TALKING,
    (A.TALKING, E.READY): A.TALKING,
    (A.BUSY, E.AVAILABLE): A.BUSY,
    (A.BUSY, E.UNAVAILABLE): A.LOGGED_OUT,
    (A.BUSY, E.NOT_READY): A.BUSY,
    (A.BUSY, E.BREAK): A.BREAK,
    (A.BUSY, E.READY): A.IDLE,
    (A.BREAK, E.AVAILABLE): A.BREAK,
    (A.BREAK, E.UNAVAILABLE): A.LOGGED_OUT,
    (A.BREAK, E.NOT_READY): A.BUSY,
    (A.BREAK, E.BREAK): A.BREAK,
    (A.BREAK, E.READY): A.IDLE,
    # locked: a supervisor's unlock or a logout ends it
    (A.IDLE, E.LOCK): A.LOCKED,
    (A.BUSY, E.LOCK): A.LOCKED,
    (A.BREAK, E.LOCK): A.LOCKED,
    (A.WRAP_UP, E.LOCK): A.LOCKED,
    (A.LOCKED, E.LOCK): A.LOCKED,
    (A.LOCKED, E.UNLOCK): A.IDLE,
    (A.LOCKED, E.AVAILABLE): A.LOCKED,
    (A.LOCKED, E.UNAVAILABLE): A.LOGGED_OUT,
}

C = CallState
V = CallEvent

EXPECTED_CALL = {
    (C.WAITING, V.OFFER): C.RINGING,
    (C.RINGING, V.OFFER): C.RINGING,  # ring_all: one more agent rings
    (C.WAITING, V.ABANDON): C.ABANDONED,
    (C.WAITING, V.MAX_WAIT): C.TIMED_OUT,
    (C.RINGING, V.RING_TIMEOUT): C.WAITING,
    (C.RINGING, V.REJECT): C.WAITING,
    (C.RINGING, V.AGENT_GONE): C.WAITING,
    (C.RINGING, V.ANSWER): C.CONNECTED,
    (C.RINGING, V.ABANDON): C.ABANDONED,
    (C.RINGING, V.MAX_WAIT): C.TIMED_OUT,
    (C.CONNECTED, V.END): C.ENDED,
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(AgentState, AgentEvent)))
def test_every_agent_state_event_pair(state: AgentState, event: AgentEvent) -> None:
    expected = EXPECTED_AGENT.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            next_agent_state("a1", state, event)
        assert (info.value.entity, info.value.entity_id) == ("agent", "a1")
        assert (info.value.state, info.value.event) == (state.value, event.value)
    else:
        assert next_agent_state("a1", state, event) is expected


@pytest.mark.parametrize(("state", "event"), list(itertools.product(CallState, CallEvent)))
def test_every_call_state_event_pair(state: CallState, event: CallEvent) -> None:
    expected = EXPECTED_CALL.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition):
            next_call_state("c1", state, event)
    else:
        assert next_call_state("c1", state, event) is expected


def test_tables_have_no_entries_beyond_the_expected_ones() -> None:
    assert dict(AGENT_TRANSITIONS) == EXPECTED_AGENT
    assert dict(CALL_TRANSITIONS) == EXPECTED_CALL


def test_tables_print_every_state_and_event() -> None:
    agent_text = format_agent_table()
    for name in [s.value for s in AgentState] + [e.value for e in AgentEvent]:
        assert name in agent_text
    assert len(agent_text.splitlines()) == 1 + len(AgentState)
    call_text = format_call_table()
    assert len(call_text.splitlines()) == 1 + len(CallState)
    idle_row = next(line for line in agent_text.splitlines() if line.startswith("idle "))
    idle_cells = ["idle", "idle", "logged_out", "ringing", *["-"] * 7]
    idle_cells += ["busy", "break", "idle", "locked", "-"]
    assert idle_row.split() == idle_cells


# -- the same pairs through the engine's public methods ------------------------------------


def agent_in(state: AgentState, wrap_up: float = 10.0) -> Acd:
    """An engine whose agent `a1` is in `state`; call `c1` is with it when ringing/talking."""
    acd = Acd([QueueSpec("q", wrap_up=wrap_up)], [AgentSpec("a1", ("q",))])
    if state is A.LOGGED_OUT:
        return acd
    acd.agent_available("a1", 0.0)
    if state is A.IDLE:
        return acd
    if state is A.BUSY:
        acd.agent_not_ready("a1", 0.5, "paperwork")
        return acd
    if state is A.BREAK:
        acd.agent_break("a1", 0.5)
        return acd
    if state is A.LOCKED:
        acd.agent_lock("a1", 0.5)
        return acd
    acd.enqueue("c1", "q", 1.0)
    if state is A.RINGING:
        return acd
    acd.agent_answered("c1", "a1", 2.0)
    if state is A.TALKING:
        return acd
    acd.call_ended("c1", "a1", 3.0)
    assert state is A.WRAP_UP
    return acd


# What each public input leads to from each state (None: raises an AcdError, state unchanged).
API_RESULTS = {
    "available": {
        A.LOGGED_OUT: A.IDLE,
        A.IDLE: A.IDLE,
        A.RINGING: A.RINGING,
        A.TALKING: A.TALKING,
        A.WRAP_UP: A.WRAP_UP,
        A.BUSY: A.BUSY,
        A.BREAK: A.BREAK,
        A.LOCKED: A.LOCKED,
    },
    "unavailable": {
        A.LOGGED_OUT: A.LOGGED_OUT,
        A.IDLE: A.LOGGED_OUT,
        A.RINGING: A.LOGGED_OUT,
        A.TALKING: A.TALKING,
        A.WRAP_UP: A.LOGGED_OUT,
        A.BUSY: A.LOGGED_OUT,
        A.BREAK: A.LOGGED_OUT,
        A.LOCKED: A.LOGGED_OUT,
    },
    # asked while ringing or talking: the state stays, the request waits for the call's end
    "not_ready": {
        A.IDLE: A.BUSY,
        A.RINGING: A.RINGING,
        A.TALKING: A.TALKING,
        A.WRAP_UP: A.BUSY,
        A.BUSY: A.BUSY,
        A.BREAK: A.BUSY,
    },
    "break": {
        A.IDLE: A.BREAK,
        A.RINGING: A.RINGING,
        A.TALKING: A.TALKING,
        A.WRAP_UP: A.BREAK,
        A.BUSY: A.BREAK,
        A.BREAK: A.BREAK,
    },
    "ready": {
        A.IDLE: A.IDLE,
        A.RINGING: A.RINGING,
        A.TALKING: A.TALKING,
        A.WRAP_UP: A.IDLE,
        A.BUSY: A.IDLE,
        A.BREAK: A.IDLE,
    },
    "lock": {
        A.IDLE: A.LOCKED,
        A.WRAP_UP: A.LOCKED,
        A.BUSY: A.LOCKED,
        A.BREAK: A.LOCKED,
        A.LOCKED: A.LOCKED,
    },
    "unlock": {A.LOCKED: A.IDLE},
    "answered": {A.RINGING: A.TALKING},
    "rejected": {A.RINGING: A.IDLE},
    "ended": {A.TALKING: A.WRAP_UP},
    # the next due timer: ring timeout when ringing, wrap-up end in wrap-up
    "next_timer": {
        A.LOGGED_OUT: A.LOGGED_OUT,
        A.IDLE: A.IDLE,
        A.RINGING: A.IDLE,
        A.TALKING: A.TALKING,
        A.WRAP_UP: A.IDLE,
        A.BUSY: A.BUSY,
        A.BREAK: A.BREAK,
        A.LOCKED: A.LOCKED,
    },
}


def apply_input(acd: Acd, name: str) -> None:
    if name == "available":
        acd.agent_available("a1", 5.0)
    elif name == "unavailable":
        acd.agent_unavailable("a1", 5.0)
    elif name == "answered":
        acd.agent_answered("c1", "a1", 5.0)
    elif name == "rejected":
        acd.agent_rejected("c1", "a1", 5.0, "486")
    elif name == "ended":
        acd.call_ended("c1", "a1", 5.0)
    elif name == "not_ready":
        acd.agent_not_ready("a1", 5.0, "meeting")
    elif name == "break":
        acd.agent_break("a1", 5.0)
    elif name == "ready":
        acd.agent_ready("a1", 5.0)
    elif name == "lock":
        acd.agent_lock("a1", 5.0)
    elif name == "unlock":
        acd.agent_unlock("a1", 5.0)
    elif name == "next_timer":
        deadline = acd.get_timer()
        if deadline is not None:
            acd.handle_timer(deadline)
    else:
        raise AssertionError(name)


@pytest.mark.parametrize(
    ("state", "name"), list(itertools.product(AgentState, sorted(API_RESULTS)))
)
def test_every_agent_state_and_public_input(state: AgentState, name: str) -> None:
    acd = agent_in(state)
    expected = API_RESULTS[name].get(state)
    if expected is None:
        with pytest.raises(AcdError):
            apply_input(acd, name)
        assert acd.agent_state("a1") is state
    else:
        apply_input(acd, name)
        assert acd.agent_state("a1") is expected


def test_next_timer_of_each_state_is_the_expected_one() -> None:
    assert agent_in(A.IDLE).get_timer() is None
    assert agent_in(A.RINGING).get_timer() == 16.0  # ring timeout before max wait (301.0)
    assert agent_in(A.TALKING).get_timer() is None
    assert agent_in(A.WRAP_UP).get_timer() == 13.0


def test_call_ended_without_wrap_up_goes_straight_to_idle() -> None:
    acd = agent_in(A.TALKING, wrap_up=0.0)
    acd.call_ended("c1", "a1", 5.0)
    assert acd.agent_state("a1") is A.IDLE
