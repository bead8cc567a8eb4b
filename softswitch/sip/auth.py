"""Digest authentication for SIP, server side (RFC 3261 §22, RFC 7616, RFC 8760).

Sans-IO: header *values* in, header values and verdicts out; time is a `now` parameter.

- `parse_authorization` reads an Authorization / Proxy-Authorization value.
- `DigestServer.challenge` builds WWW-Authenticate / Proxy-Authenticate values, one per offered
  algorithm, in the configured order. Order matters: SIPp 3.6.1 and many desk phones read only
  the first challenge and know only MD5; pjsip answers the topmost challenge it supports.
- `DigestServer.verify` checks a response against a stored HA1.

Nonces are self-validating: ``base64url(issued_at | random | HMAC(secret, realm | issued_at |
random))``. Validating one needs no per-nonce storage; only nonces that have been *used
successfully* are remembered, to reject replays (see `DigestServer`).

Unknown users are verified against a dummy HA1 so that their answers and timing match those of
a known user with a wrong password (SPEC SIP-8: no extension enumeration).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence

import msgspec

from .errors import SipError

__all__ = [
    "AuthError",
    "AuthResult",
    "DigestCredentials",
    "DigestServer",
    "digest_response",
    "ha1",
    "parse_authorization",
]


class AuthError(SipError):
    """Malformed or unsupported credentials (the request gets a fresh 401/407)."""


class DigestCredentials(msgspec.Struct, frozen=True):
    """The parameters of a Digest Authorization value (RFC 7616 §3.4), unquoted and unescaped.

    `algorithm` is the canonical spelling ("MD5", "SHA-256", ...) when known, else as sent;
    `nc` is kept as the 8 hex digits sent because the response hashes it verbatim.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None


class AuthResult(msgspec.Struct, frozen=True):
    """The verdict on one Authorization value.

    `ok`: the request is authenticated as `username`.
    `stale`: the response was right but the nonce is expired or already used; answer with a
    new challenge carrying ``stale=true`` so the client retries without asking its user.
    `username`: on success the authenticated user; on failure the claimed user if it exists,
    None if the user is unknown or the value unparseable. Never show it to the client.
    `reason`: for logs only (it distinguishes unknown users from wrong passwords).
    `credentials`: the parsed value when it parsed, so the caller can compare `uri` with the
    Request-URI (RFC 3261 §22.4 leaves that check to the server).
    """

    ok: bool
    username: str | None
    stale: bool
    reason: str
    credentials: DigestCredentials | None = None


# RFC 7616 §3.2 / RFC 8760 §2: algorithm name -> hashlib name. The -sess variants use the same
# hash with a session HA1 (RFC 7616 §3.4.2).
_HASHES: dict[str, str] = {
    "MD5": "md5",
    "SHA-256": "sha256",
    "SHA-512-256": "sha512_256",
}


def _hash_available(name: str) -> bool:
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


_ALGORITHMS: dict[str, tuple[str, bool]] = {}  # canonical name -> (hashlib name, is_sess)
for _name, _hashlib_name in _HASHES.items():
    if _hash_available(_hashlib_name):
        _ALGORITHMS[_name] = (_hashlib_name, False)
        _ALGORITHMS[_name + "-sess"] = (_hashlib_name, True)
_CANONICAL = {name.lower(): name for name in _ALGORITHMS}


def _canonical_algorithm(name: str) -> str | None:
    return _CANONICAL.get(name.lower())


def _h(hash_name: str, text: str) -> str:
    """H(data) of RFC 7616 §3.4.1: lowercase hex of the hash of the UTF-8 bytes."""
    if hash_name == "md5":
        return hashlib.md5(text.encode()).hexdigest()
    if hash_name == "sha256":
        return hashlib.sha256(text.encode()).hexdigest()
    return hashlib.new(hash_name, text.encode()).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """The stored credential H(username:realm:password) (RFC 7616 §3.4.2).

    For a -sess algorithm this is the same value as for its base algorithm: the session
    transform needs the nonce and cnonce and happens at verification time, so one stored HA1
    per hash serves both ("MD5" and "MD5-sess" share it).
    """
    canonical = _canonical_algorithm(algorithm)
    if canonical is None:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")
    hash_name, _sess = _ALGORITHMS[canonical]
    return _h(hash_name, f"{username}:{realm}:{password}")


