"""`hotline reload` during 20 calls in progress (DP-9, the call-model issue's acceptance test).

Six agents (SIPp registers them with their Contact on one SIPp UAS that answers every call,
talks 3 s and hangs up) and twenty carrier calls: ten to 9000 (six talking, four queued with
no free agent) and ten to 12345 that sit in the IVR menu for 5 s before they press 1. While
all twenty are up, dialplan.yaml is edited and `hotline reload` is run: every call ends as it
would have without the reload, the callers in the menu still get the flow they started with,
and a call after the reload gets the new one. An invalid edit is then refused by the CLI with
exit status 2 and `file:line` errors, and the node keeps serving.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .harness import HotlineNode, Sipp, free_port
from .ivr_peers import wait_udp_bound
from .ivr_support import hotline_cli, ivr_caller, ivr_node, key_scenario, raw_invite

pytestmark = pytest.mark.timeout(90)

AGENTS = [f"100{n}" for n in range(1, 7)]  # all in `general`; 1005 and 1006 in `enterprise`
TALK_MS = 3000


def register_agents(
    sipp: Callable[..., Sipp], node: HotlineNode, work: Path, uas_port: int
) -> None:
    """REGISTER every agent of AGENTS with its Contact on the SIPp UAS at `uas_port`."""
    work.mkdir(parents=True, exist_ok=True)
    injection = work / "agents.csv"
    lines = ["SEQUENTIAL"] + [
        f"{agent};[authentication username={agent} password=pw{agent}];127.0.0.1:{uas_port}"
        for agent in AGENTS
    ]
    injection.write_text("\n".join(lines) + "\n", encoding="utf-8")
    registering = sipp(
        "register_agents",
        remote=node.address,
        calls=len(AGENTS),
        rate=50,
        timeout=15,
        extra_args=["-inf", str(injection)],
    )
    registering.run()
    registering.check()
    for agent in AGENTS:
        node.wait_for_log(f"agent {agent} registered", timeout=5)


def test_reload_with_twenty_calls_in_progress_keeps_them_and_serves_new_calls_on_the_new_config(
    node: Callable[..., HotlineNode], sipp: Callable[..., Sipp], tmp_path: Path
) -> None:
    hotline = ivr_node(node)
    uas_port = free_port("udp")
    phones = sipp(
        "uas_agent_bye",
        local_port=uas_port,
        calls=21,
        duration_ms=TALK_MS,
        timeout=60,
        extra_args=["-set", "ring_ms", "0"],
    ).start()
    wait_udp_bound(uas_port)
    register_agents(sipp, hotline, tmp_path / "agents", uas_port)

    direct = sipp(
        "uac_call_callee_bye",
        remote=hotline.address,
        service="9000",
        calls=10,
        rate=20,
        timeout=60,
    ).start()
    menu_callers = ivr_caller(
        sipp, hotline, key_scenario(tmp_path / "key1", "1"), press_ms=5000, calls=10, rate=20,
        timeout=60,
    ).start()  # fmt: skip

    # All twenty up: six talking, four queued, ten answered by the node and in the menu.
    hotline.wait_for_rows(
        "calls",
        lambda rows: (
            len(rows) == 20
            and sum(row["called"] == "9000" and row["answer"] is not None for row in rows) == 6
            and sum(row["called"] == "12345" and row["node_answer"] is not None for row in rows)
            == 10
        ),
        timeout=10,
    )

    # The edit: a new route, a new node behind key 1, a new welcome text.
    dialplan_path = hotline.config_dir / "dialplan.yaml"
    dialplan = yaml.safe_load(dialplan_path.read_text(encoding="utf-8"))
    dialplan["routes"].insert(
        0,
        {
            "name": "closed-line",
            "match": {"called": {"exact": "12399"}},
            "action": {"respond": 480, "reason": "Closed"},
        },
    )
    menu = dialplan["flows"]["main"]["nodes"]["menu"]
    menu["keys"]["1"] = "citizen_new"
    dialplan["flows"]["main"]["nodes"]["citizen_new"] = {
        "type": "queue",
        "queue": "general",
        "prompt": "please_wait",
    }
    dialplan["prompts"]["welcome"] = {"text": "Welcome back.", "voice": "en"}
    dialplan_path.write_text(yaml.safe_dump(dialplan, sort_keys=False), encoding="utf-8")
    reloaded = hotline_cli(
        "reload", "--config", str(hotline.config_dir), "--data", str(hotline.data_dir)
    )
    assert reloaded.returncode == 0, reloaded.stderr
    assert "reload sent" in reloaded.stdout
    line = hotline.wait_for_log("configuration reloaded", timeout=10)
    assert "20 calls in progress untouched" in line, line
    log = hotline.log_text()
    assert "DTMF" not in log[: log.index("configuration reloaded")], "a key came before the reload"

    # A call after the reload is routed by the new configuration...
    assert hotline.send_sip(raw_invite("12399"), final=True).startswith(b"SIP/2.0 480 Closed")
    # ...and one pressing 1 in the new menu reaches the new node.
    later = ivr_caller(
        sipp, hotline, key_scenario(tmp_path / "key1-later", "1"), timeout=60
    ).start()

    for run in (direct, menu_callers, later):
        run.wait(timeout=60)
        run.check()
    assert direct.result["successful"] == 10
    assert menu_callers.result["successful"] == 10
    assert phones.wait(timeout=15) == 0, phones.describe()
    assert phones.result["successful"] == 21

    # 21 calls (a call refused by a `respond` route gets no CDR row).
    served = hotline.wait_for_rows(
        "calls",
        lambda rows: len(rows) == 21 and all(row["end"] is not None for row in rows),
        timeout=10,
    )
    # Nobody was dropped: every call was answered by an agent, who hung up after talking.
    assert [(r["disposition"], r["hangup_side"]) for r in served] == [("answered", "agent")] * 21
    assert all(r["agent"] in AGENTS and r["queue"] == "general" for r in served)
    assert all(r["talk"] >= TALK_MS / 1000 - 0.3 for r in served)
    paths = sorted(
        re.search(r'"ivr_path":"([^"]*)"', r["variables"] or "").group(1)  # type: ignore[union-attr]
        for r in served
        if r["called"] == "12345"
    )
    # The ten in the menu during the reload kept the old flow; the later call got the new one.
    assert paths == ["hours>menu>citizen"] * 10 + ["hours>menu>citizen_new"]
    assert sum(r["called"] == "9000" for r in served) == 10

    # An invalid edit: `hotline reload` refuses it (exit 2, file:line), sends nothing, and the
    # node goes on with the configuration it has.
    menu["keys"]["1"] = "no_such_node"
    text = yaml.safe_dump(dialplan, sort_keys=False)
    dialplan_path.write_text(text, encoding="utf-8")
    bad_line = next(n for n, row in enumerate(text.splitlines(), 1) if "no_such_node" in row)
    refused_reload = hotline_cli(
        "reload", "--config", str(hotline.config_dir), "--data", str(hotline.data_dir)
    )
    assert refused_reload.returncode == 2, refused_reload
    assert re.search(rf"dialplan\.yaml:{bad_line}: \S+", refused_reload.stderr), (
        refused_reload.stderr
    )
    assert "not sent" in refused_reload.stderr
    assert hotline.returncode is None
    assert hotline.log_text().count("configuration reloaded") == 1
    assert hotline.send_sip(raw_invite("12399"), final=True).startswith(b"SIP/2.0 480 Closed")
