"""Number analysis and routing (SPEC DP-1, DP-2, DP-3, DP-7): the dialplan value.

``dialplan.yaml`` holds an ordered list of routes; the first route whose conditions all match
the (normalised) called and calling numbers decides the action, otherwise ``default`` does.
A condition matches a number exactly, by prefix, or by a regular expression that must match
the whole number; a route may also rewrite the called number (``match.transform``). An
action joins a queue, runs an IVR flow of ``flows:``, dials an external number through a
trunk, or answers with a SIP error. Regular expressions are compiled once, when the
configuration is loaded, and cached on the frozen value (``dict=True`` gives the Struct room
for the cache).

The same file holds what flows need: ``prompts`` (WAV files or TTS texts), ``tts``,
``schedules`` (working hours, `softswitch.schedule`), ``localities`` (caller number → region,
`Dialplan.region_of`) and ``blacklist`` (what a blocked caller gets; the list itself is in
the database, `softswitch.blacklist`). Node Structs of flows are `ivr.nodes`.

Number transformation rules (``NumberRule``, used by trunks and routes) live here too: they
are the other half of number analysis. `ITEM_CHECKS` and `reference_problems` are the
semantic checks the loader (`softswitch.config`) runs; they return (path, message) pairs and
do no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ivr import nodes
from ivr.nodes import Flow, PromptRef, PromptSpec
from softswitch.schedule import Schedule, is_open, schedule_problems

_NAME = r"^[A-Za-z0-9_.-]+$"

#: Numbers as they appear in SIP user parts: digits, optionally +, * and # (RFC 3966).
NumberText = Annotated[str, Meta(min_length=1, pattern=r"^[0-9+*#]+$")]
Name = Annotated[str, Meta(pattern=_NAME)]

#: A semantic problem: the path (relative to the value checked, or absolute for
#: `reference_problems`) and the message.
Problem = tuple[tuple[str | int, ...], str]


class NumberRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """A number transformation: ``re.sub(match, replace, number, count=1)``.

    Example: ``{match: '^\\+86', replace: ''}`` strips the country code; ``{match: '^0',
    replace: ''}`` strips a trunk prefix; ``{match: '^(1[3-9]\\d{9})$', replace: '0\\1'}``
    adds one. ``replace`` may use ``\\1`` or ``\\g<name>`` group references.
    """

    match: Annotated[str, Meta(description="Python regular expression searched in the number.")]
    replace: Annotated[str, Meta(description="Replacement text (group references allowed).")] = ""

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The compiled ``match`` expression (compiled once, at load time)."""
        return re.compile(self.match)

    def apply(self, number: str) -> str:
        """The number after this rule (unchanged if the expression does not match)."""
        return self.pattern.sub(self.replace, number, count=1)


def normalize(number: str, rules: Iterable[NumberRule]) -> str:
    """Apply each rule in order to ``number`` (SPEC DP-1 number transformation)."""
    for rule in rules:
        number = rule.apply(number)
    return number


def replacement_problem(rule: NumberRule) -> str | None:
    """Why ``rule.replace`` cannot be used with ``rule.match``, or None if it can.

    Python parses the replacement template against the pattern before searching, even on an
    empty subject, so a bad group reference or escape shows up here, at load time, instead
    of during a live call. ``rule.pattern`` must compile.
    """
    try:
        rule.pattern.sub(rule.replace, "", count=1)
    except (re.error, IndexError) as exc:
        return f"invalid replacement: {exc}"
    return None


class NumberMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """One number condition: exactly one of ``exact``, ``prefix`` or ``regex``."""

    exact: Annotated[NumberText | None, Meta(description="The number must equal this string.")] = (
        None
    )
    prefix: Annotated[
        str | None,
        Meta(description='The number must start with this string (`""` matches any number).'),
    ] = None
    regex: Annotated[
        str | None,
        Meta(description="A Python regular expression that must match the whole number."),
    ] = None

    @cached_property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled ``regex`` (compiled on first use; the loader uses it at load time)."""
        return re.compile(self.regex) if self.regex is not None else None

    def matches(self, number: str) -> bool:
        """True if ``number`` satisfies this condition."""
        if self.exact is not None:
            return number == self.exact
        if self.prefix is not None:
            return number.startswith(self.prefix)
        pattern = self.pattern
        return pattern is not None and pattern.fullmatch(number) is not None


class CallMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Conditions of a route; every condition given must match."""

    called: Annotated[
        NumberMatch | None,
        Meta(description="Condition on the called number (after normalisation)."),
    ] = None
    calling: Annotated[
        NumberMatch | None,
        Meta(description="Condition on the calling number (after normalisation)."),
    ] = None
    transform: Annotated[
        tuple[NumberRule, ...],
        Meta(
            description="Rules applied in order to the called number when this route "
            "matches (strip or add prefixes, E.164 form); the flow and CDR see the result."
        ),
    ] = ()

    def matches(self, called: str, calling: str) -> bool:
        """True if both given conditions hold."""
        if self.called is not None and not self.called.matches(called):
            return False
        return self.calling is None or self.calling.matches(calling)


