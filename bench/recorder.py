"""Call recording capacity: two-channel Ogg Opus, offline as fast as it goes and live through
the RTP engine's heard taps, and the BHCA benchmark's node with and without recording.

    python bench/recorder.py                        # offline + live 50,100,200,300 x 10 s (~2 min)
    python bench/recorder.py --live 200 --seconds 60 --offline-minutes 0
    python bench/recorder.py --bhca --live 0        # node with/without recording (~3 min)
    python bench/recorder.py --json out.json

1. Offline: `--offline-minutes` one-minute calls (channel 0 the caller's speech, channel 1 the
   agent's: espeak-ng speech through G.711 as bench/dtmf.py renders it, or a synthetic voiced
   signal when espeak-ng is missing) written through `recorder.opus.OggOpusWriter` in 200 ms
   blocks, the tap's block, on one thread. Reported: CPU seconds per recorded call-hour (thread
   CPU, median of `--rounds`), how many recordings one core could keep up with, bytes per
   minute and the ratio to 8 kHz 16-bit stereo PCM; and, decoded again, the SNR of a 1004 Hz
   tone and of speech against the input after aligning by cross-correlation, the speech's
   segmental SNR and log-spectral distance. Opus is a perceptual codec: it keeps the spectrum,
   not the waveform, so waveform SNR on speech is low by design; the log-spectral distance is
   the fairer figure. References in the same run: the same writer on the system's libsndfile
   and libopus (a child process that does not load the wheel's bundled library), and libopus
   alone (ctypes, no Ogg, the codec's floor).
2. Live: N calls of two legs in `media.engine.RtpEngine` on 127.0.0.1 (PCMU caller, PCMA
   agent, bridged), a paced Python sender process on another CPU sending each leg speech every
   20 ms, and `recorder.service.Recorder` fed the bus events a node would publish
   (CallStarted, CallAnsweredByNode, CallEnded) with its taps drained on an asyncio loop as
   the node does; the calls are answered spread over one 200 ms tap block, as real calls
   are not all answered on the same tick. Reported per N: the recorder worker thread's CPU,
   per recording and per call-hour, the encoder lag (queued → encoded) p50/p95/max, frames
   the taps dropped, and whether every file decodes whole to the call's length. Carried:
   nothing dropped, every file within 2 % of `--seconds`, lag p95 < 1 s, and steady (the
   last quarter's lag p95 within 0.25 s of the first quarter's: an encoder falling behind
   slowly would pass a short run's p95). Quality inspection is off (it runs after the call,
   on another thread).
3. `--bhca`: bench/bhca.py's machinery (SIPp agent UAS, bench agents, a seeded SIPp trunk
   caller) at one fixed rate against the node twice, `recording.enabled: false` then `true`,
   setup p50/p95 and failures side by side. SIPp sends no RTP: the taps record silence, which
   costs the encoder about what speech does.

The bench process (engine, event loop, recorder) is pinned to CPU 0 and the sender to CPU 1
when there are two CPUs. Every loop is bounded in count and time; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Run as a script, bench/ comes first on sys.path and this file would shadow the `recorder`
# package: the repository first, bench/ (bhca, dtmf) last.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(BENCH))

import bhca  # noqa: E402

RATE = 8000
FRAME = 160  # samples in 20 ms
BLOCK = 1600  # samples in the tap's 200 ms block (RtpEngine's tap_block_ms)
CALL_SECONDS = 60
PCM_BYTES_PER_MINUTE = RATE * 2 * 2 * 60  # 8 kHz, 16 bit, two channels
TONE_HZ = 1004.0
LOCAL = "127.0.0.1"
ENGINE_PORTS = (16000, 31999)  # below the kernel's ephemeral range
SLOTS = 10  # sub-slots of the 20 ms period over which the sender spreads its streams
MAX_LAG_P95 = 1.0
MAX_LAG_GROWTH = 0.25  # s, last quarter's lag p95 over the first's
DURATION_TOLERANCE = 0.02
OPUS_APPLICATION_AUDIO, OPUS_SET_BITRATE, OPUS_SET_COMPLEXITY = 2049, 4002, 4010
WITHOUT, WITH = "no-recording", "recording"


# --- signals ------------------------------------------------------------------------------
def speech_corpus(seed: int) -> tuple[np.ndarray, str]:
    """int16 speech at 8 kHz as the engine hands it to a tap (after G.711), and its source."""
    import dtmf

    if shutil.which("espeak-ng"):
        voices = [v for v in dtmf.VOICES if v[0] in ("en-us", "cmn")]
        pcm = dtmf.speech(voices, 1, np.random.default_rng(seed))
        return pcm, "espeak-ng en-us + cmn through mu-law (bench/dtmf.py speech)"
    return synthetic_speech(60.0, seed), "synthetic voiced signal (espeak-ng not found)"


def synthetic_speech(seconds: float, seed: int) -> np.ndarray:
    """Syllables of a 90-220 Hz glottal pulse train through three formant resonators."""
    import dtmf
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480)]
    out = np.zeros(int(seconds * RATE))
    at = 0
    while at < len(out) - RATE:
        length = int(rng.uniform(0.15, 0.4) * RATE)
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(np.linspace(0, np.pi, length)))
        phase = np.cumsum(f0 / RATE)
        pulses = np.diff(np.floor(phase), prepend=0.0)
        voiced = pulses
        for formant in vowels[rng.integers(len(vowels))]:
            r = math.exp(-math.pi * 80 / RATE)
            voiced = lfilter(
                [1 - r], [1, -2 * r * math.cos(2 * math.pi * formant / RATE), r * r], voiced
            )
        out[at : at + length] = voiced * np.hanning(length)
        at += length + int(rng.choice([rng.uniform(0.03, 0.2), 0.6], p=[0.85, 0.15]) * RATE)
    return dtmf.finish(dtmf.at_level(out, -18))


def tone(seconds: float) -> np.ndarray:
    import dtmf

    t = np.arange(int(seconds * RATE)) / RATE
    return dtmf.finish(dtmf.DBM0_AMPLITUDE * 10 ** (-10 / 20) * np.sin(2 * np.pi * TONE_HZ * t))


def looped(x: np.ndarray, start: int, n: int) -> np.ndarray:
    return np.resize(np.roll(x, -start), n)


def call_audio(corpus: np.ndarray, index: int, seconds: float) -> np.ndarray:
    """A call: the caller on channel 0, the agent (the same corpus, elsewhere) on channel 1."""
    n, shift = int(seconds * RATE), 7 * RATE * index
    caller = looped(corpus, shift, n)
    agent = looped(corpus, shift + len(corpus) // 2, n)
    return np.stack([caller, agent], axis=1).astype(np.int16)


def blocks(stereo: np.ndarray) -> list[bytes]:
    return [stereo[at : at + BLOCK].tobytes() for at in range(0, len(stereo), BLOCK)]


# --- quality ------------------------------------------------------------------------------
def delay(x: np.ndarray, y: np.ndarray, max_lag: int = 2000) -> int:
    """The lag of y against x (y[k + lag] ≈ x[k]) by cross-correlation over the first 10 s."""
    n = min(len(x), len(y), 10 * RATE)
    size = 1 << (2 * n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(y[:n], size) * np.conj(np.fft.rfft(x[:n], size)), size)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    return int(lags[np.argmax(corr[lags])])


def aligned(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Both after removing the lag, without the first and last 100 ms (codec edges)."""
    x, y = x.astype(float), y.astype(float)
    x, y = (x, y[lag:]) if lag >= 0 else (x[-lag:], y)
    n = min(len(x), len(y))
    edge = RATE // 10
    return x[edge : n - edge], y[edge : n - edge]


