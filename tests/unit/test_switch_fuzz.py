"""Random conversations with the whole `Switch` (hypothesis state machine), SPEC SIP-1.

"Bad input gets a clear error and loses nothing: no crash, no dropped call, no lost CDR."
A carrier trunk (over UDP and TCP) and three agents' phones talk to one switch on the demo
config with virtual time. The rules mix phones registering and unregistering (some with wrong
passwords), trunk INVITEs (plain, with odd but legal headers, without SDP, with garbage SDP,
refused ones), phones answering 100/180/183/200/486/603/… or never, in-dialog requests from
either side (BYE before the ACK, in the early dialog, re-INVITE, INFO, UPDATE), CANCEL at any
point, retransmissions and reordering (any earlier datagram delivered again), random mutations
of real messages (bit flips, truncation, header deletion, duplication and swaps, optionally
with fresh branches so they start transactions of their own), strays (BYE for an unknown
dialog, responses for unknown transactions), RTP timeouts and time moving by random amounts
(past the ring timeout, 64*T1 and the queue's max wait).

After every step: nothing escaped `receive`/`handle_timer`; every datagram the switch sent
parses (an answer to a malformed request may lack what that request lacked); every response
carries the Via list (and Call-ID, CSeq) of a request it answers; the ACD and the B2BUA agree
on which calls wait; a call that ended did so for a reason (hang-up, RTP timeout, max wait,
refused SDP; an acknowledged call only by BYE or RTP timeout). At the end the trunk hangs up
the dialogs it knows and two hours pass with nobody answering anything: no call, transaction
or queued call is left, every INVITE that parsed got a final response, every CDR row (calls
and legs) is closed, and the media engine holds no leg.

A test double stands in for the RTP engine: it reads SDP with the real engine's `Offer`
(a `ValueError` `MediaError` for SDP it cannot serve, hostile numbers included) and counts
legs, without sockets.
Failures replay exactly: hypothesis is derandomized and the switch's tags are seeded.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from media import MediaError
from media.offer import Offer
from softswitch.call.queue_app import QueueApp
from softswitch.cdr import CdrStore
from softswitch.config import load_config
from softswitch.sip import build
from softswitch.sip.errors import SipParseError
from softswitch.sip.message import (
    Headers,
    Request,
    Response,
    _parse_header_lines,
    parse_message,
    parse_via,
)
from softswitch.sip.transaction import Target, _branch_id
from softswitch.switch import Switch

ROOT = Path(__file__).resolve().parents[2]
NODE = "127.0.0.1:5060"
TRUNK = Target("UDP", "127.0.0.1", 5090)
TRUNK_TCP = Target("TCP", "127.0.0.1", 5091)  # the same carrier over a TCP connection
AGENTS = ("1001", "1002", "1003")
# Each phone on its own loopback address, so a ban after wrong passwords hits only that one.
PHONES = {agent: Target("UDP", f"127.0.1.{i + 1}", 5100 + i) for i, agent in enumerate(AGENTS)}
CONFIG = load_config(ROOT / "config")  # a frozen value: one parse serves every example
HOUR = 3600.0
MAX_TIMER_ROUNDS = 100_000
HISTORY = 300

GOOD_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)
PHONE_SDP = (
    "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
GARBAGE_SDPS = (
    "this is not sdp at all\r\n",
    "v=0\r\nm=audio notaport RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 6000 RTP/SAVPF 96\r\n",
    "\x00\x01\x02 binary \xff",
    # Numbers that are not numbers, or out of range (seen fuzzing a node: ValueError from the
    # SDP parser, OverflowError from the C engine, a call left ringing with no INVITE sent).
    GOOD_SDP.replace("m=audio 6000", "m=audio \u00b2"),
    GOOD_SDP.replace("m=audio 6000", "m=audio 99999999999"),
    GOOD_SDP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:abc PCMU/8000"),
    GOOD_SDP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/x"),
    GOOD_SDP + "a=ptime:\u00b2\r\n",
    GOOD_SDP.replace("RTP/AVP 0 8 101", "RTP/AVP \u00b2 101"),
)


class CheckingMedia:
    """A socket-free `MediaEngine`: checks SDP as the RTP engine does and counts legs."""

    def __init__(self) -> None:
        self.legs: set[str] = set()

    @staticmethod
    def check(sdp: bytes) -> None:
        Offer(sdp)  # the RTP engine's own reading: MediaValueError for what it cannot serve

    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        self.legs |= {from_leg, to_leg}
        if sdp:
            self.check(sdp)
        return sdp

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        if not sdp:
            return b""
        if from_leg not in self.legs or to_leg not in self.legs:
            raise MediaError(f"unknown leg {from_leg!r} or {to_leg!r}")  # UnknownLegError
        self.check(sdp)
        return sdp

    def release(self, leg_id: str) -> None:
        self.legs.discard(leg_id)


class RtpTimeout(msgspec.Struct, frozen=True):
    """Shaped like the RTP engine's event of that name (the B2BUA reads the type name)."""

    leg_id: str
    silent_ms: int = 30_000


