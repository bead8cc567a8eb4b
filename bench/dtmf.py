"""DTMF accuracy benchmark: ITU-T Q.24 axes and a talk-off corpus, three detectors in one run.

::

    python bench/dtmf.py [--quick] [--json FILE] [--seed N] [--trials N] [--systems LIST]

Each *case* fixes one Q.24 axis away from nominal (nominal: both tones at -10 dBm0, 100 ms on,
100 ms off, no noise, G.711 mu-law round trip). A *trial* is a sequence of 16 key presses (all
16 keys, shuffled) in one signal, with a random sub-frame start offset and random tone
phases, generated here with numpy (not with the engine's tone generator). The detected string
is aligned with the sent one (Levenshtein): a sent key found in place is a detection, a
missing key a miss, a wrong or extra key a false digit.

- in-spec cases: Q.24 figures the detector must accept (offsets <= 1.5 %, twist 8 dB normal /
  4 dB reverse, 0 to -35 dBm0 per tone, >= 40 ms tones, >= 40 ms pauses, white noise at
  15 dB S/N, A-law and mu-law/A-law tandem, single lost 20 ms frames);
- out-of-spec cases: figures it must reject (offsets >= 3.5 %, tones <= 23 ms), plus twist far
  beyond the limits and a 10 ms interruption that must not split a key;
- talk-off: speech rendered by espeak-ng (English, Chinese and other languages, several
  voices), synthetic music (melodies and chords with harmonic timbres) and noise; every digit
  reported there is false.

Systems: `hotline` (media._dsp.DtmfDetector, this engine), `spandsp` (libspandsp2's
dtmf_rx through ctypes, default parameters) and `multimon-ng` (``-a DTMF``, input resampled to
22050 Hz, one process per trial). A system that is not installed is reported and skipped.
S/N is the dual-tone power over white noise in the full 0-4 kHz band (about 1 dB harsher than
the 300-3400 Hz band of Q.24). 0 dBm0 is a sine of amplitude 22827 (3.14 dB below full scale).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import io
import json
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FS = 8000
FRAME = 160
DBM0_AMPLITUDE = 32768 * 10 ** (-3.14 / 20)
KEYS = "123A456B789C*0#D"
ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)


def key_frequencies(key: str) -> tuple[float, float]:
    index = KEYS.index(key)
    return ROWS[index // 4], COLS[index % 4]


# ---- the suite -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One point on one Q.24 axis; every other parameter stays nominal."""

    axis: str
    name: str
    in_spec: bool
    level_low: float = -10.0  # dBm0 per tone
    level_high: float = -10.0
    offset_low: float = 0.0  # relative frequency error
    offset_high: float = 0.0
    on_ms: float = 100.0
    off_ms: float = 100.0
    snr_db: float | None = None
    codec: str = "ulaw"  # linear | ulaw | alaw | tandem (mu-law -> A-law -> mu-law)
    lose_frame: bool = False
    interruption_ms: float = 0.0  # gap inside each tone that must not split the key
    repeat_keys: bool = False  # pause cases: half the keys repeat the previous one

    @property
    def expects_keys(self) -> bool:
        """In-spec cases and interruptions must report each key once; the rest nothing."""
        return self.in_spec or self.interruption_ms > 0


