"""The IVR flow schema (SPEC DP-3 … DP-8, OUT-3): what admins write under `flows:` in
`dialplan.yaml`, as frozen msgspec Structs (STYLE §4).

A flow is a named set of nodes and a `start` node. Each node has a `type` (the msgspec tag)
and names the nodes that follow it. Prompts are referenced by name (the `prompts:` section of
`dialplan.yaml`: a WAV file or a text rendered by TTS), or written inline as a list of
prompt names and dynamic parts (`{var: queue_position}`, `{digits: caller}`, `{number: 3}`).

The interpreter is `ivr.app.IvrApp`; validation of references (unknown node, prompt, queue,
schedule) is done by the configuration loader with `file:line: path: message` errors.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

NodeName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+$")]
Key = Annotated[str, Meta(pattern=r"^[0-9*#]$")]
Seconds = Annotated[float, Meta(ge=0.1, le=3600)]


class Say(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A dynamic part of a prompt: exactly one of `var` (a call variable read as text or,
    when it is all digits, digit by digit), `digits` (a variable read digit by digit),
    `number` (a variable or literal read as a number: "three")."""

    var: Annotated[
        str | None,
        Meta(
            description="A call variable read as it is (digits one by one; other text only if rendered ahead)."
        ),
    ] = None
    digits: Annotated[
        str | None,
        Meta(description="A call variable read digit by digit (e.g. the caller's number)."),
    ] = None
    number: Annotated[
        str | None,
        Meta(description='A call variable, or a literal such as `3`, read as a number ("three").'),
    ] = None


#: A prompt reference: a prompt name, or a list of prompt names and `Say` parts.
PromptRef = str | tuple[str | Say, ...]


class PromptSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One entry of `prompts:`: exactly one of `file` (WAV of any rate, converted once to
    8 kHz mono) or `text` (rendered by TTS in `voice`, cached on disk)."""

    file: Annotated[
        str | None,
        Meta(
            description="A WAV file (any rate, PCM or G.711), relative to the configuration directory."
        ),
    ] = None
    text: Annotated[
        str | None,
        Meta(
            description="Text rendered once by TTS and cached (digits in Chinese text are spoken out)."
        ),
    ] = None
    voice: Annotated[
        str | None,
        Meta(
            description="TTS voice of this prompt (espeak-ng names: `cmn`, `en`); null: `tts.voice`."
        ),
    ] = None  # None: the dialplan's `tts.voice`


class Play(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="play", tag_field="type"):
    """Play `prompt`, then go to `next`."""

    prompt: Annotated[
        PromptRef,
        Meta(description="What to play: a prompt name, or a list of names and `Say` parts."),
    ]
    next: Annotated[NodeName, Meta(description="Node after the prompt.")]


class Menu(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="menu", tag_field="type"):
    """Play `prompt`, wait `timeout` seconds for one key; a key in `keys` goes to its node.
    An invalid key plays `invalid_prompt`, silence plays `timeout_prompt`, and both retry
    up to `retries` times before `on_fail`. `repeat_key` plays the menu again, `back_key`
    returns to the menu this one was entered from. A key pressed during the prompt stops it
    (barge-in). `speech` maps spoken words to keys where a speech model is configured."""

    prompt: Annotated[
        PromptRef, Meta(description="The menu's prompt (a key pressed during it stops it).")
    ]
    keys: Annotated[
        dict[Key, NodeName], Meta(description="Key (`0`-`9`, `*`, `#`) to the node it leads to.")
    ]
    timeout: Annotated[Seconds, Meta(description="Seconds to wait for a key after the prompt.")] = (
        5.0
    )
    retries: Annotated[
        Annotated[int, Meta(ge=0, le=10)],
        Meta(description="Invalid keys or silences allowed before `on_fail`."),
    ] = 2
    invalid_prompt: Annotated[
        PromptRef | None,
        Meta(description="Played after a key not in `keys`, before the menu again."),
    ] = None
    timeout_prompt: Annotated[
        PromptRef | None, Meta(description="Played after silence, before the menu again.")
    ] = None
    on_fail: Annotated[
        NodeName | None, Meta(description="Node after too many failures; null: hang up.")
    ] = None  # None: hang up
    repeat_key: Annotated[
        Key | None, Meta(description="Key that plays the menu again (not a failure).")
    ] = None
    back_key: Annotated[
        Key | None, Meta(description="Key that returns to the menu this one was entered from.")
    ] = None
    speech: Annotated[
        dict[str, Key],
        Meta(description="Spoken word to key, where a speech model is configured (DP-6)."),
    ] = {}


class Collect(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="collect", tag_field="type"
):
    """Collect digits into the call variable `variable`: between `min_length` and
    `max_length` keys, ended by `terminator` (not stored), by `max_length`, or by
    `inter_digit_timeout` after the last key; nothing within `first_timeout` is a timeout.
    `pattern` (a regular expression on the whole input) validates; invalid or timed-out input
    plays `invalid_prompt` and retries up to `retries` times before `on_fail`."""

    prompt: Annotated[
        PromptRef, Meta(description="Prompt asking for the digits (keys during it count as input).")
    ]
    variable: Annotated[
        Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*$")],
        Meta(
            description="Call variable the digits are stored in (lower case, e.g. `customer_id`)."
        ),
    ]
    next: Annotated[NodeName, Meta(description="Node after valid input.")]
    min_length: Annotated[
        Annotated[int, Meta(ge=1, le=64)], Meta(description="Fewest digits accepted.")
    ] = 1
    max_length: Annotated[
        Annotated[int, Meta(ge=1, le=64)], Meta(description="Most digits; input ends when reached.")
    ] = 20
    terminator: Annotated[
        Key | None, Meta(description="Key that ends the input (not stored); null: none.")
    ] = "#"
    first_timeout: Annotated[Seconds, Meta(description="Seconds to wait for the first key.")] = 8.0
    inter_digit_timeout: Annotated[
        Seconds, Meta(description="Seconds after a key that end the input.")
    ] = 4.0
    pattern: Annotated[
        str | None, Meta(description="Regular expression the whole input must match.")
    ] = None
    retries: Annotated[
        Annotated[int, Meta(ge=0, le=10)],
        Meta(description="Invalid or missing inputs allowed before `on_fail`."),
    ] = 2
    invalid_prompt: Annotated[
        PromptRef | None,
        Meta(description="Played after invalid or missing input, before the prompt again."),
    ] = None
    on_fail: Annotated[
        NodeName | None, Meta(description="Node after too many failures; null: hang up.")
    ] = None


class Queue(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="queue", tag_field="type"):
    """Join the queue (ACD); `prompt` is played first when given."""

    queue: Annotated[str, Meta(description="Queue (of queues.yaml) the caller joins.")]
    priority: Annotated[
        Annotated[int, Meta(ge=0, le=100)],
        Meta(description="Priority in the queue (higher first)."),
    ] = 0
    prompt: Annotated[
        PromptRef | None, Meta(description='Played before joining (e.g. "please hold").')
    ] = None


class Transfer(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="transfer", tag_field="type"
):
    """Dial an external number through a trunk (caller id: the trunk's `caller_id`)."""

    number: Annotated[
        Annotated[str, Meta(pattern=r"^\+?[0-9*#]+$")],
        Meta(description="External number dialled through the trunk."),
    ]
    trunk: Annotated[
        str | None,
        Meta(
            description="Trunk (of trunks.yaml) with `outbound` and `caller_id`; null: the call's own trunk."
        ),
    ] = None
    prompt: Annotated[PromptRef | None, Meta(description="Played before dialling.")] = None


class Voicemail(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="voicemail", tag_field="type"
):
    """Play `prompt` and a beep, record until `#`, `silence_seconds` of quiet or
    `max_seconds`, play `thanks_prompt` and hang up."""

    mailbox: Annotated[
        Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+$")],
        Meta(description="Mailbox the message is stored under (`hotline voicemail list`)."),
    ]
    prompt: Annotated[PromptRef, Meta(description="Greeting before the beep.")]
    max_seconds: Annotated[
        Annotated[float, Meta(ge=1, le=3600)], Meta(description="Longest message, seconds.")
    ] = 120.0
    silence_seconds: Annotated[
        Annotated[float, Meta(ge=0, le=60)],
        Meta(description="Seconds of quiet that end the message; 0: off."),
    ] = 5.0
    thanks_prompt: Annotated[
        PromptRef | None, Meta(description="Played after a message was kept, before hanging up.")
    ] = None


class Survey(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="survey", tag_field="type"
):
    """Play `prompt`, take one key 1–5 as the rating (stored with the call and its agent),
    play `thanks_prompt` and hang up; other keys play `invalid_prompt` and retry."""

    prompt: Annotated[PromptRef, Meta(description="The question (keys 1-5).")]
    timeout: Annotated[
        Seconds, Meta(description="Seconds to wait for a rating after the prompt.")
    ] = 8.0
    retries: Annotated[
        Annotated[int, Meta(ge=0, le=10)],
        Meta(description="Invalid keys or silences allowed before hanging up."),
    ] = 1
    invalid_prompt: Annotated[
        PromptRef | None, Meta(description="Played after a key other than 1-5.")
    ] = None
    thanks_prompt: Annotated[
        PromptRef | None, Meta(description="Played after the rating, before hanging up.")
    ] = None


class Hangup(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="hangup", tag_field="type"
):
    """Play `prompt` (if any) and hang up; before answer, `respond` is the SIP status."""

    prompt: Annotated[
        PromptRef | None, Meta(description="Played (after answering) before hanging up.")
    ] = None
    respond: Annotated[
        Annotated[int, Meta(ge=400, le=699)],
        Meta(description="SIP status for a caller not answered yet."),
    ] = 480


class Callback(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="callback", tag_field="type"
):
    """The caller asks to be called back instead of waiting (a queue's overflow to a flow
    that offers it, or a menu key): a `CALLBACK` for `queue` in the queue log, so the
    caller is on `hotline callbacks` and an agent takes the task with `*5`; then `prompt`
    (e.g. "we will call you back at this number") and the call ends."""

    queue: Annotated[str, Meta(description="Queue whose callback list the caller joins.")]
    prompt: Annotated[
        PromptRef | None, Meta(description="Played (after answering) before hanging up.")
    ] = None


class Time(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="time", tag_field="type"):
    """Branch on a schedule of `schedules:` (DP-3): `open` inside working hours, `closed`
    outside them and on holidays."""

    schedule: Annotated[str, Meta(description="Schedule of `schedules`.")]
    open: Annotated[NodeName, Meta(description="Node inside working hours.")]
    closed: Annotated[NodeName, Meta(description="Node outside working hours and on holidays.")]


class Locality(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="locality", tag_field="type"
):
    """Branch on the caller's region (DP-7): the `localities:` table gives the caller's
    region from the area code or mobile segment; `regions` maps region names to nodes."""

    regions: Annotated[dict[str, NodeName], Meta(description="Region (of `localities`) to node.")]
    default: Annotated[NodeName, Meta(description="Node for callers of no listed region.")]


class Set(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="set", tag_field="type"):
    """Set call variables (associated data, e.g. `service_type`) and go on."""

    variables: Annotated[
        dict[Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*$")], str],
        Meta(description="Call variables to set (associated data, e.g. `service_type`)."),
    ]
    next: Annotated[NodeName, Meta(description="Node after.")]


Node = (
    Play
    | Menu
    | Collect
    | Queue
    | Transfer
    | Voicemail
    | Survey
    | Hangup
    | Time
    | Locality
    | Set
    | Callback
)


class Flow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An IVR flow: its nodes and the one it starts at."""

    start: Annotated[NodeName, Meta(description="The first node.")]
    nodes: Annotated[dict[NodeName, Node], Meta(description="Nodes by name.")]


__all__ = [
    "Collect",
    "Flow",
    "Hangup",
    "Locality",
    "Menu",
    "Node",
    "Play",
    "PromptRef",
    "PromptSpec",
    "Queue",
    "Say",
    "Set",
    "Survey",
    "Time",
    "Transfer",
    "Voicemail",
]
