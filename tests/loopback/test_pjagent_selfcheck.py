"""Self-checks of the loopback harness against SIPp, without hotline in the path.

The product's loopback tests trust pjagent.py's events and the Sipp result; these tests prove
that trust is earned: a real independent peer (SIPp) calls the agent directly or acts as its
registrar, and both sides' views must agree. The SIPp scenarios here are harness fixtures,
written inline into tmp_path, not product scenarios (those live in tests/sipp/).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .harness import HotlineNode, NodeError, PjAgent, Sipp, free_port

# A UAS registrar: challenge the first REGISTER (RFC 3261 §22.4, RFC 2617 digest, MD5), check
# the credentials of the second with SIPp's verifyauth, then 200 (echoing the Contact with
# expires) or 403. After a 200 it also accepts the un-REGISTER (expires=0) with 200.
REGISTRAR_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="harness digest registrar">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="hotline.test", nonce="[pid]n[call_number]x", algorithm=MD5, qop="auth"
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER">
    <action>
      <verifyauth assign_to="auth_ok" username="{user}" password="{password}"/>
    </action>
  </recv>
  <nop hide="true" test="auth_ok" next="accepted"/>
  <send next="done">
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="accepted"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=60
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="done"/>
</scenario>
"""

# A UAC that calls the agent with carrier-style identity headers and then waits for the
# agent's BYE (RFC 3261 §15.1.2: the callee may end the dialog).
CALLER_AWAITS_BYE_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="harness caller awaiting BYE">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]c[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:13800138000@[local_ip]:[local_port]>
      Max-Forwards: 70
      P-Asserted-Identity: <sip:+8613800138000@carrier.test>
      Diversion: <sip:12345@carrier.test>;reason=unconditional
      Diversion: <sip:12315@carrier.test>;reason=user-busy
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]c[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:13800138000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


# A stand-in for `softswitch.cli serve`, to check HotlineNode's mechanics (readiness by
# OPTIONS, log capture, SIGTERM, SQLite rows) independently of the real node. It binds late so
# that readiness polling is exercised, answers every request 200 and records it in a table.
FAKE_NODE_SCRIPT = """
import signal, socket, sqlite3, sys, time
port, data_dir, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
if delay < 0:
    print("fake node refuses to start", file=sys.stderr, flush=True)
    sys.exit(3)
time.sleep(delay)
db = sqlite3.connect(data_dir + "/hotline.db", isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS calls (call_id TEXT, method TEXT)")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", port))
sock.settimeout(0.1)
running = [True]
signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
print("fake node listening on", port, file=sys.stderr, flush=True)
deadline = time.monotonic() + 30
while running[0] and time.monotonic() < deadline:
    try:
        packet, source = sock.recvfrom(65535)
    except (TimeoutError, ConnectionRefusedError):
        continue
    lines = packet.decode().split("\\r\\n")
    method = lines[0].split(" ")[0]
    kept = [h for h in lines[1:] if h.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
    sock.sendto(("SIP/2.0 200 OK\\r\\n" + "\\r\\n".join(kept)
                 + "\\r\\nContent-Length: 0\\r\\n\\r\\n").encode(), source)
    call_id = [h.split(":", 1)[1].strip() for h in kept if h.startswith("Call-ID")][0]
    db.execute("INSERT INTO calls VALUES (?, ?)", (call_id, method))
    print(method, call_id, file=sys.stderr, flush=True)
print("fake node stopped", file=sys.stderr, flush=True)
"""


class FakeNode(HotlineNode):
    """HotlineNode running FAKE_NODE_SCRIPT instead of the real softswitch."""

    script: Path
    start_delay: float = 0.3

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            str(self.script),
            str(self.port),
            str(self.data_dir),
            str(self.start_delay),
        ]


