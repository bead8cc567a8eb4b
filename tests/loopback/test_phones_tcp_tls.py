"""baresip and linphone as agents' phones over TCP and over TLS, the whole row of the interop
matrix (docs/interop.md) in one call per phone and transport, as test_phone_transports.py
does for pjsua2: register, answer a queue call from a Python carrier caller (UDP), an RFC
4733 key that reaches the node, hold and resume, and a blind transfer (REFER) to a second
phone of the same kind on the same transport, whom the caller then hears.

Each phone sends its own tone, so the caller's audio says whom it hears: the first phone
(1000 Hz), the node's hold tone (400 Hz), the second phone (1500 Hz). Every request a phone
sent is read from its own SIP trace (baresip ``-s``, belle-sip's log) with the transport and
address it went to: all of them over its transport to the node's listener. On TLS the node
offers SRTP (`media.agent_encryption: auto`) and both phones take it. What the phone hears:
baresip records it (sndfile) and the caller's tone must be in it; linphone has no sound card
and drops what it decodes, so only its oRTP statistics (RTP received and passed to the
decoder, SRTP-decrypted on TLS) are checked.

baresip 1.0 over TLS can send no request to a ``sips:`` target (libre 1.1's `sip_request()`
returns ENOSYS for any route not ``sip:``). It registers ``sip:…;transport=tls``, so its
dialogs are not SIPS ones and the node's Contact in them is ``sip:…;transport=tls``
(RFC 3261 §12.1.2 asks for ``sips:`` only when the request was sips:): its hold, resume,
transfer and hang-up reach the node over TLS like any other phone's.

One node serves the module: UDP and TCP on its address, TLS on its own port with a
certificate of the module's test CA (client certificates required), MD5 digest only
(baresip 1.0 gives up on a challenge offering SHA-256 beside MD5, test_baresip_agent.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from unit.tlscerts import Pki

from .baresip_agent import BaresipAgent
from .harness import LOOPBACK, HotlineNode, free_port
from .ivr_peers import RtpCaller, read_wav, tone, tone_fraction
from .linphone_agent import LinphoneAgent
from .test_agent_features import CALLER_TONE, FIRST_TONE, HOLD_TONE, SECOND_TONE, queue_events
from .test_linphone_agent import (
    answered_call,
    call_row,
    held_and_resumed,
    invite_over,
    tls_settings,
    unregistered,
)

# transport -> (first agent, the agent it transfers to, the key it sends): each case has its
# own agents and key, so nothing another case left behind can pass it.
BARESIP_CASES = {"tcp": ("1001", "1002", "3"), "tls": ("1003", "1004", "4")}
LINPHONE_CASES = {"tcp": ("1005", "1006", "5"), "tls": ("1007", "1008", "6")}


@pytest.fixture(scope="module")
def hotline(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[HotlineNode]:
    tls_port = free_port("tcp")
    node = HotlineNode(
        tmp_path_factory.mktemp("phones-node"),
        node={"auth": {"algorithms": ["MD5"]}, "tls": pki.node_tls(f"{LOOPBACK}:{tls_port}")},
    )
    node.tls_port = tls_port  # type: ignore[attr-defined]
    node.start()
    yield node
    node.stop()


def listener(node: HotlineNode, transport: str) -> str:
    """The node's HOST:PORT for `transport` (UDP and TCP share one)."""
    if transport == "tls":
        return f"{LOOPBACK}:{node.tls_port}"  # type: ignore[attr-defined]
    return node.address


def no_phone_registered(node: HotlineNode) -> None:
    """The previous case's phones are gone (they unregister when they stop), so the queue
    call can only ring this case's phone."""
    node.wait_for_rows("bindings", lambda rows: not rows, timeout=5)


def only_over(requests: list[tuple[str, str]], transport: str) -> list[str]:
    """Every (method, transport) went over `transport`; returns the methods in order."""
    assert requests and {via for _, via in requests} == {transport.upper()}, requests
    return [method for method, _ in requests]


def transferred(node: HotlineNode, caller: RtpCaller, first_id: str, second_id: str) -> None:
    """The call ended answered by the second agent, with HOLD < UNHOLD < TRANSFER by the
    first in the queue log."""
    row = call_row(node, caller)
    assert row["agent"] == second_id and row["disposition"] == "answered", row
    events = queue_events(node, row["call_id"])
    names = [event for event, _ in events]
    for event in ("HOLD", "UNHOLD", "TRANSFER"):
        assert (event, first_id) in events, events
    assert names.index("HOLD") < names.index("UNHOLD") < names.index("TRANSFER"), events


def dtmf_reached_the_node(node: HotlineNode, key: str) -> None:
    line = node.wait_for_log(f"DTMF {key} on", timeout=5)
    assert line.rstrip().endswith("(rfc4733)"), line


# -- baresip ------------------------------------------------------------------------------