def snr_db(x: np.ndarray, y: np.ndarray) -> float:
    return 10 * math.log10(np.sum(x**2) / max(np.sum((x - y) ** 2), 1e-9))


def active_frames(x: np.ndarray, frame: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame start indices, and which frames are within 40 dB of the loudest (speech)."""
    starts = np.arange(0, len(x) - frame, hop)
    energy = np.array([np.sum(x[s : s + frame] ** 2) for s in starts]) + 1e-9
    return starts, energy > energy.max() * 1e-4


def segmental_snr_db(x: np.ndarray, y: np.ndarray) -> float:
    """Mean per-20 ms SNR over speech frames, each clamped to [-10, 35] dB."""
    starts, active = active_frames(x, FRAME, FRAME)
    values = [
        min(35.0, max(-10.0, snr_db(x[s : s + FRAME], y[s : s + FRAME])))
        for s, on in zip(starts, active, strict=True)
        if on
    ]
    return float(np.mean(values))


def log_spectral_distance_db(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over speech frames (32 ms Hann, 16 ms hop) of the RMS dB difference of the power
    spectra, 0-4 kHz, each frame floored 50 dB below its own peak (below that, Opus's noise
    filling and G.711's quantisation noise alone would dominate the figure)."""
    frame = 256
    starts, active = active_frames(x, frame, frame // 2)
    window = np.hanning(frame)
    px = np.array([np.abs(np.fft.rfft(window * x[s : s + frame])) ** 2 for s in starts[active]])
    py = np.array([np.abs(np.fft.rfft(window * y[s : s + frame])) ** 2 for s in starts[active]])
    floor = px.max(axis=1, keepdims=True) * 1e-5
    diff = 10 * np.log10(np.maximum(px, floor) / np.maximum(py, floor))
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=1))))


def tone_sinad_db(y: np.ndarray) -> float:
    """The decoded tone against everything else: a least-squares sine at TONE_HZ and DC."""
    t = np.arange(len(y)) / RATE
    basis = np.stack(
        [np.sin(2 * np.pi * TONE_HZ * t), np.cos(2 * np.pi * TONE_HZ * t), np.ones(len(y))], 1
    )
    fit = basis @ np.linalg.lstsq(basis, y, rcond=None)[0]
    return snr_db(fit, y)


def quality(tone_in: np.ndarray, speech_in: np.ndarray, decoded: np.ndarray) -> dict:
    """Tone on channel 0, speech on channel 1, both aligned by the speech's lag (a tone's
    cross-correlation peaks once a period)."""
    lag = delay(speech_in, decoded[:, 1])
    x, y = aligned(tone_in, decoded[:, 0], lag)
    sx, sy = aligned(speech_in, decoded[:, 1], lag)
    return {
        "delay_samples": lag,
        "tone_snr_db": round(snr_db(x, y), 1),
        "tone_sinad_db": round(tone_sinad_db(y), 1),
        "speech_snr_db": round(snr_db(sx, sy), 1),
        "speech_segmental_snr_db": round(segmental_snr_db(sx, sy), 1),
        "speech_lsd_db": round(log_spectral_distance_db(sx, sy), 2),
    }


