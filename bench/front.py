"""Prototype of the Call-ID steering front of docs/performance.md's worker design (issue 12),
for bench/workers.py --front: a stateless proxy on one UDP port (RFC 3261 §16.11). Every
request that reaches it goes on to one of the worker nodes chosen by a hash of its Call-ID,
so a call's INVITE, ACK, BYE and their retransmissions always reach the same worker; it adds
its own Via on top (and records the sender's real address in the next one, RFC 3581), so the
worker's responses come back through it and it sends them on to that address. Requests a
worker sends itself (to agents, its BYE to the carrier) leave from the worker's own port and
are answered there.

It is a measurement prototype, not a product part: UDP only, Max-Forwards left alone, no
health checks of the workers. What it measures is what the part of the design that stays in
one process costs per message in Python.

    python bench/front.py --listen 127.0.0.1:5060 --worker 127.0.0.1:5070 --worker 127.0.0.1:5071
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
import zlib
from collections.abc import Sequence


def call_id(datagram: bytes) -> bytes | None:
    """The Call-ID value of a SIP message (long or compact form), or None."""
    lower = datagram.lower()
    for name in (b"\ncall-id:", b"\ni:"):
        start = lower.find(name)
        if start >= 0:
            start += len(name)
            end = datagram.find(b"\r\n", start)
            return datagram[start : end if end >= 0 else None].strip()
    return None


def worker_of(datagram: bytes, workers: int) -> int:
    value = call_id(datagram)
    return zlib.crc32(value) % workers if value else 0


def _header_line(datagram: bytes, lower: bytes, names: tuple[bytes, ...]) -> tuple[int, int]:
    """Start (after its CRLF) and end (at its CRLF) of the first line of a header, or (-1, -1)."""
    best = -1
    for name in names:
        found = lower.find(name)
        if found >= 0 and (best < 0 or found < best):
            best = found
    if best < 0:
        return -1, -1
    start = best + 2
    end = datagram.find(b"\r\n", start)
    return start, end


_VIA = (b"\r\nvia:", b"\r\nv:")


def stamp_request(datagram: bytes, source: tuple[str, int], front: bytes) -> bytes | None:
    """The request with the front's Via on top and the sender's address in the old top Via."""
    first_end = datagram.find(b"\r\n")
    lower = datagram.lower()
    start, end = _header_line(datagram, lower, _VIA)
    if first_end < 0 or start < 0 or end < 0:
        return None
    line = datagram[start:end]
    host, port = source
    mark = f";received={host};rport={port}".encode()
    if b";rport" in line.lower():
        line = line.replace(b";rport=", b";x-rport=").replace(b";rport", b"")
    comma = line.find(b",")  # several Vias in one line: mark the first
    line = line[:comma] + mark + line[comma:] if comma >= 0 else line + mark
    branch = b"z9hG4bKfr%08x" % zlib.crc32(line)
    via = b"Via: SIP/2.0/UDP " + front + b";branch=" + branch + b";rport"
    return (
        datagram[: first_end + 2] + via + b"\r\n" + datagram[first_end + 2 : start]
        + line + datagram[end:]
    )  # fmt: skip


def unstamp_response(datagram: bytes) -> tuple[bytes, tuple[str, int]] | None:
    """The response without the front's Via, and where the next Via says it goes."""
    lower = datagram.lower()
    start, end = _header_line(datagram, lower, _VIA)
    if start < 0 or end < 0:
        return None
    line = datagram[start:end]
    comma = line.find(b",")
    if comma >= 0:  # ours and the next in one line
        rest = b"Via: " + line[comma + 1 :].lstrip()
        out = datagram[:start] + rest + datagram[end:]
        nxt = rest
    else:
        out = datagram[:start] + datagram[end + 2 :]
        nstart, nend = _header_line(out, out.lower(), _VIA)
        if nstart < 0 or nend < 0:
            return None
        nxt = out[nstart:nend]
    params = dict((item.split(b"=", 1) + [b""])[:2] for item in nxt.split(b",")[0].split(b";")[1:])
    sent_by = nxt.split(b",")[0].split(b";")[0].split()[-1]
    host, _, port = sent_by.rpartition(b":")
    target_host = params.get(b"received") or host
    target_port = params.get(b"rport") or port or b"5060"
    return out, (target_host.decode(), int(target_port))


def serve(listen: tuple[str, int], workers: Sequence[tuple[str, int]], max_seconds: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(listen)
    sock.settimeout(0.5)
    front = f"{listen[0]}:{sock.getsockname()[1]}".encode()
    deadline = time.monotonic() + max_seconds
    requests = responses = dropped = 0
    count = len(workers)
    try:
        while time.monotonic() < deadline:
            try:
                data, source = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if data.startswith(b"SIP/2.0 "):
                back = unstamp_response(data)
                if back is None:
                    dropped += 1
                    continue
                sock.sendto(back[0], back[1])
                responses += 1
                continue
            stamped = stamp_request(data, source, front) if data.strip() else None
            if stamped is None:
                dropped += 1  # keep-alives, garbage
                continue
            sock.sendto(stamped, workers[worker_of(data, count)])
            requests += 1
    finally:  # SIGTERM (bench/workers.py ends it) raises SystemExit in the loop
        print(
            f"front: {requests} requests and {responses} responses forwarded, {dropped} dropped",
            flush=True,
        )
    return 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, type=_address, metavar="HOST:PORT")
    parser.add_argument("--worker", required=True, action="append", type=_address)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return serve(args.listen, args.worker, args.max_seconds)


if __name__ == "__main__":
    sys.exit(main())
