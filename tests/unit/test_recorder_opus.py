"""Ogg Opus recordings through libsndfile (SPEC REC-1, REC-4): `recorder.opus`.

Round trips of synthetic two-channel calls (a tone per channel, formant-synthesised speech
with turn taking and a line-noise floor), the page rhythm `page_ms` sets, and what a writer
leaves on disk when it is killed mid-call or the disk fills: both run in a child process (a
SIGKILL, an RLIMIT_FSIZE with SIGXFSZ ignored), and the parent decodes what is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from recorder.opus import RATE, OggOpusWriter, ends_with_eos, level_for, read_ogg_opus
from softswitch.config import RecordingConfig

ROOT = Path(__file__).resolve().parents[2]
#: Formants (F1, F2, F3) of four vowels, Hz: speech-like spectra for the size check.
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480))


def tones(seconds: float, left_hz: float, right_hz: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    left = np.sin(2 * np.pi * left_hz * t) * 8000
    right = np.sin(2 * np.pi * right_hz * t) * 8000
    return np.stack([left, right], axis=1).astype(np.int16)


def dominant_hz(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / RATE)[int(np.argmax(spectrum))])


def decoded(path: Path) -> tuple[np.ndarray, bool]:
    pcm, channels, complete = read_ogg_opus(path)
    return np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels), complete


def syllable(rng: np.random.Generator, f0: float, n: int) -> np.ndarray:
    """A glottal pulse train shaped by a vowel's formants, opened by a noise consonant."""
    pitch = f0 * (1 + 0.15 * (rng.random() - 0.5)) * (1 - 0.1 * np.arange(n) / n)
    pulses = np.diff(np.floor(np.cumsum(pitch) / RATE), prepend=0.0)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    formants = VOWELS[int(rng.integers(len(VOWELS)))]
    envelope = sum(
        gain * np.exp(-(((freqs - f) / (60 + f * 0.05)) ** 2))
        for f, gain in zip(formants, (1.0, 0.5, 0.25), strict=True)
    )
    voiced = np.fft.irfft(np.fft.rfft(pulses) * envelope, n)
    consonant = n // 4
    voiced[:consonant] = rng.standard_normal(consonant) * np.abs(voiced).max() * 0.15
    return voiced * np.hanning(n)


def speaker(rng: np.random.Generator, seconds: float, f0: float) -> np.ndarray:
    """Phrases of 4-9 syllables with pauses between them, RMS 1."""
    parts: list[np.ndarray] = []
    total = 0
    while total < seconds * RATE:
        for _ in range(int(rng.integers(4, 10))):
            parts.append(syllable(rng, f0, int(rng.uniform(0.15, 0.3) * RATE)))
            parts.append(np.zeros(int(0.04 * RATE)))
        parts.append(np.zeros(int(rng.uniform(0.2, 0.6) * RATE)))
        total = sum(len(p) for p in parts)
    voice = np.concatenate(parts)[: round(seconds * RATE)]
    return voice / np.sqrt(np.mean(voice**2))


def conversation(seconds: float, seed: int = 1) -> np.ndarray:
    """Caller and agent taking 3 s turns at about -21 dBFS over a -60 dBFS line noise."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    caller_turn = (np.arange(n) / RATE) // 3 % 2 == 0
    call = np.zeros((n, 2))
    call[:, 0] = speaker(rng, seconds, 120) * caller_turn * 3000
    call[:, 1] = speaker(rng, seconds, 220) * ~caller_turn * 3000
    call += rng.standard_normal(call.shape) * 33
    return np.clip(call, -32768, 32767).astype(np.int16)


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


# --- round trip -------------------------------------------------------------------------------


@pytest.fixture(autouse=True, params=["libopus", "libsndfile"])
def writer_kind(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Every test runs on both writers `OggOpusWriter` can pick (child processes too)."""
    import recorder.opus as opus

    if request.param == "libopus" and opus._libopus() is None:
        pytest.skip("libopus is not installed")
    monkeypatch.setenv("HOTLINE_OPUS", "libsndfile" if request.param == "libsndfile" else "")
    monkeypatch.setattr(opus, "_OPUS", None)  # chosen again under the variable
    expected = opus.LibopusWriter if request.param == "libopus" else opus.SndfileOpusWriter
    probe = OggOpusWriter(tmp_path / "probe.opus", 1)
    probe.close()
    assert isinstance(probe, expected)
    return str(request.param)