def baresip_requests(phone: BaresipAgent, node: str) -> dict[str, list[tuple[str, str]]]:
    """The requests in baresip's trace (``-s``: each message follows a line such as ``TLS
    127.0.0.1:SRC -> 127.0.0.1:DST``) as (method, transport): "sent" those it sent to
    `node` and "received" those from `node`; "other" is (method, the line) of any else."""
    trace = phone.log_path.read_text(encoding="utf-8", errors="replace")
    found = re.findall(r"^(UDP|TCP|TLS) (\S+) -> (\S+)\r?\n([A-Z]+) \S+ SIP/2\.0", trace, re.M)
    requests: dict[str, list[tuple[str, str]]] = {"sent": [], "received": [], "other": []}
    for via, source, destination, method in found:
        if destination == node:
            requests["sent"].append((method, via))
        elif source == node:
            requests["received"].append((method, via))
        else:
            requests["other"].append((method, f"{via} {source} -> {destination}"))
    return requests


def baresip_settings(pki: Pki, transport: str, directory: Path) -> dict[str, Any]:
    """BaresipAgent arguments for `transport`: on TLS, the client certificate and key in one
    PEM (`sip_certificate`), the test CA (`sip_cafile`) and SDES SRTP, mandatory."""
    if transport != "tls":
        return {"transport": transport}
    both = directory / "baresip-client.pem"
    both.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    return {
        "transport": transport,
        "extra_config": (
            ("sip_certificate", str(both)),
            ("sip_cafile", str(pki.ca)),
            ("module", "srtp.so"),
        ),
        "account_params": ";mediaenc=srtp-mand",
    }


def baresip_heard_the_caller(phone: BaresipAgent) -> None:
    """The phone's recording of what it decoded (complete once its call closed) is the
    caller's tone, not its own coming back."""
    (heard,) = phone.heard_wavs()
    wav = read_wav(heard)
    share = {hz: tone_fraction(wav.samples, hz, wav.rate) for hz in (CALLER_TONE, FIRST_TONE)}
    assert wav.seconds >= 0.5 and share[CALLER_TONE] > 0.5, (wav.seconds, share)
    assert share[FIRST_TONE] < 0.05, share


@pytest.mark.parametrize("transport", sorted(BARESIP_CASES))
def test_baresip_on_tcp_and_tls_answers_sends_a_key_holds_and_transfers(
    hotline: HotlineNode,
    pki: Pki,
    baresip: Callable[..., BaresipAgent],
    rtp_caller: Callable[..., RtpCaller],
    transport: str,
    tmp_path: Path,
) -> None:
    first_id, second_id, key = BARESIP_CASES[transport]
    address = listener(hotline, transport)
    settings = baresip_settings(pki, transport, tmp_path)
    no_phone_registered(hotline)
    first = baresip(registrar=address, user=first_id, tone_hz=FIRST_TONE, record=True, **settings)
    assert first.wait_for("REGISTER_OK", timeout=8)["param"].startswith("200"), first.describe()
    (binding,) = hotline.wait_for_rows("bindings", lambda rows: len(rows) == 1, aor=first_id)
    assert binding["transport"] == transport.upper(), binding

    caller = rtp_caller(hotline, called="9000")
    assert caller.call().status == 200, caller.describe()
    call = first.wait_for("CALL_ESTABLISHED", timeout=5, direction="incoming")
    caller.wait_tone(FIRST_TONE, timeout=5)
    # What the phone hears, before the hold: baresip 1.0 records nothing more after a hold
    # and resume (on UDP too), though the node's RTP to it goes on.
    time.sleep(caller.say(tone(CALLER_TONE, 0.6)) + 0.2)
    first.command("sndcode", key)
    dtmf_reached_the_node(hotline, key)
    host = hotline.address.rsplit(":", 1)[0]

    first.command("hold")
    held = caller.wait_tone(HOLD_TONE, since=caller.answered_at, timeout=8)
    time.sleep(0.5)
    assert tone_fraction(caller.audio(held), FIRST_TONE) < 0.05, "the phone heard on hold"
    first.command("resume")
    caller.wait_tone(FIRST_TONE, since=held, timeout=8)

    # Registered only now, so the queue call could not have gone to it.
    second = baresip(registrar=address, user=second_id, tone_hz=SECOND_TONE, **settings)
    assert second.wait_for("REGISTER_OK", timeout=8)["param"].startswith("200")
    first.command("transfer", f"sip:{second_id}@{host}")
    closed = first.wait_for("CALL_CLOSED", timeout=8, id=call["id"])
    assert closed.get("param") == "Call transfered", first.describe()
    second.wait_for("CALL_ESTABLISHED", timeout=8, direction="incoming")
    caller.wait_tone(SECOND_TONE, timeout=8)
    assert caller.hang_up() == 200
    second.wait_for("CALL_CLOSED", timeout=5)

    requests = baresip_requests(first, address)
    methods = only_over(requests["sent"], transport)
    assert methods.count("INVITE") == 2 and "REFER" in methods, methods
    assert not requests["other"], requests
    # The second phone was reached over its own connection too.
    assert "INVITE" in only_over(baresip_requests(second, address)["received"], transport)
    if transport == "tls":  # SRTP offered and answered, the re-INVITEs of the hold included
        trace = first.log_path.read_text(encoding="utf-8", errors="replace")
        assert set(re.findall(r"m=audio \d+ (\S+)", trace)) == {"RTP/SAVP"}, "not SRTP"
    baresip_heard_the_caller(first)
    transferred(hotline, caller, first_id, second_id)


