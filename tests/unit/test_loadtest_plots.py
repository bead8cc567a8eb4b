"""The plots of `hotline loadtest run`: the series maths on made-up calls (bucket edges, empty
buckets, calls never answered or never attempted, node samples), the saved report read back,
the PNGs and the self-contained HTML page, and the one-line refusal without matplotlib."""

from __future__ import annotations

import math
import re
import struct
import sys
import zlib
from pathlib import Path

import pytest

from loadtest import report as rep
from loadtest.cli import loadtest_command
from loadtest.erlang import ErlangA, compare, erlang_a_model, erlang_c_model
from loadtest.page import render, tender_rows
from loadtest.plots import INSTALL_HINT, plots, write_plots
from loadtest.report import CallResult, Outcome, ReportFileError, read_report_json
from loadtest.sample import NodeSample, NodeSampler, NodeUsage
from loadtest.series import bucket_count, bucket_of, bucket_width, series
from loadtest.trace import Trace
from softswitch.cli import _parser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def answered(offset: float, wait: float, setup: float = 0.01, scale: float = 1.0) -> CallResult:
    at = offset * scale
    return CallResult(
        call_id=f"a{offset}", offset_s=offset, invite_at=at, first_response_at=at + setup,
        waiting_at=at + 1, agent_answer_at=at + 1 + wait * scale, ended_at=at + 30,
        outcome=Outcome.ANSWERED,
    )  # fmt: skip


def report_of(
    calls: list[CallResult], run_seconds: float, scale: float = 1.0, node: NodeUsage | None = None
) -> rep.Report:
    return rep.build_report(
        calls, trace=Trace((), {}), trace_name="day.csv", target="127.0.0.1:5060",
        time_scale=scale, agents=4, run_seconds=run_seconds, node=node,
    )  # fmt: skip


def usage(samples: list[NodeSample]) -> NodeUsage:
    return NodeUsage(
        pid=42, cpu_s=1.0, cpu_ms_per_call=1.0, cpu_share=0.5, rss_mb_max=80.0,
        samples=len(samples), udp_drops=7, series=tuple(samples),
    )  # fmt: skip


# --- series maths ------------------------------------------------------------------------------
def test_short_runs_get_ten_second_buckets_and_longer_ones_minutes() -> None:
    assert bucket_width(0.0) == bucket_width(299.9) == 10.0
    assert bucket_width(300.0) == bucket_width(7200.0) == 60.0
    assert bucket_count(0.0, 10.0) == 1 and bucket_count(10.0, 10.0) == 1
    assert bucket_count(10.001, 10.0) == 2 and bucket_count(125.0, 60.0) == 3
    # bucket k holds [k·w, (k+1)·w); times past the last bucket stay in it
    assert [bucket_of(t, 10.0, 3) for t in (0.0, 9.999, 10.0, 29.99, 30.0, -1.0)] == [
        0, 0, 1, 2, 2, 0,
    ]  # fmt: skip


def test_calls_count_in_the_bucket_of_their_offer_in_run_time() -> None:
    # time scale 0.1: trace offsets 0, 99.9, 100 and 250 are run seconds 0, 9.99, 10 and 25
    calls = [answered(o, wait=2.0, scale=0.1) for o in (0.0, 99.9, 100.0, 250.0)]
    data = series(report_of(calls, run_seconds=32.0, scale=0.1), calls)
    assert data.width_s == 10.0 and data.unit == "10 s"
    assert [(b.start_s, b.end_s) for b in data.buckets] == [
        (0, 10), (10, 20), (20, 30), (30, 32),
    ]  # fmt: skip
    assert [b.offered for b in data.buckets] == [2, 1, 1, 0]
    assert [b.answered for b in data.buckets] == [2, 1, 1, 0]
    # waits are in trace seconds, as in the report
    assert data.buckets[0].wait_p50_s == pytest.approx(2.0)
    assert data.buckets[0].setup_p50_ms == pytest.approx(10.0)


