"""CDR and queue-log store (RPT-1): rows, derived durations, CSV, and kill -9 durability."""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from softswitch.cdr import CALL_COLUMNS, SCHEMA_VERSION, CdrStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> CdrStore:
    s = CdrStore(tmp_path / "cdr.sqlite")
    yield s
    s.close()


def test_answered_call_records_times_wait_and_talk(store: CdrStore) -> None:
    store.call_started(
        "c1",
        start=1000.0,
        sip_call_id="abc@carrier",
        trunk="carrier",
        caller="13800138000",
        called="9000",
        pai="<sip:+8613800138000@x>",
    )
    store.call_update("c1", queue="general", queued=1000.5)
    store.call_update("c1", agent="1001", ringing=1001.0)
    store.call_update("c1", answer=1004.5)
    store.call_update("c1", end=1064.5, disposition="answered", hangup_side="caller", sip_cause=200)
    row = store.get_call("c1")
    assert row is not None
    assert row["trunk"] == "carrier" and row["agent"] == "1001" and row["queue"] == "general"
    assert row["wait"] == pytest.approx(4.0)
    assert row["talk"] == pytest.approx(60.0)
    assert (row["disposition"], row["hangup_side"], row["sip_cause"]) == ("answered", "caller", 200)
    assert row["pai"] == "<sip:+8613800138000@x>"


def test_abandoned_call_waits_until_end_and_talks_zero(store: CdrStore) -> None:
    store.call_started("c2", start=10.0)
    store.call_update("c2", queue="general", queued=11.0)
    store.call_update("c2", end=31.0, disposition="abandoned", hangup_side="caller")
    row = store.get_call("c2")
    assert row is not None
    assert (row["wait"], row["talk"]) == (20.0, 0)


def test_answer_and_end_in_one_update_use_the_new_values(store: CdrStore) -> None:
    store.call_started("c3", start=0.0)
    store.call_update("c3", queued=1.0, answer=3.0, end=10.0)
    row = store.get_call("c3")
    assert row is not None
    assert (row["wait"], row["talk"]) == (2.0, 7.0)


def test_explicit_wait_and_talk_are_kept(store: CdrStore) -> None:
    store.call_started("c4", start=0.0)
    store.call_update("c4", queued=1.0, answer=3.0, wait=5.5)
    store.call_update("c4", end=10.0, talk=1.5)
    row = store.get_call("c4")
    assert row is not None
    assert (row["wait"], row["talk"]) == (5.5, 1.5)


def test_unanswered_call_not_queued_has_no_wait(store: CdrStore) -> None:
    store.call_started("c5", start=0.0, called="5555")
    store.call_update("c5", end=0.1, disposition="rejected", sip_cause=404)
    row = store.get_call("c5")
    assert row is not None
    assert row["wait"] is None and row["talk"] == 0


def test_legs_are_recorded_per_call(store: CdrStore) -> None:
    store.call_started("c1", start=1.0)
    store.leg_started(
        "c1-a", call_id="c1", direction="in", start=1.0, sip_call_id="x", peer="127.0.0.1:5070"
    )
    store.leg_started("c1-b", call_id="c1", direction="out", start=2.0, peer="1001")
    store.leg_update("c1-b", ringing=2.1)
    store.leg_update("c1-b", end=17.1, sip_cause=408, disposition="no_answer")
    legs = store.get_legs("c1")
    assert [leg["leg_id"] for leg in legs] == ["c1-a", "c1-b"]
    assert legs[1]["sip_cause"] == 408 and legs[1]["disposition"] == "no_answer"
    assert legs[1]["end"] == 17.1


def test_leg_direction_is_in_or_out(store: CdrStore) -> None:
    with pytest.raises(ValueError):
        store.leg_started("l", call_id="c", direction="sideways", start=0.0)  # type: ignore[arg-type]


def test_queue_log_keeps_events_in_order_with_json_data(store: CdrStore) -> None:
    first = store.queue_event(1.0, "c1", "general", None, "enter", {"position": 1})
    store.queue_event(2.0, "c1", "general", "1001", "ring", None)
    store.queue_event(17.0, "c1", "general", "1001", "no_answer", {"after": 15.0})
    events = store.get_queue_log("c1")
    assert [e["event"] for e in events] == ["enter", "ring", "no_answer"]
    assert events[0]["id"] == first
    assert events[0]["data"] == {"position": 1}
    assert events[1]["data"] is None
    assert events[2]["agent"] == "1001"
    assert store.get_queue_log() == events


