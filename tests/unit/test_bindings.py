"""Registrations that survive a restart, with virtual time: the location service reports
what to write, `BindingStore` keeps it in SQLite, a restarted switch restores it before any
message and its agents are available at once (softswitch/bindings.py)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgspec
import pytest
from callkit import edited_config
from restartkit import restarted, start
from sipflow import Harness, Phone, Trunk

from softswitch.bindings import BindingStore
from softswitch.sip.location import Binding, ContactSpec, LocationService
from softswitch.sip.message import Request

PHONE = "sip:1001@127.0.0.1:5101"


def binding(contact: str = PHONE, expires_at: float = 4600.0, aor: str = "1001") -> Binding:
    return Binding(
        aor=aor, contact=contact, expires_at=expires_at, q=0.5, call_id="reg-1", cseq=7,
        source=("192.0.2.7", 40000), transport="UDP", instance="<urn:uuid:1>",
        user_agent="Phone/1", registered_at=1000.0, reg_id="1", params={"ob": None, "x": "y"},
    )  # fmt: skip


# --------------------------------------------------------------- the location service


def test_register_reports_new_and_refreshed_bindings_for_the_store() -> None:
    service = LocationService()
    first = service.register("1001", [ContactSpec(PHONE, 300)], "c", 1, 0.0, ("h", 1), "UDP")
    assert [b.contact for b in first.saved] == [PHONE]
    other = "sip:1001@127.0.0.1:5102"
    second = service.register(
        "1001", [ContactSpec(other, 300)], "c2", 1, 10.0, ("h", 2), "UDP"
    )  # a second phone: only it is written, the first one is untouched
    assert [b.contact for b in second.saved] == [other]
    refresh = service.register("1001", [ContactSpec(PHONE, 600)], "c", 2, 20.0, ("h", 1), "UDP")
    assert [(b.contact, b.expires_at) for b in refresh.saved] == [(PHONE, 620.0)]
    gone = service.register("1001", [ContactSpec(PHONE, 0)], "c", 3, 30.0, ("h", 1), "UDP")
    assert gone.saved == [] and gone.removed == [PHONE]


def test_restore_names_the_aors_that_became_reachable() -> None:
    service = LocationService()
    saved = [binding(), binding("sip:1001@127.0.0.1:5102"), binding(aor="1002")]
    assert service.restore(saved, now=1000.0) == ["1001", "1002"]
    assert service.restore([binding()], now=1000.0) == []  # 1001 had one already
    assert LocationService().restore([binding(expires_at=900.0)], now=1000.0) == []


# -------------------------------------------------------------------- the binding store


def test_bindings_come_back_in_the_next_process_clock() -> None:
    db = sqlite3.connect(":memory:")
    # Run 1: monotonic 1000 is wall 1_700_000_000; run 2: monotonic 50 is wall +3000 s.
    BindingStore(db, wall_offset=1_700_000_000.0 - 1000.0).save([binding()])
    later = BindingStore(db, wall_offset=1_700_003_000.0 - 50.0)
    (restored,) = later.load(wall_now=1_700_003_000.0)
    assert restored.expires_at == pytest.approx(50.0 + 600.0)  # 3600 s granted, 3000 gone
    assert restored.registered_at == pytest.approx(50.0 - 3000.0)
    assert msgspec.structs.replace(restored, expires_at=4600.0, registered_at=1000.0) == binding()


def test_expired_and_removed_bindings_are_not_restored() -> None:
    db = sqlite3.connect(":memory:")
    store = BindingStore(db, wall_offset=0.0)
    store.save([binding(), binding("sip:1001@127.0.0.1:5102", expires_at=1500.0)])
    store.save([binding(aor="1002")])
    store.remove("1002", [PHONE])
    assert [b.contact for b in store.load(wall_now=2000.0)] == [PHONE]
    count = db.execute("SELECT count(*) FROM bindings").fetchone()[0]
    assert count == 1  # the expired row is deleted, not only skipped


def test_an_unreadable_binding_row_is_dropped_with_a_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = sqlite3.connect(":memory:")
    store = BindingStore(db, wall_offset=0.0)
    store.save([binding(), binding(aor="1002")])
    db.execute("UPDATE bindings SET params = '{not json' WHERE aor = '1002'")
    with caplog.at_level(logging.ERROR):
        assert [b.aor for b in store.load(wall_now=2000.0)] == ["1001"]
    assert "saved binding of '1002' to 'sip:1001@127.0.0.1:5101' unreadable" in caplog.text
    assert [b.aor for b in store.load(wall_now=2000.0)] == ["1001"]


def test_a_failed_binding_write_is_logged_and_the_register_still_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path)
    h.switch.registrar.store = BindingStore(h.cdr.connection, 0.0)
    h.cdr.connection.execute("DROP TABLE bindings")  # a write that cannot succeed
    with caplog.at_level(logging.ERROR):
        assert Phone(h, "1001", 5101).register().status == 200
    assert "bindings of 1001 not saved" in caplog.text
    assert h.switch.location.lookup("1001", h.now)


# ------------------------------------------------------------------------- whole node


def test_agent_registered_before_a_crash_gets_the_next_call_at_once(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    start(first)
    assert Phone(first, "1001", 5101).register().status == 200
    first.advance(600)  # no clean stop: the process dies here

    h, _ = restarted(tmp_path, after=30, previous=first)
    assert h.switch.location.lookup("1001", h.now)[0].contact == PHONE
    Trunk(h).invite()  # no REGISTER since the restart
    (invite,) = h.take(5101)
    assert isinstance(invite, Request) and invite.method == "INVITE"
    assert invite.uri == PHONE


def test_binding_that_expired_meanwhile_leaves_the_agent_unavailable(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    start(first)
    assert Phone(first, "1001", 5101).register(expires=120).status == 200
    h, _ = restarted(tmp_path, after=121, previous=first)
    assert h.switch.location.lookup("1001", h.now) == []
    trunk = Trunk(h)
    trunk.invite()
    assert h.take(5101) == []


def test_unregistered_and_expired_bindings_leave_the_store(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    start(h)
    Phone(h, "1001", 5101).register(expires=120)
    other = Phone(h, "1002", 5102)
    other.register(expires=3600)
    h.advance(121)  # 1001's binding expires
    rows = h.cdr.connection.execute("SELECT aor FROM bindings ORDER BY aor").fetchall()
    assert [r[0] for r in rows] == ["1002"]
    assert other.register(expires=0).status == 200
    assert h.cdr.connection.execute("SELECT count(*) FROM bindings").fetchone()[0] == 0


def test_a_mobile_agents_login_outlives_a_restart_and_its_logout_too(tmp_path: Path) -> None:
    config = edited_config(tmp_path, {"agents": {"mobile": "013700000001"}})
    first = Harness(tmp_path, config)
    start(first)
    first.switch.agent_command("1001", "login", first.now, queues=["general"])
    h, _ = restarted(tmp_path, after=30, previous=first, config_dir=config)
    snap = h.switch.acd.agent_snapshot("1001")
    assert (snap.state, snap.queues) == ("idle", ("general",))
    Trunk(h).invite("9000")
    (ring,) = [m for m in h.take(5080) if isinstance(m, Request)]
    assert ring.uri.startswith("sip:013700000001@")  # its queue call rings the mobile
    h.switch.agent_command("1001", "logout", h.now)
    again, _ = restarted(tmp_path, after=30, previous=h, config_dir=config)
    assert again.switch.acd.agent_state("1001").value == "logged_out"


def test_a_saved_mobile_login_of_an_agent_no_longer_mobile_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = edited_config(tmp_path, {"agents": {"mobile": "013700000001"}})
    first = Harness(tmp_path, config)
    start(first)
    first.switch.agent_command("1001", "login", first.now)
    with caplog.at_level(logging.WARNING):
        h, _ = restarted(tmp_path, after=5, previous=first)  # the shipped config: a phone
    assert "saved mobile login of 1001 dropped" in caplog.text
    assert h.switch.acd.agent_state("1001").value == "logged_out"
    assert BindingStore(h.cdr.connection, 0.0).load_mobile() == []
