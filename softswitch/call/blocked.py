"""What a caller on the blacklist gets when the dialplan gives a prompt (SPEC DP-2): the
node answers, plays it once and hangs up (disposition `blocked`)."""

from __future__ import annotations

import logging

from ivr.nodes import PromptRef
from ivr.resolver import PromptError, PromptResolver
from softswitch.call.actions import Action, Answer, Hangup, Play
from softswitch.call.app import CallView
from softswitch.call.events import ActionFailed, AppEvent, PlaybackDone, Started

log = logging.getLogger("hotline.call")


class BlockedApp:
    name = "blocked"

    def __init__(self, prompts: PromptResolver, prompt: PromptRef) -> None:
        self.prompts = prompts
        self.prompt = prompt

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if isinstance(event, Started):
            try:
                items = self.prompts.items(self.prompt, call.variables)
            except PromptError as exc:
                log.warning("call=%s blacklist prompt not played: %s", call.call_id, exc)
                return [Hangup(status=603, disposition="blocked")]
            return [Answer(call.caller_leg), Play(call.caller_leg, items, tag="blocked")]
        if isinstance(event, PlaybackDone | ActionFailed):
            return [Hangup(status=603, disposition="blocked")]
        return []
