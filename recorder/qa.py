"""Quality inspection of a recorded call (SPEC REC-5, 质检): talk time, over-talk, long
silences, talk share, and rule flags over a transcript.

The recorder hands `analyse` the decoded PCM of a call once it has ended: interleaved
two-channel int16 at 8 kHz, channel 0 the caller, channel 1 what the caller hears (the agent
side). The result (`QaResult`) goes into the recording's index row as JSON (`to_json`) and
its `flags` into the searchable flag column. Everything here is pure numpy and blocking: it
runs on the recorder's worker thread, never on the event loop (an hour of call takes about
0.15 s, `bench/bench_recorder_qa.py`).

Activity is measured per 20 ms window (one G.711 packet) and channel: a window whose RMS is
at or above `QaRules.level_dbfs` (0 dBFS: the RMS of a full-scale square wave, as in
`media.wavsink`) is speech, and so are the `hangover_ms` after it, which bridges the short
pauses between words. A last window shorter than 20 ms is measured over what it holds. Then:

- talk time of a channel: the length of its active windows;
- over-talk: both channels active at once for at least `overtalk_seconds` without a break
  counts as one over-talk; `QaResult.overtalk_seconds` adds up those spells only, so that
  the hangover of one party overlapping the other's first word is not counted;
- long silence: both channels quiet for at least `silence_seconds`, looked for from the first
  speech of either party to the end of the recording (dead air before hangup counts; the
  ringing before anybody speaks does not). A silence starts where the hangover ends;
- agent talk ratio: agent talk / (caller talk + agent talk), None where nobody spoke; above
  `agent_ratio_high` flags "agent_dominant", below `agent_ratio_low` "agent_silent".

Rule flags need a transcript (`transcribe`, with a vosk model; see `ivr.speech` for where
models come from). Without a speech model the transcript is None and the rule flags are
absent, never guessed. With one, `rule_flags` gives "greeting_missing" where none of
`QaRules.greetings` occurs in the agent's utterances within the first `greeting_seconds` of
agent talk, and "forbidden_word:<phrase>" for each of `QaRules.forbidden` the agent said.
Phrases match case-insensitively on whole words, punctuation ignored; in Han and kana text
(written without spaces, which vosk's Chinese model inserts between its words) spaces are
ignored and a phrase matches anywhere.
"""

from __future__ import annotations

import json
import math
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from ivr.speech import SpeechUnavailable, import_vosk
from media.wavsink import FULL_SCALE

#: The rate the recorder writes.
RATE = 8000
#: Activity is measured per window of this length (one G.711 packet).
WINDOW_MS = 20
#: Windows converted to float at once (one minute): bounds the working memory of a long call.
_CHUNK_WINDOWS = 3000
#: Samples of one channel handed to vosk at a time (0.5 s).
_VOSK_BLOCK = RATE // 2
#: Flags of the acoustic checks, in the order they appear in `QaResult.flags`.
LONG_SILENCE = "long_silence"
OVERTALK = "overtalk"
AGENT_DOMINANT = "agent_dominant"
AGENT_SILENT = "agent_silent"
GREETING_MISSING = "greeting_missing"
FORBIDDEN_WORD = "forbidden_word:"
#: The channels of a recording.
CALLER = 0
AGENT = 1


