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

    var: str | None = None
    digits: str | None = None
    number: str | None = None


#: A prompt reference: a prompt name, or a list of prompt names and `Say` parts.
PromptRef = str | tuple[str | Say, ...]


class PromptSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One entry of `prompts:`: exactly one of `file` (WAV of any rate, converted once to
    8 kHz mono) or `text` (rendered by TTS in `voice`, cached on disk)."""

    file: str | None = None
    text: str | None = None
    voice: str | None = None  # None: the dialplan's `tts.voice`


class Play(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="play", tag_field="type"):
    prompt: PromptRef
    next: NodeName


class Menu(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="menu", tag_field="type"):
    """Play `prompt`, wait `timeout` seconds for one key; a key in `keys` goes to its node.
    An invalid key plays `invalid_prompt`, silence plays `timeout_prompt`, and both retry
    up to `retries` times before `on_fail`. `repeat_key` plays the menu again, `back_key`
    returns to the menu this one was entered from. A key pressed during the prompt stops it
    (barge-in). `speech` maps spoken words to keys where a speech model is configured."""

    prompt: PromptRef
    keys: dict[Key, NodeName]
    timeout: Seconds = 5.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    invalid_prompt: PromptRef | None = None
    timeout_prompt: PromptRef | None = None
    on_fail: NodeName | None = None  # None: hang up
    repeat_key: Key | None = None
    back_key: Key | None = None
    speech: dict[str, Key] = {}


class Collect(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="collect", tag_field="type"
):
    """Collect digits into the call variable `variable`: between `min_length` and
    `max_length` keys, ended by `terminator` (not stored), by `max_length`, or by
    `inter_digit_timeout` after the last key; nothing within `first_timeout` is a timeout.
    `pattern` (a regular expression on the whole input) validates; invalid or timed-out input
    plays `invalid_prompt` and retries up to `retries` times before `on_fail`."""

    prompt: PromptRef
    variable: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*$")]
    next: NodeName
    min_length: Annotated[int, Meta(ge=1, le=64)] = 1
    max_length: Annotated[int, Meta(ge=1, le=64)] = 20
    terminator: Key | None = "#"
    first_timeout: Seconds = 8.0
    inter_digit_timeout: Seconds = 4.0
    pattern: str | None = None
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    invalid_prompt: PromptRef | None = None
    on_fail: NodeName | None = None


class Queue(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="queue", tag_field="type"):
    """Join the queue (ACD); `prompt` is played first when given."""

    queue: str
    priority: Annotated[int, Meta(ge=0, le=100)] = 0
    prompt: PromptRef | None = None


class Transfer(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="transfer", tag_field="type"
):
    """Dial an external number through a trunk (caller id: the trunk's `caller_id`)."""

    number: Annotated[str, Meta(pattern=r"^\+?[0-9*#]+$")]
    trunk: str | None = None
    prompt: PromptRef | None = None


class Voicemail(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="voicemail", tag_field="type"
):
    """Play `prompt` and a beep, record until `#`, `silence_seconds` of quiet or
    `max_seconds`, play `thanks_prompt` and hang up."""

    mailbox: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+$")]
    prompt: PromptRef
    max_seconds: Annotated[float, Meta(ge=1, le=3600)] = 120.0
    silence_seconds: Annotated[float, Meta(ge=0, le=60)] = 5.0
    thanks_prompt: PromptRef | None = None


class Survey(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="survey", tag_field="type"
):
    """Play `prompt`, take one key 1–5 as the rating (stored with the call and its agent),
    play `thanks_prompt` and hang up; other keys play `invalid_prompt` and retry."""

    prompt: PromptRef
    timeout: Seconds = 8.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 1
    invalid_prompt: PromptRef | None = None
    thanks_prompt: PromptRef | None = None


class Hangup(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="hangup", tag_field="type"
):
    """Play `prompt` (if any) and hang up; before answer, `respond` is the SIP status."""

    prompt: PromptRef | None = None
    respond: Annotated[int, Meta(ge=400, le=699)] = 480


class Time(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="time", tag_field="type"):
    """Branch on a schedule of `schedules:` (DP-3): `open` inside working hours, `closed`
    outside them and on holidays."""

    schedule: str
    open: NodeName
    closed: NodeName


class Locality(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="locality", tag_field="type"
):
    """Branch on the caller's region (DP-7): the `localities:` table gives the caller's
    region from the area code or mobile segment; `regions` maps region names to nodes."""

    regions: dict[str, NodeName]
    default: NodeName


class Set(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="set", tag_field="type"):
    """Set call variables (associated data, e.g. `service_type`) and go on."""

    variables: dict[Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*$")], str]
    next: NodeName


Node = (
    Play | Menu | Collect | Queue | Transfer | Voicemail | Survey | Hangup | Time | Locality | Set
)


class Flow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: NodeName
    nodes: dict[NodeName, Node]


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
