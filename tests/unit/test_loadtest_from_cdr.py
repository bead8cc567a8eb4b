"""A trace from the node's CDR and queue log, as `softswitch.cdr.CdrStore` writes them."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from ivr import nodes
from loadtest.cli import loadtest_command
from loadtest.from_cdr import CdrTraceError, trace_from_cdr
from loadtest.trace import KeyPress, TraceCall, read_trace
from softswitch.cdr import CdrStore
from softswitch.cli import _parser

T0 = 1_790_000_000.0
FLOW = msgspec.convert(
    {
        "start": "menu",
        "nodes": {
            "menu": {"type": "menu", "prompt": "m", "keys": {"1": "citizen", "2": "id"},
                     "repeat_key": "0"},
            "id": {"type": "collect", "prompt": "p", "variable": "customer_id", "next": "citizen",
                   "max_length": 6},
            "citizen": {"type": "queue", "queue": "general"},
        },
    },
    nodes.Flow,
)  # fmt: skip


def _db(tmp_path: Path) -> Path:
    path = tmp_path / "hotline.db"
    with CdrStore(path) as cdr:
        # answered after the menu's 0 (repeat) and 1; wrap-up of 12 s in the queue log
        cdr.call_started("n-1", start=T0 + 10, caller="01062345678", called="12345")
        cdr.call_update("n-1", queued=T0 + 20, queue="general")
        cdr.call_update("n-1", answer=T0 + 25, agent="1001")
        cdr.call_update("n-1", end=T0 + 205.5, variables='{"ivr_path": "menu>menu>citizen"}')
        cdr.queue_event(
            T0 + 205.5,
            "n-1",
            None,
            "1001",
            "AGENT_STATE",
            {"from": "talking", "to": "wrap_up", "event": "hangup"},
        )
        cdr.queue_event(
            T0 + 217.5,
            None,
            None,
            "1001",
            "AGENT_STATE",
            {"from": "wrap_up", "to": "idle", "event": "wrap_up_end"},
        )
        # abandoned after 42 s in the queue, having typed 1234#
        cdr.call_started("n-2", start=T0 + 12.25, caller="+8613800000000", called="12345")
        cdr.call_update("n-2", queued=T0 + 30, queue="general")
        cdr.queue_event(T0 + 72, "n-2", "general", None, "ABANDON", {"waited": 42.0, "position": 1})
        cdr.call_update(
            "n-2",
            end=T0 + 72,
            disposition="abandoned",
            variables='{"ivr_path": "menu>id>citizen", "customer_id": "1234"}',
        )
        # anonymous: left out
        cdr.call_started("n-3", start=T0 + 13, caller="anonymous", called="12345")
        # the next day: outside a one-day window
        cdr.call_started("n-4", start=T0 + 86_400, caller="021", called="12345")
    return path


def test_calls_become_rows_with_patience_talk_wrap_up_and_keys(tmp_path: Path) -> None:
    result = trace_from_cdr(
        _db(tmp_path), T0, T0 + 3600, flows={"main": FLOW}, think_s=1.5, default_wrap=9.0,
        region_of=lambda n: "beijing" if n.startswith("010") else None,
    )  # fmt: skip
    assert result.skipped == 1
    assert result.trace.calls == (
        TraceCall("n-1", 0.0, "01062345678", "12345", "beijing",
                  (KeyPress("0", 1.5), KeyPress("1", 1.5)), None, 180.5, 12.0),
        TraceCall("n-2", 2.25, "+8613800000000", "12345", "",
                  tuple(KeyPress(k, 1.5) for k in "21234#"), 42.0, 0.0, 9.0),
    )  # fmt: skip


def test_without_flows_no_keys_and_answered_patience_on_request(tmp_path: Path) -> None:
    db = _db(tmp_path)
    calls = trace_from_cdr(db, None, T0 + 3600, answered_margin=30.0).trace.calls
    assert [c.keys for c in calls] == [(), ()]
    assert [c.patience_s for c in calls] == [35.0, 42.0]  # waited 5 s + 30; abandoned after 42
    assert [c.wrap_s for c in calls] == [12.0, 0.0]
    everything = trace_from_cdr(db).trace.calls
    assert [c.call_id for c in everything] == ["n-1", "n-2", "n-4"]
    assert everything[-1].offset_s == 86_390.0


def test_from_cdr_command_writes_a_valid_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _db(tmp_path)
    out = tmp_path / "day.csv"
    argv = ["loadtest", "from-cdr", "--data", str(tmp_path), "--out", str(out),
            "--from", str(T0), "--to", str(T0 + 3600), "--wrap", "5"]  # fmt: skip
    assert loadtest_command(_parser().parse_args(argv)) == 0
    assert capsys.readouterr().out == f"{out}: 2 calls, 1 left out (caller or called not digits)\n"
    trace = read_trace(out)
    assert [(c.call_id, c.wrap_s) for c in trace.calls] == [("n-1", 12.0), ("n-2", 5.0)]
    assert trace.metadata["generator"] == "hotline loadtest from-cdr"


def test_missing_database_and_bad_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CdrTraceError):
        trace_from_cdr(tmp_path / "none.db")
    base = ["loadtest", "from-cdr", "--data", str(tmp_path), "--out", str(tmp_path / "x.csv")]
    assert loadtest_command(_parser().parse_args(base)) == 1
    assert capsys.readouterr().err.startswith("hotline: ")
    assert loadtest_command(_parser().parse_args([*base, "--from", "yesterday"])) == 2
    assert capsys.readouterr().err.count("\n") == 1
    _db(tmp_path)
    assert loadtest_command(_parser().parse_args([*base, "--day", "2026-01-01", "--to", "1"])) == 2
