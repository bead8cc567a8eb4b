"""CPU per call on the node's call path, in process, against an earlier revision.

`bench/bhca.py` measures the whole node over sockets, which is the figure that counts but
swings by ±10 % on a shared machine. This measures only the switch's own work for one queue
call — trunk INVITE to 9000, INVITE to the agent, 180, 200, ACK, BYE from the trunk, BYE to
the agent and its 200, the CDR commit after each input as the node does it, INFO logging, with the real RTP engine anchoring
media — by feeding raw SIP text to `Switch.receive` in virtual time and summing
`time.thread_time()` around the switch's calls only. No sockets carry the signalling, no
event loop runs, nothing but the switch is timed, so two revisions can be compared to a few
per cent on the same machine.

    python bench/callpath.py                        # this tree: µs of CPU per call
    python bench/callpath.py --baseline 716c4c2     # this tree vs a revision, interleaved

With `--baseline` each round runs both trees in fresh processes one after the other
(baseline first, then this tree, alternating), and the report gives the median per tree and
the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
NODE = "127.0.0.1:5060"
TRUNK_PORT = 5090
PHONE_PORT = 5301
AGENT = "1001"


def _sdp(port: int, version: int) -> str:
    return (
        f"v=0\r\no=- {version} {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )


class _Run:
    """One tree's switch with a trunk and one agent phone, driven by raw SIP text."""

    def __init__(self, tree: Path, data: Path) -> None:
        from media.engine import RtpEngine
        from softswitch.cdr import CdrStore
        from softswitch.config import load_config
        from softswitch.sip.message import parse_message
        from softswitch.sip.transaction import Target
        from softswitch.switch import Switch

        self.parse = parse_message
        self.config = load_config(tree / "config")
        media = self.config.media
        # As the node runs it: one commit per input, before anything is sent.
        self.cdr = CdrStore(data / "hotline.db", commit_on_flush=True)
        self.engine = RtpEngine(media.rtp_ip, media.port_min, media.port_max, media.rtp_timeout)
        self.switch = Switch(
            self.config,
            self.cdr,
            {"UDP": NODE, "TCP": NODE},
            media=self.engine,
            secret=b"k" * 32,
        )
        self.trunk = Target("UDP", "127.0.0.1", TRUNK_PORT)
        self.phone = Target("UDP", "127.0.0.1", PHONE_PORT)
        self.now = 1000.0
        self.cpu = 0.0
        self.inbox: dict[int, list] = {TRUNK_PORT: [], PHONE_PORT: []}
        self.by_kind: dict[str, float] = {}
        self.reg_cseq = 0

    # --- timed calls into the switch ----------------------------------------------------------
    def send(self, text: str, source, kind: str) -> None:  # type: ignore[no-untyped-def]
        """Feed one message to the switch; its CPU is added to the total and to `kind`."""
        data = text.encode()
        start = time.thread_time()
        self.switch.receive(data, source, self.now)
        self.cdr.flush()
        outbox = list(self.switch.outbox)
        self.switch.outbox.clear()
        spent = time.thread_time() - start
        self.cpu += spent
        self.by_kind[kind] = self.by_kind.get(kind, 0.0) + spent
        self._sort(outbox)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            start = time.thread_time()
            when = self.switch.get_timer()
            if when is None or when > end:
                self.cpu += time.thread_time() - start
                break
            self.now = max(self.now, when)
            self.switch.handle_timer(self.now)
            self.cdr.flush()
            outbox = list(self.switch.outbox)
            self.switch.outbox.clear()
            self.cpu += time.thread_time() - start
            self.by_kind["timer"] = self.by_kind.get("timer", 0.0) + time.thread_time() - start
            self._sort(outbox)
        self.now = end

    def _sort(self, outbox) -> None:  # type: ignore[no-untyped-def]
        for message in outbox:
            self.inbox.setdefault(message.target.port, []).append(self.parse(message.data))

    def take(self, port: int) -> list:
        got, self.inbox[port] = self.inbox[port], []
        return got

    # --- the peers ----------------------------------------------------------------------------
    def register(self) -> None:
        first = self._register(None)
        challenge = first.headers.get("www-authenticate") or ""
        second = self._register(challenge)
        if second.status != 200:
            raise SystemExit(f"callpath: agent {AGENT} could not register: {second.status}")

    def _register(self, challenge: str | None):  # type: ignore[no-untyped-def]
        auth = ""
        self.reg_cseq += 1
        cseq = self.reg_cseq
        if challenge is not None:
            from softswitch.sip.auth import digest_response, ha1

            params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
            realm, nonce, uri = params["realm"], params["nonce"], "sip:127.0.0.1"
            stored = ha1(AGENT, realm, f"pw{AGENT}")
            response = digest_response(
                stored, "MD5", "REGISTER", uri, nonce, "auth", "00000001", "c0ffee"
            )
            auth = (
                f'Authorization: Digest username="{AGENT}", realm="{realm}", nonce="{nonce}", '
                f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, '
                'nc=00000001, cnonce="c0ffee"\r\n'
            )
        self.send(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{PHONE_PORT};branch=z9hG4bKreg{cseq};rport\r\n"
            f"From: <sip:{AGENT}@127.0.0.1>;tag=ph\r\nTo: <sip:{AGENT}@127.0.0.1>\r\n"
            f"Call-ID: reg-{AGENT}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:{AGENT}@127.0.0.1:{PHONE_PORT}>\r\nExpires: 3600\r\n"
            f"{auth}Content-Length: 0\r\n\r\n",
            self.phone,
            "REGISTER",
        )
        (response,) = self.take(PHONE_PORT)
        return response

    def _trunk_headers(self, n: int, method: str, cseq: int, to_tag: str | None) -> str:
        to = "<sip:9000@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"Via: SIP/2.0/UDP 127.0.0.1:{TRUNK_PORT};branch=z9hG4bK{method}{n};rport\r\n"
            f'From: "Caller" <sip:+86138{n:08d}@127.0.0.1:{TRUNK_PORT}>;tag=trk{n}\r\n'
            f"To: {to}\r\nCall-ID: bench-{n}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        )

    def _reply(self, request, status: int, sdp: str = "") -> None:  # type: ignore[no-untyped-def]
        lines = [f"SIP/2.0 {status} X"]
        lines += [f"Via: {via}" for via in request.headers.get_all("via")]
        to = request.headers.get("to") or ""
        if ";tag=" not in to:
            to += ";tag=ph"
        lines += [
            f"From: {request.headers.get('from')}",
            f"To: {to}",
            f"Call-ID: {request.call_id}",
            f"CSeq: {request.headers.get('cseq')}",
            f"Contact: <sip:{AGENT}@127.0.0.1:{PHONE_PORT}>",
        ]
        if sdp:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(sdp)}")
        kind = f"{status} {request.method}"
        self.send("\r\n".join(lines) + "\r\n\r\n" + sdp, self.phone, kind)

    def call(self, n: int) -> None:
        """One answered queue call, hung up by the caller; raises if the flow goes wrong."""
        sdp = _sdp(6000 + 2 * (n % 1000), 1)
        self.send(
            "INVITE sip:9000@127.0.0.1 SIP/2.0\r\n"
            + self._trunk_headers(n, "INVITE", 1, None)
            + f"Contact: <sip:carrier@127.0.0.1:{TRUNK_PORT}>\r\n"
            + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}",
            self.trunk,
            "INVITE",
        )
        invites = [m for m in self.take(PHONE_PORT) if getattr(m, "method", "") == "INVITE"]
        if len(invites) != 1:
            raise SystemExit(f"callpath: call {n}: the agent got {len(invites)} INVITEs")
        invite = invites[0]
        self._reply(invite, 180)
        self.now += 0.01
        self._reply(invite, 200, _sdp(7000, 2))
        answered = [m for m in self.take(TRUNK_PORT) if getattr(m, "status", 0) == 200]
        if not answered:
            raise SystemExit(f"callpath: call {n}: no 200 reached the trunk")
        to_tag = (answered[0].headers.get("to") or "").split(";tag=")[1].split(";")[0]
        self.send(
            "ACK sip:hotline@127.0.0.1:5060 SIP/2.0\r\n"
            + self._trunk_headers(n, "ACK", 1, to_tag)
            + "Content-Length: 0\r\n\r\n",
            self.trunk,
            "ACK",
        )
        self.take(PHONE_PORT)
        self.now += 1.0
        self.send(
            "BYE sip:hotline@127.0.0.1:5060 SIP/2.0\r\n"
            + self._trunk_headers(n, "BYE", 2, to_tag)
            + "Content-Length: 0\r\n\r\n",
            self.trunk,
            "BYE",
        )
        byes = [m for m in self.take(PHONE_PORT) if getattr(m, "method", "") == "BYE"]
        if len(byes) != 1:
            raise SystemExit(f"callpath: call {n}: the agent got {len(byes)} BYEs")
        self._reply(byes[0], 200)
        self.take(TRUNK_PORT)
        # Let transaction timers (Timer J, K, the Accepted state) fire as they would.
        self.advance(0.05)


