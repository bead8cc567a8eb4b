"""IVR key response: RFC 4733 key press → first RTP packet of the next prompt, over loopback.

::

    python bench/ivr.py [--quick] [--callers N] [--keys-per-call N] [--seed N] [--json FILE]
                        [--systems hotline,engine,echo] [--keep]

Per system, N concurrent callers (a seeded asyncio load generator, plain UDP, uvloop when
installed) each place one call to 7000, latch symmetric RTP by sending PCMU silence every
20 ms, wait until they hear the menu (a 400 Hz tone), think for a seeded random time, press a
seeded random key 1–9 as an RFC 4733 event (RFC 4733 §2.5: a start packet with the marker bit,
continuation packets 20 ms apart with growing duration, then the end packet three times, one
SSRC and timestamp for the whole event) and time the first RTP packet of the next prompt: the
tone of that key (500 + 100·key Hz). Each packet is classified on its own (one DFT per
160-sample packet over the 10 candidate tones; a tone that fills ≥ 80 % of the packet's energy
names it), so the first packet of the prompt is the one that counts — a self-test on a known
stream checks that before every run. Receive times are the kernel's (SO_TIMESTAMPNS), send
times are read right before `sendto`, so the load generator's own scheduling is not in the
figure. Two figures per key: from the start packet and from the first end packet. hotline's
engine (media/src/rtp_telephone_event.c) reports the digit on the first end packet (or when a
new event starts, or 1 s after the last packet) and acts on the start packet only for barge-in
(it stops the prompt), so "from end" is the node's reaction time and "from start" adds the
length of the key press (--key-ms).

Systems, one after the other, each pinned to CPU 0 (the load generator on CPU 1):

- ``hotline``: `hotline serve` on a temporary copy of config/ whose dialplan.yaml routes 7000
  to the flow `bench`: a `menu` (a 10 s 400 Hz prompt, barge-in) whose keys 1–9 go to `play`
  nodes (0.5 s of the key's tone) that return to the menu;
- ``engine`` (reference): the same C RTP engine behind a minimal SIP UAS that plays the same
  prompts on the same events (bench/ivr_ref.py) — what hotline costs above its media engine;
- ``echo`` (floor): an asyncio UDP server that answers each end packet with one frame of the
  key's tone (bench/ivr_ref.py) — the load generator + kernel + one Python loop.

Everything is on 127.0.0.1; every wait is bounded; every child is ended at the end. Exit
status 1 when a key got no (or a wrong) response or a call failed, 2 when the bench could not
run. See bench/README.md and docs/loadtest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

if __package__ in (None, ""):
    # Run as a script: the repository root first, and not bench/ itself, whose ivr.py would
    # otherwise shadow the `ivr` package.
    _bench = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _bench]
    sys.path.insert(0, str(_bench.parent))

from bench.bhca import BenchError  # noqa: E402
from bench.bhca import free_udp_port as free_port  # noqa: E402
from bench.ivr_ref import FRAME, FS, LOOPBACK, MENU_HZ, TE_PT, key_hz, tone_pcm, ulaw_encode

REPO_ROOT = Path(__file__).resolve().parent.parent
NUMBER = "7000"
SYSTEMS = ("hotline", "engine", "echo")
ROLES = {
    "hotline": "system under test",
    "engine": "reference: same RTP engine, minimal SIP UAS, no IVR/call control/CDR",
    "echo": "floor: asyncio UDP echo of the end packet, no engine",
}
GOAL_P99_MS = 50.0  # the call-model issue's goal; the tenders ask < 1 s
MENU_SECONDS = 10.0
KEY_PROMPT_SECONDS = 0.5
MENU_RUN = 3  # consecutive menu-tone packets = "the caller hears the menu"
RATIO_MIN = 0.8  # share of a packet's energy in one candidate tone to name the packet
SILENCE_RMS = 30.0  # below this a packet is silence (the tones are at about -13 dBm0)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same
PACKET_NS = 20_000_000


# --- the tone classifier ------------------------------------------------------------------


class Classifier:
    """Names the tone of one PCMU packet: 0 the menu, 1..9 a key's prompt, -1 silence or other."""

    def __init__(self) -> None:
        from media import _dsp

        self.lut = np.frombuffer(_dsp.ulaw_decode(bytes(range(256))), "<i2").astype(np.float64)
        freqs = np.array([MENU_HZ] + [key_hz(d) for d in range(1, 10)])
        n = np.arange(FRAME)
        self.basis = np.exp(-2j * np.pi * np.outer(freqs, n) / FS)

    def classify(self, payload: bytes) -> int:
        n = len(payload)
        if n == 0:
            return -1
        x = self.lut[np.frombuffer(payload, np.uint8)]
        energy = float(x @ x)
        if energy < SILENCE_RMS**2 * n:
            return -1
        basis = self.basis if n == FRAME else self.basis[:, : min(n, FRAME)]
        power = np.abs(basis @ x[: basis.shape[1]]) ** 2
        best = int(np.argmax(power))
        return best if 2 * power[best] / (basis.shape[1] * energy) >= RATIO_MIN else -1


