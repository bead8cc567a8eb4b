"""A carrier's IMS core on the trunk (issue 9), with SIPp as the IMS side and a pjsua2 agent:
tel: Request-URI, P-Asserted-Identity and P-Charging-Vector, `Require: 100rel` answered with
reliable ringing and PRACK, and a session timer the carrier refreshes with UPDATE
(tests/sipp/uac_ims_trunk.xml)."""

from __future__ import annotations

from collections.abc import Callable

from .harness import HotlineNode, PjAgent, Sipp

SIPP_TIMEOUT = 30.0


def test_an_ims_trunk_call_with_100rel_and_session_timer_reaches_an_agent(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    agent = pjagent(user="1001", registrar=hotline)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    carrier = sipp(
        "uac_ims_trunk", remote=hotline.address, service="9000", duration_ms=1000,
        timeout=SIPP_TIMEOUT,
    )  # fmt: skip
    carrier.run()
    carrier.check()
    assert carrier.result["successful"] == 1
    agent.wait_for("disconnected", timeout=5)
    (call,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None
    )
    assert (call["called"], call["caller"], call["agent"]) == ("9000", "13800138000", "1001")
    assert (call["disposition"], call["hangup_side"]) == ("answered", "caller")
    assert "P-Charging-Vector" not in str(agent.wait_for("incoming")["headers"])