def suite() -> list[Case]:
    cases = [Case("digits", "all 16 keys, nominal", True)]
    for lo, hi in ((1.5, 1.5), (-1.5, -1.5), (1.5, -1.5), (-1.5, 1.5)):
        cases.append(
            Case(
                "frequency",
                f"{lo:+.1f}% / {hi:+.1f}%",
                True,
                offset_low=lo / 100,
                offset_high=hi / 100,
            )
        )
    for lo, hi in ((3.5, 0), (-3.5, 0), (0, 3.5), (0, -3.5), (3.5, 3.5), (-3.5, -3.5)):
        cases.append(
            Case(
                "frequency",
                f"{lo:+.1f}% / {hi:+.1f}%",
                False,
                offset_low=lo / 100,
                offset_high=hi / 100,
            )
        )
    for twist, in_spec in ((8, True), (4, True), (-4, True), (-2, True), (14, False), (-10, False)):
        kind = "normal" if twist > 0 else "reverse"
        cases.append(
            Case(
                "twist",
                f"{kind} {abs(twist)} dB",
                in_spec,
                level_low=-10 + twist / 2,
                level_high=-10 - twist / 2,
            )
        )
    for level in (0, -3, -10, -20, -30, -35):
        cases.append(
            Case("level", f"{level} dBm0 per tone", True, level_low=level, level_high=level)
        )
    for ms, in_spec in ((40, True), (45, True), (50, True), (23, False), (20, False), (10, False)):
        cases.append(Case("duration", f"{ms} ms on", in_spec, on_ms=ms))
    for on, off in ((40, 40), (100, 40), (50, 60)):
        cases.append(
            Case(
                "pause", f"{on} ms on / {off} ms off", True, on_ms=on, off_ms=off, repeat_keys=True
            )
        )
    cases.append(
        Case("pause", "10 ms break in 100 ms", False, interruption_ms=10, repeat_keys=True)
    )
    for snr in (15, 20):
        cases.append(Case("noise", f"white noise S/N {snr} dB", True, snr_db=snr))
    cases.append(Case("noise", "S/N 15 dB, 40 ms on", True, snr_db=15, on_ms=40))
    for codec in ("linear", "alaw", "tandem"):
        for level in (-10, -35):
            cases.append(
                Case(
                    "g711",
                    f"{codec} {level} dBm0",
                    True,
                    codec=codec,
                    level_low=level,
                    level_high=level,
                )
            )
    cases.append(Case("loss", "one lost 20 ms frame per key", True, lose_frame=True))
    return cases


def companded(pcm: np.ndarray, codec: str) -> np.ndarray:
    """The signal after the G.711 path of the case (codecs verified in tests/unit)."""
    from media import _dsp

    if codec == "linear":
        return pcm
    data = pcm.astype("<i2").tobytes()
    if codec == "ulaw":
        out = _dsp.ulaw_decode(_dsp.ulaw_encode(data))
    elif codec == "alaw":
        out = _dsp.alaw_decode(_dsp.alaw_encode(data))
    else:
        out = _dsp.ulaw_decode(_dsp.alaw_to_ulaw(_dsp.ulaw_to_alaw(_dsp.ulaw_encode(data))))
    return np.frombuffer(out, "<i2").copy()


def tone_pair(key: str, n: int, case: Case, rng: np.random.Generator) -> np.ndarray:
    low, high = key_frequencies(key)
    t = np.arange(n) / FS
    phases = rng.uniform(0, 2 * np.pi, 2)
    a_low = DBM0_AMPLITUDE * 10 ** (case.level_low / 20)
    a_high = DBM0_AMPLITUDE * 10 ** (case.level_high / 20)
    return a_low * np.sin(2 * np.pi * low * (1 + case.offset_low) * t + phases[0]) + (
        a_high * np.sin(2 * np.pi * high * (1 + case.offset_high) * t + phases[1])
    )


