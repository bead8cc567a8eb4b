"""Micro-benchmarks of media._dsp per 20 ms frame (160 samples): G.711, DTMF detection, tones.

Run under pytest-benchmark::

    python -m pytest bench/bench_media_dsp.py --benchmark-only

or as a plain program that prints a table (``--json`` for machine-readable output)::

    python bench/bench_media_dsp.py [--json] [--rounds N]

The plain program also reports the detector's cost inside C (one call over 60 s of signal),
which is what the RTP worker pays per frame and leg; the per-call figures include the Python
call. Reference in the same run: spandsp's dtmf_rx over the same signal (ctypes), when
libspandsp2 is installed. Workload is fixed: seeded speech-like noise bursts and DTMF keys.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import sys
import time
import timeit
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media import _dsp

FRAME = 160
_rng = np.random.default_rng(160)
PCM_FRAME = (_rng.normal(0, 3000, FRAME)).clip(-32768, 32767).astype("<i2").tobytes()
ULAW_FRAME = _dsp.ulaw_encode(PCM_FRAME)
ALAW_FRAME = _dsp.alaw_encode(PCM_FRAME)


def _long_signal(seconds: int = 60) -> bytes:
    """Keys every second over band-limited noise bursts (a stand-in for a talking caller)."""
    rng = np.random.default_rng(7)
    parts = []
    for i in range(seconds):
        noise = np.convolve(rng.normal(0, 2000, 8000 - 800), np.ones(4) / 4, mode="same")
        parts.append(noise.astype("<i2").tobytes())
        parts.append(_dsp.dtmf_tone("0123456789*#ABCD"[i % 16], -10, 100))
    return b"".join(parts)


SIGNAL = _long_signal()
SIGNAL_FRAMES = [SIGNAL[i : i + 2 * FRAME] for i in range(0, len(SIGNAL), 2 * FRAME)]


class _FrameFeeder:
    """One detector fed the long signal frame after frame, wrapping around."""

    def __init__(self) -> None:
        self.detector = _dsp.DtmfDetector()
        self.index = 0

    def feed(self) -> list[tuple[str, int, int]]:
        frame = SIGNAL_FRAMES[self.index]
        self.index = (self.index + 1) % len(SIGNAL_FRAMES)
        return self.detector.feed(frame)


def ulaw_encode_frame() -> bytes:
    return _dsp.ulaw_encode(PCM_FRAME)


def ulaw_decode_frame() -> bytes:
    return _dsp.ulaw_decode(ULAW_FRAME)


def alaw_encode_frame() -> bytes:
    return _dsp.alaw_encode(PCM_FRAME)


def alaw_decode_frame() -> bytes:
    return _dsp.alaw_decode(ALAW_FRAME)


def ulaw_to_alaw_frame() -> bytes:
    return _dsp.ulaw_to_alaw(ULAW_FRAME)


_TONE = _dsp.ToneGenerator(450, on_ms=1000, off_ms=4000)


def ringback_frame() -> bytes:
    return _TONE.fill(FRAME)


# --- pytest-benchmark ------------------------------------------------------------------------


def test_bench_ulaw_encode_frame(benchmark) -> None:
    assert len(benchmark(ulaw_encode_frame)) == FRAME


def test_bench_ulaw_decode_frame(benchmark) -> None:
    assert benchmark(ulaw_decode_frame) == _dsp.ulaw_decode(ULAW_FRAME)


def test_bench_alaw_encode_frame(benchmark) -> None:
    assert len(benchmark(alaw_encode_frame)) == FRAME


def test_bench_alaw_decode_frame(benchmark) -> None:
    assert len(benchmark(alaw_decode_frame)) == 2 * FRAME


def test_bench_ulaw_to_alaw_frame(benchmark) -> None:
    assert len(benchmark(ulaw_to_alaw_frame)) == FRAME


def test_bench_dtmf_detector_per_frame(benchmark) -> None:
    feeder = _FrameFeeder()
    benchmark(feeder.feed)
    assert feeder.detector.sample_count > 0


def test_bench_ringback_tone_frame(benchmark) -> None:
    assert len(benchmark(ringback_frame)) == 2 * FRAME


def test_bench_detector_finds_the_keys_of_the_workload() -> None:
    """The workload is meaningful: every key sent is found, nothing else."""
    found = "".join(e[0] for e in _dsp.DtmfDetector().feed(SIGNAL))
    assert found == "".join("0123456789*#ABCD"[i % 16] for i in range(60))


# --- stand-alone ----------------------------------------------------------------------------


def detector_ns_per_frame_in_c() -> float:
    frames = len(SIGNAL) // (2 * FRAME)
    best = float("inf")
    for _ in range(5):
        detector = _dsp.DtmfDetector()
        started = time.perf_counter_ns()
        detector.feed(SIGNAL)
        best = min(best, (time.perf_counter_ns() - started) / frames)
    return best


def spandsp_ns_per_frame() -> float | None:
    """spandsp's dtmf_rx over the same signal, best of 5, or None without libspandsp."""
    path = ctypes.util.find_library("spandsp")
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    lib.dtmf_rx_init.restype = ctypes.c_void_p
    lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
    samples = np.frombuffer(SIGNAL, "<i2").astype(np.int16)
    best = float("inf")
    for _ in range(5):
        state = lib.dtmf_rx_init(None, None, None)
        started = time.perf_counter_ns()
        lib.dtmf_rx(state, samples.ctypes.data, len(samples))
        best = min(best, (time.perf_counter_ns() - started) / (len(samples) // FRAME))
        lib.dtmf_rx_free(state)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args(argv)
    feeder = _FrameFeeder()
    cases = {
        "ulaw_encode 160 samples": ulaw_encode_frame,
        "ulaw_decode 160 samples": ulaw_decode_frame,
        "alaw_encode 160 samples": alaw_encode_frame,
        "alaw_decode 160 samples": alaw_decode_frame,
        "ulaw_to_alaw 160 samples": ulaw_to_alaw_frame,
        "ringback tone 160 samples": ringback_frame,
        "DtmfDetector.feed 160 samples": feeder.feed,
    }
    results = {}
    for name, func in cases.items():
        best = min(timeit.repeat(func, number=args.rounds, repeat=5)) / args.rounds
        results[name] = best * 1e9
    results["DTMF detector in C, per frame"] = detector_ns_per_frame_in_c()
    reference = spandsp_ns_per_frame()
    if reference is not None:
        results["spandsp dtmf_rx in C, per frame"] = reference
    if args.json:
        print(json.dumps({"unit": "ns", "results": results}, indent=2))
    else:
        print(f"{'case':<36} {'ns/frame':>9} {'frames/s':>12}")
        for name, ns in results.items():
            print(f"{name:<36} {ns:9.0f} {1e9 / ns:12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
