"""Exceptions of the sans-IO SIP core; each becomes a SIP response or a dropped message."""

from __future__ import annotations

from typing import Any


class SipError(Exception):
    """Base of every error raised by `softswitch.sip`."""


class SipParseError(SipError):
    """A message could not be parsed.

    `is_request` tells whether the start line looked like a request (so a 400 may be sent
    when `partial` carries the headers needed to address it); `status` is the response code
    the transport layer should use (400 by default, 505 for an unknown version, 513 when too
    large).
    """

    def __init__(
        self,
        message: str,
        *,
        is_request: bool = False,
        status: int = 400,
        partial: Any = None,
    ) -> None:
        super().__init__(message)
        self.is_request = is_request
        self.status = status
        self.partial = partial


class TransactionError(SipError):
    """A transaction was used in a way RFC 3261 §17 does not allow."""


class DialogError(SipError):
    """A request or response does not fit the dialog state (RFC 3261 §12)."""
