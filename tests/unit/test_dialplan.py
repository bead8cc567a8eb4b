"""Number analysis (DP-1): normalisation rules and first-match routing."""

from __future__ import annotations

import pytest

from softswitch.dialplan import (
    Action,
    CallMatch,
    Dialplan,
    NumberMatch,
    NumberRule,
    Route,
    RouteResult,
    normalize,
    replacement_problem,
    route,
)

STRIP_86 = NumberRule(match=r"^\+86", replace="")
STRIP_0 = NumberRule(match=r"^0", replace="")


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+8612345", "12345"),
        ("12345", "12345"),
        ("+86010123", "10123"),  # both rules apply, in order
        ("0+86123", "+86123"),  # order matters: +86 is not at the start until 0 is gone
        ("", ""),
    ],
)
def test_rules_apply_in_order_once_each(number: str, expected: str) -> None:
    assert normalize(number, [STRIP_86, STRIP_0]) == expected


def test_rule_replaces_only_the_first_occurrence() -> None:
    assert normalize("1212", [NumberRule(match="12", replace="x")]) == "x12"


def test_rule_replacement_may_use_groups() -> None:
    add_zero = NumberRule(match=r"^(1[3-9]\d{9})$", replace=r"0\1")
    named = NumberRule(match=r"^\+(?P<cc>\d{2})(?P<rest>\d+)$", replace=r"00\g<cc>\g<rest>")
    assert normalize("13800138000", [add_zero]) == "013800138000"
    assert normalize("+4930123", [named]) == "004930123"
    assert normalize("12345", [add_zero]) == "12345"


def test_bad_replacement_is_found_before_any_number_matches() -> None:
    assert replacement_problem(NumberRule(match="^1", replace=r"\1")) is not None
    assert replacement_problem(NumberRule(match="^(1)", replace=r"\g<x>")) is not None
    assert replacement_problem(NumberRule(match="^1", replace=r"\q")) is not None
    assert replacement_problem(NumberRule(match="^(1)", replace=r"9\1")) is None


def _route(
    name: str, action: Action, called: NumberMatch | None = None, calling: NumberMatch | None = None
) -> Route:
    return Route(name=name, match=CallMatch(called=called, calling=calling), action=action)


PLAN = Dialplan(
    routes=(
        _route("test", Action(queue="general"), called=NumberMatch(exact="9000")),
        _route(
            "vip",
            Action(queue="vip"),
            called=NumberMatch(exact="12345"),
            calling=NumberMatch(prefix="139"),
        ),
        _route("hotline", Action(queue="general"), called=NumberMatch(exact="12345")),
        _route("legal", Action(queue="legal"), called=NumberMatch(regex=r"1234[89]")),
        _route("blocked", Action(respond=603, reason="Declined"), called=NumberMatch(prefix="900")),
        _route("from_beijing", Action(queue="bj"), calling=NumberMatch(prefix="010")),
    ),
    default=Action(respond=404),
)


def test_exact_match_routes_to_its_queue() -> None:
    assert route(PLAN, "9000", "13800138000") == RouteResult(
        route="test", queue="general", respond=None, reason=None
    )


def test_exact_match_does_not_match_longer_or_shorter_numbers() -> None:
    assert route(PLAN, "90001", "1").route == "blocked"  # not "test"
    assert route(PLAN, "900", "1").route == "blocked"
    assert route(PLAN, "1234", "1").route is None


def test_first_matching_route_wins_and_calling_condition_applies() -> None:
    assert route(PLAN, "12345", "13912345678").queue == "vip"
    assert route(PLAN, "12345", "13812345678").queue == "general"


def test_regex_must_match_the_whole_number() -> None:
    assert route(PLAN, "12348", "1").queue == "legal"
    assert route(PLAN, "12349", "1").queue == "legal"
    assert route(PLAN, "123480", "1").respond == 404
    assert route(PLAN, "012348", "1").respond == 404


def test_prefix_route_responds_with_configured_code_and_reason() -> None:
    assert route(PLAN, "9001", "1") == RouteResult(
        route="blocked", queue=None, respond=603, reason="Declined"
    )


def test_route_on_calling_number_alone() -> None:
    assert route(PLAN, "5555", "01088889999").queue == "bj"


def test_unmatched_call_gets_the_default_action() -> None:
    assert route(PLAN, "5555", "13800138000") == RouteResult(
        route=None, queue=None, respond=404, reason=None
    )


def test_default_default_is_404() -> None:
    assert Dialplan().route("1", "2").respond == 404


def test_regex_is_compiled_once_and_cached_on_the_value() -> None:
    condition = PLAN.routes[3].match.called
    assert condition is not None
    assert condition.pattern is condition.pattern


def test_dialplan_is_frozen() -> None:
    # Not hashable any more: prompts, schedules and flows are mappings.
    with pytest.raises(AttributeError):
        PLAN.routes = ()  # type: ignore[misc]
