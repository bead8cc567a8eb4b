"""Prompt audio: read WAV files of any common format, resample to 8 kHz mono, write 16-bit WAV
atomically (DP-5, MED-2).

The media engine plays 8 kHz mono 16-bit PCM (`media.items.Prompt`); admins hand in what their
studio or TTS produced: 8 … 48 kHz, mono or stereo, 8/16/24/32-bit integer PCM, 32/64-bit float,
G.711 A-law/μ-law, plain or WAVE_FORMAT_EXTENSIBLE headers. Python's `wave` module reads only
plain integer PCM, so the RIFF chunks are parsed here.

Resampling is a polyphase windowed-sinc filter (Kaiser window, ~80 dB stopband) in numpy: for
output rate fo from input rate fi (ratio up/down in lowest terms) output sample n lies at input
position n·down/up; its value is the input convolved with a low-pass sinc evaluated at that
fractional position. The pass band ends at 85 % of the lower Nyquist frequency (3.4 kHz for
8 kHz output, the telephone band) and the stop band starts at that Nyquist (4 kHz), so nothing
above it folds back into speech. Each of the `up` phases is one matrix-vector product over a
strided view of the input (no per-sample Python). numpy only, one code path: sox would be
faster but is not a dependency, and results must not differ between machines.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

#: The rate the media engine plays.
TELEPHONE_RATE = 8000

_STOPBAND_DB = 80.0
_PASSBAND_FRACTION = 0.85  # of the lower Nyquist frequency

_FORMAT_PCM = 1
_FORMAT_FLOAT = 3
_FORMAT_ALAW = 6
_FORMAT_ULAW = 7
_FORMAT_EXTENSIBLE = 0xFFFE
_SUPPORTED = {(_FORMAT_PCM, b) for b in (8, 16, 24, 32)} | {
    (_FORMAT_FLOAT, 32),
    (_FORMAT_FLOAT, 64),
    (_FORMAT_ALAW, 8),
    (_FORMAT_ULAW, 8),
}

Samples = NDArray[np.float64]


class AudioError(Exception):
    """A file is not a WAV this module can read, or audio cannot be written."""


# -- reading ------------------------------------------------------------------------------------


def read_wav(path: Path) -> tuple[Samples, int]:
    """The samples of a WAV file mixed down to mono, as floats in [-1, 1], and its rate."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AudioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_wav(data, str(path))


def parse_wav(data: bytes, name: str = "<wav>") -> tuple[Samples, int]:
    """`read_wav` for bytes in memory."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(f"{name}: not a RIFF/WAVE file")
    fmt: bytes | None = None
    pcm: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]  # a streaming writer's oversize length: the rest
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            pcm = body
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)  # RIFF chunks are padded to even length
    if fmt is None or len(fmt) < 16:
        raise AudioError(f"{name}: no fmt chunk")
    if pcm is None:
        raise AudioError(f"{name}: no data chunk")
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise AudioError(f"{name}: short WAVE_FORMAT_EXTENSIBLE header")
        (tag,) = struct.unpack_from("<H", fmt, 24)  # first two bytes of the sub-format GUID
    if channels < 1 or rate < 1000 or rate > 768000:
        raise AudioError(f"{name}: implausible header: {channels} channels at {rate} Hz")
    width = (bits + 7) // 8
    if (tag, 8 * width) not in _SUPPORTED:
        raise AudioError(f"{name}: unsupported WAV encoding (format tag {tag}, {bits} bits)")
    frames = len(pcm) // (width * channels)
    if frames == 0:
        raise AudioError(f"{name}: no audio samples")
    raw = pcm[: frames * width * channels]
    samples = _decode(raw, tag, width, name)
    mono = samples.reshape(frames, channels).mean(axis=1)
    return mono, rate


def _decode(raw: bytes, tag: int, width: int, name: str) -> Samples:
    if tag == _FORMAT_PCM and width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    if tag == _FORMAT_PCM and width in (2, 4):
        ints = np.frombuffer(raw, f"<i{width}")
        return ints.astype(np.float64) / float(1 << (8 * width - 1))
    if tag == _FORMAT_PCM and width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        return ints.astype(np.float64) / float(1 << 23)
    if tag == _FORMAT_FLOAT and width in (4, 8):
        return np.clip(np.frombuffer(raw, f"<f{width}").astype(np.float64), -1.0, 1.0)
    if tag in (_FORMAT_ALAW, _FORMAT_ULAW) and width == 1:
        table = _ALAW_TABLE if tag == _FORMAT_ALAW else _ULAW_TABLE
        return table[np.frombuffer(raw, np.uint8)] / 32768.0
    raise AudioError(f"{name}: unsupported WAV encoding (format tag {tag}, {8 * width} bits)")


def _g711_tables() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Linear values of all 256 A-law and μ-law codes (ITU-T G.711)."""
    code = np.arange(256)
    u = ~code & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 0x0F
    ulaw = (((mantissa << 3) + 0x84) << exponent) - 0x84
    ulaw = np.where(u & 0x80, -ulaw, ulaw)
    a = code ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    alaw = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    alaw = np.where(a & 0x80, alaw, -alaw)
    return alaw.astype(np.float64), ulaw.astype(np.float64)


