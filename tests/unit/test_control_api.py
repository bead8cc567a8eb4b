"""The control socket's requests (agent states, live status) against a whole switch in
virtual time, and its server and client over a real Unix socket."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from sipflow import Harness, Phone, Trunk

from softswitch.cli import main as cli_main
from softswitch.control_api import ControlServer, handle_request, request
from softswitch.sip.message import Request


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def ask(h: Harness, **message: object) -> dict:
    reply = handle_request(h.switch, message, h.now)
    h._collect()
    return reply


def test_a_busy_agent_is_skipped_and_ready_again_takes_the_waiting_call(h: Harness) -> None:
    phone = Phone(h, "1001", 5101)
    assert phone.register().status == 200
    reply = ask(h, op="agent", agent="1001", action="not_ready", reason="paperwork")
    assert reply == {"ok": True, "agent": "1001", "state": "busy"}
    Trunk(h).invite()
    assert h.take(phone.port) == []  # 1001 is busy: the caller waits
    status = ask(h, op="status")
    (general,) = [q for q in status["queues"] if q["queue"] == "general"]
    assert general["waiting"] == 1 and general["agents"]["busy"] == 1
    (agent,) = [a for a in status["agents"] if a["agent_id"] == "1001"]
    assert (agent["state"], agent["reason"]) == ("busy", "paperwork")
    (never,) = [a for a in status["agents"] if a["agent_id"] == "1002"]
    assert (never["state"], never["seconds"]) == ("logged_out", None)  # no state change yet
    assert ask(h, op="agent", agent="1001", action="ready")["state"] == "ringing"
    (invite,) = h.take(phone.port)
    assert isinstance(invite, Request) and invite.method == "INVITE"
    rows = h.cdr._db.execute("SELECT data FROM queue_log WHERE event = 'AGENT_STATE'")
    assert any('"reason": "paperwork"' in r["data"] or '"reason":"paperwork"' in r["data"]
               for r in rows)  # fmt: skip


def test_bad_requests_get_a_clear_error_and_change_nothing(h: Harness) -> None:
    Phone(h, "1001", 5101).register()
    cases = [
        ({"op": "agent", "agent": "9999", "action": "ready"}, "9999"),
        ({"op": "agent", "agent": "1001", "action": "unlock"}, "idle"),
        ({"op": "agent", "agent": "1001", "action": "dance"}, "unknown agent action"),
        ({"op": "agent", "agent": "1001"}, "need `agent` and `action`"),
        ({"op": "agent", "agent": "1001", "action": "ready", "reason": 5}, "`reason`"),
        ({"op": "nope"}, "unknown op"),
    ]
    for message, words in cases:
        reply = ask(h, **message)
        assert reply["ok"] is False and words in reply["error"], (message, reply)
    assert handle_request(h.switch, ["not", "a", "dict"], h.now)["ok"] is False
    assert h.switch.acd.agent_state("1001").value == "idle"


def test_server_and_client_over_a_unix_socket(tmp_path: Path) -> None:
    seen: list[object] = []

    def answer(message: object) -> dict:
        seen.append(message)
        return {"ok": True, "echo": message}

    async def main() -> tuple[dict, bytes, dict]:
        server = ControlServer(tmp_path / "hotline.sock", answer)
        (tmp_path / "hotline.sock").touch()  # not a socket: left alone, bind fails
        with pytest.raises(OSError):
            await server.start()
        (tmp_path / "hotline.sock").unlink()
        await server.start()
        assert (tmp_path / "hotline.sock").stat().st_mode & 0o777 == 0o600
        loop = asyncio.get_running_loop()
        good = await loop.run_in_executor(None, request, tmp_path, {"op": "status"})

        def garbage() -> bytes:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(tmp_path / "hotline.sock"))
                sock.sendall(b"{not json\n")
                return sock.recv(4096)

        bad = await loop.run_in_executor(None, garbage)
        again = await loop.run_in_executor(None, request, tmp_path, {"op": "x"})
        await server.close()
        return good, bad, again

    good, bad, again = asyncio.run(main())
    assert good == {"ok": True, "echo": {"op": "status"}}
    assert json.loads(bad)["ok"] is False and "not JSON" in json.loads(bad)["error"]
    assert again["echo"] == {"op": "x"} and not (tmp_path / "hotline.sock").exists()


def test_cli_without_a_running_node_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["status", "--data", str(tmp_path)]) == 1
    assert cli_main(["agent", "not-ready", "1001", "--data", str(tmp_path)]) == 1
    assert "no running node answers" in capsys.readouterr().err
