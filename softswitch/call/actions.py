"""What an application asks of its call: frozen structs returned from `Application.handle`.

The call control (`softswitch.call.control`) carries them out in order, against SIP legs and
the media engine. An action that cannot be carried out (the leg is gone, the media engine
refuses) does not raise into the application: control answers with an event
(`ActionFailed`, `LegEnded` …) on the next turn, so one broken call never stops another.
"""

from __future__ import annotations

import msgspec

from media.items import PlayItem
from softswitch.call.events import TransferTarget


class Answer(msgspec.Struct, frozen=True):
    """Answer the (inbound) leg with the node's own SDP: the IVR, voicemail, music."""

    leg_id: str


class Ring(msgspec.Struct, frozen=True):
    """Send a provisional (180) on an inbound leg not yet answered; with `from_leg`, the
    early media (183 with SDP) that leg's party sends is passed on."""

    leg_id: str
    status: int = 180
    from_leg: str | None = None


class CallAgent(msgspec.Struct, frozen=True):
    """Originate leg `leg_id` (from `CallView.new_leg_id()`) to the agent's registered
    phone, offering the call of `queue` ("" for a call between agents, which is never
    auto-answered); its progress comes back as `LegRinging`, `LegAnswered` or
    `LegFailed`."""

    agent_id: str
    queue: str
    leg_id: str


class CallNumber(msgspec.Struct, frozen=True):
    """Originate leg `leg_id` to an external `number` through `trunk` (None: the trunk the
    call came in on); From and P-Asserted-Identity carry the trunk's configured hotline
    number, never the caller's (SPEC SIP-4). Progress as for `CallAgent`."""

    number: str
    leg_id: str
    trunk: str | None = None


class Bridge(msgspec.Struct, frozen=True):
    """Join two legs: each hears the other. An inbound leg not yet answered is answered
    now (with the codec of the other leg where it can). `rejoin`: two parties of the call
    go back to talking alone after a mix (a three-way call's third party left); nothing
    is answered and the call's answer is not published again."""

    leg_a: str
    leg_b: str
    rejoin: bool = False


class Mix(msgspec.Struct, frozen=True):
    """A bridge of any number of legs with who hears whom (three-way, silent monitor,
    whisper, barge): `hears[leg]` are the legs that leg hears. Creates the mix `mix_id` or
    reconfigures it; every leg must be up. Legs in a mix leave their two-party bridge."""

    mix_id: str
    hears: dict[str, tuple[str, ...]]


class Unmix(msgspec.Struct, frozen=True):
    mix_id: str


class DropLeg(msgspec.Struct, frozen=True):
    """Stop one leg but not the call: CANCEL while it rings, BYE once answered."""

    leg_id: str
    reason: str


class Play(msgspec.Struct, frozen=True):
    """Queue `items` on the leg after whatever plays; `barge_in`: a key stops them.

    One `PlaybackDone` naming `tag` follows, after the last item (or when they are stopped by
    a key or the engine); none follows a `StopPlay` the application asked for."""

    leg_id: str
    items: tuple[PlayItem, ...]
    tag: str = ""
    barge_in: bool = False


class StopPlay(msgspec.Struct, frozen=True):
    leg_id: str


class Record(msgspec.Struct, frozen=True):
    """Record what the leg's party says into a WAV `path` (8 kHz mono 16-bit) until
    `StopRecord`, `max_seconds`, `silence_seconds` of quiet (0: off) or the leg ends;
    then `RecordDone`."""

    leg_id: str
    path: str
    max_seconds: float = 120.0
    silence_seconds: float = 0.0


class StopRecord(msgspec.Struct, frozen=True):
    leg_id: str


class Listen(msgspec.Struct, frozen=True):
    """Recognise what the leg's party says, limited to `words` (grammar mode, SPEC DP-6),
    until `StopListen` or the leg ends; each recognised phrase is a `SpeechRecognized`.
    Where the node has no speech model, this is an `ActionFailed` at once."""

    leg_id: str
    words: tuple[str, ...]


class StopListen(msgspec.Struct, frozen=True):
    leg_id: str


class StartTimer(msgspec.Struct, frozen=True):
    """`TimerFired(name)` after `seconds` (a timer of the same name is replaced)."""

    name: str
    seconds: float


class CancelTimer(msgspec.Struct, frozen=True):
    name: str


class SetVariable(msgspec.Struct, frozen=True):
    """Associated data of the call (IVR path, digits, customer id …): travels into every
    later event, the CDR and the agent's INVITE (`X-Hotline-Var-<name>`)."""

    name: str
    value: str


