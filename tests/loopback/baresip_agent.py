"""A baresip agent phone for loopback tests: a second SIP stack beside pjsua2.

pjsip (pjagent.py) and baresip (libre) share no code, so a behaviour both accept from the
node is not one stack's quirk. Debian's baresip 1.0.0 runs headless, one process per agent:

- its config directory (``-f DIR``) is written here: SIP on 127.0.0.1 (or ``host``, e.g.
  ``::1`` for a phone on IPv6: SIP and RTP then use IPv6 only) and a free port, RTP
  ports from a free block, only the modules a test needs (g711; ``ausine``, the phone's
  microphone, a sine of the agent's own frequency so the caller's audio tells who it hears;
  ``menu`` for the commands; ``ctrl_tcp``). No audio player is loaded: what the phone hears
  is decoded and dropped, or, with ``record=True``, written by the ``sndfile`` filter to
  ``dump-<time>-dec.wav`` in the config directory (`heard_wavs`).
- Everything listens on 127.0.0.1 (``host``; ctrl_tcp always on 127.0.0.1) except RTP: 1.0.0 binds its RTP/RTCP sockets to the
  wildcard address (src/stream.c, ``sa_init(&laddr, af)``; no setting changes it), on ports
  from the block reserved here, and announces 127.0.0.1 in its SDP. libre's DNS client also
  holds two unused wildcard sockets on ephemeral ports (no name is ever looked up).
- ``ctrl_tcp`` is the control channel: netstring-framed JSON both ways, commands
  ``{"command": "hold", "token": "7"}`` answered by ``{"response": true, "ok": …, "token":
  "7"}``, and UA events ``{"event": true, "type": "CALL_ESTABLISHED", "id": CALL-ID, …}``.
  It only sends events while a client is connected, so the account is created by the
  ``uanew`` command after connecting: no REGISTER outcome can be missed.
- baresip quits by itself after ``max_seconds`` (``-t``) and is killed 5 s later at the
  latest (``timeout -s KILL``); it runs in its own session and is killed as a process group
  at the end of the test; its log (with the SIP trace, ``-s``) is kept in the
  test's directory and shown in every failure message.

Commands of 1.0.0 (menu module and core) for `command()`: ``accept`` (with
``answer_mode="manual"``; the default answers by itself. 1.0.0 has no auto-answer on request:
it reads no ``Call-Info: …;answer-after``, ``Alert-Info`` or ``Answer-Mode`` and has no
``sip_autoanswer`` account parameter, all added in 1.1.0, so a manual account rings until
``accept`` whatever the INVITE asks), ``hangup``, ``hold``, ``resume``,
``transfer URI`` (blind: REFER; baresip reports the transferee's final NOTIFY as
``CALL_CLOSED`` "Call transfered" or ``CALL_TRANSFER_FAILED``, after which it drops the call),
``uanew``, ``quit``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from .harness import (
    LOOPBACK,
    AgentError,
    _kill_process_group,
    free_port,
    read_tail,
    require_peer,
    take_event,
)

BARESIP_BINARY = "baresip"
MODULE_DIR = Path("/usr/lib/baresip/modules")
# ausine produces 48 kHz stereo only; baresip resamples it to the codec's 8 kHz mono.
AUSINE_RATE, AUSINE_CHANNELS = 48000, 2
RTP_PORT_BLOCK = 8
# Seconds after its own -t deadline that baresip is killed by timeout(1).
HARD_KILL_AFTER = 5


@functools.cache
def baresip_available() -> bool:
    """baresip on PATH with the modules the driver loads."""
    modules = ("g711", "ausine", "menu", "ctrl_tcp", "sndfile")
    return shutil.which(BARESIP_BINARY) is not None and all(
        (MODULE_DIR / f"{name}.so").exists() for name in modules
    )


def require_baresip() -> None:
    require_peer("baresip", baresip_available(), "apt-get install baresip-core")


class NetstringReader:
    """Splits a byte stream into netstrings (``LEN:PAYLOAD,``), as ctrl_tcp frames JSON."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        payloads: list[bytes] = []
        while True:
            length, colon, rest = self._buffer.partition(b":")
            if not colon:
                return payloads
            if not length.isdigit():
                raise AgentError(f"ctrl_tcp: bad netstring header {self._buffer[:40]!r}")
            size = int(length)
            if len(rest) < size + 1:
                return payloads
            if rest[size : size + 1] != b",":
                raise AgentError(f"ctrl_tcp: netstring without ',' {self._buffer[:40]!r}")
            payloads.append(rest[:size])
            self._buffer = rest[size + 1 :]


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class BaresipAgent:
    """One headless baresip process registered as an agent (see the module docstring).

    `wait_for(type, …)` hands out each ctrl_tcp event once, like PjAgent.wait_for: two
    waits for CALL_ESTABLISHED return two different calls.
    """

    _counter = itertools.count(1)

    def __init__(
        self,
        *,
        user: str,
        registrar: str,
        password: str | None = None,
        tone_hz: int = 1000,
        answer_mode: Literal["auto", "manual"] = "auto",
        max_seconds: int = 60,
        log_dir: Path | None = None,
        ready_timeout: float = 5.0,
        host: str = LOOPBACK,
        record: bool = False,
        transport: Literal["udp", "tcp", "tls"] = "udp",
        extra_config: tuple[tuple[str, str], ...] = (),
        account_params: str = "",
    ) -> None:
        """`transport`: how the account reaches the registrar (`;transport=tls` in its AOR);
        `extra_config`: more config lines (e.g. ``("sip_cafile", PATH)`` for TLS);
        `account_params`: more account parameters (e.g. ``;mediaenc=srtp-mand``)."""
        self.account_params = account_params
        self.user = user
        self.host = host  # its SIP and RTP address: "::1" for a phone on IPv6
        # sndfile: each call's decoded audio (what the phone hears) goes to a WAV file
        self.record = record
        self.transport = transport
        self.extra_config = extra_config
        self.password = password if password is not None else f"pw{user}"
        self.registrar = registrar
        self.tone_hz = tone_hz
        self.answer_mode = answer_mode
        self.max_seconds = max_seconds
        self.ready_timeout = ready_timeout
        self.name = f"baresip-{user}-{next(self._counter)}"
        base = log_dir or Path(tempfile.mkdtemp(prefix="baresip-"))
        self.config_dir = base / self.name
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.config_dir / "baresip.log"
        # UDP and TCP on sip_port; baresip adds SIP over TLS on sip_port + 1 (it cannot be
        # turned off in 1.0.0), so that port is reserved too.
        self.sip_port = free_port("both", span=2)
        self.ctrl_port = free_port("tcp")
        self.rtp_port = free_port("udp", span=RTP_PORT_BLOCK)
        self.process: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None
        self._events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._consumed: set[int] = set()
        self._closed = False
        self._condition = threading.Condition()
        self._tokens = itertools.count(1)
        self._reader: threading.Thread | None = None
        self._log_file: Any = None
        self._snd_link: Path | None = None  # short path for sndfile (see _write_config)

    @property
    def aor(self) -> str:
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.user}@{self.registrar}{suffix}"

    @property
    def address(self) -> str:
        return (
            f"[{self.host}]:{self.sip_port}" if ":" in self.host else f"{self.host}:{self.sip_port}"
        )

    # -- life cycle -------------------------------------------------------------------------

    def _write_config(self) -> None:
        last_rtp = self.rtp_port + RTP_PORT_BLOCK - 1
        settings = [
            ("poll_method", "epoll"),
            ("sip_listen", self.address),
            ("net_interface", self.host),
            ("audio_source", f"ausine,{self.tone_hz}"),
            ("ausrc_srate", str(AUSINE_RATE)),
            ("ausrc_channels", str(AUSINE_CHANNELS)),
            ("rtp_ports", f"{self.rtp_port}-{last_rtp}"),
            ("module_path", str(MODULE_DIR)),
            ("module", "g711.so"),
            ("module", "ausine.so"),
            ("module_app", "menu.so"),
            ("module_app", "ctrl_tcp.so"),
            ("ctrl_tcp_listen", f"{LOOPBACK}:{self.ctrl_port}"),
            *self.extra_config,
        ]
        if self.record:
            # sndfile builds `<snd_path>/dump-<time>-dec.wav` in a 128-byte buffer and cuts
            # what does not fit (the ".wav" first) without a word: pytest's deep temporary
            # paths (under xdist one level deeper) overflow it. A short link to the
            # configuration directory keeps the name whole; the files land in that directory.
            self._snd_link = Path(tempfile.mkdtemp(prefix="bsnd-")) / "d"
            self._snd_link.symlink_to(self.config_dir, target_is_directory=True)
            settings += [("module", "sndfile.so"), ("snd_path", str(self._snd_link))]
        lines = [f"{key}\t{value}" for key, value in settings]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # Accounts come from `uanew` once ctrl_tcp is connected (module docstring).
        (self.config_dir / "accounts").write_text("", encoding="utf-8")

    def start(self) -> BaresipAgent:
        """Start baresip, connect to ctrl_tcp and create the account (it registers then)."""
        if self.process is not None:
            raise AgentError(f"{self.name} already started")
        self._write_config()
        self._log_file = self.log_path.open("wb")
        # -t: baresip quits by itself (unregistering first, which can take up to 32 s when
        # the node is gone); timeout(1) kills it hard a little later whatever it is doing.
        # stdbuf: a line-buffered log, complete even after SIGKILL.
        command = [
            "timeout", "-s", "KILL", str(self.max_seconds + HARD_KILL_AFTER),
            "stdbuf", "-oL", "-eL",
            BARESIP_BINARY, "-f", str(self.config_dir), "-t", str(self.max_seconds), "-s",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(self.config_dir),
        )
        self._ctrl = self._connect()
        self._reader = threading.Thread(target=self._read, name=self.name, daemon=True)
        self._reader.start()
        params = (
            f"<{self.aor}>;auth_pass={self.password};answermode={self.answer_mode}"
            + self.account_params
        )
        self.command("uanew", params)
        return self

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AgentError(f"{self.name}: exited before ctrl_tcp listened\n{self.describe()}")
            try:
                return socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1.0)
            except OSError:
                if time.monotonic() >= deadline:
                    raise AgentError(
                        f"{self.name}: ctrl_tcp not listening on {self.ctrl_port} within "
                        f"{self.ready_timeout} s\n{self.describe()}"
                    ) from None
                time.sleep(0.05)

    def _read(self) -> None:
        assert self._ctrl is not None
        self._ctrl.settimeout(None)
        reader = NetstringReader()
        try:
            while data := self._ctrl.recv(65536):
                for payload in reader.feed(data):
                    message = json.loads(payload)
                    message["time"] = time.monotonic()
                    with self._condition:
                        if message.get("response"):
                            self._responses[str(message.get("token"))] = message
                        else:
                            self._events.append(message)
                        self._condition.notify_all()
        except (OSError, ValueError, AgentError):
            pass  # the connection ends with the process; describe() shows what was read
        finally:
            with self._condition:
                self._closed = True
                self._condition.notify_all()

    def stop(self, grace: float = 2.0) -> int | None:
        """Ask baresip to quit (it hangs up and unregisters), kill its group after `grace` s."""
        if self.process is None:
            return None
        if self.process.poll() is None and not self._closed:
            with contextlib.suppress(AgentError):
                self.command("quit", timeout=1.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        returncode = _kill_process_group(self.process, grace)
        if self._ctrl is not None:
            self._ctrl.close()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._snd_link is not None:
            shutil.rmtree(self._snd_link.parent, ignore_errors=True)  # the link, not its target
            self._snd_link = None
        return returncode

    def __enter__(self) -> BaresipAgent:
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def heard_wavs(self) -> list[Path]:
        """With `record=True`: the WAV files of what the phone heard (sndfile's
        ``dump-<time>-dec.wav``, one per call, complete once the call has ended)."""
        return sorted(self.config_dir.glob("dump-*-dec.wav"))

    # -- interaction ------------------------------------------------------------------------

    def command(self, name: str, params: str = "", timeout: float = 3.0) -> str:
        """Run one baresip command over ctrl_tcp; its output text. Raises AgentError when
        baresip reports failure or does not answer in `timeout` seconds."""
        if self._ctrl is None:
            raise AgentError(f"{self.name}: not started, cannot send {name!r}")
        token = str(next(self._tokens))
        request: dict[str, str] = {"command": name, "token": token}
        if params:
            request["params"] = params
        try:
            self._ctrl.sendall(netstring(json.dumps(request).encode()))
        except OSError as error:
            raise AgentError(f"{self.name}: cannot send {name!r}: {error}") from error
        deadline = time.monotonic() + timeout
        with self._condition:
            while token not in self._responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    if name == "quit" and self._closed:
                        return ""
                    raise AgentError(
                        f"{self.name}: no answer to {name!r} in {timeout} s\n{self.describe()}"
                    )
                self._condition.wait(min(remaining, 0.5))
            response = self._responses.pop(token)
        if not response.get("ok"):
            raise AgentError(f"{self.name}: {name} {params!r} failed: {response}")
        return str(response.get("data", ""))

    def wait_for(self, type_: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first not yet returned event of type `type_` (REGISTER_OK, CALL_ESTABLISHED …)
        whose fields match `match` (values or predicates). Raises AgentError after `timeout`
        seconds, or at once when the control connection has closed."""
        found = take_event(
            self._condition, self._events, self._consumed, lambda e: e.get("type") == type_,
            match, timeout, lambda: self._closed,
        )  # fmt: skip
        if found is not None:
            return found
        why = "closed ctrl_tcp" if self._closed else f"timed out after {timeout:.1f} s"
        raise AgentError(
            f"{self.name}: {why} waiting for {type_!r} matching {match!r}\n{self.describe()}"
        )

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Every event so far (consumed or not), optionally only those of type `type_`."""
        with self._condition:
            return [dict(e) for e in self._events if type_ is None or e.get("type") == type_]

    def describe(self) -> str:
        """Events and the log tail (SIP trace included), for failure messages."""
        with self._condition:
            events = "\n".join(json.dumps(e) for e in self._events) or "(none)"
        return "\n".join(
            [
                f"{self.name}: AOR {self.aor}, SIP {self.address}, config {self.config_dir}",
                f"exit code: {self.returncode}",
                f"events:\n{events}",
                f"log tail ({self.log_path}):\n{read_tail(self.log_path, 60)}",
            ]
        )
