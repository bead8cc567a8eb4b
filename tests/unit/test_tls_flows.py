"""SIP over TLS in the switch, with virtual time and no sockets: a phone registered over TLS
is reached over its own connection (its flow) with the node's `sips:` Contact and a TLS Via;
`sips:` never travels over UDP or TCP (RFC 5630); TLS bindings keep their transport across a
restart; trunks with `transport: tls` send over TLS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest
from sipflow import Harness, Phone, Trunk

from softswitch.bindings import BindingStore, reach_after_restart
from softswitch.call.failover import trunk_uri
from softswitch.call.sipcodec import hop_target, phone_target
from softswitch.config import Trunk as TrunkConfig
from softswitch.sip.dialog import Dialog
from softswitch.sip.location import Binding
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.transaction import Target
from softswitch.trunk_monitor import Peer

TLS_NODE = "127.0.0.1:5061"
FLOW = Target("TLS", "127.0.0.1", 40001)  # the phone's connection: an ephemeral port
CONTACT = "sip:1001@127.0.0.1:5071;transport=tls"  # where the phone's own listener is


def tls_harness(tmp_path: Path) -> Harness:
    h = Harness(tmp_path)
    h.switch.txn.sent_by["TLS"] = TLS_NODE
    return h


def register(h: Harness, phone: Phone, contact: str, source: Target) -> Response:
    """A REGISTER with digest (MD5) from `source`, as the phone's connection carries it."""
    responses = []
    auth = ""
    for cseq in (1, 2):
        via = f"SIP/2.0/{source.transport} 127.0.0.1:5071;branch=z9hG4bKtlsreg{source.port}x{cseq};rport"
        h.deliver(
            f"REGISTER sip:127.0.0.1 SIP/2.0\nVia: {via}\n"
            f"From: <sip:{phone.agent}@127.0.0.1>;tag=t{phone.agent}\n"
            f"To: <sip:{phone.agent}@127.0.0.1>\nCall-ID: tlsreg-{phone.agent}\n"
            f"CSeq: {cseq} REGISTER\nMax-Forwards: 70\nContact: <{contact}>\nExpires: 600\n"
            f"{auth}Content-Length: 0\n\n",
            source,
        )
        (response,) = h.take(source.port)
        assert isinstance(response, Response)
        responses.append(response)
        if response.status != 401:
            break
        (challenge,) = [
            v for v in response.headers.get_all("www-authenticate") if "algorithm=MD5" in v
        ]
        auth = f"Authorization: {phone.credentials(challenge, 'REGISTER', 'sip:127.0.0.1')}\n"
    return responses[-1]


@pytest.mark.parametrize(
    ("contact", "ours"),
    [
        # A sip: binding over TLS makes a sip: dialog: the node's Contact keeps TLS with
        # ;transport=tls (baresip 1.0 cannot send in-dialog requests to a sips: one).
        (CONTACT, f"<sip:hotline@{TLS_NODE};transport=tls>"),
        # A sips: binding makes a SIPS dialog, whose Contact must be sips: (§12.1.2).
        ("sips:1001@127.0.0.1:5071", f"<sips:hotline@{TLS_NODE}>"),
    ],
    ids=["sip-tls", "sips"],
)
def test_a_phone_registered_over_tls_is_rung_over_its_connection_with_a_tls_contact(
    tmp_path: Path, contact: str, ours: str
) -> None:
    h = tls_harness(tmp_path)
    phone = Phone(h, "1001", FLOW.port)
    assert register(h, phone, contact, FLOW).status == 200
    (binding,) = h.switch.location.lookup("1001", h.now)
    assert binding.transport == "TLS" and binding.source == ("127.0.0.1", FLOW.port)

    Trunk(h).invite("9000")
    (target, invite) = next((t, m) for t, m in h.sent if isinstance(m, Request))
    assert target == FLOW  # the flow, not the Contact's port 5071
    assert isinstance(invite, Request) and invite.method == "INVITE"
    assert invite.uri == contact
    assert invite.headers.get("via").startswith(f"SIP/2.0/TLS {TLS_NODE};branch=")
    assert invite.headers.get("contact") == ours


def test_sips_request_uris_are_served_over_tls_only(tmp_path: Path) -> None:
    h = tls_harness(tmp_path)
    for transport, expected in (("UDP", 416), ("TCP", 416), ("TLS", 200)):
        source = Target(transport, "127.0.0.1", 40100)
        h.deliver(
            f"OPTIONS sips:127.0.0.1 SIP/2.0\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:40100;branch=z9hG4bKsips{transport};rport\n"
            "From: <sip:probe@127.0.0.1>;tag=p\nTo: <sips:127.0.0.1>\n"
            f"Call-ID: sips-{transport}\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n"
            "Content-Length: 0\n\n",
            source,
        )
        (response,) = h.take(40100)
        assert isinstance(response, Response)
        assert response.status == expected, (transport, response.status)
        if expected == 416:
            assert response.reason == "SIPS Only Over TLS"


