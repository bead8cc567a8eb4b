"""An agent on linphone (liblinphone 5.1 as Debian's linphone-daemon), a third SIP stack beside
pjsua2 and baresip: it registers with digest over UDP and TLS, answers queue calls from a
Python carrier caller (which records what it hears), holds and resumes, sends an RFC 4733
key, hangs up and transfers blind (REFER), against one node shared by the module. (The same
row over TCP and TLS, in one call each: test_phones_tcp_tls.py.)

The phone sends a tone of its own (1000 Hz, `LinphoneAgent.play`) and the node's hold music
is 400 Hz, so the caller's audio says what it is connected to. What linphone did is read
from its own events (call states, ``Status`` of each command) and its log (its SIP trace),
what the node did from its CDR and log.

The node offers the shipped MD5 + SHA-256 challenge (no override: linphone answers it, with
MD5, the first), TLS on its own port with the test CA's certificate, and client
certificates required (linphone presents the test client certificate: `client_cert_chain`,
`client_cert_key`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from unit.tlscerts import Pki

from .harness import LOOPBACK, HotlineNode, free_port
from .ivr_peers import RtpCaller, tone_fraction
from .linphone_agent import LinphoneAgent, require_linphone
from .test_agent_features import queue_events

PHONE_TONE, SECOND_TONE, HOLD_TONE = 1000, 1500, 400


@pytest.fixture(scope="module")
def hotline(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[HotlineNode]:
    require_linphone()
    tls_port = free_port("tcp")
    node = HotlineNode(
        tmp_path_factory.mktemp("linphone-node"),
        node={
            "tls": pki.node_tls(f"{LOOPBACK}:{tls_port}"),
        },
    )
    node.tls_port = tls_port  # type: ignore[attr-defined]
    node.start()
    yield node
    node.stop()


def registered(node: HotlineNode, phone: LinphoneAgent, transport: str) -> dict[str, Any]:
    """The phone says it is registered and the node holds its one binding."""
    assert phone.wait_registered(timeout=8) == "LinphoneRegistrationOk", phone.describe()
    (binding,) = node.wait_for_rows("bindings", lambda rows: len(rows) == 1, aor=phone.user)
    assert binding["transport"] == transport.upper(), binding
    assert binding["instance"].startswith('"<urn:uuid:'), binding  # liblinphone's +sip.instance
    return binding


def answered_call(phone: LinphoneAgent, caller: RtpCaller) -> str:
    """The caller dials the queue; linphone rings, is told to answer, and the caller hears its
    tone through the node. Returns the daemon's call id."""
    outcome: dict[str, Any] = {}
    dialing = threading.Thread(target=lambda: outcome.setdefault("response", caller.call()))
    dialing.start()
    try:
        incoming = phone.wait_for("LinphoneCallIncomingReceived", timeout=8)
        assert incoming["From"].endswith("<sip:13800138000@127.0.0.1>") or (
            "sip:13800138000@" in incoming["From"]
        ), incoming
        phone.command(f"answer {incoming['Id']}")
    finally:
        dialing.join(timeout=10)
    assert outcome.get("response") is not None and outcome["response"].status == 200, (
        caller.describe()
    )
    call_id = str(incoming["Id"])
    phone.wait_for("LinphoneCallStreamsRunning", timeout=5, Id=call_id)
    phone.play(call_id)
    caller.wait_tone(PHONE_TONE, timeout=5)
    return call_id


def held_and_resumed(phone: LinphoneAgent, caller: RtpCaller, call_id: str) -> None:
    """``call-pause``: the node takes the hold and the caller hears the hold music, not the
    phone; ``call-resume``: the phone's tone again."""
    phone.command(f"call-pause {call_id}")
    phone.wait_for("LinphoneCallPaused", timeout=5, Id=call_id)  # the node accepted the hold
    held = caller.wait_tone(HOLD_TONE, since=caller.answered_at, timeout=8)
    assert tone_fraction(caller.audio(held, held + 0.5), PHONE_TONE) < 0.05, "phone heard on hold"
    phone.command(f"call-resume {call_id}")
    phone.wait_for("LinphoneCallStreamsRunning", timeout=5, Id=call_id)
    # liblinphone restarts the call's streams on resume, which ends the file player.
    phone.play(call_id)
    caller.wait_tone(PHONE_TONE, since=held, timeout=8)


def call_row(node: HotlineNode, caller: RtpCaller) -> dict[str, Any]:
    (row,) = node.wait_for_rows(
        "calls",
        lambda rows: len(rows) == 1 and rows[0]["end"] is not None,
        timeout=8,
        sip_call_id=caller.call_id,
    )
    return row