class DtmfDigit(msgspec.Struct, frozen=True):
    leg_id: str
    digit: str = "5"
    source: str = "rfc4733"


MEDIA_EVENTS: dict[str, type] = {"RtpTimeout": RtpTimeout, "DtmfDigit": DtmfDigit}


def lines(*parts: str) -> str:
    return "".join(p + "\r\n" for p in parts)


def via_key(message: Request | Response) -> tuple:
    """Via list (the top one without received/rport, which the switch adds), Call-ID, CSeq."""
    vias = message.headers.get_all("via")
    if vias:
        top = parse_via(vias[0])
        top.params.pop("received", None)
        top.params.pop("rport", None)
        vias[0] = str(top)
    return (tuple(vias), message.headers.get("call-id"), message.headers.get("cseq"))


def raw_key(headers: Headers) -> tuple:
    """The Via values, From, To, Call-ID and CSeq of a message exactly as written."""
    first: dict[str, str] = {}
    vias = []
    for name, value in headers:
        if name == "via":
            vias.append(value)
        elif name in ("from", "to", "call-id", "cseq"):
            first.setdefault(name, value)
    return (tuple(vias), *(first.get(n) for n in ("from", "to", "call-id", "cseq")))


class TrunkCall:
    """One INVITE the carrier sent, and what it learned from the answers."""

    def __init__(self, n: int, branch: str, number: str, source: Target) -> None:
        self.n = n
        self.source = source
        self.call_id = f"tc-{n}"
        self.branch = branch
        self.number = number
        self.to_tags: list[str] = []  # from 1xx/2xx, first is the switch's tag
        self.answered_tags: list[str] = []  # To tags of 2xx
        self.cseq = 1


class PhoneDialog:
    """A dialog a phone accepted with a 2xx (the phone is its UAS)."""

    def __init__(self, agent: str, invite: Request, to_tag: str) -> None:
        self.agent = agent
        self.invite = invite
        self.to_tag = to_tag
        self.cseq = 1


class SwitchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        build._rng.seed(1234)  # tags and branches of the switch: reproducible failures
        self.tmp = tempfile.TemporaryDirectory(prefix="hotline-fuzz-")
        self.cdr = CdrStore(Path(self.tmp.name) / "hotline.db")
        self.media = CheckingMedia()
        self.switch = Switch(
            CONFIG,
            self.cdr,
            {"UDP": NODE, "TCP": NODE},
            media=self.media,
            secret=b"k" * 32,
        )
        self.now = 1000.0
        self.history: list[tuple[bytes, Target]] = []
        self.answerable: set[tuple] = set()  # via_key of every request delivered
        self.malformed: set[tuple] = set()  # raw_key of every request that did not parse
        self.trunk_calls: list[TrunkCall] = []
        self.trunk_inbox: list[tuple[Target, Request]] = []  # requests the trunk may answer
        self.phone_inbox: list[tuple[str, Request]] = []  # (agent, request) to answer
        self.phone_dialogs: list[PhoneDialog] = []
        self.last_register: dict[str, Response] = {}
        self.reg_cseq = dict.fromkeys(AGENTS, 0)
        self.fresh = 0  # branches made unique by `mutate`
        self.live: dict[str, bool] = {}  # call id -> answered and acknowledged, at last check
        self.reliable: set[str] = set()  # calls whose caller asked for 100rel, at last check
        self.rtp_timeouts: set[str] = set()  # calls told of a dead media path
        self.invites: dict[tuple, set[tuple]] = {}  # server txn -> via_keys of its INVITEs
        self.finals: set[tuple] = set()  # via_key of each final response to an INVITE
        for agent in AGENTS[:2]:  # two agents start logged in, the third may come later
            self._register(agent, f"pw{agent}", 3600, True)

    # --- plumbing ----------------------------------------------------------------------------
    def deliver(self, data: bytes, source: Target, remember: bool = True) -> None:
        if remember:
            self.history.append((data, source))
            del self.history[:-HISTORY]
        self._note_request(data, source)
        self.switch.receive(data, source, self.now)
        self.drain()

    def _note_request(self, data: bytes, source: Target) -> None:
        """Remember what a response may legitimately copy (also from a malformed request)."""
        parsed = True
        try:
            message: Request | Response | None = parse_message(data)
        except SipParseError as exc:
            parsed = False
            message = exc.partial if isinstance(exc.partial, Request) else None
            if message is not None:
                self.malformed.add(raw_key(message.headers))
        if not isinstance(message, Request):
            return
        try:
            key = via_key(message)
        except SipParseError:
            return  # unusable Via: the switch cannot answer it (checked in drain)
        self.answerable.add(key)
        if parsed and message.method == "INVITE" and message.to.tag is None:
            # Grouped by server transaction (RFC 3261 §17.2.3): a copy that differs only
            # where matching does not look is a retransmission, answered as the first one.
            top = message.headers.get_all("via")[0]
            via = parse_via(top)
            txn = (_branch_id(message, via.branch, top), via.host, via.port)
            self.invites.setdefault(txn, set()).add(key)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer due on the way (like the asyncio node)."""
        end = self.now + seconds
        for _ in range(MAX_TIMER_ROUNDS):
            when = self.switch.get_timer()
            if when is None or when > end:
                break
            self.now = max(self.now, when)
            self.switch.handle_timer(self.now)
            self.drain()
        else:
            raise AssertionError(f"timers never settle at t={self.now}")
        self.now = end

    def drain(self) -> None:
        outbox = list(self.switch.outbox)
        self.switch.outbox.clear()
        for sent in outbox:
            try:
                message = parse_message(sent.data)  # every datagram we send must parse …
            except SipParseError:
                self._check_mirrors_malformed(sent.data)  # … but an answer to garbage
                continue
            if isinstance(message, Response):
                key = via_key(message)
                assert key in self.answerable, f"response copies no request's Via: {key}"
                if message.status >= 200 and message.cseq[1] == "INVITE":
                    self.finals.add(key)
            if sent.target in (TRUNK, TRUNK_TCP):
                self._to_trunk(sent.target, message)
            else:
                agent = next((a for a, t in PHONES.items() if t == sent.target), None)
                if agent is not None:
                    self._to_phone(agent, message)

    def _check_mirrors_malformed(self, data: bytes) -> None:
        """A 4xx/5xx to a malformed request copies its Via, From, To, Call-ID and CSeq as they
        are (the To gaining the node's tag), so it may lack what the request lacked: the node still answers 400 to a request
        without Call-ID (tests/loopback/test_sip_robustness.py), rather than stay silent."""
        head = data.decode("utf-8").split("\r\n\r\n", 1)[0].split("\r\n")
        assert re.fullmatch(r"SIP/2\.0 [45]\d\d .*", head[0]), data
        key = raw_key(_parse_header_lines(head, skip_bad=True))
        if key not in self.malformed and key[2] is not None:
            # the node tags the To of every final response it makes (§8.2.6.2)
            untagged = re.sub(r";tag=[0-9a-f]+$", "", key[2])
            key = (*key[:2], untagged, *key[3:])
        assert key in self.malformed, f"unparseable datagram mirrors no bad request: {data!r}"

    def _to_trunk(self, target: Target, message: Request | Response) -> None:
        if isinstance(message, Request):
            if message.method != "ACK":
                self.trunk_inbox.append((target, message))
                del self.trunk_inbox[:-40]
            return
        if message.cseq[1] != "INVITE":
            return
        call = next((c for c in self.trunk_calls if c.call_id == message.call_id), None)
        if call is None:
            return
        tag = message.to.tag
        if tag and message.status > 100 and tag not in call.to_tags:
            call.to_tags.append(tag)
        if 200 <= message.status < 300 and tag and tag not in call.answered_tags:
            call.answered_tags.append(tag)

    def _to_phone(self, agent: str, message: Request | Response) -> None:
        if isinstance(message, Response):
            if message.cseq[1] == "REGISTER":
                self.last_register[agent] = message
            return
        if message.method != "ACK":
            self.phone_inbox.append((agent, message))
            del self.phone_inbox[:-40]

    # --- phones --------------------------------------------------------------------------
    def _register(self, agent: str, password: str, expires: int, auth: bool) -> None:
        target = PHONES[agent]
        challenge = None
        for attempt in range(2 if auth else 1):
            self.reg_cseq[agent] += 1
            header = ""
            if challenge is not None:
                params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
                realm, nonce = params.get("realm", ""), params.get("nonce", "")
                uri = "sip:127.0.0.1"
                ha1 = hashlib.md5(f"{agent}:{realm}:{password}".encode()).hexdigest()
                ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
                digest = hashlib.md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}".encode())
                header = (
                    f'Authorization: Digest username="{agent}", realm="{realm}", '
                    f'nonce="{nonce}", uri="{uri}", response="{digest.hexdigest()}", '
                    'algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"\r\n'
                )
            cseq = self.reg_cseq[agent]
            data = (
                lines(
                    "REGISTER sip:127.0.0.1 SIP/2.0",
                    f"Via: SIP/2.0/UDP {target.host}:{target.port};branch=z9hG4bKr{agent}x{cseq}",
                    f"From: <sip:{agent}@127.0.0.1>;tag=r{agent}",
                    f"To: <sip:{agent}@127.0.0.1>",
                    f"Call-ID: reg-{agent}",
                    f"CSeq: {cseq} REGISTER",
                    "Max-Forwards: 70",
                    f"Contact: <sip:{agent}@{target.host}:{target.port}>",
                    f"Expires: {expires}",
                )
                + header
                + "Content-Length: 0\r\n\r\n"
            ).encode()
            self.last_register.pop(agent, None)
            self.deliver(data, target)
            response = self.last_register.get(agent)
            if attempt == 0 and auth:
                if response is None or response.status != 401:
                    return
                challenge = response.headers.get("www-authenticate") or ""

    @rule(
        agent=st.sampled_from(AGENTS),
        wrong=st.booleans(),
        expires=st.sampled_from([3600, 60, 120, 30]),
    )
    def register(self, agent: str, wrong: bool, expires: int) -> None:
        self._register(agent, "wrong" if wrong else f"pw{agent}", expires, True)

    @rule(agent=st.sampled_from(AGENTS), auth=st.booleans())
    def unregister(self, agent: str, auth: bool) -> None:
        self._register(agent, f"pw{agent}", 0, auth)

    @precondition(lambda self: self.phone_inbox)
    @rule(
        pick=st.integers(0, 10_000),
        status=st.sampled_from([180, 183, 200, 200, 200, 100, 486, 603, 487, 408, 500, 481]),
        body=st.sampled_from(["none", "sdp", "sdp", "garbage"]),
        keep=st.booleans(),
        other_tag=st.booleans(),
        contact=st.sampled_from([True, True, True, False]),
    )
    def phone_answers(
        self, pick: int, status: int, body: str, keep: bool, other_tag: bool, contact: bool
    ) -> None:
        """A phone answers a request it got (keep: it may answer it again later; a 2xx
        without Contact cannot make a dialog)."""
        index = pick % len(self.phone_inbox)
        agent, request = self.phone_inbox[index]
        if not keep:
            del self.phone_inbox[index]
        if request.method == "CANCEL" and status not in (200, 481):
            status = 200
        to_tag = f"ph{agent}" + ("fork" if other_tag else "")
        sdp = {"none": "", "sdp": PHONE_SDP, "garbage": GARBAGE_SDPS[pick % len(GARBAGE_SDPS)]}
        self._respond(PHONES[agent], request, status, to_tag, sdp[body], agent, contact)
        if (
            contact
            and request.method == "INVITE"
            and 200 <= status < 300
            and request.to.tag is None
            and not any(d.invite.call_id == request.call_id for d in self.phone_dialogs)
        ):
            self.phone_dialogs.append(PhoneDialog(agent, request, to_tag))

    def _respond(
        self,
        source: Target,
        request: Request,
        status: int,
        to_tag: str,
        body: str,
        agent: str = "carrier",
        contact: bool = True,
    ) -> None:
        out = [f"SIP/2.0 {status} Whatever"]
        out += [f"Via: {v}" for v in request.headers.get_all("via")]
        for name in ("from", "call-id", "cseq"):
            out.append(f"{name}: {request.headers.get(name)}")
        to = request.headers.get("to") or ""
        if status > 100 and ";tag=" not in to:
            to += f";tag={to_tag}"
        out.append(f"To: {to}")
        if contact:
            out.append(f"Contact: <sip:{agent}@{source.host}:{source.port}>")
        if body:
            out.append("Content-Type: application/sdp")
        out.append(f"Content-Length: {len(body.encode())}")
        self.deliver((lines(*out) + "\r\n" + body).encode(), source)

    @precondition(lambda self: self.phone_inbox)
    @rule(pick=st.integers(0, 10_000), ring_first=st.booleans())
    def phone_picks_up(self, pick: int, ring_first: bool) -> None:
        """The common case, made likely: an agent answers a new INVITE with SDP."""
        invites = [
            i for i, (_, r) in enumerate(self.phone_inbox) if r.method == "INVITE" and not r.to.tag
        ]
        if not invites:
            return
        index = invites[pick % len(invites)]
        if ring_first:
            self.phone_answers(index, 180, "none", True, False, True)
        self.phone_answers(index, 200, "sdp", False, False, True)

    @precondition(lambda self: self.phone_dialogs)
    @rule(
        pick=st.integers(0, 10_000),
        method=st.sampled_from(["BYE", "BYE", "INFO", "INVITE", "UPDATE", "OPTIONS"]),
    )
    def phone_requests_in_dialog(self, pick: int, method: str) -> None:
        """The agent hangs up (also before its 200 was ACKed), holds, sends DTMF …"""
        dialog = self.phone_dialogs[pick % len(self.phone_dialogs)]
        dialog.cseq += 1
        target = PHONES[dialog.agent]
        invite = dialog.invite
        body, ctype = "", ""
        if method in ("INVITE", "UPDATE"):
            body, ctype = PHONE_SDP + "a=sendonly\r\n", "application/sdp"
        elif method == "INFO":
            body, ctype = "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay"
        data = lines(
            f"{method} sip:hotline@{NODE} SIP/2.0",
            f"Via: SIP/2.0/UDP {target.host}:{target.port};branch=z9hG4bKp{pick}c{dialog.cseq}"
            f"{invite.call_id[:6]};rport",
            f"From: {invite.headers.get('to')};tag={dialog.to_tag}",
            f"To: {invite.headers.get('from')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {dialog.cseq} {method}",
            "Max-Forwards: 70",
            f"Contact: <sip:{dialog.agent}@{target.host}:{target.port}>",
            *([f"Content-Type: {ctype}"] if ctype else []),
            f"Content-Length: {len(body)}",
        )
        self.deliver((data + "\r\n" + body).encode(), target)

    # --- the trunk -----------------------------------------------------------------------
    @rule(
        kind=st.sampled_from(
            [
                "plain",
                "plain",
                "odd",
                "no_sdp",
                "garbage_sdp",
                "routed",
                "require",
                "hops",
                "unknown_number",
                "text_body",
                "no_contact",
                "no_from_tag",
            ]
        ),
        garbage=st.integers(0, len(GARBAGE_SDPS) - 1),
        tcp=st.sampled_from([False, False, False, True]),
    )
    def trunk_invites(self, kind: str, garbage: int, tcp: bool) -> None:
        n = len(self.trunk_calls) + 1
        source = TRUNK_TCP if tcp else TRUNK
        hop = f"{source.transport} 127.0.0.1:{source.port}"  # transport and sent-by of our Via
        contact = f"sip:carrier@127.0.0.1:{source.port}" + (";transport=tcp" if tcp else "")
        branch = f"z9hG4bKtc{n}"
        number = {"unknown_number": "5555", "odd": "+8612345"}.get(kind, "9000")
        body = {"no_sdp": "", "garbage_sdp": GARBAGE_SDPS[garbage], "text_body": "hello"}.get(
            kind, GOOD_SDP
        )
        ctype = "text/plain" if kind == "text_body" else "application/sdp"
        via = f"SIP/2.0/{hop};branch={branch};rport"
        if kind == "odd":
            # Compact forms, folding, a proxy's Via, odd spacing and identity headers: all legal.
            head = [
                f"INVITE sip:{number}@127.0.0.1;user=phone SIP/2.0",
                f"v: {via}, SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKorig{n}",
                'f: "Caller \\"Q\\"" <sip:+8613800000001@127.0.0.1:5090>;tag=ft' + str(n),
                f"t:<sip:{number}@127.0.0.1>",
                f"i: tc-{n}",
                "cseq:   1    INVITE",
                f"m: <{contact}>;expires=60",
                "P-Asserted-Identity: <tel:+8613800000001>",
                "Diversion: <sip:12345@127.0.0.1>;reason=unconditional",
                "Supported: timer, 100rel",
                "Session-Expires: 1800;refresher=uac",
                "X-Strange-Header: ;;;,,,",
                "Subject: folded",
                "  across two lines",
            ]
        else:
            head = [
                f"INVITE sip:{number}@127.0.0.1 SIP/2.0",
                f"Via: {via}",
                f'From: "Caller" <sip:+8613800000001@127.0.0.1:5090>;tag=ft{n}',
                f"To: <sip:{number}@127.0.0.1>",
                f"Call-ID: tc-{n}",
                "CSeq: 1 INVITE",
                f"Contact: <{contact}>",
                "Max-Forwards: " + ("0" if kind == "hops" else "70"),
            ]
            if kind == "routed":
                head[0] = "INVITE tel:+869000 SIP/2.0"
                route = contact.replace("carrier@", "") + ";lr"
                head.append(f"Record-Route: <{route}>")
            if kind == "require":
                head.append("Require: 100rel")
            if kind == "no_contact":  # RFC 3261 §8.1.1.8: an INVITE must have one
                head = [h for h in head if not h.startswith("Contact")]
            if kind == "no_from_tag":  # §8.1.1.3: no dialog can be made without it
                head[2] = head[2].split(";tag=")[0]
        if body:
            head.append(f"{'c' if kind == 'odd' else 'Content-Type'}: {ctype}")
        head.append(f"{'l' if kind == 'odd' else 'Content-Length'}: {len(body.encode())}")
        data = (lines(*head) + "\r\n" + body).encode()
        self.trunk_calls.append(TrunkCall(n, branch, number, source))
        self.deliver(data, source)

    def _trunk_request(
        self, call: TrunkCall, method: str, to_tag: str | None, cseq: int, branch: str
    ) -> bytes:
        body, ctype = "", ""
        if method in ("INVITE", "UPDATE"):
            body, ctype = GOOD_SDP + "a=sendonly\r\n", "application/sdp"
        elif method == "INFO":
            body, ctype = "Signal=7\r\n", "application/dtmf-relay"
        to = f"<sip:{call.number}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        uri = f"sip:{call.number}@127.0.0.1" if method == "CANCEL" else f"sip:hotline@{NODE}"
        source = call.source
        head = lines(
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{source.transport} 127.0.0.1:{source.port};branch={branch};rport",
            f'From: "Caller" <sip:+8613800000001@127.0.0.1:5090>;tag=ft{call.n}',
            f"To: {to}",
            f"Call-ID: {call.call_id}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            f"Contact: <sip:carrier@127.0.0.1:{source.port}>",
            *([f"Content-Type: {ctype}"] if ctype else []),
            f"Content-Length: {len(body)}",
        )
        return (head + "\r\n" + body).encode()

    def _pick_call(self, pick: int, answered: bool) -> TrunkCall:
        """One of the trunk's calls; `answered`: one that got a 2xx, if there is one."""
        calls = [c for c in self.trunk_calls if c.answered_tags] if answered else []
        calls = calls or self.trunk_calls
        return calls[pick % len(calls)]

    @precondition(lambda self: self.trunk_calls)
    @rule(pick=st.integers(0, 10_000))
    def trunk_acks(self, pick: int) -> None:
        """ACK for the 2xx (possibly late, possibly for a call the switch gave up)."""
        call = self._pick_call(pick, answered=pick % 4 != 0)
        tags = call.answered_tags or call.to_tags
        tag = tags[0] if tags else None
        self.deliver(
            self._trunk_request(call, "ACK", tag, 1, f"z9hG4bKack{call.n}x{pick}"), call.source
        )

    @precondition(lambda self: self.trunk_calls)
    @rule(pick=st.integers(0, 10_000))
    def trunk_cancels(self, pick: int) -> None:
        """CANCEL the INVITE: while queued, ringing, after the 200 or after the final."""
        call = self.trunk_calls[pick % len(self.trunk_calls)]
        self.deliver(self._trunk_request(call, "CANCEL", None, 1, call.branch), call.source)

    @precondition(lambda self: self.trunk_calls)
    @rule(
        pick=st.integers(0, 10_000),
        method=st.sampled_from(["BYE", "BYE", "BYE", "INVITE", "INFO", "UPDATE", "OPTIONS"]),
        which_tag=st.sampled_from(["answer", "early", "unknown", "none"]),
    )
    def trunk_requests_in_dialog(self, pick: int, method: str, which_tag: str) -> None:
        """BYE (also before the ACK, or in the early dialog), re-INVITE, INFO, UPDATE …"""
        call = self._pick_call(pick, answered=which_tag == "answer")
        tags = {
            "answer": call.answered_tags[:1] or call.to_tags[:1],
            "early": call.to_tags[-1:],
            "unknown": ["nosuchtag"],
            "none": [],
        }[which_tag]
        call.cseq += 1
        branch = f"z9hG4bKtd{call.n}c{call.cseq}"
        to_tag = tags[0] if tags else None  # no tag: an out-of-dialog request
        self.deliver(self._trunk_request(call, method, to_tag, call.cseq, branch), call.source)

    @precondition(lambda self: self.trunk_inbox)
    @rule(
        pick=st.integers(0, 10_000),
        status=st.sampled_from([100, 200, 200, 481, 488, 500]),
        keep=st.booleans(),
    )
    def trunk_answers(self, pick: int, status: int, keep: bool) -> None:
        """The carrier answers a request the switch sent it (BYE, relayed re-INVITE …)."""
        index = pick % len(self.trunk_inbox)
        target, request = self.trunk_inbox[index]
        if not keep:
            del self.trunk_inbox[index]
        body = GOOD_SDP if request.method in ("INVITE", "UPDATE") and status == 200 else ""
        self._respond(target, request, status, "carrier", body)

    # --- bad, repeated and stray input --------------------------------------------------
    @precondition(lambda self: self.history)
    @rule(pick=st.integers(0, 10_000))
    def retransmit(self, pick: int) -> None:
        """Any earlier datagram again: a retransmission, or one overtaken by later ones."""
        data, source = self.history[-1 - pick % len(self.history)]
        self.deliver(data, source, remember=False)

    @precondition(lambda self: self.history)
    @rule(
        pick=st.integers(0, 10_000),
        how=st.sampled_from(["flip", "flip", "truncate", "delete", "duplicate", "swap"]),
        where=st.integers(0, 2**16),
        bit=st.integers(0, 7),
        fresh=st.booleans(),
    )
    def mutate(self, pick: int, how: str, where: int, bit: int, fresh: bool) -> None:
        """A damaged copy of an earlier datagram; `fresh`: with new branches, so that a request
        starts a transaction of its own instead of matching the original's."""
        data, source = self.history[-1 - pick % len(self.history)]
        if fresh:
            self.fresh += 1
            data = data.replace(b"branch=z9hG4bK", b"branch=z9hG4bKm%d" % self.fresh)
        raw = bytearray(data)
        head, sep, body = data.partition(b"\r\n\r\n")
        header_lines = head.split(b"\r\n")
        if how == "flip":
            raw[where % len(raw)] ^= 1 << bit
        elif how == "truncate":
            del raw[where % len(raw) :]
        elif len(header_lines) > 1:
            i = 1 + where % (len(header_lines) - 1)
            if how == "delete":
                del header_lines[i]
            elif how == "duplicate":
                header_lines.insert(i, header_lines[i])
            else:
                j = 1 + (where // 7) % (len(header_lines) - 1)
                header_lines[i], header_lines[j] = header_lines[j], header_lines[i]
            raw = bytearray(b"\r\n".join(header_lines) + sep + body)
        self.deliver(bytes(raw), source, remember=False)

    @rule(
        kind=st.sampled_from(
            ["bye", "response", "cancel", "ack", "options", "info", "unknown_method"]
        ),
        from_phone=st.booleans(),
        status=st.sampled_from([100, 180, 200, 487, 503]),
    )
    def stray(self, kind: str, from_phone: bool, status: int) -> None:
        """Requests for no dialog or transaction, responses for no transaction."""
        source = PHONES["1001"] if from_phone else TRUNK
        via = f"SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bKstray{kind}{status}"
        if kind == "response":
            data = lines(
                f"SIP/2.0 {status} Stray",
                f"Via: SIP/2.0/UDP {NODE};branch=z9hG4bKnotours{status};rport",
                "From: <sip:x@127.0.0.1>;tag=a",
                "To: <sip:y@127.0.0.1>;tag=b",
                "Call-ID: stray-response",
                f"CSeq: 1 {'INVITE' if status != 503 else 'BYE'}",
                "Content-Length: 0",
            )
        else:
            method = {
                "bye": "BYE",
                "cancel": "CANCEL",
                "ack": "ACK",
                "options": "OPTIONS",
                "info": "INFO",
                "unknown_method": "FROBNICATE",
            }[kind]
            to_tag = ";tag=ghost" if method in ("BYE", "ACK") else ""
            data = lines(
                f"{method} sip:9000@127.0.0.1 SIP/2.0",
                f"Via: {via}",
                "From: <sip:x@127.0.0.1>;tag=a",
                f"To: <sip:9000@127.0.0.1>{to_tag}",
                "Call-ID: stray-request",
                f"CSeq: 7 {method}",
                "Max-Forwards: 70",
                "Content-Length: 0",
            )
        self.deliver((data + "\r\n").encode(), source)

    @rule(pick=st.integers(0, 10_000), kind=st.sampled_from(["RtpTimeout", "DtmfDigit"]))
    def media_reports(self, pick: int, kind: str) -> None:
        """The RTP engine reports a dead media path or a key on some leg (MED-3)."""
        legs = sorted({leg.leg_id for c in self.switch.control.sessions.values() for leg in c.legs})
        leg_id = legs[pick % len(legs)] if legs else f"{pick}-a"
        if kind == "RtpTimeout":
            self.rtp_timeouts.add(leg_id.rsplit("-", 1)[0])
        self.switch.media_event(MEDIA_EVENTS[kind](leg_id), self.now)
        self.drain()

    @rule(
        seconds=st.one_of(
            st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 5.0]),
            st.floats(0.0, 40.0),
            # past the ring timeout, 64*T1, Timer D, the max wait, every registration
            st.sampled_from([15.5, 32.5, 33.0, 64.0, 301.0, HOUR]),
        )
    )
    def time_passes(self, seconds: float) -> None:
        self.advance(seconds)

    # --- invariants --------------------------------------------------------------------
    @invariant()
    def outbox_drained_and_calls_live(self) -> None:
        assert not self.switch.outbox
        for call in self.switch.control.sessions.values():
            assert not call.ended, call.call_id

    @invariant()
    def acd_and_call_control_agree_on_waiting_calls(self) -> None:
        waiting = self.switch.acd.queue_snapshot("general", self.now).waiting
        queued = [
            c.call_id
            for c in self.switch.control.sessions.values()
            if isinstance(c.app, QueueApp) and c.app.waiting
        ]
        assert waiting == len(queued), (waiting, queued)

    @invariant()
    def one_call_per_caller_invite(self) -> None:
        """The same INVITE arriving again under another branch (by a second path) is a merged
        request (RFC 3261 §8.2.2.2), not a second caller in the queue."""
        origins = [
            (c.a.invite.call_id, c.a.invite.from_.tag, c.a.invite.cseq[0])
            for c in self.switch.control.sessions.values()
            if c.a.invite is not None
        ]
        assert len(origins) == len(set(origins)), sorted(origins)

    @invariant()
    def calls_end_only_for_a_reason(self) -> None:
        """No dropped call: a call ends by a hang-up, an RTP timeout, its max wait, or a
        refusal of its SDP — and an answered, acknowledged one only by BYE or RTP timeout."""
        calls = self.switch.control.sessions
        max_wait = CONFIG.queue("general").max_wait  # type: ignore[union-attr]
        for call_id, confirmed in self.live.items():
            if call_id in calls:
                continue
            row = self.cdr.get_call(call_id)
            assert row is not None and row["end"] is not None, (call_id, row)
            reason = (row["disposition"], row["hangup_side"])
            if confirmed:
                assert reason in {("answered", "caller"), ("answered", "agent")} or (
                    reason == ("answered", "system") and call_id in self.rtp_timeouts
                ), row
            elif reason == ("answered", "system"):  # our 200 never ACKed, or no RTP
                assert row["sip_cause"] == 408, row
            elif row["disposition"] == "timeout":
                assert row["wait"] >= max_wait - 1e-6, row
            elif row["disposition"] == "failed":
                # The caller's SDP was refused, or (RFC 3262 §3) a caller that asked for
                # reliable provisionals never PRACKed one.
                assert row["sip_cause"] in (488, 503) or (
                    row["sip_cause"] == 500 and call_id in self.reliable
                ), row
            else:
                assert reason in {("answered", "caller"), ("answered", "agent")} | {
                    ("abandoned", "caller")
                }, row
        self.reliable = {c for c, call in calls.items() if call.a.reliable is not None}
        self.live = {
            call_id: call.answered is not None
            and call.a.up
            and call.a.dialog is not None
            and call.a.dialog.confirmed
            for call_id, call in calls.items()
        }

    def teardown(self) -> None:
        try:
            self._settle()
        finally:
            self.cdr.close()
            self.tmp.cleanup()

    def _settle(self) -> None:
        # The carrier hangs up every dialog it knows; then nobody answers anything.
        for call in self.trunk_calls:
            for tag in call.answered_tags:
                call.cseq += 100
                branch = f"z9hG4bKend{call.n}{tag}"
                request = self._trunk_request(call, "BYE", tag, call.cseq, branch)
                self.deliver(request, call.source)
        self.advance(HOUR)
        self.calls_end_only_for_a_reason()
        self.advance(HOUR)  # what the first hour started (e.g. a last BYE) ends too
        switch = self.switch
        assert switch.control.sessions == {}, list(switch.control.sessions)
        assert len(switch.txn) == 0, (switch.txn._client.keys(), switch.txn._server.keys())
        assert switch.acd.queue_snapshot("general", self.now).waiting == 0
        assert self.media.legs == set(), self.media.legs
        unanswered = [txn for txn, keys in self.invites.items() if not keys & self.finals]
        assert not unanswered, f"INVITEs without a final response: {sorted(unanswered)}"
        db = self.cdr._db
        for row in db.execute('SELECT call_id, "end", disposition FROM calls'):
            assert row["end"] is not None and row["disposition"], dict(row)
        for row in db.execute('SELECT leg_id, "end" FROM legs'):
            assert row["end"] is not None, dict(row)


