"""The SDP side of the media engine: reading a party's offer or answer, writing the node's own.

`RtpEngine` (media/engine.py) keeps legs and drives the C engine; what it needs to know about
an SDP body, and every SDP body it produces, comes from here:

- reading: `Offer` (an offer parsed and checked once, its SDES `a=crypto` lines kept for
  media/sdes.py), `remote_media_from_sdp` and `read_media` turn an audio stream into
  `RemoteMedia` (address, G.711 payload types, ptime, telephone-event, direction; an
  IPv4-mapped address counts as IPv4, `c=0.0.0.0` as the old hold). Any SDP the engine
  cannot serve raises `MediaValueError` with the reason.
- relaying: `anchor_sdp` re-points a forwarded body at the node's address and port, without
  the far end's transport attributes (ICE, RTCP, crypto).
- writing: `audio_lines` (the node's m=audio section: G.711 laws, telephone-event, SDES) and
  `Origin`, a leg's own o= identity that makes the whole body (RFC 4566 §5, RFC 3264 §8).

Address families stay with the engine (a leg's sockets are of one family); this module only
reads the address an SDP names and writes the one it is given.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from media import _rtp
from media._rtp import MediaValueError
from media.sdes import usable
from softswitch.sdp import unmapped

if TYPE_CHECKING:
    from softswitch.sdp import MediaDescription, SessionDescription

DIRECTIONS = {
    "sendrecv": _rtp.SENDRECV,
    "sendonly": _rtp.SENDONLY,
    "recvonly": _rtp.RECVONLY,
    "inactive": _rtp.INACTIVE,
}
G711 = {0: "PCMU", 8: "PCMA"}
# Attributes that describe the far end's own transport; they must not reach the other side
# once media is anchored here (ICE candidates, RTCP port and multiplexing).
# SDES keys (a=crypto) belong to one leg too: each leg has its own (media/sdes.py).
TRANSPORT_ATTRIBUTES = (
    "candidate", "ice-", "rtcp", "end-of-candidates", "remote-candidates", "crypto",
)  # fmt: skip
# What each direction attribute says about its author: (sends, receives), RFC 3264 §5.1.
DIRECTION_FLOW = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
FLOW_DIRECTION = {flow: name for name, flow in DIRECTION_FLOW.items()}
TELEPHONE_EVENT_PT = 101  # the payload type of telephone-event in our own offers
TELEPHONE_EVENTS = "0-16"  # RFC 4733 §3.2: the DTMF digits 0-9 * # A-D and flash


class RemoteMedia(msgspec.Struct, frozen=True):
    """What the engine needs from one side's SDP audio stream."""

    ip: str
    port: int
    payload_type: int
    ptime_ms: int
    telephone_event_pt: int | None
    direction: str
    payload_types: tuple[int, ...]  # every G.711 type offered, in preference order


def remote_media_from_sdp(body: bytes) -> RemoteMedia | None:
    """The audio stream of an SDP body, or None when it has no usable audio stream.

    Raises `MediaValueError` when the audio stream is not plain RTP with G.711.
    """
    sdp = read_sdp(body)
    audio = sdp.audio()
    if audio is not None and audio.proto != "RTP/AVP":
        # Relayed SDP would carry one party's keys to the other; SRTP legs negotiate their
        # own (answer_local / offer_local).
        raise MediaValueError(f"cannot relay {audio.proto} media (plain RTP/AVP only)")
    return None if audio is None else read_media(sdp, audio)


class Offer:
    """An SDP offer parsed and checked once (`RtpEngine.read_offer`) and answered later
    (`RtpEngine.answer_local`), so that a call's INVITE body is parsed one time."""

    __slots__ = ("body", "sdp", "audio", "media", "crypto")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sdp = read_sdp(body)
        # The first audio stream (RFC 3264: an answer keeps every m= line, in order).
        self.audio = next((m for m in self.sdp.media if m.media == "audio"), None)
        audio = self.audio
        self.media = None if audio is None or audio.port == 0 else read_media(self.sdp, audio)
        # SDES (RFC 4568): the a=crypto lines; an RTP/SAVP offer needs one we can key
        self.crypto: list[str] = []
        if audio is not None and self.media is not None:
            self.crypto = audio.attributes("crypto")
            if audio.proto == "RTP/SAVP" and not usable(self.crypto):
                raise MediaValueError("RTP/SAVP offer without a crypto suite we support")


