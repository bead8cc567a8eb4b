"""The prompt library (DP-5): WAV conversion and resampling, TTS through espeak-ng, the disk
cache, number words, dynamic `Say` parts.

Most tests use a fake espeak-ng (a small script that writes a tone and logs each text), so
they are fast and count renderings exactly; the tests marked `real espeak-ng` render with the
real program and skip without it, or fail when HOTLINE_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import struct
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr import audio
from ivr.audio import AudioError, parse_wav, resample, trim_silence, write_atomic
from ivr.nodes import PromptSpec, Say
from ivr.numbers import digit_words, fragment_words, number_words, spell_numbers_zh
from ivr.prompts import PromptLibrary
from ivr.resolver import PromptError
from ivr.tts import espeak_voice
from media import _dsp
from media.items import Prompt

# -- signals and an independent WAV writer ------------------------------------------------------


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def rms_db(x: np.ndarray) -> float:
    return 20 * math.log10(max(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), 1e-12))


def middle(x: np.ndarray, rate: int, edge_s: float = 0.1) -> np.ndarray:
    """`x` without its edges, where the filter sees the zero padding."""
    edge = int(rate * edge_s)
    return x[edge:-edge]


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    return float(np.argmax(spectrum)) * rate / (8 * len(x))


def write_test_wav(
    path: Path, frames: np.ndarray, rate: int, encoding: str = "pcm16", extensible: bool = False
) -> None:
    """A WAV file written without ivr.audio: frames (n, channels) of floats in [-1, 1]."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 1:
        frames = frames[:, None]
    channels = frames.shape[1]
    flat = frames.reshape(-1)
    if encoding == "pcm8":
        tag, width, body = (
            1,
            1,
            np.clip(np.rint(flat * 127 + 128), 0, 255).astype(np.uint8).tobytes(),
        )
    elif encoding in ("pcm16", "pcm24", "pcm32"):
        tag, width = 1, int(encoding[3:]) // 8
        ints = np.clip(
            np.rint(flat * 2 ** (8 * width - 1)), -(2 ** (8 * width - 1)), 2 ** (8 * width - 1) - 1
        )
        ints = ints.astype(np.int64)
        body = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
    elif encoding == "float32":
        tag, width, body = 3, 4, flat.astype("<f4").tobytes()
    elif encoding in ("ulaw", "alaw"):
        pcm = np.clip(np.rint(flat * 32767), -32768, 32767).astype("<i2").tobytes()
        encode = _dsp.ulaw_encode if encoding == "ulaw" else _dsp.alaw_encode
        tag, width, body = (7 if encoding == "ulaw" else 6), 1, encode(pcm)
    else:
        raise ValueError(encoding)
    block = width * channels
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack(
            "<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, 8 * width, 22, 8 * width, 0
        )
        fmt += struct.pack("<H", tag) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, 8 * width)
    junk = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # odd-sized chunk, padded
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + junk
    chunks += b"data" + struct.pack("<I", len(body)) + body
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


