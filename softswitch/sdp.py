"""SDP (RFC 4566) as far as a B2BUA anchoring audio needs it (RFC 3264 offer/answer).

`parse_sdp` reads the session and media descriptions; `SessionDescription.to_bytes` writes
them back unchanged apart from what the caller replaced. The media engine needs, per audio
stream: the remote address and port, the payload types with their rtpmap, ptime, the
telephone-event payload type, and the direction (hold is `sendonly`/`inactive`, RFC 3264 §8.4).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# Static payload types of RFC 3551 that matter to a G.711 node.
STATIC_PAYLOADS = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 18: ("G729", 8000)}


class SdpError(ValueError):
    """The body is not usable SDP (answered 488 or 400 by the caller)."""


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    lines: list[tuple[str, str]] = field(default_factory=list)  # c=, a=, b= … in order

    def attribute(self, name: str) -> str | None:
        prefix = name + ":"
        for kind, value in self.lines:
            if kind == "a" and (value == name or value.startswith(prefix)):
                return value[len(prefix) :] if value.startswith(prefix) else ""
        return None

    def attributes(self, name: str) -> list[str]:
        prefix = name + ":"
        return [v[len(prefix) :] for k, v in self.lines if k == "a" and v.startswith(prefix)]

    @property
    def connection(self) -> str | None:
        for kind, value in self.lines:
            if kind == "c":
                return value
        return None

    @property
    def direction(self) -> str | None:
        for kind, value in self.lines:
            if kind == "a" and value in DIRECTIONS:
                return value
        return None

    def set_direction(self, direction: str) -> None:
        self.lines = [(k, v) for k, v in self.lines if not (k == "a" and v in DIRECTIONS)]
        self.lines.append(("a", direction))

    def rtpmap(self) -> dict[int, tuple[str, int]]:
        """payload type -> (encoding name, clock rate), static types included."""
        out: dict[int, tuple[str, int]] = {}
        for fmt in self.formats:
            if fmt.isdecimal() and int(fmt) in STATIC_PAYLOADS:
                out[int(fmt)] = STATIC_PAYLOADS[int(fmt)]
        for value in self.attributes("rtpmap"):
            pt_text, _, rest = value.partition(" ")
            name, _, rate = rest.partition("/")
            clock = rate.split("/")[0].strip() if rate else "8000"
            if pt_text.isdecimal() and clock.isdecimal():  # not isdigit: '²'.isdigit()
                out[int(pt_text)] = (name.strip(), int(clock))
        return out

    def telephone_event(self) -> int | None:
        for pt, (name, rate) in self.rtpmap().items():
            if name.lower() == "telephone-event" and rate == 8000 and str(pt) in self.formats:
                return pt
        return None

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return int(value) if value and value.strip().isdecimal() else None


@dataclass
class SessionDescription:
    session: list[tuple[str, str]]  # v=, o=, s=, c=, t= … before the first m=
    media: list[MediaDescription]

    @property
    def connection(self) -> str | None:
        for kind, value in self.session:
            if kind == "c":
                return value
        return None

    def address_of(self, m: MediaDescription) -> str | None:
        """The IP address RTP for `m` goes to (media-level c= wins, RFC 4566 §5.7)."""
        conn = m.connection or self.connection
        if conn is None:
            return None
        parts = conn.split()
        if len(parts) < 3 or parts[0] != "IN":
            raise SdpError(f"bad c= line {conn!r}")
        return parts[2].split("/")[0]

    def audio(self) -> MediaDescription | None:
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        return None

    def set_connection(self, address: str) -> None:
        """Point every stream at `address` (session c=, media c= dropped)."""
        family = "IP6" if ":" in address else "IP4"
        conn = f"IN {family} {address}"
        replaced = False
        session: list[tuple[str, str]] = []
        for kind, value in self.session:
            if kind == "c":
                if not replaced:
                    session.append(("c", conn))
                    replaced = True
                continue
            if kind == "o":
                parts = value.split()
                if len(parts) == 6:
                    parts[4], parts[5] = family, address
                    value = " ".join(parts)
            session.append((kind, value))
        if not replaced:
            index = next((i for i, (k, _) in enumerate(session) if k == "t"), len(session))
            session.insert(index, ("c", conn))
        self.session = session
        for m in self.media:
            m.lines = [(k, v) for k, v in m.lines if k != "c"]

    def to_bytes(self) -> bytes:
        lines = [f"{k}={v}" for k, v in self.session]
        for m in self.media:
            lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}")
            lines.extend(f"{k}={v}" for k, v in m.lines)
        return ("\r\n".join(lines) + "\r\n").encode()


def address_family(host: str) -> str:
    """The SDP address type (RFC 4566 §5.7: "IP4" or "IP6") of an IP address or host, as a
    socket or a URI gives it ("[::1]" tolerated). An IPv4-mapped IPv6 address
    (``::ffff:192.0.2.1``, a dual-stack socket's view of an IPv4 peer) is IPv4: that peer is
    reached over IPv4. A name without a colon counts as IPv4."""
    if ":" not in host:
        return "IP4"
    return "IP4" if unmapped(host) != host.strip("[]") else "IP6"


def unmapped(host: str) -> str:
    """``host`` without brackets, and an IPv4-mapped IPv6 address as the IPv4 address."""
    bare = host.strip("[]")
    if bare[:7].lower() == "::ffff:" and "." in bare:
        try:
            mapped = ipaddress.IPv6Address(bare.split("%", 1)[0]).ipv4_mapped
        except ValueError:
            return bare
        if mapped is not None:
            return str(mapped)
    return bare


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body; raises SdpError when it is not SDP."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    session: list[tuple[str, str]] = []
    media: list[MediaDescription] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            port = parts[1].split("/")[0] if len(parts) >= 4 else ""
            if not (port.isascii() and port.isdigit()):  # '²'.isdigit() is True
                raise SdpError(f"bad m= line {value!r}")
            media.append(MediaDescription(parts[0], int(port), parts[2], parts[3:]))
        elif media:
            media[-1].lines.append((kind, value))
        else:
            session.append((kind, value))
    if not session or session[0][0] != "v":
        raise SdpError("SDP must start with v=")
    sdp = SessionDescription(session, media)
    for m in media:
        address = sdp.address_of(m)
        if address is not None and m.port != 0 and not _dotted_quad(address):
            try:
                ipaddress.ip_address(address)
            except ValueError as exc:
                raise SdpError(f"connection address {address!r} is not an IP address") from exc
    return sdp


def _dotted_quad(text: str) -> bool:
    """A plain IPv4 address (`127.0.0.1`), the common case, known without `ipaddress`."""
    parts = text.split(".")
    return len(parts) == 4 and all(
        p.isascii() and p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or p[0] != "0")
        for p in parts
    )
