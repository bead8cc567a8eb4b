"""How an IVR application turns a prompt reference into playback items.

`ivr.prompts.PromptLibrary` is the real resolver (WAV files and TTS, cached on disk); tests
use small fakes. Both follow `PromptResolver`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ivr.nodes import PromptRef
from media.items import PlayItem


class PromptError(Exception):
    """A prompt cannot be played: unknown name, a file that cannot be read or converted, a
    TTS failure. The IVR logs it and goes on without that prompt (the call is not lost)."""


class PromptResolver(Protocol):
    def items(self, ref: PromptRef, variables: Mapping[str, str]) -> tuple[PlayItem, ...]:
        """The items that speak `ref` (names and dynamic `Say` parts, in order), with
        `variables` the call's associated data; raises `PromptError`."""
        ...
