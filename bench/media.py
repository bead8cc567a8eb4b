"""Media engine capacity: N concurrent G.711 calls relayed (and transcoded) over loopback.

    python bench/media.py [--calls 100,200,400] [--seconds 5] [--no-rtpengine] [--json]

Each call has two legs: the caller side speaks PCMU, the agent side PCMA, so every packet of
both directions is relayed *and* transcoded. A packet generator (a small C program compiled
on first use, one process with a sender and a receiver thread) plays both phones of every
call: each stream sends one 20 ms packet every 20 ms, phases spread evenly, and stamps the
payload with its stream id and packet number in sign bits (which G.711 transcoding keeps).
Arrival times come from the kernel (SO_TIMESTAMPNS), so the generator's own scheduling does
not count as the engine's jitter.

Per N and per system it reports: CPU % of the engine process over the run, packet loss,
added jitter p50/p99 (one-way delay minus the run's minimum delay), and marks the highest N
with < 0.1 % loss and < 5 ms p99 added jitter. The reference is rtpengine (Debian package
`rtpengine-daemon`), userspace only (`--table=-1`), one worker thread, driven over its ng
control protocol (bencode over UDP) with `codec-transcode` PCMA, measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOCAL = "127.0.0.1"
# Outside the kernel's ephemeral range (32768-60999 by default), so nothing else holds them;
# the two engines run one after the other and share their range.
ENGINE_PORTS = (16000, 31999)
RTPENGINE_PORTS = ENGINE_PORTS
CALLER_PORT, AGENT_PORT = 61000, 61002  # the generator's two sockets (RTCP goes to +1: unbound)
NG_PORT = 22223
LOSS_LIMIT = 0.001  # < 0.1 %
JITTER_LIMIT_MS = 5.0  # p99 added jitter

GENERATOR_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* usage: gen SECONDS CALLER_PORT AGENT_PORT STREAMS < "target_port law" lines (u or a).
 * Streams 2c (caller, sends from CALLER_PORT) and 2c+1 (agent, from AGENT_PORT) are the two
 * phones of call c; one socket per side keeps the generator's syscalls batched (sendmmsg,
 * recvmmsg) so that it disturbs the engine under test as little as possible. A packet is
 * routed right when it reaches the other side's socket from the engine port of the other
 * leg of the same call. */
#define BATCH 64
static int nstreams, npackets, fds[2];
static uint16_t *targets;
static char *laws;
static int64_t *sent_at;  /* [stream][k] realtime ns */
static int64_t *delays;   /* [stream][k] one-way delay, INT64_MIN = not received */
static long ndelays, duplicates, misrouted, sent, garbage, rtcp;
static volatile int sending_done;

static int64_t now_rt(void) {
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void build(uint8_t *pkt, int i, int k) {
    int u = laws[i] == 'u';
    pkt[0] = 0x80; pkt[1] = u ? 0 : 8;
    pkt[2] = (uint8_t)(k >> 8); pkt[3] = (uint8_t)k;
    uint32_t rtp_ts = (uint32_t)k * 160, ssrc = 0x10000 + i;
    pkt[4] = rtp_ts >> 24; pkt[5] = rtp_ts >> 16; pkt[6] = rtp_ts >> 8; pkt[7] = rtp_ts;
    pkt[8] = ssrc >> 24; pkt[9] = ssrc >> 16; pkt[10] = ssrc >> 8; pkt[11] = ssrc;
    uint32_t id = ((uint32_t)i << 16) | (uint32_t)k;
    for (int b = 0; b < 32; b++) { /* one bit per sample, in the sign: transcoding keeps it */
        int bit = (id >> (31 - b)) & 1;
        pkt[12 + b] = u ? (bit ? 0x80 : 0x00) : (bit ? 0xAA : 0x2A);
    }
    memset(pkt + 44, u ? 0xFF : 0xD5, 128);
}

static void flush(int side, struct mmsghdr *msgs, int *n) {
    int off = 0;
    while (off < *n) {
        int r = sendmmsg(fds[side], msgs + off, *n - off, 0);
        if (r <= 0) break;
        sent += r; off += r;
    }
    *n = 0;
}

static void *sender(void *arg) {
    int64_t t0 = *(int64_t *)arg;
    static uint8_t pkts[2][BATCH][172];
    static struct sockaddr_in to[2][BATCH];
    static struct iovec iov[2][BATCH];
    static struct mmsghdr msgs[2][BATCH];
    int queued[2] = {0, 0};
    for (long slot = 0; slot < (long)npackets * 20; slot++) {
        int64_t due = t0 + slot * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
        int k = (int)(slot / 20), phase = (int)(slot % 20);
        for (int i = phase * nstreams / 20; i < (phase + 1) * nstreams / 20; i++) {
            int side = i & 1, q = queued[side];
            build(pkts[side][q], i, k);
            to[side][q] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(targets[i])};
            to[side][q].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            iov[side][q] = (struct iovec){pkts[side][q], 172};
            msgs[side][q] = (struct mmsghdr){.msg_hdr = {.msg_name = &to[side][q],
                .msg_namelen = sizeof to[side][q], .msg_iov = &iov[side][q], .msg_iovlen = 1}};
            sent_at[(long)i * npackets + k] = now_rt();
            if (++queued[side] == BATCH) flush(side, msgs[side], &queued[side]);
        }
        flush(0, msgs[0], &queued[0]);
        flush(1, msgs[1], &queued[1]);
    }
    sending_done = 1;
    return NULL;
}

static void handle(int side, const uint8_t *buf, ssize_t len, uint16_t from_port, int64_t arrival) {
    if (len >= 8 && (buf[0] & 0xC0) == 0x80 && buf[1] >= 200 && buf[1] <= 204) { rtcp++; return; }
    if (len < 12 + 32 || (buf[0] & 0xC0) != 0x80) { garbage++; return; }
    size_t off = 12 + 4 * (buf[0] & 0x0f);
    if (buf[0] & 0x10) {
        if ((ssize_t)off + 4 > len) { garbage++; return; }
        off += 4 + 4 * ((buf[off + 2] << 8) | buf[off + 3]);
    }
    if ((ssize_t)off + 32 > len) { garbage++; return; }
    uint32_t id = 0;
    for (int b = 0; b < 32; b++) id = (id << 1) | (buf[off + b] >> 7);
    int origin = (int)(id >> 16), k = (int)(id & 0xffff);
    if (origin >= nstreams || k >= npackets) { garbage++; return; }
    if ((origin & 1) == side || from_port != targets[origin ^ 1]) { misrouted++; return; }
    long at = (long)origin * npackets + k;
    if (delays[at] != INT64_MIN) { duplicates++; return; }
    delays[at] = arrival - sent_at[at];
    ndelays++;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int seconds = atoi(argv[1]), ports[2] = {atoi(argv[2]), atoi(argv[3])};
    nstreams = atoi(argv[4]);
    npackets = seconds * 50;
    targets = calloc(nstreams, sizeof *targets); laws = calloc(nstreams, 1);
    sent_at = calloc((size_t)nstreams * npackets, sizeof *sent_at);
    delays = calloc((size_t)nstreams * npackets, sizeof *delays);
    for (long j = 0; j < (long)nstreams * npackets; j++) delays[j] = INT64_MIN;
    for (int i = 0; i < nstreams; i++) {
        unsigned port; char law;
        if (scanf("%u %c", &port, &law) != 2) return 3;
        targets[i] = (uint16_t)port; laws[i] = law;
    }
    int ep = epoll_create1(0);
    for (int side = 0; side < 2; side++) {
        fds[side] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int on = 1, buf = 16 << 20;
        setsockopt(fds[side], SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        if (setsockopt(fds[side], SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0)
            setsockopt(fds[side], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        if (setsockopt(fds[side], SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0)
            setsockopt(fds[side], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(ports[side])};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fds[side], (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 4; }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)side};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[side], &ev);
    }
    int64_t t0 = now_rt() + 200000000LL;
    pthread_t th; pthread_create(&th, NULL, sender, &t0);
    static uint8_t bufs[BATCH][512]; static char ctl[BATCH][64];
    static struct sockaddr_in from[BATCH];
    struct iovec iov[BATCH]; struct mmsghdr msgs[BATCH];
    int64_t stop_at = 0;
    for (;;) {
        if (sending_done && !stop_at) stop_at = now_rt() + 300000000LL;
        if (stop_at && now_rt() > stop_at) break;
        struct epoll_event ready[2];
        int n = epoll_wait(ep, ready, 2, 20);
        for (int r = 0; r < n; r++) {
            int side = (int)ready[r].data.u32;
            for (int j = 0; j < BATCH; j++) {
                iov[j] = (struct iovec){bufs[j], sizeof bufs[j]};
                msgs[j] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[j],
                    .msg_namelen = sizeof from[j], .msg_iov = &iov[j], .msg_iovlen = 1,
                    .msg_control = ctl[j], .msg_controllen = sizeof ctl[j]}};
            }
            int got = recvmmsg(fds[side], msgs, BATCH, MSG_DONTWAIT, NULL);
            for (int j = 0; j < got; j++) {
                int64_t arrival = now_rt();
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[j].msg_hdr); c; c = CMSG_NXTHDR(&msgs[j].msg_hdr, c))
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec ts; memcpy(&ts, CMSG_DATA(c), sizeof ts);
                        arrival = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
                    }
                handle(side, bufs[j], msgs[j].msg_len, ntohs(from[j].sin_port), arrival);
            }
        }
    }
    pthread_join(th, NULL);
    /* Added jitter: each packet's delay minus its stream's median delay (absolute), so a
     * constant extra latency (e.g. a transcoder's buffering) is latency, not jitter. */
    long ndev = 0, nall = 0;
    int64_t *deviation = calloc((size_t)nstreams * npackets + 1, sizeof *deviation);
    int64_t *all = calloc((size_t)nstreams * npackets + 1, sizeof *all);
    int64_t *one = calloc((size_t)npackets + 1, sizeof *one);
    for (int i = 0; i < nstreams; i++) {
        long m = 0;
        for (int k = 0; k < npackets; k++)
            if (delays[(long)i * npackets + k] != INT64_MIN) one[m++] = delays[(long)i * npackets + k];
        if (!m) continue;
        qsort(one, m, sizeof *one, cmp64);
        int64_t median = one[m / 2];
        for (long j = 0; j < m; j++) {
            int64_t d = one[j] - median;
            deviation[ndev++] = d < 0 ? -d : d;
            all[nall++] = one[j];
        }
    }
    qsort(deviation, ndev, sizeof *deviation, cmp64);
    qsort(all, nall, sizeof *all, cmp64);
    #define PCT(a, n, p) ((n) ? (a)[(long)(((n) - 1) * (p))] / 1e6 : 0.0)
    printf("{\"sent\": %ld, \"received\": %ld, \"duplicates\": %ld, \"misrouted\": %ld, "
           "\"garbage\": %ld, \"rtcp\": %ld, \"latency_p50_ms\": %.4f, \"latency_p99_ms\": %.4f, "
           "\"p50_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}\n", sent, ndelays, duplicates,
           misrouted, garbage, rtcp, PCT(all, nall, 0.5), PCT(all, nall, 0.99),
           PCT(deviation, ndev, 0.5), PCT(deviation, ndev, 0.99), PCT(deviation, ndev, 1.0));
    return 0;
}
"""