def test_empty_buckets_have_no_percentiles_and_unanswered_calls_no_wait() -> None:
    abandoned = CallResult(
        call_id="ab", offset_s=70.0, invite_at=70.0, first_response_at=70.02, waiting_at=71.0,
        ended_at=90.0, outcome=Outcome.ABANDONED,
    )  # fmt: skip
    failed = CallResult(
        call_id="f", offset_s=75.0, invite_at=75.0, outcome=Outcome.FAILED, reason="timer B"
    )
    released = CallResult(
        call_id="r", offset_s=80.0, invite_at=80.0, first_response_at=80.5, status=480,
        outcome=Outcome.RELEASED,
    )  # fmt: skip
    never = CallResult(call_id="n", offset_s=900.0, outcome=Outcome.CUT)  # due after the run
    calls = [answered(5.0, wait=4.0), abandoned, failed, released, never]
    data = series(report_of(calls, run_seconds=400.0), calls)
    assert data.width_s == 60.0 and data.unit == "minute" and len(data.buckets) == 7
    assert data.not_attempted == 1
    first, second, third = data.buckets[:3]
    assert (first.offered, first.answered, first.wait_p95_s) == (1, 1, pytest.approx(4.0))
    assert (second.offered, second.abandoned, second.failed, second.released) == (3, 1, 1, 1)
    assert second.answered == 0 and second.wait_p50_s is None  # nobody answered: no wait
    # setup of the calls that got a response: 20 ms and 500 ms; the failed call has none
    assert (second.setup_p50_ms, second.setup_p99_ms) == pytest.approx((20.0, 500.0))
    assert third.offered == 0
    assert (third.wait_p50_s, third.setup_p50_ms, third.cpu_share, third.rss_mb) == (None,) * 4
    assert sum(b.offered for b in data.buckets) == 4  # every attempted call, once
    assert not data.node_sampled


def test_node_cpu_share_and_memory_per_bucket_from_the_samples() -> None:
    # one sample a second for 25 s; 0.2 s of CPU a second for 10 s, then 0.8 s a second
    samples, cpu = [], 0.0
    for second in range(26):
        samples.append(NodeSample(at_s=second + 0.5, cpu_s=cpu, rss_mb=50.0 + second))
        cpu += 0.2 if second < 9 else 0.8
    data = series(report_of([], run_seconds=26.0, node=usage(samples)), [])
    assert data.node_sampled and len(data.buckets) == 3
    shares = [b.cpu_share for b in data.buckets]
    assert shares[0] == pytest.approx(0.2)  # pairs ending at 1.5 … 9.5
    assert shares[1] == pytest.approx(0.8) and shares[2] == pytest.approx(0.8)
    assert [b.rss_mb for b in data.buckets] == [59.0, 69.0, 75.0]


def test_the_sampler_keeps_every_sample_from_the_first_calls_start(tmp_path: Path) -> None:
    stat = "4242 (node) S 1 2 3 4 5 6 7 8 9 10 {u} 0 0 0 20 0 3 0 99"
    proc = tmp_path / "4242"
    proc.mkdir()
    sampler = NodeSampler(4242, proc=tmp_path)
    for now, ticks in ((100.5, 1000), (101.5, 1100)):
        (proc / "stat").write_text(stat.format(u=ticks), encoding="ascii")
        (proc / "status").write_text("VmRSS: 2048 kB\n", encoding="ascii")
        sampler.sample(now)
    sampler.mark_drops()  # no fd directory here: no drop figure, and no error
    used = sampler.usage(attempted=10, origin=100.0)
    assert used is not None and used.udp_drops is None
    assert [(s.at_s, s.rss_mb) for s in used.series] == [(0.5, 2.0), (1.5, 2.0)]
    assert used.series[0].cpu_s == 0.0 and used.series[1].cpu_s > 0


# --- the saved report -------------------------------------------------------------------------
def test_a_saved_report_reads_back_with_its_calls_samples_and_drops() -> None:
    calls = [answered(1.0, 3.0), CallResult(call_id="n", offset_s=5.0, outcome=Outcome.CUT)]
    node = usage([NodeSample(at_s=0.5, cpu_s=0.0, rss_mb=40.0)])
    report = report_of(calls, run_seconds=12.0, node=node)
    again, calls_again = read_report_json(rep.report_json(report, calls), "r.json")
    assert again == report and calls_again == calls
    assert "UDP receive drops 7" in "\n".join(rep.format_report(again))


