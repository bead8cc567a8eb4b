"""Framing SIP messages on a byte stream (TCP, TLS) by Content-Length (RFC 3261 §18.3),
with RFC 5626 keep-alives between them. `feed` returns whole messages as bytes for
`softswitch.sip.message.parse_message`, or raises `SipParseError`; nothing else escapes."""

from __future__ import annotations

import re

from .errors import SipParseError
from .headers import _MAX_DIGITS
from .message import _is_request_data

_PING = b"\r\n\r\n"


class StreamFramer:
    """Frames SIP messages on a byte stream by Content-Length (RFC 3261 §18.3).

    Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped; each double-CRLF ping,
    even one split across reads, is counted in `keepalives` so the transport can answer it
    with a single CRLF. After `feed` raises, the stream cannot be resynchronised: close it.
    """

    __slots__ = ("_buffer", "max_size", "keepalives", "_scan_from", "_ping_state")

    def __init__(self, max_size: int = 65535) -> None:
        self._buffer = bytearray()
        self.max_size = max_size
        self.keepalives = 0
        self._scan_from = 0  # where the search for the end of the headers resumes
        self._ping_state = 0  # octets of b"\r\n\r\n" seen so far between messages

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete message now available. Raises SipParseError."""
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        while buf:
            if buf[0] in (13, 10):
                self._skip_keepalives()
                if not buf:
                    break
            head_end = buf.find(b"\r\n\r\n", self._scan_from)
            if head_end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError(
                        "headers exceed the maximum message size",
                        status=513,
                        is_request=_is_request_data(buf),
                    )
                self._scan_from = max(0, len(buf) - 3)
                break
            length = _content_length_of(buf, head_end)
            total = head_end + 4 + length
            if total > self.max_size:
                raise SipParseError(
                    f"message of {total} bytes exceeds {self.max_size}",
                    status=513,
                    is_request=_is_request_data(buf),
                )
            if len(buf) < total:
                self._scan_from = head_end  # the header end is known; only the body is missing
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._scan_from = 0
        return out

    def _skip_keepalives(self) -> None:
        buf = self._buffer
        n = 0
        size = len(buf)
        while n < size and buf[n] in (13, 10):
            n += 1
        run = _PING[: self._ping_state] + bytes(buf[:n])
        del buf[:n]
        self._scan_from = 0
        pings = run.count(_PING)
        self.keepalives += pings
        if buf:
            self._ping_state = 0  # a message starts: whatever came before was not a ping
            return
        tail = run[run.rfind(_PING) + 4 :] if pings else run
        state = 3
        while state and not tail.endswith(_PING[:state]):
            state -= 1
        self._ping_state = state


_CL_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\S*)")


def _content_length_of(buf: bytes | bytearray, head_end: int) -> int:
    m = _CL_RE.search(buf, 0, head_end)
    if m is None:
        raise SipParseError("stream message without Content-Length")  # mandatory on streams
    value = m.group(1)
    if not value.isdigit() or len(value) > _MAX_DIGITS:  # bytes.isdigit is ASCII-only
        raise SipParseError(f"bad Content-Length {value[:20]!r}")
    if _CL_RE.search(buf, m.end(), head_end) is not None:
        # RFC 4475 §3.3.9: two lengths, so no end of this message: the stream is lost
        raise SipParseError("more than one Content-Length header")
    return int(value)