class Action(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to do with a matched call: exactly one of ``queue``, ``flow``, ``transfer`` or
    ``respond``."""

    queue: Annotated[
        str | None, Meta(description="Name of the queue (from queues.yaml) the call joins.")
    ] = None
    respond: Annotated[
        Annotated[int, Meta(ge=400, le=699)] | None,
        Meta(description="Reject the call with this SIP final response code."),
    ] = None
    reason: Annotated[
        str | None,
        Meta(description="Reason phrase for `respond`; the standard phrase when omitted."),
    ] = None
    flow: Annotated[
        str | None, Meta(description="Name of the IVR flow (from `flows`) that takes the call.")
    ] = None
    transfer: Annotated[
        Annotated[str, Meta(pattern=r"^\+?[0-9*#]+$")] | None,
        Meta(description="External number the call is connected to (through `trunk`)."),
    ] = None
    trunk: Annotated[
        str | None,
        Meta(
            description="Trunk (from trunks.yaml) for `transfer`; null: the trunk the call "
            "came in on."
        ),
    ] = None


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A named route: conditions and an action."""

    name: Annotated[
        str, Meta(pattern=_NAME, description="Unique route name, used in logs and CDRs.")
    ]
    match: Annotated[CallMatch, Meta(description="Conditions; at least one is needed.")]
    action: Annotated[Action, Meta(description="What happens to a matching call.")]


class RouteResult(msgspec.Struct, frozen=True):
    """Outcome of routing one call.

    Exactly one of ``queue``, ``flow``, ``transfer`` and ``respond`` is set (``reason`` goes
    with ``respond``, ``transfer_trunk`` with ``transfer``: None means the inbound trunk).
    ``route`` is the matching route's name, None when the default action applied.
    ``called`` is the called number after the route's ``match.transform``; None when the
    route has no transform (the number routed stands).
    """

    route: str | None
    queue: str | None
    respond: int | None
    reason: str | None
    flow: str | None = None
    transfer: str | None = None
    transfer_trunk: str | None = None
    called: str | None = None


class BlacklistAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a caller on the blacklist gets (DP-2): `prompt` then hang-up, else `respond`."""

    prompt: Annotated[
        PromptRef | None,
        Meta(
            description="Prompt (a name from `prompts`, or a list) played after answering, "
            "then the call is hung up; null: the call is refused with `respond` unanswered."
        ),
    ] = None
    respond: Annotated[
        int, Meta(ge=400, le=699, description="SIP final response when there is no prompt.")
    ] = 603
    reason: Annotated[
        str | None, Meta(description="Reason phrase for `respond`; standard when omitted.")
    ] = None


class Tts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Text-to-speech of `text` prompts (DP-5), rendered once and cached."""

    voice: Annotated[
        str,
        Meta(
            min_length=1,
            description="Voice of prompts that give none (espeak-ng names: `cmn` Mandarin, "
            "`en` English).",
        ),
    ] = "cmn"
    engine: Annotated[
        Literal["espeak-ng"],
        Meta(
            description="Renderer, offline: the espeak-ng program (pyttsx3 is not offered: "
            "headless it runs espeak inside the node's process, cannot be timed out and "
            "hides write errors)."
        ),
    ] = "espeak-ng"


class LocalityRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """Caller number → region (DP-7): exactly one of `prefix` (area code, mobile segment) or
    `regex` (the whole number)."""

    region: Annotated[str, Meta(pattern=_NAME, description="Region name, used by flows.")]
    prefix: Annotated[
        NumberText | None, Meta(description="The calling number starts with this.")
    ] = None
    regex: Annotated[
        str | None, Meta(description="A Python regular expression matching the whole number.")
    ] = None

    @cached_property
    def pattern(self) -> re.Pattern[str] | None:
        return re.compile(self.regex) if self.regex is not None else None


class _Localities(msgspec.Struct, frozen=True):
    by_prefix: dict[str, str]
    lengths: tuple[int, ...]  # longest first
    patterns: tuple[tuple[re.Pattern[str], str], ...]


FeatureCode = Annotated[str, Meta(pattern=r"^[*#][0-9*#]*$")]

#: Feature codes that take the digits after them (a reason code, an agent id).
PREFIX_FEATURES = (
    "not_ready", "directed_pickup", "monitor", "whisper", "barge", "conference", "callback",
)  # fmt: skip


class FeatureCodes(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """What agents' phones dial for ACD features (ACD-4, ACD-6, ACD-7). Each code starts
    with `*` or `#`, so none is ever an extension or a number, and no code may begin
    another. `not_ready`, `directed_pickup`, `monitor`, `whisper`, `barge` and `conference`
    take digits after the code: a reason code, the agent concerned (`*321001` whispers to
    1001), or the number to add to the call."""

    login: Annotated[FeatureCode, Meta(description="Log in: take queue calls again.")] = "*21"
    logout: Annotated[
        FeatureCode, Meta(description="Log out: no queue calls while still registered.")
    ] = "*22"
    ready: Annotated[FeatureCode, Meta(description="Ready (idle) from busy or a break.")] = "*23"
    not_ready: Annotated[
        FeatureCode, Meta(description="Not ready (busy), followed by optional reason digits.")
    ] = "*24"
    wrap_up_end: Annotated[FeatureCode, Meta(description="End wrap-up now.")] = "*25"
    pickup: Annotated[
        FeatureCode,
        Meta(description="Answer the call ringing longest at an agent of your queues."),
    ] = "*8"
    directed_pickup: Annotated[
        FeatureCode, Meta(description="Answer the call ringing at the agent whose id follows.")
    ] = "**"
    monitor: Annotated[
        FeatureCode,
        Meta(description="Supervisors: listen to the agent's call (neither party hears you)."),
    ] = "*31"
    whisper: Annotated[
        FeatureCode, Meta(description="Supervisors: speak to the agent only, hear both.")
    ] = "*32"
    barge: Annotated[
        FeatureCode,
        Meta(description="Supervisors: join the call; everyone hears everyone (a tone first)."),
    ] = "*33"
    conference: Annotated[
        FeatureCode,
        Meta(
            description="From a second line during a call: ring the number that follows into "
            "the call (a three-way call; `*4` + the department's number)."
        ),
    ] = "*4"
    callback: Annotated[
        FeatureCode,
        Meta(
            description="Call back a caller on the callback list (`hotline callbacks`): "
            "`*5` + the caller's number; the attempt and its outcome are kept with the task."
        ),
    ] = "*5"

    def match(self, dialled: str) -> tuple[str, str] | None:
        """(feature, the digits after its code) for a dialled string, or None."""
        for name in self.__struct_fields__:
            code = getattr(self, name)
            if name in PREFIX_FEATURES:
                if dialled.startswith(code):
                    return name, dialled[len(code) :]
            elif dialled == code:
                return name, ""
        return None


def _feature_code_problems(value: FeatureCodes) -> list[Problem]:
    problems: list[Problem] = []
    names = value.__struct_fields__
    for name in names:
        code = getattr(value, name)
        for other in names:
            if other != name and getattr(value, other).startswith(code):
                problems.append(
                    ((name,), f"`{code}` begins `{other}` ({getattr(value, other)}): ambiguous")
                )
    return problems


class Dialplan(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """The contents of ``dialplan.yaml``: routes, a default action, and what flows use."""

    routes: Annotated[
        tuple[Route, ...], Meta(description="Routes, tried in order; the first match wins.")
    ] = ()
    default: Annotated[Action, Meta(description="Action for calls no route matches.")] = Action(
        respond=404
    )
    blacklist: Annotated[
        BlacklistAction, Meta(description="What a caller on the blacklist gets.")
    ] = BlacklistAction()
    tts: Annotated[Tts, Meta(description="Text-to-speech of `text` prompts.")] = Tts()
    prompts: Annotated[
        dict[Name, PromptSpec], Meta(description="Prompts by name: a WAV `file` or a `text`.")
    ] = {}
    schedules: Annotated[
        dict[Name, Schedule], Meta(description="Working hours by name, for `time` nodes.")
    ] = {}
    localities: Annotated[
        tuple[LocalityRule, ...],
        Meta(
            description="Caller number → region, for `locality` nodes: the longest matching "
            "`prefix` wins; if none matches, the first matching `regex`."
        ),
    ] = ()
    flows: Annotated[
        dict[Name, Flow], Meta(description="IVR flows by name: a `start` node and `nodes`.")
    ] = {}
    feature_codes: Annotated[
        FeatureCodes, Meta(description="What agents' phones dial for ACD features.")
    ] = FeatureCodes()

    def route(self, called: str, calling: str) -> RouteResult:
        """The action for a call from ``calling`` to ``called`` (first matching route)."""
        for candidate in self.routes:
            if candidate.match.matches(called, calling):
                rules = candidate.match.transform
                number = normalize(called, rules) if rules else None
                return _result(candidate.name, candidate.action, number)
        return _result(None, self.default, None)

    @cached_property
    def _localities(self) -> _Localities:
        by_prefix: dict[str, str] = {}
        patterns: list[tuple[re.Pattern[str], str]] = []
        for rule in self.localities:
            if rule.prefix is not None:
                by_prefix.setdefault(rule.prefix, rule.region)
            elif rule.pattern is not None:
                patterns.append((rule.pattern, rule.region))
        lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))
        return _Localities(by_prefix, lengths, tuple(patterns))

    def region_of(self, number: str) -> str | None:
        """The region of a calling number (DP-7): the longest `localities` prefix it starts
        with, else the first regex matching it whole, else None."""
        table = self._localities
        for length in table.lengths:
            region = table.by_prefix.get(number[:length])
            if region is not None and len(number) >= length:
                return region
        for pattern, region in table.patterns:
            if pattern.fullmatch(number) is not None:
                return region
        return None

    def is_open(self, schedule: str, epoch: float) -> bool:
        """True if the schedule named ``schedule`` is open at ``epoch`` (KeyError if unknown)."""
        return is_open(self.schedules[schedule], epoch)


def _result(name: str | None, action: Action, called: str | None) -> RouteResult:
    return RouteResult(
        route=name,
        queue=action.queue,
        respond=action.respond,
        reason=action.reason,
        flow=action.flow,
        transfer=action.transfer,
        transfer_trunk=action.trunk,
        called=called,
    )


def route(dialplan: Dialplan, called: str, calling: str) -> RouteResult:
    """Route a call: the first route of ``dialplan`` matching, else its default."""
    return dialplan.route(called, calling)


# --------------------------------------------------------------------------- checks


def regex_problem(regex: str) -> str | None:
    """Why ``regex`` does not compile, or None."""
    try:
        re.compile(regex)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    return None


def _exactly_one(value: msgspec.Struct, keys: tuple[str, ...]) -> str | None:
    given = [k for k in keys if getattr(value, k) is not None]
    if len(given) == 1:
        return None
    names = ", ".join(f"`{k}`" for k in keys[:-1]) + f" or `{keys[-1]}`"
    return f"give exactly one of {names}" + (f" (got {', '.join(given)})" if given else "")


def _action_problems(value: Action) -> list[Problem]:
    problems: list[Problem] = []
    problem = _exactly_one(value, ("queue", "flow", "transfer", "respond"))
    if problem:
        problems.append(((), problem))
    if value.reason is not None and value.respond is None:
        problems.append((("reason",), "`reason` goes with `respond`"))
    if value.trunk is not None and value.transfer is None:
        problems.append((("trunk",), "`trunk` goes with `transfer`"))
    return problems


def _locality_problems(value: LocalityRule) -> list[Problem]:
    problem = _exactly_one(value, ("prefix", "regex"))
    if problem:
        return [((), problem)]
    if value.regex is not None:
        problem = regex_problem(value.regex)
        if problem:
            return [(("regex",), problem)]
        _ = value.pattern  # compile once now; cached on the frozen value
    return []


def _prompt_problems(value: PromptSpec) -> list[Problem]:
    problem = _exactly_one(value, ("file", "text"))
    return [((), problem)] if problem else []


def _say_problems(value: nodes.Say) -> list[Problem]:
    problem = _exactly_one(value, ("var", "digits", "number"))
    return [((), problem)] if problem else []


def _collect_problems(value: nodes.Collect) -> list[Problem]:
    problems: list[Problem] = []
    if value.min_length > value.max_length:
        problems.append(
            (
                ("max_length",),
                f"max_length ({value.max_length}) must be >= min_length ({value.min_length})",
            )
        )
    if value.pattern is not None:
        problem = regex_problem(value.pattern)
        if problem:
            problems.append((("pattern",), problem))
    return problems


def _menu_problems(value: nodes.Menu) -> list[Problem]:
    problems: list[Problem] = []
    for field in ("repeat_key", "back_key"):
        key = getattr(value, field)
        if key is not None and key in value.keys:
            problems.append(((field,), f"key `{key}` is also in `keys`"))
    if value.repeat_key is not None and value.repeat_key == value.back_key:
        problems.append((("back_key",), "`back_key` and `repeat_key` are the same key"))
    usable = set(value.keys) | {value.repeat_key, value.back_key}
    for word, key in value.speech.items():
        if key not in usable:
            problems.append((("speech", word), f"key `{key}` is not a key of this menu"))
    return problems


#: Semantic checks of single dialplan values, run by the loader as each is built:
#: value -> [(path inside the value, message)].
ITEM_CHECKS: dict[type, Callable[[Any], list[Problem]]] = {
    Action: _action_problems,
    LocalityRule: _locality_problems,
    Schedule: schedule_problems,
    PromptSpec: _prompt_problems,
    nodes.Say: _say_problems,
    nodes.Collect: _collect_problems,
    nodes.Menu: _menu_problems,
    FeatureCodes: _feature_code_problems,
}

#: Node fields naming another node of the same flow, and those mapping keys to nodes.
NODE_FIELDS = ("next", "on_fail", "open", "closed", "default")
NODE_MAP_FIELDS = ("keys", "regions")
#: Node fields holding a prompt reference (`ivr.nodes.PromptRef`).
PROMPT_FIELDS = ("prompt", "invalid_prompt", "timeout_prompt", "thanks_prompt")


class KnownNames(msgspec.Struct, frozen=True):
    """What references may name. None for a set that is unknown because its own file is
    broken (references to it are then not checked)."""

    prompts: frozenset[str]
    schedules: frozenset[str]
    flows: frozenset[str]
    #: node names per flow
    nodes: dict[str, frozenset[str]]
    regions: frozenset[str]
    queues: frozenset[str] | None
    trunks: frozenset[str] | None


def prompt_names(ref: PromptRef | None) -> Iterator[tuple[tuple[int, ...], str]]:
    """The prompt names in a prompt reference, with their index inside a list."""
    if ref is None:
        return
    if isinstance(ref, str):
        yield (), ref
        return
    for i, part in enumerate(ref):
        if isinstance(part, str):
            yield (i,), part


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


class _References:
    """Collects problems of names that refer to something undefined."""

    def __init__(self, known: KnownNames) -> None:
        self.known = known
        self.problems: list[Problem] = []

    def check(
        self,
        path: tuple[str | int, ...],
        name: str | None,
        names: frozenset[str] | None,
        what: str,
        where: str,
    ) -> None:
        if name is None or names is None or name in names:
            return
        listing = _listing(names)
        self.problems.append((path, f"unknown {what} `{name}` ({where} defines: {listing})"))

    def node(self, path: tuple[str | int, ...], node: nodes.Node) -> None:
        known = self.known
        names = known.nodes.get(str(path[1]), frozenset())
        for field in NODE_FIELDS:
            self.check((*path, field), getattr(node, field, None), names, "node", "this flow")
        for field in NODE_MAP_FIELDS:
            for key, target in getattr(node, field, {}).items():
                self.check((*path, field, key), target, names, "node", "this flow")
        for field in PROMPT_FIELDS:
            for sub, name in prompt_names(getattr(node, field, None)):
                self.check((*path, field, *sub), name, known.prompts, "prompt", "prompts")
        if isinstance(node, nodes.Queue | nodes.Callback):
            self.check((*path, "queue"), node.queue, known.queues, "queue", "queues.yaml")
        elif isinstance(node, nodes.Transfer):
            self.check((*path, "trunk"), node.trunk, known.trunks, "trunk", "trunks.yaml")
        elif isinstance(node, nodes.Time):
            self.check((*path, "schedule"), node.schedule, known.schedules, "schedule", "schedules")
        elif isinstance(node, nodes.Locality):
            for region in node.regions:
                if region not in known.regions:
                    self.problems.append(
                        (
                            (*path, "regions", region),
                            f"region `{region}` is not given by any `localities` entry "
                            f"(regions: {_listing(known.regions)})",
                        )
                    )


def reference_problems(
    built: Iterable[tuple[tuple[str | int, ...], Any]], known: KnownNames
) -> list[Problem]:
    """Problems of references between values of the dialplan and to the other files.

    ``built`` is every Struct the loader built from ``dialplan.yaml`` with its path (also
    those inside broken parts), so each good value is checked even when a sibling is not.
    """
    refs = _References(known)
    for path, value in built:
        if isinstance(value, Action):
            refs.check((*path, "queue"), value.queue, known.queues, "queue", "queues.yaml")
            refs.check((*path, "flow"), value.flow, known.flows, "flow", "flows")
            refs.check((*path, "trunk"), value.trunk, known.trunks, "trunk", "trunks.yaml")
        elif isinstance(value, BlacklistAction):
            for sub, name in prompt_names(value.prompt):
                refs.check((*path, "prompt", *sub), name, known.prompts, "prompt", "prompts")
        elif isinstance(value, Flow) and len(path) == 2 and path[0] == "flows":
            names = known.nodes.get(str(path[1]), frozenset())
            refs.check((*path, "start"), value.start, names, "node", "this flow")
        elif isinstance(value, nodes.Node) and len(path) == 4 and path[2] == "nodes":
            refs.node(path, value)
    return refs.problems
