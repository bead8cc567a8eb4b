"""Benchmark of recorder.qa.analyse: the quality inspection of one hour of recorded call.

Run under pytest-benchmark::

    python -m pytest bench/bench_recorder_qa.py --benchmark-only

or as a plain program that prints a table (``--json`` for machine-readable output)::

    python bench/bench_recorder_qa.py [--json] [--rounds N]

Workload is fixed: a seeded hour of two-channel 8 kHz int16 (57.6 M samples, 115 MB) with
turns of speech-like noise bursts, pauses, over-talk and a few long silences. Reference in
the same run: one pass of numpy over the same samples (int16 to float32 and the sum of
squares of the whole array), the floor any per-window level measure pays.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recorder.qa import QaResult, analyse

RATE = 8000
HOUR = 3600


def _call(seconds: int = HOUR) -> bytes:
    """Turns of 1–8 s on alternate channels, 0.2–3 s apart, some overlapping, and a silence
    of 12 s every ten minutes; speech-like: band-limited noise in syllables of ~200 ms."""
    rng = np.random.default_rng(3600)
    frames = np.zeros((seconds * RATE, 2), dtype=np.int16)
    at, channel = 0.5, 0
    while at < seconds - 10:
        length = rng.uniform(1, 8)
        start, end = int(at * RATE), int(min(at + length, seconds) * RATE)
        syllables = (np.arange(end - start) // 1600) % 5 != 4  # a pause every fifth syllable
        burst = np.convolve(rng.normal(0, 2500, end - start), np.ones(4) / 4, mode="same")
        frames[start:end, channel] = burst * syllables
        gap = rng.uniform(-1.0, 3.0)  # below zero: the other party starts too early
        if int(at // 600) != int((at + length + gap) // 600):
            gap = 12.0
        at, channel = at + length + gap, 1 - channel
    return frames.tobytes()


CALL = _call()


def analyse_call() -> QaResult:
    return analyse(CALL)


def reference_pass() -> float:
    samples = np.frombuffer(CALL, dtype=np.int16).astype(np.float32)
    return float(np.dot(samples, samples))


# --- pytest-benchmark ------------------------------------------------------------------------


def test_bench_analyse_one_call_hour(benchmark) -> None:
    result = benchmark.pedantic(analyse_call, rounds=5, iterations=1, warmup_rounds=1)
    assert result.duration == HOUR


def test_bench_workload_has_what_inspection_looks_for() -> None:
    """The workload is meaningful: both parties talk, over-talk and long silences occur."""
    result = analyse_call()
    assert 0.3 < (result.agent_talk_ratio or 0) < 0.7
    assert result.overtalk_count > 10 and len(result.long_silences) >= 5
    assert set(result.flags) == {"long_silence", "overtalk"}


# --- stand-alone ----------------------------------------------------------------------------


def _best(func: object, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        func()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = {
        "analyse, 1 call-hour": _best(analyse_call, args.rounds),
        "reference: one numpy pass (float32 sum of squares)": _best(reference_pass, args.rounds),
    }
    if args.json:
        print(json.dumps({"unit": "s per call-hour", "results": results}, indent=2))
    else:
        print(f"{'case':<52} {'s/call-hour':>11} {'call-hours/s':>13}")
        for name, seconds in results.items():
            print(f"{name:<52} {seconds:11.3f} {1 / seconds:13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
