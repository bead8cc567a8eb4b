"""The blacklist (DP-2): windows, exact vs prefix, the change log, run-time changes seen by the
node, and the `hotline blacklist` command."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch import cli
from softswitch.blacklist import BlacklistError, BlacklistStore
from softswitch.cdr import CdrStore

T0 = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlacklistStore]:
    with BlacklistStore(tmp_path / "hotline.db") as opened:
        yield opened


def test_entry_blocks_only_inside_its_window(store: BlacklistStore) -> None:
    entry = store.add("13800000001", start=T0, end=T0 + 3600, reason="abuse", by="ops", now=T0)
    assert store.blocked("13800000001", T0 - 1) is None  # before the start
    assert store.blocked("13800000001", T0) == entry  # the start is included
    assert store.blocked("13800000001", T0 + 3599) == entry
    assert store.blocked("13800000001", T0 + 3600) is None  # the end is excluded
    assert store.blocked("13800000002", T0 + 10) is None


def test_open_ended_entries_block_for_ever_or_since_ever(store: BlacklistStore) -> None:
    store.add("111", reason="r", by="ops", now=T0)
    store.add("222", end=T0, reason="r", by="ops", now=T0)
    store.add("333", start=T0, reason="r", by="ops", now=T0)
    assert store.blocked("111", 0.0) is not None and store.blocked("111", T0 * 2) is not None
    assert store.blocked("222", T0 - 1) is not None and store.blocked("222", T0) is None
    assert store.blocked("333", T0 - 1) is None and store.blocked("333", T0 * 2) is not None


def test_prefix_entry_blocks_numbers_starting_so_and_exact_only_itself(
    store: BlacklistStore,
) -> None:
    prefix = store.add("170", prefix=True, reason="virtual operator range", by="ops", now=T0)
    exact = store.add("1705550000", reason="known", by="ops", now=T0)
    assert store.blocked("1701234567", T0) == prefix
    assert store.blocked("170", T0) == prefix
    assert store.blocked("17", T0) is None
    assert store.blocked("1705550000", T0) == exact  # an exact entry is preferred
    store.add("1380", reason="r", by="ops", now=T0)  # exact: not a prefix
    assert store.blocked("13800", T0) is None


def test_longer_prefix_wins_and_inactive_entries_are_skipped(store: BlacklistStore) -> None:
    short = store.add("139", prefix=True, reason="short", by="ops", now=T0)
    long = store.add("13912", prefix=True, end=T0 + 10, reason="long", by="ops", now=T0)
    assert store.blocked("139123", T0) == long
    assert store.blocked("139123", T0 + 10) == short  # the longer one has ended


def test_removal_is_logged_with_who_and_when(store: BlacklistStore) -> None:
    entry = store.add("13800000001", reason="abuse", by="alice", now=T0)
    removed = store.remove(entry.id, by="bob", now=T0 + 60)
    assert removed == entry
    assert store.blocked("13800000001", T0 + 61) is None
    assert store.entries() == ()
    add, remove = store.log()
    assert (add.change, add.who, add.at, add.entry_id) == ("add", "alice", T0, entry.id)
    assert (remove.change, remove.who, remove.at) == ("remove", "bob", T0 + 60)
    assert (remove.entry_id, remove.number, remove.reason) == (entry.id, "13800000001", "abuse")


def test_the_log_is_append_only(store: BlacklistStore, tmp_path: Path) -> None:
    store.add("1", reason="r", by="ops", now=T0)
    db = sqlite3.connect(tmp_path / "hotline.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM blacklist_log")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE blacklist_log SET who = 'x'")
    db.close()


def test_ids_are_not_reused_after_removal(store: BlacklistStore) -> None:
    first = store.add("1", reason="r", by="ops", now=T0)
    store.remove(first.id, by="ops", now=T0)
    assert store.add("1", reason="r", by="ops", now=T0).id > first.id


def test_change_by_another_connection_is_seen_without_reopening(tmp_path: Path) -> None:
    node = BlacklistStore(tmp_path / "hotline.db")
    admin = BlacklistStore(tmp_path / "hotline.db")
    assert node.blocked("13800000001", T0) is None  # cached: empty list
    entry = admin.add("13800000001", reason="abuse", by="admin", now=T0)
    assert node.blocked("13800000001", T0) == entry
    admin.remove(entry.id, by="admin", now=T0)
    assert node.blocked("13800000001", T0) is None
    node.close()
    admin.close()


def test_lookups_do_not_reread_an_unchanged_list(store: BlacklistStore) -> None:
    store.add("1", reason="r", by="ops", now=T0)
    store.blocked("1", T0)
    cached = store.entries()
    store.blocked("2", T0)
    assert store.entries() is cached


def test_invalid_changes_are_refused(store: BlacklistStore) -> None:
    with pytest.raises(BlacklistError, match="no blacklist entry with id 99"):
        store.remove(99, by="ops")
    with pytest.raises(BlacklistError, match="invalid number"):
        store.add("13a", reason="r", by="ops")
    with pytest.raises(BlacklistError, match="reason"):
        store.add("1", reason=" ", by="ops")
    with pytest.raises(BlacklistError, match="end must be after"):
        store.add("1", start=T0, end=T0, reason="r", by="ops")
    with pytest.raises(BlacklistError, match="no blacklist entry for 5"):
        store.remove_number("5", by="ops")
    assert store.log() == []


def test_cdr_commits_beside_it_do_not_make_the_node_reread_the_list(tmp_path: Path) -> None:
    # The blacklist has a file of its own: the node's CDR commits (one per SIP message) must
    # not look like blacklist changes, or every call would re-read the whole list.
    cdr = CdrStore(tmp_path / "hotline.db")
    with BlacklistStore(tmp_path / "blacklist.db") as store:
        store.add("1", reason="r", by="ops", now=T0)
        assert store.blocked("1", T0 + 1) is not None
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        for n in range(3):
            cdr.call_started(f"c{n}", start=T0)
            cdr.flush()
            assert store.blocked("1", T0 + 1) is not None
        assert not [s for s in statements if "FROM blacklist" in s], statements
    cdr.close()


# --------------------------------------------------------------------------- the command


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_command_adds_lists_and_removes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    code, out, _ = run(
        capsys,
        "blacklist",
        "add",
        "13800000001",
        "--reason",
        "abuse",
        "--by",
        "alice",
        "--data",
        data,
    )
    assert code == 0 and out.startswith("added 1\t13800000001\t-\t-\tabuse\talice\t")
    code, out, _ = run(
        capsys,
        "blacklist", "add", "170", "--prefix", "--start", "2026-10-01T08:00+08:00",
        "--end", "2099-01-01", "--reason", "range", "--data", data,
    )  # fmt: skip
    assert code == 0 and "\t170*\t2026-10-01T" in out
    code, out, _ = run(capsys, "blacklist", "list", "--data", data)
    lines = out.splitlines()
    assert lines[0].startswith("id\tnumber") and len(lines) == 3
    code, out, _ = run(capsys, "blacklist", "remove", "170", "--by", "bob", "--data", data)
    assert code == 0 and out.startswith("removed 2\t170*")
    code, out, _ = run(capsys, "blacklist", "remove", "1", "--by", "bob", "--data", data)
    assert code == 0 and out.startswith("removed 1\t13800000001")  # by id
    code, out, _ = run(capsys, "blacklist", "log", "--data", data)
    assert [line.split("\t")[1:4] for line in out.splitlines()] == [
        ["alice", "add", "1"],
        [cli._unix_user(), "add", "2"],  # --by defaults to the Unix user
        ["bob", "remove", "2"],
        ["bob", "remove", "1"],
    ]
    with BlacklistStore(Path(data) / "blacklist.db") as store:
        assert store.entries() == ()


def test_list_hides_ended_entries_unless_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with BlacklistStore(tmp_path / "blacklist.db") as store:
        store.add("1", end=1000.0, reason="old", by="ops", now=0.0)
        store.add("2", reason="current", by="ops", now=0.0)
    _, out, _ = run(capsys, "blacklist", "list", "--data", str(tmp_path))
    assert [line.split("\t")[1] for line in out.splitlines()[1:]] == ["2"]
    _, out, _ = run(capsys, "blacklist", "list", "--all", "--data", str(tmp_path))
    assert [line.split("\t")[1] for line in out.splitlines()[1:]] == ["1", "2"]


def test_naive_iso_times_are_local_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "blacklist", "add", "1", "--start", "2030-01-01T08:00", "--reason", "r",
        "--data", str(tmp_path))  # fmt: skip
    with BlacklistStore(tmp_path / "blacklist.db") as store:
        (entry,) = store.entries()
    assert entry.start == dt.datetime(2030, 1, 1, 8, 0).timestamp()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "1", "--start", "tomorrow", "--reason", "r"], "--start 'tomorrow': not an ISO"),
        (["add", "1", "--end", "2026-13-01", "--reason", "r"], "--end '2026-13-01': not an ISO"),
        (["add", "1", "--start", "2026-02-01", "--end", "2026-01-01", "--reason", "r"], "end must"),
        (["add", "1x", "--reason", "r"], "invalid number '1x'"),
        (["remove", "42"], "no blacklist entry with id or number 42"),
        (["remove", "abc"], "no blacklist entry for abc"),
    ],
)
def test_command_errors_print_a_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "blacklist", *argv, "--data", str(tmp_path))
    assert code == 2 and out == ""
    assert err.startswith("hotline blacklist: ") and message in err


def test_add_requires_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["blacklist", "add", "1", "--data", str(tmp_path)])
    assert info.value.code == 2
    assert "--reason" in capsys.readouterr().err
