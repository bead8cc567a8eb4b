"""Ogg Opus files for recordings: 8 kHz 16-bit PCM in, a page on disk about every `page_ms`,
so a node killed mid-call leaves a file that plays up to about its last page (SPEC REC-4).

Two writers with one interface; `OggOpusWriter(...)` picks the first that can run here:

- `LibopusWriter`: libopus (Debian `libopus0`) through ctypes, at complexity `COMPLEXITY`,
  and Ogg pages (RFC 3533, RFC 7845) built here, one `write(2)` each. The encoder is the
  per-frame work and runs in C with the GIL released; Python only slices 20 ms frames and
  frames pages. About 3x cheaper than libsndfile, which fixes complexity at 10. A stereo
  recording is two independent mono streams (channel mapping family 1, no coupled
  stream): Opus's joint stereo at these rates leaks a loud channel into a quiet one about
  23 dB down, and the two channels are different people (the caller; what the caller
  heard) whom quality inspection and speech analytics must find apart.
- `SndfileOpusWriter`: libsndfile through soundfile (its wheel bundles one with Opus), for
  machines without libopus.

`HOTLINE_OPUS=libsndfile` forces the second. Both produce standard Ogg Opus that every
decoder (libsndfile, ffmpeg, opusfile) plays; `read_ogg_opus` decodes with libsndfile.

Bitrate (libsndfile writer): libsndfile sets the Opus bitrate from its compression level, linearly from 256 kbit/s
per channel (level 0) down to 6 kbit/s per channel (level 1), and offers no other bitrate
control for Opus (SFC_SET_BITRATE_MODE fails). `level_for` turns the configured bits per second
per channel *of the file* into that level: Ogg framing adds about 1 kbit/s per channel, so
the encoder is asked for that much less.

A write that fails (disk full, directory gone, file size limit) raises `OSError`; the writer is
then broken (the libopus writer also truncates a torn page away): pages on disk before the failure still decode (a torn last page is skipped by
every Ogg reader), nothing more is written, and `close` leaves the file as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any, NamedTuple

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


class _Writer:
    """What both writers share: the file, its channel count, the audio written so far, and
    the checks every `write` makes first."""

    def __init__(self, path: str | Path, channels: int) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self.path = Path(path)
        self.channels = channels
        self.frames = 0
        self.closed = False
        self.broken: str | None = None

    @property
    def seconds(self) -> float:
        """Audio handed to the writer so far."""
        return self.frames / RATE

    def _frames_in(self, pcm: bytes) -> int:
        """The frames `pcm` holds; raises for a closed or broken writer or a partial frame."""
        if self.closed:
            raise ValueError(f"{self.path}: write after close")
        if self.broken is not None:
            raise OSError(f"{self.path}: an earlier write failed: {self.broken}")
        width = 2 * self.channels
        if len(pcm) % width:
            raise ValueError(
                f"{len(pcm)} bytes is not a whole number of {self.channels}-channel frames"
            )
        return len(pcm) // width


class SndfileOpusWriter(_Writer):
    """One Ogg Opus file written by libsndfile. `write` takes interleaved int16 PCM at 8 kHz."""

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
        super().__init__(path, channels)
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

    def write(self, pcm: bytes) -> None:
        frames = self._frames_in(pcm)
        samples = np.frombuffer(pcm, dtype="<i2")
        try:
            self._file.write(samples.reshape(-1, self.channels))
        except Exception as exc:  # libsndfile reports a failed write(2) as "System error"
            self.broken = f"{exc} ({_disk_state(self.path)})"
            raise OSError(f"{self.path}: {self.broken}") from exc
        self.frames += frames

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
    lacks its end-of-stream page (the writer never closed it: a crash, a failed write).
    Decoded by libopus where installed (libsndfile takes 5 ms a second of audio), else by
    libsndfile; a torn or damaged page is skipped, as every Ogg reader does."""
    if _libopus() is not None:
        return _read_libopus(Path(path))
    return _read_sndfile(path)


