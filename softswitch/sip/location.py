"""Registrar location service: bindings of an address-of-record to contacts (RFC 3261 §10.3).

Sans-IO: the caller passes parsed values (AOR, per-contact URI/expires/q/params, Call-ID,
CSeq) and `now`; it gets outcomes, errors that map to SIP responses, and expiry events from
`handle_timer(now)` at the time `get_timer()` names.

Errors and the responses they stand for:

- `IntervalTooBriefError` -> 423 Interval Too Brief with ``Min-Expires: <min_expires>`` (§10.3 step 7)
- `OutOfOrderRequestError` -> 500 (§10.3 steps 6-7: same Call-ID with a CSeq not higher)
- `TooManyContactsError` -> 403 (one REGISTER carries more contacts than an AOR may hold)
- `InvalidContactError` -> 400 (q outside 0..1, negative expires or CSeq)

A request is applied atomically (§10.3 step 8): either every contact update succeeds or nothing
changes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

import msgspec

from .errors import SipError

__all__ = [
    "Binding",
    "BindingExpired",
    "ContactSpec",
    "IntervalTooBriefError",
    "InvalidContactError",
    "LocationService",
    "OutOfOrderRequestError",
    "RegisterOutcome",
    "RegistrarError",
    "TooManyContactsError",
]

# RFC 3261 §10.2.1.1 leaves a contact's q unspecified when absent; we rank it as 1.0.
DEFAULT_Q = 1.0
# RFC 3261 §10.3 step 7: 423 only for an interval "smaller than one hour".
_ONE_HOUR = 3600


class RegistrarError(SipError):
    """A REGISTER that the location service refuses; nothing was changed."""


class IntervalTooBriefError(RegistrarError):
    """An expiry below the registrar minimum: answer 423 with Min-Expires (RFC 3261 §10.3)."""

    def __init__(self, min_expires: int, contact: str) -> None:
        super().__init__(f"expires for {contact} below minimum {min_expires}")
        self.min_expires = min_expires
        self.contact = contact


class OutOfOrderRequestError(RegistrarError):
    """Same Call-ID as a binding with a CSeq not higher than stored: answer 500 (§10.3)."""

    def __init__(self, contact: str, stored_cseq: int, cseq: int) -> None:
        super().__init__(f"CSeq {cseq} not above stored {stored_cseq} for {contact}")
        self.contact = contact
        self.stored_cseq = stored_cseq
        self.cseq = cseq


class TooManyContactsError(RegistrarError):
    """One request asks for more bindings than an AOR may hold: answer 403."""

    def __init__(self, max_contacts: int) -> None:
        super().__init__(f"more than {max_contacts} contacts in one request")
        self.max_contacts = max_contacts


class InvalidContactError(RegistrarError):
    """A contact or request value outside its grammar's range: answer 400."""


class ContactSpec(msgspec.Struct, frozen=True):
    """One Contact of a REGISTER, as parsed by the caller.

    `expires`: the contact's expires parameter, else the Expires header value, else None (the
    registrar default applies). `params`: the contact's header parameters (lower-case names,
    None for a flag) other than q/expires; `+sip.instance` and `reg-id` (RFC 5626) are read
    from here and all are kept on the binding so a 200 OK can echo them.
    """

    uri: str
    expires: int | None = None
    q: float | None = None
    params: dict[str, str | None] = {}


