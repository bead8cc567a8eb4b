"""Sticky agents and skills through the whole switch (virtual time, no sockets): the
caller's earlier call is found in the CDR store, and queues.yaml/agents.yaml keys reach the
ACD engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from sipflow import Harness, Phone, Trunk

from softswitch.config import load_config
from softswitch.errors import ConfigError
from softswitch.sip.message import Request, Response

ROOT = Path(__file__).resolve().parents[2]


def config_with(tmp_path: Path, queue_keys: dict, agents: dict[str, dict] | None = None) -> Path:
    """The demo configuration with extra keys on queue `general` (and on some agents)."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    queues = yaml.safe_load((target / "queues.yaml").read_text(encoding="utf-8"))
    queues["queues"][0].update(queue_keys)
    (target / "queues.yaml").write_text(yaml.safe_dump(queues), encoding="utf-8")
    if agents:
        doc = yaml.safe_load((target / "agents.yaml").read_text(encoding="utf-8"))
        for agent in doc["agents"]:
            agent.update(agents.get(str(agent["id"]), {}))
        (target / "agents.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return target


def two_phones(h: Harness) -> dict[int, Phone]:
    """Agents 1001 and 1002 register a second apart (1001 is idle the longest)."""
    phones = {5101: Phone(h, "1001", 5101), 5102: Phone(h, "1002", 5102)}
    for phone in phones.values():
        assert phone.register().status == 200
        h.advance(1)
    return phones


def call_answered_by(h: Harness, trunk: Trunk, phones: dict[int, Phone]) -> Phone:
    """Place `trunk`'s call to 9000; whichever phone rings answers; returns that phone."""
    trunk.invite()
    (port,) = [
        port
        for port in phones
        if any(
            t.port == port and isinstance(m, Request) and m.method == "INVITE" for t, m in h.sent
        )
    ]
    (invite,) = h.take(port)
    assert isinstance(invite, Request)
    phone = phones[port]
    phone.reply(invite, 200, sdp=True)
    h.take(port)
    ok = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status == 200][0]
    trunk.to_tag = ok.to.tag
    trunk.ack()
    h.advance(3)
    trunk.bye()
    (bye,) = h.take(port)
    phone.reply(bye, 200)
    h.take(trunk.port)
    return phone


def test_a_caller_calling_again_reaches_the_agent_who_served_them(tmp_path: Path) -> None:
    h = Harness(tmp_path, config_with(tmp_path, {"sticky_wait": 20}))
    phones = two_phones(h)
    first = call_answered_by(h, Trunk(h, call_id="c1"), phones)
    assert first.agent == "1001"  # idle the longest
    h.advance(60)
    # 1002 is idle longer now, but the same caller calls again: 1001 gets the call.
    again = call_answered_by(h, Trunk(h, call_id="c2"), phones)
    assert again.agent == "1001"
    rows = h.cdr._db.execute("SELECT agent FROM calls ORDER BY start").fetchall()
    assert [r["agent"] for r in rows] == ["1001", "1001"]
    enter = h.cdr._db.execute(
        "SELECT data FROM queue_log WHERE event = 'ENTER' ORDER BY id"
    ).fetchall()
    assert '"preferred":"1001"' in enter[1]["data"].replace(" ", "")


