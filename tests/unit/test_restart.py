"""Calls a crash left open, with virtual time: the dialogs of answered legs are saved while
they are up; a restarted switch closes the rows without an end and BYEs both parties
(softswitch/call/restart.py, the restart tables of softswitch/cdr.py).

A "crash" is a second `Switch` opened on the same database while the first one is simply
dropped: everything the first one wrote was committed (autocommit store), nothing it would
have written at a clean stop was (restartkit.py).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgspec
import pytest
from restartkit import restarted, start
from sipflow import Harness, Phone, Trunk

from softswitch.call.restart import (
    CSEQ_SKIP,
    RESTART_DISPOSITION,
    SavedDialog,
    close_call,
    close_leg,
    close_unfinished,
    last_alive,
    restart_bye,
)
from softswitch.cdr import SCHEMA_VERSION, CdrStore
from softswitch.sip.dialog import Dialog, DialogState
from softswitch.sip.message import Request, Response
from softswitch.sip.transaction import Target

PHONE = "sip:1001@127.0.0.1:5101"


@pytest.fixture
def cdr(tmp_path: Path) -> CdrStore:
    store = CdrStore(tmp_path / "hotline.db")
    yield store
    store.close()


def call_up(tmp_path: Path) -> tuple[Harness, Phone, Trunk, Request]:
    """A node with agent 1001's phone registered and a trunk call answered by it; the
    agent's INVITE."""
    h = Harness(tmp_path)
    start(h)
    phone = Phone(h, "1001", 5101)
    phone.register()
    trunk = Trunk(h)
    trunk.invite()
    (invite,) = h.take(phone.port)
    assert isinstance(invite, Request) and invite.method == "INVITE"
    phone.reply(invite, 200, sdp=True)
    assert [m.method for m in h.take(phone.port)] == ["ACK"]  # type: ignore[union-attr]
    (ok,) = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    return h, phone, trunk, invite