def _read_sndfile(path: str | Path) -> tuple[bytes, int, bool]:
    soundfile = _soundfile()

    try:
        with soundfile.SoundFile(str(path)) as f:
            if f.samplerate != RATE:
                raise ValueError(f"{path}: {f.samplerate} Hz, expected {RATE}")
            channels = f.channels
            # In pieces, not `read()` whole: on a torn last page libsndfile can report a
            # length far beyond what the file holds.
            pieces = []
            while len(piece := f.read(RATE * 10, dtype="int16", always_2d=True)):
                pieces.append(piece.tobytes())
                if len(piece) < RATE * 10:
                    break
    except soundfile.LibsndfileError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return b"".join(pieces), channels, ends_with_eos(path)


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


# --- the libopus writer ---------------------------------------------------------------------
#: libopus encoder complexity (0-10), application AUDIO with the signal type left to libopus.
#: Each channel is its own mono stream (SILK at these rates): bench/recorder.py measured, at
#: 0, 16.7 s of CPU per recorded call-hour, tone SNR 17.8 dB, speech SNR 13.4 dB and
#: log-spectral distance 5.1 dB (at 3: 24.8 s, 21.4, 14.2, 4.95; libsndfile, coupled
#: stereo at complexity 10: 18 s, 19.7, 7.6, 9.5). One coupled stereo stream took 6.2 s but
#: leaked the caller into the heard channel 23 dB down.
COMPLEXITY = 0
_FRAME = RATE // 50  # 20 ms
_SCALE = 48000 // RATE  # Ogg Opus granule positions count 48 kHz samples
_APPLICATION_AUDIO = 2049
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_GET_LOOKAHEAD = 4027
_MAX_PACKET = 1500
_MAX_FRAME = RATE * 120 // 1000  # the longest Opus packet, 120 ms
#: Stereo files: two mono streams, channel i in stream i (RFC 7845 §5.1.1.2, family 1).
_STREAMS = {1: (0, 1, 0, b""), 2: (1, 2, 0, bytes((0, 1)))}  # family, streams, coupled, map
_BOS, _CONTINUED = 0x02, 0x01
_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_OPUS: Any = None
_DITHER = np.random.default_rng(7).integers(-1, 2, size=_FRAME * 2, dtype=np.int16)


def _libopus() -> Any:
    """libopus through ctypes, or None where it is missing (or `HOTLINE_OPUS=libsndfile`)."""
    global _OPUS
    if _OPUS is None:
        _OPUS = False
        name = ctypes.util.find_library("opus")
        if name is not None and os.environ.get("HOTLINE_OPUS") != "libsndfile":
            try:
                lib = ctypes.CDLL(name)
                created = ctypes.c_void_p
                error = ctypes.POINTER(ctypes.c_int)
                mapping = ctypes.c_char_p
                lib.opus_get_version_string.restype = ctypes.c_char_p
                # Every file goes through the multistream API (a mono file is one stream).
                lib.opus_multistream_encoder_create.restype = created
                lib.opus_multistream_encoder_create.argtypes = (
                    ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.c_int, mapping,
                    ctypes.c_int, error,
                )  # fmt: skip
                lib.opus_multistream_encode.restype = ctypes.c_int32
                lib.opus_multistream_encode.argtypes = (
                    created, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int32,
                )  # fmt: skip
                lib.opus_multistream_encoder_destroy.argtypes = (created,)
                lib.opus_multistream_encoder_ctl.restype = ctypes.c_int
                lib.opus_multistream_decoder_create.restype = created
                lib.opus_multistream_decoder_create.argtypes = (
                    ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.c_int, mapping, error,
                )  # fmt: skip
                lib.opus_multistream_decode.restype = ctypes.c_int
                lib.opus_multistream_decode.argtypes = (
                    created, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int,
                    ctypes.c_int,
                )  # fmt: skip
                lib.opus_multistream_decoder_destroy.argtypes = (created,)
                lib.opus_packet_get_nb_samples.restype = ctypes.c_int
                lib.opus_packet_get_nb_samples.argtypes = (
                    ctypes.c_char_p,
                    ctypes.c_int32,
                    ctypes.c_int32,
                )
                _OPUS = lib
            except (OSError, AttributeError):
                _OPUS = False
    return _OPUS or None


