"""SDP security descriptions for media streams (SDES, RFC 4568): the `a=crypto` lines of an
audio stream, fresh master keys, and the keys each leg uses as offer and answer go by.

A crypto line names a tag, a suite and an inline key (master key ‖ master salt, base64):
`a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<40 base64 characters>`. The key an SDP carries
is the one its author encrypts with (RFC 4568 §6.1): the party's key unprotects what the
leg receives, ours protects what the node sends it.

Per leg, `LegKeys` holds the setting (`media_encryption`), the pair of keys in use and our
offer awaiting its answer. Its methods compute what to send and return the keys to use;
`use` commits them once the engine has them, so a refused offer or answer changes nothing.

- `none`: our offers are plain RTP/AVP; an offer that asks for SRTP still gets it.
- `srtp`: our offers are RTP/SAVP; an answer without a crypto line we offered is refused,
  and so is a plain offer (488).
- `optional`: best effort without RFC 5939: our offers are RTP/AVP carrying crypto lines;
  the media is SRTP when the answer accepts one of them, plain RTP when it has none.

Keys are fresh from `secrets` for each leg and direction; a re-offer or re-answer on a leg
keeps the key in use while the suite stays (the crypto context goes on, RFC 4568 §7.1.4),
and a party's changed key is a new context. Keys never appear in a `repr`, log or error.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable, Sequence

#: Suites we key (RFC 4568 §6.2, RFC 6188 §7.1) -> master key + salt length in bytes.
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "AES_256_CM_HMAC_SHA1_80": 46,
}
#: What our own offers list, in preference order.
OFFER_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
ENCRYPTION = ("none", "optional", "srtp")
PLAIN, SECURE = "RTP/AVP", "RTP/SAVP"


class SdesError(ValueError):
    """Crypto negotiation failed (the SDP is refused: 488, or the answer is unusable)."""


class Crypto:
    """One usable a=crypto line: tag, suite and master key ‖ salt (hidden in its repr)."""

    __slots__ = ("tag", "suite", "key")

    def __init__(self, tag: int, suite: str, key: bytes) -> None:
        self.tag = tag
        self.suite = suite
        self.key = key

    def attribute(self) -> str:
        """The attribute value, for `a=` (RFC 4568 §9.1)."""
        return f"crypto:{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Crypto)
            and (self.tag, self.suite) == (other.tag, other.suite)
            and secrets.compare_digest(self.key, other.key)
        )

    def __hash__(self) -> int:
        return hash((self.tag, self.suite))

    def __repr__(self) -> str:
        return f"Crypto(tag={self.tag}, suite={self.suite!r}, key=<{len(self.key)} bytes>)"


def parse_crypto(value: str) -> Crypto | None:
    """An `a=crypto:` value (without `crypto:`), or None when we cannot key it: an unknown
    suite, a key that is not one inline key of the suite's length, an MKI, several keys, or
    session parameters (RFC 4568 §7.1.1: the answerer skips such lines). Never raises."""
    parts = value.split()
    if len(parts) != 3 or not parts[0].isdecimal() or len(parts[0]) > 9:
        return None
    tag, suite, params = int(parts[0]), parts[1], parts[2]
    if suite not in SUITES or not params.startswith("inline:") or ";" in params:
        return None  # one key only: several keys need MKIs
    fields = params[len("inline:") :].split("|")
    if len(fields) > 2 or (len(fields) == 2 and not _lifetime_ok(fields[1])):
        return None  # an MKI field (`1:4`) or an unusable lifetime
    try:
        key = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(key) != SUITES[suite]:
        return None
    return Crypto(tag, suite, key)


def _lifetime_ok(text: str) -> bool:
    """RFC 4568 §6.1 lifetime (`2^31` or decimal): one libsrtp's default 2^48 covers."""
    if text.startswith("2^"):
        return text[2:].isdecimal() and int(text[2:]) <= 48
    return text.isdecimal() and int(text) <= 2**48


def usable(values: Iterable[str]) -> list[Crypto]:
    """The crypto lines of a stream that we can key, in the author's preference order."""
    found = (parse_crypto(v) for v in values)
    return [c for c in found if c is not None]


def new_key(suite: str) -> bytes:
    """A fresh master key ‖ master salt for `suite` (RFC 4568 §6.1)."""
    return secrets.token_bytes(SUITES[suite])


