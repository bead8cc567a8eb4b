"""SIP message model, parser and serialiser (RFC 3261 §7, §20, §25).

Sans-IO: bytes in, `Request`/`Response` objects out, and back to bytes. Header values stay
strings until a caller asks for a structured view (`via`, `cseq`, `name_addr` ...), because a
B2BUA touches only a handful of headers per message and parsing the rest would be wasted work
on the hot path.

Every malformed input raises `SipParseError` (carrying, for requests, enough of the message to
answer 400 when the essentials could be read); nothing else escapes `parse_message`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .errors import SipParseError

SIP_VERSION = "SIP/2.0"

# RFC 3261 §7.3.3 and the IANA registry: compact forms.
COMPACT_FORMS = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Canonical spelling used when serialising (lower-case key -> wire name).
CANONICAL_NAMES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rseq": "RSeq",
    "rack": "RAck",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

# Headers whose comma-separated values are separate list elements (RFC 3261 §7.3.1).
LIST_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "in-reply-to",
        "history-info",
        "diversion",
        "p-asserted-identity",
        "path",
        "service-route",
    }
)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_STATUS_LINE_RE = re.compile(r"^SIP/(\d+)\.(\d+) (\d{3}) ?(.*)$")
_SPACE_IN_HEADER_NAME = re.compile(r"[ \t]")


def canonical_name(name: str) -> str:
    """Wire spelling of a header given its lower-case long name."""
    try:
        return CANONICAL_NAMES[name]
    except KeyError:
        return "-".join(part.capitalize() for part in name.split("-"))


def normalise_name(name: str) -> str:
    """Lower-case long form of a header name (compact forms expanded)."""
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, honouring quotes and <...> (RFC 3261 §7.3.1)."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            part = value[start:i].strip()
            if part:
                out.append(part)
            start = i + 1
    if quoted:
        raise SipParseError("unbalanced quotes in header value")
    part = value[start:].strip()
    if part:
        out.append(part)
    return out


class Headers:
    """Ordered multi-map of headers keyed by lower-case long name.

    Repeated headers and comma-joined values are both kept as written; `get_all` returns the
    individual list elements for list-valued headers either way.
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = items if items is not None else []

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        key = normalise_name(name)
        return any(k == key for k, _ in self._items)

    def copy(self) -> Headers:
        return Headers(list(self._items))

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header, or `default`."""
        key = normalise_name(name)
        for k, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header; list headers are split at top-level commas."""
        key = normalise_name(name)
        values = [v for k, v in self._items if k == key]
        if key in LIST_HEADERS:
            out: list[str] = []
            for v in values:
                out.extend(split_list(v))
            return out
        return values

    def add(self, name: str, value: str) -> None:
        self._items.append((normalise_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first header of the same name, or at the top (Via, Record-Route)."""
        key = normalise_name(name)
        for i, (k, _) in enumerate(self._items):
            if k == key:
                self._items.insert(i, (key, value))
                return
        self._items.insert(0, (key, value))

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence with one value, keeping the first one's position."""
        key = normalise_name(name)
        for i, (k, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (key, value)
                self._items[i + 1 :] = [item for item in self._items[i + 1 :] if item[0] != key]
                return
        self._items.append((key, value))

    def remove(self, name: str) -> None:
        key = normalise_name(name)
        self._items = [item for item in self._items if item[0] != key]

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first list element of a header (top Via, first Route)."""
        key = normalise_name(name)
        for i, (k, v) in enumerate(self._items):
            if k == key:
                parts = split_list(v) if key in LIST_HEADERS else [v]
                first, rest = parts[0], parts[1:]
                if rest:
                    self._items[i] = (key, ", ".join(rest))
                else:
                    del self._items[i]
                return first
        return None


class Message:
    """Common part of requests and responses."""

    __slots__ = ("headers", "body")

    headers: Headers
    body: bytes

    def start_line(self) -> str:
        raise NotImplementedError

    # Frequently used header views. -------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.headers.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("cseq") or "")

    @property
    def top_via(self) -> Via:
        value = self.headers.get("via")
        if value is None:
            raise SipParseError("missing Via")
        return parse_via(split_list(value)[0])

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.headers.get("from") or "")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.headers.get("to") or "")

    def to_bytes(self) -> bytes:
        """Serialise with a correct Content-Length (RFC 3261 §18.3 requires it on streams)."""
        lines = [self.start_line()]
        for name, value in self.headers:
            if name == "content-length":
                continue
            lines.append(f"{canonical_name(name)}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8") + self.body


class Request(Message):
    """A SIP request. `uri` is the Request-URI as a string."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: str, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("status", "reason")

    def __init__(
        self, status: int, reason: str = "", headers: Headers | None = None, body: bytes = b""
    ) -> None:
        self.status = status
        self.reason = reason or REASONS.get(status, "")
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}


# --- structured header views ---------------------------------------------------------------


class Via:
    """One Via element: `SIP/2.0/UDP host:port;branch=...;rport` (RFC 3261 §20.42)."""

    __slots__ = ("transport", "host", "port", "params")

    def __init__(self, transport: str, host: str, port: int | None, params: dict[str, str | None]):
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hostport}{format_params(self.params)}"


class SipUri:
    """A sip:/sips: URI (RFC 3261 §19.1). Other schemes keep only `scheme` and `opaque`."""

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
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            disp = f'"{escaped}" '
        return f"{disp}<{self.uri}>{format_params(self.params)}"


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;a=b;c` into a dict (names lower-cased; quoted values kept quoted)."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not name or not _TOKEN_RE.match(name):
            raise SipParseError(f"bad parameter name {name!r}")
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
    """`host`, `host:port`, `[v6]` or `[v6]:port` (RFC 3261 §25.1 hostport)."""
    text = text.strip()
    if not text:
        raise SipParseError("empty host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {text!r}")
        host = text[: end + 1]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"bad hostport {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        if not host or any(c in host for c in ' \t<>"[]@'):
            raise SipParseError(f"bad host {host!r}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not (0 < int(port_text) < 65536):
            raise SipParseError(f"bad port in {text!r}")
        port = int(port_text)
    return host, port


def parse_uri(text: str) -> SipUri:
    """Parse a URI; sip/sips get full structure, other schemes stay opaque."""
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    if not sep or not scheme or not scheme[0].isalpha():
        raise SipParseError(f"URI without scheme: {text!r}")
    scheme = scheme.lower()
    if any(c in text for c in " \t\r\n<>"):
        raise SipParseError(f"unescaped characters in URI {text!r}")
    if scheme not in ("sip", "sips"):
        return SipUri(scheme, opaque=rest)
    rest, _, uri_headers = rest.partition("?")
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, psep, pw = userinfo.partition(":")
        if psep:
            password = pw
        if not user:
            raise SipParseError(f"empty user part in {text!r}")
    hostport, _, param_text = rest.partition(";")
    host, port = parse_hostport(hostport)
    params = parse_params(param_text)
    return SipUri(scheme, user, host.lower(), port, params, uri_headers, password)


def parse_name_addr(text: str) -> NameAddr:
    """Parse From/To/Contact/Route-style values: name-addr or addr-spec, then params."""
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    rest = text
    if rest.startswith('"'):
        i = 1
        chars: list[str] = []
        while i < len(rest):
            ch = rest[i]
            if ch == "\\" and i + 1 < len(rest):
                chars.append(rest[i + 1])
                i += 2
                continue
            if ch == '"':
                break
            chars.append(ch)
            i += 1
        else:
            raise SipParseError("unterminated display name")
        display = "".join(chars)
        rest = rest[i + 1 :].lstrip()
        if not rest.startswith("<"):
            raise SipParseError("quoted display name not followed by <uri>")
    lt = rest.find("<")
    if lt >= 0:
        if display is None:
            token_display = rest[:lt].strip()
            display = token_display or None
        gt = rest.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <uri>")
        uri = rest[lt + 1 : gt].strip()
        param_text = rest[gt + 1 :].strip()
        if param_text and not param_text.startswith(";"):
            raise SipParseError(f"junk after <uri>: {param_text!r}")
        params = parse_params(param_text[1:] if param_text else "")
    else:
        # addr-spec form: parameters after ';' belong to the header, not the URI (§20.10).
        uri, _, param_text = rest.partition(";")
        uri = uri.strip()
        params = parse_params(param_text)
    if uri != "*":
        parse_uri(uri)  # validate the scheme and structure
    return NameAddr(display, uri, params)


def parse_via(text: str) -> Via:
    """Parse one Via element."""
    text = text.strip()
    proto, _, rest = text.partition(" ")
    parts = [p.strip() for p in proto.split("/")]
    if len(parts) != 3 or parts[0].upper() != "SIP" or not parts[2]:
        # Allow LWS around the slashes (RFC 4475 §3.1.1.1 "wsinv").
        m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+(.*)$", text, re.I)
        if not m:
            raise SipParseError(f"bad Via {text!r}")
        transport, rest = m.group(1), m.group(2)
    else:
        transport = parts[2]
    hostport, _, param_text = rest.strip().partition(";")
    # a comment such as "(c)" may follow the sent-by; ignore it (RFC 3261 §20.42)
    hostport = hostport.split("(")[0].strip()
    host, port = parse_hostport(hostport.replace(" ", ""))
    return Via(transport.upper(), host, port, parse_params(param_text))


def parse_cseq(text: str) -> tuple[int, str]:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise SipParseError(f"bad CSeq {text!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise SipParseError("CSeq number out of range")
    if not _TOKEN_RE.match(parts[1]):
        raise SipParseError(f"bad CSeq method {parts[1]!r}")
    return number, parts[1]


# --- parsing -------------------------------------------------------------------------------


def parse_message(data: bytes, max_size: int = 65535) -> Request | Response:
    """Parse one complete SIP message (a datagram, or one framed by `StreamFramer`).

    Raises `SipParseError`; `err.request_line` tells whether it looked like a request so the
    transport can answer 400 (RFC 3261 §16.3 / §18: malformed responses are dropped).
    """
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds {max_size}", status=513)
    head_end = data.find(b"\r\n\r\n")
    sep_len = 4
    if head_end < 0:
        head_end = data.find(b"\n\n")
        sep_len = 2
        if head_end < 0:
            # A datagram may end right after the last header line's CRLF.
            if data.endswith(b"\r\n"):
                head_end, sep_len = len(data) - 2, 2
            else:
                raise SipParseError("no end of headers")
    try:
        head = data[:head_end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8") from exc
    body = data[head_end + sep_len :]
    lines = head.replace("\r\n", "\n").split("\n")
    while lines and not lines[0]:
        lines.pop(0)  # RFC 3261 §7.5: ignore CRLFs before the start line
    if not lines:
        raise SipParseError("empty message")
    start = lines[0]
    headers = _parse_header_lines(lines[1:])
    msg: Request | Response
    if start.startswith("SIP/"):
        m = _STATUS_LINE_RE.match(start)
        if not m:
            raise SipParseError(f"bad status line {start!r}")
        if (m.group(1), m.group(2)) != ("2", "0"):
            raise SipParseError("unsupported SIP version")
        status = int(m.group(3))
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} out of range")
        msg = Response(status, m.group(4), headers)
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise SipParseError(f"bad request line {start!r}", is_request=True)
        method, uri, version = parts
        if not _TOKEN_RE.match(method):
            raise SipParseError(f"bad method {method!r}", is_request=True)
        if version.upper() != SIP_VERSION:
            raise SipParseError(f"unsupported version {version!r}", is_request=True, status=505)
        msg = Request(method, uri, headers)
        try:
            parse_uri(uri)
        except SipParseError as exc:
            raise SipParseError(str(exc), is_request=True, partial=msg) from exc
    _check_essentials(msg)
    msg.body = _apply_content_length(msg, body)
    return msg


def _parse_header_lines(lines: list[str]) -> Headers:
    items: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            # RFC 3261 §7.3.1 header folding: continuation of the previous line.
            if not items:
                raise SipParseError("continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError(f"header line without colon: {line[:40]!r}")
        name = name.rstrip(" \t")
        if not name or not _TOKEN_RE.match(name):
            raise SipParseError(f"bad header name {name[:40]!r}")
        items.append((normalise_name(name), value.strip()))
    return Headers(items)


_REQUIRED = ("via", "from", "to", "call-id", "cseq")


def _check_essentials(msg: Request | Response) -> None:
    is_request = isinstance(msg, Request)
    try:
        for key in _REQUIRED:
            if msg.headers.get(key) is None:
                raise SipParseError(f"missing {canonical_name(key)} header")
        number, method = msg.cseq
        if is_request and method != msg.method:  # type: ignore[union-attr]
            raise SipParseError("CSeq method does not match the request method")
        for via in msg.headers.get_all("via"):
            parse_via(via)
        msg.from_  # noqa: B018 - validates the From header
        msg.to  # noqa: B018
        max_forwards = msg.headers.get("max-forwards")
        if max_forwards is not None and (not max_forwards.isdigit() or int(max_forwards) > 255):
            raise SipParseError("bad Max-Forwards")
        if is_request:
            for contact in msg.headers.get_all("contact"):
                if contact != "*":
                    parse_name_addr(contact)
    except SipParseError as exc:
        exc.is_request = is_request
        exc.partial = msg if is_request else None
        raise


def _apply_content_length(msg: Request | Response, body: bytes) -> bytes:
    value = msg.headers.get("content-length")
    if value is None:
        return body  # datagram without Content-Length: the rest is the body (§18.3)
    if not value.isdigit():
        raise SipParseError(
            "bad Content-Length",
            is_request=isinstance(msg, Request),
            partial=msg if isinstance(msg, Request) else None,
        )
    length = int(value)
    if length > len(body):
        raise SipParseError(
            "Content-Length larger than the body",
            is_request=isinstance(msg, Request),
            partial=msg if isinstance(msg, Request) else None,
        )
    return body[:length]


class StreamFramer:
    """Frames SIP messages on a byte stream by Content-Length (RFC 3261 §18.3).

    Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped and reported via
    `keepalives` so the transport can answer a double-CRLF ping with a single CRLF.
    """

    __slots__ = ("_buffer", "max_size", "keepalives")

    def __init__(self, max_size: int = 65535) -> None:
        self._buffer = bytearray()
        self.max_size = max_size
        self.keepalives = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete message now available. Raises SipParseError."""
        self._buffer += data
        out: list[bytes] = []
        buf = self._buffer
        while True:
            skipped = 0
            while skipped < len(buf) and buf[skipped] in (13, 10):
                skipped += 1
            if skipped:
                if skipped >= 4 and buf[:4] == b"\r\n\r\n":
                    self.keepalives += 1
                del buf[:skipped]
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError("headers exceed the maximum message size", status=513)
                return out
            length = _content_length_of(bytes(buf[:head_end]))
            total = head_end + 4 + length
            if total > self.max_size:
                raise SipParseError(f"message of {total} bytes exceeds {self.max_size}", status=513)
            if len(buf) < total:
                return out
            out.append(bytes(buf[:total]))
            del buf[:total]


_CL_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\S*)")


def _content_length_of(head: bytes) -> int:
    m = _CL_RE.search(head)
    if m is None:
        raise SipParseError("stream message without Content-Length")  # mandatory on streams
    value = m.group(1)
    if not value.isdigit():
        raise SipParseError("bad Content-Length")
    return int(value)