def test_a_sips_contact_is_registered_over_tls_only(tmp_path: Path) -> None:
    h = tls_harness(tmp_path)
    phone = Phone(h, "1002", 40200)
    sips_contact = "sips:1002@127.0.0.1:5072"
    refused = register(h, phone, sips_contact, Target("UDP", "127.0.0.1", 40200))
    assert refused.status == 400 and "use TLS" in refused.reason
    assert h.switch.location.lookup("1002", h.now) == []
    accepted = register(h, phone, sips_contact, Target("TLS", "127.0.0.1", 40201))
    assert accepted.status == 200


def test_a_sips_contact_is_never_reached_over_udp_or_tcp() -> None:
    # A binding saved before the registrar refused such Contacts: over TLS, to the Contact.
    assert phone_target("sips:1001@192.0.2.9:5099", ("192.0.2.9", 5060), "UDP") == Target(
        "TLS", "192.0.2.9", 5099
    )
    assert phone_target("sips:1001@192.0.2.9", ("192.0.2.9", 40000), "TCP") == Target(
        "TLS", "192.0.2.9", 5061
    )
    # Over TLS the phone's flow, whatever its Contact says.
    assert phone_target("sips:1001@192.0.2.9", ("192.0.2.9", 40000), "TLS") == Target(
        "TLS", "192.0.2.9", 40000
    )


def test_an_in_dialog_hop_to_a_sips_target_is_tls_on_port_5061() -> None:
    invite = parse_message(
        b"INVITE sips:9000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.5;branch=z9hG4bKd\r\n"
        b"From: <sips:1001@127.0.0.1>;tag=a\r\nTo: <sips:9000@127.0.0.1>\r\nCall-ID: d\r\n"
        b"CSeq: 1 INVITE\r\nContact: <sips:1001@192.0.2.5>\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(invite, Request)
    dialog = Dialog.as_uas(invite, "b")
    assert hop_target(dialog, "TLS") == Target("TLS", "192.0.2.5", 5061)


def binding(transport: str, contact: str = CONTACT) -> Binding:
    return Binding(
        aor="1001", contact=contact, expires_at=5000.0, q=1.0, call_id="r", cseq=2,
        source=("127.0.0.1", 40001), transport=transport, instance=None, user_agent="pjsua",
        registered_at=1000.0,
    )  # fmt: skip


def test_tls_bindings_keep_their_transport_across_a_restart_and_are_reached_at_the_contact(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / "hotline.db")
    BindingStore(db, wall_offset=0.0).save([binding("TLS"), binding("UDP", "sip:1001@h:5")])
    db.commit()
    restored = {b.contact: b for b in BindingStore(db, wall_offset=0.0).load(2000.0)}
    tls = restored[CONTACT]
    assert tls.transport == "TLS"  # exactly "TLS": SRTP keys off it
    assert tls.source == ("127.0.0.1", 5071)  # the old connection died with the old process
    assert restored["sip:1001@h:5"].source == ("127.0.0.1", 40001)  # UDP: unchanged
    # A Contact without a port: the TLS default.
    moved = reach_after_restart(binding("TLS", "sip:1001@[::1];transport=tls"))
    assert moved.source == ("::1", 5061)
    assert msgspec.structs.replace(moved, source=("127.0.0.1", 40001)) == binding(
        "TLS", "sip:1001@[::1];transport=tls"
    )


def test_a_tls_trunk_sends_calls_and_keepalives_over_tls() -> None:
    trunk = TrunkConfig(
        name="ims", acl=("10.0.0.0/8",), caller_id="12345", outbound="10.0.0.1:5061",
        transport="tls", uri_scheme="sips",
    )  # fmt: skip
    uri, target = trunk_uri(trunk, "95000000", "10.0.0.1:5061")
    assert uri == "sips:95000000@10.0.0.1:5061"
    assert target == Target("TLS", "10.0.0.1", 5061)
    assert Peer("ims", "10.0.0.1:5061", 0.0, trunk.sip_transport).target.transport == "TLS"
    plain = TrunkConfig(name="old", acl=("10.0.0.0/8",), outbound="10.0.0.2:5060")
    assert trunk_uri(plain, "1", "10.0.0.2:5060")[1].transport == "UDP"
