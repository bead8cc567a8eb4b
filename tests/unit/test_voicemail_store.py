"""VoicemailStore: the SQLite index of voicemail messages and the files' directory (DP-8)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from ivr.voicemail import VoicemailStore, list_command
from softswitch.cdr import CdrStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VoicemailStore]:
    vm = VoicemailStore(tmp_path / "hotline.db", tmp_path / "voicemail")
    yield vm
    vm.close()


def add(store: VoicemailStore, call_id: str, mailbox: str = "after_hours", at: float = 1.0) -> int:
    return store.add(
        call_id=call_id,
        mailbox=mailbox,
        caller="01088886666",
        called="12345",
        at=at,
        path=store.path_for(mailbox, call_id),
        seconds=12.5,
    )


def test_path_for_names_the_wav_under_its_mailbox_and_creates_the_folder(
    store: VoicemailStore, tmp_path: Path
) -> None:
    path = store.path_for("after_hours", "n1-1780000000-7")
    assert path == str(tmp_path / "voicemail" / "after_hours" / "n1-1780000000-7.wav")
    assert (tmp_path / "voicemail" / "after_hours").is_dir()


@pytest.mark.parametrize(("mailbox", "call_id"), [("../etc", "c1"), ("box", "a/b"), ("", "c")])
def test_path_for_refuses_names_that_could_leave_the_directory(
    store: VoicemailStore, mailbox: str, call_id: str
) -> None:
    with pytest.raises(ValueError):
        store.path_for(mailbox, call_id)


def test_added_messages_are_listed_newest_first_and_by_mailbox(store: VoicemailStore) -> None:
    first = add(store, "c1", at=10.0)
    second = add(store, "c2", mailbox="tax", at=20.0)
    third = add(store, "c3", at=30.0)
    assert [e.id for e in store.list()] == [third, second, first]
    assert [e.call_id for e in store.list("after_hours")] == ["c3", "c1"]
    assert [e.call_id for e in store.list(limit=1)] == ["c3"]
    entry = store.list("tax")[0]
    assert (entry.caller, entry.called, entry.seconds, entry.heard) == (
        "01088886666",
        "12345",
        12.5,
        False,
    )
    assert entry.path.endswith("/tax/c2.wav")
    assert store.list("nobody") == []


def test_adding_the_same_message_again_updates_it(store: VoicemailStore) -> None:
    first = add(store, "c1", at=10.0)
    assert store.mark_heard(first)
    again = add(store, "c1", at=11.0)
    assert again == first
    (entry,) = store.list()
    assert entry.at == 11.0 and not entry.heard


def test_heard_flag_and_messages_outlive_the_store(tmp_path: Path) -> None:
    store = VoicemailStore(tmp_path / "hotline.db", tmp_path / "voicemail")
    entry_id = add(store, "c1")
    assert store.mark_heard(entry_id)
    assert not store.mark_heard(entry_id + 100)
    store.close()
    reopened = VoicemailStore(tmp_path / "hotline.db", tmp_path / "voicemail")
    assert [(e.call_id, e.heard) for e in reopened.list()] == [("c1", True)]
    reopened.close()


def test_store_shares_the_node_database_with_the_cdr_tables(tmp_path: Path) -> None:
    db = tmp_path / "hotline.db"
    cdr = CdrStore(db)
    vm = VoicemailStore(db, tmp_path / "voicemail")
    add(vm, "c1")
    with closing(sqlite3.connect(db)) as peek:
        tables = {row[0] for row in peek.execute("SELECT name FROM sqlite_master")}
        assert peek.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"voicemail", "calls", "legs", "queue_log"} <= tables
    vm.close()
    cdr.close()


def test_list_command_prints_a_table_of_the_messages(store: VoicemailStore, tmp_path: Path) -> None:
    add(store, "n1-1-1", at=1_780_000_000.0)
    add(store, "n1-1-2", mailbox="tax", at=1_780_000_100.0)
    out = io.StringIO()
    assert list_command(str(tmp_path), None, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "id",
        "time",
        "mailbox",
        "caller",
        "called",
        "seconds",
        "heard",
        "file",
    ]
    assert len(lines) == 3 and "tax" in lines[1] and "after_hours" in lines[2]
    assert "12.5" in lines[1] and lines[1].split()[-1].endswith("n1-1-2.wav")
    out = io.StringIO()
    assert list_command(str(tmp_path), "tax", out=out) == 0
    assert len(out.getvalue().splitlines()) == 2


def test_list_command_without_a_database_says_so_and_creates_none(tmp_path: Path) -> None:
    out = io.StringIO()
    assert list_command(str(tmp_path / "empty"), None, out=out) == 0
    assert out.getvalue() == "no voicemail\n"
    assert not (tmp_path / "empty").exists()


def test_list_command_reports_an_unreadable_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hotline.db").write_bytes(b"this is not a database" * 100)
    assert list_command(str(tmp_path), None, out=io.StringIO()) == 1
    assert "hotline.db" in capsys.readouterr().err
