"""Calls in queues: the call state table and the per-queue ordered indexes.

Each queue keeps two sorted lists, maintained with `bisect` so that the hot decisions do not scan
every agent or call:

- `idle`: the sort keys of its IDLE agents in the order its strategy prefers them —
  ``(idle_since, agent_id)`` for longest idle (SPEC ACD-1), ``(-skill score, idle_since,
  agent_id)`` for skills, ``(answered calls, idle_since, agent_id)`` for fewest calls; the
  first entry eligible for a call (see `CallRecord.eligible`) is the agent to offer it to.
  Round robin and random use the same index as longest idle and choose in the engine.
- `waiting`: ``(-priority, seq, call_id)`` of its calls not being offered — higher priority
  first, then enqueue order (`seq`, global across queues, so an agent serving several queues
  compares the heads by waiting time).
- `ringing_all`: the same keys of its ring-all calls while they ring: they are still open to
  an agent that becomes idle (`CallRecord.open`), but no longer ahead of a waiting caller
  (positions count `waiting` only, as for a call ringing one agent).

A call put back after a failed offer keeps its `seq`, so it returns to the head (SPEC ACD-4),
ahead of every call that arrived after it. It does not jump over a call that has waited longer:
within one queue and priority such a call cannot exist unless it too was offered and put back
(a call is offered before any later one while it has an eligible agent), so this is the head;
across the queues of a multi-queue agent, the longest-waiting call goes first.
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections import deque
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from acd.spec import QueueSpec
from acd.table import format_table, lookup

#: Answered calls whose waits make a queue's expected wait (announcements).
RECENT_WAITS = 20
#: Calls are counted as answered in time within this many seconds (SPEC RPT-3: three rings).
SERVICE_LEVEL_SECONDS = 15.0
#: Callers who hang up within this many seconds of entering are left out of the human
#: answer rate (SPEC RPT-3).
SHORT_ABANDON_SECONDS = 20.0
KPI_COUNTS = (
    "entered", "answered", "answered_in_time", "abandoned", "abandoned_short", "callbacks",
    "callbacks_short", "overflowed",
)  # fmt: skip


class CallState(enum.Enum):
    """Where a call is in the ACD. ENDED, ABANDONED and TIMED_OUT are final: the engine forgets
    the call after reaching one of them."""

    WAITING = "waiting"
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"
    ABANDONED = "abandoned"
    TIMED_OUT = "timed_out"


class CallEvent(enum.Enum):
    """Inputs of the call state machine."""

    OFFER = "offer"
    RING_TIMEOUT = "ring_timeout"
    REJECT = "reject"
    AGENT_GONE = "agent_gone"
    ANSWER = "answer"
    ABANDON = "abandon"
    MAX_WAIT = "max_wait"
    END = "end"
    PICKUP = "pickup"  # an agent it does not ring picks it up


_C = CallState
_V = CallEvent

CALL_TRANSITIONS: Mapping[tuple[CallState, CallEvent], CallState] = MappingProxyType(
    {
        (_C.WAITING, _V.OFFER): _C.RINGING,
        # ring_all: another agent rings too. A failed ring (no answer, reject, agent gone)
        # takes a call back to WAITING only when it was the last ring.
        (_C.RINGING, _V.OFFER): _C.RINGING,
        (_C.WAITING, _V.ABANDON): _C.ABANDONED,
        (_C.WAITING, _V.MAX_WAIT): _C.TIMED_OUT,
        (_C.RINGING, _V.RING_TIMEOUT): _C.WAITING,
        (_C.RINGING, _V.REJECT): _C.WAITING,
        (_C.RINGING, _V.AGENT_GONE): _C.WAITING,
        (_C.RINGING, _V.ANSWER): _C.CONNECTED,
        (_C.RINGING, _V.ABANDON): _C.ABANDONED,
        (_C.RINGING, _V.MAX_WAIT): _C.TIMED_OUT,
        (_C.RINGING, _V.PICKUP): _C.CONNECTED,
        (_C.CONNECTED, _V.END): _C.ENDED,
    }
)


def next_call_state(call_id: str, state: CallState, event: CallEvent) -> CallState:
    """The state `event` leads to; raises `IllegalTransition` if the table has no entry."""
    return lookup(CALL_TRANSITIONS, "call", call_id, state, event)


def format_call_table() -> str:
    """The call transition table as text, for supervisors and docs."""
    return format_table(CALL_TRANSITIONS, CallState, CallEvent)


class CallRecord:
    """The engine's mutable record of one call (internal).

    `spec` is the queue spec captured at enqueue: a reload does not change the ring timeout,
    max wait, wrap-up or retry of a call already in progress (STYLE §4). `tried` maps each agent
    whose offer of this call failed (no answer, reject) to the end of its retry window — the
    time from which it is eligible for the call again — and the engine step (one public input)
    of that failure: the agent is never re-offered the call within the same step, even with
    `retry` = 0. It holds at most one entry per agent that ever failed the call, so it stays
    small.

    `rings` maps each agent being offered the call to when that offer began and its serial
    (one entry, or several for a ring-all call); `agent_id` is the agent connected with the
    call once one answered. `directed` is the one agent a call for a named agent may go to
    (`Acd.enqueue(agent=…)`), None for a call any agent of the queue may take. `serial` tells
    this call apart from a later one reusing its id, an offer's serial one offer from the next
    (stale timers are recognised by them).
    """

    __slots__ = (
        "call_id",
        "queue",
        "spec",
        "priority",
        "enqueued_at",
        "seq",
        "serial",
        "state",
        "key",
        "agent_id",
        "rings",
        "attempts",
        "tried",
        "connected_at",
        "region",
        "preferred",
        "directed",
    )

    def __init__(
        self,
        call_id: str,
        spec: QueueSpec,
        priority: int,
        enqueued_at: float,
        seq: int,
        serial: int,
        region: str | None = None,
        preferred: str | None = None,
        directed: str | None = None,
    ) -> None:
        self.call_id = call_id
        self.queue = spec.name
        self.spec = spec
        self.priority = priority
        self.enqueued_at = enqueued_at
        self.seq = seq
        self.serial = serial
        self.state = CallState.WAITING
        self.key: tuple[int, int, str] = (-priority, seq, call_id)
        self.agent_id: str | None = None  # the agent connected with the call
        self.rings: dict[str, tuple[float, int]] = {}  # agent -> (offered at, offer serial)
        self.attempts = 0
        self.tried: dict[str, tuple[float, int]] = {}  # agent -> (window end, failure step)
        self.connected_at = 0.0
        self.region = region  # the caller's region, for the queue's region preference
        self.preferred = preferred  # the agent who served the caller last (sticky agent)
        self.directed = directed  # the only agent that may take the call (None: any)

    @property
    def ring_all(self) -> bool:
        """Whether the call rings every idle agent that may take it at once (its queue's
        strategy when it was enqueued; a call for one named agent never does)."""
        return self.spec.strategy == "ring_all" and self.directed is None

    @property
    def open(self) -> bool:
        """Whether an idle agent may be offered the call now: it waits, or it is a ring-all
        call ringing others: the calls in their queue's `waiting` and `ringing_all`."""
        return self.state is CallState.WAITING or (
            self.state is CallState.RINGING and self.ring_all
        )

    @property
    def widen_at(self) -> float:
        """When the last of its sticky and region windows ends (enqueue time if none)."""
        spec = self.spec
        sticky = spec.sticky_wait if self.preferred is not None else 0.0
        region = spec.region_wait if self.region is not None else 0.0
        return self.enqueued_at + max(sticky, region)

    def record_failure(self, agent_id: str, until: float, step: int) -> None:
        """The offer to `agent_id` failed in engine step `step`: it is not eligible for this
        call before `until`, and never again within `step`."""
        self.tried[agent_id] = (until, step)

    def eligible(self, agent_id: str, now: float, step: int) -> bool:
        """May `agent_id` (idle, a member of the queue) be offered this call at `now` in
        engine step `step`? Yes unless its retry window for the call is still open, or it
        failed the call in this very step."""
        failure = self.tried.get(agent_id)
        if failure is None:
            return True
        until, failed_step = failure
        return until <= now and step != failed_step


