"""The SIP transaction layer (RFC 3261 §17, amended by RFC 6026), sans-IO.

`TransactionLayer` takes parsed messages and the current time, and gives back events for the
transaction user (TU) plus `SendMessage` commands in `outbox`; the adapter drains the outbox,
writes the bytes, and calls `handle_timer(now)` at `get_timer()`.

Four machines live here, each with the timers named as in the RFC:
- INVITE client (§17.1.1): Timer A retransmits over UDP (T1, doubling), B gives up (64*T1),
  D absorbs response retransmissions after a non-2xx (32 s UDP), M keeps the Accepted state
  for forked/retransmitted 2xx (RFC 6026 §7.2). ACK for a non-2xx is generated here.
- non-INVITE client (§17.1.2): Timer E retransmits (T1 doubling to T2, T2 once provisional),
  F gives up (64*T1), K absorbs response retransmissions (T4).
- INVITE server (§17.2.1): 100 Trying is sent at once; Timer G retransmits a non-2xx final
  (UDP), H waits for its ACK (64*T1), I absorbs ACK retransmissions (T4), L keeps the Accepted
  state (RFC 6026 §7.1). The 2xx itself is retransmitted (T1 doubling to T2) until its ACK
  arrives or 64*T1 passes, which is the UAS core's duty in §13.3.1.4, kept here beside the
  other timers so the B2BUA does not need its own clock.
- non-INVITE server (§17.2.2): Timer J keeps the last response for request retransmissions.

Memory: a transaction outlives its call by up to 32 s (Timers D, J, L, M), so at hundreds of
calls a second most live transactions are in a waiting state. Once one only absorbs or
answers retransmissions, it lets go of its parsed request and keeps the bytes it resends
(`_settle`): thousands of parsed messages kept for nothing made every full garbage
collection long (a pause that delays every call behind it).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from enum import Enum

import msgspec

from .build import MAGIC_COOKIE, make_response, new_branch, new_tag
from .errors import TransactionError
from .message import Headers, Request, Response, Via, parse_via, split_list


class Target(msgspec.Struct, frozen=True):
    """Where a message goes or came from: transport (UDP/TCP/TLS), host and port."""

    transport: str
    host: str
    port: int


def bare_host(host: str) -> str:
    """IPv6 references lose their brackets for socket calls ("[::1]" -> "::1")."""
    return host[1:-1] if host.startswith("[") else host


def hostport(host: str, port: int) -> str:
    """host:port with IPv6 bracketed, as in a Via sent-by or a URI."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class SendMessage(msgspec.Struct, frozen=True):
    data: bytes
    target: Target


class RequestReceived(msgspec.Struct, frozen=True):
    """A new request for the TU. For CANCEL, `cancelled` names the INVITE server transaction
    it matches (RFC 3261 §9.2), or is None when there is none (answer 481)."""

    request: Request
    source: Target
    key: tuple
    cancelled: tuple | None = None


class AckReceived(msgspec.Struct, frozen=True):
    """An ACK for a 2xx (its own transaction-less request, §17.1.1.3)."""

    request: Request
    source: Target


class ResponseReceived(msgspec.Struct, frozen=True):
    response: Response
    key: tuple
    retransmission: bool = False


class TransactionTimeout(msgspec.Struct, frozen=True):
    """Timer B or F fired: the TU treats it as a 408 (§8.1.3.1)."""

    key: tuple
    request: Request


class AckTimeout(msgspec.Struct, frozen=True):
    """A 2xx to an INVITE was never acknowledged within 64*T1 (§13.3.1.4): send BYE."""

    key: tuple
    request: Request


class TransportError(msgspec.Struct, frozen=True):
    """The request could not be sent (TCP connect refused …): §8.1.3.1 treats it as a 503."""

    key: tuple
    request: Request


Event = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | TransactionTimeout
    | AckTimeout
    | TransportError
)

