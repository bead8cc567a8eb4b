"""The running node's local control socket: agent state requests, calls the node places
on request, and live status.

`hotline agent …` and `hotline status` (softswitch/cli.py) talk to the node through a Unix
socket in its data directory (``DATA/hotline.sock``, mode 0600: only the node's own user).
The protocol is one JSON object per line each way:

    {"op": "agent", "agent": "1001", "action": "not_ready", "reason": "paperwork"}
    → {"ok": true, "agent": "1001", "state": "busy"}
    {"op": "agent", "agent": "1001", "action": "login", "queues": ["general"]}
    → {"ok": true, "agent": "1001", "state": "idle"}
    {"op": "callback", "number": "13800001111", "agent": "1001"}
    → {"ok": true, "call_id": "hl-1796000000-7"}
    {"op": "supervise", "supervisor": "1009", "agent": "1001", "mode": "monitor"}
    → {"ok": true, "call_id": "hl-1796000000-8"}
    {"op": "status"}
    → {"ok": true, "queues": [...], "agents": [...], "calls": 3}

A request that cannot be carried out gets ``{"ok": false, "error": "…"}`` and changes
nothing. `handle_request` is the pure part (the switch and `now` are parameters);
`ControlServer` is the asyncio server around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acd import AcdError

log = logging.getLogger("hotline.control")

#: Agent state requests (`Switch.agent_command`) and the `acd.Acd` methods they call.
AGENT_ACTIONS = {
    "ready": "agent_ready",
    "not_ready": "agent_not_ready",
    "break": "agent_break",
    "lock": "agent_lock",
    "unlock": "agent_unlock",
    "login": "agent_login",
    "logout": "agent_logout",
    "release": "",  # a supervisor's force release of the agent's call (not an engine input)
}
SOCKET_NAME = "hotline.sock"
MAX_REQUEST = 64 * 1024  # bytes of one request line
IDLE_TIMEOUT = 30.0  # seconds a client may stay silent
MAX_CLIENTS = 16  # connections at once; more are closed at once


def handle_request(switch: Any, request: object, now: float) -> dict[str, Any]:
    """The answer to one decoded request (see the module docstring)."""
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object"}
    op = request.get("op")
    if op == "status":
        return {"ok": True, **switch.live_status(now)}
    if op == "agent":
        agent, action = request.get("agent"), request.get("action")
        reason = request.get("reason", "")
        if not isinstance(agent, str) or not isinstance(action, str):
            return {"ok": False, "error": "agent requests need `agent` and `action` strings"}
        if not isinstance(reason, str):
            return {"ok": False, "error": "`reason` must be a string"}
        queues = request.get("queues")
        if queues is not None and (
            action != "login"
            or not isinstance(queues, list)
            or not all(isinstance(q, str) for q in queues)
        ):
            return {"ok": False, "error": "`queues` is a list of queue names, for login only"}
        try:
            state = switch.agent_command(agent, action, now, reason, queues)
        except (AcdError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}
        log.info("agent %s: %s%s from the control socket: now %s",
                 agent, action, f" ({reason})" if reason else "", state)  # fmt: skip
        return {"ok": True, "agent": agent, "state": state}
    if op == "callback":  # the node dials a callback task for an agent
        number, agent = request.get("number"), request.get("agent")
        if not isinstance(number, str) or not isinstance(agent, str):
            return {"ok": False, "error": "callback requests need `number` and `agent` strings"}
        return _node_call(switch.dial_callback, number, agent, now)
    if op == "supervise":  # the node rings a supervisor's phone into an agent's call
        sup, agent, mode = request.get("supervisor"), request.get("agent"), request.get("mode")
        if not all(isinstance(v, str) for v in (sup, agent, mode)):
            return {
                "ok": False, "error": "supervise requests need `supervisor`, `agent` and `mode`",
            }  # fmt: skip
        return _node_call(switch.supervise, sup, agent, mode, now)
    return {"ok": False, "error": f"unknown op {op!r} (status, agent, callback, supervise)"}


def _node_call(method: Callable[..., str], *args: Any) -> dict[str, Any]:
    """A call the node places on request: its call id, or why it was refused."""
    try:
        call_id = method(*args)
    except (AcdError, ValueError) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "call_id": call_id}


class ControlServer:
    """Serves `answer(request) -> reply` on ``DATA/hotline.sock`` until `close`."""

    def __init__(self, path: Path, answer: Callable[[object], dict[str, Any]]) -> None:
        self.path = path
        self.answer = answer
        self._server: asyncio.AbstractServer | None = None
        self._clients = 0

    async def start(self) -> None:
        """Listen; a stale socket file (left by a killed node) is replaced. Raises OSError
        (e.g. a path longer than a Unix socket address allows)."""
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)  # the socket file is created 0600
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
        except OSError:
            sock.close()
            raise
        self._server = await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_REQUEST)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except (TimeoutError, ValueError):  # idle, or a line over MAX_REQUEST
                    break
                if not line:
                    break
                try:
                    request = json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    reply: dict[str, Any] = {"ok": False, "error": f"not JSON: {exc}"}
                else:
                    try:
                        reply = self.answer(request)
                    except Exception:  # a bug must not take the node down
                        log.exception("control request %r failed", request)
                        reply = {"ok": False, "error": "internal error (see the node's log)"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients -= 1
            writer.close()


def request(data_dir: Path, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the node running on `data_dir` and return its reply (the CLI's
    side). Raises OSError when no node listens there."""
    path = data_dir / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data) if data else {"ok": False, "error": "the node closed the socket"}
    return reply if isinstance(reply, dict) else {"ok": False, "error": "bad reply"}