# --- offline ------------------------------------------------------------------------------
def use_system_libsndfile() -> None:
    """Make soundfile, not imported yet, load the system's libsndfile instead of its wheel's."""
    sys.modules["_soundfile_data"] = None  # type: ignore[assignment]


def use_bundled_libsndfile() -> None:
    """Make recorder.opus write with the soundfile wheel's libsndfile."""
    os.environ["HOTLINE_OPUS"] = "libsndfile"
    os.environ["HOTLINE_SNDFILE"] = "bundled"


def use_libsndfile_writer() -> None:
    """Make recorder.opus write with libsndfile (the system's where usable), not libopus."""
    os.environ["HOTLINE_OPUS"] = "libsndfile"


def libraries() -> str:
    """The libsndfile and libopus this process's soundfile uses (libsndfile logs the latter)."""
    from recorder.opus import _soundfile

    soundfile = _soundfile()  # the library the node records with

    with tempfile.NamedTemporaryFile(suffix=".opus") as f:
        with soundfile.SoundFile(f.name, "w", RATE, 1, format="OGG", subtype="OPUS") as probe:
            match = re.search(r"Opus library version: (\S+ \S+)", probe.extra_info)
    opus = match.group(1) if match else "libopus ?"
    return f"libsndfile {soundfile.__libsndfile_version__}, {opus}"


def writer_name() -> str:
    """The encoder recorder.opus writes with in this process."""
    from recorder.opus import encoder

    name = encoder()
    return name if name.startswith("libopus") else libraries()


def encode_writer(
    calls: list[list[bytes]],
    quality_in: tuple[np.ndarray, np.ndarray],
    bitrate: int,
    page_ms: int,
    rounds: int,
) -> dict:
    """Each call through its own OggOpusWriter, block by block; then the quality file."""
    from recorder.opus import OggOpusWriter, read_ogg_opus

    cpu, size = [], 0
    with tempfile.TemporaryDirectory(prefix="hotline-bench-rec-") as tmp:
        for _ in range(rounds):
            size, start = 0, time.thread_time()
            for i, call in enumerate(calls):
                path = Path(tmp) / f"call{i}.opus"
                writer = OggOpusWriter(path, 2, bitrate=bitrate, page_ms=page_ms)
                for block in call:
                    writer.write(block)
                writer.close()
                size += path.stat().st_size
            cpu.append(time.thread_time() - start)
        path = Path(tmp) / "quality.opus"
        writer = OggOpusWriter(path, 2, bitrate=bitrate, page_ms=page_ms)
        tone_in, speech_in = quality_in
        for block in blocks(np.stack([tone_in, speech_in], axis=1)):
            writer.write(block)
        writer.close()
        pcm, _channels, _complete = read_ogg_opus(path)
    decoded = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2)
    return {
        "encoder": f"OggOpusWriter ({writer_name()})",
        "cpu_s": cpu,
        "bytes": size,
        **quality(tone_in, speech_in, decoded),
    }


def encode_libopus(calls: list[list[bytes]], bitrate: int, rounds: int) -> dict | None:
    """libopus alone as libsndfile drives it (AUDIO, complexity 10, 20 ms): no Ogg, no file."""
    name = ctypes.util.find_library("opus")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.opus_get_version_string.restype = ctypes.c_char_p
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    pointer, text, int32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
    lib.opus_encode.argtypes = [pointer, text, ctypes.c_int, text, int32]
    lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int32]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    packet = ctypes.create_string_buffer(4000)
    frames = [
        [b[at : at + 4 * FRAME] for b in call for at in range(0, len(b), 4 * FRAME)]
        for call in calls
    ]
    cpu, size = [], 0
    for _ in range(rounds):
        size, start = 0, time.thread_time()
        for call in frames:
            error = ctypes.c_int()
            encoder = lib.opus_encoder_create(RATE, 2, OPUS_APPLICATION_AUDIO, ctypes.byref(error))
            lib.opus_encoder_ctl(encoder, OPUS_SET_BITRATE, 2 * bitrate)
            lib.opus_encoder_ctl(encoder, OPUS_SET_COMPLEXITY, 10)
            for frame in call:
                size += lib.opus_encode(encoder, frame, FRAME, packet, 4000)
            lib.opus_encoder_destroy(encoder)
        cpu.append(time.thread_time() - start)
    version = lib.opus_get_version_string().decode()
    return {"encoder": f"{version} alone (ctypes, no Ogg)", "cpu_s": cpu, "bytes": size}


