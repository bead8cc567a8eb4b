"""SIP message model, parser and serialiser (RFC 3261 §7, §20, §25).

Sans-IO: bytes in, `Request`/`Response` objects out, and back to bytes. Header values stay
strings until a caller asks for a structured view (`via`, `cseq`, `name_addr` ...), because a
B2BUA touches only a handful of headers per message and parsing the rest would be wasted work
on the hot path. The headers every element needs (Via, From, To, Call-ID, CSeq, Max-Forwards,
Content-Length, a request's Contact) are validated on the way in, so a malformed message is
refused once at the edge instead of failing somewhere deep in the call logic.

Every malformed input raises `SipParseError` (carrying, for requests, enough of the message to
answer 400 when the essentials could be read); nothing else escapes `parse_message` or
`StreamFramer.feed`. Choices for the cases RFC 4475 §3.1.2 leaves to the implementation are
listed in tests/unit/test_message_vectors.py. Framing on byte streams (TCP, TLS) is
`softswitch.sip.framing.StreamFramer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from .errors import SipParseError
from .headers import (  # noqa: F401  (views re-exported: callers import them from here)
    _MAX_DIGITS,
    _STATUS_LINE_RE,
    NameAddr,
    SipUri,
    Via,
    _token,
    _uint,
    format_params,
    parse_cseq,
    parse_hostport,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    unescape,
)

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

# Methods registered with IANA for SIP. A request whose CSeq method does not match its start
# line is answered 400, or 501 when the start-line method is none of these (RFC 4475 §3.1.2.18).
REGISTERED_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "PRACK",
        "UPDATE",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    }
)


def _build_name_tables() -> dict[str, str]:
    keys: dict[str, str] = {}
    longs = set(COMPACT_FORMS.values()) | set(CANONICAL_NAMES) | set(LIST_HEADERS)
    longs |= {
        "max-forwards",
        "content-length",
        "content-type",
        "cseq",
        "call-id",
        "expires",
        "user-agent",
        "server",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "authentication-info",
        "min-expires",
        "retry-after",
        "date",
        "timestamp",
        "warning",
        "organization",
        "priority",
        "reply-to",
        "privacy",
        "p-asserted-identity",
        "content-disposition",
        "content-language",
        "mime-version",
        "rseq",
        "rack",
        "min-se",
        "reason",
        "replaces",
        "error-info",
        "alert-info",
        "call-info",
        "in-reply-to",
        "subscription-state",
    }
    for long in longs:
        keys[long] = long
        keys[canonical_name(long)] = long
    for short, long in COMPACT_FORMS.items():
        keys[short] = long
        keys[short.upper()] = long
    return keys


def canonical_name(name: str) -> str:
    """Wire spelling of a header given its lower-case long name."""
    try:
        return CANONICAL_NAMES[name]
    except KeyError:
        return "-".join(part.capitalize() for part in name.split("-"))


_NAME_KEYS = _build_name_tables()  # wire spelling -> key, for names seen on every message
_WIRE_NAMES = {key: canonical_name(key) for key in set(_NAME_KEYS.values())}


def normalise_name(name: str) -> str:
    """Lower-case long form of a header name (compact forms expanded)."""
    key = _NAME_KEYS.get(name)
    if key is not None:
        return key
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
                if not parts:  # an empty header line holds no element: drop it, look on
                    del self._items[i]
                    return self.pop_first(name)
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
        vias = self.headers.get_all("via")
        if not vias:
            raise SipParseError("missing Via")
        return parse_via(vias[0])

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.headers.get("from") or "")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.headers.get("to") or "")

    def to_bytes(self) -> bytes:
        """Serialise with a correct Content-Length (RFC 3261 §18.3 requires it on streams)."""
        wire = _WIRE_NAMES
        lines = [self.start_line()]
        lines += [
            f"{wire.get(name) or canonical_name(name)}: {value}"
            for name, value in self.headers._items
            if name != "content-length"
        ]
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8") + self.body


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
    """A SIP response. An empty `reason` gets the standard phrase; a parsed one stays as sent."""

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
    406: "Not Acceptable",
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


# --- parsing -------------------------------------------------------------------------------


def parse_message(data: bytes, max_size: int = 65535) -> Request | Response:
    """Parse one complete SIP message (a datagram, or one framed by `StreamFramer`).

    Raises `SipParseError`; `err.is_request` tells whether it looked like a request and
    `err.partial` carries the request as far as it was read, so the transport can answer
    `err.status` (400, 501, 505, 513) to it; malformed responses are dropped (RFC 3261 §16.3,
    §18). A datagram's octets after Content-Length are ignored (§18.3, RFC 4475 §3.1.1.8).
    """
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore CRLFs before the start line
        if not data:
            raise SipParseError("empty message (keep-alive)")
    head_end = data.find(b"\r\n\r\n")
    lf_end = data.find(b"\n\n", 0, head_end if head_end >= 0 else len(data))
    if lf_end >= 0:
        head_end, body_start = lf_end, lf_end + 2  # tolerate bare-LF line ends
    elif head_end >= 0:
        body_start = head_end + 4
    elif data.endswith(b"\n"):
        # A datagram may end right after the last header line's line end.
        body_start = len(data)
        head_end = body_start - (2 if data.endswith(b"\r\n") else 1)
    else:
        raise SipParseError(
            "no end of headers",
            is_request=_is_request_data(data),
            status=_size(data, max_size),
        )
    try:
        head = data[:head_end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8", is_request=_is_request_data(data)) from exc
    if "\n" in head:
        head = head.replace("\r\n", "\n")
        lines = head.split("\n")
    else:
        lines = [head]
    if "\r" in head:
        # A CR not followed by LF: some elements end a line there, others do not; refusing it
        # keeps a header from being smuggled past one of them.
        is_request = _is_request_data(data)
        clean = [line for line in lines if "\r" not in line]
        partial = None
        if is_request and clean and clean[0] == lines[0]:
            parts = lines[0].split()
            partial = Request(
                parts[0] if parts else "",
                parts[1] if len(parts) > 1 else "",
                _parse_header_lines(clean, skip_bad=True),
            )
        raise SipParseError("bare CR in headers", is_request=is_request, partial=partial)
    start = lines[0]
    is_request = start[:4].upper() != "SIP/"
    try:
        headers = _parse_header_lines(lines)
    except SipParseError as exc:
        exc.is_request = is_request
        if is_request:
            # Keep what can be read so the transport may still answer 400 (RFC 4475 §3.1.2).
            parts = start.split()
            exc.partial = Request(
                parts[0] if parts else "",
                parts[1] if len(parts) > 1 else "",
                _parse_header_lines(lines, skip_bad=True),
            )
        raise
    msg: Request | Response
    if not is_request:
        m = _STATUS_LINE_RE.fullmatch(start)
        if not m:
            raise SipParseError(f"bad status line {start[:60]!r}")
        if m.group(1, 2) != ("2", "0"):
            raise SipParseError("unsupported SIP version")
        status = int(m.group(3))
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} out of range")
        msg = Response(status, "", headers)
        msg.reason = m.group(4) or ""  # as sent, even when empty (RFC 4475 §3.1.1.13)
    else:
        # Runs of SP between the elements are tolerated (RFC 4475 §3.1.2.9, §3.1.2.10); the
        # elements are stored apart and re-serialised with single SPs, so none is forwarded.
        parts = start.split(" ")
        if len(parts) != 3:
            parts = [p for p in parts if p]
        if len(parts) != 3:
            partial = Request(parts[0] if parts else "", "", headers)
            raise SipParseError(
                f"bad request line {start[:60]!r}", is_request=True, partial=partial
            )
        method, uri, version = parts
        msg = Request(method, uri, headers)
        if not _token(method):
            raise SipParseError(f"bad method {method[:40]!r}", is_request=True, partial=msg)
        if version != SIP_VERSION and version.upper() != SIP_VERSION:
            raise SipParseError(
                f"unsupported version {version[:20]!r}", is_request=True, status=505, partial=msg
            )
        try:
            has_headers = _request_uri_has_headers(uri)
        except SipParseError as exc:
            raise SipParseError(str(exc), is_request=True, partial=msg) from exc
        if has_headers:
            # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI (RFC 4475
            # §3.1.2.11 permits refusing them with 400, which is safer than forwarding them).
            raise SipParseError("headers in the Request-URI", is_request=True, partial=msg)
    _check_essentials(msg)
    if len(data) > max_size:
        raise SipParseError(
            f"message of {len(data)} bytes exceeds {max_size}",
            status=513,
            is_request=is_request,
            partial=msg if is_request else None,
        )
    msg.body = _apply_content_length(msg, data, body_start)
    return msg


def _is_request_data(data: bytes | bytearray) -> bool:
    """Whether octets look like a request: a status line starts `SIP/` (any case), and a
    malformed response must be dropped, never answered (RFC 3261 §16.3, §18.1.2)."""
    return bytes(data[:4]).upper() != b"SIP/"


def _size(data: bytes, max_size: int) -> int:
    return 513 if len(data) > max_size else 400


def _parse_header_lines(lines: list[str], skip_bad: bool = False) -> Headers:
    """Header lines after the start line `lines[0]`; `skip_bad` drops malformed lines
    instead of raising (used only to salvage a partial request for a 400)."""
    items: list[tuple[str, str]] = []
    append = items.append
    keys = _NAME_KEYS
    for i in range(1, len(lines)):
        line = lines[i]
        if not line:
            if skip_bad:
                continue
            raise SipParseError("empty line inside the headers")
        if line[0] == " " or line[0] == "\t":
            # RFC 3261 §7.3.1 header folding: the line end and leading LWS become one SP.
            if not items:
                if skip_bad:
                    continue
                raise SipParseError("continuation line before any header")
            name, value = items[-1]
            more = line.strip(" \t")
            items[-1] = (name, f"{value} {more}" if value and more else value or more)
            continue
        name, sep, value = line.partition(":")
        if not sep:
            if skip_bad:
                continue
            raise SipParseError(f"header line without colon: {line[:40]!r}")
        key = keys.get(name)
        if key is None:
            name = name.rstrip(" \t")
            key = keys.get(name)
            if key is None:
                if not _token(name):
                    if skip_bad:
                        continue
                    raise SipParseError(f"bad header name {name[:40]!r}")
                low = name.lower()
                key = COMPACT_FORMS.get(low, low)
        append((key, value.strip(" \t")))
    return Headers(items)


@lru_cache(maxsize=4096)
def _valid_name_addr(text: str) -> None:
    """`parse_name_addr` as a check, remembered: a call's From, To and Contact values recur
    in each of its messages. Only successes are cached (a raise is never stored)."""
    parse_name_addr(text)


@lru_cache(maxsize=4096)
def _request_uri_has_headers(uri: str) -> bool:
    """Validate a Request-URI (raises SipParseError); True if it carries `?headers`."""
    return bool(parse_uri(uri).uri_headers)


# Headers a message carries at most once (RFC 3261 §7.3.1; RFC 4475 §3.3.8, §3.3.9: 400).
SINGLE_VALUED = frozenset(("call-id", "cseq", "from", "to", "max-forwards", "content-length"))


def _check_essentials(msg: Request | Response) -> None:
    """Validate the headers every element relies on (RFC 3261 §8.1.1, §8.2.2)."""
    is_request = isinstance(msg, Request)
    first: dict[str, str] = {}
    vias: list[str] = []
    contacts: list[str] = []
    repeated = ""
    for key, value in msg.headers._items:
        if key == "via":
            vias.append(value)
        elif key == "contact":
            contacts.append(value)
        elif key not in first:
            first[key] = value
        elif key in SINGLE_VALUED:
            repeated = repeated or key
    try:
        if not vias:
            raise SipParseError("missing Via header")
        for name in ("from", "to", "call-id", "cseq"):
            if name not in first:
                raise SipParseError(f"missing {canonical_name(name)} header")
        if repeated:
            raise SipParseError(f"more than one {canonical_name(repeated)} header")
        if not first["call-id"]:
            raise SipParseError("empty Call-ID")
        number, method = parse_cseq(first["cseq"])
        if is_request and method != msg.method:  # type: ignore[union-attr]
            unknown = msg.method not in REGISTERED_METHODS  # type: ignore[union-attr]
            raise SipParseError(
                "CSeq method does not match the request method", status=501 if unknown else 400
            )
        for value in vias:
            elements = split_list(value)
            if not elements:
                raise SipParseError("empty Via header")
            for via in elements:
                parse_via(via)
        _valid_name_addr(first["from"])
        _valid_name_addr(first["to"])
        max_forwards = first.get("max-forwards")
        if max_forwards is not None and _uint(max_forwards, "Max-Forwards") > 255:
            raise SipParseError("Max-Forwards above 255")
        if is_request:
            for value in contacts:
                for contact in split_list(value):
                    if contact != "*":
                        _valid_name_addr(contact)
    except SipParseError as exc:
        exc.is_request = is_request
        exc.partial = msg if is_request else None
        raise


def _apply_content_length(msg: Request | Response, data: bytes, body_start: int) -> bytes:
    value = msg.headers.get("content-length")
    if value is None:
        return data[body_start:]  # datagram without Content-Length: the rest is the body (§18.3)
    is_request = isinstance(msg, Request)
    try:
        length = _uint(value, "Content-Length")  # RFC 4475 §3.1.2.3: "-999" and "five" refused
    except SipParseError as exc:
        raise SipParseError(
            str(exc), is_request=is_request, partial=msg if is_request else None
        ) from exc
    if body_start + length > len(data):
        # RFC 4475 §3.1.2.2: on a datagram, a short body is an error (400).
        raise SipParseError(
            "Content-Length larger than the body",
            is_request=is_request,
            partial=msg if is_request else None,
        )
    return data[body_start : body_start + length]
