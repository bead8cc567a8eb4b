"""Registrar location service (RFC 3261 §10.3) driven with virtual time."""

from __future__ import annotations

import pytest

from softswitch.sip.location import (
    BindingExpired,
    ContactSpec,
    IntervalTooBriefError,
    InvalidContactError,
    LocationService,
    OutOfOrderRequestError,
    TooManyContactsError,
)

AOR = "sip:1001@hotline.test"
PHONE = "sip:1001@192.0.2.10:5062"
SOFTPHONE = "sip:1001@192.0.2.20:5070;transport=tcp"
SOURCE = ("127.0.0.1", 5062)


def register(
    service: LocationService,
    contacts: list[ContactSpec],
    now: float,
    call_id: str = "call-1",
    cseq: int = 1,
    aor: str = AOR,
):
    return service.register(aor, contacts, call_id, cseq, now, SOURCE, "udp", "TestPhone/1.0")


def test_register_stores_binding_with_request_details() -> None:
    service = LocationService()
    outcome = register(service, [ContactSpec(PHONE, expires=120)], now=1000.0)
    assert outcome.added == [PHONE] and outcome.removed == []
    assert outcome.aor_was_empty and not outcome.aor_now_empty
    [binding] = service.lookup(AOR, now=1000.0)
    assert binding == outcome.bindings[0]
    assert binding.contact == PHONE
    assert binding.expires_at == 1120.0
    assert binding.expires_in(1000.5) == 119  # 119.5 s left: rounded down, never lengthened
    assert binding.expires_in(1000.0) == 120
    assert binding.call_id == "call-1" and binding.cseq == 1
    assert binding.source == SOURCE and binding.transport == "udp"
    assert binding.user_agent == "TestPhone/1.0"
    assert binding.q == 1.0


def test_expires_is_clamped_to_maximum_and_defaults_when_absent() -> None:
    service = LocationService(max_expires=3600, default_expires=1800)
    register(service, [ContactSpec(PHONE, expires=86400), ContactSpec(SOFTPHONE)], now=0.0)
    expiries = {b.contact: b.expires_at for b in service.lookup(AOR, now=0.0)}
    assert expiries == {PHONE: 3600.0, SOFTPHONE: 1800.0}


def test_interval_below_minimum_raises_423_error_and_changes_nothing() -> None:
    service = LocationService(min_expires=60)
    register(service, [ContactSpec(PHONE, expires=300)], now=0.0)
    with pytest.raises(IntervalTooBriefError) as caught:
        register(
            service,
            [ContactSpec(SOFTPHONE, expires=300), ContactSpec(PHONE, expires=30)],
            now=1.0,
            cseq=2,
        )
    assert caught.value.min_expires == 60
    # atomic: the valid SOFTPHONE contact of the failed request was not added
    assert [b.contact for b in service.lookup(AOR, now=1.0)] == [PHONE]
    # exactly the minimum is fine
    register(service, [ContactSpec(PHONE, expires=60)], now=2.0, cseq=3)


def test_expires_zero_removes_binding_and_reports_empty_aor() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE, expires=300)], now=0.0)
    outcome = register(service, [ContactSpec(PHONE, expires=0)], now=5.0, cseq=2)
    assert outcome.removed == [PHONE] and outcome.added == []
    assert outcome.aor_now_empty and not outcome.aor_was_empty
    assert service.lookup(AOR, now=5.0) == []
    assert service.get_timer() is None
    assert service.binding_count == 0


def test_remove_all_with_star_removes_every_binding() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE), ContactSpec(SOFTPHONE)], now=0.0)
    outcome = service.remove_all(AOR, "call-1", 2, now=10.0)
    assert sorted(outcome.removed) == sorted([PHONE, SOFTPHONE])
    assert outcome.aor_now_empty and outcome.bindings == []
    assert service.lookup(AOR, now=10.0) == []
    assert service.handle_timer(now=100_000.0) == []


