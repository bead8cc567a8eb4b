"""Structured views of SIP header values: URIs, name-addr, Via, CSeq, parameters.

RFC 3261 §19.1 (SIP URIs), §20.10 (name-addr / addr-spec), §20.42 (Via), §25 (grammar).
Each parser raises `SipParseError` on malformed input and nothing else; `message` uses these
to validate the headers every element needs.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

from .errors import SipParseError

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")  # RFC 3261 §25.1 token (use fullmatch)
_token = _TOKEN_RE.fullmatch
_STATUS_LINE_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+) ([0-9]{3})(?: (.*))?")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")  # RFC 3986 §3.1
_HOSTPORT_RE = re.compile(r"([A-Za-z0-9\-._]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")
_URI_FORBIDDEN_RE = re.compile(r'[\x00-\x20\x7f<>"]')  # never unescaped in a URI (§25.1)
_VIA_PROTOCOL_RE = re.compile(
    r"SIP[ \t]*/[ \t]*([0-9]+\.[0-9]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)", re.IGNORECASE
)
# The common sip:/sips: URI in one match (hostname or IPv4 host, no `@` after the userinfo);
# anything else takes the general path in `parse_uri`, which gives the same result.
_SIP_URI_FAST_RE = re.compile(
    r"([sS][iI][pP][sS]?):"
    r"(?:([^@:\x00-\x20\x7f<>\"]+)(?::([^@\x00-\x20\x7f<>\"]*))?@)?"
    r"([A-Za-z0-9\-._]+)(?::([0-9]{1,5}))?"
    r"(;[^?@\x00-\x20\x7f<>\"]*)?"
    r"(?:\?([^@\x00-\x20\x7f<>\"]*))?"
)
_KNOWN_PARAM_NAMES = frozenset(
    {
        "tag",
        "branch",
        "rport",
        "received",
        "lr",
        "transport",
        "user",
        "maddr",
        "ttl",
        "expires",
        "q",
        "method",
        "ob",
        "reg-id",
        "+sip.instance",
        "refresher",
    }
)
_MAX_DIGITS = 10  # longer decimal numbers are out of range for every SIP field we convert


def _uint(text: str, what: str) -> int:
    """A non-negative decimal (ASCII digits only; `str.isdigit` also accepts '²')."""
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        raise SipParseError(f"bad {what} {text[:20]!r}")
    return int(text)


# --- structured header views ---------------------------------------------------------------


class Via:
    """One Via element: `SIP/2.0/UDP host:port;branch=...;rport` (RFC 3261 §20.42).

    `version` is the protocol version the element was written with; it is "2.0" except on
    hops of another SIP version, which are kept so that such a request can still be answered
    505 (RFC 4475 §3.1.2.16).
    """

    __slots__ = ("transport", "host", "port", "params", "version")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None,
        params: dict[str, str | None],
        version: str = "2.0",
    ):
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params
        self.version = version

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/{self.version}/{self.transport} {hostport}{format_params(self.params)}"


class SipUri:
    """A sip:/sips: URI (RFC 3261 §19.1). Other schemes keep only `scheme` and `opaque`.

    `user`, `password`, `params` and `uri_headers` keep their %-escapes as sent; `unescape`
    turns them into characters where the application needs them (RFC 4475 §3.1.1.3).
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "uri_headers", "opaque")

    def __init__(
        self,
        scheme: str,
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        uri_headers: str = "",
        password: str | None = None,
        opaque: str = "",
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.uri_headers = uri_headers
        self.opaque = opaque

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def __str__(self) -> str:
        if not self.is_sip:
            return f"{self.scheme}:{self.opaque}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        tail = f"?{self.uri_headers}" if self.uri_headers else ""
        return f"{self.scheme}:{userinfo}{hostport}{format_params(self.params)}{tail}"


class NameAddr:
    """`"Display" <uri>;params` or `uri;params` as in From/To/Contact (RFC 3261 §20.10)."""

    __slots__ = ("display", "uri", "params")

    def __init__(self, display: str | None, uri: str, params: dict[str, str | None]) -> None:
        self.display = display
        self.uri = uri
        self.params = params

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        disp = ""
        if self.display:
            disp = f'"{_quote_display(self.display)}" '
        return f"{disp}<{self.uri}>{format_params(self.params)}"


def _quote_display(text: str) -> str:
    """Body of a quoted-string (RFC 3261 §25.1): escape `\\`, `"` and control characters;
    CR and LF cannot be quoted at all and become spaces, so no value can inject a header."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch in "\r\n":
            out.append(" ")
        elif ch in '"\\' or ord(ch) < 0x20 or ch == "\x7f":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def unescape(text: str) -> str:
    """Undo %HH escapes of a URI component (RFC 3261 §19.1.2), once and never recursively.

    `%00` becomes a NUL character, so an AOR such as `null-%00-null` keeps its full length
    (RFC 4475 §3.1.1.4). Raises `SipParseError` if the bytes are not UTF-8.
    """
    if "%" not in text:
        return text
    try:
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"escaped octets are not UTF-8 in {text[:40]!r}") from exc


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;a=b;c` into a dict (names lower-cased; quoted values kept quoted).

    Empty elements (`;;`) are skipped: they are not in the grammar, but some deployed phones
    emit a trailing `;` and nothing is ambiguous about it.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in _split_outside_quotes(text, ";"):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            if sep:
                raise SipParseError(f"parameter without a name in {text[:40]!r}")
            continue
        if name not in _KNOWN_PARAM_NAMES and not _token(name):
            raise SipParseError(f"bad parameter name {name[:40]!r}")
        params[name] = value.strip() if sep else None
    return params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    out: list[str] = []
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
    if quoted:
        raise SipParseError("unbalanced quotes")
    out.append(text[start:])
    return out


def parse_hostport(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` (RFC 3261 §25.1 hostport).

    The host is a hostname (letters, digits, `-`, `.`, and `_` which deployed DNS names use),
    an IPv4 address or a bracketed IPv6 reference, which is checked to be a real address.
    """
    m = _HOSTPORT_RE.fullmatch(text.strip(" \t"))
    if m is None:
        raise SipParseError(f"bad hostport {text[:60]!r}")
    host, port_text = m.group(1, 2)
    if host[0] == "[":
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise SipParseError(f"bad IPv6 reference {host[:60]!r}") from exc
    if port_text is None:
        return host, None
    port = int(port_text)
    if not 0 < port < 65536:
        raise SipParseError(f"bad port in {text[:60]!r}")
    return host, port


def parse_uri(text: str) -> SipUri:
    """Parse a URI; sip/sips get full structure, other schemes stay opaque.

    The userinfo ends at the first `@`: the user part may hold `;`, `?` and `/` (RFC 3261
    §25.1 user-unreserved, RFC 4475 §3.1.1.2 and §3.1.1.9), while `@` occurs nowhere else in
    a well-formed SIP URI. Escapes are kept; see `unescape`.
    """
    text = text.strip()
    m = _SIP_URI_FAST_RE.fullmatch(text)
    if m is not None:
        scheme, user, password, host, port_text, param_text, uri_headers = m.groups()
        port = int(port_text) if port_text is not None else None
        if port is None or 0 < port < 65536:
            return SipUri(
                scheme.lower(),
                user,
                host.lower(),
                port,
                parse_params(param_text[1:]) if param_text else {},
                uri_headers or "",
                password,
            )
    return _parse_uri_general(text)


def _parse_uri_general(text: str) -> SipUri:
    """`parse_uri` without the fast path: other schemes, IPv6 references, every error."""
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError(f"URI without scheme: {text[:60]!r}")
    if _URI_FORBIDDEN_RE.search(text):
        raise SipParseError(f"unescaped characters in URI {text[:60]!r}")
    scheme = scheme.lower()
    if scheme != "sip" and scheme != "sips":
        return SipUri(scheme, opaque=rest)
    user: str | None = None
    password: str | None = None
    userinfo, at, hostpart = rest.partition("@")
    if at:
        user, psep, pw = userinfo.partition(":")
        if psep:
            password = pw
        if not user:
            raise SipParseError(f"empty user part in {text[:60]!r}")
        rest = hostpart
    rest, _, uri_headers = rest.partition("?")
    hostport, _, param_text = rest.partition(";")
    host, port = parse_hostport(hostport)
    params = parse_params(param_text)
    return SipUri(scheme, user, host.lower(), port, params, uri_headers, password)


def parse_name_addr(text: str) -> NameAddr:
    """Parse From/To/Contact/Route-style values: name-addr or addr-spec, then params.

    Liberal where nothing is ambiguous: LWS inside `< >` (RFC 4475 §3.1.2.14) and an unquoted
    display name of non-token characters (§3.1.2.15, e.g. UTF-8 names from deployed phones)
    are accepted; `str(NameAddr)` always writes a correctly quoted form. An addr-spec holding
    `?` (URI headers) is refused: it must be enclosed in `< >` (RFC 3261 §20.10, §3.1.2.13).
    """
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    rest = text
    if rest[0] == '"':
        end = rest.find('"', 1)
        if end < 0:
            raise SipParseError("unterminated display name")
        if "\\" in rest[1:end] or rest[end - 1] == "\\":
            i = 1
            chars: list[str] = []
            n = len(rest)
            while i < n:
                ch = rest[i]
                if ch == "\\" and i + 1 < n:
                    chars.append(rest[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    break
                chars.append(ch)
                i += 1
            else:
                raise SipParseError("unterminated display name")
            end = i
            display = "".join(chars)
        else:
            display = rest[1:end]
        rest = rest[end + 1 :].lstrip()
        if not rest.startswith("<"):
            raise SipParseError("quoted display name not followed by <uri>")
    lt = rest.find("<")
    if lt >= 0:
        if display is None:
            token_display = rest[:lt].strip()
            if '"' in token_display:
                raise SipParseError("stray quote in display name")
            display = token_display or None
        gt = rest.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <uri>")
        uri = rest[lt + 1 : gt].strip()
        param_text = rest[gt + 1 :].strip()
        if param_text and param_text[0] != ";":
            raise SipParseError(f"junk after <uri>: {param_text[:40]!r}")
        params = parse_params(param_text[1:])
    else:
        # addr-spec form: parameters after ';' belong to the header, not the URI (§20.10).
        uri, _, param_text = rest.partition(";")
        uri = uri.strip()
        if "?" in uri:
            raise SipParseError("a URI with headers must be enclosed in <>")
        params = parse_params(param_text)
    if uri != "*":
        parse_uri(uri)  # validate the scheme and structure
    return NameAddr(display, uri, params)


def parse_via(text: str) -> Via:
    """Parse one Via element (LWS around `/` and `;` allowed, RFC 4475 §3.1.1.1)."""
    text = text.strip()
    m = _VIA_PROTOCOL_RE.match(text)
    if m is None:
        raise SipParseError(f"bad Via {text[:60]!r}")
    version, transport = m.group(1, 2)
    rest = text[m.end() :]
    if not rest or rest[0] not in " \t":
        raise SipParseError(f"bad Via {text[:60]!r}")
    hostport, _, param_text = rest.partition(";")
    # a comment such as "(c)" may follow the sent-by; ignore it (RFC 3261 §20.42)
    hostport = hostport.split("(")[0]
    host, port = parse_hostport(hostport.replace(" ", "").replace("\t", ""))
    return Via(transport.upper(), host, port, parse_params(param_text), version)


def parse_cseq(text: str) -> tuple[int, str]:
    """`number method`; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
    parts = text.split()
    if len(parts) != 2:
        raise SipParseError(f"bad CSeq {text[:40]!r}")
    number = _uint(parts[0], "CSeq number")
    if number >= 2**31:
        raise SipParseError("CSeq number out of range")
    if not _token(parts[1]):
        raise SipParseError(f"bad CSeq method {parts[1][:40]!r}")
    return number, parts[1]
