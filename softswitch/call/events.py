"""Events: what applications are told (`AppEvent`) and what the event bus carries (`BusEvent`).

Application events go to the one application in control of a session, with `now`; it answers
with actions (`softswitch.call.actions`). Bus events are published in order for every
subscriber — the CDR and queue-log writer first, later the recorder and the operations API;
each carries the call's associated data (`variables`) as it stood when the event happened.
"""

from __future__ import annotations

from typing import Any

import msgspec

# --------------------------------------------------------------------- application events


class Started(msgspec.Struct, frozen=True):
    """The application takes control of the session (first event it sees)."""


class LegRinging(msgspec.Struct, frozen=True):
    leg_id: str
    status: int


class LegAnswered(msgspec.Struct, frozen=True):
    leg_id: str


class LegFailed(msgspec.Struct, frozen=True):
    """An outbound leg ended before it was answered (busy, refused, no response …).
    `redirect`: the agent a phone's 3xx named, when it stays within the node (an
    application may follow it once; signalling.py)."""

    leg_id: str
    status: int
    reason: str
    redirect: str | None = None


class LegEnded(msgspec.Struct, frozen=True):
    """A leg that was up (or an inbound leg not yet answered) is gone; `side` is who ended
    it: "caller", "agent", "system"."""

    leg_id: str
    side: str
    status: int | None = None


class DigitReceived(msgspec.Struct, frozen=True):
    """A key on a leg: RFC 4733, in-band or SIP INFO (`source`)."""

    leg_id: str
    digit: str
    source: str


class PlaybackDone(msgspec.Struct, frozen=True):
    """The last item of a `Play` finished (`stopped`: cut short by a key, `StopPlay` …)."""

    leg_id: str
    tag: str
    stopped: bool


class RecordDone(msgspec.Struct, frozen=True):
    leg_id: str
    path: str
    seconds: float
    reason: str  # "stopped", "max", "silence", "hangup", "error"


class SpeechRecognized(msgspec.Struct, frozen=True):
    """A phrase recognised on a leg that is being listened to (`Listen`): the text, one of
    the grammar's words or "[unk]" for something else, and the recogniser's confidence."""

    leg_id: str
    text: str
    confidence: float


class TimerFired(msgspec.Struct, frozen=True):
    name: str


class ActionFailed(msgspec.Struct, frozen=True):
    """An action could not be carried out (e.g. the media engine refused a prompt);
    `action` is the action's class name ("Play", "Record", "Listen" …)."""

    action: str
    reason: str


# ACD → the queue application of the call (routed by call control).


class AgentOffered(msgspec.Struct, frozen=True):
    agent_id: str
    queue: str


class OfferWithdrawn(msgspec.Struct, frozen=True):
    agent_id: str
    reason: str


class QueueTimedOut(msgspec.Struct, frozen=True):
    """The call left `queue` without an agent: ``"max_wait"``, ``"full"``, ``"empty"`` or
    ``"agent_unavailable"`` (a call for one named agent who is not logged in; see
    `acd.QueueTimeout`); the queue application sends it to the queue's overflow."""

    queue: str
    waited: float
    reason: str = "max_wait"


class LegHeld(msgspec.Struct, frozen=True):
    """An agent's phone put its party on hold (`held`) or took it back; the node answered
    the phone itself and took the caller out of the bridge (or put it back), so the
    application may play music to the caller meanwhile."""

    leg_id: str
    held: bool


class TransferTarget(msgspec.Struct, frozen=True):
    """Where a transfer sends the caller, resolved by call control from a phone's
    Refer-To: `kind` is "queue", "agent" (one named agent, through its queue `queue`),
    "flow" (an IVR flow, `node` optional) or "number" (an external number through
    `trunk`)."""

    kind: str
    value: str
    queue: str | None = None
    node: str | None = None
    trunk: str | None = None


class TransferRequested(msgspec.Struct, frozen=True):
    """The agent of `leg_id` transferred the caller (a blind REFER the node accepted with
    202): the application settles its bookkeeping (the agent is done with the call) and
    hands the call on with `transfer_actions(target)`; call control then tells the phone
    the transfer went through and hangs its leg up."""

    leg_id: str
    target: TransferTarget


class LegReplaced(msgspec.Struct, frozen=True):
    """An attended transfer: the agent of `old_leg` handed the caller to the party of
    `new_leg` (agent `agent_id`, None for an outside number) of its consultation call
    `consultation`; that leg now belongs to this call and the old one is being hung up.
    The application settles the old agent and bridges the caller to the new leg. A new
    agent stays on its direct call `consultation` in the ACD until it leaves this call."""

    old_leg: str
    new_leg: str
    agent_id: str | None
    consultation: str


class PickedUp(msgspec.Struct, frozen=True):
    """Agent `agent_id` picked the call up from its phone (`*8`, `**NNNN`): its leg
    `leg_id`, answered by the node, now belongs to this call; the ACD has it talking on the
    call and has withdrawn the other rings. The application bridges it to the caller."""

    leg_id: str
    agent_id: str


