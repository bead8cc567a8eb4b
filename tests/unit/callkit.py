"""A fake anchoring media engine and a `Switch` harness around it, shared by the call-model
tests: what call control asks of the engine is recorded, SDP answers are the node's."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import yaml
from sipflow import Harness, Trunk

from media.engine import MediaStateError
from media.events import PlaybackDone, TapBlock
from media.items import Prompt
from media.offer import Offer
from softswitch.sip.message import Response
from softswitch.switch import CallServices, Switch

ROOT = Path(__file__).resolve().parents[2]


class FakeMedia:
    """Records what call control asks of an anchoring engine; SDP answers are the node's."""

    anchors = True

    def __init__(self) -> None:
        self.legs: set[str] = set()
        self.bridges: set[frozenset[str]] = set()
        self.mixes: dict[str, dict[str, tuple[str, ...]]] = {}
        self.plays: dict[str, list[tuple[int, Any]]] = {}
        self.taps: dict[str, str] = {}
        self.calls: list[tuple] = []
        self.encryption: dict[str, str] = {}  # leg -> media_encryption its offer was given
        self.offered: set[str] = set()  # legs whose offer awaits its answer, as in the engine
        self.families: dict[str, str] = {}  # the family asked for in offer_local, per leg
        self._ids = itertools.count(1)

    def _sdp(self, leg_id: str, direction: str = "sendrecv") -> bytes:
        self.legs.add(leg_id)
        return (
            f"v=0\r\no=hotline 1 1 IN IP4 127.0.0.1\r\ns=hotline\r\nc=IN IP4 127.0.0.1\r\n"
            f"t=0 0\r\nm=audio 2{len(self.legs):04d} RTP/AVP 0 101\r\na={direction}\r\n"
        ).encode()

    def read_offer(self, offer: bytes) -> bytes:
        Offer(offer)  # the real engine's checks (raises MediaValueError)
        return offer

    def answer_local(self, leg_id: str, offer: bytes, prefer: int | None = None) -> bytes:
        self.calls.append(("answer_local", leg_id))
        return self._sdp(leg_id, "recvonly" if b"a=sendonly" in offer else "sendrecv")

    def offer_local(
        self,
        leg_id: str,
        direction: str = "sendrecv",
        prefer: int | None = None,
        encryption: str | None = None,
        *,
        family: str | None = None,
    ) -> bytes:
        self.calls.append(("offer_local", leg_id, direction))
        if encryption is not None:
            self.encryption[leg_id] = encryption
        self.offered.add(leg_id)
        if family is not None:
            self.families[leg_id] = family
        return self._sdp(leg_id, direction)

    def apply_answer(self, leg_id: str, answer: bytes) -> int:
        self.calls.append(("apply_answer", leg_id))
        if leg_id not in self.offered:  # the engine's rule: one answer per offer
            raise MediaStateError(f"leg {leg_id!r} has no offer of ours awaiting an answer")
        self.offered.discard(leg_id)
        return 8 if b"RTP/AVP 8" in answer else 0

    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        raise AssertionError("anchored calls negotiate per leg")

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        raise AssertionError("anchored calls negotiate per leg")

    def release(self, leg_id: str) -> None:
        self.legs.discard(leg_id)
        self.bridges = {b for b in self.bridges if leg_id not in b}

    def bridge(self, leg_a: str, leg_b: str) -> None:
        self.bridges.add(frozenset((leg_a, leg_b)))

    def unbridge(self, leg_id: str) -> None:
        self.bridges = {b for b in self.bridges if leg_id not in b}

    def mix(self, mix_id: str, hears: Any) -> None:
        """Legs in a mix leave their bridge, as in the engine."""
        self.mixes[mix_id] = dict(hears)
        self.bridges = {b for b in self.bridges if not b & set(hears)}

    def unmix(self, mix_id: str) -> None:
        del self.mixes[mix_id]

    def play(self, leg_id: str, items: Any, barge_in: bool = False) -> list[int]:
        ids = [next(self._ids) for _ in items]
        self.plays.setdefault(leg_id, []).extend(zip(ids, items, strict=True))
        return ids

    def stop_play(self, leg_id: str) -> None:
        self.calls.append(("stop_play", leg_id))

    def tap_start(self, call_id: str, leg_a: str, leg_b: str | None) -> None:
        self.taps[call_id] = leg_a

    def tap_read(self, call_id: str) -> TapBlock:
        return TapBlock(call_id, b"\x10\x00\x00\x00" * 800, 800, 0)  # 100 ms of a quiet voice

    def tap_stop(self, call_id: str) -> None:
        del self.taps[call_id]

    def last_play(self, leg_id: str) -> tuple[int, list[str]]:
        """The id of the last item played on `leg_id`, and the prompt names played."""
        items = self.plays[leg_id]
        names = [Path(item.path).stem for _, item in items if isinstance(item, Prompt)]
        return items[-1][0], names


class NamedPrompts:
    """Each prompt name plays as a file of that name."""

    def items(self, ref: Any, variables: Any) -> tuple:
        names = [ref] if isinstance(ref, str) else [r for r in ref if isinstance(r, str)]
        return tuple(Prompt(f"/prompts/{name}.wav") for name in names)


class Sink:
    def __init__(self, path: str) -> None:
        self.path = path
        self.seconds = 0.0
        self.silent_for = 0.0
        self.closed = False

    def write(self, pcm: bytes) -> None:
        self.seconds += len(pcm) / 4 / 8000

    def close(self) -> None:
        self.closed = True


def edited_config(tmp_path: Path, changes: dict[str, dict]) -> Path:
    """A copy of the demo config in `tmp_path/config` where the first entry of each file
    named in `changes` ("queues", "agents") is updated with its dict."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    for name, change in changes.items():
        path = config / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc[name][0].update(change)
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return config


class IvrHarness(Harness):
    def __init__(
        self, tmp_path: Path, epoch: float, blacklist: Any = None, config_dir: Path | None = None
    ) -> None:
        super().__init__(tmp_path, config_dir)
        self.media = FakeMedia()
        self.bus_events: list[Any] = []
        services = CallServices(
            prompts=NamedPrompts(), blacklist=blacklist, clock_offset=epoch - self.now
        )
        self.switch = Switch(
            self.config, self.cdr, {"UDP": "127.0.0.1:5060", "TCP": "127.0.0.1:5060"},
            media=self.media, secret=b"k" * 32, services=services,
        )  # fmt: skip
        self.switch.control.sink_factory = Sink
        self.switch.bus.subscribe(self.bus_events.append)

    def finish_play(self, leg_id: str) -> list[str]:
        """The engine reports the last queued prompt done; returns the names played."""
        last, names = self.media.last_play(leg_id)
        self.switch.media_event(PlaybackDone(leg_id, last, False), self.now)
        self._collect()
        return names

    def press(self, leg_id: str, digit: str) -> None:
        from media.events import DtmfDigit

        self.switch.media_event(DtmfDigit(leg_id, digit, 100, "rfc4733"), self.now)
        self._collect()


def statuses(messages: list) -> list:
    return [m.status if isinstance(m, Response) else m.method for m in messages]


def answered_by_node(h: IvrHarness, trunk: Trunk, number: str) -> str:
    trunk.invite(number)
    answers = h.take(trunk.port)
    assert statuses(answers) == [100, 200], statuses(answers)
    ok = answers[-1]
    assert b"o=hotline" in ok.body and b"m=audio 6000" not in ok.body  # the node's own SDP
    trunk.to_tag = ok.to.tag
    trunk.ack()
    (session,) = h.switch.control.sessions.values()
    return session.a.leg_id