_ALAW_TABLE, _ULAW_TABLE = _g711_tables()


# -- resampling ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _filter_bank(rate_in: int, rate_out: int) -> tuple[NDArray[np.float64], int, int, int]:
    """(bank[up, taps], up, down, left): row p holds the filter taps for output samples at
    fractional input position p/up; tap i multiplies input sample base - left + i."""
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    nyquist = min(rate_in, rate_out) / 2.0
    transition = nyquist * (1.0 - _PASSBAND_FRACTION)
    cutoff = (nyquist * (1.0 + _PASSBAND_FRACTION) / 2.0) / rate_in  # cycles per input sample
    beta = 0.1102 * (_STOPBAND_DB - 8.7)  # Kaiser's formula for the window parameter
    length = (_STOPBAND_DB - 8.0) / (2.285 * 2.0 * math.pi * transition / rate_in)
    half = length / 2.0  # half-width of the filter, in input samples
    left = math.ceil(half) - 1
    taps = 2 * math.ceil(half)
    offsets = np.arange(taps) - left  # input sample index relative to base
    tau = np.arange(up)[:, None] / up - offsets[None, :]  # distance of output from each input
    window = np.where(
        np.abs(tau) < half, np.i0(beta * np.sqrt(np.clip(1.0 - (tau / half) ** 2, 0.0, 1.0))), 0.0
    ) / np.i0(beta)
    bank = 2.0 * cutoff * np.sinc(2.0 * cutoff * tau) * window
    bank /= bank.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
    bank.flags.writeable = False
    return bank, up, down, left


def resample(samples: Samples, rate_in: int, rate_out: int = TELEPHONE_RATE) -> Samples:
    """`samples` at `rate_in` as samples at `rate_out`, band-limited to the lower rate."""
    x = np.asarray(samples, dtype=np.float64)
    if rate_in == rate_out or len(x) == 0:
        return x.copy()
    bank, up, down, left = _filter_bank(rate_in, rate_out)
    taps = bank.shape[1]
    n_out = -(-len(x) * up // down)
    padded = np.concatenate([np.zeros(left), x, np.zeros(taps)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps)  # windows[b]: x[b-left…]
    out = np.empty(n_out)
    for first in range(min(up, n_out)):
        # Outputs first, first+up, … share a phase; their bases step by `down` input samples.
        base, phase = divmod(first * down, up)
        count = len(range(first, n_out, up))
        out[first::up] = windows[base : base + count * down : down] @ bank[phase]
    return out


def to_pcm16(samples: Samples) -> NDArray[np.int16]:
    """Floats in [-1, 1] as 16-bit PCM, rounded and clipped."""
    return np.clip(np.rint(np.asarray(samples) * 32768.0), -32768, 32767).astype(np.int16)


def trim_silence(
    pcm: NDArray[np.int16], rate: int = TELEPHONE_RATE, margin_ms: int = 15
) -> NDArray[np.int16]:
    """`pcm` without leading and trailing quiet (below 1/100 of its peak, -40 dB), keeping
    `margin_ms` on each side: number words that are concatenated must not carry TTS pauses."""
    if len(pcm) == 0:
        return pcm
    level = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(level > max(1, int(level.max()) // 100))
    if len(loud) == 0:
        return pcm[:0]
    margin = rate * margin_ms // 1000
    return pcm[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


def convert_file(source: Path) -> NDArray[np.int16]:
    """A WAV file of any supported format as 8 kHz mono 16-bit PCM."""
    samples, rate = read_wav(source)
    return to_pcm16(resample(samples, rate, TELEPHONE_RATE))


# -- writing ------------------------------------------------------------------------------------


def wav_bytes(pcm: NDArray[np.int16], rate: int = TELEPHONE_RATE) -> bytes:
    """A canonical 44-byte-header WAV file of mono 16-bit PCM."""
    body = np.asarray(pcm, dtype="<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16, _FORMAT_PCM, 1, rate),
        *(rate * 2, 2, 16, b"data", len(body)),
    )
    return header + body


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent, the old file or the whole new
    one, also across a crash: a temporary file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # no directory handles (some platforms): the rename itself is still atomic
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


__all__ = [
    "TELEPHONE_RATE",
    "AudioError",
    "convert_file",
    "parse_wav",
    "read_wav",
    "resample",
    "to_pcm16",
    "trim_silence",
    "wav_bytes",
    "write_atomic",
]
