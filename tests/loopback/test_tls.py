"""SIP over TLS with real peers (RFC 3261 §26, RFC 5630): a pjsua2 agent registers with
digest over TLS and takes a queue call from a SIPp carrier on UDP, a baresip agent on TLS is
reached after a node restart (baresip's and linphone's whole row over TLS is
test_phones_tcp_tls.py); Python's ssl and the openssl command, as raw peers, check what the
TLS listener refuses.

One node serves the module: TLS on its own port with a certificate of a CA made here
(tests/unit/tlscerts.py, by the openssl command, into the test's temporary directory), client
certificates `required`, MD5 digest only (baresip 1.0 cannot answer SHA-256 beside MD5),
the carrier trunk's ACL narrowed to 127.0.0.1, and at most 3 connections per non-trunk
source. SIPp 3.6.1 as Debian builds it has no TLS, so it stays the UDP carrier.
"""

from __future__ import annotations

import re
import secrets
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from unit.tlscerts import Pki

from .baresip_agent import BaresipAgent, baresip_available
from .conftest import PEERS_KEY
from .harness import LOOPBACK, HotlineNode, PjAgent, Sipp, free_port, require_peer
from .ivr_peers import RtpCaller
from .ivr_support import en, trunks_override
from .test_media_anchor import echoed_queue_call
from .test_restart import kill_and_restart

STRANGER = "127.0.0.2"  # outside the carrier trunk's ACL: an unknown TLS peer
# Out of office hours: 12348 goes to the duty lawyer's number through the carrier trunk.
SUNDAY = "2026-12-06T10:00+08:00"


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[HotlineNode]:
    tls_port = free_port("tcp")
    carrier_port = free_port("tcp")  # the TLS carrier's SBC (a pjsua2 phone in the test)
    hotline = HotlineNode(
        tmp_path_factory.mktemp("tls-node"),
        extra_args=["--clock", SUNDAY],
        node={
            "auth": {"algorithms": ["MD5"]},
            "limits": {"max_tcp_connections_per_source": 3},
            "tls": pki.node_tls(f"{LOOPBACK}:{tls_port}"),
        },
        # The transfer's prompts, short: the test waits for the call beyond them.
        dialplan={"prompts": {"welcome_legal": en("Hi."), "legal_after_hours": en("One.")}},
        trunks=trunks_override(
            acl=["127.0.0.1/32"],
            outbound=f"{LOOPBACK}:{carrier_port}",
            transport="tls",
            uri_scheme="sips",
            tls_server_name="node.hotline.test",  # a DNS name of the carrier's certificate
            tls_certificate=str(pki.client_cert),
            tls_private_key=str(pki.client_key),
        ),
    )
    hotline.tls_port = tls_port  # type: ignore[attr-defined]
    hotline.carrier_port = carrier_port  # type: ignore[attr-defined]
    hotline.start()
    yield hotline
    hotline.stop()


def tls_address(node: HotlineNode) -> str:
    return f"{LOOPBACK}:{node.tls_port}"  # type: ignore[attr-defined]


