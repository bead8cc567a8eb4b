"""Kamailio 5.6 in front of the node as the carrier's SBC and the phones' edge proxy
(kamailio_sbc.py): a pjsua2 phone registers through it (Path, RFC 3327), the carrier's
calls come through it (Record-Route), and the node reaches the phone and ends calls along
the routes Kamailio put itself on. One node and one Kamailio serve the module; the trunk
ACL admits the SBC's address (127.0.0.2) only, so a carrier call the node routes came
through Kamailio. What Kamailio relayed is read from its own log, beside the calls' results.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import _register as register_peer
from .harness import CONFIG_DIR, HotlineNode, PjAgent, Sipp
from .ivr_peers import RtpCaller
from .kamailio_sbc import SBC_HOST, KamailioSbc, require_kamailio

SIPP_TIMEOUT = 20.0


def sbc_trunks() -> dict[str, object]:
    """trunks.yaml with the demo carrier's ACL narrowed to the SBC's address."""
    base = yaml.safe_load((CONFIG_DIR / "trunks.yaml").read_text(encoding="utf-8"))
    for trunk in base["trunks"]:
        trunk["acl"] = [f"{SBC_HOST}/32"]
    return base


@pytest.fixture(scope="module")
def hotline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HotlineNode]:
    require_kamailio()  # before a node is started for nothing
    node = HotlineNode(tmp_path_factory.mktemp("sbc-node"), name="node", trunks=sbc_trunks())
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def sbc(hotline: HotlineNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KamailioSbc]:
    proxy = KamailioSbc(hotline.address, tmp_path_factory.mktemp("kamailio"))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(autouse=True)
def diagnostics(request: pytest.FixtureRequest, hotline: HotlineNode, sbc: KamailioSbc) -> None:
    """A failed test's report shows the shared node's and Kamailio's log tails too."""
    register_peer(request, hotline)
    register_peer(request, sbc)


def register_through(pjagent: Callable[..., PjAgent], sbc: KamailioSbc, **kw: object) -> PjAgent:
    """Agent 1001 on pjsua2 with Kamailio as its registrar, its REGISTER saying
    `Supported: path` (pjsip 2.15 does not by itself); waits for the node's 200."""
    agent = pjagent(user="1001", registrar=sbc.address, extra_args=["--supported-path"], **kw)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    return agent


def saved_path(node: HotlineNode) -> list[str]:
    with sqlite3.connect(node.db_path) as db:
        rows = db.execute("SELECT path FROM bindings WHERE aor = '1001'").fetchall()
    return [hop for (path,) in rows for hop in json.loads(path)]


def test_phone_registered_through_kamailio_is_rung_through_its_path(
    hotline: HotlineNode,
    sbc: KamailioSbc,
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
) -> None:
    # pjsip 2.15 on its own does not say `Supported: path`: the node stores Kamailio's Path
    # all the same (registrar.path_without_support: accept, the default). That phone then
    # unregisters, so that the call below is offered to 1001.
    plain = pjagent(user="1002", registrar=sbc.address)
    assert plain.wait_for("registered", timeout=10)["code"] == 200
    plain.send("unregister")
    plain.wait_for("unregistered", timeout=10)
    agent = register_through(pjagent, sbc, log_level=5)
    # Kamailio added itself to Path; the node stored it and echoed it in the 200 to the
    # phone that supports it only (the first phone's 200 had none).
    hop = f"<sip:{SBC_HOST}:{sbc.port};lr;received="
    replies = [line for line in sbc.log_lines("REPLY") if "200 REGISTER" in line]
    assert replies and "path=[<null>]" in replies[0], replies
    sbc.wait_for_line("REPLY", hop)
    assert any(h.startswith(hop) for h in saved_path(hotline))
    assert "Path: <sip:" in agent.pj_log_path.read_text(encoding="utf-8", errors="replace")

    caller = sipp("uac_call", remote=sbc.address, service="9000", duration_ms=1000,
                  timeout=SIPP_TIMEOUT)  # fmt: skip
    caller.run()
    caller.check()
    incoming = agent.wait_for("incoming", timeout=5)
    assert incoming["request_uri"].startswith("sip:1001@127.0.0.1:")  # the Contact
    agent.wait_for("confirmed", timeout=5, call_id=incoming["call_id"])
    ended = agent.wait_for("disconnected", timeout=5, call_id=incoming["call_id"])
    assert ended["by"] == "remote"

    # The carrier's INVITE went through Kamailio to the node; the node's INVITE to the phone
    # came back to Kamailio carrying the stored Path as a preloaded Route.
    assert sbc.wait_for_line("RELAY-IN", "INVITE sip:9000@")
    node_invite = sbc.wait_for_line("RELAY-IN", "INVITE sip:1001@127.0.0.1:")
    assert f"from 127.0.0.1:{hotline.port} " in node_invite
    assert f"route=[{hop}" in node_invite
    # The caller hung up: its BYE, and the node's BYE to the phone, followed Record-Route.
    assert sbc.wait_for_line("LOOSE-ROUTED", "BYE to sip:1001@127.0.0.1:")
    (call,) = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 1 and rows[0]["end"] is not None, timeout=5
    )
    assert call["agent"] == "1001"
    assert call["disposition"] == "answered"
    assert call["hangup_side"] == "caller"


