"""The IVR interpreter: one call's walk through a flow of `ivr.nodes` (SPEC DP-3 … DP-8, OUT-3).

`IvrApp` is an `Application` (softswitch/call/app.py): call control gives it `AppEvent`s with
`now` and carries out the actions it returns. It does no I/O and reads no clock: schedules
(`is_open`), the caller's region (`region_of`), wall-clock time (`wall`) and the voicemail
file name (`voicemail_path`) are injected, prompts come from a `PromptResolver`.

How it walks a flow:

- Branch nodes (`time`, `locality`, `set`) run at once and do not answer the call, so a
  closed hotline can still refuse with a SIP status. The first node that needs audio answers
  the caller (`Answer`) just before its first `Play`.
- Every `Play` gets its own tag; only the `PlaybackDone` of the latest one moves the flow on,
  so the late `PlaybackDone(stopped=True)` of a prompt cut short by a key is ignored. A
  `Play` that fails (`ActionFailed` with `action="Play"`, the action's class name) counts
  as finished: a broken prompt never stalls a call. A prompt the resolver refuses
  (`PromptError`) is logged and left out; in a list of prompts, only the parts that fail.
  Each `Play` is expected to end in one `PlaybackDone`, after its last item.
- Input nodes (`menu`, `collect`, `survey`) play with barge-in: a key stops the prompt
  (`StopPlay`) and is handled in the same turn, so the next node's `Play` goes out with the
  `StopPlay` (SPEC DP-4: the response to a key begins at once). Their timer starts when the
  prompt has finished. Timers get a new name each time; a stale `TimerFired` is ignored.
- A failure (invalid key, silence, input that does not validate) plays the node's feedback
  prompt and the node's prompt again; more than `retries` failures go to `on_fail`, or hang
  up where there is none.
- Every node entered is appended to the call variable `ivr_path` ("menu>general", the last
  `PATH_LIMIT` nodes, continuing a path an earlier flow left), so the path travels with the
  call into the CDR and the agent's INVITE.
- `queue`, `transfer` and `hangup` end the app's part (`Enqueue`, `DialOut`, `Hangup`); so
  does the caller hanging up (`LegEnded` of the caller leg). After that it returns nothing.

Voicemail: the greeting, a 1000 Hz beep of 300 ms, then `Record` until `#` (`StopRecord`),
`silence_seconds` of quiet or `max_seconds`. A recording of at least `MIN_MESSAGE_SECONDS`
that did not fail sets `voicemail_mailbox`, `voicemail_path` and `voicemail_seconds` (call
control publishes `VoicemailLeft` from them), then `thanks_prompt` plays and the call ends.
Shorter or failed recordings are no message: no variables, no thanks (it would thank the
caller for a message that was not kept), just `Hangup`. Most callers end a message by hanging
up; a `RecordDone` that comes after the caller's `LegEnded` still sets the variables.

Survey (OUT-3): one key 1–5 sets `survey_rating` (and `survey_agent` from `CallView.agent_id`
when there is one), plays `thanks_prompt` and hangs up.

Speech (DP-6): with `speech=True` (the node has a recogniser, `ivr.speech`), a menu with a
`speech` map returns `Listen(caller, words)` with its first `Play`, and keeps listening over
its retries; entering any other node (or the same menu again), hanging up and handing on
send `StopListen` first. A `SpeechRecognized` whose text is one of the words is exactly its
key (barge-in included: `StopPlay` while the prompt plays); "[unk]" or any other text is an
invalid key (`invalid_prompt`, retry). An `ActionFailed` for `Listen` (no model, media
refused the tap) is logged and the call goes on with keys only, no more `Listen`s.
Without `speech=True`, the map is ignored and menus read keys only (SPEC DP-6: the system
works without a model).
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ivr import nodes
from ivr.resolver import PromptError, PromptResolver
from media.items import PlayItem, Tone
from softswitch.call import actions as act
from softswitch.call import events as ev
from softswitch.call.actions import Action
from softswitch.call.app import CallView

_log = logging.getLogger(__name__)

#: How many node names `ivr_path` keeps (the latest ones).
PATH_LIMIT = 20
#: A recording shorter than this is no message (a caller who pressed # at once).
MIN_MESSAGE_SECONDS = 0.5
#: Nodes entered in one turn before the flow is taken for a loop (set → time → set …).
MAX_STEPS_PER_EVENT = 64
#: The voicemail beep.
BEEP = Tone(f1=1000.0, on_ms=300, off_ms=0, repeats=1)
#: Survey ratings.
RATING_KEYS = frozenset("12345")

#: What comes after a prompt has finished (or failed).
Continuation = Callable[[CallView, float], list[Action]]


class Phase(enum.Enum):
    IDLE = "idle"  # before Started
    PLAYING = "playing"  # a prompt keys do not interrupt (play node, greeting, thanks …)
    PROMPT = "prompt"  # an input node's prompt: a key stops it and counts as input
    WAITING = "waiting"  # an input node's timer runs
    RECORDING = "recording"  # voicemail: `#` stops the recording
    DONE = "done"  # handed on, hung up or the caller is gone


class _CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the call id (STYLE §3)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"call={extra.get('call', '-')} {msg}", kwargs


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error as exc:
        _log.error("collect pattern %r is not a regular expression (%s): not checked", pattern, exc)
        return None


class IvrApp:
    """Interprets one flow for one call (see the module docstring).

    `flows`: every flow of the dialplan, `flow`: the one to run, from `node` (None: its
    `start`). `is_open(schedule, epoch_seconds)` answers `time` nodes, `region_of(number)`
    answers `locality` nodes (None: the default), `wall(now)` turns the monotonic `now` into
    epoch seconds, `voicemail_path(mailbox, call_id)` names the WAV a message is recorded
    into. `answer=False`: never send `Answer` (the leg was answered by whoever started this
    app, e.g. a dialler or a survey after an agent call). `speech=True`: the node can
    recognise speech, so menus with a `speech` map listen (`Listen`) as well.
    """

    name = "ivr"

    def __init__(
        self,
        flows: Mapping[str, nodes.Flow],
        flow: str,
        prompts: PromptResolver,
        *,
        node: str | None = None,
        is_open: Callable[[str, float], bool],
        region_of: Callable[[str], str | None],
        wall: Callable[[float], float],
        voicemail_path: Callable[[str, str], str],
        answer: bool = True,
        speech: bool = False,
    ) -> None:
        self.flow_name = flow
        self._flow = flows.get(flow)
        self._prompts = prompts
        self._first = node
        self._is_open = is_open
        self._region_of = region_of
        self._wall = wall
        self._voicemail_path = voicemail_path
        self._answer = answer
        self._speech = speech
        self._log = _CallLog(_log, {})

        self._phase = Phase.IDLE
        self._node_name = ""
        self._node: nodes.Node | None = None
        self._path: list[str] = []
        self._menus: list[str] = []  # menus entered, for `back_key`
        self._failures = 0
        self._digits = ""
        self._variables: dict[str, str] = {}  # set by this app, ahead of the view
        self._answered = False
        self._steps = 0
        self._seq = 0
        self._tag: str | None = None  # the Play whose PlaybackDone moves the flow on
        self._then: Continuation | None = None
        self._timer: str | None = None
        self._recording: tuple[str, str] | None = None  # (mailbox, path)
        self._listening: str | None = None  # the leg a Listen of this app runs on

    # ------------------------------------------------------------------ for control, tests

    @property
    def node(self) -> str:
        """The node the call is at ("" before `Started`)."""
        return self._node_name

    @property
    def finished(self) -> bool:
        """Handed on (queue, transfer), hung up, or the caller is gone."""
        return self._phase is Phase.DONE

    # ------------------------------------------------------------------ events

    def handle(self, call: CallView, event: ev.AppEvent, now: float) -> list[Action]:
        self._steps = 0
        if isinstance(event, ev.Started):
            return self._started(call, now) if self._phase is Phase.IDLE else []
        if isinstance(event, ev.LegEnded):
            if event.leg_id == call.caller_leg:
                self._caller_gone()
            return []
        if isinstance(event, ev.RecordDone):
            return self._record_done(call, event, now)
        if self._phase in (Phase.IDLE, Phase.DONE):
            return []
        if isinstance(event, ev.PlaybackDone):
            if event.tag != self._tag or event.leg_id != call.caller_leg:
                return []
            return self._prompt_done(call, now)
        if isinstance(event, ev.DigitReceived):
            if event.leg_id != call.caller_leg:
                return []
            return self._digit(call, event.digit, now)
        if isinstance(event, ev.SpeechRecognized):
            if event.leg_id != call.caller_leg or self._listening is None:
                return []
            return self._spoken(call, event, now)
        if isinstance(event, ev.TimerFired):
            if event.name != self._timer:
                return []
            self._timer = None
            return self._timeout(call, now)
        if isinstance(event, ev.ActionFailed):
            return self._action_failed(call, event, now)
        return []

    def _started(self, call: CallView, now: float) -> list[Action]:
        self._log = _CallLog(_log, {"call": call.call_id})
        earlier = call.variables.get("ivr_path", "")
        self._path = [name for name in earlier.split(">") if name]
        if self._flow is None:
            self._log.error("no IVR flow %r", self.flow_name)
            return self._hangup(500, f"no IVR flow {self.flow_name}")
        return self._enter(call, self._first or self._flow.start, now)

    def _caller_gone(self) -> None:
        # A recording in progress still ends with RecordDone; its variables are kept then.
        self._phase = Phase.DONE
        self._tag = None
        self._then = None
        self._timer = None
        self._listening = None  # control stops listening to a leg that ended

    def _prompt_done(self, call: CallView, now: float) -> list[Action]:
        then = self._then
        self._tag = None
        self._then = None
        return then(call, now) if then is not None else []

    def _action_failed(self, call: CallView, event: ev.ActionFailed, now: float) -> list[Action]:
        if event.action == "Play" and self._then is not None:
            self._log.warning(
                "prompt at %s not played (%s): going on", self._node_name, event.reason
            )
            return self._prompt_done(call, now)
        if event.action == "Record" and self._recording is not None:
            failed = ev.RecordDone(call.caller_leg, self._recording[1], 0.0, "error")
            return self._record_done(call, failed, now)
        if event.action == "Listen":
            self._log.warning("no speech at %s (%s): keys only", self._node_name, event.reason)
            self._listening = None
            self._speech = False
            return []
        self._log.warning("%s failed at %s: %s", event.action, self._node_name, event.reason)
        return []

    # ------------------------------------------------------------------ entering nodes

    def _enter(self, call: CallView, name: str, now: float) -> list[Action]:
        assert self._flow is not None
        node = self._flow.nodes.get(name)
        if node is None:
            self._log.error("flow %s has no node %r", self.flow_name, name)
            return self._hangup(500, f"no IVR node {name}")
        self._steps += 1
        if self._steps > MAX_STEPS_PER_EVENT:
            self._log.error("flow %s loops without input at %s", self.flow_name, name)
            return self._hangup(500, "IVR flow loops")
        self._node_name = name
        self._node = node
        self._failures = 0
        self._digits = ""
        self._path.append(name)
        del self._path[:-PATH_LIMIT]
        out: list[Action] = [*self._stop_listening(), self._set("ivr_path", ">".join(self._path))]
        match node:
            case nodes.Time():
                is_open = self._is_open(node.schedule, self._wall(now))
                return out + self._enter(call, node.open if is_open else node.closed, now)
            case nodes.Locality():
                region = self._region_of(call.caller)
                target = node.regions.get(region, node.default) if region else node.default
                return out + self._enter(call, target, now)
            case nodes.Set():
                out += [self._set(key, value) for key, value in node.variables.items()]
                return out + self._enter(call, node.next, now)
            case nodes.Play():
                target = node.next
                return out + self._play(
                    call, now, [node.prompt], lambda c, n: self._enter(c, target, n)
                )
            case nodes.Menu():
                if name in self._menus:
                    del self._menus[self._menus.index(name) + 1 :]
                else:
                    self._menus.append(name)
                out += self._ensure_answer(call) + self._offer(call, now)
                return out + self._listen(call, node)
            case nodes.Collect() | nodes.Survey():
                return out + self._ensure_answer(call) + self._offer(call, now)
            case nodes.Voicemail():
                out += self._ensure_answer(call)
                return out + self._play(call, now, [node.prompt], self._record, extra=(BEEP,))
            case nodes.Queue():
                enqueue = act.Enqueue(node.queue, node.priority)
                return out + self._play(call, now, [node.prompt], self._hand_on(enqueue))
            case nodes.Transfer():
                dial = act.DialOut(node.number, node.trunk)
                return out + self._play(call, now, [node.prompt], self._hand_on(dial))
            case nodes.Callback():
                out += self._ensure_answer(call)
                out.append(act.QueueNote("CALLBACK", node.queue, {"from": "ivr"}))
                out.append(self._set("callback", "requested"))
                return out + self._play(call, now, [node.prompt], self._callback_done)
            case nodes.Hangup():
                respond = node.respond
                return out + self._play(
                    call, now, [node.prompt], lambda c, n: self._hangup(respond, "IVR hangup node")
                )
        return out  # pragma: no cover - every node type is matched above

    # ------------------------------------------------------------------ input nodes

    def _offer(
        self, call: CallView, now: float, feedback: nodes.PromptRef | None = None
    ) -> list[Action]:
        """Play the input node's prompt (after `feedback`), then wait for a key."""
        node = self._node
        assert isinstance(node, nodes.Menu | nodes.Collect | nodes.Survey)
        self._digits = ""
        return self._play(
            call, now, [feedback, node.prompt], self._await_input, barge_in=True, phase=Phase.PROMPT
        )

    def _await_input(self, call: CallView, now: float) -> list[Action]:
        node = self._node
        self._phase = Phase.WAITING
        if isinstance(node, nodes.Collect):
            return [self._start_timer(node.first_timeout)]
        assert isinstance(node, nodes.Menu | nodes.Survey)
        return [self._start_timer(node.timeout)]

    def _digit(self, call: CallView, digit: str, now: float) -> list[Action]:
        node = self._node
        if self._phase is Phase.RECORDING:
            return [act.StopRecord(call.caller_leg)] if digit == "#" else []
        if self._phase not in (Phase.PROMPT, Phase.WAITING):
            return []  # digits outside a collecting node are ignored
        out = self._interrupt(call)
        match node:
            case nodes.Menu():
                return out + self._menu_key(call, node, digit, now)
            case nodes.Collect():
                return out + self._collect_key(call, node, digit, now)
            case nodes.Survey():
                return out + self._survey_key(call, node, digit, now)
        return out  # pragma: no cover - only input nodes take PROMPT or WAITING

    def _spoken(self, call: CallView, event: ev.SpeechRecognized, now: float) -> list[Action]:
        """A phrase said at a menu: its key, or an invalid one ("[unk]", another word)."""
        node = self._node
        if not isinstance(node, nodes.Menu) or self._phase not in (Phase.PROMPT, Phase.WAITING):
            return []
        text = " ".join(event.text.split())
        key = node.speech.get(text)
        self._log.info(
            "said %r (%.2f) at %s: %s", text, event.confidence, self._node_name, key or "invalid"
        )
        out = self._interrupt(call)
        if key is None:
            return out + self._retry(call, now, node.invalid_prompt)
        return out + self._menu_key(call, node, key, now)

    def _listen(self, call: CallView, node: nodes.Menu) -> list[Action]:
        """`Listen` for the menu's words, where the node recognises speech."""
        if not self._speech or not node.speech or self._phase is Phase.DONE:
            return []
        self._listening = call.caller_leg
        return [act.Listen(call.caller_leg, tuple(node.speech))]

    def _stop_listening(self) -> list[Action]:
        leg, self._listening = self._listening, None
        return [] if leg is None else [act.StopListen(leg)]

    def _interrupt(self, call: CallView) -> list[Action]:
        """Stop the prompt (barge-in) and the timer before a key is handled."""
        out: list[Action] = []
        if self._phase is Phase.PROMPT and self._tag is not None:
            out.append(act.StopPlay(call.caller_leg))
        self._tag = None
        self._then = None
        if self._timer is not None:
            out.append(act.CancelTimer(self._timer))
            self._timer = None
        self._phase = Phase.WAITING
        return out

    def _timeout(self, call: CallView, now: float) -> list[Action]:
        node = self._node
        if self._phase is not Phase.WAITING:
            return []
        match node:
            case nodes.Menu():
                return self._retry(call, now, node.timeout_prompt)
            case nodes.Collect():
                if self._digits:  # the inter-digit timeout ends the input
                    return self._collect_done(call, node, now)
                return self._retry(call, now, node.invalid_prompt)
            case nodes.Survey():
                return self._retry(call, now, None)
        return []  # pragma: no cover

    def _retry(self, call: CallView, now: float, feedback: nodes.PromptRef | None) -> list[Action]:
        """One more failure: play `feedback` and the prompt again, or give up."""
        node = self._node
        assert isinstance(node, nodes.Menu | nodes.Collect | nodes.Survey)
        self._failures += 1
        if self._failures <= node.retries:
            return self._offer(call, now, feedback)
        on_fail = None if isinstance(node, nodes.Survey) else node.on_fail
        self._log.info("no valid input at %s after %d tries", self._node_name, self._failures)
        if on_fail is not None:
            return self._enter(call, on_fail, now)
        return self._hangup(480, f"no valid input at {self._node_name}")

    def _menu_key(self, call: CallView, node: nodes.Menu, digit: str, now: float) -> list[Action]:
        if digit in node.keys:
            return self._enter(call, node.keys[digit], now)
        if digit == node.repeat_key:
            return self._offer(call, now)
        if digit == node.back_key and len(self._menus) >= 2:
            self._menus.pop()
            return self._enter(call, self._menus[-1], now)
        return self._retry(call, now, node.invalid_prompt)

    def _collect_key(
        self, call: CallView, node: nodes.Collect, digit: str, now: float
    ) -> list[Action]:
        if digit == node.terminator:
            return self._collect_done(call, node, now)
        self._digits += digit
        if len(self._digits) >= node.max_length:
            return self._collect_done(call, node, now)
        return [self._start_timer(node.inter_digit_timeout)]

    def _collect_done(self, call: CallView, node: nodes.Collect, now: float) -> list[Action]:
        digits = self._digits
        self._digits = ""
        valid = node.min_length <= len(digits) <= node.max_length
        if valid and node.pattern is not None:
            pattern = _compile(node.pattern)
            valid = pattern is None or pattern.fullmatch(digits) is not None
        if not valid:
            return self._retry(call, now, node.invalid_prompt)
        return [self._set(node.variable, digits), *self._enter(call, node.next, now)]

    def _survey_key(
        self, call: CallView, node: nodes.Survey, digit: str, now: float
    ) -> list[Action]:
        if digit not in RATING_KEYS:
            return self._retry(call, now, node.invalid_prompt)
        out: list[Action] = [self._set("survey_rating", digit)]
        if call.agent_id is not None:
            out.append(self._set("survey_agent", call.agent_id))
        return out + self._play(
            call, now, [node.thanks_prompt], lambda c, n: self._hangup(480, "survey rated")
        )

    # ------------------------------------------------------------------ voicemail

    def _record(self, call: CallView, now: float) -> list[Action]:
        node = self._node
        assert isinstance(node, nodes.Voicemail)
        path = self._voicemail_path(node.mailbox, call.call_id)
        self._recording = (node.mailbox, path)
        self._phase = Phase.RECORDING
        return [
            act.Record(
                call.caller_leg,
                path=path,
                max_seconds=node.max_seconds,
                silence_seconds=node.silence_seconds,
            )
        ]

    def _record_done(self, call: CallView, event: ev.RecordDone, now: float) -> list[Action]:
        if self._recording is None:
            return []
        mailbox, path = self._recording
        self._recording = None
        out: list[Action] = []
        kept = event.reason != "error" and event.seconds >= MIN_MESSAGE_SECONDS
        if kept:
            out += [
                self._set("voicemail_mailbox", mailbox),
                self._set("voicemail_path", event.path or path),
                self._set("voicemail_seconds", f"{event.seconds:.1f}"),
            ]
        else:
            self._log.info("no voicemail for %s (%.1f s, %s)", mailbox, event.seconds, event.reason)
        if self._phase is Phase.DONE:  # the caller hung up: keep the message, say nothing
            return out
        node = self._node
        assert isinstance(node, nodes.Voicemail)
        if not kept:
            return out + self._hangup(480, "no voicemail message")
        return out + self._play(
            call, now, [node.thanks_prompt], lambda c, n: self._hangup(480, "voicemail left")
        )

    # ------------------------------------------------------------------ helpers

    def _play(
        self,
        call: CallView,
        now: float,
        refs: Sequence[nodes.PromptRef | None],
        then: Continuation,
        *,
        barge_in: bool = False,
        phase: Phase = Phase.PLAYING,
        extra: tuple[PlayItem, ...] = (),
    ) -> list[Action]:
        """Play `refs` (None: nothing) and `extra`, then `then`; at once when nothing plays."""
        variables = {**call.variables, **self._variables}
        items: list[PlayItem] = []
        for ref in refs:
            if ref is not None:
                items += self._resolve(ref, variables)
        items += extra
        self._phase = phase
        if not items:
            return then(call, now)
        self._seq += 1
        self._tag = f"ivr-{self._seq}"
        self._then = then
        play = act.Play(call.caller_leg, tuple(items), tag=self._tag, barge_in=barge_in)
        return [*self._ensure_answer(call), play]

    def _resolve(self, ref: nodes.PromptRef, variables: Mapping[str, str]) -> list[PlayItem]:
        """The items of `ref`; when it fails, of each of its parts that does not (a broken
        welcome prompt must not take the menu's choices with it)."""
        try:
            return list(self._prompts.items(ref, variables))
        except PromptError as exc:
            if isinstance(ref, str) or len(ref) == 1:
                self._log.error("prompt %r at %s left out: %s", ref, self._node_name, exc)
                return []
        items: list[PlayItem] = []
        for part in ref:
            items += self._resolve((part,), variables)
        return items

    def _ensure_answer(self, call: CallView) -> list[Action]:
        if not self._answer or self._answered or call.caller_answered:
            return []
        self._answered = True
        return [act.Answer(call.caller_leg)]

    def _start_timer(self, seconds: float) -> act.StartTimer:
        self._seq += 1
        self._timer = f"ivr-{self._seq}"
        return act.StartTimer(self._timer, seconds)

    def _set(self, name: str, value: str) -> act.SetVariable:
        self._variables[name] = value
        return act.SetVariable(name, value)

    def _hand_on(self, action: Action) -> Continuation:
        def hand_on(call: CallView, now: float) -> list[Action]:
            self._phase = Phase.DONE
            return [action]

        return hand_on

    def _callback_done(self, call: CallView, now: float) -> list[Action]:
        self._phase = Phase.DONE
        return [*self._stop_listening(), act.Hangup(disposition="callback")]

    def _hangup(self, status: int, reason: str) -> list[Action]:
        self._phase = Phase.DONE
        return [*self._stop_listening(), act.Hangup(status=status, reason=reason)]


__all__ = ["BEEP", "IvrApp", "PATH_LIMIT", "Phase"]