def caller_hangs_up(node: HotlineNode, phone: LinphoneAgent, caller: RtpCaller) -> None:
    """The caller's BYE ends the phone's call and an answered CDR names the phone's agent."""
    assert caller.hang_up() == 200
    phone.wait_for("LinphoneCallEnd", timeout=5)
    row = call_row(node, caller)
    assert row["agent"] == phone.user and row["disposition"] == "answered", row
    assert row["hangup_side"] == "caller", row


def invite_over(phone: LinphoneAgent, transport: str) -> None:
    """The node's INVITE reached the phone addressed to its Contact with `transport`."""
    pattern = rf"INVITE sip:{phone.user}@127\.0\.0\.1:\d+;transport={transport} SIP/2\.0"
    assert re.search(pattern, phone.log_text()), f"no INVITE over {transport}"


def unregistered(node: HotlineNode, phone: LinphoneAgent) -> None:
    """The phone takes its binding away, so the next test's call cannot ring it."""
    phone.command(f"unregister {phone.register_id}")
    node.wait_for_rows("bindings", lambda rows: not rows, timeout=5, aor=phone.user)


def test_linphone_registers_over_udp_with_md5_from_the_md5_and_sha256_challenge(
    hotline: HotlineNode, linphone: Callable[..., LinphoneAgent]
) -> None:
    """A wrong password is refused (the phone reports it, the node keeps no binding); the
    right one registers, and linphone's digest answer used MD5, the first challenge."""
    wrong = linphone(registrar=hotline.address, user="1002", password="not-pw1002")
    assert wrong.wait_registered(timeout=8) == "LinphoneRegistrationFailed", wrong.describe()
    assert hotline.cdr_rows("bindings", aor="1002") == []
    phone = linphone(registrar=hotline.address, user="1001")
    binding = registered(hotline, phone, "udp")
    assert binding["source_port"] == phone.sip_port, binding
    assert binding["contact"] == f"sip:1001@{LOOPBACK}:{phone.sip_port};transport=udp", binding
    trace = phone.log_text()
    challenges = re.findall(r"WWW-Authenticate: Digest .*algorithm=([\w-]+)", trace)
    assert challenges[:2] == ["MD5", "SHA-256"], challenges
    answers = re.findall(r"Authorization: +Digest .*algorithm=([\w-]+)", trace)
    assert answers and set(answers) == {"MD5"}, answers
    unregistered(hotline, phone)


def test_linphone_registers_with_sha256_when_the_node_offers_only_that(
    node: Callable[..., HotlineNode], linphone: Callable[..., LinphoneAgent]
) -> None:
    """liblinphone implements RFC 8760 SHA-256 digest too: MD5 above is its choice of the
    first challenge, not a limit (a node of its own, offering SHA-256 alone)."""
    require_linphone()
    sha256_only = node(node={"auth": {"algorithms": ["SHA-256"]}})
    phone = linphone(registrar=sha256_only.address, user="1001")
    registered(sha256_only, phone, "udp")
    answers = re.findall(r"Authorization: +Digest .*algorithm=([\w-]+)", phone.log_text())
    assert answers and set(answers) == {"SHA-256"}, answers


