"""An agent's phone features over TCP and over TLS: a pjsua2 agent registered over that
transport answers a queue call from a Python carrier caller (UDP), holds and resumes it,
sends an RFC 4733 key and blind-transfers the caller (REFER) to a second agent on UDP.

The in-dialog requests (re-INVITEs, REFER) must travel over the phone's own connection to
the node, read from pjsip's log. Each phone sends its own tone, so the caller's audio says
who it hears: the first agent (1000 Hz), the node's hold tone (400 Hz), the second agent
(1500 Hz). One node serves the module, listening on UDP and TCP and on a TLS port with a
certificate of a CA made here (tests/unit/tlscerts.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from unit.tlscerts import Pki

from .harness import LOOPBACK, HotlineNode, PjAgent, free_port
from .ivr_peers import RtpCaller, tone_fraction
from .test_agent_features import FIRST_TONE, HOLD_TONE, SECOND_TONE, queue_events

# transport -> (first agent, the agent it transfers to, the key it sends); each test has
# its own agents and key, so nothing left by the other one can pass it.
CASES = {"tcp": ("1001", "1002", "7"), "tls": ("1003", "1004", "9")}


@pytest.fixture(scope="module")
def hotline(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[HotlineNode]:
    tls_port = free_port("tcp")
    node = HotlineNode(
        tmp_path_factory.mktemp("transports-node"),
        node={"tls": pki.node_tls(f"{LOOPBACK}:{tls_port}")},
    )
    node.tls_port = tls_port  # type: ignore[attr-defined]
    node.start()
    yield node
    node.stop()


def sent_requests(agent: PjAgent) -> list[tuple[str, str, str]]:
    """(method, transport, destination) of every request pjsip sent, from its log (level 5:
    `TX … Request msg INVITE/cseq=2 (tdta…) to TCP 127.0.0.1:5060:`)."""
    trace = agent.pj_log_path.read_text(encoding="utf-8", errors="replace")
    return re.findall(
        r"TX \d+ bytes Request msg (\w+)/cseq=\d+ \(\w+\) to (\w+) ([\d.]+:\d+)", trace
    )


@pytest.mark.parametrize("transport", sorted(CASES))
def test_hold_dtmf_and_blind_transfer_from_a_phone_on_tcp_and_tls(
    hotline: HotlineNode,
    pki: Pki,
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
    transport: str,
) -> None:
    first_id, second_id, key = CASES[transport]
    extra = ["--tone", str(FIRST_TONE)]
    registrar = hotline.address
    if transport == "tls":
        registrar = f"{LOOPBACK}:{hotline.tls_port}"  # type: ignore[attr-defined]
        # A phone on TLS is offered SRTP (media.agent_encryption `auto`): take it.
        extra += ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert)]
        extra += ["--tls-key", str(pki.client_key), "--srtp", "mandatory"]
    first = pjagent(
        user=first_id, registrar=registrar, transport=transport, log_level=5, extra_args=extra
    )
    assert first.wait_for("registered", timeout=10)["code"] == 200, first.describe()
    (binding,) = hotline.wait_for_rows("bindings", lambda rows: len(rows) == 1, aor=first_id)
    assert binding["transport"] == transport.upper(), binding

    caller = rtp_caller(hotline, called="9000", caller=f"1390000{first_id}")
    assert caller.call().status == 200, caller.describe()
    incoming = first.wait_for("incoming", timeout=5)
    # The phone's connection has an ephemeral local port nothing listens on: the INVITE came
    # over the connection the phone opened.
    assert incoming["source"] == registrar, incoming
    assert incoming["request_uri"].lower().endswith(f";transport={transport}"), incoming
    caller.wait_tone(FIRST_TONE, timeout=8)
    first.wait_for("media_active", timeout=5)

    first.send("hold")
    held = caller.wait_tone(HOLD_TONE, since=caller.answered_at, timeout=8)
    assert tone_fraction(caller.audio(held, held + 0.5), FIRST_TONE) < 0.05, "phone heard on hold"
    first.send("unhold")
    caller.wait_tone(FIRST_TONE, since=held, timeout=8)

    first.send(f"dtmf {key}")
    first.wait_for("dtmf_sent", timeout=5, digits=key, method="rfc4733")
    line = hotline.wait_for_log(f"DTMF {key} on", timeout=5)
    assert "rfc4733" in line, line

    # The second agent registers only now, so the queue call could not have gone to it.
    second = pjagent(user=second_id, registrar=hotline, extra_args=["--tone", str(SECOND_TONE)])
    assert second.wait_for("registered", timeout=10)["code"] == 200, second.describe()
    host = hotline.address.rsplit(":", 1)[0]
    first.send(f"xfer sip:{second_id}@{host}")
    assert first.wait_for("xfer_status", timeout=8, final=True)["code"] == 200
    first.wait_for("disconnected", timeout=8)
    transferred = second.wait_for("incoming", timeout=8)
    assert transferred["headers"].get("X-Hotline-Var-Transferred-By") == first_id, transferred
    caller.wait_tone(SECOND_TONE, timeout=8)
    assert caller.hang_up() == 200
    second.wait_for("disconnected", timeout=5)

    # Every request of the first phone went to the node over its transport: the REGISTER,
    # the two re-INVITEs (hold, resume) and the REFER.
    sent = sent_requests(first)
    methods = [method for method, _, _ in sent]
    assert methods.count("INVITE") >= 2 and "REFER" in methods, sent
    assert {(via, to) for _, via, to in sent} == {(transport.upper(), registrar)}, sent

    (row,) = hotline.wait_for_rows(
        "calls",
        lambda rows: len(rows) == 1 and rows[0]["end"] is not None,
        timeout=10,
        caller=caller.caller,
    )
    assert row["agent"] == second_id and row["disposition"] == "answered", row
    events = queue_events(hotline, row["call_id"])
    names = [event for event, _ in events]
    assert ("HOLD", first_id) in events and ("UNHOLD", first_id) in events, events
    assert names.index("HOLD") < names.index("UNHOLD") < names.index("TRANSFER"), events
    assert ("TRANSFER", first_id) in events, events
