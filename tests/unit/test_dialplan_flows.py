"""dialplan.yaml flows, prompts, schedules, localities and actions: values and every error
with file, line and path (DP-1, DP-3, DP-7, DP-9)."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr import nodes
from softswitch.config import ConfigError, load_config
from softswitch.dialplan import (
    NODE_FIELDS,
    NODE_MAP_FIELDS,
    PROMPT_FIELDS,
    Action,
    CallMatch,
    Dialplan,
    LocalityRule,
    NumberMatch,
    NumberRule,
    Route,
    RouteResult,
)
from softswitch.schedule import Schedule, WeekHours

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config"

#: The head of a test dialplan: one prompt, one schedule, a region, a valid flow.
HEAD = """\
prompts:
  hello: {text: "你好"}
  bye: {text: "再见"}
schedules:
  office:
    timezone: Asia/Shanghai
    hours: {mon: ["08:30-18:00"]}
localities:
  - {prefix: "010", region: beijing}
"""


def dialplan_dir(tmp_path: Path, text: str, head: str = HEAD) -> Path:
    """The demo configuration with dialplan.yaml replaced by ``head`` + ``text`` (the demo
    queues' `survey` flow is not in it, so their `survey:` lines go)."""
    for name in ("node.yaml", "trunks.yaml", "agents.yaml", "queues.yaml"):
        text_of = (DEMO / name).read_text()
        if name == "queues.yaml":
            text_of = "\n".join(
                line for line in text_of.splitlines() if not line.strip().startswith("survey:")
            )
        (tmp_path / name).write_text(text_of)
    (tmp_path / "dialplan.yaml").write_text(head + textwrap.dedent(text))
    return tmp_path


def errors_of(tmp_path: Path, text: str, head: str = HEAD) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(dialplan_dir(tmp_path, text, head))
    return [str(e) for e in info.value.errors]


LINE = HEAD.count("\n")  # lines before the test's own text


def at(line: int) -> str:
    """``dialplan.yaml:N`` for line ``line`` of the test's own text."""
    return f"dialplan.yaml:{LINE + line}"


# --------------------------------------------------------------------------- the demo


def test_demo_flows_route_and_reference_each_other() -> None:
    config = load_config(DEMO)
    assert set(config.flows) == {"main", "legal", "market", "survey"}
    main = config.flows["main"]
    assert main.start == "hours"
    hours = main.nodes["hours"]
    assert isinstance(hours, nodes.Time) and hours.schedule == "office"
    menu = main.nodes["menu"]
    assert isinstance(menu, nodes.Menu)
    assert menu.keys == {"1": "citizen", "2": "enterprise"} and menu.repeat_key == "0"
    assert main.nodes["citizen"] == nodes.Queue(queue="general", prompt="please_wait")
    voicemail = main.nodes["voicemail"]
    assert isinstance(voicemail, nodes.Voicemail) and voicemail.mailbox == "main"
    after_hours = config.flows["legal"].nodes["after_hours"]
    assert isinstance(after_hours, nodes.Transfer)
    assert (after_hours.number, after_hours.trunk) == ("95000000", "carrier")
    assert isinstance(config.flows["survey"].nodes["rate"], nodes.Survey)
    assert config.tts.voice == "cmn" and config.tts.engine == "espeak-ng"
    assert all(spec.text for spec in config.prompts.values())
    assert config.blacklist.prompt == ("blocked", "blocked_en")
    assert config.prompt_file("welcome") is None  # a TTS prompt


def test_demo_office_hours_are_shanghai_weekdays_with_holidays() -> None:
    dialplan = load_config(DEMO).dialplan

    def local(zone: str, text: str) -> float:
        return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()

    assert dialplan.is_open("office", local("Asia/Shanghai", "2026-12-07T09:00"))  # Monday
    assert not dialplan.is_open("office", local("Asia/Shanghai", "2026-12-07T18:30"))
    assert not dialplan.is_open("office", local("Asia/Shanghai", "2026-12-12T09:00"))  # Sat
    assert not dialplan.is_open("office", local("Asia/Shanghai", "2026-10-05T09:00"))  # holiday
    assert dialplan.is_open("office", local("Asia/Shanghai", "2026-09-27T09:00"))  # make-up Sun


# --------------------------------------------------------------------------- routing values


def test_route_actions_give_flow_transfer_and_trunk() -> None:
    plan = Dialplan(
        routes=(
            Route(
                name="ivr",
                match=CallMatch(called=NumberMatch(exact="12345")),
                action=Action(flow="main"),
            ),
            Route(
                name="out",
                match=CallMatch(called=NumberMatch(exact="12348")),
                action=Action(transfer="95000000", trunk="carrier"),
            ),
        )
    )
    assert plan.route("12345", "1") == RouteResult(
        route="ivr", queue=None, respond=None, reason=None, flow="main"
    )
    out = plan.route("12348", "1")
    assert (out.transfer, out.transfer_trunk, out.flow, out.queue) == (
        "95000000",
        "carrier",
        None,
        None,
    )


def test_route_transform_rewrites_the_called_number_of_its_calls_only() -> None:
    plan = Dialplan(
        routes=(
            Route(
                name="e164",
                match=CallMatch(
                    called=NumberMatch(prefix="0086"),
                    transform=(NumberRule(match="^0086", replace="+86"),),
                ),
                action=Action(queue="general"),
            ),
            Route(
                name="plain",
                match=CallMatch(called=NumberMatch(prefix="")),
                action=Action(queue="g"),
            ),
        )
    )
    assert plan.route("008612345", "1").called == "+8612345"
    assert plan.route("12345", "1").called is None  # no transform: the number routed stands


def test_region_of_takes_the_longest_prefix_then_the_first_regex() -> None:
    plan = Dialplan(
        localities=(
            LocalityRule(prefix="1", region="other"),
            LocalityRule(prefix="139", region="mobile_north"),
            LocalityRule(prefix="1391", region="beijing"),
            LocalityRule(regex=r"0[0-9]{2,3}[0-9]{7,8}", region="landline"),
            LocalityRule(regex=r"[0-9]+", region="anything"),
            LocalityRule(prefix="010", region="beijing"),
        )
    )
    assert plan.region_of("13912345678") == "beijing"
    assert plan.region_of("13987654321") == "mobile_north"
    assert plan.region_of("13812345678") == "other"
    assert plan.region_of("01088889999") == "beijing"  # a prefix beats any regex
    assert plan.region_of("02188889999") == "landline"
    assert plan.region_of("555") == "anything"
    assert plan.region_of("+4930") is None
    assert Dialplan().region_of("010") is None


def test_dialplan_is_open_names_a_schedule() -> None:
    plan = Dialplan(
        schedules={"always": Schedule(timezone="UTC", hours=WeekHours(thu=["00:00-24:00"]))}
    )
    assert plan.is_open("always", 0.0)  # 1970-01-01 was a Thursday
    with pytest.raises(KeyError):
        plan.is_open("missing", 0.0)


def test_prompt_files_resolve_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "menu.wav").write_bytes(b"RIFF")
    config = load_config(
        dialplan_dir(tmp_path, "prompts:\n  menu: {file: prompts/menu.wav}\n", head="")
    )
    assert config.prompt_file("menu") == tmp_path / "prompts" / "menu.wav"
    assert config.prompt_file("nothing") is None