def run_offline(args: argparse.Namespace, corpus: np.ndarray) -> list[dict]:
    minutes = args.offline_minutes
    calls = [blocks(call_audio(corpus, i, CALL_SECONDS)) for i in range(minutes)]
    quality_in = (tone(20.0), looped(corpus, 0, 20 * RATE))
    work = (calls, quality_in, args.bitrate, args.page_ms, args.rounds)
    rows = [encode_writer(*work)]
    # References: the libsndfile writers (the node uses libopus directly where installed).
    from recorder.opus import _system_libsndfile

    references = [(use_bundled_libsndfile, "wheel")]
    if _system_libsndfile() is not None:
        references.insert(0, (use_libsndfile_writer, "system"))
    spawn = multiprocessing.get_context("spawn")
    for other, label in references:
        with ProcessPoolExecutor(1, mp_context=spawn, initializer=other) as pool:
            rows.append(pool.submit(encode_writer, *work).result(timeout=600))
        rows[-1]["encoder"] += f" [{label}]"
    libopus = encode_libopus(calls, args.bitrate, args.rounds)
    if libopus is not None:
        rows.append(libopus)
    for row in rows:
        cpu = statistics.median(row["cpu_s"])
        per_hour = cpu * 60 / minutes
        row.update(
            minutes=minutes,
            cpu_s_per_call_hour=round(per_hour, 2),
            realtime_factor=round(minutes * 60 / cpu, 1),
            recordings_per_core=int(3600 / per_hour),
            bytes_per_minute=round(row["bytes"] / minutes),
            ratio_to_pcm=round(PCM_BYTES_PER_MINUTE * minutes / row["bytes"], 1),
        )
    return rows


QUALITY_KEYS = ("tone_snr_db", "tone_sinad_db", "speech_snr_db", "speech_segmental_snr_db",
                "speech_lsd_db", "delay_samples")  # fmt: skip


def print_offline(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\noffline: {args.offline_minutes} one-minute stereo calls a round, median of "
        f"{args.rounds} rounds, {BLOCK // 8} ms blocks, {args.bitrate} bit/s a channel, "
        f"page {args.page_ms} ms; quality on 20 s (tone | speech)"
    )
    head = ("encoder", "CPU s/call-h", "x realtime", "rec/core", "bytes/min", "PCM/x",
            "tone SNR", "SINAD", "speech SNR", "seg SNR", "LSD dB", "delay")  # fmt: skip
    cells = [head]
    for r in rows:
        q = [r.get(k) for k in QUALITY_KEYS]
        cells.append((
            r["encoder"], f"{r['cpu_s_per_call_hour']:.1f}", f"{r['realtime_factor']:.0f}",
            str(r["recordings_per_core"]), f"{r['bytes_per_minute']:,}",
            f"{r['ratio_to_pcm']:.1f}", *("-" if v is None else str(v) for v in q),
        ))  # fmt: skip
    print_cells(cells)
    print(
        "SNR/SINAD/seg SNR/LSD in dB, delay in samples (cross-correlation after the decoder's "
        "pre-skip); waveform SNR of a perceptual codec on speech is low by design"
    )


