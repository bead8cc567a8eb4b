"""Peers and signal tools for the IVR loopback tests (test_ivr*.py).

- `RtpCaller`: a carrier caller written here in Python, SIP over UDP and RTP from one socket
  each, that records every RTP packet the node sends, sends a continuous 20 ms PCMU/PCMA
  stream (silence unless told to say something), RFC 4733 key presses with proper timestamps,
  or in-band keys in the audio. It answers the node's BYE and can hang up itself. SIPp cannot
  hand the test the audio it received; this caller can.
- G.711 μ-law/A-law coding (numpy, independent of the engine under test: audioop is gone in
  Python 3.13 and media._dsp is the code under test), tones, DTMF tones, WAV reading,
  normalised cross-correlation and dominant-frequency measures.
- A PCMU RTP capture writer for SIPp's play_pcap_audio.

Everything binds 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import random
import re
import secrets
import select
import socket
import struct
import threading
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .harness import LOOPBACK, HarnessError, free_port

SAMPLE_RATE = 8000
FRAME = 160  # samples in 20 ms
# 0 dBm0 as a 16-bit sine amplitude (G.711 overloads at +3.14 dBm0, i.e. full scale).
DBM0 = 32767 * 10 ** (-3.14 / 20)
# ITU-T Q.23 key frequencies (Hz): row (low group) and column (high group).
DTMF_FREQUENCIES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
# RFC 4733 §3.2 event codes of the keys.
EVENT_CODES = {**{str(n): n for n in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14}
EVENT_CODES["D"] = 15


# -- G.711 -----------------------------------------------------------------------------------


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """ITU-T G.711 μ-law of 16-bit linear samples (bias 132 on 16 bits, bits inverted)."""
    x = np.clip(np.rint(pcm), -32768, 32767).astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.where(x < 0, ~x, x), 32635) + 132
    _fraction, exponent = np.frexp(magnitude.astype(np.float64))
    segment = exponent.astype(np.int32) - 8
    step = (magnitude >> (segment + 3)) & 0x0F
    return (~(sign | (segment << 4) | step) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(codes: bytes) -> np.ndarray:
    """G.711 μ-law codes to linear samples (float64, ±32124 at most)."""
    u = ~np.frombuffer(codes, dtype=np.uint8).astype(np.int32) & 0xFF
    segment = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + 0x84) << segment) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.float64)


def alaw_decode(codes: bytes) -> np.ndarray:
    """G.711 A-law codes to linear samples (float64, ±32256 at most)."""
    a = np.frombuffer(codes, dtype=np.uint8).astype(np.int32) ^ 0x55
    segment = (a >> 4) & 0x07
    step = a & 0x0F
    magnitude = np.where(
        segment == 0, (step << 4) + 8, ((step << 4) + 0x108) << np.maximum(segment - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.float64)


# -- signals ---------------------------------------------------------------------------------


def tone(frequency: float, seconds: float, level_dbm0: float = -10.0) -> np.ndarray:
    """A sine at `level_dbm0`, 16-bit scale."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return DBM0 * 10 ** (level_dbm0 / 20) * np.sin(2 * np.pi * frequency * t)


def dtmf_samples(digit: str, ms: int = 120, level_dbm0: float = -10.0) -> np.ndarray:
    """One key's two tones for `ms` milliseconds (no twist)."""
    low, high = DTMF_FREQUENCIES[digit]
    seconds = ms / 1000
    return tone(low, seconds, level_dbm0) + tone(high, seconds, level_dbm0)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE))


@dataclass(frozen=True)
class Wav:
    rate: int
    channels: int
    width: int
    samples: np.ndarray  # float64, first channel

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_wav(path: Path) -> Wav:
    """A 16-bit PCM WAV (any rate and channel count); raises wave.Error when invalid."""
    with wave.open(str(path), "rb") as handle:
        rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
        frames = handle.readframes(handle.getnframes())
    if width != 2:
        raise wave.Error(f"{path}: {8 * width}-bit samples, expected 16-bit")
    data = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    return Wav(rate, channels, width, data[::channels])