class QueueRecord:
    """One queue at run time (internal): its spec, members and ordered indexes.

    `calls` holds the queue's calls that are waiting or ringing; connected calls have left the
    queue. A queue removed by a reload while it still holds calls is `draining`: it takes no new
    calls and disappears when the last one leaves.
    """

    __slots__ = (
        "name", "spec", "draining", "members", "idle", "idle_keys", "waiting", "ringing_all",
        "calls",
        "scores", "regions", "rr_last", "order", "logged_in", "recent_waits", "counts",
    )  # fmt: skip

    def __init__(self, spec: QueueSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self.draining = False
        self.members: dict[str, None] = {}  # in configuration order (round robin's order)
        self.idle: list[tuple] = []
        self.idle_keys: dict[str, tuple] = {}  # agent id -> its key in `idle`
        self.waiting: list[tuple[int, int, str]] = []
        self.ringing_all: list[tuple[int, int, str]] = []  # ring-all calls ringing
        self.calls: dict[str, CallRecord] = {}
        self.scores: dict[str, int] = {}  # agent id -> skill score here (strategy skills)
        self.regions: dict[str, int] = {}  # region -> members of it logged in
        self.logged_in = 0  # members not logged out
        self.recent_waits: deque[float] = deque(maxlen=RECENT_WAITS)  # of answered calls
        # KPI counts since the engine started (`acd.events.QueueKpis`); kept across reloads
        self.counts = dict.fromkeys(KPI_COUNTS, 0)
        self.rr_last: str | None = None  # round robin: the agent last offered a call
        # `members` as a tuple and agent id -> index (round robin); None when members changed
        self.order: tuple[tuple[str, ...], dict[str, int]] | None = None

    def add_member(self, agent_id: str, score: int) -> None:
        """`agent_id` serves the queue, with its skill score here (strategy skills)."""
        self.members[agent_id] = None
        self.scores[agent_id] = score
        self.order = None

    def member_order(self) -> tuple[tuple[str, ...], dict[str, int]]:
        """The members in configuration order and each one's index in it (cached until the
        engine changes the members and clears `order`)."""
        if self.order is None:
            members = tuple(self.members)
            self.order = (members, {agent_id: i for i, agent_id in enumerate(members)})
        return self.order

    # -- idle agents -------------------------------------------------------------------------

    def add_idle(self, agent_id: str, idle_since: float, answered: int) -> None:
        strategy = self.spec.strategy
        key: tuple
        if strategy == "skills":
            key = (-self.scores.get(agent_id, 0), idle_since, agent_id)
        elif strategy == "fewest_calls":
            key = (answered, idle_since, agent_id)
        else:
            key = (idle_since, agent_id)
        self.idle_keys[agent_id] = key
        bisect.insort(self.idle, key)

    def remove_idle(self, agent_id: str) -> None:
        key = self.idle_keys.pop(agent_id, None)
        i = bisect.bisect_left(self.idle, key) if key is not None else len(self.idle)
        if i == len(self.idle) or self.idle[i] != key:
            raise RuntimeError(f"queue {self.name!r}: idle index lost agent {agent_id!r}")
        del self.idle[i]

    # -- waiting calls -----------------------------------------------------------------------

    def add_waiting(self, call: CallRecord) -> int:
        """Insert `call` in order; return its 1-based position."""
        i = bisect.bisect_left(self.waiting, call.key)
        self.waiting.insert(i, call.key)
        return i + 1

    def position(self, call: CallRecord) -> int:
        """1-based place of a waiting `call` in the queue's order."""
        return bisect.bisect_left(self.waiting, call.key) + 1

    def remove_waiting(self, call: CallRecord) -> int:
        """Remove `call`; return the 1-based position it had."""
        return self._remove(self.waiting, "waiting", call) + 1

    def add_ringing_all(self, call: CallRecord) -> None:
        """A ring-all call rings its first agent: it stays open in `ringing_all`."""
        bisect.insort(self.ringing_all, call.key)

    def remove_ringing_all(self, call: CallRecord) -> None:
        self._remove(self.ringing_all, "ringing_all", call)

    def remove_open(self, call: CallRecord) -> int:
        """Take `call` out of whichever index holds it (it leaves the queue or is answered):
        the 1-based position it had if it waited, else 0."""
        if call.state is CallState.WAITING:
            return self.remove_waiting(call)
        if call.open:
            self.remove_ringing_all(call)
        return 0

    def open_keys(self) -> Iterator[tuple[int, int, str]]:
        """The keys of the open calls (waiting, and ring-all calls ringing) in order."""
        return heapq.merge(self.waiting, self.ringing_all)

    def _remove(self, index: list[tuple[int, int, str]], what: str, call: CallRecord) -> int:
        i = bisect.bisect_left(index, call.key)
        if i == len(index) or index[i] != call.key:
            raise RuntimeError(f"queue {self.name!r}: {what} index lost call {call.call_id!r}")
        del index[i]
        return i
