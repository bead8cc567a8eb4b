"""The prompt library: `PromptResolver` for the dialplan's `prompts:` (SPEC DP-5).

Every prompt is made once, ahead of calls, into an 8 kHz mono 16-bit WAV in `cache_dir`, the
format `media.items.Prompt` plays:

- `file:` prompts (a path relative to the configuration directory) are read in any common WAV
  format and resampled (`ivr.audio`); the cache key is the source's resolved path, size and
  modification time, so an edited file is converted again and an unchanged one never is;
- `text:` prompts are rendered by espeak-ng (`ivr.tts`, which explains why not through
  pyttsx3) in the prompt's voice or the default one; the cache key is the engine's name, the
  espeak-ng voice, the text and `FORMAT_VERSION`;
- the words of dynamic parts (`Say`): digits and the number words of the default voice's
  language (`ivr.numbers.fragment_words`: Chinese 零 幺 一 … 十 百 千 万 亿, English zero …
  billion), rendered like texts and trimmed of their pauses so they can be concatenated;
- `phrases`: further texts a `Say(var=...)` may need (say, service type names).

Cache file names are `tts-<key>.wav`, `file-<key>.wav` and `word-<key>.wav`, `<key>` the first
32 hex digits of a SHA-256 of the key fields. Every file is written whole or not at all
(temporary file, fsync, rename), so a crash never leaves half a prompt behind. Files are never
deleted here: calls in progress may still play what an older configuration used.

`prepare()` does the work and may run in a worker thread while calls are served: it builds a
new immutable catalog and swaps it in with one assignment, and `items()` reads the catalog
once per call. `items()` never renders: a prompt that is not (yet) prepared, a text that was not
rendered ahead, an unknown name raise `PromptError`, and the IVR goes on without that prompt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ivr.audio import (
    TELEPHONE_RATE,
    AudioError,
    convert_file,
    resample,
    to_pcm16,
    trim_silence,
    wav_bytes,
    write_atomic,
)
from ivr.nodes import PromptRef, PromptSpec, Say
from ivr.numbers import MAX_NUMBER, Lang, digit_words, fragment_words, lang_of_voice, number_words
from ivr.resolver import PromptError
from ivr.tts import DEFAULT_TIMEOUT, TtsError, espeak_voice, render
from media.items import PlayItem, Prompt

log = logging.getLogger(__name__)

#: Part of every cache key: raise it when rendering or conversion changes, and every prompt is
#: made again on the next prepare.
FORMAT_VERSION = 1

_DECIMAL = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class PrepareStats:
    """What the last `prepare()` did: files made (TTS renderings, WAV conversions), cache
    entries reused, problems, and seconds taken."""

    rendered: int = 0
    converted: int = 0
    reused: int = 0
    problems: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Catalog:
    """One prepared state; never changed once built (prepare swaps in a new one)."""

    prompts: Mapping[str, str]  # prompt name → cached WAV
    failed: Mapping[str, str]  # prompt name → why it is not available
    words: Mapping[str, str]  # number / digit word → cached WAV (default voice)
    texts: Mapping[str, str]  # text rendered ahead in the default voice → cached WAV
    lang: Lang | None


@dataclass
class _Counts:
    rendered: int = 0
    converted: int = 0
    reused: int = 0
    errors: dict[str, str] = field(default_factory=dict)


class PromptLibrary:
    """Prompts of one dialplan, prepared ahead into `cache_dir` (see the module docstring).

    `engine` is the espeak-ng program, by name on PATH or by path; `default_voice` speaks
    texts without a `voice` and all dynamic parts; `phrases` are extra texts that
    `Say(var=...)` may play; `timeout` bounds one rendering in seconds."""

    def __init__(
        self,
        specs: Mapping[str, PromptSpec],
        config_dir: Path,
        cache_dir: Path,
        default_voice: str = "cmn",
        engine: str = "espeak-ng",
        *,
        phrases: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.cache_dir = Path(cache_dir)
        self.default_voice = default_voice
        self.engine = engine
        self.timeout = timeout
        self._specs: Mapping[str, PromptSpec] = dict(specs)
        self._phrases = tuple(dict.fromkeys(phrases))
        self._catalog: _Catalog | None = None
        self._prepare_lock = threading.Lock()
        self.last_prepare = PrepareStats()

    # -- preparing (worker thread) ----------------------------------------------------------

    def prepare(self, specs: Mapping[str, PromptSpec] | None = None) -> list[str]:
        """Make every prompt, number word and phrase that is not cached yet, then make them
        all playable at once. `specs` replaces the prompts (a reload). Returns one message
        per problem, each naming its prompt; never raises for a prompt. Calls of `prepare`
        run one at a time; `items()` may be called meanwhile."""
        started = time.monotonic()
        with self._prepare_lock:
            if specs is not None:
                self._specs = dict(specs)
            counts = _Counts()
            prompts: dict[str, str] = {}
            failed: dict[str, str] = {}
            texts: dict[str, str] = {}
            problems: list[str] = []
            for name, spec in sorted(self._specs.items()):
                try:
                    prompts[name] = self._prepare_spec(spec, counts)
                except PromptError as exc:
                    failed[name] = str(exc)
                    problems.append(f"prompt {name!r}: {exc}")
                    continue
                if (
                    spec.text is not None
                    and (spec.voice or self.default_voice) == self.default_voice
                ):
                    texts[spec.text] = prompts[name]
            lang = lang_of_voice(self.default_voice)
            words = self._prepare_words(lang, counts, problems)
            for phrase in self._phrases:
                try:
                    texts[phrase] = self._tts(phrase, self.default_voice, counts, word=False)
                except PromptError as exc:
                    problems.append(f"phrase {phrase!r}: {exc}")
            texts.update((word, path) for word, path in words.items() if word not in texts)
            self._catalog = _Catalog(
                prompts=MappingProxyType(prompts),
                failed=MappingProxyType(failed),
                words=MappingProxyType(words),
                texts=MappingProxyType(texts),
                lang=lang,
            )
            self.last_prepare = PrepareStats(
                rendered=counts.rendered,
                converted=counts.converted,
                reused=counts.reused,
                problems=len(problems),
                seconds=time.monotonic() - started,
            )
        log.info(
            "prompts prepared: %d ready, %d rendered, %d converted, %d cached, %d problems, %.2f s",
            len(prompts),
            counts.rendered,
            counts.converted,
            counts.reused,
            len(problems),
            self.last_prepare.seconds,
        )
        return problems

    def _prepare_spec(self, spec: PromptSpec, counts: _Counts) -> str:
        if (spec.file is None) == (spec.text is None):
            raise PromptError("give exactly one of `file` or `text`")
        if spec.text is not None:
            return self._tts(spec.text, spec.voice or self.default_voice, counts, word=False)
        assert spec.file is not None
        return self._convert(spec.file, counts)

    def _prepare_words(
        self, lang: Lang | None, counts: _Counts, problems: list[str]
    ) -> dict[str, str]:
        """The number and digit words of `lang`; one problem line for all that failed."""
        words: dict[str, str] = {}
        if lang is None:
            return words
        errors: dict[str, str] = {}
        for word in fragment_words(lang):
            try:
                words[word] = self._tts(word, self.default_voice, counts, word=True)
            except PromptError as exc:
                errors[word] = str(exc)
        if errors:
            first = next(iter(errors.values()))
            problems.append(
                f"number words ({self.default_voice}): {len(errors)} of "
                f"{len(fragment_words(lang))} failed ({' '.join(errors)}): {first}"
            )
        return words

    def _cache_path(self, kind: str, *key: object) -> Path:
        blob = json.dumps([kind, FORMAT_VERSION, *key], ensure_ascii=False).encode("utf-8")
        return self.cache_dir / f"{kind}-{hashlib.sha256(blob).hexdigest()[:32]}.wav"

    def _tts(self, text: str, voice: str, counts: _Counts, *, word: bool) -> str:
        engine_name = Path(self.engine).name  # /usr/bin/espeak-ng and espeak-ng share a cache
        voice_used = espeak_voice(voice)
        path = self._cache_path("word" if word else "tts", engine_name, voice_used, text)
        if path.exists():
            counts.reused += 1
            return str(path)
        try:
            samples, rate = render(text, voice, self.engine, self.timeout)
        except TtsError as exc:
            raise PromptError(str(exc)) from exc
        pcm = to_pcm16(resample(samples, rate, TELEPHONE_RATE))
        if word:
            pcm = trim_silence(pcm)
        if len(pcm) == 0 or not pcm.any():
            raise PromptError(f"{engine_name} voice {voice!r} rendered only silence")
        self._write(path, wav_bytes(pcm))
        counts.rendered += 1
        return str(path)

    def _convert(self, file: str, counts: _Counts) -> str:
        source = Path(file)
        if not source.is_absolute():
            source = self.config_dir / source
        try:
            source = source.resolve()
            stat = source.stat()
        except OSError as exc:
            raise PromptError(f"file {file} cannot be read: {exc.strerror or exc}") from exc
        path = self._cache_path("file", str(source), stat.st_size, stat.st_mtime_ns)
        if path.exists():
            counts.reused += 1
            return str(path)
        try:
            pcm = convert_file(source)
        except AudioError as exc:
            raise PromptError(str(exc)) from exc
        self._write(path, wav_bytes(pcm))
        counts.converted += 1
        return str(path)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise PromptError(f"cannot write the cache file {path}: {exc.strerror or exc}") from exc

    # -- playing (event loop, any thread) ---------------------------------------------------

    def prepared(self) -> frozenset[str]:
        """Names of the prompts that can be played now."""
        catalog = self._catalog
        return frozenset(catalog.prompts) if catalog else frozenset()

    def items(self, ref: PromptRef, variables: Mapping[str, str]) -> tuple[PlayItem, ...]:
        """Playback items for `ref`: prompt names and `Say` parts in order. Never waits for TTS;
        raises PromptError for an unknown or unprepared prompt or an unspeakable part.
        Messages name variables, never their values (caller numbers are personal data)."""
        catalog = self._catalog
        parts = (ref,) if isinstance(ref, str) else ref
        played: list[PlayItem] = []
        for part in parts:
            if isinstance(part, Say):
                played += (Prompt(path) for path in self._say(catalog, part, variables))
            else:
                played.append(Prompt(self._prompt_path(catalog, part)))
        return tuple(played)

    def _prompt_path(self, catalog: _Catalog | None, name: str) -> str:
        if catalog is not None:
            if name in catalog.prompts:
                return catalog.prompts[name]
            if name in catalog.failed:
                raise PromptError(f"prompt {name!r} is not available: {catalog.failed[name]}")
        if name in self._specs:
            raise PromptError(f"prompt {name!r} is not prepared yet")
        raise PromptError(f"unknown prompt {name!r}")

    def _say(self, catalog: _Catalog | None, say: Say, variables: Mapping[str, str]) -> list[str]:
        given = [
            (k, v)
            for k, v in (("var", say.var), ("digits", say.digits), ("number", say.number))
            if v is not None
        ]
        if len(given) != 1:
            raise PromptError("a Say part needs exactly one of var, digits, number")
        if catalog is None:
            raise PromptError("prompts are not prepared yet")
        kind, arg = given[0]
        if kind == "number":
            value = variables.get(arg, arg).strip()
            if not (value.isascii() and _DECIMAL.fullmatch(value)):
                raise PromptError(f"Say number {arg!r}: not a whole number")
            return self._words(catalog, "number", int(value))
        value_or_none = variables.get(arg)
        if value_or_none is None and kind == "digits" and arg.isascii() and arg.isdigit():
            value_or_none = arg  # a literal digit string
        if value_or_none is None:
            raise PromptError(f"Say {kind}: variable {arg!r} is not set")
        value = value_or_none.strip()
        if value.isascii() and value.isdigit():
            return self._words(catalog, "digits", value)
        if kind == "digits":
            raise PromptError(f"Say digits: variable {arg!r} is not a digit string")
        if value in catalog.texts:
            return [catalog.texts[value]]
        raise PromptError(
            f"Say var: variable {arg!r} holds text that was not rendered ahead ({len(value)} "
            "characters); TTS never runs during a call, so list such texts as phrases"
        )

    def _words(self, catalog: _Catalog, how: str, value: int | str) -> list[str]:
        lang = catalog.lang
        if lang is None:
            raise PromptError(
                f"voice {self.default_voice!r} has no number words (Say needs a cmn or en voice)"
            )
        if isinstance(value, int):
            if not 0 <= value <= MAX_NUMBER:
                raise PromptError(f"Say {how}: number out of range (0 to {MAX_NUMBER})")
            words = number_words(value, lang)
        else:
            words = digit_words(value, lang)
        missing = [w for w in words if w not in catalog.words]
        if missing:
            raise PromptError(f"number words not available: {' '.join(dict.fromkeys(missing))}")
        return [catalog.words[w] for w in words]


__all__ = ["FORMAT_VERSION", "PrepareStats", "PromptLibrary"]
