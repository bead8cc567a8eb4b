"""Fakes for driving `ivr.app.IvrApp` without call control: a call view and a prompt
resolver (shared by the IVR test modules, as sipflow.py is by the switch tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr import nodes
from ivr.resolver import PromptError
from media.items import PlayItem, Prompt
from softswitch.call import actions as act
from softswitch.call import events as ev
from softswitch.call.actions import Action


@dataclass
class FakeCall:
    call_id: str = "n1-1780000000-1"
    caller: str = "01088886666"
    called: str = "12345"
    trunk: str = "carrier"
    caller_leg: str = "a"
    caller_answered: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    config: Any = None
    agent_id: str | None = None

    def new_leg_id(self) -> str:
        return "b"


class FakePrompts:
    """Each prompt name becomes Prompt("<name>.wav"); a `{var: x}` part becomes
    Prompt("say:<value>"); names in `broken` raise PromptError."""

    def __init__(self, broken: set[str] | None = None) -> None:
        self.broken = broken or set()

    def items(self, ref: nodes.PromptRef, variables: Mapping[str, str]) -> tuple[PlayItem, ...]:
        parts = (ref,) if isinstance(ref, str) else ref
        out: list[PlayItem] = []
        for part in parts:
            if isinstance(part, str):
                if part in self.broken:
                    raise PromptError(f"no prompt {part!r}")
                out.append(Prompt(f"{part}.wav"))
            else:
                name = part.var or part.digits or part.number or ""
                out.append(Prompt(f"say:{variables.get(name, '')}"))
        return tuple(out)


class AppDriver:
    """Feeds events to one application (`self.app`) and keeps what call control would of
    its actions: the answer, variables, the playing prompt, timers, a recording."""

    app: Any
    call: FakeCall
    now: float

    def __init__(self) -> None:
        self.play: act.Play | None = None
        self.timers: dict[str, float] = {}
        self.record: act.Record | None = None

    def send(self, event: ev.AppEvent) -> list[Action]:
        out = self.app.handle(self.call, event, self.now)
        for action in out:
            match action:
                case act.Answer():
                    self.call.caller_answered = True
                case act.SetVariable(name=name, value=value):
                    self.call.variables[name] = value
                case act.Play():
                    self.play = action
                case act.StopPlay():
                    self.play = None
                case act.StartTimer(name=name, seconds=seconds):
                    self.timers[name] = self.now + seconds
                case act.CancelTimer(name=name):
                    self.timers.pop(name, None)
                case act.Record():
                    self.record = action
        return out

    def start(self) -> list[Action]:
        return self.send(ev.Started())

    def done(self, *, stopped: bool = False) -> list[Action]:
        """The outstanding prompt finished."""
        assert self.play is not None, "nothing is playing"
        tag, self.play = self.play.tag, None
        return self.send(ev.PlaybackDone("a", tag, stopped))

    def key(self, digit: str) -> list[Action]:
        return self.send(ev.DigitReceived("a", digit, "rfc4733"))