def correlation_peak(signal: np.ndarray, template: np.ndarray) -> tuple[float, int]:
    """The highest normalised cross-correlation of `template` with any equally long window of
    `signal` (1.0: the window is the template up to gain), and that window's offset.
    Windows with almost no energy (silence) are left out."""
    x = np.asarray(signal, dtype=np.float64)
    t = np.asarray(template, dtype=np.float64)
    n = len(t)
    if len(x) < n or n == 0:
        return 0.0, -1
    size = 1 << int(np.ceil(np.log2(len(x) + n)))
    spectrum = np.fft.rfft(x, size) * np.conj(np.fft.rfft(t, size))
    products = np.fft.irfft(spectrum, size)[: len(x) - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    window = energy[n:] - energy[:-n]
    t_norm = np.sqrt(np.sum(t * t))
    floor = 1e-3 * t_norm**2
    score = np.where(window > floor, products / (np.sqrt(np.maximum(window, floor)) * t_norm), 0)
    best = int(np.argmax(score))
    return float(score[best]), best


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """The frequency (Hz) of the strongest FFT bin (Hann window, DC left out)."""
    x = np.asarray(samples, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(x))


def tone_fraction(samples: np.ndarray, frequency: float, rate: int = SAMPLE_RATE) -> float:
    """The share of the signal's energy near `frequency`: within the Hann window's main lobe
    (two bins, at least 60 Hz, either side)."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) == 0:
        return 0.0
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    total = power[1:].sum()
    if total <= 0:
        return 0.0
    width = max(60.0, 2 * rate / len(x))
    return float(power[np.abs(freqs - frequency) <= width].sum() / total)


def rms_dbm0(samples: np.ndarray) -> float:
    x = np.asarray(samples, dtype=np.float64)
    if len(x) == 0:
        return -200.0
    rms = np.sqrt(np.mean(x * x))
    return float(20 * np.log10(max(rms, 1e-9) / (DBM0 / np.sqrt(2))))


# -- a PCMU capture for SIPp --------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_rtp_pcap(path: Path, payloads: Sequence[bytes], payload_type: int) -> None:
    """A libpcap file (Ethernet) of one RTP stream, 20 ms a packet; SIPp's play_pcap_audio
    rewrites its addresses and ports when it replays it."""
    src, dst = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 20])
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for index, payload in enumerate(payloads):
        rtp = struct.pack(
            "!BBHII", 0x80, (0x80 if index == 0 else 0) | payload_type, (1000 + index) & 0xFFFF,
            (80_000 + index * FRAME) & 0xFFFFFFFF, 0x1DB0CA11,
        ) + payload  # fmt: skip
        length = 8 + len(rtp)
        pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
        udp_sum = _checksum(pseudo + struct.pack("!HHHH", 40000, 50000, length, 0) + rtp)
        udp = struct.pack("!HHHH", 40000, 50000, length, udp_sum or 0xFFFF) + rtp
        fields = (0x45, 0, 20 + len(udp), index & 0xFFFF, 0x4000, 64, 17)
        header = struct.pack("!BBHHHBBH4s4s", *fields, 0, src, dst)
        ip = struct.pack("!BBHHHBBH4s4s", *fields, _checksum(header), src, dst) + udp
        frame = bytes.fromhex("020000000002 020000000001 0800") + ip
        micros = index * 20_000
        out.append(struct.pack("<IIII", 1_700_000_000 + micros // 10**6, micros % 10**6,
                               len(frame), len(frame)))  # fmt: skip
        out.append(frame)
    path.write_bytes(b"".join(out))


def write_inband_key_pcap(path: Path, digits: str) -> int:
    """PCMU RTP with `digits` as tones (120 ms on, 120 ms off, -10 dBm0) after 100 ms of
    silence; returns the packet count."""
    parts = [silence(0.1)]
    for digit in digits:
        parts += [dtmf_samples(digit, 120), silence(0.12)]
    parts.append(silence(0.1))
    pcm = np.concatenate(parts)
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME)])
    codes = ulaw_encode(pcm)
    frames = [codes[i : i + FRAME] for i in range(0, len(codes), FRAME)]
    write_rtp_pcap(path, frames, payload_type=0)
    return len(frames)


# -- SIP text --------------------------------------------------------------------------------

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length", "c": "content-type"}  # fmt: skip


@dataclass
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.first_line.split(" ", 2)[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        if self.is_response:
            return self.header("cseq").split()[-1].upper()
        return self.first_line.split(" ", 1)[0].upper()

    def header(self, name: str, default: str = "") -> str:
        values = self.all(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for n, v in self.headers if _COMPACT.get(n.lower(), n.lower()) == wanted]

    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


def parse_sip(data: bytes) -> SipMessage:
    head, _sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return SipMessage(lines[0], headers, body, data)


def _uri_in(value: str) -> str:
    match = re.search(r"<([^>]+)>", value)
    return match.group(1) if match else value.split(";")[0].strip()


def _tag(value: str) -> str:
    match = re.search(r";\s*tag=([^;>\s]+)", value)
    return match.group(1) if match else ""


@dataclass
class RtpPacket:
    at: float
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    source: tuple[str, int]


# -- the Python caller -----------------------------------------------------------------------


class RtpCaller:
    """A carrier caller with real RTP in both directions (see the module docstring).

    `offer` is the list of audio payload types offered (0 PCMU, 8 PCMA) in order;
    `telephone_event` the RFC 4733 payload type offered, or None for none (in-band keys only).
    `host` is its own address: 127.0.0.1, or ::1 for a carrier on IPv6 (SIP and `c=IN IP6`).
    """

    T1 = 0.5

    def __init__(
        self,
        node: str,
        *,
        called: str = "12345",
        caller: str = "13800138000",
        offer: Sequence[int] = (0,),
        telephone_event: int | None = 101,
        name: str = "caller",
        host: str = LOOPBACK,
    ) -> None:
        self.name = name
        self.host = host  # "::1": a carrier on IPv6 (then `node` is "[::1]:PORT")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        node_host, port = node.rsplit(":", 1)
        self.node_text = node  # host:port as in a URI ([::1]:5060)
        self.node = (node_host.strip("[]"), int(port))
        self.called = called
        self.caller = caller
        self.offer = tuple(offer)
        self.telephone_event = telephone_event
        self.sip = socket.socket(family, socket.SOCK_DGRAM)
        self.sip.bind((host, 0))
        self.sip_port = self.sip.getsockname()[1]
        self.local = f"[{host}]:{self.sip_port}" if ":" in host else f"{host}:{self.sip_port}"
        self.rtp = socket.socket(family, socket.SOCK_DGRAM)
        self.rtp_port = free_port("udp", span=2)
        self.rtp.bind((host, self.rtp_port))
        self.call_id = f"{secrets.token_hex(8)}@{LOOPBACK}"
        self.from_tag = secrets.token_hex(4)
        self.to_tag = ""
        self.remote_target = f"sip:{called}@{node}"
        self.route: list[str] = []
        self.invite_branch = ""
        self.cseq = 1
        self.answer: SipMessage | None = None
        self.answered_at: float | None = None
        self.remote_rtp: tuple[str, int] | None = None
        self.codec: int | None = None
        self.remote_event_pt: int | None = None
        self.bye_at: float | None = None
        self.hung_up_at: float | None = None
        self.messages: list[SipMessage] = []  # every SIP message received, in order
        self.sent: list[str] = []  # first lines of what this caller sent
        self.packets: list[RtpPacket] = []
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._sending = threading.Event()
        self._outgoing: list[tuple[str, object]] = []  # ("pcm", ndarray) | ("event", ...)
        self._sdp_version = 1
        self._reader = threading.Thread(target=self._read, name=f"{name}-rx", daemon=True)
        self._reader.start()
        self._sender: threading.Thread | None = None

    # -- SIP --------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.local

    @property
    def _addrtype(self) -> str:
        return "IP6" if ":" in self.host else "IP4"

    def _sdp(self) -> bytes:
        pts = [*self.offer, *([self.telephone_event] if self.telephone_event is not None else [])]
        names = {0: "PCMU/8000", 8: "PCMA/8000"}
        lines = [
            "v=0",
            f"o=caller 4242 {self._sdp_version} IN {self._addrtype} {self.host}",
            "s=-",
            f"c=IN {self._addrtype} {self.host}",
            "t=0 0",
            f"m=audio {self.rtp_port} RTP/AVP {' '.join(map(str, pts))}",
            *[f"a=rtpmap:{pt} {names[pt]}" for pt in self.offer],
        ]
        if self.telephone_event is not None:
            lines += [
                f"a=rtpmap:{self.telephone_event} telephone-event/8000",
                f"a=fmtp:{self.telephone_event} 0-16",
            ]
        lines += ["a=ptime:20", "a=sendrecv"]
        return ("\r\n".join(lines) + "\r\n").encode()

    def _request(self, method: str, branch: str, cseq: int, body: bytes = b"") -> bytes:
        uri = self.called_uri if method == "INVITE" and not self.to_tag else self.remote_target
        to = f"<sip:{self.called}@{self.node_text}>" + (
            f";tag={self.to_tag}" if self.to_tag else ""
        )
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.caller}@{self.local}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            *[f"Route: {route}" for route in self.route],
            f"Contact: <sip:{self.caller}@{self.local}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    @property
    def called_uri(self) -> str:
        return f"sip:{self.called}@{self.node_text}"

    def _send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        self.sent.append(data.split(b"\r\n", 1)[0].decode())
        self.sip.sendto(data, to or self.node)

    def _ack(self, response: SipMessage) -> None:
        """ACK a final response: a new transaction for 2xx (RFC 3261 §13.2.2.4), the INVITE's
        branch for others (§17.1.1.3)."""
        if 200 <= response.status < 300:
            data = self._request("ACK", "z9hG4bK" + secrets.token_hex(8), 1)
        else:
            to = response.header("to")
            data = (
                f"ACK {self.called_uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.local};branch={self.invite_branch};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:{self.caller}@{self.local}>;tag={self.from_tag}\r\n"
                f"To: {to}\r\nCall-ID: {self.call_id}\r\nCSeq: 1 ACK\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        self._send(data)

    def call(self, timeout: float = 8.0) -> SipMessage:
        """Send the INVITE and wait for its final response (ACKed here); the RTP stream starts
        with a 2xx. Raises HarnessError without a final response in time."""
        self.invite_branch = "z9hG4bK" + secrets.token_hex(8)
        invite = self._request("INVITE", self.invite_branch, 1, self._sdp())
        deadline = time.monotonic() + timeout
        interval = self.T1
        self._send(invite)
        next_resend = time.monotonic() + interval
        while True:
            final = self._find(lambda m: m.is_response and m.method == "INVITE" and m.status >= 200)
            if final is not None:
                return final
            now = time.monotonic()
            if now >= deadline:
                raise HarnessError(
                    f"{self.name}: no final response to the INVITE\n{self.describe()}"
                )
            provisional = self._find(lambda m: m.is_response and m.method == "INVITE")
            if provisional is None and now >= next_resend:
                self._send(invite)
                interval = min(interval * 2, 4.0)
                next_resend = now + interval
            with self._condition:
                self._condition.wait(timeout=0.05)

    def _find(self, predicate: Callable[[SipMessage], bool]) -> SipMessage | None:
        with self._condition:
            return next((m for m in self.messages if predicate(m)), None)

    def wait_bye(self, timeout: float) -> float:
        """Wait for the node's BYE (answered with 200 by the reader); its arrival time."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self.bye_at is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HarnessError(f"{self.name}: no BYE within {timeout} s\n{self.describe()}")
                self._condition.wait(remaining)
            return self.bye_at

    def hang_up(self, timeout: float = 5.0) -> int:
        """Send BYE (resent at T1 doubling) and return the status of its final response."""
        self.cseq += 1
        cseq = self.cseq
        bye = self._request("BYE", "z9hG4bK" + secrets.token_hex(8), cseq)
        self._stop_sending()
        self.hung_up_at = time.monotonic()
        deadline = time.monotonic() + timeout
        interval = self.T1
        self._send(bye)
        next_resend = time.monotonic() + interval

        def answered(m: SipMessage) -> bool:
            return (
                m.is_response
                and m.method == "BYE"
                and m.status >= 200
                and m.header("cseq").split()[0] == str(cseq)
            )

        while True:
            final = self._find(answered)
            if final is not None:
                return final.status
            now = time.monotonic()
            if now >= deadline:
                raise HarnessError(f"{self.name}: no answer to the BYE\n{self.describe()}")
            if now >= next_resend:
                self._send(bye)
                interval = min(interval * 2, 4.0)
                next_resend = now + interval
            with self._condition:
                self._condition.wait(timeout=0.05)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _w, _x = select.select([self.sip, self.rtp], [], [], 0.1)
            except (OSError, ValueError):
                return
            for sock in ready:
                try:
                    data, source = sock.recvfrom(65535)
                except OSError:
                    continue
                if sock is self.rtp:
                    self._on_rtp(data, source)
                else:
                    self._on_sip(data, source)

    def _on_rtp(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return  # not RTP (RTCP would be on the next port)
        csrc = data[0] & 0x0F
        offset = 12 + 4 * csrc
        if data[0] & 0x10 and len(data) >= offset + 4:
            offset += 4 + 4 * struct.unpack("!H", data[offset + 2 : offset + 4])[0]
        payload = data[offset:]
        if data[0] & 0x20 and payload:
            payload = payload[: -payload[-1]]
        _b0, b1, seq, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
        packet = RtpPacket(
            time.monotonic(), b1 & 0x7F, bool(b1 & 0x80), seq, timestamp, ssrc, payload, source
        )
        with self._condition:
            self.packets.append(packet)
            self._condition.notify_all()

    def _on_sip(self, data: bytes, source: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive
        message = parse_sip(data)
        if message.is_response:
            if message.method == "INVITE" and message.status >= 200:
                first = self._find(
                    lambda m: m.is_response and m.method == "INVITE" and m.status >= 200
                )
                if 200 <= message.status < 300 and first is None:
                    self._answered(message)
                self._ack(message)  # a retransmission is ACKed again
                if first is not None:
                    return
        else:
            self._answer_request(message, source)
        with self._condition:
            self.messages.append(message)
            self._condition.notify_all()

    def _answered(self, response: SipMessage) -> None:
        self.to_tag = _tag(response.header("to"))
        contact = response.header("contact")
        if contact:
            self.remote_target = _uri_in(contact)
        self.route = list(reversed(response.all("record-route")))
        self.answer = response
        sdp = response.body.decode(errors="replace")
        connection = re.search(r"^c=IN IP[46] (\S+)", sdp, re.MULTILINE)
        media = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)", sdp, re.MULTILINE)
        if connection and media:
            self.remote_rtp = (connection.group(1), int(media.group(1)))
            payload_types = [int(pt) for pt in media.group(2).split()]
            self.codec = next((pt for pt in payload_types if pt in (0, 8)), None)
            event = re.search(r"^a=rtpmap:(\d+) telephone-event/8000", sdp, re.MULTILINE)
            self.remote_event_pt = int(event.group(1)) if event else None
        self.answered_at = time.monotonic()
        self._start_sending()

    def _answer_request(self, request: SipMessage, source: tuple[str, int]) -> None:
        method = request.method
        if method == "ACK":
            return
        to = request.header("to")
        if not _tag(to):
            to += f";tag={self.from_tag}"
        body = b""
        if method in ("INVITE", "UPDATE") and request.body:
            self._sdp_version += 1
            body = self._sdp()
        lines = [
            "SIP/2.0 200 OK",
            *[f"Via: {via}" for via in request.all("via")],
            f"From: {request.header('from')}",
            f"To: {to}",
            f"Call-ID: {request.header('call-id')}",
            f"CSeq: {request.header('cseq')}",
            f"Contact: <sip:{self.caller}@{self.local}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        via = request.header("via")
        reply_to = source
        match = re.search(r"SIP/2.0/UDP ([\d.]+):(\d+)", via)
        if match and "rport" not in via:
            reply_to = (match.group(1), int(match.group(2)))
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode() + body, reply_to)
        if method == "BYE":
            self._stop_sending()
            with self._condition:
                if self.bye_at is None:
                    self.bye_at = time.monotonic()
                self._condition.notify_all()

    # -- RTP out ----------------------------------------------------------------------------

    def _start_sending(self) -> None:
        if self._sender is None and self.remote_rtp is not None and self.codec is not None:
            self._sending.set()
            self._sender = threading.Thread(
                target=self._send_rtp, name=f"{self.name}-tx", daemon=True
            )
            self._sender.start()

    def _stop_sending(self) -> None:
        self._sending.clear()

    def say(self, samples: np.ndarray) -> float:
        """Queue linear samples to send (in 20 ms frames); returns their duration in seconds."""
        with self._condition:
            self._outgoing.append(("pcm", np.asarray(samples, dtype=np.float64)))
        return len(samples) / SAMPLE_RATE

    def press(self, digit: str, ms: int = 160, inband: bool = False) -> None:
        """Press a key: RFC 4733 events (the negotiated payload type) or tones in the audio."""
        if inband:
            self.say(np.concatenate([dtmf_samples(digit, ms), silence(0.1)]))
            return
        if self.remote_event_pt is None:
            raise HarnessError(f"{self.name}: the node's answer has no telephone-event")
        with self._condition:
            self._outgoing.append(("event", (EVENT_CODES[digit], max(1, ms // 20))))

    def idle(self, timeout: float = 10.0) -> None:
        """Wait until everything queued by say/press has been sent."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._outgoing and time.monotonic() < deadline:
                self._condition.wait(0.02)

    def _encode(self, pcm: np.ndarray) -> bytes:
        if self.codec == 8:
            return alaw_encode(pcm)
        return ulaw_encode(pcm)

    def _send_rtp(self) -> None:
        assert self.remote_rtp is not None
        seq = random.randrange(1 << 16)
        timestamp = random.randrange(1 << 32)
        ssrc = random.randrange(1 << 32)
        silent = self._encode(np.zeros(FRAME))
        pending = np.zeros(0)
        event: list[tuple[bool, int, int, int]] = []  # (marker, code, duration, end)
        event_ts = 0
        first = True
        next_at = time.monotonic()
        while self._sending.is_set() and not self._stop.is_set():
            payload_type = self.codec or 0
            marker = first
            if not event and len(pending) == 0:
                with self._condition:
                    if self._outgoing:
                        kind, item = self._outgoing.pop(0)
                        if kind == "pcm":
                            pending = item  # type: ignore[assignment]
                        else:
                            code, frames = item  # type: ignore[misc]
                            event = [(n == 0, code, (n + 1) * FRAME, 0) for n in range(frames)]
                            event += [(False, code, frames * FRAME, 1)] * 3  # §2.5.1.4
                            event_ts = timestamp
                        self._condition.notify_all()
            if event:
                mark, code, duration, end = event.pop(0)
                payload_type = self.remote_event_pt or 101
                marker = mark
                body = struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
                header_ts = event_ts
            else:
                if len(pending):
                    chunk, pending = pending[:FRAME], pending[FRAME:]
                    chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk))])
                    body = self._encode(chunk)
                else:
                    body = silent
                header_ts = timestamp
            header = struct.pack(
                "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, seq, header_ts, ssrc
            )
            try:
                self.rtp.sendto(header + body, self.remote_rtp)
            except OSError:
                pass
            first = False
            seq = (seq + 1) & 0xFFFF
            timestamp = (timestamp + FRAME) & 0xFFFFFFFF
            next_at += 0.02
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:
                next_at = time.monotonic()  # fell far behind (loaded machine): resynchronise

    # -- RTP in -----------------------------------------------------------------------------

    def audio_packets(
        self, since: float | None = None, until: float | None = None
    ) -> list[RtpPacket]:
        with self._condition:
            packets = list(self.packets)
        return [
            p
            for p in packets
            if p.payload_type in (0, 8)
            and (since is None or p.at >= since)
            and (until is None or p.at < until)
        ]

    def audio(self, since: float | None = None, until: float | None = None) -> np.ndarray:
        """The audio received (PCMU/PCMA decoded), packets in arrival order, concatenated."""
        chunks = [
            ulaw_decode(p.payload) if p.payload_type == 0 else alaw_decode(p.payload)
            for p in self.audio_packets(since, until)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0)

    def wait_audio(self, seconds: float, since: float | None = None, timeout: float = 10.0) -> None:
        """Wait until `seconds` of audio arrived since `since` (default: the answer)."""
        start = since if since is not None else self.answered_at
        deadline = time.monotonic() + timeout
        while len(self.audio(start)) < seconds * SAMPLE_RATE:
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name}: {len(self.audio(start)) / SAMPLE_RATE:.2f} s of audio, "
                    f"not {seconds} s, within {timeout} s\n{self.describe()}"
                )
            time.sleep(0.02)

    def wait_tone(
        self,
        frequency: float,
        since: float | None = None,
        timeout: float = 10.0,
        frames: int = 5,
    ) -> float:
        """Wait until `frames` consecutive 20 ms packets since `since` carry mostly
        `frequency`; returns the arrival time of the last packet of that run."""
        start = since if since is not None else self.answered_at
        deadline = time.monotonic() + timeout
        checked = 0
        run = 0
        while True:
            packets = self.audio_packets(start)
            for packet in packets[checked:]:
                samples = (ulaw_decode if packet.payload_type == 0 else alaw_decode)(packet.payload)
                loud = rms_dbm0(samples) > -40
                run = run + 1 if loud and tone_fraction(samples, frequency) > 0.7 else 0
                if run >= frames:
                    return packet.at
            checked = len(packets)
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name}: no {frequency} Hz tone within {timeout} s\n{self.describe()}"
                )
            time.sleep(0.02)

    def wait_quiet_after_sound(
        self, since: float, quiet: float = 0.3, timeout: float = 10.0
    ) -> float:
        """Wait for audio, then for `quiet` seconds of silence (or no packets) after it; the
        arrival time of the last loud packet."""
        deadline = time.monotonic() + timeout
        while True:
            packets = self.audio_packets(since)
            loud = [
                p.at
                for p in packets
                if rms_dbm0((ulaw_decode if p.payload_type == 0 else alaw_decode)(p.payload)) > -45
            ]
            if loud and time.monotonic() - loud[-1] >= quiet:
                return loud[-1]
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.name}: sound did not stop within {timeout} s")
            time.sleep(0.05)

    # -- end --------------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self._sending.clear()
        if self._sender is not None:
            self._sender.join(timeout=1)
        self._reader.join(timeout=1)
        self.sip.close()
        self.rtp.close()

    def describe(self) -> str:
        with self._condition:
            received = [m.first_line for m in self.messages]
            packets = len(self.packets)
        return "\n".join(
            [
                f"{self.name}: Call-ID {self.call_id}, SIP {self.address}, RTP {self.rtp_port}",
                f"sent: {self.sent}",
                f"received: {received}",
                f"RTP packets received: {packets}; codec {self.codec}, remote {self.remote_rtp}",
            ]
        )


def alaw_encode(pcm: np.ndarray) -> bytes:
    """ITU-T G.711 A-law of 16-bit linear samples (even bits inverted)."""
    x = np.clip(np.rint(pcm), -32768, 32767).astype(np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(x < 0, ~x, x), 32767) >> 3  # 13-bit magnitude
    segment = np.zeros_like(magnitude)
    for n in range(1, 8):
        segment = np.where(magnitude >= (32 << (n - 1)), n, segment)
    step = np.where(segment == 0, magnitude >> 1, magnitude >> segment) & 0x0F
    return ((sign | (segment << 4) | step) ^ 0x55).astype(np.uint8).tobytes()


def wait_udp_bound(port: int, timeout: float = 5.0) -> None:
    """Wait until some process has bound UDP `port` (read from /proc/net/udp, Linux)."""
    table = Path("/proc/net/udp")
    if not table.exists():
        time.sleep(0.5)
        return
    wanted = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = table.read_text().splitlines()[1:]
        if any(len(row.split()) > 1 and row.split()[1].endswith(wanted) for row in rows):
            return
        time.sleep(0.02)
    raise HarnessError(f"nothing bound UDP port {port} within {timeout} s")