# RFC 3261 §18.1.1: a request larger than this goes over TCP when UDP was chosen.
UDP_MAX_REQUEST = 1300


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Timers(msgspec.Struct):
    """RFC 3261 §17.1.1.1 timer values, in seconds."""

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0


class _Transaction:
    __slots__ = (
        "key",
        "request",
        "target",
        "reliable",
        "state",
        "last_data",
        "interval",
        "deadlines",
        "ack_key",
        "source_host",
        "to_tags",
    )

    def __init__(self, key: tuple, request: Request, target: Target, state: State) -> None:
        self.key = key
        # None once only retransmissions can still arrive (`_settle`): nothing reads it then.
        self.request: Request | None = request
        self.target = target
        self.reliable = target.transport != "UDP"
        self.state = state
        self.last_data = b""
        self.interval = 0.0
        self.deadlines: dict[str, float] = {}
        self.ack_key: tuple | None = None
        self.source_host = target.host
        self.to_tags: set[str | None] | None = None  # To tags of 2xx seen (INVITE client)


def _settle(txn: _Transaction, keep_data: bool) -> None:
    """`txn` now only waits out a timer: drop its parsed request (and, when nothing will be
    resent, its last bytes)."""
    txn.request = None
    if not keep_data:
        txn.last_data = b""


def _request(txn: _Transaction) -> Request:
    """The request of a transaction still in progress (its states before `_settle`)."""
    request = txn.request
    assert request is not None, f"transaction {txn.key} has settled"
    return request