class Enqueue(msgspec.Struct, frozen=True):
    """Hand the call to the queue application for `queue` (the caller leg must be up or
    ringing); the current application is done with the call. `agent`: offer it to that
    agent only (a transfer to an agent), who must serve `queue`."""

    queue: str
    priority: int = 0
    agent: str | None = None


class RunFlow(msgspec.Struct, frozen=True):
    """Hand the call to the IVR flow `flow` at `node` (None: the flow's start)."""

    flow: str
    node: str | None = None


class DialOut(msgspec.Struct, frozen=True):
    """Hand the call to an external number through a trunk (out-of-hours overflow, transfer
    to a number); the node presents the trunk's configured caller id (SPEC SIP-4)."""

    number: str
    trunk: str | None = None


class Hangup(msgspec.Struct, frozen=True):
    """End the call: BYE to every answered leg; `status` answers an inbound leg that is not
    answered yet (e.g. 480, 603)."""

    status: int = 480
    reason: str = ""
    disposition: str = "completed"


class AgentCommand(msgspec.Struct, frozen=True):
    """Change an agent's ACD state as a phone's feature code asks (`ready`, `not_ready`
    with `reason`, `wrap_up_end`, `login`, `logout`); the outcome comes back as
    `CommandResult`."""

    agent_id: str
    action: str
    reason: str = ""


class AddParty(msgspec.Struct, frozen=True):
    """A three-way call: ring `number` into the call agent `agent_id` is talking on (a
    phone's conference feature code); the outcome of the request comes back as
    `CommandResult`, the third party's progress to the call's own application."""

    agent_id: str
    number: str


class QueueNote(msgspec.Struct, frozen=True):
    """A line of the queue log for this call that no ACD input makes: `event` (e.g.
    "CALLBACK", a request the IVR took) in `queue`, with `data`."""

    event: str
    queue: str
    data: dict[str, str] | None = None


class Alert(msgspec.Struct, frozen=True):
    """Tell supervisors about the call: an `AGENT_ALERT` in the queue log for `agent_id`
    and a warning in the node's log (e.g. a three-way call past its queue's limit)."""

    agent_id: str
    what: str
    seconds: float


class PickUp(msgspec.Struct, frozen=True):
    """Call pickup: this call's caller leg (the picking agent's phone, not answered yet)
    takes the call ringing at `ringing_agent` (None: the one ringing longest in the
    agent's queues). Done, the leg belongs to that call and this one ends; refused, a
    `CommandResult` says why."""

    agent_id: str
    ringing_agent: str | None


class Supervise(msgspec.Struct, frozen=True):
    """Join this call's caller leg (a supervisor's phone) to the call agent `agent_id` is
    talking on: `mode` "monitor" (hears both, heard by nobody), "whisper" (heard by the
    agent only) or "barge" (everyone hears everyone; the agent hears a tone first). Asked
    again, it changes the mode. The outcome comes back as `CommandResult`."""

    agent_id: str
    mode: str


Action = (
    Answer
    | Ring
    | CallAgent
    | CallNumber
    | Bridge
    | Mix
    | Unmix
    | DropLeg
    | Play
    | StopPlay
    | Record
    | StopRecord
    | Listen
    | StopListen
    | StartTimer
    | CancelTimer
    | SetVariable
    | Enqueue
    | RunFlow
    | DialOut
    | Hangup
    | AgentCommand
    | AddParty
    | Alert
    | QueueNote
    | PickUp
    | Supervise
)

__all__ = [
    "Action",
    "AddParty",
    "AgentCommand",
    "Alert",
    "Answer",
    "Bridge",
    "CallAgent",
    "CallNumber",
    "DropLeg",
    "CancelTimer",
    "DialOut",
    "Enqueue",
    "Hangup",
    "Listen",
    "Mix",
    "PickUp",
    "QueueNote",
    "Play",
    "Record",
    "Ring",
    "RunFlow",
    "SetVariable",
    "StartTimer",
    "StopListen",
    "StopPlay",
    "StopRecord",
    "Supervise",
    "transfer_actions",
    "Unmix",
]


def transfer_actions(target: TransferTarget, priority: int = 0) -> list[Action]:
    """The hand-off that carries out a transfer to `target` (see `TransferRequested`)."""
    if target.kind == "queue":
        return [Enqueue(target.value, priority)]
    if target.kind == "agent":
        assert target.queue is not None
        return [Enqueue(target.queue, priority, agent=target.value)]
    if target.kind == "flow":
        return [RunFlow(target.value, target.node)]
    return [DialOut(target.value, target.trunk)]
