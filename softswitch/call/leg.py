"""A leg: one SIP dialog endpoint of a session, UAS (`in`) or UAC (`out`), and its states.

The state is a table (STYLE §2): `LEG_TRANSITIONS[(state, event)] -> state`. Anything else is
an `IllegalLegTransition`, which call control logs and answers as a state mismatch between
the network and the call (never a lost call). `format_leg_table()` prints it.

    new ──provisional──▶ early ──answer──▶ answered ⇄ held
     │  (UAC: invite_sent → calling)  │          │
     └──reject / remote_cancel──▶ failed       bye_sent → ending → ended
    calling/early ──cancel──▶ cancelling ──rejected──▶ failed
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from softswitch.call.errors import IllegalLegTransition

if TYPE_CHECKING:
    from media import MediaEngine
    from softswitch.sip.dialog import Dialog
    from softswitch.sip.message import Request, Response
    from softswitch.sip.transaction import Target


class LegState(enum.Enum):
    NEW = "new"  # UAS: INVITE received; UAC: built, not sent
    CALLING = "calling"  # UAC: INVITE sent, nothing heard yet
    EARLY = "early"  # a provisional response sent (UAS) or received (UAC)
    CANCELLING = "cancelling"  # UAC: we gave up before an answer (CANCEL sent or owed)
    ANSWERED = "answered"
    HELD = "held"  # answered; the far end put its media on hold (sendonly/inactive)
    ENDING = "ending"  # BYE sent, its answer not yet in
    FAILED = "failed"  # never answered: refused, cancelled, timed out
    ENDED = "ended"


class LegEvent(enum.Enum):
    INVITE_SENT = "invite_sent"
    PROVISIONAL = "provisional"
    ANSWER = "answer"
    HOLD = "hold"
    RESUME = "resume"
    CANCEL = "cancel"  # we stop an outbound leg before its answer
    REJECTED = "rejected"  # a final failure: ≥ 300 sent (UAS) or received (UAC), a timeout
    REMOTE_CANCEL = "remote_cancel"  # the caller's CANCEL, or BYE in the early dialog
    BYE_SENT = "bye_sent"
    REMOTE_BYE = "remote_bye"
    BYE_DONE = "bye_done"  # the answer to our BYE (or its timeout)
    RELEASE = "release"  # the session ends: whatever is left is over


_S, _E = LegState, LegEvent
_UP = (_S.ANSWERED, _S.HELD)
_FINAL = (_S.FAILED, _S.ENDED)

LEG_TRANSITIONS: dict[tuple[LegState, LegEvent], LegState] = {
    (_S.NEW, _E.INVITE_SENT): _S.CALLING,
    (_S.NEW, _E.PROVISIONAL): _S.EARLY,
    (_S.NEW, _E.ANSWER): _S.ANSWERED,
    (_S.NEW, _E.REJECTED): _S.FAILED,
    (_S.NEW, _E.REMOTE_CANCEL): _S.FAILED,
    (_S.CALLING, _E.PROVISIONAL): _S.EARLY,
    (_S.CALLING, _E.ANSWER): _S.ANSWERED,
    (_S.CALLING, _E.REJECTED): _S.FAILED,
    (_S.CALLING, _E.CANCEL): _S.CANCELLING,
    (_S.EARLY, _E.PROVISIONAL): _S.EARLY,
    (_S.EARLY, _E.ANSWER): _S.ANSWERED,
    (_S.EARLY, _E.REJECTED): _S.FAILED,
    (_S.EARLY, _E.CANCEL): _S.CANCELLING,
    (_S.EARLY, _E.REMOTE_CANCEL): _S.FAILED,
    (_S.CANCELLING, _E.PROVISIONAL): _S.CANCELLING,
    (_S.CANCELLING, _E.CANCEL): _S.CANCELLING,
    (_S.CANCELLING, _E.REJECTED): _S.FAILED,
    # A 2xx that crossed our CANCEL: the dialog exists and is hung up at once (§9.1).
    (_S.CANCELLING, _E.ANSWER): _S.ENDING,
    (_S.ANSWERED, _E.HOLD): _S.HELD,
    (_S.ANSWERED, _E.RESUME): _S.ANSWERED,
    (_S.HELD, _E.HOLD): _S.HELD,
    (_S.HELD, _E.RESUME): _S.ANSWERED,
    (_S.ENDING, _E.BYE_DONE): _S.ENDED,
    (_S.ENDING, _E.REMOTE_BYE): _S.ENDED,  # BYEs crossed
}
for _up in _UP:
    LEG_TRANSITIONS[(_up, _E.BYE_SENT)] = _S.ENDING
    LEG_TRANSITIONS[(_up, _E.REMOTE_BYE)] = _S.ENDED
for _state in _S:
    if _state not in _FINAL:
        LEG_TRANSITIONS[(_state, _E.RELEASE)] = (
            _S.ENDED if _state in (*_UP, _S.ENDING) else _S.FAILED
        )
    else:
        LEG_TRANSITIONS[(_state, _E.RELEASE)] = _state


def next_leg_state(leg_id: str, state: LegState, event: LegEvent) -> LegState:
    try:
        return LEG_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalLegTransition(leg_id, state.value, event.value) from None


def format_leg_table() -> str:
    """The table as text, one transition a line (for docs and supervisors)."""
    return "\n".join(
        f"{state.value:<11} --{event.value:>13}--> {new.value}"
        for (state, event), new in LEG_TRANSITIONS.items()
    )


class Leg:
    """One side of a session: its dialog (once known), where to send, its media."""

    __slots__ = (
        "leg_id",
        "direction",
        "state",
        "target",
        "dialog",
        "invite",
        "invite_key",
        "provisional",
        "agent_id",
        "got_provisional",
        "cancel_sent",
        "ack",
        "media",
        "anchored",
        "peer",
        "plays",
        "recording",
        "sdp",
        "offer",
        "codec",
        "stopped",
        "reliable",
        "timer",
        "early",
        "rack",
        "attempts",
        "forks",
        "refusal",
    )

    def __init__(self, leg_id: str, direction: str, target: Target, media: MediaEngine) -> None:
        self.leg_id = leg_id
        self.direction = direction
        self.state = LegState.NEW
        self.target = target
        self.dialog: Dialog | None = None
        self.invite: Request | None = None
        self.invite_key: tuple | None = None
        # UAS: the last provisional sent to its INVITE, sent again while it waits (§13.3.1.1)
        self.provisional: Response | None = None
        self.agent_id: str | None = None
        self.got_provisional = False
        self.cancel_sent = False
        self.ack: Request | None = None
        self.media = media
        # True: negotiated with the node's own anchor (answer_local/offer_local); False: SDP
        # passes to the bridged leg unchanged (direct_media two-party calls, or no anchor).
        self.anchored = False
        self.peer: Leg | None = None  # the leg it is bridged to
        self.plays: dict[int, str] = {}  # last item id of a Play -> its tag
        # (tap id, sink, the Record action) while the party's voice is being recorded
        self.recording: tuple[str, Any, Any] | None = None
        self.sdp = b""  # the last SDP its party sent us
        self.offer: Any = None  # its INVITE's SDP as the anchor read it (media.read_offer)
        self.codec: int | None = None  # the G.711 payload type its party chose
        self.stopped = False  # its end (and why) is published
        # RFC 3262 / 4028 (softswitch/call/extensions.py): a caller leg's reliable
        # provisionals and session timer; an outbound leg's early dialog and last RSeq
        self.reliable: Any = None
        self.timer: Any = None
        self.early: Dialog | None = None
        self.rack: int | None = None
        self.attempts: Any = None  # an external number's routes (softswitch/call/failover.py)
        self.forks: list[Any] = []  # the agent's other devices rung (softswitch/call/forking.py)
        self.refusal: int | None = None  # the most telling refusal of its devices so far

    def to(self, event: LegEvent) -> LegState:
        """Apply `event` (raises `IllegalLegTransition`); returns the new state."""
        self.state = next_leg_state(self.leg_id, self.state, event)
        return self.state

    @property
    def up(self) -> bool:
        """Answered (held or not): media and in-dialog requests flow."""
        return self.state in _UP

    @property
    def over(self) -> bool:
        """Nothing more will happen on this leg (BYE sent, refused, cancelled, ended)."""
        return self.state in (LegState.ENDING, LegState.FAILED, LegState.ENDED, LegState.CANCELLING)

    @property
    def pending(self) -> bool:
        """An outbound leg still ringing (no answer yet, not given up)."""
        return self.state in (LegState.NEW, LegState.CALLING, LegState.EARLY)
