"""Number analysis and routing (SPEC DP-1): the dialplan value and how a call is matched.

``dialplan.yaml`` holds an ordered list of routes; the first route whose conditions all match
the (normalised) called and calling numbers decides the action, otherwise ``default`` does.
A condition matches a number exactly, by prefix, or by a regular expression that must match
the whole number. Regular expressions are compiled once, when the configuration is loaded,
and cached on the frozen value (``dict=True`` gives the Struct room for the cache).

Number transformation rules (``NumberRule``, used by trunks) live here too: they are the
other half of number analysis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import Annotated

import msgspec
from msgspec import Meta

_NAME = r"^[A-Za-z0-9_.-]+$"

#: Numbers as they appear in SIP user parts: digits, optionally +, * and # (RFC 3966).
NumberText = Annotated[str, Meta(min_length=1, pattern=r"^[0-9+*#]+$")]


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

    def matches(self, called: str, calling: str) -> bool:
        """True if both given conditions hold."""
        if self.called is not None and not self.called.matches(called):
            return False
        return self.calling is None or self.calling.matches(calling)


class Action(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to do with a matched call: exactly one of ``queue`` or ``respond``."""

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


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A named route: conditions and an action."""

    name: Annotated[
        str, Meta(pattern=_NAME, description="Unique route name, used in logs and CDRs.")
    ]
    match: Annotated[CallMatch, Meta(description="Conditions; at least one is needed.")]
    action: Annotated[Action, Meta(description="What happens to a matching call.")]


class RouteResult(msgspec.Struct, frozen=True):
    """Outcome of routing one call.

    Exactly one of ``queue`` and ``respond`` is set. ``route`` is the matching route's name,
    None when the default action applied.
    """

    route: str | None
    queue: str | None
    respond: int | None
    reason: str | None


class Dialplan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The contents of ``dialplan.yaml``: ordered routes and a default action."""

    routes: Annotated[
        tuple[Route, ...], Meta(description="Routes, tried in order; the first match wins.")
    ] = ()
    default: Annotated[Action, Meta(description="Action for calls no route matches.")] = Action(
        respond=404
    )

    def route(self, called: str, calling: str) -> RouteResult:
        """The action for a call from ``calling`` to ``called`` (first matching route)."""
        for candidate in self.routes:
            if candidate.match.matches(called, calling):
                return _result(candidate.name, candidate.action)
        return _result(None, self.default)


def _result(name: str | None, action: Action) -> RouteResult:
    return RouteResult(route=name, queue=action.queue, respond=action.respond, reason=action.reason)


def route(dialplan: Dialplan, called: str, calling: str) -> RouteResult:
    """Route a call: the first route of ``dialplan`` matching, else its default."""
    return dialplan.route(called, calling)


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
