"""Ogg Opus files for recordings, through libsndfile (the `soundfile` wheel bundles one with
Opus): 8 kHz 16-bit PCM in, a page on disk about every `page_ms`, so a node killed mid-call
leaves a file that plays up to about its last page (SPEC REC-4).

Bitrate: libsndfile sets the Opus bitrate from its compression level, linearly from 256 kbit/s
per channel (level 0) down to 6 kbit/s per channel (level 1), and offers no other bitrate
control for Opus (SFC_SET_BITRATE_MODE fails). `level_for` turns the configured bits per second
per channel *of the file* into that level: Ogg framing adds about 1 kbit/s per channel, so
the encoder is asked for that much less.

A write that fails (disk full, directory gone, file size limit) raises `OSError`; the writer is
then broken: pages on disk before the failure still decode (a torn last page is skipped by
every Ogg reader), nothing more is written, and `close` leaves the file as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

RATE = 8000
_MIN_BPS = 6000  # per channel, compression level 1
_MAX_BPS = 256000  # per channel, compression level 0
_SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302
_OGG_BPS = 1000  # per channel: page headers, lacing and packet framing, measured
_EOS = 0x04  # Ogg page header type: last page of the stream


def _system_libsndfile() -> str | None:
    """The system's libsndfile when it can write Ogg Opus with a page latency (1.2.0 on), or
    None. Debian's build encodes about twice as fast as the one in the soundfile wheel (same
    bytes out; measured in bench/recorder.py), so it is preferred."""
    name = ctypes.util.find_library("sndfile")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.sf_version_string.restype = ctypes.c_char_p
        version = (lib.sf_version_string() or b"").decode()
    except (OSError, AttributeError):
        return None
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", version)
    if found is None or tuple(int(g) for g in found.groups()) < (1, 2, 0):
        return None
    return version


def _soundfile() -> Any:
    """`soundfile`, loaded the first time on the system's libsndfile where that is usable
    (`HOTLINE_SNDFILE=bundled` keeps the wheel's); after an import elsewhere, as it is."""
    if "soundfile" not in sys.modules and os.environ.get("HOTLINE_SNDFILE") != "bundled":
        if _system_libsndfile() is not None and "_soundfile_data" not in sys.modules:
            sys.modules["_soundfile_data"] = None  # type: ignore[assignment]
            try:
                import soundfile
            finally:
                del sys.modules["_soundfile_data"]
            return soundfile
    import soundfile

    return soundfile


def library() -> str:
    """Which libsndfile writes the recordings (for the node's log and the benchmark)."""
    return str(_soundfile().__libsndfile_version__)


def level_for(bitrate: int) -> float:
    """libsndfile's compression level for a file of `bitrate` bit/s per channel."""
    clamped = min(max(bitrate - _OGG_BPS, _MIN_BPS), _MAX_BPS)
    return 1.0 - (clamped - _MIN_BPS) / (_MAX_BPS - _MIN_BPS)


class OggOpusWriter:
    """One Ogg Opus file being written. `write` takes interleaved int16 PCM bytes at 8 kHz."""

    def __init__(
        self,
        path: str | Path,
        channels: int = 2,
        *,
        bitrate: int = 14000,
        page_ms: int = 1000,
        title: str | None = None,
    ) -> None:
        soundfile = _soundfile()

        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self.path = Path(path)
        self.channels = channels
        self.frames = 0
        self.closed = False
        self.broken: str | None = None
        try:
            self._file = soundfile.SoundFile(
                str(self.path),
                "w",
                samplerate=RATE,
                channels=channels,
                format="OGG",
                subtype="OPUS",
                compression_level=level_for(bitrate),
            )
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise OSError(f"{self.path}: {exc}") from exc
        latency = soundfile._ffi.new("double*", float(page_ms))
        soundfile._snd.sf_command(
            self._file._file, _SFC_SET_OGG_PAGE_LATENCY_MS, latency, soundfile._ffi.sizeof("double")
        )
        if title:
            self._file.title = title

    @property
    def seconds(self) -> float:
        """Audio handed to the encoder so far."""
        return self.frames / RATE

    def write(self, pcm: bytes) -> None:
        if self.closed:
            raise ValueError(f"{self.path}: write after close")
        if self.broken is not None:
            raise OSError(f"{self.path}: an earlier write failed: {self.broken}")
        samples = np.frombuffer(pcm, dtype="<i2")
        if len(samples) % self.channels:
            raise ValueError(
                f"{len(pcm)} bytes is not a whole number of {self.channels}-channel frames"
            )
        try:
            self._file.write(samples.reshape(-1, self.channels))
        except Exception as exc:  # libsndfile reports a failed write(2) as "System error"
            self.broken = f"{exc} ({_disk_state(self.path)})"
            raise OSError(f"{self.path}: {self.broken}") from exc
        self.frames += len(samples) // self.channels

    def close(self) -> None:
        """Write the last page (end of stream) and close. A broken writer closes without
        writing: its file keeps the pages that made it."""
        if self.closed:
            return
        self.closed = True
        try:
            self._file.close()
        except Exception as exc:
            if self.broken is None:
                self.broken = str(exc)
                raise OSError(f"{self.path}: closing: {exc}") from exc


def _disk_state(path: Path) -> str:
    try:
        stat = os.statvfs(path.parent)
    except OSError as exc:
        return str(exc)
    return f"{stat.f_bavail * stat.f_frsize // (1024 * 1024)} MB free"


def read_ogg_opus(path: str | Path) -> tuple[bytes, int, bool]:
    """(interleaved int16 PCM at 8 kHz, channels, complete): `complete` is False when the file
    lacks its end-of-stream page (the writer never closed it: a crash, a failed write)."""
    soundfile = _soundfile()

    try:
        with soundfile.SoundFile(str(path)) as f:
            if f.samplerate != RATE:
                raise ValueError(f"{path}: {f.samplerate} Hz, expected {RATE}")
            data = f.read(dtype="int16", always_2d=True)
            channels = f.channels
    except soundfile.LibsndfileError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return data.tobytes(), channels, ends_with_eos(path)


def ends_with_eos(path: str | Path) -> bool:
    """Whether the last Ogg page in the file is whole and flagged end of stream."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 70000))  # a page is at most 65,307 bytes
        tail = f.read()
    at = tail.rfind(b"OggS")
    if at < 0 or len(tail) - at < 27:
        return False
    count = tail[at + 26]
    lacing = tail[at + 27 : at + 27 + count]
    if len(lacing) < count:
        return False
    return bool(tail[at + 5] & _EOS) and len(tail) - at == 27 + count + sum(lacing)


__all__ = ["OggOpusWriter", "ends_with_eos", "level_for", "library", "read_ogg_opus"]
