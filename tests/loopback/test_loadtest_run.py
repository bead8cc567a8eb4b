"""`hotline loadtest run` against the real node: 12 generated calls to the 12345 IVR (key 1 →
queue general) in ~12 s at time scale 0.1, two emulated agents from the demo's agents.yaml,
more traffic than they can take so that some callers abandon. The report must agree with
the node's CDR call by call (answered and abandoned, and who answered), and its HTML page
(`--html`) must hold the plots."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .harness import HotlineNode, free_port
from .ivr_support import generated_ivr_trace, hotline_cli

CALLS = 12
OFFICE_HOURS = "2026-12-07T10:00+08:00"  # a Monday morning: the main menu is open


def test_loadtest_run_replays_a_trace_and_agrees_with_the_cdr(
    node: Callable[..., HotlineNode], tmp_path: Path
) -> None:
    hotline = node(extra_args=["--clock", OFFICE_HOURS])
    trace = generated_ivr_trace(tmp_path, 360, "exp:30", "60")
    report_path = tmp_path / "report.json"
    page = tmp_path / "report.html"
    run = hotline_cli(
        "loadtest", "run", str(trace), "--limit", str(CALLS), "--target", hotline.address,
        "--time-scale", "0.1", "--agents", "2",
        "--register-agents", str(hotline.config_dir / "agents.yaml"),
        "--max-seconds", "45", "--json", str(report_path), "--html", str(page), "--no-progress",
        "--node-pid", str(hotline.process.pid if hotline.process else 0),
        timeout=80.0,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + hotline.describe()
    assert "service level" in run.stdout and "BHCA" in run.stdout, run.stdout
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["offered"] == report["attempted"] == CALLS
    assert report["failed"] == report["cut"] == report["released"] == 0, run.stdout
    assert report["answered"] + report["abandoned"] == CALLS
    assert report["answered"] > 0 and report["abandoned"] > 0, run.stdout
    assert report["correlation"]["unmatched"] == 0
    assert report["keys_sent"] > 0 and report["setup_ms"]["count"] == CALLS
    assert report["node"]["cpu_s"] > 0 and report["node"]["rss_mb_max"] > 0
    assert report["node"]["udp_drops"] == 0, run.stdout  # 12 calls cannot fill a buffer
    samples = report["node"]["series"]  # [run s, CPU s, RSS MB] once a second
    assert len(samples) == report["node"]["samples"] >= 5 and samples[-1][1] > 0
    # the page: the four plots embedded, nothing fetched from elsewhere
    html = page.read_text(encoding="utf-8")
    assert f"page: {page}" in run.stdout
    for name in ("calls", "waits", "setup", "node"):
        assert f'<h2 id="{name}">' in html, name
    assert html.count('src="data:image/png;base64,') == 4 and "http" not in html
    assert f"answered (carried)</td><td>{report['answered']}</td>" in html

    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == CALLS and all(r["end"] is not None for r in rows)
    )
    cdr = {row["sip_call_id"]: row for row in rows}
    dispositions = [row["disposition"] for row in rows]
    assert dispositions.count("answered") == report["answered"], (dispositions, run.stdout)
    assert dispositions.count("abandoned") == report["abandoned"], (dispositions, run.stdout)
    for call in report["calls"]:
        row = cdr[call["sip_call_id"]]
        assert row["disposition"] == call["outcome"], (call, row)
        if call["outcome"] == "answered":
            assert row["agent"] == call["agent"], (call, row)
            # every answered call was hung up by its caller: none released prematurely
            assert row["hangup_side"] == "caller" and not call["premature"], (call, row)
    assert report["premature_releases"] == 0 and report["premature_release_rate"] == 0
    kpis = report["kpis"]
    assert kpis["queued"] == CALLS and kpis["answered"] == report["answered"]
    # the two agents are unregistered at the end of the run
    assert "agent 1001 unregistered" in hotline.log_text()


def test_loadtest_run_stops_with_one_line_when_target_or_registration_fails(
    node: Callable[..., HotlineNode], tmp_path: Path
) -> None:
    trace = tmp_path / "trace.csv"
    made = hotline_cli("loadtest", "generate", "--out", str(trace), "--calls-per-hour", "60")
    assert made.returncode == 0, made.stderr
    silent = f"127.0.0.1:{free_port('udp')}"
    run = hotline_cli("loadtest", "run", str(trace), "--target", silent, "--no-progress")
    assert run.returncode == 1, run.stdout
    assert run.stderr == f"hotline: no SIP response from {silent} to OPTIONS within 2 s\n"
    hotline = node()
    passwords = tmp_path / "passwords.txt"
    passwords.write_text("1001 not-the-password\n", encoding="utf-8")
    run = hotline_cli(
        "loadtest", "run", str(trace), "--target", hotline.address, "--no-progress",
        "--agent-password-file", str(passwords),
    )  # fmt: skip
    assert run.returncode == 1, run.stdout
    assert run.stderr == "hotline: agent 1001: REGISTER answered 403 Forbidden\n", run.stderr
    assert hotline.cdr_rows("calls") == []  # no call was placed
