"""`hotline loadtest run --engine sipp --generators 2` against the real node: 10 generated
calls to the 12345 IVR (key 1 → queue general) in ~3 s at time scale 0.1, split across two
SIPp processes, two emulated agents from the demo's agents.yaml, more traffic than they can
take so that some callers abandon. The report must agree with the node's CDR call by call
(answered and abandoned, and who answered), every key must reach the IVR (the node logged
one RFC 4733 digit per key pressed; answered calls went menu → key 1 → general), and the
IVR response, which SIPp cannot see, must be reported as not measured."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .harness import HotlineNode, require_peer, sipp_available
from .ivr_support import generated_ivr_trace, hotline_cli

CALLS = 10
OFFICE_HOURS = "2026-12-07T10:00+08:00"  # a Monday morning: the main menu is open


def test_sipp_engine_replays_a_trace_with_two_generators_and_agrees_with_the_cdr(
    node: Callable[..., HotlineNode], tmp_path: Path
) -> None:
    require_peer("sipp", sipp_available(), "apt-get install sip-tester")
    hotline = node(extra_args=["--clock", OFFICE_HOURS])
    trace = generated_ivr_trace(tmp_path, 1200, "exp:20", "40")
    report_path = tmp_path / "report.json"
    work = tmp_path / "sipp"
    run = hotline_cli(
        "loadtest", "run", str(trace), "--limit", str(CALLS), "--target", hotline.address,
        "--time-scale", "0.1", "--agents", "2", "--engine", "sipp", "--generators", "2",
        "--register-agents", str(hotline.config_dir / "agents.yaml"), "--sipp-dir", str(work),
        "--max-seconds", "45", "--json", str(report_path), "--no-progress",
        timeout=80.0,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr + hotline.describe()
    assert "callers: 2 SIPp processes" in run.stdout, run.stdout
    assert "IVR response (200 → RTP)     not measured (sipp engine)" in run.stdout
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["engine"] == "sipp" and report["generators"] == 2
    assert report["not_measured"] == ["ivr_response_ms"] and report["ivr_response_ms"]["count"] == 0
    assert report["offered"] == report["attempted"] == CALLS
    assert report["failed"] == report["cut"] == report["released"] == 0, run.stdout
    assert report["answered"] + report["abandoned"] == CALLS
    assert report["answered"] > 0 and report["abandoned"] > 0, run.stdout
    assert report["correlation"]["unmatched"] == 0, run.stdout
    assert report["setup_ms"]["count"] == CALLS
    assert report["keys_sent"] == CALLS and report["keys_skipped"] == 0, run.stdout
    # pacing: every INVITE within a second of its trace time, even on a loaded machine
    assert report["start_lateness_ms"]["count"] == CALLS
    assert report["start_lateness_ms"]["max"] < 1000.0, run.stdout
    # both generators placed calls, each from its own SIPp (Call-IDs name the process)
    pids = {c["sip_call_id"].split("-")[2].split("@")[0] for c in report["calls"]}
    assert len(pids) == 2 and all((work / f"generator-{n}" / "calls.log").exists() for n in (1, 2))

    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == CALLS and all(r["end"] is not None for r in rows)
    )
    cdr = {row["sip_call_id"]: row for row in rows}
    for call in report["calls"]:
        row = cdr[call["sip_call_id"]]
        assert row["disposition"] == call["outcome"], (call, row)
        if call["outcome"] == "answered":  # key 1 led from the menu to the general queue
            assert row["agent"] == call["agent"], (call, row)
            assert row["queue"] == "general", row
            assert "menu>citizen" in json.loads(row["variables"])["ivr_path"], row
    assert hotline.log_text().count("DTMF 1 on") == report["keys_sent"]