def digest_response(
    stored_ha1: str,
    algorithm: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest (RFC 7616 §3.4.1; RFC 2069 form when `qop` is None).

    `stored_ha1` is H(username:realm:password); for -sess algorithms it is turned into the
    session HA1 H(HA1:nonce:cnonce) here. Only qop=auth (or none) is supported: auth-int
    would need the body hash, which no SIP client we interoperate with uses.
    """
    canonical = _canonical_algorithm(algorithm)
    if canonical is None:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")
    hash_name, sess = _ALGORITHMS[canonical]
    key = stored_ha1.lower()
    if sess:
        if cnonce is None:
            raise AuthError(f"{canonical} needs a cnonce")
        key = _h(hash_name, f"{key}:{nonce}:{cnonce}")
    ha2 = _h(hash_name, f"{method}:{uri}")
    if qop is None:
        return _h(hash_name, f"{key}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise AuthError("qop needs nc and cnonce")
    return _h(hash_name, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- parsing -------------------------------------------------------------------------------

# RFC 3261 §25.1 token characters; a value is a token or a quoted-string (with \-escapes).
# LWS may surround "=" and ","; folded lines (CRLF + WSP) count as whitespace. Leading commas
# are empty list elements, which RFC 7230 §7 tells recipients to tolerate.
_PARAM = re.compile(
    r"""[ \t\r\n,]*([-!%*_+`'~.0-9A-Za-z]+)[ \t\r\n]*=[ \t\r\n]*"""
    r"""(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^ \t\r\n,"]+))[ \t\r\n]*(?:,|\Z)""",
    re.S,
)
_TRAILING = re.compile(r"[ \t\r\n,]*")
_SCHEME = re.compile(r"[ \t\r\n]*([-!%*_+`'~.0-9A-Za-z]+)(?:[ \t\r\n]+|\Z)")
_ESCAPE = re.compile(r"\\(.)", re.S)
_NC = re.compile(r"[0-9A-Fa-f]{8}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def _auth_params(text: str, pos: int) -> dict[str, str]:
    """The comma-separated auth-params of `text` from `pos`; names lower-cased.

    A parameter given twice is an error (RFC 7616 §3.4: each may appear only once).
    """
    params: dict[str, str] = {}
    end = len(text)
    match_param = _PARAM.match
    while pos < end:
        match = match_param(text, pos)
        if match is None:
            if _TRAILING.fullmatch(text, pos):
                break
            raise AuthError(f"malformed auth-param at offset {pos}")
        name, quoted, token = match.groups()
        name = name.lower()
        if name in params:
            raise AuthError(f"parameter {name!r} given twice")
        if quoted is None:
            params[name] = token
        elif "\\" in quoted:
            params[name] = _ESCAPE.sub(r"\1", quoted)
        else:
            params[name] = quoted
        pos = match.end()
    return params


def parse_authorization(value: str) -> DigestCredentials:
    """Parse an Authorization / Proxy-Authorization header value with the Digest scheme.

    Parameter names are case-insensitive and may come in any order; values may be tokens or
    quoted strings (escapes undone); unknown parameters are ignored (RFC 7616 §3.4). Tokens
    like `algorithm`, `qop` and `nc` are accepted quoted as well, as many clients send them.
    Raises `AuthError` on anything malformed, on another scheme, on missing required
    parameters, or on a `qop` without `nc`/`cnonce`.
    """
    scheme = _SCHEME.match(value)
    if scheme is None:
        raise AuthError("no authentication scheme")
    if scheme.group(1).lower() != "digest":
        raise AuthError(f"unsupported authentication scheme {scheme.group(1)!r}")
    params = _auth_params(value, scheme.end())
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        raise AuthError(f"missing parameter(s): {', '.join(missing)}")
    if params.get("userhash", "false").lower() == "true":
        # RFC 7616 §3.4.4: we never offer userhash, so a hashed username cannot be looked up.
        raise AuthError("userhash=true is not supported")
    algorithm = params.get("algorithm", "MD5")
    algorithm = _canonical_algorithm(algorithm) or algorithm
    response = params["response"]
    if not _HEX.fullmatch(response):
        raise AuthError("response is not hexadecimal")
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        # RFC 7616 §3.4: with a qop, cnonce and nc MUST be sent; nc is exactly 8LHEX.
        if nc is None or cnonce is None:
            raise AuthError("qop without nc and cnonce")
        if not _NC.fullmatch(nc):
            raise AuthError("nc is not 8 hex digits")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response.lower(),
        algorithm=algorithm,
        cnonce=cnonce,
        nc=nc,
        qop=qop,
        opaque=params.get("opaque"),
    )


def _quote(text: str) -> str:
    """A quoted-string for `text` (RFC 3261 §25.1: escape '"' and '\\')."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- server --------------------------------------------------------------------------------

_NONCE_PAYLOAD = struct.Struct(">d8s")  # issued_at (the caller's clock), 8 random bytes
_NONCE_MAC_BYTES = 16
_NONCE_BYTES = _NONCE_PAYLOAD.size + _NONCE_MAC_BYTES
_NONCE_CHARS = (_NONCE_BYTES * 4 + 2) // 3  # base64url without padding
_NONCE_DOMAIN = b"hotline digest nonce v1\x00"
# nc recorded for a nonce consumed by a response without qop: higher than any 8-hex nc, so the
# nonce cannot be used again, with or without qop.
_NC_CONSUMED = 1 << 32


class _NonceUse:
    """What is remembered of a nonce after its first successful use."""

    __slots__ = ("highest_nc", "issued_at")

    def __init__(self, issued_at: float, highest_nc: int) -> None:
        self.issued_at = issued_at
        self.highest_nc = highest_nc


class DigestServer:
    """Challenges and verifies Digest credentials for one realm.

    Replay protection (RFC 7616 §5.6, nonce-count): for every nonce that has authenticated a
    request, the highest `nc` accepted is kept; a response with an equal or lower `nc` is
    refused with ``stale=True`` (a legitimate client that reordered requests just retries with
    a fresh nonce; an attacker replaying a captured request gains nothing).

    Responses without qop (RFC 2069 style, still sent by some desk phones) are accepted, but
    then the nonce is single-use: the first successful response consumes it and any later one
    gets ``stale=True``. Such a phone therefore pays one extra round trip per REGISTER refresh,
    and a captured request cannot be replayed.

    Memory: entries are created only by *successful* verifications (attackers without a
    password cannot grow the table) and dropped once their nonce expires. If more than
    `max_tracked_nonces` unexpired nonces are in use, the least recently first-used entry is
    evicted and `_forgotten_before` is raised to its issue time: any untracked nonce issued at
    or before that time is then treated as stale, so an evicted nonce can never be replayed;
    the only cost is one extra challenge round trip for the clients concerned.
    """

    def __init__(
        self,
        secret: bytes,
        realm: str,
        algorithms: Sequence[str] = ("MD5", "SHA-256"),
        nonce_lifetime: float = 300.0,
        qop: str = "auth",
        max_tracked_nonces: int = 65536,
    ) -> None:
        """Configure the realm.

        `secret` keys the nonce HMAC; keep it across restarts (with a clock that keeps going,
        e.g. wall time for `now`) if nonces issued before a restart should stay valid.
        `qop` is "auth" (offered and preferred) or "" (offer none; RFC 2069 style challenges).
        Raises ValueError on an unusable configuration.
        """
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if not realm:
            raise ValueError("realm must not be empty")
        if qop not in ("auth", ""):
            raise ValueError(f"qop must be 'auth' or '' (auth-int is not supported), not {qop!r}")
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        if max_tracked_nonces < 1:
            raise ValueError("max_tracked_nonces must be at least 1")
        self.realm = realm
        self.algorithms: tuple[str, ...] = self._check_algorithms(algorithms)
        self.nonce_lifetime = float(nonce_lifetime)
        self.qop = qop
        self.max_tracked_nonces = max_tracked_nonces
        self._mac_key = hmac.new(secret, _NONCE_DOMAIN + realm.encode(), hashlib.sha256).digest()
        # Dummy HA1 per hash for unknown users: a well-formed value nobody knows.
        self._dummy_ha1 = {
            name: _h(hashlib_name, hmac.new(secret, b"dummy ha1", hashlib.sha256).hexdigest())
            for name, (hashlib_name, _sess) in _ALGORITHMS.items()
        }
        self._used: OrderedDict[str, _NonceUse] = OrderedDict()
        self._forgotten_before = float("-inf")

    @staticmethod
    def _check_algorithms(algorithms: Sequence[str]) -> tuple[str, ...]:
        if not algorithms:
            raise ValueError("at least one algorithm must be offered")
        canonical: list[str] = []
        for algorithm in algorithms:
            name = _canonical_algorithm(algorithm)
            if name is None:
                raise ValueError(f"unsupported digest algorithm {algorithm!r}")
            if name not in canonical:
                canonical.append(name)
        return tuple(canonical)

    # -- nonces --

    def make_nonce(self, now: float) -> str:
        """A fresh nonce stamped with `now` and signed with the server secret."""
        payload = _NONCE_PAYLOAD.pack(now, secrets.token_bytes(8))
        mac = hmac.new(self._mac_key, payload, hashlib.sha256).digest()[:_NONCE_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")

    def _nonce_issued_at(self, nonce: str) -> float | None:
        """The issue time of a nonce this server signed, or None if it did not sign it."""
        if len(nonce) != _NONCE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        payload, mac = raw[: _NONCE_PAYLOAD.size], raw[_NONCE_PAYLOAD.size :]
        expected = hmac.new(self._mac_key, payload, hashlib.sha256).digest()[:_NONCE_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            return None
        issued_at: float = _NONCE_PAYLOAD.unpack(payload)[0]
        return issued_at

    # -- challenge --

    def challenge(
        self, now: float, stale: bool = False, algorithms: Sequence[str] | None = None
    ) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, in order.

        All values share one fresh nonce (RFC 8760 §2.4 lets the client pick any of them).
        `algorithms` overrides the configured order for this challenge; each must be one of
        the configured algorithms. The challenge does not depend on who asks (SIP-8).
        """
        chosen = self.algorithms if algorithms is None else self._check_algorithms(algorithms)
        for name in chosen:
            if name not in self.algorithms:
                raise ValueError(f"algorithm {name!r} is not configured for this realm")
        nonce = self.make_nonce(now)
        tail = f', qop="{self.qop}"' if self.qop else ""
        if stale:
            tail += ", stale=true"
        head = f"Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, algorithm="
        return [head + name + tail for name in chosen]

    # -- verification --

    def verify(
        self,
        value: str,
        method: str,
        now: float,
        lookup_ha1: Callable[[str, str], str | None],
    ) -> AuthResult:
        """Check one Authorization value for a request with `method`.

        `lookup_ha1(username, algorithm)` returns the stored HA1 (hex) for the base algorithm
        ("MD5" also for "MD5-sess", "SHA-256" for "SHA-256-sess"), or None if the user is
        unknown. The digest-uri is taken as given: the caller compares
        `result.credentials.uri` with the Request-URI.
        """
        try:
            credentials = parse_authorization(value)
        except AuthError as exc:
            return AuthResult(False, None, False, f"malformed credentials: {exc}")
        if credentials.realm != self.realm:
            return AuthResult(False, None, False, "wrong realm", credentials)
        algorithm = credentials.algorithm
        if algorithm not in self.algorithms:
            return AuthResult(
                False, None, False, f"algorithm {algorithm!r} not offered", credentials
            )
        _hash_name, sess = _ALGORITHMS[algorithm]
        qop = credentials.qop
        if qop is not None and qop.lower() != "auth":
            return AuthResult(False, None, False, f"qop {qop!r} not supported", credentials)
        if sess and qop is None:
            return AuthResult(False, None, False, f"{algorithm} without qop", credentials)
        issued_at = self._nonce_issued_at(credentials.nonce)
        if issued_at is None:
            # Not ours (forged, tampered, or signed with another secret): a plain failure.
            return AuthResult(False, None, False, "nonce not issued by this server", credentials)

        # From here on, known and unknown users take the same path (SIP-8): an unknown user is
        # checked against a dummy HA1 that matches no response.
        base = algorithm.removesuffix("-sess")
        stored = lookup_ha1(credentials.username, base)
        known = stored is not None
        key = stored if stored is not None else self._dummy_ha1[base]
        expected = digest_response(
            key,
            algorithm,
            method,
            credentials.uri,
            credentials.nonce,
            qop,
            credentials.nc,
            credentials.cnonce,
        )
        matched = hmac.compare_digest(expected.encode(), credentials.response.encode())
        if not (matched and known):
            # Same verdict and reason either way; only `username` (never sent) tells them apart.
            claimed = credentials.username if known else None
            return AuthResult(False, claimed, False, "response mismatch", credentials)

        # The client knows the password. RFC 7616 §3.3: stale only with a valid digest.
        username = credentials.username
        if issued_at > now or now - issued_at > self.nonce_lifetime:
            # Expired, or from the "future" after the clock was reset.
            return AuthResult(False, username, True, "nonce expired", credentials)
        nc = _NC_CONSUMED if qop is None else int(credentials.nc or "0", 16)
        use = self._used.get(credentials.nonce)
        if use is None:
            if issued_at <= self._forgotten_before:
                return AuthResult(False, username, True, "nonce forgotten at cap", credentials)
            self._remember(credentials.nonce, issued_at, nc, now)
        elif nc <= use.highest_nc:
            reason = "nonce already used without qop" if qop is None else "nonce count replayed"
            return AuthResult(False, username, True, reason, credentials)
        else:
            use.highest_nc = nc
        return AuthResult(True, username, False, "ok", credentials)

    def _remember(self, nonce: str, issued_at: float, nc: int, now: float) -> None:
        """Track a nonce's first successful use; prune expired entries; enforce the cap."""
        used = self._used
        # Entries are in first-use order, which roughly follows issue order: drop expired ones
        # from the front (amortised O(1)); stragglers go when they reach the front.
        horizon = now - self.nonce_lifetime
        while used:
            oldest = next(iter(used.values()))
            if oldest.issued_at >= horizon:
                break
            used.popitem(last=False)
        while len(used) >= self.max_tracked_nonces:
            _nonce, evicted = used.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, evicted.issued_at)
        used[nonce] = _NonceUse(issued_at, nc)

    @property
    def tracked_nonces(self) -> int:
        """How many used nonces are remembered for replay protection (for metrics)."""
        return len(self._used)
