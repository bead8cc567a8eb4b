"""Media handling behind the B2BUA: SDP offers and answers crossing a call, leg by leg.

The B2BUA tells the engine about every SDP that crosses the call (RFC 3264 offer/answer):
an offer received on one leg and forwarded on another, and the answer coming back. The
engine returns the SDP to forward, which names its own address and ports when it anchors the
media (the C RTP engine of issue 4) or is the same SDP when it does not.

`PassThroughMedia` does not anchor RTP: SDP travels unchanged, RTP flows directly between the
carrier and the agent's phone, and the node can neither record nor detect in-band DTMF.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

try:  # the engine's own exception base, raised by every engine call
    from media._rtp import MediaError
except ImportError:  # the C extension is not built: only PassThroughMedia is usable

    class MediaError(Exception):  # type: ignore[no-redef]
        """Base of media engine errors (stand-in while the extension is not built)."""


if TYPE_CHECKING:
    from media.engine import RtpEngine


class MediaEngine(Protocol):
    """What call control needs from a media engine."""

    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        """An offer (or no SDP: a delayed offer) arrived on `from_leg` and goes to `to_leg`;
        returns the SDP to send on `to_leg`. Raises `MediaError` (a `ValueError` subclass for
        SDP the engine cannot serve, e.g. no G.711)."""

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        """The answer to our offer on `from_leg` arrived; returns the answer to send on
        `to_leg` (which made the original offer). Empty bytes when there is no SDP."""

    def release(self, leg_id: str) -> None:
        """The leg is gone: free its ports and state."""


class PassThroughMedia:
    """No anchoring: SDP is relayed unchanged and nothing is allocated."""

    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        return sdp

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        return sdp

    def release(self, leg_id: str) -> None:
        return None


def __getattr__(name: str) -> object:
    # `from media import RtpEngine` imports the extension only when asked for.
    if name == "RtpEngine":
        from media.engine import RtpEngine

        return RtpEngine
    raise AttributeError(name)


__all__ = ["MediaEngine", "MediaError", "PassThroughMedia", "RtpEngine"]