SwitchMachine.TestCase.settings = settings(
    max_examples=200,  # about 10 s on the 2-core dev machine
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate]
    + ([] if os.environ.get("FUZZ_NO_SHRINK") else [Phase.shrink]),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_switch_survives_random_conversations = SwitchMachine.TestCase


def test_an_agent_answering_with_unusable_sdp_fails_the_call_not_a_survey() -> None:
    """Found by the machine above: the agent's 200 carried SDP the node cannot join, the
    bridge failed and the queue application went on as if talking; the agent's BYE then sent
    an unanswered caller to the survey ('completed', 480). Now the call fails with 503."""
    state = SwitchMachine()
    try:
        state.trunk_invites(garbage=0, kind="plain", tcp=False)
        state.time_passes(seconds=0.0)
        state.calls_end_only_for_a_reason()
        state.phone_answers(
            body="garbage", contact=True, keep=False, other_tag=False, pick=0, status=200
        )
        state.time_passes(seconds=0.0)
        state.phone_requests_in_dialog(method="BYE", pick=0)
        state.time_passes(seconds=0.0)
        state.calls_end_only_for_a_reason()
        (row,) = state.cdr.connection.execute("SELECT disposition, sip_cause FROM calls")
        assert tuple(row) == ("failed", 503)
    finally:
        state.teardown()