def test_node_reference_fields_cover_every_node_type() -> None:
    """A new node field that names a node or a prompt must be added to the checked lists."""
    checked = set(NODE_FIELDS) | set(NODE_MAP_FIELDS) | set(PROMPT_FIELDS)
    others = {"queue", "trunk", "schedule", "number", "mailbox", "variable", "variables"}
    numeric = {"timeout", "retries", "priority", "respond", "max_seconds", "silence_seconds"}
    numeric |= {"min_length", "max_length", "first_timeout", "inter_digit_timeout"}
    keys = {"repeat_key", "back_key", "terminator", "speech", "pattern"}
    for node_type in nodes.Node.__args__:  # type: ignore[attr-defined]
        for field in node_type.__struct_fields__:
            assert field in checked | others | numeric | keys, (node_type.__name__, field)


# --------------------------------------------------------------------------- errors


def test_unknown_nodes_are_reported_at_the_referring_key(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows:
          main:
            start: welcom
            nodes:
              welcome: {type: play, prompt: hello, next: menu}
              menu:
                type: menu
                prompt: hello
                keys: {"1": queue, "2": nowhere}
                on_fail: gone
              queue: {type: queue, queue: general}
              hours: {type: time, schedule: office, open: queue, closed: shut}
              region: {type: locality, regions: {beijing: queue}, default: void}
              tag: {type: set, variables: {service_type: x}, next: nope}
        """,
    )
    defined = "(this flow defines: hours, menu, queue, region, tag, welcome)"
    assert errors == [
        f"{at(3)}: flows.main.start: unknown node `welcom` {defined}",
        f"{at(9)}: flows.main.nodes.menu.keys.2: unknown node `nowhere` {defined}",
        f"{at(10)}: flows.main.nodes.menu.on_fail: unknown node `gone` {defined}",
        f"{at(12)}: flows.main.nodes.hours.closed: unknown node `shut` {defined}",
        f"{at(13)}: flows.main.nodes.region.default: unknown node `void` {defined}",
        f"{at(14)}: flows.main.nodes.tag.next: unknown node `nope` {defined}",
    ]


def test_nodes_of_another_flow_are_not_reachable(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows:
          a:
            start: x
            nodes: {x: {type: hangup}}
          b:
            start: x2
            nodes: {x2: {type: play, prompt: hello, next: x}}
        """,
    )
    assert errors == [f"{at(7)}: flows.b.nodes.x2.next: unknown node `x` (this flow defines: x2)"]