def read_cached(path: str) -> np.ndarray:
    """Samples of a cached prompt, checking it is 8 kHz mono 16-bit PCM."""
    with wave.open(path, "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    return data


# -- a fake espeak-ng ---------------------------------------------------------------------------

FAKE_ESPEAK = """\
#!{python} -S
import math, struct, sys, time
args = sys.argv[1:]
voice = args[args.index("-v") + 1]
out = args[args.index("-w") + 1]
text = sys.stdin.buffer.read().decode("utf-8")
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(voice + "\\t" + text.replace("\\n", " ") + "\\n")
if voice == "xx":
    sys.stderr.write("Error: The specified espeak-ng voice does not exist.\\n")
    sys.exit(1)
if "SLOW" in text:
    time.sleep(30)
rate = 22050
pad = [0] * (rate // 10)
body = [int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(rate * 0.1 * len(text)))]
pcm = struct.pack("<%dh" % (len(body) + 2 * len(pad)), *(pad + body + pad))
header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1,
                     rate, rate * 2, 2, 16, b"data", len(pcm))
open(out, "wb").write(header + pcm)
"""


class FakeEspeak:
    def __init__(self, directory: Path) -> None:
        self.log = directory / "tts.log"
        self.path = directory / "espeak-ng"
        self.path.write_text(FAKE_ESPEAK.format(python=sys.executable, log=str(self.log)))
        self.path.chmod(self.path.stat().st_mode | stat.S_IEXEC)

    def texts(self) -> list[str]:
        if not self.log.exists():
            return []
        return [line.split("\t", 1)[1] for line in self.log.read_text("utf-8").splitlines()]

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def fake(tmp_path: Path) -> FakeEspeak:
    return FakeEspeak(tmp_path)


def library(
    tmp_path: Path, engine: str | Path, specs: dict[str, PromptSpec], **kw: object
) -> PromptLibrary:
    return PromptLibrary(specs, tmp_path, tmp_path / "cache", engine=str(engine), **kw)


def word_of(lib: PromptLibrary, words: tuple[str, ...]) -> dict[str, str]:
    """Cached file → number word, through Say(var) (number words are texts rendered ahead)."""
    return {lib.items((Say(var="w"),), {"w": w})[0].path: w for w in words}


def spoken(lib: PromptLibrary, items: tuple[object, ...], lang: str) -> list[str]:
    names = word_of(lib, fragment_words(lang))
    return [names[item.path] for item in items]


# -- resampler ----------------------------------------------------------------------------------


def test_1khz_tone_at_22050_keeps_frequency_and_level_at_8khz() -> None:
    x = tone(1000, 22050)
    y = resample(x, 22050, 8000)
    assert len(y) == math.ceil(len(x) * 8000 / 22050)
    assert abs(peak_hz(middle(y, 8000), 8000) - 1000) < 1.0
    assert abs(rms_db(middle(y, 8000)) - rms_db(x)) < 0.5


def test_5khz_tone_at_44100_is_removed_not_folded_to_3khz() -> None:
    x = tone(5000, 44100)
    y = resample(x, 44100, 8000)
    assert rms_db(middle(y, 8000)) - rms_db(x) < -40


@pytest.mark.parametrize("rate", [6000, 11025, 16000, 24000, 32000, 44100, 48000])
def test_speech_band_survives_every_common_rate(rate: int) -> None:
    for freq in (300, 1000, min(3000, 0.4 * rate)):  # 3 kHz, or the top of a narrower band
        x = tone(freq, rate)
        y = middle(resample(x, rate, 8000), 8000)
        assert abs(peak_hz(y, 8000) - freq) < 1.0, (rate, freq)
        assert abs(rms_db(y) - rms_db(x)) < 0.5, (rate, freq)


@pytest.mark.parametrize("rate,freq", [(16000, 4500), (48000, 7000), (48000, 12000), (22050, 6000)])
def test_above_4khz_is_attenuated_at_every_rate(rate: int, freq: float) -> None:
    y = middle(resample(tone(freq, rate), rate, 8000), 8000)
    assert rms_db(y) - rms_db(tone(freq, rate)) < -40


def test_8khz_input_is_passed_through_unchanged() -> None:
    x = tone(1000, 8000)
    assert np.array_equal(resample(x, 8000, 8000), x)


def test_trim_silence_keeps_a_short_margin() -> None:
    pcm = np.concatenate([np.zeros(800), tone(500, 8000, 0.2) * 32767, np.zeros(800)]).astype(
        np.int16
    )
    trimmed = trim_silence(pcm)
    assert 1600 <= len(trimmed) <= 1600 + 2 * 120 + 2


# -- WAV formats --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate,channels,encoding,extensible",
    [
        (44100, 2, "pcm24", False),
        (44100, 2, "pcm24", True),
        (48000, 2, "pcm16", False),
        (22050, 1, "pcm16", False),
        (16000, 1, "pcm32", False),
        (11025, 1, "pcm8", False),
        (32000, 2, "float32", True),
        (8000, 1, "pcm16", False),
        (8000, 1, "ulaw", False),
        (8000, 1, "alaw", False),
    ],
)
def test_wav_files_become_8khz_mono_16bit_with_level_kept(
    tmp_path: Path, rate: int, channels: int, encoding: str, extensible: bool
) -> None:
    x = tone(1000, rate, 0.8)
    write_test_wav(tmp_path / "in.wav", np.column_stack([x] * channels), rate, encoding, extensible)
    lib = library(tmp_path, "espeak-ng", {"p": PromptSpec(file="in.wav")}, default_voice="fr")
    assert lib.prepare() == []
    (item,) = lib.items("p", {})
    y = read_cached(item.path)
    assert abs(len(y) - 0.8 * 8000) <= 1
    assert abs(peak_hz(middle(y, 8000), 8000) - 1000) < 1.0
    tolerance = 0.5 if encoding not in ("pcm8",) else 1.0
    assert abs(rms_db(middle(y, 8000)) - rms_db(x)) < tolerance