def test_a_saved_unstable_erlang_c_model_reads_back_with_infinite_waits() -> None:
    model = erlang_c_model(3600.0, 10.0, 5, 15.0)  # 10 erlangs on 5 agents
    assert not model.stable and math.isinf(model.mean_wait_s)
    report = report_of([answered(1.0, 3.0)], run_seconds=5.0)
    verdict = compare(model, 0.1, 30.0)  # against an infinite predicted wait
    assert math.isinf(verdict.mean_wait_diff_s) and verdict.mean_wait_diff_s < 0
    staffing = rep.Staffing(applicable=True, why="Erlang C", model=model, verdict=verdict)
    report = rep.msgspec.structs.replace(report, staffing=staffing)
    again, _ = read_report_json(rep.report_json(report), "r.json")
    assert again.staffing == staffing
    # Erlang A (with patience) is told from Erlang C by its fields, and the verdict kept
    patient = erlang_a_model(3600.0, 10.0, 5, 60.0, 15.0)
    verdict = compare(patient, 0.4, 12.0)
    staffing = rep.Staffing(applicable=True, why="Erlang A", model=patient, verdict=verdict)
    report = rep.msgspec.structs.replace(report, staffing=staffing)
    again, _ = read_report_json(rep.report_json(report), "r.json")
    assert isinstance(again.staffing.model, ErlangA) and again.staffing == staffing


def test_a_file_that_is_no_report_gets_one_line_naming_it() -> None:
    cases = [
        (b"{", "r.json: not JSON"),
        (b"[1]", "r.json: not a loadtest report"),
        (b'{"trace": "t.csv"}', "r.json: not a loadtest report: no 'target'"),
    ]
    for data, message in cases:
        with pytest.raises(ReportFileError, match=re.escape(message)):
            read_report_json(data, "r.json")
    good = rep.report_json(report_of([], run_seconds=1.0)).replace(
        b'"offered": 0', b'"offered": "x"'
    )
    with pytest.raises(ReportFileError, match="r.json: offered: Expected `int`"):
        read_report_json(good, "r.json")


# --- PNG and HTML -----------------------------------------------------------------------------
def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and every chunk's CRC."""
    assert data[:8] == PNG_MAGIC
    at, chunks = 8, []
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        at += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    assert any(kind == b"IDAT" for kind, _ in chunks)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    return width, height


def sample_run() -> tuple[rep.Report, list[CallResult]]:
    calls = [answered(o, wait=o / 10, setup=0.005 + o / 1e4) for o in range(0, 600, 7)]
    calls.append(CallResult(call_id="f", offset_s=33.0, invite_at=33.0, outcome=Outcome.FAILED))
    samples = [NodeSample(at_s=s + 0.5, cpu_s=s * 0.3, rss_mb=60 + s / 20) for s in range(605)]
    return report_of(calls, run_seconds=605.0, node=usage(samples)), calls


def test_plots_are_valid_pngs_written_to_the_directory(tmp_path: Path) -> None:
    report, calls = sample_run()
    made = plots(report, calls)
    assert [p.name for p in made] == ["calls", "waits", "setup", "node"]
    for plot in made:
        assert png_size(plot.png) == (800, 320), plot.name
    paths = write_plots(tmp_path / "new" / "dir", made)
    assert sorted(p.name for p in paths) == ["calls.png", "node.png", "setup.png", "waits.png"]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    # without node samples there is no node plot; an empty run still draws
    bare = report_of([], run_seconds=0.0)
    assert [p.name for p in plots(bare, [])] == ["calls", "waits", "setup"]