def print_cells(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        first, *rest = row
        print(
            "  ".join(
                [first.ljust(widths[0])]
                + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
            )
        )


# --- live: the sender ---------------------------------------------------------------------
HEADER = struct.Struct("!BBHII")


def sender(conn: Any, cpu: int | None, seconds: float, ulaw: bytes, alaw: bytes) -> None:
    """One process: bind a caller and an agent socket, report their ports, get the targets
    and the start time, then send each stream one packet every 20 ms for `seconds`."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOCAL, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # what the engine relays back
        socks.append(sock)
    conn.send([s.getsockname()[1] for s in socks])
    targets, t0 = conn.recv()  # [(engine port, side)], time.monotonic() to start at
    laws = ((0, ulaw), (8, alaw))
    frames = len(ulaw) // FRAME
    packets = int(seconds * 50)
    sent, late = 0, []
    deadline = t0 + seconds + 10
    for k in range(packets):
        for slot in range(SLOTS):
            due = t0 + k * 0.02 + slot * 0.02 / SLOTS
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            late.append(time.monotonic() - due)
            for i in range(slot, len(targets), SLOTS):
                port, side = targets[i]
                pt, payload = laws[side]
                at = (i * 397 + k) % frames * FRAME
                header = HEADER.pack(0x80, pt, k & 0xFFFF, k * FRAME & 0xFFFFFFFF, 0x1000 + i)
                socks[side].sendto(header + payload[at : at + FRAME], (LOCAL, port))
                sent += 1
        if time.monotonic() > deadline:
            break
    late.sort()
    p99, worst = late[int(0.99 * (len(late) - 1))], late[-1]
    conn.send({"sent": sent, "late_p99_ms": 1000 * p99, "late_max_ms": 1000 * worst})
    for sock in socks:
        sock.close()


# --- live: the recorder ---------------------------------------------------------------------
class TapCounter:
    """The engine as the recorder sees it, keeping what each tap read says was dropped."""

    anchors = True

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.overflow: dict[str, int] = {}

    def tap_start(self, name: str, leg: str, other: str | None, *, heard: bool = False) -> None:
        self.engine.tap_start(name, leg, other, heard=heard)

    def tap_read(self, name: str) -> Any:
        block = self.engine.tap_read(name)
        self.overflow[name] = block.overflow
        return block

    def tap_stop(self, name: str) -> None:
        self.engine.tap_stop(name)


def thread_cpu_seconds(tid: int) -> float:
    """utime + stime of one thread of this process."""
    text = Path(f"/proc/self/task/{tid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def record_live(
    engine: Any, calls: list[str], seconds: float, directory: Path, config: Any, start_at: float
) -> dict:
    """The recorder on this loop, fed the events of `calls`: answered from `start_at` on,
    spread over one tap block as real calls are, each ended `seconds` after its answer;
    returns CPU, lag and backlog figures once the encoder is idle."""
    from media.events import TapData
    from recorder.service import Recorder
    from softswitch.call import events as ev

    loop = asyncio.get_running_loop()
    media = TapCounter(engine)
    alerts: list[Any] = []
    recorder = Recorder(config, directory, directory / "recordings.db", media,
                        publish=alerts.append, post=loop.call_soon_threadsafe)  # fmt: skip
    worker = recorder._worker  # the encoder thread: its CPU and each block's lag are measured
    lags: list[tuple[float, float]] = []  # (queued at, queued -> encoded)
    encode = worker._pcm

    def timed(call_id: str, pcm: bytes, queued_at: float) -> None:
        encode(call_id, pcm, queued_at)
        lags.append((queued_at, time.monotonic() - queued_at))

    worker._pcm = timed  # type: ignore[method-assign]

    def on_event(event: Any) -> None:
        if type(event) is TapData and recorder.owns(event.call_id):
            recorder.tap_data(event.call_id)

    def answer(number: int, call_id: str) -> None:
        now = time.time()
        recorder(
            ev.CallStarted(now, call_id, f"{call_id}@bench", "bench", f"13{number:09d}", "9000")
        )
        recorder(ev.CallAnsweredByNode(now, call_id, f"{call_id}-a"))
        loop.call_later(seconds, hang_up, call_id)

    def hang_up(call_id: str) -> None:
        recorder(ev.CallEnded(time.time(), call_id, "answered", "caller", None, seconds, 0.0))

    engine.attach(loop, on_event)
    spread = BLOCK / RATE
    try:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        cpu0 = thread_cpu_seconds(worker.native_id), bhca.cpu_seconds(os.getpid())
        began = time.monotonic()
        for number, call_id in enumerate(calls):
            loop.call_at(began + spread * number / len(calls), answer, number, call_id)
        backlog = 0
        while time.monotonic() < began + spread + seconds + 0.05:
            await asyncio.sleep(0.25)
            backlog = max(backlog, recorder.stats.queued)
        for _ in range(50):  # the last hang-ups, should the loop have run late
            if not recorder.stats.active:
                break
            await asyncio.sleep(0.1)
        ended = time.monotonic()
        idle = await asyncio.to_thread(recorder.wait_idle, max(30.0, 3 * seconds))
        drained = time.monotonic()
        cpu1 = thread_cpu_seconds(worker.native_id), bhca.cpu_seconds(os.getpid())
    finally:
        engine.detach()
        await asyncio.to_thread(recorder.close, 5.0)
    quarter = seconds / 4
    warm = min(0.5, quarter / 2)
    first = sorted(lag for at, lag in lags if began + warm <= at < began + quarter)
    last = sorted(lag for at, lag in lags if began + 3 * quarter <= at < began + seconds)
    every = sorted(lag for _at, lag in lags)
    return {
        "idle": idle,
        "worker_cpu_s": cpu1[0] - cpu0[0],
        "process_cpu_s": cpu1[1] - cpu0[1],
        "window_s": drained - began,
        "drain_s": round(drained - ended, 2),
        "backlog_max": backlog,
        "lag_p50_s": bhca.percentile(every, 0.5),
        "lag_p95_s": bhca.percentile(every, 0.95),
        "lag_max_s": every[-1] if every else None,
        "lag_first_quarter_p95_s": bhca.percentile(first, 0.95),
        "lag_last_quarter_p95_s": bhca.percentile(last, 0.95),
        "stats_max_lag_s": round(recorder.stats.max_lag, 3),
        "stats_queued_after": recorder.stats.queued,  # 0 once idle
        "blocks": recorder.stats.blocks,
        "overflow_frames": sum(media.overflow.values()),
        "alerts": [str(a) for a in alerts],
    }


def check_files(directory: Path, expected: int, seconds: float) -> dict:
    from recorder.opus import read_ogg_opus

    durations, whole, size = [], 0, 0
    for path in sorted(directory.rglob("*.opus")):
        pcm, channels, complete = read_ogg_opus(path)
        durations.append(len(pcm) / (2 * channels * RATE))
        size += path.stat().st_size
        whole += complete and abs(durations[-1] - seconds) <= DURATION_TOLERANCE * seconds
    return {
        "files": len(durations),
        "files_ok": whole if len(durations) == expected else 0,
        "duration_min_s": round(min(durations), 3) if durations else None,
        "duration_max_s": round(max(durations), 3) if durations else None,
        "bytes_per_minute": round(size / max(sum(durations) / 60, 1e-9)),
    }


def run_live_one(
    calls_count: int, args: argparse.Namespace, corpus: np.ndarray, sender_cpu: int | None
) -> dict:
    from media import _dsp
    from media.engine import RtpEngine
    from softswitch.config import RecordingConfig, RecordingQa

    pcm = corpus[: len(corpus) // FRAME * FRAME].astype("<i2").tobytes()
    ulaw, alaw = _dsp.ulaw_encode(pcm), _dsp.alaw_encode(pcm)
    processes = max(1, math.ceil(2 * calls_count / 1000))
    spawn = multiprocessing.get_context("spawn")
    senders, pipes = [], []
    for _ in range(processes):
        ours, theirs = spawn.Pipe()
        proc = spawn.Process(
            target=sender, args=(theirs, sender_cpu, args.seconds + 1.0, ulaw, alaw), daemon=True
        )
        proc.start()
        senders.append(proc)
        pipes.append(ours)
    engine = RtpEngine(LOCAL, *ENGINE_PORTS, rtp_timeout=600, max_legs=2 * calls_count + 8)
    config = RecordingConfig(
        bitrate=args.bitrate, page_ms=args.page_ms, qa=RecordingQa(enabled=False)
    )
    try:
        ports = [pipe.recv() if pipe.poll(30) else None for pipe in pipes]
        if None in ports:
            raise RuntimeError("a sender process did not start within 30 s")
        targets: list[list[tuple[int, int]]] = [[] for _ in range(processes)]
        calls = [f"rec{c}" for c in range(calls_count)]
        for c, call_id in enumerate(calls):
            caller_port, agent_port = ports[c % processes]
            a, b = f"{call_id}-a", f"{call_id}-b"
            _, port_a = engine.create_leg(a)
            _, port_b = engine.create_leg(b)
            engine.set_remote(a, LOCAL, caller_port, 0, 20, None)
            engine.set_remote(b, LOCAL, agent_port, 8, 20, None)
            engine.bridge(a, b)
            targets[c % processes] += [(port_a, 0), (port_b, 1)]
        t0 = time.monotonic() + 0.5
        for pipe, mine in zip(pipes, targets, strict=True):
            pipe.send((mine, t0))
        with tempfile.TemporaryDirectory(prefix="hotline-bench-rec-") as tmp:
            result = asyncio.run(
                record_live(engine, calls, args.seconds, Path(tmp), config, t0 + 0.3)
            )
            result.update(check_files(Path(tmp), calls_count, args.seconds))
        result["ticks_missed"] = engine.info().get("ticks_missed")
        reports = [pipe.recv() if pipe.poll(args.seconds + 30) else {} for pipe in pipes]
    finally:
        engine.close()
        for proc in senders:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    audio_hours = calls_count * args.seconds / 3600
    result.update(
        calls=calls_count,
        seconds=args.seconds,
        senders=processes,
        sent=sum(r.get("sent", 0) for r in reports),
        sender_late_p99_ms=round(max((r.get("late_p99_ms", 0.0) for r in reports), default=0.0), 2),
        worker_cpu_percent=round(100 * result["worker_cpu_s"] / result["window_s"], 1),
        process_cpu_percent=round(100 * result["process_cpu_s"] / result["window_s"], 1),
        cpu_s_per_call_hour=round(result["worker_cpu_s"] / audio_hours, 1),
    )
    result["per_recording_percent"] = round(100 * result["cpu_s_per_call_hour"] / 3600, 3)
    first, last = result["lag_first_quarter_p95_s"], result["lag_last_quarter_p95_s"]
    # Keeping up, not falling behind slowly: the lag of the last quarter of the calls is
    # that of the first (a growing backlog would pass a short run's p95 < 1 s).
    result["steady"] = first is not None and last is not None and last <= first + MAX_LAG_GROWTH
    result["carried"] = bool(
        result["idle"]
        and result["steady"]
        and result["overflow_frames"] == 0
        and result["files_ok"] == calls_count
        and result["lag_p95_s"] is not None
        and result["lag_p95_s"] < MAX_LAG_P95
    )
    return result


def run_live(args: argparse.Namespace, corpus: np.ndarray, sender_cpu: int | None) -> list[dict]:
    rows = []
    for calls in args.live:
        row = run_live_one(calls, args, corpus, sender_cpu)
        rows.append(row)
        print(
            f"  live N={calls}: worker {row['worker_cpu_percent']:.1f} % CPU, lag p95 "
            f"{row['lag_p95_s'] or 0:.3f} s, {row['files_ok']}/{calls} files whole"
            + ("" if row["carried"] else " (not carried)"),
            file=sys.stderr,
            flush=True,
        )
        if not row["idle"]:
            print("  the encoder did not catch up: higher N not run", file=sys.stderr)
            break
    return rows


def print_live(rows: list[dict], args: argparse.Namespace, pinned: bool) -> None:
    where = "bench process on CPU 0, sender on CPU 1" if pinned else "not pinned"
    print(
        f"\nlive: N calls recorded at real time through the engine's heard taps for "
        f"{args.seconds:g} s (PCMU caller bridged to PCMA agent, speech both ways, tap block "
        f"200 ms), {args.bitrate} bit/s a channel; {where}"
    )
    head = ("N", "worker CPU %", "per rec %", "CPU s/call-h", "process %", "backlog",
            "lag p50", "lag p95", "lag max", "drain s", "dropped", "files ok", "duration s",
            "bytes/min", "send late", "steady", "carried")  # fmt: skip
    cells = [head]
    for r in rows:
        lags = [r[k] for k in ("lag_p50_s", "lag_p95_s", "lag_max_s")]
        cells.append((
            str(r["calls"]), f"{r['worker_cpu_percent']:.1f}",
            f"{r['per_recording_percent']:.3f}", f"{r['cpu_s_per_call_hour']:.1f}",
            f"{r['process_cpu_percent']:.1f}", str(r["backlog_max"]),
            *("-" if v is None else f"{v:.3f}" for v in lags), f"{r['drain_s']:.1f}",
            str(r["overflow_frames"]), f"{r['files_ok']}/{r['calls']}",
            f"{r['duration_min_s']}-{r['duration_max_s']}", f"{r['bytes_per_minute']:,}",
            f"{r['sender_late_p99_ms']:.1f}", "yes" if r["steady"] else "no",
            "yes" if r["carried"] else "no",
        ))  # fmt: skip
    print_cells(cells)
    print(
        "worker CPU %: of one core from the first tap to the encoder idle; "
        "lag: block queued -> encoded (add up to 200 ms the block spent in the tap); backlog: "
        "most blocks waiting at once; dropped: tap frames lost (ring full); send late: the "
        "sender's p99 lateness in ms; steady: lag p95 of the last quarter of the calls within "
        f"{MAX_LAG_GROWTH:g} s of the first's; carried: steady, nothing dropped, every file "
        f"whole and within {DURATION_TOLERANCE:.0%} of {args.seconds:g} s, lag p95 < "
        f"{MAX_LAG_P95:g} s"
    )
    best = None
    for row in sorted(rows, key=lambda r: r["calls"]):
        if not row["carried"]:
            break  # the highest N such that it and every lower N were carried
        best = row
    if best is None:
        print("no N was carried")
        return
    per_core = 100 / max(best["per_recording_percent"], 1e-9)
    print(
        f"highest N carried: {best['calls']}; its worker CPU per recording extrapolates to "
        f"~{per_core:.0f} recordings per core"
    )


# --- BHCA with and without recording --------------------------------------------------------
class RecordingBench(bhca.Bench):
    """bhca.py's bench with the node's `recording.enabled` set by the system's name."""

    recording = True

    def start_sut(self, system: str, directory: Path, uas_port: int) -> Any:
        self.recording = system == WITH
        return self.start_hotline(directory, uas_port, ROOT)

    def write_config(self, source: Path, target: Path, agents: int) -> None:
        bhca.write_hotline_config(source, target, agents)
        path = target / "node.yaml"
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        node["recording"] = {**(node.get("recording") or {}), "enabled": self.recording}
        path.write_text(
            "# Written by bench/recorder.py\n" + yaml.safe_dump(node, sort_keys=False),
            encoding="utf-8",
        )


def run_bhca(args: argparse.Namespace) -> dict:
    import msgspec

    options = ["--max-seconds", "900", "--pin", args.pin]
    if args.workdir:
        options += ["--workdir", args.workdir]
    hold = bhca.Hold(mean_s=args.bhca_hold, max_s=4 * args.bhca_hold)
    step = bhca.Step(cps=args.bhca_cps, duration_s=args.bhca_seconds)
    profile = bhca.Profile(name="recorder", steps=(step,), seed=args.seed, hold=hold, settle_s=2.0)
    bench = RecordingBench(bhca.parse_args(options), profile)
    results = []
    try:
        with bhca.interrupt_on_sigterm():
            for system in (WITHOUT, WITH):
                results.append(bench.run_system(system))
    finally:
        bench.processes.close()
    recordings = {
        r.system: len(list((bench.work / r.system / "data").rglob("*.opus"))) for r in results
    }
    broken = any(r.error or any(s.failed for s in r.steps) for r in results)
    if not broken and not args.workdir:
        shutil.rmtree(bench.work, ignore_errors=True)
    return {
        "profile": msgspec.to_builtins(profile),
        "work": str(bench.work) if broken or args.workdir else None,
        "systems": [
            {**msgspec.to_builtins(r), "recordings": recordings[r.system]} for r in results
        ],
    }


def print_bhca(result: dict) -> None:
    profile = result["profile"]
    step, hold = profile["steps"][0], profile["hold"]
    print(
        f"\nBHCA (bench/bhca.py) at {step['cps']:g} cps for {step['duration_s']:g} s, hold "
        f"{hold['distribution']} mean {hold['mean_s']:g} s; node on CPU 0, SIPp on CPU 1; "
        "no RTP from SIPp: recordings hold the taps' silence"
    )
    head = ("node", "attempted", "failed", "p50 ms", "p95 ms", "max ms", "CPU s", "CPU ms/call",
            "recordings", "error")  # fmt: skip
    cells = [head]
    steps = {}
    for system in result["systems"]:
        s = system["steps"][0] if system["steps"] else None
        steps[system["system"]] = s
        cells.append((
            system["system"], *(("-",) * 7 if s is None else (
                str(s["attempted"]), str(s["failed"]), bhca.fmt_ms(s["setup_p50_ms"]),
                bhca.fmt_ms(s["setup_p95_ms"]), bhca.fmt_ms(s["setup_max_ms"]), f"{s['cpu_s']:.1f}",
                f"{s['cpu_ms_per_call']:.2f}")),
            str(system["recordings"]), system["error"] or "-",
        ))  # fmt: skip
    print_cells(cells)
    off, on = steps.get(WITHOUT), steps.get(WITH)
    if not (off and on):
        return
    ratios = {
        key: on[key] / off[key] if on[key] and off[key] else None
        for key in ("setup_p50_ms", "setup_p95_ms", "cpu_ms_per_call")
    }
    result["ratios"] = ratios
    labels = {
        "setup_p50_ms": "p50 setup",
        "setup_p95_ms": "p95 setup",
        "cpu_ms_per_call": "CPU/call",
    }
    text = ", ".join(f"{labels[k]} {'-' if v is None else f'{v:.2f}'}" for k, v in ratios.items())
    unaffected = (
        on["failed"] == 0 == off["failed"]
        and on["setup_p95_ms"] is not None
        and off["setup_p95_ms"] is not None
        and on["setup_p95_ms"] <= max(1.5 * off["setup_p95_ms"], off["setup_p95_ms"] + 8)
    )
    result["signalling_unaffected"] = unaffected
    print(f"recording / no-recording: {text}")
    print(
        "signalling "
        + ("unaffected" if unaffected else "AFFECTED")
        + " (no failed calls either way, p95 setup with recording <= 1.5 x without or + 8 ms)"
    )


# --- main ---------------------------------------------------------------------------------
def machine_info() -> dict:
    info = bhca.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    info["load_average"] = os.getloadavg()
    info["libraries"] = writer_name()
    info["machine"] = platform.machine()
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from softswitch.config import RecordingConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--offline-minutes", type=int, default=5, help="one-minute calls a round (0: none)")
    add("--rounds", type=int, default=3, help="offline rounds; the median is reported")
    add("--live", default="50,100,200,300", help="comma list of N simultaneous calls (0: none)")
    add("--seconds", type=float, default=10.0, help="length of each live run")
    add(
        "--bitrate",
        type=int,
        default=RecordingConfig().bitrate,
        help="bit/s a channel (RecordingConfig's default)",
    )
    add("--page-ms", type=int, default=1000, help="audio per Ogg page")
    add("--bhca", action="store_true", help="also bhca.py's node with and without recording")
    add("--bhca-cps", type=float, default=50.0, help="BHCA: trunk calls per second")
    add("--bhca-seconds", type=float, default=30.0, help="BHCA: seconds of offered calls")
    add("--bhca-hold", type=float, default=2.0, help="BHCA: mean hold time, seconds")
    add("--seed", type=int, default=20240615)
    add("--system-libsndfile", action="store_true",
        help="record with the system's libsndfile and libopus, not the wheel's")  # fmt: skip
    add("--bundled-libsndfile", action="store_true",
        help="record with the soundfile wheel's libsndfile writer")  # fmt: skip
    add("--libsndfile", action="store_true",
        help="record with the libsndfile writer, not libopus directly")  # fmt: skip
    add("--pin", choices=("auto", "yes", "no"), default="auto")
    add("--workdir", help="keep the BHCA logs here (default: temporary)")
    add("--json", metavar="PATH", help="also write the results as JSON (- : stdout)")
    args = parser.parse_args(argv)
    args.live = [int(n) for n in args.live.split(",") if int(n) > 0]
    problems = []
    if not 0 <= args.offline_minutes <= 600 or not 1 <= args.rounds <= 20:
        problems.append("need 0 <= --offline-minutes <= 600 and 1 <= --rounds <= 20")
    if any(n > 2000 for n in args.live) or not 2 <= args.seconds <= 600:
        problems.append("need N <= 2000 and 2 <= --seconds <= 600")
    if not 6000 <= args.bitrate <= 64000 or not 200 <= args.page_ms <= 5000:
        problems.append("need 6000 <= --bitrate <= 64000 and 200 <= --page-ms <= 5000")
    if not 0 < args.bhca_cps <= 500 or not 5 <= args.bhca_seconds <= 600 or args.bhca_hold <= 0:
        problems.append("need 0 < --bhca-cps <= 500, 5 <= --bhca-seconds <= 600, --bhca-hold > 0")
    if args.pin == "yes" and len(os.sched_getaffinity(0)) < 2:
        problems.append("--pin yes needs two CPUs")
    if args.bhca and shutil.which("sipp") is None:
        problems.append("--bhca needs sipp (apt-get install sip-tester)")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.system_libsndfile:
        use_system_libsndfile()
    if args.bundled_libsndfile:
        use_bundled_libsndfile()
    if args.libsndfile or args.system_libsndfile:
        use_libsndfile_writer()
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin != "no" and len(cpus) >= 2
    if pinned:  # before any thread starts, so that the engine and the recorder inherit it
        os.sched_setaffinity(0, {cpus[0]})
    info = machine_info()
    print(
        f"machine: {info.get('cpu_model', info['processor'])}, {info['cpus']} CPUs, load "
        f"{' '.join(f'{x:.2f}' for x in info['load_average'])}; Python {info['python']}; "
        f"{info['libraries']}"
    )
    corpus, source = speech_corpus(args.seed)
    print(f"speech: {source}, {len(corpus) / RATE:.0f} s")
    document: dict[str, Any] = {"machine": info, "speech": source, "args": vars(args)}
    if args.offline_minutes:
        document["offline"] = run_offline(args, corpus)
        print_offline(document["offline"], args)
    if args.live:
        document["live"] = run_live(args, corpus, cpus[1] if pinned else None)
        print_live(document["live"], args, pinned)
    if args.bhca:
        os.sched_setaffinity(0, set(cpus))  # bhca pins its children itself
        document["bhca"] = run_bhca(args)
        print_bhca(document["bhca"])
    if args.json:
        text = json.dumps(document, indent=2, default=str) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
