"""Checks a UAS makes on a request before acting on it (RFC 3261 §8.2), for `Switch`.

Each answers a question about one parsed request and builds no state: whether its top Via
names a transaction at all, which of its Require tags the node lacks, whether the INVITE's
body and Accept suit a node that answers with SDP. RFC 4475 §3.2 and §3.3 give a message for
each (tests/vectors/rfc4475/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from media.sdes import leg_encryption
from softswitch.sdp import SdpError, parse_sdp
from softswitch.sip.build import MAGIC_COOKIE, make_response
from softswitch.sip.message import SINGLE_VALUED, Headers, Request, Response

# Schemes of an address-of-record in a REGISTER's To (RFC 3261 §10.2); others get 400.
AOR_SCHEMES = frozenset(("sip", "sips"))
# Bodies an INVITE may carry (a multipart/mixed one is read for its SDP part); others get 415.
INVITE_BODIES = ("application/sdp", "multipart/mixed")
# Media ranges of an Accept that admit an SDP answer (RFC 3261 §20.1).
_SDP_RANGES = frozenset(("application/sdp", "application/*", "*/*"))
# A Via whose branch may be the magic cookie alone; the top Via is then parsed to be sure.
_BARE_COOKIE = re.compile(r"(?i)branch[ \t]*=[ \t]*z9hG4bK(?![^ \t;,])")


def bare_cookie(request: Request) -> bool:
    """Whether the top Via's branch is the magic cookie with no identifier after it (RFC
    4475 §3.2.1): such a branch claims RFC 3261 matching but names no transaction."""
    if not _BARE_COOKIE.search(request.headers.get("via") or ""):
        return False  # the common case, decided without parsing the Via
    return request.top_via.branch == MAGIC_COOKIE


def unsupported_tags(request: Request, supported: Collection[str]) -> list[str]:
    """The option tags of `request`'s Require headers not in `supported` (§8.2.2.3)."""
    return [
        tag
        for value in request.headers.get_all("require")
        for tag in (t.strip() for t in value.split(","))
        if tag and tag not in supported
    ]


def first_values(request: Request) -> Request:
    """`request` with only the first of each header that must appear once: the answer to a
    request refused for repeating one must not repeat it (RFC 4475 §3.3.8)."""
    seen: set[str] = set()
    items = []
    for name, value in request.headers:
        if name in SINGLE_VALUED:
            if name in seen:
                continue
            seen.add(name)
        items.append((name, value))
    return Request(request.method, request.uri, Headers(items))


def content_refusal(invite: Request) -> Response | None:
    """415 for an INVITE body the node cannot read (listing in Accept what it can), 406 when
    the caller's Accept admits no SDP answer (RFC 3261 §8.2.3, §21.4.7; RFC 4475 §3.3.6,
    §3.3.15); None when neither applies. An empty Accept value is ignored."""
    kind = (invite.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if invite.body and kind not in INVITE_BODIES:
        return make_response(invite, 415, extra=[("accept", ", ".join(INVITE_BODIES))])
    ranges = {
        media_range.partition(";")[0].strip().lower()
        for value in invite.headers.get_all("accept")
        for media_range in value.split(",")
    } - {""}
    if ranges and not ranges & _SDP_RANGES:
        return make_response(invite, 406, extra=[("accept", "application/sdp")])
    return None


def srtp_refusal(invite: Request, setting: str, transport: str) -> Response | None:
    """488 for a call from an agent's phone whose media must be encrypted (its
    `media_encryption`, or `media.agent_encryption`; `auto` is `srtp` over TLS) when its
    offer is plain RTP: answering it would put the call on the wire in clear. None when
    SRTP is not required, the INVITE has no offer (the node's answer offers SRTP), or the
    offer is RTP/SAVP with a=crypto."""
    if not invite.body or leg_encryption(setting, transport) != "srtp":
        return None
    try:
        audio = parse_sdp(invite.body).audio()
    except (SdpError, ValueError):
        return None  # not read here: the anchor refuses what it cannot use
    if audio is not None and audio.proto.upper() == "RTP/SAVP" and audio.attributes("crypto"):
        return None
    return make_response(
        invite, 488, "SRTP Required",
        extra=[("warning", '399 hotline "media_encryption needs RTP/SAVP with a=crypto"')],
    )  # fmt: skip
