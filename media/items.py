"""Playback items of the media engine, as plain values (no extension needed to build them).

Applications (`softswitch.call`, `ivr`) build these; `media.engine.RtpEngine.play` queues them.
"""

from __future__ import annotations

import msgspec


class Prompt(msgspec.Struct, frozen=True):
    """An 8 kHz mono 16-bit PCM file: WAV (header parsed) or raw little-endian samples."""

    path: str


class Tone(msgspec.Struct, frozen=True):
    """Up to two frequencies with a cadence; repeats=0 plays until stopped."""

    f1: float
    f2: float = 0.0
    level_dbm0: float = -10.0
    on_ms: int = 1000
    off_ms: int = 0
    repeats: int = 1


class Silence(msgspec.Struct, frozen=True):
    ms: int


class DtmfTone(msgspec.Struct, frozen=True):
    """An in-band DTMF key (both Q.23 frequencies) for trunks without RFC 4733."""

    digit: str
    level_dbm0: float = -7.0
    ms: int = 100


PlayItem = Prompt | Tone | Silence | DtmfTone

__all__ = ["DtmfTone", "PlayItem", "Prompt", "Silence", "Tone"]
