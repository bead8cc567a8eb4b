"""A linphone agent phone for loopback tests: a third SIP stack beside pjsua2 and baresip.

liblinphone (belle-sip, mediastreamer2, oRTP) shares no code with pjsip or libre. Debian 12's
``linphone-cli`` (5.1.65) ships ``linphone-daemon``, which runs the core headless; one
process per agent:

- its linphonerc (``--config``), log (``--log``), message database (``[storage] uri``) and
  ``HOME`` (call history and ZRTP caches under ``.local/share/linphone``) are in the agent's
  own directory. SIP listens on the ports reserved here only (``sip_port``,
  ``sip_tcp_port``, ``sip_tls_port``; 0 turns a transport off) with IPv6 off; belle-sip binds
  them on the wildcard address (5.1 has no bind-address setting) and puts 127.0.0.1, the
  address routed toward the node, in its Contact and SDP. RTP has one reserved port pair.
- there is no sound card here: mediastreamer2 finds only "ALSA Unknown: default" with no
  capabilities, and liblinphone then reads the call's audio from its file player (silent
  until told) and drops what it hears. `play()` (``incall-player-start``) sends a WAV,
  written here as a sine of the agent's own frequency, through the call's RTP session, so
  the caller's audio tells whom it hears.
- the control channel is the Unix socket of ``--pipe NAME``, which the daemon makes at
  ``/tmp/NAME`` (NAME may hold a '/': the agent's directory, when it lies under /tmp, is
  used so the socket sits with the rest). It takes one client; each command (one line, no
  newline needed) gets one response written at once: ``Status: Ok`` or ``Status: Error`` +
  ``Reason: …``, then an empty line and ``Key: value`` lines. While a client is connected the
  daemon queues its events (``call-state-changed`` with ``Event: LinphoneCallIncomingReceived``
  … and ``Id: N``, ``receiving-tone``, …) until ``pop-event`` takes them one by one; a thread
  here pops them every 50 ms. Registration has no event: `wait_registered` polls
  ``register-status``.
- linphone-daemon runs in its own session under ``timeout -s KILL`` (it quits by itself
  after ``max_seconds`` + 5 s at the latest) and is killed as a process group at the end of
  the test; the log and the events are shown in every failure message.

Commands used: ``register IDENTITY PROXY PASSWORD`` (answer ``Id: N``), ``register-status
N``, ``answer N``, ``call-pause N``, ``call-resume N``, ``dtmf DIGIT`` (RFC 4733 on the
current call by default), ``terminate N``, ``incall-player-start FILE N``, ``pop-event``,
``quit``. Calls are answered by command (`answer`), not by ``--auto-answer``, so a test sees
the incoming call before it is taken. ``call-stats`` is not used: during a call it kills
5.1.65 here (SIGSEGV). Over TLS, ``[sip] root_ca``, ``verify_server_certs``,
``verify_server_cn``, ``client_cert_chain`` and ``client_cert_key`` come in `extra_config`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .harness import (
    AgentError,
    _kill_process_group,
    free_port,
    read_tail,
    require_peer,
    take_event,
)

LINPHONE_BINARY = "linphone-daemon"
TONE_RATE = 8000
# Seconds after its own deadline that linphone-daemon is killed by timeout(1).
HARD_KILL_AFTER = 5
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
# How often events (pop-event) and the registration state are asked for.
POLL_INTERVAL = 0.05


@functools.cache
def linphone_available() -> bool:
    return shutil.which(LINPHONE_BINARY) is not None


def require_linphone() -> None:
    require_peer("linphone-daemon", linphone_available(), "apt-get install linphone-cli")


def parse_block(text: str) -> dict[str, str]:
    """``Key: value`` lines of a daemon response or event (the first of a repeated key)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def write_tone_wav(path: Path, frequency: float, seconds: float) -> Path:
    """A 16-bit 8 kHz mono sine WAV at about -10 dBm0, what `play()` sends."""
    t = np.arange(int(TONE_RATE * seconds)) / TONE_RATE
    samples = np.rint(7000 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(TONE_RATE)
        out.writeframes(samples.tobytes())
    return path


class LinphoneAgent:
    """One linphone-daemon registered as an agent (see the module docstring).

    `wait_for(event, …)` hands out each event once: two waits for
    ``LinphoneCallStreamsRunning`` return two different events.
    """

    _counter = itertools.count(1)

    def __init__(
        self,
        *,
        user: str,
        registrar: str,
        password: str | None = None,
        tone_hz: int = 1000,
        transport: Literal["udp", "tcp", "tls"] = "udp",
        max_seconds: int = 60,
        log_dir: Path | None = None,
        ready_timeout: float = 5.0,
        extra_config: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """`registrar`: the node's HOST:PORT for `transport`; `extra_config`: more
        linphonerc settings per section (e.g. ``{"sip": {"root_ca": PATH}}`` for TLS)."""
        self.user = user
        self.registrar = registrar
        self.password = password if password is not None else f"pw{user}"
        self.tone_hz = tone_hz
        self.transport = transport
        self.max_seconds = max_seconds
        self.ready_timeout = ready_timeout
        self.extra_config = extra_config or {}
        self.name = f"linphone-{user}-{next(self._counter)}"
        base = log_dir or Path(tempfile.mkdtemp(prefix="linphone-"))
        self.config_dir = (base / self.name).resolve()
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.config_dir / "linphone.log"
        self.stdout_path = self.config_dir / "stdout.log"
        self.sip_port = free_port("tcp" if transport != "udp" else "udp")
        self.rtp_port = free_port("udp", span=2)
        self.tone_path = write_tone_wav(self.config_dir / f"tone{tone_hz}.wav", tone_hz, 30)
        self.pipe_name = self._pipe_name()
        self.process: subprocess.Popen[bytes] | None = None
        self.register_id: str | None = None
        self._control: socket.socket | None = None
        self._lock = threading.Lock()  # one command at a time on the control socket
        self._condition = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._consumed: set[int] = set()
        self._closed = False
        self._poller: threading.Thread | None = None
        self._stdout: Any = None

    def _pipe_name(self) -> str:
        socket_path = self.config_dir / "control"
        with contextlib.suppress(ValueError):
            relative = socket_path.relative_to("/tmp")
            if len(str(socket_path)) <= SOCKET_PATH_MAX:
                return str(relative)
        return f"{self.name}-{time.monotonic_ns()}"

    @property
    def socket_path(self) -> Path:
        return Path("/tmp") / self.pipe_name

    @property
    def identity(self) -> str:
        return f"sip:{self.user}@{self.registrar}"

    @property
    def proxy(self) -> str:
        return f"sip:{self.registrar};transport={self.transport}"

    # -- life cycle -------------------------------------------------------------------------

    def _write_config(self) -> None:
        ports = {"udp": "0", "tcp": "0", "tls": "0"}
        ports[self.transport] = str(self.sip_port)
        sections: dict[str, dict[str, str]] = {
            "sip": {
                "sip_port": ports["udp"],
                "sip_tcp_port": ports["tcp"],
                "sip_tls_port": ports["tls"],
                "use_ipv6": "0",
                "guess_hostname": "1",
                "register_only_when_network_is_up": "0",
            },
            "rtp": {"audio_rtp_port": str(self.rtp_port), "video_rtp_port": "0"},
            "sound": {"echocancellation": "0"},
            "video": {"capture": "0", "display": "0"},
            "storage": {"uri": str(self.config_dir / "linphone.db")},
        }
        for section, settings in self.extra_config.items():
            sections.setdefault(section, {}).update(settings)
        text = "".join(
            f"[{section}]\n" + "".join(f"{key}={value}\n" for key, value in settings.items())
            for section, settings in sections.items()
        )
        (self.config_dir / "linphonerc").write_text(text, encoding="utf-8")
        (self.config_dir / "home" / ".local" / "share" / "linphone").mkdir(
            parents=True, exist_ok=True
        )

    def start(self) -> LinphoneAgent:
        """Start linphone-daemon, connect to its socket and register (see wait_registered)."""
        if self.process is not None:
            raise AgentError(f"{self.name} already started")
        self._write_config()
        self.socket_path.unlink(missing_ok=True)
        self._stdout = self.stdout_path.open("wb")
        command = [
            "timeout", "-s", "KILL", str(self.max_seconds + HARD_KILL_AFTER),
            LINPHONE_BINARY, "--config", str(self.config_dir / "linphonerc"),
            "--pipe", self.pipe_name, "--log", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(self.config_dir),
            env={"HOME": str(self.config_dir / "home"), "PATH": "/usr/bin:/bin"},
        )
        self._control = self._connect()
        self._poller = threading.Thread(target=self._poll_events, name=self.name, daemon=True)
        self._poller.start()
        answer = self.command(f"register {self.identity} {self.proxy} {self.password}")
        self.register_id = answer.get("Id")
        if not self.register_id:
            raise AgentError(f"{self.name}: register gave no Id: {answer}\n{self.describe()}")
        return self

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AgentError(f"{self.name}: exited before its socket\n{self.describe()}")
            try:
                control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                control.settimeout(3.0)
                control.connect(str(self.socket_path))
                return control
            except OSError:
                control.close()
                if time.monotonic() >= deadline:
                    raise AgentError(
                        f"{self.name}: no socket {self.socket_path} within "
                        f"{self.ready_timeout} s\n{self.describe()}"
                    ) from None
                time.sleep(0.05)

    def stop(self, grace: float = 2.0) -> int | None:
        """Ask the daemon to quit (it ends its calls), kill its group after `grace` s."""
        if self.process is None:
            return None
        self._closed = True
        if self._poller is not None:
            self._poller.join(timeout=2.0)
        if self.process.poll() is None and self._control is not None:
            with contextlib.suppress(AgentError):
                self.command("quit", timeout=1.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        returncode = _kill_process_group(self.process, grace)
        if self._control is not None:
            self._control.close()
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        self.socket_path.unlink(missing_ok=True)
        with self._condition:
            self._condition.notify_all()
        return returncode

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    # -- control ----------------------------------------------------------------------------

    def _exchange(self, line: str, timeout: float) -> str:
        assert self._control is not None
        self._control.settimeout(timeout)
        self._control.sendall(line.encode())
        data = self._control.recv(65536)
        if not data:
            raise OSError("the daemon closed its socket")
        # A response is one write; anything more that is already there belongs to it.
        self._control.settimeout(0.05)
        with contextlib.suppress(TimeoutError, BlockingIOError):
            while more := self._control.recv(65536):
                data += more
        return data.decode("utf-8", errors="replace")

    def command(self, line: str, timeout: float = 3.0, check: bool = True) -> dict[str, str]:
        """Run one daemon command; its response's fields (``Status``, ``Reason``, ``Id`` …).
        Raises AgentError when it fails (``Status: Error``, unless `check` is False) or gets
        no answer in `timeout` seconds."""
        if self._control is None:
            raise AgentError(f"{self.name}: not started, cannot send {line!r}")
        try:
            with self._lock:
                text = self._exchange(line, timeout)
        except OSError as error:
            raise AgentError(f"{self.name}: {line!r}: {error}\n{self.describe()}") from error
        fields = parse_block(text)
        fields["text"] = text
        if check and fields.get("Status") != "Ok":
            raise AgentError(f"{self.name}: {line!r} failed: {text!r}\n{self.describe()}")
        return fields

    def _poll_events(self) -> None:
        while not self._closed:
            try:
                fields = self.command("pop-event", timeout=2.0)
            except AgentError:
                if self.returncode is not None:
                    break
                time.sleep(POLL_INTERVAL)
                continue
            if "Event-type" in fields or "Event" in fields:
                fields["time"] = time.monotonic()  # type: ignore[assignment]
                with self._condition:
                    self._events.append(fields)
                    self._condition.notify_all()
            if fields.get("Size", "0") == "0":
                time.sleep(POLL_INTERVAL)
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def wait_registered(self, timeout: float = 5.0) -> str:
        """Poll ``register-status`` until the state is final; returns it
        (``LinphoneRegistrationOk``, ``LinphoneRegistrationFailed`` …)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.command(f"register-status {self.register_id}").get("State", "")
            if state in ("LinphoneRegistrationOk", "LinphoneRegistrationFailed"):
                return state
            time.sleep(POLL_INTERVAL)
        raise AgentError(f"{self.name}: registration still {state!r}\n{self.describe()}")

    def wait_for(self, event: str, timeout: float = 8.0, **match: Any) -> dict[str, Any]:
        """The first not yet returned event whose ``Event`` is `event` (a call state such as
        ``LinphoneCallIncomingReceived``) or whose ``Event-type`` is `event` (e.g.
        ``receiving-tone``), with fields matching `match`. AgentError after `timeout` s."""
        found = take_event(
            self._condition, self._events, self._consumed,
            lambda e: event in (e.get("Event"), e.get("Event-type")),
            match, timeout, lambda: self._closed,
        )  # fmt: skip
        if found is not None:
            return found
        why = "stopped" if self._closed else f"timed out after {timeout:.1f} s"
        raise AgentError(f"{self.name}: {why} waiting for {event!r} {match!r}\n{self.describe()}")

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        with self._condition:
            return [
                dict(e)
                for e in self._events
                if event is None or event in (e.get("Event"), e.get("Event-type"))
            ]

    def play(self, call_id: str) -> None:
        """Send the agent's tone through call `call_id` (30 s of it)."""
        self.command(f"incall-player-start {self.tone_path} {call_id}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def describe(self) -> str:
        with self._condition:
            events = "\n".join(
                " | ".join(f"{k}={v}" for k, v in e.items() if k != "text") for e in self._events
            )
        return "\n".join(
            [
                f"{self.name}: {self.identity} via {self.proxy}, SIP port {self.sip_port}, "
                f"directory {self.config_dir}",
                f"exit code: {self.returncode}",
                f"events:\n{events or '(none)'}",
                f"stdout: {read_tail(self.stdout_path, 10)}",
                f"log tail ({self.log_path}):\n{read_tail(self.log_path, 60)}",
            ]
        )