class LegKeys:
    """One leg's SDES state: its setting, the keys in use, our offer awaiting an answer."""

    __slots__ = ("encryption", "local", "remote", "proto", "offered")

    def __init__(self, encryption: str = "none") -> None:
        self.encryption = encryption
        self.local: Crypto | None = None  # ours: protects what the node sends
        self.remote: Crypto | None = None  # the party's: unprotects what it sends
        self.proto = PLAIN  # the profile of the stream in use
        self.offered: tuple[Crypto, ...] = ()

    @property
    def secure(self) -> bool:
        return self.local is not None

    def set_encryption(self, encryption: str) -> None:
        if encryption not in ENCRYPTION:
            raise SdesError(f"media_encryption must be one of {ENCRYPTION}, got {encryption!r}")
        self.encryption = encryption

    def offer(self) -> tuple[str, list[str]]:
        """Our offer: (profile, crypto attribute values). A leg in SRTP re-offers its key
        in use alone; otherwise the setting decides (fresh keys, one per suite)."""
        if self.local is not None:
            self.offered = (self.local,)
            return self.proto, [self.local.attribute()]
        if self.encryption == "none":
            self.offered = ()
            return PLAIN, []
        if not self.offered:
            self.offered = tuple(
                Crypto(tag, suite, new_key(suite)) for tag, suite in enumerate(OFFER_SUITES, 1)
            )
        proto = SECURE if self.encryption == "srtp" else PLAIN
        return proto, [c.attribute() for c in self.offered]

    def answer(self, proto: str, values: Sequence[str]) -> tuple[Crypto | None, Crypto | None]:
        """Keys for our answer to the party's offer: (ours, theirs), both None for plain
        RTP. Raises `SdesError` when the offer cannot be answered (488)."""
        offered = usable(values)
        if not offered:
            if proto == SECURE:
                raise SdesError("RTP/SAVP offer without a crypto suite we support")
            if self.encryption == "srtp":
                raise SdesError("plain RTP offered where SRTP is required")
            return None, None
        theirs = offered[0]
        mine = self.local
        if mine is None or mine.suite != theirs.suite:
            mine = Crypto(theirs.tag, theirs.suite, new_key(theirs.suite))
        elif mine.tag != theirs.tag:
            mine = Crypto(theirs.tag, mine.suite, mine.key)  # RFC 4568 §7.1.2: its tag
        return mine, theirs

    def take_answer(self, proto: str, values: Sequence[str]) -> tuple[Crypto | None, Crypto | None]:
        """Keys from the answer to our offer: (ours, theirs), both None for plain RTP.
        Raises `SdesError` when the answer does not fit our offer or the setting."""
        theirs = next(
            (
                c
                for c in usable(values)
                if any(o.tag == c.tag and o.suite == c.suite for o in self.offered)
            ),
            None,
        )
        if theirs is None:
            if self.offered and (self.encryption == "srtp" or proto == SECURE):
                raise SdesError("the answer accepted none of our crypto suites")
            if proto == SECURE:
                raise SdesError("RTP/SAVP answer to a plain RTP offer")
            return None, None
        mine = next(o for o in self.offered if o.tag == theirs.tag)
        return mine, theirs

    def use(self, proto: str, mine: Crypto | None, theirs: Crypto | None) -> None:
        """The engine keys the leg with these now: remember them."""
        self.local, self.remote = mine, theirs
        self.proto = proto if mine is not None else PLAIN
        self.offered = ()

    def __repr__(self) -> str:
        suite = self.local.suite if self.local is not None else None
        return f"LegKeys(encryption={self.encryption!r}, suite={suite!r})"


def leg_encryption(setting: str, transport: str) -> str:
    """The setting for a leg to an agent's phone: `auto` is `srtp` for a phone registered
    over TLS (its signalling is private, so should its media be) and `none` otherwise."""
    if setting == "auto":
        return "srtp" if transport.upper() == "TLS" else "none"
    return setting


__all__ = [
    "ENCRYPTION",
    "OFFER_SUITES",
    "SUITES",
    "Crypto",
    "LegKeys",
    "SdesError",
    "leg_encryption",
    "new_key",
    "parse_crypto",
    "usable",
]