def make_fake_node(tmp_path: Path, start_delay: float, **overrides: dict) -> FakeNode:
    source = tmp_path / "config-source"
    source.mkdir(exist_ok=True)
    (source / "queues.yaml").write_text(
        "defaults:\n  wrap_up: 5\n  max_wait: 60\nqueues:\n  - name: general\n    ring_timeout: 15\n"
    )
    fake = FakeNode(tmp_path / "fake", config_source=source, ready_timeout=5.0, **overrides)
    fake.script = tmp_path / "fake_node.py"
    fake.script.write_text(FAKE_NODE_SCRIPT)
    fake.start_delay = start_delay
    return fake


def test_node_harness_waits_for_sip_readiness_and_reads_rows(tmp_path: Path) -> None:
    fake = make_fake_node(
        tmp_path,
        start_delay=0.3,
        queues={"defaults": {"wrap_up": 0}, "queues": [{"name": "general", "ring_timeout": 3}]},
        agents={"agents": [{"id": "1001", "password": "pw1001"}]},
    )
    try:
        fake.start()
        queues = yaml.safe_load((fake.config_dir / "queues.yaml").read_text())
        assert queues == {
            "defaults": {"wrap_up": 0, "max_wait": 60},
            "queues": [{"name": "general", "ring_timeout": 3}],
        }
        agents = yaml.safe_load((fake.config_dir / "agents.yaml").read_text())
        assert agents == {"agents": [{"id": "1001", "password": "pw1001"}]}

        raw = (
            b"INFO sip:probe@127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-selfcheck;rport\r\n"
            b"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n"
            b"Call-ID: selfcheck-1\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n"
        )
        response = fake.send_sip(raw, timeout=2.0, final=True)
        assert response.startswith(b"SIP/2.0 200 OK")
        assert b"Call-ID: selfcheck-1" in response
        rows = fake.wait_for_rows("calls", lambda found: len(found) == 1, method="INFO")
        assert rows == [{"call_id": "selfcheck-1", "method": "INFO"}]
        assert fake.cdr_rows("calls", method="OPTIONS")  # the readiness probes
        with pytest.raises(NodeError, match="tables: \\['calls'\\]"):
            fake.cdr_rows("legs")
    finally:
        assert fake.stop() == 0
    assert "fake node stopped" in fake.log_text()
    assert "INFO selfcheck-1" in fake.log_text()


def test_node_harness_reports_a_node_that_exits_at_start(tmp_path: Path) -> None:
    fake = make_fake_node(tmp_path, start_delay=-1.0)
    with pytest.raises(NodeError, match="exited with 3") as failure:
        fake.start()
    assert "fake node refuses to start" in str(failure.value)


def test_free_port_is_free_for_udp_and_tcp_and_never_repeated() -> None:
    ports = [free_port("both") for _ in range(5)]
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", port))


def write_scenario(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_text(text, encoding="ascii")
    return path


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_agent_auto_answers_direct_call_and_sees_remote_bye(
    pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp], transport: str
) -> None:
    agent = pjagent(user="1001", transport=transport, auto_answer=200)
    caller = sipp(
        builtin="uac",
        remote=agent.address,
        transport="t1" if transport == "tcp" else "u1",
        service="1001",
        calls=1,
        duration_ms=300,
        timeout=15,
    )
    caller.run()
    caller.check()
    assert caller.result["successful"] == 1
    assert caller.result["failed"] == 0

    incoming = agent.wait_for("incoming", timeout=5)
    assert incoming["request_uri"].startswith("sip:1001@127.0.0.1")
    assert "sipp" in incoming["from"]
    call_id = incoming["call_id"]
    agent.wait_for("answered", timeout=5, call_id=call_id)
    agent.wait_for("confirmed", timeout=5, call_id=call_id)
    ended = agent.wait_for("disconnected", timeout=5, call_id=call_id)
    assert ended["by"] == "remote"
    assert ended["code"] == 200
    assert agent.stop() == 0
    assert agent.events("exit")[-1]["status"] == 0