class TransactionLayer:
    """All client and server transactions of one node."""

    def __init__(
        self,
        sent_by: dict[str, str],
        timers: Timers | None = None,
        max_server_per_source: int = 0,
        limit_exempt: Callable[[str], bool] | None = None,
        max_server_total: int = 0,
        trusted: Callable[[str], bool] | None = None,
    ) -> None:
        """`sent_by` maps a transport name ("UDP", "TCP"; "UDP6", "TCP6" for IPv6 peers) to
        the host:port put in our Via headers.

        Overload (SIP-8): a source holding `max_server_per_source` server transactions gets
        503 for more (`limit_exempt` sources, the trunks, never do). In all, at most
        `max_server_total` server transactions live; sources that are not `trusted` (trunks
        and registered phones) are refused once half of that is in use, so a flood from
        strangers leaves the other half to the calls that matter. Refusals are stateless
        (one 503 per request, nothing kept). 0 means no limit."""
        self.sent_by = sent_by
        self.timers = timers or Timers()
        self.max_server_per_source = max_server_per_source
        # Sources the per-source cap does not apply to (trunks carry every caller's traffic).
        self.limit_exempt = limit_exempt or (lambda host: False)
        self.max_server_total = max_server_total
        self.trusted = trusted or self.limit_exempt
        self.outbox: list[SendMessage] = []
        self._client: dict[tuple, _Transaction] = {}
        self._server: dict[tuple, _Transaction] = {}
        self._accepted: dict[tuple, _Transaction] = {}  # (call-id, cseq) -> INVITE server
        self._per_source: dict[str, int] = {}
        self._heap: list[tuple[float, int, tuple, str, bool]] = []
        self._seq = itertools.count()
        self.counters = {"retransmissions": 0, "rejected_overload": 0, "stray_responses": 0}

    # --- timers -------------------------------------------------------------------------
    def _arm(self, txn: _Transaction, name: str, when: float, client: bool) -> None:
        txn.deadlines[name] = when
        heapq.heappush(self._heap, (when, next(self._seq), txn.key, name, client))

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, key, name, client = heap[0]
            txn = (self._client if client else self._server).get(key)
            if txn is not None and txn.deadlines.get(name) == when:
                return when
            heapq.heappop(heap)  # stale entry
        return None

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, key, name, client = heapq.heappop(heap)
            txn = (self._client if client else self._server).get(key)
            if txn is None or txn.deadlines.get(name) != when:
                continue
            del txn.deadlines[name]
            getattr(self, f"_fire_{name}")(txn, now, events)
        return events

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    # --- sending requests ----------------------------------------------------------------
    def send_request(self, request: Request, target: Target, now: float) -> tuple:
        """Start a client transaction: add our Via with a fresh branch and send."""
        if request.method == "ACK":
            raise TransactionError("ACK for a 2xx is sent with send_ack(), not a transaction")
        branch = new_branch()
        request.headers.prepend("via", self._via(target, branch))
        data = request.to_bytes()
        if target.transport == "UDP" and len(data) > UDP_MAX_REQUEST:
            # RFC 3261 §18.1.1: too big for UDP without fragmentation risk -> TCP.
            target = Target("TCP", target.host, target.port)
            request.headers.pop_first("via")
            request.headers.prepend("via", self._via(target, branch))
            data = request.to_bytes()
        key = (branch, request.method)
        state = State.CALLING if request.method == "INVITE" else State.TRYING
        txn = _Transaction(key, request, target, state)
        txn.last_data = data
        self._client[key] = txn
        self.outbox.append(SendMessage(txn.last_data, target))
        T1 = self.timers.T1
        if request.method == "INVITE":
            if not txn.reliable:
                txn.interval = T1
                self._arm(txn, "timer_a", now + T1, True)
            self._arm(txn, "timer_b", now + 64 * T1, True)
        else:
            if not txn.reliable:
                txn.interval = T1
                self._arm(txn, "timer_e", now + T1, True)
            self._arm(txn, "timer_f", now + 64 * T1, True)
        return key

    def send_ack(self, ack: Request, target: Target) -> None:
        """Send an ACK for a 2xx end to end (§13.2.2.4): a new branch, no transaction."""
        ack.headers.remove("via")
        ack.headers.prepend("via", self._via(target, new_branch()))
        self.outbox.append(SendMessage(ack.to_bytes(), target))

    def send_cancel(self, invite_key: tuple, now: float) -> tuple | None:
        """CANCEL a pending INVITE client transaction (§9.1); None if nothing to cancel."""
        txn = self._client.get(invite_key)
        if txn is None or txn.state not in (State.CALLING, State.PROCEEDING):
            return None
        key = (invite_key[0], "CANCEL")
        if key in self._client:
            return None  # §9.1: one CANCEL per INVITE; its own transaction retransmits it
        inv = _request(txn)
        headers = Headers()
        headers.add("via", inv.headers.get_all("via")[0])
        for name in ("route", "from", "to", "call-id", "max-forwards"):
            for value in inv.headers.get_all(name):
                headers.add(name, value)
        headers.add("cseq", f"{inv.cseq[0]} CANCEL")
        cancel = Request("CANCEL", inv.uri, headers)
        ctxn = _Transaction(key, cancel, txn.target, State.TRYING)
        ctxn.last_data = cancel.to_bytes()
        self._client[key] = ctxn
        self.outbox.append(SendMessage(ctxn.last_data, txn.target))
        T1 = self.timers.T1
        if not ctxn.reliable:
            ctxn.interval = T1
            self._arm(ctxn, "timer_e", now + T1, True)
        self._arm(ctxn, "timer_f", now + 64 * T1, True)
        # FIX (helper review): RFC 3261 §9.1 — if the INVITE gets no final response within
        # 64*T1 of the CANCEL, the client transaction is destroyed (TU sees a timeout).
        self._arm(txn, "timer_b", now + 64 * T1, True)
        return key

    def transport_failed(self, target: Target, now: float) -> list[Event]:
        """Nothing can be sent to `target`: end its pending client transactions (§8.1.3.1)."""
        events: list[Event] = []
        for txn in list(self._client.values()):
            if txn.target == target and txn.state in (
                State.CALLING,
                State.TRYING,
                State.PROCEEDING,
            ):
                events.append(TransportError(txn.key, _request(txn)))
                self._terminate_client(txn)
        return events

    def _via(self, target: Target, branch: str) -> str:
        return f"SIP/2.0/{target.transport} {self.local_address(target)};branch={branch};rport"

    def local_address(self, target: Target) -> str:
        """Our host:port for messages to `target`: the IPv6 address for IPv6 peers."""
        sent_by = self.sent_by
        if ":" in target.host:
            found = sent_by.get(target.transport + "6")
            if found is not None:
                return found
        return sent_by.get(target.transport) or sent_by[next(iter(sent_by))]

    # --- receiving responses -------------------------------------------------------------
    def receive_response(self, response: Response, now: float) -> list[Event]:
        via_value = response.headers.get("via")
        if via_value is None:
            return []
        via = parse_via(split_list(via_value)[0])
        key = (via.branch, response.cseq[1])
        txn = self._client.get(key)
        if txn is None:
            self.counters["stray_responses"] += 1
            return []
        status = response.status
        if key[1] == "INVITE":
            return self._invite_client_response(txn, response, now)
        # non-INVITE client, §17.1.2.2
        if txn.state in (State.COMPLETED, State.TERMINATED):
            return []
        if status < 200:
            txn.state = State.PROCEEDING
            return [ResponseReceived(response, key)]
        txn.state = State.COMPLETED
        txn.deadlines.clear()
        if txn.reliable:
            self._terminate_client(txn)
        else:
            _settle(txn, keep_data=False)  # Timer K only absorbs response retransmissions
            self._arm(txn, "timer_k", now + self.timers.T4, True)
        return [ResponseReceived(response, key)]

    def _invite_client_response(
        self, txn: _Transaction, response: Response, now: float
    ) -> list[Event]:
        status = response.status
        key = txn.key
        if txn.state in (State.CALLING, State.PROCEEDING):
            if status < 200:
                if txn.state == State.CALLING:
                    # FIX (helper review): RFC 3261 §17.1.1.2 — Timer B only bounds the
                    # Calling state; a phone that rings longer than 64*T1 is not a timeout.
                    # The TU ends a long ring with CANCEL, which re-arms B (send_cancel).
                    txn.deadlines.pop("timer_b", None)
                txn.state = State.PROCEEDING
                txn.deadlines.pop("timer_a", None)
                return [ResponseReceived(response, key)]
            txn.deadlines.clear()
            if status < 300:
                # RFC 6026 §7.2: Accepted, pass 2xx (also forked ones) up for Timer M.
                txn.state = State.ACCEPTED
                txn.to_tags = {response.to.tag}
                _settle(txn, keep_data=False)  # the TU ACKs 2xx retransmissions itself
                self._arm(txn, "timer_m", now + 64 * self.timers.T1, True)
                return [ResponseReceived(response, key)]
            txn.state = State.COMPLETED
            txn.last_data = self._ack_for(_request(txn), response).to_bytes()
            self.outbox.append(SendMessage(txn.last_data, txn.target))
            if txn.reliable:
                self._terminate_client(txn)
            else:
                _settle(txn, keep_data=True)  # the ACK is resent to a retransmitted final
                self._arm(txn, "timer_d", now + 32.0, True)
            return [ResponseReceived(response, key)]
        if txn.state == State.ACCEPTED and 200 <= status < 300:
            # FIX (helper review): a 2xx with a new To tag comes from another fork (§13.2.2.4,
            # RFC 6026 §7.2) and is not a retransmission; both reach the TU either way.
            to_tag = response.to.tag
            tags = txn.to_tags
            assert tags is not None  # set on entering Accepted
            seen = to_tag in tags
            tags.add(to_tag)
            return [ResponseReceived(response, key, retransmission=seen)]
        if txn.state == State.COMPLETED and status >= 300:
            self.counters["retransmissions"] += 1
            self.outbox.append(SendMessage(txn.last_data, txn.target))  # re-ACK, §17.1.1.2
        return []

    @staticmethod
    def _ack_for(invite: Request, response: Response) -> Request:
        """ACK for a non-2xx final response, §17.1.1.3."""
        headers = Headers()
        headers.add("via", invite.headers.get_all("via")[0])
        for name in ("route", "from", "call-id", "max-forwards"):
            for value in invite.headers.get_all(name):
                headers.add(name, value)
        headers.add("to", response.headers.get("to") or "")
        headers.add("cseq", f"{invite.cseq[0]} ACK")
        return Request("ACK", invite.uri, headers)

    def _terminate_client(self, txn: _Transaction) -> None:
        txn.state = State.TERMINATED
        txn.deadlines.clear()
        self._client.pop(txn.key, None)

    # client timers ------------------------------------------------------------------------
    def _retransmit(self, txn: _Transaction, name: str, now: float, cap: float | None) -> None:
        self.counters["retransmissions"] += 1
        self.outbox.append(SendMessage(txn.last_data, txn.target))
        txn.interval = txn.interval * 2 if cap is None else min(txn.interval * 2, cap)
        self._arm(txn, name, now + txn.interval, name not in ("timer_g", "timer_2xx"))

    def _fire_timer_a(self, txn: _Transaction, now: float, events: list) -> None:
        if txn.state == State.CALLING:
            self._retransmit(txn, "timer_a", now, None)

    def _fire_timer_b(self, txn: _Transaction, now: float, events: list) -> None:
        if txn.state == State.CALLING or txn.state == State.PROCEEDING:
            events.append(TransactionTimeout(txn.key, _request(txn)))
        self._terminate_client(txn)

    def _fire_timer_d(self, txn: _Transaction, now: float, events: list) -> None:
        self._terminate_client(txn)

    def _fire_timer_m(self, txn: _Transaction, now: float, events: list) -> None:
        self._terminate_client(txn)

    def _fire_timer_e(self, txn: _Transaction, now: float, events: list) -> None:
        if txn.state == State.PROCEEDING:
            txn.interval = self.timers.T2 / 2  # §17.1.2.2: T2 once a provisional arrived
        if txn.state in (State.TRYING, State.PROCEEDING):
            self._retransmit(txn, "timer_e", now, self.timers.T2)

    def _fire_timer_f(self, txn: _Transaction, now: float, events: list) -> None:
        if txn.state in (State.TRYING, State.PROCEEDING):
            events.append(TransactionTimeout(txn.key, _request(txn)))
        self._terminate_client(txn)

    def _fire_timer_k(self, txn: _Transaction, now: float, events: list) -> None:
        self._terminate_client(txn)

    # --- receiving requests --------------------------------------------------------------
    def receive_request(self, request: Request, source: Target, now: float) -> list[Event]:
        """Match a request to a server transaction (§17.2.3) or start a new one."""
        via_values = request.headers.get_all("via")
        top_via_as_sent = via_values[0]
        via = parse_via(top_via_as_sent)
        # RFC 3581 §4 / RFC 3261 §18.2.1: record where the request really came from.
        via.params["received"] = source.host
        if "rport" in via.params:
            via.params["rport"] = str(source.port)
        via_values[0] = str(via)
        request.headers.remove("via")
        for value in via_values:
            request.headers.add("via", value)
        reply_to = self._reply_target(via, source)
        method = request.method
        branch_id = _branch_id(request, via.branch, top_via_as_sent)
        key = (branch_id, f"{via.host}:{via.port}", "INVITE" if method == "ACK" else method)
        txn = self._server.get(key)
        if method == "ACK":
            if txn is not None and txn.state in (State.COMPLETED, State.CONFIRMED):
                if txn.state == State.COMPLETED:
                    txn.state = State.CONFIRMED
                    txn.deadlines.clear()
                    if txn.reliable:
                        self._terminate_server(txn)
                    else:
                        self._arm(txn, "timer_i", now + self.timers.T4, False)
                return []  # ACK for a non-2xx is absorbed, §17.2.1
            accepted = self._accepted.get((request.call_id, request.cseq[0]))
            if accepted is not None:
                accepted.deadlines.pop("timer_2xx", None)
                accepted.deadlines.pop("timer_2xx_giveup", None)
                self._accepted.pop((request.call_id, request.cseq[0]), None)
                _settle(accepted, keep_data=True)  # a retransmitted INVITE still gets the 2xx
            return [AckReceived(request, source)]
        if txn is not None:
            # A retransmission: resend the last response if any (§17.2.1, §17.2.2).
            if txn.last_data and txn.state != State.TERMINATED:
                self.counters["retransmissions"] += 1
                self.outbox.append(SendMessage(txn.last_data, txn.target))
            return []
        if self._overloaded(source.host):
            # SIP-8: a flood is refused before the TU sees it, statelessly.
            self.counters["rejected_overload"] += 1
            # FIX (helper review): a final response needs a To tag (§8.2.6.2).
            busy = make_response(request, 503, to_tag=new_tag(), extra=[("retry-after", "5")])
            self.outbox.append(SendMessage(busy.to_bytes(), reply_to))
            return []
        if method == "INVITE":
            txn = _Transaction(key, request, reply_to, State.PROCEEDING)
            self._add_server(txn, source.host)
            # §17.2.1: 100 Trying at once, so the client's Timer A stops.
            self._send_server(txn, make_response(request, 100), now)
            return [RequestReceived(request, source, key)]
        txn = _Transaction(key, request, reply_to, State.TRYING)
        self._add_server(txn, source.host)
        cancelled = None
        if method == "CANCEL":
            inv_key = (branch_id, f"{via.host}:{via.port}", "INVITE")
            if inv_key in self._server:
                cancelled = inv_key  # matched even if already answered (§9.2: then no effect)
        return [RequestReceived(request, source, key, cancelled)]

    @staticmethod
    def _reply_target(via: Via, source: Target) -> Target:
        """§18.2.2 with RFC 3581: reply to the source address; the port from rport if asked."""
        if source.transport != "UDP" or "rport" in via.params:
            return source
        port = via.port or 5060
        return Target(source.transport, source.host, port)

    def _overloaded(self, host: str) -> bool:
        """Whether a new server transaction from `host` would exceed a limit."""
        total = self.max_server_total
        if total and len(self._server) >= total:
            return True
        exempt = self.limit_exempt(host)
        if self.max_server_per_source and not exempt:
            if self._per_source.get(host, 0) >= self.max_server_per_source:
                return True
        return bool(total) and len(self._server) * 2 >= total and not self.trusted(host)

    @property
    def server_transactions(self) -> int:
        """Live server transactions (for limits, metrics and tests)."""
        return len(self._server)

    def _add_server(self, txn: _Transaction, host: str) -> None:
        self._server[txn.key] = txn
        txn.source_host = host
        self._per_source[host] = self._per_source.get(host, 0) + 1

    def _terminate_server(self, txn: _Transaction) -> None:
        txn.state = State.TERMINATED
        txn.deadlines.clear()
        if self._server.pop(txn.key, None) is not None:
            source_host = txn.source_host
            left = self._per_source.get(source_host, 1) - 1
            if left > 0:
                self._per_source[source_host] = left
            else:
                self._per_source.pop(source_host, None)
        if txn.ack_key is not None:
            self._accepted.pop(txn.ack_key, None)

    def server_request(self, key: tuple) -> Request | None:
        txn = self._server.get(key)
        return txn.request if txn is not None else None

    def client_state(self, key: tuple) -> State | None:
        txn = self._client.get(key)
        return txn.state if txn is not None else None

    def server_state(self, key: tuple) -> State | None:
        txn = self._server.get(key)
        return txn.state if txn is not None else None

    def send_response(self, key: tuple, response: Response, now: float) -> None:
        """Send a response in a server transaction. Raises TransactionError if it is over."""
        txn = self._server.get(key)
        if txn is None:
            raise TransactionError(f"no server transaction {key}")
        if txn.state not in (State.TRYING, State.PROCEEDING):
            if txn.state == State.ACCEPTED and 200 <= response.status < 300:
                # Another 2xx retransmitted by the TU is passed through (RFC 6026 §7.1).
                self.outbox.append(SendMessage(response.to_bytes(), txn.target))
                return
            raise TransactionError(f"transaction {key} is {txn.state.value}; cannot respond")
        self._send_server(txn, response, now)

    def _send_server(self, txn: _Transaction, response: Response, now: float) -> None:
        data = response.to_bytes()
        txn.last_data = data
        self.outbox.append(SendMessage(data, txn.target))
        status = response.status
        if status < 200:
            if txn.state == State.TRYING:
                txn.state = State.PROCEEDING
            return
        T1 = self.timers.T1
        if txn.key[2] != "INVITE":
            txn.state = State.COMPLETED
            if txn.reliable:
                self._terminate_server(txn)
            else:
                _settle(txn, keep_data=True)  # Timer J resends the final to retransmissions
                self._arm(txn, "timer_j", now + 64 * T1, False)
            return
        if status < 300:
            # RFC 6026 §7.1: Accepted; §13.3.1.4: retransmit the 2xx until the ACK.
            txn.state = State.ACCEPTED
            request = _request(txn)
            txn.ack_key = (request.call_id, request.cseq[0])
            self._accepted[txn.ack_key] = txn
            # armed before Timer L so that, firing at the same instant, it is seen first
            self._arm(txn, "timer_2xx_giveup", now + 64 * T1, False)
            self._arm(txn, "timer_l", now + 64 * T1, False)
            if not txn.reliable:
                txn.interval = T1
                self._arm(txn, "timer_2xx", now + T1, False)
            return
        txn.state = State.COMPLETED
        _settle(txn, keep_data=True)  # Timer G resends the final until the ACK
        if not txn.reliable:
            txn.interval = T1
            self._arm(txn, "timer_g", now + T1, False)
        self._arm(txn, "timer_h", now + 64 * T1, False)

    # server timers ------------------------------------------------------------------------
    def _fire_timer_g(self, txn: _Transaction, now: float, events: list) -> None:
        if txn.state == State.COMPLETED:
            self._retransmit(txn, "timer_g", now, self.timers.T2)

    def _fire_timer_h(self, txn: _Transaction, now: float, events: list) -> None:
        self._terminate_server(txn)  # no ACK came; §17.2.1 says inform the TU: nothing to do

    def _fire_timer_i(self, txn: _Transaction, now: float, events: list) -> None:
        self._terminate_server(txn)

    def _fire_timer_j(self, txn: _Transaction, now: float, events: list) -> None:
        self._terminate_server(txn)

    def _fire_timer_l(self, txn: _Transaction, now: float, events: list) -> None:
        self._terminate_server(txn)

    def _fire_timer_2xx(self, txn: _Transaction, now: float, events: list) -> None:
        if txn.ack_key is not None and txn.ack_key in self._accepted:
            self._retransmit(txn, "timer_2xx", now, self.timers.T2)

    def _fire_timer_2xx_giveup(self, txn: _Transaction, now: float, events: list) -> None:
        if txn.ack_key is not None and self._accepted.pop(txn.ack_key, None) is not None:
            txn.deadlines.pop("timer_2xx", None)
            events.append(AckTimeout(txn.key, _request(txn)))
            _settle(txn, keep_data=True)


def _branch_id(request: Request, branch: str | None, top_via: str) -> str:
    """The branch, or for an RFC 2543 client (no magic cookie) a stand-in built from what
    §17.2.3 matches on: Request-URI, From tag, Call-ID, CSeq number and the top Via.

    FIX (helper review): keying such requests by their (absent or non-unique) branch alone
    made every branchless request from one host look like a retransmission of the first.
    The To tag is left out so the ACK for a non-2xx still matches its INVITE.
    """
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return branch
    from_tag = request.from_.tag
    return f"2543|{request.uri}|{from_tag}|{request.call_id}|{request.cseq[0]}|{top_via}"
