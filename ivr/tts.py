"""Text to speech for prompts: the espeak-ng program, run offline as a subprocess (DP-5).

SPEC DP-5 names pyttsx3 with espeak-ng. pyttsx3 2.99 does work headless here, but it is not
used; its espeak driver loads libespeak-ng into the node's process through ctypes:

- one synthesis callback for the whole process, set by every engine, so two renderings in two
  threads (the prepare at start and one at a reload) interfere, and a crash in the C library
  takes every call of the node down with it;
- errors raised in that callback are swallowed: saving to an unwritable path prints
  "Exception ignored" and `runAndWait()` returns as if it had worked, with no file;
- no timeout is possible for a synthesis that never ends, and it prints to stdout.

The `espeak-ng` binary gives the same voices and audio (22050 Hz mono 16-bit WAV) with none of
that: each text is one process with a timeout, its exit status and stderr are checked, and a
missing program is a clear error rather than an ImportError.

Voices. In espeak-ng 1.51 (Debian 12) the `cmn` voice ("latin as English") reads many Chinese
characters as pinyin spelt in English with the tone spoken as an English digit: 好 comes out as
"hao three", 一 as "yi one" (espeak-ng issue #1236). `cmn-latn-pinyin` speaks the same text
correctly, so `cmn` and `zh` are rendered with it. Its own reading of numbers is also wrong
(12345 → 十二千三百四十五, 1001 → 一千一), so ASCII digits in Chinese text are first written out
by `ivr.numbers.spell_numbers_zh`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ivr.audio import AudioError, Samples, read_wav
from ivr.numbers import lang_of_voice, spell_numbers_zh

#: espeak-ng voices used for configured voice names (see the module docstring).
VOICE_ALIASES = {"cmn": "cmn-latn-pinyin", "zh": "cmn-latn-pinyin", "zh-cmn": "cmn-latn-pinyin"}

#: Seconds one text may take to render before it is abandoned.
DEFAULT_TIMEOUT = 30.0


class TtsError(Exception):
    """A text could not be rendered: no engine, unknown voice, engine failure or timeout."""


def espeak_voice(voice: str) -> str:
    """The espeak-ng voice that speaks `voice` (`cmn` → `cmn-latn-pinyin`)."""
    return VOICE_ALIASES.get(voice.strip().lower(), voice.strip())


def tts_text(text: str, voice: str) -> str:
    """The text handed to the engine: digits written out for Chinese voices."""
    return spell_numbers_zh(text) if lang_of_voice(voice) == "zh" else text


def render(
    text: str, voice: str, engine: str = "espeak-ng", timeout: float = DEFAULT_TIMEOUT
) -> tuple[Samples, int]:
    """`text` spoken by `voice`, as mono samples in [-1, 1] and their rate. `engine` is the
    espeak-ng program (a name on PATH or a path); raises TtsError."""
    if not text.strip():
        raise TtsError("empty text")
    program = shutil.which(engine)
    if program is None:
        raise TtsError(
            f"TTS engine {engine!r} not found (install the Debian package espeak-ng, or set "
            "tts.engine to its path)"
        )
    with tempfile.TemporaryDirectory(prefix="hotline-tts-") as tmp:
        out = Path(tmp) / "out.wav"
        command = [program, "-v", espeak_voice(voice), "-b", "1", "-w", str(out), "--stdin"]
        try:
            result = subprocess.run(
                command,
                input=tts_text(text, voice).encode("utf-8"),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TtsError(f"{engine} did not finish within {timeout:g} s") from exc
        except OSError as exc:
            raise TtsError(f"{engine} could not be run: {exc}") from exc
        stderr = result.stderr.decode("utf-8", errors="replace").strip()
        if result.returncode != 0:
            detail = stderr.splitlines()[-1] if stderr else f"exit status {result.returncode}"
            raise TtsError(f"{engine} failed for voice {voice!r}: {detail}")
        if not out.exists():
            # espeak-ng exits 0 when it cannot write its output or has nothing to say.
            raise TtsError(f"{engine} wrote no audio for voice {voice!r}: {stderr or 'no output'}")
        try:
            return read_wav(out)
        except AudioError as exc:
            raise TtsError(f"{engine} wrote unreadable audio: {exc}") from exc


__all__ = ["DEFAULT_TIMEOUT", "VOICE_ALIASES", "TtsError", "espeak_voice", "render", "tts_text"]