def test_agent_rejecting_with_486_fails_the_sipp_call(
    pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    agent = pjagent(user="1002", auto_answer=486)
    caller = sipp(builtin="uac", remote=agent.address, service="1002", timeout=15)
    returncode = caller.run()["returncode"]
    assert returncode == 1, caller.describe()
    assert caller.result["failed"] == 1
    assert caller.result["successful"] == 0
    with pytest.raises(AssertionError, match="at least one call failed"):
        caller.check()

    ended = agent.wait_for("disconnected", timeout=5)
    assert ended["code"] == 486
    assert ended["by"] == "local"
    assert agent.events("answered") == []


def test_agent_hangs_up_after_delay_and_reports_identity_headers(
    tmp_path: Path, pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    agent = pjagent(user="1003", auto_answer=200, answer_delay=0.2, hangup_after=0.5)
    scenario = write_scenario(tmp_path, "caller_awaits_bye", CALLER_AWAITS_BYE_SCENARIO)
    caller = sipp(scenario, remote=agent.address, service="1003", timeout=15)
    caller.run()
    caller.check()

    incoming = agent.wait_for("incoming", timeout=5)
    assert incoming["headers"]["P-Asserted-Identity"] == "<sip:+8613800138000@carrier.test>"
    assert incoming["headers"]["Diversion"] == (
        "<sip:12345@carrier.test>;reason=unconditional, <sip:12315@carrier.test>;reason=user-busy"
    )
    ringing = agent.wait_for("ringing", timeout=5)
    answered = agent.wait_for("answered", timeout=5)
    assert answered["time"] - ringing["time"] >= 0.15
    ended = agent.wait_for("disconnected", timeout=5)
    assert ended["by"] == "local"
    assert ended["time"] - answered["time"] >= 0.4


def test_agent_sends_rfc4733_digits_that_return_through_an_rtp_echo(
    tmp_path: Path, pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    # SIPp's -rtp_echo reflects the agent's RTP, so the agent receives its own telephone-events:
    # proof that media flows (the null sound device clocks the bridge) in both directions.
    agent = pjagent(user="1006", auto_answer=200, dtmf="159#", hangup_after=1.5)
    scenario = write_scenario(tmp_path, "caller_awaits_bye", CALLER_AWAITS_BYE_SCENARIO)
    caller = sipp(
        scenario, remote=agent.address, service="1006", timeout=15, extra_args=["-rtp_echo"]
    )
    caller.run()
    caller.check()

    agent.wait_for("dtmf_sent", timeout=5, digits="159#")
    digits = [agent.wait_for("dtmf", timeout=5)["digit"] for _ in range(4)]
    assert digits == ["1", "5", "9", "#"]
    agent.wait_for("disconnected", timeout=5, by="local")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_agent_registers_with_digest_and_unregisters_on_command(
    tmp_path: Path, pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp], transport: str
) -> None:
    scenario = write_scenario(
        tmp_path, "registrar", REGISTRAR_SCENARIO.format(user="1004", password="pw1004")
    )
    sipp_transport = "t1" if transport == "tcp" else "u1"
    registrar = sipp(scenario, calls=1, timeout=15, transport=sipp_transport).start()
    agent = pjagent(
        user="1004", password="pw1004", registrar=registrar.address, transport=transport
    )

    registered = agent.wait_for("registered", timeout=10)
    assert registered["code"] == 200
    assert registered["expires"] == 60
    agent.send("unregister")
    agent.wait_for("unregistered", timeout=5)
    assert registrar.wait(timeout=10) == 0, registrar.describe()
    registrar.check()
    assert registrar.result["successful"] == 1


def test_agent_reports_reg_failed_on_wrong_password(
    tmp_path: Path, pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    scenario = write_scenario(
        tmp_path, "registrar", REGISTRAR_SCENARIO.format(user="1005", password="pw1005")
    )
    registrar = sipp(scenario, calls=1, timeout=15).start()
    agent = pjagent(user="1005", password="wrong", registrar=registrar.address)

    failed = agent.wait_for("reg_failed", timeout=10)
    assert failed["code"] == 403
    assert agent.events("registered") == []
    registrar.wait(timeout=10)
    registrar.check()
