"""A bounded SIP flood from many loopback addresses (the load generator of bench/flood.py).

From `--sources` addresses 127.0.2.1 … 127.0.2.250, 127.0.3.1 … (Linux routes all of
127.0.0.0/8 to lo, and a UDP socket can bind to any of them) it sends, at `--rate` requests
per second in all for `--seconds`, a seeded mix of what a scanner or a password guesser
sends a softswitch:

- out-of-dialog INVITEs (a toll-fraud attempt: the node should refuse strangers, 403);
- REGISTERs for the users of `--users`; each 401 challenge is answered with a digest of a
  wrong password, so the node counts an authentication failure (RFC 7616 §3.4.1 MD5);
- OPTIONS (a scanner's ping).

Every request is sent once (a flood does not retransmit) on a non-blocking socket of its
source, and every answer is read, so the result says which share of the requests got any
response and with which status codes. After the sending time it keeps reading for `--drain`
seconds, then writes the result as JSON to `--out`. SIGTERM stops the sending early.

`Flood` is the sans-IO core (requests out, datagrams in, time a parameter); `run` is the
socket loop around it.

    python bench/flooder.py --target 127.0.0.1:5060 --sources 500 --rate 2000 \
        --seconds 30 --users 2000-2099 --out flood.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import re
import resource
import selectors
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
from bhca import percentile

KINDS = ("INVITE", "REGISTER", "OPTIONS")
AUTH = "REGISTER-auth"  # the second REGISTER, with a wrong digest, answering a 401
ADDRESSES_PER_OCTET = 250
MAX_SOURCES = ADDRESSES_PER_OCTET * 100  # 127.0.2.1 … 127.0.101.250
READS_PER_WAKEUP = 64  # datagrams read from one socket before looking at the others
MAX_PENDING_AUTH = 10_000  # 401s waiting for their wrong-digest answer (bounded memory)
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def source_addresses(count: int) -> list[str]:
    """`count` loopback addresses outside 127.0.0.x and 127.0.1.x: 127.0.2.1 … 127.0.2.250,
    127.0.3.1 …"""
    if not 1 <= count <= MAX_SOURCES:
        raise ValueError(f"sources must be 1 … {MAX_SOURCES}, got {count}")
    return [
        f"127.0.{2 + index // ADDRESSES_PER_OCTET}.{1 + index % ADDRESSES_PER_OCTET}"
        for index in range(count)
    ]


def parse_users(text: str) -> list[str]:
    """`"2000-2099"` (a numeric range) or `"alice,bob"` → the users the REGISTERs guess."""
    first, dash, last = text.partition("-")
    if dash and first.isdigit() and last.isdigit():
        if int(last) < int(first):
            raise ValueError(f"empty user range {text!r}")
        return [str(number) for number in range(int(first), int(last) + 1)]
    users = [user.strip() for user in text.split(",") if user.strip()]
    if not users:
        raise ValueError("no users given")
    return users


class Answer(msgspec.Struct, frozen=True):
    """What the flood reads of one SIP response."""

    status: int
    call_id: str
    cseq: int
    method: str
    challenges: tuple[str, ...] = ()  # WWW-Authenticate values


def read_answer(data: bytes) -> Answer | None:
    """The status line, Call-ID, CSeq and challenges of a SIP response (None if `data` is no
    response this flood can match)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    call_id, cseq, method, challenges = "", 0, "", []
    for line in head[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name in ("call-id", "i"):
            call_id = value
        elif name == "cseq":
            number, _, method = value.partition(" ")
            cseq = int(number) if number.isdigit() else 0
            method = method.strip()
        elif name == "www-authenticate":
            challenges.append(value)
    if not call_id or not cseq:
        return None
    return Answer(int(parts[1]), call_id, cseq, method, tuple(challenges))


def wrong_digest(
    challenge: str, user: str, uri: str, method: str, password: str, cnonce: str
) -> str | None:
    """An Authorization value answering `challenge` (MD5, RFC 7616 §3.4.1, qop=auth when
    offered) computed with `password`: well formed, so the node counts a real failure, not a
    malformed request. None when the challenge is not an MD5 digest challenge."""
    scheme, _, rest = challenge.partition(" ")
    params = {match[0].lower(): match[1] or match[2] for match in _PARAM.findall(rest)}
    if scheme.lower() != "digest" or params.get("algorithm", "MD5").upper() != "MD5":
        return None
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    qop = "auth" if "auth" in params.get("qop", "").split(",") else None
    if qop:
        nc = "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        tail = f', qop={qop}, nc={nc}, cnonce="{cnonce}"'
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
        tail = ""
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5{tail}'
    )


