"""Phones registered through an edge proxy or SBC (RFC 3327 Path), with virtual time: the
registrar stores and echoes the Path, refuses it from a phone that did not ask for it, keeps
it across a restart, and the node reaches the phone through the proxy (preloaded Route, the
Contact as Request-URI); a carrier call that came through a record-routing proxy is hung up
along its route set."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest
from restartkit import restarted, start
from sipflow import Harness, Phone, Trunk

from softswitch.bindings import BindingStore
from softswitch.sip.message import Request, Response
from softswitch.sip.transaction import Target

PROXY = 5070  # the edge proxy, on 127.0.0.2
PATH = "<sip:127.0.0.2:5070;lr;received=sip:127.0.0.1:5101>"
OUTER = "<sip:edge.example;lr>"  # a second proxy further out, farther from the node


class ProxiedPhone(Phone):
    """Agent 1001's phone at 127.0.0.1:5101, registering through the proxy at
    127.0.0.2:5070, which adds itself to the Path; the node answers the proxy."""

    def __init__(self, h: Harness, path: list[str], supported: str = "path") -> None:
        super().__init__(h, "1001", 5101)
        self.path = path
        self.supported = supported
        self.proxy = Target("UDP", "127.0.0.2", PROXY)

    def _register(self, expires: int, challenge: str | None) -> Response:
        self.reg_cseq += 1
        auth = ""
        if challenge is not None:
            auth = f"Authorization: {self.credentials(challenge, 'REGISTER', 'sip:127.0.0.1')}\n"
        supported = f"Supported: {self.supported}\n" if self.supported else ""
        path = "".join(f"Path: {value}\n" for value in self.path)
        self.h.deliver(
            "REGISTER sip:127.0.0.1 SIP/2.0\n"
            f"Via: SIP/2.0/UDP 127.0.0.2:{PROXY};branch=z9hG4bKprx{self.reg_cseq}\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5101;branch=z9hG4bKreg{self.reg_cseq};rport\n"
            "From: <sip:1001@127.0.0.1>;tag=ph1001\nTo: <sip:1001@127.0.0.1>\n"
            f"Call-ID: reg-1001-proxied\nCSeq: {self.reg_cseq} REGISTER\nMax-Forwards: 69\n"
            f"Contact: <sip:1001@127.0.0.1:5101>\nExpires: {expires}\n"
            f"{supported}{path}{auth}Content-Length: 0\n\n",
            self.proxy,
        )
        (response,) = self.h.take(PROXY)
        assert isinstance(response, Response)
        return response


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def ring(h: Harness) -> Request:
    """A trunk call to 9000: the INVITE the node sends towards agent 1001."""
    Trunk(h).invite()
    (invite,) = [m for m in h.take(PROXY) if isinstance(m, Request)]
    assert invite.method == "INVITE"
    return invite


def test_register_with_path_stores_it_and_the_200_echoes_it_in_order(h: Harness) -> None:
    phone = ProxiedPhone(h, [PATH, OUTER])
    ok = phone.register()
    assert ok.status == 200
    assert ok.headers.get_all("path") == [PATH, OUTER]  # RFC 3327 §5.3: as received
    (binding,) = h.switch.location.lookup("1001", h.now)
    assert binding.path == [PATH, OUTER]
    assert binding.contact == "sip:1001@127.0.0.1:5101"


def test_a_call_to_a_phone_behind_the_proxy_goes_to_the_first_path_uri_with_routes(
    h: Harness,
) -> None:
    ProxiedPhone(h, [PATH, OUTER]).register()
    invite = ring(h)
    assert invite.uri == "sip:1001@127.0.0.1:5101"  # the Contact stays the Request-URI
    assert invite.headers.get_all("route") == [PATH, OUTER]  # §5.4: the preloaded route
    assert h.take(5101) == []  # nothing went to the phone directly


def test_each_device_of_an_agent_is_rung_along_its_own_path(h: Harness) -> None:
    """A desk phone registered directly and a softphone behind the proxy: the INVITE to the
    one behind the proxy carries its Path, the fork to the direct one no Route at all."""
    desk = Phone(h, "1001", 5102)
    desk.register()
    h.advance(1)
    ProxiedPhone(h, [PATH]).register()  # the most recent: rung by the leg's own INVITE
    invite = ring(h)
    assert invite.headers.get_all("route") == [PATH]
    (fork,) = [m for m in h.take(desk.port) if isinstance(m, Request)]
    assert fork.method == "INVITE" and fork.uri == "sip:1001@127.0.0.1:5102"
    assert fork.headers.get_all("route") == []


def test_keepalive_options_to_a_phone_behind_the_proxy_follow_its_path(h: Harness) -> None:
    h.switch.phones.configure(30)
    ProxiedPhone(h, [PATH]).register()
    h.advance(31)
    options = [m for m in h.take(PROXY) if isinstance(m, Request) and m.method == "OPTIONS"]
    assert options and options[0].uri == "sip:1001@127.0.0.1:5101"
    assert options[0].headers.get_all("route") == [PATH]


def test_path_without_supported_path_gets_420_and_binds_nothing_when_refused(
    h: Harness,
) -> None:
    config = h.switch.config
    registrar = msgspec.structs.replace(config.registrar, path_without_support="refuse")
    h.switch.registrar.config = msgspec.structs.replace(config, registrar=registrar)
    phone = ProxiedPhone(h, [PATH], supported="replaces")
    refused = phone._register(3600, None)  # refused before any challenge, for every user
    assert refused.status == 420
    assert refused.headers.get("unsupported") == "path"
    assert refused.to.tag
    assert h.switch.location.lookup("1001", h.now) == []


def test_path_without_supported_path_is_stored_by_default_and_not_echoed(
    h: Harness,
) -> None:
    """An SBC adds Path in front of phones that never say `path` (pjsip 2.15): the node
    routes through it all the same, and tells the phone nothing it did not ask for."""
    assert h.switch.config.registrar.path_without_support == "accept"
    ok = ProxiedPhone(h, [PATH], supported="").register()
    assert ok.status == 200
    assert ok.headers.get_all("path") == []
    assert ring(h).headers.get_all("route") == [PATH]


def test_a_proxy_that_requires_path_is_served(h: Harness) -> None:
    phone = ProxiedPhone(h, [PATH], supported="path\nRequire: path")
    assert phone.register().status == 200


def test_a_path_that_is_no_sip_uri_gets_400(h: Harness) -> None:
    phone = ProxiedPhone(h, ["<tel:+8613800000001>"])
    assert phone._register(3600, None).status == 400


def test_a_refresh_without_path_reaches_the_phone_directly_again(h: Harness) -> None:
    phone = ProxiedPhone(h, [PATH])
    phone.register()
    phone.path = []
    phone.register()
    (binding,) = h.switch.location.lookup("1001", h.now)
    assert binding.path == []


def test_path_is_kept_across_a_restart(tmp_path: Path, h: Harness) -> None:
    start(h)
    ProxiedPhone(h, [PATH]).register()
    h.advance(60)  # no clean stop: the process dies here
    later, _ = restarted(tmp_path, 5.0, h)
    (binding,) = later.switch.location.lookup("1001", later.now)
    assert binding.path == [PATH]
    invite = ring(later)
    assert invite.headers.get_all("route") == [PATH]


def test_a_bindings_table_from_before_path_gets_the_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute(
        "CREATE TABLE bindings (aor TEXT NOT NULL, contact TEXT NOT NULL, expires_at REAL "
        "NOT NULL, q REAL NOT NULL, call_id TEXT NOT NULL, cseq INTEGER NOT NULL, "
        "source_host TEXT NOT NULL, source_port INTEGER NOT NULL, transport TEXT NOT NULL, "
        "instance TEXT, user_agent TEXT, registered_at REAL NOT NULL, reg_id TEXT, "
        "params TEXT NOT NULL, PRIMARY KEY (aor, contact))"
    )
    db.execute(
        "INSERT INTO bindings VALUES ('1001', 'sip:1001@127.0.0.1:5101', 2000, 1, 'c', 1, "
        "'127.0.0.1', 5101, 'UDP', NULL, NULL, 900, NULL, '{}')"
    )
    (binding,) = BindingStore(db, 0.0).load(1000.0)
    assert binding.path == []


def test_a_carrier_call_through_a_record_routing_proxy_is_hung_up_along_its_route(
    h: Harness,
) -> None:
    """The carrier's SBC record-routed the INVITE: the node's BYE (the agent hung up) goes to
    the SBC with Route set from the Record-Route, to the carrier's Contact."""
    phone = Phone(h, "1001", 5101)
    phone.register()
    sbc_route = "<sip:127.0.0.2:5070;lr;ftag=trk>"
    trunk = Trunk(h, port=5090)
    trunk.source = Target("UDP", "127.0.0.2", PROXY)  # it arrives from the SBC
    trunk.invite(extra=f"Record-Route: {sbc_route}\n")
    answers = h.take(PROXY)
    assert [m.status for m in answers if isinstance(m, Response)][:1] == [100]
    (invite,) = h.take(phone.port)
    phone.reply(invite, 200, sdp=True)
    h.take(phone.port)
    (ok,) = [m for m in h.take(PROXY) if isinstance(m, Response) and m.status == 200]
    assert ok.headers.get_all("record-route") == [sbc_route]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    phone.bye(invite)
    (bye,) = [m for m in h.take(PROXY) if isinstance(m, Request)]
    assert bye.method == "BYE"
    assert bye.uri == "sip:carrier@127.0.0.1:5090"
    assert bye.headers.get_all("route") == [sbc_route]