def test_without_sticky_wait_the_next_call_goes_to_the_longest_idle(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    phones = two_phones(h)
    assert call_answered_by(h, Trunk(h, call_id="c1"), phones).agent == "1001"
    h.advance(60)
    assert call_answered_by(h, Trunk(h, call_id="c2"), phones).agent == "1002"


def test_skills_in_the_yaml_route_to_the_best_level(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        {"strategy": "skills", "skills": {"social": 2}},
        {"1001": {"skills": {"social": 3}}, "1002": {"skills": {"social": 9}}},
    )
    try:  # the other demo agents list `general` without the skill
        load_config(config)
    except ConfigError as exc:
        assert "agents.yaml" in str(exc) and "requires social 2; this agent lacks it" in str(exc)
    else:
        raise AssertionError("agents listing a skills queue without the skill were accepted")
    doc = yaml.safe_load((config / "agents.yaml").read_text(encoding="utf-8"))
    for agent in doc["agents"]:
        if str(agent["id"]) not in ("1001", "1002"):
            agent["queues"] = [q for q in agent["queues"] if q != "general"]
    (config / "agents.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    h = Harness(tmp_path, config)
    phones = two_phones(h)
    assert call_answered_by(h, Trunk(h, call_id="c1"), phones).agent == "1002"


def test_a_caller_reaches_an_agent_of_the_region_the_dialplan_gives_their_number(
    tmp_path: Path,
) -> None:
    # The demo's localities make 13800000001 (the trunk's caller) region `mobile`.
    config = config_with(
        tmp_path,
        {"region_wait": 30},
        {"1001": {"region": "beijing"}, "1002": {"region": "mobile"}},
    )
    h = Harness(tmp_path, config)
    phones = two_phones(h)
    assert call_answered_by(h, Trunk(h, call_id="c1"), phones).agent == "1002"
    (enter,) = h.cdr._db.execute("SELECT data FROM queue_log WHERE event = 'ENTER'").fetchall()
    assert '"region":"mobile"' in enter["data"].replace(" ", "")


def test_a_queue_without_agents_sends_callers_to_its_overflow_response(tmp_path: Path) -> None:
    config = config_with(
        tmp_path, {"when_empty": "leave", "overflow": {"respond": 486, "reason": "No agents"}}
    )
    h = Harness(tmp_path, config)
    trunk = Trunk(h)
    trunk.invite()
    finals = [m for m in h.take(trunk.port) if isinstance(m, Response) and m.status >= 200]
    assert [(m.status, m.reason) for m in finals] == [(486, "No agents")]
    (row,) = h.cdr._db.execute("SELECT disposition FROM calls").fetchall()
    assert row["disposition"] == "queue_empty"
    (event,) = h.cdr._db.execute("SELECT * FROM queue_log WHERE event = 'EMPTY'").fetchall()
    assert event["queue"] == "general"


def test_max_wait_overflows_to_another_queue_where_an_agent_answers(tmp_path: Path) -> None:
    config = config_with(
        tmp_path, {"max_wait": 5, "overflow": {"queue": "legal"}}, {"1001": {"queues": ["legal"]}}
    )
    h = Harness(tmp_path, config)
    phone = Phone(h, "1001", 5101)
    assert phone.register().status == 200
    trunk = Trunk(h)
    trunk.invite()
    assert h.take(phone.port) == []  # general has no agent logged in: the caller waits
    h.advance(5.2)  # max wait, then legal's agent rings (before Timer A resends)
    (invite,) = h.take(phone.port)
    assert isinstance(invite, Request) and invite.headers.get("x-hotline-queue") == "legal"
    phone.reply(invite, 200, sdp=True)
    (row,) = h.cdr._db.execute("SELECT agent, queue FROM calls").fetchall()
    assert (row["agent"], row["queue"]) == ("1001", "legal")
    kinds = [r["event"] for r in h.cdr._db.execute("SELECT event FROM queue_log ORDER BY id")]
    assert kinds.count("ENTER") == 2 and "TIMEOUT" in kinds


def test_overflow_loops_and_unknown_targets_are_config_errors(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"overflow": {"queue": "enterprise"}})
    doc = yaml.safe_load((config / "queues.yaml").read_text(encoding="utf-8"))
    doc["queues"][1]["overflow"] = {"queue": "general"}
    doc["queues"][2]["overflow"] = {"flow": "nope"}
    (config / "queues.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    try:
        load_config(config)
    except ConfigError as exc:
        text = str(exc)
    else:
        raise AssertionError("an overflow loop was accepted")
    assert "overflow loop: general → enterprise → general" in text
    assert "queues[2].overflow.flow: unknown flow `nope`" in text


class CallerTrunk(Trunk):
    """The carrier, calling from `caller` (E.164 digits after +86)."""

    def __init__(self, h: Harness, call_id: str, caller: str, port: int) -> None:
        super().__init__(h, port=port, call_id=call_id)
        self.caller = caller

    def headers(self, method: str, cseq: int, branch: str, to_tag: str | None = None) -> str:
        return (
            super()
            .headers(method, cseq, branch, to_tag)
            .replace("+8613800000001", f"+86{self.caller}")
        )


def test_a_vip_caller_is_served_before_callers_who_came_earlier(tmp_path: Path) -> None:
    h = Harness(tmp_path, config_with(tmp_path, {"vip": [{"prefix": "1390000"}]}))
    phone = Phone(h, "1001", 5101)
    assert phone.register().status == 200
    h.switch.agent_command("1001", "not_ready", h.now)
    for n, caller in enumerate(("13811111111", "13900001234", "13822222222")):
        CallerTrunk(h, f"c{n}", caller, 5090 + n).invite()
        h.advance(1)
    assert h.switch.agent_command("1001", "ready", h.now) == "ringing"
    h._collect()
    (invite,) = [m for m in h.take(phone.port) if isinstance(m, Request)]
    assert "13900001234" in (invite.headers.get("from") or "")
    enters = h.cdr._db.execute(
        "SELECT data FROM queue_log WHERE event = 'ENTER' ORDER BY id"
    ).fetchall()
    assert ['"priority":10' in r["data"].replace(" ", "") for r in enters] == [False, True, False]


def test_an_auto_answer_agent_gets_the_answer_after_headers(tmp_path: Path) -> None:
    config = config_with(tmp_path, {}, {"1001": {"auto_answer": True, "auto_answer_after": 2}})
    h = Harness(tmp_path, config)
    two_phones(h)
    Trunk(h, call_id="c1").invite()
    (invite,) = [m for m in h.take(5101) if isinstance(m, Request)]
    assert invite.headers.get("call-info") == "<sip:hotline.local>;answer-after=2"
    assert "info=alert-autoanswer" in (invite.headers.get("alert-info") or "")
    assert invite.headers.get("answer-mode") == "Auto"
    Trunk(h, port=5092, call_id="c2").invite()  # 1002 is not auto-answer
    (other,) = [m for m in h.take(5102) if isinstance(m, Request)]
    assert other.headers.get("call-info") is None and other.headers.get("answer-mode") is None


def ring_all_invites(h: Harness, phones: dict[int, Phone]) -> tuple[Trunk, dict[int, Request]]:
    """A trunk call to 9000 in a ring-all queue: the INVITE each phone got, each answered 180."""
    trunk = Trunk(h)
    trunk.invite()
    invites = {}
    for port, phone in phones.items():
        (invite,) = h.take(port)
        assert isinstance(invite, Request) and invite.method == "INVITE"
        phone.reply(invite, 180)
        invites[port] = invite
    return trunk, invites


def test_ring_all_rings_every_phone_and_the_first_answer_cancels_the_others(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, config_with(tmp_path, {"strategy": "ring_all"}))
    phones = two_phones(h)
    trunk, invites = ring_all_invites(h, phones)
    assert invites[5101].headers.get("x-hotline-call-id") == invites[5102].headers.get(
        "x-hotline-call-id"
    )
    phones[5102].reply(invites[5102], 200, sdp=True)
    assert [m.method for m in h.take(5102) if isinstance(m, Request)] == ["ACK"]
    (cancel,) = h.take(5101)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    phones[5101].reply(cancel, 200)
    phones[5101].reply(invites[5101], 487)
    assert [m.method for m in h.take(5101) if isinstance(m, Request)] == ["ACK"]
    assert [m.status for m in h.take(trunk.port) if isinstance(m, Response)][-1] == 200
    (row,) = h.cdr._db.execute("SELECT agent, answer FROM calls").fetchall()
    assert row["agent"] == "1002" and row["answer"] is not None
    log = h.cdr._db.execute("SELECT event, agent, data FROM queue_log ORDER BY id").fetchall()
    calls = [(r["event"], r["agent"]) for r in log if r["event"] != "AGENT_STATE"]
    assert calls == [
        ("ENTER", None),
        ("OFFER", "1001"),
        ("OFFER", "1002"),
        ("CONNECT", "1002"),
        ("RINGCANCELED", "1001"),
    ]
    assert '"answered_elsewhere"' in [r for r in log if r["event"] == "RINGCANCELED"][0]["data"]
    assert h.switch.acd.agent_state("1001").value == "idle"


def test_ring_all_a_phone_that_refuses_leaves_the_others_ringing(tmp_path: Path) -> None:
    h = Harness(tmp_path, config_with(tmp_path, {"strategy": "ring_all"}))
    phones = two_phones(h)
    trunk, invites = ring_all_invites(h, phones)
    phones[5101].reply(invites[5101], 486)
    assert [m.method for m in h.take(5101)] == ["ACK"]  # and no new INVITE (retry window)
    assert h.take(5102) == []  # still ringing, no CANCEL
    phones[5102].reply(invites[5102], 200, sdp=True)
    (row,) = h.cdr._db.execute("SELECT agent FROM calls").fetchall()
    assert row["agent"] == "1002"