# -- linphone -----------------------------------------------------------------------------


def linphone_sent(phone: LinphoneAgent, node: str) -> list[tuple[str, str]]:
    """(method, transport) of every request in belle-sip's log (``message sent to
    [TLS://127.0.0.1:PORT], size: [N] bytes`` and the message on the next line); one sent
    anywhere but to `node` fails the test."""
    found = re.findall(
        r"message sent to \[(\w+)://([^\]]+)\], size: \[\d+\] bytes\r?\n(\S+) ", phone.log_text()
    )
    requests = [(first, via.upper(), to) for via, to, first in found if first != "SIP/2.0"]
    assert {to for _, _, to in requests} == {node}, requests
    return [(method, via) for method, via, _ in requests]


def linphone_received_rtp(phone: LinphoneAgent) -> tuple[int, int]:
    """(packets received, bytes passed to the decoder) summed over the oRTP statistics the
    phone logs each time its audio stream stops (hold, resume, the end of the call)."""
    log = phone.log_text()
    received = re.findall(r"ortp-message-received +(\d+) packets", log)
    delivered = re.findall(r"incoming delivered to the app +(\d+) bytes", log)
    return sum(map(int, received)), sum(map(int, delivered))


@pytest.mark.parametrize("transport", sorted(LINPHONE_CASES))
def test_linphone_on_tcp_and_tls_answers_holds_sends_a_key_and_transfers(
    hotline: HotlineNode,
    pki: Pki,
    linphone: Callable[..., LinphoneAgent],
    rtp_caller: Callable[..., RtpCaller],
    transport: str,
) -> None:
    first_id, second_id, key = LINPHONE_CASES[transport]
    address = listener(hotline, transport)
    extra = tls_settings(pki.ca, pki) if transport == "tls" else None
    no_phone_registered(hotline)
    first = linphone(registrar=address, user=first_id, transport=transport, extra_config=extra)
    assert first.wait_registered(timeout=8) == "LinphoneRegistrationOk", first.describe()
    (binding,) = hotline.wait_for_rows("bindings", lambda rows: len(rows) == 1, aor=first_id)
    assert binding["transport"] == transport.upper(), binding
    # Like pjsip, belle-sip puts its connection's local port (not its listener's) in the
    # Contact: the node can reach it over that connection only.
    assert binding["contact"].endswith(f":{binding['source_port']};transport={transport}")
    assert binding["source_port"] != first.sip_port, binding

    caller = rtp_caller(hotline, called="9000")
    call_id = answered_call(first, caller)  # the caller hears the phone's tone
    invite_over(first, transport)

    held_and_resumed(first, caller, call_id)

    first.command(f"dtmf {key}")
    dtmf_reached_the_node(hotline, key)

    # Registered only now, so the queue call could not have gone to it.
    second = linphone(
        registrar=address,
        user=second_id,
        transport=transport,
        tone_hz=SECOND_TONE,
        extra_config=extra,
    )
    assert second.wait_registered(timeout=8) == "LinphoneRegistrationOk", second.describe()
    host = hotline.address.rsplit(":", 1)[0]
    first.command(f"call-transfer {call_id} sip:{second_id}@{host}")
    first.wait_for("LinphoneCallEnd", timeout=8, Id=call_id)
    incoming = second.wait_for("LinphoneCallIncomingReceived", timeout=8)
    invite_over(second, transport)
    assert f"X-Hotline-Var-Transferred-By: {first_id}" in second.log_text(), second.describe()
    second.command(f"answer {incoming['Id']}")
    second.wait_for("LinphoneCallStreamsRunning", timeout=5, Id=incoming["Id"])
    second.play(str(incoming["Id"]))
    caller.wait_tone(SECOND_TONE, timeout=8)
    assert caller.hang_up() == 200
    second.wait_for("LinphoneCallEnd", timeout=5)

    # REGISTERs, the hold and resume re-INVITEs and the REFER (and the ACKs and the BYE
    # linphone sends after a transfer) all went over the phone's transport to the node.
    methods = only_over(linphone_sent(first, address), transport)
    assert methods.count("INVITE") == 2 and "REFER" in methods, methods
    received, decoded = linphone_received_rtp(first)
    assert received >= 20 and decoded > 0, (received, decoded)
    if transport == "tls":  # SRTP offered and answered, the re-INVITEs included
        for phone in (first, second):
            profiles = re.findall(r"m=audio \d+ (\S+)", phone.log_text())
            assert profiles and set(profiles) == {"RTP/SAVP"}, profiles
    transferred(hotline, caller, first_id, second_id)
    unregistered(hotline, first)
    unregistered(hotline, second)
