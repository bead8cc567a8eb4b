"""G.711, in-band DTMF detection and tone generation in C (media/src/dsp_module.c).

Linear PCM is 8 kHz int16 little-endian in ``bytes``; every input accepts any object with the
buffer protocol (bytes, bytearray, memoryview, numpy arrays). Buffers of 4096 bytes or more
are processed with the GIL released. Levels are in dBm0: 0 dBm0 is a sine of amplitude 22827,
3.14 dB below a full-scale int16 sine.
"""

from typing_extensions import Buffer

SAMPLE_RATE: int
"""8000 samples per second."""
DTMF_BLOCK: int
"""Samples per detector analysis block (80, 10 ms)."""

def ulaw_encode(pcm: Buffer, /) -> bytes:
    """Linear PCM to G.711 mu-law, one byte per sample. ValueError on an odd byte count."""

def ulaw_decode(data: Buffer, /) -> bytes:
    """G.711 mu-law to linear PCM (interval mid-points, +-32124 at most)."""

def alaw_encode(pcm: Buffer, /) -> bytes:
    """Linear PCM to G.711 A-law, one byte per sample. ValueError on an odd byte count."""

def alaw_decode(data: Buffer, /) -> bytes:
    """G.711 A-law to linear PCM (interval mid-points, +-32256 at most)."""

def ulaw_to_alaw(data: Buffer, /) -> bytes:
    """mu-law codes to A-law codes through the linear value (leg transcoding)."""

def alaw_to_ulaw(data: Buffer, /) -> bytes:
    """A-law codes to mu-law codes through the linear value (leg transcoding)."""

def dtmf_tone(digit: str, level_dbm0: float = -10, ms: int = 100) -> bytes:
    """One DTMF key (0-9, *, #, A-D) for ms milliseconds, both tones at level_dbm0.

    ValueError for another digit, a level outside [-100, 3.14] or ms outside [0, 3600000].
    """

class DtmfDetector:
    """In-band DTMF detector to ITU-T Q.23/Q.24 (see media/src/dtmf.h for the figures).

    Feed any number of samples at a time (one 20 ms frame is 320 bytes); each key press is
    reported once, as soon as it is confirmed, with ``start_sample`` on the detector's own
    sample counter. One detector per leg: feeding one detector from two threads at once raises
    RuntimeError.
    """

    def __init__(self) -> None: ...
    def feed(self, pcm: Buffer, /) -> list[tuple[str, int, int]]:
        """Key presses confirmed in ``pcm`` as (digit, start_sample, duration_samples);
        duration is 0 while the key is still pressed (see ``last``)."""

    def reset(self) -> None:
        """Forget everything; the sample counter restarts at 0."""

    @property
    def last(self) -> tuple[str, int, int, bool] | None:
        """Most recent key press: (digit, start_sample, duration_samples, still_on), or None."""

    @property
    def sample_count(self) -> int:
        """Samples fed since creation or reset (wraps at 2**32)."""

    @property
    def events_dropped(self) -> int:
        """Key presses a feed could not return (the module sizes its buffer so this stays 0)."""

class ToneGenerator:
    """One or two sine tones with a cadence: on_ms of tone then off_ms of silence per cycle,
    ``repeats`` cycles (0: forever); off_ms=0 with repeats=0 is a continuous tone. Each burst
    starts at phase 0. ValueError for frequencies outside [0, 4000) Hz (0: absent), a level
    outside [-100, 3.14] dBm0 or negative durations."""

    def __init__(
        self,
        f1: float,
        f2: float = 0,
        level_dbm0: float = -10,
        on_ms: int = 1000,
        off_ms: int = 0,
        repeats: int = 0,
    ) -> None: ...
    def fill(self, n: int, /) -> bytes:
        """The next n samples; fewer (down to none) once a finite cadence has ended."""

    @property
    def finished(self) -> bool:
        """True once a finite cadence has played out."""