def read_sdp(body: bytes) -> SessionDescription:
    """`body` parsed; SDP that does not parse raises `MediaValueError`."""
    from softswitch.sdp import SdpError, parse_sdp

    try:
        return parse_sdp(body)
    except SdpError as exc:
        raise MediaValueError(f"SDP: {exc}") from exc


def read_media(sdp: SessionDescription, audio: MediaDescription) -> RemoteMedia:
    """What the engine needs from one audio stream (port not 0) of a parsed SDP."""
    try:
        return _read_audio(sdp, audio)
    except MediaValueError:
        raise
    except ValueError as exc:  # a number that is not one (`a=rtpmap:0 PCMU/x`, `²`)
        raise MediaValueError(f"SDP: {exc}") from exc


def _read_audio(sdp: SessionDescription, audio: MediaDescription) -> RemoteMedia:
    from softswitch.sdp import SdpError

    try:
        ip = sdp.address_of(audio)
    except SdpError as exc:
        raise MediaValueError(f"SDP: {exc}") from exc
    if ip is None:
        raise MediaValueError("SDP audio stream without a connection address")
    if ":" in ip:
        ip = unmapped(ip)  # "::ffff:192.0.2.1" is an IPv4 party (an IPv4 leg serves it)
    if audio.proto not in ("RTP/AVP", "RTP/SAVP"):
        raise MediaValueError(f"cannot anchor {audio.proto} media (RTP/AVP or RTP/SAVP only)")
    if not 0 < audio.port < 65536:
        raise MediaValueError(f"bad audio port {audio.port}")
    rtpmap = audio.rtpmap()
    offered = tuple(
        int(f) for f in audio.formats if f.isdecimal() and int(f) in G711 and int(f) in rtpmap
    )
    if not offered:
        raise MediaValueError("SDP audio stream names neither PCMU nor PCMA")
    direction = audio.direction
    if direction is None:
        session = [v for k, v in sdp.session if k == "a" and v in DIRECTIONS]
        direction = session[0] if session else "sendrecv"
    if ip in ("0.0.0.0", "::"):
        # RFC 3264 §8.4: neither RTP nor RTCP may be sent there (the old way to hold);
        # what the author sends is still welcome.
        direction = FLOW_DIRECTION[(DIRECTION_FLOW[direction][0], False)]
    ptime = audio.ptime or 20
    te = audio.telephone_event()  # a dynamic type outside 0-127 cannot be on the wire
    return RemoteMedia(
        ip=ip,
        port=audio.port,
        payload_type=offered[0],
        ptime_ms=min(30, max(10, ptime)),
        telephone_event_pt=te if te is not None and 0 <= te <= 127 else None,
        direction=direction,
        payload_types=offered,
    )