class ConferenceRequested(msgspec.Struct, frozen=True):
    """The talking agent asked for a three-way call with `target` (a "number" through its
    trunk): the application rings it and mixes the three parties once it answers."""

    agent_id: str
    target: TransferTarget


class CommandResult(msgspec.Struct, frozen=True):
    """How an `AgentCommand` or `Supervise` went: `ok`, and the agent's state after it or
    why it was refused (`detail`)."""

    command: str
    ok: bool
    detail: str = ""


AppEvent = (
    Started
    | LegRinging
    | LegAnswered
    | LegFailed
    | LegEnded
    | DigitReceived
    | PlaybackDone
    | RecordDone
    | SpeechRecognized
    | TimerFired
    | ActionFailed
    | AgentOffered
    | OfferWithdrawn
    | QueueTimedOut
    | LegHeld
    | TransferRequested
    | CommandResult
    | ConferenceRequested
    | PickedUp
    | LegReplaced
)

# ------------------------------------------------------------------------------ bus events


class CallStarted(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    sip_call_id: str
    trunk: str
    caller: str
    called: str
    route: str | None = None
    pai: str | None = None
    diversion: str | None = None


class CallQueued(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    queue: str


class CallRinging(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    agent_id: str


class CallAnswered(msgspec.Struct, frozen=True, tag=True):
    """The caller is talking to an agent (or another party the node dialled); `first`:
    the call's first answer (after a transfer the next party's answer is not)."""

    at: float
    call_id: str
    agent_id: str | None
    wait: float
    caller_leg: str
    first: bool = True


class CallEnded(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    disposition: str
    hangup_side: str
    sip_cause: int | None
    talk: float
    wait: float
    variables: dict[str, str] = {}


class LegStarted(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    leg_id: str
    direction: str  # "in" or "out"
    sip_call_id: str
    peer: str
    agent_id: str | None = None


class LegProgress(msgspec.Struct, frozen=True, tag=True):
    """An outbound leg rang (`ringing`) or was answered (`answer`, with the status)."""

    at: float
    call_id: str
    leg_id: str
    what: str  # "ringing" | "answer"
    sip_cause: int | None = None


class LegStopped(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    leg_id: str
    disposition: str | None = None
    sip_cause: int | None = None


class LegJoined(msgspec.Struct, frozen=True, tag=True):
    """An answered leg of another call moved into this one (a pickup: the picker's phone;
    an attended transfer: the consulted agent's): from now on it is a party of `call_id`."""

    at: float
    call_id: str
    leg_id: str
    agent_id: str | None
    from_call: str


class CallAnsweredByNode(msgspec.Struct, frozen=True, tag=True):
    """The node answered the caller itself (IVR, voicemail)."""

    at: float
    call_id: str
    leg_id: str


class MixChanged(msgspec.Struct, frozen=True, tag=True):
    """Who hears whom in a mix of the call (empty `hears`: the mix is gone)."""

    at: float
    call_id: str
    mix_id: str
    hears: dict[str, tuple[str, ...]]


class IvrStep(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    flow: str
    node: str
    variables: dict[str, str] = {}


class VariableChanged(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    name: str
    value: str


class DigitPressed(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    leg_id: str
    digit: str
    source: str


class TrunkStateChanged(msgspec.Struct, frozen=True, tag=True):
    """A trunk's outbound address went up or down (softswitch/trunk_monitor.py)."""

    at: float
    trunk: str
    address: str
    state: str  # "up" | "down"
    reason: str


class QueueLogged(msgspec.Struct, frozen=True, tag=True):
    """An ACD event (enter, ring, answer, abandon …) for the queue log."""

    at: float
    call_id: str | None
    queue: str | None
    agent_id: str | None
    event: str
    data: dict[str, Any] | None


class VoicemailLeft(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    mailbox: str
    caller: str
    path: str
    seconds: float


class SurveyRated(msgspec.Struct, frozen=True, tag=True):
    at: float
    call_id: str
    rating: int
    agent_id: str | None


class AuthAlert(msgspec.Struct, frozen=True, tag=True):
    """Password guessing (SIP-8): a source banned (the `bans`-th time; each ban doubles),
    or a user guarded, until `until` (wall-clock epoch seconds)."""

    at: float
    kind: str  # "source_banned" | "user_guarded"
    source: str
    user: str
    bans: int
    until: float


class RecordingAlert(msgspec.Struct, frozen=True, tag=True):
    """A call is not being recorded, or its recording stopped short (REC-4): `kind` is
    `not_recorded` (no room, no tap), `write_failed` (the disk refused a page) or
    `encoder_behind` (more recordings than the machine encodes; `call_id` None)."""

    at: float
    kind: str
    call_id: str | None
    detail: str


BusEvent = (
    CallStarted
    | CallQueued
    | CallRinging
    | CallAnswered
    | CallEnded
    | LegStarted
    | LegProgress
    | LegStopped
    | CallAnsweredByNode
    | LegJoined
    | IvrStep
    | MixChanged
    | VariableChanged
    | DigitPressed
    | QueueLogged
    | VoicemailLeft
    | SurveyRated
    | AuthAlert
    | RecordingAlert
    | TrunkStateChanged
)
