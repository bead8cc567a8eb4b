"""Trunk peers kept alive with OPTIONS, their up/down state, and outbound calls that move to
the next address or trunk on 503, 408, a transport error or silence (softswitch/
trunk_monitor.py, softswitch/call/failover.py; virtual time)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from callkit import statuses
from sipflow import Phone
from test_agent_features import FeatureHarness, requests

from softswitch.call import events as ev
from softswitch.config import ConfigError, load_config
from softswitch.sip.message import Request


def with_trunks(tmp_path: Path, first: dict, *more: dict) -> FeatureHarness:
    """The demo config with `first` changes to trunk carrier and `more` trunks added; agent
    1001 may call out."""
    h = FeatureHarness(tmp_path, agent_1001={"features": ["outbound"]})
    path = tmp_path / "config" / "trunks.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["trunks"][0].update(first)
    doc["trunks"] += list(more)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    h.switch.reload(load_config(tmp_path / "config"), h.now)
    return h


def invites(h: FeatureHarness, port: int) -> list[Request]:
    seen, out = set(), []
    for m in requests(h.take(port)):
        if m.method == "INVITE" and (m.call_id, m.cseq) not in seen:
            seen.add((m.call_id, m.cseq))
            out.append(m)
    return out


def dial_out(h: FeatureHarness) -> Phone:
    phone = Phone(h, "1001", 5101)
    phone.register()
    phone.dial("013912345678", call_id="out-1")
    return phone


def test_keepalives_mark_each_address_up_or_down(tmp_path: Path) -> None:
    h = with_trunks(tmp_path, {"outbound": ["127.0.0.1:5080", "127.0.0.1:5081"], "keepalive": 30})
    h.advance(0.1)
    (ping,) = requests(h.take(5080))
    assert ping.method == "OPTIONS"
    Phone(h, "sbc1", 5080).reply(ping, 404)  # any answer but 503: it is there
    h.advance(40)  # the second never answers (Timer F, 32 s)
    states = {t["address"]: t["state"] for t in h.switch.live_status(h.now)["trunks"]}
    assert states == {"127.0.0.1:5080": "up", "127.0.0.1:5081": "down"}
    changes = [e for e in h.bus_events if isinstance(e, ev.TrunkStateChanged)]
    assert [(e.address, e.state) for e in changes] == [
        ("127.0.0.1:5080", "up"), ("127.0.0.1:5081", "down"),
    ]  # fmt: skip
    assert h.switch.stats()["trunks.down"] == 1
    (order,) = [h.switch.trunks.order(t) for t in h.switch.config.trunks if t.name == "carrier"]
    assert order == ["127.0.0.1:5080", "127.0.0.1:5081"]


def test_a_down_address_is_tried_last(tmp_path: Path) -> None:
    h = with_trunks(tmp_path, {"outbound": ["127.0.0.1:5080", "127.0.0.1:5081"], "keepalive": 30})
    h.advance(0.1)
    (ping,) = requests(h.take(5081))
    Phone(h, "sbc2", 5081).reply(ping, 200)
    h.advance(40)  # the first never answers its keep-alive: down
    h.take(5080)
    h.take(5081)
    dial_out(h)
    assert len(invites(h, 5081)) == 1 and invites(h, 5080) == []


def test_a_503_moves_the_call_to_the_next_address(tmp_path: Path) -> None:
    h = with_trunks(tmp_path, {"outbound": ["127.0.0.1:5080", "127.0.0.1:5081"]})
    phone = dial_out(h)
    (first,) = invites(h, 5080)
    Phone(h, "sbc1", 5080).reply(first, 503)
    (second,) = invites(h, 5081)
    assert second.cseq[0] == first.cseq[0] + 1 and second.call_id == first.call_id
    assert second.uri.startswith("sip:013912345678@127.0.0.1:5081")
    Phone(h, "sbc2", 5081).reply(second, 200, to_tag="s2", sdp=True)
    assert [r.method for r in requests(h.take(5081))] == ["ACK"]
    assert 200 in statuses(h.take(phone.port))


def test_the_next_address_of_the_other_family_gets_an_offer_in_that_family(
    tmp_path: Path,
) -> None:
    """An SBC pair on IPv4 and IPv6: the INVITE to the IPv6 one is a new offer of the
    node's IPv6 address (the media leg moves), not the IPv4 offer the first SBC got."""
    h = with_trunks(tmp_path, {"outbound": ["127.0.0.1:5080", "[::1]:5081"]})
    dial_out(h)
    (first,) = invites(h, 5080)
    (leg_id,) = [c[1] for c in h.media.calls if c[0] == "offer_local" and c[1].endswith("-b1")]
    assert h.media.families[leg_id] == "IP4"
    Phone(h, "sbc1", 5080).reply(first, 503)
    (second,) = invites(h, 5081)
    assert "@[::1]:5081" in second.uri and h.media.families[leg_id] == "IP6"
    assert [c[:2] for c in h.media.calls].count(("offer_local", leg_id)) == 2