def test_the_nodes_bye_to_the_carrier_follows_kamailios_record_route(
    hotline: HotlineNode,
    sbc: KamailioSbc,
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
) -> None:
    agent = register_through(pjagent, sbc, hangup_after=1.0)
    caller = sipp("uac_call_callee_bye", remote=sbc.address, service="9000",
                  timeout=SIPP_TIMEOUT)  # fmt: skip
    caller.run()
    caller.check()  # SIPp got the BYE and answered it
    incoming = agent.wait_for("incoming", timeout=5)
    assert agent.wait_for("disconnected", timeout=5, call_id=incoming["call_id"])["by"] == "local"
    # The node's BYE to the carrier: to its Contact, through Kamailio by the route set.
    bye = sbc.wait_for_line("RELAY-IN", f"BYE sip:13800138000@127.0.0.1:{caller.port}")
    assert f"from 127.0.0.1:{hotline.port} " in bye
    assert f"route=[<sip:{SBC_HOST}:{sbc.port};lr" in bye
    assert sbc.wait_for_line("LOOSE-ROUTED", "BYE to sip:13800138000@")
    messages = Path(caller.work_dir).glob("*messages*")
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in messages)
    assert f"Via: SIP/2.0/UDP {SBC_HOST}:{sbc.port}" in text.split("BYE sip:", 1)[-1]
    rows = hotline.wait_for_rows(
        "calls", lambda rows: len(rows) == 2 and all(r["end"] is not None for r in rows)
    )
    assert sorted(r["hangup_side"] for r in rows) == ["agent", "caller"]


def test_behind_the_sbc_a_carrier_caller_numbered_like_an_agent_is_the_carriers_call(
    hotline: HotlineNode,
    sbc: KamailioSbc,
    pjagent: Callable[..., PjAgent],
    rtp_caller: Callable[..., RtpCaller],
) -> None:
    """Phones and the carrier share Kamailio's address and port, so the node tells a phone's
    own request by its Contact (the phone's registered one) as well as its From: a carrier
    caller whose number is the agent id 1001 reaches the queue (before: challenged with 407
    as if it were 1001's phone), and 1001's phone itself still calls as a phone."""
    agent = register_through(pjagent, sbc)
    before = len(hotline.cdr_rows("calls"))
    caller = rtp_caller(sbc.address, called="9000", caller="1001")
    assert caller.call().status == 200, caller.describe()
    incoming = agent.wait_for("incoming", timeout=5)
    assert incoming["from"].startswith('"1001"') or "sip:1001@" in incoming["from"]
    assert caller.hang_up() == 200
    agent.wait_for("disconnected", timeout=5, call_id=incoming["call_id"])
    # The phone dials agent 1002 (not registered) through the SBC: a phone call (its
    # digest answered), routed as the phone's, refused as 1002 is not reachable.
    agent.send(f"call sip:1002@{SBC_HOST}:{sbc.port}")
    rows = hotline.wait_for_rows(
        "calls",
        lambda rows: len(rows) == before + 2 and all(r["end"] is not None for r in rows),
        timeout=8,
    )
    carrier, phone = sorted(rows[before:], key=lambda r: r["start"])
    assert carrier["trunk"] == "carrier" and carrier["caller"] == "1001", carrier
    assert carrier["agent"] == "1001" and carrier["disposition"] == "answered", carrier
    assert (phone["route"] or "").startswith("phone:") and phone["caller"] == "1001", phone