@dataclass(frozen=True)
class QaRules:
    """What the inspection checks; the configuration layer builds it (see the module
    docstring for the meaning of each threshold). Raises ValueError on impossible values."""

    level_dbfs: float = -40.0
    hangover_ms: int = 200
    silence_seconds: float = 8.0
    overtalk_seconds: float = 0.5
    agent_ratio_high: float = 0.8
    agent_ratio_low: float = 0.1
    greeting_seconds: float = 10.0
    greetings: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.level_dbfs <= 0.0:
            raise ValueError(f"level_dbfs: expected <= 0, got {self.level_dbfs!r}")
        if self.hangover_ms < 0:
            raise ValueError(f"hangover_ms: expected >= 0, got {self.hangover_ms!r}")
        for name in ("silence_seconds", "overtalk_seconds", "greeting_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.agent_ratio_low <= self.agent_ratio_high <= 1.0:
            raise ValueError(
                "agent_ratio_low, agent_ratio_high: expected 0 <= low <= high <= 1, got "
                f"{self.agent_ratio_low!r}, {self.agent_ratio_high!r}"
            )


@dataclass(frozen=True)
class Utterance:
    """What one party said between two pauses: `channel` 0 the caller, 1 the agent;
    `start` and `end` in seconds from the start of the recording."""

    channel: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class QaResult:
    """The inspection of one call (times in seconds, rounded to the millisecond)."""

    duration: float
    caller_talk: float
    agent_talk: float
    agent_talk_ratio: float | None
    overtalk_seconds: float
    overtalk_count: int
    long_silences: tuple[tuple[float, float], ...]
    flags: tuple[str, ...]
    #: None where no speech model was configured (or the index dropped it with the audio).
    transcript: tuple[Utterance, ...] | None = None

    def to_json(self) -> str:
        """The result as a JSON object (the index's `qa` column; `transcript` a key of it)."""
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> QaResult:
        """The result `to_json` wrote; ValueError for anything else. A missing `transcript`
        (the index removes it with the audio) reads as None."""
        try:
            return msgspec.json.decode(text, type=cls)
        except msgspec.MsgspecError as exc:
            raise ValueError(f"not a QA result: {exc}") from exc


# -- acoustic analysis ---------------------------------------------------------------------------


def analyse(
    pcm: bytes,
    rules: QaRules = QaRules(),  # noqa: B008 (frozen: one shared default is safe)
    *,
    rate: int = RATE,
    transcript: Iterable[Utterance] | None = None,
) -> QaResult:
    """Inspect a call: `pcm` interleaved stereo int16 (native order, as the recorder's
    decoder gives it), channel 0 the caller. With a `transcript` the rule flags are added
    and the transcript kept. Raises ValueError where `pcm` is not whole stereo frames."""
    if len(pcm) % 4:
        raise ValueError(
            f"pcm holds whole stereo int16 frames (4 bytes each), got {len(pcm)} bytes"
        )
    if rate < 1000 // WINDOW_MS:
        raise ValueError(f"rate: expected >= {1000 // WINDOW_MS} Hz, got {rate!r}")
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2)
    window = rate * WINDOW_MS // 1000
    count = -(-len(frames) // window)  # windows, the last one maybe short
    edges = np.minimum(np.arange(count + 1) * window, len(frames))  # their starts, then the end
    hangover = math.ceil(rules.hangover_ms / WINDOW_MS)
    active = _with_hangover(_loud(frames, window, rules.level_dbfs), hangover)
    lengths = np.diff(edges)

    def seconds(mask: NDArray[np.bool_]) -> float:
        return round(int(lengths[mask].sum()) / rate, 3)

    caller_talk, agent_talk = seconds(active[:, CALLER]), seconds(active[:, AGENT])
    both = active[:, CALLER] & active[:, AGENT]
    overtalks = [
        (start, end)
        for start, end in _runs(both)
        if edges[end] - edges[start] >= round(rules.overtalk_seconds * rate)
    ]
    either = active[:, CALLER] | active[:, AGENT]
    first = int(np.argmax(either)) if either.any() else len(either)
    long_silences = tuple(
        (round(int(edges[start]) / rate, 3), round(int(edges[end]) / rate, 3))
        for start, end in _runs(~either[first:], offset=first)
        if edges[end] - edges[start] >= round(rules.silence_seconds * rate)
    )
    talk = caller_talk + agent_talk
    ratio = round(agent_talk / talk, 4) if talk > 0 else None
    flags = []
    if long_silences:
        flags.append(LONG_SILENCE)
    if overtalks:
        flags.append(OVERTALK)
    if ratio is not None and ratio > rules.agent_ratio_high:
        flags.append(AGENT_DOMINANT)
    if ratio is not None and ratio < rules.agent_ratio_low:
        flags.append(AGENT_SILENT)
    said = None if transcript is None else tuple(sorted(transcript, key=_utterance_order))
    flags.extend(rule_flags(said, rules))
    return QaResult(
        duration=round(len(frames) / rate, 3),
        caller_talk=caller_talk,
        agent_talk=agent_talk,
        agent_talk_ratio=ratio,
        overtalk_seconds=round(sum(int(edges[e] - edges[s]) for s, e in overtalks) / rate, 3),
        overtalk_count=len(overtalks),
        long_silences=long_silences,
        flags=tuple(flags),
        transcript=said,
    )


def _loud(frames: NDArray[np.int16], window: int, level_dbfs: float) -> NDArray[np.bool_]:
    """Per window and channel: RMS at or above `level_dbfs` (the last window may be short)."""
    threshold = (FULL_SCALE * 10.0 ** (level_dbfs / 20.0)) ** 2  # mean square
    whole = len(frames) // window
    blocks = frames[: whole * window].reshape(whole, window, 2)
    loud = np.empty((whole + (len(frames) > whole * window), 2), dtype=bool)
    for i in range(0, whole, _CHUNK_WINDOWS):
        chunk = blocks[i : i + _CHUNK_WINDOWS].astype(np.float32)
        loud[i : i + len(chunk)] = np.einsum("wsc,wsc->wc", chunk, chunk) >= threshold * window
    if len(loud) > whole:
        tail = frames[whole * window :].astype(np.float64)
        loud[whole] = (tail * tail).mean(axis=0) >= threshold
    return loud


def _with_hangover(loud: NDArray[np.bool_], hangover: int) -> NDArray[np.bool_]:
    """`loud` extended by `hangover` windows after each loud window (per column)."""
    if hangover == 0 or len(loud) == 0:
        return loud
    index = np.arange(len(loud))[:, None]
    last_loud = np.maximum.accumulate(np.where(loud, index, -hangover - 1), axis=0)
    return index - last_loud <= hangover


def _runs(mask: NDArray[np.bool_], offset: int = 0) -> list[tuple[int, int]]:
    """(first, past the last) window index of each run of True in `mask`, plus `offset`."""
    padded = np.concatenate(([False], mask, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + offset
    return list(zip(changes[0::2].tolist(), changes[1::2].tolist(), strict=True))


# -- rules over a transcript ---------------------------------------------------------------------


def rule_flags(transcript: Iterable[Utterance] | None, rules: QaRules) -> tuple[str, ...]:
    """ "greeting_missing" and "forbidden_word:<phrase>" (the phrase as `normalise` gives it)
    for the agent's side of `transcript`; nothing without a transcript or without rules."""
    if transcript is None:
        return ()
    agent = sorted((u for u in transcript if u.channel == AGENT), key=_utterance_order)
    flags = []
    greetings = [p for p in map(normalise, rules.greetings) if p]
    if greetings:
        opening, talked = [], 0.0
        for utterance in agent:
            if talked >= rules.greeting_seconds:
                break
            opening.append(utterance.text)
            talked += max(0.0, utterance.end - utterance.start)
        if not any(said(phrase, " ".join(opening)) for phrase in greetings):
            flags.append(GREETING_MISSING)
    everything = " ".join(u.text for u in agent)
    for phrase in dict.fromkeys(p for p in map(normalise, rules.forbidden) if p):
        if said(phrase, everything):
            flags.append(FORBIDDEN_WORD + phrase)
    return tuple(flags)


_SPACELESS = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # kana, Han
_SPACE_IN_SPACELESS = re.compile(rf"(?<=[{_SPACELESS}]) (?=[{_SPACELESS}])")


def normalise(text: str) -> str:
    """`text` as phrases are compared: NFKC, case-folded, punctuation as spaces, single
    spaces, and no spaces between Han or kana characters."""
    words = re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return _SPACE_IN_SPACELESS.sub("", words)


def said(phrase: str, text: str) -> bool:
    """Whether normalised `phrase` occurs in `text` on word boundaries (where the phrase
    ends in a letter of a script written with spaces)."""
    left = "" if re.match(rf"[{_SPACELESS}]", phrase) else r"(?<!\w)"
    right = "" if re.search(rf"[{_SPACELESS}]$", phrase) else r"(?!\w)"
    return re.search(left + re.escape(phrase) + right, normalise(text)) is not None


def _utterance_order(utterance: Utterance) -> tuple[float, int]:
    return utterance.start, utterance.channel


# -- transcription -------------------------------------------------------------------------------

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def transcribe(pcm: bytes, model_path: str, *, rate: int = RATE) -> tuple[Utterance, ...]:
    """Each channel of a call (interleaved stereo int16) transcribed by vosk in free
    dictation, utterance by utterance, in order of start time. The model is loaded once per
    process and path (seconds, hundreds of MB). Blocking: call it on a worker thread.
    Raises `ivr.speech.SpeechUnavailable` where vosk or the model is missing, ValueError
    where `pcm` is not whole stereo frames."""
    if len(pcm) % 4:
        raise ValueError(
            f"pcm holds whole stereo int16 frames (4 bytes each), got {len(pcm)} bytes"
        )
    vosk = import_vosk()
    model = _model(vosk, model_path)
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2)
    utterances = []
    for channel in (CALLER, AGENT):
        recogniser = vosk.KaldiRecognizer(model, rate)
        recogniser.SetWords(True)
        samples = np.ascontiguousarray(frames[:, channel])
        for start in range(0, len(samples), _VOSK_BLOCK):
            if recogniser.AcceptWaveform(samples[start : start + _VOSK_BLOCK].tobytes()):
                utterances.extend(_utterances(recogniser.Result(), channel))
        utterances.extend(_utterances(recogniser.FinalResult(), channel))
    return tuple(sorted(utterances, key=_utterance_order))


def _model(vosk: Any, model_path: str) -> Any:
    """The vosk Model at `model_path`, loaded at the first call for that path."""
    with _models_lock:
        model = _models.get(model_path)
        if model is None:
            if not (Path(model_path) / "am" / "final.mdl").is_file():
                raise SpeechUnavailable(
                    f"{model_path}: not a vosk model directory (no am/final.mdl)"
                )
            try:
                model = vosk.Model(model_path)
            except Exception as exc:  # vosk raises a bare Exception for a bad model
                raise SpeechUnavailable(f"speech model {model_path} failed to load: {exc}") from exc
            _models[model_path] = model
        return model


def _utterances(raw: str, channel: int) -> list[Utterance]:
    """The utterance of one vosk result (`SetWords`: per-word times), none if it is empty."""
    result = json.loads(raw)
    text = " ".join(str(result.get("text", "")).split())
    words = [w for w in result.get("result", ()) if isinstance(w, dict) and "start" in w]
    if not text or not words:
        return []
    start, end = float(words[0]["start"]), float(words[-1]["end"])
    return [Utterance(channel, round(start, 3), round(end, 3), text)]


__all__ = [
    "AGENT",
    "AGENT_DOMINANT",
    "AGENT_SILENT",
    "CALLER",
    "FORBIDDEN_WORD",
    "GREETING_MISSING",
    "LONG_SILENCE",
    "OVERTALK",
    "QaResult",
    "QaRules",
    "Utterance",
    "analyse",
    "normalise",
    "rule_flags",
    "said",
    "transcribe",
]
