"""Loading the configuration directory: the shipped demo and the values it yields."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from softswitch.config import (
    Agent,
    Config,
    Trunk,
    admin_reference,
    check_command,
    load_config,
    parse_host_port,
    trunk_for_source,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config"


@pytest.fixture(scope="module")
def demo() -> Config:
    return load_config(DEMO)


def test_demo_config_loads_with_the_documented_contents(demo: Config) -> None:
    assert demo.node.sip_listen == ("127.0.0.1:5060",)
    assert demo.node.listen_addresses == (("127.0.0.1", 5060),)
    assert demo.auth.algorithms == ("MD5", "SHA-256")  # MD5 first for SIPp and desk phones
    (carrier,) = demo.trunks
    assert carrier.name == "carrier"
    assert carrier.acl == ("127.0.0.0/8", "::1/128")
    assert carrier.digest is None
    assert carrier.normalize_called("+8612345") == "12345"
    assert carrier.normalize_calling("+8613800138000") == "13800138000"
    assert [a.id for a in demo.agents] == [str(n) for n in range(1001, 1009)]
    assert [a.password for a in demo.agents] == [f"pw{n}" for n in range(1001, 1009)]
    assert all(a.queues[0] == "general" for a in demo.agents)  # every agent serves general
    assert [a.id for a in demo.agents if "enterprise" in a.queues] == [
        "1005",
        "1006",
        "1007",
        "1008",
    ]
    assert [a.id for a in demo.agents if "legal" in a.queues] == ["1007", "1008"]
    general, enterprise, legal = demo.queues
    assert (general.name, general.strategy) == ("general", "longest_idle")
    assert (general.ring_timeout, general.max_wait, general.wrap_up) == (15.0, 300.0, 0.0)
    assert (enterprise.name, legal.name) == ("enterprise", "legal")
    assert demo.dialplan.route("9000", "13800138000").queue == "general"
    assert demo.dialplan.route("12345", "13800138000").flow == "main"
    assert demo.dialplan.route("12348", "13800138000").flow == "legal"
    assert demo.dialplan.route("12315", "13800138000").flow == "market"
    unknown = demo.dialplan.route("12346", "13800138000")
    assert (unknown.route, unknown.queue, unknown.respond) == (None, None, 404)


def test_demo_agents_passwords_are_marked_demo_only() -> None:
    text = (DEMO / "agents.yaml").read_text()
    assert "DEMO ONLY" in text


def test_config_value_is_frozen(demo: Config) -> None:
    with pytest.raises(AttributeError):
        demo.queues[0].ring_timeout = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        demo.node = demo.node  # type: ignore[misc]


def test_lookup_helpers_find_agents_and_queues(demo: Config) -> None:
    agent = demo.agent("1003")
    assert agent is not None and agent.password == "pw1003"
    assert demo.agent("9999") is None
    assert demo.queue("general") is demo.queues[0]
    assert demo.queue("missing") is None
    assert demo.algorithms_for(agent) == ("MD5", "SHA-256")


def test_agent_ha1_is_hash_of_user_realm_password(demo: Config) -> None:
    agent = demo.agent("1001")
    assert agent is not None
    data = b"1001:hotline.local:pw1001"
    assert agent.ha1("MD5", "hotline.local") == hashlib.md5(data).hexdigest()
    assert agent.ha1("SHA-256", "hotline.local") == hashlib.sha256(data).hexdigest()
    stored = Agent(id="7", ha1_md5="AB" * 16)
    assert stored.ha1("MD5", "any") == "ab" * 16
    assert stored.ha1("SHA-256", "any") is None


def test_check_command_prints_summary_and_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_command(DEMO) == 0
    out, err = capsys.readouterr()
    assert out == "config OK: 1 trunk, 8 agents, 3 queues, 4 routes, 4 flows\n"
    assert err == ""


def test_check_command_prints_each_error_to_stderr_and_returns_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("trunks.yaml", "agents.yaml", "dialplan.yaml"):
        (tmp_path / name).write_text((DEMO / name).read_text())
    queues = (DEMO / "queues.yaml").read_text().replace("ring_timeout: 15 ", "ring_timeout: 0 ", 1)
    (tmp_path / "queues.yaml").write_text(queues)
    assert check_command(tmp_path) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "queues.yaml:5: queues[0].ring_timeout: Expected `float` >= 1.0, got 0"
    ]


def test_node_yaml_is_optional_and_defaults_apply(tmp_path: Path) -> None:
    for name in ("trunks.yaml", "agents.yaml", "queues.yaml", "dialplan.yaml"):
        (tmp_path / name).write_text((DEMO / name).read_text())
    config = load_config(tmp_path)
    assert config.node.sip_listen == ("127.0.0.1:5060",)
    assert (config.node.t1, config.node.t2, config.node.t4) == (0.5, 4.0, 5.0)
    assert config.registrar.min_expires == 60
    assert config.limits.max_transactions_per_source == 200


def test_trunk_acl_matches_ipv4_ipv6_and_v4_mapped_sources(demo: Config) -> None:
    carrier = demo.trunks[0]
    assert carrier.matches("127.0.0.1")
    assert carrier.matches("127.10.20.30")
    assert carrier.matches("::1")
    assert carrier.matches("[::1]")
    assert carrier.matches("::ffff:127.0.0.1")  # an IPv4 peer seen on a dual-stack socket
    assert not carrier.matches("::ffff:10.0.0.1")
    assert not carrier.matches("10.0.0.1")
    assert not carrier.matches("::2")
    assert not carrier.matches("not-an-address")
    assert trunk_for_source(demo, "127.0.0.1") is carrier
    assert demo.trunk_for_source("192.0.2.1") is None


def test_ipv6_acl_entry_matches_v4_mapped_form_of_ipv4_source() -> None:
    trunk = Trunk(name="t", acl=("::ffff:192.0.2.0/120", "2001:db8::/32"))
    assert trunk.matches("192.0.2.7")
    assert trunk.matches("2001:db8::5")
    assert trunk.matches("fe80::1%eth0") is False


def test_first_trunk_whose_acl_matches_owns_the_source(tmp_path: Path) -> None:
    for name in ("agents.yaml", "queues.yaml", "dialplan.yaml"):
        (tmp_path / name).write_text((DEMO / name).read_text())
    (tmp_path / "trunks.yaml").write_text(
        "trunks:\n  - {name: narrow, acl: [127.0.0.2/32]}\n  - {name: wide, acl: [127.0.0.0/8]}\n"
        "  - {name: carrier, acl: [10.0.0.0/8]}\n"  # the demo dialplan transfers through it
    )
    config = load_config(tmp_path)
    assert trunk_for_source(config, "127.0.0.2").name == "narrow"  # type: ignore[union-attr]
    assert trunk_for_source(config, "127.0.0.3").name == "wide"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5060", ("127.0.0.1", 5060)),
        ("[::1]:5070", ("::1", 5070)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_host_port_accepts_ip_literals(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        "::1:5060",
        "[::1]5060",
        "[::1]:",
        "host:5060",
        "1.2.3.4:0",
        "1.2.3.4:70000",
        ":5060",
        "[zz]:5060",
    ],
)
def test_parse_host_port_rejects_malformed_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)


def test_config_encodes_as_plain_data(demo: Config) -> None:
    data = msgspec.to_builtins(demo)
    assert data["queues"][0]["name"] == "general"
    assert data["dialplan"]["default"]["respond"] == 404


def test_admin_reference_doc_is_generated_from_structs() -> None:
    assert (ROOT / "docs" / "admin.md").read_text() == admin_reference(), (
        "docs/admin.md is stale: python -m softswitch.config --reference > docs/admin.md"
    )
