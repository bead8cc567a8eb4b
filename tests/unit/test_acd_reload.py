"""Config reload (`Acd.replace_specs`): new specs for future decisions, calls in progress
untouched (STYLE §4, SPEC DP-9)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from acd import (
    Acd,
    AgentSpec,
    AgentState,
    InvalidSpec,
    OfferCall,
    QueueEvent,
    QueueSpec,
    UnknownAgent,
    UnknownQueue,
)
from softswitch.config import load_config
from softswitch.switch import acd_specs

ROOT = Path(__file__).resolve().parents[2]


def offers(out: list) -> list[tuple[str, str]]:
    return [(c.call_id, c.agent_id) for c in out if isinstance(c, OfferCall)]


def ring_timeouts(out: list) -> list[float]:
    return [c.ring_timeout for c in out if isinstance(c, OfferCall)]


def two_queues() -> Acd:
    return Acd(
        [QueueSpec("q1"), QueueSpec("q2")],
        [AgentSpec("a1", ("q1",)), AgentSpec("a2", ("q2",))],
    )


def test_new_agent_starts_logged_out_and_serves_after_login() -> None:
    acd = two_queues()
    acd.enqueue("c1", "q1", 10.0)
    acd.replace_specs(
        [QueueSpec("q1"), QueueSpec("q2")],
        [AgentSpec("a1", ("q1",)), AgentSpec("a2", ("q2",)), AgentSpec("a3", ("q1",))],
    )
    assert acd.handle_timer(11.0) == []
    assert acd.agent_state("a3") is AgentState.LOGGED_OUT
    assert offers(acd.agent_available("a3", 12.0)) == [("c1", "a3")]


def test_idle_agent_added_to_a_queue_gets_its_waiting_call_at_next_timer() -> None:
    acd = two_queues()
    acd.agent_available("a1", 1.0)
    acd.enqueue("c2", "q2", 10.0)
    acd.replace_specs(
        [QueueSpec("q1"), QueueSpec("q2")],
        [AgentSpec("a1", ("q1", "q2")), AgentSpec("a2", ("q2",))],
    )
    assert acd.get_timer() == 10.0  # due now: the reload has effects to deliver
    assert offers(acd.handle_timer(10.5)) == [("c2", "a1")]
    assert acd.get_timer() == 25.5


def test_removed_idle_agent_is_logged_out_at_next_timer_and_forgotten() -> None:
    acd = two_queues()
    acd.agent_available("a1", 1.0)
    acd.replace_specs([QueueSpec("q1"), QueueSpec("q2")], [AgentSpec("a2", ("q2",))])
    assert offers(acd.enqueue("c1", "q1", 2.0)) == []  # no longer serves q1
    out = acd.handle_timer(2.0)
    assert [(e.agent_id, e.data["to"]) for e in out if isinstance(e, QueueEvent)] == [
        ("a1", "logged_out")
    ]
    with pytest.raises(UnknownAgent):
        acd.agent_state("a1")


def test_removed_agent_finishes_its_call_then_is_logged_out() -> None:
    acd = Acd([QueueSpec("q1", wrap_up=30.0)], [AgentSpec("a1", ("q1",)), AgentSpec("a2", ("q1",))])
    acd.agent_available("a1", 1.0)
    acd.enqueue("c1", "q1", 10.0)
    acd.agent_answered("c1", "a1", 11.0)
    acd.replace_specs([QueueSpec("q1", wrap_up=30.0)], [AgentSpec("a2", ("q1",))])
    assert acd.handle_timer(12.0) == []
    assert acd.agent_state("a1") is AgentState.TALKING
    with pytest.raises(UnknownAgent):
        acd.agent_available("a1", 13.0)  # not an agent any more
    out = acd.call_ended("c1", "a1", 50.0)
    assert [e.data["to"] for e in out if isinstance(e, QueueEvent) and e.kind == "AGENT_STATE"] == [
        "wrap_up",
        "logged_out",
    ]
    with pytest.raises(UnknownAgent):
        acd.agent_state("a1")


def test_removed_ringing_agent_keeps_ringing_and_is_logged_out_after_no_answer() -> None:
    acd = Acd([QueueSpec("q1")], [AgentSpec("a1", ("q1",)), AgentSpec("a2", ("q1",))])
    acd.agent_available("a1", 1.0)
    acd.agent_available("a2", 2.0)
    acd.enqueue("c1", "q1", 10.0)  # a1
    acd.replace_specs([QueueSpec("q1")], [AgentSpec("a2", ("q1",))])
    assert acd.handle_timer(10.0) == []
    assert acd.agent_state("a1") is AgentState.RINGING
    out = acd.handle_timer(25.0)
    assert offers(out) == [("c1", "a2")]
    with pytest.raises(UnknownAgent):
        acd.agent_state("a1")


def test_removed_queue_drains_its_calls_then_disappears() -> None:
    acd = Acd(
        [QueueSpec("q1"), QueueSpec("q2")],
        [AgentSpec("a1", ("q1", "q2"))],
    )
    acd.enqueue("c2", "q2", 10.0)
    acd.replace_specs([QueueSpec("q1")], [AgentSpec("a1", ("q1",))])
    acd.handle_timer(10.0)
    with pytest.raises(UnknownQueue):
        acd.enqueue("c3", "q2", 11.0)
    assert acd.queue_snapshot("q2", 11.0).draining
    # a1 still serves the draining queue for the call that was in it
    assert offers(acd.agent_available("a1", 12.0)) == [("c2", "a1")]
    acd.agent_answered("c2", "a1", 13.0)
    with pytest.raises(UnknownQueue):
        acd.queue_snapshot("q2", 14.0)
    acd.call_ended("c2", "a1", 20.0)
    assert offers(acd.enqueue("c4", "q1", 21.0)) == [("c4", "a1")]


def test_changed_queue_spec_applies_to_new_calls_only() -> None:
    acd = Acd(
        [QueueSpec("q1", ring_timeout=15.0)], [AgentSpec("a1", ("q1",)), AgentSpec("a2", ("q1",))]
    )
    acd.agent_available("a1", 1.0)
    acd.agent_available("a2", 2.0)
    acd.enqueue("old", "q1", 10.0)
    acd.replace_specs(
        [QueueSpec("q1", ring_timeout=5.0)], [AgentSpec("a1", ("q1",)), AgentSpec("a2", ("q1",))]
    )
    acd.handle_timer(10.0)
    assert ring_timeouts(acd.enqueue("new", "q1", 11.0)) == [5.0]
    # the old call keeps 15 s, also for its next offer after the no-answer
    acd.agent_answered("new", "a2", 12.0)
    acd.call_ended("new", "a2", 13.0)
    out = acd.handle_timer(25.0)
    assert offers(out) == [("old", "a2")]
    assert ring_timeouts(out) == [15.0]


def test_invalid_reload_is_refused_and_old_specs_stay() -> None:
    acd = two_queues()
    with pytest.raises(InvalidSpec):
        acd.replace_specs([QueueSpec("q1")], [AgentSpec("a1", ("q1", "gone"))])
    assert acd.get_timer() is None
    acd.agent_available("a2", 1.0)
    assert offers(acd.enqueue("c1", "q2", 2.0)) == [("c1", "a2")]


def test_reload_keeps_the_retry_windows_of_waiting_calls() -> None:
    acd = Acd([QueueSpec("q1", retry=5.0)], [AgentSpec("a1", ("q1",))])
    acd.agent_available("a1", 1.0)
    acd.enqueue("c1", "q1", 10.0)
    acd.handle_timer(25.0)  # a1 did not answer: not offered c1 again before 30
    acd.replace_specs([QueueSpec("q1", retry=60.0)], [AgentSpec("a1", ("q1",))])
    assert offers(acd.handle_timer(26.0)) == []
    # the call keeps the retry of the spec it was enqueued with
    assert acd.get_timer() == 30.0
    assert offers(acd.handle_timer(30.0)) == [("c1", "a1")]
    # a call enqueued after the reload gets the new window
    acd.enqueue("c2", "q1", 31.0)
    acd.agent_answered("c1", "a1", 32.0)
    acd.call_ended("c1", "a1", 33.0)  # a1 takes c2
    acd.handle_timer(48.0)  # a1 did not answer c2
    assert acd.get_timer() == 108.0


def test_queue_retry_from_yaml_reaches_the_engine(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    queues_yaml = config_dir / "queues.yaml"
    text = queues_yaml.read_text()
    assert "retry: 5 " in text  # the shipped demo shows the option
    queues_yaml.write_text(text.replace("retry: 5 ", "retry: 2 ", 1))
    queue_specs, agent_specs = acd_specs(load_config(config_dir))
    # `general` shows the option; the other demo queues keep the default of 5 s.
    assert [(q.name, q.retry) for q in queue_specs] == [
        ("general", 2.0),
        ("enterprise", 5.0),
        ("legal", 5.0),
    ]
    acd = Acd(queue_specs, agent_specs)
    acd.agent_available("1001", 0.0)
    acd.enqueue("c1", "general", 1.0)
    acd.agent_rejected("c1", "1001", 2.0, "486")
    assert acd.get_timer() == 4.0
    assert offers(acd.handle_timer(4.0)) == [("c1", "1001")]


def test_a_removed_agent_that_misses_its_last_call_is_forgotten_not_locked() -> None:
    acd = Acd([QueueSpec("q1", ring_timeout=10.0, lock_after=1)], [AgentSpec("a1", ("q1",))])
    acd.agent_available("a1", 0.0)
    acd.enqueue("c1", "q1", 1.0)  # a1 rings
    acd.replace_specs([QueueSpec("q1", ring_timeout=10.0, lock_after=1)], [])
    acd.handle_timer(2.0)
    assert acd.agent_state("a1") is AgentState.RINGING
    acd.handle_timer(11.0)  # no answer: the miss would lock it, but it is leaving
    assert "a1" not in acd.agent_ids()
