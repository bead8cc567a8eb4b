"""Configuration errors: each is reported with the right file, line and path, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from softswitch.config import ConfigError, ConfigIssue, load_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config"
FILES = ("node.yaml", "trunks.yaml", "agents.yaml", "queues.yaml", "dialplan.yaml")


#: Agents, queues and routes with the queue `general` only, so that a test can replace
#: queues.yaml with its own list (the demo's agents and flows use more queues).
BASE = {
    "agents": "agents:\n"
    + "".join(
        f"  - {{id: '{n}', password: pw{n}, queues: [general]}}\n" for n in range(1001, 1009)
    ),
    "queues": "queues:\n  - name: general\n    ring_timeout: 15\n",
    "dialplan": """\
        routes:
          - name: test
            match: {called: {exact: "9000"}}
            action: {queue: general}
        default: {respond: 404}
        """,
}


def make_config(tmp_path: Path, **files: str) -> Path:
    """A config with some files replaced (keyword = file stem, value = YAML text): node and
    trunks of the demo, and the `BASE` agents, queues and dialplan."""
    for name in FILES:
        stem = name.removesuffix(".yaml")
        if stem in files:
            text = textwrap.dedent(files[stem])
        elif stem in BASE:
            text = textwrap.dedent(BASE[stem])
        else:
            text = (DEMO / name).read_text()
        (tmp_path / name).write_text(text)
    return tmp_path


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    assert all(isinstance(e, ConfigIssue) for e in info.value.errors)
    return [str(e) for e in info.value.errors]


QUEUES_WITH_BAD_THIRD = """\
    # queues of a test
    queues:
      - name: general
      - name: second
      - name: third
        ring_timeout: 0.5
    """


def test_constraint_violation_names_file_line_and_path(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, queues=QUEUES_WITH_BAD_THIRD))
    assert errors == ["queues.yaml:6: queues[2].ring_timeout: Expected `float` >= 1.0, got 0.5"]


def test_every_error_of_every_file_is_reported(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            queues="""\
            queues:
              - name: general
                ring_timeout: 0
                max_wait: abc
                wrap_up: -1
            """,
            node="""\
            node:
              t1: 0
            registrar:
              min_expires: 0
            """,
        )
    )
    assert errors == [
        "node.yaml:2: node.t1: Expected `float` > 0.0, got 0",
        "node.yaml:4: registrar.min_expires: Expected `int` >= 1, got 0",
        "queues.yaml:3: queues[0].ring_timeout: Expected `float` >= 1.0, got 0",
        "queues.yaml:4: queues[0].max_wait: Expected `float`, got `str`",
        "queues.yaml:5: queues[0].wrap_up: Expected `float` >= 0.0, got -1",
    ]


def test_yaml_syntax_error_is_one_error_with_its_line(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, queues="queues:\n  - name: general\n  - [oops\n"))
    assert len(errors) == 1
    assert errors[0].startswith("queues.yaml:4: ")


def test_bad_indentation_is_reported_with_its_line(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(tmp_path, agents="agents:\n  - id: 1\n    password: x\n   queues: []\n")
    )
    assert len(errors) == 1 and errors[0].startswith("agents.yaml:4: ")


def test_missing_required_file_is_named(tmp_path: Path) -> None:
    directory = make_config(tmp_path)
    (directory / "agents.yaml").unlink()
    assert errors_of(directory) == [f"agents.yaml: file not found in {directory}"]


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    errors = errors_of(tmp_path / "nowhere")
    assert errors == [f"{tmp_path / 'nowhere'}: configuration directory not found"]


def test_unknown_key_is_reported_at_its_line_with_a_suggestion(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(tmp_path, queues="queues:\n  - name: general\n    ring_timout: 20\n")
    )
    assert errors == [
        "queues.yaml:3: queues[0].ring_timout: unknown field `ring_timout`; "
        "did you mean `ring_timeout`?"
    ]


def test_unknown_top_level_key_is_reported(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, node="node: {}\nregistrer: {}\n"))
    assert errors == [
        "node.yaml:2: registrer: unknown field `registrer`; did you mean `registrar`?"
    ]


def test_duplicate_yaml_key_is_reported_not_silently_overridden(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path, queues="queues:\n  - name: general\n    max_wait: 10\n    max_wait: 20\n"
        )
    )
    assert errors == [
        "queues.yaml:4: queues[0].max_wait: duplicate key `max_wait` (first at line 3)"
    ]


def test_missing_required_field_points_at_the_item(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(tmp_path, queues="queues:\n  - name: general\n  - max_wait: 20\n")
    )
    assert errors == ["queues.yaml:3: queues[1]: Object missing required field `name`"]


def test_unsupported_strategy_lists_the_allowed_ones(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(tmp_path, queues="queues:\n  - name: general\n    strategy: leastrecent\n")
    )
    assert errors == [
        "queues.yaml:3: queues[0].strategy: Invalid enum value 'leastrecent'; allowed: "
        "'longest_idle', 'skills', 'round_robin', 'fewest_calls', 'random', 'ring_all'"
    ]


def test_wrong_container_type_is_reported(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, queues="queues: {name: general}\n"))
    assert errors == ["queues.yaml:1: queues: Expected `array`, got `object`"]


def test_duplicate_names_and_ids_are_reported_at_the_second(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            queues="queues:\n  - name: general\n  - name: general\n",
            agents="""\
            agents:
              - {id: 1001, password: a, queues: [general]}
              - {id: "1001", password: b, queues: [general]}
            """,
            trunks="trunks:\n  - {name: c, acl: [127.0.0.0/8]}\n  - {name: c, acl: ['::1/128']}\n",
            dialplan="""\
            routes:
              - {name: r, match: {called: {exact: "1"}}, action: {queue: general}}
              - {name: r, match: {called: {exact: "2"}}, action: {queue: general}}
            """,
        )
    )
    assert errors == [
        "trunks.yaml:3: trunks[1].name: duplicate trunk name `c` (first is trunks[0])",
        "agents.yaml:3: agents[1].id: duplicate agent id `1001` (first is agents[0])",
        "queues.yaml:3: queues[1].name: duplicate queue name `general` (first is queues[0])",
        "dialplan.yaml:3: routes[1].name: duplicate route name `r` (first is routes[0])",
    ]


def test_references_to_unknown_queues_are_reported(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            agents="agents:\n  - id: 1001\n    password: x\n    queues: [general, sales]\n",
            dialplan="""\
            routes:
              - name: r
                match: {called: {prefix: "9"}}
                action: {queue: sale}
            default: {queue: nowhere}
            """,
        )
    )
    assert errors == [
        "agents.yaml:4: agents[0].queues[1]: unknown queue `sales` (queues.yaml defines: general)",
        "dialplan.yaml:4: routes[0].action.queue: unknown queue `sale` "
        "(queues.yaml defines: general)",
        "dialplan.yaml:5: default.queue: unknown queue `nowhere` (queues.yaml defines: general)",
    ]


def test_a_queue_with_an_error_still_counts_as_defined(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(tmp_path, queues="queues:\n  - name: general\n    ring_timeout: 0\n")
    )
    # The base agents and routes refer to `general`: only the constraint is reported.
    assert errors == ["queues.yaml:3: queues[0].ring_timeout: Expected `float` >= 1.0, got 0"]


def test_invalid_cidr_is_reported_per_entry(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            trunks="""\
            trunks:
              - name: carrier
                acl:
                  - 127.0.0.0/8
                  - 127.0.0.1/8
                  - 300.1.1.1/32
            """,
        )
    )
    assert errors == [
        "trunks.yaml:5: trunks[0].acl[1]: invalid network: 127.0.0.1/8 has host bits set",
        "trunks.yaml:6: trunks[0].acl[2]: invalid network: '300.1.1.1/32' does not appear "
        "to be an IPv4 or IPv6 network",
    ]


def test_trunk_without_acl_or_digest_is_refused(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, trunks="trunks:\n  - name: carrier\n"))
    assert errors == ["trunks.yaml:2: trunks[0]: a trunk needs an `acl` or `digest` (or both)"]


def test_invalid_regex_in_rule_and_route_is_reported(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            trunks="""\
            trunks:
              - name: carrier
                acl: [127.0.0.0/8]
                called_rules:
                  - {match: '^(\\+86', replace: ''}
                  - {match: '^(\\+86)', replace: '\\2'}
            """,
            dialplan="""\
            routes:
              - name: r
                match:
                  called: {regex: '[0-9'}
                action: {queue: general}
            """,
        )
    )
    assert len(errors) == 3
    assert errors[0].startswith(
        "trunks.yaml:5: trunks[0].called_rules[0].match: invalid regular expression: "
    )
    assert errors[1].startswith(
        "trunks.yaml:6: trunks[0].called_rules[1].replace: invalid replacement: "
        "invalid group reference 2"
    )
    assert errors[2].startswith(
        "dialplan.yaml:4: routes[0].match.called.regex: invalid regular expression: "
    )


def test_invalid_listen_addresses_are_reported(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            node="""\
            node:
              sip_listen:
                - 127.0.0.1:5060
                - "::1:5060"
                - "[::1]:5060"
                - 127.0.0.1:5060
                - localhost:5060
            """,
        )
    )
    assert errors == [
        "node.yaml:4: node.sip_listen[1]: write an IPv6 address in brackets, e.g. [::1]:5060, "
        "got '::1:5060'",
        "node.yaml:6: node.sip_listen[3]: duplicate of sip_listen[0]",
        "node.yaml:7: node.sip_listen[4]: invalid IPv4 address 'localhost'",
    ]


def test_media_addresses_must_be_of_their_family(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, node='media: {rtp_ip: "::1", rtp_ip6: "::"}\n'))
    assert errors == [
        "node.yaml:1: media.rtp_ip: '::1' is not an IPv4 address (IPv6 goes in rtp_ip6)",
        "node.yaml:1: media.rtp_ip6: '::' is not an IPv6 address of this host (not ::)",
    ]
    errors = errors_of(make_config(tmp_path, node="media: {rtp_ip6: 127.0.0.1}\n"))
    assert errors == [
        "node.yaml:1: media.rtp_ip6: '127.0.0.1' is not an IPv6 address of this host (not ::)"
    ]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ('node: {sip_listen: ["127.0.0.1:5060"]}\n', None),
        ('node: {sip_listen: ["127.0.0.1:5060", "[::]:5060", "[::1]:5070"]}\n', "::1"),
        ('node: {sip_listen: ["[::1]:5060"]}\nmedia: {rtp_ip6: "fd00::7"}\n', "fd00::7"),
    ],
)
def test_ipv6_media_address_is_set_or_derived_from_the_listen_addresses(
    tmp_path: Path, node: str, expected: str | None
) -> None:
    config = load_config(make_config(tmp_path, node=node))
    assert config.media.ip6(config.node.listen_addresses) == expected
    assert config.media.ip6([("::1", 5060)]) == (expected if "rtp_ip6" in node else "::1")


def test_unquoted_ipv6_listen_address_explains_the_type(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, node="node:\n  sip_listen: [[::1]:5060]\n"))
    assert len(errors) == 1 and errors[0].startswith("node.yaml:2: ")


def test_node_value_relations_are_checked(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            node="""\
            node: {t1: 2, t2: 1}
            auth: {algorithms: [MD5, MD5]}
            registrar: {min_expires: 60, default_expires: 30}
            """,
        )
    )
    assert errors == [
        "node.yaml:1: node.t2: t2 (1.0) must be >= t1 (2.0)",
        "node.yaml:2: auth.algorithms: algorithm MD5 listed twice",
        "node.yaml:3: registrar.default_expires: default_expires must be between min_expires "
        "and max_expires",
    ]


def test_agent_credentials_must_be_password_or_ha1_not_both_nor_neither(tmp_path: Path) -> None:
    md5 = "0" * 32
    errors = errors_of(
        make_config(
            tmp_path,
            agents=f"""\
            agents:
              - {{id: 1, password: x, ha1_md5: "{md5}"}}
              - {{id: 2}}
              - {{id: 3, ha1_md5: "{md5}"}}
              - {{id: 4, ha1_md5: "{md5}", algorithms: [MD5]}}
              - {{id: 5, ha1_md5: "abc"}}
            """,
        )
    )
    assert errors == [
        "agents.yaml:2: agents[0].ha1_md5: give either `password` or HA1 values, not both",
        "agents.yaml:3: agents[1]: needs `password`, `ha1_md5` or `ha1_sha256`",
        "agents.yaml:4: agents[2]: SHA-256 is offered to this agent but `ha1_sha256` is not "
        "given (add it, or set `algorithms`)",
        "agents.yaml:6: agents[4].ha1_md5: Expected `str` matching regex '^[0-9a-fA-F]{32}$', "
        'got "abc"',
    ]


def test_numeric_ids_and_numbers_keep_the_text_as_written(tmp_path: Path) -> None:
    config = load_config(
        make_config(
            tmp_path,
            agents="agents:\n  - {id: 1001, password: 1234, queues: [general]}\n",
            trunks="trunks:\n  - {name: carrier, acl: [127.0.0.0/8], caller_id: 012345}\n",
            dialplan="""\
            routes:
              - {name: local, match: {called: {prefix: 010}}, action: {queue: general}}
              - {name: intl, match: {called: {exact: +8612345}}, action: {queue: general}}
            """,
        )
    )
    assert config.agents[0].id == "1001"
    assert config.agents[0].password == "1234"
    assert config.trunks[0].caller_id == "012345"  # not octal
    assert config.dialplan.routes[0].match.called.prefix == "010"  # type: ignore[union-attr]
    assert config.dialplan.routes[1].match.called.exact == "+8612345"  # type: ignore[union-attr]


def test_route_conditions_and_actions_need_exactly_one_form(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            dialplan="""\
            routes:
              - name: a
                match: {called: {exact: "1", prefix: "1"}}
                action: {queue: general}
              - name: b
                match: {}
                action: {queue: general, respond: 486}
              - name: c
                match: {calling: {}}
                action: {reason: Busy}
            """,
        )
    )
    assert errors == [
        "dialplan.yaml:3: routes[0].match.called: give exactly one of `exact`, `prefix`, "
        "`regex` (got exact, prefix)",
        "dialplan.yaml:6: routes[1].match: needs `called` and/or `calling`",
        "dialplan.yaml:7: routes[1].action: give exactly one of `queue`, `flow`, `transfer` "
        "or `respond` (got queue, respond)",
        "dialplan.yaml:9: routes[2].match.calling: give exactly one of `exact`, `prefix`, `regex`",
        "dialplan.yaml:10: routes[2].action: give exactly one of `queue`, `flow`, `transfer` "
        "or `respond`",
        "dialplan.yaml:10: routes[2].action.reason: `reason` goes with `respond`",
    ]


def test_respond_code_must_be_a_final_error_response(tmp_path: Path) -> None:
    errors = errors_of(make_config(tmp_path, dialplan="default: {respond: 200}\n"))
    assert errors == ["dialplan.yaml:1: default.respond: Expected `int` >= 400, got 200"]


def test_empty_file_means_empty_lists(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path, agents="", trunks="# none yet\n"))
    assert config.agents == () and config.trunks == ()


def test_merge_keys_are_refused_with_a_line(tmp_path: Path) -> None:
    errors = errors_of(
        make_config(
            tmp_path,
            queues="""\
            base: &base {ring_timeout: 20}
            queues:
              - <<: *base
                name: general
            """,
        )
    )
    assert errors == [
        "queues.yaml:3: queues[0]: merge keys (<<) are not supported; write the keys out"
    ]


def test_issue_prints_without_line_or_path_when_absent() -> None:
    assert str(ConfigIssue("a.yaml", None, "", "gone")) == "a.yaml: gone"
    assert str(ConfigIssue("a.yaml", 3, "", "bad")) == "a.yaml:3: bad"
    assert str(ConfigIssue("a.yaml", 3, "x[1].y", "bad")) == "a.yaml:3: x[1].y: bad"


def test_the_schema_offers_exactly_the_engines_strategies() -> None:
    """One strategy list (acd.STRATEGIES) serves the engine and queues.yaml."""
    import typing

    from acd import STRATEGIES
    from softswitch.config import Queue

    hints = typing.get_type_hints(Queue, include_extras=True)
    literal = typing.get_args(hints["strategy"])[0]
    assert typing.get_args(literal) == STRATEGIES