def self_test(classifier: Classifier, seed: int) -> dict:
    """Known streams through the classifier: silence or the menu, then a key tone from packet
    5 at a random level and phase. Aligned onsets must be named in their first packet; for
    onsets inside a packet the smallest covered share that was named is reported."""
    rng = np.random.default_rng([seed, 4733])
    aligned = late = false = 0
    named_min = 1.0
    for trial in range(400):
        digit = int(rng.integers(1, 10))
        before = trial % 2  # 0: silence before, 1: the menu tone right before (prompt switch)
        offset = 0 if trial < 200 else int(rng.integers(1, FRAME))
        amplitude = 32768 * 10 ** (rng.uniform(-30, -3) / 20)
        total = 12 * FRAME
        t = np.arange(total) / FS
        signal_ = np.zeros(total)
        onset = 5 * FRAME + offset
        if before:
            signal_[:onset] = amplitude * np.sin(2 * np.pi * MENU_HZ * t[:onset])
        phase = rng.uniform(0, 2 * np.pi)
        signal_[onset:] = amplitude * np.sin(2 * np.pi * key_hz(digit) * t[onset:] + phase)
        payload = ulaw_encode(np.clip(np.round(signal_), -32768, 32767).astype(np.int16))
        names = [
            classifier.classify(payload[i * FRAME : (i + 1) * FRAME]) for i in range(total // FRAME)
        ]
        first = next((i for i, name in enumerate(names) if name == digit), None)
        false += sum(1 for i, name in enumerate(names) if name not in (-1, 0, digit) or
                     (name == digit and i < 5) or (name == 0 and not before))  # fmt: skip
        if offset == 0:
            aligned += first == 5
            late += first != 5
        elif first == 5:
            named_min = min(named_min, (FRAME - offset) / FRAME)
    return {
        "aligned_trials": 200,
        "aligned_first_packet": aligned,
        "aligned_late": late,
        "false_names": false,
        "min_share_named": named_min,
    }


# --- prompts and hotline's configuration --------------------------------------------------


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(FS)
        out.writeframes(pcm.astype("<i2").tobytes())


def write_prompts(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_wav(directory / "menu.wav", tone_pcm(MENU_HZ, int(MENU_SECONDS * FS)))
    for d in range(1, 10):
        write_wav(directory / f"key{d}.wav", tone_pcm(key_hz(d), int(KEY_PROMPT_SECONDS * FS)))


def write_config(target: Path, rtp_ports: tuple[int, int]) -> None:
    """config/ with the bench dialplan and its own RTP port range."""
    shutil.copytree(REPO_ROOT / "config", target)
    write_prompts(target / "prompts")
    prompts = {"bench_menu": {"file": "prompts/menu.wav"}}
    nodes: dict[str, dict] = {
        "menu": {
            "type": "menu",
            "prompt": "bench_menu",
            "keys": {str(d): f"key{d}" for d in range(1, 10)},
            "timeout": 10.0,
            "retries": 10,
        }
    }
    for d in range(1, 10):
        prompts[f"bench_key{d}"] = {"file": f"prompts/key{d}.wav"}
        nodes[f"key{d}"] = {"type": "play", "prompt": f"bench_key{d}", "next": "menu"}
    dialplan = {
        "routes": [
            {"name": "bench", "match": {"called": {"exact": NUMBER}}, "action": {"flow": "bench"}}
        ],
        "default": {"respond": 404},
        "blacklist": {"respond": 603},
        "prompts": prompts,
        "flows": {
            "bench": {"start": "menu", "nodes": nodes},
            # queues.yaml of config/ names this flow; it is never entered here.
            "survey": {
                "start": "rate",
                "nodes": {"rate": {"type": "survey", "prompt": "bench_menu"}},
            },
        },
    }
    (target / "dialplan.yaml").write_text(yaml.safe_dump(dialplan, sort_keys=False))
    node_path = target / "node.yaml"
    node = yaml.safe_load(node_path.read_text())
    node.setdefault("media", {}).update(
        {"anchor": True, "rtp_ip": LOOPBACK, "port_min": rtp_ports[0], "port_max": rtp_ports[1]}
    )
    node_path.write_text(yaml.safe_dump(node, sort_keys=False))


# --- processes, ports, /proc --------------------------------------------------------------


def rtp_range(size: int) -> tuple[int, int]:
    """A random even-aligned range of RTP ports in 30000-59999, not checked port by port (the
    engine skips ports in use)."""
    base = random.SystemRandom().randrange(30000, 60000 - size, 2)
    return base, base + size - 1


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Child:
    """One process in its own session; `stop()` ends it (TERM, then KILL) by its own id."""

    def __init__(self, name: str, command: list[str], log: Path, cpu: int | None) -> None:
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
        self.name = name
        self.log_path = log
        self._log = log.open("ab")
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=str(REPO_ROOT),
                start_new_session=True,
            )
        except OSError as error:
            self._log.close()
            raise BenchError(f"cannot start {name}: {error}") from error

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


def sip_ready(port: int, child: Child, timeout: float) -> None:
    """OPTIONS until any SIP response arrives (the node is listening and serving)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        me = sock.getsockname()[1]
        cseq = 0
        while time.monotonic() < deadline:
            if not child.alive():
                raise BenchError(f"{child.name} exited:\n{child.tail()}")
            cseq += 1
            request = (
                f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {LOOPBACK}:{me};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
                f"From: <sip:bench@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
                f"To: <sip:{LOOPBACK}:{port}>\r\nCall-ID: ivr-ready-{me}\r\n"
                f"CSeq: {cseq} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), (LOOPBACK, port))
            sock.settimeout(0.25)
            with contextlib.suppress(TimeoutError):
                if sock.recv(65535).startswith(b"SIP/2.0 "):
                    return
    raise BenchError(f"{child.name} did not answer OPTIONS in {timeout:.0f} s:\n{child.tail()}")


def echo_ready(port: int, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        while time.monotonic() < deadline:
            if not child.alive():
                raise BenchError(f"{child.name} exited:\n{child.tail()}")
            sock.sendto(rtp_header(0, 0, 0, 1) + bytes([0xFF]) * FRAME, (LOOPBACK, port))
            sock.settimeout(0.25)
            with contextlib.suppress(TimeoutError):
                sock.recv(2048)
                return
    raise BenchError(f"{child.name} did not answer in {timeout:.0f} s:\n{child.tail()}")


# --- the load generator -------------------------------------------------------------------


def rtp_header(pt: int, seq: int, ts: int, ssrc: int, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, ssrc)


SILENCE = bytes([0xFF]) * FRAME  # PCMU digital silence


@dataclass
class Press:
    """One key press and what came back."""

    digit: int
    start_ns: int = 0
    end_ns: int = 0  # the first end packet
    response_ns: int = 0  # kernel receive time of the first packet of the key's prompt
    heard: int | None = None  # the tone of that packet (≠ digit: a wrong prompt)
    last_menu_ns: int = 0  # the last menu-tone packet received after the start packet


@dataclass
class Caller:
    index: int
    sock: socket.socket
    rtp_port: int
    ssrc: int
    seq: int = 0
    ts: int = 0
    remote: tuple[str, int] | None = None
    sending: bool = False  # the ticker sends silence
    in_event: bool = False
    mode: str = "idle"  # idle | menu | key
    menu_run: int = 0
    waiter: asyncio.Future | None = None
    press: Press | None = None
    received: int = 0
    # SIP
    call_id: str = ""
    from_tag: str = ""
    to_header: str = ""
    contact: str = ""
    sip_queue: asyncio.Queue | None = None
    ack: bytes | None = None
    remote_bye: bool = False

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq


@dataclass
class RunResult:
    system: str
    role: str
    callers: int
    calls_ok: int = 0
    calls_failed: int = 0
    keys_pressed: int = 0
    responses: int = 0
    missed: int = 0  # no prompt within --response-timeout
    wrong: int = 0  # another key's prompt
    menu_timeouts: int = 0  # the menu was never heard (call not set up or no audio)
    from_start_ms: list[float] = field(default_factory=list)
    from_end_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)
    cpu_percent: float | None = None
    wall_s: float = 0.0
    log_warnings: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return self.calls_failed + self.missed + self.wrong + self.menu_timeouts


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def header_map(lines: list[str]) -> dict[str, str]:
    compact = {
        "i": "call-id",
        "t": "to",
        "f": "from",
        "m": "contact",
        "v": "via",
        "l": "content-length",
    }
    out: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        out.setdefault(compact.get(key, key), value.strip())
    return out


class LoadGenerator:
    def __init__(self, args: argparse.Namespace, system: str, classifier: Classifier) -> None:
        self.args = args
        self.system = system
        self.classifier = classifier
        self.callers: list[Caller] = []
        self.by_call_id: dict[str, Caller] = {}
        self.result = RunResult(system, ROLES[system], args.callers)
        self.sip_sock: socket.socket | None = None
        self.sip_port = 0
        self.target: tuple[str, int] = (LOOPBACK, 0)  # node SIP, or the echo's RTP port
        self.running = True

    # ---- sockets
    def on_rtp(self, caller: Caller) -> None:
        sock = caller.sock
        space = socket.CMSG_SPACE(16)
        while True:
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(2048, space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            now_ns = 0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack_from("qq", value)
                    now_ns = sec * 1_000_000_000 + nsec
            if not now_ns:
                now_ns = time.time_ns()
            if len(data) < 12 or data[1] & 0x7F != 0:
                continue
            caller.received += 1
            if caller.mode == "idle":
                continue
            start = 12 + 4 * (data[0] & 0x0F)
            if data[0] & 0x10 and len(data) >= start + 4:
                start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
            name = self.classifier.classify(data[start:])
            if caller.mode == "menu":
                caller.menu_run = caller.menu_run + 1 if name == 0 else 0
                if caller.menu_run >= MENU_RUN:
                    caller.mode = "idle"
                    self.wake(caller, True)
            elif caller.mode == "key" and caller.press is not None:
                press = caller.press
                if name == 0:
                    if press.start_ns and now_ns > press.start_ns:
                        press.last_menu_ns = now_ns
                elif name > 0:
                    press.response_ns = now_ns
                    press.heard = name
                    caller.mode = "idle"
                    self.wake(caller, True)

    def wake(self, caller: Caller, value: object) -> None:
        if caller.waiter is not None and not caller.waiter.done():
            caller.waiter.set_result(value)

    def on_sip(self) -> None:
        assert self.sip_sock is not None
        while True:
            try:
                data = self.sip_sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("utf-8", "replace").split("\r\n")
            headers = header_map(lines[1:])
            caller = self.by_call_id.get(headers.get("call-id", ""))
            if caller is None:
                continue
            if lines[0].startswith("SIP/2.0 "):
                status = int(lines[0].split(" ", 2)[1])
                method = headers.get("cseq", "").split()[-1:] or [""]
                if method[0] == "INVITE" and status == 200 and caller.ack is not None:
                    self.send_sip(caller.ack)  # a retransmitted 200: ACK it again
                    continue
                assert caller.sip_queue is not None
                caller.sip_queue.put_nowait((status, method[0], headers, body))
            else:
                method = lines[0].split(" ", 1)[0]
                if method == "BYE":
                    caller.remote_bye = True
                    self.wake(caller, False)
                if method != "ACK":
                    reply = ["SIP/2.0 200 OK"]
                    for name in ("via", "from", "to", "call-id", "cseq"):
                        reply.append(f"{name.title()}: {headers.get(name, '')}")
                    self.send_sip(("\r\n".join(reply) + "\r\nContent-Length: 0\r\n\r\n").encode())

    def send_sip(self, data: bytes) -> None:
        assert self.sip_sock is not None
        with contextlib.suppress(BlockingIOError):
            self.sip_sock.sendto(data, self.target)

    # ---- SIP dialog of one caller
    def request(self, caller: Caller, method: str, cseq: int, uri: str, body: bytes = b"") -> bytes:
        branch = "z9hG4bK" + secrets.token_hex(8)
        to = caller.to_header or f"<sip:{NUMBER}@{LOOPBACK}:{self.target[1]}>"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.sip_port};branch={branch};rport",
            f"From: <sip:1390000{caller.index:04d}@{LOOPBACK}:{self.sip_port}>;tag={caller.from_tag}",
            f"To: {to}",
            f"Call-ID: {caller.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller{caller.index}@{LOOPBACK}:{self.sip_port}>",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def invite(self, caller: Caller) -> tuple[str, int] | None:
        sdp = (
            f"v=0\r\no=bench {caller.ssrc} 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\n"
            f"t=0 0\r\nm=audio {caller.rtp_port} RTP/AVP 0 {TE_PT}\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:{TE_PT} telephone-event/8000\r\na=fmtp:{TE_PT} 0-16\r\na=ptime:20\r\n"
            "a=sendrecv\r\n"
        ).encode()
        uri = f"sip:{NUMBER}@{LOOPBACK}:{self.target[1]}"
        invite = self.request(caller, "INVITE", 1, uri, sdp)
        assert caller.sip_queue is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        interval, provisional = 0.5, False
        self.send_sip(invite)
        while loop.time() < deadline:
            wait = (
                min(interval, deadline - loop.time()) if not provisional else deadline - loop.time()
            )
            try:
                status, method, headers, body = await asyncio.wait_for(caller.sip_queue.get(), wait)
            except TimeoutError:
                if not provisional:
                    interval = min(interval * 2, 4.0)
                    self.send_sip(invite)
                continue
            if method != "INVITE":
                continue
            if status < 200:
                provisional = True
                continue
            caller.to_header = headers.get("to", "")
            contact = headers.get("contact", "")
            caller.contact = (
                contact[contact.find("<") + 1 : contact.find(">")] if "<" in contact else uri
            )
            if status >= 300:
                self.result.errors.append(f"INVITE answered {status}")
                # ACK of a non-2xx final response: same branch as the INVITE (RFC 3261 §17.1.1.3)
                via = invite.split(b"\r\n")[1].decode()
                ack = self.request(caller, "ACK", 1, uri).decode().split("\r\n")
                ack[1] = via
                self.send_sip("\r\n".join(ack).encode())
                return None
            caller.ack = self.request(caller, "ACK", 1, caller.contact)
            self.send_sip(caller.ack)
            text = body.decode("ascii", "replace")
            address, port = LOOPBACK, 0
            for line in text.splitlines():
                if line.startswith("c=IN IP4 "):
                    address = line[9:].strip()
                elif line.startswith("m=audio "):
                    port = int(line.split()[1])
            if address != LOOPBACK or port == 0:
                self.result.errors.append(f"answer SDP not on {LOOPBACK}: {address}:{port}")
                return None
            return address, port
        self.result.errors.append("INVITE: no final response in 10 s")
        return None

    async def bye(self, caller: Caller) -> None:
        if caller.remote_bye or caller.ack is None:
            return
        assert caller.sip_queue is not None
        bye = self.request(caller, "BYE", 2, caller.contact)
        for wait in (0.5, 1.0, 2.0):
            self.send_sip(bye)
            try:
                while True:
                    status, method, _h, _b = await asyncio.wait_for(caller.sip_queue.get(), wait)
                    if method == "BYE" and status >= 200:
                        return
            except TimeoutError:
                continue

    # ---- media of one caller
    async def wait(self, caller: Caller, mode: str, timeout: float) -> bool:
        caller.waiter = asyncio.get_running_loop().create_future()
        caller.menu_run = 0
        caller.mode = mode
        try:
            return bool(await asyncio.wait_for(caller.waiter, timeout))
        except TimeoutError:
            return False
        finally:
            caller.mode = "idle"
            caller.waiter = None

    async def press_key(self, caller: Caller, digit: int) -> Press:
        """One RFC 4733 event: start (M bit), updates every 20 ms, three end packets."""
        loop = asyncio.get_running_loop()
        press = Press(digit)
        caller.press = press
        caller.waiter = loop.create_future()
        caller.mode = "key"
        caller.in_event = True
        assert caller.remote is not None
        ts = caller.ts
        updates = max(1, self.args.key_ms // 20)
        began = loop.time()
        try:
            for i in range(updates + 3):
                end = i >= updates
                duration = updates * 160 if end else (i + 1) * 160
                payload = bytes([digit, (0x80 if end else 0) | 10, duration >> 8, duration & 0xFF])
                packet = rtp_header(TE_PT, caller.next_seq(), ts, caller.ssrc, i == 0) + payload
                stamp = time.time_ns()
                with contextlib.suppress(BlockingIOError):
                    caller.sock.sendto(packet, caller.remote)
                if i == 0:
                    press.start_ns = stamp
                if i == updates:
                    press.end_ns = stamp
                await asyncio.sleep(max(0.0, began + (i + 1) * 0.02 - loop.time()))
        finally:
            caller.in_event = False
        try:
            if press.heard is None:
                await asyncio.wait_for(caller.waiter, self.args.response_timeout)
        except TimeoutError:
            pass
        finally:
            caller.mode = "idle"
            caller.waiter = None
            caller.press = None
        return press

    async def ticker(self) -> None:
        """PCMU silence every 20 ms for every caller with media (except during its key)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self.running:
            due += 0.02
            for caller in self.callers:
                if not caller.sending:
                    continue
                if not caller.in_event and caller.remote is not None:
                    packet = rtp_header(0, caller.next_seq(), caller.ts, caller.ssrc) + SILENCE
                    with contextlib.suppress(BlockingIOError, OSError):
                        caller.sock.sendto(packet, caller.remote)
                caller.ts = (caller.ts + FRAME) & 0xFFFFFFFF
            delay = due - loop.time()
            if delay < -0.1:
                due = loop.time()  # fell behind: resynchronise rather than burst
            await asyncio.sleep(max(0.0, delay))

    async def call(self, caller: Caller) -> None:
        args = self.args
        rng = random.Random(f"{args.seed}/{caller.index}")
        await asyncio.sleep(caller.index * args.ramp / max(1, args.callers))
        result = self.result
        if self.system == "echo":
            caller.remote = self.target
        else:
            caller.remote = await self.invite(caller)
            if caller.remote is None:
                result.calls_failed += 1
                return
        caller.sending = True
        ok = True
        try:
            for _ in range(args.keys_per_call):
                think = rng.uniform(args.think_min, args.think_max)
                digit = rng.randint(1, 9)
                if not await self.wait(caller, "menu", args.menu_timeout):
                    result.menu_timeouts += 1
                    ok = False
                    break
                await asyncio.sleep(think)
                press = await self.press_key(caller, digit)
                result.keys_pressed += 1
                if press.heard is None:
                    result.missed += 1
                    ok = False
                    continue
                if press.heard != digit:
                    result.wrong += 1
                    ok = False
                    continue
                result.responses += 1
                result.from_start_ms.append((press.response_ns - press.start_ns) / 1e6)
                result.from_end_ms.append((press.response_ns - press.end_ns) / 1e6)
                result.barge_in_ms.append(max(0, press.last_menu_ns - press.start_ns) / 1e6)
                if caller.remote_bye:
                    ok = False
                    break
        finally:
            caller.sending = False
            if self.system != "echo":
                await self.bye(caller)
        if caller.remote_bye:
            result.errors.append(f"caller {caller.index}: the node hung up")
        result.calls_ok += ok
        result.calls_failed += not ok

    async def run(self, target_port: int, pid: int) -> RunResult:
        loop = asyncio.get_running_loop()
        self.target = (LOOPBACK, target_port)
        if self.system != "echo":
            self.sip_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sip_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sip_sock.bind((LOOPBACK, 0))
            self.sip_sock.setblocking(False)
            self.sip_port = self.sip_sock.getsockname()[1]
            loop.add_reader(self.sip_sock.fileno(), self.on_sip)
        run_id = secrets.token_hex(3)
        for index in range(self.args.callers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((LOOPBACK, 0))
            sock.setblocking(False)
            caller = Caller(
                index,
                sock,
                sock.getsockname()[1],
                ssrc=random.Random(f"{self.args.seed}/ssrc/{index}").getrandbits(32),
                call_id=f"ivr-{run_id}-{index}@{LOOPBACK}",
                from_tag=secrets.token_hex(4),
                sip_queue=asyncio.Queue(),
            )
            self.callers.append(caller)
            self.by_call_id[caller.call_id] = caller
            loop.add_reader(sock.fileno(), self.on_rtp, caller)
        ticker = loop.create_task(self.ticker())
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self.call(c) for c in self.callers)), self.args.run_timeout
            )
        except TimeoutError:
            self.result.errors.append(
                f"run stopped at its deadline ({self.args.run_timeout:.0f} s)"
            )
            self.result.calls_failed = self.args.callers - self.result.calls_ok
        finally:
            wall = time.monotonic() - wall_before
            with contextlib.suppress(OSError, ValueError):
                self.result.cpu_percent = 100 * (cpu_seconds(pid) - cpu_before) / wall
            self.result.wall_s = wall
            self.running = False
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            for caller in self.callers:
                loop.remove_reader(caller.sock.fileno())
                caller.sock.close()
            if self.sip_sock is not None:
                loop.remove_reader(self.sip_sock.fileno())
                self.sip_sock.close()
        return self.result