def test_two_channels_round_trip_whole_and_each_tone_stays_on_its_channel(
    tmp_path: Path,
) -> None:
    path = tmp_path / "call.opus"
    call = tones(3.0, 440.0, 1250.0)
    writer = OggOpusWriter(path, 2)
    for block in np.array_split(call, 150):  # 20 ms blocks, as the tap delivers them
        writer.write(block.tobytes())
    assert writer.seconds == 3.0
    writer.close()
    frames, complete = decoded(path)
    assert complete
    assert frames.shape == call.shape
    steady = frames[RATE // 2 :].astype(float)  # past the encoder's start-up
    assert dominant_hz(steady[:, 0]) == pytest.approx(440.0, abs=2)
    assert dominant_hz(steady[:, 1]) == pytest.approx(1250.0, abs=2)
    # The other channel's tone is at least 20 dB down on each side.
    for channel, other_hz in ((0, 1250.0), (1, 440.0)):
        spectrum = np.abs(np.fft.rfft(steady[:, channel] * np.hanning(len(steady))))
        freqs = np.fft.rfftfreq(len(steady), 1 / RATE)
        leak = spectrum[np.abs(freqs - other_hz) < 5].max()
        assert 20 * np.log10(spectrum.max() / leak) > 20


def test_mono_round_trip_keeps_length_and_title_does_not_disturb_audio(tmp_path: Path) -> None:
    path = tmp_path / "vm.opus"
    tone = tones(1.5, 600.0, 600.0)[:, 0]
    writer = OggOpusWriter(path, 1, title="voicemail 4711")
    writer.write(tone.tobytes())
    writer.close()
    frames, complete = decoded(path)
    assert complete and frames.shape == (len(tone), 1)
    assert dominant_hz(frames[RATE // 2 :, 0].astype(float)) == pytest.approx(600.0, abs=2)
    import soundfile

    with soundfile.SoundFile(str(path)) as f:
        assert f.title == "voicemail 4711"


def test_speech_at_the_default_bitrate_is_over_8_times_smaller_than_stereo_pcm(
    tmp_path: Path,
) -> None:
    call = conversation(20.0)
    sizes = []
    for writer in (
        OggOpusWriter(tmp_path / "config.opus", 2, bitrate=RecordingConfig().bitrate),
        OggOpusWriter(tmp_path / "writer.opus", 2),  # the writer's own default
    ):
        writer.write(call.tobytes())
        writer.close()
        sizes.append(writer.path.stat().st_size)
    pcm_bytes = call.size * 2  # 8 kHz, 16 bit, two channels
    assert all(pcm_bytes / size >= 8.0 for size in sizes)


@pytest.mark.parametrize("bitrate", [14000, 16000, 24000, 32000])
def test_the_file_holds_about_the_configured_bits_per_second_per_channel(
    tmp_path: Path, bitrate: int
) -> None:
    call = conversation(10.0)
    writer = OggOpusWriter(tmp_path / "rate.opus", 2, bitrate=bitrate)
    writer.write(call.tobytes())
    writer.close()
    per_channel = writer.path.stat().st_size * 8 / 10.0 / 2
    # Ogg framing included: about the configured rate (VBR stays under it at low rates and
    # goes up to 3 % over it at high ones, where two mono streams round up).
    assert 0.85 * bitrate <= per_channel <= 1.03 * bitrate


def test_write_rejects_a_partial_frame_and_writes_after_close(tmp_path: Path) -> None:
    writer = OggOpusWriter(tmp_path / "x.opus", 2)
    with pytest.raises(ValueError, match="whole number"):
        writer.write(b"\0\0\0\0\0\0")  # one and a half stereo frames
    writer.write(tones(0.1, 300, 300).tobytes())
    writer.close()
    writer.close()  # a second close does nothing
    with pytest.raises(ValueError, match="after close"):
        writer.write(b"\0\0\0\0")


def test_three_channels_and_an_unopenable_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels"):
        OggOpusWriter(tmp_path / "x.opus", 3)
    (tmp_path / "dir.opus").mkdir()
    with pytest.raises(OSError, match="dir.opus"):
        OggOpusWriter(tmp_path / "dir.opus", 2)


def test_reading_something_that_is_not_ogg_opus_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.opus"
    path.write_bytes(b"not an ogg file at all" * 10)
    with pytest.raises(ValueError, match="junk.opus"):
        read_ogg_opus(path)


# --- pages ------------------------------------------------------------------------------------


def growths(path: Path, page_ms: int, seconds: float = 5.0) -> int:
    """How many times the file grows while `seconds` are written in 100 ms blocks."""
    writer = OggOpusWriter(path, 2, page_ms=page_ms)
    block = tones(0.1, 440, 700).tobytes()
    sizes = []
    for _ in range(round(seconds * 10)):
        writer.write(block)
        sizes.append(path.stat().st_size)
    writer.close()
    return len(set(sizes)) - 1  # the first size is the header pages


def test_page_ms_sets_how_often_the_file_grows(tmp_path: Path) -> None:
    fast = growths(tmp_path / "fast.opus", 200)
    second = growths(tmp_path / "second.opus", 1000)
    assert 4 <= second <= 5  # about once a second over 5 s
    assert 20 <= fast <= 25  # about five times a second
    # Until its first page the file holds only the headers: nothing of the audio yet.
    path = tmp_path / "slow.opus"
    writer = OggOpusWriter(path, 2, page_ms=1000)
    writer.write(tones(0.1, 440, 700).tobytes())
    header = path.stat().st_size
    writer.write(tones(0.8, 440, 700).tobytes())
    assert path.stat().st_size == header
    writer.write(tones(0.3, 440, 700).tobytes())
    assert path.stat().st_size > header
    writer.close()


# --- end of stream --------------------------------------------------------------------------


def test_a_closed_file_ends_with_an_eos_page(tmp_path: Path) -> None:
    path = tmp_path / "done.opus"
    writer = OggOpusWriter(path, 2)
    writer.write(tones(2.0, 440, 700).tobytes())
    assert not ends_with_eos(path)  # open: the last page on disk is not the last page
    writer.close()
    assert ends_with_eos(path)
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])  # a torn last page
    assert not ends_with_eos(path)
    path.write_bytes(b"")
    assert not ends_with_eos(path)


def test_a_writer_killed_mid_call_leaves_a_playable_file_without_eos(tmp_path: Path) -> None:
    path = tmp_path / "killed.opus"
    result = run_child(
        """
        import os, sys
        import numpy as np
        from recorder.opus import OggOpusWriter
        t = np.arange(160) / 8000
        block = np.stack([np.sin(2 * np.pi * 400 * t), np.sin(2 * np.pi * 700 * t)], 1)
        block = (block * 8000).astype(np.int16).tobytes()
        writer = OggOpusWriter(sys.argv[1], 2)
        for _ in range(250):  # 5 s in 20 ms blocks
            writer.write(block)
        os.kill(os.getpid(), 9)
        """,
        str(path),
    )
    assert result.returncode == -9, result.stderr
    assert not ends_with_eos(path)
    frames, complete = decoded(path)
    assert not complete
    assert 3.5 <= len(frames) / RATE <= 5.0
    assert dominant_hz(frames[RATE // 2 :, 0].astype(float)) == pytest.approx(400, abs=3)
    assert dominant_hz(frames[RATE // 2 :, 1].astype(float)) == pytest.approx(700, abs=3)


DISK_FULL = """
    import json, resource, signal, sys
    import numpy as np
    from recorder.opus import OggOpusWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write(2) fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    rng = np.random.default_rng(0)
    writer = OggOpusWriter(sys.argv[1], 2)
    failure = later = closing = None
    for _ in range(2000):
        block = (rng.standard_normal((800, 2)) * 3000).astype(np.int16).tobytes()
        try:
            writer.write(block)
        except OSError as exc:
            failure = str(exc)
            break
    try:
        writer.write(block)
    except OSError as exc:
        later = str(exc)
    try:
        writer.close()
    except Exception as exc:
        closing = repr(exc)
    print(json.dumps({"seconds": writer.seconds, "failure": failure, "later": later,
                      "closing": closing, "broken": writer.broken}))
"""


def test_a_full_disk_keeps_what_was_written_and_the_writer_stays_broken(
    tmp_path: Path,
) -> None:
    path = tmp_path / "full.opus"
    result = run_child(DISK_FULL, str(path), "30000")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["failure"] is not None and "full.opus" in report["failure"]
    assert report["later"] is not None and "earlier write failed" in report["later"]
    assert report["closing"] is None  # close() of a broken writer does not raise
    assert report["broken"]
    assert path.stat().st_size <= 30000
    frames, complete = decoded(path)
    assert not complete
    kept = len(frames) / RATE
    assert report["seconds"] - 1.1 <= kept <= report["seconds"]  # at most a page lost
    assert kept > 3.0
    level = np.sqrt(np.mean(frames[RATE:].astype(float) ** 2, axis=0))
    assert (level > 1000).all()  # both channels hold the noise, not silence


# --- bitrate ----------------------------------------------------------------------------------


def test_level_for_spans_libsndfiles_range_and_clamps_outside_it() -> None:
    assert level_for(1000) == level_for(6000) == 1.0  # 6 kbit/s per channel: the floor
    assert level_for(10**6) == level_for(300000) == 0.0  # 256 kbit/s: the ceiling
    levels = [level_for(b) for b in range(8000, 64001, 2000)]
    assert all(0.0 < level < 1.0 for level in levels)
    assert levels == sorted(levels, reverse=True)
    assert len(set(levels)) == len(levels)


def test_level_for_asks_the_encoder_for_less_than_the_file_rate() -> None:
    """libsndfile's encoder rate per channel is 6000 + (1 - level) * 250000: it must be below
    the file's rate by the Ogg framing, and not by more than a few kbit/s."""
    for bitrate in (8000, 14000, 16000, 32000, 64000):
        encoder = 6000 + (1 - level_for(bitrate)) * 250000
        assert bitrate - 3000 <= encoder < bitrate


def test_the_libopus_reader_matches_libsndfile_and_skips_damaged_pages(
    tmp_path: Path, writer_kind: str
) -> None:
    import recorder.opus as opus

    if opus._libopus() is None:
        pytest.skip("the libopus reader needs libopus")
    path = tmp_path / "call.opus"
    t = np.arange(4 * RATE) / RATE
    left = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    writer = OggOpusWriter(path, 2)
    writer.write(np.column_stack((left, left // 2)).tobytes())
    writer.close()
    ours, channels, complete = opus._read_libopus(path)
    theirs, their_channels, their_complete = opus._read_sndfile(path)
    assert (channels, complete) == (their_channels, their_complete) == (2, True)
    a = np.frombuffer(ours, dtype=np.int16).astype(int)
    b = np.frombuffer(theirs, dtype=np.int16).astype(int)
    assert len(a) == len(b) == 2 * len(left)
    # libsndfile decodes the two mono streams of our stereo files at 48 kHz and resamples;
    # libopus here decodes at 8 kHz: the same audio, not the same samples.
    error = float(np.sum((a - b) ** 2))
    assert error == 0 or 10 * np.log10(float(np.sum(b**2)) / error) > 30

    # A page whose bytes were damaged is dropped whole (its CRC fails) and its time becomes
    # silence, so what follows stays in place; a torn last page (the crash case) is dropped
    # too, and the file then reads as incomplete.
    data = bytearray(path.read_bytes())
    pages = [i for i in range(len(data)) if data[i : i + 4] == b"OggS"]
    assert len(pages) >= 5  # two header pages, then a page a second
    data[pages[3] + 40] ^= 0xFF
    damaged = tmp_path / "damaged.opus"
    damaged.write_bytes(bytes(data[: pages[-1] + 30]))
    pcm, channels, complete = opus._read_libopus(damaged)
    c = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2).astype(int)
    whole = a.reshape(-1, 2)
    assert channels == 2 and not complete
    assert 3.5 <= len(c) / RATE <= 4.0, len(c) / RATE  # the torn last page is gone
    assert not c[int(1.2 * RATE) : int(1.8 * RATE)].any()  # the damaged second is silence
    after = slice(int(2.2 * RATE), len(c))
    # ... and the audio after it is in place: the same samples but for the decoder's own
    # recovery from the loss (a shift by even one sample would leave a 440 Hz error).
    error = float(np.sum((c[after] - whole[after]) ** 2))
    assert 10 * np.log10(float(np.sum(whole[after] ** 2)) / max(error, 1.0)) > 25