class Binding(msgspec.Struct, frozen=True):
    """A registered contact of an AOR.

    `source`/`transport`: where the REGISTER came from, to reach a phone behind NAT (the flow
    to use instead of the contact's host when they differ). `instance`: the `+sip.instance`
    value (RFC 5626), which identifies the phone across contact-address changes.
    `registered_at`: time of the last (re-)registration, used to rank equal-q contacts.
    `path`: the REGISTER's Path header values in order (RFC 3327 §5.3, the path vector),
    each a name-addr such as ``<sip:sbc.example;lr>``; requests to the contact go to the
    first and carry all of them as preloaded Route headers (§5.4). Empty: reached directly.
    """

    aor: str
    contact: str
    expires_at: float
    q: float
    call_id: str
    cseq: int
    source: tuple[str, int]
    transport: str
    instance: str | None
    user_agent: str | None
    registered_at: float
    reg_id: str | None = None
    params: dict[str, str | None] = {}
    path: list[str] = []

    def expires_in(self, now: float) -> int:
        """Whole seconds left, for the Contact's expires parameter of a 200 OK (§10.3 step 8).

        Rounded down (with a margin for float noise: `now + 300 - now` may be 300.0000000002),
        because a registrar may shorten an interval but never lengthen it.
        """
        return max(0, math.floor(self.expires_at - now + 1e-6))


class RegisterOutcome(msgspec.Struct, frozen=True):
    """The result of a successful REGISTER.

    `bindings`: every current binding of the AOR (for the 200 OK's Contact list), best first.
    `added` / `removed`: contact URIs that appeared / disappeared (refreshes are neither;
    removed includes bindings that had expired but were not yet reported by `handle_timer`,
    and bindings evicted to respect `max_contacts_per_aor`).
    `aor_was_empty` / `aor_now_empty`: whether the AOR had / has no binding, so the ACD can
    mark the agent available or unavailable.
    `saved`: the bindings this request created or refreshed, as they are now: with `removed`,
    everything a store of bindings must write for the request (softswitch/bindings.py).
    """

    bindings: list[Binding]
    added: list[str]
    removed: list[str]
    aor_now_empty: bool
    aor_was_empty: bool
    saved: list[Binding] = []


class BindingExpired(msgspec.Struct, frozen=True):
    """A binding reached its expiry without a refresh (from `handle_timer`)."""

    aor: str
    contact: str
    binding: Binding
    aor_now_empty: bool


def _rank(binding: Binding) -> tuple[float, float]:
    return (-binding.q, -binding.registered_at)