def test_remove_all_with_stale_cseq_is_out_of_order() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE)], now=0.0, cseq=5)
    with pytest.raises(OutOfOrderRequestError):
        service.remove_all(AOR, "call-1", 5, now=1.0)
    assert len(service.lookup(AOR, now=1.0)) == 1
    # another Call-ID may always remove (RFC 3261 §10.3 step 6)
    assert service.remove_all(AOR, "other-call", 1, now=2.0).aor_now_empty


def test_same_call_id_with_lower_or_equal_cseq_is_out_of_order() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE, expires=300)], now=0.0, cseq=7)
    for cseq in (7, 6):
        with pytest.raises(OutOfOrderRequestError) as caught:
            register(service, [ContactSpec(PHONE, expires=600)], now=1.0, cseq=cseq)
        assert caught.value.stored_cseq == 7
    [binding] = service.lookup(AOR, now=1.0)
    assert binding.expires_at == 300.0
    refreshed = register(service, [ContactSpec(PHONE, expires=600)], now=2.0, cseq=8)
    assert refreshed.added == [] and refreshed.removed == []
    assert refreshed.bindings[0].expires_at == 602.0 and refreshed.bindings[0].cseq == 8


def test_different_call_id_replaces_binding_for_same_contact() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE)], now=0.0, call_id="boot-1", cseq=50)
    outcome = register(service, [ContactSpec(PHONE)], now=10.0, call_id="boot-2", cseq=1)
    assert outcome.added == [] and outcome.removed == []
    [binding] = service.lookup(AOR, now=10.0)
    assert binding.call_id == "boot-2" and binding.cseq == 1


def test_same_instance_replaces_binding_with_changed_address() -> None:
    service = LocationService()
    instance = {"+sip.instance": '"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"'}
    register(service, [ContactSpec(PHONE, params=instance)], now=0.0, call_id="a")
    moved = "sip:1001@198.51.100.7:5062"
    outcome = register(service, [ContactSpec(moved, params=instance)], now=5.0, call_id="b")
    assert outcome.added == [moved] and outcome.removed == [PHONE]
    assert [b.contact for b in outcome.bindings] == [moved]
    assert outcome.bindings[0].instance == instance["+sip.instance"]
    assert outcome.bindings[0].params == instance


def test_lookup_orders_by_q_then_most_recent() -> None:
    service = LocationService()
    c1, c2, c3, c4 = (f"sip:1001@192.0.2.{n}" for n in (1, 2, 3, 4))
    register(service, [ContactSpec(c1, q=0.5)], now=0.0, call_id="a")
    register(service, [ContactSpec(c2, q=1.0)], now=1.0, call_id="b")
    register(service, [ContactSpec(c3, q=0.5)], now=2.0, call_id="c")
    register(service, [ContactSpec(c4)], now=3.0, call_id="d")  # no q ranks as 1.0
    assert [b.contact for b in service.lookup(AOR, now=4.0)] == [c4, c2, c3, c1]


def test_multiple_contacts_in_one_request_and_query_without_contacts() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE), ContactSpec(SOFTPHONE, q=0.3)], now=0.0)
    query = register(service, [], now=1.0, cseq=2)
    assert [b.contact for b in query.bindings] == [PHONE, SOFTPHONE]
    assert query.added == [] and query.removed == [] and not query.aor_was_empty


def test_same_contact_twice_in_one_request_last_wins() -> None:
    service = LocationService()
    outcome = register(
        service, [ContactSpec(PHONE, expires=300), ContactSpec(PHONE, expires=0)], now=0.0
    )
    assert outcome.aor_now_empty and outcome.added == []


def test_invalid_values_are_rejected() -> None:
    service = LocationService()
    with pytest.raises(InvalidContactError):
        register(service, [ContactSpec(PHONE, q=1.5)], now=0.0)
    with pytest.raises(InvalidContactError):
        register(service, [ContactSpec(PHONE, expires=-1)], now=0.0)
    with pytest.raises(InvalidContactError):
        register(service, [ContactSpec(PHONE)], now=0.0, cseq=-1)
    with pytest.raises(ValueError):
        LocationService(min_expires=100, max_expires=50)


