"""What SRTP costs the media engine per packet: a stream relayed a → b, plain RTP against
SRTP unprotected on leg a and protected on leg b, measured in the same run.

    python bench/srtp.py [--packets 40000] [--rounds 3] [--json]

The sender (this process's main thread) pre-builds every packet (SRTP ones with pylibsrtp,
AES_CM_128_HMAC_SHA1_80) and sends them in bursts of 32 with a 1 ms pause, draining the
receiver between bursts. The figure is the CPU time of the engine's worker thread alone
(/proc/self/task/<tid>/stat, everything but the main thread), divided by the packets that
reached b; the SRTP run's extra over the plain run is one unprotect plus one protect.
Needs the extension built and pylibsrtp (the test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pylibsrtp  # noqa: E402

from media.engine import RtpEngine  # noqa: E402
from media.sdes import Crypto  # noqa: E402

LOCAL = "127.0.0.1"
PORTS = (16000, 16099)
SUITE = "AES_CM_128_HMAC_SHA1_80"


def worker_cpu_seconds() -> float:
    """CPU time of every thread of this process but the main one (the engine's worker)."""
    main = threading.main_thread().native_id
    ticks = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == main:
            continue
        with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def drain(sock: socket.socket) -> int:
    got = 0
    try:
        while True:
            sock.recv(2048)
            got += 1
    except BlockingIOError:
        return got


def run(packets: int, srtp: bool) -> dict:
    engine = RtpEngine(LOCAL, *PORTS)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((LOCAL, 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind((LOCAL, 0))
    try:
        _, port_a = engine.create_leg("a")
        engine.create_leg("b")
        engine.set_remote("a", LOCAL, tx.getsockname()[1], 0)
        engine.set_remote("b", LOCAL, rx.getsockname()[1], 0)
        engine.bridge("a", "b")
        plain = [
            struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, 160 * i, 0x5EED) + bytes(160)
            for i in range(packets)
        ]
        wire = plain
        if srtp:
            key_in, key_out = secrets.token_bytes(30), secrets.token_bytes(30)
            policy = pylibsrtp.Policy(key=key_in, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            sender = pylibsrtp.Session(policy)
            wire = [sender.protect(p) for p in plain]
            engine.set_srtp("a", Crypto(1, SUITE, key_in), None)
            engine.set_srtp("b", None, Crypto(1, SUITE, key_out))
        got = 0
        start = worker_cpu_seconds()
        for i, packet in enumerate(wire):
            tx.sendto(packet, (LOCAL, port_a))
            if i % 32 == 31:  # a burst the socket's default buffer holds
                time.sleep(0.001)
                got += drain(rx)
        time.sleep(0.3)
        got += drain(rx)
        cpu = worker_cpu_seconds() - start
        stats = engine.stats("a")
        failed = stats.srtp_auth_failed + stats.srtp_replayed + stats.srtp_failed
    finally:
        engine.close()
        rx.close()
        tx.close()
    return {
        "mode": "srtp" if srtp else "plain",
        "packets": packets,
        "relayed": got,
        "srtp_failed": failed,
        "worker_cpu_s": round(cpu, 4),
        "us_per_packet": round(cpu / max(got, 1) * 1e6, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=40000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run(args.packets, srtp) for _ in range(args.rounds) for srtp in (False, True)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'mode':<6} {'relayed':>9} {'failed':>7} {'worker CPU s':>13} {'µs/packet':>10}")
    for row in rows:
        print(
            f"{row['mode']:<6} {row['relayed']:>9} {row['srtp_failed']:>7} "
            f"{row['worker_cpu_s']:>13.3f} {row['us_per_packet']:>10.2f}"
        )
    best = {m: min(r["us_per_packet"] for r in rows if r["mode"] == m) for m in ("plain", "srtp")}
    print(f"SRTP adds {best['srtp'] - best['plain']:.2f} µs per relayed packet (best of rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