class LocationService:
    """Bindings of every AOR, with expiry (RFC 3261 §10.3).

    Contacts are matched to existing bindings by URI (as given: the caller passes URIs in one
    canonical form), or by `+sip.instance` plus `reg-id` when the contact carries an instance
    (RFC 5626 §6), so a phone that changed its address replaces its own binding instead of
    leaving a dead one behind.
    """

    def __init__(
        self,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts_per_aor: int = 10,
    ) -> None:
        """Configure intervals in seconds; raises ValueError if they are inconsistent."""
        if not 0 < min_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= max_expires")
        if not min_expires <= default_expires <= max_expires:
            raise ValueError("need min_expires <= default_expires <= max_expires")
        if max_contacts_per_aor < 1:
            raise ValueError("max_contacts_per_aor must be at least 1")
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts_per_aor = max_contacts_per_aor
        self._aors: dict[str, dict[str, Binding]] = {}  # aor -> contact URI -> binding
        self._count = 0
        # (expires_at, sequence, aor, contact); stale entries are skipped lazily.
        self._heap: list[tuple[float, int, str, str]] = []
        self._sequence = 0

    # -- requests --

    def register(
        self,
        aor: str,
        contacts: list[ContactSpec],
        call_id: str,
        cseq: int,
        now: float,
        source: tuple[str, int],
        transport: str,
        user_agent: str | None = None,
        path: list[str] | None = None,
    ) -> RegisterOutcome:
        """Apply a REGISTER's contacts (RFC 3261 §10.3 steps 7-8); no contacts = a query.

        Per contact: expires from `ContactSpec.expires` (already resolved from the contact
        parameter or the Expires header) or the default; 0 removes; 0 < x < min_expires
        raises `IntervalTooBriefError`; longer than max_expires is shortened. An existing binding
        with the same Call-ID and a CSeq not lower than `cseq` raises `OutOfOrderRequestError`; a
        different Call-ID simply replaces it. When the AOR would exceed
        `max_contacts_per_aor`, the least recently registered bindings not named in this
        request are evicted (reported in `removed`). `path`: the request's Path values
        (RFC 3327), stored with each binding it creates or refreshes (a refresh without Path
        drops an earlier one: the phone is now reached as the new REGISTER came).
        """
        if cseq < 0:
            raise InvalidContactError(f"negative CSeq {cseq}")
        before = self._aors.get(aor, {})
        # Bindings already expired but not yet reported count as gone now.
        work = {uri: b for uri, b in before.items() if b.expires_at > now}
        touched: set[str] = set()
        for spec in contacts:
            expires = self._expires_for(spec)
            q = DEFAULT_Q if spec.q is None else spec.q
            if not 0.0 <= q <= 1.0:
                raise InvalidContactError(f"q={q} outside 0..1 for {spec.uri}")
            instance = spec.params.get("+sip.instance")
            reg_id = spec.params.get("reg-id")
            for existing in self._matches(work, spec.uri, instance, reg_id):
                # RFC 3261 §10.3 step 7: same Call-ID needs a higher CSeq, else abort. A
                # binding made earlier in this same request is simply overridden.
                if (
                    existing.contact not in touched
                    and existing.call_id == call_id
                    and cseq <= existing.cseq
                ):
                    raise OutOfOrderRequestError(existing.contact, existing.cseq, cseq)
                del work[existing.contact]
            if expires == 0:
                touched.discard(spec.uri)
                continue
            work[spec.uri] = Binding(
                aor=aor,
                contact=spec.uri,
                expires_at=now + expires,
                q=q,
                call_id=call_id,
                cseq=cseq,
                source=source,
                transport=transport,
                instance=instance,
                user_agent=user_agent,
                registered_at=now,
                reg_id=reg_id,
                params={k: v for k, v in spec.params.items() if k not in ("expires", "q")},
                path=list(path or ()),
            )
            touched.add(spec.uri)
        if len(work) > self.max_contacts_per_aor:
            self._evict(work, touched)
        return self._commit(aor, before, work, touched)

    def remove_all(self, aor: str, call_id: str, cseq: int, now: float) -> RegisterOutcome:
        """``Contact: *`` with ``Expires: 0`` (RFC 3261 §10.3 step 6).

        Every binding goes, unless one has the same Call-ID and a CSeq not lower than
        `cseq`: then `OutOfOrderRequestError` is raised and nothing changes.
        """
        before = self._aors.get(aor, {})
        for binding in before.values():
            if binding.expires_at > now and binding.call_id == call_id and cseq <= binding.cseq:
                raise OutOfOrderRequestError(binding.contact, binding.cseq, cseq)
        return self._commit(aor, before, {}, set())

    def _expires_for(self, spec: ContactSpec) -> int:
        expires = self.default_expires if spec.expires is None else spec.expires
        if expires < 0:
            raise InvalidContactError(f"negative expires {expires} for {spec.uri}")
        # RFC 3261 §10.3 step 7: may refuse 0 < expires < min (and < 1 h) with 423.
        if 0 < expires < self.min_expires and expires < _ONE_HOUR:
            raise IntervalTooBriefError(self.min_expires, spec.uri)
        return min(expires, self.max_expires)

    @staticmethod
    def _matches(
        work: dict[str, Binding], uri: str, instance: str | None, reg_id: str | None
    ) -> list[Binding]:
        """Bindings a contact refreshes or replaces: same URI, or same instance and reg-id."""
        found = [work[uri]] if uri in work else []
        if instance is not None:
            found.extend(
                b
                for b in work.values()
                if b.instance == instance and b.reg_id == reg_id and b.contact != uri
            )
        return found

    def _evict(self, work: dict[str, Binding], touched: set[str]) -> None:
        if len(touched) > self.max_contacts_per_aor:
            raise TooManyContactsError(self.max_contacts_per_aor)
        candidates = sorted(
            (b for uri, b in work.items() if uri not in touched), key=lambda b: b.registered_at
        )
        for binding in candidates[: len(work) - self.max_contacts_per_aor]:
            del work[binding.contact]

    def _commit(
        self, aor: str, before: dict[str, Binding], work: dict[str, Binding], touched: set[str]
    ) -> RegisterOutcome:
        added = [uri for uri in work if uri not in before]
        removed = [uri for uri in before if uri not in work]
        self._count += len(work) - len(before)
        if work:
            self._aors[aor] = work
        else:
            self._aors.pop(aor, None)
        for uri in touched:
            if uri in work:
                self._schedule(work[uri])
        self._compact_heap()
        return RegisterOutcome(
            bindings=sorted(work.values(), key=_rank),
            added=added,
            removed=removed,
            aor_now_empty=not work,
            aor_was_empty=not before,
            saved=[binding for uri, binding in work.items() if uri in touched],
        )

    # -- queries --

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings of `aor`, highest q first, then most recently registered."""
        bindings = self._aors.get(aor)
        if not bindings:
            return []
        return sorted((b for b in bindings.values() if b.expires_at > now), key=_rank)

    def bindings(self, now: float) -> list[Binding]:
        """Every unexpired binding (for NAT keep-alives and persistence)."""
        return [b for aor in self._aors.values() for b in aor.values() if b.expires_at > now]

    def restore(self, bindings: Iterable[Binding], now: float) -> list[str]:
        """Load bindings saved earlier (e.g. after a restart); expired ones are skipped.

        A restored binding replaces one with the same AOR and contact URI. Returns the AORs
        that had no binding and now have one, in the order first seen (their agents are
        reachable).
        """
        reached: list[str] = []
        for binding in bindings:
            if binding.expires_at <= now:
                continue
            aor = self._aors.get(binding.aor)
            if aor is None:
                aor = self._aors[binding.aor] = {}
                reached.append(binding.aor)
            if binding.contact not in aor:
                self._count += 1
            aor[binding.contact] = binding
            self._schedule(binding)
        return reached

    @property
    def binding_count(self) -> int:
        """Number of stored bindings, including expired ones not yet reported."""
        return self._count

    # -- timers --

    def _schedule(self, binding: Binding) -> None:
        self._sequence += 1
        heapq.heappush(
            self._heap, (binding.expires_at, self._sequence, binding.aor, binding.contact)
        )

    def _is_current(self, entry: tuple[float, int, str, str]) -> bool:
        expires_at, _seq, aor, contact = entry
        binding = self._aors.get(aor, {}).get(contact)
        return binding is not None and binding.expires_at == expires_at

    def _compact_heap(self) -> None:
        """Rebuild the heap when refreshes have left it mostly stale entries (bounded memory)."""
        if len(self._heap) > 2 * self._count + 64:
            self._heap = [entry for entry in self._heap if self._is_current(entry)]
            heapq.heapify(self._heap)

    def get_timer(self) -> float | None:
        """When the next binding expires, or None if there is none."""
        heap = self._heap
        while heap and not self._is_current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def drop(self, aor: str, contact: str) -> BindingExpired | None:
        """Remove one binding before its expiry (its phone stopped answering keep-alives),
        as if it had expired; None when it is not there (any more)."""
        bindings = self._aors.get(aor)
        if not bindings or contact not in bindings:
            return None
        binding = bindings.pop(contact)
        self._count -= 1
        if not bindings:
            del self._aors[aor]
        return BindingExpired(aor, contact, binding, aor_now_empty=not bindings)

    def handle_timer(self, now: float) -> list[BindingExpired]:
        """Remove bindings whose expiry is at or before `now`; one event per binding."""
        events: list[BindingExpired] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._is_current(entry):
                continue
            _expires_at, _seq, aor, contact = entry
            bindings = self._aors[aor]
            binding = bindings.pop(contact)
            self._count -= 1
            if not bindings:
                del self._aors[aor]
            events.append(BindingExpired(aor, contact, binding, aor_now_empty=not bindings))
        return events