def anchor_sdp(
    body: bytes, ip: str, port: int, *, offer_both_laws: bool = False, codec: int | None = None
) -> bytes:
    """`body` re-pointed at our address and port, without the far end's transport details.

    `offer_both_laws`: an offer we forward also lists the G.711 law its author did not offer,
    since the engine can transcode μ-law ⇄ A-law (the phone may prefer the other).
    `codec`: an answer we forward names only this G.711 payload type (plus telephone-event):
    the one its receiver offered, when the answering side chose a law it did not offer.
    """
    from softswitch.sdp import SdpError, parse_sdp

    try:
        sdp = parse_sdp(body)
    except SdpError as exc:
        raise MediaValueError(f"SDP: {exc}") from exc
    sdp.set_connection(ip)
    audio = sdp.audio()
    if audio is not None:
        audio.port = port
        audio.lines = [
            (k, v)
            for k, v in audio.lines
            if not (k == "a" and v.split(":", 1)[0].startswith(TRANSPORT_ATTRIBUTES))
        ]
        if offer_both_laws:
            present = [int(f) for f in audio.formats if f.isdecimal() and int(f) in G711]
            if present:
                last = audio.formats.index(str(present[-1]))
                for pt in (0, 8):
                    if pt not in present:
                        last += 1
                        audio.formats.insert(last, str(pt))
                        audio.lines.insert(0, ("a", f"rtpmap:{pt} {G711[pt]}/8000"))
        if codec is not None and str(codec) not in audio.formats:
            te = audio.telephone_event()
            keep = {str(codec)} | ({str(te)} if te is not None else set())
            audio.formats = [str(codec)] + ([str(te)] if te is not None else [])
            audio.lines = [
                (k, v)
                for k, v in audio.lines
                if not (
                    k == "a"
                    and v.split(":", 1)[0] in ("rtpmap", "fmtp")
                    and v.split(":", 1)[1].split(" ", 1)[0] not in keep
                )
            ]
            audio.lines.insert(0, ("a", f"rtpmap:{codec} {G711[codec]}/8000"))
    return sdp.to_bytes()


# o= session ids (RFC 4566 §5.2: unique, not secret): seeded once, not read per leg from
# the operating system.
_origin_ids = random.Random(secrets.randbits(64))


class Origin:
    """The node's own SDP identity on one leg (`RtpEngine.answer_local` / `offer_local`): the
    o= session id and version (RFC 4566 §5.2) and the lines after o= last sent there."""

    __slots__ = ("session_id", "version", "sent")

    def __init__(self) -> None:
        self.session_id = _origin_ids.getrandbits(62)
        self.version = 0
        self.sent: list[str] | None = None

    def sdp(self, family: str, ip: str, streams: list[str]) -> bytes:
        """A whole SDP body of ours (RFC 4566 §5) naming `ip` of `family` ("IP4"/"IP6")."""
        address = f"{family} {ip}"
        rest = ["s=hotline", f"c=IN {address}", "t=0 0", *streams]
        if rest != self.sent:  # RFC 3264 §8: changed SDP, next version; the same, same version
            self.version += 1
            self.sent = rest
        lines = ["v=0", f"o=hotline {self.session_id} {self.version} IN {address}", *rest]
        return ("\r\n".join(lines) + "\r\n").encode()


def audio_lines(
    port: int,
    laws: tuple[int, ...],
    te_pt: int | None,
    ptime_ms: int,
    direction: str,
    proto: str = "RTP/AVP",
    crypto: Sequence[str] = (),
) -> list[str]:
    """Our m=audio section on `port`: the laws given, telephone-event when `te_pt` is set,
    and SDES crypto attributes (RFC 4568) with `proto` RTP/SAVP or RTP/AVP."""
    formats = [str(pt) for pt in laws] + ([] if te_pt is None else [str(te_pt)])
    lines = [f"m=audio {port} {proto} {' '.join(formats)}"]
    lines += [f"a={value}" for value in crypto]
    lines += [f"a=rtpmap:{pt} {G711[pt]}/8000" for pt in laws]
    if te_pt is not None:
        lines += [
            f"a=rtpmap:{te_pt} telephone-event/8000",
            f"a=fmtp:{te_pt} {TELEPHONE_EVENTS}",
        ]
    return [*lines, f"a=ptime:{ptime_ms}", f"a={direction}"]


__all__ = [
    "DIRECTIONS",
    "DIRECTION_FLOW",
    "FLOW_DIRECTION",
    "G711",
    "TELEPHONE_EVENT_PT",
    "Offer",
    "Origin",
    "RemoteMedia",
    "anchor_sdp",
    "audio_lines",
    "read_media",
    "read_sdp",
    "remote_media_from_sdp",
]
