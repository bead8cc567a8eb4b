"""DP-9: SIGHUP reloads a changed configuration without disturbing calls in progress."""

from __future__ import annotations

import signal
from collections.abc import Callable

from .harness import HotlineNode, PjAgent, Sipp


def invite(number: str, call_id: str) -> bytes:
    return (
        f"INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{{local_port}};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:13800138000@127.0.0.1>;tag={call_id}\r\nTo: <sip:{number}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:carrier@127.0.0.1:{local_port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def hup(node: HotlineNode) -> None:
    assert node.process is not None
    node.process.send_signal(signal.SIGHUP)


def test_sighup_applies_a_new_route_and_keeps_the_call_up(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    agent = pjagent(user="1001", registrar=hotline)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    caller = sipp(
        "uac_call", remote=hotline.address, service="9000", timeout=20, duration_ms=4000
    ).start()
    agent.wait_for("confirmed", timeout=10)
    assert hotline.send_sip(invite("12399", "before"), final=True).startswith(b"SIP/2.0 404")

    dialplan = hotline.config_dir / "dialplan.yaml"
    dialplan.write_text(
        dialplan.read_text(encoding="utf-8").replace(
            "# Any other number.",
            '  - name: closed-line\n    match: {called: {exact: "12399"}}\n'
            "    action: {respond: 480, reason: Closed}\n# Any other number.",
        ),
        encoding="utf-8",
    )
    hup(hotline)
    hotline.wait_for_log("configuration reloaded", timeout=5)
    response = hotline.send_sip(invite("12399", "after"), final=True)
    assert response.startswith(b"SIP/2.0 480 Closed")

    # The call answered before the reload is still up and ends normally.
    assert caller.wait(timeout=20) == 0
    ended = agent.wait_for("disconnected", timeout=5)
    assert ended["by"] == "remote" and ended["duration"] >= 3.5


def test_sighup_with_a_broken_file_keeps_the_running_configuration(
    node: Callable[..., HotlineNode],
) -> None:
    hotline = node()
    queues = hotline.config_dir / "queues.yaml"
    queues.write_text("queues:\n  - name: general\n    ring_timeout: zero\n", encoding="utf-8")
    hup(hotline)
    line = hotline.wait_for_log("reload refused", timeout=5)
    assert "queues.yaml:3: queues[0].ring_timeout" in hotline.log_text(), line
    # Still serving with the old configuration: 9000 is queued (180), unknown numbers 404.
    assert hotline.send_sip(invite("5555", "x1"), final=True).startswith(b"SIP/2.0 404")
    assert hotline.process is not None and hotline.process.poll() is None
