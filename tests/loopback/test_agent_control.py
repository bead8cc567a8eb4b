"""`hotline agent` and `hotline status` against a running node, through its control socket.

A SIPp phone registers as agent 1001; the CLI makes it busy, a SIPp carrier call to 9000
then waits (status shows it), and `hotline agent ready 1001` gets the call offered and
answered at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from .harness import HotlineNode, Sipp
from .ivr_support import hotline_cli
from .test_restart import SIPP_TIMEOUT, register_sipp_phone


def status(node: HotlineNode) -> dict:
    result = hotline_cli("status", "--json", "--data", str(node.data_dir))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_makes_an_agent_busy_then_ready_and_the_waiting_call_reaches_it(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp]
) -> None:
    hotline = node()
    port = register_sipp_phone(sipp, hotline, "1001")
    data = str(hotline.data_dir)
    busy = hotline_cli("agent", "not-ready", "1001", "--reason", "paperwork", "--data", data)
    assert (busy.returncode, busy.stdout.strip()) == (0, "1001: busy"), busy.stderr
    refused = hotline_cli("agent", "unlock", "1001", "--data", data)
    assert refused.returncode == 2 and "busy" in refused.stderr  # not locked: refused

    phone = sipp("uas_agent", local_port=port, timeout=SIPP_TIMEOUT).start()
    caller = sipp(
        "uac_call", remote=hotline.address, service="9000", duration_ms=500, timeout=SIPP_TIMEOUT
    ).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        (general,) = [q for q in status(hotline)["queues"] if q["queue"] == "general"]
        if general["waiting"] == 1:
            break
        time.sleep(0.2)
    assert general["waiting"] == 1 and general["agents"]["busy"] == 1, general
    (agent,) = [a for a in status(hotline)["agents"] if a["agent_id"] == "1001"]
    assert (agent["state"], agent["reason"]) == ("busy", "paperwork")

    ready = hotline_cli("agent", "ready", "1001", "--data", data)
    assert (ready.returncode, ready.stdout.strip()) == (0, "1001: ringing"), ready.stderr
    assert caller.wait() == 0, caller.describe()
    assert phone.wait() == 0, phone.describe()
    (call,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None
    )
    assert call["agent"] == "1001" and call["disposition"] == "answered"
    text = hotline_cli("status", "--data", data)
    assert text.returncode == 0 and "1001\tidle" in text.stdout, text.stdout
    (general,) = [q for q in status(hotline)["queues"] if q["queue"] == "general"]
    assert general["kpis"]["entered"] == 1 and general["kpis"]["answered"] == 1
    assert general["kpis"]["human_answer_rate"] == 1.0