def test_call_up_at_a_crash_is_closed_and_both_parties_get_a_bye(tmp_path: Path) -> None:
    first, phone, trunk, invite = call_up(tmp_path)
    assert first.cdr.connection.execute("SELECT count(*) FROM live_dialogs").fetchone()[0] == 2
    first.advance(10)
    first.cdr.alive(first.now)  # the heartbeat's last write before the crash
    crash = first.now
    first.advance(0.7)

    h, recovered = restarted(tmp_path, after=5, previous=first)
    (call,) = h.cdr.connection.execute("SELECT * FROM calls").fetchall()
    assert call["disposition"] == RESTART_DISPOSITION and call["hangup_side"] == "system"
    assert call["end"] == crash
    assert call["talk"] == pytest.approx(crash - call["answer"])
    assert call["wait"] == pytest.approx(call["answer"] - call["start"])
    legs = h.cdr.connection.execute("SELECT * FROM legs").fetchall()
    assert {(leg["end"], leg["disposition"]) for leg in legs} == {(crash, RESTART_DISPOSITION)}
    assert (recovered.calls, recovered.legs, len(recovered.dialogs)) == (1, 2, 2)
    assert h.cdr.connection.execute("SELECT count(*) FROM live_dialogs").fetchone()[0] == 0

    (agent_bye,) = h.take(phone.port)
    assert isinstance(agent_bye, Request) and agent_bye.method == "BYE"
    assert agent_bye.call_id == invite.call_id and agent_bye.uri == PHONE
    assert agent_bye.from_.tag == invite.from_.tag and agent_bye.to.tag == "ph"
    assert agent_bye.cseq == (1 + 1 + CSEQ_SKIP, "BYE")
    (caller_bye,) = h.take(trunk.port)
    assert isinstance(caller_bye, Request) and caller_bye.method == "BYE"
    assert caller_bye.call_id == trunk.call_id and caller_bye.uri == "sip:carrier@127.0.0.1:5090"
    assert caller_bye.to.tag == "trk" and caller_bye.from_.tag == trunk.to_tag
    assert "restarted" in (caller_bye.headers.get("reason") or "")

    Phone(h, "1001", 5101).reply(agent_bye, 200)  # the phone, talking to the new node
    trunk_ok = (
        f"SIP/2.0 481 Call Does Not Exist\r\nVia: {caller_bye.headers.get('via')}\r\n"
        f"From: {caller_bye.headers.get('from')}\r\nTo: {caller_bye.headers.get('to')}\r\n"
        f"Call-ID: {caller_bye.call_id}\r\nCSeq: {caller_bye.cseq[0]} BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    h.switch.receive(trunk_ok.encode(), trunk.source, h.now)
    assert h.switch.restart_byes.pending == {}
    assert h.switch.restart_byes.counters == {"sent": 2, "answered": 2, "failed": 0}
    assert h.switch.control.sessions == {}


def test_a_bye_nobody_answers_is_retransmitted_then_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, phone, _trunk, _invite = call_up(tmp_path)
    h, _ = restarted(tmp_path, after=5, previous=first)
    assert len(h.take(phone.port)) == 1
    with caplog.at_level(logging.INFO, logger="hotline.restart"):
        h.advance(2)
        assert [m.method for m in h.take(phone.port)] == ["BYE", "BYE"]  # type: ignore[union-attr]
        h.advance(64 * 0.5)  # Timer F (RFC 3261 §17.1.2.2)
    assert h.switch.restart_byes.pending == {}
    assert h.switch.restart_byes.counters["failed"] == 2
    assert "BYE after restart timed out" in caplog.text


def test_call_that_ended_before_the_crash_is_left_alone(tmp_path: Path) -> None:
    first, phone, trunk, _invite = call_up(tmp_path)
    first.advance(3)
    trunk.bye()
    (bye,) = first.take(phone.port)
    phone.reply(bye, 200)
    before = first.cdr.connection.execute("SELECT * FROM calls").fetchone()
    assert first.cdr.connection.execute("SELECT count(*) FROM live_dialogs").fetchone()[0] == 0

    h, recovered = restarted(tmp_path, after=5, previous=first)
    assert (recovered.calls, recovered.legs, recovered.dialogs) == (0, 0, [])
    assert dict(h.cdr.connection.execute("SELECT * FROM calls").fetchone()) == dict(before)
    assert h.take(phone.port) == [] and h.take(trunk.port) == []


def test_caller_waiting_in_the_queue_at_a_crash_is_closed_without_a_bye(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    start(first)
    Trunk(first).invite()  # no agent: the caller hears ringback, never answered
    first.advance(4)
    first.cdr.alive(first.now)
    h, recovered = restarted(tmp_path, after=5, previous=first)
    (call,) = h.cdr.connection.execute("SELECT * FROM calls").fetchall()
    assert call["disposition"] == RESTART_DISPOSITION
    assert call["talk"] == 0 and call["answer"] is None
    assert call["end"] == first.now and call["wait"] == pytest.approx(4.0)
    assert recovered.dialogs == [] and h.sent == []


# --------------------------------------------------------------------- the decisions


def test_end_is_the_last_sign_of_life_never_before_a_time_in_the_row() -> None:
    row = {"start": 100.0, "queued": 101.0, "ringing": 102.0, "answer": 105.0, "node_answer": None}
    assert last_alive(None, [row]) == 105.0
    assert last_alive(104.0, [row, {"start": 106.0}]) == 106.0
    assert last_alive(None, []) is None
    assert close_call(row, 110.0) == {
        "end": 110.0, "talk": 5.0, "wait": 5.0, "disposition": RESTART_DISPOSITION,
        "hangup_side": "system",
    }  # fmt: skip
    assert close_call(row, 103.0)["end"] == 105.0
    unanswered = {"start": 100.0, "queued": 100.5, "answer": None}
    assert close_call(unanswered, 130.0) == {
        "end": 130.0, "talk": 0.0, "wait": 30.0, "disposition": RESTART_DISPOSITION,
        "hangup_side": "system",
    }  # fmt: skip
    assert close_leg({"start": 100.0, "ringing": 101.0, "answer": None}, 99.0) == {
        "end": 101.0,
        "disposition": RESTART_DISPOSITION,
    }


def saved(target: Target, route_set: list[str] | None = None) -> SavedDialog:
    state = DialogState(
        "cid", "ours", "theirs", "<sip:hotline@192.0.2.1>", '"A" <sip:1001@192.0.2.9>',
        "sip:1001@192.0.2.9:5070;transport=tcp", route_set or [], 3,
    )  # fmt: skip
    return SavedDialog("call-1-b1", "call-1", state, target)


def test_a_dialog_made_again_from_its_state_sends_the_same_requests() -> None:
    original = saved(Target("UDP", "192.0.2.9", 5070)).dialog
    dialog = Dialog.from_state(original)
    assert dialog.state() == original and dialog.confirmed
    again = Dialog.from_state(dialog.state())
    assert again.new_request("BYE").to_bytes() == dialog.new_request("BYE").to_bytes()


def test_restart_bye_goes_to_the_udp_source_but_a_tcp_party_by_its_contact() -> None:
    bye, target = restart_bye(saved(Target("UDP", "198.51.100.4", 40000)))
    assert target == Target("UDP", "198.51.100.4", 40000)  # the NAT binding the leg used
    assert (
        bye.cseq == (3 + CSEQ_SKIP + 1, "BYE")
        and bye.uri == "sip:1001@192.0.2.9:5070;transport=tcp"
    )
    assert (bye.from_.tag, bye.to.tag) == ("ours", "theirs")
    _bye, target = restart_bye(saved(Target("TCP", "198.51.100.4", 40001)))
    assert target == Target("TCP", "192.0.2.9", 5070)  # that connection died with the node
    routed, target = restart_bye(
        saved(Target("TCP", "198.51.100.4", 40001), ["<sip:proxy.example:5080;lr;transport=tcp>"])
    )
    assert target == Target("TCP", "proxy.example", 5080)
    assert routed.headers.get("route") == "<sip:proxy.example:5080;lr;transport=tcp>"


def test_unusable_saved_dialog_is_skipped_with_a_message(
    cdr: CdrStore, caplog: pytest.LogCaptureFixture
) -> None:
    cdr.call_started("call-1", start=100.0)
    for leg in ("call-1-a", "call-1-b1"):
        cdr.leg_started(leg, call_id="call-1", direction="in", start=100.0)
    good = saved(Target("UDP", "192.0.2.9", 5070))
    cdr.save_dialog("call-1-b1", "call-1", msgspec.json.encode(good).decode())
    cdr.save_dialog("call-1-a", "call-1", '{"leg_id": 3}')
    with caplog.at_level(logging.ERROR):
        recovered = close_unfinished(cdr)
    assert recovered.dialogs == [good]
    assert "saved dialog of leg call-1-a unreadable" in caplog.text


def test_a_bye_that_cannot_be_built_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path)
    broken = SavedDialog(
        "l", "c", msgspec.structs.replace(saved(Target("TCP", "h", 1)).dialog, remote_target="?"),
        Target("TCP", "h", 1),
    )  # fmt: skip
    with caplog.at_level(logging.ERROR):
        h.switch.send_restart_byes([broken], h.now)
    assert "call c leg l: no BYE after restart" in caplog.text
    assert h.switch.outbox == [] and h.switch.restart_byes.counters["failed"] == 1


# ------------------------------------------------------------------------- the schema


def test_a_version_2_database_gains_the_restart_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (2);
        CREATE TABLE calls (call_id TEXT PRIMARY KEY, sip_call_id TEXT, trunk TEXT,
            caller TEXT, called TEXT, queue TEXT, agent TEXT, start REAL NOT NULL,
            queued REAL, ringing REAL, answer REAL, "end" REAL, wait REAL, talk REAL,
            disposition TEXT, hangup_side TEXT, sip_cause INTEGER, pai TEXT, diversion TEXT,
            route TEXT, node_answer REAL, variables TEXT, survey_rating INTEGER);
        INSERT INTO calls (call_id, start, answer) VALUES ('old-1', 50.0, 55.0);
        """
    )
    db.commit()
    db.close()
    store = CdrStore(path)
    try:
        version = store.connection.execute("SELECT version FROM schema_version").fetchall()
        assert [tuple(row) for row in version] == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 3
        recovered = close_unfinished(store)  # a crash of the old version is closed too
        assert (recovered.calls, recovered.end) == (1, 55.0)
        row = store.get_call("old-1")
        assert row is not None and row["disposition"] == RESTART_DISPOSITION
        assert row["talk"] == 0.0
    finally:
        store.close()


def test_heartbeat_is_one_row_and_the_latest_queue_event_counts_too(cdr: CdrStore) -> None:
    assert cdr.last_alive() is None
    cdr.run_started(90.0)
    cdr.alive(100.0)
    cdr.alive(120.0)
    assert cdr.connection.execute("SELECT count(*) FROM node_alive").fetchone()[0] == 1
    assert cdr.last_alive() == 120.0
    cdr.queue_event(121.5, "c", "general", None, "ENTER")
    assert cdr.last_alive() == 121.5


def test_a_start_looks_only_at_calls_since_the_last_run_started(cdr: CdrStore) -> None:
    # Every start closes all that is open, so older rows need not be read (by the start
    # index: a CDR of years is not scanned before the node may listen).
    for call_id, began in (("before", 100.0), ("since", 250.0)):
        cdr.call_started(call_id, start=began)
        cdr.leg_started(f"{call_id}-a", call_id=call_id, direction="in", start=began)
    cdr.run_started(200.0)
    calls, legs = cdr.unfinished()
    assert [c["call_id"] for c in calls] == ["since"] and [g["leg_id"] for g in legs] == ["since-a"]
