"""An agent registered from two devices rings on both; the first answer wins and the other
is cancelled (softswitch/call/forking.py; virtual time, the fake anchoring engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from callkit import statuses
from sipflow import Phone, Trunk
from test_agent_features import FeatureHarness, requests

from softswitch.sip.message import Request, Response


def two_devices(h: FeatureHarness) -> tuple[Phone, Phone, Trunk, Request, Request]:
    desk, soft = Phone(h, "1001", 5101), Phone(h, "1001", 5111)
    desk.register()
    soft.register()
    assert len(h.switch.location.lookup("1001", h.now)) == 2
    trunk = Trunk(h)
    trunk.invite("9000")
    (a,) = requests(h.take(desk.port))
    (b,) = requests(h.take(soft.port))
    return desk, soft, trunk, a, b


@pytest.mark.parametrize("first", ["desk", "soft"])
def test_both_devices_ring_and_the_first_answer_cancels_the_other(
    tmp_path: Path, first: str
) -> None:
    h = FeatureHarness(tmp_path)
    desk, soft, trunk, a, b = two_devices(h)
    assert a.call_id == b.call_id and a.uri != b.uri
    desk.reply(a, 180)
    soft.reply(b, 180)
    (winner, win), (loser, lose) = ((desk, a), (soft, b)) if first == "desk" else (
        (soft, b), (desk, a))  # fmt: skip
    winner.reply(win, 200, to_tag="won", sdp=True)
    assert "ACK" in statuses(h.take(winner.port))
    cancels = [m for m in requests(h.take(loser.port)) if m.method == "CANCEL"]
    assert len(cancels) == 1
    loser.reply(cancels[0], 200)
    loser.reply(lose, 487)
    ok = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200]
    assert ok
    (session,) = h.switch.control.sessions.values()
    assert session.legs[1].target.port == winner.port
    trunk.to_tag = ok[-1].to.tag
    trunk.ack()
    trunk.bye()
    assert "BYE" in statuses(h.take(winner.port))
    assert "BYE" not in statuses(h.take(loser.port))


def test_a_busy_device_drops_out_and_the_other_can_still_answer(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    desk, soft, trunk, a, b = two_devices(h)
    desk.reply(a, 486)  # the desk phone is on another line
    assert h.switch.acd.agent_state("1001").value == "ringing"
    soft.reply(b, 200, to_tag="soft", sdp=True)
    ok = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200]
    assert ok and h.switch.acd.agent_state("1001").value == "talking"


def test_a_late_answer_from_the_losing_device_is_hung_up_there(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    desk, soft, _trunk, a, b = two_devices(h)
    desk.reply(a, 200, to_tag="desk", sdp=True)
    h.take(desk.port)
    soft.reply(b, 200, to_tag="soft", sdp=True)  # crossed our CANCEL-to-be
    assert statuses(h.take(soft.port)) == ["ACK", "BYE"]
    (session,) = h.switch.control.sessions.values()
    assert session.legs[1].target.port == desk.port


def test_when_every_device_refuses_the_agent_missed_the_call(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    desk, soft, _trunk, a, b = two_devices(h)
    soft.reply(b, 603)
    desk.reply(a, 486)
    call_id = next(iter(h.switch.control.sessions))
    rows = [r for r in h.cdr.get_queue_log(call_id) if r["event"] == "REJECT"]
    assert len(rows) == 1, h.queue_log(call_id)  # one refusal of the agent, not one per device
    assert "486" in str(rows[0]["data"])  # busy says more than declined
    assert h.switch.acd.agent_state("1001").value != "ringing"