# --- one system -----------------------------------------------------------------------------


def run_system(
    system: str, args: argparse.Namespace, workdir: Path, classifier: Classifier
) -> RunResult:
    cpu = 0 if args.pin else None
    python = sys.executable
    base = workdir / system
    base.mkdir()
    if system == "hotline":
        sip = free_port()
        write_config(base / "config", rtp_range(2000))
        command = [python, "-m", "softswitch.cli", "serve", "--config", str(base / "config"),
                   "--data", str(base / "data"), "--sip-listen", f"{LOOPBACK}:{sip}",
                   "--log-level", args.log_level]  # fmt: skip
        child = Child(system, command, base / "node.log", cpu)
        port = sip
    elif system == "engine":
        sip = free_port()
        write_prompts(base / "prompts")
        low, high = rtp_range(2000)
        command = [python, str(REPO_ROOT / "bench" / "ivr_ref.py"), "engine", "--sip", str(sip),
                   "--prompts", str(base / "prompts"), "--rtp-ports", f"{low}:{high}"]  # fmt: skip
        child = Child(system, command, base / "engine.log", cpu)
        port = sip
    else:
        port = free_port()
        command = [python, str(REPO_ROOT / "bench" / "ivr_ref.py"), "echo", "--rtp", str(port)]
        child = Child(system, command, base / "echo.log", cpu)
    try:
        if system == "echo":
            echo_ready(port, child, 20.0)
        else:
            sip_ready(port, child, 30.0)
        generator = LoadGenerator(args, system, classifier)
        result = run_loop(generator.run(port, child.pid))
        if not child.alive():
            result.errors.append(f"{system} exited during the run:\n{child.tail()}")
    finally:
        child.stop()
    with contextlib.suppress(OSError):
        text = child.log_path.read_text(errors="replace")
        result.log_warnings = sum(
            1 for line in text.splitlines() if " WARNING " in line or " ERROR " in line
        )
        if result.log_warnings:
            worst = [ln for ln in text.splitlines() if " ERROR " in ln or " WARNING " in ln]
            result.errors.append(
                f"{system} log: {result.log_warnings} warnings/errors, e.g. {worst[0]}"
            )
    return result