def measure(tree: Path, calls: int, warmup: int) -> dict[str, float]:
    """Run `calls` calls (after `warmup` untimed ones) in this process; CPU µs per call."""
    sys.path.insert(0, str(tree))
    sink = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
    try:  # the tree's own set-up of `hotline serve`, where it has one
        from softswitch import logs

        logs.configure(logging.INFO, sink)
    except ImportError:  # older trees: what their `hotline serve` did
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sink,
        )
    with tempfile.TemporaryDirectory(prefix="callpath-") as data:
        run = _Run(tree, Path(data))
        run.register()
        for n in range(warmup):
            run.call(n)
        run.advance(40.0)  # every transaction of the warm-up ends
        run.cpu = 0.0
        run.by_kind.clear()
        for n in range(warmup, warmup + calls):
            if n % 1000 == 0:  # renew the registration (3,600 s) before it runs out
                cpu, kinds = run.cpu, dict(run.by_kind)
                run.register()
                run.cpu, run.by_kind = cpu, kinds
            run.call(n)
        timed = run.cpu
        run.advance(60.0)
        steps = {kind: spent / calls * 1e6 for kind, spent in run.by_kind.items()}
        return {"us_per_call": timed / calls * 1e6, "calls": calls, "steps": steps}


def _child(tree: Path, calls: int, warmup: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(tree),
            "--calls",
            str(calls),
            "--warmup",
            str(warmup),
        ],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"callpath: the run in {tree} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _checkout(rev: str, where: Path) -> Path:
    tree = where / "baseline"
    subprocess.run(
        ["git", "-C", str(HERE), "worktree", "add", "--detach", str(tree), rev],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        check=True,
        capture_output=True,
    )
    return tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per tree")
    parser.add_argument("--baseline", help="git revision to compare against")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(Path(args.child), args.calls, args.warmup)))
        return 0
    trees = {"hotline": HERE}
    with tempfile.TemporaryDirectory(prefix="callpath-base-") as tmp:
        try:
            if args.baseline:
                print(f"building baseline {args.baseline} ...", file=sys.stderr)
                trees = {"baseline": _checkout(args.baseline, Path(tmp)), "hotline": HERE}
            results: dict[str, list[float]] = {name: [] for name in trees}
            steps: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for round_ in range(args.rounds):
                line = []
                for name, tree in trees.items():
                    got = _child(tree, args.calls, args.warmup)
                    us = got["us_per_call"]
                    results[name].append(us)
                    steps[name].append(got["steps"])
                    line.append(f"{name} {us:7.0f} µs")
                print(f"round {round_ + 1}: " + "  ".join(line), flush=True)
        finally:
            if args.baseline:
                subprocess.run(
                    [
                        "git",
                        "-C",
                        str(HERE),
                        "worktree",
                        "remove",
                        "--force",
                        str(Path(tmp) / "baseline"),
                    ],
                    capture_output=True,
                )
    print(f"\nCPU per call ({args.calls} calls per round, {args.rounds} rounds, median):")
    for name, values in results.items():
        print(
            f"  {name:9} {statistics.median(values):7.0f} µs  "
            f"(min {min(values):.0f}, max {max(values):.0f})"
        )
    print("\nby input (median µs per call):")
    kinds = list(steps["hotline"][0])
    print("  " + " ".join(f"{k:>10}" for k in ["tree"] + kinds))
    for name, runs in steps.items():
        row = [statistics.median(r.get(k, 0.0) for r in runs) for k in kinds]
        print("  " + f"{name:>10} " + " ".join(f"{v:10.0f}" for v in row))
    if "baseline" in results:
        ratios = [h / b for h, b in zip(results["hotline"], results["baseline"], strict=True)]
        print(
            f"  hotline/baseline: median {statistics.median(ratios):.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
