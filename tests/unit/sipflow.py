"""Drive a `Switch` with raw SIP text and virtual time: a pure (socket-free) test peer kit."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from softswitch.cdr import CdrStore
from softswitch.config import load_config
from softswitch.sdp import address_family
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.transaction import Target, hostport
from softswitch.switch import Switch

ROOT = Path(__file__).resolve().parents[2]
NODE = "127.0.0.1:5060"


class Harness:
    """A switch on the demo config, its outbox split per destination, and a clock."""

    def __init__(self, tmp_path: Path, config_dir: Path | None = None) -> None:
        self.config = load_config(config_dir or ROOT / "config")
        self.cdr = CdrStore(tmp_path / "hotline.db")
        self.switch = Switch(self.config, self.cdr, {"UDP": NODE, "TCP": NODE}, secret=b"k" * 32)
        self.now = 1000.0
        self.sent: list[tuple[Target, Request | Response]] = []

    def deliver(self, text: str, source: Target) -> None:
        self.switch.receive(text.replace("\n", "\r\n").encode(), source, self.now)
        self._collect()

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer due on the way."""
        end = self.now + seconds
        while True:
            when = self.switch.get_timer()
            if when is None or when > end:
                break
            self.now = max(self.now, when)
            self.switch.handle_timer(self.now)
            self._collect()
        self.now = end

    def _collect(self) -> None:
        for message in self.switch.outbox:
            self.sent.append((message.target, parse_message(message.data)))
        self.switch.outbox.clear()

    def take(self, port: int) -> list[Request | Response]:
        """Messages sent to 127.0.0.1:`port` since the last take, in order."""
        mine = [m for t, m in self.sent if t.port == port]
        self.sent = [(t, m) for t, m in self.sent if t.port != port]
        return mine


class Trunk:
    """The carrier side: sends an INVITE to a number and follows the dialog."""

    def __init__(
        self, h: Harness, port: int = 5090, call_id: str = "trunk-call-1", host: str = "127.0.0.1"
    ) -> None:
        self.h = h
        self.port = port
        self.host = host  # "::1": a carrier over IPv6, its SDP `IN IP6`
        self.hostport = hostport(host, port)
        self.source = Target("UDP", host, port)
        self.call_id = call_id
        self.to_tag: str | None = None
        self.cseq = 1

    @property
    def address(self) -> str:
        """Its SDP address: addrtype and address (RFC 4566 §5.7)."""
        return f"{address_family(self.host)} {self.host}"

    def headers(self, method: str, cseq: int, branch: str, to_tag: str | None = None) -> str:
        to = "<sip:9000@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"Via: SIP/2.0/UDP {self.hostport};branch={branch};rport\n"
            f'From: "Caller" <sip:+8613800000001@{self.hostport}>;tag=trk\n'
            f"To: {to}\nCall-ID: {self.call_id}\nCSeq: {cseq} {method}\nMax-Forwards: 70\n"
        )

    def invite(self, number: str = "9000", extra: str = "") -> None:
        sdp = (
            f"v=0\no=- 1 1 IN {self.address}\ns=-\nc=IN {self.address}\nt=0 0\n"
            "m=audio 6000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n"
        )
        body = sdp.replace("\n", "\r\n")
        self.h.deliver(
            f"INVITE sip:{number}@127.0.0.1 SIP/2.0\n"
            + self.headers("INVITE", 1, f"z9hG4bKinv{self.call_id}")
            + f"Contact: <sip:carrier@{self.hostport}>\n{extra}"
            + f"Content-Type: application/sdp\nContent-Length: {len(body)}\n\n"
            + sdp,
            self.source,
        )

    def ack(self) -> None:
        self.h.deliver(
            "ACK sip:hotline@127.0.0.1:5060 SIP/2.0\n"
            + self.headers("ACK", 1, f"z9hG4bKack{self.call_id}", self.to_tag)
            + "Content-Length: 0\n\n",
            self.source,
        )

    def cancel(self) -> None:
        self.h.deliver(
            "CANCEL sip:9000@127.0.0.1 SIP/2.0\n"
            + self.headers("CANCEL", 1, f"z9hG4bKinv{self.call_id}")
            + "Content-Length: 0\n\n",
            self.source,
        )

    def reinvite(self, direction: str) -> None:
        """A re-INVITE in the dialog, e.g. hold (`sendonly`, RFC 3264 §8.4)."""
        self.cseq += 1
        sdp = (
            f"v=0\no=- 1 2 IN {self.address}\ns=-\nc=IN {self.address}\nt=0 0\n"
            f"m=audio 6000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na={direction}\n"
        ).replace("\n", "\r\n")
        self.h.deliver(
            "INVITE sip:hotline@127.0.0.1:5060 SIP/2.0\n"
            + self.headers("INVITE", self.cseq, f"z9hG4bKre{self.call_id}{self.cseq}", self.to_tag)
            + f"Contact: <sip:carrier@{self.hostport}>\n"
            + f"Content-Type: application/sdp\nContent-Length: {len(sdp)}\n\n"
            + sdp.replace("\r\n", "\n"),
            self.source,
        )

    def ack_cseq(self) -> None:
        """ACK for a 2xx to our latest re-INVITE."""
        self.h.deliver(
            "ACK sip:hotline@127.0.0.1:5060 SIP/2.0\n"
            + self.headers("ACK", self.cseq, f"z9hG4bKack{self.call_id}{self.cseq}", self.to_tag)
            + "Content-Length: 0\n\n",
            self.source,
        )

    def bye(self) -> None:
        self.cseq += 1
        self.h.deliver(
            "BYE sip:hotline@127.0.0.1:5060 SIP/2.0\n"
            + self.headers("BYE", self.cseq, f"z9hG4bKbye{self.call_id}{self.cseq}", self.to_tag)
            + "Content-Length: 0\n\n",
            self.source,
        )