class Outgoing(msgspec.Struct, frozen=True):
    """One request to send: from which source (index), its bytes, its matching key."""

    source: int
    data: bytes
    key: tuple[str, int]
    kind: str


class FloodResult(msgspec.Struct, frozen=True):
    """What one flood sent and got back (bench/flood.py reads it from the JSON file)."""

    sources: int
    target_rate: float
    seconds: float  # time spent sending
    sent: dict[str, int]  # by kind (INVITE, REGISTER, REGISTER-auth, OPTIONS)
    answered: dict[str, int]  # requests of each kind that got at least one response
    codes: dict[str, int]  # status code -> responses (repeats included)
    codes_by_kind: dict[str, dict[str, int]]
    send_errors: int  # sends the kernel refused (buffer full …), not counted as sent
    stray_responses: int  # responses matching no request still waiting (repeats, late)
    answer_p50_ms: float | None
    answer_p95_ms: float | None

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_answered(self) -> int:
        return sum(self.answered.values())

    @property
    def answered_share(self) -> float | None:
        """Answered requests / sent requests (None when nothing was sent)."""
        return self.total_answered / self.total_sent if self.total_sent else None


class Flood:
    """The flood without sockets: `next_request(now)` gives the next request to send,
    `on_datagram(source, data, now)` takes an answer, `result()` sums up."""

    def __init__(
        self,
        target: tuple[str, int],
        sources: Sequence[tuple[str, int]],
        users: Sequence[str],
        seed: int = 1,
        mix: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        if not sources or not users:
            raise ValueError("a flood needs sources and users")
        if len(mix) != len(KINDS) or min(mix) < 0 or not sum(mix):
            raise ValueError(f"mix needs {len(KINDS)} weights >= 0, not all 0")
        self.target = target
        self.sources = list(sources)
        self.users = list(users)
        self.seed = seed
        self.mix = tuple(mix)
        self._rng = random.Random(seed)
        self._seq = 0
        self._next_source = 0
        self._pending: dict[tuple[str, int], tuple[str, float, int]] = {}  # kind, sent, seq
        self._challenged: deque[tuple[int, int, str]] = deque()  # source, seq, challenge
        self.sent = dict.fromkeys((*KINDS, AUTH), 0)
        self.answered = dict.fromkeys((*KINDS, AUTH), 0)
        self.codes_by_kind: dict[str, dict[str, int]] = {}
        self.send_errors = 0
        self.stray_responses = 0
        self._answer_ms: list[float] = []

    # -- requests --

    def next_request(self, now: float) -> Outgoing:
        """The next request: a wrong-digest answer to a waiting 401 first, else a new request
        of the seeded mix from the next source (round robin). Counted as sent."""
        if self._challenged:
            source, seq, challenge = self._challenged.popleft()
            out = self._register(source, seq, 2, challenge)
        else:
            kind = self._rng.choices(KINDS, weights=self.mix)[0]
            source = self._next_source
            self._next_source = (source + 1) % len(self.sources)
            self._seq += 1
            seq = self._seq
            if kind == "INVITE":
                out = self._invite(source, seq)
            elif kind == "REGISTER":
                out = self._register(source, seq, 1, None)
            else:
                out = self._options(source, seq)
        self._pending[out.key] = (out.kind, now, self._seq_of(out))
        self.sent[out.kind] += 1
        return out

    def unsent(self, out: Outgoing) -> None:
        """The socket refused `out`: it does not count as sent."""
        self._pending.pop(out.key, None)
        self.sent[out.kind] -= 1
        self.send_errors += 1

    def _seq_of(self, out: Outgoing) -> int:
        return int(out.key[0].split("-", 2)[1])

    def _call_id(self, seq: int, source: int) -> str:
        return f"flood{self.seed}-{seq}-{source}@{self.sources[source][0]}"

    def _head(self, method: str, uri: str, source: int, seq: int, cseq: int) -> list[str]:
        host, port = self.sources[source]
        return [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-flood-{seq}-{cseq};rport",
            "Max-Forwards: 70",
            f"Call-ID: {self._call_id(seq, source)}",
            f"CSeq: {cseq} {method}",
            "User-Agent: flooder",
        ]

    def _finish(self, lines: list[str], body: str = "") -> bytes:
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _invite(self, source: int, seq: int) -> Outgoing:
        host, port = self.sources[source]
        target = f"{self.target[0]}:{self.target[1]}"
        called = f"00972{seq % 10**8:08d}"  # international numbers: the toll-fraud pattern
        lines = self._head("INVITE", f"sip:{called}@{target}", source, seq, 1)
        lines += [
            f"From: <sip:{seq % 10**4:04d}@{host}>;tag=f{seq:x}",
            f"To: <sip:{called}@{target}>",
            f"Contact: <sip:flood@{host}:{port}>",
            "Content-Type: application/sdp",
        ]
        body = (
            f"v=0\r\no=- {seq} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        return Outgoing(
            source, self._finish(lines, body), (self._call_id(seq, source), 1), "INVITE"
        )

    def _register(self, source: int, seq: int, cseq: int, challenge: str | None) -> Outgoing:
        host, port = self.sources[source]
        user = self.users[seq % len(self.users)]
        uri = f"sip:{self.target[0]}:{self.target[1]}"
        lines = self._head("REGISTER", uri, source, seq, cseq)
        lines += [
            f"From: <sip:{user}@{self.target[0]}>;tag=r{seq:x}",
            f"To: <sip:{user}@{self.target[0]}>",
            f"Contact: <sip:{user}@{host}:{port}>",
            "Expires: 3600",
        ]
        if challenge is not None:
            value = wrong_digest(
                challenge, user, uri, "REGISTER", f"guess{seq}", f"{self.seed:x}{seq:x}"
            )
            if value is not None:
                lines.append(f"Authorization: {value}")
        kind = "REGISTER" if challenge is None else AUTH
        return Outgoing(source, self._finish(lines), (self._call_id(seq, source), cseq), kind)

    def _options(self, source: int, seq: int) -> Outgoing:
        host, _port = self.sources[source]
        target = f"{self.target[0]}:{self.target[1]}"
        lines = self._head("OPTIONS", f"sip:{target}", source, seq, 1)
        lines += [f"From: <sip:scan@{host}>;tag=o{seq:x}", f"To: <sip:{target}>"]
        return Outgoing(source, self._finish(lines), (self._call_id(seq, source), 1), "OPTIONS")

    # -- answers --

    def on_datagram(self, source: int, data: bytes, now: float) -> None:
        """A datagram arrived on `source`'s socket: count it; a 401 to a first REGISTER
        queues its wrong-digest answer."""
        answer = read_answer(data)
        if answer is None:
            self.stray_responses += 1
            return
        found = self._pending.pop((answer.call_id, answer.cseq), None)
        if found is None:
            self.stray_responses += 1
            return
        kind, sent_at, seq = found
        self.answered[kind] += 1
        self._answer_ms.append((now - sent_at) * 1000)
        codes = self.codes_by_kind.setdefault(kind, {})
        codes[str(answer.status)] = codes.get(str(answer.status), 0) + 1
        if kind == "REGISTER" and answer.status == 401 and answer.challenges:
            if len(self._challenged) < MAX_PENDING_AUTH:
                self._challenged.append((source, seq, answer.challenges[0]))

    def result(self, target_rate: float, seconds: float) -> FloodResult:
        codes: dict[str, int] = {}
        for by_code in self.codes_by_kind.values():
            for code, count in by_code.items():
                codes[code] = codes.get(code, 0) + count
        times = sorted(self._answer_ms)
        return FloodResult(
            sources=len(self.sources),
            target_rate=target_rate,
            seconds=round(seconds, 3),
            sent=dict(self.sent),
            answered=dict(self.answered),
            codes=dict(sorted(codes.items())),
            codes_by_kind=self.codes_by_kind,
            send_errors=self.send_errors,
            stray_responses=self.stray_responses,
            answer_p50_ms=percentile(times, 0.50),
            answer_p95_ms=percentile(times, 0.95),
        )


# --- sockets -------------------------------------------------------------------------------


def open_sockets(addresses: Sequence[str], target: tuple[str, int]) -> list[socket.socket]:
    """One non-blocking UDP socket per address, bound to it and connected to `target`.
    Raises OSError (with the address) when one cannot be bound."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = len(addresses) + 64
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise OSError(f"open file limit {hard} is below the {needed} this flood needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            try:
                sock.bind((address, 0))
            except OSError as error:
                raise OSError(f"cannot bind a UDP socket to {address}: {error}") from error
            sock.connect(target)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _read_ready(
    selector: selectors.BaseSelector, flood: Flood, timeout: float, clock: Callable[[], float]
) -> None:
    for key, _events in selector.select(max(0.0, timeout)):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        for _ in range(READS_PER_WAKEUP):
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP port unreachable: the node is gone; counted as stray
                flood.stray_responses += 1
                break
            flood.on_datagram(key.data, data, clock())


def run(
    flood: Flood,
    sockets: Sequence[socket.socket],
    rate: float,
    seconds: float,
    drain: float,
    stopping: Callable[[], bool],
) -> float:
    """Send at `rate` per second for `seconds` (or until `stopping()`), then read answers for
    `drain` seconds more; returns the time spent sending."""
    clock = time.monotonic
    selector = selectors.DefaultSelector()
    max_burst = max(1, int(rate * 0.05))  # after a stall, catch up over several wakeups
    try:
        for index, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, index)
        start = clock()
        end = start + seconds
        due_sent = 0
        while (now := clock()) < end and not stopping():
            due = min(int((now - start) * rate) + 1 - due_sent, max_burst)
            for _ in range(max(0, due)):
                out = flood.next_request(now)
                try:
                    sockets[out.source].send(out.data)
                except OSError:  # buffer full, or the node's port closed
                    flood.unsent(out)
                due_sent += 1
            _read_ready(selector, flood, start + due_sent / rate - clock(), clock)
        sending = clock() - start
        drain_end = clock() + drain
        while (left := drain_end - clock()) > 0:
            _read_ready(selector, flood, min(left, 0.05), clock)
        return sending
    finally:
        selector.close()


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A bounded SIP flood from loopback addresses.")
    parser.add_argument("--target", required=True, help="HOST:PORT of the node (UDP)")
    parser.add_argument("--sources", type=int, default=500, help="source addresses")
    parser.add_argument("--rate", type=float, default=2000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="time spent sending")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to read after")
    parser.add_argument("--users", default="2000-2099", help='"2000-2099" or "a,b": guessed')
    parser.add_argument("--mix", default="1:1:1", help="weights INVITE:REGISTER:OPTIONS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON result file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    host, _, port = args.target.rpartition(":")
    try:
        if not port.isdigit() or not 0 < args.rate <= 100_000 or not 0 < args.seconds <= 600:
            raise ValueError("need --target HOST:PORT, 0 < --rate <= 100000, 0 < --seconds <= 600")
        if not 0 <= args.drain <= 30:
            raise ValueError("--drain must be 0 … 30 s")
        target = (host, int(port))
        mix = [float(weight) for weight in args.mix.split(":")]
        addresses = source_addresses(args.sources)
        users = parse_users(args.users)
        sockets = open_sockets(addresses, target)
    except (ValueError, OSError) as error:
        print(f"flooder: {error}", file=sys.stderr)
        return 2
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    try:
        sources = [sock.getsockname() for sock in sockets]
        flood = Flood(target, sources, users, args.seed, mix)
        seconds = run(flood, sockets, args.rate, args.seconds, args.drain, lambda: bool(stop))
    except ValueError as error:
        print(f"flooder: {error}", file=sys.stderr)
        return 2
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
    result = flood.result(args.rate, seconds)
    Path(args.out).write_bytes(msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
