"""The pure parts of `hotline loadtest run --engine sipp`: splitting the calls across SIPp
processes, the injection file, the creation rate, the scenario's shape, and SIPp's log back
into per-call results and the report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from loadtest import sipp
from loadtest.cli import loadtest_command
from loadtest.report import CallResult, Outcome, build_report, format_report, percentiles
from loadtest.sipp_scenario import FINAL_CODES, KEY_NAMES, caller_scenario
from loadtest.trace import KeyPress, Trace, TraceCall
from softswitch.cli import _parser

T0 = 1_800_000_000.0


def call(n: int, offset: float, **kw: Any) -> TraceCall:
    return TraceCall(f"c{n:03d}", offset, f"0101234{n:04d}", "12345", **kw)


def log(call_id: str, *events: tuple[str, float]) -> list[str]:
    """Log lines as the scenario writes them (SIPp's [timestamp]: date, time, epoch)."""
    return [f"{call_id};{name};2027-01-15\t08:00:00.000000\t{T0 + at:.6f}" for name, at in events]


def test_calls_are_dealt_round_robin_in_arrival_order() -> None:
    calls = [call(i, i * 0.5) for i in range(7)]
    parts = sipp.split_calls(calls, 3)
    assert [[c.call_id for c in p] for p in parts] == [
        ["c000", "c003", "c006"], ["c001", "c004"], ["c002", "c005"],
    ]  # fmt: skip
    assert sipp.split_calls(calls, 1) == [calls]
    assert sipp.split_calls(calls[:1], 3)[1:] == [[], []]
    with pytest.raises(ValueError):
        sipp.split_calls(calls, 0)


def test_injection_file_holds_each_call_in_real_milliseconds() -> None:
    calls = [
        call(1, 12.5, keys=(KeyPress("1", 2.0), KeyPress("#", 0.75)), patience_s=30.0,
             talk_s=60.0),
        call(2, 13.0),
    ]  # fmt: skip
    text = sipp.injection_file(calls, 0.1, forever_ms=99_000)
    assert text.splitlines() == [
        "SEQUENTIAL",
        "c001;1250;01012340001;12345;1@200,#@75,.;3000;6000",
        "c002;1300;01012340002;12345;.;99000;0",  # no keys, no patience: waits "forever"
    ]


def test_injection_refuses_a_field_that_would_break_the_file() -> None:
    bad = TraceCall("c;1", 0.0, "1", "2")
    with pytest.raises(ValueError, match="c;1"):
        sipp.injection_line(bad, 1.0, 1000)


def test_creation_rate_creates_every_call_before_it_is_due() -> None:
    due = [i * 0.01 for i in range(1000)]  # 100 calls/s for 10 s
    lead = 1.0
    rate = sipp.creation_rate(due, lead)
    assert all(i / rate <= d + lead for i, d in enumerate(due))
    assert 100 <= rate <= 250  # about the trace's rate, with the margin
    burst = [5.0] * 50  # 50 calls due at once after 5 s
    assert all(i / sipp.creation_rate(burst, lead) <= 6.0 for i in range(50))
    assert sipp.creation_rate([0.0], lead) == sipp.MIN_RATE * sipp.RATE_MARGIN


def test_call_id_follows_sipps_cid_format() -> None:
    assert sipp.CID_FORMAT == "lt-%u-%p@%s"
    assert sipp.call_id_of(7, 4242, "127.0.0.1") == "lt-7-4242@127.0.0.1"


def test_scenario_is_well_formed_and_covers_every_key_and_final_code() -> None:
    xml = caller_scenario(linger_ms=1500, poll_ms=50)
    root = ET.fromstring(xml)
    labels = {e.get("id") for e in root.iter("label")}
    jumps = {e.get("next") for e in root.iter() if e.get("next")}
    jumps |= {e.get("ontimeout") for e in root.iter() if e.get("ontimeout")}
    assert jumps <= labels, jumps - labels  # every jump lands on a label
    assert "_unexp.main" in labels
    plays = {e.get("play_pcap_audio") for e in root.iter("exec")} - {None}
    assert {e.get("rtp_stream") for e in root.iter("exec")} - {None} == {"silence.ulaw,-1,0"}
    assert plays == {f"dtmf_2833_{name}.pcap" for name in KEY_NAMES.values()}
    for code in FINAL_CODES:
        assert f'response="{code}"' in xml
    assert '<pause milliseconds="1500"/>' in xml and 'timeout="50"' in xml
    assert "start_txn" not in xml  # see the module: SIPp's transactions assert on CANCEL


def test_log_lines_parse_into_events_and_skip_sipps_own_lines() -> None:
    lines = log("c001", ("invite", 0.5), ("answered", 0.51)) + [
        "2027-01-15\t08:00:00.1\t1800000000.1: some SIPp warning",
        "",
    ]
    events = sipp.parse_log(lines)
    assert list(events) == ["c001"]
    assert [(e.name, round(e.at - T0, 3)) for e in events["c001"]] == [
        ("invite", 0.5), ("answered", 0.51),
    ]  # fmt: skip
    with pytest.raises(sipp.SippLogError):
        sipp.parse_log(["c001;invite;not-a-time"])


def result_of(trace_call: TraceCall, lines: list[str], **kw: Any) -> CallResult:
    events = sipp.parse_log(lines)[trace_call.call_id]
    return sipp.call_result(trace_call, events, T0, **kw)


def test_an_ivr_call_answered_by_an_agent() -> None:
    c = call(1, 1.0, keys=(KeyPress("1", 1.0),), patience_s=60.0, talk_s=30.0)
    lines = log(
        "c001", ("created", 0.2), ("invite", 0.101), ("provisional", 0.105),
        ("answered", 0.110), ("key:1", 0.2), ("waiting", 0.21), ("agent", 3.5),
        ("bye", 6.5), ("bye_ok", 6.51), ("end", 6.52),
    )  # fmt: skip
    r = result_of(c, lines, agent=sipp.AgentAnswer("1001", 3.49), sip_call_id="lt-1-9@x")
    assert r.outcome is Outcome.ANSWERED and r.agent == "1001"
    assert r.agent_answer_at == 3.49 and r.waiting_at == pytest.approx(0.21)
    assert r.first_response_at == pytest.approx(0.105)
    assert r.node_answer_at == pytest.approx(0.110)
    assert (r.keys_sent, r.keys_skipped, r.bye_failed) == (1, 0, False)
    assert r.first_rtp_at is None and r.sip_call_id == "lt-1-9@x" and not r.premature
    # The node's BYE in the middle of the talk: answered, and released prematurely.
    cut_off = [line for line in lines if ";bye" not in line and ";end" not in line]
    cut_off += log("c001", ("remote_bye", 4.0), ("end", 4.0))
    r = result_of(c, cut_off, agent=sipp.AgentAnswer("1001", 3.49))
    assert r.outcome is Outcome.ANSWERED and r.premature


def test_abandon_rejection_release_failure_and_cut() -> None:
    c = call(2, 0.0, keys=(KeyPress("1", 1.0), KeyPress("2", 1.0)), patience_s=5.0)
    waited = log("c002", ("invite", 0.0), ("answered", 0.01), ("key:1", 0.1), ("key:2", 0.2),
                 ("waiting", 0.2), ("abandon", 0.7), ("bye", 0.7), ("bye_ok", 0.71),
                 ("end", 0.72))  # fmt: skip
    r = result_of(c, waited)
    assert r.outcome is Outcome.ABANDONED and r.ended_at == pytest.approx(0.72)
    queued = log("c002", ("invite", 0.0), ("provisional", 0.01), ("abandon", 0.5),
                 ("status:487", 0.51), ("end", 0.52))  # fmt: skip
    r = result_of(c, queued)
    assert r.outcome is Outcome.ABANDONED and r.waiting_at == pytest.approx(0.01)
    assert r.keys_skipped == 2 and r.status == 487
    r = result_of(c, log("c002", ("invite", 0.0), ("status:404", 0.01), ("end", 0.02)))
    assert r.outcome is Outcome.RELEASED and r.status == 404
    r = result_of(c, log("c002", ("invite", 0.0), ("status:503", 0.01), ("end", 0.02)))
    assert r.outcome is Outcome.FAILED and r.reason == "503"
    bye = log("c002", ("invite", 0.0), ("answered", 0.01), ("remote_bye", 0.5), ("end", 0.5))
    r = result_of(c, bye)
    assert r.outcome is Outcome.RELEASED and r.reason == "BYE from the node"
    no_ok = log("c002", ("invite", 0.0), ("answered", 0.01), ("waiting", 0.2), ("abandon", 0.7),
                ("bye", 0.7))  # SIPp gave up retransmitting the BYE  # fmt: skip
    r = result_of(c, no_ok)
    assert r.outcome is Outcome.ABANDONED and r.bye_failed
    aborted = log("c002", ("invite", 0.0), ("provisional", 0.01))
    assert result_of(c, aborted).outcome is Outcome.FAILED
    assert result_of(c, aborted, cut=True).outcome is Outcome.CUT
    cut = log("c002", ("invite", 0.0), ("answered", 0.01), ("waiting", 0.2), ("agent", 1.0),
              ("cut", 2.0), ("bye", 2.0), ("bye_ok", 2.01), ("end", 2.02))  # fmt: skip
    r = result_of(c, cut)
    assert r.outcome is Outcome.ANSWERED and r.cut_short
    never = log("c002", ("created", 0.0), ("cut", 0.5), ("end", 0.5))
    r = result_of(c, never)
    assert r.invite_at is None and r.outcome is None


def test_report_says_what_the_sipp_engine_does_not_measure() -> None:
    c = call(1, 0.0, talk_s=1.0)
    lines = log("c001", ("invite", 0.004), ("provisional", 0.006), ("answered", 0.01),
                ("waiting", 0.01), ("agent", 0.2), ("bye", 0.3), ("bye_ok", 0.31),
                ("end", 0.31))  # fmt: skip
    r = result_of(c, lines, agent=sipp.AgentAnswer("1001", 0.2))
    lateness = sipp.start_lateness_ms([r], 1.0)
    assert lateness == [pytest.approx(4.0, abs=1e-3)]
    report = build_report(
        [r], trace=Trace((c,)), trace_name="t.csv", target="127.0.0.1:5060", time_scale=1.0,
        agents=1, run_seconds=1.0, engine="sipp", generators=2,
        not_measured=("ivr_response_ms",), start_lateness_ms=percentiles(lateness),
    )  # fmt: skip
    text = "\n".join(format_report(report))
    assert "callers: 2 SIPp processes" in text
    assert "IVR response (200 → RTP)     not measured (sipp engine)" in text
    assert "INVITE after its trace time" in text and report.answered == 1


def test_engine_options_are_checked_and_a_missing_sipp_stops_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "# hotline-trace 1\ncall_id,offset_s,caller,called,region,keys,patience_s,talk_s,wrap_s\n"
        "c1,0,0101234567,12345,,,,1,0\n",
        encoding="utf-8",
    )

    def run(*args: str) -> tuple[int, str]:
        argv = ["loadtest", "run", str(trace), "--target", "127.0.0.1:9", *args]
        status = loadtest_command(_parser().parse_args(argv))
        return status, capsys.readouterr().err

    assert run("--generators", "2") == (
        2,
        "hotline: --generators, --sipp-dir and --sipp-rtp need --engine sipp\n",
    )
    assert run("--engine", "sipp", "--generators", "0")[0] == 2
    missing = str(tmp_path / "no-sipp")
    status, err = run("--engine", "sipp", "--sipp-binary", missing, "--no-progress")
    assert status == 1
    assert err == (
        f"hotline: {missing} not found: install SIPp (Debian/Ubuntu: apt-get install "
        "sip-tester) or give --sipp-binary\n"
    )
