"""`WavSink`: a record tap's blocks written to a WAV file as they come (voicemail, recording).

The file is valid after every block: the samples are appended first, then the RIFF and data
chunk sizes are rewritten to cover them. If the process dies between the two steps the header
still describes the previous block, so a killed node leaves a file that plays up to the last
block fully written (the kernel keeps what was written; `fsync=True` also survives a power
loss, at the price of a disk flush per block).

The sink also measures the level of channel 0 (the recorded party) in 20 ms windows, so call
control can end a voicemail after some seconds of silence (`silent_for`).

Pure Python and numpy; it does file I/O only and knows nothing of the engine.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from types import TracebackType

import numpy as np

RATE = 8000
WINDOW = RATE // 50  # 20 ms: the level is measured per window (one G.711 packet)
HEADER = 44  # RIFF/WAVE header with one fmt chunk (PCM) and the data chunk header
FULL_SCALE = 32768.0  # 0 dBFS: RMS of a full-scale square wave


def _header(channels: int, data_bytes: int) -> bytes:
    """RIFF header for 16-bit PCM at 8 kHz with `data_bytes` of samples."""
    block_align = 2 * channels
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, RATE, RATE * block_align, block_align, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class WavSink:
    """Write tap blocks (interleaved native-endian int16 stereo) to a 16-bit 8 kHz WAV file.

    `channels=1` keeps channel 0 (what the tapped leg's party said), `channels=2` both.
    `silence_dbfs`: a 20 ms window whose RMS is below this counts as silent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        channels: int = 1,
        *,
        silence_dbfs: float = -45.0,
        fsync: bool = False,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels!r}")
        self.path = Path(path)
        self.channels = channels
        self.silence_dbfs = silence_dbfs
        self._fsync = fsync
        self._file = self.path.open("wb")
        self._file.write(_header(channels, 0))
        self._file.flush()
        self._frames = 0
        self._pending = np.zeros(0, dtype=np.int16)  # channel 0 samples short of a window
        self._level = -math.inf
        self._silent_windows = 0
        self._threshold = FULL_SCALE * 10.0 ** (silence_dbfs / 20.0)

    @property
    def seconds(self) -> float:
        """Audio written so far."""
        return self._frames / RATE

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def level_dbfs(self) -> float:
        """RMS level of the last complete 20 ms window of channel 0 (-inf: digital silence
        or no window yet)."""
        return self._level

    @property
    def silent_for(self) -> float:
        """Seconds of trailing audio on channel 0 below `silence_dbfs` (whole windows)."""
        return self._silent_windows * WINDOW / RATE

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, pcm: bytes | bytearray | memoryview) -> None:
        """Append one block of stereo frames (`TapBlock.pcm`) and make the file cover it."""
        if self._file.closed:
            raise ValueError(f"{self.path}: the sink is closed")
        stereo = np.frombuffer(pcm, dtype=np.int16)
        if stereo.size % 2:
            raise ValueError("a tap block holds whole stereo frames (4 bytes each)")
        if stereo.size == 0:
            return
        frames = stereo.reshape(-1, 2)
        kept = frames[:, 0] if self.channels == 1 else frames
        self._file.seek(0, os.SEEK_END)
        self._file.write(np.ascontiguousarray(kept, dtype="<i2").tobytes())
        self._frames += len(frames)
        # The sizes only after the samples: a header never claims data that is not there.
        data_bytes = self._frames * 2 * self.channels
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + data_bytes))
        self._file.seek(40)
        self._file.write(struct.pack("<I", data_bytes))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._measure(frames[:, 0])

    def _measure(self, samples: np.ndarray) -> None:
        samples = np.concatenate((self._pending, samples))
        whole = len(samples) // WINDOW * WINDOW
        self._pending = samples[whole:].copy()
        if not whole:
            return
        windows = samples[:whole].astype(np.float64).reshape(-1, WINDOW)
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        loud = np.nonzero(rms >= self._threshold)[0]
        if len(loud):
            self._silent_windows = len(rms) - 1 - int(loud[-1])
        else:
            self._silent_windows += len(rms)
        last = float(rms[-1])
        self._level = 20.0 * math.log10(last / FULL_SCALE) if last > 0 else -math.inf

    def close(self) -> None:
        """Close the file (it is complete already; closing twice is harmless)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> WavSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["WavSink"]