def test_linphone_answers_a_queue_call_holds_resumes_sends_dtmf_and_hangs_up(
    hotline: HotlineNode,
    linphone: Callable[..., LinphoneAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    phone = linphone(registrar=hotline.address, user="1003")
    registered(hotline, phone, "udp")
    caller = rtp_caller(hotline, called="9000")
    call_id = answered_call(phone, caller)

    held_and_resumed(phone, caller, call_id)

    phone.command("dtmf 5")
    hotline.wait_for_log("DTMF 5 on", timeout=5)
    phone.command(f"terminate {call_id}")
    phone.wait_for("LinphoneCallEnd", timeout=5, Id=call_id)
    caller.wait_bye(timeout=5)
    row = call_row(hotline, caller)
    assert row["agent"] == "1003" and row["disposition"] == "answered", row
    assert row["hangup_side"] == "agent", row
    events = [event for event, _ in queue_events(hotline, row["call_id"])]
    assert "HOLD" in events and "UNHOLD" in events, events
    assert events.index("HOLD") < events.index("UNHOLD"), events
    unregistered(hotline, phone)


def test_blind_transfer_from_linphone_connects_the_caller_to_a_second_linphone(
    hotline: HotlineNode,
    linphone: Callable[..., LinphoneAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """``call-transfer`` sends REFER; the node answers it itself (202, NOTIFY sipfrag), the
    first phone ends its call, and the caller hears the second phone's tone."""
    phone = linphone(registrar=hotline.address, user="1007")
    registered(hotline, phone, "udp")
    caller = rtp_caller(hotline, called="9000")
    call_id = answered_call(phone, caller)
    # Registered only now, so the queue call cannot have gone to it.
    second = linphone(registrar=hotline.address, user="1008", tone_hz=SECOND_TONE)
    registered(hotline, second, "udp")
    host = hotline.address.rsplit(":", 1)[0]
    phone.command(f"call-transfer {call_id} sip:1008@{host}")
    phone.wait_for("LinphoneCallEnd", timeout=8, Id=call_id)
    incoming = second.wait_for("LinphoneCallIncomingReceived", timeout=8)
    assert "X-Hotline-Var-Transferred-By: 1007" in second.log_text(), second.describe()
    second.command(f"answer {incoming['Id']}")
    second.wait_for("LinphoneCallStreamsRunning", timeout=5, Id=incoming["Id"])
    second.play(str(incoming["Id"]))
    caller.wait_tone(SECOND_TONE, timeout=8)
    assert caller.bye_at is None, caller.describe()
    assert re.search(r"REFER sip:\S+ SIP/2\.0", phone.log_text()), "no REFER sent"
    caller_hangs_up(hotline, second, caller)
    row = call_row(hotline, caller)
    assert ("TRANSFER", "1007") in queue_events(hotline, row["call_id"])
    unregistered(hotline, phone)
    unregistered(hotline, second)


def tls_settings(ca: Path, pki: Pki, certificate: bool = True) -> dict[str, dict[str, str]]:
    """linphonerc for TLS: the node's certificate chain checked against `ca`, but not its
    name (mbedtls 2.28, which belle-sip uses here, does not read the iPAddress entry of the
    node's certificate, so 127.0.0.1 is a "CN-mismatch"), the test client certificate unless
    `certificate` is False, and SDES SRTP."""
    settings = {
        "root_ca": str(ca),
        "verify_server_certs": "1",
        "verify_server_cn": "0",
        "media_encryption": "srtp",
    }
    if certificate:
        settings["client_cert_chain"] = str(pki.client_cert)
        settings["client_cert_key"] = str(pki.client_key)
    return {"sip": settings}


def test_linphone_over_tls_registers_and_answers_a_queue_call_with_srtp(
    hotline: HotlineNode,
    pki: Pki,
    linphone: Callable[..., LinphoneAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """linphone checks the node's certificate chain (with a CA that did not sign it the
    handshake fails) and the node requires linphone's client certificate (without one the
    handshake fails); with both it registers, and the node's
    SRTP offer to a phone on TLS is answered with SRTP while the caller stays on plain RTP
    and hears the phone."""
    tls = f"{LOOPBACK}:{hotline.tls_port}"  # type: ignore[attr-defined]
    stranger = linphone(
        registrar=tls, user="1006", transport="tls", extra_config=tls_settings(pki.rogue_cert, pki)
    )
    assert stranger.wait_registered(timeout=8) == "LinphoneRegistrationFailed"
    assert "SSL handshake failed" in stranger.log_text(), stranger.describe()
    anonymous = linphone(
        registrar=tls, user="1006", transport="tls", extra_config=tls_settings(pki.ca, pki, False)
    )
    assert anonymous.wait_registered(timeout=8) == "LinphoneRegistrationFailed"
    assert "SSL handshake failed" in anonymous.log_text(), anonymous.describe()
    assert hotline.cdr_rows("bindings", aor="1006") == []
    failures = hotline.log_text()
    assert "TLSV1_ALERT_UNKNOWN_CA" in failures, "the foreign CA's phone did not refuse the node"
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in failures, "the node took a phone without one"

    phone = linphone(
        registrar=tls, user="1005", transport="tls", extra_config=tls_settings(pki.ca, pki)
    )
    registered(hotline, phone, "tls")
    caller = rtp_caller(hotline, called="9000")
    answered_call(phone, caller)
    invite_over(phone, "tls")
    trace = phone.log_text()
    offer, answer = re.findall(r"m=audio \d+ (\S+)", trace)[:2]
    assert (offer, answer) == ("RTP/SAVP", "RTP/SAVP"), (offer, answer)
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in trace
    assert trace.count("SSL handshake finished") == 1, "a second TLS connection was opened"
    caller_hangs_up(hotline, phone, caller)
    unregistered(hotline, phone)