def test_contacts_beyond_the_cap_evict_the_oldest_binding() -> None:
    service = LocationService(max_contacts_per_aor=2)
    contacts = [f"sip:1001@192.0.2.{n}" for n in range(1, 4)]
    for i, uri in enumerate(contacts):
        outcome = register(service, [ContactSpec(uri)], now=float(i), call_id=f"c{i}")
    assert outcome.added == [contacts[2]] and outcome.removed == [contacts[0]]
    assert {b.contact for b in service.lookup(AOR, now=3.0)} == set(contacts[1:])
    with pytest.raises(TooManyContactsError):
        register(service, [ContactSpec(uri) for uri in contacts], now=4.0, call_id="big")


def test_expiry_fires_events_in_virtual_time() -> None:
    service = LocationService(min_expires=60)
    register(service, [ContactSpec(PHONE, expires=60)], now=0.0, aor=AOR)
    register(service, [ContactSpec(SOFTPHONE, expires=120)], now=0.0, aor=AOR, call_id="b")
    other = "sip:1002@hotline.test"
    register(service, [ContactSpec("sip:1002@192.0.2.9", expires=90)], now=0.0, aor=other)

    assert service.get_timer() == 60.0
    assert service.handle_timer(now=59.9) == []
    [first] = service.handle_timer(now=60.0)
    assert isinstance(first, BindingExpired)
    assert (first.aor, first.contact, first.aor_now_empty) == (AOR, PHONE, False)
    assert service.get_timer() == 90.0
    [second, third] = service.handle_timer(now=500.0)
    assert (second.aor, second.aor_now_empty) == (other, True)
    assert (third.aor, third.contact, third.aor_now_empty) == (AOR, SOFTPHONE, True)
    assert service.get_timer() is None
    assert service.binding_count == 0


def test_refresh_moves_the_expiry_timer() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE, expires=100)], now=0.0)
    register(service, [ContactSpec(PHONE, expires=100)], now=80.0, cseq=2)
    assert service.get_timer() == 180.0
    assert service.handle_timer(now=100.0) == []
    assert len(service.lookup(AOR, now=100.0)) == 1
    assert [e.contact for e in service.handle_timer(now=180.0)] == [PHONE]


def test_expired_but_unreported_binding_is_not_returned_and_counts_as_removed() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE, expires=100)], now=0.0)
    assert service.lookup(AOR, now=100.0) == []
    outcome = register(service, [ContactSpec(SOFTPHONE, expires=100)], now=150.0, call_id="x")
    assert outcome.removed == [PHONE] and outcome.added == [SOFTPHONE]
    assert not outcome.aor_was_empty
    assert [e.contact for e in service.handle_timer(now=200.0)] == []
    assert [e.contact for e in service.handle_timer(now=250.0)] == [SOFTPHONE]


def test_timer_heap_stays_bounded_under_many_refreshes() -> None:
    service = LocationService()
    for cseq in range(1, 2001):
        register(service, [ContactSpec(PHONE, expires=3600)], now=float(cseq), cseq=cseq)
    assert len(service._heap) <= 2 * service.binding_count + 65
    assert service.get_timer() == 2000.0 + 3600.0


def test_restore_loads_unexpired_bindings() -> None:
    service = LocationService()
    register(service, [ContactSpec(PHONE, expires=100), ContactSpec(SOFTPHONE, expires=500)], 0.0)
    saved = service.bindings(now=0.0)
    fresh = LocationService()
    fresh.restore(saved, now=200.0)
    assert [b.contact for b in fresh.lookup(AOR, now=200.0)] == [SOFTPHONE]
    assert fresh.get_timer() == 500.0
    assert fresh.binding_count == 1


def test_granted_expiry_never_exceeds_the_request_despite_float_noise() -> None:
    # (now + 300) - now == 300.0000000000002 for this now: the 200 OK must still say 300.
    location = LocationService(60, 3600, 3600)
    now = 1852.793011947
    outcome = location.register(
        "a", [ContactSpec("sip:a@127.0.0.1:5", 300)], "c", 1, now, ("127.0.0.1", 5), "UDP"
    )
    assert outcome.bindings[0].expires_in(now) == 300