def test_unknown_prompts_are_reported_also_inside_lists(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        blacklist: {prompt: blokked}
        flows:
          main:
            start: menu
            nodes:
              menu:
                type: menu
                prompt: [hello, {var: queue_position}, helo]
                keys: {"1": vm}
                invalid_prompt: oops
              vm: {type: voicemail, mailbox: main, prompt: hello, thanks_prompt: [bye, thanks]}
        """,
    )
    defined = "(prompts defines: bye, hello)"
    assert errors == [
        f"{at(1)}: blacklist.prompt: unknown prompt `blokked` {defined}",
        f"{at(8)}: flows.main.nodes.menu.prompt[2]: unknown prompt `helo` {defined}",
        f"{at(10)}: flows.main.nodes.menu.invalid_prompt: unknown prompt `oops` {defined}",
        f"{at(11)}: flows.main.nodes.vm.thanks_prompt[1]: unknown prompt `thanks` {defined}",
    ]


def test_unknown_queues_schedules_trunks_and_flows_are_reported(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        routes:
          - {name: a, match: {called: {exact: "1"}}, action: {flow: mian}}
          - {name: b, match: {called: {exact: "2"}}, action: {transfer: "95000000", trunk: carier}}
          - {name: c, match: {called: {exact: "3"}}, action: {queue: legl}}
        flows:
          main:
            start: hours
            nodes:
              hours: {type: time, schedule: ofice, open: q, closed: out}
              q: {type: queue, queue: sales}
              out: {type: transfer, number: "95000000", trunk: other}
        """,
    )
    queues = "(queues.yaml defines: enterprise, general, legal)"
    assert errors == [
        f"{at(2)}: routes[0].action.flow: unknown flow `mian` (flows defines: main)",
        f"{at(3)}: routes[1].action.trunk: unknown trunk `carier` (trunks.yaml defines: carrier)",
        f"{at(4)}: routes[2].action.queue: unknown queue `legl` {queues}",
        f"{at(9)}: flows.main.nodes.hours.schedule: unknown schedule `ofice` "
        "(schedules defines: office)",
        f"{at(10)}: flows.main.nodes.q.queue: unknown queue `sales` {queues}",
        f"{at(11)}: flows.main.nodes.out.trunk: unknown trunk `other` (trunks.yaml defines: carrier)",
    ]


def test_unknown_node_type_lists_the_allowed_types(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows:
          main:
            start: m
            nodes:
              m: {type: menuu, prompt: hello, keys: {}}
              n: {prompt: hello}
              o: {type: 3}
        """,
    )
    allowed = (
        "play, menu, collect, queue, transfer, voicemail, survey, hangup, time, locality, set, "
        "callback"
    )
    assert errors == [
        f"{at(5)}: flows.main.nodes.m.type: unknown type `menuu`; allowed: {allowed}; "
        "did you mean `menu`?",
        f"{at(6)}: flows.main.nodes.n: Object missing required field `type` (one of: {allowed})",
        f"{at(7)}: flows.main.nodes.o.type: unknown type `3`; allowed: {allowed}",
    ]


def test_errors_inside_a_node_point_at_the_key_and_line(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows:
          main:
            start: menu
            nodes:
              menu:
                type: menu
                prompt: hello
                keys:
                  "1": ok
                  "12": ok
                  "2": "bad name"
                timout: 3
              ok: {type: hangup, respond: 200}
        """,
    )
    assert errors == [
        f"{at(10)}: flows.main.nodes.menu.keys.12: invalid key `12`: Expected `str` matching "
        "regex '^[0-9*#]$'",
        f"{at(11)}: flows.main.nodes.menu.keys.2: Expected `str` matching regex "
        "'^[A-Za-z0-9_.-]+$', got \"bad name\"",
        f"{at(12)}: flows.main.nodes.menu.timout: unknown field `timout`; did you mean `timeout`?",
        f"{at(13)}: flows.main.nodes.ok.respond: Expected `int` >= 400, got 200",
    ]


