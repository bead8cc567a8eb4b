"""Constructors for SIP messages: responses to requests, tags, branches, Call-IDs.

Random identifiers come from a `random.Random` seeded once from the OS, which is plenty for
uniqueness (RFC 3261 §8.1.1.7 asks for global uniqueness, not secrecy) and cheap on the hot
path. Nonces, which must be unpredictable, live in `auth` and use `secrets`.
"""

from __future__ import annotations

import random
import secrets

from .message import Headers, Request, Response

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

_rng = random.Random(secrets.randbits(64))


def new_branch() -> str:
    return f"{MAGIC_COOKIE}{_rng.getrandbits(64):016x}"


def new_tag() -> str:
    return f"{_rng.getrandbits(48):012x}"


def new_call_id(host: str) -> str:
    return f"{_rng.getrandbits(96):024x}@{host}"


def new_request_headers(method: str, from_addr: str, to_addr: str, host: str) -> Headers:
    """The headers that start an out-of-dialog request (RFC 3261 §8.1.1): Max-Forwards,
    From (`from_addr`, a name-addr, with a fresh tag), To, a new Call-ID at `host`, CSeq 1.
    The transaction layer adds the Via."""
    headers = Headers()
    headers.add("max-forwards", "70")
    headers.add("from", f"{from_addr};tag={new_tag()}")
    headers.add("to", to_addr)
    headers.add("call-id", new_call_id(host))
    headers.add("cseq", f"1 {method}")
    return headers


def make_response(
    request: Request,
    status: int,
    reason: str = "",
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    extra: list[tuple[str, str]] | None = None,
) -> Response:
    """A response carrying the request's Via, From, To, Call-ID, CSeq (RFC 3261 §8.2.6.2).

    `to_tag` is added when the To header has none yet (never for 100 Trying, §8.2.6.2); a
    final response to a request without one gets a fresh tag when none is given, since a UAS
    must tag every response but 100 (the node is the UAS of whatever it answers itself).
    """
    if to_tag is None and status >= 200:
        to_tag = new_tag()
    items: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name in ("via", "from", "call-id", "cseq"):
            items.append((name, value))
        elif name == "to":
            if to_tag is not None and status != 100 and ";tag=" not in value.replace(" ", ""):
                value = f"{value};tag={to_tag}"
            items.append((name, value))
        elif name == "record-route" and 100 < status < 300:
            items.append((name, value))  # §12.1.1: copied into dialog-creating responses
        elif name == "timestamp" and status == 100:
            items.append((name, value))  # §8.2.6.1
    if extra:
        items.extend(extra)
    return Response(status, reason, Headers(items), body)