@pytest.mark.parametrize("scheme", ["sip", "tel"])
def test_silence_moves_the_call_on_and_a_late_answer_there_is_hung_up(
    tmp_path: Path, scheme: str
) -> None:
    """(With `tel:` Request-URIs too: the late answer is hung up where its attempt went.)"""
    h = with_trunks(
        tmp_path, {"outbound": ["127.0.0.1:5080", "127.0.0.1:5081"], "uri_scheme": scheme}
    )
    dial_out(h)
    (first,) = invites(h, 5080)
    h.advance(4.1)  # failover_timeout: no response at all
    (second,) = invites(h, 5081)
    sbc1 = Phone(h, "sbc1", 5080)
    sbc1.reply(first, 180)  # the first wakes up: its attempt is cancelled
    assert "CANCEL" in statuses(h.take(5080))
    sbc1.reply(first, 200, to_tag="late", sdp=True)  # and if it answers anyway: hung up
    assert statuses(h.take(5080)) == ["ACK", "BYE"]
    assert h.switch.control.sessions  # the call goes on with the second address
    assert h.switch.trunks.peers[("carrier", "127.0.0.1:5080")].state == "down"


def test_the_next_trunk_takes_over_with_its_own_number(tmp_path: Path) -> None:
    backup = {
        "name": "backup", "acl": ["10.9.9.0/24"], "caller_id": "12346",
        "outbound": "127.0.0.1:5082",
    }  # fmt: skip
    h = with_trunks(tmp_path, {}, backup)
    dial_out(h)
    (first,) = invites(h, 5080)
    Phone(h, "sbc1", 5080).reply(first, 408)
    (second,) = invites(h, 5082)
    assert second.from_.uri.startswith("sip:12346@")
    assert (second.headers.get("p-asserted-identity") or "").startswith("<sip:12346@")


def test_when_every_address_fails_the_caller_hears_it(tmp_path: Path) -> None:
    h = with_trunks(tmp_path, {"outbound": ["127.0.0.1:5080", "127.0.0.1:5081"]})
    phone = dial_out(h)
    Phone(h, "sbc1", 5080).reply(invites(h, 5080)[0], 503)
    Phone(h, "sbc2", 5081).reply(invites(h, 5081)[0], 503)
    assert 503 in statuses(h.take(phone.port))
    assert h.switch.control.sessions == {}


def test_an_empty_outbound_list_is_a_config_error(tmp_path: Path) -> None:
    h = FeatureHarness(tmp_path)
    path = tmp_path / "config" / "trunks.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["trunks"][0]["outbound"] = []
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    del h
    with pytest.raises(ConfigError, match="empty list"):
        load_config(tmp_path / "config")


def test_calls_out_take_the_trunks_e164_tel_form_and_privacy(tmp_path: Path) -> None:
    h = with_trunks(
        tmp_path,
        {
            "dial_rules": [{"match": "^0", "replace": "+86"}],
            "uri_scheme": "tel",
            "privacy": "id",
            "caller_id": "+8612345",
        },
    )
    dial_out(h)  # 013912345678
    (invite,) = invites(h, 5080)
    assert invite.uri == "tel:+8613912345678"
    assert invite.headers.get("to") == "<tel:+8613912345678>"
    assert invite.headers.get("p-asserted-identity") == "<tel:+8612345>"
    assert invite.headers.get("privacy") == "id"
    assert invite.from_.uri.startswith("sip:+8612345@")