def make_trial(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One trial: 16 presses of the case; returns int16 PCM and the keys a detector must report."""
    keys = list(rng.permutation(list(KEYS)))
    if case.repeat_keys:
        for i in range(1, len(keys)):
            if rng.random() < 0.5:
                keys[i] = keys[i - 1]
    on = int(round(case.on_ms * FS / 1000))
    off = int(round(case.off_ms * FS / 1000))
    lead = int(rng.integers(0, FRAME)) + 800
    total = lead + len(keys) * (on + off) + 800
    signal = np.zeros(total)
    tone_spans = []
    position = lead
    for key in keys:
        tone = tone_pair(key, on, case, rng)
        if case.interruption_ms:
            gap = int(round(case.interruption_ms * FS / 1000))
            start = (on - gap) // 2
            tone[start : start + gap] = 0.0
        signal[position : position + on] = tone
        tone_spans.append((position, position + on))
        position += on + off
    if case.snr_db is not None:
        tone_power = (10 ** (case.level_low / 10) + 10 ** (case.level_high / 10)) * (
            DBM0_AMPLITUDE**2 / 2
        )
        sigma = np.sqrt(tone_power / 10 ** (case.snr_db / 10))
        signal += rng.normal(0.0, sigma, total)
    pcm = companded(np.clip(np.round(signal), -32768, 32767).astype(np.int16), case.codec)
    if case.lose_frame:
        for start, end in tone_spans:
            frames = [f for f in range(-(-start // FRAME), end // FRAME) if (f + 1) * FRAME <= end]
            lost = int(rng.choice(frames))
            pcm[lost * FRAME : (lost + 1) * FRAME] = 0
    expected = "".join(keys) if case.expects_keys else ""
    return pcm, expected


# ---- talk-off corpus -----------------------------------------------------------------------

TEXTS = {
    "en": (
        "Thank you for calling the citizen service hotline. Your call is important to us. "
        "For questions about water, electricity or gas bills, please stay on the line. "
        "My phone number is five five five, zero one nine eight, two seven four six, and my "
        "account number is seven seven three one four. The street light in front of building "
        "twelve has been broken for three days. Please hold while we transfer you to the next "
        "available agent. The office opens at nine in the morning and closes at half past five."
    ),
    "zh": (
        "您好，这里是市民服务热线，请问有什么可以帮您？我的电话号码是一三八零零一二三四五六。"
        "我家楼下的路灯坏了三天了，晚上很黑，老人出门不安全，请您尽快派人来修理。"
        "另外，小区门口的垃圾已经两天没有人清理了，天气热，味道很大。"
        "好的，我已经记录了您的诉求，工单编号是二零二四零八一五零零七，请保持电话畅通，"
        "工作人员会在两个工作日内联系您。感谢您的来电，再见。"
    ),
    "de": (
        "Guten Tag, hier ist das Bürgertelefon. Bitte nennen Sie Ihre Kundennummer: vier sieben "
        "eins null drei neun. Die Straßenlaterne vor dem Haus ist seit drei Tagen kaputt."
    ),
    "es": (
        "Buenos días, ha llamado a la línea de atención ciudadana. Mi número de teléfono es "
        "seis cero dos, cuatro cinco, ocho nueve uno. Quisiera informar de una avería en la calle."
    ),
    "fr": (
        "Bonjour, vous êtes bien sur la ligne du service aux citoyens. Mon numéro est le zéro six, "
        "quarante-deux, dix-sept, quatre-vingt-neuf. Le lampadaire devant chez moi ne marche plus."
    ),
}
# (espeak-ng voice, text, speed in words per minute, pitch 0-99)
VOICES = [
    ("en-us", "en", 165, 50),
    ("en-us+f3", "en", 175, 70),
    ("en-gb+m3", "en", 150, 35),
    ("en-gb-x-rp+f2", "en", 185, 85),
    ("cmn", "zh", 160, 50),
    ("cmn+f3", "zh", 170, 75),
    ("cmn+m3", "zh", 145, 30),
    ("yue+f2", "zh", 160, 65),
    ("de+f4", "de", 160, 60),
    ("es+m2", "es", 170, 45),
    ("fr-fr+f1", "fr", 165, 70),
]
QUICK_VOICES = [VOICES[0], VOICES[1], VOICES[4], VOICES[5]]


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by FFT (signals here start and end in silence)."""
    n = len(x)
    m = int(round(n * rate_out / rate_in))
    spectrum = np.fft.rfft(x)
    kept = min(len(spectrum), m // 2 + 1)
    out = np.zeros(m // 2 + 1, complex)
    out[:kept] = spectrum[:kept]
    return np.fft.irfft(out, m) * (m / n)


def at_level(x: np.ndarray, level_dbm0: float) -> np.ndarray:
    """Scale to an RMS level in dBm0 (a sine of the same RMS would be at level_dbm0)."""
    rms = np.sqrt(np.mean(x**2)) or 1.0
    return x * (DBM0_AMPLITUDE / np.sqrt(2) * 10 ** (level_dbm0 / 20) / rms)


def speech(
    voices: list[tuple[str, str, int, int]], renditions: int, rng: np.random.Generator
) -> np.ndarray:
    """Each voice reads its text `renditions` times, faster and higher each time."""
    parts = []
    for (voice, text, speed, pitch), k in ((v, k) for v in voices for k in range(renditions)):
        speed, pitch = int(speed * (1 + 0.2 * k)), min(99, pitch + 12 * k)
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", TEXTS[text]],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        with wave.open(io.BytesIO(wav)) as reader:
            rate = reader.getframerate()
            x = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(float)
        parts.append(at_level(resample(x, rate, FS), rng.uniform(-25, -12)))
        parts.append(np.zeros(FS // 2))
    return finish(np.concatenate(parts))


HARMONIC_TIMBRES = {  # relative amplitudes of partials 1, 2, 3 ...
    "flute": [1, 0.3, 0.12, 0.05],
    "clarinet": [1, 0.05, 0.5, 0.05, 0.3, 0.05, 0.15],
    "piano": [1, 0.6, 0.4, 0.25, 0.15, 0.1, 0.06],
    "strings": [1 / k for k in range(1, 12)],
    "organ": [1, 0.8, 0.6, 0.5, 0.3, 0.3, 0.2, 0.2],
}


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Melodies over chords in random major keys, equal temperament, harmonic timbres."""
    out = np.zeros(int(seconds * FS) + 2 * FS)
    scale = (0, 2, 4, 5, 7, 9, 11)
    names = list(HARMONIC_TIMBRES)
    position = 0
    segment_end = 0
    while position < seconds * FS:
        if position >= segment_end:  # a new piece every ~15 s: key, timbre, tempo
            key = int(rng.integers(0, 12))
            timbre = HARMONIC_TIMBRES[names[int(rng.integers(0, len(names)))]]
            beat = rng.uniform(0.12, 0.4)
            segment_end = position + 15 * FS
        duration = beat * int(rng.choice([1, 1, 2, 2, 4]))
        degree = int(rng.integers(0, 14))
        notes = [60 + key + 12 * (degree // 7) + scale[degree % 7]]
        for step in (2, 4)[: int(rng.integers(0, 3))]:  # a third and a fifth below, an octave down
            d = degree + step
            notes.append(48 + key + 12 * (d // 7) + scale[d % 7])
        n = int(duration * 1.3 * FS)
        t = np.arange(n) / FS
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * 2.5 / duration)
        for midi in notes:
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            for k, amplitude in enumerate(timbre, start=1):
                if f0 * k < 3800:
                    out[position : position + n] += (
                        amplitude
                        * envelope
                        * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
                    )
        position += int(duration * FS)
    return finish(at_level(out[: int(seconds * FS)], rng.uniform(-22, -12)))


def noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """White, pink and brown noise, a third each, at -20 dBm0."""
    n = int(seconds * FS / 3)
    white = rng.normal(0, 1, n)
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / FS), 20.0)
    pink = np.fft.irfft(spectrum / np.sqrt(f), n)
    brown = np.fft.irfft(spectrum / f, n)
    return finish(np.concatenate([at_level(x, -20) for x in (white, pink, brown)]))


def finish(x: np.ndarray) -> np.ndarray:
    """int16 after a G.711 mu-law round trip, as the engine receives it."""
    return companded(np.clip(np.round(x), -32768, 32767).astype(np.int16), "ulaw")


# ---- systems -------------------------------------------------------------------------------


class System:
    name = ""

    def detect(self, pcm: np.ndarray) -> str:
        """The keys reported for one signal, from a fresh detector."""
        raise NotImplementedError


class Hotline(System):
    name = "hotline"

    def __init__(self) -> None:
        from media import _dsp

        self.dsp = _dsp

    def detect(self, pcm: np.ndarray) -> str:
        detector = self.dsp.DtmfDetector()
        return "".join(event[0] for event in detector.feed(pcm.astype("<i2").tobytes()))


class SpanDsp(System):
    name = "spandsp"

    def __init__(self) -> None:
        path = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
        lib = ctypes.CDLL(path)
        lib.dtmf_rx_init.restype = ctypes.c_void_p
        lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.dtmf_rx.restype = ctypes.c_int
        lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.dtmf_rx_get.restype = ctypes.c_size_t
        lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.dtmf_rx_free.restype = ctypes.c_int
        lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def detect(self, pcm: np.ndarray) -> str:
        lib = self.lib
        state = lib.dtmf_rx_init(None, None, None)  # digits are queued for dtmf_rx_get
        if not state:
            raise RuntimeError("dtmf_rx_init failed")
        samples = np.ascontiguousarray(pcm, dtype=np.int16)
        buffer = ctypes.create_string_buffer(129)
        digits = []
        try:
            for start in range(0, len(samples), FS):  # drain well before its 128-digit queue
                chunk = samples[start : start + FS]
                lib.dtmf_rx(state, chunk.ctypes.data, len(chunk))
                count = lib.dtmf_rx_get(state, buffer, 128)
                digits.append(buffer.raw[:count].decode("ascii"))
        finally:
            lib.dtmf_rx_free(state)
        return "".join(digits)


class MultimonNg(System):
    name = "multimon-ng"

    def __init__(self) -> None:
        path = shutil.which("multimon-ng")
        if path is None:
            raise RuntimeError("multimon-ng is not on PATH (Debian package multimon-ng)")
        self.path = path

    def detect(self, pcm: np.ndarray) -> str:
        up = resample(pcm.astype(float), FS, 22050)
        raw = np.clip(np.round(up), -32768, 32767).astype(np.int16).tobytes()  # native order
        result = subprocess.run(
            [self.path, "-q", "-c", "-a", "DTMF", "-t", "raw", "-"],
            input=raw,
            capture_output=True,
            check=True,
            timeout=120,
        )
        return "".join(
            line.split(":", 1)[1].strip()
            for line in result.stdout.decode().splitlines()
            if line.startswith("DTMF:")
        )


SYSTEMS: dict[str, Callable[[], System]] = {
    "hotline": Hotline,
    "spandsp": SpanDsp,
    "multimon-ng": MultimonNg,
}


# ---- scoring -------------------------------------------------------------------------------


@dataclass
class Score:
    sent: int = 0  # keys that must be reported
    detected: int = 0  # reported in place
    missed: int = 0
    false_digits: int = 0  # wrong or extra keys
    presentations: int = 0  # out-of-spec presses offered

    def add(self, other: Score) -> None:
        for name in ("sent", "detected", "missed", "false_digits", "presentations"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def align(sent: str, got: str) -> tuple[int, int, int]:
    """(correct, substituted, inserted) of the minimum-edit alignment of got against sent."""
    n, m = len(sent), len(got)
    cost = np.zeros((n + 1, m + 1), dtype=int)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(
                cost[i - 1, j] + 1,
                cost[i, j - 1] + 1,
                cost[i - 1, j - 1] + (sent[i - 1] != got[j - 1]),
            )
    correct = substituted = inserted = 0
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (sent[i - 1] != got[j - 1]):
            if sent[i - 1] == got[j - 1]:
                correct += 1
            else:
                substituted += 1
            i, j = i - 1, j - 1
        elif j > 0 and cost[i, j] == cost[i, j - 1] + 1:
            inserted += 1
            j -= 1
        else:
            i -= 1
    return correct, substituted, inserted


def score_trial(case: Case, expected: str, got: str) -> Score:
    if not case.in_spec:
        if case.expects_keys:  # interruption: one report per press is right, more are false
            correct, substituted, inserted = align(expected, got)
            return Score(presentations=len(expected), false_digits=substituted + inserted)
        return Score(presentations=16, false_digits=len(got))
    correct, substituted, inserted = align(expected, got)
    return Score(
        sent=len(expected),
        detected=correct,
        missed=len(expected) - correct,
        false_digits=substituted + inserted,
    )


# ---- run -----------------------------------------------------------------------------------


@dataclass
class Result:
    system: str
    cases: dict[str, Score] = field(default_factory=dict)
    talk_off: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run(
    systems: list[System], trials: int, corpus: dict[str, np.ndarray], seed: int
) -> list[Result]:
    results = [Result(s.name) for s in systems]
    for index, case in enumerate(suite()):
        rng = np.random.default_rng([seed, index])
        for _ in range(trials):
            pcm, expected = make_trial(case, rng)
            for system, result in zip(systems, results, strict=True):
                started = time.perf_counter()
                got = system.detect(pcm)
                result.seconds += time.perf_counter() - started
                key = f"{case.axis}: {case.name}"
                result.cases.setdefault(key, Score()).add(score_trial(case, expected, got))
    for kind, pcm in corpus.items():
        for system, result in zip(systems, results, strict=True):
            started = time.perf_counter()
            result.talk_off[kind] = len(system.detect(pcm))
            result.seconds += time.perf_counter() - started
    return results


def frame_cost_ns(pcm: np.ndarray) -> dict[str, float]:
    """Detector cost per 160-sample frame (best of 3): one C call over a long signal, and one
    Python call per frame as a caller in Python would pay."""
    from media import _dsp

    data = pcm.astype("<i2").tobytes()
    frames = len(pcm) // FRAME
    chunks = [data[i * 2 * FRAME : (i + 1) * 2 * FRAME] for i in range(frames)]
    bulk = per_call = float("inf")
    for _ in range(3):
        detector = _dsp.DtmfDetector()
        started = time.perf_counter_ns()
        detector.feed(data)
        bulk = min(bulk, (time.perf_counter_ns() - started) / frames)
        detector = _dsp.DtmfDetector()
        started = time.perf_counter_ns()
        for chunk in chunks:
            detector.feed(chunk)
        per_call = min(per_call, (time.perf_counter_ns() - started) / frames)
    return {"c_ns_per_frame": bulk, "python_call_ns_per_frame": per_call}


def summarise(results: list[Result], corpus_seconds: dict[str, float]) -> dict[str, dict]:
    summary = {}
    for result in results:
        axes: dict[str, dict[str, Score]] = {}
        for key, score in result.cases.items():
            axis = key.split(":", 1)[0]
            bucket = axes.setdefault(axis, {"in": Score(), "out": Score()})
            bucket["in" if score.sent else "out"].add(score)
        total = Score()
        for bucket in axes.values():
            total.add(bucket["in"])
        accuracy = total.detected / (total.sent + total.false_digits) if total.sent else 0.0
        summary[result.system] = {
            "axes": {
                axis: {
                    "detection_rate": b["in"].detected / b["in"].sent if b["in"].sent else None,
                    "in_spec_false_digits": b["in"].false_digits,
                    "false_accept_rate": (
                        b["out"].false_digits / b["out"].presentations
                        if b["out"].presentations
                        else None
                    ),
                }
                for axis, b in axes.items()
            },
            "talk_off_per_hour": {
                kind: hits * 3600 / corpus_seconds[kind] for kind, hits in result.talk_off.items()
            },
            "talk_off_hits": dict(result.talk_off),
            "in_spec_keys": total.sent,
            "in_spec_errors": total.missed + total.false_digits,
            "digit_accuracy": accuracy,
            "seconds": result.seconds,
        }
    return summary


def percent(value: float | None) -> str:
    if value is None:
        return "-"
    return "100%" if value == 1.0 else f"{100 * value:.3f}%"


def print_tables(
    results: list[Result], summary: dict[str, dict], corpus_seconds: dict[str, float]
) -> None:
    names = [r.system for r in results]
    width = 24
    print("Per case: detected / sent (in-spec) or false digits / presentations (out-of-spec)")
    print(f"{'case':44s}" + "".join(f"{n:>{width}s}" for n in names))
    for key in results[0].cases:
        cells = []
        for result in results:
            s = result.cases[key]
            cells.append(
                f"{s.detected}/{s.sent} +{s.false_digits}F"
                if s.sent
                else f"{s.false_digits}/{s.presentations} FA"
            )
        print(f"{key[:44]:44s}" + "".join(f"{c:>{width}s}" for c in cells))
    print()
    print("Per axis: detection rate in-spec (+false digits there) | false accepts out-of-spec")
    print(f"{'axis':16s}" + "".join(f"{n:>{width}s}" for n in names))
    for axis in summary[names[0]]["axes"]:
        cells = []
        for name in names:
            a = summary[name]["axes"][axis]
            extra = f" +{a['in_spec_false_digits']}F" if a["in_spec_false_digits"] else ""
            cells.append(
                f"{percent(a['detection_rate'])}{extra} | {percent(a['false_accept_rate'])}"
            )
        print(f"{axis:16s}" + "".join(f"{c:>{width}s}" for c in cells))
    for kind in corpus_seconds:
        label = f"talk-off {kind}/h"
        cells = [
            f"{summary[n]['talk_off_per_hour'][kind]:.1f} ({summary[n]['talk_off_hits'][kind]})"
            for n in names
        ]
        print(f"{label:16s}" + "".join(f"{c:>{width}s}" for c in cells))
    cells = [f"{100 * summary[n]['digit_accuracy']:.3f}%" for n in names]
    print(f"{'digit accuracy':16s}" + "".join(f"{c:>{width}s}" for c in cells))
    cells = [f"{summary[n]['in_spec_errors']} of {summary[n]['in_spec_keys']}" for n in names]
    print(f"{'in-spec errors':16s}" + "".join(f"{c:>{width}s}" for c in cells))
    cells = [f"{summary[n]['seconds']:.1f} s" for n in names]
    print(f"{'run time':16s}" + "".join(f"{c:>{width}s}" for c in cells))
    minutes = ", ".join(
        f"{kind} {seconds / 60:.1f} min" for kind, seconds in corpus_seconds.items()
    )
    print(f"talk-off corpus: {minutes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small suite and corpus (~30 s)")
    parser.add_argument("--trials", type=int, help="trials of 16 keys per case")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of " + ", ".join(SYSTEMS),
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    trials = args.trials or (8 if args.quick else 96)

    systems: list[System] = []
    for name in args.systems.split(","):
        if name not in SYSTEMS:
            parser.error(f"unknown system {name!r}")
        try:
            systems.append(SYSTEMS[name]())
        except (OSError, RuntimeError, ImportError) as error:
            print(f"{name}: not available, skipped ({error})", file=sys.stderr)
    if not systems:
        print("no system to run", file=sys.stderr)
        return 2

    rng = np.random.default_rng([args.seed, 999])
    corpus: dict[str, np.ndarray] = {}
    if shutil.which("espeak-ng"):
        corpus["speech"] = speech(
            QUICK_VOICES if args.quick else VOICES, 1 if args.quick else 2, rng
        )
    else:
        print("espeak-ng not on PATH: no speech talk-off corpus", file=sys.stderr)
    corpus["music"] = music(60 if args.quick else 600, rng)
    corpus["noise"] = noise(30 if args.quick else 120, rng)
    corpus_seconds = {kind: len(x) / FS for kind, x in corpus.items()}

    started = time.perf_counter()
    results = run(systems, trials, corpus, args.seed)
    summary = summarise(results, corpus_seconds)
    print_tables(results, summary, corpus_seconds)
    cost = (
        frame_cost_ns(corpus.get("speech", corpus["music"]))
        if any(s.name == "hotline" for s in systems)
        else {}
    )
    if cost:
        print(
            f"hotline detector: {cost['c_ns_per_frame']:.0f} ns per 160-sample frame in C, "
            f"{cost['python_call_ns_per_frame']:.0f} ns per frame fed from Python"
        )
    print(
        f"trials per case: {trials} x 16 keys, seed {args.seed}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    if args.json:
        document = {
            "seed": args.seed,
            "trials_per_case": trials,
            "corpus_seconds": corpus_seconds,
            "frame_cost_ns": cost,
            "summary": summary,
            "cases": {r.system: {k: asdict(v) for k, v in r.cases.items()} for r in results},
        }
        Path(args.json).write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
