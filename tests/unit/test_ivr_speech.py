"""Speech navigation (SPEC DP-6) without a model: IvrApp's `speech` menus driven with a fake
call (as test_ivr_app.py), and `ivr.speech.VoskSpeech` with a fake vosk module on a real
event loop (threads, ordering, close). The real Korean model is tests/unit/test_speech_vosk.py
(opt-in: `-m speech`)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from ivrfakes import AppDriver, FakeCall, FakePrompts

from ivr import nodes, speech
from ivr.app import IvrApp
from ivr.speech import SpeechUnavailable, VoskSpeech, channel0, parse_result
from media import MediaError
from media.items import Prompt
from softswitch.call import actions as act
from softswitch.call import events as ev
from softswitch.call.actions import Action

# ------------------------------------------------------------------------- the IVR side


FLOW: dict[str, Any] = {
    "start": "main",
    "nodes": {
        "main": {
            "type": "menu",
            "prompt": "menu_main",
            "keys": {"1": "general", "2": "sub", "3": "plain"},
            "speech": {"일": "1", "이": "2", "삼": "3", "다시": "*", "없는": "7"},
            "repeat_key": "*",
            "retries": 1,
            "invalid_prompt": "invalid",
            "timeout_prompt": "no_input",
        },
        "sub": {
            "type": "menu",
            "prompt": "menu_sub",
            "keys": {"1": "enterprise"},
            "speech": {"기업": "1", "뒤로": "#"},
            "back_key": "#",
        },
        "plain": {"type": "menu", "prompt": "menu_plain", "keys": {"1": "general"}},
        "general": {"type": "queue", "queue": "general"},
        "enterprise": {"type": "queue", "queue": "enterprise"},
    },
}


class Driver(AppDriver):
    def __init__(self, flow: dict[str, Any] = FLOW, *, speech: bool = True) -> None:
        self.call = FakeCall()
        self.now = 100.0
        self.app = IvrApp(
            {"main": msgspec.convert(flow, nodes.Flow)},
            "main",
            FakePrompts(),
            is_open=lambda schedule, at: True,
            region_of=lambda number: None,
            wall=lambda now: now,
            voicemail_path=lambda mailbox, call_id: f"/vm/{mailbox}/{call_id}.wav",
            speech=speech,
        )
        super().__init__()

    def say(self, text: str, leg: str = "a", confidence: float = 0.9) -> list[Action]:
        return self.send(ev.SpeechRecognized(leg, text, confidence))

    def timeout(self) -> list[Action]:
        (name,) = self.timers
        del self.timers[name]
        return self.send(ev.TimerFired(name))


def kinds(out: list[Action]) -> list[str]:
    return [type(a).__name__ for a in out if not isinstance(a, act.SetVariable)]


def played(out: list[Action]) -> list[list[str]]:
    return [
        [item.path.removesuffix(".wav") for item in a.items if isinstance(item, Prompt)]
        for a in out
        if isinstance(a, act.Play)
    ]


def test_a_speech_menu_listens_for_its_words_as_its_prompt_starts() -> None:
    d = Driver()
    out = d.start()
    assert kinds(out) == ["Answer", "Play", "Listen"]
    assert out[-1] == act.Listen("a", ("일", "이", "삼", "다시", "없는"))
    assert d.play is not None and d.play.barge_in


def test_without_a_recogniser_the_speech_map_is_ignored() -> None:
    d = Driver(speech=False)
    assert kinds(d.start()) == ["Answer", "Play"]
    assert d.say("일") == []  # nothing listens: a stray result changes nothing
    assert kinds(d.key("1")) == ["StopPlay", "Enqueue"]


def test_a_menu_without_speech_words_does_not_listen() -> None:
    d = Driver({"start": "plain", "nodes": FLOW["nodes"]})
    assert kinds(d.start()) == ["Answer", "Play"]


def test_a_word_said_during_the_prompt_is_its_key_with_barge_in() -> None:
    d = Driver()
    d.start()
    out = d.say("일")
    assert kinds(out) == ["StopPlay", "StopListen", "Enqueue"]
    assert out[0] == act.StopPlay("a") and out[1] == act.StopListen("a")
    assert out[-1] == act.Enqueue("general", 0)
    assert d.app.finished and d.call.variables["ivr_path"] == "main>general"


def test_a_word_said_after_the_prompt_cancels_the_timer() -> None:
    d = Driver()
    d.start()
    assert kinds(d.done()) == ["StartTimer"]
    out = d.say("  일 ")  # vosk's spacing does not matter
    assert kinds(out) == ["CancelTimer", "StopListen", "Enqueue"]


def test_speech_and_keys_give_the_same_actions() -> None:
    by_key, by_voice = Driver(), Driver()
    by_key.start(), by_voice.start()
    assert by_key.key("2") == by_voice.say("이")


def test_unknown_speech_is_an_invalid_key_and_listening_goes_on() -> None:
    d = Driver()
    d.start()
    out = d.say("[unk]", confidence=0.3)
    assert kinds(out) == ["StopPlay", "Play"]  # no StopListen, no second Listen
    assert played(out) == [["invalid", "menu_main"]]
    out = d.say("삼")  # still listening through the retry
    assert kinds(out) == ["StopPlay", "StopListen", "Play"]
    assert d.app.node == "plain"


def test_a_word_outside_the_map_or_to_a_missing_key_is_invalid() -> None:
    d = Driver()
    d.start()
    assert played(d.say("사")) == [["invalid", "menu_main"]]
    out = d.say("없는")  # mapped to key 7, which the menu does not have: retries run out
    assert kinds(out) == ["StopPlay", "StopListen", "Hangup"]
    assert out[-1] == act.Hangup(status=480, reason="no valid input at main")


def test_a_timeout_retries_without_listening_again() -> None:
    d = Driver()
    d.start()
    d.done()
    out = d.timeout()
    assert kinds(out) == ["Play"] and played(out) == [["no_input", "menu_main"]]


def test_a_spoken_repeat_key_plays_the_menu_again() -> None:
    d = Driver()
    d.start()
    out = d.say("다시")
    assert kinds(out) == ["StopPlay", "Play"] and played(out) == [["menu_main"]]


def test_a_sub_menu_listens_for_its_own_words_and_speech_goes_back() -> None:
    d = Driver()
    d.start()
    out = d.say("이")
    assert kinds(out) == ["StopPlay", "StopListen", "Play", "Listen"]
    assert out[-1] == act.Listen("a", ("기업", "뒤로"))
    out = d.say("뒤로")  # the back key
    assert kinds(out) == ["StopPlay", "StopListen", "Play", "Listen"]
    assert d.app.node == "main" and out[-1].words[0] == "일"  # type: ignore[union-attr]


def test_leaving_for_a_menu_without_words_stops_listening() -> None:
    d = Driver()
    d.start()
    out = d.key("3")
    assert kinds(out) == ["StopPlay", "StopListen", "Play"]
    assert d.say("일") == []  # a late result of the old menu is not the new menu's input


def test_a_failed_listen_leaves_keys_working_and_stops_asking() -> None:
    d = Driver()
    d.start()
    assert d.send(ev.ActionFailed("Listen", "no speech model is configured on this node")) == []
    assert d.say("일") == []  # not listening
    out = d.key("2")
    assert kinds(out) == ["StopPlay", "Play"]  # no StopListen, no Listen in the sub menu


def test_speech_on_another_leg_is_ignored() -> None:
    d = Driver()
    d.start()
    assert d.say("일", leg="b") == []


def test_the_caller_hanging_up_while_listening() -> None:
    d = Driver()
    d.start()
    assert d.send(ev.LegEnded("a", "caller", None)) == []
    assert d.say("일") == [] and d.app.finished


# ------------------------------------------------------------------------- VoskSpeech


def stereo(left: list[int], right: list[int] | None = None) -> bytes:
    right = right if right is not None else [-v for v in left]
    frames = np.empty(2 * len(left), dtype="<i2")
    frames[0::2], frames[1::2] = left, right
    return frames.tobytes()


def test_channel0_is_the_caller() -> None:
    pcm = stereo([1, 2, 3], [7, 8, 9]) + b"\x01"  # a torn frame at the end is left out
    assert np.frombuffer(channel0(pcm), "<i2").tolist() == [1, 2, 3]


def test_parse_result_means_the_word_confidences() -> None:
    raw = json.dumps(
        {"result": [{"word": "일", "conf": 0.5}, {"word": "이", "conf": 1.0}], "text": " 일  이 "}
    )
    assert parse_result(raw) == ("일 이", 0.75)
    assert parse_result('{"text": "[unk]"}') == ("[unk]", 0.0)
    assert parse_result("not json") == ("", 0.0)


class FakeVosk:
    """vosk's Python API as VoskSpeech uses it. A block whose first caller sample is n > 0
    ends an utterance recognised as grammar word n-1 (conf 0.8); -1 ends one with no text;
    0 is speech going on. `gate`, when set, holds every AcceptWaveform until it opens."""

    def __init__(self, vocabulary: set[str] | None = None, fail: bool = False) -> None:
        self.vocabulary = vocabulary
        self.fail = fail
        self.grammars: list[list[str]] = []
        self.fed: list[tuple[int, ...]] = []  # caller samples of each block, in order
        self.gate: threading.Event | None = None
        self.entered = threading.Event()  # an AcceptWaveform began
        self.freed = 0
        vosk = self

        class Model:
            def __init__(self, path: str) -> None:
                if vosk.fail:
                    raise Exception("Failed to create a model")
                self.path = path

            def vosk_model_find_word(self, word: str) -> int:
                return 1 if vosk.vocabulary is None or word in vosk.vocabulary else -1

        class KaldiRecognizer:
            def __init__(self, model: Model, rate: int, grammar: str) -> None:
                assert rate == 8000
                self.grammar = json.loads(grammar)
                vosk.grammars.append(self.grammar)
                self.last = 0
                self.words = False

            def SetWords(self, on: bool) -> None:  # noqa: N802 (vosk's names)
                self.words = on

            def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802
                vosk.entered.set()
                if vosk.gate is not None:
                    vosk.gate.wait(5)
                samples = tuple(np.frombuffer(data, "<i2").tolist())
                vosk.fed.append(samples)
                self.last = samples[0]
                return self.last != 0

            def Result(self) -> str:  # noqa: N802
                if self.last < 0:
                    return json.dumps({"text": ""})
                word = self.grammar[self.last - 1]
                return json.dumps({"result": [{"word": word, "conf": 0.8}], "text": word})

            def __del__(self) -> None:
                vosk.freed += 1

        self.Model = Model
        self.KaldiRecognizer = KaldiRecognizer


async def until(check: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_results_come_back_on_the_loop_in_order() -> None:
    fake = FakeVosk(vocabulary={"일", "이", "[unk]"})

    async def main() -> list[tuple[str, str, float, bool]]:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        got: list[tuple[str, str, float, bool]] = []
        speech_ = VoskSpeech(
            "/models/ko",
            loop,
            lambda leg, text, conf: got.append(
                (leg, text, conf, threading.get_ident() == loop_thread)
            ),
            vosk_module=fake,
        )
        rec = speech_.open("a", ("일", "이"))
        for first in (0, 0, 2, 0, -1, 1, 3):
            rec.feed(stereo([first, 5, 6]))
        await until(lambda: len(got) == 3)
        assert [s[0] for s in fake.fed] == [0, 0, 2, 0, -1, 1, 3]  # in order, channel 0
        rec.close()
        speech_.close()
        return got

    got = run(main())
    assert fake.grammars == [["일", "이", "[unk]"]]
    assert got == [("a", "이", 0.8, True), ("a", "일", 0.8, True), ("a", "[unk]", 0.8, True)]


def test_feed_does_not_wait_for_decoding_and_close_drops_the_rest() -> None:
    fake = FakeVosk()
    fake.gate = threading.Event()

    async def main() -> list[str]:
        got: list[str] = []
        speech_ = VoskSpeech(
            "/m", asyncio.get_running_loop(), lambda leg, t, c: got.append(t), vosk_module=fake
        )
        rec = speech_.open("a", ("일",))
        for _ in range(speech.MAX_PENDING + 10):  # the worker is stuck: feed still returns
            rec.feed(stereo([1]))
        assert speech_.dropped >= 9  # the backlog is bounded
        await until(fake.entered.is_set)
        rec.close()  # while the worker is inside AcceptWaveform
        fake.gate.set()
        await until(lambda: fake.freed == 1)  # the worker freed the recogniser
        await asyncio.sleep(0.05)  # a result scheduled before close must not be delivered
        rec.feed(stereo([1]))  # nothing after close
        await asyncio.sleep(0.05)
        speech_.close()
        return got

    assert run(main()) == []
    assert len(fake.fed) == 1  # the block being decoded at close; the queued ones dropped


def test_recognisers_of_two_calls_share_the_workers() -> None:
    fake = FakeVosk()

    async def main() -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        speech_ = VoskSpeech(
            "/m",
            asyncio.get_running_loop(),
            lambda leg, t, c: got.append((leg, t)),
            workers=2,
            vosk_module=fake,
        )
        a, b = speech_.open("a", ("하나", "둘")), speech_.open("b", ("셋", "넷"))
        for _ in range(12):
            a.feed(stereo([0]))
            b.feed(stereo([0]))
        a.feed(stereo([2]))
        b.feed(stereo([1]))
        await until(lambda: len(got) == 2)
        speech_.close()
        return got

    assert sorted(run(main())) == [("a", "둘"), ("b", "셋")]


def test_words_the_model_does_not_know_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeVosk(vocabulary={"일", "상담", "원"})

    async def main() -> None:
        speech_ = VoskSpeech("/m", asyncio.get_running_loop(), lambda *a: None, vosk_module=fake)
        speech_.open("a", ("일", "없다", "상담 원")).feed(stereo([0]))
        speech_.open("b", ("없다",)).feed(stereo([0]))
        await until(lambda: len(fake.fed) == 1 and "no word of the menu" in caplog.text)
        speech_.close()

    run(main())
    assert fake.grammars == [["일", "상담 원"]]  # no "[unk]": this model lacks it
    assert "not in the model's vocabulary, left out: 없다" in caplog.text
    assert "no word of the menu is known" in caplog.text


def test_a_model_that_fails_to_load_makes_listen_fail(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeVosk(fail=True)

    async def main() -> None:
        speech_ = VoskSpeech("/bad", asyncio.get_running_loop(), lambda *a: None, vosk_module=fake)
        await until(lambda: speech_.failed is not None)
        with pytest.raises(SpeechUnavailable) as raised:
            speech_.open("a", ("일",))
        assert isinstance(raised.value, MediaError)  # call control turns it into ActionFailed
        speech_.close()

    run(main())
    assert "speech model /bad failed to load: Failed to create a model" in caplog.text


# ------------------------------------------------------------------------- configuration


def make_model(path: Path) -> Path:
    (path / "am").mkdir(parents=True)
    (path / "am" / "final.mdl").write_bytes(b"")
    return path


def test_the_model_comes_from_the_environment(tmp_path: Path) -> None:
    model = make_model(tmp_path / "vosk-model-small-cn")
    assert speech.model_directory({"HOTLINE_VOSK_MODEL": str(model)}) == model
    assert speech.model_directory({"HOTLINE_VOSK_MODEL": "off"}) is None
    assert speech.model_directory({"HOTLINE_VOSK_MODEL": ""}) is None
    with pytest.raises(SpeechUnavailable, match="no such model directory"):
        speech.model_directory({"HOTLINE_VOSK_MODEL": str(tmp_path / "missing")})
    with pytest.raises(SpeechUnavailable, match="not a vosk model directory"):
        speech.model_directory({"HOTLINE_VOSK_MODEL": str(tmp_path)})


def test_a_packaged_model_is_found_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fake_vosk_model_xx"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    make_model(package / "model")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(speech, "PACKAGED_MODELS", ("no_such_package_here", "fake_vosk_model_xx"))
    assert speech.model_directory({}) == package / "model"
    assert speech.model_directory({"HOTLINE_VOSK_MODEL": "off"}) is None
    monkeypatch.setattr(speech, "PACKAGED_MODELS", ("no_such_package_here",))
    assert speech.model_directory({}) is None


def test_without_vosk_a_configured_model_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vosk", None)  # import vosk raises ImportError
    model = make_model(tmp_path / "m")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(SpeechUnavailable, match=r"vosk is not installed.*hotline\[speech\]"):
            speech.speech_from_environment(
                loop, lambda *a: None, {"HOTLINE_VOSK_MODEL": str(model)}
            )
        monkeypatch.setattr(speech, "PACKAGED_MODELS", ())
        assert speech.speech_from_environment(loop, lambda *a: None, {}) is None

    run(main())