@pytest.mark.parametrize("field", ["nonsense", "rowid", 'end" = 0; DROP TABLE calls; --'])
def test_updates_accept_only_whitelisted_columns(store: CdrStore, field: str) -> None:
    store.call_started("c1", start=1.0)
    with pytest.raises(ValueError):
        store.call_update("c1", **{field: 1})
    assert store.get_call("c1") is not None


def test_update_of_unknown_call_or_leg_raises(store: CdrStore) -> None:
    with pytest.raises(KeyError):
        store.call_update("missing", end=1.0)
    with pytest.raises(KeyError):
        store.leg_update("missing", end=1.0)


def test_duplicate_call_id_is_refused(store: CdrStore) -> None:
    store.call_started("c1", start=1.0)
    with pytest.raises(sqlite3.IntegrityError):
        store.call_started("c1", start=2.0)


def test_export_csv_writes_header_and_rows(store: CdrStore) -> None:
    store.call_started("c1", start=1.0, caller="a,b", called="9000")
    store.call_started("c2", start=2.0, caller='say "hi"', called="12345")
    out = io.StringIO(newline="")
    assert store.export_csv("calls", out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == list(CALL_COLUMNS)
    assert [r[0] for r in rows[1:]] == ["c1", "c2"]
    assert rows[1][CALL_COLUMNS.index("caller")] == "a,b"
    assert rows[2][CALL_COLUMNS.index("caller")] == 'say "hi"'
    with pytest.raises(ValueError):
        store.export_csv("sqlite_master", io.StringIO())


def test_database_is_in_wal_mode_with_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    CdrStore(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        db.close()


def test_reopening_keeps_rows_and_one_version_row(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    with CdrStore(path) as first:
        first.call_started("c1", start=1.0)
    with CdrStore(path) as second:
        assert second.get_call("c1") is not None
        count = second._db.execute("SELECT count(*) FROM schema_version").fetchone()[0]
        assert count == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    CdrStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        CdrStore(path)


def test_everything_written_before_kill_9_survives(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from softswitch.cdr import CdrStore
        store = CdrStore({str(path)!r})
        for n in range(50):
            call = f"c{{n}}"
            store.call_started(call, start=float(n), caller="13800138000", called="9000")
            store.leg_started(call + "-a", call_id=call, direction="in", start=float(n))
            store.queue_event(float(n), call, "general", None, "enter", {{"n": n}})
            store.call_update(call, queued=n + 0.5)
        store.call_update("c49", answer=52.0, agent="1001")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert result.returncode == -signal.SIGKILL
    assert (tmp_path / "cdr.sqlite-wal").exists()  # nothing was checkpointed or closed
    with CdrStore(path) as store:
        assert store._db.execute("SELECT count(*) FROM calls").fetchone()[0] == 50
        assert store._db.execute("SELECT count(*) FROM legs").fetchone()[0] == 50
        assert len(store.get_queue_log()) == 50
        last = store.get_call("c49")
        assert last is not None
        assert (last["agent"], last["answer"], last["wait"]) == ("1001", 52.0, 2.5)


def test_synchronous_mode_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CdrStore(tmp_path / "x.sqlite", synchronous="OFF")  # type: ignore[arg-type]
    assert not os.path.exists(tmp_path / "x.sqlite")


def test_commit_on_flush_keeps_rows_pending_until_flush(tmp_path: Path) -> None:
    store = CdrStore(tmp_path / "cdr.db", commit_on_flush=True)
    store.call_started("c1", start=1.0, caller="1", called="2")
    other = sqlite3.connect(tmp_path / "cdr.db")
    assert other.execute("SELECT count(*) FROM calls").fetchone()[0] == 0
    assert store.get_call("c1") is not None  # the writer sees its own rows
    store.flush()
    assert other.execute("SELECT count(*) FROM calls").fetchone()[0] == 1
    store.call_update("c1", queue="general")
    store.close()  # close commits too
    assert other.execute("SELECT queue FROM calls").fetchone()[0] == "general"