def client_context(pki: Pki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def tls_exchange(
    node: HotlineNode,
    context: ssl.SSLContext,
    request: str,
    source: str = LOOPBACK,
    timeout: float = 3.0,
) -> bytes:
    """One request over a new TLS connection from `source`; the response ('' on EOF).
    `{port}` in the request becomes the connection's local port. Raises ssl.SSLError or
    OSError when the node refuses the connection or the handshake."""
    raw = socket.create_connection((LOOPBACK, node.tls_port), timeout, (source, 0))  # type: ignore[attr-defined]
    with context.wrap_socket(raw, server_hostname=LOOPBACK) as secured:
        secured.settimeout(timeout)
        port = secured.getsockname()[1]
        secured.sendall(request.replace("{port}", str(port)).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = secured.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def pjsua_tls(pki: Pki, cert: Path, key: Path, *more: str) -> list[str]:
    """pjagent.py's TLS options: the test CA, and the certificate the phone presents."""
    return ["--tls-ca", str(pki.ca), "--tls-cert", str(cert), "--tls-key", str(key), *more]


def request(method: str, uri: str, source: str = LOOPBACK) -> str:
    tag = secrets.token_hex(4)
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {source}:{{port}};branch=z9hG4bK{tag};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:13800138000@{source}>;tag={tag}\r\nTo: <{uri}>\r\n"
        f"Call-ID: tls-{tag}\r\nCSeq: 1 {method}\r\n"
        f"Contact: <sips:carrier@{source}:{{port}}>\r\nContent-Length: 0\r\n\r\n"
    )


def test_pjsua2_registers_over_tls_and_takes_a_queue_call_with_two_way_audio(
    tls_node: HotlineNode,
    pki: Pki,
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
) -> None:
    node = tls_node
    agent = pjagent(
        user="1001",
        registrar=tls_address(node),
        transport="tls",
        dtmf="123",
        hangup_after=2.5,
        log_level=5,
        # A phone on TLS is offered SRTP (media.agent_encryption `auto`, softswitch/call).
        extra_args=pjsua_tls(pki, pki.client_cert, pki.client_key, "--srtp", "mandatory"),
    )
    assert agent.wait_for("registered", timeout=10)["code"] == 200, agent.describe()
    (binding,) = node.wait_for_rows("bindings", lambda rows: len(rows) == 1, aor="1001")
    assert binding["transport"] == "TLS", (
        binding
    )  # what SRTP keys off (softswitch/transport/tls.py)
    assert ";transport=tls" in binding["contact"].lower(), binding

    # SIPp (UDP) reflects every RTP packet it gets: the agent's digits go out through the
    # node to the carrier and come back through the node again (media_anchor's check).
    echoed_queue_call(sipp, node.address)
    incoming = agent.wait_for("incoming", timeout=5)
    # pjsip's TLS client socket has an ephemeral port nothing listens on: the INVITE came
    # over the connection the phone opened, whose far end is the node's TLS port.
    assert incoming["source"] == tls_address(node), incoming
    agent.wait_for("dtmf_sent", timeout=5, digits="123")
    assert [agent.wait_for("dtmf", timeout=5)["digit"] for _ in range(3)] == ["1", "2", "3"]

    trace = agent.pj_log_path.read_text(encoding="utf-8", errors="replace")
    invite = trace[trace.index("INVITE sip:1001@") :]
    invite = invite[: invite.index("\n\n") if "\n\n" in invite else 2000]
    assert re.search(rf"Via: SIP/2.0/TLS {re.escape(tls_address(node))};", invite), invite
    # The phone registered sip:…;transport=TLS, so the dialog is not a SIPS one (RFC 3261
    # §12.1.2): the node's Contact keeps TLS with ;transport=tls rather than sips:.
    assert f"Contact: <sip:hotline@{tls_address(node)};transport=tls>" in invite, invite
    assert re.search(r"m=audio \d+ RTP/SAVP", trace)  # the offer: SRTP because of TLS
    (call,) = node.wait_for_rows(
        "calls", lambda rows: any(r["end"] and r["agent"] == "1001" for r in rows), timeout=8
    )
    # The phone's BYE went to the node's sips: Contact, over TLS: the agent hung up.
    assert call["disposition"] == "answered" and call["hangup_side"] == "agent", call


def test_the_tls_listener_refuses_old_versions_and_bad_client_certificates(
    tls_node: HotlineNode, pki: Pki
) -> None:
    node = tls_node
    good = client_context(pki, pki.client_cert, pki.client_key)
    response = tls_exchange(node, good, request("OPTIONS", f"sips:{tls_address(node)}"))
    assert response.startswith(b"SIP/2.0 200"), response
    assert re.search(rb"Via: SIP/2.0/TLS 127.0.0.1:\d+;", response), response

    # A client certificate is required: none, or one no configured CA signed, is refused
    # (TLS 1.3 reports the server's alert on the client's first read).
    for cert, key in ((None, None), (pki.rogue_cert, pki.rogue_key)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            answer = tls_exchange(
                node, client_context(pki, cert, key), request("OPTIONS", "sips:x")
            )
            assert not answer, answer  # EOF without a response is a refusal too
            raise ConnectionError("closed without a response")

    # TLS 1.0 and 1.1 are refused even with a good certificate (openssl s_client as a peer).
    for version in ("-tls1", "-tls1_1"):
        done = subprocess.run(
            ["openssl", "s_client", "-connect", tls_address(node), version,
             "-cert", str(pki.client_cert), "-key", str(pki.client_key),
             "-CAfile", str(pki.ca), "-cipher", "DEFAULT:@SECLEVEL=0"],
            input=b"", capture_output=True, timeout=10,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode != 0, output
        # No ServerHello came back: the handshake ended at the version.
        assert b"no peer certificate available" in output, output
    node.wait_for_log("failed: UNSUPPORTED_PROTOCOL", timeout=5)
    # The same client speaking TLS 1.2 gets in.
    done = subprocess.run(
        ["openssl", "s_client", "-connect", tls_address(node), "-tls1_2", "-brief",
         "-cert", str(pki.client_cert), "-key", str(pki.client_key), "-CAfile", str(pki.ca)],
        input=b"", capture_output=True, timeout=10,
    )  # fmt: skip
    assert b"Protocol version: TLSv1.2" in done.stdout + done.stderr, done.stderr


def test_trunk_acl_sips_rules_and_connection_limits_apply_over_tls(
    tls_node: HotlineNode, pki: Pki
) -> None:
    node = tls_node
    good = client_context(pki, pki.client_cert, pki.client_key)
    # The trunk ACL (127.0.0.1/32) decides over TLS as over UDP: a call from the carrier's
    # address is routed (404: nothing dials 99999), one from a stranger is refused.
    routed = tls_exchange(node, good, request("INVITE", f"sips:99999@{tls_address(node)}"))
    assert routed.startswith(b"SIP/2.0 100") or routed.startswith(b"SIP/2.0 404"), routed
    refused = tls_exchange(
        node, good, request("INVITE", f"sips:99999@{tls_address(node)}", STRANGER), STRANGER
    )
    assert refused.startswith(b"SIP/2.0 403"), refused

    # sips: travels over TLS only (RFC 5630): the same request over UDP gets 416.
    over_udp = request("OPTIONS", f"sips:{node.address}").replace("TLS", "UDP")
    answer = node.send_sip(over_udp.replace("{port}", "{local_port}").encode(), final=True)
    assert answer.startswith(b"SIP/2.0 416 SIPS Only Over TLS"), answer

    # TLS connections count against the TCP limits: a stranger keeps 3 at most, and the
    # fourth is closed before its handshake.
    kept = []
    try:
        for _ in range(3):
            raw = socket.create_connection((LOOPBACK, node.tls_port), 3, (STRANGER, 0))  # type: ignore[attr-defined]
            kept.append(good.wrap_socket(raw, server_hostname=LOOPBACK))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            raw = socket.create_connection((LOOPBACK, node.tls_port), 3, (STRANGER, 0))  # type: ignore[attr-defined]
            good.wrap_socket(raw, server_hostname=LOOPBACK).recv(1)
    finally:
        for connection in kept:
            connection.close()
    node.wait_for_log("max_tcp_connections_per_source", timeout=5)


def test_a_tls_trunk_calls_out_with_sips_verifying_the_carrier_and_presenting_its_certificate(
    tls_node: HotlineNode,
    pki: Pki,
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    node = tls_node
    # The carrier's SBC: pjsua2 on TLS with a certificate of the test CA naming
    # node.hotline.test (the trunk's tls_server_name), accepting only clients that present
    # a certificate of that CA, answering with a 1500 Hz tone.
    carrier = pjagent(
        user="duty-lawyer",
        transport="tls",
        local_port=node.carrier_port,  # type: ignore[attr-defined]
        log_level=5,
        extra_args=pjsua_tls(pki, pki.node_cert, pki.node_key, "--tls-require-client")
        + ["--tone", "1500"],
    )
    caller = rtp_caller(node, called="12348")
    assert caller.call().status == 200  # the node answers for its prompt, then transfers
    incoming = carrier.wait_for("incoming", timeout=10)
    assert incoming["request_uri"].startswith(
        f"sips:95000000@{LOOPBACK}:{node.carrier_port}"  # type: ignore[attr-defined]
    ), incoming
    assert "sip" in incoming["headers"].get("P-Asserted-Identity", ""), incoming
    caller.wait_tone(1500, timeout=8)  # the caller hears the carrier's far end over the bridge
    assert caller.hang_up() == 200
    carrier.wait_for("disconnected", timeout=5, call_id=incoming["call_id"])


def baresip_tls_phone(
    node: HotlineNode, pki: Pki, user: str, tmp_path: Path, request: pytest.FixtureRequest
) -> BaresipAgent:
    """A baresip agent on TLS (not started). baresip 1.0 presents `sip_certificate`
    (certificate and key in one PEM) as its client certificate, and as its TLS listener's
    (sip_listen port + 1), and checks the node's against `sip_cafile`."""
    require_peer("baresip", baresip_available(), "apt-get install baresip-core")
    both = tmp_path / f"baresip-{user}.pem"
    both.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    phone = BaresipAgent(
        user=user,
        registrar=tls_address(node),
        transport="tls",
        tone_hz=1000,
        log_dir=tmp_path / "baresip",
        # A phone on TLS is offered SRTP (media.agent_encryption `auto`): baresip's srtp
        # module with SDES keys, mandatory.
        extra_config=(
            ("sip_certificate", str(both)),
            ("sip_cafile", str(pki.ca)),
            ("module", "srtp.so"),
        ),
        account_params=";mediaenc=srtp-mand",
    )
    request.node.stash.setdefault(PEERS_KEY, []).append(phone)
    return phone


def test_a_tls_phone_is_reached_after_a_restart_without_registering_again(
    tls_node: HotlineNode,
    pki: Pki,
    sipp: Callable[..., Sipp],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    # Last in the module: it restarts the shared node. The binding comes back from the
    # database with its transport, TLS; the phone's connection died with the killed node,
    # so the restarted node connects to the phone's Contact (baresip's TLS listener) over
    # TLS, checking its certificate against tls.ca_bundle. (pjsip puts its connection's
    # ephemeral port in its Contact: a pjsua2 phone is reached again once it re-registers.)
    node = tls_node
    with baresip_tls_phone(node, pki, "1003", tmp_path, request) as phone:
        assert phone.wait_for("REGISTER_OK", timeout=8)["param"].startswith("200")
        kill_and_restart(node)
        node.wait_for_log("agent 1003 registered (restored", timeout=5)
        caller = sipp("uac_call", remote=node.address, service="9000", duration_ms=500)
        caller.run()
        caller.check()
        phone.wait_for("CALL_ESTABLISHED", timeout=5, direction="incoming")
        assert len(phone.events("REGISTER_OK")) == 1, phone.describe()  # no new REGISTER
    (row,) = node.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None, agent="1003"
    )
    assert row["disposition"] == "answered", row