def test_the_html_page_is_self_contained_with_its_figures_and_tender_figures() -> None:
    report, calls = sample_run()
    made = plots(report, calls)
    page = render(report, made)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<link" not in page and "url(" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(made) == 4
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert page.count("<img") == len(sources) and "src=" not in page.replace('src="data:', "")
    for plot in made:
        assert f'<h2 id="{plot.name}">{plot.title}</h2>' in page
    assert "call processing failure rate" in page and "busy-hour call attempts" in page
    assert "<td>UDP receive drops</td><td>7</td>" in page
    rows = {row[0]: row for row in tender_rows(report)}
    assert "1 of 87" in rows["call processing failure rate"][1]
    assert "no" in rows["call processing failure rate"][4]  # 1/87 > 4e-4
    premature = rows["premature release probability"]
    assert "0 of" in premature[1] and "yes" in premature[4]


def test_premature_releases_are_counted_per_answered_call_and_saved_reports_without_them_read() -> (
    None
):
    first, second = answered(1.0, 1.0), answered(2.0, 1.0)
    second.premature = True
    report = report_of([first, second], run_seconds=40.0)
    assert (report.premature_releases, report.premature_release_rate) == (1, 0.5)
    assert any("premature releases 1 of 2" in line for line in rep.format_report(report))
    assert "no" in {r[0]: r for r in tender_rows(report)}["premature release probability"][4]
    saved = rep.msgspec.json.decode(rep.report_json(report))
    del saved["premature_releases"], saved["premature_release_rate"]  # a report of before
    old, _calls = read_report_json(rep.msgspec.json.encode(saved), "old.json")
    assert old.premature_releases is None
    assert "not measured" in {r[0]: r for r in tender_rows(old)}["premature release probability"][4]


def test_report_text_is_escaped_in_the_page() -> None:
    report = report_of([answered(1.0, 1.0)], run_seconds=5.0)
    report = rep.msgspec.structs.replace(report, trace="<b>&day.csv")
    page = render(report, [])
    assert "<b>&day" not in page and "&lt;b&gt;&amp;day.csv" in page


# --- the command line -------------------------------------------------------------------------
def cli(*args: str) -> int:
    return loadtest_command(_parser().parse_args(["loadtest", *args]))


def test_report_command_draws_a_saved_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report, calls = sample_run()
    saved = tmp_path / "report.json"
    saved.write_bytes(rep.report_json(report, calls))
    page = tmp_path / "out.html"
    assert cli("report", str(saved), "--html", str(page), "--plots", str(tmp_path / "png")) == 0
    out = capsys.readouterr().out
    assert "BHCA" in out and f"page: {page}" in out and "plot: " in out
    assert page.read_text(encoding="utf-8").count("data:image/png;base64,") == 4
    assert png_size((tmp_path / "png" / "calls.png").read_bytes()) == (800, 320)
    (tmp_path / "bad.json").write_text("[]", encoding="utf-8")
    assert cli("report", str(tmp_path / "bad.json")) == 1
    assert capsys.readouterr().err.startswith("hotline: ")


def test_plots_without_matplotlib_fail_at_once_with_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    # the trace does not exist and the target is silent: the check comes before either
    missing = str(tmp_path / "no-such-trace.csv")
    run = ["run", missing, "--target", "127.0.0.1:9", "--no-progress"]
    for args in (
        [*run, "--html", "x.html"],
        [*run, "--plots", "d"],
        ["report", "r.json", "--plots", "d"],
    ):
        assert cli(*args) == 2, args
        err = capsys.readouterr().err
        assert err == f"hotline: --plots and --html need matplotlib: {INSTALL_HINT}\n", err
    assert not (tmp_path / "d").exists()


def test_plot_files_that_cannot_be_written_are_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = ["run", str(tmp_path / "no-such-trace.csv"), "--target", "127.0.0.1:9"]
    (tmp_path / "file").write_text("", encoding="utf-8")
    cases = [
        (["--html", str(tmp_path / "nowhere" / "x.html")], "its directory does not exist"),
        (["--plots", str(tmp_path / "file")], "File exists"),
    ]
    for extra, message in cases:
        assert cli(*run, "--no-progress", *extra) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("hotline: ") and message in err and err.count("\n") == 1, err
    assert cli(*run, "--plots", str(tmp_path / "made" / "here")) == 1  # then the trace
    assert (tmp_path / "made" / "here").is_dir()
    assert "no-such-trace.csv" in capsys.readouterr().err