def build_generator(workdir: Path) -> Path:
    """Compile the generator once per source version (cached under the work dir)."""
    digest = hashlib.sha256(GENERATOR_C.encode()).hexdigest()[:12]
    binary = workdir / f"rtpgen-{digest}"
    if not binary.exists():
        source = workdir / f"rtpgen-{digest}.c"
        source.write_text(GENERATOR_C)
        done = subprocess.run(
            ["gcc", "-O2", "-pthread", "-o", str(binary), str(source)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot compile the packet generator:\n{done.stderr}")
    return binary


def run_generator(binary: Path, seconds: int, targets: list[tuple[int, str]]) -> dict:
    lines = "".join(f"{port} {law}\n" for port, law in targets)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [str(binary), str(seconds), str(CALLER_PORT), str(AGENT_PORT), str(len(targets))],
        input=lines,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"generator failed ({done.returncode}): {done.stderr.strip()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["generator_cpu_percent"] = 100.0 * cpu / seconds
    return result


# --- our engine -----------------------------------------------------------------------------
def bench_hotline(binary: Path, calls: int, seconds: int) -> dict:
    from media.engine import RtpEngine

    engine = RtpEngine(
        LOCAL, ENGINE_PORTS[0], ENGINE_PORTS[1], rtp_timeout=600, max_legs=2 * calls + 8
    )
    try:
        targets: list[tuple[int, str]] = []
        for c in range(calls):
            a, b = f"a{c}", f"b{c}"
            _, port_a = engine.create_leg(a)
            _, port_b = engine.create_leg(b)
            engine.set_remote(a, LOCAL, CALLER_PORT, 0, 20, None)  # PCMU
            engine.set_remote(b, LOCAL, AGENT_PORT, 8, 20, None)  # PCMA
            engine.bridge(a, b)
            targets += [(port_a, "u"), (port_b, "a")]
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = run_generator(binary, seconds, targets)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        result["cpu_percent"] = 100.0 * cpu / seconds
        result["ticks_missed"] = engine.info()["ticks_missed"]
    finally:
        engine.close()
    return result


# --- rtpengine over its ng protocol ---------------------------------------------------------
def bencode(value: object) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes, at: int = 0) -> tuple[object, int]:
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if kind in (b"l", b"d"):
        at += 1
        items: list[object] = []
        while data[at : at + 1] != b"e":
            item, at = bdecode(data, at)
            items.append(item)
        if kind == b"l":
            return items, at + 1
        return {items[i]: items[i + 1] for i in range(0, len(items), 2)}, at + 1
    colon = data.index(b":", at)
    length = int(data[at:colon])
    return data[colon + 1 : colon + 1 + length], colon + 1 + length


COOKIES = itertools.count(1)


class NgClient:
    """rtpengine's ng control protocol: "cookie bencoded-dict" datagrams over UDP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2.0)
        self.address = (LOCAL, port)

    def command(self, **fields: object) -> dict:
        # rtpengine caches replies by cookie (to answer retransmissions): never reuse one.
        cookie = b"%d_%d" % (os.getpid(), next(COOKIES))
        self.sock.sendto(cookie + b" " + bencode(fields), self.address)
        while True:
            reply = self.sock.recv(65535)
            got, _, body = reply.partition(b" ")
            if got == cookie:
                answer, _ = bdecode(body)
                assert isinstance(answer, dict)
                if answer.get(b"result") not in (b"ok", b"pong"):
                    raise RuntimeError(f"rtpengine {fields.get('command')}: {answer}")
                return answer

    def close(self) -> None:
        self.sock.close()


def sdp(port: int, pt: int) -> str:
    name = {0: "PCMU", 8: "PCMA"}[pt]
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def sdp_port(body: bytes) -> int:
    match = re.search(rb"m=audio (\d+) ", body)
    if not match:
        raise RuntimeError(f"no audio port in rtpengine's SDP: {body!r}")
    return int(match.group(1))


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_rtpengine(binary: str, workdir: Path) -> subprocess.Popen:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # a leftover rtpengine would share the port (SO_REUSEPORT) and split our commands
        probe.bind((LOCAL, NG_PORT))
    except OSError as exc:
        raise RuntimeError(f"ng port {NG_PORT} is busy: {exc}") from exc
    finally:
        probe.close()
    log = (workdir / "rtpengine.log").open("ab")
    proc = subprocess.Popen(
        [
            binary,
            "--config-file=none",
            "--table=-1",  # userspace only, no kernel forwarding
            f"--interface={LOCAL}",
            f"--listen-ng={LOCAL}:{NG_PORT}",
            f"--port-min={RTPENGINE_PORTS[0]}",
            f"--port-max={RTPENGINE_PORTS[1]}",
            "--num-threads=1",
            "--timeout=600",
            "--foreground",
            "--log-stderr",
            "--log-level=3",
        ],
        stdout=log,
        stderr=log,
    )
    client = NgClient(NG_PORT)
    try:
        for _ in range(50):
            try:
                client.command(command="ping")
                return proc
            except TimeoutError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"rtpengine did not answer ng ping (see {workdir / 'rtpengine.log'})")
    except BaseException:
        stop_process(proc)
        raise
    finally:
        client.close()
        log.close()


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_rtpengine(binary: Path, rtpengine: str, workdir: Path, calls: int, seconds: int) -> dict:
    proc = start_rtpengine(rtpengine, workdir)
    client = NgClient(NG_PORT)
    try:
        targets: list[tuple[int, str]] = []
        for c in range(calls):
            ids = {"call-id": f"bench-{c}", "from-tag": f"a{c}"}
            offer = client.command(
                command="offer",
                sdp=sdp(CALLER_PORT, 0),
                codec={"transcode": ["PCMA"]},
                replace=["origin", "session-connection"],
                ICE="remove",
                **ids,
            )
            answer = client.command(
                command="answer",
                sdp=sdp(AGENT_PORT, 8),
                replace=["origin", "session-connection"],
                ICE="remove",
                **{"to-tag": f"b{c}"},
                **ids,
            )
            # The answer goes to the caller: its port is where the caller sends; the offer
            # went to the agent: its port is where the agent sends.
            targets += [(sdp_port(answer[b"sdp"]), "u"), (sdp_port(offer[b"sdp"]), "a")]
        before = process_cpu_seconds(proc.pid)
        result = run_generator(binary, seconds, targets)
        result["cpu_percent"] = 100.0 * (process_cpu_seconds(proc.pid) - before) / seconds
    finally:
        client.close()
        stop_process(proc)
    return result


# --- report ---------------------------------------------------------------------------------
def summarise(system: str, calls: int, result: dict) -> dict:
    sent = max(result["sent"], 1)
    loss = 1.0 - result["received"] / sent
    row = {
        "system": system,
        "calls": calls,
        "legs": 2 * calls,
        "cpu_percent": round(result["cpu_percent"], 1),
        "loss_percent": round(100 * loss, 3),
        "latency_p50_ms": round(result["latency_p50_ms"], 3),
        "jitter_p50_ms": round(result["p50_ms"], 3),
        "jitter_p99_ms": round(result["p99_ms"], 3),
        "misrouted": result["misrouted"] + result["garbage"],
        "generator_cpu_percent": round(result["generator_cpu_percent"], 1),
        "sent": result["sent"],
    }
    row["ok"] = loss < LOSS_LIMIT and result["p99_ms"] < JITTER_LIMIT_MS and row["misrouted"] == 0
    return row


def print_table(rows: list[dict]) -> None:
    print(
        f"{'system':<10} {'calls':>6} {'legs':>6} {'cpu %':>7} {'loss %':>8} "
        f"{'lat p50':>8} {'jit p50':>8} {'jit p99':>8} {'ok':>3} {'gen cpu %':>9}"
    )
    for r in rows:
        print(
            f"{r['system']:<10} {r['calls']:>6} {r['legs']:>6} {r['cpu_percent']:>7.1f} "
            f"{r['loss_percent']:>8.3f} {r['latency_p50_ms']:>8.3f} {r['jitter_p50_ms']:>8.3f} "
            f"{r['jitter_p99_ms']:>8.3f} "
            f"{'yes' if r['ok'] else 'no':>3} {r['generator_cpu_percent']:>9.1f}"
        )
    for system in dict.fromkeys(r["system"] for r in rows):
        best = None
        for r in sorted((r for r in rows if r["system"] == system), key=lambda r: r["calls"]):
            if not r["ok"]:
                break  # the highest N such that it and every lower N met both limits
            best = r
        if best is None:
            print(f"{system}: no N met < {100 * LOSS_LIMIT} % loss and < {JITTER_LIMIT_MS} ms p99")
            continue
        per_core = best["legs"] / max(best["cpu_percent"] / 100, 1e-9)
        print(
            f"{system}: highest N = {best['calls']} calls ({best['legs']} legs) at "
            f"{best['cpu_percent']:.1f} % CPU -> ~{per_core:,.0f} legs per core (extrapolated)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="100,200,400,600", help="comma-separated N")
    parser.add_argument("--seconds", type=int, default=5, help="traffic time per N")
    parser.add_argument("--no-rtpengine", action="store_true", help="skip the reference")
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    args = parser.parse_args()
    levels = [int(n) for n in args.calls.split(",")]
    if 4 * max(levels) > ENGINE_PORTS[1] - ENGINE_PORTS[0]:
        parser.error("too many calls for the port plan (at most 4,000)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rtpengine = shutil.which("rtpengine")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="hotline-bench-media-") as tmp:
        workdir = Path(tmp)
        binary = build_generator(workdir)
        for calls in levels:
            rows.append(summarise("hotline", calls, bench_hotline(binary, calls, args.seconds)))
            if args.no_rtpengine:
                continue
            if rtpengine is None:
                print("rtpengine not found: apt-get install rtpengine-daemon", file=sys.stderr)
                args.no_rtpengine = True
                continue
            result = bench_rtpengine(binary, rtpengine, workdir, calls, args.seconds)
            rows.append(summarise("rtpengine", calls, result))
    rows.sort(key=lambda r: (r["system"], r["calls"]))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