def test_mapping_sections_must_be_mappings_with_valid_names(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows: [main]
        schedules:
          "day time": {timezone: UTC}
        prompts:
          ok: "just text"
        """,
        head="",
    )
    assert errors == [
        "dialplan.yaml:1: flows: Expected `object`, got `array`",
        "dialplan.yaml:3: schedules.day time: invalid key `day time`: Expected `str` matching "
        "regex '^[A-Za-z0-9_.-]+$'",
        "dialplan.yaml:5: prompts.ok: Expected `object`, got `str`",
    ]


def test_a_broken_node_does_not_hide_the_references_of_its_siblings(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows:
          main:
            start: a
            nodes:
              a: {type: play, prompt: hello, next: b, volume: 1}
              b: {type: play, prompt: nope, next: a}
        """,
    )
    assert errors == [
        f"{at(5)}: flows.main.nodes.a.volume: unknown field `volume`",
        f"{at(6)}: flows.main.nodes.b.prompt: unknown prompt `nope` (prompts defines: bye, hello)",
    ]


def test_schedule_errors_name_the_interval_date_and_zone(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        schedules:
          office:
            timezone: Mars/Olympus
            hours:
              mon: ["18:00-08:30"]
              tue: ["8:30"]
            holidays: [2026-02-30, 2026-10-01..2026-10-07]
            workdays: [2026-10-02]
        """,
        head="",
    )
    assert errors == [
        "dialplan.yaml:3: schedules.office.timezone: unknown time zone 'Mars/Olympus'",
        "dialplan.yaml:5: schedules.office.hours.mon[0]: '18:00-08:30': start must be before end "
        "(an interval may not cross midnight; end it at 24:00 and continue at 00:00 on the "
        "next day)",
        "dialplan.yaml:6: schedules.office.hours.tue[0]: expected \"HH:MM-HH:MM\", got '8:30'",
        "dialplan.yaml:7: schedules.office.holidays[0]: '2026-02-30': day is out of range for month",
        "dialplan.yaml:8: schedules.office.workdays[0]: 2026-10-02 is also a holiday (holidays[1])",
    ]


def test_regexes_of_collect_localities_and_matches_must_compile(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        routes:
          - {name: r, match: {calling: {regex: "[0-9"}, transform: [{match: "(", replace: ""}]}, action: {queue: general}}
        localities:
          - {regex: "(1", region: x}
          - {prefix: "010", regex: "1", region: y}
          - {prefix: "010", region: z}
        flows:
          f:
            start: c
            nodes:
              c: {type: collect, prompt: hello, variable: id, next: c, pattern: "[", min_length: 9, max_length: 4}
        """,
        head="prompts: {hello: {text: hi}}\n",
    )
    assert [e.split(": invalid regular expression")[0] for e in errors[:2]] == [
        "dialplan.yaml:3: routes[0].match.calling.regex",
        "dialplan.yaml:3: routes[0].match.transform[0].match",
    ]
    assert errors[2].startswith("dialplan.yaml:5: localities[0].regex: invalid regular expression")
    assert errors[3] == (
        "dialplan.yaml:6: localities[1]: give exactly one of `prefix` or `regex` (got prefix, regex)"
    )
    assert errors[4] == (
        "dialplan.yaml:7: localities[2].prefix: duplicate prefix `010` (first is localities[1])"
    )
    assert (
        errors[5]
        == "dialplan.yaml:12: flows.f.nodes.c.max_length: max_length (4) must be >= min_length (9)"
    )
    assert errors[6].startswith(
        "dialplan.yaml:12: flows.f.nodes.c.pattern: invalid regular expression"
    )
    assert len(errors) == 7