def test_g711_tables_match_the_media_engine() -> None:
    codes = bytes(range(256))
    for tag, decode in ((7, _dsp.ulaw_decode), (6, _dsp.alaw_decode)):
        fmt = struct.pack("<HHIIHH", tag, 1, 8000, 8000, 1, 8)
        data = (
            b"RIFF\0\0\0\0WAVEfmt "
            + struct.pack("<I", 16)
            + fmt
            + b"data"
            + struct.pack("<I", 256)
            + codes
        )
        ours, rate = parse_wav(data)
        assert rate == 8000
        assert np.array_equal(
            np.rint(ours * 32768).astype(np.int16), np.frombuffer(decode(codes), "<i2")
        )


@pytest.mark.parametrize(
    "content,message",
    [
        (b"not a wav file at all", "not a RIFF/WAVE"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (
            b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0"
            + struct.pack("<HHIIHH", 2, 1, 8000, 4000, 256, 4)
            + b"data\x04\0\0\0abcd",
            "unsupported WAV encoding",
        ),
    ],
)
def test_bad_wav_files_are_problems_naming_the_prompt(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "bad.wav").write_bytes(content)
    write_test_wav(tmp_path / "good.wav", tone(1000, 16000, 0.2), 16000)
    lib = library(
        tmp_path,
        "espeak-ng",
        {"bad": PromptSpec(file="bad.wav"), "good": PromptSpec(file="good.wav")},
        default_voice="fr",
    )
    (problem,) = lib.prepare()
    assert problem.startswith("prompt 'bad':") and message in problem
    assert lib.prepared() == {"good"}
    with pytest.raises(PromptError, match="not available.*" + message):
        lib.items("bad", {})


def test_missing_file_and_bad_spec_are_problems(tmp_path: Path) -> None:
    lib = library(
        tmp_path,
        "espeak-ng",
        {
            "gone": PromptSpec(file="prompts/gone.wav"),
            "both": PromptSpec(file="a.wav", text="x"),
            "none": PromptSpec(),
        },
        default_voice="fr",
    )
    problems = lib.prepare()
    assert problems == [
        "prompt 'both': give exactly one of `file` or `text`",
        "prompt 'gone': file prompts/gone.wav cannot be read: No such file or directory",
        "prompt 'none': give exactly one of `file` or `text`",
    ]


# -- the cache ----------------------------------------------------------------------------------


def test_second_prepare_renders_and_converts_nothing(
    tmp_path: Path, fake: FakeEspeak, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_test_wav(tmp_path / "menu.wav", tone(1000, 44100, 0.3), 44100)
    specs = {
        "welcome": PromptSpec(text="您好"),
        "menu": PromptSpec(file="menu.wav"),
        "hello": PromptSpec(text="hello", voice="en"),
    }
    lib = library(tmp_path, fake.path, specs)
    assert lib.prepare() == []
    first = {name: lib.items(name, {}) for name in specs}
    assert lib.last_prepare.rendered == 2 + len(fragment_words("zh"))
    assert lib.last_prepare.converted == 1
    fake.clear()

    def no_conversion(source: Path) -> object:
        raise AssertionError(f"converted {source} again")

    monkeypatch.setattr("ivr.prompts.convert_file", no_conversion)
    again = library(tmp_path, fake.path, specs)
    assert again.prepare() == []
    assert fake.texts() == []
    assert (again.last_prepare.rendered, again.last_prepare.converted) == (0, 0)
    assert {name: again.items(name, {}) for name in specs} == first
    # The cache serves even without the engine: no TTS runs for cached texts.
    assert library(tmp_path, tmp_path / "missing" / "espeak-ng", specs).prepare() == []


def test_changed_text_or_file_is_made_again_alone(tmp_path: Path, fake: FakeEspeak) -> None:
    write_test_wav(tmp_path / "menu.wav", tone(1000, 16000, 0.3), 16000)
    lib = library(
        tmp_path,
        fake.path,
        {"a": PromptSpec(text="甲"), "b": PromptSpec(text="乙"), "m": PromptSpec(file="menu.wav")},
        default_voice="fr",
    )
    lib.prepare()
    old_m = lib.items("m", {})
    fake.clear()
    write_test_wav(tmp_path / "menu.wav", tone(500, 16000, 0.4), 16000)
    os.utime(tmp_path / "menu.wav", ns=(1, 2_000_000_000))
    assert (
        lib.prepare(
            {
                "a": PromptSpec(text="甲"),
                "b": PromptSpec(text="丙"),
                "m": PromptSpec(file="menu.wav"),
            }
        )
        == []
    )
    assert fake.texts() == ["丙"]
    assert lib.last_prepare.converted == 1 and lib.items("m", {}) != old_m


def test_cache_files_are_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cache" / "x.wav"
    write_atomic(target, b"old")

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audio.os, "fsync", crash)
    with pytest.raises(OSError):
        write_atomic(target, b"new, half written")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.wav"]  # no temporary left


def test_a_failed_cache_write_leaves_no_prompt_and_is_retried(
    tmp_path: Path, fake: FakeEspeak, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = library(tmp_path, fake.path, {"a": PromptSpec(text="甲")}, default_voice="fr")
    real_replace = os.replace

    def crash(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(audio.os, "replace", crash)
    (problem,) = lib.prepare()
    assert (
        problem.startswith("prompt 'a': cannot write the cache file")
        and "Input/output error" in problem
    )
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(audio.os, "replace", real_replace)
    assert lib.prepare() == [] and lib.last_prepare.rendered == 1


# -- names, errors, threads ---------------------------------------------------------------------


def test_unknown_and_unprepared_prompts_raise(tmp_path: Path, fake: FakeEspeak) -> None:
    lib = library(tmp_path, fake.path, {"a": PromptSpec(text="甲")}, default_voice="fr")
    with pytest.raises(PromptError, match="'a' is not prepared yet"):
        lib.items("a", {})
    with pytest.raises(PromptError, match="unknown prompt 'zzz'"):
        lib.items("zzz", {})
    lib.prepare()
    with pytest.raises(PromptError, match="unknown prompt 'zzz'"):
        lib.items(("a", "zzz"), {})
    assert lib.items(("a", "a"), {}) == lib.items("a", {}) * 2


def test_missing_espeak_is_a_problem_per_text_prompt(tmp_path: Path) -> None:
    write_test_wav(tmp_path / "m.wav", tone(1000, 8000, 0.2), 8000)
    engine = tmp_path / "nowhere" / "espeak-ng"
    lib = library(
        tmp_path, engine, {"welcome": PromptSpec(text="您好"), "m": PromptSpec(file="m.wav")}
    )
    problems = lib.prepare()
    assert problems[0].startswith(f"prompt 'welcome': TTS engine '{engine}' not found")
    assert "espeak-ng" in problems[0]
    assert problems[1].startswith("number words (cmn): 17 of 17 failed")
    assert len(problems) == 2
    assert lib.prepared() == {"m"}
    with pytest.raises(PromptError, match="welcome.*not found"):
        lib.items("welcome", {})
    with pytest.raises(PromptError, match="number words not available"):
        lib.items((Say(number="3"),), {})


def test_engine_failure_and_timeout_are_problems(tmp_path: Path, fake: FakeEspeak) -> None:
    lib = library(
        tmp_path,
        fake.path,
        {"bad": PromptSpec(text="x", voice="xx"), "slow": PromptSpec(text="SLOW")},
        default_voice="fr",
        timeout=0.5,
    )
    assert lib.prepare() == [
        "prompt 'bad': "
        + f"{fake.path} failed for voice 'xx': Error: The specified espeak-ng voice does not exist.",
        f"prompt 'slow': {fake.path} did not finish within 0.5 s",
    ]


def test_items_keep_working_while_a_reload_prepares(tmp_path: Path, fake: FakeEspeak) -> None:
    lib = library(tmp_path, fake.path, {"a": PromptSpec(text="甲")}, default_voice="fr")
    lib.prepare()
    before = lib.items("a", {})
    done = threading.Event()
    seen: list[tuple[object, ...]] = []
    worker = threading.Thread(
        target=lambda: (
            lib.prepare({"a": PromptSpec(text="甲"), "b": PromptSpec(text="乙" * 3)}),
            done.set(),
        )
    )
    worker.start()
    while not done.is_set():
        seen.append(lib.items("a", {}))
    worker.join()
    assert all(items == before for items in seen)
    assert lib.prepared() == {"a", "b"}


# -- number words -------------------------------------------------------------------------------

NUMBERS = [
    (0, "零", "zero"),
    (7, "七", "seven"),
    (10, "十", "ten"),
    (11, "十一", "eleven"),
    (20, "二十", "twenty"),
    (42, "四十二", "forty two"),
    (100, "一百", "one hundred"),
    (101, "一百零一", "one hundred one"),
    (110, "一百一十", "one hundred ten"),
    (123, "一百二十三", "one hundred twenty three"),
    (200, "两百", "two hundred"),
    (1001, "一千零一", "one thousand one"),
    (1010, "一千零一十", "one thousand ten"),
    (1100, "一千一百", "one thousand one hundred"),
    (2002, "两千零二", "two thousand two"),
    (9999, "九千九百九十九", "nine thousand nine hundred ninety nine"),
    (10000, "一万", "ten thousand"),
    (10001, "一万零一", "ten thousand one"),
    (12345, "一万两千三百四十五", "twelve thousand three hundred forty five"),
    (20000, "两万", "twenty thousand"),
    (100010, "十万零一十", "one hundred thousand ten"),
    (1000000, "一百万", "one million"),
    (100000000, "一亿", "one hundred million"),
]


@pytest.mark.parametrize("n,zh,en", NUMBERS)
def test_number_words(n: int, zh: str, en: str) -> None:
    assert "".join(number_words(n, "zh")) == zh
    assert " ".join(number_words(n, "en")) == en


def test_every_number_uses_only_fragment_words() -> None:
    for lang in ("zh", "en"):
        words = set(fragment_words(lang))
        for n in [*range(0, 10001), 99999999, 123456789, 10**12 - 1]:
            assert set(number_words(n, lang)) <= words, n
        assert set(digit_words("0123456789", lang)) <= words


def test_digits_read_one_by_one_with_yao_for_one() -> None:
    assert digit_words("12345", "zh") == list("幺二三四五")
    assert digit_words("120", "en") == ["one", "two", "zero"]
    with pytest.raises(ValueError):
        digit_words("12a", "en")


def test_chinese_tts_text_has_numbers_written_out() -> None:
    assert spell_numbers_zh("欢迎致电12345，您前面还有3位，约110秒，请拨0755") == (
        "欢迎致电幺二三四五，您前面还有三位，约一百一十秒，请拨零七五五"
    )


# -- Say parts ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zh_lib(tmp_path_factory: pytest.TempPathFactory) -> PromptLibrary:
    tmp_path = tmp_path_factory.mktemp("zh")
    lib = library(
        tmp_path,
        FakeEspeak(tmp_path).path,
        {"pos": PromptSpec(text="您前面还有"), "en": PromptSpec(text="hello", voice="en")},
        phrases=["企业服务"],
    )
    assert lib.prepare() == []
    return lib


def test_say_number_reads_chinese_number_words(zh_lib: PromptLibrary) -> None:
    items = zh_lib.items(("pos", Say(number="n")), {"n": "123"})
    assert items[0] == zh_lib.items("pos", {})[0]
    assert spoken(zh_lib, items[1:], "zh") == list("一百二十三")
    assert spoken(zh_lib, zh_lib.items((Say(number="1001"),), {}), "zh") == list("一千零一")


def test_say_digits_and_var(zh_lib: PromptLibrary) -> None:
    assert spoken(zh_lib, zh_lib.items((Say(digits="caller"),), {"caller": "13910"}), "zh") == list(
        "幺三九幺零"
    )
    assert spoken(zh_lib, zh_lib.items((Say(var="ticket"),), {"ticket": "2026"}), "zh") == list(
        "二零二六"
    )
    # Text rendered ahead (a prompt's text in the default voice, or a phrase) is played.
    assert zh_lib.items((Say(var="t"),), {"t": "您前面还有"}) == zh_lib.items("pos", {})
    (phrase,) = zh_lib.items((Say(var="t"),), {"t": "企业服务"})
    read_cached(phrase.path)


@pytest.mark.parametrize(
    "ref,variables,message",
    [
        ((Say(var="name"),), {"name": "张三"}, "not rendered ahead"),
        ((Say(var="unset"),), {}, "variable 'unset' is not set"),
        ((Say(digits="caller"),), {"caller": "anonymous"}, "'caller' is not a digit string"),
        ((Say(number="n"),), {"n": "3.5"}, "not a whole number"),
        ((Say(number="n"),), {"n": "1" * 13}, "out of range"),
        ((Say(),), {}, "exactly one of"),
        ((Say(var="a", digits="b"),), {}, "exactly one of"),
    ],
)
def test_unspeakable_say_parts_raise_without_leaking_values(
    zh_lib: PromptLibrary, ref: tuple[Say], variables: dict[str, str], message: str
) -> None:
    with pytest.raises(PromptError, match=message) as caught:
        zh_lib.items(ref, variables)
    for value in variables.values():
        assert value not in str(caught.value)


def test_say_in_english(tmp_path: Path, fake: FakeEspeak) -> None:
    lib = library(tmp_path, fake.path, {}, default_voice="en-us")
    assert lib.prepare() == []
    assert (
        spoken(lib, lib.items((Say(number="n"),), {"n": "9999"}), "en")
        == "nine thousand nine hundred ninety nine".split()
    )
    assert spoken(lib, lib.items((Say(digits="d"),), {"d": "101"}), "en") == ["one", "zero", "one"]


def test_voice_without_number_words(tmp_path: Path, fake: FakeEspeak) -> None:
    lib = library(tmp_path, fake.path, {}, default_voice="fr")
    assert lib.prepare() == [] and fake.texts() == []
    with pytest.raises(PromptError, match="'fr' has no number words"):
        lib.items((Say(number="3"),), {})


# -- real espeak-ng -----------------------------------------------------------------------------


def require_espeak() -> str:
    program = shutil.which("espeak-ng")
    if program is None:
        message = "espeak-ng is not installed (Debian package espeak-ng)"
        if os.environ.get("HOTLINE_REQUIRE_PEERS") == "1":
            pytest.fail(f"{message}; HOTLINE_REQUIRE_PEERS=1 forbids skipping", pytrace=False)
        pytest.skip(message)
    return program


@pytest.mark.parametrize(
    "voice,text,seconds",
    [
        ("cmn", "您好，欢迎致电12345政务服务便民热线", (3.0, 9.0)),
        ("en", "Welcome to the citizen service hotline", (1.5, 5.0)),
    ],
)
def test_real_espeak_renders_8khz_speech(
    tmp_path: Path, voice: str, text: str, seconds: tuple[float, float]
) -> None:
    """real espeak-ng"""
    require_espeak()
    lib = PromptLibrary(
        {"p": PromptSpec(text=text)}, tmp_path, tmp_path / "cache", default_voice=voice
    )
    assert lib.prepare() == []
    (item,) = lib.items("p", {})
    y = read_cached(item.path)
    assert seconds[0] < len(y) / 8000 < seconds[1]
    assert rms_db(y) > -35  # speech, not silence
    frames = y[: len(y) // 160 * 160].reshape(-1, 160)
    assert (np.sqrt(np.mean(frames**2, axis=1)) > 0.01).mean() > 0.3  # voiced most of the time
    # Number words are short, trimmed fragments.
    for word_item in lib.items((Say(number="n"),), {"n": "9999"}):
        w = read_cached(word_item.path)
        assert 0.1 < len(w) / 8000 < 1.0


def test_real_espeak_chinese_voice_speaks_characters_not_english_pinyin() -> None:
    """real espeak-ng: espeak-ng 1.51's `cmn` reads 好 as English "hao three"; ours must not."""
    program = require_espeak()
    result = subprocess.run(
        [program, "-q", "-x", "-v", espeak_voice("cmn"), "--stdin"],
        input="您好，请按一".encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert b"(en)" not in result.stdout


def test_real_espeak_cache_hit_needs_no_engine(tmp_path: Path) -> None:
    """real espeak-ng"""
    require_espeak()
    specs = {"p": PromptSpec(text="请稍候")}
    first = PromptLibrary(specs, tmp_path, tmp_path / "cache")
    assert first.prepare() == []
    second = PromptLibrary(
        specs, tmp_path, tmp_path / "cache", engine=str(tmp_path / "no" / "espeak-ng")
    )
    assert second.prepare() == [] and second.last_prepare.rendered == 0
    assert second.items("p", {}) == first.items("p", {}) == (Prompt(first.items("p", {})[0].path),)


def test_fake_engine_writes_a_22050hz_wav(fake: FakeEspeak, tmp_path: Path) -> None:
    subprocess.run(
        [str(fake.path), "-v", "en", "-w", str(tmp_path / "o.wav"), "--stdin"],
        input=b"hi",
        check=True,
        timeout=30,
    )
    samples, rate = audio.read_wav(tmp_path / "o.wav")
    assert rate == 22050 and len(samples) > 0
    with pytest.raises(AudioError):
        audio.read_wav(tmp_path / "absent.wav")