def ogg_crc(data: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, no inversion),
    computed by zlib's reflected CRC-32 on bit-reversed bytes."""
    reflected = zlib.crc32(data.translate(_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _page(serial: int, sequence: int, granule: int, flags: int, packets: list[bytes]) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes((len(packet) % 255,))
    if len(lacing) > 255:
        raise ValueError(f"{len(packets)} packets do not fit one Ogg page")
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(lacing))
    page = bytearray(header + lacing + b"".join(packets))
    page[22:26] = struct.pack("<I", ogg_crc(bytes(page)))
    return bytes(page)


class LibopusWriter(_Writer):
    """One Ogg Opus file: libopus encodes 20 ms frames, a page goes to disk every `page_ms`
    (or sooner, when 255 lacing values are reached)."""

    def __init__(
        self,
        path: str | Path,
        channels: int = 2,
        *,
        bitrate: int = 14000,
        page_ms: int = 1000,
        title: str | None = None,
        complexity: int = COMPLEXITY,
    ) -> None:
        lib = _libopus()
        if lib is None:
            raise OSError("libopus is not available")
        super().__init__(path, channels)
        self._lib = lib
        error = ctypes.c_int(0)
        family, streams, coupled, mapping = _STREAMS[channels]
        self._encoder = lib.opus_multistream_encoder_create(
            RATE, channels, streams, coupled, mapping or b"\x00", _APPLICATION_AUDIO, error
        )
        if not self._encoder or error.value != 0:
            raise OSError(f"opus_multistream_encoder_create failed ({error.value})")
        # The file's rate is the encoder's plus about 80 bytes of page framing a second; the
        # bitrate is the streams' total, shared out by libopus.
        target = max(6000 * channels, bitrate * channels - 700)
        ctl = lib.opus_multistream_encoder_ctl
        for request, value in ((_SET_BITRATE, target), (_SET_COMPLEXITY, complexity)):
            ctl(ctypes.c_void_p(self._encoder), request, ctypes.c_int32(value))
        lookahead = ctypes.c_int32(0)
        ctl(ctypes.c_void_p(self._encoder), _GET_LOOKAHEAD, ctypes.byref(lookahead))
        self._lookahead = lookahead.value  # samples at 8 kHz the encoder holds back
        self._out = ctypes.create_string_buffer(_MAX_PACKET)
        self._rest = b""  # input short of a whole frame
        self._packets: list[bytes] = []
        self._lacing = 0
        self._encoded = 0  # frames (samples per channel) handed to the encoder
        self._page_frames = max(_FRAME, page_ms * RATE // 1000)
        self._pending_frames = 0
        self._serial = int.from_bytes(os.urandom(4), "little")
        self._sequence = 0
        self._good = 0  # file offset after the last whole page
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError:
            lib.opus_encoder_destroy(ctypes.c_void_p(self._encoder))
            raise
        vendor = f"hotline, {lib.opus_get_version_string().decode()}".encode()
        comments = [f"TITLE={title}".encode()] if title else []
        head = struct.pack(
            "<8sBBHIhB", b"OpusHead", 1, channels, self._lookahead * _SCALE, RATE, 0, family
        )
        if family:
            head += bytes((streams, coupled)) + mapping
        tags = (
            b"OpusTags"
            + struct.pack("<I", len(vendor))
            + vendor
            + struct.pack("<I", len(comments))
            + b"".join(struct.pack("<I", len(c)) + c for c in comments)
        )
        try:
            self._emit(_page(self._serial, 0, 0, _BOS, [head]))
            self._emit(_page(self._serial, 1, 0, 0, [tags]))
        except OSError:
            self._release()
            raise
        self._sequence = 2

    def write(self, pcm: bytes) -> None:
        self.frames += self._frames_in(pcm)
        width = 2 * self.channels
        data = self._rest + bytes(pcm) if self._rest else bytes(pcm)
        step = _FRAME * width
        whole = len(data) - len(data) % step
        self._rest = data[whole:]
        if whole:
            channels = self.channels
            frames = np.frombuffer(data, dtype="<i2", count=whole // 2).reshape(
                -1, _FRAME, channels
            )
            silent = ~frames.any(axis=1)  # (frame, channel): a channel silent for 20 ms
            if silent.any():
                # libopus 1.3 encodes digital silence three times slower than sound (denormal
                # floats in its filters): a ±1 LSB dither (-90 dBFS) there costs nothing to
                # hear. Per channel: each is its own stream, and one party is often silent.
                frames = frames.copy()
                dither = _DITHER[:_FRAME]
                for frame, channel in zip(*np.nonzero(silent), strict=True):
                    frames[frame, :, channel] = dither
                data = frames.tobytes()
        buffer = ctypes.create_string_buffer(data[:whole], whole) if whole else None
        base = ctypes.addressof(buffer) if buffer is not None else 0
        for offset in range(0, whole, step):
            self._encode(base + offset)
            if self._pending_frames >= self._page_frames or self._lacing > 240:
                self._flush_page(0)

    def _encode(self, address: int) -> None:
        encode = self._lib.opus_multistream_encode
        size = encode(self._encoder, address, _FRAME, self._out, _MAX_PACKET)
        if size < 0:
            raise ValueError(f"{self.path}: opus_multistream_encode failed ({size})")
        packet = self._out.raw[:size]
        self._packets.append(packet)
        self._lacing += size // 255 + 1
        self._encoded += _FRAME
        self._pending_frames += _FRAME

    def _flush_page(self, flags: int, granule: int | None = None) -> None:
        if not self._packets:
            return
        page = _page(
            self._serial,
            self._sequence,
            self._encoded * _SCALE if granule is None else granule,
            flags,
            self._packets,
        )
        self._packets, self._lacing, self._pending_frames = [], 0, 0
        self._sequence += 1
        try:
            self._emit(page)
        except OSError as exc:
            self.broken = f"{exc} ({_disk_state(self.path)})"
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good)  # no torn page left behind
            raise OSError(f"{self.path}: {self.broken}") from exc

    def _emit(self, page: bytes) -> None:
        view = memoryview(page)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._good += len(page)

    def close(self) -> None:
        """Encode what the encoder still holds, write the last page (end of stream, its
        granule trimmed to the audio written) and close. A broken writer only closes."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.broken is None:
                width = 2 * self.channels
                # Pad to whole frames and push the lookahead through with silence.
                short = len(self._rest) // width
                flush = -(-(short + self._lookahead) // _FRAME) * _FRAME
                tail = self._rest + bytes((flush - short) * width)
                self._rest = b""
                buffer = ctypes.create_string_buffer(tail, len(tail))
                for offset in range(0, len(tail), _FRAME * width):
                    self._encode(ctypes.addressof(buffer) + offset)
                    if self._lacing > 240:
                        self._flush_page(0)
                end = (self._lookahead + self.frames) * _SCALE
                if not self._packets:  # every packet went out: an empty last page is not allowed
                    self._encode(ctypes.addressof(ctypes.create_string_buffer(_FRAME * width)))
                self._flush_page(_EOS, granule=end)
        finally:
            self._release()

    def _release(self) -> None:
        if self._encoder:
            self._lib.opus_multistream_encoder_destroy(ctypes.c_void_p(self._encoder))
            self._encoder = None
        if getattr(self, "_fd", -1) >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def OggOpusWriter(  # noqa: N802 (a class to its callers: the writer this machine can run)
    path: str | Path,
    channels: int = 2,
    *,
    bitrate: int = 14000,
    page_ms: int = 1000,
    title: str | None = None,
) -> LibopusWriter | SndfileOpusWriter:
    """The libopus writer where libopus is installed, else the libsndfile one."""
    if _libopus() is not None:
        return LibopusWriter(path, channels, bitrate=bitrate, page_ms=page_ms, title=title)
    return SndfileOpusWriter(path, channels, bitrate=bitrate, page_ms=page_ms, title=title)


def encoder() -> str:
    """Which encoder writes the recordings (the node's log, the benchmark)."""
    lib = _libopus()
    if lib is not None:
        return f"{lib.opus_get_version_string().decode()} (complexity {COMPLEXITY})"
    return f"libsndfile {library()}"


__all__ = [
    "LibopusWriter",
    "OggOpusWriter",
    "SndfileOpusWriter",
    "encoder",
    "ends_with_eos",
    "level_for",
    "library",
    "ogg_crc",
    "read_ogg_opus",
]


class _Page(NamedTuple):
    granule: int
    packets: list[bytes]  # the packets that end on this page
    after_gap: bool  # one or more pages before it were lost (torn, damaged, missing)
    eos: bool


def _ogg_pages(data: bytes) -> list[_Page]:
    """The pages of the first logical stream that are whole and pass their CRC."""
    pages: list[_Page] = []
    partial = b""
    serial: int | None = None
    expected = 0  # the next page sequence number
    at = data.find(b"OggS")
    while 0 <= at <= len(data) - 27:
        count = data[at + 26]
        lacing = data[at + 27 : at + 27 + count]
        end = at + 27 + count + sum(lacing)
        whole = len(lacing) == count and end <= len(data)
        page = bytearray(data[at:end])
        crc = struct.unpack_from("<I", page, 22)[0]
        page[22:26] = bytes(4)
        if not whole or ogg_crc(bytes(page)) != crc:
            at = data.find(b"OggS", at + 1)  # torn or not a page: look for the next one
            continue
        flags, granule, page_serial, sequence = struct.unpack_from("<BqII", data, at + 5)
        if serial is None:
            serial = page_serial
        if page_serial == serial:
            gap = sequence != expected
            expected = sequence + 1
            if gap or not flags & _CONTINUED:
                partial = b""  # a packet begun on a lost page cannot be completed
            packets = []
            body = at + 27 + count
            for value in lacing:
                partial += data[body : body + value]
                body += value
                if value < 255:
                    packets.append(partial)
                    partial = b""
            pages.append(_Page(granule, packets, gap, bool(flags & _EOS)))
        at = data.find(b"OggS", end)
    return pages


def _read_libopus(path: Path) -> tuple[bytes, int, bool]:
    lib = _libopus()
    pages = _ogg_pages(path.read_bytes())
    head = pages[0].packets[0] if pages and pages[0].packets else b""
    if not head.startswith(b"OpusHead") or len(head) < 19 or pages[0].after_gap:
        raise ValueError(f"{path}: not an Ogg Opus file")
    channels, preskip, rate = struct.unpack_from("<BHI", head, 9)
    if rate != RATE or channels not in (1, 2):
        raise ValueError(f"{path}: {channels} channels at {rate} Hz, expected 1 or 2 at {RATE}")
    # Family 0: one stream (coupled when stereo, as files before 2026-12 and libsndfile's
    # are); family 1: the stream counts and the channel map follow (RFC 7845 §5.1.1).
    if head[18] == 0:
        streams, coupled, mapping = 1, channels - 1, bytes(range(channels))
    elif head[18] == 1 and len(head) >= 21 + channels:
        streams, coupled, mapping = head[19], head[20], head[21 : 21 + channels]
    else:
        raise ValueError(f"{path}: channel mapping family {head[18]} is not one of ours")
    tags = next(
        (i for i, p in enumerate(pages) if any(k.startswith(b"OpusTags") for k in p.packets)), None
    )
    if tags is None:
        raise ValueError(f"{path}: no OpusTags header")
    error = ctypes.c_int(0)
    decoder = lib.opus_multistream_decoder_create(
        RATE, channels, streams, coupled, mapping, ctypes.byref(error)
    )
    if not decoder or error.value != 0:
        raise ValueError(f"{path}: opus_multistream_decoder_create failed ({error.value})")
    width = channels * 2
    out = (ctypes.c_int16 * (_MAX_FRAME * channels))()
    pieces: list[bytes] = []
    decoded = 0  # samples at 8 kHz, the pre-skip included (granule positions / 6)
    try:
        for page in pages[tags + 1 :]:
            if page.after_gap and page.granule >= 0:
                # Lost pages: silence for the time they held, so what follows stays in place.
                durations = sum(
                    max(0, lib.opus_packet_get_nb_samples(k, len(k), RATE)) for k in page.packets
                )
                missing = page.granule // _SCALE - durations - decoded
                if missing > 0:
                    pieces.append(bytes(missing * width))
                    decoded += missing
            for packet in page.packets:
                decode = lib.opus_multistream_decode
                samples = decode(decoder, packet, len(packet), out, _MAX_FRAME, 0)
                if samples < 0:
                    continue  # a damaged packet: skipped, as a player would
                pieces.append(ctypes.string_at(out, samples * width))
                decoded += samples
    finally:
        lib.opus_multistream_decoder_destroy(decoder)
    complete = bool(pages) and pages[-1].eos
    pcm = b"".join(pieces)
    skip = (preskip // _SCALE) * width
    length = len(pcm) - skip
    if complete:  # the last page's granule trims the padding of the last frame
        length = min(length, max(0, (pages[-1].granule - preskip) // _SCALE) * width)
    return pcm[skip : skip + length], channels, complete