def test_prompt_spec_say_and_menu_keys_need_one_meaning(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        prompts:
          both: {file: a.wav, text: hi}
          none: {voice: en}
          abs: {file: /etc/passwd}
          missing: {file: prompts/missing.wav}
        flows:
          f:
            start: m
            nodes:
              m:
                type: menu
                prompt: [both, {var: a, digits: b}, {}]
                keys: {"1": m, "0": m}
                repeat_key: "0"
                speech: {yes: "1", no: "9"}
        """,
        head="",
    )
    assert errors == [
        "dialplan.yaml:2: prompts.both: give exactly one of `file` or `text` (got file, text)",
        "dialplan.yaml:3: prompts.none: give exactly one of `file` or `text`",
        "dialplan.yaml:4: prompts.abs.file: must be relative to the configuration directory",
        f"dialplan.yaml:5: prompts.missing.file: file not found: {tmp_path}/prompts/missing.wav",
        "dialplan.yaml:12: flows.f.nodes.m.prompt[1]: give exactly one of `var`, `digits` or "
        "`number` (got var, digits)",
        "dialplan.yaml:12: flows.f.nodes.m.prompt[2]: give exactly one of `var`, `digits` or "
        "`number`",
        "dialplan.yaml:14: flows.f.nodes.m.repeat_key: key `0` is also in `keys`",
        "dialplan.yaml:15: flows.f.nodes.m.speech.no: key `9` is not a key of this menu",
    ]


def test_prompt_reference_of_the_wrong_kind_is_reported(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows:
          f:
            start: p
            nodes:
              p: {type: play, prompt: {text: inline}, next: p}
              q: {type: play, prompt: [hello, [bye]], next: p}
        """,
    )
    assert errors == [
        f"{at(5)}: flows.f.nodes.p.prompt: Expected `str | array`, got `object`",
        f"{at(6)}: flows.f.nodes.q.prompt[1]: Expected `str | object`, got `array`",
    ]


def test_action_forms_exclude_each_other(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        routes:
          - {name: a, match: {called: {exact: "1"}}, action: {flow: f, queue: general}}
          - {name: b, match: {called: {exact: "2"}}, action: {queue: general, trunk: carrier}}
          - {name: c, match: {called: {exact: "3"}}, action: {transfer: "12a"}}
        flows:
          f: {start: h, nodes: {h: {type: hangup}}}
        """,
    )
    assert errors == [
        f"{at(2)}: routes[0].action: give exactly one of `queue`, `flow`, `transfer` or `respond` "
        "(got queue, flow)",
        f"{at(3)}: routes[1].action.trunk: `trunk` goes with `transfer`",
        f"{at(4)}: routes[2].action.transfer: Expected `str` matching regex '^\\\\+?[0-9*#]+$', "
        'got "12a"',
    ]


def test_locality_node_regions_must_come_from_localities(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        flows:
          f:
            start: l
            nodes:
              l: {type: locality, regions: {beijing: h, shanghia: h}, default: h}
              h: {type: hangup}
        """,
    )
    assert errors == [
        f"{at(5)}: flows.f.nodes.l.regions.shanghia: region `shanghia` is not given by any "
        "`localities` entry (regions: beijing)"
    ]


def test_numbers_and_dates_written_bare_keep_their_text(tmp_path: Path) -> None:
    config = load_config(
        dialplan_dir(
            tmp_path,
            """\
            schedules:
              s: {timezone: UTC, holidays: [2026-10-01], workdays: [2026-10-10]}
            localities:
              - {prefix: 021, region: shanghai}
            flows:
              f:
                start: t
                nodes:
                  t: {type: transfer, number: 95000000, trunk: carrier}
                  v: {type: set, variables: {service_type: 12315}, next: t}
                  m: {type: menu, prompt: p, keys: {1: t, 2: v}}
            prompts:
              p: {text: hi}
            """,
            head="",
        )
    )
    assert config.schedules["s"].holidays == ("2026-10-01",)
    assert config.dialplan.localities[0].prefix == "021"
    flow = config.flows["f"]
    assert flow.nodes["t"] == nodes.Transfer(number="95000000", trunk="carrier")
    assert flow.nodes["v"] == nodes.Set(variables={"service_type": "12315"}, next="t")
    assert flow.nodes["m"].keys == {"1": "t", "2": "v"}  # type: ignore[union-attr]
