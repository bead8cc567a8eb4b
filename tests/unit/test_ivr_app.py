"""IvrApp driven with a fake call, a fake prompt library and virtual time (STYLE §6 tier 1).

Flows are written as the admin writes them in YAML (plain dicts) and converted through the
real schema, so the tests also hold the node defaults in `ivr/nodes.py` to what they say.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ivrfakes import AppDriver, FakeCall, FakePrompts

from ivr import nodes
from ivr.app import BEEP, PATH_LIMIT, IvrApp
from media.items import Prompt, Tone
from softswitch.call import actions as act
from softswitch.call import events as ev
from softswitch.call.actions import Action

WALL_OFFSET = 1_780_000_000.0


class Driver(AppDriver):
    """Runs one IvrApp and applies what call control would: answers, variables, timers."""

    def __init__(
        self,
        flow: dict[str, Any],
        *,
        start: str | None = None,
        is_open: bool = True,
        regions: dict[str, str] | None = None,
        call: FakeCall | None = None,
        broken: set[str] | None = None,
        answer: bool = True,
    ) -> None:
        self.flows = {"main": msgspec.convert(flow, nodes.Flow)}
        self.call = call or FakeCall()
        self.now = 100.0
        self.open = is_open
        self.regions = regions or {}
        self.schedule_asks: list[tuple[str, float]] = []
        self.app = IvrApp(
            self.flows,
            "main",
            FakePrompts(broken),
            node=start,
            is_open=self._is_open,
            region_of=lambda number: self.regions.get(number[:3]),
            wall=lambda now: now + WALL_OFFSET,
            voicemail_path=lambda mailbox, call_id: f"/data/vm/{mailbox}/{call_id}.wav",
            answer=answer,
        )
        super().__init__()

    def _is_open(self, schedule: str, epoch: float) -> bool:
        self.schedule_asks.append((schedule, epoch))
        return self.open

    def keys(self, digits: str) -> list[Action]:
        out: list[Action] = []
        for digit in digits:
            out += self.key(digit)
        return out

    def wait(self, seconds: float) -> list[Action]:
        """Let virtual time pass, firing the timers that come due."""
        out: list[Action] = []
        end = self.now + seconds
        while True:
            due = sorted((at, name) for name, at in self.timers.items() if at <= end)
            if not due:
                break
            at, name = due[0]
            del self.timers[name]
            self.now = at
            out += self.send(ev.TimerFired(name))
        self.now = end
        return out


def played(out: list[Action]) -> list[list[str]]:
    """The prompts of each Play in `out`, by name ("beep" for the voicemail tone)."""
    result = []
    for action in out:
        if isinstance(action, act.Play):
            names = []
            for item in action.items:
                if isinstance(item, Prompt):
                    names.append(item.path.removesuffix(".wav"))
                elif isinstance(item, Tone):
                    names.append("beep")
            result.append(names)
    return result


def kinds(out: list[Action]) -> list[str]:
    return [type(action).__name__ for action in out]


def without_path(out: list[Action]) -> list[Action]:
    return [a for a in out if not (isinstance(a, act.SetVariable) and a.name == "ivr_path")]


def hangups(out: list[Action]) -> list[act.Hangup]:
    return [a for a in out if isinstance(a, act.Hangup)]


MENU_FLOW: dict[str, Any] = {
    "start": "main",
    "nodes": {
        "main": {
            "type": "menu",
            "prompt": ["welcome", "menu_main"],
            "keys": {"1": "general", "2": "sub"},
            "timeout": 5,
            "retries": 2,
            "invalid_prompt": "invalid",
            "timeout_prompt": "no_input",
            "on_fail": "operator",
            "repeat_key": "*",
            "back_key": "#",
        },
        "sub": {
            "type": "menu",
            "prompt": "menu_sub",
            "keys": {"1": "enterprise", "9": "deep"},
            "back_key": "#",
            "invalid_prompt": "invalid",
        },
        "deep": {"type": "menu", "prompt": "menu_deep", "keys": {"0": "main"}, "back_key": "#"},
        "general": {"type": "queue", "queue": "general"},
        "enterprise": {"type": "queue", "queue": "enterprise", "priority": 5},
        "operator": {"type": "queue", "queue": "operator", "prompt": "connecting"},
    },
}


# ------------------------------------------------------------------------- branch nodes


def test_closed_hours_refuse_with_status_without_answering() -> None:
    d = Driver(
        {
            "start": "hours",
            "nodes": {
                "hours": {"type": "time", "schedule": "office", "open": "menu", "closed": "bye"},
                "menu": {"type": "menu", "prompt": "m", "keys": {"1": "bye"}},
                "bye": {"type": "hangup", "respond": 603},
            },
        },
        is_open=False,
    )
    out = d.start()
    assert kinds(out) == ["SetVariable", "SetVariable", "Hangup"]
    assert out[-1] == act.Hangup(status=603, reason="IVR hangup node")
    assert d.call.variables["ivr_path"] == "hours>bye"
    assert d.app.finished


def test_time_node_asks_the_schedule_at_wall_clock_time() -> None:
    d = Driver(
        {
            "start": "hours",
            "nodes": {
                "hours": {"type": "time", "schedule": "office", "open": "menu", "closed": "bye"},
                "menu": {"type": "play", "prompt": "open", "next": "bye"},
                "bye": {"type": "hangup"},
            },
        }
    )
    out = d.start()
    assert d.schedule_asks == [("office", 100.0 + WALL_OFFSET)]
    assert kinds(without_path(out)) == ["Answer", "Play"]
    assert played(out) == [["open"]]


LOCALITY_FLOW: dict[str, Any] = {
    "start": "where",
    "nodes": {
        "where": {
            "type": "locality",
            "regions": {"beijing": "bj", "shanghai": "sh"},
            "default": "other",
        },
        "bj": {"type": "queue", "queue": "beijing"},
        "sh": {"type": "queue", "queue": "shanghai"},
        "other": {"type": "queue", "queue": "national"},
    },
}


@pytest.mark.parametrize(
    ("caller", "queue"),
    [("01088886666", "beijing"), ("02155550000", "shanghai"), ("07551234567", "national")],
)
def test_locality_routes_by_caller_region_or_default(caller: str, queue: str) -> None:
    d = Driver(
        LOCALITY_FLOW,
        regions={"010": "beijing", "021": "shanghai", "075": "shenzhen"},
        call=FakeCall(caller=caller),
    )
    out = d.start()
    assert out[-1] == act.Enqueue(queue, 0)
    assert "Answer" not in kinds(out)  # the queue rings the caller; the IVR does not answer


def test_set_node_sets_variables_that_later_prompts_read_in_the_same_turn() -> None:
    d = Driver(
        {
            "start": "tag",
            "nodes": {
                "tag": {"type": "set", "variables": {"service_type": "tax"}, "next": "say"},
                "say": {
                    "type": "play",
                    "prompt": ["you_chose", {"var": "service_type"}],
                    "next": "q",
                },
                "q": {"type": "queue", "queue": "general"},
            },
        }
    )
    out = d.start()
    assert act.SetVariable("service_type", "tax") in out
    assert kinds(out) == ["SetVariable", "SetVariable", "SetVariable", "Answer", "Play"]
    assert played(out) == [["you_chose", "say:tax"]]
    assert d.done() == [act.SetVariable("ivr_path", "tag>say>q"), act.Enqueue("general", 0)]
    assert d.app.finished


def test_flow_looping_through_branches_hangs_up_instead_of_recursing() -> None:
    d = Driver(
        {
            "start": "a",
            "nodes": {
                "a": {"type": "set", "variables": {"x": "1"}, "next": "b"},
                "b": {"type": "time", "schedule": "office", "open": "a", "closed": "a"},
            },
        }
    )
    out = d.start()
    assert hangups(out) == [act.Hangup(status=500, reason="IVR flow loops")]
    assert len(d.call.variables["ivr_path"].split(">")) == PATH_LIMIT


def test_unknown_flow_or_start_node_hangs_up_with_500() -> None:
    d = Driver(MENU_FLOW)
    app = IvrApp(
        d.flows,
        "nope",
        FakePrompts(),
        is_open=lambda s, t: True,
        region_of=lambda n: None,
        wall=lambda now: now,
        voicemail_path=lambda m, c: "x",
    )
    assert app.handle(FakeCall(), ev.Started(), 0.0) == [
        act.Hangup(status=500, reason="no IVR flow nope")
    ]
    d2 = Driver(MENU_FLOW, start="missing")
    assert hangups(d2.start()) == [act.Hangup(status=500, reason="no IVR node missing")]


# ------------------------------------------------------------------------- answering, play


def test_first_audio_node_answers_once_right_before_its_play() -> None:
    d = Driver(
        {
            "start": "hello",
            "nodes": {
                "hello": {"type": "play", "prompt": "welcome", "next": "menu"},
                "menu": {"type": "menu", "prompt": "m", "keys": {"1": "hello"}},
            },
        }
    )
    out = d.start()
    assert kinds(out) == ["SetVariable", "Answer", "Play"]
    assert out[1] == act.Answer("a")
    out = d.done()
    assert "Answer" not in kinds(out)
    assert played(out) == [["m"]]


def test_answered_call_and_answer_false_are_not_answered() -> None:
    flow = {
        "start": "p",
        "nodes": {"p": {"type": "play", "prompt": "x", "next": "h"}, "h": {"type": "hangup"}},
    }
    d = Driver(flow, call=FakeCall(caller_answered=True))
    assert kinds(d.start()) == ["SetVariable", "Play"]
    d = Driver(flow, answer=False)
    assert kinds(d.start()) == ["SetVariable", "Play"]


def test_play_node_moves_on_only_on_its_own_playback_done() -> None:
    d = Driver(
        {
            "start": "p",
            "nodes": {
                "p": {"type": "play", "prompt": "notice", "next": "q"},
                "q": {"type": "queue", "queue": "general"},
            },
        }
    )
    d.start()
    assert d.play is not None and d.play.barge_in is False
    assert d.send(ev.PlaybackDone("a", "someone-else", False)) == []
    assert d.key("1") == []  # keys outside input nodes are ignored
    assert d.done()[-1] == act.Enqueue("general", 0)


def test_failed_play_counts_as_finished_so_the_call_goes_on() -> None:
    d = Driver(
        {
            "start": "p",
            "nodes": {
                "p": {"type": "play", "prompt": "notice", "next": "q"},
                "q": {"type": "queue", "queue": "general"},
            },
        }
    )
    d.start()
    out = d.send(ev.ActionFailed("Play", "cannot read notice.wav"))
    assert out[-1] == act.Enqueue("general", 0)
    assert d.send(ev.ActionFailed("Play", "again")) == []  # finished: nothing more


def test_prompt_error_is_logged_and_the_rest_plays(caplog: pytest.LogCaptureFixture) -> None:
    d = Driver(MENU_FLOW, broken={"welcome"})
    with caplog.at_level(logging.ERROR, logger="ivr.app"):
        out = d.start()
    assert played(out) == [["menu_main"]]
    assert "welcome" in caplog.text and "n1-1780000000-1" in caplog.text


def test_play_node_whose_prompt_cannot_be_resolved_goes_straight_on() -> None:
    d = Driver(
        {
            "start": "p",
            "nodes": {
                "p": {"type": "play", "prompt": "gone", "next": "q"},
                "q": {"type": "queue", "queue": "general"},
            },
        },
        broken={"gone"},
    )
    out = d.start()
    assert kinds(out) == ["SetVariable", "SetVariable", "Enqueue"]


def test_caller_hangup_mid_prompt_ends_the_app() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    assert d.send(ev.LegEnded("a", "caller")) == []
    assert d.app.finished
    assert d.done() == []
    assert d.key("1") == []
    assert d.wait(60) == []


def test_ended_leg_other_than_the_caller_is_ignored() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    assert d.send(ev.LegEnded("b", "agent")) == []
    assert not d.app.finished


# ------------------------------------------------------------------------- menus


def test_menu_plays_with_barge_in_and_starts_its_timer_when_the_prompt_ends() -> None:
    d = Driver(MENU_FLOW)
    out = d.start()
    assert kinds(out) == ["SetVariable", "Answer", "Play"]
    assert d.play is not None and d.play.barge_in
    assert played(out) == [["welcome", "menu_main"]]
    assert d.timers == {}
    out = d.done()
    assert out == [act.StartTimer(next(iter(d.timers)), 5.0)]


def test_key_during_menu_prompt_stops_it_and_enters_the_next_node_in_the_same_turn() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    out = d.key("2")
    assert kinds(out) == ["StopPlay", "SetVariable", "Play"]
    assert played(out) == [["menu_sub"]]
    assert d.call.variables["ivr_path"] == "main>sub"
    # The stopped prompt's late PlaybackDone does not move the sub menu on.
    assert d.send(ev.PlaybackDone("a", "ivr-1", True)) == []
    assert d.timers == {}


def test_key_after_menu_prompt_cancels_the_timer() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    d.done()
    (timer,) = d.timers
    out = d.key("1")
    assert out == [
        act.CancelTimer(timer),
        act.SetVariable("ivr_path", "main>general"),
        act.Enqueue("general", 0),
    ]
    assert d.app.finished


def test_invalid_key_replays_menu_then_fails_over() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    d.done()
    for _ in range(2):  # retries: 2
        out = d.key("7")
        assert played(out) == [["invalid", "welcome", "menu_main"]]
        d.done()
    out = d.key("7")
    assert d.call.variables["ivr_path"] == "main>operator"
    assert played(out) == [["connecting"]]
    assert d.done()[-1] == act.Enqueue("operator", 0)


def test_timeout_replays_menu_then_hangs_up_without_on_fail() -> None:
    d = Driver(MENU_FLOW, start="sub")
    d.start()
    d.done()
    out = d.wait(5)
    assert played(out) == [["menu_sub"]]  # no timeout_prompt on this menu
    d.done()
    out = d.wait(5)
    assert played(out) == [["menu_sub"]]
    d.done()
    out = d.wait(5)
    assert out == [act.Hangup(status=480, reason="no valid input at sub")]
    assert d.app.finished


def test_timeout_and_invalid_failures_count_together() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    d.done()
    assert played(d.wait(5)) == [["no_input", "welcome", "menu_main"]]
    d.done()
    assert played(d.key("5")) == [["invalid", "welcome", "menu_main"]]
    out = d.key("5")  # during the replay: barge-in, third failure
    assert kinds(out)[0] == "StopPlay"
    assert d.call.variables["ivr_path"] == "main>operator"


def test_key_during_invalid_prompt_is_taken_as_a_menu_choice() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    d.key("7")
    out = d.key("1")
    assert kinds(out) == ["StopPlay", "SetVariable", "Enqueue"]


def test_repeat_key_replays_without_counting_a_failure() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    for _ in range(5):
        out = d.key("*")
        assert kinds(out) == ["StopPlay", "Play"]
        assert played(out) == [["welcome", "menu_main"]]
    d.key("7")
    d.key("7")
    assert d.call.variables["ivr_path"] == "main"  # two failures of three allowed


def test_back_key_returns_to_the_menu_this_one_was_entered_from() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    d.key("2")
    d.key("9")
    assert d.call.variables["ivr_path"] == "main>sub>deep"
    out = d.key("#")
    assert played(out) == [["menu_sub"]]
    out = d.key("#")
    assert played(out) == [["welcome", "menu_main"]]
    assert d.call.variables["ivr_path"] == "main>sub>deep>sub>main"


def test_back_key_in_the_first_menu_is_an_invalid_key() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    assert played(d.key("#")) == [["invalid", "welcome", "menu_main"]]


def test_returning_to_a_menu_by_key_does_not_grow_the_back_stack() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    for _ in range(3):
        d.key("2")
        d.key("9")
        d.key("0")  # deep → main
    d.key("2")
    assert played(d.key("#")) == [["welcome", "menu_main"]]


def test_stale_timer_after_a_key_is_ignored() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    d.done()
    (old,) = d.timers
    d.key("*")  # replay: a new prompt, the old timer is cancelled
    assert d.send(ev.TimerFired(old)) == []


# ------------------------------------------------------------------------- collect


def collect_flow(**options: Any) -> dict[str, Any]:
    node = {
        "type": "collect",
        "prompt": "enter_id",
        "variable": "customer_id",
        "next": "q",
        "invalid_prompt": "invalid",
        "on_fail": "op",
    }
    node.update(options)
    return {
        "start": "ask",
        "nodes": {
            "ask": node,
            "q": {"type": "queue", "queue": "general"},
            "op": {"type": "queue", "queue": "operator"},
        },
    }


def test_collect_ends_on_terminator_which_is_not_stored() -> None:
    d = Driver(collect_flow())
    out = d.start()
    assert d.play is not None and d.play.barge_in
    assert played(out) == [["enter_id"]]
    d.done()
    d.keys("1234")
    out = d.key("#")
    assert act.SetVariable("customer_id", "1234") in out
    assert out[-1] == act.Enqueue("general", 0)


def test_collect_ends_at_max_length() -> None:
    d = Driver(collect_flow(max_length=4, terminator=None))
    d.start()
    d.done()
    out = d.keys("123")
    assert "customer_id" not in d.call.variables
    out = d.key("4")
    assert kinds(out) == ["CancelTimer", "SetVariable", "SetVariable", "Enqueue"]
    assert out[1] == act.SetVariable("customer_id", "1234")


def test_collect_inter_digit_timeout_ends_the_input() -> None:
    d = Driver(collect_flow(inter_digit_timeout=3))
    d.start()
    d.done()
    d.keys("42")
    assert d.wait(2.9) == []
    out = d.wait(0.2)
    assert act.SetVariable("customer_id", "42") in out
    assert out[-1] == act.Enqueue("general", 0)


def test_collect_keys_during_the_prompt_stop_it_and_count() -> None:
    d = Driver(collect_flow())
    d.start()
    out = d.key("9")
    assert kinds(out) == ["StopPlay", "StartTimer"]
    assert isinstance(out[1], act.StartTimer) and out[1].seconds == 4.0  # inter-digit
    out = d.keys("8#")
    assert act.SetVariable("customer_id", "98") in out


def test_collect_silence_after_the_prompt_is_a_failure_with_invalid_prompt() -> None:
    d = Driver(collect_flow(first_timeout=8, retries=1))
    d.start()
    d.done()
    assert d.wait(7.9) == []
    out = d.wait(0.2)
    assert played(out) == [["invalid", "enter_id"]]
    d.done()
    out = d.wait(8)
    assert out[-1] == act.Enqueue("operator", 0)
    assert "customer_id" not in d.call.variables


def test_collect_too_short_or_not_matching_pattern_retries_then_fails_over() -> None:
    d = Driver(collect_flow(min_length=3, pattern=r"[1-9][0-9]*", retries=2))
    d.start()
    assert played(d.keys("12#")) == [["invalid", "enter_id"]]  # too short
    assert played(d.keys("0123#")) == [["invalid", "enter_id"]]  # pattern: no leading 0
    out = d.keys("#")  # nothing: third failure
    assert out[-1] == act.Enqueue("operator", 0)


def test_collect_accepts_input_matching_the_whole_pattern() -> None:
    d = Driver(collect_flow(pattern=r"1[3-9][0-9]{9}"))
    d.start()
    out = d.keys("13912345678#")
    assert act.SetVariable("customer_id", "13912345678") in out


def test_collect_digits_set_before_the_next_node_reads_them() -> None:
    flow = collect_flow()
    flow["nodes"]["q"] = {
        "type": "play",
        "prompt": ["you_entered", {"digits": "customer_id"}],
        "next": "op",
    }
    d = Driver(flow)
    d.start()
    out = d.keys("77#")
    assert played(out) == [["you_entered", "say:77"]]


# ------------------------------------------------------------------------- voicemail

VOICEMAIL_FLOW: dict[str, Any] = {
    "start": "vm",
    "nodes": {
        "vm": {
            "type": "voicemail",
            "mailbox": "after_hours",
            "prompt": "leave_message",
            "max_seconds": 90,
            "silence_seconds": 4,
            "thanks_prompt": "thanks",
        }
    },
}


def test_voicemail_plays_greeting_and_beep_then_records() -> None:
    d = Driver(VOICEMAIL_FLOW)
    out = d.start()
    assert kinds(out) == ["SetVariable", "Answer", "Play"]
    assert played(out) == [["leave_message", "beep"]]
    assert d.play is not None and d.play.items[-1] == BEEP == Tone(1000.0, on_ms=300)
    assert d.key("#") == []  # not recording yet
    out = d.done()
    assert out == [
        act.Record(
            "a",
            path="/data/vm/after_hours/n1-1780000000-1.wav",
            max_seconds=90.0,
            silence_seconds=4.0,
        )
    ]


def test_hash_stops_the_recording_and_the_message_is_kept_and_thanked() -> None:
    d = Driver(VOICEMAIL_FLOW)
    d.start()
    d.done()
    assert d.key("5") == []
    assert d.key("#") == [act.StopRecord("a")]
    out = d.send(ev.RecordDone("a", "/data/vm/after_hours/n1-1780000000-1.wav", 12.34, "stopped"))
    assert out[:3] == [
        act.SetVariable("voicemail_mailbox", "after_hours"),
        act.SetVariable("voicemail_path", "/data/vm/after_hours/n1-1780000000-1.wav"),
        act.SetVariable("voicemail_seconds", "12.3"),
    ]
    assert played(out) == [["thanks"]]
    assert d.done() == [act.Hangup(status=480, reason="voicemail left")]


@pytest.mark.parametrize(("seconds", "reason"), [(0.3, "stopped"), (30.0, "error")])
def test_short_or_failed_recording_is_no_message(seconds: float, reason: str) -> None:
    d = Driver(VOICEMAIL_FLOW)
    d.start()
    d.done()
    out = d.send(ev.RecordDone("a", "/data/vm/x.wav", seconds, reason))
    assert out == [act.Hangup(status=480, reason="no voicemail message")]
    assert "voicemail_path" not in d.call.variables


def test_failed_record_action_is_no_message() -> None:
    d = Driver(VOICEMAIL_FLOW)
    d.start()
    d.done()
    out = d.send(ev.ActionFailed("Record", "disk full"))
    assert out == [act.Hangup(status=480, reason="no voicemail message")]


def test_message_ended_by_hanging_up_is_kept_whichever_event_comes_first() -> None:
    d = Driver(VOICEMAIL_FLOW)
    d.start()
    d.done()
    out = d.send(ev.RecordDone("a", "/data/vm/after_hours/n1-1780000000-1.wav", 20.0, "hangup"))
    assert kinds(out) == ["SetVariable", "SetVariable", "SetVariable", "Play"]
    assert d.send(ev.LegEnded("a", "caller")) == []

    d = Driver(VOICEMAIL_FLOW)
    d.start()
    d.done()
    assert d.send(ev.LegEnded("a", "caller")) == []
    out = d.send(ev.RecordDone("a", "/data/vm/after_hours/n1-1780000000-1.wav", 20.0, "hangup"))
    assert kinds(out) == ["SetVariable", "SetVariable", "SetVariable"]
    assert d.call.variables["voicemail_seconds"] == "20.0"


def test_voicemail_without_thanks_prompt_hangs_up_after_the_message() -> None:
    flow = msgspec.json.decode(msgspec.json.encode(VOICEMAIL_FLOW))
    del flow["nodes"]["vm"]["thanks_prompt"]
    d = Driver(flow)
    d.start()
    d.done()
    out = d.send(ev.RecordDone("a", "/p.wav", 5.0, "silence"))
    assert kinds(out) == ["SetVariable", "SetVariable", "SetVariable", "Hangup"]


# ------------------------------------------------------------------------- survey

SURVEY_FLOW: dict[str, Any] = {
    "start": "rate",
    "nodes": {
        "rate": {
            "type": "survey",
            "prompt": "rate_us",
            "timeout": 6,
            "retries": 1,
            "invalid_prompt": "one_to_five",
            "thanks_prompt": "thanks",
        }
    },
}


def test_survey_rating_is_stored_with_the_agent_and_thanked() -> None:
    d = Driver(SURVEY_FLOW, call=FakeCall(caller_answered=True, agent_id="1001"))
    out = d.start()
    assert kinds(out) == ["SetVariable", "Play"]
    out = d.key("4")
    assert out[:3] == [
        act.StopPlay("a"),
        act.SetVariable("survey_rating", "4"),
        act.SetVariable("survey_agent", "1001"),
    ]
    assert played(out) == [["thanks"]]
    assert d.key("5") == []  # one rating per survey
    assert d.done() == [act.Hangup(status=480, reason="survey rated")]


def test_survey_other_key_plays_invalid_prompt_and_retries_then_hangs_up() -> None:
    d = Driver(SURVEY_FLOW)
    d.start()
    d.done()
    out = d.key("9")
    assert played(out) == [["one_to_five", "rate_us"]]
    d.done()
    out = d.key("0")
    assert out[-1] == act.Hangup(status=480, reason="no valid input at rate")
    assert "survey_rating" not in d.call.variables


def test_survey_timeout_replays_the_question_then_hangs_up() -> None:
    d = Driver(SURVEY_FLOW)
    d.start()
    d.done()
    assert played(d.wait(6)) == [["rate_us"]]
    d.done()
    assert hangups(d.wait(6)) == [act.Hangup(status=480, reason="no valid input at rate")]


def test_survey_without_agent_sets_only_the_rating() -> None:
    d = Driver(SURVEY_FLOW)
    d.start()
    out = d.key("1")
    assert [a for a in out if isinstance(a, act.SetVariable)] == [
        act.SetVariable("survey_rating", "1")
    ]


# ------------------------------------------------------------------------- queue, transfer, hangup


def test_queue_node_plays_its_prompt_then_enqueues() -> None:
    d = Driver(MENU_FLOW, start="operator")
    out = d.start()
    assert kinds(out) == ["SetVariable", "Answer", "Play"]
    assert d.key("1") == []
    assert d.done() == [act.Enqueue("operator", 0)]
    assert d.app.finished


def test_queue_node_without_prompt_enqueues_at_once_with_priority() -> None:
    d = Driver(MENU_FLOW, start="enterprise")
    assert d.start() == [act.SetVariable("ivr_path", "enterprise"), act.Enqueue("enterprise", 5)]


def test_transfer_node_dials_out_after_its_prompt() -> None:
    d = Driver(
        {
            "start": "hours",
            "nodes": {
                "hours": {"type": "time", "schedule": "office", "open": "q", "closed": "out"},
                "q": {"type": "queue", "queue": "general"},
                "out": {
                    "type": "transfer",
                    "number": "+861088880000",
                    "trunk": "pstn",
                    "prompt": "transferring",
                },
            },
        },
        is_open=False,
    )
    out = d.start()
    assert played(out) == [["transferring"]]
    assert d.done() == [act.DialOut("+861088880000", "pstn")]
    d = Driver(
        {"start": "out", "nodes": {"out": {"type": "transfer", "number": "12348"}}},
    )
    assert d.start()[-1] == act.DialOut("12348", None)


def test_hangup_node_with_prompt_answers_plays_then_hangs_up() -> None:
    d = Driver(
        {"start": "bye", "nodes": {"bye": {"type": "hangup", "prompt": "closed", "respond": 480}}}
    )
    out = d.start()
    assert kinds(out) == ["SetVariable", "Answer", "Play"]
    assert d.done() == [act.Hangup(status=480, reason="IVR hangup node")]


# ------------------------------------------------------------------------- ivr_path


def test_ivr_path_continues_an_earlier_path_and_keeps_the_last_nodes() -> None:
    call = FakeCall(variables={"ivr_path": "other>flow"})
    d = Driver(MENU_FLOW, call=call)
    d.start()
    assert call.variables["ivr_path"] == "other>flow>main"
    for _ in range(15):
        d.key("2")
        d.key("#")
    path = call.variables["ivr_path"].split(">")
    assert len(path) == PATH_LIMIT
    assert path[-2:] == ["sub", "main"]


def test_repeat_and_retry_do_not_add_to_the_path() -> None:
    d = Driver(MENU_FLOW)
    d.start()
    d.key("*")
    d.key("7")
    assert d.call.variables["ivr_path"] == "main"


# ------------------------------------------------------------------------- purity


def test_ivr_app_imports_no_clock_socket_or_event_loop() -> None:
    source = Path(__file__).resolve().parents[2].joinpath("ivr/app.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "time", "uvloop", "os", "sqlite3"}