class Phone:
    """An agent's phone: registers with digest and answers requests sent to its port."""

    def __init__(
        self,
        h: Harness,
        agent: str,
        port: int,
        password: str | None = None,
        algorithm: str = "MD5",
        host: str = "127.0.0.1",
    ) -> None:
        self.h = h
        self.host = host  # "::1": a phone registered over IPv6
        self.hostport = hostport(host, port)
        self.agent = agent
        self.port = port
        self.password = password or f"pw{agent}"
        self.algorithm = algorithm  # the challenge it answers: "MD5" or "SHA-256"
        self.source = Target("UDP", host, port)
        self.reg_cseq = 0

    def register(self, expires: int = 3600) -> Response:
        first = self._register(expires, None)
        assert first.status == 401, first
        (challenge,) = [
            value
            for value in first.headers.get_all("www-authenticate")
            if f"algorithm={self.algorithm}," in value.replace(" ", "") + ","
        ]
        return self._register(expires, challenge)

    def credentials(self, challenge: str, method: str, uri: str, password: str = "") -> str:
        """The Digest answer to `challenge` for `method` on `uri` (qop=auth)."""
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        realm, nonce = params["realm"], params["nonce"]

        def hexhash(text: str) -> str:
            return hashlib.new(self.algorithm.replace("-", ""), text.encode()).hexdigest()

        ha1 = hexhash(f"{self.agent}:{realm}:{password or self.password}")
        response = hexhash(f"{ha1}:{nonce}:00000001:c0ffee:auth:{hexhash(f'{method}:{uri}')}")
        return (
            f'Digest username="{self.agent}", realm="{realm}", '
            f'nonce="{nonce}", uri="{uri}", response="{response}", '
            f'algorithm={self.algorithm}, qop=auth, nc=00000001, cnonce="c0ffee"'
        )

    def _register(self, expires: int, challenge: str | None) -> Response:
        self.reg_cseq += 1
        auth = ""
        if challenge is not None:
            auth = f"Authorization: {self.credentials(challenge, 'REGISTER', 'sip:127.0.0.1')}\n"
        self.h.deliver(
            "REGISTER sip:127.0.0.1 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.hostport};branch=z9hG4bKreg{self.reg_cseq};rport\n"
            f"From: <sip:{self.agent}@127.0.0.1>;tag=ph{self.agent}\n"
            f"To: <sip:{self.agent}@127.0.0.1>\nCall-ID: reg-{self.agent}\n"
            f"CSeq: {self.reg_cseq} REGISTER\nMax-Forwards: 70\n"
            f"Contact: <sip:{self.agent}@{self.hostport}>\nExpires: {expires}\n"
            f"{auth}Content-Length: 0\n\n",
            self.source,
        )
        (response,) = self.h.take(self.port)
        assert isinstance(response, Response)
        return response

    def reply(
        self, request: Request, status: int, to_tag: str = "ph", sdp: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """Answer `request` (an INVITE/CANCEL/BYE we received) with `status`; `extra`: more
        header lines ("Name: value")."""
        lines = [f"SIP/2.0 {status} X"]
        for name in ("via", "from", "call-id", "cseq"):
            for value in (
                request.headers.get_all(name) if name == "via" else [request.headers.get(name)]
            ):
                lines.append(f"{name}: {value}")
        to = request.headers.get("to") or ""
        if status > 100 and ";tag=" not in to:
            to += f";tag={to_tag}"
        lines.append(f"To: {to}")
        if not any(line.lower().startswith("contact:") for line in extra):
            lines.append(f"Contact: <sip:{self.agent}@{self.hostport}>")
        lines.extend(extra)
        body = ""
        if sdp:
            family = address_family(self.host)
            body = (
                f"v=0\r\no=- 2 2 IN {family} {self.host}\r\ns=-\r\n"
                f"c=IN {family} {self.host}\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n"
            )
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.h.switch.receive(
            ("\r\n".join(lines) + "\r\n\r\n" + body).encode(), self.source, self.h.now
        )
        self.h._collect()

    def bye(self, invite: Request, to_tag: str = "ph") -> None:
        """Hang up from the phone (we are the UAS of `invite`'s dialog)."""
        frm = invite.headers.get("from") or ""
        to = (invite.headers.get("to") or "") + f";tag={to_tag}"
        self.h.deliver(
            f"BYE sip:hotline@127.0.0.1:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.hostport};branch=z9hG4bKphbye{invite.call_id[:8]};rport\n"
            f"From: {to}\nTo: {frm}\nCall-ID: {invite.call_id}\nCSeq: 1 BYE\n"
            "Max-Forwards: 70\nContent-Length: 0\n\n",
            self.source,
        )

    def in_dialog(
        self,
        invite: Request,
        method: str,
        cseq: int,
        headers: str = "",
        sdp_direction: str | None = None,
        to_tag: str = "ph",
    ) -> None:
        """A request of the phone in the dialog of `invite` (which it answered with
        `to_tag`): a hold re-INVITE (`sdp_direction`), a REFER (`headers`: its Refer-To)."""
        frm = invite.headers.get("from") or ""
        to = (invite.headers.get("to") or "") + f";tag={to_tag}"
        body = ""
        if sdp_direction is not None:
            body = (
                "v=0\r\no=- 2 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio 7000 RTP/AVP 0\r\na={sdp_direction}\r\n"
            )
            headers += "Content-Type: application/sdp\n"
        self.h.deliver(
            f"{method} sip:hotline@127.0.0.1:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.hostport};branch=z9hG4bKph{method}{cseq};rport\n"
            f"From: {to}\nTo: {frm}\nCall-ID: {invite.call_id}\nCSeq: {cseq} {method}\n"
            f"Contact: <sip:{self.agent}@{self.hostport}>\n"
            f"Max-Forwards: 70\n{headers}Content-Length: {len(body)}\n\n"
            + body.replace("\r\n", "\n"),
            self.source,
        )

    def dial(self, number: str, call_id: str = "", password: str = "") -> Request:
        """A call from the phone to `number`, answering the node's 407 (with `password`,
        default its own); returns the INVITE that got past the challenge."""
        sdp = (
            "v=0\no=- 3 3 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
            "m=audio 7100 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n"
        )
        call_id = call_id or f"ph{self.agent}-{number}"
        return self.send_authenticated("INVITE", number, call_id, sdp, "application/sdp", password)

    def message(self, to: str, text: str, call_id: str = "") -> Request:
        """A SIP MESSAGE (RFC 3428) from the phone to agent `to`."""
        call_id = call_id or f"msg{self.agent}-{to}"
        return self.send_authenticated("MESSAGE", to, call_id, text, "text/plain")

    def send_authenticated(
        self, method: str, user: str, call_id: str, body: str, content_type: str, password: str = ""
    ) -> Request:
        """`method` to sip:`user`@node, once bare and once with the answer to its 407."""
        uri = f"sip:{user}@127.0.0.1"
        length = len(body.replace("\n", "\r\n").encode())
        auth = ""
        for cseq in (1, 2):
            text = (
                f"{method} {uri} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {self.hostport};branch=z9hG4bK{method}{call_id}{cseq};rport\n"
                f"From: <sip:{self.agent}@127.0.0.1>;tag=d{self.agent}\nTo: <{uri}>\n"
                f"Call-ID: {call_id}\nCSeq: {cseq} {method}\nMax-Forwards: 70\n"
                f"Contact: <sip:{self.agent}@{self.hostport}>\n{auth}"
                f"Content-Type: {content_type}\nContent-Length: {length}\n\n" + body
            )
            self.h.deliver(text, self.source)
            if cseq == 2:
                break
            answers = self.h.take(self.port)
            (challenge,) = [m for m in answers if isinstance(m, Response) and m.status == 407]
            if method == "INVITE":
                self.ack_final(challenge, uri)
            value = [
                v
                for v in challenge.headers.get_all("proxy-authenticate")
                if f"algorithm={self.algorithm}," in v.replace(" ", "") + ","
            ][0]
            auth = f"Proxy-Authorization: {self.credentials(value, method, uri, password)}\n"
        return parse_message(text.replace("\n", "\r\n").encode())  # type: ignore[return-value]

    def ack_final(self, response: Response, uri: str) -> None:
        """ACK a final non-2xx answer to our INVITE (same branch, RFC 3261 §17.1.1.3)."""
        via = response.headers.get("via") or ""
        self.h.deliver(
            f"ACK {uri} SIP/2.0\nVia: {via}\nFrom: {response.headers.get('from')}\n"
            f"To: {response.headers.get('to')}\nCall-ID: {response.call_id}\n"
            f"CSeq: {response.cseq[0]} ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
            self.source,
        )

    def hang_up(self, invite: Request, remote_tag: str, cseq: int = 3) -> None:
        """BYE in the dialog of a call the phone placed (`invite`, answered by the node with
        To tag `remote_tag`)."""
        to = f"{invite.headers.get('to')};tag={remote_tag}"
        self.h.deliver(
            f"BYE sip:hotline@127.0.0.1:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.hostport};branch=z9hG4bKhang{cseq}{remote_tag};rport\n"
            f"From: {invite.headers.get('from')}\nTo: {to}\nCall-ID: {invite.call_id}\n"
            f"CSeq: {cseq} BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
            self.source,
        )
