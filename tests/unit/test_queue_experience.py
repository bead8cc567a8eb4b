"""What a caller hears while waiting in a queue: music over and over, and announcements of
the position and expected wait every `announce.every` seconds (virtual time, fake engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from callkit import IvrHarness, answered_by_node, edited_config
from sipflow import Phone, Trunk
from test_call_model import MONDAY_10

from media.events import PlaybackDone
from softswitch.cli import main as cli_main
from softswitch.sip.message import Request

ROOT = Path(__file__).resolve().parents[2]
ANNOUNCE = {
    "every": 30,
    "position": ["welcome", {"number": "queue_position"}],
    "wait": ["welcome_en", {"number": "queue_wait_minutes"}],
}


class QueueHarness(IvrHarness):
    """The IVR harness on the demo config with `general` given music and announcements."""

    def __init__(self, tmp_path: Path, general: dict) -> None:
        config = edited_config(tmp_path, {"queues": general})
        super().__init__(tmp_path, MONDAY_10, config_dir=config)

    def played(self, leg: str) -> list[str]:
        return self.media.last_play(leg)[1]


def queued_caller(h: QueueHarness) -> str:
    """A caller through the main menu (key 1) into `general`; its leg id."""
    leg = answered_by_node(h, Trunk(h), "12345")
    h.press(leg, "1")
    h.finish_play(leg)  # "please wait": the queue app takes the call
    return leg


def test_music_loops_and_the_position_is_announced_every_30_s(tmp_path: Path) -> None:
    h = QueueHarness(tmp_path, {"music": "menu_main", "announce": ANNOUNCE})
    leg = queued_caller(h)
    played = h.played(leg)
    # Joining: the announcement (position 1; no wait estimate yet), then the music.
    assert played[-1] == "welcome"
    h.finish_play(leg)
    assert h.played(leg)[-1] == "menu_main"
    h.finish_play(leg)
    assert h.played(leg)[-2:] == ["menu_main", "menu_main"]  # over and over
    before = len(h.media.plays[leg])
    h.advance(30)
    assert ("stop_play", leg) in h.media.calls
    assert h.played(leg)[-1] == "welcome" and len(h.media.plays[leg]) > before
    h.advance(30)
    assert h.played(leg).count("welcome") >= 4  # the IVR's welcome, and three announcements


def test_the_wait_estimate_comes_from_answered_calls_and_stops_at_the_answer(
    tmp_path: Path,
) -> None:
    h = QueueHarness(tmp_path, {"music": "menu_main", "announce": ANNOUNCE})
    phone = Phone(h, "1001", 5101)
    phone.register()
    first = queued_caller(h)
    (invite,) = [m for m in h.take(phone.port) if isinstance(m, Request)]
    h.advance(3)
    phone.reply(invite, 200, sdp=True)
    assert h.switch.acd.expected_wait("general") is not None
    stops = h.media.calls.count(("stop_play", first))
    h.advance(60)
    assert h.media.calls.count(("stop_play", first)) == stops  # no announcement once answered
    # A second caller (1001 is busy) hears its position, then the estimated wait.
    trunk = Trunk(h, port=5092, call_id="second")
    trunk.invite("12345")
    ok = h.take(trunk.port)[-1]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    (second,) = [s.a.leg_id for s in h.switch.control.sessions.values() if s.a.leg_id != first]
    h.press(second, "1")
    h.finish_play(second)
    assert h.played(second)[-2:] == ["welcome", "welcome_en"]


def test_without_music_the_waiting_tone_plays_and_playback_done_is_ignored(
    tmp_path: Path,
) -> None:
    h = QueueHarness(tmp_path, {})
    leg = queued_caller(h)
    plays = h.media.plays[leg]
    assert type(plays[-1][1]).__name__ == "Tone"
    h.switch.media_event(PlaybackDone(leg, plays[-1][0], False), h.now)
    assert h.media.plays[leg] == plays


def test_the_callback_key_leaves_a_request_and_ends_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    h = QueueHarness(
        tmp_path, {"music": "menu_main", "callback_key": "1", "callback_prompt": "welcome_en"}
    )
    trunk = Trunk(h)
    leg = answered_by_node(h, trunk, "12345")
    h.press(leg, "1")
    h.finish_play(leg)  # in the queue now, music playing
    h.advance(12)
    h.press(leg, "2")  # not the callback key: nothing happens
    assert h.switch.acd.position(leg[:-2]) == 1
    h.press(leg, "1")
    assert h.switch.acd.position(leg[:-2]) is None  # out of the queue
    h.finish_play(leg)  # the confirmation ends: the node hangs up
    assert [m.method for m in h.take(trunk.port) if isinstance(m, Request)] == ["BYE"]
    assert h.played(leg)[-1] == "welcome_en"
    call = h.cdr.get_call(leg[:-2])
    assert call is not None and call["disposition"] == "callback"
    (request,) = h.cdr.callback_list(0.0)
    assert (request["kind"], request["queue"], request["caller"]) == (
        "callback", "general", "13800000001",
    )  # fmt: skip
    assert request["waited"] >= 12
    assert cli_main(["callbacks", "--hours", "1000000", "--data", str(tmp_path)]) == 0
    assert "callback\tgeneral\t13800000001" in capsys.readouterr().out


def test_an_abandoned_caller_is_listed_until_a_later_call_is_answered(tmp_path: Path) -> None:
    h = QueueHarness(tmp_path, {})
    trunk = Trunk(h, call_id="gave-up")
    leg = answered_by_node(h, trunk, "12345")
    h.press(leg, "1")
    h.finish_play(leg)
    h.advance(40)
    trunk.bye()
    h.take(trunk.port)
    assert [r["kind"] for r in h.cdr.callback_list(0.0)] == ["abandoned"]
    phone = Phone(h, "1001", 5101)
    phone.register()
    again = Trunk(h, port=5092, call_id="again")
    leg2 = answered_by_node(h, again, "12345")
    h.press(leg2, "1")
    h.finish_play(leg2)
    (invite,) = [m for m in h.take(phone.port) if isinstance(m, Request)]
    phone.reply(invite, 200, sdp=True)
    assert h.cdr.callback_list(0.0) == []  # got through: nobody to call back
