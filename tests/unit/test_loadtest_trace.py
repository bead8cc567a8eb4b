"""The trace format: round trips, and every validation error as `file:line: column: message`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from loadtest.cli import loadtest_command
from loadtest.trace import (
    COLUMNS,
    NO_PYARROW,
    KeyPress,
    Trace,
    TraceCall,
    TraceError,
    read_trace,
    write_trace,
)
from softswitch.cli import _parser

HEADER = ",".join(COLUMNS)
GOOD = "a1,0.5,+8613800000000,12345,beijing,1@2.5 #@0,60,180.25,15"


def _trace() -> Trace:
    calls = (
        TraceCall("a1", 0.5, "+8613800000000", "12345", "beijing", (KeyPress("1", 2.5), KeyPress("#", 0.0)), 60.0, 180.25, 15.0),
        TraceCall("a2", 0.5, "01062345678", "12345", "", (), None, 0.0, 0.0),
        TraceCall("a 3, quoted", 7200.125, "021", "96333", "上海", (KeyPress("*", 0.1),), 0.0, 1e-3, 2.0),
    )  # fmt: skip
    return Trace(calls, {"seed": "7", "profile": "hotline-day"})


def _errors(tmp_path: Path, *rows: str, header: str = HEADER) -> list[str]:
    path = tmp_path / "day.csv"
    path.write_text("# hotline-trace 1\n" + header + "\n" + "".join(r + "\n" for r in rows))
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    return [e.replace(str(path), "day.csv") for e in caught.value.errors]


def test_csv_round_trip_keeps_every_field_and_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_trace(path, _trace())
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# hotline-trace 1\n# seed: 7\n# profile: hotline-day\n" + HEADER)
    assert read_trace(path) == _trace()


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed")
def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_trace(path, _trace())
    assert read_trace(path) == _trace()


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow installed")
def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(TraceError) as caught:
        write_trace(tmp_path / "t.parquet", _trace())
    assert caught.value.errors == [f"{tmp_path / 't.parquet'}: {NO_PYARROW}"]


def test_comments_blank_lines_and_no_version_line_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    path.write_text(f"# written by hand\n{HEADER}\n\n# a pause\n{GOOD}\n")
    trace = read_trace(path)
    assert [c.call_id for c in trace.calls] == ["a1"]
    assert trace.calls[0].keys == (KeyPress("1", 2.5), KeyPress("#", 0.0))


def test_other_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v2.csv"
    path.write_text(f"# hotline-trace 2\n{HEADER}\n{GOOD}\n")
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert caught.value.errors == [f"{path}:1: version: version '2' is not supported (only 1)"]


def test_header_missing_extra_and_misordered_columns(tmp_path: Path) -> None:
    no_region = HEADER.replace("region,", "")
    assert _errors(tmp_path, GOOD, header=no_region + ",queue") == [
        "day.csv:2: header: missing column region",
        "day.csv:2: header: unknown column 'queue'",
    ]
    swapped = HEADER.replace("caller,called", "called,caller")
    assert _errors(tmp_path, GOOD, header=swapped) == [
        f"day.csv:2: header: columns must be in the order {HEADER}, got {swapped}"
    ]


def test_file_without_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("# hotline-trace 1\n")
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert caught.value.errors == [f"{path}:1: header: no header row (expected {HEADER})"]


def test_every_row_error_is_reported_with_its_line_and_column(tmp_path: Path) -> None:
    rows = (
        "a,13.0,123,12345,,1@2,,5,0",
        "a,12.5,12x,+12345,,x@1,-1,abc,",
        ",nan,,1,,1@-2 5,1e400,1,1",
        "b,14,1,1,,1,,1,1",
        "c,15,1,1",
    )
    assert _errors(tmp_path, *rows) == [
        "day.csv:4: call_id: 'a' repeats line 3",
        "day.csv:4: offset_s: 12.5 is before the previous call's 13.0",
        "day.csv:4: caller: '12x' is not digits (optionally with a leading +)",
        "day.csv:4: called: '+12345' is not digits",
        "day.csv:4: keys: 'x@1': key 'x' is not one of 0-9, *, #",
        "day.csv:4: patience_s: -1 is negative",
        "day.csv:4: talk_s: 'abc' is not a number",
        "day.csv:4: wrap_s: empty",
        "day.csv:5: call_id: empty",
        "day.csv:5: offset_s: 'nan' is not a number",
        "day.csv:5: caller: '' is not digits (optionally with a leading +)",
        "day.csv:5: keys: '1@-2': think time '-2' is not a number >= 0",
        "day.csv:5: patience_s: '1e400' is not a number",
        "day.csv:6: keys: '1': expected KEY@THINK (e.g. 1@2.5)",
        "day.csv:7: row: 4 fields, expected 9",
    ]


def test_write_refuses_a_trace_it_could_not_read_back(tmp_path: Path) -> None:
    bad = Trace((TraceCall("x", 5.0, "1", "2"), TraceCall("x", 1.0, "1", "2")))
    path = tmp_path / "bad.csv"
    with pytest.raises(TraceError) as caught:
        write_trace(path, bad)
    assert caught.value.errors == [
        f"{path}:4: call_id: 'x' repeats line 3",
        f"{path}:4: offset_s: 1 is before the previous call's 5",
    ]
    assert not path.exists()


def test_check_prints_a_summary_and_exits_1_on_an_invalid_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "t.csv"
    write_trace(good, _trace())
    assert loadtest_command(_parser().parse_args(["loadtest", "check", str(good)])) == 0
    out = capsys.readouterr().out
    assert "calls: 3\n" in out
    assert "busiest hour: 2 calls (hour 1 of the trace, from 0 s)" in out
    assert "mean talk: 60.1 s" in out
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n{GOOD}\n{GOOD}\n")
    assert loadtest_command(_parser().parse_args(["loadtest", "check", str(bad)])) == 1
    assert capsys.readouterr().err == f"{bad}:3: call_id: 'a1' repeats line 2\n"