def run_loop(coroutine):  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# --- output ---------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary(result: RunResult) -> dict:
    out = {k: v for k, v in asdict(result).items() if not k.endswith("_ms")}
    for name in ("from_start_ms", "from_end_ms", "barge_in_ms"):
        values = getattr(result, name)
        out[name] = {
            "p50": percentile(values, 0.50),
            "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99),
            "max": max(values) if values else None,
            "samples": values,
        }
    return out


def print_table(results: list[RunResult], summaries: list[dict], args: argparse.Namespace) -> None:
    width = 14
    names = [r.system for r in results]
    print(f"{'':34s}" + "".join(f"{n:>{width}s}" for n in names))
    rows: list[tuple[str, list[str]]] = [
        ("callers", [str(r.callers) for r in results]),
        ("calls ok / failed", [f"{r.calls_ok}/{r.calls_failed}" for r in results]),
        ("keys pressed", [str(r.keys_pressed) for r in results]),
        ("responses measured", [str(r.responses) for r in results]),
        ("missed / wrong / no menu", [f"{r.missed}/{r.wrong}/{r.menu_timeouts}" for r in results]),
    ]
    for label, key in (("from key start", "from_start_ms"), ("from key end", "from_end_ms")):
        for stat in ("p50", "p95", "p99", "max"):
            rows.append((f"{label} {stat} ms", [fmt(s[key][stat]) for s in summaries]))
    rows.append(("barge-in p99 ms (menu stops)", [fmt(s["barge_in_ms"]["p99"]) for s in summaries]))
    rows.append(("CPU % of its core", [fmt(r.cpu_percent) for r in results]))
    rows.append(("run s", [f"{r.wall_s:.1f}" for r in results]))
    for label, cells in rows:
        print(f"{label:34s}" + "".join(f"{c:>{width}s}" for c in cells))
    by_name = dict(zip(names, summaries, strict=True))
    if "hotline" in by_name:
        hot = by_name["hotline"]["from_end_ms"]
        for ref in ("engine", "echo"):
            other = by_name.get(ref, {}).get("from_end_ms")
            if other and hot["p50"] and other["p50"]:
                print(
                    f"hotline / {ref} from key end: p50 x{hot['p50'] / other['p50']:.2f}, "
                    f"p99 x{hot['p99'] / other['p99']:.2f}"
                )
        if hot["p99"] is not None:
            verdict = "meets" if hot["p99"] < GOAL_P99_MS else "MISSES"
            print(
                f"hotline p99 from key end {hot['p99']:.2f} ms {verdict} the goal of "
                f"< {GOAL_P99_MS:.0f} ms (tenders: < 1 s)"
            )
    print(
        f"from key end: first end packet (E bit) → first packet of the key's prompt; hotline's "
        f"engine reports the digit on that packet and stops the menu on the start packet "
        f"(barge-in); from key start adds the {args.key_ms} ms key press"
    )
    for result in results:
        print(f"{result.system}: {result.role}")
        for error in result.errors[:5]:
            print(f"  ! {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10 callers, 1 key each (< 20 s)")
    parser.add_argument("--callers", type=int, help="concurrent callers (default 100)")
    parser.add_argument("--keys-per-call", type=int, help="keys each caller presses (default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--key-ms", type=int, default=100, help="length of each key press")
    parser.add_argument("--think-min", type=float, default=0.2)
    parser.add_argument("--think-max", type=float, default=1.2)
    parser.add_argument("--ramp", type=float, help="seconds over which the calls start")
    parser.add_argument("--response-timeout", type=float, default=2.0)
    parser.add_argument("--menu-timeout", type=float, default=5.0)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--log-level", default="WARNING", help="hotline's --log-level")
    parser.add_argument("--deadline", type=float, default=300.0, help="whole run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    args.callers = args.callers or (10 if args.quick else 100)
    args.keys_per_call = args.keys_per_call or (1 if args.quick else 5)
    args.ramp = args.ramp if args.ramp is not None else (0.2 if args.quick else 1.0)
    if not 1 <= args.callers <= 1000 or not 1 <= args.keys_per_call <= 100:
        parser.error("--callers 1..1000, --keys-per-call 1..100")
    if args.key_ms < 20 or args.think_min < 0 or args.think_max < args.think_min:
        parser.error("--key-ms >= 20, 0 <= --think-min <= --think-max")
    if args.think_max + args.key_ms / 1000 >= MENU_SECONDS:
        parser.error(f"--think-max must leave the key inside the {MENU_SECONDS:.0f} s menu")
    systems = args.systems.split(",")
    for name in systems:
        if name not in SYSTEMS:
            parser.error(f"unknown system {name!r}")
    per_key = args.menu_timeout + args.think_max + args.key_ms / 1000 + 0.1 + args.response_timeout
    args.run_timeout = args.ramp + 15.0 + args.keys_per_call * per_key
    pin = args.pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    args.pin = pin
    if pin:
        os.sched_setaffinity(0, {1})  # the load generator; the system runs on CPU 0

    started = time.monotonic()
    classifier = Classifier()
    test = self_test(classifier, args.seed)
    print(
        f"detector self-test: tone starting on a packet boundary named in its first packet "
        f"{test['aligned_first_packet']}/{test['aligned_trials']}, false names "
        f"{test['false_names']}; onset inside a packet: named there from "
        f"{100 * test['min_share_named']:.0f} % of it"
    )
    if test["aligned_late"] or test["false_names"]:
        print("detector self-test failed: the figures would lag or lie", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="hotline-ivr-bench-"))
    results: list[RunResult] = []
    code = 0
    try:
        for name in systems:
            left = args.deadline - (time.monotonic() - started)
            if left < args.run_timeout + 30:
                print(f"{name}: skipped, the overall deadline is near", file=sys.stderr)
                code = 2
                continue
            try:
                results.append(run_system(name, args, workdir, classifier))
            except BenchError as error:
                print(f"{name}: {error}", file=sys.stderr)
                code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 2
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not results:
        return 2
    summaries = [summary(r) for r in results]
    print(
        f"IVR key response, {args.callers} callers x {args.keys_per_call} keys, "
        f"key {args.key_ms} ms, think {args.think_min}-{args.think_max} s, seed {args.seed}, "
        f"pinned: {'system CPU 0, load CPU 1' if pin else 'no'}"
    )
    print_table(results, summaries, args)
    print(f"total {time.monotonic() - started:.1f} s")
    if args.json:
        document = {
            "callers": args.callers,
            "keys_per_call": args.keys_per_call,
            "key_ms": args.key_ms,
            "seed": args.seed,
            "pinned": pin,
            "goal_p99_ms": GOAL_P99_MS,
            "self_test": test,
            "systems": summaries,
        }
        Path(args.json).write_text(json.dumps(document, indent=2))
    if any(r.failures for r in results):
        code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
