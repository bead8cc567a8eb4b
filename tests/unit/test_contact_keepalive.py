"""Keep-alives of registered phones (softswitch/contact_monitor.py): a phone that died
without unregistering stops being rung (virtual time)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sipflow import Phone, Trunk
from test_agent_features import FeatureHarness, requests

from softswitch.config import load_config


def keepalive_harness(tmp_path: Path, every: int = 20) -> FeatureHarness:
    h = FeatureHarness(tmp_path)
    path = tmp_path / "config" / "node.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc.setdefault("registrar", {})["keepalive"] = every
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    h.switch.reload(load_config(tmp_path / "config"), h.now)
    return h


def options(h: FeatureHarness, port: int) -> list:
    return [m for m in requests(h.take(port)) if m.method == "OPTIONS"]


def test_a_phone_that_answers_its_keepalives_keeps_its_registration(tmp_path: Path) -> None:
    h = keepalive_harness(tmp_path)
    phone = Phone(h, "1001", 5101)
    phone.register()
    for _ in range(3):
        h.advance(21)
        pings = options(h, phone.port)
        assert pings
        phone.reply(pings[0], 200)
    assert h.switch.location.lookup("1001", h.now)
    assert h.switch.acd.agent_state("1001").value == "idle"


def test_a_dead_phone_loses_its_binding_and_the_other_device_takes_the_calls(
    tmp_path: Path,
) -> None:
    h = keepalive_harness(tmp_path)
    dead, alive = Phone(h, "1001", 5101), Phone(h, "1001", 5111)
    dead.register()
    alive.register()
    for _ in range(8):  # 160 s: two keep-alives of the dead one time out (Timer F, 32 s)
        h.advance(20)
        for ping in options(h, alive.port):
            alive.reply(ping, 200)
        h.take(dead.port)
    (left,) = h.switch.location.lookup("1001", h.now)
    assert left.contact.endswith(":5111")
    assert h.switch.stats()["phones.dropped"] == 1
    Trunk(h).invite("9000")
    assert [m.method for m in requests(h.take(alive.port))] == ["INVITE"]
    assert requests(h.take(dead.port)) == []


def test_an_agent_whose_only_phone_died_becomes_unavailable(tmp_path: Path) -> None:
    h = keepalive_harness(tmp_path)
    Phone(h, "1001", 5101).register()
    assert h.switch.acd.agent_state("1001").value == "idle"
    h.advance(160)
    assert h.switch.location.lookup("1001", h.now) == []
    assert h.switch.acd.agent_state("1001").value == "logged_out"
