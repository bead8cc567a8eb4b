"""The recording index (SPEC REC-2, REC-3): `recorder.index`.

Rows are written the way the recorder's worker writes them (start, update, segments, finish)
into a real SQLite file under tmp_path; search is checked filter by filter against a small
set of recordings whose answers are known, and two connections on one file from two threads
check that the writer (the recorder) and a second writer (retention, backup) get along.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.index import Recording, RecordingIndex, SearchFilter, Segment, Viewer

DAY = 86400.0
T0 = 1_790_000_000.0  # a fixed wall-clock start (November 2026)
ADMIN = Viewer("admin", "root")
SUPERVISOR = Viewer("supervisor", "sue")


@pytest.fixture
def index(tmp_path: Path) -> Iterator[RecordingIndex]:
    db = RecordingIndex(tmp_path / "recordings.db", tmp_path / "rec")
    yield db
    db.close()


def add(
    index: RecordingIndex,
    recording_id: str,
    *,
    started: float = T0,
    kind: str = "call",
    caller: str | None = "0301111",
    called: str | None = "110",
    queue: str | None = None,
    service_type: str | None = None,
    customer_id: str | None = None,
    agents: tuple[tuple[str, float, float | None], ...] = (),
    finish: bool = True,
    duration: float = 60.0,
    incomplete: bool = False,
    expires: float | None = None,
    records_expire: float | None = None,
    sha256: str = "ab" * 32,
    size: int = 4000,
    policy: str | None = "default",
    path: str | None = None,
) -> None:
    """A recording as the worker writes it: start, segments, finish."""
    index.start(
        recording_id,
        kind=kind,
        call_id=recording_id.split("-vm-")[0],
        path=path or f"2026/11/16/{recording_id}.opus",
        started=started,
        legs=[f"{recording_id}-a"],
        caller=caller,
        called=called,
        queue=queue,
        service_type=service_type,
        customer_id=customer_id,
    )
    for n, (agent, start, end) in enumerate(agents):
        leg = f"{recording_id}-b{n}"
        index.segment_start(recording_id, agent, leg, start)
        if end is not None:
            index.segment_end(recording_id, leg, end)
    if finish:
        index.finish(
            recording_id,
            ended=started + duration,
            duration=duration,
            size=size,
            sha256=sha256,
            incomplete=incomplete,
            policy=policy,
            expires=expires,
            records_expire=records_expire,
        )


def ids(recordings: list[Recording]) -> list[str]:
    return [r.id for r in recordings]


# --- writing and reading one row --------------------------------------------------------------


def test_a_recording_started_updated_segmented_and_finished_reads_back_whole(
    index: RecordingIndex,
) -> None:
    index.start(
        "c1",
        kind="call",
        call_id="c1",
        path="2026/11/16/c1.opus",
        started=T0,
        legs=["c1-a"],
        caller="0301111",
        called="110",
    )
    row = index.get("c1")
    assert row is not None
    assert (row.incomplete, row.ended, row.duration, row.queue) == (True, None, None, None)
    assert [r.id for r in index.unfinished()] == ["c1"]

    index.update("c1", queue="sales", service_type="complaint", legs=["c1-a", "c1-b"])
    index.update("c1", customer_id="K-42")
    index.segment_start("c1", "1001", "c1-b", 12.5)
    index.segment_end("c1", "c1-b", 40.0)
    index.segment_start("c1", "1002", "c1-c", 41.0)  # still on when the call ends
    index.finish(
        "c1",
        ended=T0 + 70,
        duration=69.5,
        size=12345,
        sha256="cd" * 32,
        incomplete=False,
        lost_seconds=0.5,
        policy="complaints",
        expires=T0 + 90 * DAY,
        records_expire=T0 + 365 * DAY,
    )
    row = index.get("c1")
    assert row is not None
    assert row.legs == ("c1-a", "c1-b")
    assert (row.caller, row.called, row.queue) == ("0301111", "110", "sales")
    assert (row.service_type, row.customer_id) == ("complaint", "K-42")
    assert (row.started, row.ended, row.duration) == (T0, T0 + 70, 69.5)
    assert (row.bytes, row.sha256, row.lost_seconds) == (12345, "cd" * 32, 0.5)
    assert (row.incomplete, row.error, row.policy) == (False, None, "complaints")
    assert row.expires == T0 + 90 * DAY
    # The segment still open at the end closes at the recording's duration.
    assert row.segments == (
        Segment("1001", "c1-b", 12.5, 40.0),
        Segment("1002", "c1-c", 41.0, 69.5),
    )
    assert row.agents == ("1001", "1002")
    assert index.unfinished() == []
    assert index.get("nope") is None


def test_a_replayed_start_leaves_the_row_and_segment_as_they_are(index: RecordingIndex) -> None:
    add(index, "c1", queue="sales", agents=(("1001", 5.0, 30.0),))
    index.start("c1", kind="call", call_id="c1", path="other.opus", started=T0 + 99)
    index.segment_start("c1", "1009", "c1-b0", 0.0)
    row = index.get("c1")
    assert row is not None
    assert (row.path, row.started, row.queue) == ("2026/11/16/c1.opus", T0, "sales")
    assert row.segments == (Segment("1001", "c1-b0", 5.0, 30.0),)


def test_update_refuses_fields_the_call_does_not_set(index: RecordingIndex) -> None:
    add(index, "c1")
    with pytest.raises(ValueError, match="sha256"):
        index.update("c1", sha256="00")
    with pytest.raises(ValueError, match="deleted"):
        index.update("c1", queue="q", deleted=1.0)
    index.update("c1")  # nothing to set: fine
    row = index.get("c1")
    assert row is not None and row.sha256 == "ab" * 32 and row.queue is None


def test_finish_keeps_an_earlier_error_unless_it_brings_its_own(index: RecordingIndex) -> None:
    add(index, "c1", finish=False)
    index.update("c1", error="disk full")
    index.finish("c1", ended=T0 + 5, duration=5, size=1, sha256="x", incomplete=True)
    row = index.get("c1")
    assert row is not None and (row.error, row.incomplete) == ("disk full", True)
    index.finish("c1", ended=T0 + 5, duration=5, size=1, sha256="x", incomplete=True, error="b")
    row = index.get("c1")
    assert row is not None and row.error == "b"


# --- search ------------------------------------------------------------------------------------


@pytest.fixture
def calls(index: RecordingIndex) -> RecordingIndex:
    """Six recordings, an hour apart (c1 oldest), with different parties and agents."""
    add(index, "c1", started=T0, caller="0301", queue="sales", agents=(("1001", 5, None),))
    add(
        index,
        "c2",
        started=T0 + 3600,
        caller="0302",
        queue="support",
        service_type="complaint",
        customer_id="K-1",
        agents=(("1002", 3, 20), ("1001", 21, None)),
    )
    add(index, "c3", started=T0 + 7200, caller="0301", called="115", queue="support")
    add(index, "c4", started=T0 + 10800, caller="0304", incomplete=True, agents=(("1003", 0, 9),))
    add(index, "c5", started=T0 + 14400, caller="0305", finish=False)  # in progress
    add(index, "c5-vm-200", started=T0 + 18000, kind="voicemail", caller="0306", called="200")
    index.mark_deleted("c3", at=T0 + DAY, by="retention", policy="default")
    return index


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (SearchFilter(), ["c5-vm-200", "c5", "c4", "c2", "c1"]),  # newest first; c3 deleted
        (SearchFilter(start_from=T0 + 3600), ["c5-vm-200", "c5", "c4", "c2"]),  # inclusive
        (SearchFilter(start_to=T0 + 10800), ["c2", "c1"]),  # exclusive
        (SearchFilter(start_from=T0 + 1, start_to=T0 + 10801), ["c4", "c2"]),
        (SearchFilter(agent="1001"), ["c2", "c1"]),
        (SearchFilter(agent="1003"), ["c4"]),
        (SearchFilter(agent="9999"), []),
        (SearchFilter(caller="0301", deleted=None), ["c3", "c1"]),
        (SearchFilter(called="115", deleted=None), ["c3"]),
        (SearchFilter(queue="support"), ["c2"]),
        (SearchFilter(queue="support", deleted=None), ["c3", "c2"]),
        (SearchFilter(service_type="complaint"), ["c2"]),
        (SearchFilter(customer_id="K-1"), ["c2"]),
        (SearchFilter(kind="voicemail"), ["c5-vm-200"]),
        (SearchFilter(incomplete=True), ["c5", "c4"]),  # the unfinished one counts too
        (SearchFilter(incomplete=False), ["c5-vm-200", "c2", "c1"]),
        (SearchFilter(deleted=True), ["c3"]),
        (SearchFilter(deleted=None), ["c5-vm-200", "c5", "c4", "c3", "c2", "c1"]),
        (SearchFilter(queue="support", agent="1002"), ["c2"]),
        (SearchFilter(queue="sales", agent="1002"), []),
        (SearchFilter(limit=2), ["c5-vm-200", "c5"]),
    ],
)
def test_search_by_each_filter(
    calls: RecordingIndex, query: SearchFilter, expected: list[str]
) -> None:
    assert ids(calls.search(query, SUPERVISOR)) == expected


def test_search_limit_out_of_range_is_a_value_error(calls: RecordingIndex) -> None:
    for limit in (0, -1, 100_001):
        with pytest.raises(ValueError, match="limit"):
            calls.search(SearchFilter(limit=limit), ADMIN)


def test_an_agent_sees_only_recordings_with_a_segment_of_its_own(calls: RecordingIndex) -> None:
    agent = Viewer.parse("agent:1001")
    assert ids(calls.search(SearchFilter(deleted=None), agent)) == ["c2", "c1"]
    assert ids(calls.search(SearchFilter(agent="1002"), agent)) == ["c2"]  # both took part
    assert ids(calls.search(SearchFilter(agent="1003"), agent)) == []  # not another's calls
    assert ids(calls.search(SearchFilter(deleted=None), Viewer.parse("agent:1003"))) == ["c4"]
    assert ids(calls.search(SearchFilter(), Viewer.parse("agent:7"))) == []
    assert len(calls.search(SearchFilter(deleted=None), ADMIN)) == 6


def test_get_with_a_viewer_hides_what_the_viewer_may_not_see(calls: RecordingIndex) -> None:
    agent = Viewer.parse("agent:1002")
    row = calls.get("c2", agent)
    assert row is not None and row.id == "c2"
    assert calls.get("c1", agent) is None
    assert calls.get("c3", agent) is None  # nobody's segment: only supervisors and admins
    assert calls.get("c3", SUPERVISOR) is not None
    assert calls.get("c1", ADMIN) is not None
    c1 = calls.get("c1")
    assert c1 is not None
    assert RecordingIndex.may_see(Viewer.parse("agent:1001"), c1)
    assert not RecordingIndex.may_see(agent, c1)


@pytest.mark.parametrize(
    ("text", "viewer"),
    [
        ("agent:1001", Viewer("agent", "1001", "1001")),
        ("supervisor:sue", Viewer("supervisor", "sue", None)),
        ("admin:root:x", Viewer("admin", "root:x", None)),
    ],
)
def test_viewer_parse_reads_role_and_name(text: str, viewer: Viewer) -> None:
    assert Viewer.parse(text) == viewer


@pytest.mark.parametrize("text", ["", "agent", "agent:", ":1001", "boss:x", "Admin:x", "admin"])
def test_viewer_parse_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="agent:ID"):
        Viewer.parse(text)


# --- quality inspection --------------------------------------------------------------------------


def test_qa_result_and_flags_are_stored_and_a_flag_is_searchable_whole(
    calls: RecordingIndex,
) -> None:
    qa = {"duration": 60.0, "flags": ["long_silence", "forbidden_word:idiot"]}
    calls.set_qa("c1", json.dumps(qa), ["long_silence", "forbidden_word:idiot"])
    calls.set_qa("c2", json.dumps({"flags": ["overtalk"]}), ["overtalk"])
    calls.set_qa("c4", json.dumps({"flags": []}), [])
    row = calls.get("c1")
    assert row is not None
    assert row.qa == qa
    assert row.qa_flags == ("long_silence", "forbidden_word:idiot")
    c4 = calls.get("c4")
    assert c4 is not None and c4.qa_flags == () and c4.qa == {"flags": []}

    def flagged(flag: str) -> list[str]:
        return ids(calls.search(SearchFilter(flag=flag), SUPERVISOR))

    assert flagged("long_silence") == ["c1"]
    assert flagged("overtalk") == ["c2"]
    assert flagged("forbidden_word:idiot") == ["c1"]
    assert flagged("long") == []  # whole flags only
    assert flagged("silence") == []
    assert flagged("agent_silent") == []
    assert ids(calls.search(SearchFilter(flag="overtalk"), Viewer.parse("agent:1003"))) == []


# --- retention --------------------------------------------------------------------------------


def test_expired_lists_finished_kept_unheld_recordings_past_expiry(index: RecordingIndex) -> None:
    now = T0 + 100 * DAY
    add(index, "old", expires=T0 + 30 * DAY)
    add(index, "older", expires=T0 + 10 * DAY)
    add(index, "exact", expires=now)
    add(index, "future", expires=now + 1)
    add(index, "forever", expires=None)
    add(index, "held", expires=T0)
    add(index, "gone", expires=T0)
    add(index, "running", finish=False)
    index.set_hold("held", True, "court order 17/26")
    index.mark_deleted("gone", at=T0 + DAY, by="admin:root", policy="manual")
    assert ids(index.expired(now)) == ["older", "old", "exact"]  # soonest expiry first
    assert ids(index.expired(now, limit=1)) == ["older"]
    assert index.set_hold("held", False, None)
    assert ids(index.expired(now)) == ["held", "older", "old", "exact"]
    assert not index.set_hold("nope", True, "x")
    row = index.get("held")
    assert row is not None and (row.legal_hold, row.hold_reason) == (False, None)


def test_hold_keeps_its_reason_and_search_still_finds_held_rows(index: RecordingIndex) -> None:
    add(index, "c1", expires=T0)
    assert index.set_hold("c1", True, "complaint 12")
    row = index.get("c1")
    assert row is not None and (row.legal_hold, row.hold_reason) == (True, "complaint 12")
    assert ids(index.search(SearchFilter(), ADMIN)) == ["c1"]


def test_records_expired_then_forget_parties_keeps_only_that_a_recording_existed(
    index: RecordingIndex,
) -> None:
    now = T0 + 400 * DAY
    add(index, "c1", customer_id="K-1", queue="sales", records_expire=T0 + 365 * DAY)
    add(index, "c2", records_expire=now + 1)
    add(index, "c3", records_expire=T0)
    add(index, "c4", records_expire=None)
    index.set_qa("c1", json.dumps({"transcript": [{"text": "my address is"}]}), ["overtalk"])
    index.set_hold("c3", True, "inquiry")
    assert index.records_expired(now) == [("c1", "c1")]
    index.forget_parties("c1")
    row = index.get("c1")
    assert row is not None
    assert (row.caller, row.called, row.customer_id, row.qa) == (None, None, None, None)
    assert (row.id, row.started, row.duration, row.queue) == ("c1", T0, 60.0, "sales")
    assert index.records_expired(now) == []  # forgotten once
    index.set_hold("c3", False, None)
    assert index.records_expired(now) == [("c3", "c3")]


def test_mark_deleted_keeps_the_row_and_drops_the_transcript(index: RecordingIndex) -> None:
    add(index, "c1", expires=T0)
    add(index, "c2", expires=T0)
    qa = {"duration": 60.0, "flags": ["overtalk"], "transcript": [{"channel": 1, "text": "hi"}]}
    index.set_qa("c1", json.dumps(qa), ["overtalk"])
    index.mark_deleted("c1", at=T0 + DAY, by="retention", policy="default")
    index.mark_deleted("c2", at=T0 + DAY, by="admin:root", policy="manual")  # no qa at all
    row = index.get("c1")
    assert row is not None
    assert row.qa == {"duration": 60.0, "flags": ["overtalk"]}
    assert row.qa_flags == ("overtalk",)
    assert (row.deleted, row.deleted_by, row.deleted_policy) == (T0 + DAY, "retention", "default")
    c2 = index.get("c2")
    assert c2 is not None and c2.qa is None and c2.deleted_by == "admin:root"
    assert index.expired(T0 + 2 * DAY) == []
    assert ids(index.search(SearchFilter(deleted=True), ADMIN)) == ["c2", "c1"]


def test_audit_rows_are_kept_newest_first_and_by_recording(index: RecordingIndex) -> None:
    index.audit(at=T0, user="admin:root", action="play", recording_id="c1")
    index.audit(at=T0 + 1, user="agent:1001", action="export", recording_id="c2", detail="x")
    index.audit(at=T0 + 2, user="retention", action="delete", recording_id="c1", detail="p")
    assert [a["action"] for a in index.audit_log()] == ["delete", "export", "play"]
    rows = index.audit_log("c1")
    assert [(a["user"], a["action"], a["detail"]) for a in rows] == [
        ("retention", "delete", "p"),
        ("admin:root", "play", ""),
    ]
    assert len(index.audit_log(limit=1)) == 1


# --- backup ----------------------------------------------------------------------------------


def test_backup_rows_are_finished_kept_checksummed_recordings_oldest_first(
    index: RecordingIndex,
) -> None:
    add(index, "b", started=T0 + 10)
    add(index, "a", started=T0)
    add(index, "running", finish=False)
    add(index, "unreadable", sha256="")  # the file could not be read when it was closed
    add(index, "gone")
    index.mark_deleted("gone", at=T0, by="retention", policy="default")
    assert ids(index.backup_rows("dir:/b", 10)) == ["a", "b"]
    assert ids(index.backup_rows("dir:/b", 1)) == ["a"]
    items = index.pending_backup("dir:/b", 10)
    assert [i.recording_id for i in items] == ["a", "b"]
    first = items[0]
    assert first.path == index.directory / "2026/11/16/a.opus"
    assert (first.name, first.sha256, first.size) == ("2026/11/16/a.opus", "ab" * 32, 4000)


def test_a_failed_backup_is_retried_and_a_done_one_is_not(index: RecordingIndex) -> None:
    add(index, "a", started=T0)
    add(index, "b", started=T0 + 1)
    index.backup_done("a", "dir:/b", "/b/2026/11/16/a.opus", T0 + 5)
    index.backup_failed("b", "dir:/b", "disk full", T0 + 5)
    assert ids(index.backup_rows("dir:/b", 10)) == ["b"]  # retried
    assert index.backed_up("a", "dir:/b") and not index.backed_up("b", "dir:/b")
    # Another target has its own state.
    assert ids(index.backup_rows("sftp://u@h:22/r", 10)) == ["a", "b"]
    # A failure reported later for a copy that is there does not undo it.
    index.backup_failed("a", "dir:/b", "late error", T0 + 6)
    assert index.backed_up("a", "dir:/b")
    # The retry succeeds.
    index.backup_failed("b", "dir:/b", "still full", T0 + 6)
    index.backup_done("b", "dir:/b", "/b/2026/11/16/b.opus", T0 + 7)
    assert index.backup_rows("dir:/b", 10) == []
    assert index.backed_up("b", "dir:/b")


# --- the file --------------------------------------------------------------------------------


def test_reopening_keeps_rows_and_one_schema_version(tmp_path: Path) -> None:
    first = RecordingIndex(tmp_path / "recordings.db")
    add(first, "c1")
    first.close()
    again = RecordingIndex(tmp_path / "recordings.db")
    try:
        assert again.directory == tmp_path
        assert ids(again.search(SearchFilter(), ADMIN)) == ["c1"]
        versions = again._db.execute("SELECT version FROM schema_version").fetchall()
        assert [v[0] for v in versions] == [1]
        mode = again._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        again.close()


def test_two_connections_on_one_file_from_two_threads_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "recordings.db"
    RecordingIndex(path).close()
    errors: list[BaseException] = []
    counts: list[int] = []

    def recorder() -> None:  # the worker: start, segment, finish per call
        db = RecordingIndex(path)
        try:
            for n in range(150):
                add(db, f"r{n}", started=T0 + n, agents=(("1001", 1.0, None),))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            db.close()

    def retention() -> None:  # another thread: reads, marks and audits meanwhile
        db = RecordingIndex(path)
        try:
            for n in range(150):
                db.audit(at=T0 + n, user="retention", action="scan", recording_id=None)
                for row in db.search(SearchFilter(limit=5), ADMIN):
                    db.backup_done(row.id, "dir:/b", "x", T0)
                counts.append(len(db.search(SearchFilter(limit=1000), ADMIN)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=recorder), threading.Thread(target=retention)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert counts == sorted(counts)  # rows only ever appear
    db = RecordingIndex(path)
    try:
        rows = db.search(SearchFilter(limit=1000), ADMIN)
        assert len(rows) == 150
        assert all(r.segments == (Segment("1001", f"{r.id}-b0", 1.0, 60.0),) for r in rows)
        assert len(db.audit_log(limit=1000)) == 150
    finally:
        db.close()


def open_index(path: Path, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    barrier.wait()
    try:
        RecordingIndex(path).close()
    except BaseException as exc:  # noqa: BLE001 (reported by the caller)
        errors.append(exc)


def test_connections_opening_a_new_index_at_once_all_succeed_with_one_schema_row(
    tmp_path: Path,
) -> None:
    """The worker, QA, a pass and the CLI may open a new file together (a node's first start):
    each must wait its turn, not fail with "database is locked" or add a version row."""
    for trial in range(100):
        path = tmp_path / f"{trial}.db"
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=open_index, args=(path, barrier, errors)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert errors == [], f"trial {trial}"
        db = sqlite3.connect(path)
        try:
            assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        finally:
            db.close()
